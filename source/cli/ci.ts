/**
 * Whether we run under CI, by the rule Ink itself uses (is-in-ci): CI or
 * CONTINUOUS_INTEGRATION set to anything but "0" or "false", even empty. Under CI Ink draws
 * only the final frame, so the CLI picks the plain frontend there.
 */
export function isCi(env: NodeJS.ProcessEnv): boolean {
	const on = (key: string) => {
		const value = env[key];
		return value !== undefined && value !== '0' && value !== 'false';
	};
	return on('CI') || on('CONTINUOUS_INTEGRATION');
}

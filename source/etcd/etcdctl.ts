/**
 * A thin etcdctl (v3 API, as in Debian's etcd-client 3.4) wrapper: builds the argv with the
 * connection's endpoints and TLS files and runs it through the Host. Nothing here touches the
 * machine directly.
 */
import type {Arg, Host, RunResult} from '../host/types.js';
import {renderArgv} from '../host/types.js';
import type {EtcdConnection} from './connection.js';

export const ETCDCTL = 'etcdctl';

/**
 * Environment variables etcdctl reads for the flags we always pass. etcdctl 3.4 exits with
 * "conflicting environment variable ... is shadowed by corresponding command-line flag" when
 * one is set (even to an empty string) together with its flag, and operators often export
 * them in their shells on control-plane nodes. They are removed from the child's environment
 * by mapping them to `undefined`, which execa/Node's spawn drop from the environment.
 */
export const SHADOWED_ENV = ['ETCDCTL_ENDPOINTS', 'ETCDCTL_CACERT', 'ETCDCTL_CERT', 'ETCDCTL_KEY', 'ETCDCTL_COMMAND_TIMEOUT', 'ETCDCTL_WRITE_OUT'] as const;

export type EtcdctlOptions = {
	/** etcdctl's own per-request timeout (`--command-timeout`), e.g. "30s". Default 30s. */
	commandTimeout?: string;
};

/** `etcdctl --endpoints=... [--cacert P --cert P --key P] --command-timeout=30s <args>`. */
export function etcdctlArgv(connection: EtcdConnection, args: readonly Arg[], options: EtcdctlOptions = {}): Arg[] {
	if (connection.endpoints.length === 0) throw new Error('internal: etcd connection without endpoints');
	const argv: Arg[] = [ETCDCTL, `--endpoints=${connection.endpoints.join(',')}`];
	if (connection.cacert !== undefined) argv.push('--cacert', {path: connection.cacert});
	if (connection.cert !== undefined) argv.push('--cert', {path: connection.cert});
	if (connection.key !== undefined) argv.push('--key', {path: connection.key});
	argv.push(`--command-timeout=${options.commandTimeout ?? '30s'}`);
	argv.push(...args);
	return argv;
}

/** The child environment: v3 API, and none of the variables that would clash with our flags. */
export function etcdctlEnv(): Record<string, string> {
	const env: Record<string, string | undefined> = {ETCDCTL_API: '3'};
	for (const name of SHADOWED_ENV) env[name] = undefined;
	// RunOptions.env is typed as strings; undefined values are how execa (Node's spawn)
	// removes an inherited variable, see SHADOWED_ENV.
	return env as Record<string, string>;
}

export class EtcdctlError extends Error {
	override name = 'EtcdctlError';
	constructor(
		/** The rendered argv (secrets redacted). */
		readonly command: string,
		readonly exitCode: number,
		readonly stderr: string,
		readonly timedOut: boolean,
	) {
		super(
			timedOut
				? `${command} timed out`
				: `${command} failed with exit code ${exitCode}${stderr.trim() === '' ? '' : `: ${lastLines(stderr, 5)}`}`,
		);
	}
}

function lastLines(text: string, count: number): string {
	return text.trim().split('\n').slice(-count).join('\n');
}

export type EtcdctlRunOptions = EtcdctlOptions & {
	/** The command only reads (get, member list, endpoint health): runs under --dry-run too. */
	readOnly: boolean;
	timeoutMs?: number;
	input?: string | Uint8Array;
	signal?: AbortSignal;
	/** Keep stdout as bytes (`-w protobuf`). */
	binaryStdout?: boolean;
};

/** Run etcdctl through the host. Does not throw on a non-zero exit. */
export async function runEtcdctl(
	host: Host,
	connection: EtcdConnection,
	args: readonly Arg[],
	options: EtcdctlRunOptions,
): Promise<RunResult & {command: string}> {
	const argv = etcdctlArgv(connection, args, options);
	const result = await host.run(argv, {
		readOnly: options.readOnly,
		env: etcdctlEnv(),
		timeoutMs: options.timeoutMs ?? 60_000,
		...(options.input === undefined ? {} : {input: options.input}),
		...(options.signal === undefined ? {} : {signal: options.signal}),
		...(options.binaryStdout ? {binaryStdout: true} : {}),
	});
	return {...result, command: renderArgv(argv)};
}

/** Run etcdctl with `-w json` and parse its output; throws EtcdctlError on failure. */
export async function etcdctlJson<T>(
	host: Host,
	connection: EtcdConnection,
	args: readonly Arg[],
	options: EtcdctlRunOptions,
): Promise<T> {
	const result = await runEtcdctl(host, connection, [...args, '-w', 'json'], options);
	if (result.exitCode !== 0 || result.timedOut) {
		throw new EtcdctlError(result.command, result.exitCode, result.stderr, result.timedOut);
	}
	try {
		return JSON.parse(result.stdout) as T;
	} catch {
		throw new EtcdctlError(result.command, result.exitCode, `output is not JSON (${result.stdout.length} bytes)`, false);
	}
}

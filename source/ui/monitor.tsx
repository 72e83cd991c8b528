/**
 * The monitor's live dashboard: one row per signal (status, what was found, where it came
 * from), the details and advice of alerting signals, refreshed every few seconds. `q` (or
 * Ctrl-C) quits, `r` refreshes now. It only renders what the sampler returns: the view types
 * below are plain data the CLI passes in (the monitor's report has this shape).
 */
import React, {useCallback, useEffect, useRef, useState} from 'react';
import {Box, render, Text, useApp, useInput} from 'ink';

export type DashboardSignal = {
	id: string;
	title: string;
	status: 'ok' | 'alert' | 'unknown';
	value: string;
	source: string;
	advice?: string;
	details?: string[];
};
export type DashboardView = {time: string; alert: boolean; signals: DashboardSignal[]};

export type MonitorDashboardProps = {
	sample: () => Promise<DashboardView>;
	intervalMs: number;
	/** Called when the operator quits. */
	onQuit?: () => void;
};

const badge: Record<DashboardSignal['status'], {text: string; color: string}> = {
	ok: {text: ' OK  ', color: 'green'},
	alert: {text: 'ALERT', color: 'red'},
	unknown: {text: ' ?   ', color: 'yellow'},
};

export function MonitorDashboard({sample, intervalMs, onQuit}: MonitorDashboardProps): React.JSX.Element {
	const {exit} = useApp();
	const [view, setView] = useState<DashboardView | undefined>();
	const [error, setError] = useState<string | undefined>();
	const [busy, setBusy] = useState(false);
	const running = useRef(false);

	const refresh = useCallback(async () => {
		if (running.current) return;
		running.current = true;
		setBusy(true);
		try {
			setView(await sample());
			setError(undefined);
		} catch (caught) {
			setError((caught as Error).message.split('\n')[0]);
		} finally {
			running.current = false;
			setBusy(false);
		}
	}, [sample]);

	useEffect(() => {
		void refresh();
		const timer = setInterval(() => void refresh(), intervalMs);
		return () => clearInterval(timer);
	}, [refresh, intervalMs]);

	useInput((input, key) => {
		if (input === 'q' || (key.ctrl && input === 'c')) {
			onQuit?.();
			exit();
		} else if (input === 'r') {
			void refresh();
		}
	});

	return (
		<Box flexDirection="column">
			<Text bold>
				etcd-harden monitor {view ? `· ${view.time}` : ''} {busy ? '· reading…' : ''}
			</Text>
			{!view && !error ? <Text dimColor>reading etcd's log, the firewall, the apiserver's and etcd's metrics…</Text> : null}
			{error ? <Text color="red">could not sample: {error}</Text> : null}
			{view?.signals.map(signal => (
				<Box key={signal.id} flexDirection="column">
					<Box>
						<Text color={badge[signal.status].color} bold>
							{badge[signal.status].text}
						</Text>
						<Text> {signal.title}: </Text>
						<Text>{signal.value}</Text>
					</Box>
					{signal.status !== 'ok'
						? (signal.details ?? []).slice(0, 6).map((line, index) => (
								<Text key={index} dimColor>
									{'        '}
									{line}
								</Text>
							))
						: null}
					{signal.status !== 'ok' && signal.advice ? (
						<Text color={signal.status === 'alert' ? 'yellow' : undefined}>
							{'        '}
							{signal.status === 'alert' ? 'do: ' : 'why: '}
							{signal.advice}
						</Text>
					) : null}
					<Text dimColor>
						{'        '}from {signal.source}
					</Text>
				</Box>
			))}
			<Text dimColor>q quit · r refresh now · every {Math.round(intervalMs / 1000)} s</Text>
		</Box>
	);
}

/** Mount the dashboard on a terminal until the operator quits. */
export async function runMonitorDashboard(props: MonitorDashboardProps, io: {stdin: NodeJS.ReadStream; stdout: NodeJS.WriteStream}): Promise<void> {
	const instance = render(<MonitorDashboard {...props} />, {stdin: io.stdin, stdout: io.stdout, exitOnCtrlC: false, patchConsole: false});
	await instance.waitUntilExit();
}

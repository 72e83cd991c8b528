/**
 * `etcd-harden monitor`: the live dashboard on a terminal, one sample with --once (text or
 * --json; exit 1 when a signal alerts), the node_exporter textfile with --textfile DIR, and the
 * alerting rules as a PrometheusRule with --prometheus-rule FILE. Without a terminal and
 * without --once it prints a sample every --interval seconds (JSON lines with --json).
 */
import * as path from 'node:path';
import {exitCodes} from '../engine/contract.js';
import {RealHost} from '../host/real.js';
import type {Host} from '../host/types.js';
import {monitorSampler, prometheusRuleYaml, writeTextfile} from '../workflow/monitor.js';
import {MONITOR_DEFAULTS, type MonitorReport} from '../monitor/signals.js';
import {isCi} from '../ui/format.js';
import type {CliOptions} from './args.js';
/** What the command needs of the CLI's streams (main.ts's Io). */
type Io = {stdin: NodeJS.ReadStream; stdout: NodeJS.WriteStream; stderr: NodeJS.WriteStream; handleSignals: boolean};

const STATUS_TEXT = {ok: 'OK   ', alert: 'ALERT', unknown: '?    '} as const;

export function reportText(report: MonitorReport): string {
	const lines = [`etcd-harden monitor ${report.time}`];
	for (const signal of report.signals) {
		lines.push(`  ${STATUS_TEXT[signal.status]} ${signal.title}: ${signal.value}`);
		if (signal.status !== 'ok') for (const detail of signal.details ?? []) lines.push(`        ${detail}`);
		if (signal.status !== 'ok' && signal.advice) lines.push(`        ${signal.status === 'alert' ? 'do' : 'why'}: ${signal.advice}`);
		lines.push(`        from ${signal.source}`);
	}
	lines.push(report.alert ? 'ALERT: at least one signal needs attention' : 'no alert');
	return `${lines.join('\n')}\n`;
}

export async function monitorCommand(host: Host, options: CliOptions, io: Io): Promise<number> {
	const flags = options.monitor;
	const settings = {
		...(flags.etcdLog ? {etcdLog: flags.etcdLog} : {}),
		...(options.kubeconfig ? {kubeconfig: options.kubeconfig} : {}),
		...(flags.readThreshold ? {thresholds: {secretReadsPerSecond: flags.readThreshold}} : {}),
	};
	if (flags.prometheusRule) {
		// The operator's path, like --answers: not under --root.
		await new RealHost('/').writeFileAtomic(path.resolve(flags.prometheusRule), prometheusRuleYaml(), 0o644);
		io.stderr.write(`wrote the alerting rules as a PrometheusRule to ${flags.prometheusRule}\n`);
		if (!flags.once && !flags.textfile) return exitCodes.ok;
	}
	const intervalMs = (flags.intervalSeconds ?? MONITOR_DEFAULTS.refreshSeconds) * 1000;
	if (flags.once || flags.textfile) {
		const report = await monitorSampler(host, settings, true)();
		if (flags.textfile) {
			const file = await writeTextfile(host, flags.textfile, report);
			io.stderr.write(`wrote ${file}\n`);
		}
		if (flags.once) io.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : reportText(report));
		return flags.once && report.alert ? exitCodes.failed : exitCodes.ok;
	}
	// The dashboard keeps its samples in memory: the state file belongs to --once and --textfile runs.
	const sample = monitorSampler(host, settings, false);
	if (io.stdout.isTTY && io.stdin.isTTY && typeof io.stdin.setRawMode === 'function' && !isCi(process.env)) {
		const {runMonitorDashboard} = await import('../ui/monitor.js');
		await runMonitorDashboard({sample, intervalMs}, {stdin: io.stdin, stdout: io.stdout});
		return exitCodes.ok;
	}
	const stop = new AbortController();
	const onSignal = (): void => stop.abort();
	if (io.handleSignals) {
		process.on('SIGINT', onSignal);
		process.on('SIGTERM', onSignal);
	}
	try {
		while (!stop.signal.aborted) {
			const report = await sample();
			io.stdout.write(options.json ? `${JSON.stringify(report)}\n` : `${reportText(report)}\n`);
			await host.sleep(intervalMs, stop.signal).catch(() => undefined);
		}
	} finally {
		process.off('SIGINT', onSignal);
		process.off('SIGTERM', onSignal);
	}
	return exitCodes.ok;
}

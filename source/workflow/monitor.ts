/**
 * `monitor`: collect the signals (source/discover/monitor.ts), evaluate them against the
 * previous sample (source/monitor/signals.ts), keep the state for the next run (0600 under the
 * state directory), and write the node_exporter textfile or the PrometheusRule on request.
 */
import {posix} from 'node:path';
import {STATE_DIR} from '../engine/contract.js';
import type {Host} from '../host/types.js';
import {collectMonitorInputs, type MonitorSources} from '../discover/monitor.js';
import {fileDiscovery} from './node.js';
import {evaluate, MONITOR_DEFAULTS, type MonitorReport, type MonitorState, type Thresholds} from '../monitor/signals.js';
import {monitoringTemplates} from '../monitor/templates.generated.js';
import {prometheusRule, renderTextfile, TEXTFILE_NAME} from '../monitor/textfile.js';

export const MONITOR_STATE_FILE = posix.join(STATE_DIR, 'monitor-state.json');
export const RULES_FILE_NAME = 'etcd-harden.rules.yaml';

export type MonitorSettings = MonitorSources & {thresholds?: Partial<Thresholds>};

async function loadState(host: Host): Promise<MonitorState | undefined> {
	const text = await host.readText(MONITOR_STATE_FILE).catch(() => undefined);
	if (!text) return undefined;
	try {
		const state = JSON.parse(text) as MonitorState;
		return typeof state.time === 'string' && typeof state.counters === 'object' ? state : undefined;
	} catch {
		return undefined; // a damaged state only costs one sample's rates
	}
}

/** A sampler that keeps its state in memory (the dashboard) or in the state file (--once, --textfile). */
export function monitorSampler(host: Host, settings: MonitorSettings, persist: boolean): () => Promise<MonitorReport> {
	let previous: MonitorState | undefined;
	let loaded = false;
	const thresholds: Thresholds = {...MONITOR_DEFAULTS, ...settings.thresholds};
	return async () => {
		if (!loaded) {
			previous = await loadState(host);
			loaded = true;
		}
		const facts = await fileDiscovery(host);
		const inputs = await collectMonitorInputs(host, facts, settings, previous);
		const {report, state} = evaluate(inputs, previous, thresholds);
		previous = state;
		if (persist) await host.writeFileAtomic(MONITOR_STATE_FILE, `${JSON.stringify(state)}\n`, 0o600);
		return report;
	};
}

/** DIR/etcd-harden.prom, written atomically (node_exporter never reads half a file). */
export async function writeTextfile(host: Host, dir: string, report: MonitorReport): Promise<string> {
	const file = posix.join(dir, TEXTFILE_NAME);
	await host.writeFileAtomic(file, renderTextfile(report), 0o644);
	return file;
}

export function rulesYaml(): string {
	return monitoringTemplates[RULES_FILE_NAME];
}

export function prometheusRuleYaml(): string {
	return prometheusRule(rulesYaml());
}

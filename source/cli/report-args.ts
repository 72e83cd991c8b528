/** The flags of `monitor` and the report flags of `status`, checked: each only with its command. */
import {InputError} from '../engine/contract.js';

export type MonitorCliOptions = {
	once: boolean;
	textfile?: string;
	etcdLog?: string;
	prometheusRule?: string;
	intervalSeconds?: number;
	readThreshold?: number;
};
export type StatusCliOptions = {format: 'text' | 'json' | 'kube-bench'; rbacProposal?: string};

/** The parseArgs declarations of these flags (spread into the CLI's option table). */
export const reportFlagSpecs = {
	once: {type: 'boolean', default: false},
	textfile: {type: 'string'},
	'etcd-log': {type: 'string'},
	'prometheus-rule': {type: 'string'},
	interval: {type: 'string'},
	'read-threshold': {type: 'string'},
	format: {type: 'string'},
	'rbac-proposal': {type: 'string'},
} as const;

type Values = {once?: boolean; textfile?: string; 'etcd-log'?: string; 'prometheus-rule'?: string; interval?: string; 'read-threshold'?: string; format?: string; 'rbac-proposal'?: string; json?: boolean};

function positive(flag: string, raw: string | undefined, min: number, max: number, what: string): number | undefined {
	if (raw === undefined) return undefined;
	const value = Number(raw);
	if (!Number.isFinite(value) || value < min || value > max) throw new InputError(`--${flag} ${raw}: give ${what} from ${min} to ${max}.`);
	return value;
}

export function parseReportFlags(command: string, values: Values): {monitor: MonitorCliOptions; status: StatusCliOptions} {
	const monitorFlags = ['once', 'textfile', 'etcd-log', 'prometheus-rule', 'interval', 'read-threshold'] as const;
	if (command !== 'monitor') {
		for (const flag of monitorFlags) {
			if (values[flag] !== undefined && values[flag] !== false) throw new InputError(`--${flag} belongs to the monitor command: etcd-harden monitor --${flag} ...`);
		}
	}
	if (command !== 'status') {
		for (const flag of ['format', 'rbac-proposal'] as const) {
			if (values[flag] !== undefined) throw new InputError(`--${flag} belongs to the status command: etcd-harden status --${flag} ...`);
		}
	}
	const format = values.format ?? (values.json ? 'json' : 'text');
	if (!['text', 'json', 'kube-bench'].includes(format)) throw new InputError(`--format ${values.format}: use text, json or kube-bench.`);
	if (values.format !== undefined && values.json && format !== 'json') throw new InputError(`--json and --format ${format} ask for two formats: use one.`);
	return {
		monitor: {
			once: values.once ?? false,
			...(values.textfile === undefined ? {} : {textfile: values.textfile}),
			...(values['etcd-log'] === undefined ? {} : {etcdLog: values['etcd-log']}),
			...(values['prometheus-rule'] === undefined ? {} : {prometheusRule: values['prometheus-rule']}),
			...(values.interval === undefined ? {} : {intervalSeconds: positive('interval', values.interval, 1, 3600, 'whole seconds')}),
			...(values['read-threshold'] === undefined ? {} : {readThreshold: positive('read-threshold', values['read-threshold'], 0.1, 1_000_000, 'secret reads per second')}),
		},
		status: {format: format as StatusCliOptions['format'], ...(values['rbac-proposal'] === undefined ? {} : {rbacProposal: values['rbac-proposal']})},
	};
}

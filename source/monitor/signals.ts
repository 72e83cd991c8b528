/**
 * The monitor's signals: what the collected inputs (etcd's log, the firewall's counters,
 * kube-apiserver's and etcd's metrics, the certificates) say about someone trying to get at
 * the cluster's secrets, each with where it came from and what to do. Rates come from the
 * previous sample (kept in the monitor's state file between runs, or the dashboard's last
 * refresh). Pure: inputs and the previous state in, the report and the next state out.
 */
import type {AuthEvent, AuthEventKind, AuthEventSummary} from './etcd-log.js';
import {AUTH_EVENT_ADVICE, summarizeEvents} from './etcd-log.js';
import type {LoggedDrop} from './firewall-drops.js';
import {hasMetric, sumOf, type Sample} from './prom-text.js';

export const MONITOR_DEFAULTS = {
	/** Secret reads (LIST+GET+WATCH requests) per second above which the read-rate signal alerts. */
	secretReadsPerSecond: 5,
	/** ...or above this many times the baseline (the mean of earlier quiet samples), when that is higher. */
	baselineFactor: 3,
	/** Certificates expiring within this many days alert. */
	certExpiryDays: 30,
	/** How many bytes of etcd's log the first run reads (later runs read what was added). */
	logTailBytes: 4 * 1024 * 1024,
	/** Seconds between the dashboard's refreshes. */
	refreshSeconds: 5,
} as const;

export type SignalStatus = 'ok' | 'alert' | 'unknown';
export type SignalId = 'etcd-auth' | 'unexpected-clients' | 'decryption-errors' | 'config-reload' | 'secret-reads' | 'cert-expiry';

export type Signal = {
	id: SignalId;
	title: string;
	status: SignalStatus;
	/** One line: what was found. */
	value: string;
	/** Where it came from (a file, a command, a URL). */
	source: string;
	/** What to do (for alerts), or why it is unknown. */
	advice?: string;
	/** Supporting lines (clients, users, per-verb rates). */
	details?: string[];
	/** The number behind the signal, where it has one (failed decryptions, failed reloads). */
	count?: number;
};

export type Collected<T> = {source: string; problem?: string; data?: T};

export type CertInput = {label: string; path: string; notAfter?: string; error?: string};

export type MonitorInputs = {
	/** ISO time of the collection. */
	time: string;
	/** Auth events read from etcd's log since the previous run, and where the reading stopped. */
	etcdLog: Collected<{events: AuthEvent[]; offset: number; size: number; identity: string; ownProbes?: number}>;
	/** Firewall: the DROP counters per family, and drops by source from the kernel log. */
	firewall: Collected<{backend: string; dropped?: number; bySource: LoggedDrop[]; note?: string; kernelLogStamp?: number}>;
	apiserverMetrics: Collected<Sample[]>;
	etcdMetrics: Collected<Sample[]>;
	certs: CertInput[];
};

/** Kept between runs (0600 under the state directory): offsets, cumulative counts, last counters. */
export type MonitorState = {
	time: string;
	etcdLog?: {identity: string; offset: number};
	/** The dmesg stamp of the last kernel log line read (drops are counted once). */
	kernelLogStamp?: number;
	/** Cumulative auth events since the state was created, by "kind|client|user". */
	authTotals: Record<string, number>;
	/** Counter values at `time`, for rates. */
	counters: Record<string, number>;
	/** Mean secret-read rate of earlier quiet samples, and how many. */
	baseline?: {rate: number; samples: number};
};

export type MonitorReport = {
	time: string;
	alert: boolean;
	signals: Signal[];
	/** Auth events read this time, grouped. */
	authEvents: AuthEventSummary[];
	/** Drops by source (kernel log), and the DROP counter. */
	drops: {dropped?: number; bySource: LoggedDrop[]};
	/** Secret reads per second by verb, since the previous sample (absent on a first sample). */
	secretReadRates?: Record<string, number>;
	/** The threshold the read rate was compared with. */
	secretReadThreshold: number;
	certificates: Array<CertInput & {daysLeft?: number}>;
	/** Cumulative totals for the textfile (counters survive between runs). */
	totals: {auth: Array<{kind: AuthEventKind; client: string; user: string; count: number}>; counters: Record<string, number>};
};

export type Thresholds = {secretReadsPerSecond: number; certExpiryDays: number};

const DECRYPT = 'apiserver_storage_transformation_operations_total';
const DECRYPT_OLD = 'apiserver_storage_transformation_failures_total';
const RELOAD_FAILURES = 'apiserver_encryption_config_controller_automatic_reload_failures_total';
const RELOADS = 'apiserver_encryption_config_controller_automatic_reloads_total';
const REQUESTS = 'apiserver_request_total';
const READ_VERBS = ['LIST', 'GET', 'WATCH'] as const;

function unknown(id: SignalId, title: string, input: Collected<unknown>): Signal {
	return {id, title, status: 'unknown', value: 'not read', source: input.source, advice: input.problem ?? 'not collected'};
}

function authSignal(inputs: MonitorInputs): Signal {
	const title = 'etcd authentication and TLS failures';
	if (!inputs.etcdLog.data) return unknown('etcd-auth', title, inputs.etcdLog);
	const groups = summarizeEvents(inputs.etcdLog.data.events);
	const total = groups.reduce((sum, group) => sum + group.count, 0);
	const own = inputs.etcdLog.data.ownProbes ?? 0;
	const ownNote = own > 0 ? ` (${own} refusal${own === 1 ? '' : 's'} of etcd-harden's own probes left out)` : '';
	if (total === 0) return {id: 'etcd-auth', title, status: 'ok', value: `no failures since the last read${ownNote}`, source: inputs.etcdLog.source};
	const kinds = [...new Set(groups.map(group => group.kind))];
	return {
		id: 'etcd-auth',
		title,
		status: 'alert',
		value: `${total} failure${total === 1 ? '' : 's'}: ${kinds.join(', ')}${ownNote}`,
		source: inputs.etcdLog.source,
		advice: kinds.map(kind => AUTH_EVENT_ADVICE[kind]).join(' '),
		details: groups.map(group => `${group.count}x ${group.kind}${group.client ? ` from ${group.client}` : ''}${group.user ? ` as ${group.user}` : ''}${group.last ? ` (last ${group.last})` : ''}`),
	};
}

function firewallSignal(inputs: MonitorInputs, previous: MonitorState | undefined): Signal {
	const title = 'Connections from unexpected addresses';
	const data = inputs.firewall.data;
	if (!data) return unknown('unexpected-clients', title, inputs.firewall);
	const before = previous?.counters['firewall_dropped'];
	const newDrops = data.dropped !== undefined && before !== undefined && data.dropped >= before ? data.dropped - before : data.dropped;
	const logged = data.bySource.reduce((sum, drop) => sum + drop.count, 0);
	const details = data.bySource.map(drop => `${drop.count} logged drop${drop.count === 1 ? '' : 's'} from ${drop.source}${drop.port ? ` to port ${drop.port}` : ''}`);
	if (data.note) details.push(data.note);
	if ((newDrops ?? 0) === 0 && logged === 0) {
		return {id: 'unexpected-clients', title, status: 'ok', value: data.dropped === undefined ? 'no drops logged' : `no new drops (${data.dropped} in total)`, source: inputs.firewall.source, ...(details.length ? {details} : {})};
	}
	return {
		id: 'unexpected-clients',
		title,
		status: 'alert',
		value: `${newDrops ?? logged} dropped connection attempt${(newDrops ?? logged) === 1 ? '' : 's'} to etcd${data.bySource.length ? ` from ${data.bySource.map(drop => drop.source).filter((s, i, all) => all.indexOf(s) === i).join(', ')}` : ''}`,
		source: inputs.firewall.source,
		advice: 'Something not on the allow list tries to reach etcd: find the host at the source address. If it is a new control plane or etcd member, rerun etcd-harden --only firewall to allow it.',
		details,
	};
}

function decryptSignal(inputs: MonitorInputs): Signal {
	const title = 'Values kube-apiserver cannot decrypt';
	const samples = inputs.apiserverMetrics.data;
	if (!samples) return unknown('decryption-errors', title, inputs.apiserverMetrics);
	const failed = sumOf(samples, DECRYPT, {transformation_type: 'from_storage', status: value => value !== 'OK'}) + sumOf(samples, DECRYPT_OLD, {transformation_type: 'from_storage'});
	const details = samples
		.filter(sample => sample.name === DECRYPT && sample.labels['transformation_type'] === 'from_storage' && sample.labels['status'] !== 'OK' && sample.value > 0)
		.map(sample => `${sample.value} from_storage ${sample.labels['status']} with prefix ${sample.labels['transformer_prefix'] || '(none)'}`);
	if (!hasMetric(samples, DECRYPT) && !hasMetric(samples, DECRYPT_OLD)) {
		return {id: 'decryption-errors', title, status: 'ok', value: 'no transformation has run since kube-apiserver started (metric not yet exposed)', source: inputs.apiserverMetrics.source};
	}
	if (failed === 0) return {id: 'decryption-errors', title, status: 'ok', value: 'every value read from etcd was decrypted', source: inputs.apiserverMetrics.source, count: 0};
	return {
		id: 'decryption-errors',
		title,
		status: 'alert',
		value: `${failed} read${failed === 1 ? '' : 's'} from etcd failed to decrypt (${DECRYPT}, status other than OK)`,
		source: inputs.apiserverMetrics.source,
		count: failed,
		advice: 'A stored value is corrupt or was encrypted with a key this apiserver does not have (a lost key, a config that differs between control planes, or a value written around the apiserver): run etcd-harden status --deep to find which objects, and compare the encryption config on every control plane.',
		details,
	};
}

function reloadSignal(inputs: MonitorInputs): Signal {
	const title = 'Encryption config reloads';
	const samples = inputs.apiserverMetrics.data;
	if (!samples) return unknown('config-reload', title, inputs.apiserverMetrics);
	if (!hasMetric(samples, RELOAD_FAILURES) && !hasMetric(samples, RELOADS)) {
		return {id: 'config-reload', title, status: 'ok', value: 'not exposed (automatic reload is off, or kube-apiserver is older than 1.26)', source: inputs.apiserverMetrics.source};
	}
	const failures = sumOf(samples, RELOAD_FAILURES) + sumOf(samples, RELOADS, {status: 'failure'});
	if (failures === 0) return {id: 'config-reload', title, status: 'ok', value: 'no failed reload', source: inputs.apiserverMetrics.source, count: 0};
	return {
		id: 'config-reload',
		title,
		status: 'alert',
		value: `${failures} failed reload${failures === 1 ? '' : 's'} of the encryption config`,
		count: failures,
		source: inputs.apiserverMetrics.source,
		advice: 'kube-apiserver keeps the previous config after a failed reload: check the file (etcd-harden status) and its sha256 annotation, and fix it before the apiserver restarts with it.',
	};
}

function readCounters(inputs: MonitorInputs): Record<string, number> {
	const counters: Record<string, number> = {};
	const samples = inputs.apiserverMetrics.data;
	if (samples) for (const verb of READ_VERBS) counters[`secret_${verb}`] = sumOf(samples, REQUESTS, {resource: 'secrets', verb});
	const etcd = inputs.etcdMetrics.data;
	if (etcd) {
		const range = hasMetric(etcd, 'etcd_debugging_mvcc_range_total') ? sumOf(etcd, 'etcd_debugging_mvcc_range_total') : sumOf(etcd, 'grpc_server_handled_total', {grpc_method: 'Range'});
		counters['etcd_range'] = range;
	}
	if (inputs.firewall.data?.dropped !== undefined) counters['firewall_dropped'] = inputs.firewall.data.dropped;
	return counters;
}

function rate(now: number, before: number | undefined, seconds: number): number | undefined {
	if (before === undefined || seconds <= 0 || now < before) return undefined;
	return (now - before) / seconds;
}

function readSignal(inputs: MonitorInputs, counters: Record<string, number>, previous: MonitorState | undefined, thresholds: Thresholds): {signal: Signal; rates?: Record<string, number>; threshold: number; total?: number} {
	const title = 'Secret read rate';
	const baseline = previous?.baseline;
	const threshold = Math.max(thresholds.secretReadsPerSecond, baseline && baseline.samples >= 3 ? baseline.rate * MONITOR_DEFAULTS.baselineFactor : 0);
	if (!inputs.apiserverMetrics.data) return {signal: unknown('secret-reads', title, inputs.apiserverMetrics), threshold};
	const seconds = previous ? (Date.parse(inputs.time) - Date.parse(previous.time)) / 1000 : 0;
	const rates: Record<string, number> = {};
	for (const verb of READ_VERBS) {
		const value = rate(counters[`secret_${verb}`] ?? 0, previous?.counters[`secret_${verb}`], seconds);
		if (value !== undefined) rates[verb] = value;
	}
	const etcdRange = rate(counters['etcd_range'] ?? 0, previous?.counters['etcd_range'], seconds);
	if (Object.keys(rates).length === 0) {
		return {
			signal: {id: 'secret-reads', title, status: 'ok', value: 'first sample taken: the rate is known from the next run on', source: inputs.apiserverMetrics.source},
			threshold,
		};
	}
	const total = Object.values(rates).reduce((sum, value) => sum + value, 0);
	const details = [
		...READ_VERBS.map(verb => `${verb}: ${(rates[verb] ?? 0).toFixed(2)}/s`),
		`over ${seconds.toFixed(0)} s; threshold ${threshold.toFixed(2)}/s${baseline ? ` (baseline ${baseline.rate.toFixed(2)}/s over ${baseline.samples} samples)` : ''}`,
		...(etcdRange === undefined ? [] : [`etcd range requests: ${etcdRange.toFixed(2)}/s (${inputs.etcdMetrics.source})`]),
	];
	const value = `${total.toFixed(2)} secret reads/s (LIST+GET+WATCH requests)`;
	if (total <= threshold) return {signal: {id: 'secret-reads', title, status: 'ok', value, source: inputs.apiserverMetrics.source, details}, rates, threshold, total};
	return {
		signal: {
			id: 'secret-reads',
			title,
			status: 'alert',
			value: `${value}, above ${threshold.toFixed(2)}/s`,
			source: inputs.apiserverMetrics.source,
			advice: "Someone reads Secrets far more often than usual: find who in the apiserver's audit log (user and source IP of LIST/GET on secrets), and check who may (etcd-harden status, the RBAC findings).",
			details,
		},
		rates,
		threshold,
		total,
	};
}

function certSignal(inputs: MonitorInputs, thresholds: Thresholds): {signal: Signal; certificates: MonitorReport['certificates']} {
	const now = Date.parse(inputs.time);
	const certificates = inputs.certs.map(cert => ({...cert, ...(cert.notAfter ? {daysLeft: Math.floor((Date.parse(cert.notAfter) - now) / 86_400_000)} : {})}));
	const title = 'Certificate expiry';
	const source = 'the certificates named by the etcd and kube-apiserver manifests';
	if (certificates.length === 0) return {signal: {id: 'cert-expiry', title, status: 'unknown', value: 'no certificate read', source, advice: 'The manifests name no certificate files, or they are unreadable.'}, certificates};
	const bad = certificates.filter(cert => cert.daysLeft === undefined || cert.daysLeft < thresholds.certExpiryDays);
	const soonest = Math.min(...certificates.map(cert => cert.daysLeft ?? Number.POSITIVE_INFINITY));
	const details = certificates.map(cert => `${cert.label} ${cert.path}: ${cert.error ?? (cert.daysLeft! < 0 ? `expired ${-cert.daysLeft!} days ago` : `${cert.daysLeft} days left`)}`);
	if (bad.length === 0) return {signal: {id: 'cert-expiry', title, status: 'ok', value: `soonest expiry in ${soonest} days`, source, details}, certificates};
	return {
		signal: {
			id: 'cert-expiry',
			title,
			status: 'alert',
			value: `${bad.length} certificate${bad.length === 1 ? '' : 's'} expired, unreadable or expiring within ${thresholds.certExpiryDays} days`,
			source,
			advice: 'Renew them (kubeadm certs renew etcd-server etcd-peer etcd-healthcheck-client apiserver-etcd-client), then restart the static pods; an expired certificate stops etcd or cuts the apiserver off from it.',
			details,
		},
		certificates,
	};
}

const authKey = (event: {kind: string; client?: string; user?: string}): string => `${event.kind}|${event.client ?? ''}|${event.user ?? ''}`;

/** The report for these inputs, and the state to keep for the next run. */
export function evaluate(inputs: MonitorInputs, previous: MonitorState | undefined, thresholds: Thresholds = MONITOR_DEFAULTS): {report: MonitorReport; state: MonitorState} {
	const counters = readCounters(inputs);
	const reads = readSignal(inputs, counters, previous, thresholds);
	const certs = certSignal(inputs, thresholds);
	const signals = [authSignal(inputs), firewallSignal(inputs, previous), decryptSignal(inputs), reloadSignal(inputs), reads.signal, certs.signal];

	const authTotals = {...(previous?.authTotals ?? {})};
	for (const event of inputs.etcdLog.data?.events ?? []) authTotals[authKey(event)] = (authTotals[authKey(event)] ?? 0) + 1;
	let baseline = previous?.baseline;
	if (reads.total !== undefined && reads.signal.status === 'ok') {
		const samples = Math.min((baseline?.samples ?? 0) + 1, 100);
		baseline = {rate: ((baseline?.rate ?? 0) * (samples - 1) + reads.total) / samples, samples};
	}
	const etcdLog = inputs.etcdLog.data ? {identity: inputs.etcdLog.data.identity, offset: inputs.etcdLog.data.offset} : previous?.etcdLog;
	const kernelLogStamp = inputs.firewall.data?.kernelLogStamp ?? previous?.kernelLogStamp;
	const state: MonitorState = {time: inputs.time, ...(etcdLog ? {etcdLog} : {}), ...(kernelLogStamp === undefined ? {} : {kernelLogStamp}), authTotals, counters: {...previous?.counters, ...counters}, ...(baseline ? {baseline} : {})};

	const report: MonitorReport = {
		time: inputs.time,
		alert: signals.some(signal => signal.status === 'alert'),
		signals,
		authEvents: summarizeEvents(inputs.etcdLog.data?.events ?? []),
		drops: {...(inputs.firewall.data?.dropped === undefined ? {} : {dropped: inputs.firewall.data.dropped}), bySource: inputs.firewall.data?.bySource ?? []},
		...(reads.rates ? {secretReadRates: reads.rates} : {}),
		secretReadThreshold: reads.threshold,
		certificates: certs.certificates,
		totals: {
			auth: Object.entries(authTotals).map(([key, count]) => {
				const [kind, client, user] = key.split('|') as [AuthEventKind, string, string];
				return {kind, client, user, count};
			}),
			counters,
		},
	};
	return {report, state};
}

/** Where to start reading etcd's log: after the previous read of the same file, unless it was rotated. */
export function logReadStart(previous: MonitorState | undefined, identity: string, size: number, tailBytes: number = MONITOR_DEFAULTS.logTailBytes): number {
	const before = previous?.etcdLog;
	if (before && before.identity === identity && before.offset <= size) return before.offset;
	return Math.max(0, size - tailBytes);
}

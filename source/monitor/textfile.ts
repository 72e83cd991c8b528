/**
 * The monitor's report as a node_exporter textfile-collector file (the standard way a node
 * tool feeds Prometheus: node_exporter --collector.textfile.directory=DIR reads DIR/*.prom),
 * and the alerting rules that go with it as a PrometheusRule object (prometheus-operator).
 * Pure: the report in, text out. The metric names here are the ones the rules file uses.
 */
import {parse as parseYaml, stringify} from 'yaml';
import {renderExposition, type MetricFamily} from './prom-text.js';
import type {MonitorReport} from './signals.js';

export const TEXTFILE_NAME = 'etcd-harden.prom';

export function renderTextfile(report: MonitorReport): string {
	const counters = report.totals.counters;
	const families: MetricFamily[] = [
		{
			name: 'etcd_harden_etcd_auth_failures_total',
			help: "etcd authentication and TLS failures read from etcd's log by etcd-harden monitor, by kind, client address and user (CN)",
			type: 'counter',
			samples: report.totals.auth.map(entry => ({labels: {kind: entry.kind, client: entry.client, user: entry.user}, value: entry.count})),
		},
		{
			name: 'etcd_harden_firewall_dropped_packets_total',
			help: "Packets to etcd's ports dropped by chain ETCD-HARDEN (its DROP rule's counter)",
			type: 'counter',
			samples: report.drops.dropped === undefined ? [] : [{value: report.drops.dropped}],
		},
		{
			name: 'etcd_harden_firewall_logged_drops',
			help: "Dropped connection attempts to etcd in the kernel log (firewall log=true), by source address",
			type: 'gauge',
			samples: report.drops.bySource.map(drop => ({labels: {source: drop.source, port: String(drop.port ?? '')}, value: drop.count})),
		},
		{
			name: 'etcd_harden_apiserver_decryption_errors',
			help: 'Reads from etcd kube-apiserver could not decrypt since it started (apiserver_storage_transformation_operations_total, from_storage, status other than OK)',
			type: 'gauge',
			samples: signalValue(report, 'decryption-errors'),
		},
		{
			name: 'etcd_harden_encryption_config_reload_failures',
			help: "Failed automatic reloads of kube-apiserver's encryption config since it started",
			type: 'gauge',
			samples: signalValue(report, 'config-reload'),
		},
		{
			name: 'etcd_harden_secret_requests_total',
			help: 'kube-apiserver requests on secrets by verb (apiserver_request_total, resource="secrets")',
			type: 'counter',
			samples: ['LIST', 'GET', 'WATCH'].filter(verb => counters[`secret_${verb}`] !== undefined).map(verb => ({labels: {verb}, value: counters[`secret_${verb}`]!})),
		},
		{
			name: 'etcd_harden_secret_reads_per_second',
			help: 'Secret reads per second (LIST+GET+WATCH) since the previous monitor run',
			type: 'gauge',
			samples: report.secretReadRates ? [{value: Object.values(report.secretReadRates).reduce((sum, value) => sum + value, 0)}] : [],
		},
		{
			name: 'etcd_harden_etcd_range_requests_total',
			help: "etcd range (read) requests served, from etcd's metrics",
			type: 'counter',
			samples: counters['etcd_range'] === undefined ? [] : [{value: counters['etcd_range']}],
		},
		{
			name: 'etcd_harden_certificate_expiry_timestamp_seconds',
			help: 'When each etcd and apiserver-etcd certificate expires (Unix time)',
			type: 'gauge',
			samples: report.certificates.filter(cert => cert.notAfter).map(cert => ({labels: {certificate: cert.label, path: cert.path}, value: Math.floor(Date.parse(cert.notAfter!) / 1000)})),
		},
		{
			name: 'etcd_harden_signal_alert',
			help: 'Whether each monitor signal alerts (1), is quiet (0) or could not be read (-1)',
			type: 'gauge',
			samples: report.signals.map(signal => ({labels: {signal: signal.id}, value: signal.status === 'alert' ? 1 : signal.status === 'ok' ? 0 : -1})),
		},
		{
			name: 'etcd_harden_monitor_last_run_timestamp_seconds',
			help: 'When etcd-harden monitor last wrote this file (Unix time)',
			type: 'gauge',
			samples: [{value: Math.floor(Date.parse(report.time) / 1000)}],
		},
	];
	return renderExposition(families);
}

function signalValue(report: MonitorReport, id: string): Array<{value: number}> {
	const count = report.signals.find(candidate => candidate.id === id)?.count;
	return count === undefined ? [] : [{value: count}];
}

/** The rules file (templates/monitoring/etcd-harden.rules.yaml) wrapped as a PrometheusRule object. */
export function prometheusRule(rulesYaml: string, namespace = 'monitoring'): string {
	const rules = parseYaml(rulesYaml) as {groups: unknown[]};
	const object = {
		apiVersion: 'monitoring.coreos.com/v1',
		kind: 'PrometheusRule',
		metadata: {name: 'etcd-harden', namespace, labels: {'app.kubernetes.io/managed-by': 'etcd-harden'}},
		spec: {groups: rules.groups},
	};
	return `# Written by etcd-harden: the alerting rules of templates/monitoring/etcd-harden.rules.yaml as a\n# PrometheusRule (prometheus-operator). Apply it yourself: kubectl apply -f FILE\n${stringify(object)}`;
}


// The alerting rules and the textfile, checked by Prometheus's own promtool (Debian's
// prometheus package, installed by scripts/provision.sh): the rules load, every alert fires on
// its synthetic series and stays quiet on the normal ones (test/monitoring/*.test.yaml), the
// textfile the monitor writes parses as metrics, and the embedded rules equal the template.
import {execFileSync, spawnSync} from 'node:child_process';
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {parse} from 'yaml';
import {afterAll, describe, expect, test} from 'vitest';
import {monitoringTemplates} from '../../source/monitor/templates.generated.js';
import {prometheusRule, renderTextfile} from '../../source/monitor/textfile.js';
import {evaluate} from '../../source/monitor/signals.js';
import {parseEtcdLog} from '../../source/monitor/etcd-log.js';
import {parseExposition} from '../../source/monitor/prom-text.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const rulesFile = path.join(repo, 'templates/monitoring/etcd-harden.rules.yaml');
const work = mkdtempSync(path.join(tmpdir(), 'etcd-harden-rules-'));
afterAll(() => rmSync(work, {recursive: true, force: true}));

function promtool(args: string[], input?: string): {status: number; output: string} {
	const result = spawnSync('promtool', args, {encoding: 'utf8', input});
	if (result.error) throw new Error(`promtool is not installed (${result.error.message}): run sudo bash scripts/provision.sh (Debian package prometheus)`);
	return {status: result.status ?? -1, output: `${result.stdout}${result.stderr}`};
}

describe('alerting rules (promtool)', () => {
	test('promtool check rules accepts the rules file and its PrometheusRule groups', () => {
		const check = promtool(['check', 'rules', rulesFile]);
		expect(check.output).toMatch(/SUCCESS: 7 rules found/);
		expect(check.status).toBe(0);
		const object = parse(prometheusRule(readFileSync(rulesFile, 'utf8'))) as {kind: string; spec: {groups: unknown}};
		expect(object.kind).toBe('PrometheusRule');
		const groups = path.join(work, 'from-object.yaml');
		writeFileSync(groups, JSON.stringify({groups: object.spec.groups}));
		expect(promtool(['check', 'rules', groups]).status).toBe(0);
	});

	test('promtool test rules: each alert fires on its synthetic series and stays quiet on normal ones', () => {
		const result = promtool(['test', 'rules', path.join(repo, 'test/monitoring/etcd-harden.rules.test.yaml')]);
		expect(result.output).toContain('SUCCESS');
		expect(result.status).toBe(0);
	});

	test('promtool test rules fails when an expected alert does not fire (the test can fail)', () => {
		const broken = readFileSync(path.join(repo, 'test/monitoring/etcd-harden.rules.test.yaml'), 'utf8')
			.replace('../../templates/monitoring/etcd-harden.rules.yaml', rulesFile)
			.replace("values: '0 0 0 0 0 1 1 1 1 1 1'", "values: '0x30'");
		const file = path.join(work, 'broken.test.yaml');
		writeFileSync(file, broken);
		expect(promtool(['test', 'rules', file]).status).not.toBe(0);
	});

	test('the embedded rules are the template (run node templates/monitoring/generate.mjs after editing it)', () => {
		expect(monitoringTemplates['etcd-harden.rules.yaml']).toBe(readFileSync(rulesFile, 'utf8'));
		expect(execFileSync('git', ['-C', repo, 'ls-files', 'templates/monitoring/generate.mjs'], {encoding: 'utf8'}).trim()).toBe('templates/monitoring/generate.mjs');
	});
});

describe('textfile (promtool check metrics)', () => {
	test('a report with alerts renders metrics promtool accepts, with the values of the report', () => {
		const first = evaluate(
			{
				time: '2026-11-30T12:00:00.000Z',
				etcdLog: {source: '/l', data: {events: parseEtcdLog('2026-11-30 12:00:00.0 I | embed: rejected connection from "10.0.0.9:4000" (error "bad", ServerName "")\n2026-11-30 12:00:00.0 N | auth: authentication failed, invalid password for user root'), offset: 1, size: 1, identity: '/l'}},
				firewall: {source: 'i', data: {backend: 'iptables', dropped: 4, bySource: [{source: '10.77.0.3', port: 2379, count: 4}]}},
				apiserverMetrics: {source: 'm', data: parseExposition('apiserver_request_total{resource="secrets",verb="LIST"} 10\napiserver_storage_transformation_operations_total{status="Unknown",transformation_type="from_storage",transformer_prefix="k8s:enc:secretbox:v1:"} 1')},
				etcdMetrics: {source: 'e', data: parseExposition('etcd_debugging_mvcc_range_total 77')},
				certs: [{label: 'etcd serving certificate', path: '/etc/kubernetes/pki/etcd/server.crt', notAfter: '2027-01-01T00:00:00.000Z'}],
			},
			undefined,
		);
		const text = renderTextfile(first.report);
		const check = promtool(['check', 'metrics'], text);
		expect(check.output).toBe('');
		expect(check.status).toBe(0);
		const samples = parseExposition(text);
		const value = (name: string, labels: Record<string, string> = {}) =>
			samples.find(sample => sample.name === name && Object.entries(labels).every(([key, want]) => sample.labels[key] === want))?.value;
		expect(value('etcd_harden_etcd_auth_failures_total', {kind: 'tls-rejected', client: '10.0.0.9:4000'})).toBe(1);
		expect(value('etcd_harden_etcd_auth_failures_total', {kind: 'bad-password', user: 'root'})).toBe(1);
		expect(value('etcd_harden_firewall_dropped_packets_total')).toBe(4);
		expect(value('etcd_harden_firewall_logged_drops', {source: '10.77.0.3'})).toBe(4);
		expect(value('etcd_harden_apiserver_decryption_errors')).toBe(1);
		expect(value('etcd_harden_secret_requests_total', {verb: 'LIST'})).toBe(10);
		expect(value('etcd_harden_etcd_range_requests_total')).toBe(77);
		expect(value('etcd_harden_certificate_expiry_timestamp_seconds')).toBe(Date.parse('2027-01-01T00:00:00.000Z') / 1000);
		expect(value('etcd_harden_signal_alert', {signal: 'etcd-auth'})).toBe(1);
	});
});

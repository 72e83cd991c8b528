// The monitor's pure logic: the Prometheus text parser, etcd log lines of both loggers and the
// CRI format, the firewall's counters and kernel log lines, the signals and their thresholds.
import {describe, expect, test} from 'vitest';
import {ExpositionError, parseExposition, renderExposition, sumOf} from '../../source/monitor/prom-text.js';
import {parseEtcdLog, summarizeEvents} from '../../source/monitor/etcd-log.js';
import {dropCounter, loggedDrops} from '../../source/monitor/firewall-drops.js';
import {evaluate, logReadStart, type MonitorInputs} from '../../source/monitor/signals.js';

describe('Prometheus text format', () => {
	test('samples with labels, escapes, HELP/TYPE and special values', () => {
		const samples = parseExposition(
			[
				'# HELP apiserver_request_total Counter of apiserver requests',
				'# TYPE apiserver_request_total counter',
				'apiserver_request_total{code="200",resource="secrets",verb="LIST"} 12',
				'apiserver_request_total{code="200",resource="secrets",verb="GET"} 3 1700000000000',
				'apiserver_request_total{resource="pods",verb="LIST"} 99',
				'weird{path="a\\"b\\\\c\\nd", empty=""} +Inf',
				'x NaN',
				'',
			].join('\n'),
		);
		expect(samples).toHaveLength(5);
		expect(sumOf(samples, 'apiserver_request_total', {resource: 'secrets'})).toBe(15);
		expect(sumOf(samples, 'apiserver_request_total', {verb: value => value !== 'GET'})).toBe(111);
		expect(samples[3]!.labels).toEqual({path: 'a"b\\c\nd', empty: ''});
		expect(samples[3]!.value).toBe(Number.POSITIVE_INFINITY);
		expect(Number.isNaN(samples[4]!.value)).toBe(true);
	});

	test('malformed lines are errors naming the line', () => {
		expect(() => parseExposition('ok 1\nbad{a="x" 2')).toThrow(ExpositionError);
		expect(() => parseExposition('ok 1\nbad{a="x"} notanumber')).toThrow(/line 2/);
		expect(() => parseExposition('{a="b"} 1')).toThrow(/no metric name/);
	});

	test('render and parse round-trip', () => {
		const text = renderExposition([{name: 'm_total', help: 'a\nb', type: 'counter', samples: [{labels: {b: 'x"y', a: '1'}, value: 2}, {value: 3}]}]);
		expect(text).toContain('m_total{a="1",b="x\\"y"} 2');
		expect(parseExposition(text).map(sample => sample.value)).toEqual([2, 3]);
		expect(() => renderExposition([{name: 'bad-name', help: '', type: 'gauge', samples: []}])).toThrow(/not a metric name/);
	});
});

describe("etcd's log", () => {
	test('capnslog (etcd 3.4), zap JSON (3.5) and CRI-wrapped lines', () => {
		const log = [
			'2026-11-30 11:00:00.000001 I | etcdserver: published {Name:cp-1} to cluster',
			'2026-11-30 11:00:01.000001 I | embed: rejected connection from "10.0.0.99:51234" (error "remote error: tls: bad certificate", ServerName "")',
			'2026-11-30 11:00:02.000001 N | auth: authentication failed, invalid password for user root',
			'2026-11-30 11:00:03.000001 E | auth: invalid user name kube-etcd-peer for permission checking',
			'{"level":"warn","ts":"2026-11-30T11:00:04.000Z","caller":"auth/store.go:1","msg":"cannot find a user for permission check","user-name":"intruder"}',
			'2026-11-30T11:00:05.000000000Z stderr F {"level":"warn","ts":"2026-11-30T11:00:05.000Z","msg":"rejected connection","remote-addr":"10.0.0.98:40000","server-name":"","error":"tls: first record does not look like a TLS handshake"}',
			'{"level":"info","ts":"2026-11-30T11:00:06.000Z","msg":"invalid password","user-name":"root"}',
			'2026-11-30 11:00:07.000001 W | etcdserver: permission denied',
		].join('\n');
		const events = parseEtcdLog(log);
		expect(events.map(event => [event.kind, event.client ?? null, event.user ?? null])).toEqual([
			['tls-rejected', '10.0.0.99:51234', null],
			['bad-password', null, 'root'],
			['no-user-for-cert', null, 'kube-etcd-peer'],
			['no-user-for-cert', null, 'intruder'],
			['tls-rejected', '10.0.0.98:40000', null],
			['bad-password', null, 'root'],
			['permission-denied', null, null],
		]);
		expect(events[0]!.time).toBe('2026-11-30 11:00:01.000001');
		const summary = summarizeEvents(events);
		expect(summary[0]).toMatchObject({kind: 'bad-password', user: 'root', count: 2});
	});

	test('reading resumes after the previous read, and starts over on a rotated (shorter) file', () => {
		const previous = {time: '', authTotals: {}, counters: {}, etcdLog: {identity: '/log', offset: 100}};
		expect(logReadStart(previous, '/log', 150)).toBe(100);
		expect(logReadStart(previous, '/log', 50)).toBe(0);
		expect(logReadStart(previous, '/other', 10_000, 1000)).toBe(9000);
		expect(logReadStart(undefined, '/log', 10)).toBe(0);
	});
});

describe('firewall drops', () => {
	test("the DROP rule's counter from iptables-save -c, and drops by source from the kernel log", () => {
		const save = ['*filter', ':ETCD-HARDEN - [0:0]', '[5:300] -A INPUT -p tcp -m multiport --dports 2379,2380 -j ETCD-HARDEN', '[4:240] -A ETCD-HARDEN -i lo -j RETURN', '[1:60] -A ETCD-HARDEN -j DROP', 'COMMIT'].join('\n');
		expect(dropCounter(save, 'ETCD-HARDEN')).toEqual({packets: 1, bytes: 60});
		expect(dropCounter('*filter\nCOMMIT', 'ETCD-HARDEN')).toBeUndefined();
		const kernel = [
			'[  100.1] etcd-harden drop: IN=eth0 OUT= SRC=10.77.0.3 DST=10.77.0.1 LEN=60 PROTO=TCP SPT=4000 DPT=2379 SYN',
			'[  100.2] etcd-harden drop: IN=eth0 OUT= SRC=10.77.0.3 DST=10.77.0.1 LEN=60 PROTO=TCP SPT=4001 DPT=2379 SYN',
			'[  100.3] something else SRC=10.0.0.1',
			'[  100.4] etcd-harden drop: IN=eth0 OUT= SRC=fd77::3 DST=fd77::1 PROTO=TCP DPT=2380',
		].join('\n');
		expect(loggedDrops(kernel, 'etcd-harden drop: ').drops).toEqual([
			{source: '10.77.0.3', port: 2379, count: 2},
			{source: 'fd77::3', port: 2380, count: 1},
		]);
	});
});

function inputs(time: string, overrides: Partial<MonitorInputs> = {}, secretLists = 0): MonitorInputs {
	return {
		time,
		etcdLog: {source: '/log', data: {events: [], offset: 0, size: 0, identity: '/log'}},
		firewall: {source: 'iptables', data: {backend: 'iptables', dropped: 0, bySource: []}},
		apiserverMetrics: {
			source: 'https://127.0.0.1:6443/metrics',
			data: parseExposition(
				[
					`apiserver_request_total{resource="secrets",verb="LIST",code="200"} ${secretLists}`,
					'apiserver_storage_transformation_operations_total{status="OK",transformation_type="from_storage",transformer_prefix="k8s:enc:secretbox:v1:"} 10',
				].join('\n'),
			),
		},
		etcdMetrics: {source: 'http://127.0.0.1:2381/metrics', data: parseExposition('etcd_debugging_mvcc_range_total 100')},
		certs: [{label: 'etcd serving certificate', path: '/etc/kubernetes/pki/etcd/server.crt', notAfter: '2027-11-30T00:00:00.000Z'}],
		...overrides,
	};
}

describe('signals', () => {
	test('a quiet node: every signal OK, the read rate known from the second sample on', () => {
		const first = evaluate(inputs('2026-11-30T12:00:00.000Z'), undefined);
		expect(first.report.alert).toBe(false);
		expect(first.report.signals.map(signal => signal.status)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'ok']);
		expect(first.report.secretReadRates).toBeUndefined();
		const second = evaluate(inputs('2026-11-30T12:01:00.000Z', {}, 60), first.state);
		expect(second.report.secretReadRates).toEqual({LIST: 1, GET: 0, WATCH: 0});
		expect(second.report.alert).toBe(false);
	});

	test('each signal alerts on its own evidence', () => {
		const {state} = evaluate(inputs('2026-11-30T12:00:00.000Z'), undefined);
		const bad = inputs(
			'2026-11-30T12:01:40.000Z',
			{
				etcdLog: {source: '/log', data: {events: parseEtcdLog('2026-11-30 12:00:50.0 E | auth: invalid user name intruder for permission checking'), offset: 10, size: 10, identity: '/log'}},
				firewall: {source: 'iptables', data: {backend: 'iptables', dropped: 3, bySource: [{source: '10.77.0.3', port: 2379, count: 3}]}},
				apiserverMetrics: {
					source: 'm',
					data: parseExposition(
						[
							'apiserver_request_total{resource="secrets",verb="LIST"} 600',
							'apiserver_storage_transformation_operations_total{status="Unknown",transformation_type="from_storage",transformer_prefix="k8s:enc:secretbox:v1:"} 2',
							'apiserver_encryption_config_controller_automatic_reload_failures_total 1',
						].join('\n'),
					),
				},
				certs: [{label: 'etcd peer certificate', path: '/p.crt', notAfter: '2026-12-05T00:00:00.000Z'}],
			},
		);
		const {report} = evaluate(bad, state);
		expect(Object.fromEntries(report.signals.map(signal => [signal.id, signal.status]))).toEqual({
			'etcd-auth': 'alert',
			'unexpected-clients': 'alert',
			'decryption-errors': 'alert',
			'config-reload': 'alert',
			'secret-reads': 'alert',
			'cert-expiry': 'alert',
		});
		expect(report.signals[0]!.details).toEqual(['1x no-user-for-cert as intruder (last 2026-11-30 12:00:50.0)']);
		expect(report.signals[1]!.value).toContain('10.77.0.3');
		expect(report.signals[2]!.value).toMatch(/^2 reads from etcd failed to decrypt/);
		expect(report.secretReadRates!['LIST']).toBe(6);
		expect(report.alert).toBe(true);
	});

	test('the read-rate threshold follows a higher baseline, and sources that cannot be read are unknown, not OK', () => {
		let state = evaluate(inputs('2026-11-30T12:00:00.000Z'), undefined).state;
		// A cluster that normally reads 4 secrets/s: after three samples the threshold is 12/s.
		for (let minute = 1; minute <= 3; minute++) state = evaluate(inputs(`2026-11-30T12:0${minute}:00.000Z`, {}, 240 * minute), state).state;
		const eight = evaluate(inputs('2026-11-30T12:04:00.000Z', {}, 240 * 3 + 480), state).report;
		expect(eight.secretReadThreshold).toBeCloseTo(12);
		expect(eight.signals.find(signal => signal.id === 'secret-reads')!.status).toBe('ok');
		const broken = evaluate(inputs('2026-11-30T12:00:00.000Z', {apiserverMetrics: {source: 'x', problem: 'refused'}, etcdLog: {source: '/nope', problem: 'missing'}}), undefined).report;
		expect(broken.signals.filter(signal => signal.status === 'unknown').map(signal => signal.id)).toEqual(['etcd-auth', 'decryption-errors', 'config-reload', 'secret-reads']);
		expect(broken.alert).toBe(false);
	});
});

describe('kernel log stamps', () => {
	test('drops are counted once: lines up to the previous read\'s last stamp are skipped', () => {
		const kernel = ['[  100.100000] etcd-harden drop: SRC=10.77.0.3 DPT=2379', '[  200.200000] other', '[  300.300000] etcd-harden drop: SRC=10.77.0.4 DPT=2380'].join('\n');
		const all = loggedDrops(kernel, 'etcd-harden drop: ');
		expect(all.drops.map(drop => drop.source)).toEqual(['10.77.0.3', '10.77.0.4']);
		expect(all.lastStamp).toBe(300.3);
		expect(loggedDrops(kernel, 'etcd-harden drop: ', 200.2).drops.map(drop => drop.source)).toEqual(['10.77.0.4']);
		expect(loggedDrops(kernel, 'etcd-harden drop: ', 300.3).drops).toEqual([]);
	});
});

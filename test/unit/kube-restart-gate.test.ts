import {describe, expect, it} from 'vitest';
import {KubeApi} from '../../source/kube/api.js';
import {expandPaths, parseStartTime, readLogTail, RestartGateError, waitForRestart} from '../../source/kube/restart-gate.js';
import {FakeHost, text} from './kube-fake.js';
import type {HttpResponse} from '../../source/host/types.js';

const connection = {server: 'https://10.0.0.10:6443', ca: 'CA', cert: 'C', key: 'K'};
const metrics = (start: number) => `# HELP process_start_time_seconds Start time\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds ${start.toExponential(16)}\nprocess_open_fds 12\n`;

type Phase = 'refused' | {start: number; ready: boolean};

/** An apiserver whose state follows a script, one entry per poll (/readyz call). */
function scripted(host: FakeHost, phases: Phase[]) {
	let poll = -1;
	host.handler = request => {
		const path = new URL(request.url).pathname;
		if (path === '/readyz') poll = Math.min(poll + 1, phases.length - 1);
		const phase = phases[Math.max(poll, 0)]!;
		if (phase === 'refused') throw Object.assign(new Error('connect ECONNREFUSED'), {code: 'ECONNREFUSED'});
		if (path === '/metrics') return text(200, metrics(phase.start));
		const response: HttpResponse = phase.ready ? text(200, 'ok') : text(500, '[-]poststarthook/start-apiextensions-controllers failed: not finished\nreadyz check failed');
		return response;
	};
}

describe('restart gate', () => {
	it('parses process_start_time_seconds', () => {
		expect(parseStartTime(metrics(1893456000.25))).toBeCloseTo(1893456000.25, 3);
		expect(parseStartTime('process_start_time_seconds 1.7e+09\n')).toBe(1.7e9);
		expect(parseStartTime('other 1\n')).toBeUndefined();
	});

	it('waits through the old process, the refused restart and not-ready, until the new process is ready', async () => {
		const host = new FakeHost();
		const t0 = host.clock / 1000;
		const old = t0 - 3600;
		scripted(host, [{start: old, ready: true}, {start: old, ready: true}, 'refused', 'refused', {start: t0 + 3, ready: false}, {start: t0 + 3, ready: true}]);
		const states: string[] = [];
		const result = await waitForRestart(new KubeApi(host, connection), {before: old, onStatus: status => states.push(status.state)});
		expect(result.restarted).toBe(true);
		expect(result.startTime).toBeCloseTo(t0 + 3, 3);
		expect(states).toEqual(['old-process', 'old-process', 'unreachable', 'unreachable', 'restarted-not-ready', 'ready']);
		// Probes are single attempts; the gate does the polling, once a second.
		expect(host.sleeps.every(ms => ms === 1000)).toBe(true);
	});

	it('without a recorded start time, the manifest mtime is the reference', async () => {
		const host = new FakeHost();
		await host.writeFileAtomic('/etc/kubernetes/manifests/kube-apiserver.yaml', 'x', 0o600);
		const written = host.clock / 1000;
		scripted(host, [{start: written - 600, ready: true}, {start: written - 600, ready: true}, {start: written + 0.4, ready: true}]);
		const result = await waitForRestart(new KubeApi(host, connection), {manifestPath: '/etc/kubernetes/manifests/kube-apiserver.yaml'});
		expect(result.startTime).toBeCloseTo(written + 0.4, 3);
		expect(host.sleeps).toHaveLength(2);
	});

	it('times out when the old process keeps answering (kubelet never restarted it), with the log tail', async () => {
		const host = new FakeHost();
		const old = host.clock / 1000 - 100;
		scripted(host, [{start: old, ready: true}]);
		const log = Array.from({length: 40}, (_, i) => `line ${i}`).join('\n');
		await host.writeFileAtomic('/var/log/pods/kube-system_kube-apiserver-cp-1_abc/kube-apiserver/0.log', log, 0o640);
		const error = (await waitForRestart(new KubeApi(host, connection), {before: old, timeoutMs: 10_000}).catch((caught: unknown) => caught)) as RestartGateError;
		expect(error).toBeInstanceOf(RestartGateError);
		expect(error.reason).toBe('timeout');
		expect(error.message).toMatch(/did not restart and pass \/readyz within 10 s/);
		expect(error.message).toMatch(/still answers/);
		expect(error.logPath).toBe('/var/log/pods/kube-system_kube-apiserver-cp-1_abc/kube-apiserver/0.log');
		expect(error.logTail).toEqual(Array.from({length: 20}, (_, i) => `line ${i + 20}`));
		expect(error.message).toContain('  line 39');
		expect(host.clock / 1000 - old - 100).toBeGreaterThanOrEqual(10);
	});

	it('detects a crash loop from repeated new processes that never become ready', async () => {
		const host = new FakeHost();
		const t0 = host.clock / 1000;
		scripted(host, [{start: t0 - 50, ready: true}, {start: t0 + 1.5, ready: false}, 'refused', {start: t0 + 5, ready: false}, 'refused', {start: t0 + 12, ready: false}, 'refused']);
		const error = (await waitForRestart(new KubeApi(host, connection), {before: t0 - 50}).catch((caught: unknown) => caught)) as RestartGateError;
		expect(error.reason).toBe('crash-loop');
		expect(host.clock / 1000 - t0).toBeLessThan(30);
	});

	it('detects a crash loop from the kubelet log numbering', async () => {
		const host = new FakeHost();
		const dir = '/var/log/pods/kube-system_kube-apiserver-cp-1_abc/kube-apiserver';
		await host.writeFileAtomic(`${dir}/0.log`, 'first\n', 0o640);
		let polls = 0;
		host.handler = async () => {
			polls++;
			await host.writeFileAtomic(`${dir}/${polls}.log`, `E flag provided but not defined: -bogus (start ${polls})\n`, 0o640);
			throw Object.assign(new Error('connect ECONNREFUSED'), {code: 'ECONNREFUSED'});
		};
		const error = (await waitForRestart(new KubeApi(host, connection), {before: 1}).catch((caught: unknown) => caught)) as RestartGateError;
		expect(error.reason).toBe('crash-loop');
		expect(error.logTail.at(-1)).toMatch(/flag provided but not defined/);
	});

	it('after a restore, accepts the earlier process when it never went away', async () => {
		const host = new FakeHost();
		const old = host.clock / 1000 - 100;
		scripted(host, [{start: old, ready: true}]);
		const result = await waitForRestart(new KubeApi(host, connection), {before: old, notBefore: host.clock / 1000 - 1, acceptUnchanged: true});
		expect(result.restarted).toBe(false);
	});

	it('expands log path patterns segment by segment and picks the newest file', async () => {
		const host = new FakeHost();
		await host.writeFileAtomic('/var/log/pods/kube-system_kube-apiserver-a_1/kube-apiserver/0.log', 'old\n', 0o640);
		host.clock += 5000;
		await host.writeFileAtomic('/var/log/pods/kube-system_kube-apiserver-a_1/kube-apiserver/1.log', 'new\n\n', 0o640);
		await host.writeFileAtomic('/var/log/pods/kube-system_etcd-a_1/etcd/0.log', 'etcd\n', 0o640);
		const patterns = ['/var/log/pods/kube-system_kube-apiserver-*/kube-apiserver/*.log'];
		expect(await expandPaths(host, patterns)).toEqual([
			'/var/log/pods/kube-system_kube-apiserver-a_1/kube-apiserver/0.log',
			'/var/log/pods/kube-system_kube-apiserver-a_1/kube-apiserver/1.log',
		]);
		expect(await readLogTail(host, patterns)).toEqual({path: '/var/log/pods/kube-system_kube-apiserver-a_1/kube-apiserver/1.log', lines: ['new']});
		expect(await readLogTail(host, ['/nowhere/*.log'])).toBeUndefined();
	});
});

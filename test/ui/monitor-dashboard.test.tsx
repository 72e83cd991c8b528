// The monitor's Ink dashboard through ink-testing-library: it shows each signal with its
// status, the details and advice of alerts, refreshes on its interval and on `r`, shows a
// failed sample without dying, and quits on `q`.
import React from 'react';
import {render} from 'ink-testing-library';
import {describe, expect, test} from 'vitest';
import {MonitorDashboard, type DashboardView} from '../../source/ui/monitor.js';
import {stripAnsi, until} from './ink-harness.js';

const quiet: DashboardView = {
	time: '2026-11-30T12:00:00.000Z',
	alert: false,
	signals: [
		{id: 'etcd-auth', title: 'etcd authentication and TLS failures', status: 'ok', value: 'no failures since the last read', source: '/var/log/pods/kube-system_etcd-cp-1_x/etcd/0.log'},
		{id: 'secret-reads', title: 'Secret read rate', status: 'ok', value: '0.10 secret reads/s', source: 'https://127.0.0.1:6443/metrics', details: ['LIST: 0.10/s']},
	],
};
const attacked: DashboardView = {
	time: '2026-11-30T12:00:05.000Z',
	alert: true,
	signals: [
		{id: 'etcd-auth', title: 'etcd authentication and TLS failures', status: 'alert', value: '2 failures: no-user-for-cert', source: '/var/log/etcd.log', advice: 'find the client', details: ['2x no-user-for-cert as intruder']},
		{id: 'decryption-errors', title: 'Values kube-apiserver cannot decrypt', status: 'unknown', value: 'not read', source: 'https://127.0.0.1:6443/metrics', advice: 'connection refused'},
	],
};

describe('monitor dashboard', () => {
	test('renders signals, refreshes on r and on its interval, survives a failed sample, quits on q', async () => {
		const views = [quiet, attacked];
		let calls = 0;
		let quit = false;
		const sample = async (): Promise<DashboardView> => {
			calls++;
			if (calls === 3) throw new Error('kube-apiserver refused the connection\nstack');
			return views[Math.min(calls - 1, 1)]!;
		};
		const instance = render(<MonitorDashboard sample={sample} intervalMs={60_000} onQuit={() => (quit = true)} />);
		const frame = () => stripAnsi(instance.lastFrame() ?? '');
		await until(() => frame().includes('no failures since the last read'), 'the first sample');
		expect(frame()).toContain(' OK   etcd authentication and TLS failures: no failures since the last read');
		expect(frame()).toContain('from https://127.0.0.1:6443/metrics');
		expect(frame()).not.toContain('LIST: 0.10/s'); // details only for signals that need attention
		expect(frame()).toContain('q quit · r refresh now · every 60 s');

		await until(() => instance.stdin.listenerCount('readable') > 0, 'input');
		instance.stdin.write('r');
		await until(() => frame().includes('ALERT etcd authentication and TLS failures: 2 failures'), 'the second sample');
		expect(frame()).toContain('2x no-user-for-cert as intruder');
		expect(frame()).toContain('do: find the client');
		expect(frame()).toContain('why: connection refused');

		instance.stdin.write('r');
		await until(() => frame().includes('could not sample: kube-apiserver refused the connection'), 'the failed sample');
		expect(frame()).not.toContain('stack');
		expect(frame()).toContain('ALERT'); // the last good view stays on screen

		instance.stdin.write('q');
		await until(() => quit, 'quit');
		expect(calls).toBe(3);
	});

	test('refreshes by itself on the interval', async () => {
		let calls = 0;
		const instance = render(<MonitorDashboard sample={async () => ({...quiet, time: `t${++calls}`})} intervalMs={50} />);
		await until(() => calls >= 3 && (instance.lastFrame() ?? '').includes('t'), 'three samples', 5000);
		instance.unmount();
		expect(calls).toBeGreaterThanOrEqual(3);
	});
});

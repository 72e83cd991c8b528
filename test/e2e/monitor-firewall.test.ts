// The monitor's "connections from unexpected addresses" signal on real network namespaces
// (firewall-net.ts): the firewall stage applied with log=true (iptables, nf_tables variant),
// the outsider namespace tries etcd's client port, and `monitor --once --json` on the control
// plane reports the drops, from the outsider's address. Kernel log lines from a network
// namespace other than the first are only written with net.netfilter.nf_log_all_netns=1: the
// test sets it for its run and restores the previous value.
import {readFileSync, writeFileSync} from 'node:fs';
import {afterAll, beforeAll, describe, expect, test} from 'vitest';
import {hosts, startNet, type Net} from './firewall-net.js';

const SYSCTL = '/proc/sys/net/netfilter/nf_log_all_netns';
let net: Net;
let previous: string | undefined;

type Report = {alert: boolean; signals: Array<{id: string; status: string; value: string; details?: string[]; source: string}>; drops: {dropped?: number; bySource: Array<{source: string; port?: number; count: number}>}};

beforeAll(async () => {
	previous = readFileSync(SYSCTL, 'utf8').trim();
	writeFileSync(SYSCTL, '1');
	net = await startNet();
	// An existing rule in iptables-nft makes detection pick that variant.
	const existing = await net.exec('cp', ['iptables-nft', '-A', 'INPUT', '-p', 'icmp', '-j', 'ACCEPT']);
	expect(existing.exitCode, existing.stderr).toBe(0);
});

afterAll(async () => {
	await net?.stop();
	if (previous !== undefined) writeFileSync(SYSCTL, previous);
});

describe('monitor: drops from an outsider', () => {
	test('the firewall drops the outsider, and the monitor names its address', async () => {
		const apply = await net.tool(['--yes', '--plain', '--only', 'firewall', '--set', 'firewall.confirm-timeout=5', '--set', 'firewall.log=true']);
		expect(apply.exitCode, apply.stderr.slice(-3000)).toBe(0);
		// The first sample: the state later samples compare with (the kernel log may hold lines of
		// earlier runs; what they show is reported once, here).
		const first = await net.tool(['monitor', '--once', '--json']);
		expect(first.stdout, first.stderr).toMatch(/"unexpected-clients"/);

		expect(await net.tls('outsider', hosts.cp.v4, 2379)).toBe(false);
		expect(await net.tls('peer', hosts.cp.v4, 2380)).toBe(true);

		const run = await net.tool(['monitor', '--once', '--json']);
		expect(run.exitCode, run.stderr).toBe(1);
		const report = JSON.parse(run.stdout) as Report;
		const drops = report.signals.find(signal => signal.id === 'unexpected-clients')!;
		expect(drops.status).toBe('alert');
		expect(drops.source).toMatch(/iptables \(nft\) chain ETCD-HARDEN, kernel log/);
		expect(report.drops.dropped).toBeGreaterThan(0);
		expect(report.drops.bySource.map(drop => drop.source)).toEqual([hosts.outsider.v4]);
		expect(report.drops.bySource[0]).toMatchObject({port: 2379});
		expect(drops.value).toContain(`from ${hosts.outsider.v4}`);
		// Counted once: the next sample has nothing new.
		const after = JSON.parse((await net.tool(['monitor', '--once', '--json'])).stdout) as Report;
		expect(after.signals.find(signal => signal.id === 'unexpected-clients')).toMatchObject({status: 'ok'});
		expect(after.drops.bySource).toEqual([]);
	});
});

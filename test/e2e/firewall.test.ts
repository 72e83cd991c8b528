/**
 * The firewall stage on real network namespaces (see firewall-net.ts): a control plane with a
 * real two-member etcd cluster (mutual TLS), an allowed peer and an outsider. The tool runs in
 * the control plane's namespace, and every claim is proven with real TLS handshakes from each
 * namespace, before and after. The same tests run for each backend: iptables with the legacy
 * variant in use, iptables with the nf_tables variant in use, and native nftables (each picked
 * by detection from a rule the node already has, not by flag).
 */
import path from 'node:path';
import {existsSync, readdirSync, readFileSync} from 'node:fs';
import {execa} from 'execa';
import {afterAll, beforeAll, describe, expect, test} from 'vitest';
import {startPane, type Pane} from '../ui/tmux.js';
import {hosts, startNet, type Net} from './firewall-net.js';

const repo = path.resolve(import.meta.dirname, '../..');
const cli = path.join(repo, 'dist/cli.js');

type Backend = {
	name: string;
	id: 'iptables' | 'nftables';
	/** The node's existing firewall (how detection picks this backend). */
	existing: string[][];
	/** Detection note the plan must show. */
	detected: RegExp;
	/** How "someone flushed our rules" looks for this backend (a firewalld reload). */
	flush: string[][];
};

const backends: Backend[] = [
	{
		name: 'iptables (legacy variant)',
		id: 'iptables',
		existing: [['iptables-legacy', '-A', 'INPUT', '-p', 'icmp', '-j', 'ACCEPT'], ['ip6tables-legacy', '-A', 'INPUT', '-p', 'ipv6-icmp', '-j', 'ACCEPT']],
		detected: /Backend iptables \(iptables-legacy\); in use here: iptables \(iptables-legacy has 1 rule\(s\)/,
		flush: [['iptables-legacy', '-F', 'ETCD-HARDEN']],
	},
	{
		name: 'iptables (nf_tables variant)',
		id: 'iptables',
		existing: [['iptables-nft', '-A', 'INPUT', '-p', 'icmp', '-j', 'ACCEPT'], ['ip6tables-nft', '-A', 'INPUT', '-p', 'ipv6-icmp', '-j', 'ACCEPT']],
		detected: /Backend iptables \(iptables-nft\); in use here: iptables \(iptables-nft has 1 rule\(s\)/,
		flush: [['iptables-nft', '-F', 'ETCD-HARDEN']],
	},
	{
		name: 'nftables (inet table)',
		id: 'nftables',
		existing: [['nft', 'add table inet filter; add chain inet filter input { type filter hook input priority 0; policy accept; }; add rule inet filter input icmp type echo-request accept']],
		detected: /Backend nftables; in use here: nftables \(nftables tables inet filter are loaded and iptables has no rules\)/,
		flush: [['nft', 'flush', 'table', 'inet', 'etcd_harden']],
	},
];

/** Everything netfilter holds in the namespace, in every tool's view, counters zeroed. */
async function ruleset(net: Net): Promise<string> {
	const parts: string[] = [];
	for (const argv of [['iptables-legacy-save'], ['ip6tables-legacy-save'], ['iptables-nft-save'], ['ip6tables-nft-save'], ['nft', 'list', 'ruleset']]) {
		const result = await net.exec('cp', argv);
		expect(result.exitCode, `${argv.join(' ')}: ${result.stderr}`).toBe(0);
		const text = result.stdout
			.split('\n')
			.filter(line => !line.startsWith('#'))
			.map(line => line.replace(/\[\d+:\d+\]/g, '[0:0]').replace(/counter packets \d+ bytes \d+/g, 'counter'))
			.join('\n');
		parts.push(`== ${argv.join(' ')}\n${text}`);
	}
	return parts.join('\n');
}

/** Which of these connections complete a TLS handshake now. */
async function reachability(net: Net): Promise<Record<string, boolean>> {
	const probes: Array<[string, 'cp' | 'peer' | 'outsider', string, number]> = [
		['cp loopback 2379', 'cp', '127.0.0.1', 2379],
		['cp own address 2379', 'cp', hosts.cp.v4, 2379],
		['cp own v6 address 2379', 'cp', hosts.cp.v6, 2379],
		['peer 2379', 'peer', hosts.cp.v4, 2379],
		['peer 2380', 'peer', hosts.cp.v4, 2380],
		['outsider 2379', 'outsider', hosts.cp.v4, 2379],
		['outsider 2380', 'outsider', hosts.cp.v4, 2380],
		['outsider v6 2379', 'outsider', hosts.cp.v6, 2379],
		['outsider v6 2380', 'outsider', hosts.cp.v6, 2380],
	];
	const out: Record<string, boolean> = {};
	for (const [name, from, address, port] of probes) out[name] = await net.tls(from, address, port);
	return out;
}

const answers = ['--set', 'firewall.confirm-timeout=5'];
/** Every question answered up front except the confirmations (for the interactive runs). */
const interactive = (backend: Backend, clientCidrs = ''): string[] => [
	...answers, '--set', `firewall.backend=${backend.id}`, '--set', `firewall.client-cidrs=${clientCidrs}`, '--set', 'firewall.peer-cidrs=',
	'--set', 'firewall.exclude=', '--set', 'firewall.log=false',
];
/** The confirm timeout above plus the watchdog's grace (source/firewall/watchdog.ts). */
const watchdogDeadlineMs = (5 + 10) * 1000;

const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));

/** Pids of processes in cp's network namespace whose command line contains `needle`. */
async function pidsIn(net: Net, needle: string): Promise<number[]> {
	const result = await execa('ip', ['netns', 'pids', net.ns.cp], {reject: false});
	const out: number[] = [];
	for (const pid of String(result.stdout).split('\n').filter(Boolean).map(Number)) {
		try {
			if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some(arg => arg.includes(needle))) out.push(pid);
		} catch {
			// ended meanwhile
		}
	}
	return out;
}

/** The process exists and is not a zombie. */
function running(pid: number): boolean {
	try {
		return !/^\d+ \(.*\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
	} catch {
		return false;
	}
}

/** Whether `condition` holds within `timeoutMs` (polled). */
async function within(timeoutMs: number, condition: () => boolean | Promise<boolean>): Promise<boolean> {
	const end = Date.now() + timeoutMs;
	for (;;) {
		if (await condition()) return true;
		if (Date.now() > end) return false;
		await sleep(200);
	}
}

/** The newest run directory the tool wrote in cp (overlay upper dir). */
function newestRun(net: Net): string {
	const runs = net.upper('/var/lib/etcd-harden/runs');
	const newest = readdirSync(runs).sort().at(-1);
	if (!newest) throw new Error('no run directory');
	return path.join(runs, newest);
}

describe.each(backends)('firewall stage: $name', backend => {
	let net: Net;
	let baseline: string;
	let pane: Pane | undefined;

	beforeAll(async () => {
		net = await startNet();
		for (const argv of backend.existing) {
			const result = await net.exec('cp', argv[0] === 'nft' ? ['nft', argv[1]!] : argv);
			expect(result.exitCode, result.stderr).toBe(0);
		}
		baseline = await ruleset(net);
	});

	afterAll(async () => {
		pane?.close();
		await net?.stop();
	});

	test('before the stage every host reaches both ports', async () => {
		expect(await reachability(net)).toEqual({
			'cp loopback 2379': true,
			'cp own address 2379': true,
			'cp own v6 address 2379': true,
			'peer 2379': true,
			'peer 2380': true,
			'outsider 2379': true,
			'outsider 2380': true,
			'outsider v6 2379': true,
			'outsider v6 2380': true,
		});
	});

	test('--dry-run shows the exact rules and the detected backend, and changes nothing', async () => {
		const result = await net.tool(['--yes', '--plain', '--dry-run', '--only', 'firewall', ...answers]);
		expect(result.exitCode, result.stderr).toBe(0);
		expect(result.stderr).toMatch(backend.detected);
		expect(result.stderr).toContain(`allow ${hosts.peer.v4}/32 -> 2380: etcd member peer peer URL https://${hosts.peer.v4}:2380`);
		expect(result.stderr).toContain('allow interface lo -> 2379 and 2380: loopback (always allowed)');
		expect(result.stderr).toMatch(backend.name.startsWith('nftables') ? /tcp dport \{ 2379, 2380 \} jump etcd/ : /-I INPUT 1 -p tcp -m multiport --dports 2379,2380/);
		expect(await ruleset(net)).toBe(baseline);
	});

	test('a plan that would block a member is refused, naming it; nothing changes', async () => {
		const result = await net.tool(['--yes', '--plain', '--only', 'firewall', ...answers, '--set', `firewall.exclude=${hosts.peer.v4}`]);
		expect(result.exitCode).toBe(2);
		expect(result.stderr).toContain(`refusing firewall rules that would cut off the cluster`);
		expect(result.stderr).toContain(`etcd member peer (peer URL https://${hosts.peer.v4}:2380) would be blocked: no rule allows port 2380 from ${hosts.peer.v4}`);
		expect(await ruleset(net)).toBe(baseline);
	});

	test('interactively, no confirmation within the timeout restores the exact previous ruleset', async () => {
		pane = startPane(net.toolArgv(['node', cli, '--plain', '--only', 'firewall', ...interactive(backend)]), {cwd: repo, columns: 160, rows: 60});
		await pane.waitFor(screen => /Apply these changes/.test(screen), 'the preview confirm', 60_000);
		pane.send('y');
		pane.send('Enter');
		await pane.waitFor(screen => /answer within \d+ s/.test(screen), 'the timed confirm', 60_000);
		// While it waits, the new rules are in force: the outsider is already cut off.
		expect(await net.tls('outsider', hosts.cp.v4, 2379)).toBe(false);
		// Nobody answers.
		expect(await pane.waitForExit(60_000)).toBe(3);
		const screen = pane.screen();
		expect(screen).toMatch(/↺ Firewall etcd's ports: rolled back/);
		expect(screen).toMatch(/the new rules were not confirmed within 5 s; the previous rules are restored/);
		pane.close();
		pane = undefined;
		expect(await ruleset(net)).toBe(baseline);
		expect(await net.tls('outsider', hosts.cp.v4, 2379)).toBe(true);
	});

	test('the tool SIGKILLed while waiting for confirmation: the detached watchdog restores the exact previous ruleset', async () => {
		expect(await ruleset(net)).toBe(baseline);
		pane = startPane(net.toolArgv(['node', cli, '--plain', '--only', 'firewall', ...interactive(backend)]), {cwd: repo, columns: 160, rows: 60});
		await pane.waitFor(screen => /Apply these changes/.test(screen), 'the preview confirm', 60_000);
		pane.send('y');
		pane.send('Enter');
		await pane.waitFor(screen => /answer within \d+ s/.test(screen), 'the timed confirm', 60_000);
		expect(await net.tls('outsider', hosts.cp.v4, 2379)).toBe(false);
		const tool = await pidsIn(net, 'dist/cli.js');
		const watchdog = await pidsIn(net, 'etcd-harden-watchdog');
		expect(tool).toHaveLength(1);
		expect(watchdog).toHaveLength(1);
		const run = newestRun(net);
		expect(readFileSync(path.join(run, 'firewall-watchdog.pid'), 'utf8').trim()).toBe(String(watchdog[0]));
		process.kill(tool[0]!, 'SIGKILL');
		expect(await pane.waitForExit(10_000)).toBe(137);
		pane.close();
		pane = undefined;
		// The tool is gone and its rules are still in force: nothing of it can restore them now.
		expect(running(tool[0]!)).toBe(false);
		expect(await net.tls('outsider', hosts.cp.v4, 2379)).toBe(false);
		// The watchdog restores them at its deadline, then exits.
		expect(await within(watchdogDeadlineMs + 20_000, () => !running(watchdog[0]!))).toBe(true);
		expect(await ruleset(net)).toBe(baseline);
		expect(await net.tls('outsider', hosts.cp.v4, 2379)).toBe(true);
		expect(await net.tls('outsider', hosts.cp.v4, 2380)).toBe(true);
		expect(readFileSync(path.join(run, 'firewall-watchdog-reverted'), 'utf8')).toMatch(/result: restored/);
		expect(existsSync(path.join(run, 'firewall-watchdog.pid'))).toBe(false);
		expect(existsSync(path.join(run, 'firewall-confirmed'))).toBe(false);
		// status reports what the watchdog did.
		const status = await net.tool(['status', '--only', 'firewall', '--json']);
		expect(JSON.parse(status.stdout)).toContainEqual(expect.objectContaining({id: 'watchdog', status: 'WARN'}));
	});

	test('applied: the control plane and the peer get through, the outsider does not; the cluster stays healthy', async () => {
		const result = await net.tool(['--yes', '--plain', '--only', 'firewall', ...answers]);
		expect(result.exitCode, result.stderr).toBe(0);
		expect(result.stderr).toMatch(/with the new rules: .*healthy.*healthy/);
		expect(await reachability(net)).toEqual({
			'cp loopback 2379': true,
			'cp own address 2379': true,
			'cp own v6 address 2379': true,
			'peer 2379': true,
			'peer 2380': true,
			'outsider 2379': false,
			'outsider 2380': false,
			'outsider v6 2379': false,
			'outsider v6 2380': false,
		});
		expect(await net.etcdHealthy()).toBe(true);
		// Other rules are untouched.
		const now = await ruleset(net);
		for (const line of baseline.split('\n').filter(line => /icmp|echo-request/.test(line))) expect(now).toContain(line);
	});

	test('a second run changes nothing: the ruleset is identical', async () => {
		const before = await ruleset(net);
		const result = await net.tool(['--yes', '--plain', '--only', 'firewall', ...answers]);
		expect(result.exitCode, result.stderr).toBe(0);
		expect(result.stdout).toContain("Firewall etcd's ports: already in place, nothing changed.");
		expect(await ruleset(net)).toBe(before);
	});

	test('persistence: written where the distribution loads it, or a warning that it will not survive a reboot', async () => {
		if (backend.name.startsWith('nftables')) {
			const file = readFileSync(net.upper('/etc/nftables.d/etcd-harden.nft'), 'utf8');
			expect(file).toContain('table inet etcd_harden {');
			expect(readFileSync(net.upper('/etc/nftables.conf'), 'utf8')).toContain('include "/etc/nftables.d/etcd-harden.nft"');
			const check = await net.exec('cp', net.toolArgv(['nft', '-c', '-f', '/etc/nftables.conf']).slice(4));
			expect(check.exitCode, check.stderr).toBe(0);
		} else {
			// This machine has no netfilter-persistent.
			expect(existsSync(net.upper('/etc/iptables/rules.v4'))).toBe(false);
			const result = await net.tool(['--yes', '--plain', '--dry-run', '--only', 'firewall', ...answers]);
			expect(result.stderr).toContain('netfilter-persistent is not installed, so these rules will NOT survive a reboot');
		}
	});

	test('status: complete after applying; a flush (e.g. a firewalld reload) fails it, and a rerun repairs it', async () => {
		const good = await net.tool(['status', '--only', 'firewall', '--json']);
		const rows = JSON.parse(good.stdout) as Array<{id: string; status: string}>;
		expect(rows.map(row => `${row.id} ${row.status}`)).toEqual(['rules PASS', 'members PASS']);
		for (const argv of backend.flush) expect((await net.exec('cp', argv)).exitCode).toBe(0);
		expect(await net.tls('outsider', hosts.cp.v4, 2379)).toBe(true);
		const bad = await net.tool(['status', '--only', 'firewall', '--json']);
		expect(bad.exitCode).toBe(1);
		expect(JSON.parse(bad.stdout)).toContainEqual(expect.objectContaining({id: 'rules', status: 'FAIL'}));
		const repair = await net.tool(['--yes', '--plain', '--only', 'firewall', ...answers]);
		expect(repair.exitCode, repair.stderr).toBe(0);
		expect(await net.tls('outsider', hosts.cp.v4, 2379)).toBe(false);
		expect((await net.tool(['status', '--only', 'firewall'])).exitCode).toBe(0);
	});
	test('a confirmed change stays: the watchdog stops and nothing is reverted after its deadline', async () => {
		const before = await ruleset(net);
		expect(await net.tls('outsider', hosts.cp.v4, 2379)).toBe(false);
		// A real change: the outsider's address is added for the client port.
		pane = startPane(net.toolArgv(['node', cli, '--plain', '--only', 'firewall', ...interactive(backend, `${hosts.outsider.v4}/32`)]), {cwd: repo, columns: 160, rows: 60});
		await pane.waitFor(screen => /Apply these changes/.test(screen), 'the preview confirm', 60_000);
		pane.send('y');
		pane.send('Enter');
		await pane.waitFor(screen => /answer within \d+ s/.test(screen), 'the timed confirm', 60_000);
		const watchdog = await pidsIn(net, 'etcd-harden-watchdog');
		expect(watchdog).toHaveLength(1);
		pane.send('y');
		pane.send('Enter');
		expect(await pane.waitForExit(60_000)).toBe(0);
		pane.close();
		pane = undefined;
		const run = newestRun(net);
		expect(existsSync(path.join(run, 'firewall-confirmed'))).toBe(true);
		expect(await within(10_000, () => !running(watchdog[0]!))).toBe(true);
		const applied = await ruleset(net);
		expect(applied).not.toBe(before);
		// Past the deadline the watchdog would have had.
		await sleep(watchdogDeadlineMs + 3_000);
		expect(await ruleset(net)).toBe(applied);
		expect(existsSync(path.join(run, 'firewall-watchdog-reverted'))).toBe(false);
		expect(await net.tls('outsider', hosts.cp.v4, 2379)).toBe(true);
		expect(await net.tls('outsider', hosts.cp.v4, 2380)).toBe(false);
	});
});

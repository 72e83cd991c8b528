/**
 * The firewall watchdog's rendering (pure), plus the rendered script run by a real sh against
 * stub firewall commands in a temporary directory (nothing outside it is touched).
 */
import {execFileSync, spawnSync} from 'node:child_process';
import {chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {afterEach, describe, expect, test} from 'vitest';
import {JUMP_LINE, parseSave} from '../../source/firewall/iptables.js';
import {revertScript} from '../../source/firewall/nft.js';
import {parseReverted, revertLines, watchdogArgv, watchdogPlan, WATCHDOG_FILES} from '../../source/firewall/watchdog.js';

const table = 'table inet etcd_harden {\n\tchain input {\n\t}\n}\n';

const withChain = parseSave(
	['*filter', ':INPUT ACCEPT [0:0]', ':ETCD-HARDEN - [0:0]', '-A INPUT -p icmp -j ACCEPT', JUMP_LINE, '-A ETCD-HARDEN -i lo -m comment --comment loopback -j RETURN', '-A ETCD-HARDEN -j DROP', 'COMMIT', ''].join('\n'),
);
const withoutChain = parseSave(['*filter', ':INPUT ACCEPT [0:0]', '-A INPUT -p icmp -j ACCEPT', 'COMMIT', ''].join('\n'));
const noTable = parseSave('');
const v4 = {save: 'iptables-nft-save', restore: 'iptables-nft-restore'};
const v6 = {save: 'ip6tables-nft-save', restore: 'ip6tables-nft-restore'};

describe('watchdog rendering', () => {
	test('nftables: the saved table comes back in one nft -f transaction', () => {
		const plan = watchdogPlan({backend: 'nftables', table});
		expect(plan.files).toEqual({'firewall-revert.nft': revertScript(table)});
		expect(plan.script).toContain(`nft -f "$dir/firewall-revert.nft"`);
		expect(plan.script).not.toContain('{{REVERT}}');
		expect(watchdogPlan({backend: 'nftables'}).files['firewall-revert.nft']).toBe('table inet etcd_harden\ndelete table inet etcd_harden\n');
	});

	test('iptables, chain present before: declared, refilled, live jumps deleted, earlier jumps inserted, one commit', () => {
		const {files, lines} = revertLines({backend: 'iptables', variant: 'nft', families: [{family: 4, commands: v4, before: withChain}]});
		expect(files['firewall-revert-v4.head']).toBe(':ETCD-HARDEN - [0:0]\n-A ETCD-HARDEN -i lo -m comment --comment loopback -j RETURN\n-A ETCD-HARDEN -j DROP\n'.replace(/^/, '*filter\n'));
		expect(files['firewall-revert-v4.tail']).toBe('-I INPUT 2 -p tcp -m multiport --dports 2379,2380 -m comment --comment etcd-harden -j ETCD-HARDEN\nCOMMIT\n');
		expect(lines.join('\n')).toContain(
			`{ cat "$dir/firewall-revert-v4.head"; iptables-nft-save -t filter 2>/dev/null | grep -E '^-A INPUT .*-j ETCD-HARDEN *$' | sed 's/^-A /-D /'; cat "$dir/firewall-revert-v4.tail"; } | iptables-nft-restore --noflush`,
		);
		expect(lines.join('\n')).not.toMatch(/-X ETCD-HARDEN|delete table/);
	});

	test('iptables, no chain before: jumps removed, chain flushed and deleted; the empty filter table only when iptables-nft made it', () => {
		const made = revertLines({backend: 'iptables', variant: 'nft', families: [{family: 4, commands: v4, before: withoutChain}, {family: 6, commands: v6, before: noTable}]});
		expect(made.files).toEqual({});
		const text = made.lines.join('\n');
		expect(text).toContain('iptables-nft -t filter -F ETCD-HARDEN');
		expect(text).toContain('ip6tables-nft -t filter -X ETCD-HARDEN');
		expect(text).not.toContain('nft delete table ip filter');
		expect(text).toContain('nft delete table ip6 filter');
		const legacy = revertLines({backend: 'iptables', variant: 'legacy', families: [{family: 4, commands: {save: 'iptables-legacy-save', restore: 'iptables-legacy-restore'}, before: noTable}]});
		expect(legacy.lines.join('\n')).not.toContain('delete table');
		expect(legacy.lines.join('\n')).toContain('iptables-legacy -t filter -X ETCD-HARDEN');
	});

	test('argv: sh -c SCRIPT, a name for ps, the run directory and the cap in whole seconds', () => {
		const plan = watchdogPlan({backend: 'nftables', table});
		expect(watchdogArgv(plan, '/var/lib/etcd-harden/runs/x', 62.2)).toEqual(['sh', '-c', plan.script, 'etcd-harden-watchdog', '/var/lib/etcd-harden/runs/x', '63']);
	});

	test('every rendered script is valid sh', () => {
		for (const state of [
			{backend: 'nftables', table} as const,
			{backend: 'iptables', variant: 'nft', families: [{family: 4, commands: v4, before: withChain}, {family: 6, commands: v6, before: withoutChain}]} as const,
		]) {
			const result = spawnSync('sh', ['-n', '-c', watchdogPlan(state).script]);
			expect(result.status, String(result.stderr)).toBe(0);
		}
	});

	test('the report is read back', () => {
		expect(parseReverted('time: 2030-01-01T00:00:00Z\ntable restored: ok\nresult: restored\n')).toEqual({time: '2030-01-01T00:00:00Z', ok: true, lines: ['time: 2030-01-01T00:00:00Z', 'table restored: ok', 'result: restored']});
		expect(parseReverted('time: x\ntable restored: FAILED (exit 1)\nresult: FAILED (see the lines above)\n').ok).toBe(false);
	});
});

describe('the watchdog script, run by sh with a stub nft', () => {
	let dir: string | undefined;
	afterEach(() => {
		if (dir) rmSync(dir, {recursive: true, force: true});
		dir = undefined;
	});

	function setup(): {run: string; bin: string; calls: string} {
		dir = mkdtempSync(path.join(tmpdir(), 'etcd-harden-watchdog-'));
		const run = path.join(dir, 'run');
		const bin = path.join(dir, 'bin');
		execFileSync('mkdir', ['-p', run, bin]);
		const calls = path.join(dir, 'calls');
		writeFileSync(path.join(bin, 'nft'), `#!/bin/sh\necho "nft $*" >> '${calls}'\n`);
		chmodSync(path.join(bin, 'nft'), 0o755);
		const plan = watchdogPlan({backend: 'nftables', table});
		for (const [name, content] of Object.entries(plan.files)) writeFileSync(path.join(run, name), content);
		return {run, bin, calls};
	}

	function runWatchdog(run: string, bin: string, cap: number): void {
		const argv = watchdogArgv(watchdogPlan({backend: 'nftables', table}), run, cap);
		execFileSync(argv[0]!, argv.slice(1), {env: {PATH: `${bin}:${process.env['PATH']}`}, timeout: 10_000});
	}

	test('unconfirmed: at the deadline it restores, reports, removes its pid file and exits', () => {
		const {run, bin, calls} = setup();
		runWatchdog(run, bin, 1);
		expect(readFileSync(calls, 'utf8')).toBe(`nft -f ${run}/firewall-revert.nft\n`);
		const report = parseReverted(readFileSync(path.join(run, WATCHDOG_FILES.reverted), 'utf8'));
		expect(report.ok).toBe(true);
		expect(report.lines).toContain('table inet etcd_harden restored: ok');
		expect(existsSync(path.join(run, WATCHDOG_FILES.pid))).toBe(false);
	});

	test('a deadline file earlier than the cap brings the revert forward', () => {
		const {run, bin, calls} = setup();
		writeFileSync(path.join(run, WATCHDOG_FILES.deadline), `${Math.floor(Date.now() / 1000)}\n`);
		const start = Date.now();
		runWatchdog(run, bin, 60);
		expect(Date.now() - start).toBeLessThan(9_000);
		expect(readFileSync(calls, 'utf8')).toContain('nft -f');
	});

	test('confirmed or stopped: it exits without touching anything', () => {
		for (const marker of [WATCHDOG_FILES.confirmed, WATCHDOG_FILES.stop]) {
			const {run, bin, calls} = setup();
			writeFileSync(path.join(run, marker), 'x\n');
			runWatchdog(run, bin, 60);
			expect(existsSync(calls)).toBe(false);
			expect(existsSync(path.join(run, WATCHDOG_FILES.reverted))).toBe(false);
			rmSync(dir!, {recursive: true, force: true});
		}
	});

	test('a failing restore is reported as failed', () => {
		const {run, bin} = setup();
		writeFileSync(path.join(bin, 'nft'), '#!/bin/sh\nexit 1\n');
		runWatchdog(run, bin, 1);
		expect(parseReverted(readFileSync(path.join(run, WATCHDOG_FILES.reverted), 'utf8')).ok).toBe(false);
	});
});

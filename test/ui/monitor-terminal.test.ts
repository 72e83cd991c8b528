// The monitor's dashboard in a real terminal (tmux): the built CLI on a copy of demo/ with
// --root and --etcd-log pointing at a log with a refused client, raw-mode keys (r refreshes,
// q quits with exit 0). Sources a copied tree does not have show as unknown, not as OK.
import {execFileSync} from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {afterEach, beforeAll, describe, expect, it} from 'vitest';
import {copyDemo, repoDir} from './tree.js';
import {startPane, type Pane} from './tmux.js';

const cli = path.join(repoDir, 'dist', 'cli.js');
const panes: Pane[] = [];
const roots: string[] = [];

beforeAll(() => {
	if (!fs.existsSync(cli)) execFileSync('npm', ['run', 'build', '--silent'], {cwd: repoDir, stdio: 'pipe'});
}, 120_000);

afterEach(() => {
	for (const pane of panes.splice(0)) pane.close();
	for (const root of roots.splice(0)) fs.rmSync(root, {recursive: true, force: true});
});

describe('monitor dashboard in a real terminal', () => {
	it('shows the alert from the log, refreshes on r, quits on q', async () => {
		const root = await copyDemo();
		roots.push(root);
		fs.mkdirSync(path.join(root, 'var/log'), {recursive: true});
		fs.writeFileSync(path.join(root, 'var/log/etcd.log'), '2026-11-30 12:00:00.000001 I | embed: rejected connection from "10.9.9.9:40000" (error "remote error: tls: bad certificate", ServerName "")\n');
		const pane = startPane(['node', cli, 'monitor', '--root', root, '--etcd-log', '/var/log/etcd.log', '--interval', '300'], {cwd: repoDir, columns: 120, rows: 45});
		panes.push(pane);
		const screen = await pane.waitFor(text => text.includes('Certificate expiry') && text.includes('q quit'), 'the first sample', 30_000);
		expect(screen).toMatch(/ALERT etcd authentication and TLS failures: 1 failure: tls-rejected/);
		expect(screen).toContain('1x tls-rejected from 10.9.9.9:40000');
		expect(screen).toMatch(/\? +Values kube-apiserver cannot decrypt: not read/);
		// The same log read again adds nothing: the failure was counted once.
		const after = await pane.press('r');
		await pane.waitFor(text => text.includes('OK') && text.includes('no failures since the last read'), 'the refreshed sample', 30_000);
		expect(after).toContain('etcd-harden monitor');
		pane.send('q', {literal: true});
		expect(await pane.waitForExit(10_000)).toBe(0);
	});
});

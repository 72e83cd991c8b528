// Real-terminal tests: the built CLI (dist/cli.js) in a tmux pane over a temporary copy
// of demo/. They check what ink-testing-library cannot: raw mode on a real TTY (arrows
// move the selection instead of echoing), Ctrl-C as a key (not a signal) ending the run
// with exit code 3, and redrawing after a resize.
import {execFileSync} from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {afterEach, beforeAll, describe, expect, it} from 'vitest';
import {copyDemo, repoDir, snapshot, tempFiles} from './tree.js';
import {startPane, type Pane} from './tmux.js';

const cli = path.join(repoDir, 'dist', 'cli.js');

function newestSource(): number {
	let newest = 0;
	const visit = (p: string) => {
		const stat = fs.statSync(p);
		if (stat.isDirectory()) for (const name of fs.readdirSync(p)) visit(path.join(p, name));
		else if (/\.tsx?$/.test(p)) newest = Math.max(newest, stat.mtimeMs);
	};
	visit(path.join(repoDir, 'source'));
	visit(path.join(repoDir, 'cli.tsx'));
	return newest;
}

beforeAll(() => {
	// `npm test` builds first; a direct vitest run builds here when dist is missing or stale.
	if (!fs.existsSync(cli) || fs.statSync(cli).mtimeMs < newestSource()) {
		try {
			execFileSync('npm', ['run', 'build', '--silent'], {cwd: repoDir, stdio: 'pipe'});
		} catch (error) {
			// tsc still emits JavaScript when some file elsewhere has a type error; the
			// typecheck is its own gate. Only a missing CLI stops these tests.
			if (!fs.existsSync(cli)) throw error;
		}
	}
}, 120_000);

const panes: Pane[] = [];
const roots: string[] = [];
afterEach(() => {
	for (const pane of panes.splice(0)) pane.close();
	for (const root of roots.splice(0)) fs.rmSync(root, {recursive: true, force: true});
});

async function launch(args: string[], size = {columns: 100, rows: 45}) {
	const root = await copyDemo();
	roots.push(root);
	const pane = startPane(['node', cli, '--root', root, ...args], {cwd: repoDir, ...size});
	panes.push(pane);
	return {root, pane};
}

/** The line of the screen holding the selection cursor of a select question. */
const cursorLine = (screen: string) => screen.split('\n').find(line => /^❯ (?![?✔·…›◇=↺✖-] )/.test(line));

describe('the wizard in a real terminal (tmux)', () => {
	it('reads keys in raw mode: arrows move the selection, Ctrl-C aborts with exit 3 and leaves the tree as it was', async () => {
		const {root, pane} = await launch(['--dry-run']);
		const before = await snapshot(root);

		let screen = await pane.waitFor(s => s.includes('↑/↓ move'), 'the first select question');
		expect(screen).toContain('dry run');
		const first = cursorLine(screen);
		expect(first).toBeDefined();

		screen = await pane.press('Down');
		const second = cursorLine(screen);
		expect(second).toBeDefined();
		expect(second).not.toBe(first);
		// Raw mode: the escape sequence was read as a key, not echoed.
		expect(screen).not.toContain('^[[B');

		screen = await pane.press('Up');
		expect(cursorLine(screen)).toBe(first);

		pane.send('C-c');
		expect(await pane.waitForExit()).toBe(3);
		screen = pane.screen();
		expect(screen).toContain('exit 3');
		expect(await tempFiles(root)).toEqual([]);
		expect(await snapshot(root)).toEqual(before);
	});

	it('q quits with exit 3 and the final frame stays on screen', async () => {
		const {pane} = await launch(['--dry-run']);
		await pane.waitFor(s => s.includes('↑/↓ move'), 'the first select question');
		pane.send('q', {literal: true});
		expect(await pane.waitForExit()).toBe(3);
		expect(pane.screen()).toMatch(/Abort/);
	});

	it('redraws at the new width after a resize and keeps reading keys', async () => {
		const {pane} = await launch(['--dry-run']);
		let screen = await pane.waitFor(s => s.includes('↑/↓ move'), 'the first select question');
		const first = cursorLine(screen);
		pane.resize(60, 45);
		await new Promise(resolve => setTimeout(resolve, 300));
		screen = await pane.press('Down');
		expect(cursorLine(screen)).not.toBe(first);
		// The frame drawn before the resize was erased, not left behind as a second copy.
		const count = (text: string) => screen.split('\n').filter(line => line.includes(text)).length;
		expect(count('↑/↓ move')).toBe(1);
		expect(count('etcd-harden harden')).toBe(1);
		expect(screen.split('\n').every(line => line.length <= 60)).toBe(true);
		pane.send('C-c');
		expect(await pane.waitForExit()).toBe(3);
	});

	it('walks the whole dry run with enter (defaults) to exit 0, writing nothing', async () => {
		// The recovery-copy choice has no default (a new key needs an explicit answer): preset it.
		const {root, pane} = await launch(['--dry-run', '--set', 'encryption-config.recovery=stored-elsewhere', '--set', 'encryption-config.storedElsewhere=true']);
		const before = await snapshot(root);
		for (let step = 0; step < 40 && pane.exitCode() === undefined; step++) {
			const screen = await pane.waitFor(s => /enter|exit \d/.test(s), 'a prompt or the end').catch(() => '');
			if (/exit \d/.test(screen) || pane.exitCode() !== undefined) break;
			await pane.press('Enter').catch(() => undefined);
		}
		expect(await pane.waitForExit()).toBe(0);
		const screen = pane.screen();
		expect(screen).toContain('previewed');
		expect(await snapshot(root)).toEqual(before);
	});
});

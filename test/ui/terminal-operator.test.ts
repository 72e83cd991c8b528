// Real-terminal tests of issue 14: the built CLI (dist/cli.js) in a tmux pane over a copy of
// demo/, at 60x20, 80x24 and 120x40. They check what only a real terminal shows: that the
// scrollback survives the run and a resize (Ink clears screen and scrollback when its live
// frame reaches the terminal's height), that the confirm prompt is on screen together with
// the change summary, that keys sent in one burst each act, and that the plain frontend and
// --yes reach the same files and the same receipt as the Ink wizard.
import {execFileSync} from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {afterEach, beforeAll, describe, expect, it} from 'vitest';
import {copyDemo, repoDir} from './tree.js';
import {startPane, type Pane} from './tmux.js';

const cli = path.join(repoDir, 'dist', 'cli.js');

beforeAll(() => {
	if (!fs.existsSync(cli)) execFileSync('npm', ['run', 'build', '--silent'], {cwd: repoDir, stdio: 'pipe'});
}, 120_000);

const panes: Pane[] = [];
const roots: string[] = [];
afterEach(() => {
	for (const pane of panes.splice(0)) pane.close();
	for (const root of roots.splice(0)) fs.rmSync(root, {recursive: true, force: true, maxRetries: 5, retryDelay: 200});
});

const recovery = ['--set', 'encryption-config.recovery=stored-elsewhere'];

/** 50 marker lines, then the CLI: the markers must still be in the scrollback afterwards. */
async function launch(args: string[], size: {columns: number; rows: number}, options: {markers?: boolean} = {}) {
	const root = await copyDemo();
	roots.push(root);
	const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
	const markers = options.markers === false ? '' : 'for i in $(seq 1 50); do echo "MARKER-$i"; done; ';
	const script = `${markers}node ${quote(cli)} --root ${quote(root)} ${args.map(quote).join(' ')}`;
	const pane = startPane(['sh', '-c', script], {cwd: repoDir, ...size});
	panes.push(pane);
	return {root, pane};
}

const missingMarkers = (text: string) => Array.from({length: 50}, (_, i) => `MARKER-${i + 1}`).filter(marker => !text.split('\n').includes(marker));

/** Presses enter at every prompt until the run ends; calls `at` with each screen first. */
async function walk(pane: Pane, at: (screen: string) => Promise<void> | void = () => undefined): Promise<number> {
	for (let step = 0; step < 40 && pane.exitCode() === undefined; step++) {
		// A prompt that takes keys now (Ink's key hints for it, or plain's "? " line), not the stage list's marker.
		const screen = await pane.waitFor(s => /enter |y apply|y yes|\(Y\/n\)|\(y\/N\)|^\? |exit \d/m.test(s) || pane.exitCode() !== undefined, 'a prompt or the end').catch(() => '');
		if (pane.exitCode() !== undefined || /exit \d/.test(screen)) break;
		await at(screen);
		if (pane.exitCode() !== undefined) break;
		await pane.press('Enter').catch(() => undefined);
	}
	return pane.waitForExit(20_000);
}

const sizes = [
	{columns: 60, rows: 20},
	{columns: 80, rows: 24},
	{columns: 120, rows: 40},
];

describe('the wizard keeps the terminal usable (tmux)', () => {
	for (const size of sizes) {
		it(`${size.columns}x${size.rows}: the scrollback survives the run and a resize; the confirm prompt shows with the change summary`, async () => {
			const {pane} = await launch(recovery, size);
			let confirmSeen = false;
			let resized = false;
			const code = await walk(pane, async screen => {
				if (!resized && screen.includes('Encryption provider for new writes')) {
					// A resize mid-run, to a smaller and back to the first size.
					resized = true;
					pane.resize(60, 20);
					await new Promise(resolve => setTimeout(resolve, 300));
					pane.resize(size.columns, size.rows);
					await new Promise(resolve => setTimeout(resolve, 300));
					expect(missingMarkers(pane.history())).toEqual([]);
				}
				if (screen.includes('Apply these changes for')) {
					confirmSeen = true;
					// What is decided is in view where it is decided: the summary line and the prompt.
					const lines = pane.screen().split('\n');
					const prompt = lines.findIndex(line => line.includes('Apply these changes for'));
					const summary = lines.findIndex(line => line.startsWith('Changes by '));
					expect(summary).toBeGreaterThanOrEqual(0);
					expect(summary).toBeLessThan(prompt);
					expect(lines.join('\n')).toMatch(/\d+ files? \(\+\d+ -\d+\)/);
				}
			});
			expect(code).toBe(0);
			expect(resized).toBe(true);
			expect(confirmSeen).toBe(true);
			expect(missingMarkers(pane.history())).toEqual([]);
			// The receipt ends the run, with the undo command.
			expect(pane.history()).toMatch(/undo: etcd-harden undo \d{4}-\d\d-\d\dT\d{6}Z --root /);
		}, 90_000);
	}

	it('d pages through the whole diff in the frame at 60x20, and y still applies from the pager', async () => {
		const {root, pane} = await launch(recovery, {columns: 60, rows: 20}, {markers: false});
		await walk(pane, async screen => {
			if (!screen.includes('Apply these changes for "kube-apiserver manifest"')) return;
			let paged = await pane.press('d', {literal: true});
			expect(paged).toMatch(/lines 1-\d+ of \d+/);
			expect(paged).toContain('write: Point kube-apiserver at');
			paged = await pane.press('G', {literal: true});
			expect(paged).toMatch(/lines \d+-(\d+) of \1/);
			// The pager's keys and the question stay on screen below the page.
			expect(paged).toContain('q close');
			expect(paged).toContain('Apply these changes for "kube-apiserver manifest"');
			pane.send('y', {literal: true});
			await pane.waitFor(s => !s.includes('lines '), 'the pager to close');
		});
		expect(await pane.waitForExit()).toBe(0);
		expect(fs.readFileSync(path.join(root, 'etc/kubernetes/manifests/kube-apiserver.yaml'), 'utf8')).toContain('--encryption-provider-config=');
	}, 90_000);
});

describe('key bursts act one by one (tmux)', () => {
	it('Enter Enter answers two questions; Down+Space ticks the item under the moved cursor; yy confirms two previews', async () => {
		const {root, pane} = await launch(recovery, {columns: 100, rows: 30}, {markers: false});
		await pane.waitFor(s => s.includes('Encryption provider for new writes'), 'the first question');
		pane.send('\r', {literal: true});
		await pane.waitFor(s => s.includes('Resources to encrypt'), 'the resources question');
		// Down and Space in one write: the cursor moves to configmaps, then Space ticks it.
		pane.send('\u001B[B ', {literal: true});
		await pane.waitFor(s => /\[x\] configmaps/.test(s), 'configmaps ticked');
		expect(pane.screen()).toMatch(/\[x\] secrets/);
		// Enter twice in one write: the resources answer, then the next question's default (the path).
		pane.send('\r\r', {literal: true});
		await pane.waitFor(s => s.includes('Restrict etcd to listen for clients'), 'the question after the path (both enters acted)');
		expect(pane.history()).toMatch(/✔ Resources to encrypt secrets, configmaps/);
		expect(pane.history()).toMatch(/✔ Where to write the EncryptionConfiguration \/etc\/kubernetes\/enc\/encryption-config.yaml/);
		pane.send('\r', {literal: true});
		await pane.waitFor(s => s.includes('Apply these changes for "Encryption config"'), 'the first preview');
		// y twice in one write: this preview and the next one.
		pane.send('yy', {literal: true});
		expect(await pane.waitForExit(30_000)).toBe(0);
		const config = fs.readFileSync(path.join(root, 'etc/kubernetes/enc/encryption-config.yaml'), 'utf8');
		expect(config).toMatch(/- configmaps/);
		expect(fs.readFileSync(path.join(root, 'etc/kubernetes/manifests/kube-apiserver.yaml'), 'utf8')).toContain('--encryption-provider-config=');
	}, 90_000);
});

/** The receipt printed at the end, with run ids and the tree's path made comparable. */
function receiptOf(text: string, root: string): string {
	const start = text.lastIndexOf('\nReceipt\n');
	expect(start).toBeGreaterThanOrEqual(0);
	return text
		.slice(start)
		.split(root)
		.join('<root>')
		.replace(/\d{4}-\d\d-\d\dT\d{6}Z/g, '<run>')
		.split('\n')
		.filter(line => !/^\s*\[exited\]/.test(line) && !/^\$ /.test(line))
		.join('\n')
		.trim();
}

/** Files under etc/ with key material and its digests made comparable (each run makes a new key). */
function etcTree(root: string): Record<string, string> {
	const out: Record<string, string> = {};
	const visit = (dir: string) => {
		for (const entry of fs.readdirSync(dir, {withFileTypes: true})) {
			const full = path.join(dir, entry.name);
			if (entry.isDirectory()) visit(full);
			else
				out[path.relative(root, full)] = `${(fs.statSync(full).mode & 0o777).toString(8)} ${fs
					.readFileSync(full, 'utf8')
					.replace(/secret: \S+/g, 'secret: <key>')
					.replace(/[0-9a-f]{64}/g, '<sha256>')}`;
		}
	};
	visit(path.join(root, 'etc'));
	return out;
}

describe('three frontends, one result (tmux and --yes)', () => {
	it('Ink, plain and --yes write the same files and print the same receipt', async () => {
		const ink = await launch(recovery, {columns: 100, rows: 30}, {markers: false});
		expect(await walk(ink.pane)).toBe(0);
		const plain = await launch(['--plain', ...recovery], {columns: 100, rows: 30}, {markers: false});
		expect(await walk(plain.pane)).toBe(0);
		const yesRoot = await copyDemo();
		roots.push(yesRoot);
		const yesOut = execFileSync('node', [cli, '--root', yesRoot, '--yes', ...recovery], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: {...process.env, NO_COLOR: '1'}});

		const inkReceipt = receiptOf(ink.pane.history(), ink.root);
		expect(inkReceipt).toContain('files changed:');
		expect(inkReceipt).toContain('undo: etcd-harden undo <run> --root <root>');
		expect(receiptOf(plain.pane.history(), plain.root)).toBe(inkReceipt);
		expect(receiptOf(`\n${yesOut}`, yesRoot)).toBe(inkReceipt);

		const inkFiles = etcTree(ink.root);
		expect(Object.keys(inkFiles)).toContain('etc/kubernetes/enc/encryption-config.yaml');
		expect(etcTree(plain.root)).toEqual(inkFiles);
		expect(etcTree(yesRoot)).toEqual(inkFiles);
	}, 120_000);
});

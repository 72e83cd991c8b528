// The interactive wizard on a live control plane: the built CLI in a real terminal (tmux),
// run inside the testbed's namespaces, answered by key presses, once with the Ink frontend
// and once with the plain (inquirer) frontend. The new key's recovery copy is encrypted to
// an age recipient and opened with the real `age` command.
import {execFileSync} from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterEach, describe, expect, it} from 'vitest';
import {startTestbed, storedValueCounts, type Testbed} from '../testbed/index.js';
import {startPane, type Pane} from '../ui/tmux.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'dist', 'cli.js');
const CONFIG = '/etc/kubernetes/enc/encryption-config.yaml';
const RECOVERY_DIR = '/var/lib/etcd-harden/recovery';

let tb: Testbed | undefined;
let pane: Pane | undefined;
let work: string | undefined;
afterEach(async () => {
	pane?.close();
	pane = undefined;
	await tb?.stop();
	tb = undefined;
	if (work) fs.rmSync(work, {recursive: true, force: true});
	work = undefined;
});

async function secretLabels(testbed: Testbed): Promise<string[]> {
	return Object.keys(await storedValueCounts(testbed));
}

/** A prompt on screen, recognised by its text, and the keys that answer it. */
type Step = {when: RegExp; keys: Array<{key: string; literal?: boolean}>};

/**
 * Answers prompts until the command exits: each time the screen shows a prompt the steps
 * know (the newest one on screen wins), sends its keys and waits for the screen to move on.
 */
async function walk(p: Pane, steps: Step[], fallback: Step['keys'], timeoutMs = 300_000): Promise<{code: number; answered: string[]}> {
	const answered: string[] = [];
	const start = Date.now();
	let last = '';
	while (Date.now() - start < timeoutMs) {
		if (p.exitCode() !== undefined) break;
		const screen = p.screen();
		if (screen === last) {
			await new Promise(resolve => setTimeout(resolve, 100));
			continue;
		}
		// The prompt is the newest "question" line: enter/y/n hints mark a live prompt.
		// Ink prints "enter …" / "↑/↓ move" hints; inquirer prints "⏎ select", "(Y/n)" or "navigate".
		// inquirer's open question starts with "? " (answered ones with ✔).
		const bottom = screen.split('\n').slice(-8).join('\n');
		const live = /enter|⏎|navigate|\(y\/n\)|\(Y\/n\)|\(y\/N\)|↑\/↓|space/i.test(bottom) || /^\? /m.test(bottom);
		if (!live) {
			await new Promise(resolve => setTimeout(resolve, 100));
			continue;
		}
		await new Promise(resolve => setTimeout(resolve, 150));
		const settled = p.screen();
		if (settled !== screen) continue;
		// Ink: only its live frame (from its header line down) holds the open prompt; the answers
		// above it stay on screen and must not match a step again. Plain: the last lines.
		const lines = settled.split('\n');
		const header = lines.map(line => line.startsWith('etcd-harden harden')).lastIndexOf(true);
		const tail = (header > 0 ? lines.slice(header) : lines.slice(-25)).join('\n');
		const step = steps.find(candidate => candidate.when.test(tail));
		answered.push(step ? step.when.source : 'default');
		// One key at a time, each seen on screen before the next (typed text before its Enter).
		const keys = step?.keys ?? fallback;
		for (const [i, {key, literal}] of keys.entries()) {
			if (i === keys.length - 1) p.send(key, literal ? {literal: true} : {});
			else await p.press(key, literal ? {literal: true} : {}).catch(() => undefined);
		}
		last = settled;
		await p.waitFor(next => next !== settled || p.exitCode() !== undefined, 'the wizard to take the answer', 120_000).catch(() => undefined);
	}
	return {code: await p.waitForExit(30_000), answered};
}

async function ageIdentity(): Promise<{identityFile: string; recipient: string}> {
	work = fs.mkdtempSync(path.join(os.tmpdir(), 'wizard-ui-'));
	const identityFile = path.join(work, 'key.txt');
	execFileSync('age-keygen', ['-o', identityFile], {stdio: 'ignore'});
	const recipient = execFileSync('age-keygen', ['-y', identityFile], {encoding: 'utf8'}).trim();
	return {identityFile, recipient};
}

/** The recovery copy the run wrote decrypts with the real age command to the config itself. */
async function expectRecoveryCopyOpens(testbed: Testbed, identityFile: string): Promise<void> {
	const listing = await testbed.exec(['ls', RECOVERY_DIR]);
	const files = String(listing.stdout).split('\n').filter(name => name.endsWith('.age'));
	expect(files).toHaveLength(1);
	const copy = testbed.hostPath(`${RECOVERY_DIR}/${files[0]}`);
	expect(fs.statSync(copy).mode & 0o777).toBe(0o600);
	const opened = execFileSync('age', ['-d', '-i', identityFile, copy]);
	expect(opened.toString('utf8')).toBe(await testbed.readFile(CONFIG, 'utf8'));
}

const only = ['--only', 'encryption-config,apiserver-manifest,reencrypt'];

describe('the interactive wizard on a live control plane', () => {
	it('Ink frontend: key presses enable encryption, the recovery copy opens with age', async () => {
		const {identityFile, recipient} = await ageIdentity();
		tb = await startTestbed({secrets: 1000, configMaps: 20, namespaces: 2});
		pane = startPane(tb.nsenterArgv([process.execPath, CLI, ...only]), {cwd: REPO, columns: 120, rows: 50});
		const {code, answered} = await walk(
			pane,
			[
				{when: /age recipient \(age1…\)/, keys: [{key: recipient, literal: true}, {key: 'Enter'}]},
				{when: /Recovery copy of the new key/, keys: [{key: 'Enter'}]}, // first choice: an age recipient
				{when: /Apply these changes/, keys: [{key: 'y'}]},
			],
			[{key: 'Enter'}],
		);
		expect(code, pane.screen()).toBe(0);
		expect(answered).toContain('Apply these changes');
		expect(await secretLabels(tb)).toEqual(['secretbox:key1']);
		await expectRecoveryCopyOpens(tb, identityFile);
		expect(pane.screen()).toMatch(/Done \(exit 0\)/);
	});

	it('plain frontend: the same run answered line by line', async () => {
		const {identityFile, recipient} = await ageIdentity();
		tb = await startTestbed({secrets: 1000, configMaps: 20, namespaces: 2});
		pane = startPane(tb.nsenterArgv([process.execPath, CLI, '--plain', ...only]), {cwd: REPO, columns: 120, rows: 50});
		const {code} = await walk(
			pane,
			[
				{when: /age recipient \(age1…\)/, keys: [{key: recipient, literal: true}, {key: 'Enter'}]},
				{when: /Recovery copy of the new key/, keys: [{key: 'Enter'}]},
				{when: /Apply these changes/, keys: [{key: 'y'}, {key: 'Enter'}]},
			],
			[{key: 'Enter'}],
		);
		expect(code, pane.screen()).toBe(0);
		expect(await secretLabels(tb)).toEqual(['secretbox:key1']);
		await expectRecoveryCopyOpens(tb, identityFile);
	});
});

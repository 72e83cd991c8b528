// The REAL engine with the real stages over a temporary copy of demo/, walked by key
// presses through the Ink wizard (ink-testing-library) and through the plain frontend.
// Only the keys come from the test; every prompt, preview and file comes from the engine.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {PassThrough} from 'node:stream';
import {afterEach, describe, expect, it, vi} from 'vitest';

vi.hoisted(() => {
	delete process.env.CI;
	delete process.env.CONTINUOUS_INTEGRATION;
});

import {cleanup} from 'ink-testing-library';
import {createEngine, type Engine} from '../../source/engine/engine.js';
import type {Prompt} from '../../source/engine/state.js';
import {tasks} from '../../source/workflow/tasks.js';
import {RealHost} from '../../source/host/real.js';
import {RecordingHost} from '../../source/host/recording.js';
import type {Host} from '../../source/host/types.js';
import {runPlain} from '../../source/plain/index.js';
import {discover} from '../../source/discover/files.js';
import {hardenStages} from '../../source/workflow/harden.js';
import {keys, renderWizard, stripAnsi, until} from './ink-harness.js';
import {copyDemo, snapshot, tempFiles, type Snapshot} from './tree.js';

const configPath = 'etc/kubernetes/enc/encryption-config.yaml';
const manifestPath = 'etc/kubernetes/manifests/kube-apiserver.yaml';

const roots: string[] = [];
afterEach(async () => {
	cleanup();
	for (const root of roots.splice(0)) await fs.rm(root, {recursive: true, force: true});
});

async function setup(options: {dryRun?: boolean; wrap?: (host: Host) => Host} = {}) {
	const root = await copyDemo();
	roots.push(root);
	const before = await snapshot(root);
	const real: Host = options.wrap ? options.wrap(new RealHost(root)) : new RealHost(root);
	const host: Host = options.dryRun ? new RecordingHost(real) : real;
	const engine = createEngine({
		command: 'harden',
		host,
		stages: [...hardenStages],
		// The recovery-copy choice for the new key is preset: these walks take every default.
		answers: {'encryption-config': {recovery: 'stored-elsewhere', storedElsewhere: true}},
		interactive: true,
		discover: nodeHost => discover(nodeHost),
		tasks,
	});
	return {root, before, engine};
}

/** The part of a snapshot under etc/ (the run directory under var/lib is the engine's record). */
const etc = (snap: Snapshot) => Object.fromEntries(Object.entries(snap).filter(([file]) => file.startsWith('etc/')));

const promptText = (prompt: Prompt) => (prompt.type === 'confirm' ? prompt.message : prompt.question.message);

/**
 * Walks the wizard: waits for each prompt to be on screen, then presses the key `decide`
 * picks for it (enter takes the defaults), one key at a time, until the engine's result.
 */
async function walkInk(engine: Engine, decide: (prompt: Prompt) => string | undefined) {
	const ui = renderWizard(engine);
	const exit = engine.run();
	for (let steps = 0; steps < 30; steps++) {
		await until(() => Boolean(engine.getState().prompt || engine.getState().result), 'a prompt or the result', 10_000);
		const state = engine.getState();
		if (state.result || !state.prompt) break;
		const prompt = state.prompt;
		await ui.waitFor(frame => frame.includes(promptText(prompt)), `"${promptText(prompt)}" on screen`);
		const key = decide(prompt);
		if (key === undefined) break;
		await ui.pressUntil(key, () => engine.getState().prompt !== prompt, `the engine to take ${JSON.stringify(key)}`);
	}
	const code = await exit;
	await ui.waitFor(frame => frame.includes(`(exit ${code})`), 'the final frame');
	return {ui, code};
}

const acceptAll = (prompt: Prompt) => (prompt.type === 'confirm' ? 'y' : keys.enter);

/** Every secret in the written config (base64 key and its raw bytes as hex/base64 forms). */
async function keyMaterial(root: string): Promise<string[]> {
	const text = await fs.readFile(path.join(root, configPath), 'utf8');
	const secrets = [...text.matchAll(/secret:\s*"?([A-Za-z0-9+/=]{20,})"?/g)].map(m => m[1]!);
	expect(secrets.length).toBeGreaterThan(0);
	return secrets.flatMap(s => [s, Buffer.from(s, 'base64').toString('hex')]);
}

describe('Ink wizard over the real engine and stages (demo tree)', () => {
	it('dry run: shows the diffs, previews every stage, and writes nothing', async () => {
		const {root, before, engine} = await setup({dryRun: true});
		const {ui, code} = await walkInk(engine, acceptAll);
		expect(code).toBe(0);
		const frame = ui.frame();
		expect(frame).toContain('dry run');
		expect(frame).toContain('+    - --encryption-provider-config=/etc/kubernetes/enc/encryption-config.yaml');
		expect(frame).toMatch(/◇ Encryption config: previewed/);
		expect(frame).toContain('<redacted>');
		expect(await snapshot(root)).toEqual(before);
	});

	it('confirming writes the config 0600 and patches the manifest; no key material on screen', async () => {
		const {root, before, engine} = await setup();
		const {ui, code} = await walkInk(engine, acceptAll);
		expect(code).toBe(0);
		const after = await snapshot(root);
		expect(after[configPath]?.mode).toBe('600');
		expect(after[manifestPath]?.sha256).not.toBe(before[manifestPath]?.sha256);
		const manifest = await fs.readFile(path.join(root, manifestPath), 'utf8');
		expect(manifest).toContain('--encryption-provider-config=/etc/kubernetes/enc/encryption-config.yaml');
		const frame = ui.frame();
		expect(frame).toContain('Done (exit 0)');
		expect(frame).toMatch(/✔ Encryption config: done/);
		expect(frame).toMatch(/PASS {2}/);
		const everything = ui.frames.join('\n');
		for (const secret of await keyMaterial(root)) expect(everything).not.toContain(secret);
		expect(await tempFiles(root)).toEqual([]);
	});

	it('declining the first preview skips it and the stage built on it, continues, and writes nothing under etc/', async () => {
		const {root, before, engine} = await setup();
		const {code, ui} = await walkInk(engine, prompt => (prompt.type === 'confirm' ? 'n' : keys.enter));
		// Declining is the operator's choice, not a failure: the run goes on to the end.
		expect(code).toBe(0);
		expect(ui.frame()).toMatch(/- Encryption config {2}skipped/);
		const stages = engine.getState().stages;
		expect(stages.find(s => s.id === 'encryption-config')?.skip?.reason).toBe('declined');
		expect(stages.find(s => s.id === 'apiserver-manifest')?.skip).toEqual({reason: 'depends-on-declined', text: 'it builds on "Encryption config", which you declined'});
		expect(stages.find(s => s.id === 'etcd-tls')?.phase).toBe('unchanged');
		expect(etc(await snapshot(root))).toEqual(etc(before));
	});

	it('Ctrl-C while a stage is applying undoes that stage and leaves no temp file', async () => {
		let release!: () => void;
		const held = new Promise<void>(resolve => {
			release = resolve;
		});
		let manifestWritten = false;
		// The injected side-effect module, slowed: the manifest write completes, then the
		// stage stays "applying" until the test lets it go (after Ctrl-C).
		const wrap = (host: Host): Host =>
			new Proxy(host, {
				get(target, property, receiver) {
					const value = Reflect.get(target, property, receiver) as unknown;
					if (property === 'writeFileAtomic') {
						return async (nodePath: string, data: string | Uint8Array, mode: number) => {
							await target.writeFileAtomic(nodePath, data, mode);
							if (nodePath.endsWith('manifests/kube-apiserver.yaml') && !manifestWritten) {
								manifestWritten = true;
								await held;
							}
						};
					}
					return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
				},
			});
		const {root, before, engine} = await setup({wrap});
		const ui = renderWizard(engine);
		const exit = engine.run();
		for (let steps = 0; steps < 30 && !manifestWritten; steps++) {
			await until(() => Boolean(engine.getState().prompt) || manifestWritten, 'a prompt or the held write', 10_000);
			const prompt = engine.getState().prompt;
			if (!prompt) break;
			await ui.waitFor(frame => frame.includes(promptText(prompt)), 'the prompt on screen');
			await ui.pressUntil(acceptAll(prompt), () => engine.getState().prompt !== prompt, 'the engine to take the key');
		}
		await until(() => manifestWritten, 'the manifest write');
		await ui.waitFor(frame => /kube-apiserver manifest {2}applying/.test(frame), 'the stage applying');
		const frame = await ui.press(keys.ctrlC);
		expect(frame).toContain('Aborting');
		release();
		expect(await exit).toBe(3);
		await ui.waitFor(f => f.includes('(exit 3)'), 'the final frame');
		expect(ui.frame()).toMatch(/↺ kube-apiserver manifest: rolled back/);
		const after = await snapshot(root);
		// The interrupted stage was undone byte for byte, and with it the config it was for
		// (the two stages are one undo group): the tree is as before the run.
		expect(after[manifestPath]).toEqual(before[manifestPath]);
		expect(after[configPath]).toBeUndefined();
		expect(engine.getState().stages.find(stage => stage.id === 'encryption-config')?.phase).toBe('rolled-back');
		expect(await tempFiles(root)).toEqual([]);
	});
});

describe('plain frontend over the real engine and stages (demo tree)', () => {
	it('reaches the same files as the wizard by answering with keys', async () => {
		const {root, before, engine} = await setup();
		const input = new PassThrough();
		const output = new PassThrough();
		let text = '';
		output.on('data', (chunk: Buffer) => {
			text += chunk.toString('utf8');
		});
		const frontend = runPlain(engine, {input, output, color: false});
		const exit = engine.run();
		for (let steps = 0; steps < 30; steps++) {
			await until(() => Boolean(engine.getState().prompt || engine.getState().result), 'a prompt or the result', 10_000);
			const prompt = engine.getState().prompt;
			if (engine.getState().result || !prompt) break;
			const shown = text.length;
			await until(() => stripAnsi(text).includes(promptText(prompt)) && text.length > 0, 'the prompt printed');
			await new Promise(resolve => setTimeout(resolve, 10));
			if (prompt.type === 'confirm') {
				input.write('y');
				await until(() => text.length > shown, 'the y echoed');
			}
			input.write(keys.enter);
			await until(() => engine.getState().prompt !== prompt, 'the engine to take the answer');
		}
		expect(await exit).toBe(0);
		await frontend;
		const after = await snapshot(root);
		expect(after[configPath]?.mode).toBe('600');
		expect(after[manifestPath]?.sha256).not.toBe(before[manifestPath]?.sha256);
		const out = stripAnsi(text);
		expect(out).toContain('Changes planned by Encryption config:');
		expect(out).toContain('Done (exit 0)');
		for (const secret of await keyMaterial(root)) expect(text).not.toContain(secret);
	});
});

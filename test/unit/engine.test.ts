import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {afterEach, beforeEach, describe, expect, test} from 'vitest';
import {createEngine} from '../../source/engine/engine.js';
import {taskRegistry, defineTask, type TaskRegistry} from '../../source/engine/contract.js';
import {LOCK_PATH} from '../../source/engine/run-dir.js';
import {InputError, RUNS_DIR, type Stage} from '../../source/engine/contract.js';
import {RealHost} from '../../source/host/real.js';
import {RecordingHost} from '../../source/host/recording.js';
import type {Facts} from '../../source/stages/facts.js';
import {engineRoot, noFacts, writeStage} from './helpers/engine-fixtures.js';

// The engine over a real temporary directory (RealHost with --root), with small stages
// written here: what is tested is the engine's ordering, undo, journal and lock.

let root: string;
beforeEach(async () => {
	root = await engineRoot('engine-test-');
});
afterEach(async () => {
	await fs.rm(root, {recursive: true, force: true});
});

async function tree(): Promise<Record<string, string>> {
	const result: Record<string, string> = {};
	async function walk(directory: string): Promise<void> {
		for (const entry of await fs.readdir(directory, {withFileTypes: true})) {
			const full = path.join(directory, entry.name);
			if (entry.isDirectory()) await walk(full);
			else result[path.relative(root, full)] = await fs.readFile(full, 'utf8');
		}
	}
	await walk(root);
	return result;
}

async function journalText(): Promise<string> {
	const runs = await fs.readdir(path.join(root, RUNS_DIR));
	expect(runs).toHaveLength(1);
	return fs.readFile(path.join(root, RUNS_DIR, runs[0]!, 'journal.jsonl'), 'utf8');
}

describe('engine', () => {
	test('applies every stage, keeps a backup outside the target directory, and journals', async () => {
		const host = new RealHost(root);
		const engine = createEngine({
			command: 'harden',
			host,
			stages: [writeStage('a', '/etc/new.txt', 'new\n'), writeStage('b', '/etc/existing.txt', 'changed\n')],
			answers: {},
			interactive: false,
			discover: noFacts,
		});
		expect(await engine.run()).toBe(0);
		expect(await fs.readFile(path.join(root, 'etc/new.txt'), 'utf8')).toBe('new\n');
		expect((await fs.stat(path.join(root, 'etc/new.txt'))).mode & 0o777).toBe(0o600);
		expect(await fs.readFile(path.join(root, 'etc/existing.txt'), 'utf8')).toBe('changed\n');
		const runs = await fs.readdir(path.join(root, RUNS_DIR));
		const backup = path.join(root, RUNS_DIR, runs[0]!, 'backup/etc/existing.txt');
		expect(await fs.readFile(backup, 'utf8')).toBe('original\n');
		expect(await fs.readdir(path.join(root, 'etc'))).toEqual(['existing.txt', 'new.txt']);
		const journal = await journalText();
		expect(journal).toContain('"stage-done"');
		expect(engine.getState().stages.map(stage => stage.phase)).toEqual(['done', 'done']);
		// The lock is released.
		await expect(fs.stat(path.join(root, LOCK_PATH))).rejects.toThrow();
	});

	test('bad input in a later stage stops the run before anything is written', async () => {
		const before = await tree();
		const broken = writeStage('b', '/etc/other.txt', 'x', {
			plan: () => {
				throw new InputError('/etc/kubernetes/manifests/kube-apiserver.yaml is not valid YAML');
			},
		});
		const engine = createEngine({
			command: 'harden',
			host: new RealHost(root),
			stages: [writeStage('a', '/etc/new.txt', 'new\n'), broken],
			answers: {},
			interactive: false,
			discover: noFacts,
		});
		expect(await engine.run()).toBe(2);
		expect(engine.getState().result?.summary.join('\n')).toContain('not valid YAML');
		const after = await tree();
		// Only the (empty) state directory may differ: no run directory, no lock, no target file.
		expect(Object.keys(after).filter(file => !file.startsWith('var/'))).toEqual(Object.keys(before));
		expect(after['etc/existing.txt']).toBe('original\n');
		expect(Object.keys(after).some(file => file.includes('runs/'))).toBe(false);
	});

	test('a failing change undoes the stage byte for byte and exits 3', async () => {
		const failing: TaskRegistry = registryOf({
			explode: {
				run: async () => {
					throw new Error('apiserver did not become ready');
				},
			},
		});
		const stage = writeStage('a', '/etc/existing.txt', 'changed\n', {
			plan: () => ({
				changes: [
					{kind: 'write-file', path: '/etc/existing.txt', content: 'changed\n', mode: 0o600, summary: 'rewrite'},
					{kind: 'write-file', path: '/etc/created.txt', content: 'created\n', mode: 0o600, summary: 'create'},
					{kind: 'task', task: 'explode', params: {}, summary: 'wait for the apiserver'},
				],
			}),
		});
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [stage], answers: {}, interactive: false, discover: noFacts, tasks: failing});
		expect(await engine.run()).toBe(3);
		expect(await fs.readFile(path.join(root, 'etc/existing.txt'), 'utf8')).toBe('original\n');
		expect((await fs.stat(path.join(root, 'etc/existing.txt'))).mode & 0o777).toBe(0o644);
		await expect(fs.stat(path.join(root, 'etc/created.txt'))).rejects.toThrow();
		expect(engine.getState().stages[0]?.phase).toBe('rolled-back');
		expect(engine.getState().stages[0]?.error).toContain('apiserver did not become ready');
		expect(await journalText()).toContain('"rolled-back"');
	});

	test('a failing stage also undoes the earlier stages of its undo group', async () => {
		const failing: TaskRegistry = registryOf({explode: {run: async () => Promise.reject(new Error('kube-apiserver did not become ready'))}});
		const config = writeStage('config', '/etc/existing.txt', 'new config\n', {undoGroup: 'encryption'});
		const other = writeStage('other', '/etc/other.txt', 'kept\n');
		const manifest = writeStage('manifest', '/etc/manifest.txt', 'x', {
			undoGroup: 'encryption',
			plan: () => ({
				changes: [
					{kind: 'write-file', path: '/etc/manifest.txt', content: 'patched\n', mode: 0o600, summary: 'patch'},
					{kind: 'task', task: 'explode', params: {}, summary: 'gate'},
				],
			}),
		});
		const grouped = createEngine({command: 'harden', host: new RealHost(root), stages: [config, manifest], answers: {}, interactive: false, discover: noFacts, tasks: failing});
		expect(await grouped.run()).toBe(3);
		expect(await fs.readFile(path.join(root, 'etc/existing.txt'), 'utf8')).toBe('original\n');
		await expect(fs.stat(path.join(root, 'etc/manifest.txt'))).rejects.toThrow();
		expect(grouped.getState().stages.map(stage => stage.phase)).toEqual(['rolled-back', 'rolled-back']);

		// A stage outside the group stays applied.
		const separate = createEngine({command: 'harden', host: new RealHost(root), stages: [other, manifest], answers: {}, interactive: false, discover: noFacts, tasks: failing});
		expect(await separate.run()).toBe(3);
		expect(await fs.readFile(path.join(root, 'etc/other.txt'), 'utf8')).toBe('kept\n');
		expect(separate.getState().stages.map(stage => stage.phase)).toEqual(['done', 'rolled-back']);
	});

	test('a stage whose answers point discovery elsewhere is planned on facts discovered again with the answers (purpose plan); the others are not', async () => {
		const calls: Array<{answers?: unknown; purpose?: string}> = [];
		const discover = async (_host: unknown, answers?: Record<string, unknown>, purpose?: string) => {
			calls.push({answers, purpose});
			return {seen: answers ? 'with answers' : 'without'} as unknown as Facts;
		};
		const planned: string[] = [];
		const asks = (id: string, rediscover: boolean): Stage =>
			writeStage(id, `/etc/${id}.txt`, 'x\n', {
				questions: () => [{id: 'path', kind: 'text', message: 'path', default: '/elsewhere'}],
				plan: facts => {
					planned.push(`${id}: ${(facts as unknown as {seen: string}).seen}`);
					return {changes: []};
				},
				rediscover: () => rediscover,
			});
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [asks('a', false), asks('b', true)], answers: {}, interactive: false, discover});
		expect(await engine.run()).toBe(0);
		expect(planned).toEqual(['a: without', 'b: with answers']);
		expect(calls.filter(call => call.answers !== undefined && call.purpose === 'plan')).toEqual([{answers: {a: {path: '/elsewhere'}, b: {path: '/elsewhere'}}, purpose: 'plan'}]);
		// Everything before applying is planning; verification reads afresh.
		expect(calls.every(call => call.purpose === (call.answers === undefined ? 'plan' : call.purpose))).toBe(true);
		expect(calls.some(call => call.purpose === 'verify')).toBe(true);
	});

	test('a stage that does not apply here is shown as left out, with its reason, and not verified', async () => {
		let verified = false;
		const live = writeStage('live', '/etc/x', 'x', {
			plan: () => ({changes: [], leftOut: 'needs the live control plane'}),
			verify: () => {
				verified = true;
				return [{id: 'x', title: 'x', status: 'fail'}];
			},
		});
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [writeStage('a', '/etc/new.txt', 'new\n'), live], answers: {}, interactive: false, discover: noFacts});
		expect(await engine.run()).toBe(0);
		expect(verified).toBe(false);
		expect(engine.getState().stages.map(stage => stage.phase)).toEqual(['done', 'skipped']);
		expect(engine.getState().result?.summary).toContain('Stage live: left out: needs the live control plane');
	});

	test('dry run previews with a diff and writes nothing', async () => {
		const before = await tree();
		const engine = createEngine({
			command: 'harden',
			host: new RecordingHost(new RealHost(root)),
			stages: [writeStage('b', '/etc/existing.txt', 'changed\n')],
			answers: {},
			interactive: false,
			discover: noFacts,
		});
		expect(await engine.run()).toBe(0);
		expect(await tree()).toEqual(before);
		const preview = engine.getState().stages[0]?.preview?.[0]?.body ?? '';
		expect(preview).toContain('-original');
		expect(preview).toContain('+changed');
		expect(engine.getState().stages[0]?.phase).toBe('previewed');
	});

	test('key material never reaches previews or the journal', async () => {
		const secret = 'c2VjcmV0LWtleS1tYXRlcmlhbC0zMi1ieXRlcy1sb25nIQ==';
		const stage = writeStage('a', '/etc/enc.yaml', `keys:\n  - name: key1\n    secret: ${secret}\n`, {
			plan: () => ({
				changes: [{kind: 'write-file', path: '/etc/enc.yaml', content: `secret: ${secret}\n`, mode: 0o600, summary: `write key ${secret}`, secrets: [secret]}],
			}),
		});
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [stage], answers: {}, interactive: false, discover: noFacts});
		expect(await engine.run()).toBe(0);
		expect(JSON.stringify(engine.getState())).not.toContain(secret);
		expect(await journalText()).not.toContain(secret);
		expect(await fs.readFile(path.join(root, 'etc/enc.yaml'), 'utf8')).toContain(secret);
	});

	test('non-interactive run names a missing answer and an unknown one', async () => {
		const asking = writeStage('a', '/etc/new.txt', 'x', {
			questions: () => [{id: 'confirm-backup', kind: 'confirm', message: 'Have you stored the key elsewhere?'}],
		});
		const missing = createEngine({command: 'harden', host: new RealHost(root), stages: [asking], answers: {}, interactive: false, discover: noFacts});
		expect(await missing.run()).toBe(2);
		expect(missing.getState().result?.summary.join('\n')).toContain('missing answer "a.confirm-backup"');

		const unknown = createEngine({command: 'harden', host: new RealHost(root), stages: [asking], answers: {a: {typo: 'x'}}, interactive: false, discover: noFacts});
		expect(await unknown.run()).toBe(2);
		expect(unknown.getState().result?.summary.join('\n')).toContain('unknown answer "a.typo"');
	});

	test('interactive: questions, esc goes back, decline writes nothing', async () => {
		const stage = writeStage('a', '/etc/new.txt', 'x', {
			questions: () => [
				{id: 'provider', kind: 'select', message: 'Provider?', choices: [{value: 'secretbox', label: 'secretbox'}, {value: 'aesgcm', label: 'aesgcm'}], default: 'secretbox'},
				{id: 'name', kind: 'text', message: 'Name?', default: 'n', validate: value => (value === 'bad' ? 'no bad names' : undefined)},
			],
		});
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [stage], answers: {}, interactive: true, discover: noFacts});
		const seen: string[] = [];
		engine.subscribe(() => {
			const prompt = engine.getState().prompt;
			if (!prompt) return;
			const key = prompt.type === 'question' ? `${prompt.question.id}${prompt.error ? '!' : ''}` : 'confirm';
			if (seen.at(-1) === key) return;
			seen.push(key);
			queueMicrotask(() => {
				if (key === 'provider' && !seen.includes('name')) engine.answer('aesgcm');
				else if (key === 'name' && seen.filter(k => k === 'name').length === 1) engine.back();
				else if (key === 'provider') engine.answer('secretbox');
				else if (key === 'name') engine.answer('bad');
				else if (key === 'name!') engine.answer('good');
				else if (key === 'confirm') engine.confirm(false);
			});
		});
		expect(await engine.run()).toBe(0);
		expect(seen).toEqual(['provider', 'name', 'provider', 'name', 'name!', 'confirm']);
		await expect(fs.stat(path.join(root, 'etc/new.txt'))).rejects.toThrow();
		expect(engine.getState().stages[0]?.phase).toBe('skipped');
	});

	test('a live lock from another process refuses the run; a stale one is taken over', async () => {
		await fs.mkdir(path.dirname(path.join(root, LOCK_PATH)), {recursive: true});
		await fs.writeFile(path.join(root, LOCK_PATH), `${process.pid}\n`);
		const blocked = createEngine({command: 'harden', host: new RealHost(root), stages: [writeStage('a', '/etc/new.txt', 'x')], answers: {}, interactive: false, discover: noFacts, pid: 1_000_000});
		expect(await blocked.run()).toBe(2);
		expect(blocked.getState().result?.summary.join('\n')).toContain(`pid ${process.pid}`);

		await fs.writeFile(path.join(root, LOCK_PATH), '999999999\n');
		const taken = createEngine({command: 'harden', host: new RealHost(root), stages: [writeStage('a', '/etc/new.txt', 'x')], answers: {}, interactive: false, discover: noFacts});
		expect(await taken.run()).toBe(0);
	});

	test('abort while applying undoes the stage', async () => {
		let engineRef: ReturnType<typeof createEngine> | undefined;
		const tasks: TaskRegistry = registryOf({
			slow: {
				run: async (_params, context) => {
					engineRef?.abort();
					await new Promise(resolve => setTimeout(resolve, 10));
					if (context.signal.aborted) throw new Error('aborted');
				},
			},
		});
		const stage = writeStage('a', '/etc/existing.txt', 'x', {
			plan: () => ({
				changes: [
					{kind: 'write-file', path: '/etc/existing.txt', content: 'changed\n', mode: 0o600, summary: 'rewrite'},
					{kind: 'task', task: 'slow', params: {}, summary: 'slow'},
				],
			}),
		});
		engineRef = createEngine({command: 'harden', host: new RealHost(root), stages: [stage], answers: {}, interactive: false, discover: noFacts, tasks});
		expect(await engineRef.run()).toBe(3);
		expect(await fs.readFile(path.join(root, 'etc/existing.txt'), 'utf8')).toBe('original\n');
		const leftovers = (await fs.readdir(path.join(root, 'etc'))).filter(name => name.startsWith('.'));
		expect(leftovers).toEqual([]);
	});
});

describe('timed confirm from a task (TaskContext.confirm)', () => {
	// A stage whose task writes a marker, asks the operator with a deadline, and fails on "no";
	// its undo removes the marker (like the firewall's revert).
	function confirmingStage(results: boolean[], timeoutMs: number): {stage: Stage; tasks: TaskRegistry} {
		const tasks: TaskRegistry = registryOf({
			ask: {
				run: async (_params, context) => {
					await context.host.writeFileAtomic('/etc/marker', 'applied\n', 0o600);
					const keep = context.confirm ? await context.confirm('Keep it?', timeoutMs) : true;
					results.push(keep);
					if (!keep) throw new Error('not confirmed');
				},
				undo: async (_params, context) => {
					await context.host.remove('/etc/marker');
				},
			},
		});
		const stage = writeStage('t', '/etc/unused', '', {plan: () => ({changes: [{kind: 'task', task: 'ask', params: {}, summary: 'ask'}]})});
		return {stage, tasks};
	}

	async function nextPrompt(engine: ReturnType<typeof createEngine>, predicate: (prompt: NonNullable<ReturnType<typeof engine.getState>['prompt']>) => boolean) {
		for (;;) {
			const prompt = engine.getState().prompt;
			if (prompt && predicate(prompt)) return prompt;
			if (engine.getState().result) throw new Error('the run ended without the prompt');
			await new Promise<void>(resolve => {
				const off = engine.subscribe(() => {
					off();
					resolve();
				});
			});
		}
	}

	test('non-interactive: resolves true and the stage is kept', async () => {
		const results: boolean[] = [];
		const {stage, tasks} = confirmingStage(results, 60_000);
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [stage], answers: {}, interactive: false, discover: noFacts, tasks});
		expect(await engine.run()).toBe(0);
		expect(results).toEqual([true]);
		expect(await fs.readFile(path.join(root, 'etc/marker'), 'utf8')).toBe('applied\n');
	});

	test('interactive: a confirm prompt with a deadline; yes keeps the change', async () => {
		const results: boolean[] = [];
		const {stage, tasks} = confirmingStage(results, 60_000);
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [stage], answers: {}, interactive: true, discover: noFacts, tasks});
		const done = engine.run();
		const preview = await nextPrompt(engine, prompt => prompt.type === 'confirm' && prompt.deadline === undefined);
		expect(preview.type).toBe('confirm');
		engine.confirm(true);
		const timed = await nextPrompt(engine, prompt => prompt.type === 'confirm' && prompt.deadline !== undefined);
		if (timed.type !== 'confirm') throw new Error('expected a confirm');
		expect(timed.message).toBe('Keep it?');
		expect(timed.preview).toEqual([]);
		expect(timed.deadline).toBeGreaterThan(Date.now());
		engine.confirm(true);
		expect(await done).toBe(0);
		expect(results).toEqual([true]);
		expect(await fs.readFile(path.join(root, 'etc/marker'), 'utf8')).toBe('applied\n');
	});

	test('interactive: no answer before the deadline is a no, and the stage is undone', async () => {
		const results: boolean[] = [];
		const {stage, tasks} = confirmingStage(results, 50);
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [stage], answers: {}, interactive: true, discover: noFacts, tasks});
		const done = engine.run();
		await nextPrompt(engine, prompt => prompt.type === 'confirm' && prompt.deadline === undefined);
		engine.confirm(true);
		// Nobody answers the timed prompt.
		expect(await done).toBe(3);
		expect(results).toEqual([false]);
		await expect(fs.stat(path.join(root, 'etc/marker'))).rejects.toThrow(/ENOENT/);
		expect(engine.getState().log.map(line => line.text).join('\n')).toMatch(/No answer within 0 s: taken as no/);
		expect(engine.getState().stages[0]!.phase).toBe('rolled-back');
	});

	test('interactive: esc on the timed prompt asks again; abort answers no', async () => {
		const results: boolean[] = [];
		const {stage, tasks} = confirmingStage(results, 60_000);
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [stage], answers: {}, interactive: true, discover: noFacts, tasks});
		const done = engine.run();
		await nextPrompt(engine, prompt => prompt.type === 'confirm' && prompt.deadline === undefined);
		engine.confirm(true);
		const first = await nextPrompt(engine, prompt => prompt.type === 'confirm' && prompt.deadline !== undefined);
		engine.back();
		const again = await nextPrompt(engine, prompt => prompt.type === 'confirm' && prompt.deadline !== undefined);
		if (first.type !== 'confirm' || again.type !== 'confirm') throw new Error('expected confirms');
		expect(again.deadline).toBe(first.deadline);
		engine.abort();
		expect(await done).toBe(3);
		expect(results).toEqual([false]);
		await expect(fs.stat(path.join(root, 'etc/marker'))).rejects.toThrow(/ENOENT/);
	});
});

/** A registry of ad-hoc executors by name, as a workflow builds one from task definitions. */
function registryOf(executors: Record<string, Parameters<typeof defineTask<object>>[1]>): TaskRegistry {
	return taskRegistry(Object.entries(executors).map(([name, executor]) => defineTask<object>(name, executor)));
}

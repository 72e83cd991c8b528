// The engine's side of issue 14 over a real temporary directory (RealHost with --root):
// declining one stage skips it and what builds on it and goes on; the receipt and
// receipt.json name what changed; --yes reports every missing answer at once; a dry run
// previews without the answers it need not have; a broken input is reported before the
// first question.
import {createHash} from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {afterEach, beforeEach, describe, expect, test} from 'vitest';
import {createEngine, type Engine} from '../../source/engine/engine.js';
import {defineTask, RECEIPT_FILE, RUNS_DIR, taskRegistry, type RunReceiptFile, type Stage} from '../../source/engine/contract.js';
import {RealHost} from '../../source/host/real.js';
import {RecordingHost} from '../../source/host/recording.js';
import {engineRoot, noFacts, writeStage} from './helpers/engine-fixtures.js';

let root: string;
beforeEach(async () => {
	root = await engineRoot('engine-operator-');
});
afterEach(async () => {
	await fs.rm(root, {recursive: true, force: true});
});

/** Answers every confirm from `decide` (by stage id) as soon as it is shown. */
function autoConfirm(engine: Engine, decide: (stageId: string) => boolean | 'abort'): string[] {
	const asked: string[] = [];
	engine.subscribe(() => {
		const prompt = engine.getState().prompt;
		if (prompt?.type !== 'confirm' || asked.at(-1) === prompt.stageId) return;
		asked.push(prompt.stageId);
		const answer = decide(prompt.stageId);
		queueMicrotask(() => (answer === 'abort' ? engine.abort() : engine.confirm(answer)));
	});
	return asked;
}

const exists = (p: string) => fs.stat(path.join(root, p)).then(() => true, () => false);

describe('declining a stage', () => {
	// a (independent) <- b (builds on a) <- c (builds on b); d independent; e declares nothing (builds on all earlier).
	const stages = (): Stage[] => [
		writeStage('a', '/etc/a.txt', 'a\n', {dependsOn: []}),
		writeStage('b', '/etc/b.txt', 'b\n', {dependsOn: ['a']}),
		writeStage('c', '/etc/c.txt', 'c\n', {dependsOn: ['b']}),
		writeStage('d', '/etc/d.txt', 'd\n', {dependsOn: []}),
		writeStage('e', '/etc/e.txt', 'e\n'),
	];

	test('skips it and the stages built on it (directly or not), says which and why, and applies the others', async () => {
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: stages(), answers: {}, interactive: true, discover: noFacts});
		const asked = autoConfirm(engine, id => id !== 'a');
		expect(await engine.run()).toBe(0);
		// b, c and e were never offered: they build on a.
		expect(asked).toEqual(['a', 'd']);
		const state = engine.getState();
		const skip = (id: string) => state.stages.find(s => s.id === id)?.skip;
		expect(skip('a')).toEqual({reason: 'declined', text: 'you answered no at its preview; nothing was changed'});
		expect(skip('b')).toEqual({reason: 'depends-on-declined', text: 'it builds on "Stage a", which you declined'});
		expect(skip('c')).toEqual({reason: 'depends-on-declined', text: 'it builds on "Stage b", which was skipped (it builds on "Stage a")'});
		expect(skip('e')?.reason).toBe('depends-on-declined');
		expect(state.stages.find(s => s.id === 'd')?.phase).toBe('done');
		expect(await exists('etc/d.txt')).toBe(true);
		for (const file of ['a', 'b', 'c', 'e']) expect(await exists(`etc/${file}.txt`)).toBe(false);
		expect(state.log.map(l => l.text)).toContain('Stage a: declined. "Stage b", "Stage c", "Stage e" build on it and will be skipped; the other stages continue.');
		expect(state.result?.receipt?.skipped.map(s => [s.stage, s.reason])).toEqual([
			['a', 'declined'],
			['b', 'depends-on-declined'],
			['c', 'depends-on-declined'],
			['e', 'depends-on-declined'],
		]);
	});

	test('q (abort) at a preview still stops the run with exit 3', async () => {
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: stages(), answers: {}, interactive: true, discover: noFacts});
		autoConfirm(engine, id => (id === 'b' ? 'abort' : true));
		expect(await engine.run()).toBe(3);
		expect(await exists('etc/a.txt')).toBe(true);
		expect(await exists('etc/d.txt')).toBe(false);
		expect(engine.getState().stages.find(s => s.id === 'd')?.skip?.reason).toBe('not-reached');
	});
});

describe('the receipt', () => {
	test('names every file with its backup, the other work and the recovery copy, and receipt.json records what was written', async () => {
		const noteTask = defineTask<{path: string}>('note', {
			async run(params, context) {
				await context.host.writeFileAtomic(params.path, 'sealed\n', 0o600);
			},
		});
		const stage = writeStage('a', '/etc/existing.txt', 'changed\n', {
			plan: () => ({
				changes: [
					{kind: 'write-file', path: '/etc/existing.txt', content: 'changed\n', mode: 0o644, summary: 'change it'},
					{kind: 'write-file', path: '/etc/new.yaml', content: 'secret: abc\n', mode: 0o600, summary: 'new', secrets: ['abc']},
					{...noteTask.change({path: '/var/lib/etcd-harden/recovery/x.age'}, 'write the recovery copy'), keep: {path: '/var/lib/etcd-harden/recovery/x.age', what: 'recovery copy of key key1'}},
				],
			}),
		});
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [stage], answers: {}, interactive: false, discover: noFacts, tasks: taskRegistry([noteTask])});
		expect(await engine.run()).toBe(0);
		const receipt = engine.getState().result?.receipt;
		const [runId] = await fs.readdir(path.join(root, RUNS_DIR));
		expect(receipt?.runId).toBe(runId);
		expect(receipt?.runDir).toBe(`${RUNS_DIR}/${runId}`);
		expect(receipt?.files).toEqual([
			{path: '/etc/existing.txt', stage: 'a', created: false, backup: `${RUNS_DIR}/${runId}/backup/etc/existing.txt`},
			{path: '/etc/new.yaml', stage: 'a', created: true, keyMaterial: true},
		]);
		expect(receipt?.work).toEqual([{stage: 'a', summary: 'write the recovery copy'}]);
		expect(receipt?.keep).toEqual([{path: '/var/lib/etcd-harden/recovery/x.age', what: 'recovery copy of key key1'}]);
		// The backup really holds the file as it was.
		expect(await fs.readFile(path.join(root, receipt!.files[0]!.backup!), 'utf8')).toBe('original\n');
		const record = JSON.parse(await fs.readFile(path.join(root, RUNS_DIR, runId!, RECEIPT_FILE), 'utf8')) as RunReceiptFile;
		expect(record.files.map(f => [f.path, f.sha256, f.mode])).toEqual([
			['/etc/existing.txt', createHash('sha256').update('changed\n').digest('hex'), 0o644],
			['/etc/new.yaml', createHash('sha256').update('secret: abc\n').digest('hex'), 0o600],
		]);
		expect(JSON.stringify(record)).not.toContain('abc\\n');
	});

	test('a run that changes nothing has no run directory and says so', async () => {
		const stage = writeStage('a', '/etc/existing.txt', 'original\n', {plan: () => ({changes: []})});
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [stage], answers: {}, interactive: false, discover: noFacts});
		expect(await engine.run()).toBe(0);
		expect(engine.getState().result?.receipt).toEqual({files: [], work: [], keep: [], skipped: []});
		expect(await exists(RUNS_DIR)).toBe(false);
	});
});

describe('answers without prompting', () => {
	const asking = (extra: Partial<Stage> = {}): Stage =>
		writeStage('a', '/etc/a.txt', 'a\n', {
			questions: () => [
				{id: 'mode', kind: 'select', message: 'Mode?', choices: [{value: 'fast', label: 'fast'}, {value: 'safe', label: 'safe'}]},
				{id: 'sure', kind: 'confirm', message: 'Sure?', confirmsPreset: 'mode', dryRunDefault: true},
				{id: 'name', kind: 'text', message: 'Name?'},
				{id: 'copy', kind: 'select', message: 'Recovery copy?', choices: [{value: 'elsewhere', label: 'elsewhere'}, {value: 'age', label: 'age'}], dryRunDefault: 'elsewhere'},
			],
			...extra,
		});

	test('--yes names every missing answer at once, with the allowed values, and changes nothing', async () => {
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [asking()], answers: {}, interactive: false, discover: noFacts});
		expect(await engine.run()).toBe(2);
		const message = engine.getState().result!.summary.join('\n');
		expect(message).toContain('4 answers are missing');
		expect(message).toContain('"a.mode" (one of: fast, safe): Mode?');
		expect(message).toContain('"a.sure" (true or false): Sure?');
		expect(message).toContain('"a.name": Name?');
		expect(message).toContain('"a.copy" (one of: elsewhere, age): Recovery copy?');
		expect(await exists('etc/a.txt')).toBe(false);
	});

	test('an answer given up front is the confirmation its follow-up asks for', async () => {
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [asking()], answers: {a: {mode: 'safe', name: 'x', copy: 'age'}}, interactive: false, discover: noFacts});
		expect(await engine.run()).toBe(0);
		expect(engine.getState().stages[0]?.answers).toEqual([
			{question: 'Mode?', value: 'safe'},
			{question: 'Sure?', value: 'yes'},
			{question: 'Name?', value: 'x'},
			{question: 'Recovery copy?', value: 'age'},
		]);
	});

	test('a non-interactive dry run previews without the answers a preview need not have, and says what a real run asks', async () => {
		const engine = createEngine({
			command: 'harden',
			host: new RecordingHost(new RealHost(root)),
			stages: [asking()],
			answers: {a: {mode: 'fast', name: 'x'}},
			interactive: false,
			discover: noFacts,
		});
		expect(await engine.run()).toBe(0);
		expect(engine.getState().stages[0]?.phase).toBe('previewed');
		expect(engine.getState().stages[0]?.notes).toContain('A real run asks: Recovery copy? (elsewhere, age); this preview assumed "elsewhere".');
	});

	test('a problem found by a stage\'s preflight is reported before any question is asked', async () => {
		const stage = asking({preflight: () => ['/etc/kubernetes/manifests/kube-apiserver.yaml: not valid YAML at line 3. Fix the file.']});
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [stage], answers: {}, interactive: true, discover: noFacts});
		let prompted = false;
		engine.subscribe(() => {
			if (engine.getState().prompt) prompted = true;
		});
		expect(await engine.run()).toBe(2);
		expect(prompted).toBe(false);
		expect(engine.getState().result?.summary.join('\n')).toContain('kube-apiserver.yaml: not valid YAML at line 3');
	});

	test('a stage stopped by bad input says "failed", and the stages after it "not reached"', async () => {
		const engine = createEngine({command: 'harden', host: new RealHost(root), stages: [asking(), writeStage('b', '/etc/b.txt', 'b\n')], answers: {a: {mode: 'nope'}}, interactive: true, discover: noFacts});
		expect(await engine.run()).toBe(2);
		const [a, b] = engine.getState().stages;
		expect(a?.phase).toBe('failed');
		expect(a?.error).toContain('"nope" is not one of fast, safe');
		expect(b?.skip).toEqual({reason: 'not-reached', text: 'the run stopped before this stage'});
	});
});

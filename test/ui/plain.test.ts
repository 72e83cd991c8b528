// UI tests: the plain (inquirer) frontend against a scripted EngineControl, keys written
// to a fake input stream one at a time, each after the output shows the prompt changed.
import {PassThrough} from 'node:stream';
import {afterEach, describe, expect, it, vi} from 'vitest';

vi.hoisted(() => {
	delete process.env.CI;
	delete process.env.CONTINUOUS_INTEGRATION;
});

import type {Prompt} from '../../source/engine/state.js';
import type {Question} from '../../source/engine/contract.js';
import {runPlain} from '../../source/plain/index.js';
import {ask, baseState, FakeEngine, stage} from './fake-engine.js';
import {keys, stripAnsi, until} from './ink-harness.js';

const provider: Question = {
	id: 'provider',
	kind: 'select',
	message: 'Encryption provider',
	help: 'secretbox is the default.',
	default: 'secretbox',
	choices: [
		{value: 'secretbox', label: 'secretbox'},
		{value: 'aesgcm', label: 'aesgcm'},
		{value: 'aescbc', label: 'aescbc'},
	],
};
const resources: Question = {
	id: 'resources',
	kind: 'multiselect',
	message: 'Resources to encrypt',
	default: ['secrets'],
	choices: [
		{value: 'secrets', label: 'secrets'},
		{value: 'configmaps', label: 'configmaps'},
	],
};
const configPath: Question = {id: 'path', kind: 'text', message: 'Config path', default: '/etc/kubernetes/enc/config.yaml'};
const passphrase: Question = {id: 'pass', kind: 'password', message: 'Backup passphrase'};

const streams: PassThrough[] = [];
afterEach(() => {
	for (const s of streams.splice(0)) s.destroy();
});

function harness(engine: FakeEngine, options: {now?: () => number} = {}) {
	const input = new PassThrough();
	const output = new PassThrough();
	streams.push(input, output);
	let text = '';
	output.on('data', (chunk: Buffer) => {
		text += chunk.toString('utf8');
	});
	const done = runPlain(engine, {input, output, color: false, now: options.now});
	const screen = () => stripAnsi(text);
	return {
		done,
		screen,
		async waitFor(needle: string, after = 0) {
			await until(() => screen().indexOf(needle, after) !== -1, JSON.stringify(needle));
		},
		/** Writes one key and waits for the output to grow. */
		async press(key: string) {
			const before = text.length;
			input.write(key);
			await until(() => text.length > before, `output after ${JSON.stringify(key)}`);
			await new Promise(resolve => setTimeout(resolve, 5));
		},
		/** Writes one key and waits for a condition. */
		async pressUntil(key: string, condition: () => boolean, what: string) {
			input.write(key);
			await until(condition, what);
		},
	};
}

/** Engine script: each answer or confirm moves to the next prompt; the last one sets the result. */
function scripted(prompts: Prompt[], finish: () => void) {
	const engine = new FakeEngine(baseState({prompt: prompts[0]}));
	let step = 0;
	const next = () => {
		step++;
		if (step < prompts.length) engine.update({prompt: prompts[step]});
		else {
			engine.update({prompt: undefined});
			finish();
		}
	};
	engine.onAnswer = next;
	engine.onConfirm = next;
	return engine;
}

describe('plain frontend', () => {
	it('asks select, checkbox, input, password and the preview confirm, and prints stages, checks and summary', async () => {
		const preview: Prompt = {
			type: 'confirm',
			stageId: 'encryption-config',
			message: 'Apply 1 change?',
			preview: [{kind: 'write-file', summary: '/etc/kubernetes/enc/config.yaml (new, 0600)', body: '--- /dev/null\n+++ b\n@@ -0,0 +1 @@\n+secret: <redacted>\n'}],
		};
		const engine = scripted(
			[ask(provider, {index: 0, total: 4}), ask(resources, {index: 1, total: 4}), ask(configPath, {index: 2, total: 4}), ask(passphrase, {index: 3, total: 4}), preview],
			() =>
				engine.update({
					stages: [
						stage('discover', 'done'),
						stage('encryption-config', 'failed', {
							checks: [
								{id: 'a', title: 'Config written', status: 'pass'},
								{id: 'b', title: 'Flag set', status: 'fail', actual: 'missing', remediation: 'Rerun apiserver-manifest.'},
							],
						}),
						stage('apiserver-manifest', 'skipped'),
					],
					log: [{level: 'success', text: 'Wrote the config'}],
					result: {exitCode: 1, summary: ['1 check failed']},
				}),
		);
		const ui = harness(engine);

		await ui.waitFor('Encryption provider (1 of 4)');
		expect(ui.screen()).toContain('etcd-harden harden');
		expect(ui.screen()).toContain('secretbox is the default.');
		await ui.press(keys.down);
		await ui.pressUntil(keys.enter, () => engine.calls.length === 1, 'select answer');

		await ui.waitFor('Resources to encrypt (2 of 4)');
		await ui.press(keys.down);
		await ui.press(keys.space);
		await ui.pressUntil(keys.enter, () => engine.calls.length === 2, 'checkbox answer');

		await ui.waitFor('Config path (3 of 4)');
		await ui.pressUntil(keys.enter, () => engine.calls.length === 3, 'input answer');

		await ui.waitFor('Backup passphrase (4 of 4)');
		for (const ch of 'hunter2') await ui.press(ch);
		await ui.press(keys.enter);
		// Typed twice, masked: the second entry must match.
		await ui.waitFor('Type it again to confirm');
		expect(engine.calls.length).toBe(3);
		for (const ch of 'hunter2') await ui.press(ch);
		await ui.pressUntil(keys.enter, () => engine.calls.length === 4, 'password answer');

		await ui.waitFor('Apply 1 change?');
		expect(ui.screen()).toContain('Changes planned by Encryption config:');
		expect(ui.screen()).toContain('write: /etc/kubernetes/enc/config.yaml (new, 0600)');
		expect(ui.screen()).toContain('+secret: <redacted>');
		await ui.press('y'); // inquirer's confirm takes y then enter
		await ui.pressUntil(keys.enter, () => engine.calls.length === 5, 'confirm');

		await ui.done;
		expect(engine.calls).toEqual([
			{type: 'answer', value: 'aesgcm'},
			{type: 'answer', value: ['secrets', 'configmaps']},
			{type: 'answer', value: '/etc/kubernetes/enc/config.yaml'},
			{type: 'answer', value: 'hunter2'},
			{type: 'confirm', yes: true},
		]);
		const out = ui.screen();
		expect(out).not.toContain('hunter2');
		expect(out).toContain('✔ Wrote the config');
		expect(out).toContain('✖ Encryption config: failed');
		expect(out).toContain('PASS  Config written');
		expect(out).toContain('FAIL  Flag set: missing');
		expect(out).toContain('fix: Rerun apiserver-manifest.');
		expect(out).toContain('Finished with failed checks (exit 1)');
		expect(out).toContain('3 stages: 1 done, 1 failed, 1 skipped');
		expect(out).not.toContain('1 check failed'); // the CLI prints the summary on stdout
	});

	it('prints the validation error and asks again', async () => {
		const question = {...configPath, default: undefined};
		const engine = new FakeEngine(baseState({prompt: ask(question)}));
		engine.onAnswer = value => {
			if (value === 'rel') engine.update({prompt: ask(question, {error: 'Use an absolute path.'})});
			else engine.update({prompt: undefined, result: {exitCode: 0, summary: ['ok']}});
		};
		const ui = harness(engine);
		await ui.waitFor('Config path');
		for (const ch of 'rel') await ui.press(ch);
		await ui.pressUntil(keys.enter, () => engine.calls.length === 1, 'first answer');
		await ui.waitFor('✖ Use an absolute path.');
		const at = ui.screen().indexOf('✖ Use an absolute path.');
		await ui.waitFor('Config path', at);
		for (const ch of '/abs') await ui.press(ch);
		await ui.pressUntil(keys.enter, () => engine.calls.length === 2, 'second answer');
		await ui.done;
		expect(engine.calls).toEqual([
			{type: 'answer', value: 'rel'},
			{type: 'answer', value: '/abs'},
		]);
	});

	it('Ctrl-C in a prompt aborts and asks nothing more', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(provider)}));
		const ui = harness(engine);
		await ui.waitFor('Encryption provider');
		await ui.pressUntil(keys.ctrlC, () => engine.calls.length === 1, 'abort');
		expect(engine.calls).toEqual([{type: 'abort'}]);
		// The engine still shows a prompt (it is undoing): the frontend must not ask it.
		engine.update({prompt: ask(resources)});
		await new Promise(resolve => setTimeout(resolve, 100));
		expect(ui.screen()).not.toContain('Resources to encrypt');
		engine.update({prompt: undefined, result: {exitCode: 3, summary: ['Aborted.']}});
		await ui.done;
		expect(ui.screen()).toContain('(exit 3)');
		expect(engine.calls).toEqual([{type: 'abort'}]);
	});

	it('withdraws its prompt when the engine moves on without an answer', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(provider)}));
		const ui = harness(engine);
		await ui.waitFor('Encryption provider');
		engine.update({prompt: undefined, result: {exitCode: 3, summary: ['Interrupted by SIGTERM.']}});
		await ui.done;
		expect(ui.screen()).toContain('Aborted (exit 3)');
		expect(engine.calls).toEqual([]);
	});

	it('prints a progress line per update, throttled, and always the completion', async () => {
		let clock = 0;
		const engine = new FakeEngine(baseState({stages: [stage('re-encrypt', 'applying')], current: 0}));
		const ui = harness(engine, {now: () => clock});
		const report = (done: number) =>
			engine.update({progress: {stageId: 're-encrypt', label: 'Re-encrypting', done, total: 100, rate: 50, etaSeconds: (100 - done) / 50}});
		for (let done = 10; done <= 90; done += 10) {
			report(done);
			clock += 100; // 9 updates within 0.9 s: only the first prints
		}
		clock += 1000;
		report(95); // a second later: prints
		report(100); // completion: prints
		engine.update({result: {exitCode: 0, summary: []}});
		await ui.done;
		const lines = ui.screen().split('\n').filter(line => line.includes('Re-encrypting'));
		expect(lines).toEqual([
			'  Re-encrypting  [##..................] 10/100 10%  50/s  ETA 2s',
			'  Re-encrypting  [###################.] 95/100 95%  50/s  ETA 0s',
			'  Re-encrypting  [####################] 100/100 100%  50/s  ETA 0s',
		]);
	});

	it('prints a dry-run stage with its notes, warnings and preview', async () => {
		const engine = new FakeEngine(baseState({dryRun: true, stages: [stage('encryption-config', 'planning')], current: 0}));
		const ui = harness(engine);
		engine.update({
			stages: [
				stage('encryption-config', 'previewed', {
					notes: ['identity stays last'],
					warnings: ['aescbc is weak'],
					preview: [{kind: 'run', summary: 'restart', body: 'crictl stop abc'}],
				}),
			],
			result: {exitCode: 0, summary: ['Dry run: nothing was changed.']},
		});
		await ui.done;
		const out = ui.screen();
		expect(out).toContain('dry run');
		expect(out).toContain('• identity stays last');
		expect(out).toContain('! aescbc is weak');
		expect(out).toContain('◇ Encryption config: previewed (dry run)');
		expect(out).toContain('$ crictl stop abc');
		expect(out.indexOf('aescbc is weak')).toBe(out.lastIndexOf('aescbc is weak'));
	});
});

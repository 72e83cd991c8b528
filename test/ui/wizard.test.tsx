// UI tests: the Ink wizard against a scripted EngineControl (not the real engine).
import {afterEach, describe, expect, it, vi} from 'vitest';

vi.hoisted(() => {
	delete process.env.CI;
	delete process.env.CONTINUOUS_INTEGRATION;
	process.env.FORCE_COLOR = '1';
});

import {cleanup} from 'ink-testing-library';
import type {Question} from '../../source/engine/contract.js';
import {ask, baseState, FakeEngine, stage} from './fake-engine.js';
import {keys, renderWizard} from './ink-harness.js';
import {Wizard} from '../../source/ui/wizard.js';
import {render} from 'ink-testing-library';
import React from 'react';

afterEach(() => cleanup());

const provider: Question = {
	id: 'provider',
	kind: 'select',
	message: 'Encryption provider',
	help: 'secretbox is the default.',
	default: 'secretbox',
	choices: [
		{value: 'secretbox', label: 'secretbox', hint: 'XSalsa20-Poly1305'},
		{value: 'aesgcm', label: 'aesgcm', hint: 'rotate every 200k writes'},
		{value: 'aescbc', label: 'aescbc', hint: 'weak'},
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
		{value: 'events', label: 'events'},
	],
};

const configPath: Question = {
	id: 'path',
	kind: 'text',
	message: 'Where to write the config',
	default: '/etc/kubernetes/enc/config.yaml',
};

/** Lines of the frame that mention `text`. */
const linesWith = (frame: string, text: string) => frame.split('\n').filter(line => line.includes(text));

describe('stage list', () => {
	it('shows every stage with its phase, a marker on the current one, and its explanation', () => {
		const engine = new FakeEngine(
			baseState({
				dryRun: true,
				stages: [
					stage('discover', 'done'),
					stage('encryption-config', 'asking', {
						notes: ['An existing config was found and will be merged.'],
						warnings: ['aescbc is weak'],
					}),
					stage('apiserver-manifest', 'pending'),
					stage('firewall', 'skipped'),
					stage('etcd-auth', 'rolled-back'),
					stage('backup', 'previewed'),
				],
				current: 1,
				prompt: ask(provider),
			}),
		);
		const ui = renderWizard(engine);
		const frame = ui.frame();
		expect(frame).toContain('dry run');
		// Finished stages are also printed above the live area ("✔ Discover: done").
		expect(frame).toContain('✔ Discover: done');
		expect(linesWith(frame, 'Discover  done')[0]).toMatch(/^ {2}✔ Discover {2}done$/);
		expect(linesWith(frame, 'Encryption config  questions')[0]).toMatch(/^❯ \? Encryption config/);
		expect(linesWith(frame, 'Apiserver manifest')[0]).toContain('· Apiserver manifest  to do');
		expect(frame).toContain('- Firewall  skipped');
		expect(frame).toContain('↺ Etcd auth  rolled back');
		expect(frame).toContain('◇ Backup  previewed (dry run)');
		expect(frame).toContain('Explains encryption-config.');
		expect(frame).toContain('• An existing config was found and will be merged.');
		expect(frame).toContain('! aescbc is weak');
		// One stage marker (the other ❯ is the select's cursor).
		expect(frame.split('\n').filter(line => line.startsWith('❯ '))).toEqual([
			'❯ ? Encryption config  questions',
			'❯ secretbox  XSalsa20-Poly1305',
		]);
	});
});

describe('questions', () => {
	it('moves a select with the arrows and answers the highlighted choice on enter', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(provider, {index: 0, total: 2})}));
		const ui = renderWizard(engine);
		expect(ui.frame()).toContain('Encryption provider  (1 of 2)');
		expect(ui.frame()).toContain('secretbox is the default.');
		expect(ui.frame()).toContain('❯ secretbox  XSalsa20-Poly1305');

		let frame = await ui.press(keys.down);
		expect(frame).toContain('❯ aesgcm');
		expect(frame).not.toContain('❯ secretbox');
		frame = await ui.press(keys.down);
		expect(frame).toContain('❯ aescbc');
		frame = await ui.press(keys.down); // wraps around
		expect(frame).toContain('❯ secretbox');
		frame = await ui.press(keys.up);
		expect(frame).toContain('❯ aescbc');
		frame = await ui.press(keys.up);
		expect(frame).toContain('❯ aesgcm');

		await ui.pressUntil(keys.enter, () => engine.calls.length > 0, 'an answer');
		expect(engine.calls).toEqual([{type: 'answer', value: 'aesgcm'}]);
	});

	it('starts a select on its default', () => {
		const engine = new FakeEngine(baseState({prompt: ask({...provider, default: 'aescbc'})}));
		const ui = renderWizard(engine);
		expect(ui.frame()).toContain('❯ aescbc');
	});

	it('toggles a multiselect with space and answers the ticked values in order', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(resources)}));
		const ui = renderWizard(engine);
		expect(ui.frame()).toContain('❯ [x] secrets');
		expect(ui.frame()).toContain('  [ ] configmaps');

		let frame = await ui.press(keys.space); // untick secrets
		expect(frame).toContain('❯ [ ] secrets');
		frame = await ui.press(keys.down);
		frame = await ui.press(keys.down);
		frame = await ui.press(keys.space);
		expect(frame).toContain('❯ [x] events');
		frame = await ui.press(keys.up);
		frame = await ui.press(keys.space);
		expect(frame).toContain('❯ [x] configmaps');

		await ui.pressUntil(keys.enter, () => engine.calls.length > 0, 'an answer');
		expect(engine.calls).toEqual([{type: 'answer', value: ['configmaps', 'events']}]);
	});

	it('edits a text answer and shows the default until something is typed', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(configPath)}));
		const ui = renderWizard(engine);
		expect(ui.frame()).toContain('(/etc/kubernetes/enc/config.yaml)');
		await ui.type('/tmp/encx');
		expect(ui.frame()).toContain('› /tmp/encx');
		expect(ui.frame()).not.toContain('(/etc/kubernetes/enc/config.yaml)');
		const frame = await ui.press(keys.backspace);
		expect(frame).toContain('› /tmp/enc');
		expect(frame).not.toContain('encx');
		// q is a character while typing, not quit.
		await ui.type('q');
		await ui.pressUntil(keys.enter, () => engine.calls.length > 0, 'an answer');
		expect(engine.calls).toEqual([{type: 'answer', value: '/tmp/encq'}]);
	});

	it('answers the default when enter is pressed on an empty text answer', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(configPath)}));
		const ui = renderWizard(engine);
		await ui.pressUntil(keys.enter, () => engine.calls.length > 0, 'an answer');
		expect(engine.calls).toEqual([{type: 'answer', value: '/etc/kubernetes/enc/config.yaml'}]);
	});

	it('masks a password', async () => {
		const engine = new FakeEngine(
			baseState({prompt: ask({id: 'pass', kind: 'password', message: 'Backup passphrase'})}),
		);
		const ui = renderWizard(engine);
		await ui.type('hunter2');
		expect(ui.frame()).toContain('› *******');
		// Typed twice: the first enter asks for it again, nothing is answered yet.
		let frame = await ui.press(keys.enter);
		expect(frame).toContain('Type it again to confirm.');
		expect(engine.calls).toEqual([]);
		// A different second entry is refused and both are asked again.
		await ui.type('hunter3');
		frame = await ui.press(keys.enter);
		expect(frame).toContain('✖ The two entries differ');
		expect(engine.calls).toEqual([]);
		await ui.type('hunter2');
		await ui.press(keys.enter);
		await ui.type('hunter2');
		await ui.pressUntil(keys.enter, () => engine.calls.length > 0, 'an answer');
		expect(engine.calls).toEqual([{type: 'answer', value: 'hunter2'}]);
		expect(ui.frames.join('\n')).not.toContain('hunter');
	});

	it('answers a yes/no question with y, n, and enter for its default', async () => {
		const question: Question = {id: 'identity', kind: 'confirm', message: 'Keep identity last?', default: true};
		const engine = new FakeEngine(baseState({prompt: ask(question)}));
		engine.onAnswer = () => engine.update({prompt: ask({...question}, {index: engine.calls.length})});
		const ui = renderWizard(engine);
		expect(ui.frame()).toContain('Keep identity last?');
		expect(ui.frame()).toContain('(Y/n)');
		await ui.pressUntil('n', () => engine.calls.length === 1, 'n');
		await ui.pressUntil('y', () => engine.calls.length === 2, 'y');
		await ui.pressUntil(keys.enter, () => engine.calls.length === 3, 'enter');
		expect(engine.calls.map(c => (c.type === 'answer' ? c.value : c.type))).toEqual([false, true, true]);
	});

	it('shows the validation error when the engine re-asks, and sends the corrected answer', async () => {
		const engine = new FakeEngine(baseState({prompt: ask({...configPath, default: undefined})}));
		engine.onAnswer = value => {
			if (value === 'relative') {
				engine.update({prompt: ask({...configPath, default: undefined}, {error: 'The path must be absolute, like /etc/kubernetes/enc/config.yaml.'})});
			} else {
				engine.update({prompt: undefined, stages: baseState().stages.map(s => (s.id === 'encryption-config' ? {...s, phase: 'planning'} : s))});
			}
		};
		const ui = renderWizard(engine);
		await ui.type('relative');
		let frame = await ui.press(keys.enter);
		expect(frame).toContain('✖ The path must be absolute, like /etc/kubernetes/enc/config.yaml.');
		// The typed text stays for editing.
		expect(frame).toContain('› relative');
		for (let i = 0; i < 'relative'.length; i++) await ui.press(keys.backspace);
		await ui.type('/ok');
		frame = await ui.press(keys.enter);
		expect(frame).not.toContain('must be absolute');
		expect(frame).toContain('Encryption config  preparing');
		expect(engine.calls).toEqual([
			{type: 'answer', value: 'relative'},
			{type: 'answer', value: '/ok'},
		]);
	});

	it('sends nothing more after an answer until the engine shows the next prompt', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(provider)}));
		const ui = renderWizard(engine);
		await ui.pressUntil(keys.enter, () => engine.calls.length === 1, 'an answer');
		await ui.pressUntil(keys.enter, () => true, 'a second enter');
		await new Promise(resolve => setTimeout(resolve, 50));
		expect(engine.calls).toHaveLength(1);
	});
});

describe('esc, q and Ctrl-C', () => {
	it('going back starts from the answer given before, not the default', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(provider, {index: 0, total: 2})}));
		engine.onAnswer = () => engine.update({prompt: ask(configPath, {index: 1, total: 2})});
		engine.onBack = () => engine.update({prompt: ask(provider, {index: 0, total: 2})});
		const ui = renderWizard(engine);
		await ui.press(keys.down);
		let frame = await ui.press(keys.enter);
		expect(frame).toContain('Where to write the config');
		frame = await ui.press(keys.escape);
		expect(frame).toContain('❯ aesgcm');
		expect(engine.calls).toEqual([{type: 'answer', value: 'aesgcm'}, {type: 'back'}]);
	});

	it('esc asks the engine to go back, and the previous question is shown again', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(resources, {index: 1, total: 2})}));
		engine.onBack = () => engine.update({prompt: ask(provider, {index: 0, total: 2})});
		const ui = renderWizard(engine);
		expect(ui.frame()).toContain('Resources to encrypt');
		const frame = await ui.press(keys.escape);
		expect(engine.calls).toEqual([{type: 'back'}]);
		expect(frame).toContain('Encryption provider  (1 of 2)');
		expect(frame).not.toContain('Resources to encrypt');
	});

	it('esc in a text answer goes back instead of typing', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(configPath, {index: 1, total: 2})}));
		engine.onBack = () => engine.update({prompt: ask(provider, {index: 0, total: 2})});
		const ui = renderWizard(engine);
		await ui.type('/x');
		const frame = await ui.press(keys.escape);
		expect(engine.calls).toEqual([{type: 'back'}]);
		expect(frame).toContain('Encryption provider');
	});

	it('q aborts, asks nothing more, and keeps rendering until the result', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(provider)}));
		const ui = renderWizard(engine);
		let frame = await ui.press('q');
		expect(engine.calls).toEqual([{type: 'abort'}]);
		expect(frame).toContain('Aborting');
		expect(frame).not.toContain('Encryption provider');
		// Keys after abort are ignored, even if the engine still shows a prompt.
		await ui.pressUntil(keys.enter, () => true, 'enter');
		await ui.pressUntil('y', () => true, 'y');
		await new Promise(resolve => setTimeout(resolve, 50));
		expect(engine.calls).toEqual([{type: 'abort'}]);

		engine.update(s => ({
			...s,
			prompt: undefined,
			stages: s.stages.map(st => (st.id === 'encryption-config' ? {...st, phase: 'rolled-back', error: 'Aborted by the operator.'} : st)),
			result: {exitCode: 3, summary: ['Encryption config: rolled back']},
		}));
		await ui.waitFor(f => f.includes('exit 3'), 'the summary');
		frame = ui.frame();
		expect(frame).toContain('Aborted (exit 3)');
		expect(frame).toContain('↺ Encryption config: rolled back');
		expect(frame).toContain('Aborted by the operator.');
		expect(frame).not.toContain('Aborting:');
	});

	it('Ctrl-C aborts from a text answer (where q is a character) and during apply', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(configPath)}));
		const ui = renderWizard(engine);
		await ui.type('q');
		expect(engine.calls).toEqual([]);
		const frame = await ui.press(keys.ctrlC);
		expect(engine.calls).toEqual([{type: 'abort'}]);
		expect(frame).toContain('Aborting');

		const applying = new FakeEngine(
			baseState({stages: [stage('discover', 'done'), stage('encryption-config', 'applying')], progress: {stageId: 'encryption-config', label: 'Writing files'}}),
		);
		const ui2 = renderWizard(applying);
		await ui2.press(keys.ctrlC);
		expect(applying.calls).toEqual([{type: 'abort'}]);
		// A second Ctrl-C does not abort twice.
		await ui2.pressUntil(keys.ctrlC, () => true, 'second ctrl-c');
		await new Promise(resolve => setTimeout(resolve, 50));
		expect(applying.calls).toEqual([{type: 'abort'}]);
	});
});

describe('preview and confirm', () => {
	const preview = {
		type: 'confirm' as const,
		stageId: 'encryption-config',
		message: 'Apply 2 changes?',
		preview: [
			{
				kind: 'write-file' as const,
				summary: '/etc/kubernetes/enc/config.yaml (new, 0600)',
				body: '--- /dev/null\n+++ /etc/kubernetes/enc/config.yaml\n@@ -0,0 +1,2 @@\n+kind: EncryptionConfiguration\n+secret: <redacted>\n-removed line\n',
			},
			{kind: 'run' as const, summary: 'reload', body: 'systemctl restart kubelet'},
		],
	};

	it('shows the diff coloured and the command, then y confirms', async () => {
		const engine = new FakeEngine(baseState({prompt: preview}));
		const ui = renderWizard(engine);
		const frame = ui.frame();
		expect(frame).toContain('Changes planned by Encryption config:');
		expect(frame).toContain('write: /etc/kubernetes/enc/config.yaml (new, 0600)');
		expect(frame).toContain('+kind: EncryptionConfiguration');
		expect(frame).toContain('+secret: <redacted>');
		expect(frame).toContain('run: reload');
		expect(frame).toContain('$ systemctl restart kubelet');
		expect(frame).toContain('Apply 2 changes? (Y/n)');
		// + lines green, - lines red.
		const raw = ui.rawFrame();
		expect(raw).toMatch(/\u001B\[32m\+kind: EncryptionConfiguration/);
		expect(raw).toMatch(/\u001B\[31m-removed line/);
		await ui.pressUntil('y', () => engine.calls.length > 0, 'confirm');
		expect(engine.calls).toEqual([{type: 'confirm', yes: true}]);
	});

	it('n declines', async () => {
		const engine = new FakeEngine(baseState({prompt: preview}));
		const ui = renderWizard(engine);
		await ui.pressUntil('n', () => engine.calls.length > 0, 'decline');
		expect(engine.calls).toEqual([{type: 'confirm', yes: false}]);
	});

	it('enter takes the default (apply)', async () => {
		const engine = new FakeEngine(baseState({prompt: preview}));
		const ui = renderWizard(engine);
		await ui.pressUntil(keys.enter, () => engine.calls.length > 0, 'enter');
		expect(engine.calls).toEqual([{type: 'confirm', yes: true}]);
	});

	it('esc from the preview goes back to the last question', async () => {
		const engine = new FakeEngine(baseState({prompt: preview}));
		engine.onBack = () => engine.update({prompt: ask(provider)});
		const ui = renderWizard(engine);
		const frame = await ui.press(keys.escape);
		expect(engine.calls).toEqual([{type: 'back'}]);
		expect(frame).toContain('❯ secretbox');
		expect(frame).not.toContain('Apply 2 changes?');
	});

	it('prints a preview once even when later snapshots repeat it', async () => {
		const engine = new FakeEngine(baseState({prompt: preview}));
		const ui = renderWizard(engine);
		engine.update(s => ({...s, log: [{level: 'info', text: 'still here'}], prompt: {...preview}}));
		await ui.waitFor(f => f.includes('still here'), 'the log line');
		expect(ui.frame().split('Changes planned by').length - 1).toBe(1);
	});
});

describe('progress, checks and summary', () => {
	it('renders label, bar, count, rate, ETA and the last lines of output', () => {
		const engine = new FakeEngine(
			baseState({
				stages: [stage('discover', 'done'), stage('re-encrypt', 'applying')],
				current: 1,
				progress: {
					stageId: 're-encrypt',
					label: 'Re-encrypting secrets',
					done: 750,
					total: 3000,
					rate: 300,
					etaSeconds: 75,
					tail: ['line 1', 'line 2', 'line 3', 'line 4', 'line 5', 'line 6', 'line 7'],
				},
			}),
		);
		const ui = renderWizard(engine);
		const frame = ui.frame();
		expect(frame).toContain('Re-encrypting secrets  [#####...............] 750/3000 25%  300/s  ETA 1m15s');
		expect(frame).toContain('line 7');
		expect(frame).toContain('line 3');
		expect(frame).not.toContain('line 2');
		// Not animated: no spinner frame in a test render.
		expect(frame).toContain('❯ › Re encrypt  applying');
	});

	it('updates progress in place as the engine reports it', async () => {
		const engine = new FakeEngine(
			baseState({progress: {stageId: 'encryption-config', label: 'Waiting for /readyz', done: 1, total: 4}}),
		);
		const ui = renderWizard(engine);
		expect(ui.frame()).toContain('1/4 25%');
		engine.update({progress: {stageId: 'encryption-config', label: 'Waiting for /readyz', done: 3, total: 4}});
		await ui.waitFor(f => f.includes('3/4 75%'), 'progress 3/4');
		expect(ui.frame()).not.toContain('1/4');
	});

	it('prints finished stages with PASS/FAIL/WARN checks and remediation, then the summary', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(provider)}));
		const ui = renderWizard(engine);
		engine.update({
			prompt: undefined,
			stages: [
				stage('discover', 'done'),
				stage('encryption-config', 'failed', {
					checks: [
						{id: 'a', title: 'Config written', status: 'pass', actual: 'mode 0600'},
						{id: 'b', title: 'apiserver flag', status: 'fail', actual: 'missing', remediation: 'Rerun the apiserver-manifest stage.'},
						{id: 'c', title: 'Provider', status: 'warn', actual: 'aescbc', remediation: 'Switch to secretbox.'},
					],
				}),
				stage('apiserver-manifest', 'unchanged'),
			],
			current: 2,
			log: [{level: 'success', text: 'Wrote /etc/kubernetes/enc/config.yaml'}],
			result: {exitCode: 1, summary: ['1 check failed', 'Run etcd-harden status for details.']},
		});
		await ui.waitFor(f => f.includes('exit 1'), 'the summary');
		const frame = ui.frame();
		expect(frame).toContain('✔ Wrote /etc/kubernetes/enc/config.yaml');
		expect(frame).toContain('✖ Encryption config: failed');
		expect(frame).toContain('PASS  Config written: mode 0600');
		expect(frame).toContain('FAIL  apiserver flag: missing');
		expect(frame).toContain('fix: Rerun the apiserver-manifest stage.');
		expect(frame).toContain('WARN  Provider: aescbc');
		expect(frame).toContain('fix: Switch to secretbox.');
		expect(frame).toContain('= Apiserver manifest: unchanged');
		expect(frame).toContain('Finished with failed checks (exit 1)');
		expect(frame).toContain('3 stages: 1 done, 1 failed, 1 unchanged');
		// The summary lines are the CLI's to print on stdout.
		expect(frame).not.toContain('Run etcd-harden status for details.');
		// A passing check has no fix line.
		expect(frame.match(/fix:/g)).toHaveLength(2);
		// Each finished stage is printed once, even after the wizard exits.
		await new Promise(resolve => setTimeout(resolve, 50));
		expect(ui.frame().match(/Encryption config: failed/g)).toHaveLength(1);
		// Finished: no current marker, no prompt, no key hints.
		expect(frame).not.toContain('❯');
		expect(frame).not.toContain('q quit');
	});
});

describe('summary lines', () => {
	it('are shown when asked for (a host that does not print the result itself)', () => {
		const engine = new FakeEngine(baseState({result: {exitCode: 0, summary: ['All stages applied.']}}));
		const shown = render(<Wizard control={engine} summaryLines />);
		expect(shown.lastFrame()).toContain('All stages applied.');
		const hidden = render(<Wizard control={engine} />);
		expect(hidden.lastFrame()).not.toContain('All stages applied.');
		expect(hidden.lastFrame()).toContain('Done (exit 0)');
	});
});

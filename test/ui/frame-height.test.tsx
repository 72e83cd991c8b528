// The live frame never reaches the terminal's height (Ink clears the screen and the scrollback
// when it does), at any size from 60x20 up, with the longest diff among the repo's fixtures:
// the demo's kube-apiserver manifest written as a new file (every line added).
import * as fs from 'node:fs';
import * as path from 'node:path';
import React from 'react';
import {render} from 'ink-testing-library';
import {afterEach, describe, expect, it} from 'vitest';
import type {EngineState, Prompt} from '../../source/engine/state.js';
import {frameBudget, Wizard} from '../../source/ui/wizard.js';
import {baseState, FakeEngine, stage} from './fake-engine.js';
import {stripAnsi, until} from './ink-harness.js';
import {repoDir} from './tree.js';

const manifest = fs.readFileSync(path.join(repoDir, 'demo/etc/kubernetes/manifests/kube-apiserver.yaml'), 'utf8');
const lastLine = manifest.trimEnd().split('\n').at(-1)!;
const longestDiff = ['--- /dev/null', '+++ b/etc/kubernetes/manifests/kube-apiserver.yaml', `@@ -0,0 +1,${manifest.split('\n').length} @@`, ...manifest.split('\n').map(line => `+${line}`)].join('\n');

const longText = 'This explanation is deliberately long, so that it wraps over several lines at every width the wizard supports, and must give way when the terminal is short. '.repeat(3);
const stages = [
	stage('encryption-config', 'done'),
	stage('apiserver-manifest', 'previewing', {explain: longText, notes: [longText, 'A second note.'], warnings: ['A warning that matters.']}),
	stage('reencrypt', 'pending'),
	stage('etcd-tls', 'pending'),
	stage('etcd-auth', 'pending'),
	stage('firewall', 'skipped', {skip: {reason: 'left-out', text: 'no running node was probed (etcd-harden runs with --root)'}}),
];

const confirm: Prompt = {
	type: 'confirm',
	stageId: 'apiserver-manifest',
	message: 'Apply these changes for "kube-apiserver manifest"?',
	preview: [
		{kind: 'task', summary: 'Record the running kube-apiserver', body: 'timeout 180 s'},
		{kind: 'write-file', summary: 'Point kube-apiserver at /etc/kubernetes/enc/encryption-config.yaml', body: longestDiff},
	],
};
const question: Prompt = {
	type: 'question',
	stageId: 'apiserver-manifest',
	question: {
		id: 'resources',
		kind: 'multiselect',
		message: 'Resources to encrypt, a question long enough to wrap on a narrow terminal',
		help: longText,
		choices: Array.from({length: 12}, (_, i) => ({value: `r${i}`, label: `resource ${i}`, hint: 'a hint'})),
	},
	index: 1,
	total: 3,
	error: 'The last answer was refused for a reason that takes a whole line or two to explain properly.',
};

const states: Record<string, EngineState> = {
	question: baseState({stages, current: 1, prompt: question, progress: {stageId: 'x', label: 'working', tail: ['a', 'b', 'c', 'd', 'e']}}),
	preview: baseState({stages, current: 1, prompt: confirm}),
	result: baseState({stages, current: 5, result: {exitCode: 0, summary: [longText, longText]}}),
};

const instances: Array<{unmount(): void}> = [];
afterEach(() => {
	for (const instance of instances.splice(0)) instance.unmount();
});

/** The live frame: from its header line to the end (the feed above is <Static>, written once). */
function liveFrame(frame: string): string[] {
	const lines = stripAnsi(frame).split('\n');
	const start = lines.findIndex(line => line.startsWith('etcd-harden harden'));
	expect(start).toBeGreaterThanOrEqual(0);
	return lines.slice(start);
}

describe('the live frame stays below the terminal height', () => {
	for (const columns of [60, 100]) {
		it(`at ${columns} columns, for rows 20..60: a question, a waiting preview, the diff pager, the result`, async () => {
			for (let rows = 20; rows <= 60; rows++) {
				for (const [name, state] of Object.entries(states)) {
					const engine = new FakeEngine(state);
					const ui = render(<Wizard control={engine} rows={rows} columns={columns} summaryLines />);
					instances.push(ui);
					const height = liveFrame(ui.lastFrame() ?? '').length;
					expect(height, `${name} at ${columns}x${rows}`).toBeLessThan(rows);
					expect(height).toBeLessThanOrEqual(frameBudget(rows));
					if (name === 'preview') {
						const frame = liveFrame(ui.lastFrame() ?? '').join('\n');
						// What is decided stays in view: the summary and the prompt.
						expect(frame).toContain('Changes by Apiserver manifest: 1 file (+122 -0), 1 step');
						expect(frame).toContain('Apply these changes for "kube-apiserver manifest"? (Y/n)');
						// d opens the pager in the frame, still within the budget.
						await until(() => ui.stdin.listenerCount('readable') > 0, 'input');
						ui.stdin.write('d');
						await until(() => stripAnsi(ui.lastFrame() ?? '').includes('lines 1-'), 'the pager');
						const paged = liveFrame(ui.lastFrame() ?? '');
						expect(paged.length, `pager at ${columns}x${rows}`).toBeLessThan(rows);
						ui.stdin.write('G');
						await until(() => /lines \d+-(\d+) of \1\b/.test(stripAnsi(ui.lastFrame() ?? '')), 'the end of the diff');
						expect(liveFrame(ui.lastFrame() ?? '').join('\n')).toContain(`+${lastLine}`);
					}
					ui.unmount();
					instances.pop();
				}
			}
		}, 120_000);
	}

	it('the pager pages forward and back, and closes with q; y from the pager confirms', async () => {
		const engine = new FakeEngine(baseState({stages, current: 1, prompt: confirm}));
		const ui = render(<Wizard control={engine} rows={24} columns={80} />);
		instances.push(ui);
		await until(() => ui.stdin.listenerCount('readable') > 0, 'input');
		ui.stdin.write('d');
		await until(() => stripAnsi(ui.lastFrame() ?? '').includes('lines 1-15 of'), 'the first page');
		ui.stdin.write(' ');
		await until(() => stripAnsi(ui.lastFrame() ?? '').includes('lines 16-30 of'), 'the second page');
		ui.stdin.write('b');
		await until(() => stripAnsi(ui.lastFrame() ?? '').includes('lines 1-15 of'), 'back to the first page');
		ui.stdin.write('q');
		await until(() => !stripAnsi(ui.lastFrame() ?? '').includes('lines 1-'), 'the pager closed');
		expect(engine.calls).toEqual([]);
		ui.stdin.write('d');
		await until(() => stripAnsi(ui.lastFrame() ?? '').includes('lines 1-'), 'the pager again');
		ui.stdin.write('y');
		await until(() => engine.calls.length === 1, 'the confirm');
		expect(engine.calls).toEqual([{type: 'confirm', yes: true}]);
	});
});

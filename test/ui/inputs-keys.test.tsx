// Key handling of the Ink wizard (issue 14, items 8 and 9): keys that arrive in one read act
// one after the other on the state each leaves; text fields have a caret and the usual
// editing keys; an old error clears on edit; key hints name only keys that work there.
import React from 'react';
import {render} from 'ink-testing-library';
import {afterEach, describe, expect, it} from 'vitest';
import type {Question} from '../../source/engine/contract.js';
import {parseKeys} from '../../source/ui/keys.js';
import {wrapText} from '../../source/ui/layout.js';
import {Wizard} from '../../source/ui/wizard.js';
import {ask, baseState, FakeEngine} from './fake-engine.js';
import {stripAnsi, until} from './ink-harness.js';

const instances: Array<{unmount(): void}> = [];
afterEach(() => {
	for (const instance of instances.splice(0)) instance.unmount();
});

function mount(engine: FakeEngine) {
	const ui = render(<Wizard control={engine} rows={30} columns={80} />);
	instances.push(ui);
	const frame = () => stripAnsi(ui.lastFrame() ?? '');
	return {
		ui,
		frame,
		async write(chunk: string) {
			await until(() => ui.stdin.listenerCount('readable') > 0, 'input');
			ui.stdin.write(chunk);
		},
		waitFor: (what: string, test: (f: string) => boolean) => until(() => test(frame()), what),
	};
}

const resources: Question = {
	id: 'resources',
	kind: 'multiselect',
	message: 'Resources?',
	choices: ['secrets', 'configmaps', 'leases'].map(value => ({value, label: value})),
	default: ['secrets'],
};
const name: Question = {id: 'name', kind: 'text', message: 'Name?'};
const provider: Question = {id: 'provider', kind: 'select', message: 'Provider?', choices: ['a', 'b', 'c'].map(value => ({value, label: value}))};

describe('keys split from one read', () => {
	it('parses a burst into single keys: text runs, enters, arrows, backspace and delete apart', () => {
		expect(parseKeys('yy')).toEqual([{name: 'char', char: 'y', pasted: true}, {name: 'char', char: 'y', pasted: true}]);
		expect(parseKeys('q')).toEqual([{name: 'char', char: 'q'}]);
		expect(parseKeys('\r\r')).toEqual([{name: 'return'}, {name: 'return'}]);
		expect(parseKeys('\u001B[B')).toEqual([{name: 'down'}]);
		expect(parseKeys('\u007F')).toEqual([{name: 'backspace'}]);
		expect(parseKeys('\u001B[3~')).toEqual([{name: 'delete'}]);
		expect(parseKeys('\u0015')).toEqual([{name: 'ctrl', char: 'u'}]);
	});

	it('Down and Space in one write tick the item under the moved cursor', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(resources)}));
		const w = mount(engine);
		await w.write('\u001B[B ');
		await w.waitFor('configmaps ticked', f => f.includes('[x] configmaps'));
		expect(w.frame()).toContain('[x] secrets');
		expect(w.frame()).toContain('[ ] leases');
		await w.write('\r');
		await until(() => engine.calls.length === 1, 'the answer');
		expect(engine.calls).toEqual([{type: 'answer', value: ['secrets', 'configmaps']}]);
	});

	it('Enter Enter in one write answers this question and the next; yy answers two confirms', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(provider, {index: 0, total: 2})}));
		engine.onAnswer = () => {
			// The engine moves on asynchronously, as the real one does.
			setTimeout(() => {
				if (engine.calls.length === 1) engine.update({prompt: ask({...provider, id: 'second'}, {index: 1, total: 2})});
				else if (engine.calls.length === 2) engine.update({prompt: {type: 'confirm', stageId: 'encryption-config', message: 'Apply these changes for "A"?', preview: []}});
			}, 20);
		};
		engine.onConfirm = () => {
			setTimeout(() => {
				if (engine.calls.length === 3) engine.update({prompt: {type: 'confirm', stageId: 'apiserver-manifest', message: 'Apply these changes for "B"?', preview: []}});
			}, 20);
		};
		const w = mount(engine);
		await w.write('\u001B[B');
		await w.waitFor('cursor on b', f => /❯ b/.test(f));
		await w.write('\r\r');
		await until(() => engine.calls.length === 2, 'two answers');
		// The second enter waited for the second question and took its default cursor (a).
		expect(engine.calls).toEqual([
			{type: 'answer', value: 'b'},
			{type: 'answer', value: 'a'},
		]);
		await w.waitFor('the first confirm', f => f.includes('Apply these changes for "A"?'));
		await w.write('yy');
		await until(() => engine.calls.length === 4, 'two confirms');
		expect(engine.calls.slice(2)).toEqual([
			{type: 'confirm', yes: true},
			{type: 'confirm', yes: true},
		]);
	});
});

describe('text fields', () => {
	it('move a visible caret with left/right, ctrl-a/ctrl-e; backspace, delete and ctrl-u edit at the caret', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(name)}));
		const w = mount(engine);
		await w.write('abcd');
		await w.waitFor('typed', f => f.includes('› abcd'));
		await w.write('\u001B[D');
		await w.write('\u001B[D');
		await w.write('X');
		await w.waitFor('inserted at the caret', f => f.includes('› abXcd'));
		await w.write('\u007F'); // backspace: the X before the caret
		await w.waitFor('backspace', f => f.includes('› abcd'));
		await w.write('\u001B[3~'); // delete: the c under the caret
		await w.waitFor('delete', f => f.includes('› abd'));
		await w.write('\u0001'); // ctrl-a: to the start
		await w.write('>');
		await w.waitFor('at the start', f => f.includes('› >abd'));
		await w.write('\u0005'); // ctrl-e: to the end
		await w.write('<');
		await w.waitFor('at the end', f => f.includes('› >abd<'));
		await w.write('\u0015'); // ctrl-u: everything before the caret
		await w.waitFor('cleared', f => /› \s*$/m.test(f) || f.includes('› \n') || !f.includes('>abd'));
		await w.write('ok\r');
		await until(() => engine.calls.length === 1, 'the answer');
		expect(engine.calls).toEqual([{type: 'answer', value: 'ok'}]);
	});

	it('q is a letter in a text field, even in a burst (an age recipient has q in it)', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(name)}));
		const w = mount(engine);
		await w.write('age1qq\r');
		await until(() => engine.calls.length === 1, 'the answer');
		expect(engine.calls).toEqual([{type: 'answer', value: 'age1qq'}]);
	});

	it('a q inside pasted text at a list does not quit; a q on its own does', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(provider)}));
		const w = mount(engine);
		await w.write('age1qxyz');
		await new Promise(resolve => setTimeout(resolve, 50));
		expect(engine.calls).toEqual([]);
		await w.write('q');
		await until(() => engine.calls.length === 1, 'the abort');
		expect(engine.calls).toEqual([{type: 'abort'}]);
	});

	it('an old error clears on the first edit', async () => {
		const engine = new FakeEngine(baseState({prompt: ask(name, {error: 'The path must be absolute.'})}));
		const w = mount(engine);
		expect(w.frame()).toContain('✖ The path must be absolute.');
		await w.write('/');
		await w.waitFor('the error gone', f => !f.includes('must be absolute'));
	});

	it('key hints name only keys that work: no esc at a first question, d at a preview, ctrl-c in a text field', async () => {
		const first = mount(new FakeEngine(baseState({prompt: ask(provider, {index: 0, total: 2})})));
		expect(first.frame()).not.toContain('esc back');
		const second = mount(new FakeEngine(baseState({prompt: ask(provider, {index: 1, total: 2})})));
		expect(second.frame()).toContain('esc back');
		const text = mount(new FakeEngine(baseState({prompt: ask(name)})));
		expect(text.frame()).toContain('ctrl-c quit');
		expect(text.frame()).not.toMatch(/(^|· )q quit/m);
		const preview = mount(new FakeEngine(baseState({prompt: {type: 'confirm', stageId: 'encryption-config', message: 'Apply?', preview: []}})));
		expect(preview.frame()).toContain('d show the diff');
		expect(preview.frame()).not.toContain('esc');
	});
});

describe('layout', () => {
	it('wraps at word boundaries without running words together or leading spaces', () => {
		const lines = wrapText('6 stages: 1 done, 1 unchanged, 4 skipped Encryption config: applied and verified.', 30);
		expect(lines.every(line => line.length <= 30)).toBe(true);
		expect(lines.every(line => !line.startsWith(' '))).toBe(true);
		expect(lines.join(' ')).toBe('6 stages: 1 done, 1 unchanged, 4 skipped Encryption config: applied and verified.');
		expect(wrapText('PASS  aligned  columns', 80)).toEqual(['PASS  aligned  columns']);
	});
});

// etcd-harden fleet's Ink table through ink-testing-library: one row per step, one column per
// node, redrawn as the play reports (a cell goes running -> waiting -> changed/FAILED), and the
// stop line naming the step, the node and the reason.
import React from 'react';
import {render} from 'ink-testing-library';
import {describe, expect, test} from 'vitest';
import {FleetTable, type FleetFeed} from '../../source/ui/fleet.js';
import type {FleetTableView} from '../../source/ui/fleet-format.js';
import {stripAnsi, until} from './ink-harness.js';

const steps = ['setup', 'prepare', 'agree-prepare', 'promote'].map(id => ({id, title: id}));
const nodes = ['cp-1', 'cp-2', 'cp-3'];
const cells = (state: FleetTableView['cells'][string][string]['state']) => Object.fromEntries(nodes.map(node => [node, Object.fromEntries(steps.map(step => [step.id, {state}]))]));

describe('fleet table (Ink)', () => {
	test('redraws each cell as the play reports, then the stop line', async () => {
		let view: FleetTableView = {operation: 'rotate', dryRun: false, steps, nodes, cells: cells('pending'), finished: false};
		const listeners = new Set<() => void>();
		const feed: FleetFeed = {current: () => view, subscribe: listener => (listeners.add(listener), () => listeners.delete(listener))};
		const push = (next: FleetTableView) => {
			view = next;
			for (const listener of listeners) listener();
		};
		const instance = render(<FleetTable feed={feed} />);
		const frame = () => stripAnsi(instance.lastFrame() ?? '');
		await until(() => frame().includes('etcd-harden fleet rotate: 3 control plane(s)'), 'the header');
		expect(frame()).toMatch(/step\s+cp-1\s+cp-2\s+cp-3/);
		expect(frame()).toMatch(/prepare\s+·\s+·\s+·/);

		const running = structuredClone(view.cells);
		for (const node of nodes) running[node]!['setup'] = {state: 'ok'};
		running['cp-1']!['prepare'] = {state: 'changed'};
		running['cp-2']!['prepare'] = {state: 'running'};
		running['cp-1']!['agree-prepare'] = {state: 'waiting', detail: 'attempt 2 of 60'};
		push({...view, cells: running, current: 'prepare'});
		await until(() => /prepare\s+changed\s+running\s+·/.test(frame()), 'prepare running on cp-2');
		expect(frame()).toMatch(/setup\s+ok\s+ok\s+ok/);
		expect(frame()).toMatch(/agree-prepare\s+waiting/);

		const failed = structuredClone(running);
		failed['cp-2']!['prepare'] = {state: 'changed'};
		failed['cp-3']!['prepare'] = {state: 'failed', detail: 'rotate-bundle: kube-apiserver did not become ready'};
		push({...view, cells: failed, finished: true, failure: {step: 'prepare', node: 'cp-3', reason: 'rotate-bundle: kube-apiserver did not become ready'}});
		await until(() => frame().includes('Stopped at step prepare on cp-3: rotate-bundle: kube-apiserver did not become ready'), 'the stop line');
		expect(frame()).toMatch(/prepare\s+changed\s+changed\s+FAILED/);
		expect(frame()).toContain('Fix the node, then rerun');
		instance.unmount();
	});
});

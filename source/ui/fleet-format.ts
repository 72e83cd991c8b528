/**
 * etcd-harden fleet's rows as text: one row per step, one column per node, each cell the
 * step's live state on that node; where the play stopped (step, node, reason) below. The Ink
 * view and the plain frontend print the same lines. Plain data in (the shape the fleet
 * workflow reports), styled lines out.
 */
import type {Styled, Tone} from './format.js';

export type FleetCellView = {state: 'pending' | 'running' | 'waiting' | 'ok' | 'changed' | 'skipped' | 'failed' | 'unreachable'; detail?: string};
export type FleetTableView = {
	operation: string;
	dryRun: boolean;
	steps: Array<{id: string; title: string}>;
	nodes: string[];
	cells: Record<string, Record<string, FleetCellView>>;
	current?: string;
	failure?: {step: string; node: string; reason: string};
	finished: boolean;
};

const SHOWN: Record<FleetCellView['state'], {text: string; tone: Tone}> = {
	pending: {text: '·', tone: 'muted'},
	running: {text: 'running', tone: 'active'},
	waiting: {text: 'waiting', tone: 'warn'},
	ok: {text: 'ok', tone: 'success'},
	changed: {text: 'changed', tone: 'success'},
	skipped: {text: '-', tone: 'muted'},
	failed: {text: 'FAILED', tone: 'error'},
	unreachable: {text: 'UNREACHABLE', tone: 'error'},
};

export function cellText(cell: FleetCellView | undefined): {text: string; tone: Tone} {
	return SHOWN[cell?.state ?? 'pending'];
}

/** One styled segment per column of each row: [step, ...nodes]. */
export function fleetRows(view: FleetTableView): Array<Array<{text: string; tone: Tone}>> {
	return view.steps.map(step => [
		{text: step.id, tone: view.current === step.id && !view.finished ? 'active' : 'plain'},
		...view.nodes.map(node => cellText(view.cells[node]?.[step.id])),
	]);
}

export function fleetHeader(view: FleetTableView): string {
	return `etcd-harden fleet ${view.operation}${view.dryRun ? ' --dry-run (check mode: nothing changes)' : ''}: ${view.nodes.length} control plane(s)`;
}

/** The whole table as lines (widths from the longest entry of each column). */
export function fleetTableLines(view: FleetTableView): Styled[] {
	const rows = fleetRows(view);
	const head = [{text: 'step', tone: 'meta' as Tone}, ...view.nodes.map(node => ({text: node, tone: 'meta' as Tone}))];
	const widths = head.map((cell, index) => Math.max(cell.text.length, ...rows.map(row => row[index]!.text.length)) + 2);
	const line = (cells: Array<{text: string; tone: Tone}>): Styled => ({text: cells.map((cell, index) => cell.text.padEnd(widths[index]!)).join('').trimEnd(), tone: cells.some(cell => cell.tone === 'error') ? 'error' : 'plain'});
	const lines: Styled[] = [{text: fleetHeader(view), tone: 'active'}, line(head), ...rows.map(line)];
	lines.push(...fleetOutcome(view));
	return lines;
}

export function fleetOutcome(view: FleetTableView): Styled[] {
	if (view.failure) {
		return [
			{text: `Stopped at step ${view.failure.step} on ${view.failure.node}: ${view.failure.reason}`, tone: 'error'},
			{text: 'The other control planes were left as the last finished step put them. Fix the node, then rerun the same command: it resumes from what the nodes report.', tone: 'muted'},
		];
	}
	if (view.finished) return [{text: view.dryRun ? 'Dry run finished: nothing was changed.' : `Every step finished on every control plane.`, tone: 'success'}];
	return [];
}

/** A cell's change as one line, for line-mode progress: "cp-2  prepare  changed". */
export function fleetCellLine(node: string, step: string, cell: FleetCellView): Styled {
	const shown = cellText(cell);
	return {text: `${node}  ${step}  ${shown.text}${cell.detail ? `: ${cell.detail}` : ''}`, tone: shown.tone};
}

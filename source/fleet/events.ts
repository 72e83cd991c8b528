/**
 * The play's progress, from the JSON lines of templates/ansible/callback_plugins/etcd_harden.py:
 * one cell per node per step with its live state, and where the play stopped (step, node,
 * reason). Pure: lines in, a view out; the frontends render the view.
 */
export type CellState = 'pending' | 'running' | 'waiting' | 'ok' | 'changed' | 'skipped' | 'failed' | 'unreachable';

export type FleetCell = {state: CellState; detail?: string};

export type FleetView = {
	operation: string;
	dryRun: boolean;
	steps: Array<{id: string; title: string}>;
	nodes: string[];
	/** cells[node][step] */
	cells: Record<string, Record<string, FleetCell>>;
	/** The step whose tasks run now. */
	current?: string;
	/** Where the play stopped. */
	failure?: {step: string; node: string; reason: string};
	/** Each node's collected output (status --json; the plan under --dry-run), by step. */
	outputs: Record<string, Record<string, unknown>>;
	finished: boolean;
};

export type PlayEvent =
	| {event: 'play'; name: string}
	| {event: 'task'; task: string; step: string}
	| {event: 'retry'; host: string; task: string; step: string; attempts?: number; retries?: number}
	| {
			event: 'result';
			host: string;
			task: string;
			step: string;
			status: 'ok' | 'changed' | 'skipped' | 'failed' | 'ignored' | 'unreachable';
			rc?: number;
			msg?: unknown;
			stderr?: string[];
			stdout?: string;
			censored?: boolean;
	  }
	| {event: 'stats'; hosts: Record<string, Record<string, number>>};

/** One line of the callback's output; undefined for anything else (a warning Ansible printed). */
export function parseEventLine(line: string): PlayEvent | undefined {
	const text = line.trim();
	if (!text.startsWith('{')) return undefined;
	try {
		const value = JSON.parse(text) as {event?: unknown};
		return typeof value.event === 'string' && ['play', 'task', 'retry', 'result', 'stats'].includes(value.event) ? (value as PlayEvent) : undefined;
	} catch {
		return undefined;
	}
}

export function initialView(operation: string, dryRun: boolean, steps: ReadonlyArray<{id: string; title: string}>, nodes: readonly string[]): FleetView {
	const cells: FleetView['cells'] = {};
	for (const node of nodes) cells[node] = Object.fromEntries(steps.map(step => [step.id, {state: 'pending' as CellState}]));
	return {operation, dryRun, steps: steps.map(step => ({id: step.id, title: step.title})), nodes: [...nodes], cells, outputs: {}, finished: false};
}

const rank: Record<CellState, number> = {pending: 0, skipped: 1, running: 2, waiting: 3, ok: 4, changed: 5, unreachable: 6, failed: 7};

/** Why a task failed, in one line: the tool's own error (its --json result or stderr), else Ansible's message. */
export function failureReason(event: Extract<PlayEvent, {event: 'result'}>): string {
	if (event.censored) return `${event.task} failed (its output is hidden: no_log)`;
	if (event.stdout) {
		try {
			const result = JSON.parse(event.stdout) as {stages?: Array<{id?: string; error?: string}>};
			const failed = result.stages?.find(stage => typeof stage.error === 'string' && stage.error !== '');
			if (failed) return `${failed.id}: ${oneLine(failed.error!)}`;
		} catch {
			// not the tool's JSON
		}
	}
	const tool = [...(event.stderr ?? [])].reverse().find(line => /^etcd-harden: /.test(line));
	if (tool) return oneLine(tool.replace(/^etcd-harden: /, ''));
	const message = typeof event.msg === 'string' ? event.msg : event.msg === undefined ? '' : JSON.stringify(event.msg);
	const last = (event.stderr ?? []).filter(line => line.trim() !== '').at(-1);
	if (message && !/^non-zero return code$/.test(message)) return oneLine(message);
	return oneLine(last ?? (event.rc === undefined ? `${event.task} failed` : `${event.task} exited ${event.rc}`));
}

function oneLine(text: string): string {
	return text.split('\n').map(line => line.trim()).filter(Boolean).join(' ').slice(0, 600);
}

/** The view after one event (a new object; the old one is left as it was). */
export function applyEvent(view: FleetView, event: PlayEvent): FleetView {
	const next: FleetView = {...view, cells: {...view.cells}};
	const set = (node: string, step: string, cell: FleetCell, force = false): void => {
		if (!next.cells[node] || !(step in next.cells[node]!)) return;
		const old = next.cells[node]![step]!;
		// A step's cell shows its most telling task: a failure over a change over ok over a skip.
		if (!force && rank[cell.state] < rank[old.state] && old.state !== 'running' && old.state !== 'waiting') return;
		next.cells[node] = {...next.cells[node], [step]: cell};
	};
	switch (event.event) {
		case 'task': {
			next.current = event.step;
			for (const node of next.nodes) {
				const cell = next.cells[node]?.[event.step];
				if (cell && (cell.state === 'pending' || cell.state === 'skipped')) set(node, event.step, {state: 'running'}, true);
			}
			return next;
		}
		case 'retry':
			set(event.host, event.step, {state: 'waiting', detail: `attempt ${event.attempts ?? '?'} of ${event.retries ?? '?'}`}, true);
			return next;
		case 'result': {
			const old = next.cells[event.host]?.[event.step];
			if (event.status === 'failed' || event.status === 'unreachable') {
				const reason = event.status === 'unreachable' ? `unreachable: ${failureReason(event)}` : failureReason(event);
				set(event.host, event.step, {state: event.status, detail: reason}, true);
				next.failure ??= {step: event.step, node: event.host, reason};
			} else {
				const state: CellState = event.status === 'ignored' ? 'ok' : event.status;
				// A skip after work done in the same step keeps the work; a running cell settles.
				if (old && (old.state === 'running' || old.state === 'waiting')) set(event.host, event.step, {state}, true);
				else set(event.host, event.step, {state});
			}
			if (event.stdout !== undefined && event.status !== 'failed') {
				let value: unknown = event.stdout;
				try {
					value = JSON.parse(event.stdout);
				} catch {
					// kept as text
				}
				next.outputs = {...next.outputs, [event.host]: {...next.outputs[event.host], [event.step]: value}};
			}
			return next;
		}
		case 'stats': {
			next.finished = true;
			next.current = undefined;
			for (const node of next.nodes) {
				for (const step of next.steps) {
					const cell = next.cells[node]![step.id]!;
					if (cell.state === 'running' || cell.state === 'waiting') next.cells[node] = {...next.cells[node], [step.id]: {state: next.failure ? 'pending' : 'ok'}};
				}
			}
			return next;
		}
		default:
			return next;
	}
}

/**
 * A scripted EngineControl for UI tests: it emits the snapshots a test gives it and
 * records what the frontend sent back. It is not the engine; tests using it are UI tests.
 */
import type {EngineControl, EngineState, Prompt, StagePhase, StageView} from '../../source/engine/state.js';
import type {AnswerValue, Question} from '../../source/engine/contract.js';

export type Call =
	| {type: 'answer'; value: AnswerValue}
	| {type: 'confirm'; yes: boolean}
	| {type: 'back'}
	| {type: 'abort'};

export function stage(id: string, phase: StagePhase, extra: Partial<StageView> = {}): StageView {
	return {
		id,
		title: id.replace(/-/g, ' ').replace(/^./, c => c.toUpperCase()),
		explain: `Explains ${id}.`,
		phase,
		notes: [],
		warnings: [],
		checks: [],
		...extra,
	};
}

export function baseState(extra: Partial<EngineState> = {}): EngineState {
	return {
		command: 'harden',
		dryRun: false,
		stages: [stage('discover', 'done'), stage('encryption-config', 'asking'), stage('apiserver-manifest', 'pending')],
		current: 1,
		log: [],
		...extra,
	};
}

export function ask(question: Question, extra: Partial<Extract<Prompt, {type: 'question'}>> = {}): Prompt {
	return {type: 'question', stageId: 'encryption-config', question, index: 0, total: 1, ...extra};
}

export class FakeEngine implements EngineControl {
	calls: Call[] = [];
	private state: EngineState;
	private readonly listeners = new Set<() => void>();
	/** Scripted reactions; each runs after the call is recorded. */
	onAnswer?: (value: AnswerValue) => void;
	onConfirm?: (yes: boolean) => void;
	onBack?: () => void;
	onAbort?: () => void;

	constructor(initial: EngineState) {
		this.state = initial;
	}

	getState = (): EngineState => this.state;

	subscribe = (listener: () => void): (() => void) => {
		this.listeners.add(listener);
		return () => this.listeners.delete(listener);
	};

	/** Emits a new snapshot (a new object, as the engine does). */
	update(patch: Partial<EngineState> | ((s: EngineState) => EngineState)): void {
		this.state = typeof patch === 'function' ? patch(this.state) : {...this.state, ...patch};
		for (const listener of this.listeners) listener();
	}

	answer = (value: AnswerValue): void => {
		this.calls.push({type: 'answer', value});
		this.onAnswer?.(value);
	};

	confirm = (yes: boolean): void => {
		this.calls.push({type: 'confirm', yes});
		this.onConfirm?.(yes);
	};

	back = (): void => {
		this.calls.push({type: 'back'});
		this.onBack?.();
	};

	abort = (): void => {
		this.calls.push({type: 'abort'});
		this.onAbort?.();
	};
}

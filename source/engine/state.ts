/**
 * What the engine shows: one immutable snapshot at a time. Both frontends (Ink and
 * plain) render these snapshots and answer prompts through the EngineControl; they
 * never decide what to change.
 */
import type {AnswerValue, Check, LogLine, Question, TaskProgress} from './contract.js';

export type {LogLine} from './contract.js';

export type StagePhase =
	| 'pending'
	| 'asking'
	| 'planning'
	| 'previewing'
	| 'applying'
	| 'verifying'
	| 'done' // applied and verified
	| 'unchanged' // nothing to do
	| 'previewed' // dry-run: plan shown, nothing applied
	| 'skipped' // --skip / --only, or declined by the operator
	| 'failed' // verification failed (nothing undone: the changes are in place)
	| 'rolled-back'; // apply failed or was interrupted; the stage's changes were undone

export type StageView = {
	id: string;
	title: string;
	explain: string;
	phase: StagePhase;
	notes: string[];
	warnings: string[];
	checks: Check[];
	/** The planned changes as shown to the operator (set once planned). */
	preview?: PreviewItem[];
	/** Why the stage failed or was rolled back. */
	error?: string;
};

/** One change rendered for the operator: a redacted unified diff or an exact command. */
export type PreviewItem = {
	kind: 'write-file' | 'run' | 'task';
	summary: string;
	/** Unified diff (write-file), the command line (run), or detail lines (task). */
	body: string;
};

export type Prompt =
	| {
			type: 'question';
			stageId: string;
			question: Question;
			/** Position among this stage's questions, for "2 of 3". */
			index: number;
			total: number;
			/** Set when the last answer was rejected by validation. */
			error?: string;
	  }
	| {
			type: 'confirm';
			stageId: string;
			message: string;
			preview: PreviewItem[];
			/**
			 * Epoch milliseconds: a timed confirm (TaskContext.confirm) that the engine answers
			 * "no" itself when the deadline passes. Frontends show it; its default is no.
			 */
			deadline?: number;
	  };

export type Progress = TaskProgress & {stageId: string};


export type EngineState = {
	command: string;
	dryRun: boolean;
	stages: StageView[];
	/** Index into stages of the stage being worked on. */
	current: number;
	prompt?: Prompt;
	progress?: Progress;
	/** Append-only messages (render finished ones in <Static>). */
	log: LogLine[];
	/** Set once the run is over. */
	result?: {exitCode: number; summary: string[]};
};

/** How a frontend talks back to the engine. */
export type EngineControl = {
	getState(): EngineState;
	subscribe(listener: () => void): () => void;
	/** Answer the current question prompt. */
	answer(value: AnswerValue): void;
	/** Answer the current confirm prompt. */
	confirm(yes: boolean): void;
	/** Esc: go back to the previous question (or from the preview to the last question). */
	back(): void;
	/** q / Ctrl-C: stop; the current stage's applied changes are undone. */
	abort(): void;
};

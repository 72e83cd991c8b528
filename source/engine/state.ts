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
	/** Why the stage was skipped (machine-readable reason and the sentence shown). */
	skip?: {reason: SkipReason; text: string};
	/** The answers given for this stage, as the operator chose them (passwords never). */
	answers?: Array<{question: string; value: string}>;
};

/**
 * Why a stage did not run: left out by --only/--skip, not applicable here (--root has no
 * live node), declined at its preview, built on a stage that was declined, or never reached
 * because the run stopped first.
 */
export type SkipReason = 'not-selected' | 'left-out' | 'declined' | 'depends-on-declined' | 'not-reached';

/** What a run changed and how to take it back: every frontend ends with it. */
export type Receipt = {
	/** Set when the run changed something (a run directory exists). */
	runId?: string;
	/** Node path of the run directory. */
	runDir?: string;
	files: Array<{path: string; stage: string; created: boolean; backup?: string; keyMaterial?: boolean}>;
	/** Work other than file writes (objects re-encrypted, rules loaded, users made). */
	work: Array<{stage: string; summary: string}>;
	/** Files the operator must copy off the node now (a key's recovery copy). */
	keep: Array<{path: string; what: string}>;
	skipped: Array<{stage: string; reason: SkipReason; text: string}>;
	/** The run these changes undid (an undo run). */
	undoes?: string;
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
	result?: {exitCode: number; summary: string[]; receipt?: Receipt};
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

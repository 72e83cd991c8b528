/**
 * The stage contract and the change union. A stage is data in, data out: it turns facts
 * and answers into changes; the engine previews, applies (through the host), verifies
 * and undoes them. Nothing here touches the machine.
 */
import type {Arg} from '../host/types.js';
import type {Facts} from '../stages/facts.js';

export type {Facts} from '../stages/facts.js';

export type AnswerValue = string | boolean | string[];
/** One stage's answers, by question id. */
export type StageAnswers = Record<string, AnswerValue>;
/** All answers, by stage id then question id (the shape of `--answers FILE`). */
export type Answers = Record<string, StageAnswers>;

export type Choice = {value: string; label: string; hint?: string};

export type Question = {
	id: string;
	kind: 'select' | 'multiselect' | 'text' | 'confirm' | 'password';
	message: string;
	/** Longer explanation shown under the question. */
	help?: string;
	choices?: Choice[];
	/** Undefined means the operator must answer (non-interactive runs fail naming it). */
	default?: AnswerValue;
	/** Returns an error message for a bad value (names the problem and the fix). */
	validate?: (value: AnswerValue, answers: StageAnswers) => string | undefined;
	/** Asked only when this returns true for the answers given so far. */
	when?: (answers: StageAnswers) => boolean;
};

export type WriteFileChange = {
	kind: 'write-file';
	/** Node path. */
	path: string;
	content: string;
	mode: number;
	summary: string;
	/** Substrings (key material) replaced by <redacted> in every preview, log and journal. */
	secrets?: string[];
};

export type RunChange = {
	kind: 'run';
	argv: Arg[];
	summary: string;
	/** Command that reverses this one, run when the stage is undone. */
	undo?: Arg[];
};

/**
 * Work that needs more than a file write or a single command (wait for the apiserver to
 * restart, re-encrypt objects, scan etcd). `task` names an executor registered with the
 * engine; `params` is plain data so the change can be previewed and journaled.
 */
export type TaskChange = {
	kind: 'task';
	task: string;
	params: Record<string, unknown>;
	summary: string;
	/** Lines shown in the preview under the summary. */
	detail?: string[];
};

export type Change = WriteFileChange | RunChange | TaskChange;

export type CheckStatus = 'pass' | 'fail' | 'warn';

/** A verification result or a status finding. */
export type Check = {
	id: string;
	title: string;
	status: CheckStatus;
	/** What was found. */
	actual?: string;
	/** How to fix it (for fail and warn). */
	remediation?: string;
};

export type StagePlan = {
	/** Empty when the node is already as the answers ask: the stage reports "unchanged". */
	changes: Change[];
	/** Shown to the operator before confirming. */
	notes?: string[];
	/**
	 * The stage does not apply here (for example it needs the live control plane and the run
	 * has --root): the engine shows it as left out, with this reason, and verifies nothing.
	 */
	leftOut?: string;
	warnings?: string[];
};

/**
 * What planning may use beyond facts and answers. Injected so plans stay deterministic in
 * tests; the engine passes a CSPRNG and the clock.
 */
export type PlanContext = {
	randomBytes(size: number): Buffer;
	now: Date;
	/**
	 * Answers of the stages run so far (this one included), by stage id. Lets a stage follow
	 * an earlier stage's choice (apiserver-manifest uses encryption-config's path).
	 */
	answers?: Readonly<Answers>;
	/**
	 * Plans of the earlier stages of this run, by stage id, in run order. A stage that builds
	 * on what an earlier one will write reads it here, so the plan is the same in --dry-run
	 * (nothing applied) and in a real run (apiserver-manifest hashes the config that
	 * encryption-config will write).
	 */
	planned?: Readonly<Record<string, StagePlan>>;
	/** Run-wide settings from flags (not questions). */
	settings?: Readonly<RunSettings>;
};

export type RunSettings = {
	/** How long the restart gate waits for kube-apiserver (--timeout), seconds. */
	gateTimeoutSeconds?: number;
};

export type Stage = {
	id: string;
	title: string;
	/** What the stage does and why, shown before its questions. */
	explain: string;
	questions(facts: Facts, answers: StageAnswers): Question[];
	/**
	 * Pure: facts + answers -> changes. Throws InputError when the node or the answers
	 * make the stage impossible (the message names the file or answer and the fix).
	 */
	plan(facts: Facts, answers: StageAnswers, context: PlanContext): StagePlan;
	/** Checks on facts re-discovered after apply. */
	verify(facts: Facts, answers: StageAnswers): Check[];
	/** Read-only findings for `status`. */
	status(facts: Facts): Check[];
	/**
	 * Stages with the same undo group that run one after another are one unit: when one is
	 * undone, the earlier ones of the group applied in this run are undone too, newest first
	 * (the config is only meaningful together with the manifest that mounts it).
	 */
	undoGroup?: string;
};

/** Bad input: a usage error, a malformed file, a bad answer. Exit code 2. */
export class InputError extends Error {
	override name = 'InputError';
}

export const exitCodes = {
	ok: 0,
	failed: 1,
	badInput: 2,
	aborted: 3,
} as const;

/** How the engine is started (see engine.ts). */
export type EngineCommand = 'harden' | 'status' | 'rotate' | 'disable' | 'backup' | 'restore-check';

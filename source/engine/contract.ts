/**
 * The engine's small contract: everything a stage, a domain or a task executor may know of
 * the engine. A stage is data in, data out: it turns facts and answers into changes; the
 * engine previews, applies (through the host), verifies and undoes them. A task is work that
 * needs more than a file write or one command; `defineTask` gives it a typed change
 * constructor (for the stage that plans it) and a typed executor (for the engine), so task
 * names and params are checked by the compiler.
 *
 * Domain folders (kube, etcd, firewall, backup, crypto) import from the engine only this
 * file; test/unit/architecture.test.ts enforces it. Nothing here touches the machine.
 */
import type {Arg, Host} from '../host/types.js';

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
	/**
	 * A confirmation that an answer given up front (--set, --answers) already makes: when
	 * the answer with this id was given that way, this question is taken as yes. (Typing
	 * `recovery=stored-elsewhere` on the command line is the explicit choice the
	 * interactive confirm asks for.)
	 */
	confirmsPreset?: string;
	/**
	 * What a non-interactive --dry-run uses when this question has no answer: a preview
	 * writes nothing, so it need not force the operator to decide yet. The run's notes
	 * say that a real run will ask.
	 */
	dryRunDefault?: AnswerValue;
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
	/**
	 * What must be at `path` for the write to go ahead, checked when previewing (bad input:
	 * nothing changed) and again right before writing: `before` is the text the plan was made
	 * from, null when the file must not exist (a file already holding `content` passes too).
	 * `refusal` is the one-line message (naming the path and the fix) when it does not hold.
	 */
	guard?: {before: string | null; refusal: string};
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
 * restart, re-encrypt objects, scan etcd). Made only by a task definition's `change()`
 * (see defineTask), so `task` names a registered executor and `params` has its type.
 */
export type TaskChange = {
	kind: 'task';
	task: string;
	/** Plain data (previewed and journaled by summary only; never key material unless the task says so). */
	params: object;
	summary: string;
	/** Lines shown in the preview under the summary. */
	detail?: string[];
	/**
	 * A file the task writes that the operator must keep safe (a key's recovery copy):
	 * the run's receipt names it and says to copy it off the node.
	 */
	keep?: {path: string; what: string};
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
	/** How long purge-history waits between proving a revision clean and compacting at it (--compaction-grace), seconds. */
	compactionGraceSeconds?: number;
};

export type Stage<Facts = unknown> = {
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
	/**
	 * Ids of the earlier stages this one builds on. When the operator declines one of them,
	 * this stage is skipped too (and so are the stages that build on it); the others still
	 * run. Undefined means every earlier stage of the run (the safe assumption); [] means
	 * none. Stages that are not in this run (--only/--skip) are ignored.
	 */
	dependsOn?: string[];
	/**
	 * Checks the node can be worked on at all (a manifest that does not parse), run on the
	 * first discovery before any question is asked: returns the problems (each naming the
	 * file and the fix), or nothing.
	 */
	preflight?(facts: Facts): string[];
	/**
	 * Whether this stage's answers point at something discovery has not read (a config path
	 * kube-apiserver does not use yet, whose content the plan must merge). When true, the
	 * engine discovers again before planning, passing the run's answers so far with purpose
	 * 'plan', and plans with those facts.
	 */
	rediscover?(facts: Facts, answers: StageAnswers): boolean;
};

/**
 * When the engine discovers: 'plan' before anything of the run is applied (the live state
 * read then may be reused for the other stages' planning; with answers, discovery also reads
 * what they point at), 'verify' after applying (always read afresh; with answers, discovery
 * looks where this run wrote: a config path the apiserver flag does not name yet).
 */
export type DiscoveryPurpose = 'plan' | 'verify';

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
export type EngineCommand = 'harden' | 'status' | 'rotate' | 'disable' | 'backup' | 'restore-check' | 'undo';

// ---- tasks ----

/** Where the tool keeps its state on the node: runs, recovery copies, bundles, the lock. */
export const STATE_DIR = '/var/lib/etcd-harden';
/** One directory per run (journal, backups of overwritten files). */
export const RUNS_DIR = `${STATE_DIR}/runs`;
/** In a run directory: what the run changed, for the receipt and `etcd-harden undo`. */
export const RECEIPT_FILE = 'receipt.json';

/** One file a run wrote, as receipt.json records it. */
export type ReceiptFile = {
	/** Node path. */
	path: string;
	stage: string;
	/** The file did not exist before the run (no backup). */
	created: boolean;
	/** Node path of the copy of the file as it was before the run. */
	backup?: string;
	/** sha256 (hex) of what the run wrote: undo refuses when the file differs from it now. */
	sha256: string;
	mode: number;
	/** The file holds key material objects may be encrypted with: never deleted by undo. */
	keyMaterial?: boolean;
};

/** receipt.json in a run directory. */
export type RunReceiptFile = {
	id: string;
	command: string;
	/** The run undone by this one (undo runs). */
	undoes?: string;
	files: ReceiptFile[];
	keep: Array<{path: string; what: string}>;
};

export type LogLine = {level: 'info' | 'warn' | 'error' | 'success'; text: string};

/** A task's progress (the engine adds the stage). */
export type TaskProgress = {
	label: string;
	done?: number;
	total?: number;
	/** Items per second. */
	rate?: number;
	etaSeconds?: number;
	/** Last lines of a long-running command's output. */
	tail?: string[];
};

export type JournalEntry = {
	time: string;
	stage: string;
	event:
		| 'run-start'
		| 'stage-start'
		| 'backup'
		| 'write'
		| 'created'
		| 'run'
		| 'task'
		| 'stage-done'
		| 'stage-unchanged'
		| 'stage-failed'
		| 'undo'
		| 'rolled-back'
		| 'swept'
		| 'error'
		| 'run-end';
	/** Node path of the file concerned. */
	path?: string;
	/** Node path of the backup copy in the run directory. */
	backup?: string;
	/** Human summary; never key material (change summaries are written by stages for this). */
	detail?: string;
};

/** The run directory as a task sees it (source/engine/run-dir.ts implements it). */
export type RunRecord = {
	readonly id: string;
	/** Node path of the run directory. */
	readonly dir: string;
	/** Node path of the backup copy of `nodePath` in this run directory. */
	backupPath(nodePath: string): string;
	journal(entry: Omit<JournalEntry, 'time'>): Promise<void>;
};

/** What a task executor gets: the host, the abort signal, and ways to report. */
export type TaskContext = {
	host: Host;
	signal: AbortSignal;
	runDir?: RunRecord;
	progress(progress: TaskProgress): void;
	log(line: LogLine): void;
	/**
	 * Ask the operator yes/no with a deadline (like iptables-apply): resolves false on "no",
	 * when `timeoutMs` passes without an answer, or on abort. Non-interactive runs resolve
	 * true at once (the task has already checked what it can). Optional for callers that
	 * build a TaskContext themselves: treat a missing confirm as true.
	 */
	confirm?(message: string, timeoutMs: number): Promise<boolean>;
};

export type TaskExecutor<P = never> = {
	run(params: P, context: TaskContext): Promise<void>;
	/** Reverse the task while undoing a stage (for example: wait until ready again). */
	undo?(params: P, context: TaskContext): Promise<void>;
};

/** A task: its name, the typed constructor of its change, and its executor. */
export type TaskDefinition<P extends object> = {
	readonly name: string;
	/** The change a stage plans; params are checked against the executor's type. */
	change(params: P, summary: string, detail?: string[]): TaskChange;
	readonly executor: TaskExecutor<P>;
};

/**
 * Define a task once, in its domain: `const gate = defineTask<GateParams>('x', {run, undo})`;
 * a stage plans `gate.change({...}, 'summary')`; the workflow registers `gate`.
 */
export function defineTask<P extends object>(name: string, executor: TaskExecutor<P>): TaskDefinition<P> {
	return {
		name,
		executor,
		change: (params, summary, detail) => ({kind: 'task', task: name, params, summary, ...(detail ? {detail} : {})}),
	};
}

/** Executors by task name, as the engine runs them (params were typed where they were planned). */
export type TaskRegistry = ReadonlyMap<string, TaskExecutor<object>>;

/** The registry of these task definitions; a name defined twice is a bug. */
export function taskRegistry(definitions: ReadonlyArray<TaskDefinition<any>>): TaskRegistry {
	const registry = new Map<string, TaskExecutor<object>>();
	for (const definition of definitions) {
		if (registry.has(definition.name)) throw new Error(`internal: task ${definition.name} is defined twice`);
		registry.set(definition.name, definition.executor as TaskExecutor<object>);
	}
	return registry;
}

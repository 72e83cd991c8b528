import {createHash, randomBytes as cryptoRandomBytes} from 'node:crypto';
import type {Host} from '../host/types.js';
import {RecordingHost} from '../host/recording.js';
import {checkWriteTarget, previewChanges, redact} from './preview.js';
import {acquireLock, findInterruptedRun, missingDirectories, removeCreatedDirectories, RunDir} from './run-dir.js';
import {describeError, traceOf} from './errors.js';
import {sweepTempFiles} from './temp-files.js';
import type {EngineControl, EngineState, LogLine, Prompt, Receipt, SkipReason, StagePhase, StageView} from './state.js';
import {
	exitCodes,
	InputError,
	type AnswerValue,
	type Answers,
	type DiscoveryPurpose,
	type Change,
	type EngineCommand,
	type Question,
	type Stage,
	type StageAnswers,
	type RunSettings,
	type TaskContext,
	type TaskRegistry,
	type StagePlan,
	RECEIPT_FILE,
	type RunReceiptFile,
} from './contract.js';

export type EngineOptions<Facts> = {
	command: EngineCommand;
	/** The real host, or a RecordingHost for --dry-run. */
	host: Host;
	/** Stages to run, in order (already filtered by --only/--skip). */
	stages: Stage<Facts>[];
	/** Stage ids left out by --only/--skip, shown as skipped. */
	skipped?: Array<Pick<Stage, 'id' | 'title' | 'explain'>>;
	/** Answers given up front (--answers FILE, --set). */
	answers: Answers;
	/** False with --yes: never prompt; a question without a default and without an answer fails. */
	interactive: boolean;
	/**
	 * Read the node. For verification the engine passes the run's answers, so discovery can
	 * look where this run wrote (a config path the apiserver flag does not name yet).
	 */
	discover(host: Host, answers?: Answers, purpose?: DiscoveryPurpose): Promise<Facts>;
	tasks?: TaskRegistry;
	randomBytes?: (size: number) => Buffer;
	pid?: number;
	settings?: RunSettings;
	/** Directories to clear of the tool's own leftover temporary files at the start (node paths). */
	sweepDirs?: string[];
	/** The run an undo run takes back (recorded in its receipt). */
	undoes?: string;
};

export type Engine = EngineControl & {
	/** Runs to the end; resolves with the exit code (also in state.result). */
	run(): Promise<number>;
};

type Response =
	| {type: 'answer'; value: AnswerValue}
	| {type: 'confirm'; yes: boolean}
	| {type: 'back'}
	| {type: 'abort'};

class Aborted extends Error {
	override name = 'Aborted';
}

type Planned<Facts> = {stage: Stage<Facts>; answers: StageAnswers; plan: StagePlan};

export function createEngine<Facts>(options: EngineOptions<Facts>): Engine {
	return new EngineImpl<Facts>(options);
}

class EngineImpl<Facts> implements Engine {
	private state: EngineState;
	private readonly listeners = new Set<() => void>();
	private pending?: (response: Response) => void;
	private readonly abortController = new AbortController();

	constructor(private readonly options: EngineOptions<Facts>) {
		const view = (stage: Pick<Stage, 'id' | 'title' | 'explain'>, phase: StagePhase): StageView => ({
			id: stage.id,
			title: stage.title,
			explain: stage.explain,
			phase,
			notes: [],
			warnings: [],
			checks: [],
		});
		this.state = {
			command: options.command,
			dryRun: options.host.dryRun,
			stages: [
				...options.stages.map(stage => view(stage, 'pending')),
				...(options.skipped ?? []).map(stage => ({...view(stage, 'skipped'), skip: {reason: 'not-selected' as const, text: 'left out by --only/--skip'}})),
			],
			current: 0,
			log: [],
		};
	}

	// ---- EngineControl ----

	getState = (): EngineState => this.state;

	subscribe = (listener: () => void): (() => void) => {
		this.listeners.add(listener);
		return () => this.listeners.delete(listener);
	};

	answer = (value: AnswerValue): void => {
		if (this.state.prompt?.type === 'question') this.respond({type: 'answer', value});
	};

	confirm = (yes: boolean): void => {
		if (this.state.prompt?.type === 'confirm') this.respond({type: 'confirm', yes});
	};

	back = (): void => {
		if (this.state.prompt) this.respond({type: 'back'});
	};

	abort = (): void => {
		if (this.state.result) return;
		if (!this.abortController.signal.aborted) {
			this.addLog({level: 'warn', text: 'Interrupted: stopping safely (the current stage is undone).'});
			this.abortController.abort();
		}
		this.respond({type: 'abort'});
	};

	// ---- state ----

	private update(patch: Partial<EngineState>): void {
		this.state = {...this.state, ...patch};
		for (const listener of this.listeners) {
			try {
				listener();
			} catch {
				// A frontend that cannot render (its terminal gone) must not stop an apply or an undo.
			}
		}
	}

	private updateStage(index: number, patch: Partial<StageView>): void {
		const stages = this.state.stages.map((stage, i) => (i === index ? {...stage, ...patch} : stage));
		this.update({stages});
	}

	private addLog(line: LogLine): void {
		this.update({log: [...this.state.log, line]});
	}

	private respond(response: Response): void {
		const pending = this.pending;
		this.pending = undefined;
		if (pending) {
			this.update({prompt: undefined});
			pending(response);
		}
	}

	private async ask(prompt: Prompt): Promise<Response> {
		if (this.abortController.signal.aborted) return {type: 'abort'};
		return new Promise<Response>(resolve => {
			this.pending = resolve;
			this.update({prompt});
		});
	}

	// ---- run ----

	async run(): Promise<number> {
		const {host} = this.options;
		let release: (() => Promise<void>) | undefined;
		let runDir: RunDir | undefined;
		let exitCode: number = exitCodes.ok;
		const summary: string[] = [];
		try {
			const pid = this.options.pid ?? process.pid;
			// The lock is taken before the node is read: a second run started at the same
			// moment plans only after this one has finished, never from what this one is about
			// to change. Releasing it leaves no trace when nothing was changed.
			if (!host.dryRun) {
				release = await acquireLock(host, pid);
				const interrupted = await findInterruptedRun(host);
				if (interrupted) {
					this.addLog({
						level: 'warn',
						text: `Run ${interrupted.id} was interrupted during stage "${interrupted.stage}"; this run picks up from what is on disk now (each stage plans only what is still missing).`,
					});
				}
			}

			await this.preflight(new RecordingHost(host));
			if (!this.options.interactive) await this.checkAnswersGiven();
			const planned = await this.planAll();
			if (planned === undefined) throw new Aborted();
			this.planned = planned;
			const changesAnything = planned.some(item => item.plan.changes.length > 0);
			const leftovers = await this.sweepTempFiles(planned);

			if (host.dryRun) {
				for (const [index, item] of planned.entries()) {
					const phase: StagePhase = item.plan.leftOut !== undefined ? 'skipped' : item.plan.changes.length === 0 ? 'unchanged' : 'previewed';
					this.updateStage(index, {phase});
					if (item.plan.leftOut !== undefined) summary.push(`${item.stage.title}: left out: ${item.plan.leftOut}`);
				}
				summary.push('Dry run: nothing was changed. Rerun without --dry-run to apply the changes shown.');
			} else if (!changesAnything) {
				// Nothing to change: verify only, and leave no run directory behind.
				exitCode = await this.verifyOnly(planned, summary);
			} else {
				runDir = await RunDir.create(host, host.now());
				await runDir.journal({stage: '-', event: 'run-start', detail: `${this.options.command} ${planned.map(p => p.stage.id).join(',')}`});
				for (const file of leftovers) await runDir.journal({stage: '-', event: 'swept', path: file, detail: 'temporary file of an interrupted write, removed'});
				this.addLog({level: 'info', text: `Run directory: ${runDir.dir}`});
				exitCode = await this.applyAll(planned, runDir, summary);
			}
		} catch (error) {
			if (error instanceof Aborted) {
				exitCode = exitCodes.aborted;
				summary.push('Aborted. Nothing more was changed; the interrupted stage was undone.');
			} else if (error instanceof InputError) {
				exitCode = exitCodes.badInput;
				if (!this.markFailedOnInput(error.message)) this.addLog({level: 'error', text: error.message});
				summary.push(`Stopped before changing anything: ${error.message}`);
			} else {
				exitCode = exitCodes.aborted;
				// One line for the operator; the trace only in the run's journal.
				const message = describeError(error, file => (host.root !== '/' && file.startsWith(`${host.root}/`) ? file.slice(host.root.length) : file));
				this.addLog({level: 'error', text: message});
				summary.push(`Failed: ${message}${runDir ? ` (details in ${runDir.journalPath})` : ''}`);
				if (runDir) await runDir.journal({stage: '-', event: 'error', detail: redact(traceOf(error), this.secretsOfPlan())}).catch(() => undefined);
			}
		} finally {
			if (runDir) await runDir.journal({stage: '-', event: 'run-end', detail: `exit ${exitCode}`}).catch(() => undefined);
			await release?.().catch(() => undefined);
		}
		this.markNotReached();
		const receipt = await this.buildReceipt(runDir).catch(() => undefined);
		this.update({prompt: undefined, progress: undefined, result: {exitCode, summary, ...(receipt ? {receipt} : {})}});
		return exitCode;
	}

	/** What planAll planned, for redaction of the error trace. */
	private plannedSoFar: Planned<Facts>[] = [];

	private secretsOfPlan(): string[] {
		return this.plannedSoFar.flatMap(item => item.plan.changes.flatMap(change => (change.kind === 'write-file' ? [...(change.secrets ?? [])] : [])));
	}

	/**
	 * Remove the tool's own temporary files (".NAME.etcd-harden-XXXXXXXXXXXX.tmp", left by a
	 * write killed before its rename; they may hold key material) from the directories this
	 * run writes to and the ones the command names. Said in the log; a dry run only reports.
	 */
	private async sweepTempFiles(planned: Planned<Facts>[]): Promise<string[]> {
		const {host} = this.options;
		const dirs = new Set(this.options.sweepDirs ?? []);
		for (const item of planned) for (const change of item.plan.changes) if (change.kind === 'write-file') dirs.add(change.path.replace(/\/[^/]*$/, '') || '/');
		const found = await sweepTempFiles(host, [...dirs], !host.dryRun);
		if (found.length > 0) {
			this.addLog({
				level: 'warn',
				text: host.dryRun
					? `Found ${found.length} temporary file(s) of an interrupted etcd-harden write (a real run removes them): ${found.join(', ')}`
					: `Removed ${found.length} temporary file(s) of an interrupted etcd-harden write: ${found.join(', ')}`,
			});
		}
		return found;
	}

	private planned?: Planned<Facts>[];
	/** Stages applied in this run whose changes are in place (done, or failed verification). */
	private readonly applied: Planned<Facts>[] = [];

	/** A stage that stopped the run on bad input says "failed", not "planning". */
	private markFailedOnInput(message: string): boolean {
		const index = this.state.current;
		const stage = this.state.stages[index];
		if (!stage || !(stage.phase === 'asking' || stage.phase === 'planning')) return false;
		this.updateStage(index, {phase: 'failed', error: message});
		return true;
	}

	/** Stages still pending when the run ends were not reached: say so, not "pending". */
	private markNotReached(): void {
		this.state.stages.forEach((stage, index) => {
			if (['pending', 'asking', 'planning', 'previewing'].includes(stage.phase)) {
				this.updateStage(index, {phase: 'skipped', skip: {reason: 'not-reached', text: 'the run stopped before this stage'}});
			}
		});
	}

	/**
	 * What the run changed (from the stages applied, not from the journal's prose), written
	 * as receipt.json into the run directory for `etcd-harden undo`, and returned for the
	 * frontends to print.
	 */
	private async buildReceipt(runDir: RunDir | undefined): Promise<Receipt> {
		const {host} = this.options;
		const skipped = this.state.stages.flatMap(stage => (stage.phase === 'skipped' && stage.skip ? [{stage: stage.id, ...stage.skip}] : []));
		const receipt: Receipt = {files: [], work: [], keep: [], skipped, ...(this.options.undoes ? {undoes: this.options.undoes} : {})};
		if (!runDir) return receipt;
		const files = new Map<string, RunReceiptFile['files'][number]>();
		for (const {stage, plan} of this.applied) {
			for (const change of plan.changes) {
				if (change.kind === 'write-file') {
					const backup = runDir.backupPath(change.path);
					const earlier = files.get(change.path);
					const created = earlier ? earlier.created : (await host.stat(backup)) === undefined;
					files.set(change.path, {
						path: change.path,
						stage: earlier?.stage ?? stage.id,
						created,
						...(created ? {} : {backup}),
						sha256: createHash('sha256').update(change.content).digest('hex'),
						mode: change.mode,
						...((change.secrets?.length ?? 0) > 0 || earlier?.keyMaterial ? {keyMaterial: true} : {}),
					});
				} else {
					receipt.work.push({stage: stage.id, summary: change.summary});
					if (change.kind === 'task' && change.keep) receipt.keep.push(change.keep);
				}
			}
		}
		receipt.files = [...files.values()].map(({sha256: _sha, mode: _mode, ...file}) => file);
		receipt.runId = runDir.id;
		receipt.runDir = runDir.dir;
		const record: RunReceiptFile = {
			id: runDir.id,
			command: this.options.command,
			...(this.options.undoes ? {undoes: this.options.undoes} : {}),
			files: [...files.values()],
			keep: receipt.keep,
		};
		await host.writeFileAtomic(`${runDir.dir}/${RECEIPT_FILE}`, `${JSON.stringify(record, null, 2)}\n`, 0o600);
		return receipt;
	}

	/**
	 * --yes: every answer that is missing, reported at once with its allowed values, before
	 * anything is planned (rather than one per run). Questions that follow a missing answer
	 * are judged as if it were unknown.
	 */
	private async checkAnswersGiven(): Promise<void> {
		const facts = await this.discover(new RecordingHost(this.options.host), undefined, 'plan');
		const missing: Array<{id: string; text: string}> = [];
		for (const stage of this.options.stages) {
			const preset = this.options.answers[stage.id] ?? {};
			const answers: StageAnswers = {};
			const known = new Set(stage.questions(facts, answers).map(question => question.id));
			const unknown = Object.keys(preset).find(id => !known.has(id));
			if (unknown !== undefined) {
				throw new InputError(
					`unknown answer "${stage.id}.${unknown}": stage ${stage.id} asks ${[...known].map(k => `"${k}"`).join(', ') || 'no questions'}. Fix the --answers file or --set flag.`,
				);
			}
			for (let guard = 0; guard < 100; guard++) {
				const question = stage
					.questions(facts, answers)
					.filter(q => q.when?.(answers) ?? true)
					.find(q => !(q.id in answers));
				if (question === undefined) break;
				const given = givenAnswer(question, preset, this.options.host.dryRun)?.value ?? question.default;
				if (given !== undefined) {
					answers[question.id] = coerceAnswer(question, given);
					continue;
				}
				const allowed = question.choices?.length ? ` (one of: ${question.choices.map(c => c.value).join(', ')})` : question.kind === 'confirm' ? ' (true or false)' : '';
				missing.push({id: `${stage.id}.${question.id}`, text: `"${stage.id}.${question.id}"${allowed}: ${question.message}`});
				answers[question.id] = '\u0000missing';
			}
		}
		const [first] = missing;
		if (first === undefined) return;
		if (missing.length === 1) {
			throw new InputError(
				`missing answer ${first.text}. Add it to the --answers file under "${first.id.split('.')[0]}:", or pass --set ${first.id}=VALUE.`,
			);
		}
		throw new InputError(
			`${missing.length} answers are missing for a non-interactive run; pass each with --set STAGE.Q=VALUE or in the --answers file:\n  ${missing.map(m => m.text).join('\n  ')}`,
		);
	}

	/**
	 * Ask every stage's questions and plan every stage before anything is applied. Planning
	 * runs against an overlay of the host, so each stage sees what the earlier ones would
	 * write; bad input anywhere stops the run while the node is still untouched.
	 */
	private async planAll(): Promise<Planned<Facts>[] | undefined> {
		const overlay = new RecordingHost(this.options.host);
		const planned: Planned<Facts>[] = [];
		const answersSoFar: Answers = {};
		const plansSoFar: Record<string, StagePlan> = {};
		for (const [index, stage] of this.options.stages.entries()) {
			this.update({current: index});
			const asked = await this.discover(overlay, undefined, 'plan');
			this.updateStage(index, {phase: 'asking'});
			const answers = await this.askQuestions(stage, asked);
			if (answers === undefined) return undefined;
			this.updateStage(index, {phase: 'planning'});
			answersSoFar[stage.id] = answers;
			const facts = stage.rediscover?.(asked, answers) ? await this.discover(overlay, {...answersSoFar}, 'plan') : asked;
			const plan = stage.plan(facts, answers, {
				randomBytes: this.options.randomBytes ?? cryptoRandomBytes,
				now: this.options.host.now(),
				answers: {...answersSoFar},
				planned: {...plansSoFar},
				settings: this.options.settings ?? {},
			});
			plansSoFar[stage.id] = plan;
			const preview = await previewChanges(plan.changes, overlay);
			this.updateStage(index, {
				phase: plan.leftOut === undefined ? 'pending' : 'skipped',
				notes: [...(plan.leftOut === undefined ? [] : [plan.leftOut]), ...(plan.notes ?? []), ...(this.askedNotes.get(stage.id) ?? [])],
				warnings: plan.warnings ?? [],
				preview,
				...(plan.leftOut === undefined ? {} : {skip: {reason: 'left-out' as const, text: plan.leftOut}}),
			});
			for (const change of plan.changes) {
				if (change.kind === 'write-file') await overlay.writeFileAtomic(change.path, change.content, change.mode);
			}
			planned.push({stage, answers, plan});
			this.plannedSoFar = planned;
		}
		return planned;
	}

	/** Problems that make the node unworkable (a manifest that does not parse), before any question. */
	private async preflight(host: Host): Promise<void> {
		if (!this.options.stages.some(stage => stage.preflight)) return;
		const facts = await this.discover(host, undefined, 'plan');
		const problems = [...new Set(this.options.stages.flatMap(stage => stage.preflight?.(facts) ?? []))];
		if (problems.length > 0) throw new InputError(problems.join('\n'));
	}

	private async discover(host: Host, answers?: Answers, purpose: DiscoveryPurpose = 'verify'): Promise<Facts> {
		try {
			return await this.options.discover(host, answers, purpose);
		} catch (error) {
			const code = (error as NodeJS.ErrnoException).code;
			const file = (error as NodeJS.ErrnoException).path;
			if (code === 'EACCES' || code === 'EPERM') {
				throw new InputError(`cannot read ${file ?? 'a file'}: permission denied. Run etcd-harden as root (or pass --root DIR for a copied tree).`);
			}
			const named = /Received '([^']*)'/.exec((error as Error).message ?? '')?.[1];
			if (code === 'ERR_INVALID_ARG_VALUE' && named !== undefined) {
				// A path read from one of the node's files (a manifest, a kubeconfig) holds a NUL byte.
				throw new InputError(`a path named in the node's files holds a NUL byte: ${named}. Fix the file that names it (a manifest or kubeconfig under /etc/kubernetes).`);
			}
			throw error;
		}
	}

	private async askQuestions(stage: Stage<Facts>, facts: Facts): Promise<StageAnswers | undefined> {
		const preset = this.options.answers[stage.id] ?? {};
		const answers: StageAnswers = {};
		const asked: string[] = []; // ids answered interactively, for esc
		const all = stage.questions(facts, answers);
		const known = new Set(all.map(question => question.id));
		for (const id of Object.keys(preset)) {
			if (!known.has(id)) {
				throw new InputError(
					`unknown answer "${stage.id}.${id}": stage ${stage.id} asks ${[...known].map(k => `"${k}"`).join(', ') || 'no questions'}. Fix the --answers file or --set flag.`,
				);
			}
		}
		let error: string | undefined;
		while (true) {
			// Questions may depend on earlier answers: recompute each time.
			const questions = stage.questions(facts, answers).filter(question => question.when?.(answers) ?? true);
			const question = questions.find(q => !(q.id in answers));
			if (question === undefined) break;
			const position = questions.indexOf(question);
			const seen = this.askedQuestions.get(stage.id) ?? [];
			if (!seen.some(q => q.id === question.id)) this.askedQuestions.set(stage.id, [...seen, question]);
			if (question.id in preset) {
				const value = coerceAnswer(question, preset[question.id]!);
				const problem = checkAnswer(question, value, answers);
				if (problem) throw new InputError(`answer "${stage.id}.${question.id}" is invalid: ${problem}`);
				answers[question.id] = value;
				continue;
			}
			const implied = givenAnswer(question, preset, this.options.host.dryRun && !this.options.interactive);
			if (implied !== undefined) {
				answers[question.id] = implied.value;
				if (implied.via === 'dry-run') this.noteAsked(stage, question);
				continue;
			}
			if (!this.options.interactive) {
				if (question.default === undefined) {
					throw new InputError(
						`missing answer "${stage.id}.${question.id}" (${question.message}). ` +
							`Add it to the --answers file under "${stage.id}:", or pass --set ${stage.id}.${question.id}=VALUE.`,
					);
				}
				answers[question.id] = question.default;
				continue;
			}
			const response = await this.ask({
				type: 'question',
				stageId: stage.id,
				question,
				index: position,
				total: questions.length,
				error,
			});
			error = undefined;
			if (response.type === 'abort') return undefined;
			if (response.type === 'back') {
				const previous = asked.pop();
				if (previous !== undefined) delete answers[previous];
				continue;
			}
			if (response.type !== 'answer') continue;
			const problem = checkAnswer(question, response.value, answers);
			if (problem) {
				error = problem;
				continue;
			}
			answers[question.id] = response.value;
			asked.push(question.id);
		}
		this.recordAnswers(stage, answers);
		return answers;
	}

	/** A non-interactive dry run previewed with a placeholder answer: say what a real run asks. */
	private noteAsked(stage: Stage<Facts>, question: Question): void {
		const index = this.options.stages.indexOf(stage);
		const view = this.state.stages[index];
		if (!view) return;
		const choices = question.choices?.length ? ` (${question.choices.map(c => c.value).join(', ')})` : '';
		const note = `A real run asks: ${question.message}${choices}; this preview assumed "${String(question.dryRunDefault)}".`;
		this.askedNotes.set(stage.id, [...(this.askedNotes.get(stage.id) ?? []), note]);
		this.updateStage(index, {notes: [...view.notes, note]});
	}

	/** The stage's answers as shown to the operator afterwards (never a password). */
	private recordAnswers(stage: Stage<Facts>, answers: StageAnswers): void {
		const index = this.options.stages.indexOf(stage);
		const shown: Array<{question: string; value: string}> = [];
		for (const question of this.askedQuestions.get(stage.id) ?? []) {
			if (!(question.id in answers) || question.kind === 'password') continue;
			const value = answers[question.id]!;
			const label = (v: string) => question.choices?.find(c => c.value === v)?.label ?? v;
			const text = Array.isArray(value) ? value.map(label).join(', ') || '(none)' : typeof value === 'boolean' ? (value ? 'yes' : 'no') : label(value);
			shown.push({question: question.message, value: text});
		}
		this.updateStage(index, {answers: shown});
	}

	private readonly askedQuestions = new Map<string, Question[]>();
	/** Notes on placeholder answers of a non-interactive dry run, by stage id. */
	private readonly askedNotes = new Map<string, string[]>();

	private async applyAll(planned: Planned<Facts>[], runDir: RunDir, summary: string[]): Promise<number> {
		const allAnswers: Answers = Object.fromEntries(planned.map(item => [item.stage.id, item.answers]));
		// Applied stages of the current undo group, with their undo steps.
		let group: Array<{index: number; stage: Stage<Facts>; undo: Array<() => Promise<void>>}> = [];
		// Stages the operator declined, and those skipped because they build on one: id -> title declined.
		const notApplied = new Map<string, string>();
		for (const [index, item] of planned.entries()) {
			const {stage, answers, plan} = item;
			this.update({current: index});
			if (stage.undoGroup === undefined || group[0]?.stage.undoGroup !== stage.undoGroup) group = [];
			const blockedBy = this.blockedBy(stage, planned.slice(0, index), notApplied);
			if (blockedBy !== undefined && plan.changes.length > 0 && plan.leftOut === undefined) {
				const text = `it builds on "${blockedBy.title}", which ${blockedBy.declined ? 'you declined' : `was skipped (it builds on "${blockedBy.root}")`}`;
				this.updateStage(index, {phase: 'skipped', skip: {reason: 'depends-on-declined', text}});
				notApplied.set(stage.id, blockedBy.root);
				summary.push(`${stage.title}: skipped: ${text}; nothing was changed.`);
				continue;
			}
			if (plan.leftOut !== undefined) {
				summary.push(`${stage.title}: left out: ${plan.leftOut}`);
				continue;
			}
			if (plan.changes.length === 0) {
				const checks = stage.verify(await this.discover(this.options.host, allAnswers), answers);
				this.updateStage(index, {phase: 'unchanged', checks});
				await runDir.journal({stage: stage.id, event: 'stage-unchanged'});
				summary.push(`${stage.title}: already in place, nothing changed.`);
				if (checks.some(check => check.status === 'fail')) return this.verificationFailed(stage, summary);
				continue;
			}

			if (this.options.interactive) {
				this.updateStage(index, {phase: 'previewing'});
				const response = await this.confirmStage(stage, index);
				if (response === 'abort') throw new Aborted();
				if (response === 'no') {
					this.updateStage(index, {phase: 'skipped', skip: {reason: 'declined', text: 'you answered no at its preview; nothing was changed'}});
					notApplied.set(stage.id, stage.title);
					const dependents = this.dependents(stage, planned.slice(index + 1));
					summary.push(
						`${stage.title}: declined; nothing was changed.` +
							(dependents.length > 0 ? ` Skipped with it, because they build on it: ${dependents.map(d => `"${d.title}"`).join(', ')}.` : ''),
					);
					this.addLog({
						level: 'warn',
						text:
							`${stage.title}: declined.` +
							(dependents.length > 0 ? ` ${dependents.map(d => `"${d.title}"`).join(', ')} build${dependents.length === 1 ? 's' : ''} on it and will be skipped; the other stages continue.` : ' The other stages continue.'),
					});
					continue;
				}
			}

			this.updateStage(index, {phase: 'applying'});
			await runDir.journal({stage: stage.id, event: 'stage-start'});
			const undo: Array<() => Promise<void>> = [];
			try {
				for (const change of plan.changes) {
					if (this.abortController.signal.aborted) throw new Aborted();
					await this.applyChange(stage, change, runDir, undo);
				}
				if (this.abortController.signal.aborted) throw new Aborted();
			} catch (error) {
				const message = error instanceof Aborted ? 'interrupted' : error instanceof Error ? error.message : String(error);
				const headline = message.split('\n')[0] ?? message;
				this.addLog({level: 'error', text: `${stage.title}: ${message}`});
				this.addLog({level: 'warn', text: `Undoing ${[stage, ...group.map(item => item.stage)].map(s => `"${s.title}"`).join(' and ')}.`});
				await runDir.journal({stage: stage.id, event: 'error', detail: redact(traceOf(error), this.secretsOfPlan())}).catch(() => undefined);
				const undoErrors = await this.undoAll(stage, undo, runDir);
				this.updateStage(index, {phase: 'rolled-back', error: message});
				await runDir.journal({stage: stage.id, event: 'rolled-back', detail: headline});
				for (const earlier of [...group].reverse()) {
					undoErrors.push(...(await this.undoAll(earlier.stage, earlier.undo, runDir)));
					this.updateStage(earlier.index, {phase: 'rolled-back', error: `undone together with "${stage.title}"`});
					await runDir.journal({stage: earlier.stage.id, event: 'rolled-back', detail: `with ${stage.id}`});
					summary.push(`${earlier.stage.title}: undone together with "${stage.title}".`);
				}
				if (undoErrors.length > 0) {
					summary.push(`${stage.title}: failed (${headline}) and could not be fully undone: ${undoErrors.join('; ')}. Backups are in ${runDir.dir}/backup.`);
				} else {
					summary.push(`${stage.title}: failed (${headline}); its changes were undone.`);
				}
				if (error instanceof Aborted) throw error;
				return exitCodes.aborted;
			} finally {
				this.update({progress: undefined});
			}

			this.updateStage(index, {phase: 'verifying'});
			const checks = stage.verify(await this.discover(this.options.host, allAnswers), answers);
			if (checks.some(check => check.status === 'fail')) {
				this.updateStage(index, {phase: 'failed', checks});
				this.applied.push(item);
				await runDir.journal({stage: stage.id, event: 'stage-failed'});
				return this.verificationFailed(stage, summary);
			}
			this.updateStage(index, {phase: 'done', checks});
			this.applied.push(item);
			if (stage.undoGroup !== undefined) group.push({index, stage, undo});
			await runDir.journal({stage: stage.id, event: 'stage-done'});
			summary.push(`${stage.title}: applied and verified.`);
		}
		return exitCodes.ok;
	}

	/** Earlier stages this one builds on (Stage.dependsOn; undefined: all earlier ones). */
	private dependencies(stage: Stage<Facts>, earlier: Planned<Facts>[]): Stage<Facts>[] {
		const ids = stage.dependsOn;
		return earlier.map(item => item.stage).filter(s => ids === undefined || ids.includes(s.id));
	}

	/** The first dependency that did not apply, with the stage the operator declined at its root. */
	private blockedBy(stage: Stage<Facts>, earlier: Planned<Facts>[], notApplied: ReadonlyMap<string, string>): {title: string; root: string; declined: boolean} | undefined {
		for (const dependency of this.dependencies(stage, earlier)) {
			const root = notApplied.get(dependency.id);
			if (root !== undefined) return {title: dependency.title, root, declined: root === dependency.title};
		}
		return undefined;
	}

	/** Later stages with changes that build on `declined`, directly or through another one. */
	private dependents(declined: Stage<Facts>, later: Planned<Facts>[]): Stage<Facts>[] {
		const out = new Set<string>([declined.id]);
		const result: Stage<Facts>[] = [];
		const all = this.planned ?? [];
		for (const item of later) {
			const earlier = all.slice(0, all.indexOf(item));
			if (item.plan.changes.length > 0 && item.plan.leftOut === undefined && this.dependencies(item.stage, earlier).some(d => out.has(d.id))) {
				out.add(item.stage.id);
				result.push(item.stage);
			}
		}
		return result;
	}

	private async verifyOnly(planned: Planned<Facts>[], summary: string[]): Promise<number> {
		const allAnswers: Answers = Object.fromEntries(planned.map(item => [item.stage.id, item.answers]));
		const facts = await this.discover(this.options.host, allAnswers);
		for (const [index, {stage, answers, plan}] of planned.entries()) {
			if (plan.leftOut !== undefined) {
				summary.push(`${stage.title}: left out: ${plan.leftOut}`);
				continue;
			}
			const checks = stage.verify(facts, answers);
			this.updateStage(index, {phase: 'unchanged', checks});
			summary.push(`${stage.title}: already in place, nothing changed.`);
			if (checks.some(check => check.status === 'fail')) return this.verificationFailed(stage, summary);
		}
		return exitCodes.ok;
	}

	private verificationFailed(stage: Stage<Facts>, summary: string[]): number {
		summary.push(`${stage.title}: verification failed; later stages were not run. See the failed checks and their fixes above.`);
		return exitCodes.failed;
	}

	private async confirmStage(stage: Stage<Facts>, index: number): Promise<'yes' | 'no' | 'abort'> {
		while (true) {
			const response = await this.ask({
				type: 'confirm',
				stageId: stage.id,
				message: `Apply these changes for "${stage.title}"?`,
				preview: this.state.stages[index]?.preview ?? [],
			});
			if (response.type === 'abort') return 'abort';
			if (response.type === 'confirm') return response.yes ? 'yes' : 'no';
			// esc at the preview: answers were already planned; re-show the preview.
		}
	}

	private taskContext(stage: Stage<Facts>, runDir: RunDir): TaskContext {
		return {
			host: this.options.host,
			signal: this.abortController.signal,
			runDir,
			progress: progress => this.update({progress: {...progress, stageId: stage.id}}),
			log: line => this.addLog(line),
			confirm: (message, timeoutMs) => this.confirmWithin(stage, message, timeoutMs),
		};
	}

	/** A confirm prompt that answers itself "no" when its deadline passes (see TaskContext.confirm). */
	private async confirmWithin(stage: Stage<Facts>, message: string, timeoutMs: number): Promise<boolean> {
		if (!this.options.interactive) return true;
		const deadline = Date.now() + timeoutMs;
		const prompt: Prompt = {type: 'confirm', stageId: stage.id, message, preview: [], deadline};
		let expired = false;
		const timer = setTimeout(() => {
			if (this.state.prompt?.type !== 'confirm' || this.state.prompt.deadline !== deadline) return;
			expired = true;
			this.addLog({level: 'warn', text: `No answer within ${Math.round(timeoutMs / 1000)} s: taken as no.`});
			this.respond({type: 'confirm', yes: false});
		}, timeoutMs);
		try {
			while (!expired) {
				const response = await this.ask(prompt);
				if (response.type === 'confirm') return response.yes && !expired;
				if (response.type === 'abort') return false;
				// esc: there is nothing to go back to; ask again with the same deadline.
			}
			return false;
		} finally {
			clearTimeout(timer);
		}
	}

	private async applyChange(stage: Stage<Facts>, change: Change, runDir: RunDir, undo: Array<() => Promise<void>>): Promise<void> {
		const {host} = this.options;
		switch (change.kind) {
			case 'write-file': {
				await checkWriteTarget(change, host); // the file is still the one the plan was made from
				const before = await host.readFile(change.path);
				const beforeStat = await host.stat(change.path);
				if (before !== undefined && beforeStat) {
					const backup = runDir.backupPath(change.path);
					await host.writeFileAtomic(backup, before, beforeStat.mode & 0o777 & ~0o077 | 0o600);
					await runDir.journal({stage: stage.id, event: 'backup', path: change.path, backup});
				}
				// Undo removes the directories this write creates (runs last: pushed first),
				// and reverts the file only once the write has happened.
				const createdDirs = await missingDirectories(host, change.path);
				if (createdDirs.length > 0) undo.push(async () => removeCreatedDirectories(host, createdDirs));
				const revert =
					before !== undefined && beforeStat
						? async () => {
								await host.writeFileAtomic(change.path, before, beforeStat.mode);
								await runDir.journal({stage: stage.id, event: 'undo', path: change.path, detail: 'restored from backup'});
							}
						: async () => {
								await host.remove(change.path);
								await runDir.journal({stage: stage.id, event: 'undo', path: change.path, detail: 'removed (it did not exist before)'});
							};
				try {
					await host.writeFileAtomic(change.path, change.content, change.mode);
				} catch (error) {
					// Failed after its rename (the directory fsync)? Then it did happen.
					const now = await host.readFile(change.path).catch(() => undefined);
					if (now !== undefined && !(before !== undefined && now.equals(before))) undo.push(revert);
					throw error;
				}
				undo.push(revert);
				await runDir.journal({stage: stage.id, event: before === undefined ? 'created' : 'write', path: change.path, detail: redact(change.summary, change.secrets)});
				this.addLog({level: 'success', text: `wrote ${change.path} (mode 0${change.mode.toString(8)})`});
				return;
			}
			case 'run': {
				this.update({progress: {stageId: stage.id, label: change.summary}});
				const result = await host.run(change.argv, {signal: this.abortController.signal});
				await runDir.journal({stage: stage.id, event: 'run', detail: `${change.summary}: exit ${result.exitCode}`});
				if (change.undo) {
					const argv = change.undo;
					undo.push(async () => {
						const reverted = await host.run(argv);
						if (reverted.exitCode !== 0) throw new Error(`undo of "${change.summary}" exited ${reverted.exitCode}`);
					});
				}
				if (result.exitCode !== 0) {
					const output = (result.stderr || result.stdout).trim().split('\n').slice(-5).join('\n');
					throw new Error(`${change.summary} exited ${result.exitCode}${output ? `: ${output}` : ''}`);
				}
				return;
			}
			case 'task': {
				const executor = this.options.tasks?.get(change.task);
				if (!executor) throw new Error(`internal: no executor for task "${change.task}"`);
				const context = this.taskContext(stage, runDir);
				if (executor.undo) {
					const reverse = executor.undo.bind(executor);
					undo.push(async () => reverse(change.params, {...context, signal: new AbortController().signal}));
				}
				await runDir.journal({stage: stage.id, event: 'task', detail: change.summary});
				this.update({progress: {stageId: stage.id, label: change.summary}});
				await executor.run(change.params, context);
				return;
			}
		}
	}

	private async undoAll(stage: Stage<Facts>, undo: Array<() => Promise<void>>, runDir: RunDir): Promise<string[]> {
		const errors: string[] = [];
		for (const step of undo.reverse()) {
			try {
				await step();
			} catch (error) {
				const message = error instanceof Error ? error.message : String(error);
				errors.push(message);
				await runDir.journal({stage: stage.id, event: 'undo', detail: `failed: ${message}`}).catch(() => undefined);
			}
		}
		return errors;
	}
}

/**
 * An answer the operator gave without being asked: up front (--set, --answers), implied by
 * one given up front (Question.confirmsPreset), or, in a non-interactive dry run, the
 * question's placeholder (Question.dryRunDefault). Defaults are not included.
 */
function givenAnswer(question: Question, preset: StageAnswers, dryRunPlaceholders: boolean): {value: AnswerValue; via: 'preset' | 'implied' | 'dry-run'} | undefined {
	if (question.id in preset) return {value: preset[question.id]!, via: 'preset'};
	if (question.confirmsPreset !== undefined && question.confirmsPreset in preset) return {value: true, via: 'implied'};
	if (dryRunPlaceholders && question.default === undefined && question.dryRunDefault !== undefined) return {value: question.dryRunDefault, via: 'dry-run'};
	return undefined;
}

/**
 * Read an answer given as text (--set, an answers file) by its question's type: a list from
 * "a,b" or "[a, b]", true/false from yes/no/true/false, a choice without surrounding spaces.
 * Text and password answers are taken verbatim: never parsed, never trimmed.
 */
export function coerceAnswer(question: Question, value: AnswerValue): AnswerValue {
	if (typeof value !== 'string') return value;
	switch (question.kind) {
		case 'multiselect': {
			const trimmed = value.trim();
			const inner = trimmed.startsWith('[') && trimmed.endsWith(']') ? trimmed.slice(1, -1) : trimmed;
			return inner
				.split(',')
				.map(item => item.trim().replace(/^(["'])(.*)\1$/, '$2'))
				.filter(Boolean);
		}
		case 'confirm':
			if (/^\s*(y|yes|true)\s*$/i.test(value)) return true;
			if (/^\s*(n|no|false)\s*$/i.test(value)) return false;
			return value;
		case 'select':
			return value.trim();
		default:
			return value;
	}
}

/** Type and validation check for one answer; returns the problem or undefined. */
export function checkAnswer(question: Question, value: AnswerValue, answers: StageAnswers): string | undefined {
	const choices = question.choices?.map(choice => choice.value);
	switch (question.kind) {
		case 'confirm':
			if (typeof value !== 'boolean') return `expected true or false, got ${JSON.stringify(value)}`;
			break;
		case 'multiselect':
			if (!Array.isArray(value)) return `expected a list, got ${JSON.stringify(value)}`;
			if (choices) {
				const unknown = value.filter(item => !choices.includes(item));
				if (unknown.length > 0 && !question.validate) return `unknown value(s) ${unknown.join(', ')}; choose from ${choices.join(', ')}`;
			}
			break;
		case 'select':
			if (typeof value !== 'string') return `expected one of ${choices?.join(', ')}, got ${JSON.stringify(value)}`;
			if (choices && !choices.includes(value)) return `"${value}" is not one of ${choices.join(', ')}`;
			break;
		case 'text':
			if (typeof value !== 'string') return `expected text, got ${JSON.stringify(value)}`;
			// A newline or another control character in a path or a name is never meant.
			// eslint-disable-next-line no-control-regex
			if (/[\u0000-\u001f\u007f]/.test(value)) return `${JSON.stringify(value)} contains a control character (a newline?); give it on one line`;
			break;
		case 'password':
			if (typeof value !== 'string') return `expected text, got ${JSON.stringify(value)}`;
			break;
	}
	return question.validate?.(value, answers);
}

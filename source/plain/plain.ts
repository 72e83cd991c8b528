/**
 * The line-mode frontend: prints what the engine does as plain lines and answers its
 * prompts with @inquirer/prompts. Same engine, same state as the Ink wizard; it decides
 * nothing about what changes on the node.
 */
import {Writable} from 'node:stream';
import {checkbox, input, password, select} from '@inquirer/prompts';
import type {EngineControl, EngineState, Prompt, Progress, StageView} from '../engine/state.js';
import type {AnswerValue} from '../engine/contract.js';
import {
	checkLines,
	colorOn,
	deadlineText,
	promptConfirmDefault,
	formatAnswer,
	isFinished,
	logPrefix,
	logTone,
	outcomeLabel,
	outcomeTone,
	phaseLabel,
	phaseSymbol,
	phaseTone,
	previewLines,
	progressLine,
	questionCounter,
	stageHeading,
	stageTally,
	tailLines,
	yesNoHint,
	type Styled,
	type Tone,
	paint,
} from '../ui/format.js';

export type PlainIo = {
	/** Where prompts read keys (default process.stdin). */
	input?: NodeJS.ReadableStream;
	/** Where everything is printed (default process.stderr). */
	output?: NodeJS.WritableStream;
	/** Colour the output; default: output is a TTY and NO_COLOR is unset. */
	color?: boolean;
	/** At most one progress line per this many ms (a label change or completion always prints). */
	progressIntervalMs?: number;
	/** Clock for throttling (tests). */
	now?: () => number;
	/** Also print result.summary (default false: the CLI prints it on stdout). */
	summaryLines?: boolean;
	/** --root, named in the header. */
	root?: string;
};


function isPromptExit(error: unknown, name: string): boolean {
	return error instanceof Error && error.name === name;
}

class Printer {
	private previous?: EngineState;
	private logSeen = 0;
	private readonly finished = new Set<string>();
	private readonly headed = new Set<string>();
	private readonly remarks = new Map<string, string>();
	private lastProgress?: {key: string; at: number; line: string};

	constructor(
		private readonly write: (text: string) => void,
		private readonly color: boolean,
		private readonly progressIntervalMs: number,
		private readonly now: () => number,
		private readonly summaryLines: boolean,
		private readonly root?: string,
	) {}

	line(text: string, tone: Tone = 'plain'): void {
		this.write(`${paint({text, tone}, this.color)}\n`);
	}

	styled(lines: Styled[], indent = ''): void {
		for (const line of lines) this.line(indent + line.text, line.tone);
	}

	/** Prints what is new in `state` since the last call. */
	show(state: EngineState): void {
		const previous = this.previous;
		this.previous = state;
		if (!previous) this.line(`etcd-harden ${state.command}${this.root !== undefined ? ` --root ${this.root}` : ''}${state.dryRun ? ' (dry run: nothing will be changed)' : ''}`, 'active');

		for (; this.logSeen < state.log.length; this.logSeen++) {
			const entry = state.log[this.logSeen];
			if (entry) this.line(logPrefix(entry.level) + entry.text, logTone(entry.level));
		}

		state.stages.forEach((stage, index) => {
			const before = previous?.stages.find(s => s.id === stage.id);
			if (stage.phase === 'asking' && !this.headed.has(stage.id)) {
				this.headed.add(stage.id);
				this.line('');
				this.line(stageHeading(state, index), 'active');
				if (stage.explain) this.line(stage.explain);
			}
			this.remarksOf(stage);
			if (before && before.phase !== stage.phase && (stage.phase === 'applying' || stage.phase === 'verifying')) {
				this.line(`${stageHeading(state, index)}: ${phaseLabel(stage.phase)}`, 'active');
			}
			if (isFinished(stage.phase) && !this.finished.has(stage.id) && before?.phase !== stage.phase) {
				this.finished.add(stage.id);
				this.finishedStage(stage);
			}
		});

		if (state.progress && state.progress !== previous?.progress) this.progress(state.progress);

		if (state.result && !previous?.result) {
			this.line('');
			this.line(`${outcomeLabel(state.result.exitCode)} (exit ${state.result.exitCode})`, outcomeTone(state.result.exitCode));
			this.line(stageTally(state.stages));
			if (this.summaryLines) for (const text of state.result.summary) this.line(text);
		}
	}

	/** Notes and warnings, printed when the plan sets them (once per content). */
	private remarksOf(stage: StageView): void {
		if (stage.notes.length === 0 && stage.warnings.length === 0) return;
		const key = JSON.stringify([stage.notes, stage.warnings]);
		if (this.remarks.get(stage.id) === key) return;
		this.remarks.set(stage.id, key);
		for (const note of stage.notes) this.line(`  • ${note}`, 'muted');
		for (const warning of stage.warnings) this.line(`  ! ${warning}`, 'warn');
	}

	private finishedStage(stage: StageView): void {
		// Not reached: the tally and the receipt say so; one line per stage would only repeat it.
		if (stage.skip?.reason === 'not-reached') return;
		const skip = stage.phase === 'skipped' && stage.skip && stage.skip.reason !== 'not-selected' && stage.skip.reason !== 'left-out' ? `: ${stage.skip.text}` : '';
		this.line(`${phaseSymbol(stage.phase)} ${stage.title}: ${phaseLabel(stage.phase)}${skip}`, phaseTone(stage.phase));
		if (stage.error) this.line(`  ${stage.error}`, 'error');
		if (stage.phase === 'previewed' && stage.preview) {
			for (const item of stage.preview) this.styled(previewLines(item), '  ');
		}
		for (const check of stage.checks) this.styled(checkLines(check), '  ');
	}

	private progress(progress: Progress): void {
		const key = `${progress.stageId}\n${progress.label}`;
		const line = progressLine(progress);
		const at = this.now();
		const last = this.lastProgress;
		const complete = progress.total !== undefined && progress.done !== undefined && progress.done >= progress.total;
		if (last && last.line === line) return;
		if (last && last.key === key && !complete && at - last.at < this.progressIntervalMs) return;
		this.lastProgress = {key, at, line};
		this.line(`  ${line}`);
		for (const text of tailLines(progress.tail, 3)) this.line(`    ${text}`, 'muted');
	}

	preview(state: EngineState, prompt: Extract<Prompt, {type: 'confirm'}>): void {
		const stage = state.stages.find(s => s.id === prompt.stageId);
		this.line('');
		this.line(`Changes planned by ${stage?.title ?? prompt.stageId}:`, 'active');
		if (prompt.preview.length === 0) this.line('  (none)', 'muted');
		for (const item of prompt.preview) this.styled(previewLines(item), '  ');
	}
}

/**
 * Runs the engine's prompts in line mode until `state.result` is set. Ctrl-C in a prompt
 * (ExitPromptError) calls `control.abort()` and nothing more is asked.
 */
export async function runPlain(control: EngineControl, io: PlainIo = {}): Promise<void> {
	const inputStream = io.input ?? process.stdin;
	const output = io.output ?? process.stderr;
	const color = io.color ?? colorOn(output as {isTTY?: boolean}, process.env);
	const printer = new Printer(text => output.write(text), color, io.progressIntervalMs ?? 1000, io.now ?? Date.now, io.summaryLines ?? false, io.root);

	let wake: (() => void) | undefined;
	const unsubscribe = control.subscribe(() => {
		printer.show(control.getState());
		wake?.();
	});
	const changed = () =>
		new Promise<void>(resolve => {
			wake = () => {
				wake = undefined;
				resolve();
			};
		});

	let aborted = false;
	let handled: Prompt | undefined;
	try {
		printer.show(control.getState());
		for (;;) {
			const state = control.getState();
			if (state.result) return;
			if (state.prompt && state.prompt !== handled && !aborted) {
				handled = state.prompt;
				const outcome = await ask(control, state, state.prompt, printer, inputStream, output);
				if (outcome === 'abort') {
					aborted = true;
					control.abort();
				}
				continue;
			}
			await changed();
		}
	} finally {
		unsubscribe();
	}
}

type PromptContext = {input: NodeJS.ReadableStream; output: NodeJS.WritableStream; signal: AbortSignal};

/**
 * A yes/no question that takes exactly what the Ink wizard takes: y, yes, n, no (any case),
 * or enter for the default. Anything else ("yn", "ok") is refused and asked again.
 */
export function parseYesNo(text: string, defaultValue: boolean | undefined): boolean | undefined {
	const value = text.trim().toLowerCase();
	if (value === '') return defaultValue;
	if (value === 'y' || value === 'yes') return true;
	if (value === 'n' || value === 'no') return false;
	return undefined;
}

async function yesNo(message: string, defaultValue: boolean | undefined, context: PromptContext): Promise<boolean> {
	const answer = await input(
		{
			message: `${message} ${yesNoHint(defaultValue)}`,
			validate: text => (parseYesNo(text, defaultValue) === undefined ? 'Answer y or n.' : true),
			transformer: (text, {isFinal}) => (isFinal ? (parseYesNo(text, defaultValue) ? 'yes' : 'no') : text),
		},
		context,
	);
	return parseYesNo(answer, defaultValue) ?? false;
}

/** A passphrase, masked, typed twice; asked again until both entries match. */
async function passwordTwice(message: string, question: Extract<Prompt, {type: 'question'}>['question'], printer: Printer, fresh: () => PromptContext): Promise<string> {
	for (;;) {
		const first = await password({message, mask: '*', validate: value => question.validate?.(value, {}) ?? true}, fresh());
		const second = await password({message: 'Type it again to confirm', mask: '*'}, fresh());
		if (first === second) return first;
		printer.line('✖ The two entries differ: type the passphrase again.', 'error');
	}
}

async function ask(
	control: EngineControl,
	state: EngineState,
	prompt: Prompt,
	printer: Printer,
	inputStream: NodeJS.ReadableStream,
	output: NodeJS.WritableStream,
): Promise<'answered' | 'abort' | 'gone'> {
	// Stop the prompt if the engine moves on without it (an abort from a signal).
	const gone = new AbortController();
	const unsubscribe = control.subscribe(() => {
		const now = control.getState();
		if (now.prompt !== prompt || now.result) gone.abort();
	});
	// Inquirer ends the stream it writes to when a prompt is done; give each prompt a fresh one.
	const fresh = (): PromptContext => ({
		input: inputStream,
		output: new Writable({
			write(chunk: Buffer, _encoding, callback) {
				output.write(chunk);
				callback();
			},
		}),
		signal: gone.signal,
	});
	const context = fresh();

	try {
		if (prompt.type === 'confirm') {
			if (prompt.deadline === undefined) printer.preview(state, prompt);
			else printer.line(deadlineText(prompt.deadline, Date.now()), 'warn');
			const yes = await yesNo(prompt.message, promptConfirmDefault(prompt), context);
			unsubscribe();
			control.confirm(yes);
			return 'answered';
		}
		const {question} = prompt;
		if (prompt.error) printer.line(`✖ ${prompt.error}`, 'error');
		if (question.help) printer.line(question.help, 'muted');
		const counter = questionCounter(prompt.index, prompt.total);
		const message = counter ? `${question.message} (${counter})` : question.message;
		const choices = question.choices ?? [];
		let value: AnswerValue;
		switch (question.kind) {
			case 'select':
				value = await select(
					{
						message,
						choices: choices.map(c => ({value: c.value, name: c.label, description: c.hint})),
						default: typeof question.default === 'string' ? question.default : undefined,
					},
					context,
				);
				break;
			case 'multiselect': {
				const picked = Array.isArray(question.default) ? question.default : [];
				value = await checkbox(
					{
						message,
						choices: choices.map(c => ({value: c.value, name: c.label, description: c.hint, checked: picked.includes(c.value)})),
					},
					context,
				);
				break;
			}
			case 'confirm':
				value = await yesNo(message, typeof question.default === 'boolean' ? question.default : undefined, context);
				break;
			case 'password':
				value = await passwordTwice(message, question, printer, fresh);
				break;
			default:
				value = await input(
					{message, default: question.default === undefined ? undefined : formatAnswer(question.default)},
					context,
				);
		}
		unsubscribe();
		control.answer(value);
		return 'answered';
	} catch (error) {
		if (isPromptExit(error, 'ExitPromptError')) return 'abort';
		if (isPromptExit(error, 'AbortPromptError')) return 'gone';
		throw error;
	} finally {
		unsubscribe();
	}
}

/**
 * Pure formatting shared by both frontends (Ink and plain), so a phase, a check, a
 * progress line or a diff looks the same in either. Nothing here reads the terminal or
 * the environment; callers pass widths and decide on colour.
 */
import type {EngineState, PreviewItem, Progress, Receipt, SkipReason, StagePhase, StageView} from '../engine/state.js';
import type {AnswerValue, Check, CheckStatus, Question} from '../engine/contract.js';

/** A colour intent; each frontend maps it to its own styling (or none). */
export type Tone = 'plain' | 'muted' | 'active' | 'success' | 'warn' | 'error' | 'add' | 'remove' | 'hunk' | 'meta';

export type Styled = {text: string; tone: Tone};

const phaseInfo: Record<StagePhase, {symbol: string; label: string; tone: Tone}> = {
	pending: {symbol: '·', label: 'to do', tone: 'muted'},
	asking: {symbol: '?', label: 'questions', tone: 'active'},
	planning: {symbol: '…', label: 'preparing', tone: 'active'},
	previewing: {symbol: '?', label: 'awaiting your ok', tone: 'active'},
	applying: {symbol: '›', label: 'applying', tone: 'active'},
	verifying: {symbol: '…', label: 'verifying', tone: 'active'},
	done: {symbol: '✔', label: 'done', tone: 'success'},
	unchanged: {symbol: '=', label: 'unchanged', tone: 'success'},
	previewed: {symbol: '◇', label: 'previewed (dry run)', tone: 'success'},
	skipped: {symbol: '-', label: 'skipped', tone: 'muted'},
	failed: {symbol: '✖', label: 'failed', tone: 'error'},
	'rolled-back': {symbol: '↺', label: 'rolled back', tone: 'warn'},
};

export function phaseSymbol(phase: StagePhase): string {
	return phaseInfo[phase].symbol;
}

export function phaseLabel(phase: StagePhase): string {
	return phaseInfo[phase].label;
}

export function phaseTone(phase: StagePhase): Tone {
	return phaseInfo[phase].tone;
}

/** Phases after which the stage will not change again in this run. */
export function isFinished(phase: StagePhase): boolean {
	return (
		phase === 'done' ||
		phase === 'unchanged' ||
		phase === 'previewed' ||
		phase === 'skipped' ||
		phase === 'failed' ||
		phase === 'rolled-back'
	);
}

/** Phases where the engine works without waiting for the operator (a spinner may run). */
export function isBusy(phase: StagePhase): boolean {
	return phase === 'planning' || phase === 'applying' || phase === 'verifying';
}

/** "[2/11] Encryption config" */
export function stageHeading(state: EngineState, index: number): string {
	const stage = state.stages[index];
	if (!stage) return '';
	return `[${index + 1}/${state.stages.length}] ${stage.title}`;
}

const checkInfo: Record<CheckStatus, {label: string; tone: Tone}> = {
	pass: {label: 'PASS', tone: 'success'},
	fail: {label: 'FAIL', tone: 'error'},
	warn: {label: 'WARN', tone: 'warn'},
};

export function checkLabel(status: CheckStatus): string {
	return checkInfo[status].label;
}

export function checkTone(status: CheckStatus): Tone {
	return checkInfo[status].tone;
}

/**
 * The one rendering of a check, for every frontend and command: "PASS  title: actual" (with
 * the id before the title where ids matter: "FAIL  2.2  title: actual"), then
 * "      fix: remediation" for fail/warn. The first line carries the status tone; the fix
 * line is plain.
 */
export function checkLines(check: Check, options: {withId?: boolean} = {}): Styled[] {
	const head = `${checkLabel(check.status)}  ${options.withId ? `${check.id}  ` : ''}${check.title}${check.actual ? `: ${check.actual}` : ''}`;
	const lines: Styled[] = [{text: head, tone: checkTone(check.status)}];
	if (check.status !== 'pass' && check.remediation) {
		lines.push({text: `      fix: ${check.remediation}`, tone: 'plain'});
	}
	return lines;
}

/** checkLines as plain text lines, each with this indent. */
export function checkText(check: Check, indent: string, options: {withId?: boolean} = {}): string {
	return checkLines(check, options)
		.map(line => `${indent}${line.text}\n`)
		.join('');
}

/** 65 -> "1m05s", 7 -> "7s", 3700 -> "1h01m". */
export function formatDuration(seconds: number): string {
	const s = Math.max(0, Math.round(seconds));
	if (s < 60) return `${s}s`;
	const m = Math.floor(s / 60);
	if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
	return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** 1234.5 -> "1235/s", 2.25 -> "2.3/s". */
export function formatRate(rate: number): string {
	return rate >= 100 ? `${Math.round(rate)}/s` : `${Math.round(rate * 10) / 10}/s`;
}

/** "[#####.....]" with `width` cells between the brackets. */
export function progressBar(done: number, total: number, width: number): string {
	const cells = Math.max(1, width);
	const ratio = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
	const full = Math.round(ratio * cells);
	return `[${'#'.repeat(full)}${'.'.repeat(cells - full)}]`;
}

/**
 * The progress figures after the label: "[####......] 120/300 40%  300/s  ETA 1s".
 * Parts the engine did not give are left out.
 */
export function progressFigures(progress: Progress, barWidth = 20): string {
	const parts: string[] = [];
	const {done, total} = progress;
	if (done !== undefined && total !== undefined) {
		const percent = total > 0 ? Math.floor((Math.min(done, total) / total) * 100) : 100;
		parts.push(`${progressBar(done, total, barWidth)} ${done}/${total} ${percent}%`);
	} else if (done !== undefined) {
		parts.push(`${done} done`);
	}
	if (progress.rate !== undefined) parts.push(formatRate(progress.rate));
	if (progress.etaSeconds !== undefined) parts.push(`ETA ${formatDuration(progress.etaSeconds)}`);
	return parts.join('  ');
}

/** The whole progress as one line, for plain mode and logs. */
export function progressLine(progress: Progress, barWidth = 20): string {
	const figures = progressFigures(progress, barWidth);
	return figures ? `${progress.label}  ${figures}` : progress.label;
}

/** The last `count` lines of a command's output. */
export function tailLines(tail: string[] | undefined, count = 5): string[] {
	if (!tail || tail.length === 0) return [];
	return tail.slice(-count);
}

/** The colour of one line of a unified diff. */
export function diffLineTone(line: string): Tone {
	if (line.startsWith('+++') || line.startsWith('---')) return 'meta';
	if (line.startsWith('@@')) return 'hunk';
	if (line.startsWith('+')) return 'add';
	if (line.startsWith('-')) return 'remove';
	if (line.startsWith('\\')) return 'muted';
	return 'plain';
}

const previewKindLabel: Record<PreviewItem['kind'], string> = {
	'write-file': 'write',
	run: 'run',
	task: 'task',
};

/**
 * A preview item as styled lines: a heading, then the diff (coloured +/-), the command
 * ("$ argv"), or the task's detail lines.
 */
export function previewLines(item: PreviewItem): Styled[] {
	const lines: Styled[] = [{text: `${previewKindLabel[item.kind]}: ${item.summary}`, tone: 'active'}];
	const body = item.body.replace(/\n$/, '');
	if (body === '') return lines;
	for (const line of body.split('\n')) {
		if (item.kind === 'write-file') lines.push({text: line, tone: diffLineTone(line)});
		else if (item.kind === 'run') lines.push({text: `  $ ${line}`, tone: 'plain'});
		else lines.push({text: `  ${line}`, tone: 'muted'});
	}
	return lines;
}

/** Enter on a preview confirm applies: the operator has just read what will change. */
export const confirmDefault = true;

/** A timed confirm (prompt.deadline, like iptables-apply) defaults to no: enter reverts. */
export function promptConfirmDefault(prompt: {deadline?: number}): boolean {
	return prompt.deadline === undefined ? confirmDefault : false;
}

/** "answer within 30 s (by 14:02:07 UTC); no answer means no" for a timed confirm. */
export function deadlineText(deadline: number, now: number): string {
	const seconds = Math.max(0, Math.ceil((deadline - now) / 1000));
	return `answer within ${seconds} s (by ${new Date(deadline).toISOString().slice(11, 19)} UTC); no answer means no`;
}

/** "(Y/n)", "(y/N)" or "(y/n)" when there is no default. */
export function yesNoHint(defaultValue: boolean | undefined): string {
	if (defaultValue === true) return '(Y/n)';
	if (defaultValue === false) return '(y/N)';
	return '(y/n)';
}

/** "2 of 3" for a question prompt; empty when the stage has a single question. */
export function questionCounter(index: number, total: number): string {
	return total > 1 ? `${index + 1} of ${total}` : '';
}

/** How a default is shown next to a text question (passwords never show theirs). */
export function defaultHint(question: Question): string {
	const value = question.default;
	if (value === undefined || question.kind === 'password') return '';
	return `(${formatAnswer(value)})`;
}

export function formatAnswer(value: AnswerValue): string {
	if (Array.isArray(value)) return value.join(', ');
	if (typeof value === 'boolean') return value ? 'yes' : 'no';
	return value;
}

export function outcomeLabel(exitCode: number): string {
	switch (exitCode) {
		case 0:
			return 'Done';
		case 1:
			return 'Finished with failed checks';
		case 2:
			return 'Stopped: bad input';
		case 3:
			return 'Aborted';
		default:
			return `Exited with code ${exitCode}`;
	}
}

/** "3 stages: 1 done, 1 unchanged, 1 skipped" (phases in the order stages reach them). */
export function stageTally(stages: StageView[]): string {
	const counts = new Map<string, number>();
	for (const stage of stages) counts.set(phaseLabel(stage.phase), (counts.get(phaseLabel(stage.phase)) ?? 0) + 1);
	const parts = [...counts].map(([label, count]) => `${count} ${label}`);
	return `${stages.length} stage${stages.length === 1 ? '' : 's'}: ${parts.join(', ')}`;
}

export function outcomeTone(exitCode: number): Tone {
	if (exitCode === 0) return 'success';
	if (exitCode === 3) return 'warn';
	return 'error';
}

export function logTone(level: 'info' | 'warn' | 'error' | 'success'): Tone {
	return level === 'info' ? 'plain' : level;
}

export function logPrefix(level: 'info' | 'warn' | 'error' | 'success'): string {
	switch (level) {
		case 'warn':
			return '! ';
		case 'error':
			return '✖ ';
		case 'success':
			return '✔ ';
		default:
			return '  ';
	}
}

/**
 * Whether we run under CI, by the rule Ink itself uses (is-in-ci): CI or
 * CONTINUOUS_INTEGRATION set to anything but "0" or "false", even empty. Under CI Ink draws
 * only the final frame, so the CLI picks the plain frontend there.
 */
export function isCi(env: NodeJS.ProcessEnv): boolean {
	const on = (key: string) => {
		const value = env[key];
		return value !== undefined && value !== '0' && value !== 'false';
	};
	return on('CI') || on('CONTINUOUS_INTEGRATION');
}

export const spinnerFrames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'] as const;

/** A node path as it is on this machine's disk: under --root when one is given. */
export function onDisk(nodePath: string, root: string | undefined): string {
	if (root === undefined || root === '/' || root === '') return nodePath;
	return `${root.replace(/\/+$/, '')}${nodePath}`;
}

/** Quote an argument for a shell command the operator copies (only when it needs it). */
function shellWord(word: string): string {
	return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

export type ReceiptContext = {
	command: string;
	dryRun: boolean;
	exitCode: number;
	/** --root, when the run worked on a copied tree. */
	root?: string;
};

/** The exact command that undoes a run (with --root when the run had one). */
export function undoCommand(runId: string, root: string | undefined): string {
	return ['etcd-harden', 'undo', runId, ...(root === undefined ? [] : ['--root', root])].map(shellWord).join(' ');
}

/** What the operator should do next, after this run. */
export function nextSteps(receipt: Receipt, context: ReceiptContext): string[] {
	const changed = receipt.runId !== undefined;
	const steps: string[] = [];
	if (context.exitCode === 2) return ['Fix the problem named above and run the same command again (nothing was changed).'];
	if (context.exitCode === 3 && !changed) return ['Nothing was changed; run again when ready.'];
	if (context.dryRun) steps.push(`Rerun without --dry-run to apply the changes shown${context.root === undefined ? '' : ` (to ${context.root})`}.`);
	if (context.root !== undefined && !context.dryRun && context.command !== 'undo') {
		steps.push(`Only the tree under ${context.root} was changed. On the control-plane node itself, run: sudo etcd-harden${context.command === 'harden' ? '' : ` ${context.command}`}`);
	}
	const left = receipt.skipped.filter(skip => skip.reason === 'declined' || skip.reason === 'depends-on-declined');
	if (left.length > 0) steps.push(`Rerun to apply what was skipped: etcd-harden --only ${left.map(skip => skip.stage).join(',')}`);
	if (changed || context.command === 'undo') steps.push(`Check the node: etcd-harden status${context.root === undefined ? '' : ` --root ${shellWord(context.root)}`}`);
	if (changed && context.command === 'harden' && context.root === undefined) {
		steps.push('On a cluster with more control-plane nodes: run etcd-harden on each of them (they must all be able to read the same key).');
	}
	return steps;
}

const skipWords: Record<SkipReason, string> = {
	'not-selected': 'not selected',
	'left-out': 'left out',
	declined: 'declined',
	'depends-on-declined': 'builds on a declined stage',
	'not-reached': 'not reached',
};

/**
 * The receipt every frontend ends with: what changed (files, other work), where the run
 * directory and backups are (as on this machine's disk, so also under --root), what to copy
 * off the node now, the exact undo command, what was skipped and why, and the next step.
 */
export function receiptLines(receipt: Receipt, context: ReceiptContext): Styled[] {
	const lines: Styled[] = [];
	const disk = (p: string) => onDisk(p, context.root);
	lines.push({text: 'Receipt', tone: 'active'});
	if (receipt.runId !== undefined && receipt.runDir !== undefined) {
		lines.push({text: `  run ${receipt.runId}: ${disk(receipt.runDir)}`, tone: 'plain'});
		if (receipt.undoes !== undefined) lines.push({text: `  this run undid run ${receipt.undoes}`, tone: 'plain'});
		if (receipt.files.length > 0) lines.push({text: '  files changed:', tone: 'plain'});
		for (const file of receipt.files) {
			const how = file.created ? `new${file.keyMaterial ? ', holds key material' : ''}` : `before: ${file.backup ? disk(file.backup) : 'no copy'}`;
			lines.push({text: `    ${disk(file.path)}  (${how})`, tone: 'plain'});
		}
		if (receipt.work.length > 0) lines.push({text: '  also done:', tone: 'plain'});
		for (const work of receipt.work) lines.push({text: `    ${work.stage}: ${work.summary}`, tone: 'plain'});
		for (const keep of receipt.keep) {
			lines.push({text: `  copy it off this node now: ${disk(keep.path)} (${keep.what})`, tone: 'warn'});
		}
		// No recovery copy was written (stored elsewhere): the key itself must leave the node.
		if (receipt.keep.length === 0) {
			for (const file of receipt.files.filter(f => f.keyMaterial)) {
				lines.push({text: `  copy it off this node now: ${disk(file.path)} (holds the encryption key; no recovery copy was written)`, tone: 'warn'});
			}
		}
		lines.push({text: `  undo: ${undoCommand(receipt.runId, context.root)}`, tone: 'plain'});
	} else {
		lines.push({text: context.dryRun ? '  nothing was changed (dry run)' : '  nothing was changed', tone: 'plain'});
	}
	for (const skip of receipt.skipped.filter(s => s.reason !== 'not-selected' && s.reason !== 'not-reached')) {
		lines.push({text: `  skipped ${skip.stage} (${skipWords[skip.reason]}): ${skip.text}`, tone: 'muted'});
	}
	for (const step of nextSteps(receipt, context)) lines.push({text: `  next: ${step}`, tone: 'plain'});
	return lines;
}

const ansiTone: Record<Tone, [string, string] | undefined> = {
	plain: undefined,
	muted: ['\u001B[90m', '\u001B[39m'],
	active: ['\u001B[36m', '\u001B[39m'],
	success: ['\u001B[32m', '\u001B[39m'],
	warn: ['\u001B[33m', '\u001B[39m'],
	error: ['\u001B[31m', '\u001B[39m'],
	add: ['\u001B[32m', '\u001B[39m'],
	remove: ['\u001B[31m', '\u001B[39m'],
	hunk: ['\u001B[36m', '\u001B[39m'],
	meta: ['\u001B[90m', '\u001B[39m'],
};

/** A styled line as text, in ANSI colour when `color` (a TTY without NO_COLOR). */
export function paint(line: Styled, color: boolean): string {
	const codes = color ? ansiTone[line.tone] : undefined;
	return codes ? `${codes[0]}${line.text}${codes[1]}` : line.text;
}

/** Colour on this stream: a TTY, and NO_COLOR unset or empty (https://no-color.org). */
export function colorOn(stream: {isTTY?: boolean}, env: NodeJS.ProcessEnv): boolean {
	return Boolean(stream.isTTY) && (env['NO_COLOR'] === undefined || env['NO_COLOR'] === '');
}

/** "+12 -3" counts of a unified diff body (file headers not counted). */
export function diffCounts(body: string): {added: number; removed: number} {
	let added = 0;
	let removed = 0;
	for (const line of body.split('\n')) {
		if (line.startsWith('+++') || line.startsWith('---')) continue;
		if (line.startsWith('+')) added++;
		else if (line.startsWith('-')) removed++;
	}
	return {added, removed};
}

/**
 * The change a preview asks about, in one line: "2 files (+12 -3), 1 command, 2 steps".
 * Shown with the confirm prompt, so what is decided stays in view whatever the terminal's size.
 */
export function changeSummary(preview: PreviewItem[]): string {
	const files = preview.filter(item => item.kind === 'write-file');
	const runs = preview.filter(item => item.kind === 'run').length;
	const tasks = preview.filter(item => item.kind === 'task').length;
	const parts: string[] = [];
	if (files.length > 0) {
		const counts = files.map(item => diffCounts(item.body)).reduce((a, b) => ({added: a.added + b.added, removed: a.removed + b.removed}), {added: 0, removed: 0});
		parts.push(`${files.length} file${files.length === 1 ? '' : 's'} (+${counts.added} -${counts.removed})`);
	}
	if (runs > 0) parts.push(`${runs} command${runs === 1 ? '' : 's'}`);
	if (tasks > 0) parts.push(`${tasks} step${tasks === 1 ? '' : 's'}`);
	return parts.length === 0 ? 'no changes' : parts.join(', ');
}

/** Every line of a preview, as the pager and the feed show them. */
export function previewText(items: PreviewItem[]): Styled[] {
	return items.flatMap(item => previewLines(item));
}

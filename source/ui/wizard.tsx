/**
 * The Ink wizard: renders EngineState snapshots and sends answers through the
 * EngineControl. It decides nothing about what changes on the node.
 *
 * Two parts, as in the best terminal tools: the feed (log lines, previews, answers and
 * finished stages) goes once into <Static> and scrolls into the terminal's history; the live
 * frame below it is kept within `frameBudget(rows)` lines at any terminal size, because Ink
 * clears the whole screen, scrollback included, once the frame reaches the terminal's height.
 * Every line of the frame is wrapped here (at word boundaries) and rendered as one row, so
 * the budget is exact: the stage list compacts to one line, optional text (explanations,
 * notes) gives way first, and a waiting preview shows a one-line change summary with its
 * prompt; `d` pages through the whole diff in the frame.
 */
import React, {useCallback, useContext, useEffect, useRef, useState, useSyncExternalStore} from 'react';
import {Box, Static, Text, useApp, useStdin, useStdout} from 'ink';
import type {EngineControl, EngineState, PreviewItem, Prompt, StageView} from '../engine/state.js';
import type {AnswerValue, Check} from '../engine/contract.js';
import {advanceFeed, emptyFeed, type Feed, type FeedItem} from './feed.js';
import {
	changeSummary,
	checkLines,
	confirmDefault,
	deadlineText,
	promptConfirmDefault,
	isBusy,
	isFinished,
	logPrefix,
	logTone,
	outcomeLabel,
	outcomeTone,
	phaseLabel,
	phaseSymbol,
	phaseTone,
	previewLines,
	previewText,
	progressFigures,
	stageTally,
	questionCounter,
	spinnerFrames,
	tailLines,
	yesNoHint,
	type Styled,
	type Tone,
} from './format.js';
import {inputHeight, QuestionInput, YesNoInput as YesNoKeys, type KeyHandler} from './inputs.js';
import {parseKeys, type KeyPress} from './keys.js';
import {truncate, wrapText} from './layout.js';

const toneColor: Record<Tone, string | undefined> = {
	plain: undefined,
	muted: 'gray',
	active: 'cyan',
	success: 'green',
	warn: 'yellow',
	error: 'red',
	add: 'green',
	remove: 'red',
	hunk: 'cyan',
	meta: 'gray',
};

const ColumnsContext = React.createContext(80);
const ColorContext = React.createContext(true);

/** A finished line: wrapped at word boundaries, never cut (a diff or a check must be read whole). */
function Line({line, indent = ''}: {line: Styled; indent?: string}) {
	const color = useContext(ColorContext);
	const columns = useContext(ColumnsContext);
	return (
		<>
			{wrapText(indent + line.text, columns).map((text, i) => (
				<Text key={i} color={color ? toneColor[line.tone] : undefined} wrap="truncate-end">
					{text === '' ? ' ' : text}
				</Text>
			))}
		</>
	);
}

function Checks({checks}: {checks: Check[]}) {
	return (
		<Box flexDirection="column">
			{checks.flatMap((check, i) => checkLines(check).map((line, j) => <Line key={`${i}-${j}`} line={line} indent="  " />))}
		</Box>
	);
}

function FinishedStage({stage}: {stage: StageView}) {
	const skip = stage.phase === 'skipped' && stage.skip && stage.skip.reason !== 'not-selected' ? `: ${stage.skip.text}` : '';
	return (
		<Box flexDirection="column">
			<Line line={{text: `${phaseSymbol(stage.phase)} ${stage.title}: ${phaseLabel(stage.phase)}${skip}`, tone: phaseTone(stage.phase)}} />
			{stage.error ? <Line line={{text: stage.error, tone: 'error'}} indent="  " /> : null}
			{stage.phase === 'previewed' ? stage.notes.map((note, i) => <Line key={`n${i}`} line={{text: `• ${note}`, tone: 'muted'}} indent="  " />) : null}
			{stage.warnings.map((w, i) => (
				<Line key={`w${i}`} line={{text: `! ${w}`, tone: 'warn'}} indent="  " />
			))}
			{stage.phase === 'previewed' && stage.preview ? (
				<Box flexDirection="column">
					{stage.preview.flatMap((p, i) => previewLines(p).map((line, j) => <Line key={`${i}-${j}`} line={line} indent="  " />))}
				</Box>
			) : null}
			{stage.checks.length > 0 ? <Checks checks={stage.checks} /> : null}
		</Box>
	);
}

function FeedEntry({item}: {item: FeedItem}) {
	switch (item.kind) {
		case 'log':
			return <Line line={{text: logPrefix(item.line.level) + item.line.text, tone: logTone(item.line.level)}} />;
		case 'preview':
			return (
				<Box flexDirection="column">
					<Line line={{text: `Changes planned by ${item.stageTitle}:`, tone: 'active'}} />
					{item.items.length === 0 ? <Line line={{text: '(none)', tone: 'muted'}} /> : null}
					{item.items.flatMap((p, i) => previewLines(p).map((line, j) => <Line key={`${i}-${j}`} line={line} />))}
				</Box>
			);
		case 'answers':
			return (
				<Box flexDirection="column">
					{item.answers.map((answer, i) => (
						<Line key={i} line={{text: `✔ ${answer.question} ${answer.value}`, tone: 'success'}} />
					))}
				</Box>
			);
		case 'stage':
			return <FinishedStage stage={item.stage} />;
	}
}

/** Lines the live frame may take at most: below the terminal's height, and below 20 so that a
 * resize down to 60x20 never meets a frame that fills the screen (Ink then clears the screen,
 * scrollback included, before this component could render for the new size). */
export const LIVE_MAX_ROWS = 19;

/** The live frame's height budget for a terminal of `rows`. */
export function frameBudget(rows: number): number {
	return Math.max(4, Math.min(rows - 1, LIVE_MAX_ROWS));
}

/** Pre-wrapped lines the frame can count, each rendered as exactly one row. */
type FrameLine = Styled & {bold?: boolean; key: string};

function FrameLines({lines}: {lines: FrameLine[]}) {
	const color = useContext(ColorContext);
	return (
		<>
			{lines.map(line => (
				<Text key={line.key} color={color ? toneColor[line.tone] : undefined} bold={line.bold} dimColor={line.tone === 'muted' && !color} wrap="truncate-end">
					{line.text === '' ? ' ' : line.text}
				</Text>
			))}
		</>
	);
}

function wrapped(text: string, columns: number, tone: Tone, key: string, options: {bold?: boolean; indent?: string} = {}): FrameLine[] {
	const indent = options.indent ?? '';
	return wrapText(text, columns - indent.length).map((line, i) => ({text: indent + line, tone, key: `${key}-${i}`, ...(options.bold ? {bold: true} : {})}));
}

function stageListLines(state: EngineState, spinner: string | undefined, columns: number, compact: boolean): FrameLine[] {
	if (compact) {
		const current = state.stages[state.current];
		const done = state.stages.filter(stage => isFinished(stage.phase)).length;
		const text = current && !state.result
			? `stage ${state.current + 1}/${state.stages.length}: ${current.title} (${phaseLabel(current.phase)}) · ${done} finished`
			: stageTally(state.stages);
		return [{text: truncate(text, columns), tone: 'active', key: 'stages'}];
	}
	return state.stages.map((stage, i) => {
		const current = i === state.current && !state.result;
		const symbol = current && spinner && isBusy(stage.phase) ? spinner : phaseSymbol(stage.phase);
		const label = stage.phase === 'skipped' && stage.skip && stage.skip.reason !== 'not-selected' ? `skipped: ${stage.skip.text}` : phaseLabel(stage.phase);
		return {
			text: truncate(`${current ? '❯ ' : '  '}${symbol} ${stage.title}  ${label}`, columns),
			tone: current ? 'active' : phaseTone(stage.phase),
			key: `stage-${stage.id}`,
			...(current ? {bold: true} : {}),
		};
	});
}

function keyHints(prompt: Prompt | undefined, pagerOpen: boolean): string {
	if (pagerOpen) return '↑/↓ space/b g/G scroll · y apply · n skip · q close';
	if (!prompt) return 'q quit · ctrl-c abort';
	if (prompt.type === 'confirm' && prompt.deadline !== undefined) return 'y keep · n undo now · enter no · ctrl-c abort';
	if (prompt.type === 'confirm') return `y apply · n skip · enter ${yesNoHint(confirmDefault)} · d show the diff · q quit`;
	const back = prompt.index > 0 ? ' · esc back' : '';
	switch (prompt.question.kind) {
		case 'select':
			return `↑/↓ move · enter choose${back} · q quit`;
		case 'multiselect':
			return `↑/↓ move · space toggle · a all · enter done${back} · q quit`;
		case 'confirm':
			return `y yes · n no${back} · q quit`;
		default:
			return `enter submit · ←/→ move · ctrl-u clear${back} · ctrl-c quit`;
	}
}

/** The preview's lines, wrapped to the terminal, for the pager. */
function pagerLines(preview: PreviewItem[], columns: number): FrameLine[] {
	return previewText(preview).flatMap((line, i) => wrapText(line.text, columns).map((text, j) => ({text, tone: line.tone, key: `p${i}-${j}`})));
}

function useTerminalSize(fixedRows: number | undefined, fixedColumns: number | undefined): {rows: number; columns: number} {
	const {stdout} = useStdout();
	const read = useCallback(
		() => ({rows: fixedRows ?? (stdout.rows || 24), columns: fixedColumns ?? (stdout.columns || 80)}),
		[stdout, fixedRows, fixedColumns],
	);
	const [size, setSize] = useState(read);
	useEffect(() => {
		const onResize = () => setSize(read());
		onResize();
		stdout.on('resize', onResize);
		return () => {
			stdout.off('resize', onResize);
		};
	}, [stdout, read]);
	return size;
}

function useSpinner(enabled: boolean): string | undefined {
	const [frame, setFrame] = useState(0);
	useEffect(() => {
		if (!enabled) return;
		const timer = setInterval(() => setFrame(f => (f + 1) % spinnerFrames.length), 80);
		return () => clearInterval(timer);
	}, [enabled]);
	return enabled ? spinnerFrames[frame] : undefined;
}

export type WizardProps = {
	control: EngineControl;
	/** Spinner animation; off for tests, CI and non-TTY output. */
	animate?: boolean;
	/**
	 * Also render result.summary under the outcome. Off by default: the CLI prints the
	 * summary on stdout itself, and the same lines twice on one terminal read badly.
	 */
	summaryLines?: boolean;
	/** Colours (off with NO_COLOR). */
	color?: boolean;
	/** --root: named in the header. */
	root?: string;
	/** Terminal size for tests (default: the output stream's, updated on resize). */
	rows?: number;
	columns?: number;
};

export function Wizard({control, animate = false, summaryLines = false, color = true, root, rows: fixedRows, columns: fixedColumns}: WizardProps) {
	const state = useSyncExternalStore(control.subscribe, control.getState, control.getState);
	const {exit} = useApp();
	const {isRawModeSupported, setRawMode, internal_eventEmitter: inputEvents} = useStdin();
	const {rows, columns: terminalColumns} = useTerminalSize(fixedRows, fixedColumns);
	const columns = Math.max(20, terminalColumns);
	const [aborting, setAborting] = useState(false);
	const [pager, setPager] = useState<{top: number} | undefined>(undefined);
	const [editedSince, setEditedSince] = useState<Prompt | undefined>(undefined);

	const feedRef = useRef<Feed>(emptyFeed);
	// Answers given in this session, so going back with esc starts from them.
	const remembered = useRef(new Map<string, AnswerValue>());
	feedRef.current = advanceFeed(feedRef.current, state);

	const prompt = state.result ? undefined : state.prompt;
	// Keys go to the active input; keys that arrive while none is (the engine is working
	// towards the next prompt) wait here and go to the next one, in order.
	const handler = useRef<KeyHandler | undefined>(undefined);
	const queue = useRef<KeyPress[]>([]);
	const stateRef = useRef({prompt, aborting, pager, textEntry: false});
	const textEntry = prompt?.type === 'question' && (prompt.question.kind === 'text' || prompt.question.kind === 'password');
	stateRef.current = {prompt, aborting, pager, textEntry};

	const abort = useCallback(() => {
		setAborting(true);
		control.abort();
	}, [control]);

	const previewLength = prompt?.type === 'confirm' ? pagerLines(prompt.preview, columns).length : 0;
	const budget = frameBudget(rows);
	// The pager's page: the frame less its header, position line, prompt line and key hints.
	const pagerRows = Math.max(1, budget - 4);

	const dispatch = useCallback(
		(key: KeyPress): void => {
			const current = stateRef.current;
			if (key.name === 'ctrl' && key.char === 'c') {
				if (!current.aborting) abort();
				return;
			}
			if (current.aborting) return;
			const confirmPrompt = current.prompt?.type === 'confirm' && current.prompt.deadline === undefined ? current.prompt : undefined;
			if (current.pager && confirmPrompt) {
				const page = pagerRows;
				const last = Math.max(0, previewLength - page);
				const move = (top: number) => setPager({top: Math.max(0, Math.min(last, top))});
				const char = key.name === 'char' ? key.char : undefined;
				if (key.name === 'escape' || char === 'q' || char === 'd') return setPager(undefined);
				if (key.name === 'down' || char === 'j' || key.name === 'return') return move(current.pager.top + 1);
				if (key.name === 'up' || char === 'k') return move(current.pager.top - 1);
				if (key.name === 'pagedown' || char === ' ' || char === 'f') return move(current.pager.top + page);
				if (key.name === 'pageup' || char === 'b') return move(current.pager.top - page);
				if (key.name === 'home' || char === 'g') return move(0);
				if (key.name === 'end' || char === 'G') return move(last);
			}
			if (handler.current) {
				if (handler.current(key)) return;
				if (key.name === 'escape') {
					if (current.prompt) control.back();
					return;
				}
				if (key.name === 'char' && key.char === 'd' && confirmPrompt) {
					setPager({top: 0});
					return;
				}
				if (key.name === 'char' && key.char === 'q' && !key.pasted && !current.textEntry) abort();
				return;
			}
			// No input is active. With no prompt (the engine is working) q quits now; anything else,
			// and everything while a prompt is being drawn, waits for the prompt's input, in order.
			if (key.name === 'char' && key.char === 'q' && !key.pasted && !current.prompt) {
				abort();
				return;
			}
			if (key.name !== 'escape' && key.name !== 'unknown') queue.current.push(key);
		},
		[abort, control, pagerRows, previewLength],
	);

	const register = useCallback(
		(next: KeyHandler | undefined) => {
			handler.current = next;
			if (!next) return;
			// Keys typed ahead act on this prompt, in order, until one of them submits it.
			while (queue.current.length > 0 && handler.current === next) {
				const key = queue.current.shift()!;
				dispatch(key);
			}
		},
		[dispatch],
	);

	const inputActive = Boolean(isRawModeSupported) && !state.result;
	useEffect(() => {
		if (!inputActive) return;
		setRawMode(true);
		const onInput = (event: string) => {
			for (const key of parseKeys(event)) dispatch(key);
		};
		inputEvents.on('input', onInput);
		return () => {
			inputEvents.off('input', onInput);
			setRawMode(false);
		};
	}, [inputActive, inputEvents, setRawMode, dispatch]);

	useEffect(() => {
		if (!state.result) return;
		// Exit on the next turn: <Static> must first commit that its items were written,
		// or the final render on unmount prints them a second time.
		const timer = setTimeout(() => exit(), 0);
		return () => clearTimeout(timer);
	}, [state.result, exit]);

	// A new prompt closes the pager.
	const promptSeq = useRef({prompt: undefined as Prompt | undefined, seq: 0});
	if (promptSeq.current.prompt !== prompt) promptSeq.current = {prompt, seq: promptSeq.current.seq + 1};
	useEffect(() => {
		setPager(undefined);
	}, [prompt]);

	const current = state.stages[state.current];
	const busy = Boolean(animate && current && isBusy(current.phase) && !prompt && !state.result);
	const spinner = useSpinner(busy);

	const onAnswer = (value: AnswerValue) => {
		if (!prompt) return;
		handler.current = undefined;
		if (prompt.type === 'question' && prompt.question.kind !== 'password') {
			remembered.current.set(`${prompt.stageId}/${prompt.question.id}`, value);
		}
		control.answer(value);
	};
	const onConfirm = (yes: boolean) => {
		if (!prompt) return;
		handler.current = undefined;
		control.confirm(yes);
	};

	// ---- the frame, within `budget` lines ----
	const header: FrameLine = {
		text: truncate(`etcd-harden ${state.command}${root !== undefined ? ` --root ${root}` : ''}${state.dryRun ? ' (dry run: nothing will be changed)' : ''}`, columns),
		tone: state.dryRun ? 'warn' : 'plain',
		bold: true,
		key: 'header',
	};
	const hints: FrameLine[] = !state.result && !aborting ? [{text: truncate(keyHints(prompt, Boolean(pager)), columns), tone: 'muted', key: 'hints'}] : [];
	const tail: FrameLine[] = [];
	if (aborting && !state.result) tail.push({text: "Aborting: undoing the current stage's changes…", tone: 'warn', key: 'aborting'});
	if (state.result) {
		tail.push({text: `${outcomeLabel(state.result.exitCode)} (exit ${state.result.exitCode})`, tone: outcomeTone(state.result.exitCode), bold: true, key: 'outcome'});
		tail.push(...wrapped(stageTally(state.stages), columns, 'plain', 'tally'));
	}
	const summary: FrameLine[] = state.result && summaryLines ? state.result.summary.flatMap((line, i) => wrapped(line, columns, 'plain', `sum${i}`)) : [];
	const progress: FrameLine[] = [];
	if (state.progress && !state.result) {
		const figures = progressFigures(state.progress);
		progress.push({text: truncate(`${state.progress.label}${figures ? `  ${figures}` : ''}`, columns), tone: 'plain', key: 'progress'});
		tailLines(state.progress.tail).forEach((line, i) => progress.push({text: truncate(`  ${line}`, columns), tone: 'muted', key: `tail${i}`}));
	}

	let promptTop: FrameLine[] = [];
	let promptBottom: FrameLine[] = [];
	let inputLines = 0;
	let promptHelp: FrameLine[] = [];
	const showError = prompt?.type === 'question' && prompt.error && editedSince !== prompt ? prompt.error : undefined;
	if (prompt && !aborting) {
		if (prompt.type === 'confirm') {
			if (prompt.deadline === undefined) {
				const title = state.stages.find(s => s.id === prompt.stageId)?.title ?? prompt.stageId;
				promptTop = wrapped(`Changes by ${title}: ${changeSummary(prompt.preview)} (the diff is above; d shows it here, ${previewLength} lines)`, columns, 'active', 'summary');
			} else {
				promptBottom = wrapped(deadlineText(prompt.deadline, Date.now()), columns, 'warn', 'deadline');
			}
			promptTop = [...promptTop, ...wrapped(`${prompt.message} ${yesNoHint(promptConfirmDefault(prompt))}`, columns, 'plain', 'confirm', {bold: true})];
		} else {
			const counter = questionCounter(prompt.index, prompt.total);
			promptTop = wrapped(`${prompt.question.message}${counter ? `  (${counter})` : ''}`, columns, 'plain', 'q', {bold: true});
			promptHelp = prompt.question.help ? wrapped(prompt.question.help, columns, 'muted', 'help') : [];
			if (showError) promptBottom = wrapped(`✖ ${showError}`, columns, 'error', 'err');
		}
	}
	const fixed = 1 + hints.length + tail.length + progress.length + promptTop.length + promptBottom.length;
	let room = budget - fixed;
	// Lists get what is left after the essentials, at least 3 lines.
	if (prompt?.type === 'question') {
		const wanted = inputHeight(prompt.question, 100);
		inputLines = Math.max(Math.min(3, wanted), Math.min(wanted, room - 1));
		room -= inputLines;
	}
	if (pager && prompt?.type === 'confirm') room = 0;
	const fullList = stageListLines(state, spinner, columns, false);
	const stageList = fullList.length <= room - 2 || (state.result && fullList.length <= room) ? fullList : stageListLines(state, spinner, columns, true);
	room -= stageList.length;
	// Help, then the stage's title, warnings, notes and explanation, as far as they fit.
	const optional: FrameLine[] = [];
	const take = (lines: FrameLine[]) => {
		if (lines.length === 0 || room <= 0) return [];
		const fits = lines.slice(0, room);
		room -= fits.length;
		// Text that gives way says so: its last shown line ends with "…".
		const last = fits.at(-1);
		if (fits.length < lines.length && last) fits[fits.length - 1] = {...last, text: truncate(`${last.text} …`, columns)};
		return fits;
	};
	const help = take(promptHelp);
	// The summary lines after a run, as far as they fit (the CLI prints them in full on stdout).
	let summaryShown = take(summary);
	if (summaryShown.length < summary.length && summaryShown.length > 0) {
		summaryShown = [...summaryShown.slice(0, -1), {text: `… ${summary.length - summaryShown.length + 1} more lines`, tone: 'muted', key: 'sum-more'}];
	}
	const showStage = current && !state.result && prompt?.type === 'question';
	if (showStage) {
		const title = take([{text: truncate(current.title, columns), tone: 'active', bold: true, key: 'title'}]);
		const warnings = take(current.warnings.flatMap((w, i) => wrapped(`! ${w}`, columns, 'warn', `w${i}`)));
		const explain = take(current.explain ? wrapped(current.explain, columns, 'plain', 'explain') : []);
		const notes = take(current.notes.flatMap((n, i) => wrapped(`• ${n}`, columns, 'muted', `n${i}`)));
		optional.push(...title, ...explain, ...notes, ...warnings);
	}
	const pagerView = pager && prompt?.type === 'confirm' ? pagerLines(prompt.preview, columns) : undefined;

	return (
		<ColorContext.Provider value={color}>
			<ColumnsContext.Provider value={columns}>
			<Static items={feedRef.current.items}>{item => <FeedEntry key={item.key} item={item} />}</Static>
			<Box flexDirection="column">
				<FrameLines lines={[header]} />
				{pagerView ? (
					<>
						<FrameLines lines={pagerView.slice(pager!.top, pager!.top + pagerRows)} />
						<FrameLines
							lines={[{text: truncate(`lines ${pager!.top + 1}-${Math.min(pagerView.length, pager!.top + pagerRows)} of ${pagerView.length}`, columns), tone: 'muted', key: 'pos'}]}
						/>
						<FrameLines lines={[{text: truncate(`${prompt!.type === 'confirm' ? prompt!.message : ''} ${yesNoHint(confirmDefault)}`, columns), tone: 'plain', bold: true, key: 'pager-prompt'}]} />
						<ConfirmKeys prompt={prompt} register={register} onConfirm={onConfirm} />
					</>
				) : (
					<>
						<FrameLines lines={stageList} />
						<FrameLines lines={optional} />
						{prompt && !aborting ? (
							<>
								<FrameLines lines={promptTop} />
								<FrameLines lines={help} />
								{prompt.type === 'question' ? (
									<QuestionInput
										key={`${prompt.stageId}/${prompt.question.id}/${promptSeq.current.seq}`}
										question={prompt.question}
										initial={remembered.current.get(`${prompt.stageId}/${prompt.question.id}`)}
										register={register}
										onSubmit={onAnswer}
										onEdit={() => setEditedSince(prompt)}
										maxLines={inputLines}
										columns={columns}
									/>
								) : (
									<ConfirmKeys prompt={prompt} register={register} onConfirm={onConfirm} />
								)}
								<FrameLines lines={promptBottom} />
							</>
						) : null}
					</>
				)}
				<FrameLines lines={progress} />
				<FrameLines lines={tail} />
				<FrameLines lines={summaryShown} />
				<FrameLines lines={hints} />
			</Box>
			</ColumnsContext.Provider>
		</ColorContext.Provider>
	);
}

/** The yes/no keys of a confirm prompt (its text is in the frame lines above). */
function ConfirmKeys({prompt, register, onConfirm}: {prompt: Prompt | undefined; register: (handler: KeyHandler | undefined) => void; onConfirm: (yes: boolean) => void}) {
	if (prompt?.type !== 'confirm') return null;
	return <YesNoKeys key={`${prompt.stageId}/${prompt.message}/${prompt.deadline ?? ''}`} defaultValue={promptConfirmDefault(prompt)} register={register} onSubmit={onConfirm} silent />;
}

/**
 * The Ink wizard: renders EngineState snapshots and sends answers through the
 * EngineControl. It decides nothing about what changes on the node.
 */
import React, {useCallback, useEffect, useRef, useState, useSyncExternalStore} from 'react';
import {Box, Static, Text, useApp, useInput, useStdin} from 'ink';
import type {EngineControl, EngineState, Prompt, Progress, StageView} from '../engine/state.js';
import type {AnswerValue, Check} from '../engine/contract.js';
import {advanceFeed, emptyFeed, type Feed, type FeedItem} from './feed.js';
import {
	checkLines,
	confirmDefault,
	deadlineText,
	promptConfirmDefault,
	isBusy,
	logPrefix,
	logTone,
	outcomeLabel,
	outcomeTone,
	phaseLabel,
	phaseSymbol,
	phaseTone,
	previewLines,
	progressFigures,
	stageTally,
	questionCounter,
	spinnerFrames,
	tailLines,
	yesNoHint,
	type Styled,
	type Tone,
} from './format.js';
import {QuestionInput, YesNoInput} from './inputs.js';

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

/** A finished line: wrapped, never cut (a diff or a check must be read whole). */
function Line({line}: {line: Styled}) {
	return (
		<Text color={toneColor[line.tone]} wrap="wrap">
			{line.text}
		</Text>
	);
}

function Checks({checks}: {checks: Check[]}) {
	return (
		<Box flexDirection="column" marginLeft={2}>
			{checks.flatMap((check, i) => checkLines(check).map((line, j) => <Line key={`${i}-${j}`} line={line} />))}
		</Box>
	);
}

function FinishedStage({stage}: {stage: StageView}) {
	return (
		<Box flexDirection="column">
			<Text color={toneColor[phaseTone(stage.phase)]}>
				{phaseSymbol(stage.phase)} {stage.title}: {phaseLabel(stage.phase)}
			</Text>
			{stage.error ? (
				<Box marginLeft={2}>
					<Text color="red">{stage.error}</Text>
				</Box>
			) : null}
			{stage.phase === 'previewed'
				? stage.notes.map((note, i) => (
						<Box key={`n${i}`} marginLeft={2}>
							<Text dimColor>• {note}</Text>
						</Box>
					))
				: null}
			{stage.warnings.map((w, i) => (
				<Box key={`w${i}`} marginLeft={2}>
					<Text color="yellow">! {w}</Text>
				</Box>
			))}
			{stage.phase === 'previewed' && stage.preview ? (
				<Box flexDirection="column" marginLeft={2}>
					{stage.preview.flatMap((p, i) => previewLines(p).map((line, j) => <Line key={`${i}-${j}`} line={line} />))}
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
					<Text bold>Changes planned by {item.stageTitle}:</Text>
					{item.items.length === 0 ? <Text dimColor>(none)</Text> : null}
					{item.items.flatMap((p, i) => previewLines(p).map((line, j) => <Line key={`${i}-${j}`} line={line} />))}
				</Box>
			);
		case 'stage':
			return <FinishedStage stage={item.stage} />;
	}
}

function StageList({state, spinner}: {state: EngineState; spinner: string | undefined}) {
	return (
		<Box flexDirection="column">
			{state.stages.map((stage, i) => {
				const current = i === state.current && !state.result;
				const symbol = current && spinner && isBusy(stage.phase) ? spinner : phaseSymbol(stage.phase);
				return (
					<Text key={stage.id} color={current ? 'cyan' : toneColor[phaseTone(stage.phase)]} bold={current}>
						{current ? '❯ ' : '  '}
						{symbol} {stage.title}
						<Text dimColor>{`  ${phaseLabel(stage.phase)}`}</Text>
					</Text>
				);
			})}
		</Box>
	);
}

function ProgressView({progress}: {progress: Progress}) {
	const figures = progressFigures(progress);
	return (
		<Box flexDirection="column">
			<Text>
				{progress.label}
				{figures ? `  ${figures}` : ''}
			</Text>
			{tailLines(progress.tail).map((line, i) => (
				<Text key={i} dimColor wrap="truncate-end">
					{`  ${line}`}
				</Text>
			))}
		</Box>
	);
}

function PromptView({
	prompt,
	isActive,
	remembered,
	onAnswer,
	onConfirm,
}: {
	prompt: Prompt;
	isActive: boolean;
	remembered: ReadonlyMap<string, AnswerValue>;
	onAnswer: (value: AnswerValue) => void;
	onConfirm: (yes: boolean) => void;
}) {
	if (prompt.type === 'confirm') {
		return (
			<Box flexDirection="column">
				<Text>
					<Text bold>{prompt.message}</Text> <YesNoInput defaultValue={promptConfirmDefault(prompt)} isActive={isActive} onSubmit={onConfirm} />
				</Text>
				{prompt.deadline === undefined ? null : <Text color="yellow">{deadlineText(prompt.deadline, Date.now())}</Text>}
			</Box>
		);
	}
	const {question} = prompt;
	const counter = questionCounter(prompt.index, prompt.total);
	return (
		<Box flexDirection="column">
			<Text>
				<Text bold>{question.message}</Text>
				{counter ? <Text dimColor>{`  (${counter})`}</Text> : null}
			</Text>
			{question.help ? <Text dimColor>{question.help}</Text> : null}
			<QuestionInput
				key={`${prompt.stageId}/${question.id}`}
				question={question}
				initial={remembered.get(`${prompt.stageId}/${question.id}`)}
				isActive={isActive}
				onSubmit={onAnswer}
			/>
			{prompt.error ? <Text color="red">✖ {prompt.error}</Text> : null}
		</Box>
	);
}

function keyHints(prompt: Prompt | undefined): string {
	if (!prompt) return 'q quit · ctrl-c abort';
	if (prompt.type === 'confirm' && prompt.deadline !== undefined) return 'y keep · n undo now · enter no · q quit';
	if (prompt.type === 'confirm') return `y apply · n skip · enter ${yesNoHint(confirmDefault)} · esc back · q quit`;
	switch (prompt.question.kind) {
		case 'select':
			return '↑/↓ move · enter choose · esc back · q quit';
		case 'multiselect':
			return '↑/↓ move · space toggle · a all · enter done · esc back · q quit';
		case 'confirm':
			return 'y yes · n no · esc back · q quit';
		default:
			return 'enter submit · esc back · ctrl-c quit';
	}
}

function Summary({state, lines}: {state: EngineState; lines: boolean}) {
	const result = state.result;
	if (!result) return null;
	return (
		<Box flexDirection="column" marginTop={1}>
			<Text bold color={toneColor[outcomeTone(result.exitCode)]}>
				{outcomeLabel(result.exitCode)} (exit {result.exitCode})
			</Text>
			<Text>{stageTally(state.stages)}</Text>
			{lines
				? result.summary.map((line, i) => (
						<Text key={i}>{line}</Text>
					))
				: null}
		</Box>
	);
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
};

export function Wizard({control, animate = false, summaryLines = false}: WizardProps) {
	const state = useSyncExternalStore(control.subscribe, control.getState, control.getState);
	const {exit} = useApp();
	const {isRawModeSupported} = useStdin();
	const [aborting, setAborting] = useState(false);
	// The prompt we already answered: input stays off until the engine shows the next one.
	const [answered, setAnswered] = useState<Prompt | undefined>(undefined);

	const feedRef = useRef<Feed>(emptyFeed);
	// Answers given in this session, so going back with esc starts from them.
	const remembered = useRef(new Map<string, AnswerValue>());
	feedRef.current = advanceFeed(feedRef.current, state);

	const prompt = state.result ? undefined : state.prompt;
	const promptActive = Boolean(isRawModeSupported && prompt && prompt !== answered && !aborting);
	const textEntry = prompt?.type === 'question' && (prompt.question.kind === 'text' || prompt.question.kind === 'password');

	const abort = useCallback(() => {
		setAborting(true);
		control.abort();
	}, [control]);

	useInput(
		(input, key) => {
			if (key.ctrl && input === 'c') {
				if (!aborting) abort();
				return;
			}
			if (aborting) return;
			if (key.escape) {
				if (prompt && prompt !== answered) {
					setAnswered(prompt);
					control.back();
				}
				return;
			}
			if (input === 'q' && !key.ctrl && !key.meta && !textEntry) abort();
		},
		{isActive: Boolean(isRawModeSupported) && !state.result},
	);

	useEffect(() => {
		if (!state.result) return;
		// Exit on the next turn: <Static> must first commit that its items were written,
		// or the final render on unmount prints them a second time.
		const timer = setTimeout(() => exit(), 0);
		return () => clearTimeout(timer);
	}, [state.result, exit]);

	const current = state.stages[state.current];
	const busy = Boolean(animate && current && isBusy(current.phase) && !prompt && !state.result);
	const spinner = useSpinner(busy);

	const onAnswer = (value: AnswerValue) => {
		if (!prompt) return;
		if (prompt.type === 'question' && prompt.question.kind !== 'password') {
			remembered.current.set(`${prompt.stageId}/${prompt.question.id}`, value);
		}
		setAnswered(prompt);
		control.answer(value);
	};
	const onConfirm = (yes: boolean) => {
		if (!prompt) return;
		setAnswered(prompt);
		control.confirm(yes);
	};

	const showStage = current && !state.result;
	return (
		<>
			<Static items={feedRef.current.items}>{item => <FeedEntry key={item.key} item={item} />}</Static>
			<Box flexDirection="column">
				<Text bold>
					etcd-harden {state.command}
					{state.dryRun ? <Text color="yellow"> (dry run: nothing will be changed)</Text> : null}
				</Text>
				<StageList state={state} spinner={spinner} />
				{showStage ? (
					<Box flexDirection="column" marginTop={1}>
						<Text bold color="cyan">
							{current.title}
						</Text>
						{current.explain ? <Text>{current.explain}</Text> : null}
						{current.notes.map((note, i) => (
							<Text key={`n${i}`} dimColor>
								• {note}
							</Text>
						))}
						{current.warnings.map((warning, i) => (
							<Text key={`w${i}`} color="yellow">
								! {warning}
							</Text>
						))}
					</Box>
				) : null}
				{prompt && !aborting ? (
					<Box marginTop={1}>
						<PromptView
							prompt={prompt}
							isActive={promptActive}
							remembered={remembered.current}
							onAnswer={onAnswer}
							onConfirm={onConfirm}
						/>
					</Box>
				) : null}
				{state.progress && !state.result ? (
					<Box marginTop={1}>
						<ProgressView progress={state.progress} />
					</Box>
				) : null}
				{aborting && !state.result ? (
					<Text color="yellow">Aborting: undoing the current stage's changes…</Text>
				) : null}
				{state.result ? <Summary state={state} lines={summaryLines} /> : null}
				{!state.result && !aborting ? <Text dimColor>{keyHints(prompt)}</Text> : null}
			</Box>
		</>
	);
}

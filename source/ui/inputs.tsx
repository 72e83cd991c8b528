/**
 * The question inputs of the Ink wizard. Each one owns only its editing state (cursor,
 * typed text, ticked boxes) and hands the finished value to `onSubmit`; validation is
 * the engine's (it re-asks with `prompt.error`).
 *
 * Keys reach an input through `register` (the wizard dispatches every key, one at a time,
 * to the input that is active). The editing state lives in a ref that each key updates at
 * once, so a burst of keys (Down then Space in one read) acts on the state the previous key
 * left, not on the last rendered one. A handler returns false for a key it does not use
 * (the wizard then applies its own: esc, q, d) and, once the input has submitted, for every
 * key, so keys typed ahead wait for the next prompt.
 */
import React, {useLayoutEffect, useReducer, useRef} from 'react';
import {Box, Text} from 'ink';
import type {AnswerValue, Choice, Question} from '../engine/contract.js';
import {defaultHint, yesNoHint} from './format.js';
import type {KeyPress} from './keys.js';
import {truncate, windowAround} from './layout.js';

export type KeyHandler = (key: KeyPress) => boolean;

type InputProps = {
	question: Question;
	/** What this operator answered last time (after esc went back); else the default. */
	initial?: AnswerValue;
	/** Hands the wizard this input's key handler while mounted. */
	register: (handler: KeyHandler | undefined) => void;
	onSubmit: (value: AnswerValue) => void;
	/** The operator changed the value (old validation errors are then cleared). */
	onEdit?: () => void;
	/** At most this many lines for the choices of a list. */
	maxLines?: number;
	columns?: number;
};

/** State in a ref, re-rendered on change: each key sees what the previous key did. */
function useKeyState<S>(initial: () => S): [React.MutableRefObject<S>, () => void] {
	const ref = useRef<S | undefined>(undefined);
	if (ref.current === undefined) ref.current = initial();
	const [, bump] = useReducer((n: number) => n + 1, 0);
	return [ref as React.MutableRefObject<S>, bump];
}

/** Registers `handle` (always the latest) with the wizard while mounted. */
function useRegister(register: InputProps['register'], handle: KeyHandler): void {
	const latest = useRef(handle);
	latest.current = handle;
	// A layout effect: registered in the same task as the commit that draws the prompt, so no key
	// can arrive between the prompt on screen and its input taking keys.
	useLayoutEffect(() => {
		register(key => latest.current(key));
		return () => register(undefined);
		// eslint-disable-next-line react-hooks/exhaustive-deps
	}, []);
}

function choiceIndex(choices: Choice[], value: AnswerValue | undefined): number {
	if (typeof value !== 'string') return 0;
	const index = choices.findIndex(c => c.value === value);
	return index === -1 ? 0 : index;
}

/** The visible slice of a list, with "↑ n more" / "↓ n more" when it does not fit. */
function ListWindow({choices, cursor, maxLines, columns, mark}: {choices: Choice[]; cursor: number; maxLines: number; columns: number; mark: (choice: Choice) => string}) {
	const size = Math.max(1, choices.length > maxLines ? maxLines - 2 : maxLines);
	const {start, end} = windowAround(choices.length, cursor, size);
	const clipped = choices.length > size;
	return (
		<Box flexDirection="column">
			{clipped ? <Text dimColor>{start > 0 ? `  ↑ ${start} more` : ' '}</Text> : null}
			{choices.slice(start, end).map((choice, offset) => {
				const i = start + offset;
				const head = `${i === cursor ? '❯ ' : '  '}${mark(choice)}${choice.label}`;
				const hint = choice.hint ? `  ${choice.hint}` : '';
				const text = truncate(head + hint, columns);
				return (
					<Text key={choice.value} color={i === cursor ? 'cyan' : undefined} wrap="truncate-end">
						{text.slice(0, head.length)}
						{hint ? <Text dimColor>{text.slice(head.length)}</Text> : null}
					</Text>
				);
			})}
			{clipped ? <Text dimColor>{end < choices.length ? `  ↓ ${choices.length - end} more` : ' '}</Text> : null}
		</Box>
	);
}

export function SelectInput({question, initial, register, onSubmit, maxLines = 100, columns = 100}: InputProps) {
	const choices = question.choices ?? [];
	const [state, bump] = useKeyState(() => ({cursor: choiceIndex(choices, initial ?? question.default), done: false}));
	useRegister(register, key => {
		const s = state.current;
		if (s.done || choices.length === 0) return false;
		if (key.name === 'up') s.cursor = (s.cursor - 1 + choices.length) % choices.length;
		else if (key.name === 'down') s.cursor = (s.cursor + 1) % choices.length;
		else if (key.name === 'home') s.cursor = 0;
		else if (key.name === 'end') s.cursor = choices.length - 1;
		else if (key.name === 'return') {
			const choice = choices[s.cursor];
			if (!choice) return false;
			s.done = true;
			onSubmit(choice.value);
		} else return false;
		bump();
		return true;
	});
	return <ListWindow choices={choices} cursor={state.current.cursor} maxLines={maxLines} columns={columns} mark={() => ''} />;
}

export function MultiSelectInput({question, initial, register, onSubmit, onEdit, maxLines = 100, columns = 100}: InputProps) {
	const choices = question.choices ?? [];
	const [state, bump] = useKeyState(() => {
		const start = initial ?? question.default;
		return {cursor: 0, picked: new Set(Array.isArray(start) ? start : []), done: false};
	});
	useRegister(register, key => {
		const s = state.current;
		if (s.done || choices.length === 0) return false;
		if (key.name === 'up') s.cursor = (s.cursor - 1 + choices.length) % choices.length;
		else if (key.name === 'down') s.cursor = (s.cursor + 1) % choices.length;
		else if (key.name === 'char' && key.char === ' ') {
			const choice = choices[s.cursor];
			if (!choice) return false;
			const next = new Set(s.picked);
			if (next.has(choice.value)) next.delete(choice.value);
			else next.add(choice.value);
			s.picked = next;
			onEdit?.();
		} else if (key.name === 'char' && key.char === 'a') {
			s.picked = s.picked.size === choices.length ? new Set() : new Set(choices.map(c => c.value));
			onEdit?.();
		} else if (key.name === 'return') {
			s.done = true;
			onSubmit(choices.filter(c => s.picked.has(c.value)).map(c => c.value));
		} else return false;
		bump();
		return true;
	});
	const {picked, cursor} = state.current;
	return <ListWindow choices={choices} cursor={cursor} maxLines={maxLines} columns={columns} mark={choice => (picked.has(choice.value) ? '[x] ' : '[ ] ')} />;
}

type TextState = {value: string; caret: number; done: boolean; first?: string; mismatch?: string};

/** One editing key on a text value with a caret; false when the key is not an edit. */
export function editText(s: {value: string; caret: number}, key: KeyPress): boolean {
	const chars = [...s.value];
	const set = (next: string[], caret: number) => {
		s.value = next.join('');
		s.caret = Math.max(0, Math.min(caret, next.length));
	};
	switch (key.name) {
		case 'left':
			s.caret = Math.max(0, s.caret - 1);
			return true;
		case 'right':
			s.caret = Math.min(chars.length, s.caret + 1);
			return true;
		case 'home':
			s.caret = 0;
			return true;
		case 'end':
			s.caret = chars.length;
			return true;
		case 'backspace':
			if (s.caret > 0) set([...chars.slice(0, s.caret - 1), ...chars.slice(s.caret)], s.caret - 1);
			return true;
		case 'delete':
			set([...chars.slice(0, s.caret), ...chars.slice(s.caret + 1)], s.caret);
			return true;
		case 'ctrl':
			if (key.char === 'a') s.caret = 0;
			else if (key.char === 'e') s.caret = chars.length;
			else if (key.char === 'b') s.caret = Math.max(0, s.caret - 1);
			else if (key.char === 'f') s.caret = Math.min(chars.length, s.caret + 1);
			else if (key.char === 'u') set(chars.slice(s.caret), 0);
			else if (key.char === 'k') set(chars.slice(0, s.caret), s.caret);
			else if (key.char === 'w') {
				let start = s.caret;
				while (start > 0 && chars[start - 1] === ' ') start--;
				while (start > 0 && chars[start - 1] !== ' ') start--;
				set([...chars.slice(0, start), ...chars.slice(s.caret)], start);
			} else return false;
			return true;
		case 'char':
			set([...chars.slice(0, s.caret), key.char ?? '', ...chars.slice(s.caret)], s.caret + 1);
			return true;
		default:
			return false;
	}
}

/**
 * A text field with a visible caret (←/→, home/end, ctrl-a/e, backspace, delete, ctrl-u/k/w).
 * A password is masked, never put back on screen, and typed twice: the two must match.
 */
export function TextInput({question, initial, register, onSubmit, onEdit, columns = 100}: InputProps) {
	const masked = question.kind === 'password';
	const [state, bump] = useKeyState<TextState>(() => {
		const value = !masked && typeof initial === 'string' ? initial : '';
		return {value, caret: [...value].length, done: false};
	});
	useRegister(register, key => {
		const s = state.current;
		if (s.done) return false;
		if (key.name === 'return') {
			const value = s.value === '' && typeof question.default === 'string' && !masked ? question.default : s.value;
			if (masked && s.first === undefined) {
				// Check the first entry before asking for it again (a too-short passphrase twice is no fun).
				const problem = question.validate?.(value, {});
				if (problem) {
					s.mismatch = problem;
				} else {
					s.first = value;
					s.mismatch = undefined;
				}
				s.value = '';
				s.caret = 0;
				bump();
				return true;
			}
			if (masked && s.first !== value) {
				s.first = undefined;
				s.value = '';
				s.caret = 0;
				s.mismatch = 'The two entries differ: type the passphrase again.';
				bump();
				return true;
			}
			s.done = true;
			onSubmit(value);
			bump();
			return true;
		}
		if (!editText(s, key)) return false;
		if (s.mismatch && s.value !== '') s.mismatch = undefined;
		onEdit?.();
		bump();
		return true;
	});
	const {value, caret, first, mismatch} = state.current;
	const shown = masked ? '*'.repeat([...value].length) : value;
	const chars = [...shown];
	// Keep the caret in view on a narrow terminal: a window of the text around it.
	const room = Math.max(8, columns - 4);
	const start = Math.max(0, Math.min(caret - Math.floor(room * 0.7), chars.length - room + 1));
	const before = chars.slice(Math.max(0, start), caret).join('');
	const at = chars[caret] ?? ' ';
	const after = chars.slice(caret + 1, start + room).join('');
	const hint = defaultHint(question);
	return (
		<Box flexDirection="column">
			{masked && first !== undefined ? <Text dimColor>Type it again to confirm.</Text> : null}
			<Text wrap="truncate-end">
				<Text color="cyan">{masked && first !== undefined ? '» ' : '› '}</Text>
				{before}
				<Text inverse>{at}</Text>
				{after}
				{value === '' && hint ? <Text dimColor>{` ${hint}`}</Text> : null}
			</Text>
			{mismatch ? <Text color="red">✖ {mismatch}</Text> : null}
		</Box>
	);
}

export function YesNoInput({defaultValue, register, onSubmit, silent = false}: {defaultValue: boolean | undefined; register: InputProps['register']; onSubmit: (yes: boolean) => void; silent?: boolean}) {
	const [state] = useKeyState(() => ({done: false}));
	useRegister(register, key => {
		if (state.current.done) return false;
		const lower = key.name === 'char' ? key.char?.toLowerCase() : undefined;
		let answer: boolean | undefined;
		if (lower === 'y') answer = true;
		else if (lower === 'n') answer = false;
		else if (key.name === 'return') answer = defaultValue;
		if (answer === undefined) return false;
		state.current.done = true;
		onSubmit(answer);
		return true;
	});
	// Silent: the caller shows the (Y/n) in its own line (the confirm prompt of a preview).
	return silent ? null : <Text color="cyan">{yesNoHint(defaultValue)}</Text>;
}

/** Lines a question's input takes (for the frame's height budget). */
export function inputHeight(question: Question, maxLines: number): number {
	switch (question.kind) {
		case 'select':
		case 'multiselect':
			return Math.min(question.choices?.length ?? 0, maxLines);
		case 'confirm':
			return 1;
		case 'password':
			return 3;
		default:
			return 2;
	}
}

export function QuestionInput(props: InputProps) {
	const {question} = props;
	switch (question.kind) {
		case 'select':
			return <SelectInput {...props} />;
		case 'multiselect':
			return <MultiSelectInput {...props} />;
		case 'confirm':
			return (
				<YesNoInput
					defaultValue={typeof question.default === 'boolean' ? question.default : undefined}
					register={props.register}
					onSubmit={props.onSubmit}
				/>
			);
		default:
			return <TextInput {...props} />;
	}
}

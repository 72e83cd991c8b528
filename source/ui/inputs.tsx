/**
 * The question inputs of the Ink wizard. Each one owns only its editing state (cursor,
 * typed text, ticked boxes) and hands the finished value to `onSubmit`; validation is
 * the engine's (it re-asks with `prompt.error`).
 */
import React, {useState} from 'react';
import {Box, Text, useInput} from 'ink';
import type {AnswerValue, Choice, Question} from '../engine/contract.js';
import {defaultHint, yesNoHint} from './format.js';

type InputProps = {
	question: Question;
	/** What this operator answered last time (after esc went back); else the default. */
	initial?: AnswerValue;
	isActive: boolean;
	onSubmit: (value: AnswerValue) => void;
};

function choiceIndex(choices: Choice[], value: AnswerValue | undefined): number {
	if (typeof value !== 'string') return 0;
	const index = choices.findIndex(c => c.value === value);
	return index === -1 ? 0 : index;
}

export function SelectInput({question, initial, isActive, onSubmit}: InputProps) {
	const choices = question.choices ?? [];
	const [cursor, setCursor] = useState(() => choiceIndex(choices, initial ?? question.default));
	useInput(
		(_input, key) => {
			if (choices.length === 0) return;
			if (key.upArrow) setCursor(c => (c - 1 + choices.length) % choices.length);
			else if (key.downArrow) setCursor(c => (c + 1) % choices.length);
			else if (key.return) {
				const choice = choices[cursor];
				if (choice) onSubmit(choice.value);
			}
		},
		{isActive},
	);
	return (
		<Box flexDirection="column">
			{choices.map((choice, i) => (
				<Text key={choice.value} color={i === cursor ? 'cyan' : undefined}>
					{i === cursor ? '❯ ' : '  '}
					{choice.label}
					{choice.hint ? <Text dimColor>{`  ${choice.hint}`}</Text> : null}
				</Text>
			))}
		</Box>
	);
}

export function MultiSelectInput({question, initial, isActive, onSubmit}: InputProps) {
	const choices = question.choices ?? [];
	const [cursor, setCursor] = useState(0);
	const [picked, setPicked] = useState<ReadonlySet<string>>(() => {
		const start = initial ?? question.default;
		return new Set(Array.isArray(start) ? start : []);
	});
	useInput(
		(input, key) => {
			if (choices.length === 0) return;
			if (key.upArrow) setCursor(c => (c - 1 + choices.length) % choices.length);
			else if (key.downArrow) setCursor(c => (c + 1) % choices.length);
			else if (input === ' ') {
				const choice = choices[cursor];
				if (!choice) return;
				setPicked(old => {
					const next = new Set(old);
					if (next.has(choice.value)) next.delete(choice.value);
					else next.add(choice.value);
					return next;
				});
			} else if (input === 'a' && !key.ctrl && !key.meta) {
				setPicked(old => (old.size === choices.length ? new Set() : new Set(choices.map(c => c.value))));
			} else if (key.return) {
				onSubmit(choices.filter(c => picked.has(c.value)).map(c => c.value));
			}
		},
		{isActive},
	);
	return (
		<Box flexDirection="column">
			{choices.map((choice, i) => (
				<Text key={choice.value} color={i === cursor ? 'cyan' : undefined}>
					{i === cursor ? '❯ ' : '  '}
					{picked.has(choice.value) ? '[x] ' : '[ ] '}
					{choice.label}
					{choice.hint ? <Text dimColor>{`  ${choice.hint}`}</Text> : null}
				</Text>
			))}
		</Box>
	);
}

/** Printable characters of a key press or a paste (control bytes dropped). */
function printable(input: string): string {
	// eslint-disable-next-line no-control-regex
	return input.replace(/[\u0000-\u001f\u007f]/g, '');
}

export function TextInput({question, initial, isActive, onSubmit}: InputProps) {
	const masked = question.kind === 'password';
	// A password is never put back on screen, even masked.
	const [value, setValue] = useState(() => (!masked && typeof initial === 'string' ? initial : ''));
	useInput(
		(input, key) => {
			if (key.return) {
				if (value === '' && typeof question.default === 'string') onSubmit(question.default);
				else onSubmit(value);
				return;
			}
			if (key.backspace || key.delete) {
				setValue(v => v.slice(0, -1));
				return;
			}
			if (key.ctrl || key.meta || key.escape || key.tab) return;
			if (key.upArrow || key.downArrow || key.leftArrow || key.rightArrow) return;
			const text = printable(input);
			if (text) setValue(v => v + text);
		},
		{isActive},
	);
	const hint = defaultHint(question);
	return (
		<Text>
			<Text color="cyan">› </Text>
			{masked ? '*'.repeat(value.length) : value}
			{value === '' && hint ? <Text dimColor>{hint}</Text> : null}
			{isActive ? <Text inverse> </Text> : null}
		</Text>
	);
}

export function YesNoInput({
	defaultValue,
	isActive,
	onSubmit,
}: {
	defaultValue: boolean | undefined;
	isActive: boolean;
	onSubmit: (yes: boolean) => void;
}) {
	useInput(
		(input, key) => {
			if (key.ctrl || key.meta) return;
			const lower = input.toLowerCase();
			if (lower === 'y') onSubmit(true);
			else if (lower === 'n') onSubmit(false);
			else if (key.return && defaultValue !== undefined) onSubmit(defaultValue);
		},
		{isActive},
	);
	return <Text color="cyan">{yesNoHint(defaultValue)}</Text>;
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
					isActive={props.isActive}
					onSubmit={props.onSubmit}
				/>
			);
		default:
			return <TextInput {...props} />;
	}
}

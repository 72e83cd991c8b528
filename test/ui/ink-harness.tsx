/**
 * Drives the Ink wizard through ink-testing-library, one key at a time: every key press
 * waits until the frame changes (or a condition holds) before the next one is written.
 * Width is fixed by ink-testing-library (100 columns); animation is off.
 */
import React from 'react';
import {render} from 'ink-testing-library';
import type {EngineControl} from '../../source/engine/state.js';
import {Wizard} from '../../source/ui/wizard.js';

export const keys = {
	up: '\u001B[A',
	down: '\u001B[B',
	enter: '\r',
	escape: '\u001B',
	space: ' ',
	backspace: '\u007F',
	ctrlC: '\u0003',
} as const;

// eslint-disable-next-line no-control-regex
const ansi = /\u001B\[[0-9;?]*[A-Za-z]/g;

export function stripAnsi(text: string): string {
	return text.replace(ansi, '');
}

const tick = () => new Promise<void>(resolve => setTimeout(resolve, 5));

export async function until(condition: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
	const start = Date.now();
	while (!condition()) {
		if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
		await tick();
	}
}

export function renderWizard(control: EngineControl) {
	const instance = render(<Wizard control={control} />);
	const frame = () => stripAnsi(instance.lastFrame() ?? '');
	const rawFrame = () => instance.lastFrame() ?? '';
	const listening = () => instance.stdin.listenerCount('readable') > 0;

	/** Writes one key once input is attached and React's effects have run. */
	const write = async (key: string) => {
		await until(listening, 'the wizard to listen for keys');
		await tick();
		instance.stdin.write(key);
	};

	return {
		...instance,
		frame,
		rawFrame,
		/** Presses a key and waits for the frame to change. */
		async press(key: string): Promise<string> {
			const before = rawFrame();
			await write(key);
			await until(() => rawFrame() !== before, `the frame to change after ${JSON.stringify(key)}`);
			await tick();
			return frame();
		},
		/** Presses a key and waits until `condition` holds (for keys whose effect is not on screen). */
		async pressUntil(key: string, condition: () => boolean, what: string): Promise<string> {
			await write(key);
			await until(condition, what);
			await tick();
			return frame();
		},
		/** Types text one character at a time, waiting for each to show. */
		async type(text: string): Promise<string> {
			for (const ch of text) await this.press(ch);
			return frame();
		},
		waitFor(condition: (frame: string) => boolean, what: string): Promise<void> {
			return until(() => condition(frame()), what);
		},
	};
}

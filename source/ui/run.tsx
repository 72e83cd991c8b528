/**
 * Mounts the Ink wizard on a terminal. The wizard renders to stderr (results belong to
 * stdout, which the CLI writes itself) and reads keys in raw mode from stdin.
 */
import React from 'react';
import {render} from 'ink';
import type {EngineControl} from '../engine/state.js';
import {colorOn, isCi} from './format.js';
import {Wizard} from './wizard.js';

export type InkIo = {
	/** Keys come from here; it must be a TTY that supports raw mode. */
	stdin?: NodeJS.ReadStream;
	/** Not written by the wizard: results are the CLI's to print. Accepted for symmetry. */
	stdout?: NodeJS.WriteStream;
	/** Where the wizard renders. */
	stderr?: NodeJS.WriteStream;
	/** Stops rendering (for a CLI whose engine failed before setting a result). */
	signal?: AbortSignal;
	/** Also show result.summary (default false: the CLI prints it on stdout). */
	summaryLines?: boolean;
	/** --root, named in the header. */
	root?: string;
};

export class RawModeUnavailableError extends Error {
	override name = 'RawModeUnavailableError';
}

/** True when `stdin` can be put in raw mode, the only way the wizard reads keys. */
export function canUseInk(stdin: NodeJS.ReadStream = process.stdin): boolean {
	return Boolean(stdin.isTTY) && typeof stdin.setRawMode === 'function';
}

/**
 * Renders the engine's state until it sets `state.result`, then leaves the final frame
 * (stage list and summary) on screen and resolves. Ctrl-C and q call `control.abort()`;
 * the wizard keeps rendering until the engine has undone the stage and set the result.
 */
export async function runInk(control: EngineControl, io: InkIo = {}): Promise<void> {
	const stdin = io.stdin ?? process.stdin;
	const stderr = io.stderr ?? process.stderr;
	if (!canUseInk(stdin)) {
		throw new RawModeUnavailableError(
			'The interactive wizard needs a terminal (stdin is not a TTY): pass --plain, or --yes with --answers FILE.',
		);
	}
	const animate = Boolean(stderr.isTTY) && !isCi(process.env);
	const color = colorOn(stderr, process.env);
	const instance = render(<Wizard control={control} animate={animate} summaryLines={io.summaryLines} color={color} root={io.root} />, {
		stdout: stderr,
		stderr,
		stdin,
		exitOnCtrlC: false,
		patchConsole: false,
	});
	const onAbort = () => instance.unmount();
	io.signal?.addEventListener('abort', onAbort, {once: true});
	if (io.signal?.aborted) instance.unmount();
	try {
		await instance.waitUntilExit();
	} finally {
		io.signal?.removeEventListener('abort', onAbort);
	}
}

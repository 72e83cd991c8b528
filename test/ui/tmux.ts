/**
 * A real terminal for end-to-end UI tests: a private tmux server (its own socket, so no
 * other tmux session is touched) running one command in one pane. Keys go in with
 * send-keys; the screen comes back with capture-pane.
 */
import {execFileSync} from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

let counter = 0;

const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));

export type Pane = {
	/** The visible screen, trailing spaces trimmed. */
	screen(): string;
	/** The scrollback and the screen, oldest first, lines the terminal wrapped joined again, trailing spaces trimmed. */
	history(): string;
	/** Sends tmux key names (Down, Enter, Escape, C-c) or literal text with {literal: true}. */
	send(keys: string, options?: {literal?: boolean}): void;
	/** Sends a key and waits until the screen differs from before. */
	press(keys: string, options?: {literal?: boolean}): Promise<string>;
	waitFor(condition: (screen: string) => boolean, what: string, timeoutMs?: number): Promise<string>;
	/** The command's exit code once it has ended (undefined while it runs). */
	exitCode(): number | undefined;
	waitForExit(timeoutMs?: number): Promise<number>;
	resize(columns: number, rows: number): void;
	close(): void;
};

export function tmuxAvailable(): boolean {
	try {
		execFileSync('tmux', ['-V'], {stdio: 'ignore'});
		return true;
	} catch {
		return false;
	}
}

/**
 * Starts `argv` in a new pane of `columns` x `rows`, in `cwd`, with CI unset (so Ink
 * draws interactively). The exit code is written to a file; the pane stays open after
 * the command ends so the final screen can be read.
 */
export function startPane(argv: string[], options: {cwd: string; columns?: number; rows?: number; env?: Record<string, string>}): Pane {
	const socket = `etcd-harden-ui-${process.pid}-${++counter}`;
	const work = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-harden-tmux-'));
	const exitFile = path.join(work, 'exit');
	const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
	const envs = Object.entries({TERM: 'xterm-256color', ...options.env}).map(([k, v]) => `${k}=${quote(v)}`);
	const command = `cd ${quote(options.cwd)} && env -u CI -u CONTINUOUS_INTEGRATION -u NO_COLOR ${envs.join(' ')} ${argv.map(quote).join(' ')}; echo $? > ${quote(exitFile)}; sleep 600`;
	const tmux = (...args: string[]) => execFileSync('tmux', ['-L', socket, ...args], {encoding: 'utf8'});
	tmux('-f', '/dev/null', 'new-session', '-d', '-s', 'ui', '-x', String(options.columns ?? 100), '-y', String(options.rows ?? 40), command);

	const pane: Pane = {
		screen: () =>
			tmux('capture-pane', '-p', '-t', 'ui')
				.split('\n')
				.map(line => line.trimEnd())
				.join('\n')
				.trimEnd(),
		history: () =>
			tmux('capture-pane', '-p', '-J', '-S', '-', '-t', 'ui')
				.split('\n')
				.map(line => line.trimEnd())
				.join('\n')
				.trimEnd(),
		send(keys, sendOptions = {}) {
			tmux('send-keys', '-t', 'ui', ...(sendOptions.literal ? ['-l'] : []), keys);
		},
		async press(keys, sendOptions) {
			const before = pane.screen();
			pane.send(keys, sendOptions);
			return pane.waitFor(screen => screen !== before, `the screen to change after ${keys}`);
		},
		async waitFor(condition, what, timeoutMs = 10_000) {
			const start = Date.now();
			for (;;) {
				const screen = pane.screen();
				if (condition(screen)) {
					await sleep(50);
					return pane.screen();
				}
				if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}; screen:\n${screen}`);
				await sleep(50);
			}
		},
		exitCode() {
			try {
				const text = fs.readFileSync(exitFile, 'utf8').trim();
				return text === '' ? undefined : Number(text);
			} catch {
				return undefined;
			}
		},
		async waitForExit(timeoutMs = 15_000) {
			const start = Date.now();
			for (;;) {
				const code = pane.exitCode();
				if (code !== undefined) return code;
				if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for exit; screen:\n${pane.screen()}`);
				await sleep(50);
			}
		},
		resize(columns, rows) {
			tmux('resize-window', '-t', 'ui', '-x', String(columns), '-y', String(rows));
		},
		close() {
			try {
				tmux('kill-server');
			} catch {
				// already gone
			}
			fs.rmSync(work, {recursive: true, force: true});
		},
	};
	return pane;
}

// UI tests for runInk itself: where it renders, when it refuses, when it animates, and
// that it resolves once the engine has a result. Scripted EngineControl, fake TTY streams.
import {EventEmitter} from 'node:events';
import {afterEach, describe, expect, it, vi} from 'vitest';

vi.hoisted(() => {
	delete process.env.CI;
	delete process.env.CONTINUOUS_INTEGRATION;
});

import {RawModeUnavailableError, runInk} from '../../source/ui/index.js';
import {baseState, FakeEngine, stage} from './fake-engine.js';
import {stripAnsi, until} from './ink-harness.js';

class FakeTtyIn extends EventEmitter {
	isTTY = true;
	rawMode: boolean[] = [];
	private queue: string[] = [];
	setRawMode(on: boolean) {
		this.rawMode.push(on);
		return this;
	}
	setEncoding() {
		return this;
	}
	read(): string | null {
		return this.queue.shift() ?? null;
	}
	type(data: string) {
		this.queue.push(data);
		this.emit('readable');
	}
	ref() {
		return this;
	}
	unref() {
		return this;
	}
	resume() {
		return this;
	}
	pause() {
		return this;
	}
}

class FakeTtyOut extends EventEmitter {
	isTTY = true;
	columns = 100;
	rows = 40;
	chunks: string[] = [];
	write(chunk: string) {
		this.chunks.push(chunk);
		return true;
	}
	get text() {
		return stripAnsi(this.chunks.join(''));
	}
}

const asStream = <T,>(fake: unknown) => fake as T;

const savedCi = process.env.CI;
afterEach(() => {
	if (savedCi === undefined) delete process.env.CI;
	else process.env.CI = savedCi;
});

const applying = () =>
	baseState({
		stages: [stage('discover', 'done'), stage('encryption-config', 'applying')],
		current: 1,
		progress: {stageId: 'encryption-config', label: 'Writing the config'},
	});

describe('runInk', () => {
	it('refuses a stdin without raw mode instead of mounting input', async () => {
		const stdin = new FakeTtyIn();
		stdin.isTTY = false;
		const stderr = new FakeTtyOut();
		await expect(
			runInk(new FakeEngine(applying()), {stdin: asStream(stdin), stderr: asStream(stderr)}),
		).rejects.toBeInstanceOf(RawModeUnavailableError);
		expect(stderr.chunks).toEqual([]);
	});

	it('renders to stderr, never stdout, reads keys in raw mode, and resolves after the result', async () => {
		const engine = new FakeEngine(applying());
		const stdin = new FakeTtyIn();
		const stdout = new FakeTtyOut();
		const stderr = new FakeTtyOut();
		let resolved = false;
		const done = runInk(engine, {stdin: asStream(stdin), stdout: asStream(stdout), stderr: asStream(stderr)}).then(() => {
			resolved = true;
		});
		await until(() => stderr.text.includes('Writing the config'), 'the first frame');
		expect(stdin.rawMode[0]).toBe(true);
		stdin.type('\u0003');
		await until(() => engine.calls.length === 1, 'abort');
		expect(engine.calls).toEqual([{type: 'abort'}]);
		await new Promise(resolve => setTimeout(resolve, 50));
		expect(resolved).toBe(false); // still rendering while the engine undoes
		engine.update({result: {exitCode: 3, summary: ['Aborted.']}});
		await done;
		expect(stderr.text).toContain('Aborted (exit 3)');
		expect(stdout.chunks).toEqual([]);
		expect(stdin.rawMode.at(-1)).toBe(false);
	});

	it('animates a spinner on a TTY, and draws nothing new while idle when CI is set', async () => {
		const frames = async () => {
			const engine = new FakeEngine(applying());
			const stdin = new FakeTtyIn();
			const stderr = new FakeTtyOut();
			const done = runInk(engine, {stdin: asStream(stdin), stderr: asStream(stderr)});
			await until(() => stderr.text.includes('Writing the config'), 'the first frame');
			const start = stderr.chunks.length;
			await new Promise(resolve => setTimeout(resolve, 400));
			const drawn = stderr.chunks.length - start;
			engine.update({result: {exitCode: 0, summary: []}});
			await done;
			return drawn;
		};
		expect(await frames()).toBeGreaterThan(0);
		process.env.CI = '1';
		expect(await frames()).toBe(0);
	});

	it('stops rendering when the signal aborts (an engine that failed without a result)', async () => {
		const controller = new AbortController();
		const stdin = new FakeTtyIn();
		const stderr = new FakeTtyOut();
		const done = runInk(new FakeEngine(applying()), {stdin: asStream(stdin), stderr: asStream(stderr), signal: controller.signal});
		await until(() => stderr.text.includes('Writing the config'), 'the first frame');
		controller.abort();
		await done;
		expect(stdin.rawMode.at(-1)).toBe(false);
	});
});

/**
 * The per-batch chunk functions of the age payload (source/crypto/age-payload.ts) that the
 * parallel file loop runs on worker threads, checked against the sequential PayloadSealer and
 * PayloadOpener; the lane coordinator (source/host/age-parallel.ts) and one worker thread on its own.
 */
import {randomBytes} from 'node:crypto';
import {mkdtemp, open, readFile, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {Worker} from 'node:worker_threads';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {AgeError} from '../../source/crypto/age-header.js';
import {
	CHUNK_SIZE,
	OUTPUT_ROOM,
	openChunks,
	openedLayout,
	PayloadOpener,
	PayloadSealer,
	SEALED_CHUNK_SIZE,
	sealChunks,
	sealedLayout,
} from '../../source/crypto/age-payload.js';
import {OUTPUT_LOCK, SHARED_SLOTS} from '../../source/host/age-lane.js';
import {MAX_DEFAULT_LANES, runChunkWorkers, WRITE_LIMIT, workersForLoad} from '../../source/host/age-parallel.js';
import type {WorkerReport, WorkerSetup} from '../../source/host/age-worker.js';
import {ageWorkerCode} from '../../source/host/age-worker.generated.js';
// @ts-expect-error: a plain .mjs script without type declarations
import {ageWorkerModule} from '../../scripts/generate-age-worker.mjs';

const key = randomBytes(32);

/** The sequential sealer's output for `plaintext` (what age files hold after the nonce). */
function sealSequential(plaintext: Buffer): Buffer {
	const sealer = new PayloadSealer(key);
	const out: Buffer[] = [];
	const scratch = Buffer.alloc(OUTPUT_ROOM);
	for (let i = 0; i < plaintext.length; i += 16 * CHUNK_SIZE) {
		const n = sealer.feed(plaintext.subarray(i, i + 16 * CHUNK_SIZE), scratch);
		out.push(Buffer.from(scratch.subarray(0, n)));
	}
	out.push(Buffer.from(scratch.subarray(0, sealer.finish(scratch))));
	return Buffer.concat(out);
}

/** The sequential opener's result: the plaintext or the AgeError message. */
function openSequential(payload: Buffer): Buffer | string {
	const opener = new PayloadOpener(key);
	const out: Buffer[] = [];
	const scratch = Buffer.alloc(OUTPUT_ROOM + SEALED_CHUNK_SIZE);
	try {
		for (let i = 0; i < payload.length; i += OUTPUT_ROOM) {
			const n = opener.feed(payload.subarray(i, i + OUTPUT_ROOM), scratch);
			out.push(Buffer.from(scratch.subarray(0, n)));
		}
		out.push(Buffer.from(scratch.subarray(0, opener.finish(scratch))));
		return Buffer.concat(out);
	} catch (error) {
		if (error instanceof AgeError) return error.message;
		throw error;
	}
}

/** Seal `plaintext` in batches of `batch` chunks, in reverse order, as workers may. */
function sealBatched(plaintext: Buffer, batch: number): Buffer {
	const {chunks} = sealedLayout(plaintext.length);
	const parts: Buffer[] = [];
	for (let first = Math.floor((chunks - 1) / batch) * batch; first >= 0; first -= batch) {
		const final = first + batch >= chunks;
		const end = final ? plaintext.length : (first + batch) * CHUNK_SIZE;
		parts.unshift(Buffer.concat(sealChunks(key, first, plaintext.subarray(first * CHUNK_SIZE, end), final)));
	}
	return Buffer.concat(parts);
}

/** Open a payload in batches of `batch` chunks through openedLayout, or the AgeError message. */
function openBatched(payload: Buffer, batch: number): Buffer | string {
	try {
		const {chunks} = openedLayout(payload.length);
		const parts: Buffer[] = [];
		for (let first = 0; first < chunks; first += batch) {
			const final = first + batch >= chunks;
			const end = final ? payload.length : (first + batch) * SEALED_CHUNK_SIZE;
			parts.push(...openChunks(key, first, payload.subarray(first * SEALED_CHUNK_SIZE, end), final));
		}
		return Buffer.concat(parts);
	} catch (error) {
		if (error instanceof AgeError) return error.message;
		throw error;
	}
}

const sizes = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 7 * CHUNK_SIZE + 5];

describe('sealChunks / openChunks', () => {
	it.each(sizes)('batches of any size, sealed in any order, give the sequential sealer’s bytes (%i bytes)', size => {
		const plaintext = randomBytes(size);
		const expected = sealSequential(plaintext);
		expect(expected.length).toBe(sealedLayout(size).sealedBytes);
		for (const batch of [1, 2, 3, 32]) {
			expect(sealBatched(plaintext, batch).equals(expected), `batch ${batch}`).toBe(true);
			const opened = openBatched(expected, batch);
			expect(Buffer.isBuffer(opened) && opened.equals(plaintext), `batch ${batch}`).toBe(true);
		}
	});

	it('a tampered chunk fails with the index the sequential opener names, and returns nothing', () => {
		const plaintext = randomBytes(9 * CHUNK_SIZE + 77);
		const sealed = sealSequential(plaintext);
		for (const chunk of [0, 4, 5, 9]) {
			const tampered = Buffer.from(sealed);
			const at = Math.min(chunk * SEALED_CHUNK_SIZE + 100, tampered.length - 1);
			tampered[at] = (tampered[at] ?? 0) ^ 0x01;
			expect(openSequential(tampered)).toBe(`chunk ${chunk} failed authentication: file is truncated or tampered`);
			for (const batch of [1, 3, 32]) expect(openBatched(tampered, batch), `batch ${batch}`).toBe(openSequential(tampered));
		}
		// The batch holding the bad chunk returns no plaintext at all, not the good chunks before it.
		const tampered = Buffer.from(sealed);
		tampered[5 * SEALED_CHUNK_SIZE + 3] ^= 0x01;
		expect(() => openChunks(key, 4, tampered.subarray(4 * SEALED_CHUNK_SIZE, 6 * SEALED_CHUNK_SIZE), false)).toThrow(/chunk 5 failed/);
	});

	it('a chunk sealed under another index or as not-final does not open', () => {
		const plaintext = randomBytes(2 * CHUNK_SIZE);
		const firstChunk = Buffer.concat(sealChunks(key, 0, plaintext.subarray(0, CHUNK_SIZE), false));
		expect(() => openChunks(key, 1, firstChunk, false)).toThrow(/chunk 1 failed authentication/);
		expect(() => openChunks(key, 0, firstChunk, true)).toThrow(/chunk 0 failed authentication/);
		expect(Buffer.concat(openChunks(key, 0, firstChunk, false)).equals(plaintext.subarray(0, CHUNK_SIZE))).toBe(true);
	});

	it('truncated and extended payloads fail before any chunk is opened, with the sequential opener’s message', () => {
		const sealed = sealSequential(randomBytes(2 * CHUNK_SIZE + 100));
		const cut = (n: number) => sealed.subarray(0, n);
		const cases = [
			cut(0),
			cut(15),
			cut(SEALED_CHUNK_SIZE + 15),
			cut(SEALED_CHUNK_SIZE + 16),
			cut(2 * SEALED_CHUNK_SIZE),
			cut(2 * SEALED_CHUNK_SIZE + 16),
			cut(sealed.length - 1),
			Buffer.concat([sealed, Buffer.alloc(1)]),
			Buffer.concat([sealed.subarray(0, 2 * SEALED_CHUNK_SIZE), Buffer.alloc(10)]),
		];
		for (const payload of cases) {
			const expected = openSequential(payload);
			expect(typeof expected, `${payload.length} bytes`).toBe('string');
			expect(openBatched(payload, 1), `${payload.length} bytes`).toBe(expected);
			expect(openBatched(payload, 32), `${payload.length} bytes`).toBe(expected);
		}
	});

	it('refuses batches that cannot be part of a payload', () => {
		expect(() => sealChunks(key, 0, Buffer.alloc(CHUNK_SIZE + 1), false)).toThrow(RangeError);
		expect(() => sealChunks(key, 0, Buffer.alloc(0), false)).toThrow(RangeError);
		expect(() => sealChunks(key, 3, Buffer.alloc(0), true)).toThrow(RangeError);
		expect(() => openChunks(key, 0, Buffer.alloc(SEALED_CHUNK_SIZE - 1), false)).toThrow(RangeError);
	});

	it('sealedLayout and openedLayout describe the same file', () => {
		for (const size of [...sizes, 2 ** 31, 2 ** 31 + 1]) {
			const {chunks, sealedBytes} = sealedLayout(size);
			expect(openedLayout(sealedBytes)).toEqual({chunks, plaintextBytes: size});
		}
	});
});

describe('the default worker count', () => {
	it('is one lane per idle core, at least 2 where there are 2 cores, at most MAX_DEFAULT_LANES', () => {
		expect(MAX_DEFAULT_LANES).toBe(4);
		expect(workersForLoad(2, 0)).toBe(2);
		expect(workersForLoad(2, 0.6)).toBe(2);
		expect(workersForLoad(2, 9.5)).toBe(2);
		expect(workersForLoad(3, 0)).toBe(3);
		expect(workersForLoad(8, 5.4)).toBe(3);
		expect(workersForLoad(8, 7)).toBe(2);
		expect(workersForLoad(64, 10)).toBe(4);
		expect(workersForLoad(8, -1)).toBe(4);
		expect(workersForLoad(8, Number.NaN)).toBe(4);
		expect(workersForLoad(1, 0)).toBe(1);
		expect(workersForLoad(0, 0)).toBe(1);
	});
});

describe('the worker coordinator', () => {
	let dir: string;
	beforeAll(async () => {
		dir = await mkdtemp(join(tmpdir(), 'age-chunks-'));
	});
	afterAll(async () => {
		await rm(dir, {recursive: true, force: true});
	});

	/**
	 * Run the coordinator over `payload` placed after `inputStart` bytes of junk in the input
	 * file, writing after `outputStart` bytes of junk in the output; returns what it wrote after
	 * those bytes, or the error.
	 */
	async function runJob(
		direction: 'seal' | 'open',
		payload: Buffer,
		options: {workers: number; batchChunks: number; workerCode?: string; inputStart?: number; outputStart?: number},
	): Promise<Buffer> {
		const inputStart = options.inputStart ?? 0;
		const outputStart = options.outputStart ?? 0;
		await writeFile(join(dir, 'in'), Buffer.concat([randomBytes(inputStart), payload]));
		await writeFile(join(dir, 'out'), randomBytes(outputStart));
		const input = await open(join(dir, 'in'), 'r');
		const output = await open(join(dir, 'out'), 'r+');
		try {
			const chunks = direction === 'seal' ? sealedLayout(payload.length).chunks : openedLayout(payload.length).chunks;
			const job = {direction, payloadKey: key, input, output, inputStart, outputStart, chunks, inputBytes: payload.length} as const;
			const {workers, batchChunks, workerCode} = options;
			await runChunkWorkers(job, {workers, batchChunks, ...(workerCode === undefined ? {} : {workerCode})});
		} finally {
			await input.close();
			await output.close();
		}
		return (await readFile(join(dir, 'out'))).subarray(outputStart);
	}

	async function runWith(workerCode: string | undefined, plaintext: Buffer): Promise<Buffer> {
		return runJob('seal', plaintext, {workers: 2, batchChunks: 2, ...(workerCode === undefined ? {} : {workerCode})});
	}

	it('writes the sequential sealer’s bytes from this thread and a worker, batch by batch, in file order', async () => {
		const plaintext = randomBytes(11 * CHUNK_SIZE + 9);
		expect((await runWith(undefined, plaintext)).equals(sealSequential(plaintext))).toBe(true);
	});

	it('seals and opens at offsets, at 1-4 lanes and any batch size, exactly as the sequential loop', async () => {
		for (const [size, workers, batchChunks] of [
			[1, 2, 1],
			[CHUNK_SIZE, 3, 1],
			[CHUNK_SIZE + 1, 2, 1],
			[7 * CHUNK_SIZE, 4, 2],
			[7 * CHUNK_SIZE - 1, 3, 3],
			[9 * CHUNK_SIZE + 17, 4, 1],
			[9 * CHUNK_SIZE + 17, 1, 4],
		] as const) {
			const plaintext = randomBytes(size);
			const sealed = sealSequential(plaintext);
			const name = `${size} bytes, ${workers} lanes, ${batchChunks} chunks a batch`;
			expect((await runJob('seal', plaintext, {workers, batchChunks, inputStart: 3, outputStart: 201})).equals(sealed), name).toBe(true);
			expect((await runJob('open', sealed, {workers, batchChunks, inputStart: 217, outputStart: 5})).equals(plaintext), name).toBe(true);
		}
	});

	it('reports the lowest failing chunk, as the sequential opener does, at 2-4 lanes', async () => {
		const plaintext = randomBytes(40 * CHUNK_SIZE + 3);
		const sealed = sealSequential(plaintext);
		const damaged = Buffer.from(sealed);
		// Chunk 31 fails late in the file and chunk 6 early: 6 must be named at every lane count.
		damaged[31 * SEALED_CHUNK_SIZE + 100]! ^= 1;
		damaged[6 * SEALED_CHUNK_SIZE + 5]! ^= 1;
		expect(openSequential(damaged)).toBe('chunk 6 failed authentication: file is truncated or tampered');
		for (const workers of [2, 3, 4]) {
			for (const batchChunks of [1, 4]) {
				await expect(runJob('open', damaged, {workers, batchChunks}), `${workers} lanes, ${batchChunks} a batch`).rejects.toThrow(
					new AgeError('CHUNK_AUTH', 'chunk 6 failed authentication: file is truncated or tampered'),
				);
			}
		}
		// The last-chunk flag: a payload cut after a full chunk fails on its new last chunk.
		const cut = sealed.subarray(0, 20 * SEALED_CHUNK_SIZE);
		expect(openSequential(cut)).toBe('chunk 19 failed authentication: file is truncated or tampered');
		await expect(runJob('open', cut, {workers: 3, batchChunks: 2})).rejects.toThrow('chunk 19 failed authentication: file is truncated or tampered');
	});

	it('fails, without hanging, when a worker exits or throws', async () => {
		const plaintext = randomBytes(8 * CHUNK_SIZE);
		await expect(runWith('process.exit(3)', plaintext)).rejects.toThrow(/age worker thread stopped unexpectedly \(exit code 3\)/);
		const throwing = "throw new Error('boom')";
		await expect(runWith(throwing, plaintext)).rejects.toThrow(/age worker thread stopped unexpectedly \(boom\)/);
	});
});

describe('one worker thread on its own (the bundled code)', () => {
	let dir: string;
	beforeAll(async () => {
		dir = await mkdtemp(join(tmpdir(), 'age-worker-'));
	});
	afterAll(async () => {
		await rm(dir, {recursive: true, force: true});
	});

	/** Run one worker over `sealed` from batch `next` on, the stop flag preset to `stop`; returns its reports, the flags after, and the output file. */
	async function runWorker(sealed: Buffer, next: number, stop: number, outputLock = 0): Promise<{reports: WorkerReport[]; flags: number[]; output: Buffer}> {
		await writeFile(join(dir, 'in'), sealed);
		await writeFile(join(dir, 'out'), Buffer.alloc(0));
		const input = await open(join(dir, 'in'), 'r');
		const output = await open(join(dir, 'out'), 'r+');
		const shared = new SharedArrayBuffer(SHARED_SLOTS * Int32Array.BYTES_PER_ELEMENT);
		const flags = new Int32Array(shared);
		flags[0] = next;
		flags[1] = stop;
		flags[OUTPUT_LOCK] = outputLock;
		const {chunks, plaintextBytes} = openedLayout(sealed.length);
		const setup: WorkerSetup = {direction: 'open', payloadKey: key, inputFd: input.fd, outputFd: output.fd, inputStart: 0, outputStart: 0, chunks, inputBytes: sealed.length, batchChunks: 2, writeLimit: WRITE_LIMIT, shared};
		const reports: WorkerReport[] = [];
		try {
			const worker = new Worker(ageWorkerCode, {eval: true, workerData: setup});
			worker.on('message', (report: WorkerReport) => reports.push(report));
			expect(await new Promise(resolve => worker.once('exit', resolve))).toBe(0);
		} finally {
			await input.close();
			await output.close();
		}
		expect(plaintextBytes).toBeGreaterThan(0);
		return {reports, flags: [...flags], output: await readFile(join(dir, 'out'))};
	}

	it('claims batches from the shared counter, writes each at its offset, and reports its count', async () => {
		const plaintext = randomBytes(9 * CHUNK_SIZE + 5); // 10 chunks: batches 0-4 of 2 chunks
		const {reports, flags, output} = await runWorker(sealSequential(plaintext), 3, 0);
		expect(reports).toEqual([{kind: 'done', batches: 2}]);
		expect(flags[1]).toBe(0);
		// Batches 0-2 were "claimed by another lane": the worker wrote only from chunk 6 on.
		expect(output.length).toBe(plaintext.length);
		expect(output.subarray(6 * CHUNK_SIZE).equals(plaintext.subarray(6 * CHUNK_SIZE))).toBe(true);
		expect(output.subarray(0, 6 * CHUNK_SIZE).equals(Buffer.alloc(6 * CHUNK_SIZE))).toBe(true);
	});

	it('reports a damaged batch with its index, sets the stop flag, and claims nothing after it', async () => {
		const sealed = sealSequential(randomBytes(9 * CHUNK_SIZE + 5));
		sealed[5 * SEALED_CHUNK_SIZE + 1]! ^= 1; // chunk 5: batch 2
		const {reports, flags} = await runWorker(sealed, 1, 0);
		expect(reports).toEqual([
			{kind: 'failed', batch: 2, age: true, code: 'CHUNK_AUTH', message: 'chunk 5 failed authentication: file is truncated or tampered'},
			{kind: 'done', batches: 1},
		]);
		expect(flags).toEqual([3, 1, 0]);
	});

	it('writes anyway when the output lock is never released (a lane lost while writing)', async () => {
		const plaintext = randomBytes(9 * CHUNK_SIZE + 5); // batches 0-4
		const {reports, flags, output} = await runWorker(sealSequential(plaintext), 0, 0, 1);
		// Batch 0 was kept while the lock looked held, written with batch 1 after the wait, and so on.
		expect(reports).toEqual([{kind: 'done', batches: 5}]);
		expect(flags).toEqual([6, 0, 1]);
		expect(output.equals(plaintext)).toBe(true);
	});

	it('claims nothing once another lane has set the stop flag', async () => {
		const {reports, flags, output} = await runWorker(sealSequential(randomBytes(3 * CHUNK_SIZE)), 0, 1);
		expect(reports).toEqual([{kind: 'done', batches: 0}]);
		expect(flags).toEqual([0, 1, 0]);
		expect(output.length).toBe(0);
	});
});

describe('the bundled worker', () => {
	it('age-worker.generated.ts is built from the current sources (run node scripts/generate-age-worker.mjs)', async () => {
		const expected = (await ageWorkerModule()) as string;
		expect(expected).toContain(JSON.stringify(ageWorkerCode));
		expect(await readFile(new URL('../../source/host/age-worker.generated.ts', import.meta.url), 'utf8')).toBe(expected);
	});
});

/**
 * The parallel age file loop: the payload's chunks are independent given their index (the
 * STREAM nonce is the chunk counter plus the last-chunk flag), and batch i of BATCH_CHUNKS
 * chunks sits at a computable offset in both files (plaintext chunks of 64 KiB, sealed chunks
 * of 64 KiB + 16 after the header and nonce). So every lane does whole batches on its own: it
 * claims the next batch index from a shared counter (Atomics.add: batches are claimed in file
 * order), reads that batch with a positional read, seals or opens it and writes it with
 * positional writevs (WRITE_LIMIT bytes at most each): age-lane.ts. No buffer travels between
 * threads and nothing is done per byte on behalf of another lane.
 *
 * The lanes are this thread and `workers - 1` worker threads (source/host/age-worker.ts), all
 * with synchronous I/O on this thread's descriptors. This thread does one batch (about 1 ms of
 * work) and then yields to its event loop, so timers, messages and rendering still run between
 * batches. It starts at once, so a worker that is slow to start (a busy machine) costs only
 * its own start-up; on 2 cores it is one worker.
 *
 * Memory is bounded whatever the file size: each lane holds one batch's input buffer and the
 * cipher output of at most two batches (one kept while another lane writes, age-lane.ts), freed
 * every RECLAIM_EVERY_BATCHES batches (memory.ts). Between two yields this thread blocks for one
 * batch, or for as long as it waits for its turn to write (normally another lane's write of
 * about 0.3 ms, LOCK_WAIT_MS at most). Measured while 1 GiB was encrypted on 2 lanes, a 5 ms
 * timer on this thread ran late by 0.1-0.2 ms at the median, 2.5-4.4 ms at p99, 6.9 ms at most
 * (with the earlier asynchronous reads and writes: 0.0, 2.4-2.8 and 4.0 ms).
 *
 * Failure: a failing lane sets the shared stop flag, so no lane claims another batch, and every
 * batch below the failing one was already claimed and still finishes (or fails); the error
 * reported is the lowest failing batch's, whose lowest failing chunk is named, as a sequential
 * pass reports. A worker that dies fails the run. Every worker has exited before this returns,
 * so no thread still writes to a descriptor the caller then closes. The caller writes into a
 * temporary file it deletes on failure (age-files.ts), so no partial output is ever presented
 * as complete.
 */
import type {FileHandle} from 'node:fs/promises';
import {availableParallelism, loadavg} from 'node:os';
import {Worker} from 'node:worker_threads';
import {AgeError, type AgeErrorCode} from '../crypto/age.js';
import {batchCount, Lane, SHARED_SLOTS, type LaneJob} from './age-lane.js';
import type {WorkerReport, WorkerSetup} from './age-worker.js';
import {ageWorkerCode} from './age-worker.generated.js';
import {RECLAIM_EVERY_BATCHES, reclaimCipherBuffers} from './memory.js';

/**
 * Chunks per batch: 16 x 64 KiB = 1 MiB read with one read, then sealed or opened. Reading 512
 * MiB from the page cache in 64 KiB reads cost 0.94-1.08 s of system time against 0.22-0.35 s
 * in 1 MiB reads (dd, this machine's kernel 6.18); in the previous design 8 and 12 chunks were
 * no faster than 16, and a bigger batch only holds more memory per lane.
 */
export const BATCH_CHUNKS = 16;
/** Indexes in WorkerSetup.shared, as in age-worker.ts (a type-only import keeps the worker's code out of this thread). */
const NEXT_BATCH = 0;
const STOP = 1;

/**
 * The most lanes the default uses: each worker thread adds about 9 MB of peak RSS (its own V8
 * heap), and the positional writes into one file share its inode lock, so more lanes buy little
 * on a page-cache-bound job; 4 lanes stay far below the 128 MB budget.
 */
export const MAX_DEFAULT_LANES = 4;

/**
 * Lanes for `cores` usable cores at a one-minute load average of `load`: one per idle core, at
 * least 2 on any machine with 2 cores or more, at most MAX_DEFAULT_LANES; 1 (the sequential loop)
 * on one core. Two lanes even when the machine is busy: this thread starts on the batches at
 * once and the worker helps when it gets a core, so the only extra cost is the worker's start-up
 * (about 50 ms of CPU); at load 9.5 on the 2-core machine two lanes took 1.35-1.48 s for 512 MiB
 * against 1.85-2.16 s for the sequential loop, for the same CPU time. The load average is not
 * trusted to say a core is free: a benchmark's own previous runs raise it.
 */
export function workersForLoad(cores: number, load: number): number {
	if (cores < 2) return 1;
	const idle = Math.round(cores - (Number.isFinite(load) && load > 0 ? load : 0));
	return Math.min(cores, MAX_DEFAULT_LANES, Math.max(2, idle));
}

/** The default lane count: workersForLoad for this process's cores and the machine's load. */
export function defaultWorkers(): number {
	return workersForLoad(Math.max(1, availableParallelism()), loadavg()[0] ?? 0);
}

export interface ChunkJob {
	readonly direction: 'seal' | 'open';
	readonly payloadKey: Uint8Array;
	readonly input: FileHandle;
	readonly output: FileHandle;
	/** File offsets of chunk 0 in the input and in the output. */
	readonly inputStart: number;
	readonly outputStart: number;
	/** Chunks in the payload, and the input bytes of the whole payload. */
	readonly chunks: number;
	readonly inputBytes: number;
}

export interface ParallelOptions {
	/** Lanes: this thread and `workers - 1` worker threads. */
	readonly workers: number;
	readonly batchChunks?: number;
	/** The worker's code (a CommonJS string); tests pass a failing one. Default: the bundled worker. */
	readonly workerCode?: string;
}

function reportError(report: Extract<WorkerReport, {kind: 'failed'}>): Error {
	if (report.age) return new AgeError(report.code as AgeErrorCode, report.message);
	const error: NodeJS.ErrnoException = new Error(report.message);
	if (report.code !== undefined) error.code = report.code;
	return error;
}

/**
 * Largest single write into the output. One writev of a whole 1 MiB batch at a 1 MiB-aligned
 * offset (every batch of a decryption) lets the kernel (6.18, ext4 with large folios) put it in
 * one 1 MiB page-cache folio, and on this virtual machine filling such fresh high-order folios
 * cost up to 8x the system time, in about half the runs (512 MiB written in 1 MiB writes:
 * 0.12-1.21 s of system time; in 64 KiB or 256 KiB writes: 0.13-0.17 s every time; perf:
 * copy_folio_from_iter_atomic at 31-45% of all samples in the slow runs).
 */
export const WRITE_LIMIT = 256 * 1024;

/** Let the event loop run (timers, I/O callbacks, then this). */
function yieldToEventLoop(): Promise<void> {
	return new Promise(resolve => setImmediate(resolve));
}

/** This thread's lane: claim, read, seal or open, write, yield, until no batch is left or a lane failed. Returns the batches it wrote. */
async function mainLane(setup: LaneJob, flags: Int32Array, fail: (batch: number, error: Error) => void): Promise<number> {
	const batches = batchCount(setup);
	const lane = new Lane(setup, flags);
	let processed = 0;
	let done = 0;
	while (Atomics.load(flags, STOP) === 0) {
		const batch = Atomics.add(flags, NEXT_BATCH, 1);
		if (batch >= batches) break;
		try {
			processed += lane.run(batch);
		} catch (error) {
			fail(batch, error instanceof Error ? error : new Error(String(error)));
			return processed;
		}
		done++;
		if (done % RECLAIM_EVERY_BATCHES === 0) reclaimCipherBuffers();
		await yieldToEventLoop();
	}
	if (Atomics.load(flags, STOP) !== 0) return processed;
	try {
		processed += lane.finish();
	} catch (error) {
		fail(batches, error instanceof Error ? error : new Error(String(error)));
	}
	return processed;
}

/**
 * Seal or open every chunk of `job` on `options.workers` lanes (this thread and workers - 1
 * worker threads); resolves when all are written.
 */
export async function runChunkWorkers(job: ChunkJob, options: ParallelOptions): Promise<void> {
	const batchChunks = options.batchChunks ?? BATCH_CHUNKS;
	const batches = Math.ceil(job.chunks / batchChunks);
	const workerCount = Math.max(0, Math.min(options.workers, batches) - 1);
	const shared = new SharedArrayBuffer(SHARED_SLOTS * Int32Array.BYTES_PER_ELEMENT);
	const flags = new Int32Array(shared);
	const setup: WorkerSetup = {
		direction: job.direction,
		payloadKey: job.payloadKey,
		inputFd: job.input.fd,
		outputFd: job.output.fd,
		inputStart: job.inputStart,
		outputStart: job.outputStart,
		chunks: job.chunks,
		inputBytes: job.inputBytes,
		batchChunks,
		writeLimit: WRITE_LIMIT,
		shared,
	};

	let failure: {batch: number; error: Error} | undefined;
	const fail = (batch: number, error: Error): void => {
		Atomics.store(flags, STOP, 1);
		if (failure === undefined || batch < failure.batch) failure = {batch, error};
	};
	let written = 0;
	const workers: Worker[] = [];
	try {
		const exits: Array<Promise<void>> = [];
		for (let i = 0; i < workerCount; i++) {
			const worker = new Worker(options.workerCode ?? ageWorkerCode, {eval: true, workerData: setup});
			workers.push(worker);
			let finished = false;
			let lost = false;
			const lose = (reason: string): void => {
				if (finished || lost) return;
				lost = true;
				fail(-1, new Error(`an age worker thread stopped unexpectedly (${reason}); nothing was written to the destination`));
			};
			worker.on('message', (report: WorkerReport) => {
				if (report.kind === 'failed') fail(report.batch, reportError(report));
				else {
					finished = true;
					written += report.batches;
				}
			});
			worker.on('error', error => lose(error.message.split('\n')[0] ?? 'error'));
			// Node delivers a worker's last messages before its 'exit' event.
			exits.push(
				new Promise(resolve =>
					worker.once('exit', code => {
						lose(`exit code ${code}`);
						resolve();
					}),
				),
			);
		}
		// Not `written += await ...`: that would read `written` before the workers' reports arrive.
		const mine = await mainLane(setup, flags, fail);
		written += mine;
		await Promise.all(exits);
	} finally {
		// Every worker has exited before the caller may close the descriptors they write to.
		await Promise.all(workers.map(async worker => worker.terminate()));
	}
	if (failure !== undefined) throw failure.error;
	if (written !== batches) throw new Error(`the age lanes wrote ${written} of ${batches} batches; nothing was written to the destination`);
}

/**
 * The parallel age file loop: the payload's chunks are independent given their index (the
 * STREAM nonce is the chunk counter plus the last-chunk flag), so worker threads seal or open
 * batches of them at once (source/host/age-worker.ts) while this thread reads the input and
 * writes the output in file order.
 *
 * Memory is bounded whatever the file size: IN_FLIGHT_PER_WORKER batches per worker, each with
 * an input and an output buffer that travel between the threads by transfer (never copied) and
 * are reused for the next batch.
 *
 * Failure: the first failing batch stops the reading; batches are written in order, so the error
 * reported is the lowest failing chunk's, as a sequential pass reports; every worker is
 * terminated and has exited before this returns. A worker that dies fails the run the same way.
 * The caller writes into a temporary file it deletes on failure (age-files.ts), so no partial
 * output is ever presented as complete.
 */
import type {FileHandle} from 'node:fs/promises';
import {availableParallelism, loadavg} from 'node:os';
import {Worker} from 'node:worker_threads';
import {AgeError, CHUNK_SIZE, SEALED_CHUNK_SIZE, type AgeErrorCode} from '../crypto/age.js';
import type {BatchReply, BatchRequest, WorkerSetup} from './age-worker.js';
import {ageWorkerCode} from './age-worker.generated.js';

/**
 * Chunks per batch message: 16 x 64 KiB = 1 MiB read, sealed or opened, and written per message.
 * Not 2 MiB: on this machine's kernel (6.18, ext4) a 2 MiB-aligned 2 MiB write into the page
 * cache cost about 3x the system time of 1 MiB writes (decrypting 1 GiB: 3.4 s sys vs 1.1 s;
 * perf: copy_folio_from_iter_atomic); 8 and 12 chunks were no faster than 16.
 */
export const BATCH_CHUNKS = 16;
const IN_FLIGHT_PER_WORKER = 2;

/**
 * Workers for `cores` usable cores at a one-minute load average of `load`: one per core nobody
 * else is using, and 1 (the sequential loop) when fewer than two are free. Extra threads only
 * help when cores are idle: on the shared 2-core machine at load 6-9, two workers took 20-40%
 * longer than one thread for 512 MiB (the threads' start-up and the buffer hand-over are extra
 * CPU, and there was no idle core to run them on).
 */
export function workersForLoad(cores: number, load: number): number {
	const idle = Math.round(cores - (Number.isFinite(load) && load > 0 ? load : 0));
	return idle >= 2 ? Math.min(cores, idle) : 1;
}

/** The default worker count: workersForLoad for this process's cores and the machine's load. */
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
	readonly workers: number;
	readonly batchChunks?: number;
	/** The worker's code (a CommonJS string); tests pass a failing one. Default: the bundled worker. */
	readonly workerCode?: string;
}

type Done = {length: number; input: ArrayBuffer; output: ArrayBuffer};

function replyError(reply: Extract<BatchReply, {ok: false}>): Error {
	if (reply.age) return new AgeError(reply.code as AgeErrorCode, reply.message);
	const error: NodeJS.ErrnoException = new Error(reply.message);
	if (reply.code !== undefined) error.code = reply.code;
	return error;
}

async function readExactly(handle: FileHandle, buffer: Uint8Array, length: number, position: number): Promise<void> {
	let done = 0;
	while (done < length) {
		const {bytesRead} = await handle.read(buffer, done, length - done, position + done);
		if (bytesRead === 0) throw new Error('the input file became shorter while it was being read');
		done += bytesRead;
	}
}

async function writeExactly(handle: FileHandle, buffer: Uint8Array, length: number, position: number): Promise<void> {
	let done = 0;
	while (done < length) done += (await handle.write(buffer, done, length - done, position + done)).bytesWritten;
}

/** Seal or open every chunk of `job` on worker threads; resolves when all are written. */
export async function runChunkWorkers(job: ChunkJob, options: ParallelOptions): Promise<void> {
	const batchChunks = options.batchChunks ?? BATCH_CHUNKS;
	const batches = Math.ceil(job.chunks / batchChunks);
	const workerCount = Math.max(1, Math.min(options.workers, batches));
	const seal = job.direction === 'seal';
	const inChunk = seal ? CHUNK_SIZE : SEALED_CHUNK_SIZE;
	const outChunk = seal ? SEALED_CHUNK_SIZE : CHUNK_SIZE;
	const setup: WorkerSetup = {direction: job.direction, payloadKey: job.payloadKey};

	// Results by batch index, and who waits for which batch.
	const results = new Map<number, Done>();
	let waiting: {batch: number; resolve: (done: Done) => void; reject: (error: Error) => void} | undefined;
	let failure: {batch: number; error: Error} | undefined;
	let closing = false;
	const fail = (batch: number, error: Error): void => {
		if (failure === undefined || batch < failure.batch) failure = {batch, error};
		if (waiting !== undefined && failure.batch <= waiting.batch) {
			const {reject} = waiting;
			waiting = undefined;
			reject(failure.error);
		}
	};
	const arrived = (batch: number, done: Done): void => {
		results.set(batch, done);
		if (waiting?.batch === batch) {
			const {resolve} = waiting;
			waiting = undefined;
			resolve(done);
		}
	};
	const resultOf = (batch: number): Promise<Done> =>
		new Promise((resolve, reject) => {
			const done = results.get(batch);
			if (done !== undefined) resolve(done);
			else if (failure !== undefined && failure.batch <= batch) reject(failure.error);
			else waiting = {batch, resolve, reject};
		});

	const workers: Worker[] = [];
	const load: number[] = [];
	try {
		for (let i = 0; i < workerCount; i++) {
			const worker = new Worker(options.workerCode ?? ageWorkerCode, {eval: true, workerData: setup});
			workers.push(worker);
			load.push(0);
			let gone = false;
			worker.on('message', (reply: BatchReply) => {
				load[i]!--;
				const batch = reply.first / batchChunks;
				if (reply.ok) arrived(batch, {length: reply.length, input: reply.input, output: reply.output});
				else fail(batch, replyError(reply));
			});
			const lost = (reason: string): void => {
				if (gone || closing) return;
				gone = true;
				fail(-1, new Error(`an age worker thread stopped unexpectedly (${reason}); nothing was written to the destination`));
			};
			worker.on('error', error => lost(error.message.split('\n')[0] ?? 'error'));
			worker.on('exit', code => lost(`exit code ${code}`));
		}

		const bufferBytes = batchChunks * SEALED_CHUNK_SIZE;
		const free: Array<{input: ArrayBuffer; output: ArrayBuffer}> = [];
		for (let i = 0; i < workerCount * IN_FLIGHT_PER_WORKER; i++) free.push({input: new ArrayBuffer(bufferBytes), output: new ArrayBuffer(bufferBytes)});
		let nextRead = 0;
		for (let nextWrite = 0; nextWrite < batches; nextWrite++) {
			// Keep every free buffer pair busy: read the next batches, in file order, and hand each
			// to the least loaded worker.
			while (free.length > 0 && nextRead < batches && failure === undefined) {
				const pair = free.pop()!;
				const first = nextRead * batchChunks;
				const final = nextRead === batches - 1;
				const length = final ? job.inputBytes - first * inChunk : batchChunks * inChunk;
				await readExactly(job.input, new Uint8Array(pair.input), length, job.inputStart + first * inChunk);
				if (failure !== undefined) break;
				const target = load.indexOf(Math.min(...load));
				load[target]!++;
				const request: BatchRequest = {first, final, length, input: pair.input, output: pair.output};
				workers[target]!.postMessage(request, [pair.input, pair.output]);
				nextRead++;
			}
			const done = await resultOf(nextWrite);
			results.delete(nextWrite);
			await writeExactly(job.output, new Uint8Array(done.output), done.length, job.outputStart + nextWrite * batchChunks * outChunk);
			free.push({input: done.input, output: done.output});
		}
	} finally {
		closing = true;
		await Promise.all(workers.map(async worker => worker.terminate()));
	}
	if (failure !== undefined) throw failure.error;
}

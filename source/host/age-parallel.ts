/**
 * The parallel age file loop: the payload's chunks are independent given their index (the
 * STREAM nonce is the chunk counter plus the last-chunk flag), so worker threads seal or open
 * batches of them at once, each reading its batch from the input and writing the result at its
 * place in the output (source/host/age-worker.ts). The main thread only hands out chunk indices.
 *
 * Memory is bounded by the workers' fixed buffers (2 x batchChunks x 64 KiB each), whatever the
 * file size; at most IN_FLIGHT_PER_WORKER batch numbers wait per worker.
 *
 * Failure: the first failing batch stops the hand-out; the batches in flight finish (so the
 * error reported is the lowest failing chunk, as a sequential pass would report), every worker is
 * terminated and has exited before this returns, so no worker touches the descriptors after the
 * caller closes them. A worker that dies fails the run the same way. The caller writes into a
 * temporary file it deletes on failure (age-files.ts), so no partial output is ever presented.
 */
import {availableParallelism} from 'node:os';
import {Worker} from 'node:worker_threads';
import {AgeError, type AgeErrorCode} from '../crypto/age.js';
import type {BatchReply, WorkerSetup} from './age-worker.js';
import {ageWorkerCode} from './age-worker.generated.js';

/** Chunks per batch message: 32 x 64 KiB = 2 MiB read, sealed and written per message. */
export const BATCH_CHUNKS = 32;
const IN_FLIGHT_PER_WORKER = 2;

/** The default worker count: one per core the process may use. */
export function defaultWorkers(): number {
	return Math.max(1, availableParallelism());
}

export type ChunkJob = Omit<WorkerSetup, 'batchChunks'>;

export interface ParallelOptions {
	readonly workers: number;
	readonly batchChunks?: number;
	/** The worker's code (a CommonJS string); tests pass a failing one. Default: the bundled worker. */
	readonly workerCode?: string;
}

type Failure = {first: number; error: Error};

function replyError(reply: Extract<BatchReply, {ok: false}>): Error {
	if (reply.age) return new AgeError(reply.code as AgeErrorCode, reply.message);
	const error: NodeJS.ErrnoException = new Error(reply.message);
	if (reply.code !== undefined) error.code = reply.code;
	return error;
}

/** Seal or open every chunk of `job` on worker threads; resolves when all are written. */
export async function runChunkWorkers(job: ChunkJob, options: ParallelOptions): Promise<void> {
	const batchChunks = options.batchChunks ?? BATCH_CHUNKS;
	const batches = Math.ceil(job.chunks / batchChunks);
	const workerCount = Math.max(1, Math.min(options.workers, batches));
	const setup: WorkerSetup = {...job, batchChunks};
	const workers: Worker[] = [];
	let next = 0;
	let outstanding = 0;
	let closing = false;
	let failure: Failure | undefined;
	let settle!: () => void;
	const done = new Promise<void>(resolve => {
		settle = resolve;
	});

	const fail = (first: number, error: Error): void => {
		if (failure === undefined || first < failure.first) failure = {first, error};
	};
	const finishIfIdle = (): void => {
		if (outstanding === 0 && (failure !== undefined || next >= batches)) settle();
	};

	try {
		for (let i = 0; i < workerCount; i++) {
			const worker = new Worker(options.workerCode ?? ageWorkerCode, {eval: true, workerData: setup});
			workers.push(worker);
			let pending = 0; // batches sent to this worker and not answered
			let gone = false;
			const dispatch = (): void => {
				if (failure !== undefined || next >= batches) return;
				worker.postMessage({first: next * batchChunks});
				next++;
				outstanding++;
				pending++;
			};
			worker.on('message', (reply: BatchReply) => {
				outstanding--;
				pending--;
				if (!reply.ok) fail(reply.first, replyError(reply));
				dispatch();
				finishIfIdle();
			});
			const lost = (reason: string): void => {
				if (gone || closing) return;
				gone = true;
				// Its batches will never be answered: the run fails, nothing more is handed out.
				outstanding -= pending;
				pending = 0;
				fail(-1, new Error(`an age worker thread stopped unexpectedly (${reason}); nothing was written to the destination`));
				finishIfIdle();
			};
			worker.on('error', error => lost(error.message.split('\n')[0] ?? 'error'));
			worker.on('exit', code => lost(`exit code ${code}`));
			for (let k = 0; k < IN_FLIGHT_PER_WORKER; k++) dispatch();
		}
		finishIfIdle();
		await done;
	} finally {
		closing = true;
		await Promise.all(workers.map(async worker => worker.terminate()));
	}
	if (failure !== undefined) throw failure.error;
}

/**
 * The worker thread of the parallel age file loop (source/host/age-parallel.ts). It is bundled
 * into age-worker.generated.ts (scripts/generate-age-worker.mjs) and started from that string,
 * so it runs the same from the sources, dist/, the bundle and the single executable.
 *
 * Every worker does whole batches on its own: it claims the next batch index from a counter
 * shared by all workers (Atomics.add, so batches are claimed in file order), reads the batch's
 * input with a positional read, seals or opens it, and writes the result with one positional
 * writev at the batch's offset in the output. Batch i's offsets are computable in both files
 * (plaintext chunks of 64 KiB, sealed chunks of 64 KiB + 16 after the header and nonce), so no
 * buffer travels between threads and the main thread does nothing per byte. The file
 * descriptors are the main thread's; it closes them only after every worker has exited.
 *
 * A failure sets the shared stop flag, so no worker claims another batch, and is reported with
 * its batch index; batches below it were already claimed and finish (or fail) normally, so the
 * main thread can report the lowest failing chunk, as a sequential pass would.
 */
import {readSync, writevSync} from 'node:fs';
import {parentPort, workerData} from 'node:worker_threads';
import {CHUNK_SIZE, openChunks, SEALED_CHUNK_SIZE, sealChunks} from '../crypto/age-payload.js';
import {AgeError} from '../crypto/age-header.js';
import {RECLAIM_EVERY_BATCHES, reclaimCipherBuffers} from './memory.js';
import {afterWrite, groupPieces} from './write-pieces.js';

/** What the main thread gives each worker. */
export interface WorkerSetup {
	readonly direction: 'seal' | 'open';
	readonly payloadKey: Uint8Array;
	/** The main thread's file descriptors, used with positional reads and writes only. */
	readonly inputFd: number;
	readonly outputFd: number;
	/** File offsets of chunk 0 in the input and in the output. */
	readonly inputStart: number;
	readonly outputStart: number;
	readonly chunks: number;
	readonly inputBytes: number;
	readonly batchChunks: number;
	/** Largest write, in bytes (WRITE_LIMIT). */
	readonly writeLimit: number;
	/** Int32Array view: [NEXT_BATCH] the next unclaimed batch, [STOP] nonzero once anything failed. */
	readonly shared: SharedArrayBuffer;
}
const NEXT_BATCH = 0;
/** age-parallel.ts sets it too, when a worker is lost. */
const STOP = 1;

/** Worker -> main: a failed batch (then the worker stops), or the worker's last word. */
export type WorkerReport =
	| {readonly kind: 'failed'; readonly batch: number; readonly code?: string; readonly message: string; readonly age: boolean}
	| {readonly kind: 'done'; readonly batches: number};

function readExactly(fd: number, buffer: Buffer, length: number, position: number): void {
	let done = 0;
	while (done < length) {
		const bytesRead = readSync(fd, buffer, done, length - done, position + done);
		if (bytesRead === 0) throw new Error('the input file became shorter while it was being read');
		done += bytesRead;
	}
}

/** Write `pieces` at `position`, in writevs of at most `limit` bytes each (see WRITE_LIMIT in age-parallel.ts). */
function writeAllAt(fd: number, pieces: Buffer[], position: number, limit: number): void {
	let at = position;
	for (let rest of groupPieces(pieces, limit)) {
		while (rest.length > 0) {
			const written = writevSync(fd, rest, at);
			at += written;
			rest = afterWrite(rest, written);
		}
	}
}

function run(setup: WorkerSetup): void {
	const seal = setup.direction === 'seal';
	const inChunk = seal ? CHUNK_SIZE : SEALED_CHUNK_SIZE;
	const outChunk = seal ? SEALED_CHUNK_SIZE : CHUNK_SIZE;
	const batches = Math.ceil(setup.chunks / setup.batchChunks);
	const shared = new Int32Array(setup.shared);
	const input = Buffer.allocUnsafe(setup.batchChunks * inChunk);
	let processed = 0;
	for (;;) {
		if (Atomics.load(shared, STOP) !== 0) break;
		const batch = Atomics.add(shared, NEXT_BATCH, 1);
		if (batch >= batches) break;
		try {
			const first = batch * setup.batchChunks;
			const final = batch === batches - 1;
			const length = final ? setup.inputBytes - first * inChunk : setup.batchChunks * inChunk;
			readExactly(setup.inputFd, input, length, setup.inputStart + first * inChunk);
			const source = input.subarray(0, length);
			const pieces = seal ? sealChunks(setup.payloadKey, first, source, final) : openChunks(setup.payloadKey, first, source, final);
			writeAllAt(setup.outputFd, pieces, setup.outputStart + first * outChunk, setup.writeLimit);
			processed++;
			// Free dead cipher buffers now: each worker's heap holds them until a GC.
			if (processed % RECLAIM_EVERY_BATCHES === 0) reclaimCipherBuffers();
		} catch (error) {
			Atomics.store(shared, STOP, 1);
			const age = error instanceof AgeError;
			const code = age ? error.code : (error as NodeJS.ErrnoException).code;
			const message = error instanceof Error ? error.message : String(error);
			const report: WorkerReport = {kind: 'failed', batch, age, message, ...(code === undefined ? {} : {code})};
			parentPort?.postMessage(report);
			break;
		}
	}
	const report: WorkerReport = {kind: 'done', batches: processed};
	parentPort?.postMessage(report);
}

run(workerData as WorkerSetup);

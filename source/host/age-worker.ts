/**
 * The worker thread of the parallel age file loop (source/host/age-parallel.ts). It is bundled
 * into age-worker.generated.ts (scripts/generate-age-worker.mjs) and started from that string,
 * so it runs the same from the sources, dist/, the bundle and the single executable.
 *
 * Every worker does whole batches on its own: it claims the next batch index from a counter
 * shared by all lanes (Atomics.add, so batches are claimed in file order), reads the batch's
 * input with a positional read, seals or opens it, and writes the result with positional
 * writevs at the batch's offset in the output (age-lane.ts, which the main thread's lane runs
 * too). Batch i's offsets are computable in both files (plaintext chunks of 64 KiB, sealed
 * chunks of 64 KiB + 16 after the header and nonce), so no buffer travels between threads. The file
 * descriptors are the main thread's; it closes them only after every worker has exited.
 *
 * A failure sets the shared stop flag, so no worker claims another batch, and is reported with
 * its batch index; batches below it were already claimed and finish (or fail) normally, so the
 * main thread can report the lowest failing chunk, as a sequential pass would.
 */
import {parentPort, workerData} from 'node:worker_threads';
import {AgeError} from '../crypto/age-header.js';
import {batchCount, Lane, type LaneJob} from './age-lane.js';
import {RECLAIM_EVERY_BATCHES, reclaimCipherBuffers} from './memory.js';

/** What the main thread gives each worker: the lanes' job and the shared counters. */
export interface WorkerSetup extends LaneJob {
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

function run(setup: WorkerSetup): void {
	const batches = batchCount(setup);
	const shared = new Int32Array(setup.shared);
	const lane = new Lane(setup, shared);
	let processed = 0;
	let done = 0;
	const report = (batch: number, error: unknown): void => {
		Atomics.store(shared, STOP, 1);
		const age = error instanceof AgeError;
		const code = age ? error.code : (error as NodeJS.ErrnoException).code;
		const message = error instanceof Error ? error.message : String(error);
		const failed: WorkerReport = {kind: 'failed', batch, age, message, ...(code === undefined ? {} : {code})};
		parentPort?.postMessage(failed);
	};
	for (;;) {
		if (Atomics.load(shared, STOP) !== 0) break;
		const batch = Atomics.add(shared, NEXT_BATCH, 1);
		if (batch >= batches) break;
		try {
			processed += lane.run(batch);
		} catch (error) {
			report(batch, error);
			break;
		}
		done++;
		// Free dead cipher buffers now: each worker's heap holds them until a GC.
		if (done % RECLAIM_EVERY_BATCHES === 0) reclaimCipherBuffers();
	}
	// After a failure the kept batch is not written: the run fails, its output is deleted.
	if (Atomics.load(shared, STOP) === 0) {
		try {
			processed += lane.finish();
		} catch (error) {
			report(batches, error);
		}
	}
	// The last word even after a failure: the main thread tells a lost worker by its absence.
	const last: WorkerReport = {kind: 'done', batches: processed};
	parentPort?.postMessage(last);
}

run(workerData as WorkerSetup);

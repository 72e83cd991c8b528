/**
 * The worker thread of the parallel age file loop (source/host/age-parallel.ts). It is bundled
 * into age-worker.generated.ts (scripts/generate-age-worker.mjs) and started from that string,
 * so it runs the same from the sources, dist/, the bundle and the single executable.
 *
 * The worker only computes: the main thread reads each batch of chunks, transfers its input
 * buffer and an output buffer here, and gets both back (transferred, never copied between
 * threads) with the sealed or opened batch in the output buffer. File I/O stays on one thread,
 * in file order: with the workers reading and writing the file themselves the kernel's copies
 * cost 3-5x more (perf: copy_folio_from_iter_atomic 34% of all samples vs 7% sequentially).
 */
import {parentPort, workerData} from 'node:worker_threads';
import {openChunks, sealChunks} from '../crypto/age-payload.js';
import {AgeError} from '../crypto/age-header.js';
import {reclaimCipherBuffers} from './memory.js';

/** What the main thread gives each worker. */
export interface WorkerSetup {
	readonly direction: 'seal' | 'open';
	readonly payloadKey: Uint8Array;
}
/** Main -> worker: the batch starting at chunk `first`, `length` input bytes in `input`. */
export type BatchRequest = {readonly first: number; readonly final: boolean; readonly length: number; readonly input: ArrayBuffer; readonly output: ArrayBuffer};
/** Worker -> main: the buffers back, and the batch's output length or the error. */
export type BatchReply = {readonly first: number; readonly input: ArrayBuffer; readonly output: ArrayBuffer} & (
	| {readonly ok: true; readonly length: number}
	| {readonly ok: false; readonly code?: string; readonly message: string; readonly age: boolean}
);

const setup = workerData as WorkerSetup;
const seal = setup.direction === 'seal';

function runBatch({first, final, length, input, output}: BatchRequest): number {
	const source = new Uint8Array(input, 0, length);
	const pieces = seal ? sealChunks(setup.payloadKey, first, source, final) : openChunks(setup.payloadKey, first, source, final);
	const target = Buffer.from(output);
	let at = 0;
	for (const piece of pieces) at += piece.copy(target, at);
	// Free the batch's dead cipher buffers now: each worker's heap holds them until a GC.
	reclaimCipherBuffers();
	return at;
}

parentPort?.on('message', (request: BatchRequest) => {
	const {first, input, output} = request;
	let reply: BatchReply;
	try {
		reply = {first, input, output, ok: true, length: runBatch(request)};
	} catch (error) {
		const age = error instanceof AgeError;
		const code = age ? error.code : (error as NodeJS.ErrnoException).code;
		reply = {first, input, output, ok: false, age, message: error instanceof Error ? error.message : String(error), ...(code === undefined ? {} : {code})};
	}
	parentPort?.postMessage(reply, [input, output]);
});

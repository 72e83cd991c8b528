/**
 * The worker thread of the parallel age file loop (source/host/age-parallel.ts). It is bundled
 * into age-worker.generated.ts (scripts/generate-age-worker.mjs) and started from that string,
 * so it runs the same from the sources, dist/, the bundle and the single executable.
 *
 * The worker reads its batch of chunks from the input file and writes the result to the output
 * file itself, at the positions the chunk indices give (pread/pwrite on descriptors the main
 * thread opened): no payload byte crosses a thread boundary, order is the file's, and memory is
 * one fixed input buffer per worker and the batch's cipher output whatever the file size. Messages carry only chunk indices.
 */
import {readSync, writevSync} from 'node:fs';
import {parentPort, workerData} from 'node:worker_threads';
import {CHUNK_SIZE, openChunks, SEALED_CHUNK_SIZE, sealChunks} from '../crypto/age-payload.js';
import {AgeError} from '../crypto/age-header.js';
import {reclaimCipherBuffers} from './memory.js';

/** What the main thread gives each worker (see ChunkJob in age-parallel.ts). */
export interface WorkerSetup {
	readonly direction: 'seal' | 'open';
	readonly payloadKey: Uint8Array;
	readonly inputFd: number;
	readonly outputFd: number;
	/** File offsets of chunk 0 in the input and in the output. */
	readonly inputStart: number;
	readonly outputStart: number;
	/** Chunks in the payload, and the input bytes of the whole payload. */
	readonly chunks: number;
	readonly inputBytes: number;
	readonly batchChunks: number;
}
/** Main -> worker: process the batch starting at chunk `first`. */
export type BatchRequest = {readonly first: number};
/** Worker -> main. */
export type BatchReply =
	| {readonly first: number; readonly ok: true}
	| {readonly first: number; readonly ok: false; readonly code?: string; readonly message: string; readonly age: boolean};

const setup = workerData as WorkerSetup;
const seal = setup.direction === 'seal';
const inChunk = seal ? CHUNK_SIZE : SEALED_CHUNK_SIZE;
const outChunk = seal ? SEALED_CHUNK_SIZE : CHUNK_SIZE;
const inBuffer = Buffer.allocUnsafe(setup.batchChunks * inChunk);

function readFully(length: number, position: number): void {
	let done = 0;
	while (done < length) {
		const n = readSync(setup.inputFd, inBuffer, done, length - done, position + done);
		if (n === 0) throw new Error('the input file became shorter while it was being read');
		done += n;
	}
}

function writeFully(pieces: Buffer[], position: number): void {
	let at = position;
	let rest = pieces;
	while (rest.length > 0) {
		let written = writevSync(setup.outputFd, rest.slice(0, 1024), at);
		at += written;
		// Drop what was written (a short write may end inside a piece).
		let index = 0;
		while (index < rest.length && written >= rest[index]!.length) written -= rest[index++]!.length;
		rest = rest.slice(index);
		if (written > 0) rest[0] = rest[0]!.subarray(written);
	}
}

function runBatch(first: number): void {
	const count = Math.min(setup.batchChunks, setup.chunks - first);
	const final = first + count === setup.chunks;
	const inputOffset = first * inChunk;
	const length = final ? setup.inputBytes - inputOffset : count * inChunk;
	readFully(length, setup.inputStart + inputOffset);
	const input = inBuffer.subarray(0, length);
	const pieces = seal ? sealChunks(setup.payloadKey, first, input, final) : openChunks(setup.payloadKey, first, input, final);
	writeFully(pieces, setup.outputStart + first * outChunk);
	// Free the batch's dead cipher buffers now: each worker's heap holds them until a GC, and
	// without this peak RSS reached ~150 MB with two workers on 512 MiB (about 90 MB with it).
	reclaimCipherBuffers();
}

parentPort?.on('message', ({first}: BatchRequest) => {
	let reply: BatchReply;
	try {
		runBatch(first);
		reply = {first, ok: true};
	} catch (error) {
		const age = error instanceof AgeError;
		const code = age ? error.code : (error as NodeJS.ErrnoException).code;
		reply = {first, ok: false, age, message: error instanceof Error ? error.message : String(error), ...(code === undefined ? {} : {code})};
	}
	parentPort?.postMessage(reply);
});

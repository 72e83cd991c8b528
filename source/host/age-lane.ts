/**
 * One lane of the parallel age file loop (age-parallel.ts): seal or open whole batches with
 * synchronous positional I/O on descriptors it does not own. The worker threads
 * (age-worker.ts) and the main thread's lane run the same code; the main thread yields to its
 * event loop after every batch (about a millisecond of work), the workers never need to.
 *
 * Synchronous I/O on the main thread, a batch at a time, replaced asynchronous reads and writes
 * there: each of those was a round trip through libuv's thread pool (a wake-up of a pool thread
 * and one of the event loop per read and per write, five per batch), which cost more CPU than
 * the lane's own reads and writes on the 2-core machine (bench/backup, see the commit).
 */
import {readSync, writevSync} from 'node:fs';
import {CHUNK_SIZE, openChunks, SEALED_CHUNK_SIZE, sealChunks} from '../crypto/age-payload.js';
import {afterWrite, groupPieces} from './write-pieces.js';

/** What a lane needs: the same for every lane of one run. */
export interface LaneJob {
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
	/** Largest write, in bytes (WRITE_LIMIT in age-parallel.ts). */
	readonly writeLimit: number;
}

/** Batches in `job`. */
export function batchCount(job: Pick<LaneJob, 'chunks' | 'batchChunks'>): number {
	return Math.ceil(job.chunks / job.batchChunks);
}

function readExactly(fd: number, buffer: Buffer, length: number, position: number): void {
	let done = 0;
	while (done < length) {
		const bytesRead = readSync(fd, buffer, done, length - done, position + done);
		if (bytesRead === 0) throw new Error('the input file became shorter while it was being read');
		done += bytesRead;
	}
}

/** Write `pieces` at `position`, in writevs of at most `limit` bytes each. */
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

/** A lane's buffer and its batch step. */
export class Lane {
	readonly #job: LaneJob;
	readonly #seal: boolean;
	readonly #inChunk: number;
	readonly #outChunk: number;
	readonly #batches: number;
	readonly #input: Buffer;

	constructor(job: LaneJob) {
		this.#job = job;
		this.#seal = job.direction === 'seal';
		this.#inChunk = this.#seal ? CHUNK_SIZE : SEALED_CHUNK_SIZE;
		this.#outChunk = this.#seal ? SEALED_CHUNK_SIZE : CHUNK_SIZE;
		this.#batches = batchCount(job);
		this.#input = Buffer.allocUnsafe(job.batchChunks * this.#inChunk);
	}

	/** Read batch `batch`, seal or open it, write it at its offset in the output. Throws what failed. */
	run(batch: number): void {
		const job = this.#job;
		const first = batch * job.batchChunks;
		const final = batch === this.#batches - 1;
		const length = final ? job.inputBytes - first * this.#inChunk : job.batchChunks * this.#inChunk;
		readExactly(job.inputFd, this.#input, length, job.inputStart + first * this.#inChunk);
		const source = this.#input.subarray(0, length);
		const pieces = this.#seal ? sealChunks(job.payloadKey, first, source, final) : openChunks(job.payloadKey, first, source, final);
		writeAllAt(job.outputFd, pieces, job.outputStart + first * this.#outChunk, job.writeLimit);
	}
}

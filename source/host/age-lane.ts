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

/** Index of the output lock in the lanes' shared Int32Array (0: free, 1: a lane is writing). */
export const OUTPUT_LOCK = 2;
/** Int32 slots the lanes share: [0] next batch, [1] stop (age-parallel.ts), [OUTPUT_LOCK]. */
export const SHARED_SLOTS = 3;

function tryLock(flags: Int32Array): boolean {
	return Atomics.compareExchange(flags, OUTPUT_LOCK, 0, 1) === 0;
}

/**
 * The longest a lane waits for its turn to write. The lock only saves CPU: the lanes write
 * disjoint ranges, so a lane that waited this long writes anyway (a lane lost while it held the
 * lock, e.g. a worker stopped for lack of memory, can then never block the others).
 */
const LOCK_WAIT_MS = 50;

/** Take the output lock, waiting up to LOCK_WAIT_MS; whether it was taken. */
function lock(flags: Int32Array): boolean {
	const deadline = Date.now() + LOCK_WAIT_MS;
	while (!tryLock(flags)) {
		const left = deadline - Date.now();
		if (left <= 0) return false;
		Atomics.wait(flags, OUTPUT_LOCK, 1, left);
	}
	return true;
}

function unlock(flags: Int32Array, locked: boolean): void {
	if (!locked) return;
	Atomics.store(flags, OUTPUT_LOCK, 0);
	Atomics.notify(flags, OUTPUT_LOCK, 1);
}

/**
 * A lane's buffer and its batch step.
 *
 * Writes into one file take its inode lock, and a lane that found it held spun in the kernel
 * until the other lane's write finished: 6-7% of all CPU samples of a 2-lane encryption
 * (perf: rwsem_spin_on_owner, kvm_vcpu_is_preempted). So the lanes take turns through a lock of
 * their own first: a lane whose batch is ready while another lane writes keeps it, reads and
 * seals its next batch meanwhile, and then waits for its turn and writes both. A lane holds at
 * most one finished batch besides the one it works on.
 */
export class Lane {
	readonly #job: LaneJob;
	readonly #flags: Int32Array;
	readonly #seal: boolean;
	readonly #inChunk: number;
	readonly #outChunk: number;
	readonly #batches: number;
	readonly #input: Buffer;
	#kept: {pieces: Buffer[]; position: number} | undefined;

	constructor(job: LaneJob, flags: Int32Array) {
		this.#job = job;
		this.#flags = flags;
		this.#seal = job.direction === 'seal';
		this.#inChunk = this.#seal ? CHUNK_SIZE : SEALED_CHUNK_SIZE;
		this.#outChunk = this.#seal ? SEALED_CHUNK_SIZE : CHUNK_SIZE;
		this.#batches = batchCount(job);
		this.#input = Buffer.allocUnsafe(job.batchChunks * this.#inChunk);
	}

	/**
	 * Read batch `batch` and seal or open it; write it at its offset in the output (with the kept
	 * one) unless another lane is writing and no batch is kept yet. Returns the batches written.
	 * Throws what failed.
	 */
	run(batch: number): number {
		const job = this.#job;
		const first = batch * job.batchChunks;
		const final = batch === this.#batches - 1;
		const length = final ? job.inputBytes - first * this.#inChunk : job.batchChunks * this.#inChunk;
		readExactly(job.inputFd, this.#input, length, job.inputStart + first * this.#inChunk);
		const source = this.#input.subarray(0, length);
		const pieces = this.#seal ? sealChunks(job.payloadKey, first, source, final) : openChunks(job.payloadKey, first, source, final);
		const position = job.outputStart + first * this.#outChunk;
		let locked = tryLock(this.#flags);
		if (!locked && this.#kept === undefined) {
			this.#kept = {pieces, position};
			return 0;
		}
		if (!locked) locked = lock(this.#flags);
		try {
			let written = 0;
			if (this.#kept !== undefined) {
				writeAllAt(job.outputFd, this.#kept.pieces, this.#kept.position, job.writeLimit);
				this.#kept = undefined;
				written++;
			}
			writeAllAt(job.outputFd, pieces, position, job.writeLimit);
			return written + 1;
		} finally {
			unlock(this.#flags, locked);
		}
	}

	/** Write the kept batch, if any (after the last run). Returns the batches written. */
	finish(): number {
		if (this.#kept === undefined) return 0;
		const locked = lock(this.#flags);
		try {
			writeAllAt(this.#job.outputFd, this.#kept.pieces, this.#kept.position, this.#job.writeLimit);
			this.#kept = undefined;
			return 1;
		} finally {
			unlock(this.#flags, locked);
		}
	}
}

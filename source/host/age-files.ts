/**
 * age files on disk: the file loop of the age format (source/crypto/age.ts), with fixed
 * buffers and overlapping I/O, writing atomically. File I/O is the host's: crypto only turns
 * bytes into bytes.
 */
import {randomBytes} from 'node:crypto';
import {open, rename, rm, type FileHandle} from 'node:fs/promises';
import {basename, dirname, join} from 'node:path';
import {
	AgeError,
	MAX_FEED,
	OUTPUT_ROOM,
	resolveIdentities,
	resolveRecipients,
	openedLayout,
	sealedLayout,
	startDecryption,
	startEncryption,
	type DecryptWith,
	type EncryptTo,
	type Processor,
	type Pull,
} from '../crypto/age.js';
import {defaultWorkers, runChunkWorkers, WRITE_LIMIT, type ChunkJob} from './age-parallel.js';
import {reclaimCipherBuffers} from './memory.js';

/**
 * Below this size a file is processed by the sequential loop: a worker thread costs about 50 ms
 * of CPU to start (more on a busy machine before it does any work), a good part of what the
 * second core could take off 64 MiB. bench/backup prints both paths (`--size 64M` shows it).
 */
export const PARALLEL_MIN_BYTES = 64 * 1024 * 1024;

export interface FileOutputOptions {
	/** Mode of the created file; default 0o600. */
	readonly mode?: number;
	/**
	 * fsync the file and its directory before returning (default true). Only turn this off for
	 * scratch output, e.g. benchmarks comparing with tools that do not fsync.
	 */
	readonly sync?: boolean;
	/**
	 * Lanes for a regular file: this thread and `workers - 1` worker threads, each sealing or
	 * opening whole batches with positional I/O (age-parallel.ts). Default: for a file of at least
	 * PARALLEL_MIN_BYTES, defaultWorkers() (2 on a 2-core machine, up to 4 on idle larger ones),
	 * else 1. A number given here is used at any size; 1 is the sequential loop on this thread.
	 */
	readonly workers?: number;
}

/** Lanes for a file of `size` bytes (1: the sequential loop). */
function workersFor(options: FileOutputOptions, regularFile: boolean, size: number): number {
	if (!regularFile) return 1;
	if (options.workers !== undefined) return Math.max(1, Math.floor(options.workers));
	return size >= PARALLEL_MIN_BYTES ? defaultWorkers() : 1;
}

/** Run the workers; an error that is not the age format's names the file it was working on. */
async function runParallel(job: ChunkJob, workers: number, inputPath: string): Promise<void> {
	try {
		await runChunkWorkers(job, {workers});
	} catch (error) {
		if (error instanceof AgeError) throw error;
		const verb = job.direction === 'seal' ? 'encrypting' : 'decrypting';
		throw new Error(`${verb} ${inputPath} failed: ${error instanceof Error ? error.message : String(error)}`, {cause: error});
	}
}

async function checkUnchanged(input: FileHandle, inputPath: string, size: number): Promise<void> {
	if ((await input.stat()).size !== size) {
		throw new Error(`${inputPath} changed size while it was being read: nothing was written; run again when it is no longer being written`);
	}
}

/** Append `length` bytes of `buffer`, in writes of at most WRITE_LIMIT bytes (see there: 1 MiB writes could cost 8x the system time). */
async function writeAll(handle: FileHandle, buffer: Buffer, length: number): Promise<void> {
	let done = 0;
	while (done < length) {
		const {bytesWritten} = await handle.write(buffer, done, Math.min(length - done, WRITE_LIMIT), null);
		done += bytesWritten;
	}
}

/**
 * The file loop: fixed buffers, one read and one write in flight while the current block is
 * processed, so memory stays constant and I/O overlaps the cipher work.
 */
async function pumpFile(
	input: FileHandle,
	output: FileHandle,
	processor: Processor,
	blockSize: number,
	leftover: Buffer,
): Promise<void> {
	// Two read buffers and two output buffers, swapped each round: one of each is busy with I/O
	// while the other is being processed.
	let readBuffer = Buffer.allocUnsafe(blockSize);
	let spareRead = Buffer.allocUnsafe(blockSize);
	let outBuffer = Buffer.allocUnsafe(OUTPUT_ROOM);
	let spareOut = Buffer.allocUnsafe(OUTPUT_ROOM);
	let writing: Promise<void> = Promise.resolve();
	const emit = async (length: number): Promise<void> => {
		await writing; // spareOut is free again once the previous write finished
		writing = writeAll(output, outBuffer, length);
		[outBuffer, spareOut] = [spareOut, outBuffer];
	};
	let reading = input.read(readBuffer, 0, blockSize, null);
	try {
		for (let i = 0; i < leftover.length; i += blockSize) {
			await emit(processor.feed(leftover.subarray(i, i + blockSize), outBuffer));
		}
		for (;;) {
			const {bytesRead} = await reading;
			if (bytesRead === 0) break;
			const block = readBuffer.subarray(0, bytesRead);
			[readBuffer, spareRead] = [spareRead, readBuffer];
			reading = input.read(readBuffer, 0, blockSize, null);
			await emit(processor.feed(block, outBuffer));
		}
		await emit(processor.finish(outBuffer));
		await writing;
	} finally {
		// Never leave an operation running on a handle the caller is about to close.
		await Promise.allSettled([reading, writing]);
	}
}

/**
 * How often (ms) a durable write starts the writeback of what it has written so far. Without it
 * the kernel wrote nothing back before the final fsync (a 1-2 GiB file is far below the dirty
 * background threshold on this 24 GB machine), which then waited for all of it: 1 GiB encrypted
 * with fsync on 2 lanes (2 runs each, load 3.8-4.0) took 1.32-1.37 s without early writeback,
 * 1.07-1.12 s every 50 ms, 1.06-1.12 s every 100 ms, 1.12-1.13 s every 200 ms (without fsync:
 * about 1.0 s; the age command, which does not fsync: 1.11-1.16 s).
 */
const FLUSH_INTERVAL_MS = 100;

/**
 * Start writing `output`'s dirty pages to disk while it is still being written, so the final
 * fsync waits only for the tail. One fdatasync at a time on the thread pool, every
 * FLUSH_INTERVAL_MS. The returned function stops it and throws the first error one of them
 * reported: Linux reports a writeback error to one fsync of an open file description only, so
 * swallowing it here could let the final fsync succeed on lost data.
 */
function flushWhileWriting(output: FileHandle): () => Promise<void> {
	let inFlight: Promise<void> | undefined;
	let failure: unknown;
	const timer = setInterval(() => {
		if (inFlight !== undefined || failure !== undefined) return;
		inFlight = output
			.datasync()
			.catch((error: unknown) => {
				failure = error;
			})
			.finally(() => {
				inFlight = undefined;
			});
	}, FLUSH_INTERVAL_MS);
	return async () => {
		clearInterval(timer);
		await inFlight;
		if (failure !== undefined) throw failure;
	};
}

/**
 * Run `inputPath` through `work` into `outputPath` atomically: a dot-prefixed temporary file in
 * the same directory (created exclusively with `mode`), written back as it grows (flushWhileWriting),
 * fsync, rename, fsync the directory. On any failure the temporary file is removed, so no
 * partial output survives and `outputPath` is untouched.
 */
async function transformFile(
	inputPath: string,
	outputPath: string,
	options: FileOutputOptions,
	work: (input: FileHandle, output: FileHandle) => Promise<void>,
): Promise<void> {
	const mode = options.mode ?? 0o600;
	const durable = options.sync ?? true;
	const directory = dirname(outputPath);
	const temporary = join(directory, `.${basename(outputPath)}.${randomBytes(6).toString('hex')}.partial`);
	const input = await open(inputPath, 'r');
	try {
		const output = await open(temporary, 'wx', mode);
		try {
			const stopFlushing = durable ? flushWhileWriting(output) : undefined;
			try {
				await work(input, output);
			} catch (error) {
				// The work's error is the one to report; a writeback error then changes nothing.
				await stopFlushing?.().catch(() => undefined);
				throw error;
			}
			await stopFlushing?.();
			if (durable) await output.sync();
		} catch (error) {
			await output.close().catch(() => undefined);
			await rm(temporary, {force: true});
			throw error;
		}
		await output.close();
		await rename(temporary, outputPath).catch(async (error: unknown) => {
			await rm(temporary, {force: true});
			throw error;
		});
	} finally {
		await input.close();
	}
	if (!durable) return;
	const directoryHandle = await open(directory, 'r');
	try {
		await directoryHandle.sync();
	} finally {
		await directoryHandle.close();
	}
}

/** Encrypt the file at `inputPath` into `outputPath` (atomic replace, mode 0600 by default). */
export async function encryptFile(
	inputPath: string,
	outputPath: string,
	to: EncryptTo,
	options: FileOutputOptions = {},
): Promise<void> {
	const recipients = resolveRecipients(to);
	await transformFile(inputPath, outputPath, options, async (input, output) => {
		const {prefix, sealer, payloadKey} = await startEncryption(recipients, reclaimCipherBuffers);
		await writeAll(output, prefix, prefix.length);
		const stat = await input.stat();
		const workers = workersFor(options, stat.isFile(), stat.size);
		if (workers === 1) {
			await pumpFile(input, output, sealer, MAX_FEED, Buffer.alloc(0));
			return;
		}
		const {chunks} = sealedLayout(stat.size);
		const job = {direction: 'seal', payloadKey, input, output, inputStart: 0, outputStart: prefix.length, chunks, inputBytes: stat.size} as const;
		await runParallel(job, workers, inputPath);
		await checkUnchanged(input, inputPath, stat.size);
	});
}

/**
 * Decrypt the age file at `inputPath` into `outputPath` (mode 0600 by default). The plaintext is
 * written to a temporary file beside `outputPath` and renamed into place only after the whole
 * file authenticated; on failure the temporary file is deleted and `outputPath` is untouched.
 */
export async function decryptFile(
	inputPath: string,
	outputPath: string,
	keys: DecryptWith,
	options: FileOutputOptions = {},
): Promise<void> {
	const identities = resolveIdentities(keys);
	await transformFile(inputPath, outputPath, options, async (input, output) => {
		let pulled = 0;
		const pull: Pull = async () => {
			const buffer = Buffer.allocUnsafe(64 * 1024);
			const {bytesRead} = await input.read(buffer, 0, buffer.length, null);
			pulled += bytesRead;
			return bytesRead === 0 ? undefined : buffer.subarray(0, bytesRead);
		};
		const {opener, rest, payloadKey} = await startDecryption(pull, identities, reclaimCipherBuffers);
		const stat = await input.stat();
		const workers = workersFor(options, stat.isFile(), stat.size);
		if (workers === 1) {
			await pumpFile(input, output, opener, OUTPUT_ROOM, rest);
			return;
		}
		// The payload's chunks start where the header and nonce end; the file's size says which
		// chunk is the last (and rejects a truncated payload as the sequential opener would).
		const inputStart = pulled - rest.length;
		const inputBytes = stat.size - inputStart;
		const {chunks} = openedLayout(inputBytes);
		const job = {direction: 'open', payloadKey, input, output, inputStart, outputStart: 0, chunks, inputBytes} as const;
		await runParallel(job, workers, inputPath);
		await checkUnchanged(input, inputPath, stat.size);
	});
}

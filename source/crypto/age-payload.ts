/**
 * The age payload: STREAM over ChaCha20-Poly1305 in 64 KiB chunks (c2sp.org/age, "Payload").
 *
 * PayloadSealer and PayloadOpener are synchronous and allocation-light: the caller hands them an
 * input block of at most MAX_FEED bytes and an output buffer of at least OUTPUT_ROOM bytes, and
 * they return how many output bytes they wrote. Drivers (streams, file loops) decide how buffers
 * are allocated or reused.
 */
import {createCipheriv, createDecipheriv} from 'node:crypto';
import {AgeError} from './age-header.js';

/** Plaintext bytes per chunk. */
export const CHUNK_SIZE = 64 * 1024;
export const TAG_BYTES = 16;
export const SEALED_CHUNK_SIZE = CHUNK_SIZE + TAG_BYTES;
export const PAYLOAD_NONCE_BYTES = 16;
/** Chunks per feed: a feed never completes more than this many chunks. */
const CHUNKS_PER_FEED = 16;
/** Largest input block for one feed() call, for either direction. */
export const MAX_FEED = CHUNKS_PER_FEED * CHUNK_SIZE;
/** Output room one feed() or finish() call may need. */
export const OUTPUT_ROOM = CHUNKS_PER_FEED * SEALED_CHUNK_SIZE;

/**
 * node:crypto returns every update() result in a fresh 64 KiB buffer. V8 frees those only when a
 * young-generation GC runs, and its external-memory heuristics let 40-80 MB of dead buffers pile
 * up first (measured: peak RSS 112-135 MB for a bare 2 GiB cipher loop on Node 20). A caller that
 * moves large files passes a `reclaim` hook (the host's: a minor GC, source/host/memory.ts),
 * called every RECLAIM_EVERY_CHUNKS chunks (8 MiB); this module sets no process-wide flag.
 */
export const RECLAIM_EVERY_CHUNKS = 128;
/** Called every RECLAIM_EVERY_CHUNKS chunks so the caller can free dead cipher buffers. */
export type Reclaim = () => void;

function chunkNonce(nonce: Buffer, counter: number, last: boolean): Buffer {
	// 11-byte big-endian counter then the last-chunk flag. Bytes 0..4 stay zero: 2^48 chunks
	// (16 EiB) is far beyond any file.
	nonce.writeUIntBE(counter, 5, 6);
	nonce[11] = last ? 1 : 0;
	return nonce;
}

/**
 * Seal one batch of consecutive chunks: `plaintext` holds whole 64 KiB chunks starting at chunk
 * index `first` (only the final chunk of the payload may be shorter, and it is empty only when
 * the whole payload is). `final` says the batch ends the payload: its last chunk gets the
 * last-chunk flag. Chunks are independent given their index, so batches may be sealed in any
 * order and on any thread; concatenated in index order they are exactly what PayloadSealer
 * writes. Returns the sealed batch as pieces (each chunk's ciphertext, then its tag), to be
 * written in order (one writev): node:crypto returns fresh buffers, and copying them into one
 * buffer would cost a pass over every byte.
 */
export function sealChunks(payloadKey: Uint8Array, first: number, plaintext: Uint8Array, final: boolean): Buffer[] {
	const count = batchChunkCount(first, plaintext.length, CHUNK_SIZE, final);
	const nonce = Buffer.alloc(12);
	const input = Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength);
	const pieces: Buffer[] = [];
	for (let i = 0; i < count; i++) {
		const piece = input.subarray(i * CHUNK_SIZE, Math.min((i + 1) * CHUNK_SIZE, input.length));
		const cipher = createCipheriv('chacha20-poly1305', payloadKey, chunkNonce(nonce, first + i, final && i === count - 1), {
			authTagLength: TAG_BYTES,
		});
		pieces.push(cipher.update(piece));
		cipher.final();
		pieces.push(cipher.getAuthTag());
	}
	return pieces;
}

/**
 * Open one batch of consecutive sealed chunks starting at chunk index `first` (see sealChunks;
 * `final` marks the batch that ends the payload). Every chunk of the batch is authenticated
 * before any plaintext is returned; the first chunk that fails throws AgeError CHUNK_AUTH naming
 * its index, with the message PayloadOpener gives. Returns the plaintext as pieces, in order.
 */
export function openChunks(payloadKey: Uint8Array, first: number, sealed: Uint8Array, final: boolean): Buffer[] {
	const count = batchChunkCount(first, sealed.length, SEALED_CHUNK_SIZE, final);
	const nonce = Buffer.alloc(12);
	const input = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
	const pieces: Buffer[] = [];
	for (let i = 0; i < count; i++) {
		const piece = input.subarray(i * SEALED_CHUNK_SIZE, Math.min((i + 1) * SEALED_CHUNK_SIZE, input.length));
		if (piece.length < TAG_BYTES) throw new AgeError('TRUNCATED', `chunk ${first + i} is incomplete: file is truncated`);
		const decipher = createDecipheriv('chacha20-poly1305', payloadKey, chunkNonce(nonce, first + i, final && i === count - 1), {
			authTagLength: TAG_BYTES,
		});
		decipher.setAuthTag(piece.subarray(piece.length - TAG_BYTES));
		const plaintext = decipher.update(piece.subarray(0, piece.length - TAG_BYTES));
		try {
			decipher.final();
		} catch {
			throw new AgeError('CHUNK_AUTH', `chunk ${first + i} failed authentication: file is truncated or tampered`);
		}
		pieces.push(plaintext);
	}
	return pieces;
}

/** Chunks in a batch of `length` bytes; only a final batch may end in a short (or, alone, empty) chunk. */
function batchChunkCount(first: number, length: number, chunkBytes: number, final: boolean): number {
	if (!final && (length === 0 || length % chunkBytes !== 0)) {
		throw new RangeError('payload batch: a batch that does not end the payload must hold whole chunks');
	}
	if (final && length === 0 && first > 0) throw new RangeError('payload batch: only an empty payload ends in an empty chunk');
	return Math.max(1, Math.ceil(length / chunkBytes));
}

/** How a plaintext of `plaintextBytes` is chunked: chunk count and the sealed payload's size. */
export function sealedLayout(plaintextBytes: number): {chunks: number; sealedBytes: number} {
	const chunks = Math.max(1, Math.ceil(plaintextBytes / CHUNK_SIZE));
	return {chunks, sealedBytes: plaintextBytes + chunks * TAG_BYTES};
}

/**
 * How a sealed payload of `payloadBytes` (after the 16-byte nonce) is chunked, for decrypting
 * chunks by index. Throws the AgeError PayloadOpener.finish gives for a payload that cannot be
 * whole: no chunk, a final chunk shorter than its tag, an empty final chunk after others.
 */
export function openedLayout(payloadBytes: number): {chunks: number; plaintextBytes: number} {
	const whole = Math.floor(payloadBytes / SEALED_CHUNK_SIZE);
	const rest = payloadBytes % SEALED_CHUNK_SIZE;
	if (payloadBytes === 0) throw new AgeError('TRUNCATED', 'file is truncated: the payload has no chunks');
	if (rest === 0) return {chunks: whole, plaintextBytes: payloadBytes - whole * TAG_BYTES};
	if (rest < TAG_BYTES) throw new AgeError('TRUNCATED', `chunk ${whole} is incomplete: file is truncated`);
	if (rest === TAG_BYTES && whole > 0) throw new AgeError('CHUNK_AUTH', `chunk ${whole} is an empty final chunk: file is malformed`);
	return {chunks: whole + 1, plaintextBytes: payloadBytes - (whole + 1) * TAG_BYTES};
}

function checkFeed(block: Buffer, maxBlock: number, out: Buffer, offset: number): void {
	if (block.length > maxBlock || out.length - offset < OUTPUT_ROOM) {
		throw new RangeError('payload feed: block too large or output buffer too small');
	}
}

/**
 * Encrypts plaintext blocks into sealed chunks. A full chunk is only known to be non-final once
 * another byte arrives, so the sealer always holds back the last (up to 64 KiB) bytes until more
 * data or finish().
 */
export class PayloadSealer {
	readonly #key: Buffer;
	readonly #nonce = Buffer.alloc(12);
	readonly #pending = Buffer.allocUnsafe(CHUNK_SIZE);
	#fill = 0;
	#counter = 0;
	#finished = false;

	constructor(
		payloadKey: Buffer,
		private readonly reclaim?: Reclaim,
	) {
		this.#key = payloadKey;
	}

	#seal(plaintext: Buffer, last: boolean, out: Buffer, offset: number): number {
		const cipher = createCipheriv('chacha20-poly1305', this.#key, chunkNonce(this.#nonce, this.#counter++, last), {
			authTagLength: TAG_BYTES,
		});
		let at = offset + cipher.update(plaintext).copy(out, offset);
		cipher.final();
		at += cipher.getAuthTag().copy(out, at);
		if (this.#counter % RECLAIM_EVERY_CHUNKS === 0) this.reclaim?.();
		return at;
	}

	/** Consume `block` (≤ MAX_FEED bytes); writes sealed chunks to `out` at `offset`, returns the new offset. */
	feed(block: Buffer, out: Buffer, offset = 0): number {
		checkFeed(block, MAX_FEED, out, offset);
		let at = offset;
		let read = 0;
		while (read < block.length) {
			if (this.#fill === CHUNK_SIZE) {
				at = this.#seal(this.#pending, false, out, at);
				this.#fill = 0;
			} else if (this.#fill === 0 && block.length - read > CHUNK_SIZE) {
				// A whole chunk with more data after it: seal straight from the input.
				at = this.#seal(block.subarray(read, read + CHUNK_SIZE), false, out, at);
				read += CHUNK_SIZE;
			} else {
				const n = Math.min(CHUNK_SIZE - this.#fill, block.length - read);
				block.copy(this.#pending, this.#fill, read, read + n);
				this.#fill += n;
				read += n;
			}
		}
		return at;
	}

	/** Seal the final chunk (empty only if the whole payload is empty). */
	finish(out: Buffer, offset = 0): number {
		if (this.#finished) throw new Error('payload sealer already finished');
		this.#finished = true;
		return this.#seal(this.#pending.subarray(0, this.#fill), true, out, offset);
	}
}

/**
 * Decrypts sealed chunks. Each chunk's tag is verified before its plaintext is copied to the
 * output, so output never contains unauthenticated bytes.
 */
export class PayloadOpener {
	readonly #key: Buffer;
	readonly #nonce = Buffer.alloc(12);
	readonly #pending = Buffer.allocUnsafe(SEALED_CHUNK_SIZE);
	#fill = 0;
	#counter = 0;
	#finished = false;

	constructor(
		payloadKey: Buffer,
		private readonly reclaim?: Reclaim,
	) {
		this.#key = payloadKey;
	}

	#open(sealed: Buffer, last: boolean, out: Buffer, offset: number): number {
		const decipher = createDecipheriv('chacha20-poly1305', this.#key, chunkNonce(this.#nonce, this.#counter, last), {
			authTagLength: TAG_BYTES,
		});
		decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
		const plaintext = decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES));
		try {
			decipher.final();
		} catch {
			throw new AgeError('CHUNK_AUTH', `chunk ${this.#counter} failed authentication: file is truncated or tampered`);
		}
		this.#counter++;
		const at = offset + plaintext.copy(out, offset);
		if (this.#counter % RECLAIM_EVERY_CHUNKS === 0) this.reclaim?.();
		return at;
	}

	/** Consume `block` (≤ OUTPUT_ROOM bytes); writes authenticated plaintext to `out`, returns the new offset. */
	feed(block: Buffer, out: Buffer, offset = 0): number {
		checkFeed(block, OUTPUT_ROOM, out, offset);
		let at = offset;
		let read = 0;
		while (read < block.length) {
			if (this.#fill === SEALED_CHUNK_SIZE) {
				at = this.#open(this.#pending, false, out, at);
				this.#fill = 0;
			} else if (this.#fill === 0 && block.length - read > SEALED_CHUNK_SIZE) {
				at = this.#open(block.subarray(read, read + SEALED_CHUNK_SIZE), false, out, at);
				read += SEALED_CHUNK_SIZE;
			} else {
				const n = Math.min(SEALED_CHUNK_SIZE - this.#fill, block.length - read);
				block.copy(this.#pending, this.#fill, read, read + n);
				this.#fill += n;
				read += n;
			}
		}
		return at;
	}

	/** The input ended: the held-back chunk must authenticate as the final one. */
	finish(out: Buffer, offset = 0): number {
		if (this.#finished) throw new Error('payload opener already finished');
		this.#finished = true;
		if (this.#fill < TAG_BYTES) {
			throw new AgeError(
				'TRUNCATED',
				this.#counter === 0 && this.#fill === 0
					? 'file is truncated: the payload has no chunks'
					: `chunk ${this.#counter} is incomplete: file is truncated`,
			);
		}
		if (this.#fill === TAG_BYTES && this.#counter > 0) {
			throw new AgeError('CHUNK_AUTH', `chunk ${this.#counter} is an empty final chunk: file is malformed`);
		}
		return this.#open(this.#pending.subarray(0, this.#fill), true, out, offset);
	}
}

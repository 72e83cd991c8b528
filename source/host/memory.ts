/**
 * Freeing cipher buffers while large files stream (see source/crypto/age-payload.ts): a minor
 * GC every 8 MiB keeps peak RSS near 70 MB instead of 110-135 MB on a 2 GiB file. The host
 * owns this process-wide effect: `--expose-gc` is set only the first time a large file is
 * encrypted or decrypted, and only makes `gc` available to a new context, so the main context
 * is unchanged. If any of it is unavailable, files stream without it.
 *
 * Freed is not yet reusable: every chunk's output is a fresh 64 KiB malloc, and glibc returns
 * freed memory at the top of its heap to the kernel once more than M_TRIM_THRESHOLD (128 KiB by
 * default) is free there, so after each reclaim the next batch's buffers were faulted in (and
 * zeroed by the kernel) again. glibc raises that threshold to twice the size of the largest
 * mmap'd block freed so far (up to 32 MiB: mallopt(3), "dynamic mmap threshold"), so the first
 * call allocates and frees one KEEP_FREED_BYTES block (never touched, so it costs no memory):
 * freed cipher buffers then stay in the heap and are reused, and RSS does not grow, as the heap
 * only ever holds what is live between two reclaims. Measured on the 2-core machine, 16,384
 * chunks with a minor GC every 16: 177,191 page faults and 0.60 s of system time without it in
 * one run of two (3,005 in the other: whether some earlier free had raised the threshold was
 * luck), 1,028-1,063 and 0.06 s with it in both.
 */
import {getHeapStatistics, setFlagsFromString} from 'node:v8';
import {runInNewContext} from 'node:vm';

/**
 * V8's gc(). Called without options it is a full, synchronous collection; with an options object
 * ({type: 'major', execution: 'sync'}) node 20's V8 collected next to nothing (measured: 129 MB of
 * garbage -> 3 MB with gc(), 42 -> 42 MB with the options), so the governor calls it bare.
 */
type GcFunction = (options?: {type: 'minor' | 'major'; execution: 'sync' | 'async'}) => void;
let gcFunction: GcFunction | null | undefined;

/**
 * The parallel lanes (age-parallel.ts, age-worker.ts) reclaim after every this many batches of
 * 1 MiB. Once freed buffers are reused (above), a minor GC per batch cost more than it saved:
 * 1 GiB encrypted on 2 lanes (3 runs each, load 1.8-1.9) took 1.01-1.04 s and 1.00-1.10 s of user
 * time reclaiming every batch, 0.88-0.94 s and 0.91-1.01 s every 4 (peak RSS 76 -> 82 MB), and
 * no less every 16 (peak RSS 105-108 MB).
 */
export const RECLAIM_EVERY_BATCHES = 4;

/** Below glibc's 32 MiB cap (DEFAULT_MMAP_THRESHOLD_MAX) with its chunk header, far above 128 KiB. */
const KEEP_FREED_BYTES = 24 * 1024 * 1024;
let keepingFreed = false;

function findGc(): GcFunction | null {
	try {
		const existing = (globalThis as {gc?: unknown}).gc;
		if (typeof existing === 'function') return existing as GcFunction;
		setFlagsFromString('--expose-gc');
		const gc: unknown = runInNewContext('gc');
		return typeof gc === 'function' ? (gc as GcFunction) : null;
	} catch {
		return null;
	}
}

/** V8's gc(), from a new context the first time it is needed; null where it cannot be had. */
function gcOnce(): GcFunction | null {
	if (gcFunction === undefined) gcFunction = findGc();
	return gcFunction;
}

export function reclaimCipherBuffers(): void {
	if (!keepingFreed) {
		keepingFreed = true;
		// An uninitialised Buffer this large is one mmap that is never touched; the minor GC below
		// frees it (munmap), which is what raises glibc's trim threshold (see above). Harmless
		// with another allocator. Only for cipher streams: the heap governor below does not need it.
		Buffer.allocUnsafe(KEEP_FREED_BYTES);
	}
	try {
		gcOnce()?.({type: 'minor', execution: 'sync'});
	} catch {
		gcFunction = null;
	}
}

/** Bytes as MB with one decimal, for the governor's log and the trace. */
function mb(bytes: number): string {
	return (bytes / 1048576).toFixed(1);
}

/** How much garbage the old generation may gather above its live size before a collection. */
export const HEAP_SLACK_BYTES = 24 * 1024 * 1024;
/** How often the governor looks (an unref'd timer: it never keeps the process alive). */
export const HEAP_CHECK_MS = 1000;

/**
 * Keep the JS heap near what is live during long runs. A re-encryption of 40,000 objects keeps
 * 10-25 MB live but, on a machine with memory to spare, V8 lets the garbage of every object it
 * rewrote pile up in the old generation until its own limit: about 100 MB of heap, RSS growing
 * with the object count (measured: 160 -> 203 MB over 40,000 objects, with no full collection
 * in between). Once a second this looks at the heap (and the memory outside it that only a
 * collection frees), and when it holds HEAP_SLACK_BYTES more than what the last collection left,
 * runs a full collection, synchronously: what it leaves is the next floor. (An incremental one
 * left the governor looking at a heap still full of garbage a second later, and taking that for
 * the floor: at 100,000 secrets the heap then grew to 56 MB + 30 MB outside it before the next.)
 * A full collection of this heap takes a few tens of ms, once every few seconds at most. Without
 * gc() (see reclaimCipherBuffers) it does nothing. Returns the function that stops it.
 */
export function governHeap(slackBytes = HEAP_SLACK_BYTES, everyMs = HEAP_CHECK_MS, log?: (line: string) => void): () => void {
	const floor = new HeapFloor(slackBytes);
	const held = (): number => {
		const heap = getHeapStatistics();
		return heap.used_heap_size + heap.external_memory;
	};
	const timer = setInterval(() => {
		const before = held();
		if (!floor.observe(before)) return;
		const started = performance.now();
		try {
			gcOnce()?.();
		} catch {
			gcFunction = null;
		}
		const after = held();
		floor.collected(after);
		log?.(`memory governor: ${gcFunction ? 'collected' : 'no gc()'} ${mb(before)} -> ${mb(after)} MB in ${(performance.now() - started).toFixed(0)} ms\n`);
	}, everyMs);
	timer.unref();
	return () => clearInterval(timer);
}

/**
 * The governor's decision: collect when the heap holds `slackBytes` more than its floor: what
 * the last collection left (`collected`), or before any, the lowest it was seen at.
 */
export class HeapFloor {
	private floor = Number.POSITIVE_INFINITY;

	constructor(private readonly slackBytes: number) {}

	/** Whether to start a collection now, the heap holding `usedBytes`. */
	observe(usedBytes: number): boolean {
		this.floor = Math.min(this.floor, usedBytes);
		return usedBytes - this.floor >= this.slackBytes;
	}

	/** A collection left `usedBytes`: the new floor. */
	collected(usedBytes: number): void {
		this.floor = usedBytes;
	}
}

/**
 * A memory trace for finding where RSS grows (ETCD_HARDEN_TRACE_MEMORY=1): every `everyMs`, one
 * line to `write` with RSS, the JS heap, external and ArrayBuffer memory (MB) and what the run is
 * doing (`phase`), plus the peak RSS seen. Off unless asked for: nothing of it runs otherwise.
 * Returns the function that stops it (and writes the last line).
 */
export function traceMemory(phase: () => string, write: (line: string) => void, everyMs = 250): () => void {
	const started = Date.now();
	let peak = 0;
	let last = '';
	const sample = (force: boolean): void => {
		const usage = process.memoryUsage();
		peak = Math.max(peak, usage.rss);
		const now = phase();
		const line = `rss=${mb(usage.rss)} heap=${mb(usage.heapUsed)}/${mb(usage.heapTotal)} external=${mb(usage.external)} arrayBuffers=${mb(usage.arrayBuffers)} peak=${mb(peak)} ${now}`;
		if (!force && line === last) return;
		last = line;
		write(`memory t=${((Date.now() - started) / 1000).toFixed(2)}s ${line}\n`);
	};
	const timer = setInterval(() => sample(false), everyMs);
	timer.unref();
	return () => {
		clearInterval(timer);
		sample(true);
	};
}

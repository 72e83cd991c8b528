/**
 * Freeing cipher buffers while large files stream (see source/crypto/age-payload.ts): a minor
 * GC every 8 MiB keeps peak RSS near 70 MB instead of 110-135 MB on a 2 GiB file. The host
 * owns this process-wide effect: `--expose-gc` is set only the first time a large file is
 * encrypted or decrypted, and only makes `gc` available to a new context, so the main context
 * is unchanged. If any of it is unavailable, files stream without it.
 */
import {getHeapStatistics, setFlagsFromString} from 'node:v8';
import {runInNewContext} from 'node:vm';

type GcFunction = (options: {type: 'minor' | 'major'; execution: 'sync' | 'async'}) => void;
let gcFunction: GcFunction | null | undefined;

/** V8's gc(), from a new context the first time it is needed; null where it cannot be had. */
function gcOnce(): GcFunction | null {
	if (gcFunction === undefined) {
		gcFunction = null;
		try {
			const existing = (globalThis as {gc?: unknown}).gc;
			if (typeof existing === 'function') {
				gcFunction = existing as GcFunction;
			} else {
				setFlagsFromString('--expose-gc');
				const gc: unknown = runInNewContext('gc');
				if (typeof gc === 'function') gcFunction = gc as GcFunction;
			}
		} catch {
			gcFunction = null;
		}
	}
	return gcFunction;
}

export function reclaimCipherBuffers(): void {
	try {
		gcOnce()?.({type: 'minor', execution: 'sync'});
	} catch {
		gcFunction = null;
	}
}

/** How much garbage the old generation may gather above its live size before a collection. */
export const HEAP_SLACK_BYTES = 32 * 1024 * 1024;
/** How often the governor looks (an unref'd timer: it never keeps the process alive). */
export const HEAP_CHECK_MS = 1000;

/**
 * Keep the JS heap near what is live during long runs. A re-encryption of 40,000 objects keeps
 * 10-25 MB live but, on a machine with memory to spare, V8 lets the garbage of every object it
 * rewrote pile up in the old generation until its own limit: about 100 MB of heap, RSS growing
 * with the object count (measured: 160 -> 203 MB over 40,000 objects, with no full collection
 * in between). Once a second this looks at the heap, and when it holds HEAP_SLACK_BYTES more
 * than the lowest it was seen at since the last collection, starts an incremental one (a few ms
 * on the main thread, spread out). Without gc() (see reclaimCipherBuffers) it does nothing.
 * Returns the function that stops it.
 */
export function governHeap(slackBytes = HEAP_SLACK_BYTES, everyMs = HEAP_CHECK_MS): () => void {
	const floor = new HeapFloor(slackBytes);
	const timer = setInterval(() => {
		if (!floor.observe(getHeapStatistics().used_heap_size)) return;
		try {
			gcOnce()?.({type: 'major', execution: 'async'});
		} catch {
			gcFunction = null;
		}
	}, everyMs);
	timer.unref();
	return () => clearInterval(timer);
}

/**
 * The governor's decision: collect when the heap holds `slackBytes` more than the lowest it was
 * seen at since the last collection (what a collection leaves is the next floor).
 */
export class HeapFloor {
	private floor = Number.POSITIVE_INFINITY;

	constructor(private readonly slackBytes: number) {}

	/** Whether to start a collection now, the heap holding `usedBytes`. */
	observe(usedBytes: number): boolean {
		this.floor = Math.min(this.floor, usedBytes);
		if (usedBytes - this.floor < this.slackBytes) return false;
		this.floor = Number.POSITIVE_INFINITY;
		return true;
	}
}

/**
 * Positional writes of a batch's pieces, shared by the main thread's lane (async) and the worker
 * lanes (sync) of the parallel age loop: pieces grouped into writevs of at most `limit` bytes
 * (see WRITE_LIMIT in age-parallel.ts for why), and a short write continued with what is left.
 * Pure: the caller passes its own writev.
 */

/** The pieces in order, in groups of at most `limit` bytes (a piece larger than `limit` alone). */
export function groupPieces(pieces: readonly Buffer[], limit: number): Buffer[][] {
	const groups: Buffer[][] = [];
	let group: Buffer[] = [];
	let bytes = 0;
	for (const piece of pieces) {
		if (bytes > 0 && bytes + piece.length > limit) {
			groups.push(group);
			group = [];
			bytes = 0;
		}
		group.push(piece);
		bytes += piece.length;
	}
	if (group.length > 0) groups.push(group);
	return groups;
}

/** What is left of `pieces` after a writev wrote `written` bytes of them (a short write is rare for a regular file). */
export function afterWrite(pieces: readonly Buffer[], written: number): Buffer[] {
	const left: Buffer[] = [];
	for (const piece of pieces) {
		if (written >= piece.length) written -= piece.length;
		else {
			left.push(written > 0 ? piece.subarray(written) : piece);
			written = 0;
		}
	}
	return left;
}

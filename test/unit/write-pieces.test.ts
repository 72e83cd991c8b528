// The parallel age loop's positional writes: pieces grouped into writevs under a byte limit, and
// a short write continued exactly where it stopped (both lanes, async and sync, use these).
import {describe, expect, it} from 'vitest';
import {afterWrite, groupPieces} from '../../source/host/write-pieces.js';

const piece = (length: number, fill: number) => Buffer.alloc(length, fill);

describe('write pieces', () => {
	it('groups in order under the limit; a piece over the limit goes alone', () => {
		const pieces = [piece(100, 1), piece(100, 2), piece(100, 3), piece(500, 4), piece(50, 5)];
		expect(groupPieces(pieces, 250).map(group => group.map(p => p[0]))).toEqual([[1, 2], [3], [4], [5]]);
		expect(groupPieces(pieces, 10_000).map(group => group.length)).toEqual([5]);
		expect(groupPieces([], 100)).toEqual([]);
	});

	it('a short write leaves exactly the unwritten bytes, in order', () => {
		const pieces = [piece(10, 1), piece(10, 2), piece(10, 3)];
		for (let written = 0; written <= 30; written++) {
			const left = afterWrite(pieces, written);
			expect(Buffer.concat(left)).toEqual(Buffer.concat(pieces).subarray(written));
		}
	});
});

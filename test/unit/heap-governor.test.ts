import {describe, expect, it} from 'vitest';
import {governHeap, HeapFloor} from '../../source/host/memory.js';

const MB = 1024 * 1024;

/** Feed `looks` (MB) to a floor; where it says collect, the collection leaves `after(mb)`. */
function drive(floor: HeapFloor, looks: number[], after: (mb: number) => number): boolean[] {
	return looks.map(mb => {
		const collect = floor.observe(mb * MB);
		if (collect) floor.collected(after(mb) * MB);
		return collect;
	});
}

describe('the heap governor (host/memory.ts)', () => {
	it('collects once the heap holds the slack above its floor; what the collection left is the next floor', () => {
		const floor = new HeapFloor(32 * MB);
		// A run's heap: 20 MB live, garbage piling up at about 5 MB a look; a collection leaves 22.
		const seen = drive(floor, [20, 25, 30, 40, 51, 53, 27, 40, 55, 30], () => 22);
		// 53 - 20 >= 32: collect, floor 22; 55 - 22 >= 32: collect again.
		expect(seen).toEqual([false, false, false, false, false, true, false, false, true, false]);
	});

	it('a look taken while garbage is still there does not raise the floor (what the collection left does)', () => {
		const floor = new HeapFloor(32 * MB);
		// Collected at 60, leaving 24; the heap is at 50 a second later: 50 - 24 < 32, and at 57 it is due.
		const seen = drive(floor, [25, 60, 50, 57], () => 24);
		expect(seen).toEqual([false, true, false, true]);
	});

	it('a heap that only grows because more is live is collected once per slack, not on every look', () => {
		const floor = new HeapFloor(32 * MB);
		// Nothing is freed: each collection leaves what it found.
		const looks = drive(floor, Array.from({length: 40}, (_, i) => 10 + 4 * i), mb => mb);
		expect(looks.filter(Boolean).length).toBe(4);
		expect(looks.slice(0, 8).every(collect => !collect)).toBe(true);
	});

	it('in this process: when garbage passes the slack, a full collection runs and frees it (gc() with options did not)', async () => {
		const lines: string[] = [];
		const stop = governHeap(8 * MB, 50, line => lines.push(line));
		try {
			await new Promise(resolve => setTimeout(resolve, 120)); // the floor: this process at rest
			// 30 MB or so of objects that live long enough to reach the old generation, then become garbage.
			let held: Array<{index: number; text: string}> | undefined = [];
			for (let index = 0; index < 300_000; index++) held.push({index, text: `object ${index} `.repeat(2)});
			await new Promise(resolve => setTimeout(resolve, 20));
			held = undefined;
			for (let wait = 0; wait < 40 && lines.length === 0; wait++) await new Promise(resolve => setTimeout(resolve, 50));
		} finally {
			stop();
		}
		const collected = lines.map(line => /collected ([\d.]+) -> ([\d.]+) MB/.exec(line)).find(match => match !== null);
		expect(collected, lines.join('')).toBeDefined();
		expect(Number(collected![1]) - Number(collected![2])).toBeGreaterThan(8);
	});
});


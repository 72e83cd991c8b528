import {describe, expect, it} from 'vitest';
import {HeapFloor} from '../../source/host/memory.js';

const MB = 1024 * 1024;

describe('the heap governor (host/memory.ts)', () => {
	it('collects once the heap holds the slack above the lowest it was seen at, then learns the floor again', () => {
		const floor = new HeapFloor(32 * MB);
		// A run's heap: 20 MB live, garbage piling up at about 5 MB a look.
		const seen = [20, 25, 30, 40, 51, 53, 22, 27, 40, 55, 60].map(mb => floor.observe(mb * MB));
		// 53 - 20 >= 32: collect; 22 is the new floor; 55 - 22 >= 32: collect again.
		expect(seen).toEqual([false, false, false, false, false, true, false, false, false, true, false]);
	});

	it('a heap that only grows because more is live is collected once per slack, not on every look', () => {
		const floor = new HeapFloor(32 * MB);
		const looks = Array.from({length: 40}, (_, i) => floor.observe((10 + 4 * i) * MB));
		// 10 -> 42 collects, the next floor is 46 (nothing was freed), 46 -> 78, and so on: every 8th look or so.
		expect(looks.filter(Boolean).length).toBe(4);
		expect(looks.slice(0, 8).every(collect => !collect)).toBe(true);
	});
});

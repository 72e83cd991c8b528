// The adaptive concurrency controller (source/kube/adaptive.ts) against simulated servers on a
// virtual clock: pure logic, no network. The real apiserver's 429s are in test/e2e/reencrypt-adaptive.test.ts.
import {describe, expect, it} from 'vitest';
import {AdaptiveConcurrency} from '../../source/kube/adaptive.js';

/**
 * A processor-sharing server: `slots` requests are served in parallel, each takes `serviceMs`;
 * more in flight queue (latency grows, throughput does not). With `maxInflight`, requests
 * beyond it are refused with 429 and Retry-After (like kube-apiserver's max-inflight filter).
 */
type Server = {slots: number; serviceMs: number; maxInflight?: number; retryAfterSeconds?: number};

/** Run the controller against `server` for `seconds` of virtual time from `now`; returns the rates per window. */
function drive(controller: AdaptiveConcurrency, server: () => Server, seconds: number, start = 0): {now: number; rates: number[]; limits: number[]} {
	let now = start;
	const end = start + seconds * 1000;
	const rates: number[] = [];
	const limits: number[] = [];
	while (now < end) {
		const s = server();
		const wait = controller.waitMs(now);
		if (wait > 0) {
			now += wait;
			continue;
		}
		const limit = controller.limit;
		const admitted = s.maxInflight === undefined ? limit : Math.min(limit, s.maxInflight);
		if (admitted < limit) {
			// The requests over the server's limit are refused at once.
			controller.throttled(now, s.retryAfterSeconds);
			if (controller.limit !== limit) continue;
		}
		const rate = Math.min(admitted, s.slots) / s.serviceMs; // completions per ms
		const latency = Math.max(s.serviceMs, admitted / rate);
		// One batch of `admitted` completions, spread evenly.
		for (let i = 0; i < admitted; i++) {
			now += 1 / rate;
			controller.complete(now, latency);
		}
		rates.push(rate * 1000);
		limits.push(limit);
	}
	return {now, rates, limits};
}

/**
 * A server whose throughput at each limit follows `curve` (interpolated between its points,
 * flat past the last), multiplied by noise that changes every `noiseMs` of virtual time (other
 * work on a shared machine): uniform in [1 - noise, 1 + noise], from a seeded generator.
 */
function driveCurve(controller: AdaptiveConcurrency, curve: Array<[number, number]>, seconds: number, noise: number, seed: number, noiseMs = 300): {rates: number[]; limits: number[]; trueRates: number[]} {
	let state = seed;
	const random = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
	const at = (limit: number): number => {
		if (limit <= curve[0]![0]) return (curve[0]![1] * limit) / curve[0]![0];
		for (let i = 1; i < curve.length; i++) {
			const [x1, y1] = curve[i]!;
			const [x0, y0] = curve[i - 1]!;
			if (limit <= x1) return y0 + ((y1 - y0) * (limit - x0)) / (x1 - x0);
		}
		return curve.at(-1)![1];
	};
	let now = 0;
	let factor = 1;
	let nextNoise = 0;
	const rates: number[] = [];
	const limits: number[] = [];
	const trueRates: number[] = [];
	while (now < seconds * 1000) {
		if (now >= nextNoise) {
			factor = 1 - noise + 2 * noise * random();
			nextNoise = now + noiseMs;
		}
		const limit = controller.limit;
		const rate = (at(limit) * factor) / 1000; // per ms
		const latency = limit / rate;
		for (let i = 0; i < limit; i++) {
			now += 1 / rate;
			controller.complete(now, latency);
		}
		rates.push(rate * 1000);
		limits.push(limit);
		trueRates.push(at(limit));
	}
	return {rates, limits, trueRates};
}

const tail = (values: number[], n = 50) => values.slice(-n);
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

describe('adaptive concurrency', () => {
	it('finds the ceiling of a 2-core-like server from a low start: >= 90% of its best rate at a limit near the knee', () => {
		const controller = new AdaptiveConcurrency({initial: 4});
		const server = {slots: 24, serviceMs: 20}; // ceiling 1200/s at 24 in flight
		const {rates, limits} = drive(controller, () => server, 60);
		expect(controller.history.length).toBeGreaterThan(20);
		expect(mean(tail(rates))).toBeGreaterThanOrEqual(0.9 * 1200);
		// Not far past the knee: past it, latency grows and throughput does not.
		expect(Math.max(...tail(limits))).toBeLessThanOrEqual(48);
	});

	it("on a noisy 2-core-like curve (the testbed's measured rates, +-10% noise) it climbs to the ceiling and stays >= 90% of it", () => {
		// bench/reencrypt's raw probe on the 2-core testbed: rate by fixed number in flight.
		const curve: Array<[number, number]> = [[4, 420], [8, 625], [16, 736], [32, 955], [64, 905], [128, 863]];
		for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
			const controller = new AdaptiveConcurrency({initial: 4});
			const {trueRates, limits} = driveCurve(controller, curve, 20, 0.1, seed);
			// The rate the limits would give without noise, over the last 15 of 20 s (the first
			// seconds are the climb; a 10,000-secret run lasts about 10 s here).
			const late = trueRates.slice(Math.floor(trueRates.length / 4));
			expect(mean(late), `seed ${seed}: limits ${[...new Set(limits)].join(',')}`).toBeGreaterThanOrEqual(0.9 * 955);
		}
	});

	it('keeps mean latency within its budget where throughput creeps up but the queue grows (others would wait behind it)', () => {
		// Past 16 in flight throughput still rises about 12% per doubling, while latency
		// (limit / rate) nearly doubles: 10 ms at 4 in flight, 19 at 32, 34 at 64, 61 at 128.
		const curve: Array<[number, number]> = [[4, 400], [8, 780], [16, 1500], [32, 1700], [64, 1900], [128, 2100], [256, 2300]];
		const controller = new AdaptiveConcurrency({initial: 4, latencyBudget: 3});
		driveCurve(controller, curve, 20, 0, 1);
		const late = controller.history.slice(-20);
		// Within 3x the lowest latency (10 ms), but not far below it (still uses the room).
		expect(Math.max(...late.map(window => window.latencyMs))).toBeLessThanOrEqual(30 * 1.05);
		expect(Math.max(...late.map(window => window.limit))).toBeGreaterThanOrEqual(32);
		// Without a budget, throughput alone takes it far past that.
		const unbounded = new AdaptiveConcurrency({initial: 4, latencyBudget: Infinity});
		driveCurve(unbounded, curve, 20, 0, 1);
		expect(Math.max(...unbounded.history.slice(-20).map(window => window.latencyMs))).toBeGreaterThan(45);
	});

	it('grows far on a big server (a 64-core control plane) and stays at its pinned maximum', () => {
		const controller = new AdaptiveConcurrency({initial: 4, max: 256});
		const {rates} = drive(controller, () => ({slots: 400, serviceMs: 20}), 60);
		expect(controller.limit).toBe(256);
		expect(mean(tail(rates, 10))).toBeGreaterThanOrEqual(0.95 * (256 / 20) * 1000);
	});

	it('backs off when latency rises at the same limit (other clients load the server)', () => {
		const controller = new AdaptiveConcurrency({initial: 4});
		let server: Server = {slots: 32, serviceMs: 10};
		const first = drive(controller, () => server, 30);
		const settled = controller.limit;
		// The server gets 3x slower for everyone: same limit, latency up, nothing more done.
		server = {slots: 8, serviceMs: 30};
		drive(controller, () => server, 30, first.now);
		expect(controller.limit).toBeLessThan(settled);
	});

	it('halves on a 429 and waits out its Retry-After before dispatching again', () => {
		const controller = new AdaptiveConcurrency({initial: 32});
		controller.throttled(1000, 2);
		expect(controller.limit).toBe(16);
		expect(controller.waitMs(1000)).toBe(2000);
		expect(controller.waitMs(2500)).toBe(500);
		expect(controller.waitMs(3000)).toBe(0);
		// A burst of 429s in the same window halves once, not once per answer.
		controller.throttled(3000, 1);
		controller.throttled(3001, 1);
		expect(controller.limit).toBe(16);
	});

	it('under a server that answers 429 above its inflight limit, settles at or around that limit (AIMD) and keeps most of its rate', () => {
		const controller = new AdaptiveConcurrency({initial: 4});
		// Would serve 1600/s at 32, but refuses anything above 12 in flight.
		const {rates, limits} = drive(controller, () => ({slots: 32, serviceMs: 20, maxInflight: 12, retryAfterSeconds: 1}), 120);
		const throttledWindows = controller.history.filter(window => window.throttled > 0).length;
		expect(throttledWindows).toBeGreaterThan(0);
		// Never far above the server's limit for long, and never collapsed to nothing.
		expect(mean(tail(limits, 200))).toBeLessThanOrEqual(16);
		expect(mean(tail(limits, 200))).toBeGreaterThanOrEqual(5);
		expect(mean(tail(rates, 200))).toBeGreaterThanOrEqual(0.5 * (12 / 20) * 1000);
	});

	it('never goes below its minimum nor above its maximum', () => {
		const controller = new AdaptiveConcurrency({initial: 2, min: 2, max: 8});
		for (let i = 0; i < 20; i++) controller.throttled(i * 10_000);
		expect(controller.limit).toBe(2);
		drive(controller, () => ({slots: 100, serviceMs: 5}), 30, 300_000);
		expect(controller.limit).toBe(8);
	});
});

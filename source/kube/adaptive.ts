/**
 * Adaptive concurrency for re-encryption: find the apiserver's ceiling without a number the
 * operator must guess, and without starving the other API clients.
 *
 * Pure logic, time passed in. The re-encryptor reports every finished write (its latency) and
 * every throttling answer (429 with its Retry-After, 5xx, a connection reset); the controller
 * turns them into a limit of writes in flight, decided once per measurement window:
 *
 * - slow start: double the limit while a doubling still raises throughput by a clear margin
 *   (>= 15%);
 * - then hill-climb: a step up of 1/8 is kept only if throughput rose with it (>= 4%); a step that
 *   bought latency without throughput is taken back (the queue grew on the server, not the work
 *   done), and the controller holds for a few windows before it probes again;
 * - back off on rising latency: while holding, a window whose latency rose by half over the
 *   reference at the same limit (the server got busier, e.g. other clients) cuts the limit by 20%;
 * - throttled (429, 5xx, connection errors): cut the limit in half (multiplicative decrease) and
 *   dispatch nothing new until the server's Retry-After has passed.
 *
 * Throughput is what the operator wants; latency at a plateau is what other clients pay, so the
 * controller settles at the smallest limit that reaches the plateau it has measured.
 */

export type AdaptiveOptions = {
	/** First limit (default 4). */
	initial?: number;
	/** Lowest limit (default 1). */
	min?: number;
	/** Highest limit (default 256). */
	max?: number;
	/** Shortest measurement window (default 400 ms). */
	windowMs?: number;
	/** Windows to hold after a useless step up before probing again (default 4). */
	holdWindows?: number;
};

export type ControllerPhase = 'slow-start' | 'probe' | 'probe-down' | 'hold';

export type WindowRecord = {limit: number; rate: number; latencyMs: number; throttled: number; phase: ControllerPhase};

export class AdaptiveConcurrency {
	private readonly min: number;
	private readonly max: number;
	private readonly windowMs: number;
	private readonly holdWindows: number;
	private current: number;
	private phase: ControllerPhase = 'slow-start';
	private windowStart: number | undefined;
	private completions = 0;
	private latencySum = 0;
	private throttledInWindow = 0;
	private pausedUntil = 0;
	/** The last complete window, and the limit it ran at. */
	private previous: {limit: number; rate: number; latencyMs: number} | undefined;
	/** While holding: the latency measured at the held limit. */
	private reference: {limit: number; latencyMs: number} | undefined;
	private holdLeft = 0;
	/** The rate of the plateau the controller holds at: a step down must keep it. */
	private plateauRate = 0;
	/** Probes alternate up and down, so the limit tracks the knee from both sides. */
	private nextProbeUp = true;
	/** The last windows, newest last (for tests, benchmarks and the log). */
	readonly history: WindowRecord[] = [];

	constructor(options: AdaptiveOptions = {}) {
		this.min = Math.max(1, Math.floor(options.min ?? 1));
		this.max = Math.max(this.min, Math.floor(options.max ?? 256));
		this.current = clamp(Math.floor(options.initial ?? 4), this.min, this.max);
		this.windowMs = options.windowMs ?? 400;
		this.holdWindows = options.holdWindows ?? 4;
	}

	/** Writes allowed in flight now. */
	get limit(): number {
		return this.current;
	}

	get state(): ControllerPhase {
		return this.phase;
	}

	/** Milliseconds to wait before dispatching anything new (a Retry-After in force), 0 if none. */
	waitMs(now: number): number {
		return Math.max(0, this.pausedUntil - now);
	}

	/** A write finished after `latencyMs`. */
	complete(now: number, latencyMs: number): void {
		this.windowStart ??= now - latencyMs;
		this.completions++;
		this.latencySum += latencyMs;
		this.maybeDecide(now);
	}

	/**
	 * The server throttled a request (429, 5xx, connection refused/reset); `retryAfterSeconds`
	 * when it said how long to wait. Acts at once: halving on the first signal of a window.
	 */
	throttled(now: number, retryAfterSeconds?: number): void {
		this.windowStart ??= now;
		if (retryAfterSeconds !== undefined && retryAfterSeconds > 0) this.pausedUntil = Math.max(this.pausedUntil, now + Math.min(retryAfterSeconds, 60) * 1000);
		this.throttledInWindow++;
		if (this.throttledInWindow === 1) {
			this.current = Math.max(this.min, Math.floor(this.current / 2));
			this.phase = 'hold';
			this.holdLeft = this.holdWindows;
			this.reference = undefined;
			this.previous = undefined;
		}
	}

	private maybeDecide(now: number): void {
		const start = this.windowStart!;
		const elapsed = now - start;
		const meanLatency = this.latencySum / this.completions;
		// A window long enough to measure: the minimum time, several round trips, and about
		// two limits' worth of completions (so the new limit was actually in force).
		if (elapsed < Math.max(this.windowMs, 3 * meanLatency) || this.completions < Math.min(2 * this.current, 64)) return;
		const rate = (this.completions * 1000) / elapsed;
		const window = {limit: this.current, rate, latencyMs: meanLatency};
		this.history.push({...window, throttled: this.throttledInWindow, phase: this.phase});
		if (this.history.length > 64) this.history.shift();
		const throttled = this.throttledInWindow > 0;
		this.windowStart = now;
		this.completions = 0;
		this.latencySum = 0;
		this.throttledInWindow = 0;
		if (throttled) {
			// Already halved when the signal came; measure the new limit before anything else.
			this.previous = window;
			return;
		}
		this.decide(window);
	}

	private decide(window: {limit: number; rate: number; latencyMs: number}): void {
		const previous = this.previous;
		this.previous = window;
		switch (this.phase) {
			case 'slow-start': {
				if (previous === undefined || previous.limit >= window.limit || window.rate >= previous.rate * 1.15) {
					this.current = clamp(this.current * 2, this.min, this.max);
					return;
				}
				// The doubling bought less than 15%: the knee is between the two. Settle at the
				// lower one if it bought next to nothing, else at the midpoint, and hill-climb.
				const limit = window.rate < previous.rate * 1.04 ? previous.limit : Math.round((previous.limit + window.limit) / 2);
				this.setHold(limit, previous.rate > window.rate ? previous : window);
				return;
			}
			case 'probe': {
				if (previous !== undefined && window.limit > previous.limit && window.rate < previous.rate * 1.04) {
					// The step up raised latency, not throughput: take it back and hold.
					this.setHold(previous.limit, previous);
					return;
				}
				this.current = clamp(this.current + step(this.current), this.min, this.max);
				return;
			}
			case 'probe-down': {
				if (previous !== undefined && window.limit < previous.limit && window.rate < this.plateauRate * 0.96) {
					// The step down cost throughput: go back up and hold.
					this.setHold(previous.limit, previous);
					return;
				}
				// As fast with fewer in flight: keep going down (other clients wait less).
				if (this.current <= this.min) {
					this.setHold(this.current, window);
					return;
				}
				this.current = clamp(this.current - step(this.current), this.min, this.max);
				return;
			}
			case 'hold': {
				const reference = this.reference;
				if (reference === undefined || reference.limit !== window.limit) {
					this.reference = {limit: window.limit, latencyMs: window.latencyMs};
				} else if (window.latencyMs > reference.latencyMs * 1.5) {
					// Same limit, latency up by half: the server is busier; give way.
					this.current = Math.max(this.min, Math.floor(this.current * 0.8));
					this.reference = undefined;
					this.holdLeft = this.holdWindows;
					return;
				} else {
					this.reference = {limit: window.limit, latencyMs: Math.min(reference.latencyMs, window.latencyMs)};
				}
				this.plateauRate = Math.max(this.plateauRate * 0.9, window.rate);
				if (--this.holdLeft <= 0) {
					const up = this.nextProbeUp || this.current <= this.min;
					this.nextProbeUp = !this.nextProbeUp;
					this.phase = up ? 'probe' : 'probe-down';
					this.current = clamp(this.current + (up ? step(this.current) : -step(this.current)), this.min, this.max);
				}
				return;
			}
		}
	}

	private setHold(limit: number, at: {limit: number; latencyMs: number; rate?: number}): void {
		this.plateauRate = at.rate ?? 0;
		this.current = clamp(limit, this.min, this.max);
		this.phase = 'hold';
		this.holdLeft = this.holdWindows;
		this.reference = at.limit === this.current ? {limit: at.limit, latencyMs: at.latencyMs} : undefined;
	}
}

/** A probe's step: an eighth, at least one. */
function step(limit: number): number {
	return Math.max(1, Math.round(limit / 8));
}

function clamp(value: number, min: number, max: number): number {
	return Math.min(max, Math.max(min, Math.round(value)));
}

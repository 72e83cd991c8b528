/**
 * Adaptive concurrency for re-encryption: find the apiserver's ceiling without a number the
 * operator must guess, and without starving the other API clients.
 *
 * Pure logic, time passed in. The re-encryptor reports every finished write (its latency) and
 * every throttling answer (429 with its Retry-After, 5xx, a connection reset); the controller
 * turns them into a limit of writes in flight, decided once per measurement window:
 *
 * - slow start: double the limit while a doubling still raises throughput by a clear margin
 *   (>= 10%); when one buys less, keep the higher limit if it still bought something (>= 3%:
 *   the knee is above) and hill-climb from there, else go back to the lower one and hold;
 * - hill-climb: a step up of 1/4 is kept (and the next one tried) while throughput rises with it
 *   (>= 3%); a step that bought latency without throughput is taken back (the queue grew on the
 *   server, not the work done), and the controller holds for a few windows;
 * - after a hold, probes alternate up and down: a step down is kept only if it keeps the rate the
 *   hold measured (>= 98% of the hold's mean), so the limit gives way to other clients only where
 *   that costs nothing. Each decision compares means over whole windows, never one noisy sample
 *   against a best-ever figure (on a shared 2-core machine a window's rate varies by 5-10%, and
 *   a decision that can only lose to noise ratchets the limit down);
 * - back off on rising latency: while holding, two windows in a row whose latency is up by half
 *   over the hold's mean at the same limit (the server got busier, e.g. other clients) cut the
 *   limit by 20%;
 * - a latency budget: a limit whose mean latency is over 4x the lowest window's of the run is
 *   not kept, whatever throughput it buys (past the knee a server queues: others wait behind
 *   every write in flight);
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
	/**
	 * The highest mean write latency, as a multiple of the lowest window's mean latency in this
	 * run (default 4): what other clients queue behind. A limit whose latency exceeds it is not
	 * kept, however much throughput it buys. Infinity: throughput alone decides.
	 */
	latencyBudget?: number;
};

export type ControllerPhase = 'slow-start' | 'probe' | 'probe-down' | 'hold';

export type WindowRecord = {limit: number; rate: number; latencyMs: number; throttled: number; phase: ControllerPhase};

export class AdaptiveConcurrency {
	private readonly min: number;
	private readonly max: number;
	private readonly windowMs: number;
	private readonly holdWindows: number;
	private readonly latencyBudget: number;
	/** The lowest mean latency of a window in this run (the least queueing seen). */
	private baseLatency = Infinity;
	private current: number;
	private phase: ControllerPhase = 'slow-start';
	private windowStart: number | undefined;
	private completions = 0;
	private latencySum = 0;
	private throttledInWindow = 0;
	private pausedUntil = 0;
	/** The last complete window, and the limit it ran at. */
	private previous: {limit: number; rate: number; latencyMs: number} | undefined;
	/** While holding: the mean rate and latency measured at the held limit, and how many windows in a row ran slower. */
	private plateau = {limit: 0, rate: 0, latencyMs: 0, windows: 0, busy: 0};
	private holdLeft = 0;
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
		this.latencyBudget = options.latencyBudget ?? LATENCY_BUDGET;
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
			this.setHold(Math.floor(this.current / 2));
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
		this.baseLatency = Math.min(this.baseLatency, meanLatency);
		this.decide(window);
	}

	/** The window's latency is over the budget: others queue too long behind these writes. */
	private overBudget(window: {latencyMs: number}): boolean {
		return window.latencyMs > this.baseLatency * this.latencyBudget;
	}

	private decide(window: {limit: number; rate: number; latencyMs: number}): void {
		const previous = this.previous;
		this.previous = window;
		switch (this.phase) {
			case 'slow-start': {
				if (this.overBudget(window) && previous !== undefined && previous.limit < window.limit) {
					this.setHold(previous.limit);
					return;
				}
				if (previous === undefined || previous.limit >= window.limit || window.rate >= previous.rate * SLOW_START_GAIN) {
					this.current = clamp(this.current * 2, this.min, this.max);
					return;
				}
				if (window.rate >= previous.rate * STEP_UP_GAIN) {
					// Still rising, just less: the knee is above; climb from here in small steps.
					this.phase = 'probe';
					this.current = clamp(this.current + step(this.current), this.min, this.max);
					return;
				}
				// The doubling bought next to nothing: the knee is at or below the lower limit.
				this.setHold(previous.limit);
				return;
			}
			case 'probe': {
				if (previous !== undefined && window.limit > previous.limit && (window.rate < previous.rate * STEP_UP_GAIN || this.overBudget(window))) {
					// The step up raised latency, not throughput: take it back and hold.
					this.setHold(previous.limit);
					return;
				}
				this.current = clamp(this.current + step(this.current), this.min, this.max);
				return;
			}
			case 'probe-down': {
				// One step down, kept only if it keeps the plateau's rate (other clients wait less).
				this.setHold(window.rate >= this.plateau.rate * STEP_DOWN_KEEP || previous === undefined ? window.limit : previous.limit);
				return;
			}
			case 'hold': {
				const plateau = this.plateau;
				if (plateau.limit !== window.limit || plateau.windows === 0) {
					this.plateau = {limit: window.limit, rate: window.rate, latencyMs: window.latencyMs, windows: 1, busy: 0};
				} else if (window.latencyMs > plateau.latencyMs * LATENCY_RISE || this.overBudget(window)) {
					// Same limit, latency up by half or over the budget: the server is busier. Twice in a row: give way.
					if (++plateau.busy >= 2) {
						this.setHold(Math.floor(this.current * 0.8));
						return;
					}
				} else {
					plateau.busy = 0;
					plateau.windows++;
					plateau.rate += (window.rate - plateau.rate) / plateau.windows;
					plateau.latencyMs += (window.latencyMs - plateau.latencyMs) / plateau.windows;
				}
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

	private setHold(limit: number): void {
		this.current = clamp(limit, this.min, this.max);
		this.phase = 'hold';
		this.holdLeft = this.holdWindows;
		// The plateau is measured afresh at the held limit (the last window may have run at another).
		this.plateau = {limit: this.current, rate: 0, latencyMs: 0, windows: 0, busy: 0};
		this.previous = undefined;
	}
}

/** A doubling in slow start must raise throughput by this factor to double again. */
const SLOW_START_GAIN = 1.1;
/** A step up is kept when throughput rises by this factor. */
const STEP_UP_GAIN = 1.03;
/** A step down is kept when it keeps this fraction of the plateau's rate. */
const STEP_DOWN_KEEP = 0.98;
/** The default latency budget (AdaptiveOptions.latencyBudget). */
const LATENCY_BUDGET = 4;
/** Latency at the same limit up by this factor (twice in a row): the server is busier. */
const LATENCY_RISE = 1.5;

/** A probe's step: a quarter, at least one (an eighth gains less than the noise of a window on a shared machine). */
function step(limit: number): number {
	return Math.max(1, Math.round(limit / 4));
}

function clamp(value: number, min: number, max: number): number {
	return Math.min(max, Math.max(min, Math.round(value)));
}

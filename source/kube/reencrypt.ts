/**
 * Re-encryption through the API: rewrite every object of the given resources so the
 * apiserver stores it with the current primary key.
 *
 * The default method, `list-put`, lists full objects page by page and PUTs each one back as
 * listed, guarded by its resourceVersion: a concurrent update makes the PUT a 409, after which
 * the object is re-read and written again, so no update is ever lost. The apiserver's etcd3
 * store (GuaranteedUpdate) skips the etcd write of an unchanged object unless its stored
 * value was read with a non-primary transformer (`origState.stale`), so stale objects are
 * rewritten and current ones cost a read only (k8s.io/apiserver/pkg/storage/etcd3/store.go,
 * Kubernetes 1.20). Lists and PUTs speak protobuf where the type has it (built-in types;
 * custom resources fall back to JSON), each item's bytes sent back as listed: the raw probe of
 * bench/reencrypt gained about a quarter at the same concurrency (source/kube/protobuf.ts).
 * `patch` (an empty JSON merge patch per object) and `put` (GET, then PUT with the
 * resourceVersion) are kept for comparison.
 *
 * Lists are paginated (REENCRYPT_DEFAULTS.pageSize). An expired continue token (410)
 * restarts the list and skips what was already dispatched. A deleted object (404) counts as
 * done. Progress is saved to a small JSON state file so a rerun after SIGKILL continues
 * where the last one stopped; correctness never depends on it (a targeted rerun from a raw
 * etcd scan rewrites whatever still uses another key).
 */
import type {Host} from '../host/types.js';
import {RUNS_DIR} from '../engine/contract.js';
import {AdaptiveConcurrency} from './adaptive.js';
import {ConflictError, GoneError, NotFoundError, resourcePath, type KubeApi, type KubeApiError, type ResourceInfo, type RewriteItem} from './api.js';

export type ReencryptMethod = 'list-put' | 'patch' | 'put';

/** The one home of re-encryption's defaults (the CLI's help and the stage's question read them). */
export const REENCRYPT_DEFAULTS = {
	/** Writes in flight: adaptive (source/kube/adaptive.ts) unless --concurrency pins a number. */
	concurrency: 'auto' as const,
	/** Where the adaptive limit starts. */
	initialConcurrency: 4,
	/** Highest --concurrency accepted, and the adaptive limit's ceiling. */
	maxConcurrency: 256,
	/** Retries of one write on 429 / 5xx / connection errors (each honours Retry-After). */
	writeRetries: 12,
	/** List page size. */
	pageSize: 500,
	method: 'list-put' as ReencryptMethod,
} as const;

/** One object to rewrite (targeted mode, from the raw etcd scan). */
export type ObjectTarget = {resource: string; namespace?: string; name: string};

/**
 * Targets by resource, compactly: the list positions (`namespace/name`) to rewrite, or every
 * object of the resource (`positions` absent; `count` objects when it was scanned). A raw etcd
 * scan at 100,000 objects per resource builds this instead of 100,000 target objects. A run
 * consumes it: each position is deleted from its set as the list reaches it.
 */
export type TargetSet = Map<string, {positions?: Set<string>; count: number}>;

/** `targets` grouped into a TargetSet. */
export function targetSetOf(targets: readonly ObjectTarget[]): TargetSet {
	const byResource = new Map<string, Set<string>>();
	for (const target of targets) {
		let positions = byResource.get(target.resource);
		if (!positions) byResource.set(target.resource, (positions = new Set()));
		positions.add(positionOf(target.namespace, target.name));
	}
	return new Map([...byResource].map(([resource, positions]) => [resource, {positions, count: positions.size}]));
}

export type ReencryptProgress = {
	/** The resource being rewritten now. */
	resource: string;
	/** Objects done (rewritten, already deleted, or done by an earlier run), all resources. */
	done: number;
	/** All objects to do, when known. */
	total?: number;
	/** Objects per second in this run. */
	rate: number;
	etaSeconds?: number;
	/** Writes in flight now, and the limit (adaptive or pinned). */
	inFlight: number;
	limit: number;
	adaptive: boolean;
};

export type ResourceState = {
	/** Every object whose list position (`namespace/name`) is <= this has been rewritten. */
	after?: string;
	/** Objects done so far (this and earlier runs). */
	done: number;
	finished: boolean;
};

export type ReencryptState = {
	version: 1;
	/** Identifies the encryption config the rewrite is for (a hash, never key material). */
	fingerprint?: string;
	mode: 'all' | 'targeted';
	resources: Record<string, ResourceState>;
	updatedAt: string;
};

export type ReencryptOptions = {
	/** EncryptionConfiguration resource names: "secrets", "configmaps", "<resource>.<group>". */
	resources: string[];
	/** Targeted mode: rewrite exactly these objects instead of listing the resources. */
	targets?: ObjectTarget[] | TargetSet;
	/** Writes in flight, pinned; undefined: adaptive (REENCRYPT_DEFAULTS.concurrency). */
	concurrency?: number;
	/** At most this many objects per second (default: unlimited). */
	rate?: number;
	/** List page size (default REENCRYPT_DEFAULTS.pageSize). */
	pageSize?: number;
	/** Default REENCRYPT_DEFAULTS.method; see the header. */
	method?: ReencryptMethod;
	signal?: AbortSignal;
	onProgress?: (progress: ReencryptProgress) => void;
	/** Minimum interval between progress callbacks (default 250 ms). */
	progressIntervalMs?: number;
	/** Node path of the JSON state file (written atomically through the host). */
	statePath?: string;
	/** Continue from an earlier run's state (all mode only). */
	resumeFrom?: ReencryptState;
	fingerprint?: string;
	/** How often a 409 is retried for one object before giving up (default 20). */
	maxConflictRetries?: number;
};

export type ReencryptResult = {
	/** Objects written by this run (PATCH/PUT answered 2xx). */
	rewritten: number;
	/** Objects deleted before they could be rewritten. */
	notFound: number;
	/** 409 answers that were retried. */
	conflicts: number;
	/** List restarts after an expired continue token. */
	listRestarts: number;
	/** Objects skipped because an earlier run had done them. */
	resumedSkipped: number;
	byResource: Record<string, number>;
	seconds: number;
	/** The limit of writes in flight at the end (the one the adaptive control settled on), and the highest. */
	concurrency: {adaptive: boolean; final: number; highest: number};
	/** 429 / 5xx / connection errors that were retried. */
	throttled: number;
};

export class ReencryptAborted extends Error {
	override name = 'ReencryptAborted';
}

const STATE_FILE = 'reencrypt-state.json';

/** The state file of a run directory. */
export function statePathIn(runDir: string): string {
	return `${runDir}/${STATE_FILE}`;
}

export async function readState(host: Host, path: string): Promise<ReencryptState | undefined> {
	const text = await host.readText(path);
	if (text === undefined) return undefined;
	try {
		const state = JSON.parse(text) as ReencryptState;
		if (state.version !== 1 || typeof state.resources !== 'object' || state.resources === null) return undefined;
		return state;
	} catch {
		return undefined; // torn or foreign: ignore, correctness does not depend on it
	}
}

/**
 * The newest earlier run's unfinished all-mode state for the same fingerprint and resources,
 * if any. `exclude` is this run's directory.
 */
export async function findResumableState(
	host: Host,
	options: {fingerprint?: string; resources: string[]; exclude?: string},
): Promise<ReencryptState | undefined> {
	const runs = ((await host.listDir(RUNS_DIR)) ?? []).sort().reverse();
	for (const id of runs) {
		const dir = `${RUNS_DIR}/${id}`;
		if (dir === options.exclude) continue;
		const state = await readState(host, statePathIn(dir));
		if (state === undefined) continue;
		if (state.mode !== 'all' || state.fingerprint !== options.fingerprint) return undefined;
		const finished = options.resources.every(resource => state.resources[resource]?.finished);
		return finished ? undefined : state;
	}
	return undefined;
}

/** List position of an object: etcd key order under /registry/<resource>/. */
export function positionOf(namespace: string | undefined, name: string): string {
	return namespace ? `${namespace}/${name}` : name;
}

/** The inverse of positionOf: names and namespaces hold no '/'. */
function targetAt(position: string): {namespace?: string; name: string} {
	const slash = position.indexOf('/');
	return slash === -1 ? {name: position} : {namespace: position.slice(0, slash), name: position.slice(slash + 1)};
}

/** Tracks completion in dispatch order; the watermark is the last position with everything before it done. */
class Watermark {
	private readonly pending: Array<{position: string; done: boolean}> = [];
	private readonly index = new Map<number, {position: string; done: boolean}>();
	private next = 0;
	value: string | undefined;

	constructor(initial?: string) {
		this.value = initial;
	}

	dispatch(position: string): number {
		const entry = {position, done: false};
		this.pending.push(entry);
		const id = this.next++;
		this.index.set(id, entry);
		return id;
	}

	complete(id: number): void {
		const entry = this.index.get(id);
		if (!entry) return;
		entry.done = true;
		this.index.delete(id);
		while (this.pending.length > 0 && this.pending[0]!.done) this.value = this.pending.shift()!.position;
	}
}

type Counters = {done: number; rewritten: number; notFound: number; conflicts: number; thisRun: number};

/** Rewrite every object of `options.resources` (or exactly `options.targets`). */
export async function reencrypt(api: KubeApi, options: ReencryptOptions): Promise<ReencryptResult> {
	const runner = new Reencryptor(api, options);
	return runner.run();
}

/** A listed object: its name, and for list-put its body as listed. */
type Listed = RewriteItem | {name: string; namespace?: string; body?: undefined};

class Reencryptor {
	private readonly host: Host;
	/** Pinned limit, or the adaptive controller. */
	private readonly pinned: number | undefined;
	private readonly adaptive: AdaptiveConcurrency | undefined;
	private highestLimit = 0;
	private throttledCount = 0;
	private readonly pageSize: number;
	private readonly method: ReencryptMethod;
	private readonly maxConflictRetries: number;
	private readonly started: number;
	private readonly counters: Counters = {done: 0, rewritten: 0, notFound: 0, conflicts: 0, thisRun: 0};
	private readonly byResource: Record<string, number> = {};
	private readonly inflight = new Set<Promise<void>>();
	/** Resolves the dispatcher's wait for a free slot. */
	private freed: (() => void) | undefined;
	private failure: unknown;
	private total: number | undefined;
	private current = '';
	private lastProgress = 0;
	private nextSlot = 0;
	private lastSave = 0;
	private listRestarts = 0;
	private resumedSkipped = 0;
	private readonly state: ReencryptState;

	constructor(
		private readonly api: KubeApi,
		private readonly options: ReencryptOptions,
	) {
		this.host = api.host;
		if (options.concurrency !== undefined) this.pinned = Math.max(1, Math.floor(options.concurrency));
		else this.adaptive = new AdaptiveConcurrency({initial: REENCRYPT_DEFAULTS.initialConcurrency, max: REENCRYPT_DEFAULTS.maxConcurrency});
		this.pageSize = Math.max(1, Math.floor(options.pageSize ?? REENCRYPT_DEFAULTS.pageSize));
		this.method = options.method ?? REENCRYPT_DEFAULTS.method;
		this.maxConflictRetries = options.maxConflictRetries ?? 20;
		this.started = this.host.now().getTime();
		const resumable = options.targets === undefined && options.resumeFrom?.mode === 'all' && options.resumeFrom.fingerprint === options.fingerprint;
		this.state = {
			version: 1,
			fingerprint: options.fingerprint,
			mode: options.targets === undefined ? 'all' : 'targeted',
			resources: resumable ? structuredClone(options.resumeFrom!.resources) : {},
			updatedAt: new Date(this.started).toISOString(),
		};
	}

	async run(): Promise<ReencryptResult> {
		try {
			if (this.options.targets !== undefined) await this.runTargeted(this.options.targets);
			else await this.runAll();
		} finally {
			await this.drain();
			await this.saveState(true).catch(() => undefined);
		}
		if (this.failure !== undefined) throw this.failure;
		this.report(true);
		return {
			rewritten: this.counters.rewritten,
			notFound: this.counters.notFound,
			conflicts: this.counters.conflicts,
			listRestarts: this.listRestarts,
			resumedSkipped: this.resumedSkipped,
			byResource: this.byResource,
			seconds: (this.host.now().getTime() - this.started) / 1000,
			concurrency: {adaptive: this.adaptive !== undefined, final: this.limit(), highest: Math.max(this.highestLimit, this.limit())},
			throttled: this.throttledCount,
		};
	}

	private checkAbort(): void {
		if (this.options.signal?.aborted) throw new ReencryptAborted('re-encryption interrupted');
		if (this.failure !== undefined) throw this.failure;
	}

	private async runAll(): Promise<void> {
		const infos: Array<[string, ResourceInfo]> = [];
		for (const name of this.options.resources) infos.push([name, await this.api.resolveResource(name)]);
		// Count first (one object per resource), so progress has a total and an ETA. A full
		// list: kube-apiserver 1.20 drops remainingItemCount from PartialObjectMetadataList.
		let total: number | undefined = 0;
		for (const [, info] of infos) {
			const page = await this.api.list(resourcePath(info), {limit: 1, signal: this.options.signal});
			if (page.items.length === 0) continue;
			if (page.remainingItemCount === undefined && page.continue) total = undefined;
			else if (total !== undefined) total += page.items.length + (page.remainingItemCount ?? 0);
		}
		this.total = total;
		for (const [name, info] of infos) {
			const previous = this.state.resources[name];
			if (previous?.finished) {
				this.counters.done += previous.done;
				this.resumedSkipped += previous.done;
				continue;
			}
			await this.rewriteResource(name, info, previous);
		}
	}

	/**
	 * List `name` page by page and rewrite its objects; with `only`, just those positions
	 * (targeted list-put: the list gives each target's body and resourceVersion for its PUT).
	 */
	private async rewriteResource(name: string, info: ResourceInfo, previous: ResourceState | undefined, only?: Set<string>): Promise<void> {
		this.current = name;
		const resourceState: ResourceState = {after: previous?.after, done: previous?.done ?? 0, finished: false};
		this.state.resources[name] = resourceState;
		this.byResource[name] ??= 0;
		const watermark = new Watermark(previous?.after);
		// Positions <= skipThrough were done by an earlier run (counted once) or dispatched
		// before a list restart in this run (not counted again).
		let skipThrough = previous?.after;
		let lastDispatched: string | undefined = skipThrough;
		if (skipThrough !== undefined) {
			this.counters.done += resourceState.done;
			this.resumedSkipped += resourceState.done;
		}
		const collection = resourcePath(info);
		let token: string | undefined;
		type Page = {items: Listed[]; continue?: string};
		let next: Promise<Page> | undefined;
		const fetch = (continueToken: string | undefined): Promise<Page> => {
			const options = {limit: this.pageSize, continue: continueToken, signal: this.options.signal};
			// list-put needs the objects themselves (their PUT body, protobuf where the type has
			// it); the others only names.
			const promise: Promise<Page> =
				this.method === 'list-put'
					? this.api.listForRewrite(collection, options)
					: this.api.list(collection, {...options, metadataOnly: true}).then(page => ({
							continue: page.continue,
							items: page.items.map(item => ({name: item.metadata.name, namespace: item.metadata.namespace})),
						}));
			promise.catch(() => undefined); // awaited below; avoid an unhandled rejection while prefetched
			return promise;
		};
		next = fetch(undefined);
		while (next !== undefined) {
			this.checkAbort();
			let page: Page;
			try {
				page = await next;
			} catch (error) {
				if (!(error instanceof GoneError)) throw error;
				// The continue token expired: list again from the start, skip what was dispatched.
				this.listRestarts++;
				skipThrough = lastDispatched;
				token = undefined;
				next = fetch(undefined);
				continue;
			}
			token = page.continue;
			// Prefetch the next page while this one is written: one page of lookahead.
			next = token ? fetch(token) : undefined;
			for (const item of page.items) {
				const position = positionOf(item.namespace, item.name);
				if (skipThrough !== undefined && position <= skipThrough) continue;
				if (only !== undefined && !only.delete(position)) continue;
				this.checkAbort();
				await this.slot();
				lastDispatched = position;
				const id = watermark.dispatch(position);
				const listed = item.body === undefined ? undefined : item;
				this.start(async () => {
					await this.rewriteOne(info, item.namespace, item.name, listed);
					this.byResource[name] = (this.byResource[name] ?? 0) + 1;
					resourceState.done++;
					watermark.complete(id);
					resourceState.after = watermark.value;
				});
			}
		}
		await this.drain();
		this.checkAbort();
		// Targets the list no longer holds were deleted meanwhile: nothing left to rewrite.
		if (only !== undefined && only.size > 0) {
			this.counters.notFound += only.size;
			this.counters.done += only.size;
			only.clear();
		}
		resourceState.after = watermark.value;
		resourceState.finished = true;
		await this.saveState(true);
	}

	private async runTargeted(targets: ObjectTarget[] | TargetSet): Promise<void> {
		const wanted = targets instanceof Map ? targets : targetSetOf(targets);
		this.total = 0;
		for (const entry of wanted.values()) this.total += entry.count;
		if (this.method === 'list-put') {
			// One full list per resource instead of a read per object: each target is PUT back
			// as listed (guarded by its resourceVersion), the others are skipped.
			for (const [resource, entry] of wanted) {
				await this.rewriteResource(resource, await this.api.resolveResource(resource), undefined, entry.positions);
			}
			return;
		}
		for (const [resource, entry] of wanted) {
			const info = await this.api.resolveResource(resource);
			if (entry.positions === undefined) {
				await this.rewriteResource(resource, info, undefined);
				continue;
			}
			this.current = resource;
			const resourceState = (this.state.resources[resource] ??= {done: 0, finished: false});
			for (const position of entry.positions) {
				this.checkAbort();
				const {namespace, name} = targetAt(position);
				await this.slot();
				this.start(async () => {
					await this.rewriteOne(info, namespace, name);
					this.byResource[resource] = (this.byResource[resource] ?? 0) + 1;
					resourceState.done++;
				});
			}
		}
		await this.drain();
		this.checkAbort();
		for (const resourceState of Object.values(this.state.resources)) resourceState.finished = true;
	}

	/** Writes allowed in flight now. */
	private limit(): number {
		return this.pinned ?? this.adaptive!.limit;
	}

	/** Wait for a free worker, for a Retry-After in force, and for the rate limit. */
	private async slot(): Promise<void> {
		for (;;) {
			const pause = this.adaptive?.waitMs(this.host.now().getTime()) ?? 0;
			if (pause > 0) {
				await this.host.sleep(pause, this.options.signal);
				this.checkAbort();
				continue;
			}
			if (this.inflight.size < this.limit()) break;
			// One waiter woken by the next write to finish (a Promise.race over every write in
			// flight would add a reaction to each of them per dispatch).
			await new Promise<void>(resolve => (this.freed = resolve));
			this.checkAbort();
		}
		this.highestLimit = Math.max(this.highestLimit, this.limit());
		const rate = this.options.rate;
		if (rate !== undefined && rate > 0) {
			const now = this.host.now().getTime();
			const at = Math.max(now, this.nextSlot);
			this.nextSlot = at + 1000 / rate;
			if (at > now) await this.host.sleep(at - now, this.options.signal);
		}
	}

	private start(work: () => Promise<void>): void {
		const promise: Promise<void> = work()
			.then(
				() => {
					this.counters.done++;
					this.counters.thisRun++;
					this.report(false);
					return this.saveState(false);
				},
				(error: unknown) => {
					this.failure ??= error;
				},
			)
			.catch((error: unknown) => {
				this.failure ??= error;
			})
			.finally(() => {
				this.inflight.delete(promise);
				const wake = this.freed;
				this.freed = undefined;
				wake?.();
			});
		this.inflight.add(promise);
	}

	private async drain(): Promise<void> {
		while (this.inflight.size > 0) await Promise.all([...this.inflight]);
	}

	private async rewriteOne(info: ResourceInfo, namespace: string | undefined, name: string, listed?: RewriteItem): Promise<void> {
		const path = resourcePath(info, namespace, name);
		const signal = this.options.signal;
		// Throttling answers reach the controller as they happen (each retry honours Retry-After).
		const onRetry = (error: KubeApiError) => {
			this.throttledCount++;
			this.adaptive?.throttled(this.host.now().getTime(), error.retryAfterSeconds);
		};
		// The signal ends retries and back-off sleeps, not a write already sent (it finishes
		// within its timeout): an abort listener per write costs client CPU the apiserver
		// shares on a small control plane.
		const request = {signal, abortInFlight: false, onRetry, retries: REENCRYPT_DEFAULTS.writeRetries};
		const started = this.host.now().getTime();
		for (let attempt = 0; ; attempt++) {
			try {
				if (this.method === 'patch') {
					await this.api.request('PATCH', path, {body: '{}', contentType: 'application/merge-patch+json', ...request});
				} else if (this.method === 'list-put' && listed && attempt === 0) {
					// The listed object, guarded by its resourceVersion: a concurrent write makes
					// this a 409, and the retry below re-reads the latest version.
					await this.api.request('PUT', path, {body: listed.body, contentType: listed.contentType, accept: listed.contentType, ...request});
				} else {
					const latest = await this.api.get(path, request);
					await this.api.request('PUT', path, {body: latest, ...request});
				}
				this.counters.rewritten++;
				const now = this.host.now().getTime();
				this.adaptive?.complete(now, now - started);
				return;
			} catch (error) {
				if (error instanceof NotFoundError) {
					this.counters.notFound++;
					return;
				}
				if (error instanceof ConflictError && attempt < this.maxConflictRetries) {
					// Someone wrote the object meanwhile: re-read (PUT) or re-issue (PATCH) and retry.
					this.counters.conflicts++;
					continue;
				}
				throw error;
			}
		}
	}

	private report(final: boolean): void {
		const onProgress = this.options.onProgress;
		if (!onProgress) return;
		const now = this.host.now().getTime();
		if (!final && now - this.lastProgress < (this.options.progressIntervalMs ?? 250)) return;
		this.lastProgress = now;
		const seconds = Math.max((now - this.started) / 1000, 0.001);
		const rate = this.counters.thisRun / seconds;
		const total = this.total === undefined ? undefined : Math.max(this.total, this.counters.done);
		const remaining = total === undefined ? undefined : total - this.counters.done;
		onProgress({
			resource: this.current,
			done: this.counters.done,
			total,
			rate,
			etaSeconds: remaining === undefined || rate <= 0 ? undefined : remaining / rate,
			inFlight: this.inflight.size,
			limit: this.limit(),
			adaptive: this.adaptive !== undefined,
		});
	}

	/** Save the state file at most every 2 s (and at the end); failures to save never stop the work. */
	private async saveState(force: boolean): Promise<void> {
		const path = this.options.statePath;
		if (path === undefined) return;
		const now = this.host.now().getTime();
		if (!force && now - this.lastSave < 2000) return;
		this.lastSave = now;
		this.state.updatedAt = new Date(now).toISOString();
		await this.host.writeFileAtomic(path, `${JSON.stringify(this.state)}\n`, 0o600).catch(() => undefined);
	}
}

/**
 * Unit-test doubles for the kube client: an in-memory Host whose `request` is answered by a
 * scripted handler, a virtual clock (sleep advances it), and a tiny fake apiserver for
 * secrets that models resourceVersions, staleness, paginated lists and scripted failures.
 * Unit tests only; the e2e tests use the real testbed.
 */
import type {Arg, FileStat, Host, HttpRequest, HttpResponse, RunOptions, RunResult} from '../../source/host/types.js';

export type Handler = (request: HttpRequest) => Promise<HttpResponse> | HttpResponse;

export function json(status: number, body: unknown, headers: Record<string, string> = {}): HttpResponse {
	return {status, headers: {'content-type': 'application/json', ...headers}, body: Buffer.from(JSON.stringify(body))};
}

export function text(status: number, body: string, headers: Record<string, string> = {}): HttpResponse {
	return {status, headers, body: Buffer.from(body)};
}

export function status(code: number, reason: string, message = reason, headers: Record<string, string> = {}): HttpResponse {
	return json(code, {kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code}, headers);
}

export class FakeHost implements Host {
	readonly root = '/';
	readonly dryRun = false;
	readonly files = new Map<string, {data: Buffer; mtimeMs: number}>();
	readonly requests: HttpRequest[] = [];
	readonly sleeps: number[] = [];
	clock = Date.parse('2030-01-01T00:00:00Z');

	constructor(public handler: Handler = () => text(500, 'no handler')) {}

	resolve(nodePath: string): string {
		return nodePath;
	}
	async readFile(nodePath: string): Promise<Buffer | undefined> {
		return this.files.get(nodePath)?.data;
	}
	async readText(nodePath: string): Promise<string | undefined> {
		return this.files.get(nodePath)?.data.toString('utf8');
	}
	async stat(nodePath: string): Promise<FileStat | undefined> {
		const file = this.files.get(nodePath);
		if (!file) return undefined;
		return {mode: 0o600, uid: 0, gid: 0, size: file.data.length, isFile: true, isDirectory: false, mtimeMs: file.mtimeMs};
	}
	async listDir(nodePath: string): Promise<string[] | undefined> {
		const prefix = nodePath.endsWith('/') ? nodePath : `${nodePath}/`;
		const names = new Set<string>();
		for (const file of this.files.keys()) if (file.startsWith(prefix)) names.add(file.slice(prefix.length).split('/')[0]!);
		return names.size > 0 ? [...names].sort() : undefined;
	}
	async writeFileAtomic(nodePath: string, data: string | Uint8Array, _mode: number): Promise<void> {
		this.files.set(nodePath, {data: Buffer.from(data), mtimeMs: this.clock});
	}
	async mkdir(): Promise<void> {}
	async createExclusive(nodePath: string, data: string, mode: number): Promise<boolean> {
		if (this.files.has(nodePath)) return false;
		await this.writeFileAtomic(nodePath, data, mode);
		return true;
	}
	async appendFile(nodePath: string, data: string, mode: number): Promise<void> {
		const before = this.files.get(nodePath)?.data ?? Buffer.alloc(0);
		await this.writeFileAtomic(nodePath, Buffer.concat([before, Buffer.from(data)]), mode);
	}
	async remove(nodePath: string): Promise<void> {
		this.files.delete(nodePath);
	}
	async run(_argv: Arg[], _options?: RunOptions): Promise<RunResult> {
		throw new Error('FakeHost.run is not scripted');
	}
	async request(request: HttpRequest): Promise<HttpResponse> {
		this.requests.push(request);
		// Yield so concurrent requests really overlap.
		await new Promise(resolve => setImmediate(resolve));
		return this.handler(request);
	}
	async sleep(ms: number, signal?: AbortSignal): Promise<void> {
		if (signal?.aborted) throw new Error('aborted');
		this.sleeps.push(ms);
		this.clock += ms;
		await new Promise(resolve => setImmediate(resolve));
	}
	now(): Date {
		return new Date(this.clock);
	}
	processAlive(): boolean {
		return false;
	}
	isRoot(): boolean {
		return true;
	}
}

type Stored = {rv: number; stale: boolean; writes: number; data: Record<string, string>};

/**
 * A fake apiserver for secrets: list (limit/continue, metadata only), GET, PATCH `{}`
 * (rewrites only stale objects, as GuaranteedUpdate does), PUT with resourceVersion.
 */
export class FakeSecrets {
	readonly objects = new Map<string, Stored>();
	revision = 1;
	inFlight = 0;
	maxInFlight = 0;
	/** Continue tokens that answer 410 once. */
	readonly expireTokens = new Set<string>();
	/** Names whose next N writes answer 409. */
	readonly conflicts = new Map<string, number>();
	/** Called before each write: a hook for concurrent writers / deletions. */
	beforeWrite?: (key: string) => void;
	listCalls: Array<{limit?: number; continue?: string}> = [];
	/** Answer list pages and writes asynchronously after this many ticks (to overlap requests). */
	delayTicks = 2;

	constructor(names: string[] = []) {
		for (const key of names) this.objects.set(key, {rv: this.revision++, stale: true, writes: 0, data: {v: '0'}});
	}

	static keys(count: number, namespaces = 3): string[] {
		return Array.from({length: count}, (_, i) => `ns-${i % namespaces}/secret-${String(i).padStart(5, '0')}`);
	}

	private meta(key: string, stored: Stored) {
		const [namespace, name] = key.split('/') as [string, string];
		return {name, namespace, resourceVersion: String(stored.rv)};
	}

	handler: Handler = async request => {
		this.inFlight++;
		this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
		try {
			for (let i = 0; i < this.delayTicks; i++) await new Promise(resolve => setImmediate(resolve));
			return this.handle(request);
		} finally {
			this.inFlight--;
		}
	};

	private handle(request: HttpRequest): HttpResponse {
		const url = new URL(request.url);
		const method = request.method ?? 'GET';
		const parts = url.pathname.split('/').filter(Boolean);
		// /api/v1/secrets  |  /api/v1/namespaces/<ns>/secrets/<name>
		if (url.pathname === '/api/v1/secrets' && method === 'GET') {
			const limit = Number(url.searchParams.get('limit') ?? '0') || Infinity;
			const token = url.searchParams.get('continue') ?? undefined;
			this.listCalls.push({limit: Number.isFinite(limit) ? limit : undefined, continue: token});
			if (token && this.expireTokens.has(token)) {
				this.expireTokens.delete(token);
				return status(410, 'Expired', 'The provided continue parameter is too old');
			}
			const metadataOnly = (request.headers?.['accept'] ?? '').includes('as=PartialObjectMetadataList');
			const start = token ? Buffer.from(token, 'base64').toString('utf8') : undefined;
			const keys = [...this.objects.keys()].sort().filter(key => start === undefined || key > start);
			const page = keys.slice(0, limit);
			const more = keys.length > page.length;
			return json(200, {
				kind: metadataOnly ? 'PartialObjectMetadataList' : 'SecretList',
				metadata: {
					resourceVersion: String(this.revision),
					continue: more ? Buffer.from(page.at(-1)!).toString('base64') : undefined,
					// kube-apiserver 1.20 drops remainingItemCount from PartialObjectMetadataList.
					remainingItemCount: more && !metadataOnly ? keys.length - page.length : undefined,
				},
				items: page.map(key => ({metadata: this.meta(key, this.objects.get(key)!), ...(metadataOnly ? {} : {data: this.objects.get(key)!.data})})),
			});
		}
		if (parts[0] === 'api' && parts[2] === 'namespaces' && parts[4] === 'secrets' && parts[5]) {
			const key = `${parts[3]}/${decodeURIComponent(parts[5])}`;
			if (method !== 'GET') this.beforeWrite?.(key);
			const stored = this.objects.get(key);
			if (!stored) return status(404, 'NotFound', `secrets "${parts[5]}" not found`);
			if (method === 'GET') return json(200, {metadata: this.meta(key, stored), data: stored.data});
			const pending = this.conflicts.get(key) ?? 0;
			if (pending > 0) {
				this.conflicts.set(key, pending - 1);
				return status(409, 'Conflict', 'the object has been modified');
			}
			if (method === 'PATCH') {
				if (String(request.body) !== '{}') return status(400, 'BadRequest', 'only {} is scripted');
			} else if (method === 'PUT') {
				const body = JSON.parse(String(request.body)) as {metadata: {resourceVersion?: string}; data: Record<string, string>};
				if (body.metadata.resourceVersion !== String(stored.rv)) return status(409, 'Conflict', 'the object has been modified');
				if (JSON.stringify(body.data) !== JSON.stringify(stored.data)) {
					stored.data = body.data;
					stored.stale = true; // a changed object is always written
				}
			} else {
				return status(405, 'MethodNotAllowed', method);
			}
			if (stored.stale) {
				stored.rv = ++this.revision;
				stored.stale = false;
				stored.writes++;
			}
			return json(200, {metadata: this.meta(key, stored), data: stored.data});
		}
		return status(404, 'NotFound', `no route ${method} ${url.pathname}`);
	}

	/** A concurrent writer's update: new data, written with the current primary key. */
	update(key: string, data: Record<string, string>): void {
		const stored = this.objects.get(key);
		if (!stored) return;
		stored.data = data;
		stored.rv = ++this.revision;
		stored.stale = false;
	}
}

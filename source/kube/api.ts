/**
 * A small Kubernetes API client on top of the host: get, paginated list, patch, put, with
 * typed errors. Transient failures (429 with Retry-After, 5xx, connection refused or reset
 * while an apiserver restarts) are retried a bounded number of times; every other status
 * becomes a typed error the caller decides about (404 deleted, 409 conflict, 410 expired
 * continue token).
 *
 * Every request goes through `host.request`, which keeps connections alive per TLS identity.
 */
import type {Host, HttpResponse} from '../host/types.js';
import {ADMIN_KUBECONFIG} from './defaults.js';
import {loadKubeconfig, type ApiConnection} from './kubeconfig.js';
import {decodeListPage, decodeStatus, encodeObject, isProtobuf, PROTOBUF_TYPE} from './protobuf.js';

export type {ApiConnection} from './kubeconfig.js';

export class KubeApiError extends Error {
	override name = 'KubeApiError';
	constructor(
		message: string,
		/** HTTP status; 0 for a connection error. */
		readonly status: number,
		/** The Status object's reason (NotFound, Conflict, Expired, ...), when the server sent one. */
		readonly reason?: string,
		/** Seconds the server asked to wait (Retry-After header or Status details). */
		readonly retryAfterSeconds?: number,
	) {
		super(message);
	}
}
export class NotFoundError extends KubeApiError {
	override name = 'NotFoundError';
}
export class ConflictError extends KubeApiError {
	override name = 'ConflictError';
}
/** 410: for a list, the continue token expired (its revision was compacted). */
export class GoneError extends KubeApiError {
	override name = 'GoneError';
}
export class TooManyRequestsError extends KubeApiError {
	override name = 'TooManyRequestsError';
}
export class ServerError extends KubeApiError {
	override name = 'ServerError';
}
/** The apiserver could not be reached (refused, reset, timed out). */
export class ConnectionError extends KubeApiError {
	override name = 'ConnectionError';
}

export type KubeApiOptions = {
	/** Per request (default 30 s). */
	timeoutMs?: number;
	/** Retries of 429 / 5xx / connection errors before the typed error is thrown (default 6). */
	retries?: number;
	/** First back-off when the server gives no Retry-After (default 250 ms, doubling, max 5 s). */
	backoffMs?: number;
	userAgent?: string;
};

export type RequestOptions = {
	body?: unknown;
	contentType?: string;
	accept?: string;
	query?: Record<string, string | number | undefined>;
	signal?: AbortSignal;
	/**
	 * false: `signal` stops the retries (checked before each attempt, and ends a back-off
	 * sleep) but does not abort a request already sent. For many short writes that must not
	 * pay an abort listener each (re-encryption: the request's timeout still bounds it).
	 * Default true.
	 */
	abortInFlight?: boolean;
	/** Override the client's retry count for this request (0: fail on the first error). */
	retries?: number;
	timeoutMs?: number;
	/** Told of every transient failure (429, 5xx, connection error) before it is retried. */
	onRetry?: (error: KubeApiError) => void;
};

export type ObjectMeta = {
	name: string;
	namespace?: string;
	resourceVersion?: string;
	uid?: string;
	[key: string]: unknown;
};

export type KubeObject = {apiVersion?: string; kind?: string; metadata: ObjectMeta; [key: string]: unknown};

export type ListPage<T = KubeObject> = {
	items: T[];
	/** Empty or undefined on the last page. */
	continue?: string;
	resourceVersion?: string;
	/** Objects after this page (the apiserver sets it when it can count them). */
	remainingItemCount?: number;
	/** The list's kind ("SecretList"): its items carry no kind of their own. */
	kind?: string;
	apiVersion?: string;
};

/**
 * One listed object ready to be written back as it was listed: protobuf bytes (built-in
 * types) or the JSON object with its kind (custom resources, which have no protobuf).
 */
export type RewriteItem = {name: string; namespace?: string; body: Uint8Array | KubeObject; contentType: string};

export type RewritePage = {items: RewriteItem[]; continue?: string; resourceVersion?: string};

/** Where a resource lives in the API. */
export type ResourceInfo = {
	/** "" for the core group. */
	group: string;
	version: string;
	/** Plural name: "secrets". */
	resource: string;
	namespaced: boolean;
};

/** The URL path of a collection or an object. Without `namespace`, a namespaced collection lists all namespaces. */
export function resourcePath(info: ResourceInfo, namespace?: string, name?: string): string {
	const base = info.group === '' ? `/api/${info.version}` : `/apis/${info.group}/${info.version}`;
	const scope = info.namespaced && namespace !== undefined && namespace !== '' ? `/namespaces/${encodeURIComponent(namespace)}` : '';
	const object = name === undefined ? '' : `/${encodeURIComponent(name)}`;
	return `${base}${scope}/${info.resource}${object}`;
}

/** Resources whose location is known without discovery. */
const wellKnown: Record<string, ResourceInfo> = {
	secrets: {group: '', version: 'v1', resource: 'secrets', namespaced: true},
	configmaps: {group: '', version: 'v1', resource: 'configmaps', namespaced: true},
};

/** Split an EncryptionConfiguration resource name ("secrets", "deployments.apps") into resource and group. */
export function splitResourceName(name: string): {resource: string; group: string} {
	const dot = name.indexOf('.');
	return dot === -1 ? {resource: name, group: ''} : {resource: name.slice(0, dot), group: name.slice(dot + 1)};
}

/** Parse a Retry-After header (seconds, or an HTTP date). */
export function parseRetryAfter(value: string | undefined, now: Date): number | undefined {
	if (value === undefined || value.trim() === '') return undefined;
	if (/^\d+(\.\d+)?$/.test(value.trim())) return Number(value.trim());
	const date = Date.parse(value);
	if (Number.isNaN(date)) return undefined;
	return Math.max(0, (date - now.getTime()) / 1000);
}

const connectionCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNABORTED']);

function errorFromResponse(method: string, path: string, response: HttpResponse, now: Date): KubeApiError {
	let reason: string | undefined;
	let message: string | undefined;
	let retryAfter = parseRetryAfter(response.headers['retry-after'], now);
	const protobufStatus = isProtobuf(response.headers['content-type']) ? decodeStatus(response.body) : undefined;
	if (protobufStatus) {
		reason = protobufStatus.reason;
		message = protobufStatus.message;
		retryAfter ??= protobufStatus.retryAfterSeconds;
	} else try {
		const status = JSON.parse(response.body.toString('utf8')) as {
			kind?: string;
			reason?: string;
			message?: string;
			details?: {retryAfterSeconds?: number};
		};
		if (status.kind === 'Status') {
			reason = status.reason;
			message = status.message;
			retryAfter ??= status.details?.retryAfterSeconds;
		}
	} catch {
		// not a Status object
	}
	message ??= response.body.toString('utf8').trim().slice(0, 300);
	const text = `${method} ${path}: ${response.status}${reason ? ` ${reason}` : ''}${message ? `: ${message}` : ''}`;
	const {status} = response;
	if (status === 404) return new NotFoundError(text, status, reason, retryAfter);
	if (status === 409) return new ConflictError(text, status, reason, retryAfter);
	if (status === 410) return new GoneError(text, status, reason, retryAfter);
	if (status === 429) return new TooManyRequestsError(text, status, reason, retryAfter);
	if (status >= 500) return new ServerError(text, status, reason, retryAfter);
	return new KubeApiError(text, status, reason, retryAfter);
}

/** The kind of a list's items ("SecretList" -> "Secret"): list items carry none of their own. */
function itemKind(listKind: string | undefined): string | undefined {
	return listKind?.endsWith('List') ? listKind.slice(0, -'List'.length) : undefined;
}

/** What an aborted request throws (as fetch and node:http do). */
function abortError(signal: AbortSignal): Error {
	const reason: unknown = signal.reason;
	if (reason instanceof Error) return reason;
	return new DOMException('This operation was aborted', 'AbortError');
}

export class KubeApi {
	private readonly timeoutMs: number;
	private readonly retries: number;
	private readonly backoffMs: number;
	private readonly userAgent: string;
	private readonly resources = new Map<string, Promise<ResourceInfo>>();

	constructor(
		readonly host: Host,
		readonly connection: ApiConnection,
		options: KubeApiOptions = {},
	) {
		this.timeoutMs = options.timeoutMs ?? 30_000;
		this.retries = options.retries ?? 6;
		this.backoffMs = options.backoffMs ?? 250;
		this.userAgent = options.userAgent ?? 'etcd-harden';
	}

	/** One request; throws a typed KubeApiError for any status >= 400 after bounded retries of transient ones. */
	async request(method: string, path: string, options: RequestOptions = {}): Promise<HttpResponse> {
		const query = Object.entries(options.query ?? {})
			.filter((entry): entry is [string, string | number] => entry[1] !== undefined && entry[1] !== '')
			.map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(String(value))}`)
			.join('&');
		const url = `${this.connection.server}${path}${query ? `?${query}` : ''}`;
		const headers: Record<string, string> = {
			accept: options.accept ?? 'application/json',
			'user-agent': this.userAgent,
		};
		let body: string | Uint8Array | undefined;
		if (options.body !== undefined) {
			body = typeof options.body === 'string' || options.body instanceof Uint8Array ? options.body : JSON.stringify(options.body);
			headers['content-type'] = options.contentType ?? 'application/json';
		}
		if (this.connection.token) headers['authorization'] = `Bearer ${this.connection.token}`;
		const retries = options.retries ?? this.retries;
		let backoff = this.backoffMs;
		const requestSignal = options.abortInFlight === false ? undefined : options.signal;
		for (let attempt = 0; ; attempt++) {
			let error: KubeApiError;
			if (requestSignal === undefined && options.signal?.aborted) throw abortError(options.signal);
			try {
				const response = await this.host.request({
					url,
					method,
					headers,
					body,
					ca: this.connection.ca,
					cert: this.connection.cert,
					key: this.connection.key,
					timeoutMs: options.timeoutMs ?? this.timeoutMs,
					signal: requestSignal,
				});
				if (response.status < 400) return response;
				error = errorFromResponse(method, path, response, this.host.now());
				if (!(error instanceof TooManyRequestsError || error instanceof ServerError)) throw error;
			} catch (caught) {
				if (caught instanceof KubeApiError) throw caught;
				if (options.signal?.aborted) throw caught;
				const code = (caught as NodeJS.ErrnoException).code;
				const message = caught instanceof Error ? caught.message : String(caught);
				const transient = (code !== undefined && connectionCodes.has(code)) || /socket hang up|timed out/i.test(message);
				if (!transient) throw caught;
				error = new ConnectionError(`${method} ${path}: ${message}`, 0, code);
			}
			options.onRetry?.(error);
			if (attempt >= retries) throw error;
			const waitMs = error.retryAfterSeconds !== undefined ? Math.min(error.retryAfterSeconds, 60) * 1000 : backoff;
			backoff = Math.min(backoff * 2, 5000);
			await this.host.sleep(waitMs, options.signal);
		}
	}

	async requestJson<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
		const response = await this.request(method, path, options);
		try {
			return JSON.parse(response.body.toString('utf8')) as T;
		} catch {
			throw new KubeApiError(`${method} ${path}: the response is not JSON`, response.status);
		}
	}

	get<T = KubeObject>(path: string, options: RequestOptions = {}): Promise<T> {
		return this.requestJson<T>('GET', path, options);
	}

	/**
	 * One page of a collection. `metadataOnly` asks for PartialObjectMetadataList, so a page
	 * of 500 secrets carries names and versions but no data.
	 */
	async list<T = KubeObject>(
		path: string,
		options: {limit?: number; continue?: string; metadataOnly?: boolean; signal?: AbortSignal} = {},
	): Promise<ListPage<T>> {
		const accept = options.metadataOnly ? 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1, application/json' : undefined;
		const list = await this.requestJson<{kind?: string; apiVersion?: string; items?: T[] | null; metadata?: {continue?: string; resourceVersion?: string; remainingItemCount?: number}}>('GET', path, {
			query: {limit: options.limit, continue: options.continue},
			accept,
			signal: options.signal,
		});
		return {
			items: list.items ?? [],
			continue: list.metadata?.continue || undefined,
			resourceVersion: list.metadata?.resourceVersion,
			remainingItemCount: list.metadata?.remainingItemCount,
			kind: list.kind,
			apiVersion: list.apiVersion,
		};
	}

	/**
	 * One page of a collection for writing back unchanged (re-encryption): in protobuf when the
	 * apiserver has it for the type (each item's bytes untouched), else JSON.
	 */
	async listForRewrite(path: string, options: {limit?: number; continue?: string; signal?: AbortSignal} = {}): Promise<RewritePage> {
		const response = await this.request('GET', path, {query: {limit: options.limit, continue: options.continue}, accept: `${PROTOBUF_TYPE}, application/json`, signal: options.signal});
		if (isProtobuf(response.headers['content-type'])) {
			let page;
			try {
				page = decodeListPage(response.body);
			} catch (error) {
				throw new KubeApiError(`GET ${path}: ${error instanceof Error ? error.message : String(error)}`, response.status);
			}
			const kind = itemKind(page.kind) ?? page.kind;
			return {
				continue: page.continue,
				resourceVersion: page.resourceVersion,
				items: page.items.map(item => ({name: item.name, namespace: item.namespace, body: encodeObject(page.apiVersion, kind, item.raw), contentType: PROTOBUF_TYPE})),
			};
		}
		let list: {kind?: string; apiVersion?: string; items?: KubeObject[] | null; metadata?: {continue?: string; resourceVersion?: string}};
		try {
			list = JSON.parse(response.body.toString('utf8')) as typeof list;
		} catch {
			throw new KubeApiError(`GET ${path}: the response is neither protobuf nor JSON`, response.status);
		}
		// List items carry no kind of their own: the PUT needs it.
		const kind = itemKind(list.kind);
		return {
			continue: list.metadata?.continue || undefined,
			resourceVersion: list.metadata?.resourceVersion,
			items: (list.items ?? []).map(item => ({
				name: item.metadata.name,
				namespace: item.metadata.namespace,
				body: item.kind || !kind ? item : {...item, kind, ...(list.apiVersion ? {apiVersion: list.apiVersion} : {})},
				contentType: 'application/json',
			})),
		};
	}

	/** PATCH; the default content type is a JSON merge patch. */
	patch<T = KubeObject>(path: string, body: unknown, options: RequestOptions = {}): Promise<T> {
		return this.requestJson<T>('PATCH', path, {contentType: 'application/merge-patch+json', ...options, body});
	}

	/** PUT the whole object; with metadata.resourceVersion set, a stale write fails with ConflictError. */
	put<T = KubeObject>(path: string, body: unknown, options: RequestOptions = {}): Promise<T> {
		return this.requestJson<T>('PUT', path, {...options, body});
	}

	/** Where "secrets", "configmaps" or "<resource>.<group>" lives (API discovery, cached). */
	resolveResource(name: string): Promise<ResourceInfo> {
		const known = wellKnown[name];
		if (known) return Promise.resolve(known);
		let info = this.resources.get(name);
		if (info === undefined) {
			info = this.discover(name);
			info.catch(() => this.resources.delete(name));
			this.resources.set(name, info);
		}
		return info;
	}

	private async discover(name: string): Promise<ResourceInfo> {
		const {resource, group} = splitResourceName(name);
		let version = 'v1';
		if (group !== '') {
			const apiGroup = await this.get<{preferredVersion?: {version?: string}}>(`/apis/${group}`);
			const preferred = apiGroup.preferredVersion?.version;
			if (!preferred) throw new KubeApiError(`resource ${name}: API group ${group} has no preferred version`, 404);
			version = preferred;
		}
		const list = await this.get<{resources?: Array<{name: string; namespaced: boolean}>}>(group === '' ? `/api/${version}` : `/apis/${group}/${version}`);
		const found = list.resources?.find(item => item.name === resource);
		if (!found) throw new NotFoundError(`resource ${name} is not served by the apiserver (${group || 'core'}/${version})`, 404, 'NotFound');
		return {group, version, resource, namespaced: found.namespaced};
	}
}

/** Where a task reaches the API: a kubeconfig (default admin.conf) and, optionally, the LOCAL apiserver's URL. */
export type ApiTarget = {kubeconfig?: string; url?: string};

/** An API client for this kubeconfig (and local apiserver URL). */
export async function apiFor(host: Host, target: ApiTarget): Promise<KubeApi> {
	const connection = await loadKubeconfig(host, target.kubeconfig ?? ADMIN_KUBECONFIG, {server: target.url});
	return new KubeApi(host, connection);
}

/**
 * Raw scan of the values the apiserver stored in etcd, page by page through etcdctl, so that
 * tens of thousands of keys never sit in memory more than one page at a time. Each value is
 * classified by its prefix (format.ts); optionally a sample (or every value, `deep`) is
 * decrypted with the EncryptionConfiguration (decrypt.ts).
 *
 * Resource -> etcd key prefix (kube-apiserver 1.20, pkg/kubeapiserver/default_storage_factory_builder.go,
 * k8s.io/apiserver/pkg/server/storage/storage_factory.go ResourcePrefix, and
 * k8s.io/apiserver/pkg/server/options/etcd.go SimpleRestOptionsFactory):
 * - Built-in resources (core group and the built-in API groups such as apps, batch,
 *   rbac.authorization.k8s.io) live under `<etcd-prefix>/<resource>/`, whatever their group:
 *   `secrets` -> /registry/secrets/, `configmaps` -> /registry/configmaps/,
 *   `deployments.apps` -> /registry/deployments/. Exceptions compiled into the apiserver
 *   (SpecialDefaultResourcePrefixes): services -> services/specs, endpoints ->
 *   services/endpoints, nodes -> minions, replicationcontrollers -> controllers, ingresses ->
 *   ingress, podsecuritypolicies -> podsecuritypolicy.
 * - Custom resources (any other group), and the apiextensions/apiregistration objects served by
 *   their own servers, live under `<etcd-prefix>/<group>/<resource>/` (the CRD REST options'
 *   ResourcePrefix is `group + "/" + resource`).
 * Not handled: `--etcd-servers-overrides` (a resource stored in another etcd cluster) and
 * wildcard resources (`*.*`): scan concrete resource names.
 * The part after the prefix is `<namespace>/<name>` for namespaced resources and `<name>` for
 * cluster-scoped ones.
 */
import type {Host} from '../host/types.js';
import type {EncryptionConfig} from '../kube/types.js';
import type {EtcdConnection} from './connection.js';
import {DEFAULT_ETCD_PREFIX, normalizeEtcdPrefix} from './connection.js';
import {EtcdctlError, runEtcdctl} from './etcdctl.js';
import type {Primary, VerifyReport} from './decrypt.js';
import {emptyVerifyReport, parseGroupResource, primaryFor, primaryLabel, ruleFor, storedPrefix, verifyInto} from './decrypt.js';
import {classifyValue, valueLabel, type ValueClass} from './format.js';
import {decodeRangeResponse, ProtobufError, type RangeKeyValue} from './range-pb.js';
import {EtcdGrpcError, grpcRange, grpcUsable} from './kv-grpc.js';
import {GrpcTransportError} from '../host/types.js';

export {classifyValue, valueLabel, isKubernetesObject} from './format.js';
export type {ValueClass, EncryptedProvider} from './format.js';

/** Built-in API groups of kube-apiserver 1.20 whose resources are stored without the group. */
const BUILT_IN_GROUPS = new Set([
	'',
	'admissionregistration.k8s.io',
	'apps',
	'authentication.k8s.io',
	'authorization.k8s.io',
	'autoscaling',
	'batch',
	'certificates.k8s.io',
	'coordination.k8s.io',
	'discovery.k8s.io',
	'events.k8s.io',
	'extensions',
	'flowcontrol.apiserver.k8s.io',
	'internal.apiserver.k8s.io',
	'networking.k8s.io',
	'node.k8s.io',
	'policy',
	'rbac.authorization.k8s.io',
	'scheduling.k8s.io',
	'storage.k8s.io',
]);

const SPECIAL_PREFIXES: Record<string, string> = {
	'/replicationcontrollers': 'controllers',
	'/endpoints': 'services/endpoints',
	'/nodes': 'minions',
	'/services': 'services/specs',
	'extensions/ingresses': 'ingress',
	'networking.k8s.io/ingresses': 'ingress',
	'extensions/podsecuritypolicies': 'podsecuritypolicy',
	'policy/podsecuritypolicies': 'podsecuritypolicy',
};

/** The etcd key prefix (with trailing slash) under which the apiserver stores a resource. */
export function etcdPrefixForResource(resource: string, etcdPrefix: string = DEFAULT_ETCD_PREFIX): string {
	const {group, resource: name} = parseGroupResource(resource);
	if (name === '' || name === '*' || name.includes('/')) throw new Error(`cannot map resource "${resource}" to an etcd prefix`);
	const base = normalizeEtcdPrefix(etcdPrefix);
	const special = SPECIAL_PREFIXES[`${group}/${name}`];
	if (special !== undefined) return `${base}/${special}/`;
	if (BUILT_IN_GROUPS.has(group)) return `${base}/${name}/`;
	return `${base}/${group}/${name}/`;
}

/**
 * The smallest key greater than every key with this prefix (etcd's prefix range end). Only for
 * prefixes ending in an ASCII character below DEL, which every resource prefix does (they end
 * in '/'): the end travels through argv, which cannot carry arbitrary bytes.
 */
export function prefixRangeEnd(prefix: string): string {
	const last = prefix.charCodeAt(prefix.length - 1);
	if (prefix === '' || last >= 0x7f) throw new Error(`internal: cannot compute a range end for ${JSON.stringify(prefix)}`);
	return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

export type ObjectRef = {
	/** The full etcd key. */
	key: string;
	/** Absent for cluster-scoped resources. */
	namespace?: string;
	name: string;
};

/** `/registry/secrets/ns/name` -> {namespace: 'ns', name: 'name'}; `/registry/<r>/name` -> {name}. */
export function objectRefFromKey(prefix: string, key: string): ObjectRef {
	const rest = key.startsWith(prefix) ? key.slice(prefix.length) : key;
	const slash = rest.indexOf('/');
	if (slash === -1) return {key, name: rest};
	return {key, namespace: rest.slice(0, slash), name: rest.slice(slash + 1)};
}

export type ScanOptions = {
	/**
	 * Keys per etcdctl request. Default: adaptive, starting at 1000 keys and then sized so
	 * each page's etcdctl output is about `pageBytes`, between 100 and 10,000 keys.
	 */
	pageSize?: number;
	/** Target etcdctl output per page for the adaptive page size. Default 4 MB. */
	pageBytes?: number;
	/** The apiserver's --etcd-prefix. Default /registry. */
	etcdPrefix?: string;
	/**
	 * The expected primary (write) provider. Default: derived per resource from `config`.
	 * Without either, no not-on-primary list is produced.
	 */
	primary?: Primary | ((resource: string) => Primary | undefined);
	/** The EncryptionConfiguration the apiserver runs: enables key checks and decryption. */
	config?: EncryptionConfig;
	/** Decrypt values with `config`: a sample per stored key, or every value with deep. */
	verify?: {deep?: boolean; samplePerKey?: number; maxFailures?: number};
	/** Cap on listed unknown keys and key-not-in-config keys per resource. Default 1000. */
	maxListed?: number;
	/**
	 * List the objects not on the primary (`notOnPrimary`), for a re-encryption to target. Default
	 * true. False counts them only (`notOnPrimaryCount`): discovery needs the number, and a list of
	 * every object held in memory grows with the cluster (200,000 references at 100,000 secrets
	 * and 100,000 configmaps, for each verification of a run).
	 */
	listNotOnPrimary?: boolean;
	/**
	 * Called with each object not on the primary, as the scan reaches it (in etcd key order):
	 * a caller that keeps its own compact form sets `listNotOnPrimary: false` and takes them here.
	 */
	onNotOnPrimary?: (resource: string, ref: ObjectRef) => void;
	/** Called after each page. */
	onProgress?: (progress: {resource: string; scanned: number; total: number}) => void;
	signal?: AbortSignal;
	/** Per etcdctl call. Default 120 s. */
	timeoutMs?: number;
};

export type ResourceScan = {
	resource: string;
	prefix: string;
	/** Keys scanned. */
	total: number;
	/** Counts per stored key: `secretbox:key1`, `aesgcm:key2`, `kms:<name>`, `kms-v2:<name>`. */
	byKey: Record<string, number>;
	plaintext: number;
	unknown: number;
	/** etcd keys whose value is neither plaintext nor a known k8s:enc: format (capped). */
	unknownKeys: string[];
	/** Present with a config: values encrypted with a provider/key the resource's rule lacks. */
	keyNotInConfig?: number;
	keyNotInConfigKeys?: string[];
	/** The expected primary, as a label like `secretbox:key1`, when known. */
	primary?: string;
	/**
	 * Objects whose stored value is not on the primary, for targeted re-encryption: other keys,
	 * plaintext (unless the primary is identity), and unknown values. Sorted by etcd key.
	 */
	notOnPrimary?: ObjectRef[];
	/** How many objects are not on the primary (present whenever the primary is known, listed or not). */
	notOnPrimaryCount?: number;
	/** The etcd revision the scan read at. */
	revision: number;
	/** False when the pinned revision was compacted mid-scan and later pages read newer data. */
	consistent: boolean;
	verification?: VerifyReport;
};

export type ScanReport = {resources: ResourceScan[]; keysScanned: number; elapsedMs: number};

type Page = {revision: number; count: number; more: boolean; kvs: RangeKeyValue[]; bytes: number};

/** gRPC status OUT_OF_RANGE: etcd's ErrCompacted ("mvcc: required revision has been compacted"). */
const GRPC_OUT_OF_RANGE = 11;
/** gRPC status RESOURCE_EXHAUSTED: a message above a size limit on the way. */
const GRPC_RESOURCE_EXHAUSTED = 8;

function isCompacted(error: unknown): boolean {
	if (error instanceof EtcdGrpcError) return error.status === GRPC_OUT_OF_RANGE && /compacted/i.test(error.statusMessage);
	return error instanceof EtcdctlError && /compacted/i.test(error.stderr);
}

/** The page was too big for a buffer on the way (execa's maxBuffer, a gRPC message limit). */
function isTooLarge(error: unknown): boolean {
	if (error instanceof EtcdGrpcError) return error.status === GRPC_RESOURCE_EXHAUSTED;
	return error instanceof EtcdctlError && /maxBuffer|larger than max|ResourceExhausted|too large/i.test(error.stderr);
}

/**
 * How pages are read: over gRPC while it works (kv-grpc.ts), else through etcdctl. gRPC that
 * fails before any page was read gives way to etcdctl for the whole scan; once a page came over
 * gRPC, a later failure is an error like any etcdctl failure.
 */
type Transport = {grpc: boolean; grpcAnswered: boolean; grpcFailure?: string};

const MIN_ADAPTIVE_PAGE = 100;
const MAX_ADAPTIVE_PAGE = 10_000;

/**
 * Read `[start, end)` at most `limit` keys, pinned to `revision` when given. With `after`, the
 * first key is `after` itself (already seen) and is dropped: etcdctl takes keys on argv, which
 * cannot carry the NUL byte that "the next key after" would need.
 */
async function readPage(
	host: Host,
	connection: EtcdConnection,
	start: string,
	end: string,
	limit: number,
	revision: number | undefined,
	options: ScanOptions,
	transport: Transport,
): Promise<Page> {
	if (transport.grpc) {
		let bytes: Buffer | undefined;
		try {
			bytes = await grpcRange(
				host,
				connection,
				{key: Buffer.from(start, 'utf8'), rangeEnd: Buffer.from(end, 'latin1'), limit, ...(revision === undefined ? {} : {revision})},
				{timeoutMs: options.timeoutMs ?? 120_000, ...(options.signal === undefined ? {} : {signal: options.signal})},
			);
		} catch (error) {
			if (!(error instanceof GrpcTransportError) || transport.grpcAnswered || options.signal?.aborted) throw error;
			transport.grpc = false;
			transport.grpcFailure = error.message;
		}
		if (bytes !== undefined) {
			transport.grpcAnswered = true;
			try {
				return {...decodeRangeResponse(bytes), bytes: bytes.length};
			} catch (error) {
				if (!(error instanceof ProtobufError)) throw error;
				throw new Error(`etcd's range answer for ${start} is not a RangeResponse (${bytes.length} bytes: ${error.message})`);
			}
		}
	}
	const args = ['get', start, end, `--limit=${limit}`];
	if (revision !== undefined) args.push(`--rev=${revision}`);
	// Protobuf, not JSON: the bytes etcd sent, no base64 both ways (range-pb.ts).
	args.push('-w', 'protobuf');
	const result = await runEtcdctl(host, connection, args, {
		readOnly: true,
		binaryStdout: true,
		timeoutMs: options.timeoutMs ?? 120_000,
		...(options.signal === undefined ? {} : {signal: options.signal}),
	});
	if (result.exitCode !== 0 || result.timedOut) {
		const error = new EtcdctlError(result.command, result.exitCode, result.stderr, result.timedOut);
		// etcdctl often only times out where the direct read named the cause (a refused certificate).
		if (transport.grpcFailure !== undefined) error.message += `; reading over gRPC first failed: ${transport.grpcFailure}`;
		throw error;
	}
	const bytes = result.stdoutBytes ?? Buffer.from(result.stdout, 'latin1');
	try {
		return {...decodeRangeResponse(bytes), bytes: bytes.length};
	} catch (error) {
		if (!(error instanceof ProtobufError)) throw error;
		throw new EtcdctlError(result.command, result.exitCode, `output is not a RangeResponse (${bytes.length} bytes: ${error.message})`, false);
	}
}

type Reservoir = {seen: number; items: Array<{key: string; value: Buffer}>};

/** What one resource's values are compared with: the primary, and what the config can read. */
type Expectations = {
	prefix: string;
	config?: EncryptionConfig;
	primary?: Primary;
	primaryPrefix?: Buffer;
	/** Labels the config can read (`secretbox:key1`, `identity`, `kms:name`). */
	readable: Set<string>;
};

function expectationsFor(resource: string, options: ScanOptions): Expectations {
	const config = options.config;
	const primary =
		typeof options.primary === 'function'
			? options.primary(resource)
			: (options.primary ?? (config === undefined ? undefined : primaryFor(config, resource)));
	const readable = new Set<string>();
	if (config !== undefined) {
		for (const provider of ruleFor(config, resource)?.providers ?? [{type: 'identity' as const}]) {
			if (provider.type === 'identity') readable.add('identity');
			else if (provider.type === 'kms') readable.add(`${provider.apiVersion === 'v2' ? 'kms-v2' : 'kms'}:${provider.name}`);
			else for (const key of provider.keys) readable.add(`${provider.type}:${key.name}`);
		}
	}
	return {
		prefix: etcdPrefixForResource(resource, options.etcdPrefix),
		...(config === undefined ? {} : {config}),
		...(primary === undefined ? {} : {primary, primaryPrefix: Buffer.from(storedPrefix(primary), 'utf8')}),
		readable,
	};
}

type PageOfKeys = {kvs: Page['kvs']; revision: number; count: number; consistent: boolean};

/** A namespace name as the apiserver validates it (a DNS label). */
const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Split points inside `[prefix, end)`: `<prefix><namespace>/` for every namespace in etcd, sorted.
 * Why: etcd 3.4 answers a Range with a limit after collecting every revision from the start key
 * to the range end (mvcc treeIndex.Revisions, for the count), so paging a 100,000-key prefix to
 * its end costs each page a walk over all the keys still ahead: measured here, a 1,000-key page
 * at the start of 100,000 secrets took 110-400 ms, the same page bounded to ~6,000 keys 16-33 ms.
 * Pages bounded by these points walk only their own part. Any points partition the range, so the
 * result does not depend on them (a cluster-scoped resource, a namespace deleted or created
 * meanwhile): they only bound the work. Over gRPC only; empty when they cannot be read.
 */
async function splitPoints(host: Host, connection: EtcdConnection, prefix: string, end: string, options: ScanOptions, transport: Transport): Promise<string[]> {
	const namespaces = etcdPrefixForResource('namespaces', options.etcdPrefix);
	if (namespaces === prefix) return [];
	try {
		const bytes = await grpcRange(
			host,
			connection,
			{key: Buffer.from(namespaces), rangeEnd: Buffer.from(prefixRangeEnd(namespaces)), keysOnly: true},
			{timeoutMs: options.timeoutMs ?? 120_000, ...(options.signal === undefined ? {} : {signal: options.signal})},
		);
		const points = new Set<string>();
		for (const kv of decodeRangeResponse(bytes).kvs) {
			const name = kv.key.toString('utf8').slice(namespaces.length);
			const point = `${prefix}${name}/`;
			if (NAMESPACE_NAME.test(name) && point > prefix && point < end) points.add(point);
		}
		return [...points].sort();
	} catch (error) {
		if (options.signal?.aborted) throw error;
		if (error instanceof GrpcTransportError) {
			// No endpoint answers over gRPC: the pages go through etcdctl (not a second attempt).
			transport.grpc = false;
			transport.grpcFailure = error.message;
		}
		return [];
	}
}

/** Keys in the whole prefix, for progress (one walk in etcd, beside the first pages); undefined if not read. */
async function countUnder(host: Host, connection: EtcdConnection, prefix: string, end: string, options: ScanOptions): Promise<number | undefined> {
	try {
		const bytes = await grpcRange(host, connection, {key: Buffer.from(prefix), rangeEnd: Buffer.from(end), countOnly: true}, {
			timeoutMs: options.timeoutMs ?? 120_000,
			...(options.signal === undefined ? {} : {signal: options.signal}),
		});
		return decodeRangeResponse(bytes).count;
	} catch {
		return undefined;
	}
}

/**
 * Every key under `prefix`, page by page at one revision (continued at the current one, and
 * marked inconsistent, if the apiserver compacts it meanwhile). The next page is fetched while
 * the caller classifies this one; page sizes adapt to value sizes unless fixed. Over gRPC the
 * range is read in segments between namespace split points (splitPoints), each segment spanning
 * about one page of keys by the density seen so far.
 */
async function* pagesUnder(host: Host, connection: EtcdConnection, prefix: string, options: ScanOptions): AsyncGenerator<PageOfKeys> {
	const adaptive = options.pageSize === undefined;
	let pageSize = options.pageSize ?? 1000;
	if (!Number.isInteger(pageSize) || pageSize < 1) throw new Error(`page size must be a positive integer, got ${pageSize}`);
	const pageBytes = options.pageBytes ?? 4_000_000;
	const end = prefixRangeEnd(prefix);
	let revision: number | undefined;
	let consistent = true;
	let first: {revision: number; count: number} | undefined;
	let after: string | undefined;
	const transport: Transport = {grpc: grpcUsable(host, connection), grpcAnswered: false};
	const points = [prefix, ...(transport.grpc ? await splitPoints(host, connection, prefix, end, options, transport) : []), end];
	const counted = points.length > 2 ? countUnder(host, connection, prefix, end, options) : undefined;
	// The current segment [points[from], points[to]) and how many points the next one spans.
	let from = 0;
	let to = Math.min(1, points.length - 1);
	let keysSeen = 0;
	const fetch = async (start: string, skipFirst: boolean, rangeEnd: string): Promise<Page> => {
		for (;;) {
			const limit = skipFirst ? pageSize + 1 : pageSize;
			try {
				return await readPage(host, connection, start, rangeEnd, limit, revision, options, transport);
			} catch (error) {
				if (revision !== undefined && isCompacted(error)) {
					// The apiserver compacts old revisions every few minutes; continue at the current one.
					revision = undefined;
					consistent = false;
				} else if (isTooLarge(error) && pageSize > 1) {
					pageSize = Math.max(1, Math.floor(pageSize / 2));
				} else throw error;
			}
		}
	};
	let pending: Promise<Page> | undefined = fetch(prefix, false, points[to]!);
	while (pending !== undefined) {
		const page: Page = await pending;
		pending = undefined;
		if (revision === undefined && consistent) {
			revision = page.revision;
			first = {revision: page.revision, count: page.count};
		}
		if (adaptive && page.kvs.length > 0) {
			const perKey = page.bytes / page.kvs.length;
			pageSize = Math.min(MAX_ADAPTIVE_PAGE, Math.max(MIN_ADAPTIVE_PAGE, Math.floor(pageBytes / perKey)));
		}
		let kvs = page.kvs;
		if (after !== undefined && kvs.length > 0 && kvs[0]!.key.toString('utf8') === after) kvs = kvs.slice(1);
		keysSeen += kvs.length;
		const last = kvs.at(-1);
		if (page.more) {
			if (last === undefined) throw new Error(`etcd paging under ${prefix} made no progress after ${JSON.stringify(after)}`);
			const nextBytes = last.key;
			const next = nextBytes.toString('utf8');
			if (after !== undefined && Buffer.compare(nextBytes, Buffer.from(after, 'utf8')) <= 0) throw new Error(`etcd paging under ${prefix} went backwards at ${JSON.stringify(next)}`);
			after = next;
			// Fetch the next page while this one is classified.
			pending = fetch(next, true, points[to]!);
		} else if (to < points.length - 1) {
			// This segment is done: the next one spans about a page of keys at the density so far.
			// At most as many points as read so far (the span doubles): a density seen on few keys
			// never sends one read across most of the range.
			const estimate = keysSeen === 0 ? to : Math.floor((pageSize * to) / keysSeen);
			const span = Math.max(1, Math.min(to, estimate));
			from = to;
			to = Math.min(points.length - 1, from + span);
			after = undefined;
			pending = fetch(points[from]!, false, points[to]!);
		}
		pending?.catch(() => undefined); // handled when awaited
		const total = counted === undefined ? first?.count : await counted;
		yield {kvs, revision: first?.revision ?? 0, count: total ?? first?.count ?? 0, consistent};
	}
}

function startsWithBytes(value: Buffer, prefix: Buffer): boolean {
	if (value.length < prefix.length) return false;
	for (let index = 0; index < prefix.length; index++) if (value[index] !== prefix[index]) return false;
	return true;
}

/** Scan one resource's prefix. */
export async function scanResource(host: Host, connection: EtcdConnection, resource: string, options: ScanOptions = {}): Promise<ResourceScan> {
	const maxListed = options.maxListed ?? 1000;
	const expected = expectationsFor(resource, options);
	const {prefix, config, primaryPrefix, readable} = expected;
	if (options.verify !== undefined && config === undefined) throw new Error('internal: scan verification needs the EncryptionConfiguration');
	const verify = options.verify;
	const samplePerKey = verify?.samplePerKey ?? 20;
	const reservoirs = new Map<string, Reservoir>();
	const verification = verify === undefined ? undefined : emptyVerifyReport();

	const result: ResourceScan = {
		resource,
		prefix,
		total: 0,
		byKey: {},
		plaintext: 0,
		unknown: 0,
		unknownKeys: [],
		revision: 0,
		consistent: true,
	};
	if (config !== undefined) {
		result.keyNotInConfig = 0;
		result.keyNotInConfigKeys = [];
	}
	if (expected.primary !== undefined) {
		result.primary = primaryLabel(expected.primary);
		result.notOnPrimaryCount = 0;
		if (options.listNotOnPrimary !== false) result.notOnPrimary = [];
	}

	// The encrypted prefixes seen so far (a handful: one per key in use), so that most values are
	// classified by one byte comparison instead of parsing and allocating their prefix again.
	const seen: Array<{prefix: Buffer; kind: ValueClass; label: string}> = [];
	const classify = (value: Buffer): {kind: ValueClass; label: string} => {
		for (const entry of seen) if (startsWithBytes(value, entry.prefix)) return entry;
		const kind = classifyValue(value);
		const entry = {prefix: Buffer.from(value.subarray(0, kind.kind === 'encrypted' ? kind.prefixLength : 0)), kind, label: valueLabel(kind)};
		// Same prefix bytes, same class: classifyValue reads nothing past the prefix.
		if (kind.kind === 'encrypted' && seen.length < 32) seen.push(entry);
		return entry;
	};

	for await (const page of pagesUnder(host, connection, prefix, options)) {
		result.revision = page.revision;
		result.consistent = page.consistent;
		for (const kv of page.kvs) {
			const value = kv.value;
			result.total++;
			const {kind, label} = classify(value);
			let key: string | undefined;
			const keyString = (): string => (key ??= kv.key.toString('utf8'));
			if (kind.kind === 'plaintext') result.plaintext++;
			else if (kind.kind === 'unknown') {
				result.unknown++;
				if (result.unknownKeys.length < maxListed) result.unknownKeys.push(keyString());
			} else result.byKey[label] = (result.byKey[label] ?? 0) + 1;
			if (config !== undefined && kind.kind !== 'unknown' && !readable.has(label)) {
				result.keyNotInConfig!++;
				if (result.keyNotInConfigKeys!.length < maxListed) result.keyNotInConfigKeys!.push(keyString());
			}
			if (primaryPrefix !== undefined) {
				const onPrimary = primaryPrefix.length === 0 ? kind.kind === 'plaintext' : startsWithBytes(value, primaryPrefix);
				if (!onPrimary) {
					result.notOnPrimaryCount!++;
					if (result.notOnPrimary !== undefined || options.onNotOnPrimary !== undefined) {
						const ref = objectRefFromKey(prefix, keyString());
						result.notOnPrimary?.push(ref);
						options.onNotOnPrimary?.(resource, ref);
					}
				}
			}
			if (verification === undefined) continue;
			if (verify!.deep) verifyInto(verification, config!, resource, {key: keyString(), value}, verify!.maxFailures);
			else if (kind.kind === 'encrypted') sample(reservoirs, label, samplePerKey, keyString, value);
		}
		options.onProgress?.({resource, scanned: result.total, total: Math.max(page.count, result.total)});
	}
	if (verification !== undefined && !verify!.deep) {
		for (const reservoir of reservoirs.values()) {
			for (const item of reservoir.items) verifyInto(verification, config!, resource, item, verify!.maxFailures);
		}
	}
	if (verification !== undefined) result.verification = verification;
	return result;
}

/**
 * Reservoir sample per stored key, so every key in use is exercised. A kept value is copied:
 * it is a view of its page's whole buffer, which it would otherwise pin.
 */
function sample(reservoirs: Map<string, Reservoir>, label: string, size: number, key: () => string, value: Buffer): void {
	let reservoir = reservoirs.get(label);
	if (reservoir === undefined) reservoirs.set(label, (reservoir = {seen: 0, items: []}));
	reservoir.seen++;
	if (reservoir.items.length < size) reservoir.items.push({key: key(), value: Buffer.from(value)});
	else {
		const slot = Math.floor(Math.random() * reservoir.seen);
		if (slot < size) reservoir.items[slot] = {key: key(), value: Buffer.from(value)};
	}
}

/** Scan several resources, one after another. */
export async function scanResources(
	host: Host,
	connection: EtcdConnection,
	resources: readonly string[],
	options: ScanOptions = {},
): Promise<ScanReport> {
	const started = Date.now();
	const results: ResourceScan[] = [];
	for (const resource of resources) results.push(await scanResource(host, connection, resource, options));
	return {resources: results, keysScanned: results.reduce((sum, scan) => sum + scan.total, 0), elapsedMs: Date.now() - started};
}

/**
 * Whether a scan proves the resource fully on its primary and readable: no plaintext (unless
 * the primary is identity), no unknown values, no value under a key the config lacks, nothing
 * off the primary, no failed decryption. False means exit 1.
 */
export function scanIsClean(scan: ResourceScan): boolean {
	return (
		(scan.plaintext === 0 || scan.primary === 'identity') &&
		scan.unknown === 0 &&
		(scan.keyNotInConfig ?? 0) === 0 &&
		(scan.notOnPrimaryCount ?? 0) === 0 &&
		(scan.verification?.failed ?? 0) === 0
	);
}

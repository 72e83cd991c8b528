/**
 * Plaintext history in etcd's files: a streaming matcher over the bytes of `member/snap/db`
 * (bbolt), `member/wal/*.wal` or a snapshot file, counting
 *
 * - plaintext records of the encrypted resources: kube-apiserver's protobuf form, the magic
 *   `k8s\0` followed by the runtime.Unknown TypeMeta (field 1: apiVersion, field 2: kind), e.g.
 *   `k8s\0 0a 0c 0a 02 "v1" 12 06 "Secret"`; and the JSON form the apiserver's JSON serializer
 *   writes, `{"kind":"Secret","apiVersion":"v1"`;
 * - encrypted records by stored key, from the `k8s:enc:<provider>:<v1|v2>:<name>:` prefix, so a
 *   caller can count values under a key that is no longer in the config.
 *
 * etcd keeps every old revision of a key until compaction, and bbolt keeps the bytes of freed
 * pages until a defrag rewrites the file; a value is stored contiguously in both files (bbolt
 * overflow pages are consecutive, a WAL record is one frame), so a byte match finds it.
 *
 * Pure: bytes in, counts out, constant memory (a carry of a few hundred bytes between chunks).
 * File reading is the host's (Host.readChunks).
 */
import type {EncryptionConfig} from '../kube/types.js';
import {parseGroupResource, primaryFor} from './decrypt.js';

/** What a plaintext object of a resource starts with: its apiVersion and kind. */
export type TypeMeta = {apiVersion: string; kind: string};

/**
 * The kinds of the resources an EncryptionConfiguration usually names, at the version
 * kube-apiserver 1.20 stores them (storage version). A resource not listed here is not
 * counted (reported as such): its stored apiVersion is not known without the apiserver.
 */
const STORED_TYPES: Record<string, TypeMeta> = {
	secrets: {apiVersion: 'v1', kind: 'Secret'},
	configmaps: {apiVersion: 'v1', kind: 'ConfigMap'},
	serviceaccounts: {apiVersion: 'v1', kind: 'ServiceAccount'},
	pods: {apiVersion: 'v1', kind: 'Pod'},
	events: {apiVersion: 'v1', kind: 'Event'},
	'deployments.apps': {apiVersion: 'apps/v1', kind: 'Deployment'},
	'statefulsets.apps': {apiVersion: 'apps/v1', kind: 'StatefulSet'},
	'daemonsets.apps': {apiVersion: 'apps/v1', kind: 'DaemonSet'},
	'replicasets.apps': {apiVersion: 'apps/v1', kind: 'ReplicaSet'},
	'jobs.batch': {apiVersion: 'batch/v1', kind: 'Job'},
	'cronjobs.batch': {apiVersion: 'batch/v1beta1', kind: 'CronJob'},
};

/** The stored TypeMeta of a resource name as the config writes it (`secrets`, `deployments.apps`). */
export function storedTypeFor(resource: string): TypeMeta | undefined {
	const {group, resource: name} = parseGroupResource(resource);
	return STORED_TYPES[group === '' ? name : `${name}.${group}`];
}

function protobufVarint(value: number): Buffer {
	const bytes: number[] = [];
	let rest = value;
	while (rest >= 0x80) {
		bytes.push((rest & 0x7f) | 0x80);
		rest >>>= 7;
	}
	bytes.push(rest);
	return Buffer.from(bytes);
}

/** Protobuf field `number` of wire type 2 (bytes) holding `body`. */
function lengthDelimited(number: number, body: Buffer): Buffer {
	return Buffer.concat([Buffer.from([(number << 3) | 2]), protobufVarint(body.length), body]);
}

/** `k8s\0` + runtime.Unknown{typeMeta: TypeMeta{apiVersion, kind}}: how every stored protobuf object starts. */
export function protobufPattern(type: TypeMeta): Buffer {
	const typeMeta = Buffer.concat([lengthDelimited(1, Buffer.from(type.apiVersion)), lengthDelimited(2, Buffer.from(type.kind))]);
	return Buffer.concat([Buffer.from('k8s\0', 'latin1'), lengthDelimited(1, typeMeta)]);
}

/** How the apiserver's JSON serializer starts an object (TypeMeta's field order: kind, apiVersion). */
export function jsonPattern(type: TypeMeta): Buffer {
	return Buffer.from(`{"kind":${JSON.stringify(type.kind)},"apiVersion":${JSON.stringify(type.apiVersion)}`);
}

const ENCRYPTED = Buffer.from('k8s:enc:', 'latin1');
const K8S = Buffer.from('k8s', 'latin1');
const JSON_KIND = Buffer.from('{"kind":', 'latin1');
/** Bytes read after `k8s:enc:` for the provider, version and key name (longer names are cut). */
const LABEL_BYTES = 160;
const COLON = 0x3a;

type Pattern = {resource: string; bytes: Buffer};

export type HistoryCounts = {
	/** Plaintext records per resource (protobuf and JSON forms together). */
	plaintext: Record<string, number>;
	/** Encrypted records per stored key: `secretbox:key1`, `kms:<name>`, `kms-v2:<name>`. */
	encrypted: Record<string, number>;
	/** Bytes matched over. */
	bytes: number;
};

/**
 * The streaming matcher: `push` chunks of any size in file order, then `end`. A match is
 * counted exactly once, whichever chunk boundary it straddles: the last `carry` bytes of each
 * push are held back and searched together with the head of the next chunk.
 */
export class HistoryMatcher {
	private readonly protobuf: Pattern[] = [];
	private readonly json: Pattern[] = [];
	/** Bytes a match may need from its first byte. */
	private readonly span: number;
	private tail: Buffer = Buffer.alloc(0);
	private readonly counts: HistoryCounts = {plaintext: {}, encrypted: {}, bytes: 0};
	/** Labels by their raw `provider:version:name` text: a stream has few distinct ones. */
	private readonly labels = new Map<string, string | undefined>();

	/** `resources`: the encrypted resources whose plaintext records to count (unknown kinds are ignored). */
	constructor(resources: readonly string[]) {
		for (const resource of new Set(resources)) {
			const type = storedTypeFor(resource);
			if (type === undefined) continue;
			this.counts.plaintext[resource] = 0;
			this.protobuf.push({resource, bytes: protobufPattern(type)});
			this.json.push({resource, bytes: jsonPattern(type)});
		}
		this.span = Math.max(ENCRYPTED.length + LABEL_BYTES, ...[...this.protobuf, ...this.json].map(pattern => pattern.bytes.length));
	}

	push(chunk: Uint8Array): void {
		const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
		this.counts.bytes += buffer.length;
		const carry = this.span - 1;
		if (buffer.length <= 2 * carry) {
			const data = Buffer.concat([this.tail, buffer]);
			this.search(data, data.length - carry);
			this.tail = Buffer.from(data.subarray(Math.max(0, data.length - carry)));
			return;
		}
		// Matches that start in the held-back tail: search it with the head of this chunk.
		if (this.tail.length > 0) this.search(Buffer.concat([this.tail, buffer.subarray(0, carry)]), this.tail.length);
		this.search(buffer, buffer.length - carry);
		this.tail = Buffer.from(buffer.subarray(buffer.length - carry));
	}

	/** The counts; matches in the last bytes are counted here. */
	end(): HistoryCounts {
		this.search(this.tail, this.tail.length);
		this.tail = Buffer.alloc(0);
		return {plaintext: {...this.counts.plaintext}, encrypted: {...this.counts.encrypted}, bytes: this.counts.bytes};
	}

	/**
	 * Count matches starting before `limit` (starts at or after it belong to a later search).
	 * Two byte searches cover every pattern: `k8s` (the byte after it tells a protobuf object
	 * from an encrypted value) and `{"kind":` (JSON); each hit is compared in place.
	 */
	private search(data: Buffer, limit: number): void {
		if (limit <= 0) return;
		for (let at = data.indexOf(K8S); at !== -1 && at < limit; at = data.indexOf(K8S, at + 3)) {
			const next = data[at + 3];
			if (next === 0x00) {
				const pattern = this.protobuf.find(candidate => startsAt(data, at, candidate.bytes));
				if (pattern) this.counts.plaintext[pattern.resource]! += 1;
			} else if (next === COLON && startsAt(data, at, ENCRYPTED)) {
				const label = this.label(data, at + ENCRYPTED.length);
				if (label !== undefined) this.counts.encrypted[label] = (this.counts.encrypted[label] ?? 0) + 1;
			}
		}
		if (this.json.length === 0) return;
		for (let at = data.indexOf(JSON_KIND); at !== -1 && at < limit; at = data.indexOf(JSON_KIND, at + 1)) {
			const pattern = this.json.find(candidate => startsAt(data, at, candidate.bytes));
			if (pattern) this.counts.plaintext[pattern.resource]! += 1;
		}
	}

	/** `secretbox:key1` from the bytes after `k8s:enc:`; undefined when it is not a stored prefix. */
	private label(data: Buffer, start: number): string | undefined {
		const end = Math.min(data.length, start + LABEL_BYTES);
		let colons = 0;
		let at = start;
		for (; at < end; at++) if (data[at] === COLON && ++colons === 3) break;
		if (colons < 3) return undefined;
		const raw = data.toString('latin1', start, at);
		if (this.labels.has(raw)) return this.labels.get(raw);
		const [provider, version, name] = raw.split(':') as [string, string, string];
		const valid = /^(aescbc|aesgcm|secretbox|kms)$/.test(provider) && /^v[12]$/.test(version) && /^[\x21-\x7e]+$/.test(name);
		const label = !valid ? undefined : provider === 'kms' && version === 'v2' ? `kms-v2:${name}` : `${provider}:${name}`;
		if (this.labels.size < 10_000) this.labels.set(raw, label);
		return label;
	}
}

function startsAt(data: Buffer, at: number, bytes: Buffer): boolean {
	return at + bytes.length <= data.length && data.compare(bytes, 0, bytes.length, at, at + bytes.length) === 0;
}

/** Count over an async stream of chunks (a file through Host.readChunks). */
export async function countHistory(chunks: AsyncIterable<Uint8Array>, resources: readonly string[]): Promise<HistoryCounts> {
	const matcher = new HistoryMatcher(resources);
	for await (const chunk of chunks) matcher.push(chunk);
	return matcher.end();
}

/** The sum of the plaintext counts. */
export function plaintextTotal(counts: Pick<HistoryCounts, 'plaintext'>): number {
	return Object.values(counts.plaintext).reduce((sum, count) => sum + count, 0);
}

/** Encrypted records under keys the config cannot read (`readable`: labels like `secretbox:key2`). */
export function underRemovedKeys(counts: Pick<HistoryCounts, 'encrypted'>, readable: ReadonlySet<string>): Record<string, number> {
	return Object.fromEntries(Object.entries(counts.encrypted).filter(([label]) => !readable.has(label)));
}

/** The resources the config stores encrypted (primary not identity): their plaintext is the residue. */
export function encryptedResources(config: EncryptionConfig | undefined, resources: readonly string[]): string[] {
	if (config === undefined) return [];
	return resources.filter(resource => primaryFor(config, resource).type !== 'identity');
}

/** Every stored-key label the config can read (`secretbox:key1`, `kms:name`, `kms-v2:name`). */
export function readableLabels(config: EncryptionConfig | undefined): Set<string> {
	const labels = new Set<string>();
	for (const rule of config?.resources ?? []) {
		for (const provider of rule.providers) {
			if (provider.type === 'identity') continue;
			if (provider.type === 'kms') labels.add(`${provider.apiVersion === 'v2' ? 'kms-v2' : 'kms'}:${provider.name}`);
			else for (const key of provider.keys) labels.add(`${provider.type}:${key.name}`);
		}
	}
	return labels;
}

/** Resources the matcher cannot count (their stored kind is not known to it). */
export function uncountedResources(resources: readonly string[]): string[] {
	return resources.filter(resource => storedTypeFor(resource) === undefined);
}

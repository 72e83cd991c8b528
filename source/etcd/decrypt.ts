/**
 * Decrypt raw etcd values with an EncryptionConfiguration, exactly as kube-apiserver 1.20 does,
 * to prove at rest that every stored value is readable with the configured keys.
 *
 * Formats, read from the Kubernetes 1.20.2 source (Debian's `kubernetes` source package,
 * staging/src/k8s.io/apiserver/pkg/...):
 *
 * - storage/value/transformer.go, prefixTransformers.TransformFromStorage: the providers of the
 *   resource's rule are tried in config order; each one whose prefix matches strips it and
 *   tries to decrypt; an error does not stop the search (two aescbc providers share a prefix),
 *   the first success wins. Within a keyed provider the keys are a nested prefix list of
 *   `Name + ":"` (server/options/encryptionconfig/config.go, aesPrefixTransformer and
 *   secretboxPrefixTransformer), tried the same way.
 * - storage/value/encrypt/aes/aes.go, gcm: stored = nonce (aead.NonceSize() = 12 bytes) ||
 *   Seal(...) = ciphertext || 16-byte tag. Authenticated data = context.AuthenticatedData().
 * - storage/etcd3/store.go: that context is authenticatedDataString(key) with
 *   key = path.Join(s.pathPrefix, key), i.e. the full etcd key, e.g.
 *   `/registry/secrets/default/db-password`, as bytes.
 * - aes.go, cbc: stored = 16-byte random IV || CBC(plaintext || PKCS#7 padding). No
 *   authentication and no use of the context. The unpadding accepts a pad byte c when
 *   0 < c <= len(result) and the last c bytes all equal c (mirrored below).
 * - storage/value/encrypt/secretbox/secretbox.go: stored = 24-byte random nonce ||
 *   golang.org/x/crypto/nacl/secretbox.Seal(...) = 16-byte Poly1305 tag || XSalsa20 ciphertext,
 *   32-byte key. The context is ignored: no additional authenticated data.
 *   tweetnacl's secretbox uses the same layout (tag first, 16 bytes of overhead).
 * - KMS (envelope) values need the KMS plugin to unwrap the data key; they are classified and
 *   counted but cannot be decrypted here.
 *
 * Nothing here logs or returns key material; failure reasons name keys, never their bytes.
 */
import {createDecipheriv, type CipherGCMTypes} from 'node:crypto';
import nacl from 'tweetnacl';
import type {EncryptionConfig, EncryptionKey, KeyedProviderType, Provider, ResourceRule} from '../kube/types.js';
import {classifyValue, isKubernetesObject, valueLabel} from './format.js';

export type GroupResource = {group: string; resource: string};

/** `secrets` -> {'', secrets}; `deployments.apps` -> {apps, deployments}; as schema.ParseGroupResource. */
export function parseGroupResource(text: string): GroupResource {
	const dot = text.indexOf('.');
	if (dot === -1) return {group: '', resource: text.toLowerCase()};
	return {group: text.slice(dot + 1).toLowerCase(), resource: text.slice(0, dot).toLowerCase()};
}

function ruleMatches(ruleResource: string, wanted: GroupResource): boolean {
	if (ruleResource === '*.*') return true;
	const rule = parseGroupResource(ruleResource);
	if (rule.resource === '*') return rule.group === wanted.group;
	return rule.group === wanted.group && rule.resource === wanted.resource;
}

/**
 * The rule that applies to a resource: the first whose resources name it (exact, or the
 * 1.27+ wildcards `*.group`, `*.` for the core group, `*.*`). Undefined: not encrypted.
 */
export function ruleFor(config: EncryptionConfig, resource: string): ResourceRule | undefined {
	const wanted = parseGroupResource(resource);
	return config.resources.find(rule => rule.resources.some(name => ruleMatches(name, wanted)));
}

/** What the apiserver writes new objects with. */
export type Primary =
	| {type: 'identity'}
	| {type: KeyedProviderType; keyName: string}
	| {type: 'kms'; name: string; apiVersion: 'v1' | 'v2'};

function primaryOf(provider: Provider | undefined): Primary {
	if (provider === undefined || provider.type === 'identity') return {type: 'identity'};
	if (provider.type === 'kms') return {type: 'kms', name: provider.name, apiVersion: provider.apiVersion ?? 'v1'};
	const first = provider.keys[0];
	if (first === undefined) throw new Error(`the ${provider.type} provider has no keys`);
	return {type: provider.type, keyName: first.name};
}

/** The primary (write) provider and key for a resource: the first provider of its rule. */
export function primaryFor(config: EncryptionConfig, resource: string): Primary {
	return primaryOf(ruleFor(config, resource)?.providers[0]);
}

/** The prefix every value written with this primary starts with ('' for identity). */
export function storedPrefix(primary: Primary): string {
	if (primary.type === 'identity') return '';
	if (primary.type === 'kms') return `k8s:enc:kms:${primary.apiVersion}:${primary.name}:`;
	return `k8s:enc:${primary.type}:v1:${primary.keyName}:`;
}

/** Same labels as format.ts valueLabel: `secretbox:key1`, `kms:name`, `kms-v2:name`, `identity`. */
export function primaryLabel(primary: Primary): string {
	if (primary.type === 'identity') return 'identity';
	if (primary.type === 'kms') return `${primary.apiVersion === 'v2' ? 'kms-v2' : 'kms'}:${primary.name}`;
	return `${primary.type}:${primary.keyName}`;
}

export type DecryptResult =
	| {
			ok: true;
			/** `identity` for plaintext values. */
			provider: KeyedProviderType | 'identity';
			keyName?: string;
			/** The serialized object. Secret data: never log it. */
			object: Buffer;
	  }
	| {ok: false; reason: string; kms?: boolean};

const keyCache = new WeakMap<EncryptionKey, Buffer>();

function keyBytes(key: EncryptionKey): Buffer {
	let bytes = keyCache.get(key);
	if (bytes === undefined) {
		bytes = Buffer.from(key.secret, 'base64');
		keyCache.set(key, bytes);
	}
	return bytes;
}

function gcmName(keyLength: number): CipherGCMTypes | undefined {
	if (keyLength === 16) return 'aes-128-gcm';
	if (keyLength === 24) return 'aes-192-gcm';
	if (keyLength === 32) return 'aes-256-gcm';
	return undefined;
}

function cbcName(keyLength: number): string | undefined {
	return keyLength === 16 || keyLength === 24 || keyLength === 32 ? `aes-${keyLength * 8}-cbc` : undefined;
}

/** Decrypt a body (prefix stripped) with one key; a reason string on failure. */
function decryptBody(type: KeyedProviderType, key: Buffer, body: Buffer, etcdKey: string): Buffer | string {
	switch (type) {
		case 'secretbox': {
			if (key.length !== nacl.secretbox.keyLength) return `key is ${key.length} bytes, secretbox needs 32`;
			const nonceLength = nacl.secretbox.nonceLength; // 24
			if (body.length < nonceLength + nacl.secretbox.overheadLength) return 'stored data shorter than nonce and tag';
			const opened = nacl.secretbox.open(body.subarray(nonceLength), body.subarray(0, nonceLength), key);
			return opened === null ? 'authentication failed (wrong key or tampered value)' : Buffer.from(opened.buffer, opened.byteOffset, opened.byteLength);
		}
		case 'aesgcm': {
			const algorithm = gcmName(key.length);
			if (algorithm === undefined) return `key is ${key.length} bytes, AES needs 16, 24 or 32`;
			const nonceLength = 12;
			const tagLength = 16;
			if (body.length < nonceLength + tagLength) return 'stored data shorter than nonce and tag';
			try {
				const decipher = createDecipheriv(algorithm, key, body.subarray(0, nonceLength), {authTagLength: tagLength});
				decipher.setAAD(Buffer.from(etcdKey, 'utf8'));
				decipher.setAuthTag(body.subarray(body.length - tagLength));
				return Buffer.concat([decipher.update(body.subarray(nonceLength, body.length - tagLength)), decipher.final()]);
			} catch {
				return 'authentication failed (wrong key, tampered value, or value moved from another etcd key)';
			}
		}
		case 'aescbc': {
			const algorithm = cbcName(key.length);
			if (algorithm === undefined) return `key is ${key.length} bytes, AES needs 16, 24 or 32`;
			const blockSize = 16;
			if (body.length < blockSize) return 'stored data shorter than the IV';
			const data = body.subarray(blockSize);
			if (data.length === 0 || data.length % blockSize !== 0) return 'stored data is not a multiple of the block size';
			const decipher = createDecipheriv(algorithm, key, body.subarray(0, blockSize));
			decipher.setAutoPadding(false);
			const result = Buffer.concat([decipher.update(data), decipher.final()]);
			const padding = result[result.length - 1] ?? 0;
			if (padding === 0 || padding > result.length) return 'invalid PKCS#7 padding (wrong key?)';
			for (let index = result.length - padding; index < result.length; index++) {
				if (result[index] !== padding) return 'invalid PKCS#7 padding (wrong key?)';
			}
			return result.subarray(0, result.length - padding);
		}
	}
}

/**
 * Decrypt one stored value the way the apiserver reads it for `resource` at `etcdKey` (the
 * full key: aesgcm authenticates it). The result must be a Kubernetes object.
 */
export function decryptValue(config: EncryptionConfig, resource: string, etcdKey: string, value: Uint8Array): DecryptResult {
	const stored = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
	const rule = ruleFor(config, resource);
	const providers: Provider[] = rule?.providers ?? [{type: 'identity'}];
	const failures: string[] = [];
	let kmsMatch: string | undefined;
	for (const provider of providers) {
		if (provider.type === 'identity') {
			// identity.NewEncryptCheckTransformer: reads anything without the k8s:enc: prefix.
			if (stored.toString('latin1', 0, 8) !== 'k8s:enc:') {
				if (isKubernetesObject(stored)) return {ok: true, provider: 'identity', object: stored};
				failures.push('identity: not a serialized Kubernetes object');
			}
			continue;
		}
		if (provider.type === 'kms') {
			const prefix = `k8s:enc:kms:${provider.apiVersion ?? 'v1'}:${provider.name}:`;
			if (stored.toString('latin1', 0, prefix.length) === prefix) kmsMatch ??= provider.name;
			continue;
		}
		const providerPrefix = `k8s:enc:${provider.type}:v1:`;
		if (stored.toString('latin1', 0, providerPrefix.length) !== providerPrefix) continue;
		for (const key of provider.keys) {
			const keyPrefix = Buffer.from(`${providerPrefix}${key.name}:`, 'utf8');
			if (!stored.subarray(0, keyPrefix.length).equals(keyPrefix)) continue;
			const outcome = decryptBody(provider.type, keyBytes(key), stored.subarray(keyPrefix.length), etcdKey);
			if (typeof outcome === 'string') {
				failures.push(`${provider.type} key ${key.name}: ${outcome}`);
				continue;
			}
			if (!isKubernetesObject(outcome)) {
				failures.push(`${provider.type} key ${key.name}: decrypts, but the result is not a Kubernetes object`);
				continue;
			}
			return {ok: true, provider: provider.type, keyName: key.name, object: outcome};
		}
	}
	if (failures.length > 0) return {ok: false, reason: failures.join('; ')};
	if (kmsMatch !== undefined) return {ok: false, kms: true, reason: `encrypted by KMS provider ${kmsMatch}; only the KMS plugin can decrypt it`};
	const label = valueLabel(classifyValue(stored));
	return {
		ok: false,
		reason:
			rule === undefined
				? `stored as ${label}, but the config has no rule for ${resource}`
				: `stored as ${label}, which no provider configured for ${resource} can read`,
	};
}

export type VerifyFailure = {key: string; reason: string};

export type VerifyReport = {
	/** Values examined. */
	checked: number;
	/** Decrypted (or plaintext read through identity) into a Kubernetes object. */
	ok: number;
	/** Values that failed (the list below is capped at `maxFailures`). */
	failed: number;
	failures: VerifyFailure[];
	/** KMS values: counted, not decrypted (needs the plugin). */
	kmsSkipped: number;
};

export function emptyVerifyReport(): VerifyReport {
	return {checked: 0, ok: 0, failed: 0, failures: [], kmsSkipped: 0};
}

/** Add one value's outcome to a report. */
export function verifyInto(
	report: VerifyReport,
	config: EncryptionConfig,
	resource: string,
	entry: {key: string; value: Uint8Array},
	maxFailures = 1000,
): void {
	report.checked++;
	const result = decryptValue(config, resource, entry.key, entry.value);
	if (result.ok) report.ok++;
	else if (result.kms) report.kmsSkipped++;
	else {
		report.failed++;
		if (report.failures.length < maxFailures) report.failures.push({key: entry.key, reason: result.reason});
	}
}

/**
 * Decrypt each given value (a sample, or every value with --deep) with the config and check
 * the result is a Kubernetes object. Failures are reported by etcd key.
 */
export function verifySample(
	config: EncryptionConfig,
	resource: string,
	entries: Iterable<{key: string; value: Uint8Array}>,
	options: {maxFailures?: number} = {},
): VerifyReport {
	const report = emptyVerifyReport();
	for (const entry of entries) verifyInto(report, config, resource, entry, options.maxFailures);
	return report;
}

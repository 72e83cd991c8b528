/**
 * The stored form of a Kubernetes object in etcd, as written by kube-apiserver 1.20
 * (k8s.io/apiserver/pkg/server/options/encryptionconfig/config.go and
 * k8s.io/apiserver/pkg/storage/value/transformer.go):
 *
 * - identity (no encryption): the serialized object itself. Built-in types are protobuf with
 *   the 4-byte magic `k8s\0`; custom resources are JSON (`{`).
 * - keyed providers: `k8s:enc:<provider>:v1:<keyname>:` + ciphertext, where the provider is
 *   `aescbc`, `aesgcm` or `secretbox` (constants aesCBCTransformerPrefixV1 and friends; each
 *   key adds `Name + ":"` under its provider's prefix).
 * - KMS v1: `k8s:enc:kms:v1:<provider name>:` + envelope; KMS v2 (apiserver >= 1.25):
 *   `k8s:enc:kms:v2:<provider name>:` + envelope. The "key name" of a KMS value is the KMS
 *   provider's configured name; the data key inside is only known to the plugin.
 *
 * Key names are not restricted by the apiserver's validation and may contain `:`, so
 * `classifyValue` reads the name up to the next colon (what every real config produces); code
 * that knows the configured names matches whole prefixes instead (see decrypt.ts).
 */

export const PROTOBUF_MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]); // "k8s\0"
export const ENCRYPTED_MAGIC = Buffer.from('k8s:enc:', 'latin1');

export type EncryptedProvider = 'aescbc' | 'aesgcm' | 'secretbox' | 'kms';

export type ValueClass =
	| {kind: 'plaintext'; format: 'protobuf' | 'json'}
	| {
			kind: 'encrypted';
			provider: EncryptedProvider;
			version: 'v1' | 'v2';
			/** The key name (keyed providers) or the KMS provider name. */
			keyName: string;
			/** Length of the whole `k8s:enc:...:<keyname>:` prefix in bytes. */
			prefixLength: number;
	  }
	| {kind: 'unknown'; reason: string};

const COLON = 0x3a;

function startsWith(value: Uint8Array, prefix: Uint8Array): boolean {
	if (value.length < prefix.length) return false;
	for (let index = 0; index < prefix.length; index++) if (value[index] !== prefix[index]) return false;
	return true;
}

/** Classify one raw etcd value by its prefix. Never looks past the prefix. */
export function classifyValue(value: Uint8Array): ValueClass {
	if (startsWith(value, PROTOBUF_MAGIC)) return {kind: 'plaintext', format: 'protobuf'};
	if (value.length > 0 && value[0] === 0x7b) return {kind: 'plaintext', format: 'json'};
	if (!startsWith(value, ENCRYPTED_MAGIC)) {
		return {kind: 'unknown', reason: value.length === 0 ? 'empty value' : 'neither a k8s:enc: prefix nor a serialized object'};
	}
	const buffer = Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
	const providerEnd = buffer.indexOf(COLON, ENCRYPTED_MAGIC.length);
	if (providerEnd === -1) return {kind: 'unknown', reason: 'truncated k8s:enc: prefix'};
	const provider = buffer.toString('latin1', ENCRYPTED_MAGIC.length, providerEnd);
	const versionEnd = buffer.indexOf(COLON, providerEnd + 1);
	if (versionEnd === -1) return {kind: 'unknown', reason: 'truncated k8s:enc: prefix'};
	const version = buffer.toString('latin1', providerEnd + 1, versionEnd);
	const keyEnd = buffer.indexOf(COLON, versionEnd + 1);
	if (keyEnd === -1 || keyEnd === versionEnd + 1) return {kind: 'unknown', reason: 'k8s:enc: prefix without a key name'};
	const keyName = buffer.toString('utf8', versionEnd + 1, keyEnd);
	const known =
		((provider === 'aescbc' || provider === 'aesgcm' || provider === 'secretbox') && version === 'v1') ||
		(provider === 'kms' && (version === 'v1' || version === 'v2'));
	if (!known) return {kind: 'unknown', reason: `unknown provider k8s:enc:${provider}:${version}`};
	return {
		kind: 'encrypted',
		provider: provider as EncryptedProvider,
		version: version as 'v1' | 'v2',
		keyName,
		prefixLength: keyEnd + 1,
	};
}

/**
 * The label a value is counted under: `secretbox:key1`, `aesgcm:key2`, `kms:<name>` (v1),
 * `kms-v2:<name>`; `identity` for plaintext; `unknown`.
 */
export function valueLabel(value: ValueClass): string {
	if (value.kind === 'plaintext') return 'identity';
	if (value.kind === 'unknown') return 'unknown';
	const provider = value.provider === 'kms' && value.version === 'v2' ? 'kms-v2' : value.provider;
	return `${provider}:${value.keyName}`;
}

/** Whether decrypted (or plaintext) bytes are a serialized Kubernetes object. */
export function isKubernetesObject(data: Uint8Array): boolean {
	if (startsWith(data, PROTOBUF_MAGIC)) return data.length > PROTOBUF_MAGIC.length;
	if (data.length === 0 || data[0] !== 0x7b) return false;
	try {
		const parsed = JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8')) as unknown;
		if (typeof parsed !== 'object' || parsed === null) return false;
		const {kind, apiVersion} = parsed as Record<string, unknown>;
		return typeof kind === 'string' && kind !== '' && typeof apiVersion === 'string' && apiVersion !== '';
	} catch {
		return false;
	}
}

/**
 * The backup set and its manifest: pure data, no I/O.
 *
 * A backup is one directory `<output>/etcd-backup-<UTC timestamp>/` holding
 *   snapshot.db.age               the `etcdctl snapshot save` file, age-encrypted
 *   encryption-config.yaml.age    the EncryptionConfiguration in use, encrypted the same way
 *   manifest.json                 what is inside, with digests (never key material)
 * It is assembled in a dot-prefixed `.partial` sibling and renamed into place when complete,
 * so a directory named etcd-backup-* is always a whole backup.
 */
import {STATE_DIR} from '../engine/contract.js';
import {parseAgeRecipient} from './recipients.js';
import type {EncryptionConfig} from '../kube/types.js';

export const MANIFEST_FORMAT = 'etcd-harden-backup/v1';
export const SNAPSHOT_FILE = 'snapshot.db.age';
export const CONFIG_FILE = 'encryption-config.yaml.age';
export const MANIFEST_FILE = 'manifest.json';
export const BACKUP_PREFIX = 'etcd-backup-';
/** Where backups go unless --output says otherwise (never the manifests directory). */
export const DEFAULT_OUTPUT_DIR = '/var/backups/etcd-harden';
/** Parent of the private staging directories that hold a plaintext snapshot for seconds. */
export const DEFAULT_STAGING_PARENT = `${STATE_DIR}/tmp`;

/** Names only: which provider and key each rule uses, in config order. Never the secrets. */
export type KeyInUse = {resources: string[]; provider: string; name: string; primary: boolean};

export type BackupManifest = {
	format: typeof MANIFEST_FORMAT;
	id: string;
	createdAt: string;
	/** How the files are encrypted: the public recipients, or a passphrase (scrypt). */
	encryptedTo: {recipients: string[]} | {passphrase: true};
	snapshot: {
		file: string;
		/** Of the plaintext snapshot: restore-check compares the decrypted file with it. */
		sha256: string;
		bytes: number;
		/** Of the encrypted file as written. */
		encryptedSha256: string;
		encryptedBytes: number;
	};
	etcd: {
		endpoint: string;
		/** From `etcdctl snapshot status`. */
		revision: number;
		hash: number;
		/** etcd's own count in the snapshot: every stored revision of every key. */
		totalKey: number;
		totalSize: number;
		/** Live keys at `revision` (what a restored etcd serves); absent when it could not be counted. */
		keys?: number;
	};
	kubernetes: {
		version?: string;
		/** The apiserver's --etcd-prefix. */
		etcdPrefix: string;
		/** Resources the encryption config covers (what restore-check decrypts). */
		resources: string[];
	};
	/** Absent when the node had no encryption config (secrets are plaintext in the snapshot). */
	encryptionConfig?: {
		file: string;
		/** Node path it was read from. */
		path: string;
		/** Of the plaintext config. */
		sha256: string;
		encryptedSha256: string;
		keys: KeyInUse[];
	};
	/**
	 * The plaintext history the snapshot holds (source/etcd/history.ts): plaintext records of the
	 * resources the config encrypts, and records under keys it no longer has. Absent in backups
	 * made before this field existed. `allowed` says why a backup with residue was written.
	 */
	plaintextHistory?: {plaintext: number; removedKeys: number; allowed?: string};
};

/** `etcd-backup-20240131T020000Z` for a date. */
export function backupId(now: Date): string {
	return `${BACKUP_PREFIX}${now.toISOString().replaceAll(':', '').replaceAll('-', '').replace(/\.\d+Z$/, 'Z')}`;
}

export function isBackupId(name: string): boolean {
	return /^etcd-backup-\d{8}T\d{6}Z$/.test(name);
}

/** Provider and key names of every rule; KMS providers by their plugin name. */
export function keysInUse(config: EncryptionConfig | undefined): KeyInUse[] {
	const keys: KeyInUse[] = [];
	for (const rule of config?.resources ?? []) {
		rule.providers.forEach((provider, index) => {
			const primaryProvider = index === 0;
			if (provider.type === 'identity') keys.push({resources: rule.resources, provider: 'identity', name: 'identity', primary: primaryProvider});
			else if (provider.type === 'kms') keys.push({resources: rule.resources, provider: provider.apiVersion === 'v2' ? 'kms-v2' : 'kms', name: provider.name, primary: primaryProvider});
			else provider.keys.forEach((key, keyIndex) => keys.push({resources: rule.resources, provider: provider.type, name: key.name, primary: primaryProvider && keyIndex === 0}));
		});
	}
	return keys;
}

export function renderManifest(manifest: BackupManifest): string {
	return `${JSON.stringify(manifest, null, 2)}\n`;
}

export class ManifestError extends Error {
	override name = 'ManifestError';
}

function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function need<T>(ok: boolean, value: T, what: string): T {
	if (!ok) throw new ManifestError(`${MANIFEST_FILE}: ${what}`);
	return value;
}

const hex64 = /^[0-9a-f]{64}$/;

/** Parse and check a manifest; errors name the field. */
export function parseManifest(text: string): BackupManifest {
	let data: unknown;
	try {
		data = JSON.parse(text);
	} catch {
		throw new ManifestError(`${MANIFEST_FILE} is not JSON`);
	}
	need(isRecord(data), 0, 'is not an object');
	const m = data as Record<string, unknown>;
	need(m['format'] === MANIFEST_FORMAT, 0, `format is ${JSON.stringify(m['format'])}, expected ${MANIFEST_FORMAT}`);
	need(typeof m['id'] === 'string' && isBackupId(m['id']), 0, 'id is missing or malformed');
	const snapshot = m['snapshot'];
	need(isRecord(snapshot), 0, 'snapshot is missing');
	const s = snapshot as Record<string, unknown>;
	need(s['file'] === SNAPSHOT_FILE, 0, `snapshot.file must be ${SNAPSHOT_FILE}`);
	need(typeof s['sha256'] === 'string' && hex64.test(s['sha256']), 0, 'snapshot.sha256 is not a sha256');
	need(typeof s['encryptedSha256'] === 'string' && hex64.test(s['encryptedSha256']), 0, 'snapshot.encryptedSha256 is not a sha256');
	const etcd = m['etcd'];
	need(isRecord(etcd), 0, 'etcd is missing');
	const e = etcd as Record<string, unknown>;
	for (const field of ['revision', 'totalKey']) need(Number.isInteger(e[field]), 0, `etcd.${field} is not a number`);
	need(e['keys'] === undefined || Number.isInteger(e['keys']), 0, 'etcd.keys is not a number');
	const to = m['encryptedTo'];
	need(isRecord(to) && (to['passphrase'] === true || (Array.isArray(to['recipients']) && to['recipients'].length > 0)), 0, 'encryptedTo names neither recipients nor a passphrase');
	const kube = m['kubernetes'];
	need(isRecord(kube) && typeof kube['etcdPrefix'] === 'string' && Array.isArray(kube['resources']), 0, 'kubernetes.etcdPrefix or kubernetes.resources is missing');
	const config = m['encryptionConfig'];
	if (config !== undefined) {
		need(isRecord(config) && config['file'] === CONFIG_FILE, 0, `encryptionConfig.file must be ${CONFIG_FILE}`);
		const c = config as Record<string, unknown>;
		need(typeof c['sha256'] === 'string' && hex64.test(c['sha256']), 0, 'encryptionConfig.sha256 is not a sha256');
		need(typeof c['encryptedSha256'] === 'string' && hex64.test(c['encryptedSha256']), 0, 'encryptionConfig.encryptedSha256 is not a sha256');
	}
	return data as BackupManifest;
}

/** Split a recipients answer (commas, spaces or newlines) into checked `age1...` strings. */
export function splitRecipients(value: string | readonly string[]): string[] {
	const items = (typeof value === 'string' ? [value] : [...value]).flatMap(item => item.split(/[\s,]+/)).filter(Boolean);
	return [...new Set(items.map(parseAgeRecipient))];
}

/**
 * Which complete backups to delete so that `keep` remain (newest kept; ids sort by time).
 * `keep` 0 keeps everything. Only names that are backup ids are ever considered.
 */
export function backupsToPrune(names: readonly string[], keep: number): string[] {
	if (keep <= 0) return [];
	const backups = names.filter(isBackupId).sort();
	return backups.slice(0, Math.max(0, backups.length - keep));
}

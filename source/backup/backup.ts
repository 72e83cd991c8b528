/**
 * Take one encrypted backup, through the Host:
 *
 *  1. `etcdctl snapshot save` into a fresh private 0700 staging directory;
 *  2. `etcdctl snapshot status` (etcd's integrity check) and the plaintext's sha256;
 *  3. encrypt the snapshot (streaming age, X25519 recipients or a passphrase) into
 *     `<output>/.etcd-backup-<ts>.partial/`, plus the EncryptionConfiguration in use, plus
 *     manifest.json; with a passphrase, decrypt the result again into a hash to prove it opens;
 *  4. rename the directory to `etcd-backup-<ts>`, then prune old backups (retention).
 *
 * The plaintext snapshot exists only in the staging directory, which is removed in `finally`
 * (success, failure and abort alike). A run killed outright leaves it behind, so every backup and
 * restore check first removes staging directories whose owning process is gone.
 * Nothing here prints key material, the passphrase or plaintext.
 */
import type {DecryptWith, EncryptTo} from '../crypto/age.js';
import type {EtcdConnection} from '../etcd/connection.js';
import type {Host} from '../host/types.js';
import {countKeys, snapshotEndpoint, snapshotSave, snapshotStatus, snapshotTool} from './etcd.js';
import {
	backupsToPrune,
	CONFIG_FILE,
	isBackupId,
	keysInUse,
	MANIFEST_FILE,
	MANIFEST_FORMAT,
	renderManifest,
	SNAPSHOT_FILE,
	type BackupManifest,
} from './manifest.js';
import {parseEncryptionConfig} from '../kube/encryption-config.js';
import {countHistory, plaintextTotal, underRemovedKeys} from '../etcd/history.js';

export type BackupParams = {
	/** Backup id (etcd-backup-<ts>), fixed at planning so the preview names the directory. */
	id: string;
	/** Node path of the output directory. */
	outputDir: string;
	/** Node path of the parent of the staging directory. */
	stagingParent: string;
	recipients?: string[];
	/** Node path of a file holding the passphrase (first line). */
	passphraseFile?: string;
	connection: EtcdConnection;
	etcdPrefix: string;
	resources: string[];
	/** Node path of the encryption config, when the node has one. */
	configPath?: string;
	kubernetesVersion?: string;
	/** Keep this many backups (0: all). */
	keep: number;
	timeoutSeconds?: number;
	/**
	 * Scan the snapshot for plaintext history before it is encrypted (source/etcd/history.ts):
	 * `resources` whose plaintext counts, `readableKeys` the config has (`secretbox:key2`). With
	 * residue the backup is refused unless `allow` says why it may be written anyway.
	 */
	history?: {resources: string[]; readableKeys: string[]; allow?: string};
};

/** A snapshot that carries plaintext history, refused (nothing was written). */
export class PlaintextHistoryError extends Error {
	override name = 'PlaintextHistoryError';
}

async function checkHistory(host: Host, params: BackupParams, plain: string, report: BackupReporter): Promise<BackupManifest['plaintextHistory']> {
	const history = params.history;
	if (history === undefined) return undefined;
	report.step('scanning the snapshot for plaintext history');
	const counts = await countHistory(host.readChunks(plain), history.resources);
	const plaintext = plaintextTotal(counts);
	const removed = Object.values(underRemovedKeys(counts, new Set(history.readableKeys))).reduce((sum, count) => sum + count, 0);
	if (plaintext + removed === 0) {
		report.info(`the snapshot holds no plaintext history of ${history.resources.join(', ') || 'encrypted resources'}`);
		return {plaintext, removedKeys: removed};
	}
	const what = [plaintext ? `${plaintext} plaintext record(s) of ${history.resources.join(', ')}` : '', removed ? `${removed} record(s) under keys no longer in the config` : ''].filter(Boolean).join(' and ');
	if (history.allow === undefined) {
		throw new PlaintextHistoryError(
			`the snapshot holds ${what}: old revisions from before re-encryption, which anyone who can decrypt this backup could read. ` +
				'Nothing was written. Run etcd-harden --only purge-history first (compacts and defragments etcd), or pass --allow-plaintext-history to keep such a backup anyway.',
		);
	}
	report.warn(`the snapshot holds ${what}; written anyway (${history.allow}), and marked so in its manifest`);
	return {plaintext, removedKeys: removed, allowed: history.allow};
}

export type BackupReporter = {
	step(label: string): void;
	info(text: string): void;
	warn(text: string): void;
};

export type BackupResult = {dir: string; manifest: BackupManifest; pruned: string[]};

/** Staging directory names carry the owner's pid: `backup-<pid>-XXXXXX`. */
export function stagingPrefix(kind: 'backup' | 'restore-check', pid: number): string {
	return `${kind}-${pid}-`;
}

/** Remove staging directories (plaintext!) left by runs that were killed outright. */
export async function sweepStaleStaging(host: Host, parent: string, report?: BackupReporter): Promise<void> {
	for (const name of (await host.listDir(parent)) ?? []) {
		const match = /^(?:backup|restore-check)-(\d+)-/.exec(name);
		if (!match) continue;
		const pid = Number(match[1]);
		if (pid === process.pid || host.processAlive(pid)) continue;
		await host.removeTree(`${parent}/${name}`);
		report?.warn(`removed ${parent}/${name}, left by an earlier run that was killed (pid ${pid})`);
	}
}

/** The passphrase from its file: the first line, without the line ending. Never logged. */
export async function readPassphrase(host: Host, file: string, report?: BackupReporter): Promise<string> {
	const text = await host.readText(file);
	if (text === undefined) throw new Error(`--passphrase-file ${file}: no such file`);
	const stat = await host.stat(file);
	if (stat && (stat.mode & 0o077) !== 0) report?.warn(`${file} is readable by group or others (mode 0${stat.mode.toString(8)}): chmod 600 it`);
	const passphrase = text.split(/\r?\n/)[0] ?? '';
	if (passphrase.length === 0) throw new Error(`--passphrase-file ${file}: the first line is empty`);
	return passphrase;
}

function encryptionTarget(params: BackupParams, passphrase: string | undefined): EncryptTo {
	if (passphrase !== undefined) return {passphrase};
	if (params.recipients && params.recipients.length > 0) return params.recipients;
	throw new Error('internal: a backup needs recipients or a passphrase');
}

export async function takeBackup(host: Host, params: BackupParams, report: BackupReporter, signal?: AbortSignal): Promise<BackupResult> {
	if (!isBackupId(params.id)) throw new Error(`internal: bad backup id ${params.id}`);
	const passphrase = params.passphraseFile ? await readPassphrase(host, params.passphraseFile, report) : undefined;
	const to = encryptionTarget(params, passphrase);
	const finalDir = `${params.outputDir}/${params.id}`;
	const partialDir = `${params.outputDir}/.${params.id}.partial`;
	if (await host.stat(finalDir)) throw new Error(`${finalDir} already exists`);

	await sweepStaleStaging(host, params.stagingParent, report);
	const staging = await host.makeTempDir(params.stagingParent, stagingPrefix('backup', process.pid));
	let complete = false;
	try {
		const plain = `${staging}/snapshot.db`;
		report.step(`etcdctl snapshot save (${snapshotEndpoint(params.connection)})`);
		await snapshotSave(host, params.connection, plain, {timeoutSeconds: params.timeoutSeconds ?? 1800, ...(signal ? {signal} : {})});
		const tool = await snapshotTool(host, signal);
		report.step(`${tool} snapshot status (integrity check)`);
		const status = await snapshotStatus(host, plain, signal, tool);
		const digest = await host.digestFile(plain);
		if (!digest) throw new Error('the snapshot file disappeared');
		report.info(`snapshot taken and checked: etcd revision ${status.revision}, ${(digest.bytes / 1e6).toFixed(1)} MB`);
		const plaintextHistory = await checkHistory(host, params, plain, report);
		let keys: number | undefined;
		try {
			keys = await countKeys(host, params.connection, {revision: status.revision, ...(signal ? {signal} : {})});
		} catch (error) {
			report.warn(`could not count the live keys at revision ${status.revision} (${(error as Error).message.split('\n')[0]}); restore-check will report the count without comparing`);
		}

		try {
			await host.mkdir(params.outputDir, 0o700);
			await host.removeTree(partialDir);
			await host.mkdir(partialDir, 0o700);
		} catch (error) {
			throw new Error(`cannot write the backup into ${params.outputDir}: ${(error as Error).message}`);
		}
		report.step(`encrypting the snapshot (${(digest.bytes / 1e6).toFixed(1)} MB) with age`);
		await host.ageEncryptFile(plain, `${partialDir}/${SNAPSHOT_FILE}`, to, 0o600);
		// The plaintext is no longer needed: delete it before anything else can fail.
		await host.remove(plain);
		const encrypted = await host.digestFile(`${partialDir}/${SNAPSHOT_FILE}`);
		if (!encrypted) throw new Error('the encrypted snapshot disappeared');
		if (passphrase !== undefined) {
			report.step('decrypting the snapshot again with the passphrase (nothing written) to prove it opens');
			const back = await host.ageDecryptDigest(`${partialDir}/${SNAPSHOT_FILE}`, {passphrase} as DecryptWith);
			if (back.sha256 !== digest.sha256) throw new Error('the encrypted snapshot does not decrypt back to the snapshot');
		}

		let encryptionConfig: BackupManifest['encryptionConfig'];
		if (params.configPath) {
			const text = await host.readText(params.configPath);
			if (text === undefined) {
				report.warn(`${params.configPath} does not exist: the backup holds no encryption config`);
			} else {
				const {config} = parseEncryptionConfig(text, params.configPath);
				if (!config) report.warn(`${params.configPath} is not a valid EncryptionConfiguration; it is archived as it is`);
				report.step(`encrypting ${params.configPath} with age`);
				await host.ageEncryptFile(params.configPath, `${partialDir}/${CONFIG_FILE}`, to, 0o600);
				const configDigest = await host.digestFile(params.configPath);
				const configEncrypted = await host.digestFile(`${partialDir}/${CONFIG_FILE}`);
				if (!configDigest || !configEncrypted) throw new Error('the encryption config or its encrypted copy disappeared');
				encryptionConfig = {
					file: CONFIG_FILE,
					path: params.configPath,
					sha256: configDigest.sha256,
					encryptedSha256: configEncrypted.sha256,
					keys: keysInUse(config),
				};
			}
		}

		const manifest: BackupManifest = {
			format: MANIFEST_FORMAT,
			id: params.id,
			createdAt: host.now().toISOString(),
			encryptedTo: passphrase !== undefined ? {passphrase: true} : {recipients: params.recipients ?? []},
			snapshot: {file: SNAPSHOT_FILE, sha256: digest.sha256, bytes: digest.bytes, encryptedSha256: encrypted.sha256, encryptedBytes: encrypted.bytes},
			etcd: {
				endpoint: snapshotEndpoint(params.connection),
				revision: status.revision,
				hash: status.hash,
				totalKey: status.totalKey,
				totalSize: status.totalSize,
				...(keys === undefined ? {} : {keys}),
			},
			kubernetes: {
				...(params.kubernetesVersion ? {version: params.kubernetesVersion} : {}),
				etcdPrefix: params.etcdPrefix,
				resources: params.resources,
			},
			...(encryptionConfig ? {encryptionConfig} : {}),
			...(plaintextHistory ? {plaintextHistory} : {}),
		};
		await host.writeFileAtomic(`${partialDir}/${MANIFEST_FILE}`, renderManifest(manifest), 0o600);
		await host.rename(partialDir, finalDir);
		complete = true;

		const pruned: string[] = [];
		for (const name of backupsToPrune((await host.listDir(params.outputDir)) ?? [], params.keep)) {
			if (name === params.id) continue;
			await host.removeTree(`${params.outputDir}/${name}`);
			pruned.push(name);
		}
		return {dir: finalDir, manifest, pruned};
	} finally {
		// The plaintext snapshot never outlives this function.
		await host.removeTree(staging);
		if (!complete) await host.removeTree(partialDir).catch(() => undefined);
	}
}

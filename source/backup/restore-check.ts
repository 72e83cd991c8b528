/**
 * `etcd-harden restore-check`: prove that a backup restores, through the Host.
 *
 *  1. read manifest.json; compare the encrypted files with their recorded sha256;
 *  2. decrypt the snapshot (authenticated, streaming) into a private 0700 staging directory;
 *     compare its sha256 with the manifest; `etcdctl snapshot status`;
 *  3. `etcdctl snapshot restore` into a data directory there, start a throwaway etcd on
 *     127.0.0.1 with free ports, and count its keys;
 *  4. decrypt the archived EncryptionConfiguration in memory (never to disk), and decrypt every
 *     stored value of the resources it covers with it, as the apiserver would;
 *  5. stop etcd and remove the staging directory, whatever happened.
 * Every step becomes a Check (pass/fail/warn, what was found, how to fix it). Nothing here
 * prints key material, the passphrase or plaintext.
 */
import {createHash} from 'node:crypto';
import {AgeError, parseIdentityFile, type DecryptWith} from '../crypto/age.js';
import type {Check} from '../engine/contract.js';
import type {EtcdConnection} from '../etcd/connection.js';
import {scanResources} from '../etcd/scan.js';
import {countHistory, encryptedResources, plaintextTotal, readableLabels, underRemovedKeys, type HistoryCounts} from '../etcd/history.js';
import type {Host, ProcessHandle} from '../host/types.js';
import {parseEncryptionConfig} from '../kube/encryption-config.js';
import type {EncryptionConfig} from '../kube/types.js';
import {readPassphrase, stagingPrefix, sweepStaleStaging} from './backup.js';
import {countKeys, snapshotRestore, snapshotStatus, snapshotTool, type SnapshotTool} from './etcd.js';
import {CONFIG_FILE, MANIFEST_FILE, parseManifest, SNAPSHOT_FILE, type BackupManifest} from './manifest.js';

export type RestoreCheckOptions = {
	/** Node path of one backup directory (etcd-backup-<ts>). */
	backupDir: string;
	/** Node path of an age identity file (AGE-SECRET-KEY-1... lines). */
	identityFile?: string;
	/** Node path of a file whose first line is the passphrase. */
	passphraseFile?: string;
	/**
	 * Where --identity and --passphrase-file are read: the operator's own files, not the
	 * tree under --root (default: the host).
	 */
	keyHost?: Host;
	/** Node path of the parent of the private staging directory. */
	stagingParent: string;
	/** The etcd server binary (default `etcd` on PATH). */
	etcdBinary?: string;
	/** How long the throwaway etcd may take to serve (default 120 s). */
	startTimeoutSeconds?: number;
	/** The program for snapshot status/restore (default: etcdutl when it runs, else etcdctl). */
	snapshotTool?: SnapshotTool;
	signal?: AbortSignal;
	onStep?: (label: string) => void;
};

export type RestoreCheckReport = {backup: string; id?: string; checks: Check[]; ok: boolean};

/** Missing or unusable flags: a usage error, not a failed check. */
export class RestoreCheckInputError extends Error {
	override name = 'RestoreCheckInputError';
}

function firstLine(error: unknown): string {
	const message = error instanceof Error ? error.message : String(error);
	return message.trim().split('\n').slice(-3).join(' ').slice(0, 600);
}

async function keysFor(host: Host, manifest: BackupManifest, options: RestoreCheckOptions): Promise<DecryptWith> {
	if (options.identityFile) {
		const text = await host.readText(options.identityFile);
		if (text === undefined) throw new RestoreCheckInputError(`--identity ${options.identityFile}: no such file`);
		try {
			return parseIdentityFile(text);
		} catch (error) {
			// AgeError messages name the line, never its content.
			throw new RestoreCheckInputError(`--identity ${options.identityFile}: ${error instanceof AgeError ? error.message : 'not an age identity file'}`);
		}
	}
	if (options.passphraseFile) {
		try {
			return {passphrase: await readPassphrase(host, options.passphraseFile)};
		} catch (error) {
			throw new RestoreCheckInputError(firstLine(error));
		}
	}
	throw new RestoreCheckInputError(
		'passphrase' in manifest.encryptedTo
			? 'this backup is encrypted with a passphrase: pass --passphrase-file FILE'
			: `this backup is encrypted to ${manifest.encryptedTo.recipients.join(', ')}: pass --identity FILE with the matching age secret key`,
	);
}

const EMPTY_CONFIG: EncryptionConfig = {apiVersion: 'apiserver.config.k8s.io/v1', kind: 'EncryptionConfiguration', resources: []};

/** The environment of the throwaway etcd: none of the operator's ETCD_* settings. */
function etcdEnv(): Record<string, string> {
	const env: Record<string, string | undefined> = {};
	for (const name of Object.keys(process.env)) if (name.startsWith('ETCD_')) env[name] = undefined;
	return env as Record<string, string>;
}

/**
 * Decrypt a backup, restore it into a throwaway etcd on loopback and decrypt every stored value
 * with the archived config. Each step adds its checks; the first failing step ends the check.
 */
export async function restoreCheck(host: Host, options: RestoreCheckOptions): Promise<RestoreCheckReport> {
	const checks: Check[] = [];
	const dir = options.backupDir.replace(/\/+$/, '');
	const report = (id?: string): RestoreCheckReport => ({backup: options.backupDir, checks, ok: !checks.some(check => check.status === 'fail'), ...(id ? {id} : {})});
	const manifest = await readBackupManifest(host, dir, checks);
	if (!manifest) return report();
	const keys = await keysFor(options.keyHost ?? host, manifest, options);
	if (!(await encryptedSnapshotPresent(host, dir, manifest, checks))) return report(manifest.id);

	if (options.signal?.aborted) throw new Error('interrupted');
	options = {...options, snapshotTool: options.snapshotTool ?? (await snapshotTool(host, options.signal))};
	await sweepStaleStaging(host, options.stagingParent);
	const staging = await host.makeTempDir(options.stagingParent, stagingPrefix('restore-check', process.pid));
	const running: {etcd?: ProcessHandle} = {};
	try {
		const plain = `${staging}/snapshot.db`;
		if (!(await decryptSnapshot(host, dir, plain, manifest, keys, checks, options))) return report(manifest.id);
		// Counted now, while the plaintext snapshot exists; judged once the archived config says what is encrypted.
		options.onStep?.('scanning the snapshot for plaintext history');
		const history = await countHistory(host.readChunks(plain), manifest.kubernetes.resources);
		const connection = await serveRestored(host, plain, staging, running, checks, options);
		if (!connection) return report(manifest.id);
		await host.remove(plain); // the restored data directory is all that is needed now
		const count = await countKeys(host, connection);
		const expected = manifest.etcd.keys;
		checks.push({
			id: 'etcd.keys',
			title: 'The restored etcd holds the key count of the backup',
			status: expected === undefined ? 'warn' : count === expected ? 'pass' : 'fail',
			actual: expected === undefined ? `${count} keys (the manifest has no live count to compare)` : `${count} keys${count === expected ? '' : `, the manifest says ${expected}`}`,
		});
		const config = await archivedConfig(host, dir, manifest, keys, checks, options);
		if (!config) return report(manifest.id);
		historyCheck(history, manifest, config, checks);
		await decryptEveryValue(host, connection, manifest, config, checks, options);
		return report(manifest.id);
	} finally {
		await running.etcd?.stop(5000);
		await host.removeTree(staging);
	}
}

async function readBackupManifest(host: Host, dir: string, checks: Check[]): Promise<BackupManifest | undefined> {
	const manifestText = await host.readText(`${dir}/${MANIFEST_FILE}`);
	if (manifestText === undefined) {
		checks.push({id: 'manifest', title: 'The backup has a manifest', status: 'fail', actual: `${dir}/${MANIFEST_FILE} does not exist`, remediation: 'Point restore-check at an etcd-backup-* directory written by etcd-harden backup.'});
		return undefined;
	}
	let manifest: BackupManifest;
	try {
		manifest = parseManifest(manifestText);
	} catch (error) {
		checks.push({id: 'manifest', title: 'The backup manifest is valid', status: 'fail', actual: firstLine(error), remediation: 'The manifest is damaged: use another backup.'});
		return undefined;
	}
	checks.push({id: 'manifest', title: 'The backup manifest is valid', status: 'pass', actual: `${manifest.id}, etcd revision ${manifest.etcd.revision}, Kubernetes ${manifest.kubernetes.version ?? 'version unknown'}`});
	return manifest;
}

/** False when the file is missing (a sha256 mismatch is a failed check, and decryption still tells more). */
async function encryptedSnapshotPresent(host: Host, dir: string, manifest: BackupManifest, checks: Check[]): Promise<boolean> {
	const encrypted = await host.digestFile(`${dir}/${SNAPSHOT_FILE}`);
	if (!encrypted) {
		checks.push({id: 'snapshot.file', title: 'The encrypted snapshot is present', status: 'fail', actual: `${dir}/${SNAPSHOT_FILE} does not exist`});
		return false;
	}
	const fileMatches = encrypted.sha256 === manifest.snapshot.encryptedSha256;
	checks.push({
		id: 'snapshot.file',
		title: 'The encrypted snapshot has the sha256 the backup recorded',
		status: fileMatches ? 'pass' : 'fail',
		actual: fileMatches ? `${(encrypted.bytes / 1e6).toFixed(1)} MB` : `sha256 ${encrypted.sha256.slice(0, 16)}… differs from the manifest's ${manifest.snapshot.encryptedSha256.slice(0, 16)}…: the file was changed or damaged`,
		...(fileMatches ? {} : {remediation: 'Use another copy of this backup.'}),
	});
	return true;
}

/** Decrypt into the private staging directory, then prove it is the snapshot the manifest names. */
async function decryptSnapshot(host: Host, dir: string, plain: string, manifest: BackupManifest, keys: DecryptWith, checks: Check[], options: RestoreCheckOptions): Promise<boolean> {
	options.onStep?.('decrypting the snapshot (age, every chunk authenticated)');
	try {
		await host.ageDecryptFile(`${dir}/${SNAPSHOT_FILE}`, plain, keys, 0o600);
	} catch (error) {
		checks.push({
			id: 'snapshot.decrypt',
			title: 'The snapshot decrypts',
			status: 'fail',
			actual: error instanceof AgeError ? `${error.message} (nothing was written)` : firstLine(error),
			remediation: error instanceof AgeError && /no identity|wrong|match/i.test(error.message) ? 'Pass the identity (or passphrase) the backup was encrypted for.' : 'The backup is damaged or was tampered with: use another copy.',
		});
		return false;
	}
	checks.push({id: 'snapshot.decrypt', title: 'The snapshot decrypts (age, authenticated)', status: 'pass'});

	const digest = await host.digestFile(plain);
	const same = digest?.sha256 === manifest.snapshot.sha256;
	checks.push({
		id: 'snapshot.sha256',
		title: "The decrypted snapshot matches the manifest's sha256",
		status: same ? 'pass' : 'fail',
		actual: same ? `${manifest.snapshot.sha256.slice(0, 16)}…, ${((digest?.bytes ?? 0) / 1e6).toFixed(1)} MB` : `sha256 ${digest?.sha256.slice(0, 16)}… is not the manifest's ${manifest.snapshot.sha256.slice(0, 16)}…`,
	});
	if (!same) return false;

	const tool = options.snapshotTool ?? 'etcdctl';
	options.onStep?.(`${tool} snapshot status`);
	try {
		const status = await snapshotStatus(host, plain, options.signal, tool);
		const matches = status.revision === manifest.etcd.revision && status.totalKey === manifest.etcd.totalKey;
		checks.push({
			id: 'snapshot.status',
			title: `${tool} snapshot status accepts the snapshot`,
			status: matches ? 'pass' : 'fail',
			actual: `revision ${status.revision}, ${status.totalKey} stored revisions of keys${matches ? '' : ` (manifest: revision ${manifest.etcd.revision}, ${manifest.etcd.totalKey})`}`,
		});
		return matches;
	} catch (error) {
		checks.push({id: 'snapshot.status', title: `${tool} snapshot status accepts the snapshot`, status: 'fail', actual: firstLine(error)});
		return false;
	}
}

/**
 * Restore the snapshot into a temporary data directory and start a throwaway etcd on free
 * loopback ports (retried when a port was taken meanwhile). `running.etcd` is set while it runs.
 */
async function serveRestored(host: Host, plain: string, staging: string, running: {etcd?: ProcessHandle}, checks: Check[], options: RestoreCheckOptions): Promise<EtcdConnection | undefined> {
	for (let attempt = 1; attempt <= 3; attempt++) {
		const [clientPort, peerPort] = await host.freeLoopbackPorts(2);
		const client = `http://127.0.0.1:${clientPort}`;
		const peer = `http://127.0.0.1:${peerPort}`;
		const dataDir = `${staging}/data-${attempt}`;
		const tool = options.snapshotTool ?? 'etcdctl';
		options.onStep?.(`${tool} snapshot restore into a temporary data directory`);
		try {
			await snapshotRestore(host, plain, {dataDir, name: 'restore-check', peerUrl: peer, tool, ...(options.signal ? {signal: options.signal} : {})});
		} catch (error) {
			checks.push({id: 'etcd.restore', title: `${tool} snapshot restore succeeds`, status: 'fail', actual: firstLine(error)});
			return undefined;
		}
		options.onStep?.(`starting a throwaway etcd on ${client}`);
		const etcd = await host.startProcess(
			[
				options.etcdBinary ?? 'etcd',
				'--name', 'restore-check',
				'--data-dir', {path: dataDir},
				'--listen-client-urls', client,
				'--advertise-client-urls', client,
				'--listen-peer-urls', peer,
				'--initial-advertise-peer-urls', peer,
				'--initial-cluster', `restore-check=${peer}`,
				'--initial-cluster-token', 'etcd-harden-restore-check',
			],
			{env: etcdEnv()},
		);
		running.etcd = etcd;
		const candidate: EtcdConnection = {endpoints: [client]};
		const deadline = Date.now() + (options.startTimeoutSeconds ?? 120) * 1000;
		let exited = false;
		void etcd.exited.then(() => (exited = true));
		while (!exited && Date.now() < deadline) {
			try {
				await countKeys(host, candidate, {commandTimeout: '3s', timeoutMs: 10_000});
				checks.push({id: 'etcd.start', title: 'A throwaway etcd on loopback serves the restored data', status: 'pass', actual: client});
				return candidate;
			} catch {
				await host.sleep(250, options.signal);
			}
		}
		const tail = etcd.outputTail();
		await etcd.stop(2000);
		running.etcd = undefined;
		if (!(exited && /address already in use/i.test(tail)) || attempt === 3) {
			checks.push({
				id: 'etcd.start',
				title: 'A throwaway etcd serves the restored data',
				status: 'fail',
				actual: `${exited ? 'etcd exited' : 'etcd did not answer in time'}: ${tail.trim().split('\n').slice(-3).join(' ').slice(0, 600)}`,
				remediation: 'Install etcd (Debian package etcd-server) on the machine that runs restore-check.',
			});
			return undefined;
		}
	}
	return undefined;
}

/** The config the backup carries, decrypted in memory and matched to the manifest; EMPTY_CONFIG when none was archived. */
async function archivedConfig(host: Host, dir: string, manifest: BackupManifest, keys: DecryptWith, checks: Check[], options: RestoreCheckOptions): Promise<EncryptionConfig | undefined> {
	if (!manifest.encryptionConfig) {
		checks.push({id: 'config.decrypt', title: 'The backup holds the encryption config in use', status: 'warn', actual: 'no encryption config was archived (the node had none): secrets are plaintext inside the snapshot'});
		return EMPTY_CONFIG;
	}
	options.onStep?.('decrypting the archived encryption config (in memory)');
	let text: string;
	try {
		text = (await host.ageDecrypt(`${dir}/${CONFIG_FILE}`, keys)).toString('utf8');
	} catch (error) {
		checks.push({id: 'config.decrypt', title: 'The archived encryption config decrypts', status: 'fail', actual: error instanceof AgeError ? error.message : firstLine(error), remediation: 'Without the config the secrets in this backup cannot be read: use another copy.'});
		return undefined;
	}
	const sha = createHash('sha256').update(text, 'utf8').digest('hex');
	const parsed = parseEncryptionConfig(text, CONFIG_FILE);
	const names = [...new Set(manifest.encryptionConfig.keys.map(key => `${key.provider}:${key.name}`))].join(', ');
	if (!parsed.config) {
		checks.push({id: 'config.decrypt', title: 'The archived encryption config is valid', status: 'fail', actual: parsed.errors.join('; ')});
		return undefined;
	}
	checks.push({
		id: 'config.decrypt',
		title: 'The archived encryption config decrypts and is the one the backup recorded',
		status: sha === manifest.encryptionConfig.sha256 ? 'pass' : 'fail',
		actual:
			sha === manifest.encryptionConfig.sha256
				? `keys ${names} (from ${manifest.encryptionConfig.path})`
				: `its sha256 ${sha.slice(0, 16)}… is not the manifest's ${manifest.encryptionConfig.sha256.slice(0, 16)}…: this is not the config that was in use when the snapshot was taken`,
	});
	return parsed.config;
}

/** The plaintext history the snapshot carries, with the scanner `backup` uses (a warning: it restores all the same). */
function historyCheck(counts: HistoryCounts, manifest: BackupManifest, config: EncryptionConfig, checks: Check[]): void {
	const resources = encryptedResources(config, manifest.kubernetes.resources);
	const plaintext = plaintextTotal({plaintext: Object.fromEntries(resources.map(resource => [resource, counts.plaintext[resource] ?? 0]))});
	const removed = Object.values(underRemovedKeys(counts, readableLabels(config))).reduce((sum, count) => sum + count, 0);
	const clean = plaintext + removed === 0;
	checks.push({
		id: 'snapshot.history',
		title: 'The snapshot holds no plaintext history of the encrypted resources',
		status: clean ? 'pass' : 'warn',
		actual:
			resources.length === 0
				? '0 plaintext records (no resource is encrypted by the archived config)'
				: `${plaintext} plaintext record(s) of ${resources.join(', ')}, ${removed} under keys no longer in the config${manifest.plaintextHistory?.allowed ? ` (written with ${manifest.plaintextHistory.allowed})` : ''}`,
		...(clean ? {} : {remediation: 'Anyone who can decrypt this backup can read these old values: once etcd-harden --only purge-history has run, take a new backup and delete this one.'}),
	});
}

async function decryptEveryValue(host: Host, connection: EtcdConnection, manifest: BackupManifest, config: EncryptionConfig, checks: Check[], options: RestoreCheckOptions): Promise<void> {
	options.onStep?.(`decrypting every stored ${manifest.kubernetes.resources.join(', ')} value with the archived config`);
	const scan = await scanResources(host, connection, manifest.kubernetes.resources, {
		config,
		etcdPrefix: manifest.kubernetes.etcdPrefix,
		verify: {deep: true, maxFailures: 3},
		maxListed: 3,
		...(options.signal ? {signal: options.signal} : {}),
	});
	for (const resource of scan.resources) {
		const verification = resource.verification;
		const failed = verification?.failed ?? 0;
		const checked = verification?.checked ?? 0;
		const first = verification?.failures[0];
		const stored = Object.entries(resource.byKey).map(([key, n]) => `${n} ${key}`);
		if (resource.plaintext) stored.push(`${resource.plaintext} plaintext`);
		checks.push({
			id: `decrypt.${resource.resource}`,
			title: `Every stored ${resource.resource} value decrypts with the archived configuration`,
			status: failed === 0 ? 'pass' : 'fail',
			actual:
				failed === 0
					? `${checked} decrypted${stored.length ? ` (${stored.join(', ')})` : ''}${verification?.kmsSkipped ? `, ${verification.kmsSkipped} KMS values need the plugin` : ''}`
					: `${failed} of ${checked} values do not decrypt, e.g. ${first?.key}: ${first?.reason}`,
			...(failed === 0 ? {} : {remediation: 'This backup cannot be restored with the config it carries: find the config (key) that was in use when it was taken, e.g. a recovery copy.'}),
		});
	}
}

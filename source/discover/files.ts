/**
 * Discovery: read the node (through the host's read methods only) into Facts. Not a
 * Stage; every stage plans from what this returns. Bad input (malformed manifests, an
 * invalid encryption config, a file that cannot be read) is recorded as an error string
 * that names the file, the problem and the fix; only unexpected I/O errors throw.
 */
import {posix} from 'node:path';
import type {ReadHost} from '../host/types.js';
import {APISERVER_CONTAINER, ENCRYPTION_FLAG, ETCD_CONTAINER, MANIFESTS_DIR} from '../kube/defaults.js';
import {defaultConfigPath, parseEncryptionConfig} from '../kube/encryption-config.js';
import {containerPathFor, hostPathFor, inspectManifest, ManifestError, stripUndefined} from '../kube/manifest.js';
import {MAX_YAML_BYTES} from '../kube/yaml-edit.js';
import type {EncryptionFacts, EncryptionFileFacts, Facts, ManifestFacts, PkiFacts} from '../stages/facts.js';
import {discoverEtcdCerts} from './etcd.js';
import {parseBackupService, type BackupSetup} from '../backup/setup.js';
import {SERVICE_NAME, UNIT_DIR} from '../backup/units.js';

export const defaultPkiDir = '/etc/kubernetes/pki';

/** What discovery uses of a Host: its read methods only. Any Host satisfies it. */
export type {ReadHost} from '../host/types.js';

export type DiscoverOptions = {
	/** Node path of the static pod manifests (default /etc/kubernetes/manifests). */
	manifestsDir?: string;
	/**
	 * Node path of the encryption config to read instead of the one the apiserver's flag
	 * names (the engine passes the path the operator chose, so verification after writing
	 * a new config sees it before the manifest points at it). `flagPath` still reports the flag.
	 */
	encryptionConfigPath?: string;
	/** Node path of the PKI directory (default /etc/kubernetes/pki). */
	pkiDir?: string;
	/**
	 * Node path of the config the operator chose to write, read as `encryption.target` when it
	 * is not the one discovery reads (the plan merges an EncryptionConfiguration found there
	 * and refuses anything else).
	 */
	encryptionTargetPath?: string;
};

/**
 * Options for re-discovering after a stage applied (verification): read the config at the
 * path the operator chose, which the apiserver's flag names only once apiserver-manifest has
 * run. Planning should discover without it, so an existing config the flag names is the one
 * merged.
 */
export function verifyDiscoveryOptions(answers: Readonly<Record<string, Readonly<Record<string, unknown>>>>): DiscoverOptions {
	const path = answers['encryption-config']?.['path'];
	return typeof path === 'string' ? {encryptionConfigPath: path} : {};
}

/** Options for planning with the answers given: also read the file at the chosen config path. */
export function planDiscoveryOptions(answers: Readonly<Record<string, Readonly<Record<string, unknown>>>>): DiscoverOptions {
	const path = answers['encryption-config']?.['path'];
	return typeof path === 'string' ? {encryptionTargetPath: path} : {};
}

export async function discover(host: ReadHost, options: DiscoverOptions = {}): Promise<Facts> {
	const manifestsDir = options.manifestsDir ?? MANIFESTS_DIR;
	const apiserver = await readManifest(host, posix.join(manifestsDir, 'kube-apiserver.yaml'), APISERVER_CONTAINER);
	const etcd = await readManifest(host, posix.join(manifestsDir, 'etcd.yaml'), ETCD_CONTAINER);
	const encryption = await readEncryption(host, apiserver, options.encryptionConfigPath, options.encryptionTargetPath);
	const pki = await readPki(host, options.pkiDir ?? defaultPkiDir, [apiserver, etcd]);
	const backupSetup = await readBackupSetup(host);
	return discoverEtcdCerts(host, {root: host.root, isRoot: host.isRoot(), apiserver, etcd, encryption, pki, ...(backupSetup ? {backupSetup} : {})});
}

/** The scheduled backup's settings (its service unit), when etcd-harden backup set one up. */
async function readBackupSetup(host: ReadHost): Promise<BackupSetup | undefined> {
	const unit = `${UNIT_DIR}/${SERVICE_NAME}`;
	const read = await readTextOrProblem(host, unit).catch(() => ({missing: true}) as const);
	return read.missing || read.text === undefined ? undefined : parseBackupService(unit, read.text);
}

/** Read and inspect one static pod manifest. */
export async function readManifest(host: ReadHost, path: string, containerName: string): Promise<ManifestFacts> {
	const empty: ManifestFacts = {path, exists: false, command: [], flags: {}, volumes: [], volumeMounts: [], annotations: {}};
	const read = await readTextOrProblem(host, path);
	if (read.missing) return empty;
	const stat = await host.stat(path);
	const facts: ManifestFacts = {...empty, exists: true, mode: stat?.mode};
	if (read.problem !== undefined) return stripUndefined({...facts, error: read.problem});
	facts.text = read.text;
	try {
		return stripUndefined({...facts, ...inspectManifest(read.text, path, containerName)});
	} catch (error) {
		if (error instanceof ManifestError) return stripUndefined({...facts, error: error.message});
		throw error;
	}
}

async function readEncryption(host: ReadHost, apiserver: ManifestFacts, override: string | undefined, targetPath: string | undefined): Promise<EncryptionFacts> {
	const facts = await readApiserverEncryption(host, apiserver, override);
	if (targetPath === undefined || targetPath === facts.path || !targetPath.startsWith('/')) return facts;
	return {...facts, target: await readEncryptionFile(host, targetPath)};
}

/** One config file: its text and parsed config, or why it is not an EncryptionConfiguration. */
async function readEncryptionFile(host: ReadHost, path: string): Promise<EncryptionFileFacts> {
	const read = await readTextOrProblem(host, path);
	if (read.missing) return {path, exists: false, errors: []};
	const stat = await host.stat(path);
	const base: EncryptionFileFacts = stripUndefined({path, exists: true, mode: stat?.mode, errors: []});
	if (read.problem !== undefined) return {...base, errors: [read.problem]};
	const check = parseEncryptionConfig(read.text, path);
	return stripUndefined({...base, text: read.text, config: check.config, errors: check.errors});
}

async function readApiserverEncryption(host: ReadHost, apiserver: ManifestFacts, override: string | undefined): Promise<EncryptionFacts> {
	const flagPath = apiserver.flags[ENCRYPTION_FLAG];
	// The flag names a path inside the pod; the file on the node is behind its hostPath mount.
	const path = override ?? (flagPath ? (hostPathFor(apiserver, flagPath) ?? flagPath) : defaultConfigPath);
	const podPath = flagPath ?? path;
	const mountedInPod = containerPathFor(apiserver, path) === podPath;
	const base: EncryptionFacts = stripUndefined({flagPath, path, exists: false, errors: [], mountedInPod});
	if (!path.startsWith('/')) {
		// kube-apiserver would resolve it against its working directory, which a manifest does not show.
		const problem = flagPath === 'true' ? 'has no value' : `=${flagPath ?? path} is a relative path, so etcd-harden cannot tell which file kube-apiserver reads`;
		return {
			...base,
			exists: true,
			errors: [`${apiserver.path}: --${ENCRYPTION_FLAG} ${problem}. Fix: give the flag the absolute path of the config (--${ENCRYPTION_FLAG}=/etc/kubernetes/enc/encryption-config.yaml).`],
		};
	}

	return {...base, ...(await readEncryptionFile(host, path))};
}

async function readPki(host: ReadHost, dir: string, manifests: ManifestFacts[]): Promise<PkiFacts> {
	const paths = new Set<string>();
	for (const manifest of manifests) {
		for (const [flag, value] of Object.entries(manifest.flags)) {
			if (isPkiFlag(flag, value)) paths.add(value);
		}
	}
	for (const sub of [dir, posix.join(dir, 'etcd')]) {
		for (const name of (await listDirOrEmpty(host, sub)).sort()) {
			if (/\.(crt|key|pem|pub)$/.test(name)) paths.add(posix.join(sub, name));
		}
	}
	const files: PkiFacts['files'] = {};
	for (const path of [...paths].sort()) {
		const stat = await statOrUndefined(host, path);
		files[path] = stat ? {exists: stat.isFile, mode: stat.mode} : {exists: false};
	}
	return {dir, files};
}

/** Flags whose value is a certificate or key file. */
function isPkiFlag(flag: string, value: string): boolean {
	if (!value.startsWith('/')) return false;
	if (/\.(crt|key|pem|pub)$/.test(value)) return true;
	return /(cert-file|key-file|ca-file|cafile|certfile|keyfile|client-certificate|client-key)$/.test(flag);
}

type ReadOutcome = {missing: true} | {missing: false; text: string; problem?: undefined} | {missing: false; problem: string; text?: undefined};

/** Read a file; permission and type problems become a message naming the file and the fix. */
async function readTextOrProblem(host: ReadHost, path: string): Promise<ReadOutcome> {
	try {
		// Checked before reading: a 50 MB "manifest" is never read, parsed or diffed.
		const stat = await host.stat(path);
		if (stat?.isFile && stat.size > MAX_YAML_BYTES) {
			return {
				missing: false,
				problem: `${path}: is ${stat.size} bytes; a real one is under 10 KB and etcd-harden reads at most ${MAX_YAML_BYTES / 1024} KiB. Fix: restore the file from a backup.`,
			};
		}
		const text = await host.readText(path);
		return text === undefined ? {missing: true} : {missing: false, text};
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code;
		if (code === 'EACCES' || code === 'EPERM') {
			return {missing: false, problem: `${path}: cannot be read (permission denied). Fix: run etcd-harden as root, or pass --root for a copied tree.`};
		}
		if (code === 'ELOOP') {
			return {missing: false, problem: `${path}: a symbolic link loop. Fix: point the link at the real file.`};
		}
		if (code === 'EISDIR') {
			return {missing: false, problem: `${path}: is a directory, expected a file. Fix: move the directory away or point the flag at the file.`};
		}
		throw error;
	}
}

async function listDirOrEmpty(host: ReadHost, path: string): Promise<string[]> {
	try {
		return (await host.listDir(path)) ?? [];
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code;
		if (code === 'EACCES' || code === 'EPERM' || code === 'ENOTDIR') return [];
		throw error;
	}
}

async function statOrUndefined(host: ReadHost, path: string) {
	try {
		return await host.stat(path);
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code;
		if (code === 'EACCES' || code === 'EPERM' || code === 'ENOTDIR') return undefined;
		throw error;
	}
}

// Where the provisioned real components live (see scripts/provision.sh).
import {accessSync, constants} from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

export const KUBE_VERSION = '1.20.2';
export const CACHE_DIR = process.env['ETCD_HARDEN_CACHE'] ?? '/var/cache/etcd-harden';
export const KUBE_APISERVER_BIN = path.join(CACHE_DIR, 'bin', `kube-apiserver-${KUBE_VERSION}`);
export const ETCD_BIN = '/usr/bin/etcd';
export const ETCDCTL_BIN = '/usr/bin/etcdctl';

/**
 * The etcd releases a testbed can run: Debian bookworm's 3.4.23 (the system's /usr/bin/etcd) and
 * trixie's 3.5.16 (what kubeadm has installed since Kubernetes 1.22), unpacked by provision.sh into
 * the cache beside the kube-apiserver build. Default: ETCD_HARDEN_TEST_ETCD, else 3.4.
 */
export const ETCD_VERSIONS = ['3.4', '3.5'] as const;
export type EtcdVersion = (typeof ETCD_VERSIONS)[number];
export const ETCD35_BIN_DIR = path.join(CACHE_DIR, 'etcd-3.5', 'bin');

export function defaultEtcdVersion(): EtcdVersion {
	const wanted = process.env['ETCD_HARDEN_TEST_ETCD'] ?? '3.4';
	if (!(ETCD_VERSIONS as readonly string[]).includes(wanted)) {
		throw new Error(`ETCD_HARDEN_TEST_ETCD=${wanted}: not a testbed etcd version; use one of ${ETCD_VERSIONS.join(', ')}`);
	}
	return wanted as EtcdVersion;
}

/** Repository root (this file is test/testbed/paths.ts). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PROVISION_SCRIPT = path.join(REPO_ROOT, 'scripts', 'provision.sh');

/** The binary a static pod's `command[0]` maps to (by basename). */
export const POD_BINARIES: Record<string, string> = {
	etcd: ETCD_BIN,
	'kube-apiserver': KUBE_APISERVER_BIN,
};

const TOOLS = ['openssl', 'unshare', 'nsenter', 'ip', 'mount', 'umount', 'kubectl', 'curl'];

function onPath(name: string): boolean {
	for (const dir of (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
		try {
			accessSync(path.join(dir, name), constants.X_OK);
			return true;
		} catch {
			// next
		}
	}
	return false;
}

function executable(file: string): boolean {
	try {
		accessSync(file, constants.X_OK);
		return true;
	} catch {
		return false;
	}
}

/** Everything the testbed needs that is missing on this machine. */
export function missingComponents(etcdVersion: EtcdVersion = '3.4'): string[] {
	const missing: string[] = [];
	const etcd35 = etcdVersion === '3.5' ? ['etcd', 'etcdctl', 'etcdutl'].map(name => path.join(ETCD35_BIN_DIR, name)) : [];
	for (const bin of [ETCD_BIN, ETCDCTL_BIN, KUBE_APISERVER_BIN, ...etcd35]) {
		if (!executable(bin)) missing.push(bin);
	}
	for (const tool of TOOLS) {
		if (!onPath(tool)) missing.push(tool);
	}
	return missing;
}

export class TestbedNotProvisionedError extends Error {
	constructor(readonly missing: string[]) {
		super(
			`The real control-plane testbed is not provisioned; missing: ${missing.join(', ')}.\n` +
				`Run as root: ${PROVISION_SCRIPT}  (or: npm run provision)`,
		);
		this.name = 'TestbedNotProvisionedError';
	}
}

/** Throw a clear error naming the provisioning script when something is missing or we are not root. */
export function assertProvisioned(etcdVersion: EtcdVersion = '3.4'): void {
	if (process.getuid?.() !== 0) {
		throw new Error('The testbed needs root (mount and network namespaces, bind mounts).');
	}
	const missing = missingComponents(etcdVersion);
	if (missing.length > 0) throw new TestbedNotProvisionedError(missing);
}

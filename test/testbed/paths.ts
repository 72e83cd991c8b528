// Where the provisioned real components live (see scripts/provision.sh).
import {accessSync, constants} from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

export const KUBE_VERSION = '1.20.2';
export const CACHE_DIR = process.env['ETCD_HARDEN_CACHE'] ?? '/var/cache/etcd-harden';
export const KUBE_APISERVER_BIN = path.join(CACHE_DIR, 'bin', `kube-apiserver-${KUBE_VERSION}`);
export const ETCD_BIN = '/usr/bin/etcd';
export const ETCDCTL_BIN = '/usr/bin/etcdctl';

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
export function missingComponents(): string[] {
	const missing: string[] = [];
	for (const bin of [ETCD_BIN, ETCDCTL_BIN, KUBE_APISERVER_BIN]) {
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
export function assertProvisioned(): void {
	if (process.getuid?.() !== 0) {
		throw new Error('The testbed needs root (mount and network namespaces, bind mounts).');
	}
	const missing = missingComponents();
	if (missing.length > 0) throw new TestbedNotProvisionedError(missing);
}

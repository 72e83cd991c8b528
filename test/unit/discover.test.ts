import {fileURLToPath} from 'node:url';
import {describe, expect, it} from 'vitest';
import {discover} from '../../source/discover/files.js';
import {MemoryHost} from './helpers/memory-host.js';
import {validConfig as configWithKey} from './cli-harness.js';

const demoDir = fileURLToPath(new URL('../../demo/', import.meta.url));
const manifest = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const key32 = Buffer.alloc(32, 5).toString('base64');

function demoHost(): MemoryHost {
	return MemoryHost.fromDir(demoDir);
}

function withFlag(host: MemoryHost, path: string, mount?: {hostPath: string; mountPath: string}): void {
	let text = host.text(manifest)!.replace('    - --tls-private-key-file=/etc/kubernetes/pki/apiserver.key\n', `    - --tls-private-key-file=/etc/kubernetes/pki/apiserver.key\n    - --encryption-provider-config=${path}\n`);
	if (mount) {
		text = text
			.replace('    volumeMounts:\n', `    volumeMounts:\n    - mountPath: ${mount.mountPath}\n      name: enc\n      readOnly: true\n`)
			.replace('  volumes:\n', `  volumes:\n  - hostPath:\n      path: ${mount.hostPath}\n      type: DirectoryOrCreate\n    name: enc\n`);
	}
	host.put(manifest, text);
}

const validConfig = configWithKey(key32);

describe('discover', () => {
	it('reads the shipped demo tree', async () => {
		const facts = await discover(demoHost());
		expect(facts.root).toBe('/memory');
		expect(facts.isRoot).toBe(true);
		expect(facts.apiserver).toMatchObject({path: manifest, exists: true, image: 'kube-apiserver:v1.28.2', version: '1.28.2'});
		expect(facts.apiserver.error).toBeUndefined();
		expect(facts.apiserver.flags['secure-port']).toBe('6443');
		expect(facts.etcd).toMatchObject({exists: true, image: 'etcd:3.5.9-0', version: '3.5.9-0'});
		expect(facts.etcd.flags['client-cert-auth']).toBe('true');
		expect(facts.encryption).toEqual({path: '/etc/kubernetes/enc/encryption-config.yaml', exists: false, errors: [], mountedInPod: false});
		expect(facts.pki.dir).toBe('/etc/kubernetes/pki');
		expect(facts.pki.files['/etc/kubernetes/pki/apiserver-etcd-client.key']?.exists).toBe(true);
		expect(facts.pki.files['/etc/kubernetes/pki/etcd/peer.crt']?.exists).toBe(true);
		expect(facts.pki.files['/etc/kubernetes/pki/etcd/healthcheck-client.crt']?.exists).toBe(true);
		// facts are plain data
		expect(JSON.parse(JSON.stringify(facts))).toEqual(facts);
	});

	it('records a missing node as not existing, without throwing', async () => {
		const facts = await discover(new MemoryHost());
		expect(facts.apiserver.exists).toBe(false);
		expect(facts.etcd.exists).toBe(false);
		expect(facts.encryption.exists).toBe(false);
		expect(facts.pki.files).toEqual({});
	});

	it('reads and validates the config the flag names, and sees whether it is mounted', async () => {
		const host = demoHost();
		withFlag(host, '/etc/kubernetes/enc/enc.yaml', {hostPath: '/etc/kubernetes/enc', mountPath: '/etc/kubernetes/enc'});
		host.put('/etc/kubernetes/enc/enc.yaml', validConfig, 0o600);
		const facts = await discover(host);
		expect(facts.encryption).toMatchObject({flagPath: '/etc/kubernetes/enc/enc.yaml', path: '/etc/kubernetes/enc/enc.yaml', exists: true, mode: 0o600, errors: [], mountedInPod: true});
		expect(facts.encryption.config?.resources[0]?.providers[0]).toEqual({type: 'secretbox', keys: [{name: 'key1', secret: key32}]});
	});

	it('follows a mount that maps a different host directory', async () => {
		const host = demoHost();
		withFlag(host, '/enc/config.yaml', {hostPath: '/srv/enc', mountPath: '/enc'});
		host.put('/srv/enc/config.yaml', validConfig, 0o644);
		const facts = await discover(host);
		expect(facts.encryption).toMatchObject({flagPath: '/enc/config.yaml', path: '/srv/enc/config.yaml', exists: true, mode: 0o644, mountedInPod: true});
	});

	it('reports a config that is not mounted into the pod', async () => {
		const host = demoHost();
		withFlag(host, '/etc/kubernetes/enc/enc.yaml');
		host.put('/etc/kubernetes/enc/enc.yaml', validConfig);
		expect((await discover(host)).encryption.mountedInPod).toBe(false);
	});

	it('records an invalid config as errors naming the file, never the key', async () => {
		const host = demoHost();
		withFlag(host, '/etc/kubernetes/enc/enc.yaml');
		const short = Buffer.alloc(8, 1).toString('base64');
		host.put('/etc/kubernetes/enc/enc.yaml', validConfig.replace(key32, short));
		const facts = await discover(host);
		expect(facts.encryption.config).toBeUndefined();
		expect(facts.encryption.errors).toEqual([expect.stringMatching(/^\/etc\/kubernetes\/enc\/enc\.yaml: .*decodes to 8 bytes .*Fix:/)]);
		expect(facts.encryption.errors[0]).not.toContain(short);
	});

	it('records an unreadable config as an error with the fix', async () => {
		const host = demoHost();
		withFlag(host, '/etc/kubernetes/enc/enc.yaml');
		host.files.set('/etc/kubernetes/enc/enc.yaml', {error: 'EACCES'});
		const facts = await discover(host);
		expect(facts.encryption.exists).toBe(true);
		expect(facts.encryption.errors).toEqual(['/etc/kubernetes/enc/enc.yaml: cannot be read (permission denied). Fix: run etcd-harden as root, or pass --root for a copied tree.']);
	});

	it('throws other I/O errors', async () => {
		const host = demoHost();
		host.files.set(manifest, {error: 'EIO'});
		await expect(discover(host)).rejects.toThrow(/EIO/);
	});

	it('records a broken manifest as an error naming the file and the fix', async () => {
		const host = demoHost();
		host.put(manifest, 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: sidecar\n    image: x\n');
		const facts = await discover(host);
		expect(facts.apiserver).toMatchObject({exists: true, command: [], error: `${manifest}: no container named kube-apiserver in spec.containers. Fix: restore the manifest from a backup, or regenerate it with \`kubeadm init phase control-plane apiserver\`.`});
		host.put(manifest, 'kind: Pod\nspec: [\n');
		expect((await discover(host)).apiserver.error).toMatch(/not valid YAML at line/);
	});

	it('reads an explicitly given config path instead of the flag', async () => {
		const host = demoHost();
		host.put('/opt/enc/c.yaml', validConfig);
		const facts = await discover(host, {encryptionConfigPath: '/opt/enc/c.yaml'});
		expect(facts.encryption).toMatchObject({path: '/opt/enc/c.yaml', exists: true, mountedInPod: false});
		expect(facts.encryption.flagPath).toBeUndefined();
	});
});

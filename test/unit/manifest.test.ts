import {readFileSync} from 'node:fs';
import {describe, expect, it} from 'vitest';
import {
	compareVersions,
	containerPathFor,
	hostPathFor,
	inspectManifest,
	ManifestError,
	parseFlags,
	patchManifest,
	versionFromImage,
} from '../../source/kube/manifest.js';

const demoApiserver = readFileSync(new URL('../../demo/etc/kubernetes/manifests/kube-apiserver.yaml', import.meta.url), 'utf8');
const path = '/etc/kubernetes/manifests/kube-apiserver.yaml';

const commented = `# Managed by kubeadm; edited by hand on 2024-01-01
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.0.0.10:6443   # keep me
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  # the apiserver
  - command:
    - kube-apiserver
    - --advertise-address=10.0.0.10    # odd spacing before this comment
    - --authorization-mode=Node,RBAC
    - '--secure-port=6443'
    image: "example.invalid:5000/kube-apiserver:v1.25.4"
    name: kube-apiserver
    volumeMounts:   # the printer would move this comment to its own line
    - mountPath: /etc/kubernetes/pki
      name: k8s-certs
      readOnly: true

  hostNetwork: true
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki
      type: DirectoryOrCreate
    name: k8s-certs
status: {}
`;

const patch = {
	flags: {'encryption-provider-config': '/etc/kubernetes/enc/encryption-config.yaml'},
	mounts: [{name: 'etcd-harden-encryption', hostPath: '/etc/kubernetes/enc', mountPath: '/etc/kubernetes/enc', type: 'DirectoryOrCreate', readOnly: true}],
	annotations: {'etcd-harden.io/encryption-config-sha256': '0123456789e1'},
};

/** Lines of `after` not in `before` (multiset difference), in order. */
function addedLines(before: string, after: string): string[] {
	const pool = before.split('\n');
	const added: string[] = [];
	for (const line of after.split('\n')) {
		const i = pool.indexOf(line);
		if (i === -1) added.push(line);
		else pool.splice(i, 1);
	}
	return added;
}

describe('inspectManifest', () => {
	it('reads the kubeadm apiserver manifest', () => {
		const info = inspectManifest(demoApiserver, path, 'kube-apiserver');
		expect(info.image).toBe('kube-apiserver:v1.28.2');
		expect(info.version).toBe('1.28.2');
		expect(info.command[0]).toBe('kube-apiserver');
		expect(info.flags['etcd-servers']).toBe('https://127.0.0.1:2379');
		expect(info.flags['authorization-mode']).toBe('Node,RBAC');
		expect(info.volumes).toContainEqual({name: 'k8s-certs', hostPath: '/etc/kubernetes/pki', type: 'DirectoryOrCreate'});
		expect(info.volumeMounts).toContainEqual({name: 'k8s-certs', mountPath: '/etc/kubernetes/pki', readOnly: true});
		expect(info.annotations['kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint']).toBe('10.0.0.10:6443');
	});

	it('names the file and the fix for bad input', () => {
		expect(() => inspectManifest('spec: [unclosed', path, 'kube-apiserver')).toThrow(ManifestError);
		expect(() => inspectManifest('spec: [unclosed', path, 'kube-apiserver')).toThrow(/kube-apiserver\.yaml: not valid YAML at line \d+.*kubeadm init phase control-plane apiserver/);
		const noContainer = demoApiserver.replace('name: kube-apiserver\n    readinessProbe', 'name: something-else\n    readinessProbe');
		expect(() => inspectManifest(noContainer, path, 'kube-apiserver')).toThrow(/no container named kube-apiserver in spec\.containers\. Fix:/);
		expect(() => inspectManifest('apiVersion: v1\nkind: Service\n', path, 'kube-apiserver')).toThrow(/kind is "Service", expected Pod/);
		expect(() => inspectManifest('- a\n- b\n', path, 'kube-apiserver')).toThrow(/not a Kubernetes Pod manifest/);
	});
});

describe('flags, versions, paths', () => {
	it('parses --flag=value and bare --flag, last wins', () => {
		expect(parseFlags(['kube-apiserver', '--a=1', '--b', '--a=2', '--c=x=y', 'positional'])).toEqual({a: '2', b: 'true', c: 'x=y'});
	});

	it('reads versions from image references', () => {
		expect(versionFromImage('kube-apiserver:v1.28.2')).toBe('1.28.2');
		expect(versionFromImage('example.invalid:5000/k8s/kube-apiserver:v1.20.2')).toBe('1.20.2');
		expect(versionFromImage('example.invalid:5000/kube-apiserver:v1.29.0@sha256:abcd')).toBe('1.29.0');
		expect(versionFromImage('etcd:3.5.9-0')).toBe('3.5.9-0');
		expect(versionFromImage('example.invalid:5000/kube-apiserver')).toBeUndefined();
		expect(versionFromImage('kube-apiserver:latest')).toBeUndefined();
		expect(compareVersions('1.26.0', '1.26')).toBe(0);
		expect(compareVersions('1.25.16', '1.26')).toBe(-1);
		expect(compareVersions('1.9.0', '1.26')).toBe(-1);
		expect(compareVersions('3.5.9-0', '3.5.9')).toBe(0);
	});

	it('maps host paths through hostPath volumes and mounts', () => {
		const facts = {
			volumes: [{name: 'a', hostPath: '/srv/enc'}, {name: 'b', hostPath: '/etc/kubernetes/pki'}],
			volumeMounts: [{name: 'a', mountPath: '/enc'}, {name: 'b', mountPath: '/etc/kubernetes/pki'}],
		};
		expect(containerPathFor(facts, '/srv/enc/config.yaml')).toBe('/enc/config.yaml');
		expect(containerPathFor(facts, '/etc/kubernetes/pki/enc.yaml')).toBe('/etc/kubernetes/pki/enc.yaml');
		expect(containerPathFor(facts, '/etc/kubernetes/enc/x.yaml')).toBeUndefined();
		expect(containerPathFor(facts, '/srv/encrypted/x.yaml')).toBeUndefined();
		expect(hostPathFor(facts, '/enc/config.yaml')).toBe('/srv/enc/config.yaml');
	});
});

describe('patchManifest', () => {
	it('adds the flag, mount, volume and annotation and changes no other line', () => {
		const out = patchManifest(demoApiserver, path, 'kube-apiserver', patch);
		expect(addedLines(demoApiserver, out)).toEqual([
			'    etcd-harden.io/encryption-config-sha256: "0123456789e1"',
			'    - --encryption-provider-config=/etc/kubernetes/enc/encryption-config.yaml',
			'    - mountPath: /etc/kubernetes/enc',
			'      name: etcd-harden-encryption',
			'      readOnly: true',
			'  - hostPath:',
			'      path: /etc/kubernetes/enc',
			'      type: DirectoryOrCreate',
			'    name: etcd-harden-encryption',
		]);
		// nothing removed
		expect(addedLines(out, demoApiserver)).toEqual([]);
		const info = inspectManifest(out, path, 'kube-apiserver');
		expect(info.flags['encryption-provider-config']).toBe('/etc/kubernetes/enc/encryption-config.yaml');
		// the annotation stays a string even though it looks like a number
		expect(info.annotations['etcd-harden.io/encryption-config-sha256']).toBe('0123456789e1');
		// the new flag comes after the last existing one, in the command list
		expect(info.command.at(-1)).toBe('--encryption-provider-config=/etc/kubernetes/enc/encryption-config.yaml');
	});

	it('keeps comments, blank lines, quoting and odd spacing byte for byte', () => {
		const out = patchManifest(commented, path, 'kube-apiserver', patch);
		for (const line of commented.split('\n')) expect(out.split('\n')).toContain(line);
		expect(out).toContain('    - --advertise-address=10.0.0.10    # odd spacing before this comment\n');
		expect(out.startsWith('# Managed by kubeadm; edited by hand on 2024-01-01\n')).toBe(true);
		expect(addedLines(out, commented)).toEqual([]);
	});

	it('is idempotent: patching a patched manifest returns identical text', () => {
		for (const text of [demoApiserver, commented]) {
			const once = patchManifest(text, path, 'kube-apiserver', patch);
			expect(patchManifest(once, path, 'kube-apiserver', patch)).toBe(once);
		}
	});

	it('replaces an existing flag in place and updates its own volume when the path changes', () => {
		const once = patchManifest(demoApiserver, path, 'kube-apiserver', patch);
		const moved = patchManifest(once, path, 'kube-apiserver', {
			flags: {'encryption-provider-config': '/etc/enc2/config.yaml'},
			mounts: [{...patch.mounts[0]!, hostPath: '/etc/enc2', mountPath: '/etc/enc2'}],
		});
		const info = inspectManifest(moved, path, 'kube-apiserver');
		expect(info.command.filter(a => a.startsWith('--encryption-provider-config='))).toEqual(['--encryption-provider-config=/etc/enc2/config.yaml']);
		expect(info.volumes.filter(v => v.name === 'etcd-harden-encryption')).toEqual([{name: 'etcd-harden-encryption', hostPath: '/etc/enc2', type: 'DirectoryOrCreate'}]);
		expect(info.volumeMounts.filter(v => v.name === 'etcd-harden-encryption')).toEqual([{name: 'etcd-harden-encryption', mountPath: '/etc/enc2', readOnly: true}]);
		// the flag kept its position
		const flagIndex = (t: string) => inspectManifest(t, path, 'kube-apiserver').command.findIndex(a => a.startsWith('--encryption-provider-config='));
		expect(flagIndex(moved)).toBe(flagIndex(once));
	});

	it('adds no second mount when an existing volume already shows the directory at the same path', () => {
		const out = patchManifest(demoApiserver, path, 'kube-apiserver', {
			mounts: [{name: 'etcd-harden-encryption', hostPath: '/etc/kubernetes/pki/enc', mountPath: '/etc/kubernetes/pki/enc', readOnly: true}],
		});
		expect(out).toBe(demoApiserver);
	});

	it('puts flags into args when the manifest keeps them there', () => {
		const withArgs = `apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
spec:
  containers:
  - args:
    - --secure-port=6443
    command:
    - kube-apiserver
    name: kube-apiserver
`;
		const out = patchManifest(withArgs, path, 'kube-apiserver', {flags: {a: 'b'}, mounts: patch.mounts, annotations: {x: 'y'}});
		const info = inspectManifest(out, path, 'kube-apiserver');
		expect(info.command).toEqual(['kube-apiserver', '--secure-port=6443', '--a=b']);
		expect(info.volumes).toEqual([{name: 'etcd-harden-encryption', hostPath: '/etc/kubernetes/enc', type: 'DirectoryOrCreate'}]);
		expect(info.annotations).toEqual({x: 'y'});
		expect(patchManifest(out, path, 'kube-apiserver', {flags: {a: 'b'}, mounts: patch.mounts, annotations: {x: 'y'}})).toBe(out);
	});

	it('refuses a manifest without the container, naming the file', () => {
		expect(() => patchManifest('apiVersion: v1\nkind: Pod\nspec:\n  containers: []\n', path, 'kube-apiserver', patch)).toThrow(
			`${path}: no container named kube-apiserver`,
		);
	});
});

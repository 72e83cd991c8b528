import {describe, expect, it} from 'vitest';
import {KubeconfigError, loadKubeconfig, parseKubeconfig} from '../../source/kube/kubeconfig.js';
import {FakeHost} from './kube-fake.js';

const b64 = (value: string) => Buffer.from(value).toString('base64');

const embedded = `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ${b64('-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n')}
    server: https://10.0.0.10:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: ${b64('CERT PEM')}
    client-key-data: ${b64('KEY PEM')}
`;

const withFiles = `apiVersion: v1
kind: Config
current-context: other
clusters:
- name: lb
  cluster:
    server: https://lb.example:6443/
    certificate-authority: /etc/kubernetes/pki/ca.crt
contexts:
- name: other
  context: {cluster: lb, user: admin}
users:
- name: admin
  user:
    client-certificate: pki/admin.crt
    client-key: /etc/kubernetes/pki/admin.key
`;

describe('kubeconfig', () => {
	it('reads embedded (base64) credentials of the current context', () => {
		const config = parseKubeconfig(embedded, '/etc/kubernetes/admin.conf');
		expect(config.server).toBe('https://10.0.0.10:6443');
		expect(config.ca).toEqual({data: '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n'});
		expect(config.cert).toEqual({data: 'CERT PEM'});
		expect(config.key).toEqual({data: 'KEY PEM'});
		expect(config.user).toBe('kubernetes-admin');
	});

	it('reads file references, relative to the kubeconfig directory', () => {
		const config = parseKubeconfig(withFiles, '/etc/kubernetes/admin.conf');
		expect(config.server).toBe('https://lb.example:6443');
		expect(config.ca).toEqual({file: '/etc/kubernetes/pki/ca.crt'});
		expect(config.cert).toEqual({file: '/etc/kubernetes/pki/admin.crt'});
		expect(config.key).toEqual({file: '/etc/kubernetes/pki/admin.key'});
	});

	it('names the problem: missing context, bad base64, bad YAML, no server', () => {
		expect(() => parseKubeconfig(embedded, '/a.conf', 'nope')).toThrow(/\/a.conf: context "nope" is not defined \(defined: "kubernetes-admin@kubernetes"\)/);
		expect(() => parseKubeconfig(embedded.replace(/client-key-data: .*/, 'client-key-data: "%%%"'), '/a.conf')).toThrow(/client-key-data is not base64/);
		expect(() => parseKubeconfig('a: [', '/a.conf')).toThrow(KubeconfigError);
		expect(() => parseKubeconfig(embedded.replace(/server: .*/, 'server: ""'), '/a.conf')).toThrow(/no https server URL/);
	});

	it('loads through the host: files become inline PEM; server can be overridden', async () => {
		const host = new FakeHost();
		await host.writeFileAtomic('/etc/kubernetes/admin.conf', withFiles, 0o600);
		await host.writeFileAtomic('/etc/kubernetes/pki/ca.crt', 'CA FILE', 0o644);
		await host.writeFileAtomic('/etc/kubernetes/pki/admin.crt', 'CERT FILE', 0o644);
		await host.writeFileAtomic('/etc/kubernetes/pki/admin.key', 'KEY FILE', 0o600);
		const connection = await loadKubeconfig(host, '/etc/kubernetes/admin.conf', {server: 'https://127.0.0.1:6443/'});
		expect(connection).toEqual({server: 'https://127.0.0.1:6443', ca: 'CA FILE', cert: 'CERT FILE', key: 'KEY FILE', token: undefined});
		await host.remove('/etc/kubernetes/pki/admin.key');
		await expect(loadKubeconfig(host, '/etc/kubernetes/admin.conf')).rejects.toThrow(/client-key file \/etc\/kubernetes\/pki\/admin.key does not exist/);
		await expect(loadKubeconfig(host, '/missing.conf')).rejects.toThrow(/\/missing.conf does not exist/);
	});
});

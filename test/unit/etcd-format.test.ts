import {describe, expect, it} from 'vitest';
import {classifyValue, isKubernetesObject, valueLabel} from '../../source/etcd/format.js';
import {etcdConnectionFromFlags, etcdPrefixFromFlags, EtcdConnectionError} from '../../source/etcd/connection.js';
import {etcdctlArgv, etcdctlEnv} from '../../source/etcd/etcdctl.js';
import {renderArgv} from '../../source/host/types.js';

const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');

describe('classifyValue', () => {
	it('recognises protobuf and JSON plaintext', () => {
		expect(classifyValue(bytes('k8s\0\n\x0c\n\x02v1\x12\x06Secret'))).toEqual({kind: 'plaintext', format: 'protobuf'});
		expect(classifyValue(bytes('{"kind":"Widget","apiVersion":"example.com/v1"}'))).toEqual({kind: 'plaintext', format: 'json'});
	});

	it('reads provider, version and key name from the k8s:enc: prefix', () => {
		const secretbox = classifyValue(bytes('k8s:enc:secretbox:v1:key1:\x01\x02\x03'));
		expect(secretbox).toEqual({kind: 'encrypted', provider: 'secretbox', version: 'v1', keyName: 'key1', prefixLength: 26});
		expect(valueLabel(secretbox)).toBe('secretbox:key1');
		expect(valueLabel(classifyValue(bytes('k8s:enc:aesgcm:v1:k2:xx')))).toBe('aesgcm:k2');
		expect(valueLabel(classifyValue(bytes('k8s:enc:aescbc:v1:old:xx')))).toBe('aescbc:old');
		expect(valueLabel(classifyValue(bytes('k8s:enc:kms:v1:vault:\0\x20')))).toBe('kms:vault');
		expect(valueLabel(classifyValue(bytes('k8s:enc:kms:v2:vault:\x0a')))).toBe('kms-v2:vault');
		// The ciphertext may itself contain colons; only the first ones delimit.
		expect(classifyValue(bytes('k8s:enc:secretbox:v1:a:b:c'))).toMatchObject({keyName: 'a', prefixLength: 23});
	});

	it('calls everything else unknown', () => {
		for (const value of [
			'',
			'k8s',
			'k8s:enc:',
			'k8s:enc:secretbox',
			'k8s:enc:secretbox:v1:',
			'k8s:enc:secretbox:v1:key1',
			'k8s:enc:secretbox:v1::abc',
			'k8s:enc:rot13:v1:key1:abc',
			'k8s:enc:secretbox:v2:key1:abc',
			'k8s:enc:kms:v3:name:abc',
			'\x00\x01binary',
			'k8s\x01',
			'[1,2]',
		]) {
			expect(classifyValue(bytes(value)).kind, JSON.stringify(value)).toBe('unknown');
		}
	});

	it('accepts Uint8Array as well as Buffer', () => {
		expect(classifyValue(new Uint8Array(bytes('k8s:enc:aesgcm:v1:k:z')))).toMatchObject({provider: 'aesgcm', keyName: 'k'});
	});

	it('isKubernetesObject wants protobuf with content or JSON with kind and apiVersion', () => {
		expect(isKubernetesObject(bytes('k8s\0\n\x02'))).toBe(true);
		expect(isKubernetesObject(bytes('k8s\0'))).toBe(false);
		expect(isKubernetesObject(bytes('{"kind":"Secret","apiVersion":"v1"}'))).toBe(true);
		expect(isKubernetesObject(bytes('{"kind":"Secret"}'))).toBe(false);
		expect(isKubernetesObject(bytes('{not json'))).toBe(false);
		expect(isKubernetesObject(bytes('random bytes'))).toBe(false);
	});
});

describe('etcd connection', () => {
	const kubeadmFlags = {
		'etcd-servers': 'https://127.0.0.1:2379',
		'etcd-cafile': '/etc/kubernetes/pki/etcd/ca.crt',
		'etcd-certfile': '/etc/kubernetes/pki/apiserver-etcd-client.crt',
		'etcd-keyfile': '/etc/kubernetes/pki/apiserver-etcd-client.key',
	};

	it('is derived from the apiserver flags', () => {
		expect(etcdConnectionFromFlags(kubeadmFlags)).toEqual({
			endpoints: ['https://127.0.0.1:2379'],
			cacert: '/etc/kubernetes/pki/etcd/ca.crt',
			cert: '/etc/kubernetes/pki/apiserver-etcd-client.crt',
			key: '/etc/kubernetes/pki/apiserver-etcd-client.key',
		});
		expect(etcdConnectionFromFlags({'--etcd-servers': 'https://10.0.0.1:2379, https://10.0.0.2:2379'})).toEqual({
			endpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379'],
		});
	});

	it('names the missing flag', () => {
		expect(() => etcdConnectionFromFlags({})).toThrow(/--etcd-servers/);
		expect(() => etcdConnectionFromFlags({'etcd-servers': ' , '})).toThrow(EtcdConnectionError);
		expect(() => etcdConnectionFromFlags({'etcd-servers': 'https://a:2379', 'etcd-certfile': '/c'})).toThrow(/--etcd-keyfile/);
	});

	it('reads --etcd-prefix', () => {
		expect(etcdPrefixFromFlags({})).toBe('/registry');
		expect(etcdPrefixFromFlags({'etcd-prefix': '/other/'})).toBe('/other');
	});

	it('builds etcdctl argv with TLS files as host paths and a clean environment', () => {
		const argv = etcdctlArgv(etcdConnectionFromFlags(kubeadmFlags), ['get', '/registry/secrets/', '/registry/secrets0']);
		expect(argv).toContainEqual({path: '/etc/kubernetes/pki/etcd/ca.crt'});
		expect(argv).toContainEqual({path: '/etc/kubernetes/pki/apiserver-etcd-client.key'});
		expect(renderArgv(argv)).toBe(
			'etcdctl --endpoints=https://127.0.0.1:2379 --cacert /etc/kubernetes/pki/etcd/ca.crt --cert /etc/kubernetes/pki/apiserver-etcd-client.crt --key /etc/kubernetes/pki/apiserver-etcd-client.key --command-timeout=30s get /registry/secrets/ /registry/secrets0',
		);
		const env = etcdctlEnv();
		expect(env.ETCDCTL_API).toBe('3');
		expect('ETCDCTL_ENDPOINTS' in env && env.ETCDCTL_ENDPOINTS === undefined).toBe(true);
	});
});

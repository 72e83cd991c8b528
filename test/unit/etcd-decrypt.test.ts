import {createCipheriv, randomBytes} from 'node:crypto';
import nacl from 'tweetnacl';
import {describe, expect, it} from 'vitest';
import {decryptValue, parseGroupResource, primaryFor, ruleFor, storedPrefix, verifySample} from '../../source/etcd/decrypt.js';
import type {EncryptionConfig} from '../../source/stages/facts.js';

// Known answers produced by kube-apiserver 1.20.2's own transformers (Debian's kubernetes
// source: value.NewPrefixTransformers over aes.NewGCMTransformer / NewCBCTransformer /
// secretbox.NewSecretboxTransformer, prefix k8s:enc:<provider>:v1:kat:, key bytes 0..31,
// authenticated data /registry/secrets/default/kat).
const KAT = {
	key: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=',
	etcdKey: '/registry/secrets/default/kat',
	plain: 'azhzAAoMCgJ2MRIGU2VjcmV0EgVoZWxsbw==',
	aesgcm: 'azhzOmVuYzphZXNnY206djE6a2F0OuiqN2pbcxJYuYNuCl2B26rkBLqeKnKzRzm9bIB0zsCn/0ZGo3n+6fu86uXtzqneU4tM7459',
	aescbc: 'azhzOmVuYzphZXNjYmM6djE6a2F0OkMQkhuiyjfOvSb2LKwHkGbgnn+ax7NwzhSV2PQLngMl1PZeziFpRfoxlaYAl/PGAg==',
	secretbox: 'azhzOmVuYzpzZWNyZXRib3g6djE6a2F0OrFRkI+nCl9J6llj7CxYFmSJNyIQPKb/UpR0fBlxkpLukeviYc8N7oEJwCMdbcthmnUAtRmnY18UUTtCnTde1Vr2',
} as const;

// Independent encoders in the k8s format (written from the format, not from decrypt.ts).
function sealSecretbox(prefix: string, key: Buffer, plain: Buffer): Buffer {
	const nonce = randomBytes(24);
	return Buffer.concat([Buffer.from(prefix), nonce, nacl.secretbox(plain, nonce, key)]);
}
function sealGcm(prefix: string, key: Buffer, plain: Buffer, etcdKey: string): Buffer {
	const nonce = randomBytes(12);
	const cipher = createCipheriv(`aes-${key.length * 8}-gcm` as 'aes-256-gcm', key, nonce);
	cipher.setAAD(Buffer.from(etcdKey));
	const body = Buffer.concat([cipher.update(plain), cipher.final()]);
	return Buffer.concat([Buffer.from(prefix), nonce, body, cipher.getAuthTag()]);
}
function sealCbc(prefix: string, key: Buffer, plain: Buffer): Buffer {
	const iv = randomBytes(16);
	const cipher = createCipheriv(`aes-${key.length * 8}-cbc`, key, iv); // PKCS#7 padding
	return Buffer.concat([Buffer.from(prefix), iv, cipher.update(plain), cipher.final()]);
}

const key1 = randomBytes(32);
const key2 = randomBytes(32);
const gcmKey = randomBytes(16);
const cbcKey = randomBytes(32);
const object = Buffer.concat([Buffer.from('k8s\0'), randomBytes(300)]);
const etcdKey = '/registry/secrets/team-a/db';

const config: EncryptionConfig = {
	apiVersion: 'apiserver.config.k8s.io/v1',
	kind: 'EncryptionConfiguration',
	resources: [
		{
			resources: ['secrets', 'configmaps'],
			providers: [
				{
					type: 'secretbox',
					keys: [
						{name: 'key1', secret: key1.toString('base64')},
						{name: 'key2', secret: key2.toString('base64')},
					],
				},
				{type: 'aesgcm', keys: [{name: 'g', secret: gcmKey.toString('base64')}]},
				{type: 'aescbc', keys: [{name: 'c', secret: cbcKey.toString('base64')}]},
				{type: 'kms', name: 'vault', endpoint: 'unix:///kms.sock'},
				{type: 'identity'},
			],
		},
		{resources: ['widgets.example.com'], providers: [{type: 'aesgcm', keys: [{name: 'w', secret: gcmKey.toString('base64')}]}]},
	],
};

describe('known answers from kube-apiserver 1.20.2', () => {
	const katConfig: EncryptionConfig = {
		apiVersion: 'apiserver.config.k8s.io/v1',
		kind: 'EncryptionConfiguration',
		resources: [
			{
				resources: ['secrets'],
				providers: [
					{type: 'aesgcm', keys: [{name: 'kat', secret: KAT.key}]},
					{type: 'aescbc', keys: [{name: 'kat', secret: KAT.key}]},
					{type: 'secretbox', keys: [{name: 'kat', secret: KAT.key}]},
				],
			},
		],
	};
	for (const provider of ['aesgcm', 'aescbc', 'secretbox'] as const) {
		it(`decrypts ${provider}`, () => {
			const result = decryptValue(katConfig, 'secrets', KAT.etcdKey, Buffer.from(KAT[provider], 'base64'));
			expect(result).toMatchObject({ok: true, provider, keyName: 'kat'});
			if (result.ok) expect(result.object.equals(Buffer.from(KAT.plain, 'base64'))).toBe(true);
		});
	}
	it('aesgcm authenticates the etcd key: the same value under another key fails', () => {
		const result = decryptValue(katConfig, 'secrets', '/registry/secrets/default/other', Buffer.from(KAT.aesgcm, 'base64'));
		expect(result.ok).toBe(false);
	});
	it('secretbox and aescbc do not bind the etcd key', () => {
		for (const provider of ['aescbc', 'secretbox'] as const) {
			expect(decryptValue(katConfig, 'secrets', '/registry/secrets/x/y', Buffer.from(KAT[provider], 'base64')).ok).toBe(true);
		}
	});
});

describe('decryptValue round trips', () => {
	it('secretbox with the first and the second key', () => {
		for (const [name, key] of [
			['key1', key1],
			['key2', key2],
		] as const) {
			const result = decryptValue(config, 'secrets', etcdKey, sealSecretbox(`k8s:enc:secretbox:v1:${name}:`, key, object));
			expect(result).toMatchObject({ok: true, provider: 'secretbox', keyName: name});
			if (result.ok) expect(result.object.equals(object)).toBe(true);
		}
	});

	it('aesgcm (16-byte key) and aescbc', () => {
		const gcm = decryptValue(config, 'configmaps', etcdKey, sealGcm('k8s:enc:aesgcm:v1:g:', gcmKey, object, etcdKey));
		expect(gcm).toMatchObject({ok: true, provider: 'aesgcm', keyName: 'g'});
		const cbc = decryptValue(config, 'secrets', etcdKey, sealCbc('k8s:enc:aescbc:v1:c:', cbcKey, object));
		expect(cbc).toMatchObject({ok: true, provider: 'aescbc', keyName: 'c'});
		if (cbc.ok) expect(cbc.object.equals(object)).toBe(true);
		// Plaintext of an exact block multiple gets a whole block of padding.
		const block = Buffer.concat([Buffer.from('k8s\0'), randomBytes(28)]);
		const exact = decryptValue(config, 'secrets', etcdKey, sealCbc('k8s:enc:aescbc:v1:c:', cbcKey, block));
		expect(exact.ok && exact.object.equals(block)).toBe(true);
	});

	it('plaintext is read through identity', () => {
		expect(decryptValue(config, 'secrets', etcdKey, object)).toMatchObject({ok: true, provider: 'identity'});
	});

	it('reports a wrong key, a tampered value, a moved gcm value, and a key the config lacks', () => {
		const wrong = decryptValue(config, 'secrets', etcdKey, sealSecretbox('k8s:enc:secretbox:v1:key1:', key2, object));
		expect(wrong).toMatchObject({ok: false});
		if (!wrong.ok) expect(wrong.reason).toMatch(/secretbox key key1: authentication failed/);

		const tampered = sealSecretbox('k8s:enc:secretbox:v1:key1:', key1, object);
		tampered[tampered.length - 1]! ^= 1;
		expect(decryptValue(config, 'secrets', etcdKey, tampered).ok).toBe(false);

		const moved = sealGcm('k8s:enc:aesgcm:v1:g:', gcmKey, object, '/registry/secrets/other/x');
		expect(decryptValue(config, 'secrets', etcdKey, moved).ok).toBe(false);

		const missing = decryptValue(config, 'secrets', etcdKey, sealSecretbox('k8s:enc:secretbox:v1:key9:', key1, object));
		expect(missing).toMatchObject({ok: false});
		if (!missing.ok) expect(missing.reason).toMatch(/secretbox:key9/);

		const cbcWrong = decryptValue(config, 'secrets', etcdKey, sealCbc('k8s:enc:aescbc:v1:c:', randomBytes(32), object));
		expect(cbcWrong.ok).toBe(false);
	});

	it('decrypts but rejects a result that is not a Kubernetes object', () => {
		const result = decryptValue(config, 'secrets', etcdKey, sealSecretbox('k8s:enc:secretbox:v1:key1:', key1, Buffer.from('hello')));
		expect(result).toMatchObject({ok: false});
		if (!result.ok) expect(result.reason).toMatch(/not a Kubernetes object/);
	});

	it('KMS values are recognised but not decrypted', () => {
		expect(decryptValue(config, 'secrets', etcdKey, Buffer.from('k8s:enc:kms:v1:vault:\0\x10abc'))).toMatchObject({ok: false, kms: true});
	});

	it('uses only the rule of the resource', () => {
		// Plaintext is unreadable for a resource whose rule has no identity provider.
		expect(decryptValue(config, 'widgets.example.com', '/registry/example.com/widgets/a', object).ok).toBe(false);
		// A resource with no rule is plaintext.
		expect(decryptValue(config, 'pods', '/registry/pods/a/b', object).ok).toBe(true);
		const encrypted = sealSecretbox('k8s:enc:secretbox:v1:key1:', key1, object);
		expect(decryptValue(config, 'pods', '/registry/pods/a/b', encrypted)).toMatchObject({ok: false});
	});

	it('never puts key material in failure reasons', () => {
		const reasons = [
			decryptValue(config, 'secrets', etcdKey, sealSecretbox('k8s:enc:secretbox:v1:key1:', key2, object)),
			decryptValue(config, 'secrets', etcdKey, sealGcm('k8s:enc:aesgcm:v1:g:', randomBytes(16), object, etcdKey)),
		]
			.map(result => (result.ok ? '' : result.reason))
			.join('\n');
		for (const key of [key1, key2, gcmKey, cbcKey]) {
			expect(reasons).not.toContain(key.toString('base64'));
			expect(reasons).not.toContain(key.toString('hex'));
		}
	});
});

describe('config helpers', () => {
	it('parses group resources like schema.ParseGroupResource', () => {
		expect(parseGroupResource('secrets')).toEqual({group: '', resource: 'secrets'});
		expect(parseGroupResource('deployments.apps')).toEqual({group: 'apps', resource: 'deployments'});
		expect(parseGroupResource('widgets.example.com')).toEqual({group: 'example.com', resource: 'widgets'});
	});

	it('finds the rule and primary, including 1.27 wildcards', () => {
		expect(primaryFor(config, 'secrets')).toEqual({type: 'secretbox', keyName: 'key1'});
		expect(storedPrefix(primaryFor(config, 'secrets'))).toBe('k8s:enc:secretbox:v1:key1:');
		expect(primaryFor(config, 'pods')).toEqual({type: 'identity'});
		expect(storedPrefix({type: 'kms', name: 'v', apiVersion: 'v2'})).toBe('k8s:enc:kms:v2:v:');
		const wildcard: EncryptionConfig = {
			...config,
			resources: [
				{resources: ['*.apps'], providers: [{type: 'identity'}]},
				{resources: ['*.*'], providers: [{type: 'aesgcm', keys: [{name: 'all', secret: gcmKey.toString('base64')}]}]},
			],
		};
		expect(primaryFor(wildcard, 'deployments.apps')).toEqual({type: 'identity'});
		expect(primaryFor(wildcard, 'secrets')).toEqual({type: 'aesgcm', keyName: 'all'});
		expect(ruleFor({...config, resources: [{resources: ['*.'], providers: [{type: 'identity'}]}]}, 'deployments.apps')).toBeUndefined();
	});
});

describe('verifySample', () => {
	it('reports failures by etcd key and counts KMS separately', () => {
		const report = verifySample(config, 'secrets', [
			{key: '/registry/secrets/a/good', value: sealSecretbox('k8s:enc:secretbox:v1:key1:', key1, object)},
			{key: '/registry/secrets/a/bad', value: sealSecretbox('k8s:enc:secretbox:v1:key2:', key1, object)},
			{key: '/registry/secrets/a/kms', value: Buffer.from('k8s:enc:kms:v1:vault:\0\x01x')},
			{key: '/registry/secrets/a/plain', value: object},
		]);
		expect(report).toMatchObject({checked: 4, ok: 2, failed: 1, kmsSkipped: 1});
		expect(report.failures).toEqual([{key: '/registry/secrets/a/bad', reason: expect.stringMatching(/key2/)}]);
	});

	it('caps the failure list', () => {
		const bad = Array.from({length: 5}, (_, index) => ({key: `/registry/secrets/n/${index}`, value: Buffer.from('junk')}));
		const report = verifySample(config, 'secrets', bad, {maxFailures: 2});
		expect(report.failed).toBe(5);
		expect(report.failures).toHaveLength(2);
	});
});

import {readdirSync, readFileSync} from 'node:fs';
import {describe, expect, it} from 'vitest';
import {
	configDigest,
	decodeBase64,
	ensureEncryption,
	generateKeySecret,
	mergeEncryptionConfigs,
	nextKeyName,
	parseEncryptionConfig,
	primaryProviderFor,
	redact,
	renderEncryptionConfig,
	resourceMatches,
	secretsInText,
	secretsOfConfig,
} from '../../source/kube/encryption-config.js';
import {templates} from '../../source/kube/templates.generated.js';

const path = '/etc/kubernetes/enc/encryption-config.yaml';
const key32 = Buffer.alloc(32, 7).toString('base64');
const key16 = Buffer.alloc(16, 9).toString('base64');
const key24 = Buffer.alloc(24, 3).toString('base64');

const config = (providers: string, resources = '      - secrets') => `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
${resources}
    providers:
${providers}
`;

const secretbox = (name: string, secret: string) => `      - secretbox:
          keys:
            - name: ${name}
              secret: ${secret}`;

function only(text: string) {
	const check = parseEncryptionConfig(text, path);
	return check;
}

describe('templates', () => {
	it('the generated module matches templates/ byte for byte (run node templates/generate.mjs after editing)', () => {
		const dir = new URL('../../templates/', import.meta.url);
		const files = readdirSync(dir).filter(name => name.endsWith('.yaml')).sort();
		expect(Object.keys(templates).sort()).toEqual(files);
		for (const name of files) expect(templates[name as keyof typeof templates]).toBe(readFileSync(new URL(name, dir), 'utf8'));
	});
});

describe('parseEncryptionConfig', () => {
	it('accepts a valid config and reads providers in order', () => {
		const check = only(config(`${secretbox('key1', key32)}\n      - aescbc:\n          keys:\n            - name: old\n              secret: ${key16}\n      - identity: {}`));
		expect(check.errors).toEqual([]);
		expect(check.config?.resources[0]?.providers.map(p => p.type)).toEqual(['secretbox', 'aescbc', 'identity']);
		expect(primaryProviderFor(check.config!, 'secrets').type).toBe('secretbox');
		expect(primaryProviderFor(check.config!, 'configmaps').type).toBe('identity');
	});

	it('accepts aesgcm and aescbc keys of 16, 24 and 32 bytes', () => {
		for (const type of ['aesgcm', 'aescbc']) {
			for (const secret of [key16, key24, key32]) {
				const check = only(config(`      - ${type}:\n          keys:\n            - name: k\n              secret: ${secret}`));
				expect(check.errors).toEqual([]);
			}
		}
	});

	it('rejects bad YAML naming the file and line, without quoting the key', () => {
		const check = only(`apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets\n    providers:\n      - secretbox: {keys: [{name: k, secret: ${key32}}]}\n`);
		expect(check.config).toBeUndefined();
		expect(check.errors).toHaveLength(1);
		expect(check.errors[0]).toMatch(new RegExp(`^${path}: not valid YAML at line \\d+ .*Fix: restore the file from a backup`));
		expect(check.errors[0]).not.toContain(key32);
	});

	it('rejects a key that is not base64', () => {
		const check = only(config(secretbox('key1', 'not*base64!')));
		expect(check.errors).toEqual([expect.stringMatching(/resources\[0\]\.providers\[0\]\.secretbox\.keys\[0\]\.secret: is not valid base64 \(key "key1"\)\. Fix: .*head -c 32 \/dev\/urandom \| base64/)]);
		expect(check.errors[0]).toContain(path);
		expect(check.errors[0]).not.toContain('not*base64!');
	});

	it('rejects keys of the wrong length for the provider', () => {
		const check = only(config(secretbox('key1', key16)));
		expect(check.errors).toEqual([expect.stringContaining('decodes to 16 bytes (key "key1"); secretbox needs 32 bytes')]);
		expect(check.errors[0]).not.toContain(key16);
		const aes = only(config(`      - aesgcm:\n          keys:\n            - name: k\n              secret: ${Buffer.alloc(20).toString('base64')}`));
		expect(aes.errors).toEqual([expect.stringContaining('decodes to 20 bytes (key "k"); aesgcm needs 16 or 24 or 32 bytes')]);
	});

	it('rejects empty providers, empty keys, empty resources and wrong kind/apiVersion', () => {
		expect(only(config('      []')).errors).toEqual([
			expect.stringContaining('resources[0].providers: must be a non-empty list of providers'),
		]);
		expect(only(config('      - secretbox:\n          keys: []')).errors).toEqual([expect.stringContaining('secretbox.keys: must be a non-empty list of keys')]);
		expect(only(config('      - identity: {}', '      []')).errors).toEqual([expect.stringContaining('resources[0].resources: must be a non-empty list of resource names')]);
		expect(only('apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: []\n').errors).toEqual([
			expect.stringContaining('resources: must be a non-empty list of rules'),
		]);
		const wrongKind = only(config('      - identity: {}').replace('kind: EncryptionConfiguration', 'kind: Pod').replace('/v1', '/v1alpha1'));
		expect(wrongKind.errors).toEqual([
			expect.stringContaining('kind: is "Pod", expected EncryptionConfiguration'),
			expect.stringContaining('apiVersion: is "apiserver.config.k8s.io/v1alpha1", expected apiserver.config.k8s.io/v1'),
		]);
		expect(only('just a string\n').errors).toEqual([expect.stringContaining('the document is not a mapping')]);
	});

	it('rejects duplicate key names, two providers in one item, unknown providers', () => {
		const dup = only(config(`      - secretbox:\n          keys:\n            - name: key1\n              secret: ${key32}\n            - name: key1\n              secret: ${Buffer.alloc(32, 1).toString('base64')}`));
		expect(dup.errors).toEqual([expect.stringContaining('key name "key1" is used twice in this provider')]);
		const two = only(config(`      - identity: {}\n        secretbox:\n          keys:\n            - name: k\n              secret: ${key32}`));
		expect(two.errors).toEqual([expect.stringContaining('names 2 providers (identity, secretbox); each list item holds one')]);
		expect(only(config('      - rot13: {}')).errors).toEqual([expect.stringContaining('unknown provider "rot13"')]);
	});

	it('checks resource names', () => {
		expect(only(config('      - identity: {}', '      - Secrets')).errors).toEqual([expect.stringContaining('resource names are lower case')]);
		expect(only(config('      - identity: {}', '      - secrets\n      - secrets')).errors).toEqual([expect.stringContaining('lists the same resource more than once')]);
		expect(only(config('      - identity: {}', "      - '*.'\n      - secrets")).errors).toEqual([expect.stringContaining('mixes a wildcard')]);
		expect(only(config('      - identity: {}', '      - events.events.k8s.io')).errors).toEqual([expect.stringContaining("use events")]);
		expect(only(config('      - identity: {}', "      - '*.*'")).errors).toEqual([]);
	});

	it('validates KMS providers', () => {
		const kms = (body: string) => only(config(`      - kms:\n${body}`)).errors;
		expect(kms('          apiVersion: v2\n          name: vault\n          endpoint: unix:///var/run/kms.sock\n          timeout: 3s')).toEqual([]);
		expect(kms('          name: vault\n          endpoint: unix:///var/run/kms.sock\n          cachesize: 100')).toEqual([]);
		expect(kms('          apiVersion: v2\n          name: a:b\n          endpoint: tcp://x\n          cachesize: 5')).toEqual([
			expect.stringContaining('kms.name: "a:b" must not contain'),
			expect.stringContaining('kms.endpoint: "tcp://x" is not a unix:// socket'),
			expect.stringContaining('kms.cachesize: is not supported by KMS v2'),
		]);
		expect(kms('          apiVersion: v3\n          timeout: soon')).toEqual([
			expect.stringContaining('kms.apiVersion: is "v3"'),
			expect.stringContaining('kms.name: is missing'),
			expect.stringContaining('kms.endpoint: is missing'),
			expect.stringContaining('kms.timeout: "soon" is not a positive duration'),
		]);
	});

	it('warns about identity between encrypting providers', () => {
		const check = only(config(`${secretbox('a', key32)}\n      - identity: {}\n${secretbox('b', key32).replace('secretbox', 'aescbc')}`));
		expect(check.errors).toEqual([]);
		expect(check.warnings).toEqual([expect.stringContaining('providers[1] is identity between encrypting providers')]);
	});
});

describe('keys', () => {
	it('generates 32 random bytes as base64 from the injected source', () => {
		const sizes: number[] = [];
		const secret = generateKeySecret(size => {
			sizes.push(size);
			return Buffer.alloc(size, 0xab);
		});
		expect(sizes).toEqual([32]);
		expect(secret).toHaveLength(44);
		expect(decodeBase64(secret)).toEqual(Buffer.alloc(32, 0xab));
		expect(() => generateKeySecret(() => Buffer.alloc(16))).toThrow(/expected 32/);
	});

	it('decodes strict base64 only', () => {
		expect(decodeBase64(key32)?.length).toBe(32);
		expect(decodeBase64('abc')).toBeUndefined();
		expect(decodeBase64('ab=c')).toBeUndefined();
		expect(decodeBase64('YWJj\n')).toBeUndefined();
	});

	it('picks the next free key name across providers', () => {
		expect(nextKeyName(undefined)).toBe('key1');
		const check = only(config(`${secretbox('key1', key32)}\n${secretbox('key2', key32).replace('secretbox', 'aescbc')}`));
		expect(nextKeyName(check.config)).toBe('key3');
	});

	it('matches resources against wildcard entries', () => {
		expect(resourceMatches('*.*', 'secrets')).toBe(true);
		expect(resourceMatches('*.', 'secrets')).toBe(true);
		expect(resourceMatches('*.', 'deployments.apps')).toBe(false);
		expect(resourceMatches('*.apps', 'deployments.apps')).toBe(true);
		expect(resourceMatches('configmaps', 'secrets')).toBe(false);
	});
});

describe('render and merge', () => {
	const request = {provider: 'secretbox' as const, resources: ['secrets'], makePrimary: true, keyName: 'key1', newSecret: () => key32};

	it('renders a new config from the template: key first, identity last, valid', () => {
		const result = ensureEncryption(undefined, request);
		expect(result.changed).toBe(true);
		expect(result.added).toEqual({name: 'key1', secret: key32});
		expect(result.text.startsWith('# EncryptionConfiguration written by etcd-harden')).toBe(true);
		expect(result.text).toContain(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - secretbox:
          keys:
            - name: key1
              secret: ${key32}
      - identity: {}
`);
		const check = parseEncryptionConfig(result.text, path);
		expect(check.errors).toEqual([]);
		expect(check.config?.resources[0]?.providers.map(p => p.type)).toEqual(['secretbox', 'identity']);
	});

	it('renders any rule list', () => {
		const text = renderEncryptionConfig([{resources: ['configmaps'], providers: [{type: 'kms', apiVersion: 'v2', name: 'vault', endpoint: 'unix:///kms.sock'}]}]);
		expect(parseEncryptionConfig(text, path).config?.resources[0]?.providers[0]).toEqual({type: 'kms', apiVersion: 'v2', name: 'vault', endpoint: 'unix:///kms.sock'});
	});

	const existingText = `# hand-written, keep this comment
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - aescbc:   # legacy
          keys:
            - name: key1
              secret: ${key16}
      - identity: {}
`;
	const existing = () => {
		const check = parseEncryptionConfig(existingText, path);
		return {text: existingText, config: check.config!, path};
	};

	it('adds a new provider as primary only when asked, keeping old keys, identity and comments', () => {
		const asked = ensureEncryption(existing(), {...request, keyName: 'key2'});
		const parsed = parseEncryptionConfig(asked.text, path);
		expect(parsed.config?.resources[0]?.providers.map(p => p.type)).toEqual(['secretbox', 'aescbc', 'identity']);
		expect(asked.text).toContain('# hand-written, keep this comment\n');
		expect(asked.text).toContain('      - aescbc:   # legacy\n');
		expect(asked.text).toContain(key16);

		const notAsked = ensureEncryption(existing(), {...request, keyName: 'key2', makePrimary: false});
		expect(parseEncryptionConfig(notAsked.text, path).config?.resources[0]?.providers.map(p => p.type)).toEqual(['aescbc', 'secretbox', 'identity']);
		// a rerun without primary adds nothing more
		const again = ensureEncryption({...existing(), text: notAsked.text, config: parseEncryptionConfig(notAsked.text, path).config!}, {
			...request,
			keyName: 'key3',
			makePrimary: false,
			newSecret: () => {
				throw new Error('no new key expected');
			},
		});
		expect(again.changed).toBe(false);
		expect(again.text).toBe(notAsked.text);
		// and asking for primary later moves the existing key first, no new key
		const promoted = ensureEncryption({...existing(), text: notAsked.text, config: parseEncryptionConfig(notAsked.text, path).config!}, {
			...request,
			keyName: 'key3',
			newSecret: () => {
				throw new Error('no new key expected');
			},
		});
		expect(promoted.added).toBeUndefined();
		expect(parseEncryptionConfig(promoted.text, path).config?.resources[0]?.providers.map(p => p.type)).toEqual(['secretbox', 'aescbc', 'identity']);
	});

	it('changes nothing when the provider already encrypts the resources', () => {
		const first = ensureEncryption(undefined, request);
		const config = parseEncryptionConfig(first.text, path).config!;
		let calls = 0;
		const second = ensureEncryption({text: first.text, config, path}, {...request, keyName: 'key2', newSecret: () => String(++calls)});
		expect(second.changed).toBe(false);
		expect(second.text).toBe(first.text);
		expect(calls).toBe(0);
	});

	it('adds a rule for uncovered resources, before wildcard rules', () => {
		const withWildcard = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - secretbox:
          keys:
            - name: key1
              secret: ${key32}
      - identity: {}
  - resources:
      - '*.apps'
    providers:
      - identity: {}
`;
		const config = parseEncryptionConfig(withWildcard, path).config!;
		const result = ensureEncryption({text: withWildcard, config, path}, {...request, resources: ['secrets', 'configmaps', 'deployments.apps'], keyName: 'key2'});
		const merged = parseEncryptionConfig(result.text, path).config!;
		expect(merged.resources.map(r => r.resources)).toEqual([['secrets'], ['configmaps'], ['*.apps']]);
		expect(merged.resources[1]!.providers.map(p => p.type)).toEqual(['secretbox', 'identity']);
		// deployments.apps is covered by the *.apps rule: secretbox is added there too
		expect(merged.resources[2]!.providers.map(p => p.type)).toEqual(['secretbox', 'identity']);
		expect(secretsOfConfig(merged)).toEqual([key32]);
		expect(result.added?.name).toBe('key2');
	});

	it('computes a stable sha256 digest', () => {
		expect(configDigest('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
	});
});

describe('merging a config kube-apiserver uses into another one (the path the operator chose)', () => {
	const parsed = (text: string, at: string) => ({text, config: parseEncryptionConfig(text, at).config!, path: at});

	it('adds what only the used config has: a provider after the target\'s, a rule for resources the target does not cover, identity', () => {
		const into = parsed(config(`      - secretbox:\n          keys:\n            - name: mine\n              secret: ${key32}`), '/into.yaml');
		const from = parsed(
			config(`      - aescbc:\n          keys:\n            - name: live\n              secret: ${key16}\n      - identity: {}`, '      - secrets\n      - configmaps'),
			'/from.yaml',
		);
		const result = mergeEncryptionConfigs(into, from);
		const merged = parseEncryptionConfig(result.text, '/into.yaml').config!;
		expect(merged.resources.map(r => r.resources)).toEqual([['secrets'], ['configmaps']]);
		expect(merged.resources[0]!.providers.map(p => p.type)).toEqual(['secretbox', 'aescbc', 'identity']);
		expect(merged.resources[1]!.providers.map(p => p.type)).toEqual(['aescbc', 'identity']);
		expect(secretsOfConfig(merged).sort()).toEqual([key16, key32].sort());
		expect(result.notes.join('\n')).toMatch(/New writes: secretbox \(keys mine\) \(first in \/into\.yaml\) instead of aescbc/);
		for (const note of [...result.notes, ...result.warnings]) expect(note).not.toMatch(new RegExp(`${key16.slice(0, 10)}|${key32.slice(0, 10)}`));
	});

	it('adds a key to the target\'s provider of the same type after its keys; the same key twice is kept once; a KMS plugin is matched by name', () => {
		const kms = (name: string) => `      - kms:\n          apiVersion: v2\n          name: ${name}\n          endpoint: unix:///run/${name}.sock`;
		const into = parsed(config(`      - secretbox:\n          keys:\n            - name: a\n              secret: ${key32}\n${kms('one')}`), '/into.yaml');
		const other = Buffer.alloc(32, 1).toString('base64');
		const from = parsed(config(`      - secretbox:\n          keys:\n            - name: b\n              secret: ${other}\n            - name: a\n              secret: ${key32}\n${kms('one')}\n${kms('two')}`), '/from.yaml');
		const merged = parseEncryptionConfig(mergeEncryptionConfigs(into, from).text, '/into.yaml').config!;
		const [secretbox, ...rest] = merged.resources[0]!.providers;
		expect(secretbox).toEqual({type: 'secretbox', keys: [{name: 'a', secret: key32}, {name: 'b', secret: other}]});
		expect(rest.map(p => (p.type === 'kms' ? p.name : p.type))).toEqual(['one', 'two']);
	});

	it('nothing to add: the target text comes back unchanged', () => {
		const text = `# mine\n${config(`      - secretbox:\n          keys:\n            - name: a\n              secret: ${key32}\n      - identity: {}`)}`;
		const result = mergeEncryptionConfigs(parsed(text, '/into.yaml'), parsed(config(`      - identity: {}`), '/from.yaml'));
		expect(result).toMatchObject({text, changed: false});
	});
});

describe('redaction', () => {
	it('finds secrets in valid and broken config text', () => {
		const text = `resources:\n  - providers:\n      - secretbox:\n          keys:\n            - name: key1\n              secret: ${key32}\n            - {name: key2, secret: "${key16}"}\n            - name: key3\n              secret: 'not base64!'\n  - [broken`;
		expect(secretsInText(text)).toEqual([key32, key16, 'not base64!']);
	});

	it('replaces every occurrence, longest first, and leaves short strings alone', () => {
		expect(redact(`a ${key32} b ${key32}`, [key32])).toBe('a <redacted> b <redacted>');
		expect(redact('abc', ['ab', 'abc'.repeat(0)])).toBe('abc');
		expect(redact('xxABCDEFyy', ['ABCD', 'ABCDEF'])).toBe('xx<redacted>yy');
	});
});

// Issue 13: property tests (fast-check) of the YAML-facing code. Random valid manifests and
// encryption configs, and random mutations of them, never produce anything but a result or a
// bad-input error; a patch either comes out right (it parses, the intended nodes changed and
// nothing else) or is refused; no output ever holds a key. Run counts keep the file well
// under a minute on 2 cores.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import fc from 'fast-check';
import {parse, stringify} from 'yaml';
import {afterEach, describe, expect, test} from 'vitest';
import {InputError} from '../../source/engine/contract.js';
import {redactFile} from '../../source/engine/preview.js';
import {ensureEncryption, mergeEncryptionConfigs, parseEncryptionConfig} from '../../source/kube/encryption-config.js';
import type {EncryptionConfig} from '../../source/kube/types.js';
import {inspectManifest, parseFlags, patchManifest, type ManifestPatch} from '../../source/kube/manifest.js';
import {cleanup, configFile, demoCopy, expectNoTrace, manifest, pointApiserverAt, recovery, run, snapshot} from './cli-harness.js';

afterEach(cleanup);

const flagName = fc.stringMatching(/^[a-z][a-z0-9]{0,8}(-[a-z0-9]{1,6}){0,2}$/).filter(name => !name.startsWith('encryption-provider-config'));
const flagValue = fc.oneof(
	fc.stringMatching(/^[A-Za-z0-9/._,:=-]{1,24}$/).filter(value => !value.startsWith('-')),
	fc.constantFrom('true', 'false', '2379', 'https://127.0.0.1:2379', 'a b', "it's", '"quoted"', '#not-a-comment', 'x: y', '[1]', '*star', '&amp'),
);
type FlagForm = 'eq' | 'split' | 'bare';
const flagItem = fc.record({name: flagName, value: flagValue, form: fc.constantFrom<FlagForm>('eq', 'eq', 'split', 'bare')});

const manifestSpec = fc.record({
	flags: fc.uniqueArray(flagItem, {minLength: 1, maxLength: 12, selector: flag => flag.name}),
	useArgs: fc.boolean(),
	style: fc.integer({min: 0, max: 2}),
	indentSeq: fc.boolean(),
	comment: fc.boolean(),
	configFlag: fc.constantFrom('none', 'eq', 'split'),
	extraVolumes: fc.integer({min: 0, max: 3}),
});

type ManifestSpec = typeof manifestSpec extends fc.Arbitrary<infer T> ? T : never;

/** A kube-apiserver static pod manifest from a spec: flags in every form pflag accepts, in a random YAML style. */
function renderManifest(spec: ManifestSpec): string {
	const items: string[] = [];
	for (const flag of spec.flags) {
		if (flag.form === 'eq') items.push(`--${flag.name}=${flag.value}`);
		else if (flag.form === 'split') items.push(`--${flag.name}`, flag.value);
		else items.push(`--${flag.name}`);
	}
	if (spec.configFlag === 'eq') items.push('--encryption-provider-config=/etc/kubernetes/enc/old.yaml');
	if (spec.configFlag === 'split') items.push('--encryption-provider-config', '/etc/kubernetes/enc/old.yaml');
	const container: Record<string, unknown> = {name: 'kube-apiserver', image: 'registry.k8s.io/kube-apiserver:v1.28.2'};
	if (spec.useArgs) Object.assign(container, {command: ['kube-apiserver'], args: items});
	else container['command'] = ['kube-apiserver', ...items];
	const volumes = Array.from({length: spec.extraVolumes}, (_, i) => ({name: `v${i}`, hostPath: {path: `/srv/v${i}`}}));
	if (volumes.length > 0) container['volumeMounts'] = volumes.map(v => ({name: v.name, mountPath: v.hostPath.path}));
	const js = {apiVersion: 'v1', kind: 'Pod', metadata: {name: 'kube-apiserver', namespace: 'kube-system'}, spec: {containers: [container], ...(volumes.length > 0 ? {volumes} : {})}};
	const text = stringify(js, {indentSeq: spec.indentSeq, lineWidth: 0, defaultStringType: (['PLAIN', 'QUOTE_DOUBLE', 'QUOTE_SINGLE'] as const)[spec.style]});
	return spec.comment ? text.replace(/^(["']?spec["']?:)$/m, '# a comment that must survive\n$1') : text;
}

const patch: ManifestPatch = {
	flags: {'encryption-provider-config': '/etc/kubernetes/enc/encryption-config.yaml', 'encryption-provider-config-automatic-reload': 'true'},
	mounts: [{name: 'etcd-harden-encryption', hostPath: '/etc/kubernetes/enc', mountPath: '/etc/kubernetes/enc', type: 'DirectoryOrCreate', readOnly: true}],
	annotations: {'etcd-harden.io/encryption-config-sha256': 'abc'},
};

/** The document without what the patch may change: everything else must be equal. */
function untouched(text: string): unknown {
	const js = parse(text) as {metadata?: {annotations?: unknown}; spec: {containers: Array<Record<string, unknown>>; volumes?: unknown[]}};
	delete js.metadata?.annotations;
	const container = js.spec.containers[0]!;
	delete container['command'];
	delete container['args'];
	delete container['volumeMounts'];
	delete js.spec.volumes;
	return js;
}

/** Single-point text mutations: the shapes hostile files take. */
const mutation = fc.record({
	kind: fc.constantFrom('delete-line', 'duplicate-line', 'insert', 'indent', 'truncate', 'swap-lines'),
	at: fc.nat(),
	text: fc.constantFrom('*', '&', ': ', '- ', '"', "'", '{', '[', '\t', '#', '!!binary ', '<<: *x', '\u0000', 'key: value', '---'),
});

function mutate(text: string, m: {kind: string; at: number; text: string}): string {
	const lines = text.split('\n');
	const i = m.at % lines.length;
	switch (m.kind) {
		case 'delete-line':
			lines.splice(i, 1);
			break;
		case 'duplicate-line':
			lines.splice(i, 0, lines[i]!);
			break;
		case 'indent':
			lines[i] = ` ${lines[i]}`;
			break;
		case 'truncate':
			return text.slice(0, m.at % text.length);
		case 'swap-lines':
			[lines[i], lines[(i + 1) % lines.length]] = [lines[(i + 1) % lines.length]!, lines[i]!];
			break;
		default: {
			const line = lines[i]!;
			const col = m.at % (line.length + 1);
			lines[i] = line.slice(0, col) + m.text + line.slice(col);
		}
	}
	return lines.join('\n');
}

/** Run fn; a thrown InputError is a refusal, anything else fails the property. */
function refusedOr<T>(fn: () => T): {ok: true; value: T} | {ok: false; message: string} {
	try {
		return {ok: true, value: fn()};
	} catch (error) {
		if (!(error instanceof InputError)) throw error;
		return {ok: false, message: error.message};
	}
}

describe('manifests', () => {
	test('random valid manifests patch correctly: they parse, the flags are set, every other node is unchanged', () => {
		fc.assert(
			fc.property(manifestSpec, spec => {
				const text = renderManifest(spec);
				const before = inspectManifest(text, '/m.yaml', 'kube-apiserver');
				const outcome = refusedOr(() => patchManifest(text, '/m.yaml', 'kube-apiserver', patch));
				if (!outcome.ok) {
					expect(outcome.message).toMatch(/^\/m\.yaml: /);
					return;
				}
				const after = inspectManifest(outcome.value, '/m.yaml', 'kube-apiserver');
				expect(after.flags).toEqual({...before.flags, ...patch.flags});
				expect(after.command[0]).toBe('kube-apiserver');
				expect(untouched(outcome.value)).toEqual(untouched(text));
				expect(after.volumes.filter(v => v.name !== 'etcd-harden-encryption')).toEqual(before.volumes);
				expect(after.volumeMounts.filter(v => v.name !== 'etcd-harden-encryption')).toEqual(before.volumeMounts);
				if (spec.comment) expect(outcome.value).toContain('# a comment that must survive');
				// Idempotent: patching again changes nothing.
				expect(patchManifest(outcome.value, '/m.yaml', 'kube-apiserver', patch)).toBe(outcome.value);
			}),
			{numRuns: 100},
		);
	}, 60_000);

	test('a manifest mixing sequence indentations (found by the mutation property) patches to valid YAML', () => {
		const text = [
			'apiVersion: v1', 'kind: Pod', 'metadata:', '  name: kube-apiserver', 'spec:', '  containers:', '    - name: kube-apiserver', '      command:',
			'        - kube-apiserver', '        - --a=,', '      volumeMounts:', '      - name: v0', '        mountPath: /srv/v0', '  volumes:', '    - name: v0',
			'      hostPath:', '        path: /srv/v0', '',
		].join('\n');
		const patched = patchManifest(text, '/m.yaml', 'kube-apiserver', patch);
		const after = inspectManifest(patched, '/m.yaml', 'kube-apiserver');
		expect(after.flags).toEqual({a: ',', ...patch.flags});
		expect(after.volumeMounts.map(m => m.name)).toEqual(['v0', 'etcd-harden-encryption']);
		expect(untouched(patched)).toEqual(untouched(text));
	});

	test('mutated manifests are read or refused as bad input, never with another error', () => {
		fc.assert(
			fc.property(manifestSpec, mutation, (spec, m) => {
				const text = mutate(renderManifest(spec), m);
				const read = refusedOr(() => inspectManifest(text, '/m.yaml', 'kube-apiserver'));
				const patched = refusedOr(() => patchManifest(text, '/m.yaml', 'kube-apiserver', patch));
				if (!read.ok) expect(read.message).toMatch(/^\/m\.yaml: /);
				if (patched.ok) {
					const after = inspectManifest(patched.value, '/m.yaml', 'kube-apiserver');
					expect(after.flags['encryption-provider-config']).toBe('/etc/kubernetes/enc/encryption-config.yaml');
				}
			}),
			{numRuns: 200},
		);
	}, 60_000);

	test('parseFlags agrees with a reference reading of pflag forms', () => {
		fc.assert(
			fc.property(fc.uniqueArray(flagItem, {maxLength: 10, selector: flag => flag.name}), flags => {
				const argv = ['kube-apiserver', ...flags.flatMap(f => (f.form === 'eq' ? [`--${f.name}=${f.value}`] : f.form === 'split' ? [`--${f.name}`, f.value] : [`--${f.name}`]))];
				const expected = Object.fromEntries(flags.map(f => [f.name, f.form === 'bare' ? 'true' : f.value]));
				expect(parseFlags(argv)).toEqual(expected);
			}),
			{numRuns: 200},
		);
	}, 60_000);
});

const keyBytes = fc.constantFrom(16, 24, 32).chain(size => fc.uint8Array({minLength: size, maxLength: size}));
const configSpec = fc.record({
	keys: fc.array(keyBytes, {minLength: 1, maxLength: 4}),
	provider: fc.constantFrom('secretbox', 'aescbc', 'aesgcm'),
	form: fc.constantFrom('block', 'flow', 'json', 'json-escaped', 'double-quoted', 'folded'),
});

type ConfigSpec = typeof configSpec extends fc.Arbitrary<infer T> ? T : never;

function renderConfig(spec: ConfigSpec): {text: string; secrets: string[]} {
	const provider = spec.provider === 'secretbox' ? 'secretbox' : spec.provider;
	const usable = spec.keys.filter(bytes => provider !== 'secretbox' || bytes.length === 32);
	const secrets = (usable.length > 0 ? usable : [new Uint8Array(32).fill(7)]).map(bytes => Buffer.from(bytes).toString('base64'));
	const keys = secrets.map((secret, i) => ({name: `key${i + 1}`, secret}));
	const js = {apiVersion: 'apiserver.config.k8s.io/v1', kind: 'EncryptionConfiguration', resources: [{resources: ['secrets'], providers: [{[provider]: {keys}}, {identity: {}}]}]};
	switch (spec.form) {
		case 'json':
			return {text: JSON.stringify(js, null, 2), secrets};
		case 'json-escaped':
			return {text: JSON.stringify(js).replaceAll('/', '\\/'), secrets};
		case 'flow':
			return {text: `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{${provider}: {keys: [${keys.map(k => `{name: ${k.name}, secret: "${k.secret}"}`).join(', ')}]}}, {identity: {}}]}]\n`, secrets};
		default: {
			const value = (secret: string) =>
				spec.form === 'double-quoted' ? `"${secret}"` : spec.form === 'folded' ? `"${secret.slice(0, 10)}\\\n                ${secret.slice(10)}"` : secret;
			const list = keys.map(k => `            - name: ${k.name}\n              secret: ${value(k.secret)}`).join('\n');
			return {text: `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n    providers:\n      - ${provider}:\n          keys:\n${list}\n      - identity: {}\n`, secrets};
		}
	}
}

/** The key that encrypts new writes of secrets. */
function primaryKey(config: EncryptionConfig): string | undefined {
	const provider = config.resources[0]?.providers[0];
	return provider && 'keys' in provider ? `${provider.type}:${provider.keys[0]?.name}:${provider.keys[0]?.secret}` : provider?.type;
}

function expectNoSecret(text: string, secrets: readonly string[]): void {
	for (const secret of secrets) {
		expect(text).not.toContain(secret);
		expect(text).not.toContain(secret.replaceAll('/', '\\/'));
		expect(text).not.toContain(secret.slice(0, 16));
	}
}

describe('encryption configs', () => {
	test('every form parses to the same keys; merging keeps them all; previews redact every one', () => {
		fc.assert(
			fc.property(configSpec, fc.boolean(), (spec, makePrimary) => {
				const {text, secrets} = renderConfig(spec);
				const check = parseEncryptionConfig(text, '/c.yaml');
				expect(check.errors).toEqual([]);
				const parsed = JSON.stringify(check.config);
				for (const secret of secrets) expect(parsed).toContain(secret);
				const fresh = Buffer.alloc(32, 9).toString('base64');
				const merged = ensureEncryption({text, config: check.config!, path: '/c.yaml'}, {provider: 'secretbox', resources: ['secrets', 'configmaps'], makePrimary, keyName: 'new', newSecret: () => fresh});
				const again = parseEncryptionConfig(merged.text, '/c.yaml');
				expect(again.errors).toEqual([]);
				for (const secret of [...secrets, fresh]) expect(JSON.stringify(again.config)).toContain(secret);
				expectNoSecret(redactFile(text), secrets);
				expectNoSecret(redactFile(merged.text), [...secrets, fresh]);
			}),
			{numRuns: 150},
		);
	}, 60_000);

	test('merging two configs of any form: the result parses, keeps every key of both (the target\'s first provider still writes), or refuses a name clash as bad input', () => {
		fc.assert(
			fc.property(configSpec, configSpec, fc.boolean(), (intoSpec, fromSpec, rename) => {
				const into = renderConfig(intoSpec);
				// Same names (key1..) with other bytes: a clash unless the provider differs; renamed: never a clash.
				const from = renderConfig(fromSpec);
				const fromText = rename ? from.text.replace(/key(\d)/g, 'other$1') : from.text;
				const intoConfig = parseEncryptionConfig(into.text, '/into.yaml').config!;
				const fromConfig = parseEncryptionConfig(fromText, '/from.yaml').config!;
				const outcome = refusedOr(() => mergeEncryptionConfigs({text: into.text, config: intoConfig, path: '/into.yaml'}, {text: fromText, config: fromConfig, path: '/from.yaml'}));
				if (!outcome.ok) {
					expect(rename).toBe(false);
					expect(intoSpec.provider).toBe(fromSpec.provider);
					expect(outcome.message).toMatch(/both have a \w+ key named key\d/);
					expectNoSecret(outcome.message, [...into.secrets, ...from.secrets]);
					return;
				}
				const merged = parseEncryptionConfig(outcome.value.text, '/into.yaml');
				expect(merged.errors).toEqual([]);
				const keys = JSON.stringify(merged.config);
				for (const secret of [...into.secrets, ...from.secrets]) expect(keys).toContain(secret);
				expect(primaryKey(merged.config!)).toEqual(primaryKey(intoConfig));
				expectNoSecret(outcome.value.notes.join('\n') + outcome.value.warnings.join('\n'), [...into.secrets, ...from.secrets]);
			}),
			{numRuns: 200},
		);
	}, 60_000);

	test('mutated configs: never a thrown error, no key in any message or redacted text', () => {
		fc.assert(
			fc.property(configSpec, mutation, (spec, m) => {
				const {text, secrets} = renderConfig(spec);
				const mutated = mutate(text, m);
				const check = parseEncryptionConfig(mutated, '/c.yaml');
				const messages = [...check.errors, ...check.warnings].join('\n');
				// A mutation can cut a key short; what is left of it is still never shown.
				for (const secret of secrets) {
					if (mutated.includes(secret)) {
						expect(messages).not.toContain(secret);
						expect(redactFile(mutated)).not.toContain(secret);
					}
				}
			}),
			{numRuns: 200},
		);
	}, 60_000);
});

describe('the CLI on mutated trees', () => {
	test('mutated manifests and configs: exit 0 or 2, never a trace, never a key, the tree unchanged on 2', async () => {
		const secret = Buffer.alloc(32, 5).toString('base64');
		const config = `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - secretbox:\n          keys:\n            - name: key1\n              secret: ${secret}\n      - identity: {}\n`;
		await fc.assert(
			fc.asyncProperty(fc.constantFrom('manifest', 'config'), mutation, async (which, m) => {
				const root = await demoCopy();
				await fs.mkdir(path.join(root, 'etc/kubernetes/enc'), {recursive: true});
				await fs.writeFile(path.join(root, configFile), which === 'config' ? mutate(config, m) : config, {mode: 0o600});
				await pointApiserverAt(root, `/${configFile}`);
				if (which === 'manifest') {
					const file = path.join(root, manifest);
					await fs.writeFile(file, mutate(await fs.readFile(file, 'utf8'), m));
				}
				const before = await snapshot(root);
				const result = await run(['--root', root, '--yes', '--only', 'encryption-config,apiserver-manifest', '--set', 'encryption-config.primary=true', ...recovery]);
				expect([0, 2]).toContain(result.code);
				expectNoTrace(result);
				expect(result.stdout + result.stderr).not.toContain(secret);
				if (result.code === 2) expect(await snapshot(root)).toEqual(before);
				else expect(parseEncryptionConfig(await fs.readFile(path.join(root, configFile), 'utf8'), '/c').errors).toEqual([]);
			}),
			{numRuns: 15},
		);
	}, 120_000);
});

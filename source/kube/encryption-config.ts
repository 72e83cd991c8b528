/**
 * The apiserver's EncryptionConfiguration: parse and validate (shared by discovery and the
 * stages), render a new one from templates/encryption-config.yaml, merge a key into an
 * existing one without dropping anything, and list the secret substrings to redact.
 * Pure: text in, text out. Error messages never contain key material.
 */
import {createHash} from 'node:crypto';
import {isMap, isScalar, isSeq, parseDocument, visit, type Document, type YAMLMap, type YAMLSeq} from 'yaml';
import type {
	EncryptionConfig,
	EncryptionKey,
	KeyedProviderType,
	Provider,
	ProviderType,
	ResourceRule,
} from './types.js';
import {templates} from './templates.generated.js';
import {editYaml, MAX_YAML_BYTES, parseYaml} from './yaml-edit.js';
import {InputError} from '../engine/contract.js';

export const encryptionApiVersion = 'apiserver.config.k8s.io/v1';
export const defaultConfigPath = '/etc/kubernetes/enc/encryption-config.yaml';

export const keyedProviders: readonly KeyedProviderType[] = ['secretbox', 'aesgcm', 'aescbc'];
const providerTypes: readonly ProviderType[] = ['secretbox', 'aesgcm', 'aescbc', 'identity', 'kms'];

/** Decoded key lengths in bytes that the apiserver accepts, per provider. */
export const keyLengths: Record<KeyedProviderType, readonly number[]> = {
	secretbox: [32],
	aesgcm: [16, 24, 32],
	aescbc: [16, 24, 32],
};

/** The key length etcd-harden generates (valid for every keyed provider). */
export const generatedKeyBytes = 32;

export type ConfigCheck = {
	/** Set only when there are no errors. */
	config?: EncryptionConfig;
	/** Each names the file, the problem and the fix. */
	errors: string[];
	/** Valid but questionable (identity in the middle, ...). */
	warnings: string[];
};

const restoreFix = 'Fix: restore the file from a backup (or correct it by hand) and run etcd-harden again.';

/** Parse and validate an EncryptionConfiguration; `path` is used in messages. */
export function parseEncryptionConfig(text: string, path: string): ConfigCheck {
	const parsed = parseYaml(text);
	if (!parsed.doc) {
		const where = parsed.problem.line ? ` at line ${parsed.problem.line}` : '';
		return {errors: [`${path}: not valid YAML${where} (${redact(parsed.problem.message, secretsInText(text))}). ${restoreFix}`], warnings: []};
	}
	return validateEncryptionConfig(parsed.doc.toJS(), path);
}

/** Validate an already-parsed value (the rules of the apiserver's own validation). */
export function validateEncryptionConfig(value: unknown, path: string): ConfigCheck {
	const errors: string[] = [];
	const warnings: string[] = [];
	const fail = (where: string, problem: string, fix = restoreFix) =>
		errors.push(`${path}: ${where ? `${where}: ` : ''}${problem}. ${fix}`);

	if (!isRecord(value)) {
		fail('', 'not an EncryptionConfiguration (the document is not a mapping)');
		return {errors, warnings};
	}
	if (value['kind'] !== 'EncryptionConfiguration') {
		fail('kind', `is ${describe(value['kind'])}, expected EncryptionConfiguration`);
	}
	if (value['apiVersion'] !== encryptionApiVersion) {
		fail('apiVersion', `is ${describe(value['apiVersion'])}, expected ${encryptionApiVersion}`, `Fix: set apiVersion: ${encryptionApiVersion}.`);
	}
	const rawRules = value['resources'];
	if (!Array.isArray(rawRules) || rawRules.length === 0) {
		fail('resources', 'must be a non-empty list of rules (resources + providers)');
		return {errors, warnings};
	}

	const rules: ResourceRule[] = [];
	const kmsNames = new Set<string>();
	rawRules.forEach((rawRule, i) => {
		const at = `resources[${i}]`;
		if (!isRecord(rawRule)) {
			fail(at, 'must be a mapping with resources and providers');
			return;
		}
		const resources = validateResourceList(rawRule['resources'], `${at}.resources`, fail);
		const rawProviders = rawRule['providers'];
		if (!Array.isArray(rawProviders) || rawProviders.length === 0) {
			fail(`${at}.providers`, 'must be a non-empty list of providers');
			return;
		}
		const providers: Provider[] = [];
		rawProviders.forEach((rawProvider, j) => {
			const provider = validateProvider(rawProvider, `${at}.providers[${j}]`, fail, kmsNames);
			if (provider) providers.push(provider);
		});
		const identityAt = providers.map((p, j) => (p.type === 'identity' ? j : -1)).filter(j => j >= 0);
		if (identityAt.length > 1) warnings.push(`${path}: ${at}.providers lists identity ${identityAt.length} times; once (last) is enough.`);
		const middle = identityAt.find(j => j !== 0 && j !== providers.length - 1);
		if (middle !== undefined) {
			warnings.push(
				`${path}: ${at}.providers[${middle}] is identity between encrypting providers; providers after it are only tried for reading. Move identity last.`,
			);
		}
		rules.push({resources, providers});
	});
	if (errors.length > 0) return {errors, warnings};
	return {config: {apiVersion: encryptionApiVersion, kind: 'EncryptionConfiguration', resources: rules}, errors, warnings};
}

type Fail = (where: string, problem: string, fix?: string) => void;

function validateResourceList(value: unknown, at: string, fail: Fail): string[] {
	if (!Array.isArray(value) || value.length === 0) {
		fail(at, 'must be a non-empty list of resource names (for example secrets)');
		return [];
	}
	const names: string[] = [];
	value.forEach((item, k) => {
		if (typeof item !== 'string' || item === '') {
			fail(`${at}[${k}]`, 'must be a resource name such as secrets or deployments.apps');
			return;
		}
		const problem = resourceNameProblem(item);
		if (problem) fail(`${at}[${k}]`, `${JSON.stringify(item)}: ${problem}`, 'Fix: correct the resource name.');
		names.push(item);
	});
	if (new Set(names).size !== names.length) fail(at, 'lists the same resource more than once', 'Fix: list each resource once.');
	const overlapping = names.some(
		wildcard => wildcard.startsWith('*.') && names.some(n => n !== wildcard && (wildcard === '*.*' || resourceGroup(n) === resourceGroup(wildcard))),
	);
	if (overlapping) fail(at, 'mixes a wildcard with resources it already covers', 'Fix: keep either the wildcard or the single resources.');
	return names;
}

/** Why a resource name is not accepted in an EncryptionConfiguration, or undefined. */
export function resourceNameProblem(name: string): string | undefined {
	if (name !== name.toLowerCase()) return 'resource names are lower case';
	if (name === '*') return "use '*.' for every core resource or '*.*' for every resource";
	if (!/^[a-z0-9*][a-z0-9.*-]*$/.test(name)) return 'not a resource name (letters, digits, dots and dashes)';
	if (['apiserveripinfo', 'serviceipallocations', 'servicenodeportallocations'].includes(name)) {
		return 'this resource has no REST API and cannot be encrypted';
	}
	const group = resourceGroup(name);
	if (group === 'events.k8s.io') return "'*.events.k8s.io' objects are stored as the 'events' resource; use events";
	if (group === 'extensions') return "the 'extensions' group was removed";
	if (group === '*' && resourceName(name) !== '*') return 'the same resource across groups is not supported';
	return undefined;
}

function resourceName(name: string): string {
	const dot = name.indexOf('.');
	return dot === -1 ? name : name.slice(0, dot);
}

function resourceGroup(name: string): string {
	const dot = name.indexOf('.');
	return dot === -1 ? '' : name.slice(dot + 1);
}

/** Whether an entry of a rule's resources list (possibly a wildcard) covers `resource`. */
export function resourceMatches(entry: string, resource: string): boolean {
	if (entry === resource) return true;
	if (entry === '*.*') return true;
	return resourceName(entry) === '*' && resourceGroup(entry) === resourceGroup(resource);
}

/** Index of the rule that applies to `resource` (the first that covers it), or -1. */
export function ruleIndexFor(config: EncryptionConfig, resource: string): number {
	return config.resources.findIndex(rule => rule.resources.some(entry => resourceMatches(entry, resource)));
}

/** The provider that encrypts new writes of `resource` (identity when none covers it). */
export function primaryProviderFor(config: EncryptionConfig, resource: string): Provider {
	const index = ruleIndexFor(config, resource);
	return index === -1 ? {type: 'identity'} : config.resources[index]!.providers[0]!;
}

function validateProvider(value: unknown, at: string, fail: Fail, kmsNames: Set<string>): Provider | undefined {
	if (!isRecord(value)) {
		fail(at, `must be a mapping with one of ${providerTypes.join(', ')}`);
		return undefined;
	}
	const types = Object.keys(value);
	if (types.length !== 1) {
		fail(at, types.length === 0 ? 'names no provider' : `names ${types.length} providers (${types.join(', ')}); each list item holds one`, 'Fix: split them into separate list items.');
		return undefined;
	}
	const type = types[0]!;
	const body = value[type];
	if (type === 'identity') return {type: 'identity'};
	if (type === 'secretbox' || type === 'aesgcm' || type === 'aescbc') {
		const keys = validateKeys(body, `${at}.${type}.keys`, type, fail);
		return keys ? {type, keys} : undefined;
	}
	if (type === 'kms') return validateKms(body, `${at}.kms`, fail, kmsNames);
	fail(at, `unknown provider ${JSON.stringify(type)}; expected one of ${providerTypes.join(', ')}`);
	return undefined;
}

function validateKeys(body: unknown, at: string, type: KeyedProviderType, fail: Fail): EncryptionKey[] | undefined {
	const rawKeys = isRecord(body) ? body['keys'] : undefined;
	if (!Array.isArray(rawKeys) || rawKeys.length === 0) {
		fail(at, 'must be a non-empty list of keys (name and secret)');
		return undefined;
	}
	const keys: EncryptionKey[] = [];
	const seen = new Set<string>();
	let ok = true;
	rawKeys.forEach((rawKey, k) => {
		const keyAt = `${at}[${k}]`;
		if (!isRecord(rawKey)) {
			fail(keyAt, 'must be a mapping with name and secret');
			ok = false;
			return;
		}
		const name = rawKey['name'];
		const secret = rawKey['secret'];
		if (typeof name !== 'string' || name === '') {
			fail(`${keyAt}.name`, 'is missing (every key needs a name)');
			ok = false;
		} else if (seen.has(name)) {
			fail(`${keyAt}.name`, `key name ${JSON.stringify(name)} is used twice in this provider, so stored values cannot tell the keys apart`, 'Fix: give every key of a provider its own name (keep the one data was written with).');
			ok = false;
		} else seen.add(name);
		const label = typeof name === 'string' && name !== '' ? ` (key ${JSON.stringify(name)})` : '';
		if (typeof secret !== 'string' || secret === '') {
			fail(`${keyAt}.secret`, `is missing${label}`);
			ok = false;
			return;
		}
		const decoded = decodeBase64(secret);
		if (!decoded) {
			fail(`${keyAt}.secret`, `is not valid base64${label}`, `${restoreFix} A new key is made with: head -c 32 /dev/urandom | base64`);
			ok = false;
			return;
		}
		const lengths = keyLengths[type];
		if (!lengths.includes(decoded.length)) {
			fail(
				`${keyAt}.secret`,
				`decodes to ${decoded.length} bytes${label}; ${type} needs ${lengths.join(' or ')} bytes`,
				`${restoreFix} A new key is made with: head -c 32 /dev/urandom | base64`,
			);
			ok = false;
			return;
		}
		if (typeof name === 'string') keys.push({name, secret});
	});
	return ok ? keys : undefined;
}

function validateKms(body: unknown, at: string, fail: Fail, kmsNames: Set<string>): Provider | undefined {
	if (!isRecord(body)) {
		fail(at, 'must be a mapping with name and endpoint');
		return undefined;
	}
	let ok = true;
	const bad = (where: string, problem: string) => {
		fail(`${at}.${where}`, problem, 'Fix: correct the KMS provider settings.');
		ok = false;
	};
	const apiVersion = body['apiVersion'] ?? 'v1';
	if (apiVersion !== 'v1' && apiVersion !== 'v2') bad('apiVersion', `is ${describe(apiVersion)}; only v1 and v2 exist`);
	const name = body['name'];
	if (typeof name !== 'string' || name === '') bad('name', 'is missing');
	else {
		if (apiVersion === 'v2' && name.includes(':')) bad('name', `${JSON.stringify(name)} must not contain ':'`);
		if (kmsNames.has(name)) bad('name', `${JSON.stringify(name)} is used by another KMS provider; names must be unique`);
		kmsNames.add(name);
	}
	const endpoint = body['endpoint'];
	if (typeof endpoint !== 'string' || endpoint === '') bad('endpoint', 'is missing (a unix socket such as unix:///var/run/kms.sock)');
	else if (!endpoint.startsWith('unix://')) bad('endpoint', `${JSON.stringify(endpoint)} is not a unix:// socket; only unix is supported`);
	const timeout = body['timeout'];
	if (timeout !== undefined && (typeof timeout !== 'string' || !/^(\d+(\.\d+)?(ns|us|\u00b5s|ms|s|m|h))+$/.test(timeout) || !/[1-9]/.test(timeout))) {
		bad('timeout', `${describe(timeout)} is not a positive duration such as 3s`);
	}
	const cachesize = body['cachesize'];
	if (cachesize !== undefined) {
		if (apiVersion === 'v2') bad('cachesize', 'is not supported by KMS v2; remove it');
		else if (typeof cachesize !== 'number' || !Number.isInteger(cachesize) || cachesize === 0) {
			bad('cachesize', `${describe(cachesize)} must be a positive integer, or negative to disable the cache`);
		}
	}
	if (!ok || typeof name !== 'string' || typeof endpoint !== 'string') return undefined;
	const provider: Provider = {type: 'kms', apiVersion: apiVersion as 'v1' | 'v2', name, endpoint};
	if (typeof timeout === 'string') provider.timeout = timeout;
	if (typeof cachesize === 'number') provider.cachesize = cachesize;
	return provider;
}

/** Strict standard base64 with padding (what Go's StdEncoding accepts), decoded; else undefined. */
export function decodeBase64(value: string): Buffer | undefined {
	if (value.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) return undefined;
	return Buffer.from(value, 'base64');
}

/** A new key from `randomBytes` (the engine passes a CSPRNG), base64. */
export function generateKeySecret(randomBytes: (size: number) => Buffer): string {
	const bytes = randomBytes(generatedKeyBytes);
	if (bytes.length !== generatedKeyBytes) throw new Error(`randomBytes returned ${bytes.length} bytes, expected ${generatedKeyBytes}`);
	return bytes.toString('base64');
}

/** Every key name used in the config, any provider. */
export function keyNames(config: EncryptionConfig | undefined): Set<string> {
	const names = new Set<string>();
	for (const rule of config?.resources ?? []) {
		for (const provider of rule.providers) if ('keys' in provider) for (const key of provider.keys) names.add(key.name);
	}
	return names;
}

/** key1, key2, ...: the first name no provider of the config uses yet. */
export function nextKeyName(config: EncryptionConfig | undefined): string {
	const used = keyNames(config);
	let i = 1;
	while (used.has(`key${i}`)) i++;
	return `key${i}`;
}

// --- render and merge -----------------------------------------------------------------

/** Provider -> the YAML shape the apiserver reads. */
export function providerToYaml(provider: Provider): Record<string, unknown> {
	switch (provider.type) {
		case 'identity':
			return {identity: {}};
		case 'kms': {
			const body: Record<string, unknown> = {};
			if (provider.apiVersion) body['apiVersion'] = provider.apiVersion;
			body['name'] = provider.name;
			body['endpoint'] = provider.endpoint;
			if (provider.timeout) body['timeout'] = provider.timeout;
			if (provider.cachesize !== undefined) body['cachesize'] = provider.cachesize;
			return {kms: body};
		}
		default:
			return {[provider.type]: {keys: provider.keys.map(key => ({name: key.name, secret: key.secret}))}};
	}
}

function ruleToYaml(rule: ResourceRule): Record<string, unknown> {
	return {resources: [...rule.resources], providers: rule.providers.map(providerToYaml)};
}

/** A new EncryptionConfiguration from the template, with these rules. */
export function renderEncryptionConfig(rules: ResourceRule[], template: string = templates['encryption-config.yaml']): string {
	const parsed = parseYaml(template);
	if (!parsed.doc) throw new Error(`templates/encryption-config.yaml: not valid YAML (${parsed.problem.message})`);
	const doc = parsed.doc;
	doc.set('resources', doc.createNode(rules.map(ruleToYaml)));
	return doc.toString({indent: 2, indentSeq: true, lineWidth: 0});
}

/** A KMS v2 plugin to configure (no key material: the plugin holds the key). */
export type KmsRequest = {name: string; endpoint: string; timeout?: string};

export type EnsureRequest = {
	provider: KeyedProviderType | 'kms';
	/** Required with provider 'kms'. */
	kms?: KmsRequest;
	resources: string[];
	/**
	 * Make the (new or existing) key of `provider` the one that encrypts new writes. When
	 * false a new key is added for reading only (after the current primary), so it can be
	 * rolled out to every apiserver before any of them writes with it.
	 */
	makePrimary: boolean;
	/** Name for a new key (see nextKeyName). */
	keyName: string;
	/** Called at most once, only when a key has to be added. */
	newSecret: () => string;
};

export type EnsureResult = {
	/** The config text to write; identical to the existing text when nothing changed. */
	text: string;
	changed: boolean;
	/** The key that was added, if one was. */
	added?: EncryptionKey;
	notes: string[];
	warnings: string[];
};

export type ExistingConfig = {text: string; config: EncryptionConfig; path: string};

/**
 * Make the config encrypt `request.resources` with `request.provider`. With no existing
 * config, render a new one: [provider, identity] (identity last, so objects still stored in
 * plaintext stay readable). With an existing one, merge into it and never drop anything:
 * - a rule whose first provider already is `provider`: unchanged;
 * - a rule that has `provider` further down: moved first only when makePrimary;
 * - a rule without it: a new key inserted first (makePrimary) or second;
 * - resources no rule covers: one new rule [provider, identity] (or [identity, provider]).
 * Identity is never moved and never removed.
 */
export function ensureEncryption(existing: ExistingConfig | undefined, request: EnsureRequest): EnsureResult {
	const notes: string[] = [];
	const warnings: string[] = [];
	let added: EncryptionKey | undefined;
	const key = (): EncryptionKey => (added ??= {name: request.keyName, secret: request.newSecret()});
	const kms = request.kms;
	if (request.provider === 'kms' && !kms) throw new Error('internal: ensureEncryption with provider kms needs the plugin settings');
	/** The provider to add: a new key, or the KMS v2 plugin. */
	const fresh = (): Provider =>
		request.provider === 'kms'
			? {type: 'kms', apiVersion: 'v2', name: kms!.name, endpoint: kms!.endpoint, ...(kms!.timeout ? {timeout: kms!.timeout} : {})}
			: {type: request.provider, keys: [key()]};
	/** Whether an existing provider is the one asked for (a KMS plugin is matched by name). */
	const matches = (provider: Provider): boolean =>
		request.provider === 'kms' ? provider.type === 'kms' && provider.name === kms!.name : provider.type === request.provider;
	const label = request.provider === 'kms' ? `KMS v2 plugin ${kms?.name}` : `${request.provider} key ${request.keyName}`;
	const newRule = (resources: string[]): ResourceRule => {
		return {resources, providers: request.makePrimary ? [fresh(), {type: 'identity'}] : [{type: 'identity'}, fresh()]};
	};

	if (!existing) {
		const text = renderEncryptionConfig([newRule([...request.resources])]);
		notes.push(
			`New EncryptionConfiguration: ${request.resources.join(', ')} encrypted with ${label}` +
				(request.makePrimary ? '; identity stays last so objects still in plaintext remain readable.' : ' (read-only for now: identity stays first).'),
		);
		return {text, changed: true, added, notes, warnings};
	}

	const {config} = existing;
	const uncovered: string[] = [];
	// rule index -> requested resources it covers
	const touched = new Map<number, string[]>();
	for (const resource of request.resources) {
		const index = ruleIndexFor(config, resource);
		if (index === -1) uncovered.push(resource);
		else touched.set(index, [...(touched.get(index) ?? []), resource]);
	}

	type Edit = {index: number; action: 'move'; from: number} | {index: number; action: 'insert'; at: number};
	const edits: Edit[] = [];
	for (const [index, resources] of [...touched.entries()].sort((a, b) => a[0] - b[0])) {
		const rule = config.resources[index]!;
		const position = rule.providers.findIndex(matches);
		const others = rule.resources.filter(r => !resources.includes(r));
		const affects = others.length > 0 ? ` (this rule also covers ${others.join(', ')})` : '';
		if (position === 0) {
			notes.push(`${resources.join(', ')}: already encrypted with ${request.provider}; no change.`);
			continue;
		}
		if (position > 0) {
			if (request.makePrimary) {
				edits.push({index, action: 'move', from: position});
				notes.push(`${resources.join(', ')}: the existing ${request.provider} provider becomes primary${affects}.`);
			} else {
				notes.push(`${resources.join(', ')}: ${request.provider} is configured for reading but is not primary; answer primary=yes once every apiserver has this key.`);
			}
			continue;
		}
		edits.push({index, action: 'insert', at: request.makePrimary ? 0 : 1});
		notes.push(
			`${resources.join(', ')}: add ${label} ${request.makePrimary ? 'as the primary provider' : 'for reading only (not primary)'}; existing providers are kept${affects}.`,
		);
		if (others.length > 0) warnings.push(`Rule resources[${index}] also covers ${others.join(', ')}: they get the same providers.`);
	}

	if (edits.length === 0 && uncovered.length === 0) return {text: existing.text, changed: false, notes, warnings};

	let appendedRule: ResourceRule | undefined;
	if (uncovered.length > 0) {
		appendedRule = newRule(uncovered);
		notes.push(`${uncovered.join(', ')}: not covered by any rule; add a rule with ${label}${request.makePrimary ? ' and identity last' : ' (read-only: identity first)'}.`);
	}
	const text = editYaml(existing.text, doc => {
		const rules = doc.get('resources', true) as unknown as YAMLSeq;
		for (const edit of edits) {
			const rule = rules.items[edit.index] as YAMLMap;
			const providers = rule.get('providers', true) as unknown as YAMLSeq;
			if (edit.action === 'move') {
				const [node] = providers.items.splice(edit.from, 1);
				providers.items.unshift(node);
			} else {
				providers.items.splice(Math.min(edit.at, providers.items.length), 0, doc.createNode(providerToYaml(fresh())));
			}
		}
		if (appendedRule) insertRule(doc, rules, appendedRule);
	});
	return {text, changed: text !== existing.text, added, notes, warnings};
}

export type MergeResult = {text: string; changed: boolean; notes: string[]; warnings: string[]};

/**
 * Union of two configs, written into `into` (its text, comments and order kept): every key
 * and provider of `from` that `into` lacks is added, so whatever `from` can read stays
 * readable once the apiserver uses `into`. Providers of `from` go after those of `into`
 * (they read; `into`'s first provider still writes); a key `into`'s provider of the same
 * type lacks goes after its keys; resources only `from` covers get `from`'s rule, providers
 * in `from`'s order. A key name both use for different secrets cannot be merged (the
 * apiserver finds a key by name from the stored prefix) and is refused; the message names
 * the files and the key, never its secret.
 */
export function mergeEncryptionConfigs(into: ExistingConfig, from: ExistingConfig): MergeResult {
	const notes: string[] = [];
	const warnings: string[] = [];
	type Addition = {rule: number; provider: Provider} | {rule: number; at: number; key: EncryptionKey};
	const additions: Addition[] = [];
	const newRules: ResourceRule[] = [];
	const sameProvider = (a: Provider, b: Provider): boolean => a.type === b.type && (a.type !== 'kms' || (b.type === 'kms' && a.name === b.name));
	for (const source of from.config.resources) {
		// into's rule index -> resources of this source rule it covers
		const covered = new Map<number, string[]>();
		const uncovered: string[] = [];
		for (const resource of source.resources) {
			const index = ruleIndexFor(into.config, resource);
			if (index === -1) uncovered.push(resource);
			else covered.set(index, [...(covered.get(index) ?? []), resource]);
		}
		for (const [index, resources] of covered) {
			const rule = into.config.resources[index]!;
			for (const provider of source.providers) {
				const at = rule.providers.findIndex(p => sameProvider(p, provider));
				const pending = additions.filter(a => a.rule === index);
				if (at === -1) {
					if (pending.some(a => 'provider' in a && sameProvider(a.provider, provider))) continue;
					additions.push({rule: index, provider});
					notes.push(`${resources.join(', ')}: ${describeProvider(provider)} from ${from.path} added after the providers of ${into.path} (it reads what ${from.path} wrote).`);
					continue;
				}
				const existing = rule.providers[at]!;
				if (!('keys' in provider) || !('keys' in existing)) continue;
				for (const key of provider.keys) {
					const same = existing.keys.find(k => k.name === key.name);
					if (same && same.secret === key.secret) continue;
					if (same) {
						throw new InputError(
							`${into.path} and ${from.path} both have a ${provider.type} key named ${key.name}, with different secrets: etcd-harden cannot merge them ` +
								`(kube-apiserver finds a key by its name). Fix: rename the key in ${into.path} (only if nothing was encrypted with it), or choose another path with --set encryption-config.path=FILE.`,
						);
					}
					if (pending.some(a => 'key' in a && a.at === at && a.key.name === key.name)) continue;
					additions.push({rule: index, at, key});
					notes.push(`${resources.join(', ')}: ${provider.type} key ${key.name} from ${from.path} added after the keys of ${into.path}.`);
				}
			}
			if (rule.resources.some(r => !resources.includes(r)) && additions.some(a => a.rule === index)) {
				warnings.push(`Rule resources[${index}] of ${into.path} also covers ${rule.resources.filter(r => !resources.includes(r)).join(', ')}: they get the same providers.`);
			}
		}
		if (uncovered.length > 0) {
			newRules.push({resources: uncovered, providers: source.providers});
			notes.push(`${uncovered.join(', ')}: not covered by ${into.path}; the rule of ${from.path} is added.`);
		}
	}
	const intoPrimary = into.config.resources[0]?.providers[0];
	const fromPrimary = from.config.resources[0]?.providers[0];
	if (intoPrimary && fromPrimary && !sameProvider(intoPrimary, fromPrimary)) {
		notes.push(`New writes: ${describeProvider(intoPrimary)} (first in ${into.path}) instead of ${describeProvider(fromPrimary)} (first in ${from.path}).`);
	}
	if (additions.length === 0 && newRules.length === 0) return {text: into.text, changed: false, notes, warnings};
	const text = editYaml(into.text, doc => {
		const rules = doc.get('resources', true) as unknown as YAMLSeq;
		for (const addition of additions) {
			const rule = rules.items[addition.rule] as YAMLMap;
			const providers = rule.get('providers', true) as unknown as YAMLSeq;
			if ('provider' in addition) {
				providers.items.push(doc.createNode(providerToYaml(addition.provider)));
			} else {
				// A provider item is a one-entry map ({secretbox: {keys: [...]}}), as validation requires.
				const body = (providers.items[addition.at] as YAMLMap).items[0]!.value as YAMLMap;
				const keys = body.get('keys', true) as unknown as YAMLSeq;
				keys.items.push(doc.createNode({name: addition.key.name, secret: addition.key.secret}));
			}
		}
		for (const rule of newRules) insertRule(doc, rules, rule);
	});
	return {text, changed: text !== into.text, notes, warnings};
}

function describeProvider(provider: Provider): string {
	if (provider.type === 'kms') return `KMS plugin ${provider.name}`;
	if (provider.type === 'identity') return 'identity (plaintext)';
	return `${provider.type} (keys ${provider.keys.map(k => k.name).join(', ')})`;
}

/** New rules go before the first wildcard rule (which would otherwise win), else last. */
function insertRule(doc: Document, rules: YAMLSeq, rule: ResourceRule): void {
	const wildcardAt = rules.items.findIndex(item => {
		if (!isMap(item)) return false;
		const resources = item.get('resources', true);
		return isSeq(resources) && resources.items.some(r => String((r as {value?: unknown}).value ?? '').startsWith('*.'));
	});
	const node = doc.createNode(ruleToYaml(rule));
	if (wildcardAt === -1) rules.items.push(node);
	else rules.items.splice(wildcardAt, 0, node);
}

// --- secrets --------------------------------------------------------------------------

/** Every key secret of a parsed config. */
export function secretsOfConfig(config: EncryptionConfig | undefined): string[] {
	const secrets: string[] = [];
	for (const rule of config?.resources ?? []) {
		for (const provider of rule.providers) if ('keys' in provider) for (const key of provider.keys) secrets.push(key.secret);
	}
	return unique(secrets);
}

/**
 * Every `secret` value of a config text, read from its YAML nodes (quoted, folded, JSON with
 * escapes: the parsed value). A text with syntax errors still yields the values of the nodes
 * the parser recovered (a broken config still holds real keys). Never matched on raw lines.
 */
export function secretsInText(text: string | undefined): string[] {
	if (!text || text.length > MAX_YAML_BYTES) return [];
	const secrets: string[] = [];
	visit(parseDocument(text, {prettyErrors: false, uniqueKeys: false}), {
		Pair(_, pair) {
			if (isScalar(pair.key) && pair.key.value === 'secret' && isScalar(pair.value) && typeof pair.value.value === 'string' && pair.value.value !== '') {
				secrets.push(pair.value.value);
			}
		},
	});
	return unique(secrets);
}

/** Shortest secret `redact` replaces; shorter strings would mangle ordinary text. */
const minSecretLength = 4;

/** Replace every secret substring with <redacted> (longest first). */
export function redact(text: string, secrets: readonly string[]): string {
	let out = text;
	for (const secret of [...secrets].filter(s => s.length >= minSecretLength).sort((a, b) => b.length - a.length)) {
		out = out.split(secret).join('<redacted>');
	}
	return out;
}

// --- helpers --------------------------------------------------------------------------

function isRecord(value: unknown): value is Record<string, unknown> {
	return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function describe(value: unknown): string {
	return value === undefined ? 'missing' : JSON.stringify(value);
}

function unique(values: string[]): string[] {
	return [...new Set(values)];
}

/** sha256 (hex) of the config text, for the pod annotation that restarts the apiserver. */
export function configDigest(text: string): string {
	return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** The resources a raw etcd scan reads for this config: its named resources (wildcards left out), else secrets. */
export function scannedResources(config: EncryptionConfig | undefined): string[] {
	const names = new Set<string>();
	for (const rule of config?.resources ?? []) {
		for (const resource of rule.resources) if (!resource.includes('*')) names.add(resource);
	}
	if (names.size === 0) names.add('secrets');
	return [...names];
}

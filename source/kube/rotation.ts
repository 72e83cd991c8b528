/**
 * Key rotation and disabling, as pure edits of an EncryptionConfiguration's text (comments
 * and every untouched line kept) and a pure reading of where a config stands:
 *
 *   stable    one key per rule            -> prepare: add a new key AFTER the primary (read-only)
 *   prepared  a newer key not yet primary -> promote: move it first (it encrypts new writes)
 *   promoted  older keys after the primary -> re-encrypt, then prune them once nothing uses them
 *
 * Enabling (rotate from identity, source/stages/rotate.ts): a rule that encrypts nothing gets a
 * key AFTER identity (every apiserver reads it, none writes with it: the prepare of a rotation
 * whose primary is identity), then promote moves that key first.
 *
 * Disabling: identity moved first (new writes in plaintext, every key still reads), then the
 * keyed providers removed once no value is encrypted. Only rules whose providers are keyed
 * (secretbox, aesgcm, aescbc) are touched; KMS providers and identity are never removed.
 */
import {isMap, isSeq, type Document, type YAMLMap, type YAMLSeq} from 'yaml';
import type {EncryptionConfig, KeyedProviderType, Provider} from '../kube/types.js';
import {keyedProviders, keyNames} from './encryption-config.js';
import {editYaml} from './yaml-edit.js';

export type RotationState =
	/** No rule encrypts with a local key (identity or KMS first, or no rules). */
	| {kind: 'none'}
	| {kind: 'stable'; primary: string}
	| {kind: 'prepared'; primary: string; pending: string}
	| {kind: 'promoted'; primary: string; old: string[]};

export type DisableState = 'enabled' | 'identity-first' | 'disabled';

/** The config's rotation step names, in order (also the `phase` published per node). */
function isKeyed(provider: Provider): provider is Extract<Provider, {keys: unknown}> {
	return keyedProviders.includes(provider.type as KeyedProviderType);
}

/** `key12` -> 12; names that are not keyN sort before every keyN. */
export function keyNumber(name: string): number {
	const match = /^key(\d+)$/.exec(name);
	return match ? Number(match[1]) : -1;
}

/** key<N+1> for the highest keyN in the config: never reuses a pruned key's name. */
export function rotationKeyName(config: EncryptionConfig): string {
	let highest = 0;
	for (const name of keyNames(config)) highest = Math.max(highest, keyNumber(name));
	return `key${highest + 1}`;
}

/** Indices of the rules whose first provider is a local key. */
export function keyedRuleIndices(config: EncryptionConfig): number[] {
	return config.resources.flatMap((rule, index) => (rule.providers[0] && isKeyed(rule.providers[0]) ? [index] : []));
}

/** `provider:name` labels of every local key in the rule (as the raw etcd scan counts them). */
export function keyLabels(config: EncryptionConfig, ruleIndex: number): string[] {
	return config.resources[ruleIndex]!.providers.flatMap(provider => (isKeyed(provider) ? provider.keys.map(key => `${provider.type}:${key.name}`) : []));
}

/** Where the config stands in a rotation (see the module comment). */
export function rotationState(config: EncryptionConfig | undefined): RotationState {
	if (!config) return {kind: 'none'};
	const rules = keyedRuleIndices(config);
	if (rules.length === 0) return {kind: 'none'};
	// Every keyed rule is rotated together, so the first one tells (the others follow it).
	const rule = config.resources[rules[0]!]!;
	const first = rule.providers[0] as Extract<Provider, {keys: unknown}>;
	const primary = first.keys[0]!.name;
	const others = new Set<string>();
	for (const index of rules) {
		for (const provider of config.resources[index]!.providers) {
			if (!isKeyed(provider)) continue;
			for (const key of provider.keys) if (key.name !== (config.resources[index]!.providers[0] as typeof first).keys[0]!.name) others.add(key.name);
		}
	}
	const pending = [...others].filter(name => keyNumber(name) > keyNumber(primary)).sort((a, b) => keyNumber(b) - keyNumber(a));
	if (pending.length > 0) return {kind: 'prepared', primary, pending: pending[0]!};
	if (others.size > 0) return {kind: 'promoted', primary, old: [...others].sort((a, b) => keyNumber(a) - keyNumber(b))};
	return {kind: 'stable', primary};
}

/** Whether encryption is on, identity is first (disabling), or no local key is left. */
export function disableState(config: EncryptionConfig | undefined): DisableState {
	if (!config) return 'disabled';
	if (keyedRuleIndices(config).length > 0) return 'enabled';
	return config.resources.some(rule => rule.providers.some(isKeyed)) ? 'identity-first' : 'disabled';
}

export type EnableState =
	/** Some rule already encrypts with a local key: a rotation, not an enable. */
	| {kind: 'encrypting'}
	/** Every rule with a local key has identity first: `pending` (the newest key) reads, identity writes. */
	| {kind: 'prepared'; pending: string}
	/** Rules that only hold identity (what disable leaves, or no config at all): a key can be added after identity. */
	| {kind: 'plaintext'; rules: number[]}
	/** Nothing a local key can be added to (KMS first, or no rule). */
	| {kind: 'none'};

/** Rules whose every provider is identity: they encrypt nothing and hold no key. */
function plaintextRuleIndices(config: EncryptionConfig): number[] {
	return config.resources.flatMap((rule, index) => (rule.providers.length > 0 && rule.providers.every(provider => provider.type === 'identity') ? [index] : []));
}

/** Where a config stands when encryption is turned on through a rotation whose primary is identity. */
export function enableState(config: EncryptionConfig | undefined): EnableState {
	if (!config) return {kind: 'plaintext', rules: []};
	if (keyedRuleIndices(config).length > 0) return {kind: 'encrypting'};
	const names = new Set<string>();
	for (const rule of config.resources) {
		if (rule.providers[0]?.type !== 'identity') continue;
		for (const provider of rule.providers) if (isKeyed(provider)) for (const key of provider.keys) names.add(key.name);
	}
	if (names.size > 0) return {kind: 'prepared', pending: [...names].sort((a, b) => keyNumber(b) - keyNumber(a))[0]!};
	const rules = plaintextRuleIndices(config);
	return rules.length > 0 ? {kind: 'plaintext', rules} : {kind: 'none'};
}

/** Add a `provider` key `name` right after identity in every rule that only holds identity: it reads, identity still writes. */
export function addReadOnlyKey(text: string, config: EncryptionConfig, provider: KeyedProviderType, name: string, secret: string): string {
	const indices = plaintextRuleIndices(config);
	return editYaml(text, doc => {
		for (const index of indices) providersOf(rules(doc).items[index]).items.splice(1, 0, doc.createNode({[provider]: {keys: [{name, secret}]}}));
	});
}

/** The provider type of the primary key (the new key is added to the same provider). */
export function primaryProviderType(config: EncryptionConfig): KeyedProviderType | undefined {
	const index = keyedRuleIndices(config)[0];
	return index === undefined ? undefined : (config.resources[index]!.providers[0]!.type as KeyedProviderType);
}

// ---- YAML edits ----

function rules(doc: Document.Parsed): YAMLSeq {
	const seq = doc.get('resources', true);
	if (!isSeq(seq)) throw new Error('internal: resources is not a list');
	return seq;
}

function providersOf(rule: unknown): YAMLSeq {
	if (!isMap(rule)) throw new Error('internal: a rule is not a mapping');
	const seq = rule.get('providers', true);
	if (!isSeq(seq)) throw new Error('internal: providers is not a list');
	return seq;
}

/** The provider's type (its single key) and body. */
function providerNode(node: unknown): {type: string; body: YAMLMap | undefined} {
	if (!isMap(node) || node.items.length === 0) throw new Error('internal: a provider is not a mapping');
	const pair = node.items[0]!;
	const type = String((pair.key as {value?: unknown}).value ?? pair.key);
	return {type, body: isMap(pair.value) ? pair.value : undefined};
}

function keysOf(body: YAMLMap | undefined): YAMLSeq | undefined {
	const keys = body?.get('keys', true);
	return isSeq(keys) ? keys : undefined;
}

function keyName(node: unknown): string {
	return isMap(node) ? String(node.get('name')) : '';
}

/** Add `name` (with `secret`) right after the primary key of every keyed rule: it reads, it does not write yet. */
export function addPendingKey(text: string, config: EncryptionConfig, name: string, secret: string): string {
	const indices = keyedRuleIndices(config);
	return editYaml(text, doc => {
		for (const index of indices) {
			const first = providerNode(providersOf(rules(doc).items[index]).items[0]);
			const keys = keysOf(first.body);
			if (!keys) throw new Error(`internal: resources[${index}] has no keys`);
			keys.items.splice(1, 0, doc.createNode({name, secret}));
		}
	});
}

/**
 * Make `name` the primary: first key of its provider, that provider first in the rule. Every
 * rule that holds `name` (also one with identity first: the promote of an enable).
 */
export function promoteKey(text: string, config: EncryptionConfig, name: string): string {
	const indices = config.resources.map((_rule, index) => index);
	return editYaml(text, doc => {
		for (const index of indices) {
			const providers = providersOf(rules(doc).items[index]);
			const at = providers.items.findIndex(node => keysOf(providerNode(node).body)?.items.some(key => keyName(key) === name));
			if (at === -1) continue;
			const keys = keysOf(providerNode(providers.items[at]).body)!;
			const keyAt = keys.items.findIndex(key => keyName(key) === name);
			const [key] = keys.items.splice(keyAt, 1);
			keys.items.unshift(key);
			const [provider] = providers.items.splice(at, 1);
			providers.items.unshift(provider);
		}
	});
}

/** Remove the keys named (never a rule's primary); a keyed provider left without keys goes too. */
export function removeKeys(text: string, config: EncryptionConfig, names: readonly string[], options: {allRules?: boolean} = {}): string {
	const indices = options.allRules ? config.resources.map((_rule, index) => index) : keyedRuleIndices(config);
	const drop = new Set(names);
	return editYaml(text, doc => {
		for (const index of indices) {
			const providers = providersOf(rules(doc).items[index]);
			providers.items.forEach((node, position) => {
				const keys = keysOf(providerNode(node).body);
				if (!keys) return;
				keys.items = keys.items.filter((key, keyIndex) => !(drop.has(keyName(key)) && !(position === 0 && keyIndex === 0 && !options.allRules)));
			});
			providers.items = providers.items.filter(node => {
				const {type, body} = providerNode(node);
				return !(keyedProviders.includes(type as KeyedProviderType) && (keysOf(body)?.items.length ?? 0) === 0);
			});
		}
	});
}

/** identity first in every rule that has a local key (inserted when missing): new writes are plaintext, every key still reads. */
export function identityFirst(text: string, config: EncryptionConfig): string {
	const indices = config.resources.flatMap((rule, index) => (rule.providers.some(isKeyed) ? [index] : []));
	return editYaml(text, doc => {
		for (const index of indices) {
			const providers = providersOf(rules(doc).items[index]);
			const at = providers.items.findIndex(node => providerNode(node).type === 'identity');
			if (at === 0) continue;
			const [identity] = at === -1 ? [doc.createNode({identity: {}})] : providers.items.splice(at, 1);
			providers.items.unshift(identity);
		}
	});
}

/** Every local key of every rule (for disable, once identity is first and nothing is encrypted). */
export function allKeyNames(config: EncryptionConfig): string[] {
	return [...keyNames(config)];
}

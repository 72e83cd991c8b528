/**
 * `etcd-harden rotate`: prepare (new key, read-only) -> promote (new key writes) ->
 * reencrypt (source/stages/reencrypt.ts) -> prune (old keys removed once nothing uses them).
 * Each stage works out from the node (config text, manifest annotation, the status
 * ConfigMap) whether its step is still to do, so a rerun after a crash picks up where the
 * node is, whatever the journal says. Conditions that only hold when the stage runs (every
 * control plane runs the config; no object uses the old key) are tasks that check then.
 */
import type {NodeStage} from './facts.js';
import {keysUnusedTask} from '../kube/rotation-tasks.js';
import {configDigest, ensureEncryption, generateKeySecret, nextKeyName, parseEncryptionConfig} from '../kube/encryption-config.js';
import {keyedRuleIndices, keyLabels, promoteKey, removeKeys, rotationKeyName, rotationState, addPendingKey, addReadOnlyKey, enableState, primaryProviderType} from '../kube/rotation.js';
import type {KeyedProviderType} from '../kube/types.js';
import {readAnswers} from './encryption-config.js';
import {InputError, type Check, type PlanContext, type Stage, type StageAnswers, type StagePlan} from '../engine/contract.js';
import {
	bundleChange,
	bundleQuestions,
	finishing,
	inFlight,
	nodeOf,
	publishOnly,
	readBundle,
	requireConfig,
	runsConfigChecks,
	switchConfig,
	waitChange,
	waitQuestion,
	waitSeconds,
	bundlePathFor,
} from './rotate-common.js';
import type {Facts} from './facts.js';

export const rotatePrepareId = 'rotate-prepare';
export const rotatePromoteId = 'rotate-promote';
export const rotatePruneId = 'rotate-prune';
export const rotateBundleId = 'rotate-bundle';

/** kube-apiserver has no encryption config and none is at its default path: enabling writes one. */
function noConfigYet(facts: Facts): boolean {
	const enc = facts.encryption;
	return !enc.flagPath && !enc.exists && enc.errors.length === 0;
}

/**
 * Turning encryption on is a rotation whose primary is identity: prepare adds a key AFTER
 * identity (every apiserver reads it, new writes stay plaintext), promote moves it first once
 * every control plane runs that config. On several control planes this order matters: a node
 * still without the key cannot read what another node already wrote with it. With no config
 * at all, prepare writes a new one ([identity, key1] for the default resources, as the
 * encryption-config stage would) and the manifest gets the flag and the volume (switchConfig).
 */
function enablePreparePlan(facts: Facts, answers: StageAnswers, context: PlanContext, current: {text: string; config: NonNullable<Facts['encryption']['config']>} | undefined): StagePlan {
	const path = facts.encryption.path;
	const state = enableState(current?.config);
	if (state.kind === 'none' || state.kind === 'encrypting') {
		throw new InputError(`${path} encrypts nothing with a local key and has no rule that only holds identity (KMS comes first?): there is no key to rotate or to turn on. Rotate KMS keys in the KMS.`);
	}
	if (state.kind === 'prepared') {
		const own = facts.rotation?.entries[nodeOf(facts)];
		const notes = [`Turning encryption on: ${state.pending} is configured after identity (it reads; new writes stay plaintext until promote).`];
		if (facts.cluster && current && own?.configSha256 !== configDigest(current.text)) return {changes: publishOnly(facts, 'prepare'), notes};
		return {changes: [], notes};
	}
	const defaults = readAnswers(facts, {});
	const provider = defaults.provider as KeyedProviderType;
	const name = nextKeyName(current?.config);
	const secret = generateKeySecret(size => context.randomBytes(size));
	const next = current
		? addReadOnlyKey(current.text, current.config, provider, name, secret)
		: ensureEncryption(undefined, {provider, resources: defaults.resources, makePrimary: false, keyName: name, newSecret: () => secret}).text;
	const bundle = readBundle(answers, context, rotatePrepareId);
	if (answers['bundle'] === undefined) throw new InputError(`${rotatePrepareId}.bundle: a new key needs a bundle (recovery copy): answer bundle=age-recipient with recipient=age1…, bundle=passphrase with passphrase=…, or bundle=stored-elsewhere with storedElsewhere=true.`);
	return {
		changes: switchConfig(facts, context, {
			text: next,
			summary: current
				? `Add ${provider} key ${name} after identity in ${path}: it decrypts but does not encrypt yet (new writes stay plaintext)`
				: `Write ${path} with identity first and ${provider} key ${name} after it for ${defaults.resources.join(', ')}, and point kube-apiserver at it: the key decrypts but does not encrypt yet`,
			phase: 'prepare',
			bundle: bundleChange(bundle, next),
		}),
		notes: [
			`Turning encryption on: identity -> ${name}. Every kube-apiserver must be able to decrypt with ${name} before any encrypts with it, so it is added read-only first; promote makes it primary.`,
			...(facts.rotation && facts.rotation.controlPlanes.length > 1 ? [`Control planes: ${facts.rotation.controlPlanes.join(', ')}. Apply the bundle on each of the others before promote.`] : []),
		],
	};
}

function preparePlan(facts: Facts, answers: StageAnswers, context: PlanContext): StagePlan {
	if (noConfigYet(facts)) {
		if (facts.cluster && !facts.cluster.reachable) throw new InputError(facts.cluster.problem ?? `kube-apiserver at ${facts.cluster.server} does not answer.`);
		return enablePreparePlan(facts, answers, context, undefined);
	}
	const enc = facts.encryption;
	if (!enc.flagPath && enc.config && enc.text !== undefined && enableState(enc.config).kind === 'prepared') {
		// An enable killed between the config write and the manifest: the file only adds a key
		// for reading (identity first), so pointing kube-apiserver at it is safe; finish that.
		return {
			changes: switchConfig(facts, context, {summary: '', phase: 'prepare'}),
			notes: [`${enc.path} holds identity first and ${(enableState(enc.config) as {pending: string}).pending} for reading, but kube-apiserver does not use it yet (an interrupted run): pointing kube-apiserver at it first.`],
		};
	}
	const {text, config} = requireConfig(facts, 'rotate');
	if (inFlight(facts)) return finishing(facts, context);
	const state = rotationState(config);
	const own = facts.rotation?.entries[nodeOf(facts)];
	const digest = configDigest(text);
	if (state.kind === 'none') return enablePreparePlan(facts, answers, context, {text, config});
	if (state.kind === 'stable') {
		if (own?.state === 'started' && own.phase === 'prune') {
			return {changes: publishOnly(facts, 'prune'), notes: [`The last rotation was interrupted after pruning (only ${state.primary} is left): reporting it finished.`]};
		}
		const name = rotationKeyName(config);
		const provider = primaryProviderType(config)!;
		const secret = generateKeySecret(size => context.randomBytes(size));
		const next = addPendingKey(text, config, name, secret);
		const bundle = readBundle(answers, context, rotatePrepareId);
		if (answers['bundle'] === undefined) throw new InputError(`${rotatePrepareId}.bundle: a new key needs a bundle (recovery copy): answer bundle=age-recipient with recipient=age1…, bundle=passphrase with passphrase=…, or bundle=stored-elsewhere with storedElsewhere=true.`);
		return {
			changes: switchConfig(facts, context, {
				text: next,
				summary: `Add ${provider} key ${name} after ${state.primary} in ${facts.encryption.path}: it decrypts but does not encrypt yet`,
				phase: 'prepare',
				bundle: bundleChange(bundle, next),
			}),
			notes: [
				`Rotation ${state.primary} -> ${name}. Every kube-apiserver must be able to decrypt with ${name} before it encrypts anything, so it is added read-only first.`,
				...(facts.rotation && facts.rotation.controlPlanes.length > 1
					? [`Control planes: ${facts.rotation.controlPlanes.join(', ')}. Apply the bundle on each of the others before promote.`]
					: []),
			],
		};
	}
	const phase = state.kind === 'prepared' ? 'prepare' : 'promote';
	const notes = [state.kind === 'prepared' ? `Already prepared: ${state.pending} is configured after ${state.primary}.` : `Already promoted: ${state.primary} encrypts new writes.`];
	if (facts.cluster && own?.configSha256 !== digest) return {changes: publishOnly(facts, phase), notes};
	return {changes: [], notes};
}

function promotePlan(facts: Facts, answers: StageAnswers, context: PlanContext): StagePlan {
	if (noConfigYet(facts)) return {changes: [], notes: ['No encryption config yet: prepare writes one first.']};
	const {text, config} = requireConfig(facts, 'rotate');
	if (inFlight(facts)) return finishing(facts, context);
	const state = rotationState(config);
	const enabling = state.kind === 'none' ? enableState(config) : undefined;
	// Enabling (identity primary, the key behind it) and rotating promote alike; only the summary differs.
	const pending = enabling?.kind === 'prepared' ? enabling.pending : state.kind === 'prepared' ? state.pending : undefined;
	if (pending === undefined) return {changes: [], notes: [state.kind === 'promoted' || state.kind === 'stable' ? `Nothing to promote: ${state.primary} is the primary key.` : 'No local key to promote.']};
	const next = promoteKey(text, config, pending);
	const summary =
		state.kind === 'prepared'
			? `Make ${pending} the primary key in ${facts.encryption.path} (${state.primary} stays for reading)`
			: `Make ${pending} the primary in ${facts.encryption.path}: new writes are encrypted (identity stays for reading what is still plaintext)`;
	return {
		changes: [
			...waitChange(facts, 'prepare', waitSeconds(answers)),
			...switchConfig(facts, context, {text: next, summary, phase: 'promote', bundle: bundleChange(readBundle(answers, context, rotatePrepareId), next)}),
		],
		notes: [`${pending} becomes primary only once every control plane reports the config with it (sha256 ${configDigest(text).slice(0, 12)}).`],
	};
}

/** `provider:name` labels of the keys `names` in the keyed rules. */
function labelsOf(config: NonNullable<Facts['encryption']['config']>, names: readonly string[]): string[] {
	const labels = new Set<string>();
	for (const index of keyedRuleIndices(config)) for (const label of keyLabels(config, index)) if (names.includes(label.split(':')[1]!)) labels.add(label);
	return [...labels];
}

function prunePlan(facts: Facts, answers: StageAnswers, context: PlanContext): StagePlan {
	if (noConfigYet(facts)) return {changes: [], notes: ['No encryption config yet: no old key to prune.']};
	const {text, config} = requireConfig(facts, 'rotate');
	if (inFlight(facts)) return finishing(facts, context);
	const state = rotationState(config);
	if (state.kind !== 'promoted') {
		return {changes: [], notes: [state.kind === 'prepared' ? `Nothing to prune before ${state.pending} is promoted.` : 'No old key to prune.']};
	}
	const labels = labelsOf(config, state.old);
	const next = removeKeys(text, config, state.old);
	const stillUsing = (facts.atRest?.resources ?? []).reduce((sum, resource) => sum + labels.reduce((n, label) => n + (resource.byKey[label] ?? 0), 0), 0);
	return {
		changes: [
			...waitChange(facts, 'promote', waitSeconds(answers)),
			...(facts.cluster
				? [
						keysUnusedTask.change(
							{configPath: facts.encryption.path, manifestPath: facts.apiserver.path, labels, action: `remove ${labels.join(', ')}`},
							`Scan etcd raw: refuse unless no object uses ${labels.join(', ')}`,
						),
					]
				: []),
			...switchConfig(facts, context, {
				text: next,
				summary: `Remove ${state.old.join(', ')} from ${facts.encryption.path} (only ${state.primary} is left)`,
				phase: 'prune',
				bundle: bundleChange(readBundle(answers, context, rotatePrepareId), next),
			}),
		],
		notes: [
			`${state.old.join(', ')} are removed only if a raw etcd scan, when this stage runs, finds no object stored with them${stillUsing > 0 ? ` (${stillUsing} do now; the re-encryption before this stage moves them)` : ''}.`,
		],
	};
}

function questionsFor(required: boolean) {
	return (facts: Facts) => {
		void facts;
		return bundleQuestions(required);
	};
}

export const rotatePrepareStage: NodeStage = {
	id: rotatePrepareId,
	title: 'Rotate: prepare the new key',
	explain:
		'Adds a new key to the encryption config after the current primary: every apiserver can then decrypt with it, none encrypts with it yet. ' +
		'When identity is the primary (or there is no config yet), this turns encryption on: the key goes after identity, and promote makes it primary. ' +
		'kube-apiserver restarts with the config (restart gate: undone if it does not become ready), and this node reports the config hash to kube-system/etcd-harden-status.',
	questions: questionsFor(true),
	plan: preparePlan,
	verify: facts => runsConfigChecks(facts),
	status: () => [],
};

export const rotatePromoteStage: NodeStage = {
	id: rotatePromoteId,
	title: 'Rotate: promote the new key',
	explain:
		'Waits until every control plane runs the config with the new key, then makes the new key primary (new writes use it) and restarts kube-apiserver with the restart gate.',
	questions: facts => [...questionsFor(false)(facts), waitQuestion()],
	plan: promotePlan,
	verify: facts => runsConfigChecks(facts),
	status: () => [],
};

export const rotatePruneStage: NodeStage = {
	id: rotatePruneId,
	title: 'Rotate: prune the old keys',
	explain:
		'Waits until every control plane runs the promoted config, scans etcd raw, and removes the old keys only if no object uses them; otherwise it refuses and says how many still do.',
	questions: facts => [...questionsFor(false)(facts), waitQuestion()],
	plan: prunePlan,
	verify: facts => runsConfigChecks(facts),
	status: () => [],
};

/** `rotate --bundle FILE` on another control plane: run the config from the bundle (decrypted by the CLI, held in memory). */
export function rotateBundleStage(bundleText: string, source: string): NodeStage {
	return {
		id: rotateBundleId,
		title: 'Apply a rotation bundle',
		explain: `Writes the encryption config from ${source} on this node, restarts kube-apiserver with it (restart gate) and reports the config hash, so the node that rotates can go on.`,
		questions: () => [],
		plan(facts, _answers, context) {
			const {config, errors} = parseEncryptionConfig(bundleText, source);
			if (!config) throw new InputError(`${source}: the bundle does not hold a valid EncryptionConfiguration: ${errors.join('; ')}`);
			const enc = facts.encryption;
			if (enc.errors.length > 0 && enc.exists) throw new InputError(enc.errors.join('\n'));
			const notes: string[] = [];
			const warnings: string[] = [];
			const bundleKeys = new Set(config.resources.flatMap(rule => rule.providers.flatMap(p => ('keys' in p ? p.keys.map(k => `${p.type}:${k.name}`) : []))));
			const dropped = (enc.config?.resources ?? []).flatMap(rule => rule.providers.flatMap(p => ('keys' in p ? p.keys.map(k => `${p.type}:${k.name}`) : []))).filter(label => !bundleKeys.has(label));
			if (dropped.length > 0) warnings.push(`The bundle no longer has ${[...new Set(dropped)].join(', ')} (pruned on the rotating node after a raw etcd scan found no object using them).`);
			if (enc.text === bundleText && !inFlight(facts) && enc.flagPath) {
				const own = facts.rotation?.entries[nodeOf(facts)];
				notes.push(`${enc.path} already is the bundle's config (sha256 ${configDigest(bundleText).slice(0, 12)}).`);
				return {changes: own?.configSha256 === configDigest(bundleText) ? [] : publishOnly(facts, 'bundle'), notes};
			}
			notes.push(`${enc.path} becomes the bundle's config (sha256 ${configDigest(bundleText).slice(0, 12)}, from ${bundlePathFor(bundleText).split('/').pop()}).`);
			return {
				changes: switchConfig(facts, context, {text: bundleText, summary: `Write ${enc.path} from the rotation bundle ${source}`, phase: 'bundle'}),
				notes,
				warnings,
			};
		},
		verify: facts => runsConfigChecks(facts),
		status: () => [],
	};
}

/** `status`: the rotation step, the keys with how many objects use each, the primary, every control plane's report. */
export function rotationStatus(facts: Facts): Check[] {
	const config = facts.encryption.config;
	if (!config || facts.encryption.text === undefined) return [];
	const checks: Check[] = [];
	const state = rotationState(config);
	const digest = configDigest(facts.encryption.text);
	const enabling = state.kind === 'none' ? enableState(config) : undefined;
	const step =
		inFlight(facts) ? 'interrupted: the config on disk is not the one kube-apiserver was restarted with (rerun etcd-harden rotate)' :
		enabling?.kind === 'prepared' ? `identity first, ${enabling.pending} configured for reading: next: promote (etcd-harden rotate turns encryption on) or remove it (etcd-harden disable)` :
		state.kind === 'none' ? 'no local key (identity or KMS first)' :
		state.kind === 'stable' ? `stable: ${state.primary} only` :
		state.kind === 'prepared' ? `prepared: ${state.pending} added (read-only), next: promote` :
		`promoted: ${state.primary} primary; ${state.old.join(', ')} still configured, next: reencrypt and prune`;
	checks.push({
		id: 'rotation.step',
		title: 'Key rotation step',
		status: inFlight(facts) ? 'fail' : enabling?.kind === 'prepared' ? 'warn' : state.kind === 'stable' || state.kind === 'none' ? 'pass' : 'warn',
		actual: step,
		...(state.kind === 'prepared' || state.kind === 'promoted' || inFlight(facts) ? {remediation: 'Run etcd-harden rotate to continue the rotation.'} : {}),
		...(enabling?.kind === 'prepared' ? {remediation: 'Run etcd-harden rotate (or fleet enable) to finish turning encryption on, or etcd-harden disable (fleet disable) to finish turning it off.'} : {}),
	});
	const counts: Record<string, number> = {};
	for (const resource of facts.atRest?.resources ?? []) for (const [label, count] of Object.entries(resource.byKey)) counts[label] = (counts[label] ?? 0) + count;
	for (const rule of config.resources) {
		rule.providers.forEach((provider, position) => {
			if (!('keys' in provider)) return;
			provider.keys.forEach((key, index) => {
				const label = `${provider.type}:${key.name}`;
				const primary = position === 0 && index === 0;
				checks.push({
					id: `rotation.key.${rule.resources.join(',')}.${label}`,
					title: `${rule.resources.join(', ')}: key ${label}${primary ? ' (primary)' : ''}`,
					status: 'pass',
					actual: facts.atRest ? `${counts[label] ?? 0} object(s) use it` : 'not scanned',
				});
			});
		});
	}
	const rotation = facts.rotation;
	if (rotation) {
		if (rotation.problem) checks.push({id: 'rotation.reports', title: 'Control planes report their config', status: 'warn', actual: rotation.problem});
		for (const node of new Set([...rotation.controlPlanes, ...Object.keys(rotation.entries)])) {
			const entry = rotation.entries[node];
			const same = entry?.configSha256 === digest;
			checks.push({
				id: `rotation.node.${node}`,
				title: `Control plane ${node} runs this node's config`,
				status: same ? 'pass' : 'warn',
				actual: entry ? `sha256 ${entry.configSha256.slice(0, 12)} (${entry.phase} ${entry.state}, ${entry.time})` : 'has not reported',
				...(same ? {} : {remediation: `Apply this node's config there: ${node === rotation.node ? 'etcd-harden rotate' : 'etcd-harden rotate --bundle FILE'}.`}),
			});
		}
	}
	return checks;
}

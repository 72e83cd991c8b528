/**
 * Stage encryption-config: write (or merge into) the apiserver's EncryptionConfiguration
 * with a fresh 32-byte key. Pure: the key comes from context.randomBytes.
 */
import type {NodeStage} from './facts.js';
import {sealedCopyTask} from '../crypto/tasks.js';
import {posix} from 'node:path';
import {parseRecipient} from '../crypto/age.js';
import {
	configDigest,
	defaultConfigPath,
	ensureEncryption,
	generateKeySecret,
	keyedProviders,
	mergeEncryptionConfigs,
	nextKeyName,
	parseEncryptionConfig,
	primaryProviderFor,
	resourceNameProblem,
	ruleIndexFor,
	secretsInText,
	secretsOfConfig,
} from '../kube/encryption-config.js';
import type {ExistingConfig, KmsRequest} from '../kube/encryption-config.js';
import {isUnder, versionAtLeast} from '../kube/manifest.js';
import {STATE_DIR, InputError, type AnswerValue, type Change, type Check, type Question, type Stage, type StageAnswers, type StagePlan} from '../engine/contract.js';
import {MANIFESTS_DIR} from '../kube/defaults.js';
import type {Facts, KeyedProviderType} from './facts.js';

export const encryptionConfigStageId = 'encryption-config';
export const configMode = 0o600;

export type ProviderChoice = KeyedProviderType | 'kms';

/** First kube-apiserver release where KMS v2 is stable. */
export const kmsV2Since = '1.29';

export const providerWarnings: Record<ProviderChoice, string | undefined> = {
	kms: 'KMS v2: etcd-harden writes the configuration only. The plugin must already be running at the endpoint on every control-plane node, or the apiserver never becomes ready and the restart gate undoes the change.',
	secretbox: undefined,
	aesgcm: 'aesgcm must be rotated every 200,000 writes (nonce reuse breaks it); prefer secretbox unless you rotate keys automatically.',
	aescbc: 'aescbc is weak: padding oracle; use only for compatibility.',
};

const customChoice = 'custom';

/** The answers this stage understands, normalised. */
export type EncryptionAnswers = {
	provider: ProviderChoice;
	/** With provider kms. */
	kms?: KmsRequest;
	resources: string[];
	path: string;
	/** Undefined: the default (primary for a new config, not primary when merging). */
	primary?: boolean;
};

export function defaultPathFor(facts: Facts): string {
	return facts.encryption.flagPath ? facts.encryption.path : defaultConfigPath;
}

/** Read and check this stage's answers; bad ones throw InputError naming the answer and the fix. */
export function readAnswers(facts: Facts, answers: StageAnswers): EncryptionAnswers {
	const provider = answers['provider'] ?? 'secretbox';
	if (typeof provider !== 'string' || !(provider === 'kms' || keyedProviders.includes(provider as KeyedProviderType))) {
		throw new InputError(`${encryptionConfigStageId}.provider: ${JSON.stringify(provider)} is not a provider; use one of ${keyedProviders.join(', ')}, kms.`);
	}
	let kms: KmsRequest | undefined;
	if (provider === 'kms') {
		const version = facts.apiserver.version ?? facts.cluster?.version;
		if (!versionAtLeast(version, kmsV2Since)) {
			throw new InputError(
				`${encryptionConfigStageId}.provider: KMS v2 needs kube-apiserver ${kmsV2Since} or newer (this node runs ${version ?? 'an unknown version'}). ` +
					'Upgrade the control plane first, or choose secretbox.',
			);
		}
		const name = answers['kmsName'];
		const endpoint = answers['kmsEndpoint'];
		const timeout = answers['kmsTimeout'] ?? '3s';
		const problem = kmsNameProblem(name) ?? kmsEndpointProblem(endpoint) ?? kmsTimeoutProblem(timeout);
		if (problem) throw new InputError(`${encryptionConfigStageId}: ${problem}`);
		kms = {name: name as string, endpoint: endpoint as string, timeout: timeout as string};
	}
	const resources = resourceList(answers['resources'] ?? ['secrets'], answers['customResources']);
	const resourceProblem = resourcesProblem(resources, facts);
	if (resourceProblem) throw new InputError(`${encryptionConfigStageId}.resources: ${resourceProblem}`);
	const path = answers['path'] ?? defaultPathFor(facts);
	const pathError = typeof path === 'string' ? pathProblem(path) : 'must be a path';
	if (pathError || typeof path !== 'string') throw new InputError(`${encryptionConfigStageId}.path: ${pathError}`);
	const primary = answers['primary'];
	if (primary !== undefined && typeof primary !== 'boolean') {
		throw new InputError(`${encryptionConfigStageId}.primary: must be true or false.`);
	}
	return {provider: provider as ProviderChoice, ...(kms ? {kms} : {}), resources, path, primary};
}

function kmsNameProblem(value: AnswerValue | undefined): string | undefined {
	if (typeof value !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value) || value.includes(':')) {
		return 'kmsName: give the plugin a name of letters, digits, dots, dashes and underscores (it is stored in every encrypted value, so keep it stable).';
	}
	return undefined;
}

function kmsEndpointProblem(value: AnswerValue | undefined): string | undefined {
	if (typeof value !== 'string' || !/^unix:\/\/\/.+/.test(value)) return 'kmsEndpoint: give the plugin socket as unix:///path/to/kms.sock.';
	return undefined;
}

function kmsTimeoutProblem(value: AnswerValue | undefined): string | undefined {
	if (typeof value !== 'string' || !/^\d+(ms|s|m)$/.test(value)) return 'kmsTimeout: give a duration such as 3s.';
	return undefined;
}

/** resources answer (list or comma-separated text) plus the custom list, without "custom". */
function resourceList(value: AnswerValue, custom: AnswerValue | undefined): string[] {
	const split = (v: AnswerValue | undefined): string[] =>
		v === undefined || typeof v === 'boolean' ? [] : (Array.isArray(v) ? v : v.split(',')).map(s => s.trim()).filter(Boolean);
	const list = split(value);
	const all = list.includes(customChoice) ? [...list.filter(r => r !== customChoice), ...split(custom)] : list;
	return [...new Set(all)];
}

/** Whether a rule for these resources encrypts Secrets ("secrets", "*.", "*.*"). */
function coversSecrets(resources: string[]): boolean {
	return resources.some(resource => resource === 'secrets' || resource === '*.' || resource === '*.*');
}

function hasCustom(value: AnswerValue | undefined): boolean {
	if (Array.isArray(value)) return value.includes(customChoice);
	return typeof value === 'string' && value.split(',').map(s => s.trim()).includes(customChoice);
}

function resourcesProblem(resources: string[], facts: Facts): string | undefined {
	if (resources.length === 0) return 'choose at least one resource (secrets is the usual choice).';
	for (const resource of resources) {
		const problem = resourceNameProblem(resource);
		if (problem) return `${JSON.stringify(resource)}: ${problem}. Fix the resource name.`;
		if (resource.startsWith('*.') && !versionAtLeast(facts.apiserver.version, '1.27')) {
			return `${JSON.stringify(resource)}: wildcard resources need kube-apiserver 1.27 or newer (this node runs ${facts.apiserver.version ?? 'an unknown version'}). List the resources by name.`;
		}
	}
	return undefined;
}

function pathProblem(path: string): string | undefined {
	// eslint-disable-next-line no-control-regex
	if (/[\u0000-\u001f\u007f]/.test(path)) return `${JSON.stringify(path)} contains a control character (a newline?); give the path on one line.`;
	if (!path.startsWith('/')) return `${JSON.stringify(path)} is not an absolute path; use for example ${defaultConfigPath}.`;
	if (path.endsWith('/')) return `${JSON.stringify(path)} names a directory; give a file name such as ${defaultConfigPath}.`;
	if (posix.normalize(path) !== path) return `${JSON.stringify(path)} is not a normalised path; write it as ${posix.normalize(path)}.`;
	if (isUnder(path, MANIFESTS_DIR)) {
		return `${path} is inside ${MANIFESTS_DIR}, where the kubelet runs every file as a static pod; use for example ${defaultConfigPath}.`;
	}
	return undefined;
}

function questions(facts: Facts, _answers: StageAnswers): Question[] {
	const merging = facts.encryption.config !== undefined;
	return [
		{
			id: 'provider',
			kind: 'select',
			message: 'Encryption provider for new writes',
			help: 'secretbox (XSalsa20-Poly1305, 32-byte key) is the recommended local provider. KMS v2 is the production recommendation where a KMS exists.',
			choices: [
				{value: 'secretbox', label: 'secretbox', hint: 'recommended'},
				{value: 'aesgcm', label: 'aesgcm', hint: 'must be rotated every 200,000 writes'},
				{value: 'aescbc', label: 'aescbc', hint: 'weak: padding oracle; use only for compatibility'},
				{value: 'kms', label: 'KMS v2 plugin', hint: `production recommendation; kube-apiserver ${kmsV2Since}+, plugin already running`},
			],
			default: 'secretbox',
			validate: value =>
				value === 'kms' && !versionAtLeast(facts.apiserver.version ?? facts.cluster?.version, kmsV2Since)
					? `KMS v2 needs kube-apiserver ${kmsV2Since} or newer (this node runs ${facts.apiserver.version ?? facts.cluster?.version ?? 'an unknown version'}).`
					: undefined,
		},
		{
			id: 'kmsName',
			kind: 'text',
			message: 'KMS plugin name',
			default: 'kms-plugin',
			when: answers => answers['provider'] === 'kms',
			validate: value => kmsNameProblem(value),
		},
		{
			id: 'kmsEndpoint',
			kind: 'text',
			message: 'KMS plugin socket (unix:///…)',
			default: 'unix:///var/run/kmsplugin/socket.sock',
			when: answers => answers['provider'] === 'kms',
			validate: value => kmsEndpointProblem(value),
		},
		{
			id: 'kmsTimeout',
			kind: 'text',
			message: 'Timeout for calls to the KMS plugin',
			default: '3s',
			when: answers => answers['provider'] === 'kms',
			validate: value => kmsTimeoutProblem(value),
		},
		{
			id: 'resources',
			kind: 'multiselect',
			message: 'Resources to encrypt',
			help: 'Secrets hold credentials and should always be encrypted. Choose "other" to list more resources (for example leases.coordination.k8s.io).',
			choices: [
				{value: 'secrets', label: 'secrets'},
				{value: 'configmaps', label: 'configmaps'},
				{value: customChoice, label: 'other resources…'},
			],
			default: ['secrets'],
			validate: value => {
				const list = resourceList(value, undefined);
				if (list.length === 0 && hasCustom(value)) return undefined; // the custom list is checked next
				return resourcesProblem(list, facts);
			},
		},
		{
			id: 'customResources',
			kind: 'text',
			message: 'Other resources (comma-separated, e.g. leases.coordination.k8s.io)',
			when: answers => hasCustom(answers['resources']),
			validate: (value, answers) => resourcesProblem(resourceList(answers['resources'] ?? [], value), facts),
		},
		{
			id: 'secretsUnencrypted',
			kind: 'confirm',
			message: 'Secrets are not among these resources: they stay in plaintext in etcd, and both this stage\'s verification and `status` will FAIL secrets-provider. Continue anyway?',
			// No default: --yes must say so explicitly (--set encryption-config.secretsUnencrypted=true).
			when: answers => answers['resources'] !== undefined && !coversSecrets(resourceList(answers['resources'], answers['customResources'])),
			validate: value => (value === true ? undefined : 'Add secrets to the resources (esc goes back), or confirm that Secrets stay unencrypted.'),
		},
		{
			id: 'path',
			kind: 'text',
			message: 'Where to write the EncryptionConfiguration',
			help: 'Its directory is mounted read-only into the apiserver pod. The file is written mode 0600.',
			default: defaultPathFor(facts),
			validate: value => (typeof value === 'string' ? pathProblem(value) : 'Enter an absolute file path.'),
		},
		{
			id: 'primary',
			kind: 'confirm',
			message: 'Make the new key primary (encrypt new writes with it) now?',
			help:
				'An encryption config already exists. On a cluster with several control-plane nodes, answer no on every node first ' +
				'(every apiserver can then decrypt with the key), then run again and answer yes.',
			default: false,
			when: () => merging,
		},
		{
			id: 'recovery',
			kind: 'select',
			message: 'Recovery copy of the new key (a lost key is lost data)',
			help:
				'Before the key encrypts anything, etcd-harden writes the config encrypted in the age format to ' +
				`${recoveryDir}/. Copy that file off the node. An age recipient (age1…) is best: the node then never holds ` +
				'anything that can decrypt it.',
			choices: [
				{value: 'age-recipient', label: 'encrypt to an age recipient (age1…)', hint: 'recommended'},
				{value: 'passphrase', label: 'encrypt with a passphrase'},
				{value: 'stored-elsewhere', label: 'no copy: I store the config elsewhere myself'},
			],
			when: answers => willAddKey(facts, answers),
			// A preview writes no key: a non-interactive --dry-run need not decide (its notes say what a real run asks).
			dryRunDefault: 'stored-elsewhere',
		},
		{
			id: 'recipient',
			kind: 'text',
			message: 'age recipient (age1…) for the recovery copy',
			when: answers => willAddKey(facts, answers) && answers['recovery'] === 'age-recipient',
			validate: value => recipientProblem(value),
		},
		{
			id: 'passphrase',
			kind: 'password',
			message: 'Passphrase for the recovery copy (at least 12 characters)',
			when: answers => willAddKey(facts, answers) && answers['recovery'] === 'passphrase',
			validate: value => (typeof value === 'string' && value.length >= 12 ? undefined : 'Use at least 12 characters.'),
		},
		{
			id: 'storedElsewhere',
			kind: 'confirm',
			message: `Confirm you will copy the config (with its new key) somewhere safe off this node before it is used`,
			when: answers => willAddKey(facts, answers) && answers['recovery'] === 'stored-elsewhere',
			// --set encryption-config.recovery=stored-elsewhere is itself the explicit choice.
			confirmsPreset: 'recovery',
			dryRunDefault: true,
			validate: value => (value === true ? undefined : 'Without a copy of the key, encrypted secrets cannot be recovered: choose a recovery copy, or confirm.'),
		},
	];
}

/** Where recovery copies of new keys go (age-encrypted, mode 0600). */
export const recoveryDir = `${STATE_DIR}/recovery`;

function recipientProblem(value: AnswerValue): string | undefined {
	if (typeof value !== 'string') return 'Enter an age recipient such as age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p.';
	try {
		parseRecipient(value.trim());
		return undefined;
	} catch {
		return `${JSON.stringify(value)} is not an age X25519 recipient (age1…, from age-keygen -y KEYFILE).`;
	}
}

/** Whether this run generates a key, for the answers given so far (no randomness used). */
function willAddKey(facts: Facts, answers: StageAnswers): boolean {
	let choice: EncryptionAnswers;
	try {
		choice = readAnswers(facts, answers);
	} catch {
		return true;
	}
	if (choice.provider === 'kms') return false; // the plugin holds the key
	let existing: ExistingConfig | undefined;
	try {
		existing = baseConfig(facts, choice.path).existing;
	} catch {
		return true; // the plan refuses it with its own message
	}
	const result = ensureEncryption(existing, {
		provider: choice.provider,
		resources: choice.resources,
		makePrimary: choice.primary ?? facts.encryption.config === undefined,
		keyName: nextKeyName(existing?.config),
		newSecret: () => 'cHJvYmUtb25seS1ub3QtYS1rZXktMzItYnl0ZXMtLS0=',
	});
	return result.added !== undefined;
}

/** The task that writes the recovery copy, or nothing (confirmed stored elsewhere). */
function recoveryChange(answers: StageAnswers, content: string, keyName: string): Change | undefined {
	const recovery = answers['recovery'];
	if (recovery === 'stored-elsewhere') return undefined;
	const path = `${recoveryDir}/encryption-config.${configDigest(content).slice(0, 12)}.yaml.age`;
	if (recovery === 'age-recipient' && typeof answers['recipient'] === 'string') {
		return {...sealedCopyTask.change(
			{path, to: {recipient: answers['recipient'].trim()}, secretContent: content, what: 'recovery copy'},
			`Write a recovery copy of the config with key ${keyName}, encrypted to ${answers['recipient'].trim()}, to ${path} (0600)`,
			[`decrypt it with: age -d -i YOUR-AGE-IDENTITY ${path.split('/').pop()}`, 'copy it off this node'],
		), keep: {path, what: `recovery copy of key ${keyName} (age, to ${answers['recipient'].trim()})`}};
	}
	if (recovery === 'passphrase' && typeof answers['passphrase'] === 'string') {
		return {...sealedCopyTask.change(
			{path, to: {passphrase: answers['passphrase']}, secretContent: content, what: 'recovery copy'},
			`Write a recovery copy of the config with key ${keyName}, encrypted with your passphrase, to ${path} (0600)`,
			[`decrypt it with: age -d ${path.split('/').pop()}`, 'copy it off this node'],
		), keep: {path, what: `recovery copy of key ${keyName} (age, passphrase)`}};
	}
	throw new InputError(
		`${encryptionConfigStageId}.recovery: a new key needs a recovery copy: answer recovery=age-recipient with recipient=age1…, ` +
			'recovery=passphrase with passphrase=…, or recovery=stored-elsewhere with storedElsewhere=true.',
	);
}

function plan(facts: Facts, answers: StageAnswers, context: {randomBytes(size: number): Buffer}): StagePlan {
	const enc = facts.encryption;
	// The existing config's problems first: an answer derived from it would only confuse.
	if (enc.errors.length > 0) throw new InputError(enc.errors.join('\n'));
	const choice = readAnswers(facts, answers);

	const warnings: string[] = [];
	const notes: string[] = [];
	const providerWarning = providerWarnings[choice.provider];
	if (providerWarning) warnings.push(providerWarning);
	if (enc.flagPath && !enc.exists) {
		warnings.push(
			`kube-apiserver's --encryption-provider-config names ${enc.flagPath}, but ${enc.path} does not exist: objects encrypted with its keys cannot be read. Restore it from a backup if you have one; this run writes a new config.`,
		);
	}

	const base = baseConfig(facts, choice.path);
	const existing = base.existing;
	notes.push(...base.notes);
	warnings.push(...base.warnings);
	// New writes use the new key at once only where the apiserver encrypts nothing yet.
	const makePrimary = choice.primary ?? enc.config === undefined;
	const keyName = nextKeyName(existing?.config);
	const result = ensureEncryption(existing, {
		provider: choice.provider,
		...(choice.kms ? {kms: choice.kms} : {}),
		resources: choice.resources,
		makePrimary,
		keyName,
		newSecret: () => generateKeySecret(size => context.randomBytes(size)),
	});
	notes.push(...result.notes);
	warnings.push(...result.warnings);

	const samePath = enc.path === choice.path;
	if (samePath && !result.changed && enc.mode === configMode) return {changes: [], notes, warnings};
	const target = samePath ? undefined : enc.target;
	if (target?.config && !result.changed && !base.changed && target.mode === configMode) return {changes: [], notes, warnings};

	let summary: string;
	if (target?.config) {
		summary =
			`Merge into ${choice.path} (an EncryptionConfiguration kube-apiserver does not use yet): its keys` +
			`${enc.config ? `, every key of ${enc.path}` : ''}${result.added ? `, plus ${choice.provider} key ${result.added.name}` : ''}, mode 0600`;
		if (enc.config) notes.push(`${enc.path} is left in place; remove it once the apiserver runs with ${choice.path}.`);
	} else if (!samePath && existing) {
		summary = `Write ${choice.path}: the existing config from ${enc.path} (all its keys)${result.added ? ` plus ${choice.provider} key ${result.added.name}` : ''}, mode 0600`;
		notes.push(`${enc.path} is left in place; remove it once the apiserver runs with ${choice.path}.`);
	} else if (result.added) {
		summary = `${existing ? 'Add' : 'Write'} ${choice.provider} key ${result.added.name} ${existing ? `to ${choice.path}` : `in a new ${choice.path}`}, mode 0600`;
	} else if (result.changed) {
		summary = `Update ${choice.path}: ${choice.provider === 'kms' ? `KMS v2 plugin ${choice.kms?.name}` : choice.provider} ${existing ? 'becomes the primary provider' : 'encrypts new writes'}, mode 0600`;
	} else {
		summary = `Set mode 0600 on ${choice.path} (it is ${formatMode(enc.mode)}): the file holds key material`;
	}
	if (result.added) {
		notes.push(`Back up ${choice.path} somewhere safe before objects are encrypted with key ${result.added.name}: a lost key is lost data.`);
	}
	const secrets = [
		...new Set([
			...secretsInText(result.text),
			...secretsInText(enc.text),
			...secretsOfConfig(enc.config),
			...secretsOfConfig(target?.config),
			...(result.added ? [result.added.secret] : []),
		]),
	];
	// The recovery copy is written first: the key exists off the config before anything uses it.
	const recovery = result.added ? recoveryChange(answers, result.text, result.added.name) : undefined;
	return {
		changes: [
			...(recovery ? [recovery] : []),
			{kind: 'write-file', path: choice.path, content: result.text, mode: configMode, summary, secrets, guard: base.guard},
		],
		notes,
		warnings,
	};
}

type BaseConfig = {
	/** The config the new text is made from, at the chosen path (undefined: a new file). */
	existing?: ExistingConfig;
	/** Whether merging the apiserver's config into the file at the chosen path changed it. */
	changed: boolean;
	notes: string[];
	warnings: string[];
	/** What the chosen path may hold when the config is written (see WriteFileChange.guard). */
	guard: {before: string | null; refusal: string};
};

/**
 * The config this run builds on at `path`. The apiserver's own config when `path` is its
 * path, or when nothing is there yet (it is then written at `path` with all its keys). An
 * EncryptionConfiguration already at another `path` is merged with the apiserver's (every
 * key of both), and the write is guarded on its exact text. Anything else at `path` (a
 * certificate, a kubeconfig, a config that does not parse) is refused, naming it: it is
 * never overwritten.
 */
function baseConfig(facts: Facts, path: string): BaseConfig {
	const enc = facts.encryption;
	const current = enc.config && enc.text !== undefined ? {text: enc.text, config: enc.config, path: enc.path} : undefined;
	if (enc.path === path) {
		const guard = enc.exists && enc.text !== undefined ? {before: enc.text, refusal: changedRefusal(path)} : newFileGuard(facts, path);
		return {...(current ? {existing: current} : {}), changed: false, notes: [], warnings: [], guard};
	}
	const target = enc.target?.path === path ? enc.target : undefined;
	if (!target?.exists) return {...(current ? {existing: current} : {}), changed: false, notes: [], warnings: [], guard: newFileGuard(facts, path)};
	if (!target.config || target.text === undefined) {
		if (target.errors.some(error => error.includes('is a directory'))) {
			throw new InputError(`${path} is a directory, so the config cannot be written there: name a file inside it (--set ${encryptionConfigStageId}.path=${path}/encryption-config.yaml), or move the directory away.`);
		}
		const reason = (target.errors[0] ?? 'not an EncryptionConfiguration').replace(`${path}: `, '').replace(/\s*Fix:.*$/s, '');
		throw new InputError(
			`${path} already exists and is not an EncryptionConfiguration etcd-harden can merge (${reason}): it is never overwritten. ` +
				`Fix: choose a new file with --set ${encryptionConfigStageId}.path=/etc/kubernetes/enc/NAME.yaml, or move ${path} away.`,
		);
	}
	const into = {text: target.text, config: target.config, path};
	const guard = {before: target.text, refusal: changedRefusal(path)};
	if (!current) return {existing: into, changed: false, notes: [`${path} already holds an EncryptionConfiguration: it is kept and merged into.`], warnings: [], guard};
	const merged = mergeEncryptionConfigs(into, current);
	const check = parseEncryptionConfig(merged.text, path);
	if (!check.config) throw new Error(`internal: merging ${enc.path} into ${path} made an invalid config`);
	return {
		existing: {text: merged.text, config: check.config, path},
		changed: merged.changed,
		notes: [`${path} already holds an EncryptionConfiguration: it is kept, and every key of ${enc.path} (which kube-apiserver uses) is merged into it.`, ...merged.notes],
		warnings: merged.warnings,
		guard,
	};
}

function changedRefusal(path: string): string {
	return `${path} changed while etcd-harden was planning (another run or an editor?): nothing was written. Run etcd-harden again.`;
}

/** A new file at `path`: refused at write time if something appeared there meanwhile. */
function newFileGuard(facts: Facts, path: string): {before: null; refusal: string} {
	const enc = facts.encryption;
	const used = enc.flagPath ? `kube-apiserver reads ${enc.path}` : 'kube-apiserver has no encryption config yet';
	return {
		before: null,
		refusal:
			`${path} already exists and is not the encryption config etcd-harden is merging (${used}): it is never overwritten, ` +
			'whether it is a certificate, a kubeconfig or another EncryptionConfiguration whose keys would be lost. ' +
			`Fix: choose a new file with --set ${encryptionConfigStageId}.path=/etc/kubernetes/enc/NAME.yaml, or move ${path} away.`,
	};
}

/** Whether the chosen path is not the config discovery read: planning must read it too. */
function rediscover(facts: Facts, answers: StageAnswers): boolean {
	const path = answers['path'] ?? defaultPathFor(facts);
	return typeof path === 'string' && path !== facts.encryption.path && facts.encryption.target?.path !== path;
}

function verify(facts: Facts, answers: StageAnswers): Check[] {
	const choice = readAnswers(facts, answers);
	const enc = facts.encryption;
	const checks: Check[] = [];
	if (enc.path !== choice.path) {
		checks.push({
			id: 'config-read',
			title: `Encryption config at ${choice.path}`,
			status: 'fail',
			actual: `discovery read ${enc.path}`,
			remediation: `Point kube-apiserver's --encryption-provider-config at ${choice.path} (stage apiserver-manifest).`,
		});
		return checks;
	}
	checks.push(validityCheck(facts));
	if (!enc.config) return checks;
	checks.push(modeCheck(facts));
	const wantPrimary = choice.primary !== false;
	for (const resource of choice.resources) {
		const primary = primaryProviderFor(enc.config, resource);
		const index = ruleIndexFor(enc.config, resource);
		const present = index !== -1 && enc.config.resources[index]!.providers.some(p => p.type === choice.provider);
		const ok = wantPrimary ? primary.type === choice.provider : present;
		const check: Check = {
			id: `provider-${resource}`,
			title: wantPrimary ? `${resource}: ${choice.provider} encrypts new writes` : `${resource}: ${choice.provider} key configured`,
			status: ok ? 'pass' : 'fail',
			actual: `first provider: ${primary.type}`,
		};
		if (!ok) check.remediation = `Run etcd-harden again; check ${choice.path} by hand if it keeps failing.`;
		checks.push(check);
	}
	// The same fact `status` reports, judged the same way: the two never disagree.
	if (wantPrimary) checks.push(secretsProviderCheck(enc.config));
	return checks;
}

function status(facts: Facts): Check[] {
	const enc = facts.encryption;
	const checks: Check[] = [];
	if (!enc.flagPath) {
		checks.push({
			id: 'encryption-enabled',
			title: 'Encryption at rest is configured',
			status: 'fail',
			actual: 'kube-apiserver has no --encryption-provider-config: Secrets are stored in etcd in plaintext',
			remediation: 'Run etcd-harden (stages encryption-config and apiserver-manifest).',
		});
	} else {
		checks.push({id: 'encryption-enabled', title: 'Encryption at rest is configured', status: 'pass', actual: `--encryption-provider-config=${enc.flagPath}`});
	}
	if (!enc.exists) {
		if (enc.flagPath) {
			checks.push({
				id: 'config-valid',
				title: 'Encryption config is readable and valid',
				status: 'fail',
				actual: `${enc.path} does not exist; the apiserver cannot start with this flag`,
				remediation: `Restore ${enc.path} from a backup, or run etcd-harden to write a new one.`,
			});
		}
		return checks;
	}
	checks.push(validityCheck(facts));
	if (!enc.config) return checks;
	checks.push(modeCheck(facts));
	checks.push(secretsProviderCheck(enc.config));
	const middle = enc.config.resources.findIndex(rule => rule.providers.some((p, i) => p.type === 'identity' && i !== 0 && i !== rule.providers.length - 1));
	checks.push(
		middle === -1
			? {id: 'identity-position', title: 'identity is first or last in every rule', status: 'pass'}
			: {
					id: 'identity-position',
					title: 'identity is first or last in every rule',
					status: 'warn',
					actual: `resources[${middle}] has identity between encrypting providers`,
					remediation: `Move identity last in ${enc.path}.`,
				},
	);
	return checks;
}

/** Which provider encrypts Secrets first: what both `status` and the stage's verification report. */
function secretsProviderCheck(config: NonNullable<Facts['encryption']['config']>): Check {
	const primary = primaryProviderFor(config, 'secrets');
	const secretsCheck: Check = {id: 'secrets-provider', title: 'Secrets are encrypted with a strong provider', status: 'pass', actual: `first provider for secrets: ${primary.type}`};
	if (primary.type === 'identity') {
		Object.assign(secretsCheck, {status: 'fail', remediation: 'Run etcd-harden to put secretbox first for secrets.'});
	} else if (primary.type === 'aescbc') {
		Object.assign(secretsCheck, {status: 'warn', actual: `${secretsCheck.actual} (weak: padding oracle)`, remediation: 'Rotate to secretbox: run etcd-harden with provider secretbox.'});
	} else if (primary.type === 'aesgcm') {
		Object.assign(secretsCheck, {status: 'warn', actual: `${secretsCheck.actual} (must be rotated every 200,000 writes)`, remediation: 'Rotate keys regularly, or move to secretbox.'});
	} else if (primary.type === 'kms' && primary.apiVersion !== 'v2') {
		Object.assign(secretsCheck, {status: 'warn', actual: `${secretsCheck.actual} v1 (deprecated)`, remediation: 'Move to KMS v2 (stable since 1.29).'});
	}
	return secretsCheck;
}

function validityCheck(facts: Facts): Check {
	const enc = facts.encryption;
	if (!enc.exists) {
		return {id: 'config-valid', title: 'Encryption config is readable and valid', status: 'fail', actual: `${enc.path} does not exist`, remediation: 'Run etcd-harden to write it.'};
	}
	if (enc.errors.length > 0) {
		return {id: 'config-valid', title: 'Encryption config is readable and valid', status: 'fail', actual: enc.errors.join('\n'), remediation: `Restore ${enc.path} from a backup or fix it as the message says.`};
	}
	return {id: 'config-valid', title: 'Encryption config is readable and valid', status: 'pass', actual: enc.path};
}

function modeCheck(facts: Facts): Check {
	const mode = facts.encryption.mode;
	const ok = mode !== undefined && (mode & 0o077) === 0;
	return ok
		? {id: 'config-mode', title: 'Encryption config is private (mode 0600)', status: 'pass', actual: formatMode(mode)}
		: {
				id: 'config-mode',
				title: 'Encryption config is private (mode 0600)',
				status: 'fail',
				actual: `mode ${formatMode(mode)}: other users can read the keys`,
				remediation: `chmod 600 ${facts.encryption.path} (or run etcd-harden).`,
			};
}

export function formatMode(mode: number | undefined): string {
	return mode === undefined ? 'unknown' : `0${mode.toString(8).padStart(3, '0')}`;
}

export const encryptionConfigStage: NodeStage = {
	dependsOn: [],
	id: encryptionConfigStageId,
	title: 'Encryption config',
	explain:
		'Kubernetes stores Secrets in etcd in plaintext unless the apiserver has an EncryptionConfiguration. ' +
		'This stage generates a 32-byte key and writes the configuration (mode 0600). An existing configuration ' +
		'is merged, never replaced: its keys stay, so everything already encrypted stays readable.',
	questions,
	plan,
	rediscover,
	verify,
	status,
	undoGroup: 'encryption',
};

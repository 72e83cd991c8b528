/**
 * What the rotate and disable stages share: switching this node's apiserver to a new config
 * text (bundle, report "started", restart gate around the config and manifest writes, report
 * "done"), finishing a switch a killed run left half done, and the bundle answers.
 */
import {sealedCopyTask} from '../crypto/tasks.js';
import {apiserverRestartGate} from '../kube/tasks.js';
import {rotationPublishTask, waitControlPlanesTask} from '../kube/rotation-tasks.js';
import {GATE_TIMEOUT_SECONDS} from '../kube/defaults.js';
import {DEFAULT_APISERVER_LOGS} from '../kube/restart-gate.js';
import {configDigest, secretsInText} from '../kube/encryption-config.js';
import {patchManifest, ManifestError} from '../kube/manifest.js';
import {parseRecipient} from '../crypto/age.js';
import {STATE_DIR, InputError, type AnswerValue, type Change, type Check, type PlanContext, type Question, type StageAnswers, type StagePlan} from '../engine/contract.js';
import {digestAnnotation, manifestPatch} from './apiserver-manifest.js';
import {APISERVER_CONTAINER} from '../kube/defaults.js';
import {configMode} from './encryption-config.js';
import type {Facts} from './facts.js';

export const bundleDir = `${STATE_DIR}/bundles`;

export type BundleChoice = {kind: 'recipient'; recipient: string} | {kind: 'passphrase'; passphrase: string} | {kind: 'none'};

/** This node's name for the status ConfigMap. */
export function nodeOf(facts: Facts): string {
	return facts.rotation?.node ?? facts.etcd.flags['name'] ?? 'this-node';
}

export function bundlePathFor(text: string): string {
	return `${bundleDir}/encryption-config.${configDigest(text).slice(0, 12)}.yaml.age`;
}

export function applyCommand(path: string): string {
	return `etcd-harden rotate --bundle ${path} --bundle-key FILE   (FILE: your age identity, or a file holding the passphrase)`;
}

function recipientProblem(value: AnswerValue): string | undefined {
	try {
		parseRecipient(String(value).trim());
		return undefined;
	} catch {
		return `${JSON.stringify(value)} is not an age X25519 recipient (age1…, from age-keygen -y KEYFILE).`;
	}
}

/**
 * The bundle questions. `required` (a new key is added): no default, and "none" needs the
 * operator's confirmation that the config is kept elsewhere. Otherwise "same" (default)
 * follows the answer of `inheritFrom` in this run.
 */
export function bundleQuestions(required: boolean): Question[] {
	const none = required ? 'stored-elsewhere' : 'none';
	return [
		{
			id: 'bundle',
			kind: 'select',
			message: required ? 'Rotation bundle and recovery copy of the new key (a lost key is lost data)' : 'Rotation bundle for the other control planes',
			help:
				'The new config, age-encrypted, written to ' +
				`${bundleDir}/. Copy it to every other control-plane node and apply it there with etcd-harden rotate --bundle FILE; keep a copy off the node.`,
			choices: [
				...(required ? [] : [{value: 'same', label: 'as chosen for the first stage of this run'}]),
				{value: 'age-recipient', label: 'encrypt to an age recipient (age1…)', hint: 'recommended'},
				{value: 'passphrase', label: 'encrypt with a passphrase'},
				{value: none, label: required ? 'no bundle: I store the config elsewhere myself' : 'no bundle (single control plane)'},
			],
			...(required ? {} : {default: 'same'}),
		},
		{id: 'recipient', kind: 'text', message: 'age recipient (age1…) for the bundle', when: answers => answers['bundle'] === 'age-recipient', validate: recipientProblem},
		{
			id: 'passphrase',
			kind: 'password',
			message: 'Passphrase for the bundle (at least 12 characters)',
			when: answers => answers['bundle'] === 'passphrase',
			validate: value => (typeof value === 'string' && value.length >= 12 ? undefined : 'Use at least 12 characters.'),
		},
		...(required
			? [
					{
						id: 'storedElsewhere',
						kind: 'confirm' as const,
						message: 'Confirm you will copy the config (with its new key) somewhere safe off this node before it is used',
						when: (answers: StageAnswers) => answers['bundle'] === 'stored-elsewhere',
						validate: (value: AnswerValue) => (value === true ? undefined : 'Without a copy of the key, encrypted secrets cannot be recovered: choose a bundle, or confirm.'),
					},
				]
			: []),
	];
}

export function readBundle(answers: StageAnswers, context: Pick<PlanContext, 'answers'>, inheritFrom: string): BundleChoice {
	let source = answers;
	if ((answers['bundle'] ?? 'same') === 'same') source = context.answers?.[inheritFrom] ?? {};
	const bundle = source['bundle'];
	if (bundle === 'age-recipient' && typeof source['recipient'] === 'string') return {kind: 'recipient', recipient: source['recipient'].trim()};
	if (bundle === 'passphrase' && typeof source['passphrase'] === 'string') return {kind: 'passphrase', passphrase: source['passphrase']};
	return {kind: 'none'};
}

export function bundleChange(choice: BundleChoice, text: string): Change | undefined {
	if (choice.kind === 'none') return undefined;
	const path = bundlePathFor(text);
	return sealedCopyTask.change(
		{path, to: choice.kind === 'recipient' ? {recipient: choice.recipient} : {passphrase: choice.passphrase}, secretContent: text, what: 'rotation bundle', command: applyCommand(path)},
		`Write the rotation bundle ${path} (the new config, age-encrypted ${choice.kind === 'recipient' ? `to ${choice.recipient}` : 'with your passphrase'}, 0600)`,
		[`apply it on every other control plane: ${applyCommand(path)}`],
	);
}

/** The config the apiserver runs differs from the file: a killed run wrote the config but not (or not yet in force) the manifest. */
export function inFlight(facts: Facts): boolean {
	const text = facts.encryption.text;
	if (text === undefined || !facts.encryption.flagPath) return false;
	return facts.apiserver.annotations[digestAnnotation] !== configDigest(text);
}

export function requireConfig(facts: Facts, command: string): {text: string; config: NonNullable<Facts['encryption']['config']>; path: string} {
	const enc = facts.encryption;
	if (enc.errors.length > 0) throw new InputError(enc.errors.join('\n'));
	if (!enc.flagPath || !enc.config || enc.text === undefined) {
		throw new InputError(
			`kube-apiserver does not use an encryption config (${enc.path}${enc.exists ? '' : ' does not exist'}): there is nothing to ${command}. ` +
				'Enable encryption first: etcd-harden --only encryption-config,apiserver-manifest,reencrypt.',
		);
	}
	if (facts.cluster && !facts.cluster.reachable) throw new InputError(facts.cluster.problem ?? `kube-apiserver at ${facts.cluster.server} does not answer.`);
	return {text: enc.text, config: enc.config, path: enc.path};
}

function publish(facts: Facts, phase: string, state: 'started' | 'done'): Change {
	return rotationPublishTask.change(
		{kubeconfig: facts.cluster?.kubeconfig, node: nodeOf(facts), phase, state, configPath: facts.encryption.path},
		`Report ${nodeOf(facts)}: ${phase} ${state} (config sha256, no key material) to kube-system/etcd-harden-status`,
	);
}

export function publishOnly(facts: Facts, phase: string): Change[] {
	return facts.cluster ? [publish(facts, phase, 'done')] : [];
}

export type SwitchRequest = {
	/** The config text to run (undefined: the file stays, only the manifest follows it). */
	text?: string;
	summary: string;
	phase: string;
	bundle?: Change;
};

/**
 * Switch this node's apiserver to `request.text`: bundle, report "started", record the
 * running apiserver, write the config and the manifest's digest annotation (the kubelet
 * restarts the pod), wait for /readyz (else the engine restores both files), report "done".
 */
/** A run killed between the config write and the restart: finish the restart (no new step). */
export function finishing(facts: Facts, context: PlanContext): StagePlan {
	return {
		changes: switchConfig(facts, context, {summary: '', phase: 'resume'}),
		notes: [`${facts.encryption.path} differs from the config kube-apiserver was restarted with (an interrupted run): restart it with the file on disk first.`],
	};
}

export function switchConfig(facts: Facts, context: PlanContext, request: SwitchRequest): Change[] {
	const manifest = facts.apiserver;
	if (!manifest.exists || manifest.text === undefined) throw new InputError(manifest.error ?? `${manifest.path}: not found. Run etcd-harden on a kubeadm control-plane node.`);
	const path = facts.encryption.path;
	const text = request.text ?? facts.encryption.text;
	if (text === undefined) throw new InputError(`${path}: no config to run.`);
	let patched: string;
	try {
		patched = patchManifest(manifest.text, manifest.path, APISERVER_CONTAINER, manifestPatch(facts, {path, content: text}));
	} catch (error) {
		if (error instanceof ManifestError) throw new InputError(error.message);
		throw error;
	}
	const secrets = [...new Set([...secretsInText(text), ...secretsInText(facts.encryption.text)])];
	const writes: Change[] = [];
	if (request.text !== undefined && request.text !== facts.encryption.text) {
		writes.push({kind: 'write-file', path, content: request.text, mode: configMode, summary: request.summary, secrets});
	}
	if (patched !== manifest.text) {
		writes.push({
			kind: 'write-file',
			path: manifest.path,
			content: patched,
			mode: manifest.mode ?? 0o600,
			summary: `Set the config sha256 annotation in ${manifest.path} (${configDigest(text).slice(0, 12)}): the kubelet restarts kube-apiserver with the new config`,
		});
	}
	const cluster = facts.cluster;
	if (!cluster) return [...(request.bundle ? [request.bundle] : []), ...writes];
	const timeoutSeconds = context.settings?.gateTimeoutSeconds ?? GATE_TIMEOUT_SECONDS;
	return [
		...(request.bundle ? [request.bundle] : []),
		// No config on disk yet (turning encryption on from none): there is no hash to report before the write.
		...(facts.encryption.text === undefined ? [] : [publish(facts, request.phase, 'started')]),
		...apiserverRestartGate.bracket({kubeconfig: cluster.kubeconfig, manifestPath: manifest.path, timeoutSeconds, logPaths: DEFAULT_APISERVER_LOGS}, writes, {
			before: 'Record the running kube-apiserver (restored and awaited again if this stage is undone)',
			after: 'Wait until kube-apiserver has restarted with the new config and passes /readyz',
			detail: `timeout ${timeoutSeconds} s; on timeout or a crash loop the config and the manifest are restored byte for byte`,
		}),
		publish(facts, request.phase, 'done'),
	];
}

export function waitChange(facts: Facts, phase: string, seconds: number): Change[] {
	const cluster = facts.cluster;
	if (!cluster || facts.encryption.text === undefined) return [];
	const hint = applyCommand(bundlePathFor(facts.encryption.text));
	return [
		waitControlPlanesTask.change(
			{kubeconfig: cluster.kubeconfig, node: nodeOf(facts), phase, configPath: facts.encryption.path, manifestPath: facts.apiserver.path, timeoutSeconds: seconds, bundleHint: hint},
			`Wait (at most ${seconds} s) until every control plane reports config sha256 ${configDigest(facts.encryption.text).slice(0, 12)}; refuse naming the ones that do not`,
			['control planes: etcd members and Nodes with the control-plane role; reports: kube-system/etcd-harden-status', `elsewhere: ${hint}`],
		),
	];
}

export function waitQuestion(): Question {
	return {
		id: 'waitSeconds',
		kind: 'text',
		message: 'How long to wait for the other control planes to run this config (seconds)',
		default: '60',
		validate: value => (typeof value === 'string' && /^\d{1,5}$/.test(value) ? undefined : 'Give whole seconds, e.g. 60.'),
	};
}

export function waitSeconds(answers: StageAnswers): number {
	return Number(answers['waitSeconds'] ?? '60');
}

/** verify: the config is valid and this node's manifest runs it. */
export function runsConfigChecks(facts: Facts): Check[] {
	const text = facts.encryption.text;
	if (text === undefined || !facts.encryption.config) {
		return [{id: 'config', title: 'The encryption config is readable and valid', status: 'fail', actual: facts.encryption.errors.join('; ') || `${facts.encryption.path} missing`}];
	}
	const digest = configDigest(text);
	const annotation = facts.apiserver.annotations[digestAnnotation];
	return [
		{
			id: 'runs-config',
			title: 'kube-apiserver runs the config on disk (sha256 annotation)',
			status: annotation === digest ? 'pass' : 'fail',
			actual: annotation === digest ? digest.slice(0, 12) : `annotation ${annotation?.slice(0, 12) ?? 'missing'}, file ${digest.slice(0, 12)}`,
			...(annotation === digest ? {} : {remediation: 'Rerun the same etcd-harden command: it finishes the restart.'}),
		},
	];
}

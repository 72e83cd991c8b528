/**
 * Stage apiserver-manifest: point kube-apiserver at the encryption config. Adds the flag,
 * a read-only hostPath mount of the config's directory (so a rewritten file is seen by the
 * running pod), automatic reload from 1.26, and an annotation with the config's sha256 so
 * the kubelet restarts the static pod whenever the config changes. Pure text patching with
 * the yaml Document API; the engine backs the manifest up into its run directory.
 */
import type {NodeStage} from './facts.js';
import {posix} from 'node:path';
import {configDigest} from '../kube/encryption-config.js';
import {containerPathFor, patchManifest, ManifestError, versionAtLeast, type ManifestPatch} from '../kube/manifest.js';
import {createTwoFilesPatch} from 'diff';
import {encryptionConfigVolume, KubeadmConfigError, patchClusterConfiguration, readApiServerSettings} from '../kube/kubeadm-config.js';
import {InputError, type Change, type Check, type PlanContext, type Stage, type StageAnswers, type StagePlan} from '../engine/contract.js';
import {APISERVER_CONTAINER, ENCRYPTION_FLAG} from '../kube/defaults.js';
import {encryptionConfigStageId} from './encryption-config.js';
import type {Facts} from './facts.js';
import {apiserverRestartGate, kubeadmConfigTask} from '../kube/tasks.js';
import {CONFIG_DIGEST_ANNOTATION, GATE_TIMEOUT_SECONDS} from '../kube/defaults.js';
import {DEFAULT_APISERVER_LOGS} from '../kube/restart-gate.js';

export const apiserverManifestStageId = 'apiserver-manifest';
export const reloadFlag = 'encryption-provider-config-automatic-reload';
export const digestAnnotation = CONFIG_DIGEST_ANNOTATION;
export const volumeName = 'etcd-harden-encryption';
/** First kube-apiserver release with --encryption-provider-config-automatic-reload. */
export const reloadSince = '1.26';

export type ConfigTarget = {path: string; content: string; source: 'planned' | 'node'};

/**
 * The config the apiserver will run with: what the encryption-config stage plans to write
 * in this run (context.planned), else the file already on the node at the chosen path.
 */
export function configTarget(facts: Facts, context: Pick<PlanContext, 'answers' | 'planned'>): ConfigTarget {
	const planned = context.planned?.[encryptionConfigStageId]?.changes.find(change => change.kind === 'write-file');
	if (planned?.kind === 'write-file') return {path: planned.path, content: planned.content, source: 'planned'};
	const answered = context.answers?.[encryptionConfigStageId]?.['path'];
	const path = typeof answered === 'string' ? answered : facts.encryption.path;
	const enc = facts.encryption;
	if (enc.path === path && enc.errors.length > 0) throw new InputError(enc.errors.join('\n'));
	if (enc.path === path && enc.exists && enc.text !== undefined) return {path, content: enc.text, source: 'node'};
	throw new InputError(
		`${path}: no encryption config to point kube-apiserver at (the file does not exist and this run does not write it). ` +
			`Fix: run the ${encryptionConfigStageId} stage too (drop --skip ${encryptionConfigStageId} or add it to --only).`,
	);
}

/** The patch this stage applies for a config at `path` with `content`. */
export function manifestPatch(facts: Facts, target: {path: string; content: string}): ManifestPatch {
	const dir = posix.dirname(target.path);
	const flags: Record<string, string> = {[ENCRYPTION_FLAG]: target.path};
	if (versionAtLeast(facts.apiserver.version, reloadSince)) flags[reloadFlag] = 'true';
	return {
		flags,
		mounts: [{name: volumeName, hostPath: dir, mountPath: dir, type: 'DirectoryOrCreate', readOnly: true}],
		annotations: {[digestAnnotation]: configDigest(target.content)},
	};
}

function usableManifest(facts: Facts): string {
	const m = facts.apiserver;
	if (!m.exists) {
		throw new InputError(
			`${m.path}: not found. Fix: run etcd-harden on a kubeadm control-plane node (or pass --root with a copy of one).`,
		);
	}
	if (m.error) throw new InputError(m.error);
	if (m.text === undefined) throw new InputError(`${m.path}: could not be read. Fix: run etcd-harden as root.`);
	return m.text;
}

function plan(facts: Facts, _answers: StageAnswers, context: PlanContext): StagePlan {
	const text = usableManifest(facts);
	const target = configTarget(facts, context);
	const m = facts.apiserver;
	const notes: string[] = [];
	const warnings: string[] = [];
	if (!m.version) {
		warnings.push(`Cannot tell the kube-apiserver version from image ${m.image ?? '(none)'}: --${reloadFlag} is not added.`);
	} else if (!versionAtLeast(m.version, reloadSince)) {
		notes.push(`kube-apiserver ${m.version} has no --${reloadFlag} (added in ${reloadSince}); the pod restarts when the config changes.`);
	}
	let patched: string;
	try {
		patched = patchManifest(text, m.path, APISERVER_CONTAINER, manifestPatch(facts, target));
	} catch (error) {
		if (error instanceof ManifestError) throw new InputError(error.message);
		throw error;
	}
	const kubeadm = kubeadmChange(facts, target.path);
	if (patched === text) {
		notes.push(`${m.path} already points at ${target.path} with the current config digest.`);
		return {changes: kubeadm ? [kubeadm] : [], notes, warnings};
	}
	notes.push('The kubelet restarts kube-apiserver when its manifest changes; the API is unavailable until it is ready again.');
	const write: Change = {
		kind: 'write-file',
		path: m.path,
		content: patched,
		mode: m.mode ?? 0o600,
		summary: `Point kube-apiserver at ${target.path}: --${ENCRYPTION_FLAG}, read-only mount of ${posix.dirname(target.path)}, config sha256 annotation`,
	};
	const cluster = facts.cluster;
	if (!cluster) return {changes: [write], notes, warnings};
	if (!cluster.reachable) throw new InputError(cluster.problem ?? `kube-apiserver at ${cluster.server} does not answer.`);
	// The restart gate brackets the write: 'before' records the running apiserver's start
	// time (and, when the stage is undone, waits until it is ready on the restored files);
	// 'after' waits for a new process that passes /readyz, or fails and undoes the stage.
	const timeoutSeconds = context.settings?.gateTimeoutSeconds ?? GATE_TIMEOUT_SECONDS;
	return {
		changes: [
			...apiserverRestartGate.bracket({kubeconfig: cluster.kubeconfig, manifestPath: m.path, timeoutSeconds, logPaths: DEFAULT_APISERVER_LOGS}, [write], {
				before: 'Record the running kube-apiserver (restored and awaited again if this stage is undone)',
				after: 'Wait until kube-apiserver has restarted with the new manifest and passes /readyz',
				detail: `timeout ${timeoutSeconds} s; on timeout or a crash loop every file of this stage is restored byte for byte and the apiserver awaited again`,
			}),
			...(kubeadm ? [kubeadm] : []),
		],
		notes,
		warnings,
	};
}


/**
 * Persist the flag and the volume in kubeadm's ClusterConfiguration so `kubeadm upgrade`
 * regenerates the manifest with them. Previewed as a diff of the ConfigMap's text.
 */
function kubeadmChange(facts: Facts, configPath: string): Change | undefined {
	const text = facts.cluster?.kubeadmConfig;
	if (text === undefined) return undefined;
	const directory = posix.dirname(configPath);
	const extraArgs: Record<string, string> = {[ENCRYPTION_FLAG]: configPath};
	if (versionAtLeast(facts.apiserver.version, reloadSince)) extraArgs[reloadFlag] = 'true';
	const extraVolumes = [encryptionConfigVolume(volumeName, directory)];
	let patched: string;
	try {
		patched = patchClusterConfiguration(text, {extraArgs, extraVolumes});
	} catch (error) {
		if (error instanceof KubeadmConfigError) throw new InputError(`${error.message}. Fix the kube-system/kubeadm-config ConfigMap, then rerun.`);
		throw error;
	}
	if (patched === text) return undefined;
	const diff = createTwoFilesPatch('a/kube-system/kubeadm-config', 'b/kube-system/kubeadm-config', text, patched, undefined, undefined, {context: 2})
		.split('\n')
		.filter(line => !line.startsWith('====='));
	return kubeadmConfigTask.change(
		{kubeconfig: facts.cluster?.kubeconfig, extraArgs, extraVolumes},
		'Persist the flag and volume in kubeadm-config (ClusterConfiguration) so kubeadm upgrade keeps them',
		diff,
	);
}

/** strict (verify): a missing digest annotation fails instead of warning. */
function checks(facts: Facts, strict: boolean): Check[] {
	const m = facts.apiserver;
	if (!m.exists || m.error) {
		return [
			{
				id: 'manifest',
				title: 'kube-apiserver manifest is readable',
				status: 'fail',
				actual: m.error ?? `${m.path} not found`,
				remediation: 'Run on a kubeadm control-plane node, or restore the manifest.',
			},
		];
	}
	const enc = facts.encryption;
	const flag = m.flags[ENCRYPTION_FLAG];
	const out: Check[] = [];
	const flagOk = flag !== undefined;
	out.push({
		id: 'flag',
		title: `kube-apiserver has --${ENCRYPTION_FLAG}`,
		status: flagOk ? 'pass' : 'fail',
		actual: flag ?? 'not set',
		...(flagOk ? {} : {remediation: 'Run etcd-harden (stage apiserver-manifest).'}),
	});
	if (flag === undefined) return out;
	out.push({
		id: 'mounted',
		title: 'The encryption config is mounted into the apiserver pod',
		status: enc.mountedInPod ? 'pass' : 'fail',
		actual: enc.mountedInPod ? `${posix.dirname(enc.path)} -> ${containerPathFor(m, enc.path)}` : `${flag} is not under any hostPath volumeMount`,
		...(enc.mountedInPod ? {} : {remediation: `Mount ${posix.dirname(enc.path)} read-only into the pod: run etcd-harden (stage apiserver-manifest).`}),
	});
	if (enc.text !== undefined) {
		const digest = configDigest(enc.text);
		const current = m.annotations[digestAnnotation];
		const same = current === digest;
		out.push({
			id: 'digest',
			title: 'The pod runs the current config (sha256 annotation)',
			status: same ? 'pass' : current === undefined && !strict ? 'warn' : 'fail',
			actual: current === undefined ? 'no annotation' : same ? digest : `annotation ${current}, file ${digest}`,
			...(same ? {} : {remediation: 'Run etcd-harden (stage apiserver-manifest) so the pod restarts with the current config.'}),
		});
	}
	const kubeadmText = facts.cluster?.kubeadmConfig;
	if (kubeadmText !== undefined) {
		let persisted: string | undefined;
		try {
			persisted = readApiServerSettings(kubeadmText).extraArgs[ENCRYPTION_FLAG];
		} catch {
			persisted = undefined;
		}
		const ok = persisted === flag;
		out.push({
			id: 'kubeadm-config',
			title: 'kubeadm-config keeps the flag for kubeadm upgrade',
			status: ok ? 'pass' : strict ? 'fail' : 'warn',
			actual: persisted === undefined ? 'apiServer.extraArgs has no encryption-provider-config' : `apiServer.extraArgs: ${persisted}`,
			...(ok ? {} : {remediation: 'Run etcd-harden (stage apiserver-manifest) so kubeadm upgrade does not drop encryption.'}),
		});
	}
	if (versionAtLeast(m.version, reloadSince)) {
		const reload = m.flags[reloadFlag] === 'true';
		out.push({
			id: 'reload',
			title: `--${reloadFlag} is on`,
			status: reload ? 'pass' : 'warn',
			actual: m.flags[reloadFlag] ?? 'not set',
			...(reload ? {} : {remediation: 'Run etcd-harden (stage apiserver-manifest) so key rotation needs no restart.'}),
		});
	}
	return out;
}

export const apiserverManifestStage: NodeStage = {
	// It mounts and names the config encryption-config writes.
	dependsOn: ['encryption-config'],
	// A manifest that does not parse is reported before the first question is asked.
	preflight: facts => (facts.apiserver.error ? [facts.apiserver.error] : []),
	id: apiserverManifestStageId,
	title: 'kube-apiserver manifest',
	explain:
		'Points kube-apiserver at the encryption config: the --encryption-provider-config flag, a read-only mount of the ' +
		"config's directory, and an annotation with the config's sha256 so the kubelet restarts the static pod when the " +
		'config changes. Comments, key order and every other flag stay exactly as they are.',
	questions: () => [],
	plan,
	verify: (facts, _answers) => checks(facts, true),
	status: facts => checks(facts, false),
	undoGroup: 'encryption',
};

import type {TaskContext, TaskExecutor, TaskRegistry} from './engine.js';
import {paramNumber as num, paramString as str, paramStrings as strings} from './task-params.js';
import type {Host} from '../host/types.js';
import {KubeApi} from '../kube/api.js';
import {loadKubeconfig} from '../kube/kubeconfig.js';
import {readClusterConfiguration, patchClusterConfiguration, updateClusterConfiguration, type ExtraVolume} from '../kube/kubeadm-config.js';
import {findResumableState, reencrypt, statePathIn, type ObjectTarget} from '../kube/reencrypt.js';
import {DEFAULT_APISERVER_LOGS, readStartTime, waitForRestart} from '../kube/restart-gate.js';
import {parseEncryptionConfig} from '../kube/encryption-config.js';
import {decrypt as ageDecrypt, encrypt as ageEncrypt} from '../crypto/age.js';
import {inspectManifest} from '../kube/manifest.js';
import {etcdConnectionFromFlags, etcdPrefixFromFlags} from '../etcd/connection.js';
import {scanResources} from '../etcd/scan.js';
import {firewallApplyTask} from '../firewall/tasks.js';
import {etcdTasks} from '../etcd/tasks.js';
import {etcdBackupTask} from '../backup/tasks.js';
import {rotationTasks} from '../kube/rotation-tasks.js';

/**
 * Executors for TaskChanges, by task name. Stages plan tasks as data (node paths, URLs,
 * names; never key material); the engine runs them here, through the host.
 *
 * apiserver-restart-gate — params:
 *   phase: 'before' | 'after' (default 'after')
 *   kubeconfig?: node path (default /etc/kubernetes/admin.conf)
 *   url?: the LOCAL apiserver, e.g. https://10.0.0.10:6443 (default: the kubeconfig's server)
 *   manifestPath?: node path (default /etc/kubernetes/manifests/kube-apiserver.yaml)
 *   timeoutSeconds?: default 180; pollMs?: default 1000
 *   logPaths?: node paths / patterns of the apiserver's log (default /var/log/pods/kube-system_kube-apiserver-*)
 *  Plan it twice in the stage that patches the manifest: phase 'before' as the stage's
 *  FIRST change (its run records the running apiserver's start time; its undo runs LAST,
 *  after the engine restored the stage's files, and waits until the apiserver is ready
 *  again), and phase 'after' after the file writes (waits for the restart and /readyz;
 *  throws with the log's last lines on timeout or crash loop, which undoes the stage).
 *
 * reencrypt — params: kubeconfig?, url?, resources: string[], concurrency? (16), rate?
 *   (objects/s), pageSize? (500), method? ('list-put' | 'patch' | 'put'; default list-put), fingerprint? (a hash identifying the
 *   config; enables resuming an interrupted run's progress), targets?: [{resource, namespace?, name}]
 *   (targeted mode: exactly these objects), or targeted: true with configPath (and
 *   manifestPath?): a raw etcd scan when the task starts lists the objects not on the
 *   config's primary key, and only those are rewritten.
 *
 * kubeadm-config — params: kubeconfig?, url?, extraArgs: {flag: value}, extraVolumes:
 *   [{name, hostPath, mountPath, readOnly?, pathType?}]. Undo restores the previous
 *   ClusterConfiguration text byte for byte (saved in the run directory).
 */

const DEFAULT_KUBECONFIG = '/etc/kubernetes/admin.conf';
const DEFAULT_MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';

/** An API client for the task's kubeconfig (and local apiserver URL). */
export async function apiFor(host: Host, params: Record<string, unknown>): Promise<KubeApi> {
	const connection = await loadKubeconfig(host, str(params, 'kubeconfig') ?? DEFAULT_KUBECONFIG, {server: str(params, 'url')});
	return new KubeApi(host, connection);
}

// ---- apiserver-restart-gate ----

type GateRecord = Record<string, {before?: number}>;

function gateRecordPath(context: TaskContext): string | undefined {
	return context.runDir ? `${context.runDir.dir}/apiserver-gate.json` : undefined;
}

async function readGateRecord(context: TaskContext): Promise<GateRecord> {
	const file = gateRecordPath(context);
	const text = file ? await context.host.readText(file) : undefined;
	if (!text) return {};
	try {
		return JSON.parse(text) as GateRecord;
	} catch {
		return {};
	}
}

function gateOptions(params: Record<string, unknown>, context: TaskContext, label: string) {
	const timeoutSeconds = num(params, 'timeoutSeconds') ?? 180;
	return {
		timeoutMs: timeoutSeconds * 1000,
		pollMs: num(params, 'pollMs') ?? 1000,
		logPaths: strings(params, 'logPaths') ?? DEFAULT_APISERVER_LOGS,
		signal: context.signal,
		onStatus: (status: {state: string; elapsedSeconds: number; detail?: string}) =>
			context.progress({
				label: `${label} (${status.state.replaceAll('-', ' ')}${status.detail ? `: ${status.detail.slice(0, 80)}` : ''})`,
				done: Math.round(status.elapsedSeconds),
				total: timeoutSeconds,
			}),
	};
}

export const apiserverRestartGate: TaskExecutor = {
	async run(params, context) {
		const api = await apiFor(context.host, params);
		const manifestPath = str(params, 'manifestPath') ?? DEFAULT_MANIFEST;
		const phase = str(params, 'phase') ?? 'after';
		if (phase === 'before') {
			const before = await readStartTime(api, context.signal);
			const file = gateRecordPath(context);
			if (file) {
				const record = await readGateRecord(context);
				record[manifestPath] = {before};
				await context.host.writeFileAtomic(file, `${JSON.stringify(record)}\n`, 0o600);
			}
			if (before === undefined) context.log({level: 'warn', text: 'kube-apiserver did not answer before the change; its restart is judged by the manifest time.'});
			return;
		}
		const before = (await readGateRecord(context))[manifestPath]?.before;
		const result = await waitForRestart(api, {
			...gateOptions(params, context, 'waiting for kube-apiserver to restart and pass /readyz'),
			before,
			manifestPath,
		});
		context.log({level: 'success', text: `kube-apiserver restarted and is ready (${result.seconds.toFixed(1)} s).`});
	},
	async undo(params, context) {
		// Only the 'before' mark waits: the engine undoes in reverse order, so it runs after
		// every file of the stage has been restored.
		if ((str(params, 'phase') ?? 'after') !== 'before') return;
		const api = await apiFor(context.host, params);
		const manifestPath = str(params, 'manifestPath') ?? DEFAULT_MANIFEST;
		const before = (await readGateRecord(context))[manifestPath]?.before;
		const stat = await context.host.stat(manifestPath);
		const result = await waitForRestart(api, {
			...gateOptions(params, context, 'waiting for kube-apiserver to be ready with the restored files'),
			before,
			notBefore: stat ? stat.mtimeMs / 1000 - 1 : undefined,
			acceptUnchanged: true,
		});
		context.log({
			level: 'info',
			text: result.restarted
				? `kube-apiserver restarted with the restored files and is ready (${result.seconds.toFixed(1)} s).`
				: 'kube-apiserver is ready; it never left the earlier process.',
		});
	},
};

// ---- reencrypt ----

function targetsParam(params: Record<string, unknown>): ObjectTarget[] | undefined {
	const value = params['targets'];
	if (value === undefined || value === null) return undefined;
	if (!Array.isArray(value)) throw new Error('internal: task param targets must be a list');
	return value.map(item => {
		const target = item as Partial<ObjectTarget>;
		if (typeof target.resource !== 'string' || typeof target.name !== 'string') throw new Error('internal: a target needs resource and name');
		return {resource: target.resource, namespace: typeof target.namespace === 'string' ? target.namespace : undefined, name: target.name};
	});
}

/**
 * Targeted mode with `targeted: true`: scan etcd now (not at planning time, when the config
 * was not yet in force) for the objects not on the primary of the config at `configPath`.
 */
async function scanTargets(params: Record<string, unknown>, context: TaskContext, resources: string[]): Promise<ObjectTarget[]> {
	const configPath = str(params, 'configPath');
	const manifestPath = str(params, 'manifestPath') ?? DEFAULT_MANIFEST;
	if (!configPath) throw new Error('internal: targeted re-encryption needs configPath');
	const text = await context.host.readText(configPath);
	if (text === undefined) throw new Error(`${configPath} does not exist`);
	const {config, errors} = parseEncryptionConfig(text, configPath);
	if (!config) throw new Error(errors.join('; '));
	const manifest = await context.host.readText(manifestPath);
	if (manifest === undefined) throw new Error(`${manifestPath} does not exist`);
	const {flags} = inspectManifest(manifest, manifestPath, 'kube-apiserver');
	context.progress({label: 'scanning etcd for objects not on the primary key'});
	const report = await scanResources(context.host, etcdConnectionFromFlags(flags), resources, {
		config,
		etcdPrefix: etcdPrefixFromFlags(flags),
		pageSize: 5000,
		signal: context.signal,
	});
	const targets: ObjectTarget[] = [];
	for (const scan of report.resources) {
		// Never read "unknown" as "nothing to do".
		if (scan.notOnPrimary === undefined) throw new Error(`the etcd scan of ${scan.resource} could not tell which objects are on the primary key`);
		for (const ref of scan.notOnPrimary) targets.push({resource: scan.resource, namespace: ref.namespace, name: ref.name});
	}
	context.log({level: 'info', text: `The etcd scan found ${targets.length} object(s) not on the primary key.`});
	return targets;
}

export const reencryptTask: TaskExecutor = {
	async run(params, context) {
		const api = await apiFor(context.host, params);
		const resources = strings(params, 'resources') ?? ['secrets'];
		const targets = params['targeted'] === true ? await scanTargets(params, context, resources) : targetsParam(params);
		const fingerprint = str(params, 'fingerprint');
		const statePath = context.runDir ? statePathIn(context.runDir.dir) : undefined;
		const resumeFrom =
			targets === undefined && fingerprint !== undefined
				? await findResumableState(context.host, {fingerprint, resources, exclude: context.runDir?.dir})
				: undefined;
		if (resumeFrom) context.log({level: 'info', text: 'Continuing the re-encryption an earlier run left unfinished.'});
		const method = str(params, 'method');
		const result = await reencrypt(api, {
			resources,
			targets,
			concurrency: num(params, 'concurrency'),
			rate: num(params, 'rate'),
			pageSize: num(params, 'pageSize'),
			method: method === 'patch' || method === 'put' ? method : 'list-put',
			fingerprint,
			statePath,
			resumeFrom,
			signal: context.signal,
			onProgress: progress =>
				context.progress({
					label: `re-encrypting ${progress.resource}`,
					done: progress.done,
					total: progress.total,
					rate: progress.rate,
					etaSeconds: progress.etaSeconds,
				}),
		});
		const parts = Object.entries(result.byResource).map(([resource, count]) => `${count} ${resource}`);
		context.log({
			level: 'success',
			text: `Re-encrypted ${parts.join(', ') || 'nothing'} in ${result.seconds.toFixed(1)} s${result.notFound ? ` (${result.notFound} deleted meanwhile)` : ''}.`,
		});
	},
};

// ---- kubeadm-config ----

function kubeadmBackupPath(context: TaskContext): string | undefined {
	return context.runDir ? context.runDir.backupPath('/kube-system/kubeadm-config/ClusterConfiguration') : undefined;
}

function volumesParam(params: Record<string, unknown>): ExtraVolume[] {
	const value = params['extraVolumes'];
	if (value === undefined || value === null) return [];
	if (!Array.isArray(value)) throw new Error('internal: task param extraVolumes must be a list');
	return value as ExtraVolume[];
}

function argsParam(params: Record<string, unknown>): Record<string, string> {
	const value = params['extraArgs'];
	if (value === undefined || value === null) return {};
	if (typeof value !== 'object' || Array.isArray(value)) throw new Error('internal: task param extraArgs must be a map');
	return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([name, v]) => [name, String(v)]));
}

export const kubeadmConfigTask: TaskExecutor = {
	async run(params, context) {
		const api = await apiFor(context.host, params);
		const patch = {extraArgs: argsParam(params), extraVolumes: volumesParam(params)};
		const backup = kubeadmBackupPath(context);
		const update = await updateClusterConfiguration(api, text => patchClusterConfiguration(text, patch), {signal: context.signal});
		if (!update.changed) {
			context.log({level: 'info', text: 'kube-system/kubeadm-config already holds the settings.'});
			return;
		}
		if (backup) {
			await context.host.writeFileAtomic(backup, update.before, 0o600);
			await context.runDir?.journal({stage: '-', event: 'backup', path: 'kube-system/configmaps/kubeadm-config', backup});
		}
		context.log({level: 'success', text: 'updated kube-system/kubeadm-config ClusterConfiguration (apiServer.extraArgs, extraVolumes)'});
	},
	async undo(params, context) {
		const backup = kubeadmBackupPath(context);
		const before = backup ? await context.host.readText(backup) : undefined;
		if (before === undefined) return; // this run changed nothing
		const api = await apiFor(context.host, params);
		const {text} = await readClusterConfiguration(api, context.signal);
		if (text === before) return;
		await updateClusterConfiguration(api, () => before, {signal: context.signal});
		context.log({level: 'info', text: 'restored kube-system/kubeadm-config ClusterConfiguration'});
	},
};

// ---- recovery-copy ----

/**
 * Write the new config, encrypted in the age format for the operator (an X25519 recipient or
 * a passphrase), before the key it holds is used. params: path, recipient | passphrase,
 * secretContent (the config text: key material, held in memory only, never journaled).
 */
export const recoveryCopyTask: TaskExecutor = {
	async run(params, context) {
		const path = str(params, 'path');
		const content = str(params, 'secretContent');
		const recipient = str(params, 'recipient');
		const passphrase = str(params, 'passphrase');
		if (!path || content === undefined || (!recipient && !passphrase)) throw new Error('internal: recovery-copy needs path, content and a recipient or passphrase');
		const ciphertext = await ageEncrypt(content, recipient ? recipient : {passphrase: passphrase!});
		if (passphrase) {
			// Prove the copy opens with the passphrase before the key is relied on.
			const back = await ageDecrypt(ciphertext, {passphrase});
			if (back.toString('utf8') !== content) throw new Error('the recovery copy did not decrypt back to the config');
		}
		await context.host.writeFileAtomic(path, ciphertext, 0o600);
		context.log({level: 'success', text: `wrote the recovery copy ${path} (age-encrypted): copy it off this node now`});
	},
	// No undo: a recovery copy is kept even when the stage is undone (the key may already
	// have been read by an apiserver with automatic reload).
};

export const tasks: TaskRegistry = {
	'recovery-copy': recoveryCopyTask,
	'apiserver-restart-gate': apiserverRestartGate,
	reencrypt: reencryptTask,
	'kubeadm-config': kubeadmConfigTask,
	'firewall-apply': firewallApplyTask,
	...etcdTasks,
	'etcd-backup': etcdBackupTask,
	...rotationTasks,
};

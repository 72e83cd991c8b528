/**
 * Tasks of the kube domain: the kube-apiserver restart gate, re-encryption through the API,
 * and kubeadm's ClusterConfiguration. Stages plan them with `<task>.change(params, summary)`;
 * the workflow registers them (source/workflow/tasks.ts).
 */
import {defineTask, type TaskContext} from '../engine/contract.js';
import {parseEncryptionConfig} from './encryption-config.js';
import {apiFor, type ApiTarget} from './api.js';
import {APISERVER_MANIFEST} from './defaults.js';
import {readClusterConfiguration, patchClusterConfiguration, updateClusterConfiguration, type ExtraVolume} from './kubeadm-config.js';
import {inspectManifest} from './manifest.js';
import {findResumableState, reencrypt, statePathIn, positionOf, type ObjectTarget, type ReencryptMethod, type TargetSet} from './reencrypt.js';
import {DEFAULT_APISERVER_LOGS, readStartTime, waitForRestart} from './restart-gate.js';
import {defineStaticPodGate, type GateBase} from './static-pod-gate.js';
import {etcdConnectionFromFlags, etcdPrefixFromFlags} from '../etcd/connection.js';
import {scanResources, type ScanOptions} from '../etcd/scan.js';

// ---- apiserver-restart-gate ----

/** `url`: the LOCAL apiserver, e.g. https://10.0.0.10:6443 (default: the kubeconfig's server). */
export type ApiserverGateParams = GateBase & ApiTarget;

export const apiserverRestartGate = defineStaticPodGate<ApiserverGateParams>('apiserver-restart-gate', {
	component: 'kube-apiserver',
	defaultManifest: APISERVER_MANIFEST,
	recordFile: 'apiserver-gate.json',
	waiting: {after: 'kube-apiserver to restart and pass /readyz', restored: 'kube-apiserver to be ready with the restored files'},
	async readStart(params, context) {
		return readStartTime(await apiFor(context.host, params), context.signal);
	},
	async waitReady(params, context, wait) {
		const api = await apiFor(context.host, params);
		return waitForRestart(api, {
			...wait,
			logPaths: params.logPaths ?? DEFAULT_APISERVER_LOGS,
			// Without a recorded start time, the manifest's modification time is the reference.
			...(wait.notBefore === undefined ? {manifestPath: params.manifestPath ?? APISERVER_MANIFEST} : {}),
		});
	},
});

// ---- reencrypt ----

export type ReencryptParams = ApiTarget & {
	resources: string[];
	concurrency?: number;
	/** Objects per second at most. */
	rate?: number;
	pageSize?: number;
	method?: ReencryptMethod;
	/** A hash identifying the config: enables resuming an interrupted run's progress. */
	fingerprint?: string;
	/** Exactly these objects. */
	targets?: ObjectTarget[];
	/**
	 * Targeted from a raw etcd scan when the task starts (not at planning, when the config was
	 * not yet in force): the objects not on the primary of the config at this node path.
	 */
	scanConfigPath?: string;
	manifestPath?: string;
};

/**
 * The objects not on the primary, by resource. Compact: none kept for a resource with nothing on
 * the primary (every object is rewritten, as when encryption is first enabled), one position
 * string per object for a resource partly on it. Listing 100,000 secrets and 100,000
 * configmaps as target objects, twice over, was the largest part of the CLI's peak memory.
 */
async function scanTargets(params: ReencryptParams & {scanConfigPath: string}, context: TaskContext): Promise<TargetSet> {
	const configPath = params.scanConfigPath;
	const manifestPath = params.manifestPath ?? APISERVER_MANIFEST;
	const text = await context.host.readText(configPath);
	if (text === undefined) throw new Error(`${configPath} does not exist`);
	const {config, errors} = parseEncryptionConfig(text, configPath);
	if (!config) throw new Error(errors.join('; '));
	const manifest = await context.host.readText(manifestPath);
	if (manifest === undefined) throw new Error(`${manifestPath} does not exist`);
	const {flags} = inspectManifest(manifest, manifestPath, 'kube-apiserver');
	context.progress({label: 'scanning etcd for objects not on the primary key'});
	const targets: TargetSet = new Map();
	let found = 0;
	const scan = async (resource: string, onNotOnPrimary?: ScanOptions['onNotOnPrimary']) => {
		const [result] = (
			await scanResources(context.host, etcdConnectionFromFlags(flags), [resource], {
				config,
				etcdPrefix: etcdPrefixFromFlags(flags),
				listNotOnPrimary: false,
				onNotOnPrimary,
				signal: context.signal,
			})
		).resources;
		// Never read "unknown" as "nothing to do".
		if (result?.notOnPrimaryCount === undefined) throw new Error(`the etcd scan of ${resource} could not tell which objects are on the primary key`);
		return {total: result.total, notOnPrimary: result.notOnPrimaryCount};
	};
	for (const resource of params.resources) {
		// Count first: with nothing on the primary (encryption just enabled, a key rotated) the
		// whole resource is rewritten and no position is kept (objects created since the scan are
		// already written with the primary; rewriting them too is harmless). Only a resource that
		// is partly on the primary (an interrupted run) is scanned again for its positions.
		const counted = await scan(resource);
		if (counted.notOnPrimary === 0) continue;
		if (counted.notOnPrimary === counted.total) {
			found += counted.total;
			targets.set(resource, {count: counted.total});
			continue;
		}
		const positions = new Set<string>();
		await scan(resource, (_, ref) => positions.add(positionOf(ref.namespace, ref.name)));
		found += positions.size;
		if (positions.size > 0) targets.set(resource, {positions, count: positions.size});
	}
	context.log({level: 'info', text: `The etcd scan found ${found} object(s) not on the primary key.`});
	return targets;
}

export const reencryptTask = defineTask<ReencryptParams>('reencrypt', {
	async run(params, context) {
		const api = await apiFor(context.host, params);
		const {resources, fingerprint} = params;
		const targets = params.scanConfigPath !== undefined ? await scanTargets({...params, scanConfigPath: params.scanConfigPath}, context) : params.targets;
		const statePath = context.runDir ? statePathIn(context.runDir.dir) : undefined;
		const resumeFrom =
			targets === undefined && fingerprint !== undefined
				? await findResumableState(context.host, {fingerprint, resources, exclude: context.runDir?.dir})
				: undefined;
		if (resumeFrom) context.log({level: 'info', text: 'Continuing the re-encryption an earlier run left unfinished.'});
		const result = await reencrypt(api, {
			resources,
			targets,
			concurrency: params.concurrency,
			rate: params.rate,
			pageSize: params.pageSize,
			method: params.method,
			fingerprint,
			statePath,
			resumeFrom,
			signal: context.signal,
			onProgress: progress =>
				context.progress({
					label: `re-encrypting ${progress.resource}, ${progress.inFlight} in flight${progress.adaptive ? ` (adaptive, limit ${progress.limit})` : ''}`,
					done: progress.done,
					total: progress.total,
					rate: progress.rate,
					etaSeconds: progress.etaSeconds,
				}),
		});
		const parts = Object.entries(result.byResource).map(([resource, count]) => `${count} ${resource}`);
		context.log({
			level: 'success',
			text:
				`Re-encrypted ${parts.join(', ') || 'nothing'} in ${result.seconds.toFixed(1)} s${result.notFound ? ` (${result.notFound} deleted meanwhile)` : ''}` +
				`, ${result.concurrency.adaptive ? `adaptive: settled at ${result.concurrency.final} in flight (highest ${result.concurrency.highest})` : `${result.concurrency.final} in flight`}` +
				`${result.throttled ? `, ${result.throttled} throttled answer(s) retried` : ''}.`,
		});
	},
});

// ---- kubeadm-config ----

/** Persist apiServer settings in kubeadm's ClusterConfiguration. Undo restores its previous text byte for byte. */
export type KubeadmConfigParams = ApiTarget & {extraArgs: Record<string, string>; extraVolumes: ExtraVolume[]};

function kubeadmBackupPath(context: TaskContext): string | undefined {
	return context.runDir ? context.runDir.backupPath('/kube-system/kubeadm-config/ClusterConfiguration') : undefined;
}

export const kubeadmConfigTask = defineTask<KubeadmConfigParams>('kubeadm-config', {
	async run(params, context) {
		const api = await apiFor(context.host, params);
		const patch = {extraArgs: params.extraArgs, extraVolumes: params.extraVolumes};
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
});

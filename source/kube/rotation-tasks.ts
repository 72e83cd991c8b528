/**
 * Tasks of key rotation and disable. Each checks at the moment it runs what planning could
 * not know: what the other control planes report, what etcd holds now. Params are plain
 * data: node paths, names, hashes.
 */
import {defineTask, type TaskContext} from '../engine/contract.js';
import {apiFor, type ApiTarget} from './api.js';
import {APISERVER_MANIFEST, CONFIG_DIGEST_ANNOTATION} from './defaults.js';
import {configDigest, parseEncryptionConfig, scannedResources} from './encryption-config.js';
import {inspectManifest} from './manifest.js';
import {etcdConnectionFromFlags, etcdPrefixFromFlags} from '../etcd/connection.js';
import {scanResources} from '../etcd/scan.js';
import type {EncryptionConfig} from './types.js';
import {listControlPlanes, mismatches, publishEntry, readEntries, type NodeEntry} from './rotation-status.js';

async function readConfig(context: TaskContext, path: string): Promise<{text: string; config: EncryptionConfig}> {
	const text = await context.host.readText(path);
	if (text === undefined) throw new Error(`${path} does not exist`);
	const {config, errors} = parseEncryptionConfig(text, path);
	if (!config) throw new Error(errors.join('; '));
	return {text, config};
}

async function apiserverFlags(context: TaskContext, manifestPath: string): Promise<{flags: Record<string, string>; annotations: Record<string, string>}> {
	const text = await context.host.readText(manifestPath);
	if (text === undefined) throw new Error(`${manifestPath} does not exist`);
	const inspected = inspectManifest(text, manifestPath, 'kube-apiserver');
	return {flags: inspected.flags, annotations: inspected.annotations ?? {}};
}

function entry(node: string, phase: string, state: NodeEntry['state'], sha256: string, now: Date): NodeEntry {
	return {node, phase, state, configSha256: sha256, time: now.toISOString()};
}

export type PublishParams = ApiTarget & {node: string; phase: string; state: NodeEntry['state']; configPath: string};

/** Publish this node's step and the sha256 of the config on disk. */
export const rotationPublishTask = defineTask<PublishParams>('rotation-publish', {
	async run(params, context) {
		const {node, phase, state} = params;
		const {text} = await readConfig(context, params.configPath);
		const api = await apiFor(context.host, params);
		const sha = configDigest(text);
		await publishEntry(api, entry(node, phase, state, sha, context.host.now()), context.signal);
		context.log({level: 'info', text: `Published to kube-system/etcd-harden-status: ${node} ${phase} ${state}, config sha256 ${sha.slice(0, 12)}.`});
	},
});

/**
 * Wait until every known control plane reports the sha256 of this node's config; refuse
 * (throw, which undoes the stage) naming the nodes that do not. This node's own report is
 * refreshed first, from its manifest's digest annotation (what its apiserver runs).
 */
export type WaitControlPlanesParams = ApiTarget & {
	node: string;
	phase: string;
	configPath: string;
	manifestPath?: string;
	timeoutSeconds: number;
	pollMs?: number;
	/** How to apply the config elsewhere, for the refusal. */
	bundleHint?: string;
};

export const waitControlPlanesTask = defineTask<WaitControlPlanesParams>('wait-control-planes', {
	async run(params, context) {
		const {node, configPath, timeoutSeconds} = params;
		const manifestPath = params.manifestPath ?? APISERVER_MANIFEST;
		const pollMs = params.pollMs ?? 2000;
		const {text} = await readConfig(context, configPath);
		const sha = configDigest(text);
		const {flags, annotations} = await apiserverFlags(context, manifestPath);
		if (annotations[CONFIG_DIGEST_ANNOTATION] !== sha) {
			throw new Error(`this node's kube-apiserver does not run ${configPath} yet (manifest annotation ${annotations[CONFIG_DIGEST_ANNOTATION]?.slice(0, 12) ?? 'missing'}, file ${sha.slice(0, 12)}): rerun etcd-harden rotate to finish the restart first`);
		}
		const api = await apiFor(context.host, params);
		await publishEntry(api, entry(node, params.phase, 'done', sha, context.host.now()), context.signal);
		const started = Date.now();
		while (true) {
			const controlPlanes = await listControlPlanes(context.host, api, flags, context.signal);
			if (!controlPlanes.includes(node)) controlPlanes.push(node);
			const bad = mismatches(controlPlanes, await readEntries(api, context.signal), sha);
			if (bad.length === 0) {
				context.log({level: 'success', text: `Every control plane (${controlPlanes.join(', ')}) runs config sha256 ${sha.slice(0, 12)}.`});
				return;
			}
			const elapsed = (Date.now() - started) / 1000;
			context.progress({label: `waiting for ${bad.map(item => item.node).join(', ')} to run config sha256 ${sha.slice(0, 12)}`, done: Math.round(elapsed), total: timeoutSeconds});
			if (elapsed >= timeoutSeconds) {
				const hint = params.bundleHint;
				throw new Error(
					`control plane(s) ${bad.map(item => item.node).join(', ')} do not run this node's config (sha256 ${sha.slice(0, 12)}): ` +
						bad.map(item => `${item.node} ${item.reason}`).join('; ') +
						`. Apply the config there first${hint ? `: ${hint}` : ' (etcd-harden rotate --bundle FILE on that node)'}, then rerun.`,
				);
			}
			await context.host.sleep(pollMs, context.signal);
		}
	},
});


/**
 * A raw etcd scan, now: refuse (throw) while any value is stored under one of `labels`
 * (`secretbox:key1`), or with anyEncrypted while any value is encrypted at all.
 */
export type KeysUnusedParams = {
	configPath: string;
	manifestPath?: string;
	labels?: string[];
	anyEncrypted?: boolean;
	/** For the refusal: "prune key1". */
	action?: string;
};

export const keysUnusedTask = defineTask<KeysUnusedParams>('rotation-keys-unused', {
	async run(params, context) {
		const {config} = await readConfig(context, params.configPath);
		const {flags} = await apiserverFlags(context, params.manifestPath ?? APISERVER_MANIFEST);
		const labels = params.labels ?? [];
		const anyEncrypted = params.anyEncrypted === true;
		context.progress({label: 'scanning etcd for values that still use the keys to remove'});
		const report = await scanResources(context.host, etcdConnectionFromFlags(flags), scannedResources(config), {
			config,
			etcdPrefix: etcdPrefixFromFlags(flags),
			pageSize: 5000,
			signal: context.signal,
		});
		const using: string[] = [];
		let total = 0;
		for (const scan of report.resources) {
			for (const [label, count] of Object.entries(scan.byKey)) {
				if (count > 0 && (anyEncrypted || labels.includes(label))) {
					using.push(`${count} ${scan.resource} on ${label}`);
					total += count;
				}
			}
			if (scan.unknown > 0) {
				using.push(`${scan.unknown} ${scan.resource} in an unknown format`);
				total += scan.unknown;
			}
		}
		const action = params.action ?? 'remove the keys';
		if (total > 0) {
			throw new Error(
				`refusing to ${action}: ${total} object(s) in etcd still use ${anyEncrypted ? 'encryption' : labels.join(', ')} (${using.join('; ')}). ` +
					'Run the reencrypt stage first (etcd-harden rotate, or etcd-harden disable, again), then retry.',
			);
		}
		context.log({level: 'success', text: `The etcd scan found no object using ${anyEncrypted ? 'any key' : labels.join(', ')} (${report.keysScanned} values).`});
	},
});

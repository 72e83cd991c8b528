/**
 * Task executors for key rotation and disable (registered in source/engine/tasks.ts). Each
 * checks at the moment it runs what planning could not know: what the other control planes
 * report, what etcd holds now. Params are plain data: node paths, names, hashes; the only
 * key material is a bundle's secretContent, held in memory and never journaled or logged.
 */
import type {TaskContext, TaskExecutor} from '../engine/engine.js';
import type {Host} from '../host/types.js';
import {KubeApi} from './api.js';
import {loadKubeconfig} from './kubeconfig.js';
import {encrypt as ageEncrypt, decrypt as ageDecrypt} from '../crypto/age.js';
import {configDigest, parseEncryptionConfig} from './encryption-config.js';
import {inspectManifest} from './manifest.js';
import {etcdConnectionFromFlags, etcdPrefixFromFlags} from '../etcd/connection.js';
import {scanResources} from '../etcd/scan.js';
import type {EncryptionConfig} from '../stages/facts.js';
import {listControlPlanes, mismatches, publishEntry, readEntries, type NodeEntry} from './rotation-status.js';

/** An API client for the task's kubeconfig (as engine/tasks.ts does; not imported from there to avoid an import cycle). */
async function apiFor(host: Host, params: Record<string, unknown>): Promise<KubeApi> {
	const connection = await loadKubeconfig(host, str(params, 'kubeconfig') ?? '/etc/kubernetes/admin.conf', {server: str(params, 'url')});
	return new KubeApi(host, connection);
}

const DEFAULT_MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const digestAnnotation = 'etcd-harden.io/encryption-config-sha256';

function str(params: Record<string, unknown>, name: string): string | undefined {
	const value = params[name];
	if (value === undefined || value === null) return undefined;
	if (typeof value !== 'string') throw new Error(`internal: task param ${name} must be a string`);
	return value;
}

function need(params: Record<string, unknown>, name: string): string {
	const value = str(params, name);
	if (value === undefined) throw new Error(`internal: task param ${name} is required`);
	return value;
}

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

/** Publish this node's step and the sha256 of the config on disk. params: kubeconfig?, node, phase, state, configPath. */
export const rotationPublishTask: TaskExecutor = {
	async run(params, context) {
		const node = need(params, 'node');
		const phase = need(params, 'phase');
		const state = str(params, 'state') === 'started' ? 'started' : 'done';
		const {text} = await readConfig(context, need(params, 'configPath'));
		const api = await apiFor(context.host, params);
		const sha = configDigest(text);
		await publishEntry(api, entry(node, phase, state, sha, context.host.now()), context.signal);
		context.log({level: 'info', text: `Published to kube-system/etcd-harden-status: ${node} ${phase} ${state}, config sha256 ${sha.slice(0, 12)}.`});
	},
};

/**
 * Wait until every known control plane reports the sha256 of this node's config; refuse
 * (throw, which undoes the stage) naming the nodes that do not. This node's own report is
 * refreshed first, from its manifest's digest annotation (what its apiserver runs).
 * params: kubeconfig?, node, phase, configPath, manifestPath?, timeoutSeconds (default 60), pollMs (2000), bundleHint?
 */
export const waitControlPlanesTask: TaskExecutor = {
	async run(params, context) {
		const node = need(params, 'node');
		const configPath = need(params, 'configPath');
		const manifestPath = str(params, 'manifestPath') ?? DEFAULT_MANIFEST;
		const timeoutSeconds = typeof params['timeoutSeconds'] === 'number' ? params['timeoutSeconds'] : 60;
		const pollMs = typeof params['pollMs'] === 'number' ? params['pollMs'] : 2000;
		const {text} = await readConfig(context, configPath);
		const sha = configDigest(text);
		const {flags, annotations} = await apiserverFlags(context, manifestPath);
		if (annotations[digestAnnotation] !== sha) {
			throw new Error(`this node's kube-apiserver does not run ${configPath} yet (manifest annotation ${annotations[digestAnnotation]?.slice(0, 12) ?? 'missing'}, file ${sha.slice(0, 12)}): rerun etcd-harden rotate to finish the restart first`);
		}
		const api = await apiFor(context.host, params);
		await publishEntry(api, entry(node, need(params, 'phase'), 'done', sha, context.host.now()), context.signal);
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
				const hint = str(params, 'bundleHint');
				throw new Error(
					`control plane(s) ${bad.map(item => item.node).join(', ')} do not run this node's config (sha256 ${sha.slice(0, 12)}): ` +
						bad.map(item => `${item.node} ${item.reason}`).join('; ') +
						`. Apply the config there first${hint ? `: ${hint}` : ' (etcd-harden rotate --bundle FILE on that node)'}, then rerun.`,
				);
			}
			await context.host.sleep(pollMs, context.signal);
		}
	},
};

function scannable(config: EncryptionConfig): string[] {
	const names = new Set<string>();
	for (const rule of config.resources) for (const resource of rule.resources) if (!resource.includes('*')) names.add(resource);
	return names.size > 0 ? [...names] : ['secrets'];
}

/**
 * A raw etcd scan, now: refuse (throw) while any value is stored under one of `labels`
 * (`secretbox:key1`), or with anyEncrypted while any value is encrypted at all.
 * params: configPath, manifestPath?, labels?: string[], anyEncrypted?: boolean, action (for the message).
 */
export const keysUnusedTask: TaskExecutor = {
	async run(params, context) {
		const {config} = await readConfig(context, need(params, 'configPath'));
		const {flags} = await apiserverFlags(context, str(params, 'manifestPath') ?? DEFAULT_MANIFEST);
		const labels = Array.isArray(params['labels']) ? (params['labels'] as string[]) : [];
		const anyEncrypted = params['anyEncrypted'] === true;
		context.progress({label: 'scanning etcd for values that still use the keys to remove'});
		const report = await scanResources(context.host, etcdConnectionFromFlags(flags), scannable(config), {
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
		const action = str(params, 'action') ?? 'remove the keys';
		if (total > 0) {
			throw new Error(
				`refusing to ${action}: ${total} object(s) in etcd still use ${anyEncrypted ? 'encryption' : labels.join(', ')} (${using.join('; ')}). ` +
					'Run the reencrypt stage first (etcd-harden rotate, or etcd-harden disable, again), then retry.',
			);
		}
		context.log({level: 'success', text: `The etcd scan found no object using ${anyEncrypted ? 'any key' : labels.join(', ')} (${report.keysScanned} values).`});
	},
};

/**
 * The rotation bundle: the config this node now runs, age-encrypted for the operator's
 * recipient or passphrase, for the other control planes (and as the recovery copy of a new
 * key). params: path, recipient | passphrase, secretContent, command (shown).
 */
export const rotationBundleTask: TaskExecutor = {
	async run(params, context) {
		const path = need(params, 'path');
		const content = need(params, 'secretContent');
		const recipient = str(params, 'recipient');
		const passphrase = str(params, 'passphrase');
		if (!recipient && !passphrase) throw new Error('internal: a bundle needs a recipient or a passphrase');
		const ciphertext = await ageEncrypt(content, recipient ? recipient : {passphrase: passphrase!});
		if (passphrase) {
			const back = await ageDecrypt(ciphertext, {passphrase});
			if (back.toString('utf8') !== content) throw new Error('the bundle did not decrypt back to the config');
		}
		await context.host.writeFileAtomic(path, ciphertext, 0o600);
		context.log({level: 'success', text: `Wrote the rotation bundle ${path} (age-encrypted; it is also the recovery copy of the keys).`});
		const command = str(params, 'command');
		if (command) context.log({level: 'info', text: `On every other control-plane node, copy it there and run: ${command}`});
	},
	// No undo: like the recovery copy, the bundle is kept.
};

export const rotationTasks = {
	'rotation-publish': rotationPublishTask,
	'wait-control-planes': waitControlPlanesTask,
	'rotation-keys-unused': keysUnusedTask,
	'rotation-bundle': rotationBundleTask,
};

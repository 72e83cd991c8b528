/**
 * kubeadm persistence: the `kubeadm-config` ConfigMap (kube-system) holds the
 * ClusterConfiguration that `kubeadm upgrade` regenerates the static pod manifests from. The
 * encryption flag and the config directory's hostPath volume go into `apiServer.extraArgs`
 * and `apiServer.extraVolumes` there, so an upgrade keeps them.
 *
 * v1beta2 and v1beta3 write extraArgs as a map (`name: value`); v1beta4 as a list of
 * `{name, value}`. The YAML is edited with the Document API (comments, order and untouched
 * lines stay as they were). Patching is idempotent: the same input gives the same text.
 */
import {isMap, isSeq, type Document, type YAMLMap, type YAMLSeq} from 'yaml';
import {ConflictError, KubeApi, type KubeObject} from './api.js';
import {editYaml, parseYaml} from './yaml-edit.js';

export const KUBEADM_CONFIG_PATH = '/api/v1/namespaces/kube-system/configmaps/kubeadm-config';

export type ExtraVolume = {
	name: string;
	hostPath: string;
	mountPath: string;
	readOnly?: boolean;
	pathType?: string;
};

export type ClusterConfigPatch = {
	/** Flag name without dashes -> value, e.g. {"encryption-provider-config": "/etc/kubernetes/enc/config.yaml"}. */
	extraArgs?: Record<string, string>;
	extraVolumes?: ExtraVolume[];
};

export class KubeadmConfigError extends Error {
	override name = 'KubeadmConfigError';
}

/** The volume for an encryption config directory: hostPath = mountPath, read-only, DirectoryOrCreate. */
export function encryptionConfigVolume(name: string, directory: string): ExtraVolume {
	return {name, hostPath: directory, mountPath: directory, readOnly: true, pathType: 'DirectoryOrCreate'};
}

/** "kubeadm.k8s.io/v1beta3" -> "v1beta3". */
export function clusterConfigVersion(text: string): string | undefined {
	const parsed = parseYaml(text);
	if (parsed.problem) return undefined;
	const apiVersion = parsed.doc.get('apiVersion');
	if (typeof apiVersion !== 'string') return undefined;
	return apiVersion.split('/')[1];
}

function listForm(version: string): boolean {
	// v1beta4 (kubeadm 1.31+) and later use [{name, value}].
	const match = /^v1beta(\d+)$/.exec(version);
	if (match) return Number(match[1]) >= 4;
	return /^v\d+$/.test(version);
}

function ensureMap(doc: Document, parent: YAMLMap, key: string): YAMLMap {
	const existing = parent.get(key, true);
	if (isMap(existing)) {
		// kubeadm stores an unset section as the flow-style `{}` (`apiServer: {}` from v1beta4 on):
		// what goes into it is written in block style, like the rest of kubeadm's output.
		if (existing.flow && existing.items.length === 0) existing.flow = false;
		return existing;
	}
	const created = doc.createNode({}) as YAMLMap;
	parent.set(key, created);
	return created;
}

function ensureSeq(doc: Document, parent: YAMLMap, key: string): YAMLSeq {
	const existing = parent.get(key, true);
	if (isSeq(existing)) return existing;
	const created = doc.createNode([]) as YAMLSeq;
	parent.set(key, created);
	return created;
}

function volumeNode(volume: ExtraVolume): Record<string, unknown> {
	const node: Record<string, unknown> = {name: volume.name, hostPath: volume.hostPath, mountPath: volume.mountPath};
	if (volume.readOnly !== undefined) node['readOnly'] = volume.readOnly;
	if (volume.pathType !== undefined) node['pathType'] = volume.pathType;
	return node;
}

/**
 * Patch a ClusterConfiguration's text. Returns the text unchanged when it already holds the
 * args and volumes. Throws KubeadmConfigError for text that is not a ClusterConfiguration.
 */
export function patchClusterConfiguration(text: string, patch: ClusterConfigPatch): string {
	const parsed = parseYaml(text);
	if (parsed.problem) {
		throw new KubeadmConfigError(`kubeadm-config ClusterConfiguration is not valid YAML (line ${parsed.problem.line ?? '?'}: ${parsed.problem.message})`);
	}
	const kind = parsed.doc.get('kind');
	const version = clusterConfigVersion(text);
	if (kind !== 'ClusterConfiguration' || version === undefined) {
		throw new KubeadmConfigError(`kubeadm-config ClusterConfiguration has kind ${JSON.stringify(kind)} and apiVersion ${JSON.stringify(parsed.doc.get('apiVersion'))}; expected a kubeadm.k8s.io ClusterConfiguration`);
	}
	const useList = listForm(version);
	return editYaml(text, doc => {
		const root = doc.contents;
		if (!isMap(root)) throw new KubeadmConfigError('kubeadm-config ClusterConfiguration is not a mapping');
		const apiServer = ensureMap(doc, root, 'apiServer');
		for (const [name, value] of Object.entries(patch.extraArgs ?? {})) {
			if (useList) {
				const args = ensureSeq(doc, apiServer, 'extraArgs');
				const entries = args.items.filter(item => isMap(item) && item.get('name') === name) as YAMLMap[];
				if (entries.length === 1 && entries[0]!.get('value') === value) continue;
				if (entries.length >= 1) {
					entries[0]!.set('value', value);
					for (const extra of entries.slice(1)) args.items.splice(args.items.indexOf(extra), 1);
				} else {
					args.add(doc.createNode({name, value}));
				}
			} else {
				const args = ensureMap(doc, apiServer, 'extraArgs');
				if (args.get(name) !== value) args.set(name, value);
			}
		}
		for (const volume of patch.extraVolumes ?? []) {
			const volumes = ensureSeq(doc, apiServer, 'extraVolumes');
			const wanted = volumeNode(volume);
			const index = volumes.items.findIndex(item => isMap(item) && item.get('name') === volume.name);
			if (index === -1) {
				volumes.add(doc.createNode(wanted));
				continue;
			}
			const existing = volumes.items[index] as YAMLMap;
			for (const [key, value] of Object.entries(wanted)) {
				if (existing.get(key) !== value) existing.set(key, value);
			}
		}
	});
}

/** What the ClusterConfiguration holds for the apiserver: flags (both forms) and volumes. */
export function readApiServerSettings(text: string): {extraArgs: Record<string, string>; extraVolumes: ExtraVolume[]} {
	const parsed = parseYaml(text);
	if (parsed.problem) throw new KubeadmConfigError(`kubeadm-config ClusterConfiguration is not valid YAML: ${parsed.problem.message}`);
	const js = (parsed.doc.toJS() ?? {}) as {apiServer?: {extraArgs?: unknown; extraVolumes?: unknown}};
	const extraArgs: Record<string, string> = {};
	const args = js.apiServer?.extraArgs;
	if (Array.isArray(args)) {
		for (const item of args as Array<{name?: unknown; value?: unknown}>) {
			if (typeof item?.name === 'string') extraArgs[item.name] = String(item.value ?? '');
		}
	} else if (args && typeof args === 'object') {
		for (const [name, value] of Object.entries(args)) extraArgs[name] = String(value);
	}
	const extraVolumes = Array.isArray(js.apiServer?.extraVolumes) ? (js.apiServer.extraVolumes as ExtraVolume[]) : [];
	return {extraArgs, extraVolumes};
}

type ConfigMap = KubeObject & {data?: Record<string, string>};

export type KubeadmConfigUpdate = {
	/** False when the ConfigMap already held the settings (nothing was written). */
	changed: boolean;
	/** ClusterConfiguration text before the change (for undo). */
	before: string;
	after: string;
};

/** Read the kubeadm-config ConfigMap's ClusterConfiguration text. */
export async function readClusterConfiguration(api: KubeApi, signal?: AbortSignal): Promise<{configMap: ConfigMap; text: string}> {
	const configMap = await api.get<ConfigMap>(KUBEADM_CONFIG_PATH, {signal});
	const text = configMap.data?.['ClusterConfiguration'];
	if (typeof text !== 'string') throw new KubeadmConfigError('kube-system/kubeadm-config has no ClusterConfiguration key');
	return {configMap, text};
}

/**
 * Rewrite the ClusterConfiguration with `edit` and PUT it back with its resourceVersion;
 * on a 409 re-read and re-apply the edit.
 */
export async function updateClusterConfiguration(
	api: KubeApi,
	edit: (text: string) => string,
	options: {signal?: AbortSignal; attempts?: number} = {},
): Promise<KubeadmConfigUpdate> {
	const attempts = options.attempts ?? 10;
	for (let attempt = 1; ; attempt++) {
		const {configMap, text} = await readClusterConfiguration(api, options.signal);
		const after = edit(text);
		if (after === text) return {changed: false, before: text, after};
		const updated: ConfigMap = {...configMap, data: {...configMap.data, ClusterConfiguration: after}};
		try {
			await api.put(KUBEADM_CONFIG_PATH, updated, {signal: options.signal});
			return {changed: true, before: text, after};
		} catch (error) {
			if (error instanceof ConflictError && attempt < attempts) continue;
			throw error;
		}
	}
}

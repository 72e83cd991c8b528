/**
 * The rotation status every control-plane node publishes to the ConfigMap
 * kube-system/etcd-harden-status: per node, the step it is at and the sha256 of the
 * encryption config its kube-apiserver runs. Names and hashes only, never key material.
 * Also: which control planes exist (etcd members, Nodes with the control-plane role).
 */
import {hostname} from 'node:os';
import type {Host} from '../host/types.js';
import {KubeApi, NotFoundError} from './api.js';
import {loadKubeconfig} from './kubeconfig.js';
import {etcdctlJson} from '../etcd/etcdctl.js';
import {etcdConnectionFromFlags} from '../etcd/connection.js';

export const statusNamespace = 'kube-system';
export const statusConfigMap = 'etcd-harden-status';
const configMapPath = `/api/v1/namespaces/${statusNamespace}/configmaps/${statusConfigMap}`;

export type NodeEntry = {
	node: string;
	/** prepare | promote | prune | bundle | disable-identity | disable-remove */
	phase: string;
	/** started: the node is about to change its config; done: its apiserver runs configSha256. */
	state: 'started' | 'done';
	configSha256: string;
	/** ISO time of the report. */
	time: string;
};

export type RotationFacts = {
	/** This node's name (--node-name, else etcd's --name, else the host name). */
	node: string;
	/** Reports by node name. */
	entries: Record<string, NodeEntry>;
	/** Known control planes: etcd members and Nodes with the control-plane role. */
	controlPlanes: string[];
	/** Set when the ConfigMap or the control planes could not be read. */
	problem?: string;
};

export function parseEntries(data: Record<string, string> | undefined): Record<string, NodeEntry> {
	const entries: Record<string, NodeEntry> = {};
	for (const [node, text] of Object.entries(data ?? {})) {
		try {
			const value = JSON.parse(text) as Partial<NodeEntry>;
			if (typeof value.configSha256 === 'string' && typeof value.phase === 'string') {
				entries[node] = {node, phase: value.phase, state: value.state === 'started' ? 'started' : 'done', configSha256: value.configSha256, time: String(value.time ?? '')};
			}
		} catch {
			// A foreign or damaged entry is ignored (it counts as "not reported").
		}
	}
	return entries;
}

export async function readEntries(api: KubeApi, signal?: AbortSignal): Promise<Record<string, NodeEntry>> {
	try {
		const configMap = await api.get<{data?: Record<string, string>}>(configMapPath, {signal});
		return parseEntries(configMap.data);
	} catch (error) {
		if (error instanceof NotFoundError) return {};
		throw error;
	}
}

/** Write this node's entry (merge patch of one data key; the ConfigMap is created when missing). */
export async function publishEntry(api: KubeApi, entry: NodeEntry, signal?: AbortSignal): Promise<void> {
	const data = {[entry.node]: JSON.stringify(entry)};
	try {
		await api.patch(configMapPath, {data}, {signal});
	} catch (error) {
		if (!(error instanceof NotFoundError)) throw error;
		await api.requestJson('POST', `/api/v1/namespaces/${statusNamespace}/configmaps`, {
			body: {apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: statusConfigMap, namespace: statusNamespace}, data},
			signal,
		});
	}
}

/** etcd member names and Nodes labelled as control planes, sorted, without duplicates. */
export async function listControlPlanes(host: Host, api: KubeApi, apiserverFlags: Record<string, string>, signal?: AbortSignal): Promise<string[]> {
	const names = new Set<string>();
	const members = await etcdctlJson<{members?: Array<{name?: string}>}>(host, etcdConnectionFromFlags(apiserverFlags), ['member', 'list'], {readOnly: true, signal});
	for (const member of members.members ?? []) if (member.name) names.add(member.name);
	for (const label of ['node-role.kubernetes.io/control-plane', 'node-role.kubernetes.io/master']) {
		const nodes = await api.get<{items?: Array<{metadata: {name: string}}>}>('/api/v1/nodes', {query: {labelSelector: label}, signal});
		for (const node of nodes.items ?? []) names.add(node.metadata.name);
	}
	return [...names].sort();
}

/** This node's name: the flag, else etcd's --name (kubeadm sets it to the node name), else the host name. */
export function nodeNameFrom(explicit: string | undefined, etcdFlags: Record<string, string>): string {
	return explicit ?? etcdFlags['name'] ?? hostname();
}

export async function discoverRotation(
	host: Host,
	kubeconfig: string,
	apiserverFlags: Record<string, string>,
	node: string,
): Promise<RotationFacts> {
	try {
		const api = new KubeApi(host, await loadKubeconfig(host, kubeconfig), {retries: 1, timeoutMs: 10_000});
		const entries = await readEntries(api);
		const controlPlanes = await listControlPlanes(host, api, apiserverFlags);
		return {node, entries, controlPlanes};
	} catch (error) {
		return {node, entries: {}, controlPlanes: [], problem: `cannot read the rotation status (${statusNamespace}/${statusConfigMap}) or the control planes: ${(error as Error).message.split('\n')[0]}`};
	}
}

/** The control planes whose report differs from `sha256` (or that have not reported), with why. */
export function mismatches(controlPlanes: readonly string[], entries: Record<string, NodeEntry>, sha256: string): Array<{node: string; reason: string}> {
	const out: Array<{node: string; reason: string}> = [];
	for (const node of controlPlanes) {
		const entry = entries[node];
		if (!entry) out.push({node, reason: 'has not reported'});
		else if (entry.configSha256 !== sha256) out.push({node, reason: `runs config sha256 ${entry.configSha256.slice(0, 12)} (${entry.phase} ${entry.state})`});
	}
	return out;
}

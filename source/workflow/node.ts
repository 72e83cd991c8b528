/**
 * How the workflows read the node: the files (always), and the running control plane when
 * etcd-harden runs on the node itself (no --root). Each workflow says what it needs.
 */
import type {Answers, DiscoveryPurpose} from '../engine/contract.js';
import type {Host} from '../host/types.js';
import {discover, planDiscoveryOptions, verifyDiscoveryOptions} from '../discover/files.js';
import {discoverLive} from '../discover/live.js';
import {ADMIN_KUBECONFIG} from '../kube/defaults.js';
import {discoverRotation, nodeNameFrom} from '../kube/rotation-status.js';
import type {Facts} from '../stages/facts.js';

/** Where and how to look: from the command line, as plain typed values. */
export type NodeTarget = {
	/** --root: a copied tree, so there is no live control plane to ask. */
	root?: string;
	/** --kubeconfig (default admin.conf). */
	kubeconfig?: string;
	/** --deep: decrypt every raw etcd value, not a sample. */
	deep: boolean;
	/** --node-name: this node in kube-system/etcd-harden-status. */
	nodeName?: string;
};

export type Discovery = (host: Host, runAnswers?: Answers, purpose?: DiscoveryPurpose) => Promise<Facts>;

/**
 * File facts, plus the live control plane (apiserver, kubeadm-config, raw etcd values) on
 * the node itself, plus the control planes' rotation reports when `rotation` is set.
 * For verification the engine passes the run's answers, so discovery looks where this run
 * wrote (a config path the apiserver flag does not name yet); for planning, so it also reads
 * what an answer points at (an existing file at the chosen config path, to merge or refuse).
 */
export function nodeDiscovery(target: NodeTarget, rotation: boolean): Discovery {
	// Before anything is applied the live control plane does not change under the run, so
	// the stages' planning shares one live read per distinct set of file facts (a planned
	// manifest change reads again). After applying, every read is fresh.
	const planned = new Map<string, Promise<Facts>>();
	const live = async (host: Host, facts: Facts): Promise<Facts> => {
		const read = await discoverLive(host, facts, {kubeconfig: target.kubeconfig, deep: target.deep});
		if (!rotation) return read;
		const node = nodeNameFrom(target.nodeName, read.etcd.flags);
		return {...read, rotation: await discoverRotation(host, read.cluster?.kubeconfig ?? target.kubeconfig ?? ADMIN_KUBECONFIG, read.apiserver.flags, node)};
	};
	return async (host, runAnswers, purpose = 'verify') => {
		const options = runAnswers ? (purpose === 'plan' ? planDiscoveryOptions(runAnswers) : verifyDiscoveryOptions(runAnswers)) : {};
		const facts = await discover(host, options);
		if (target.root !== undefined) return facts;
		if (purpose !== 'plan') return live(host, facts);
		const key = JSON.stringify(facts);
		let read = planned.get(key);
		if (read === undefined) {
			read = live(host, facts);
			planned.set(key, read);
			read.catch(() => planned.delete(key));
		}
		return read;
	};
}

/** The files alone (a backup needs the etcd endpoints and the config, not a scan of etcd). */
export const fileDiscovery: Discovery = host => discover(host);

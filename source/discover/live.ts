/**
 * Live discovery: what the running control plane says, read-only, through the host (GET
 * requests and `etcdctl get`, both of which also run under --dry-run). Added to the file
 * facts when etcd-harden runs on the node itself (no --root): the apiserver's readiness and
 * version, the kubeadm-config ClusterConfiguration, and a classification of every raw etcd
 * value of the configured resources.
 */
import type {Host} from '../host/types.js';
import {KubeApi, NotFoundError} from '../kube/api.js';
import {loadKubeconfig} from '../kube/kubeconfig.js';
import {readClusterConfiguration} from '../kube/kubeadm-config.js';
import {checkReady} from '../kube/restart-gate.js';
import {etcdConnectionFromFlags, etcdPrefixFromFlags} from '../etcd/connection.js';
import {scanResources, scanIsClean} from '../etcd/scan.js';
import {scannedResources} from '../kube/encryption-config.js';
import {ADMIN_KUBECONFIG} from '../kube/defaults.js';
import {discoverFirewall} from './firewall.js';
import type {AtRestFacts, AtRestResource, ClusterFacts, Facts} from '../stages/facts.js';
import {discoverEtcdLive} from './etcd.js';
import {discoverHistory} from './history.js';

export type LiveOptions = {
	kubeconfig?: string;
	/** Decrypt every value instead of a sample. */
	deep?: boolean;
};

export async function discoverLive(host: Host, fileFacts: Facts, options: LiveOptions = {}): Promise<Facts> {
	const facts = await discoverEtcdLive(host, fileFacts);
	const cluster = await discoverCluster(host, options.kubeconfig ?? ADMIN_KUBECONFIG);
	const atRest = await discoverAtRest(host, facts, options.deep ?? false);
	// An image without a version tag (a digest, a private registry's naming): /version tells.
	const apiserver = facts.apiserver.version || !cluster.version ? facts.apiserver : {...facts.apiserver, version: cluster.version};
	const firewall = await discoverFirewall(host, {...facts, cluster}, {kubeconfig: options.kubeconfig});
	const history = await discoverHistory(host, facts);
	return {...facts, apiserver, cluster, atRest, firewall, ...(history ? {history} : {})};
}


async function discoverCluster(host: Host, kubeconfig: string): Promise<ClusterFacts> {
	let api: KubeApi;
	try {
		api = new KubeApi(host, await loadKubeconfig(host, kubeconfig), {retries: 0, timeoutMs: 10_000});
	} catch (error) {
		return {kubeconfig, reachable: false, ready: false, problem: (error as Error).message};
	}
	const server = api.connection.server;
	const ready = await checkReady(api);
	if (!ready.reachable) {
		return {
			kubeconfig,
			server,
			reachable: false,
			ready: false,
			problem: `kube-apiserver at ${server} does not answer (${ready.detail}). Fix the control plane first: etcd-harden only changes a cluster it can verify.`,
		};
	}
	const facts: ClusterFacts = {kubeconfig, server, reachable: true, ready: ready.ready};
	if (!ready.ready) facts.problem = `kube-apiserver at ${server} is not ready: ${ready.detail}`;
	try {
		const version = await api.get<{gitVersion?: string}>('/version');
		facts.version = version.gitVersion?.replace(/^v/, '').replace(/[-+].*$/, '');
	} catch {
		// The manifest's image tag remains the version source.
	}
	try {
		facts.kubeadmConfig = (await readClusterConfiguration(api)).text;
	} catch (error) {
		if (!(error instanceof NotFoundError)) facts.problem ??= `cannot read kube-system/kubeadm-config: ${(error as Error).message}`;
	}
	return facts;
}

async function discoverAtRest(host: Host, facts: Facts, deep: boolean): Promise<AtRestFacts> {
	const flags = facts.apiserver.flags;
	let connection;
	try {
		connection = etcdConnectionFromFlags(flags);
	} catch (error) {
		return {resources: [], problem: (error as Error).message};
	}
	try {
		const report = await scanResources(host, connection, scannedResources(facts.encryption.config), {
			pageSize: 5000,
			etcdPrefix: etcdPrefixFromFlags(flags),
			config: facts.encryption.config,
			verify: facts.encryption.config ? {deep, samplePerKey: 20, maxFailures: 20} : undefined,
			maxListed: 20,
			// Discovery reports how many objects are off the primary; the re-encryption lists them itself.
			listNotOnPrimary: false,
		});
		const resources: AtRestResource[] = report.resources.map(scan => ({
			resource: scan.resource,
			total: scan.total,
			byKey: {...scan.byKey, ...(scan.plaintext ? {plaintext: scan.plaintext} : {}), ...(scan.unknown ? {unknown: scan.unknown} : {})},
			plaintext: scan.plaintext,
			unknown: scan.unknown,
			primary: scan.primary,
			notOnPrimary: scan.notOnPrimaryCount ?? 0,
			keyNotInConfig: scan.keyNotInConfig ?? 0,
			decrypt: scan.verification
				? {checked: scan.verification.checked, failed: scan.verification.failed, failures: scan.verification.failures}
				: undefined,
			clean: scanIsClean(scan),
		}));
		return {resources};
	} catch (error) {
		return {
			resources: [],
			problem: `cannot scan etcd at ${connection.endpoints.join(',')}: ${(error as Error).message.split('\n')[0]}. Check that etcdctl is installed and the apiserver's etcd client certificate is readable.`,
		};
	}
}

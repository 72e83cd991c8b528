/**
 * What the monitor reads, read-only, through the host: etcd's log (the static pod's CRI log
 * under /var/log/pods, or --etcd-log), the firewall's DROP counters (`iptables-save -c`, both
 * variants and families) and the kernel log's drop lines (`dmesg`), kube-apiserver's /metrics
 * (with the admin kubeconfig), etcd's /metrics (--listen-metrics-urls, else the client URL with
 * the health-check client certificate), and the certificates the manifests name.
 */
import {posix} from 'node:path';
import type {Host} from '../host/types.js';
import {KubeApi} from '../kube/api.js';
import {loadKubeconfig} from '../kube/kubeconfig.js';
import {ADMIN_KUBECONFIG} from '../kube/defaults.js';
import {CHAIN, LOG_PREFIX, variantCommands} from '../firewall/iptables.js';
import {TABLE_REF} from '../firewall/nft.js';
import {parseEtcdLog} from '../monitor/etcd-log.js';
import {isOwnProbe} from '../etcd/own-probes.js';
import {dropCounter, loggedDrops} from '../monitor/firewall-drops.js';
import {parseExposition, type Sample} from '../monitor/prom-text.js';
import {logReadStart, type CertInput, type Collected, type MonitorInputs, type MonitorState} from '../monitor/signals.js';
import type {Facts} from '../stages/facts.js';

export const POD_LOG_DIR = '/var/log/pods';

export type MonitorSources = {
	/** --etcd-log: a file instead of the static pod's log. */
	etcdLog?: string;
	kubeconfig?: string;
};

const firstLine = (error: unknown): string => (error instanceof Error ? error.message : String(error)).split('\n')[0]!;

/** kubeadm's etcd static pod log: /var/log/pods/kube-system_etcd-<node>_<uid>/etcd/<n>.log, the newest. */
export async function findEtcdPodLog(host: Host): Promise<string | undefined> {
	const pods = (await host.listDir(POD_LOG_DIR)) ?? [];
	let best: {path: string; mtime: number} | undefined;
	for (const pod of pods.filter(name => name.startsWith('kube-system_etcd-'))) {
		const dir = posix.join(POD_LOG_DIR, pod, 'etcd');
		for (const file of (await host.listDir(dir)) ?? []) {
			if (!/^\d+\.log$/.test(file)) continue;
			const stat = await host.stat(posix.join(dir, file));
			if (stat?.isFile && (!best || stat.mtimeMs > best.mtime)) best = {path: posix.join(dir, file), mtime: stat.mtimeMs};
		}
	}
	return best?.path;
}

async function readEtcdLog(host: Host, sources: MonitorSources, previous: MonitorState | undefined): Promise<MonitorInputs['etcdLog']> {
	const path = sources.etcdLog ?? (await findEtcdPodLog(host));
	if (!path) return {source: `${POD_LOG_DIR}/kube-system_etcd-*/etcd/*.log`, problem: `no etcd pod log under ${POD_LOG_DIR}: pass --etcd-log FILE (where this node's etcd logs go)`};
	try {
		const data = await host.readFile(path);
		if (data === undefined) return {source: path, problem: `${path} does not exist: check --etcd-log`};
		const start = logReadStart(previous, path, data.length);
		// Start at a line boundary when reading only the tail.
		let from = start;
		if (start > 0 && previous?.etcdLog?.offset !== start) from = data.indexOf(0x0a, start) + 1 || data.length;
		const all = parseEtcdLog(data.subarray(from).toString('utf8'));
		// etcd-harden's own probes (loopback, a privileged source port; etcd/own-probes.ts) are no attack.
		const events = all.filter(event => !isOwnProbe(event));
		return {source: path, data: {events, offset: data.length, size: data.length, identity: path, ownProbes: all.length - events.length}};
	} catch (error) {
		return {source: path, problem: `cannot read ${path}: ${firstLine(error)}`};
	}
}

async function readFirewall(host: Host, previous: MonitorState | undefined): Promise<MonitorInputs['firewall']> {
	const tried: string[] = [];
	let dropped: number | undefined;
	let backend: string | undefined;
	for (const variant of ['nft', 'legacy'] as const) {
		for (const family of [4, 6] as const) {
			const save = variantCommands(variant, family).save;
			const result = await host.run([save, '-c', '-t', 'filter'], {readOnly: true, timeoutMs: 15_000}).catch(() => undefined);
			tried.push(save);
			if (!result || result.exitCode !== 0) continue;
			const counter = dropCounter(result.stdout, CHAIN);
			if (counter) {
				dropped = (dropped ?? 0) + counter.packets;
				backend = `iptables (${variant}) chain ${CHAIN}`;
			}
		}
		if (backend) break;
	}
	let note: string | undefined;
	if (!backend) {
		const nft = await host.run(['nft', 'list', 'table', ...TABLE_REF.split(' ')], {readOnly: true, timeoutMs: 15_000}).catch(() => undefined);
		if (nft?.exitCode === 0) {
			backend = `nftables table ${TABLE_REF}`;
			note = 'the nftables rules keep no drop counter: with the firewall stage\'s log=true, drops by source come from the kernel log';
		}
	}
	const kernel = await host.run(['dmesg'], {readOnly: true, timeoutMs: 15_000}).catch(() => undefined);
	const logged = kernel?.exitCode === 0 ? loggedDrops(kernel.stdout, LOG_PREFIX, previous?.kernelLogStamp) : undefined;
	const bySource = logged?.drops ?? [];
	if (!backend) {
		return {source: tried.join(', '), problem: `no etcd-harden firewall rules found (chain ${CHAIN} or table ${TABLE_REF}): run etcd-harden --only firewall`};
	}
	if (kernel?.exitCode !== 0) note = `${note ? `${note}; ` : ''}dmesg could not be read, so drops are not attributed to sources`;
	return {source: `${backend}${bySource.length ? ', kernel log (dmesg)' : ''}`, data: {backend, ...(dropped === undefined ? {} : {dropped}), bySource, ...(note ? {note} : {}), ...(logged?.lastStamp === undefined ? {} : {kernelLogStamp: logged.lastStamp})}};
}

async function readApiserverMetrics(host: Host, kubeconfig: string): Promise<Collected<Sample[]>> {
	let api: KubeApi;
	try {
		api = new KubeApi(host, await loadKubeconfig(host, kubeconfig), {retries: 1, timeoutMs: 15_000});
	} catch (error) {
		return {source: kubeconfig, problem: firstLine(error)};
	}
	const source = `${api.connection.server}/metrics`;
	try {
		const response = await api.request('GET', '/metrics', {accept: 'text/plain'});
		return {source, data: parseExposition(response.body.toString('utf8'))};
	} catch (error) {
		return {source, problem: `cannot read kube-apiserver's metrics: ${firstLine(error)}`};
	}
}

async function readEtcdMetrics(host: Host, facts: Facts): Promise<Collected<Sample[]>> {
	const flags = facts.etcd.flags;
	const metricsUrl = (flags['listen-metrics-urls'] ?? '').split(',').map(url => url.trim()).find(url => url.startsWith('http://'));
	const pki = posix.join(facts.pki.dir, 'etcd');
	const url = metricsUrl ? `${metricsUrl.replace(/\/$/, '')}/metrics` : `https://127.0.0.1:2379/metrics`;
	try {
		const response = await host.request({
			url,
			timeoutMs: 15_000,
			...(metricsUrl ? {} : {caFile: flags['trusted-ca-file'] ?? posix.join(pki, 'ca.crt'), certFile: posix.join(pki, 'healthcheck-client.crt'), keyFile: posix.join(pki, 'healthcheck-client.key')}),
		});
		if (response.status !== 200) return {source: url, problem: `etcd's metrics answered ${response.status}`};
		return {source: url, data: parseExposition(response.body.toString('utf8'))};
	} catch (error) {
		return {source: url, problem: `cannot read etcd's metrics: ${firstLine(error)}`};
	}
}

const CERT_LABELS: Record<string, string> = {
	server: 'etcd serving certificate',
	peer: 'etcd peer certificate',
	apiserverClient: "kube-apiserver's etcd client certificate",
	healthcheckClient: 'etcd health-check client certificate',
	trustedCa: 'etcd CA certificate',
};

function certInputs(facts: Facts): CertInput[] {
	const certs = facts.etcdCerts;
	if (!certs) return [];
	const seen = new Set<string>();
	const out: CertInput[] = [];
	for (const [key, label] of Object.entries(CERT_LABELS)) {
		const info = (certs as Record<string, {path: string; notAfter?: string; error?: string} | undefined>)[key];
		if (!info || seen.has(info.path)) continue;
		seen.add(info.path);
		out.push({label, path: info.path, ...(info.notAfter ? {notAfter: info.notAfter} : {}), ...(info.error ? {error: info.error} : {})});
	}
	return out;
}

/** Everything the monitor's signals are computed from, at this moment. */
export async function collectMonitorInputs(host: Host, facts: Facts, sources: MonitorSources, previous: MonitorState | undefined): Promise<MonitorInputs> {
	const [etcdLog, firewall, apiserverMetrics, etcdMetrics] = await Promise.all([
		readEtcdLog(host, sources, previous),
		readFirewall(host, previous),
		readApiserverMetrics(host, sources.kubeconfig ?? ADMIN_KUBECONFIG),
		readEtcdMetrics(host, facts),
	]);
	return {time: host.now().toISOString(), etcdLog, firewall, apiserverMetrics, etcdMetrics, certs: certInputs(facts)};
}

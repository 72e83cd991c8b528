/**
 * The etcd restart gate: after the etcd manifest changed, wait until etcd has RESTARTED (a
 * new process, not the old one still answering), `etcdctl endpoint health` passes with the
 * health-check client certificate, and kube-apiserver's /readyz passes again (it reconnects
 * to the new etcd). The counterpart of kube/restart-gate.ts for etcd.
 *
 * A restart is recognised by `process_start_time_seconds` on etcd's metrics (the
 * --listen-metrics-urls http endpoint kubeadm sets, else the client URL with the health-check
 * certificate): newer than the value read before the change or, when none was read, not older
 * than the manifest's modification time.
 */
import type {Host} from '../host/types.js';
import type {KubeApi} from '../kube/api.js';
import {checkReady, parseStartTime, readLogTail} from '../kube/restart-gate.js';
import type {EtcdConnection} from './connection.js';
import {runEtcdctl} from './etcdctl.js';

/** Where the kubelet keeps etcd's container logs on a kubeadm node. */
export const DEFAULT_ETCD_LOGS = ['/var/log/pods/kube-system_etcd-*/etcd/*.log'];

export type EtcdGateStatus = {state: 'down' | 'old-process' | 'restarted-not-healthy' | 'apiserver-not-ready' | 'ready'; elapsedSeconds: number; detail?: string};

export type EtcdGateOptions = {
	/** etcd's metrics URL (http://127.0.0.1:2381/metrics) or an https client URL's /metrics. */
	metricsUrl?: string;
	/** The health-check client connection (also used for an https metrics URL). */
	health: EtcdConnection;
	/** kube-apiserver (admin kubeconfig); without it only etcd is awaited. */
	api?: KubeApi;
	before?: number;
	/** A process started at or after this time (seconds) counts as restarted. */
	notBefore?: number;
	manifestPath?: string;
	/** Accept the process that ran before, when healthy (after a restore that changed nothing it runs). */
	acceptUnchanged?: boolean;
	timeoutMs?: number;
	pollMs?: number;
	logPaths?: string[];
	signal?: AbortSignal;
	onStatus?: (status: EtcdGateStatus) => void;
};

export class EtcdGateError extends Error {
	override name = 'EtcdGateError';
}

/** etcd's process start time (seconds since the epoch), or undefined when it does not answer. */
export async function readEtcdStartTime(host: Host, metricsUrl: string | undefined, health: EtcdConnection, signal?: AbortSignal): Promise<number | undefined> {
	if (metricsUrl === undefined) return undefined;
	try {
		const tls = metricsUrl.startsWith('https://') ? {caFile: health.cacert, certFile: health.cert, keyFile: health.key} : {};
		const response = await host.request({url: metricsUrl, timeoutMs: 5000, ...tls, ...(signal ? {signal} : {})});
		if (response.status !== 200) return undefined;
		return parseStartTime(response.body.toString('utf8'));
	} catch (error) {
		if (signal?.aborted) throw error;
		return undefined;
	}
}

/** `etcdctl endpoint health` with the given client certificate. */
export async function etcdHealthy(host: Host, health: EtcdConnection, signal?: AbortSignal): Promise<{healthy: boolean; detail: string}> {
	const result = await runEtcdctl(host, health, ['endpoint', 'health'], {readOnly: true, commandTimeout: '5s', timeoutMs: 20_000, ...(signal ? {signal} : {})});
	const text = (result.stderr || result.stdout).trim().split('\n').filter(Boolean).at(-1) ?? '';
	return {healthy: result.exitCode === 0, detail: result.exitCode === 0 ? 'healthy' : text.slice(0, 200)};
}

/** Wait for a restarted, healthy etcd and a ready apiserver; throws EtcdGateError on timeout. */
export async function waitForEtcd(host: Host, options: EtcdGateOptions): Promise<{seconds: number; restarted: boolean}> {
	const timeoutMs = options.timeoutMs ?? 180_000;
	const pollMs = options.pollMs ?? 1000;
	const started = host.now().getTime();
	const deadline = started + timeoutMs;
	const elapsed = () => (host.now().getTime() - started) / 1000;
	let notBefore = options.notBefore;
	if (notBefore === undefined && options.before === undefined && options.manifestPath !== undefined) {
		const stat = await host.stat(options.manifestPath);
		if (stat) notBefore = stat.mtimeMs / 1000 - 1;
	}
	const isNew = (startTime: number | undefined): boolean => {
		if (startTime === undefined) return options.before === undefined && notBefore === undefined;
		if (options.before !== undefined && startTime <= options.before + 1) return false;
		if (notBefore !== undefined && startTime < notBefore) return false;
		return true;
	};
	const isOld = (startTime: number | undefined) => options.before !== undefined && startTime !== undefined && Math.abs(startTime - options.before) <= 1;
	let last = 'no answer yet';
	const status = (state: EtcdGateStatus['state'], detail?: string) => {
		if (detail) last = detail;
		options.onStatus?.({state, elapsedSeconds: elapsed(), ...(detail ? {detail} : {})});
	};
	// Without any start time to compare (no metrics endpoint), a health check after the
	// manifest's change is the best evidence; the kubelet restarts within seconds.
	let healthyWithoutStartTime = 0;
	while (true) {
		if (options.signal?.aborted) throw new Error('etcd restart gate interrupted');
		const startTime = await readEtcdStartTime(host, options.metricsUrl, options.health, options.signal);
		const health = await etcdHealthy(host, options.health, options.signal);
		const fresh = isNew(startTime) || (options.acceptUnchanged === true && isOld(startTime));
		const unknownStart = startTime === undefined && options.metricsUrl === undefined;
		if (!health.healthy) {
			status(startTime === undefined ? 'down' : 'restarted-not-healthy', `etcd endpoint health: ${health.detail}`);
		} else if (!fresh && !unknownStart) {
			status('old-process', `the etcd process started ${startTime === undefined ? 'at an unknown time' : new Date(startTime * 1000).toISOString()} (before the change) still answers`);
		} else if (unknownStart && ++healthyWithoutStartTime < 3) {
			status('restarted-not-healthy', 'healthy; no start time to compare, checking again');
		} else {
			const ready = options.api ? await checkReady(options.api, options.signal) : {ready: true, detail: 'not checked'};
			if (ready.ready) {
				status('ready');
				return {seconds: elapsed(), restarted: !isOld(startTime)};
			}
			status('apiserver-not-ready', `etcd is healthy, kube-apiserver /readyz: ${ready.detail}`);
		}
		const now = host.now().getTime();
		if (now >= deadline) {
			const tail = await readLogTail(host, options.logPaths ?? DEFAULT_ETCD_LOGS, 20).catch(() => undefined);
			const logText = tail ? `\nLast lines of ${tail.path}:\n${tail.lines.map(line => `  ${line}`).join('\n')}` : '';
			throw new EtcdGateError(`etcd did not restart healthy with kube-apiserver ready within ${Math.round(timeoutMs / 1000)} s (last seen: ${last})${logText}`);
		}
		await host.sleep(Math.min(pollMs, Math.max(0, deadline - now)), options.signal);
	}
}

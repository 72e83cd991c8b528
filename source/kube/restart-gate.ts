/**
 * The restart gate: after a manifest change, wait until the kube-apiserver has RESTARTED
 * (not the old process still answering) and passes `/readyz`.
 *
 * A restart is recognised by `process_start_time_seconds` on the apiserver's `/metrics`
 * (admin credentials): newer than the start time read before the change, or, when none was
 * read, not older than the manifest's modification time. The metric is boot time (whole
 * seconds) plus the process's start ticks, so comparisons allow one second of slack.
 * A refused connection while the apiserver restarts is normal and only retried.
 *
 * Crash loops are detected from repeated new start times that never become ready, and on a
 * real node from the kubelet's `/var/log/pods/.../<restart>.log` numbering. Failures carry
 * the last lines of the apiserver's log when a log path is known.
 */
import * as path from 'node:path';
import type {Host} from '../host/types.js';
import {KubeApi, KubeApiError} from './api.js';

/** Where the kubelet keeps the apiserver's container logs on a kubeadm node. */
export const DEFAULT_APISERVER_LOGS = ['/var/log/pods/kube-system_kube-apiserver-*/kube-apiserver/*.log'];

export type GateStatus = {
	/** What the gate sees now, for a progress line. */
	state: 'unreachable' | 'old-process' | 'restarted-not-ready' | 'ready';
	elapsedSeconds: number;
	timeoutSeconds: number;
	detail?: string;
};

export type GateOptions = {
	/** Process start time (seconds since the epoch) read before the change. */
	before?: number;
	/** Node path of the changed manifest: its mtime is the reference when `before` is unknown. */
	manifestPath?: string;
	/** Explicit reference: a process started at or after this time (seconds) counts as restarted. */
	notBefore?: number;
	/** Also accept the process that ran before (`before`) as long as it is ready (used after a restore). */
	acceptUnchanged?: boolean;
	/** Default 180 s. */
	timeoutMs?: number;
	/** Default 1 s. */
	pollMs?: number;
	/** Log files (node paths; `*` matches within one path segment) for the failure message. */
	logPaths?: string[];
	/** Restarts without readiness that count as a crash loop (default 3). */
	crashLoopRestarts?: number;
	/** Log lines in the failure message (default 20). */
	logLines?: number;
	signal?: AbortSignal;
	onStatus?: (status: GateStatus) => void;
};

export type GateResult = {startTime: number; seconds: number; restarted: boolean};

export class RestartGateError extends Error {
	override name = 'RestartGateError';
	constructor(
		message: string,
		readonly reason: 'timeout' | 'crash-loop',
		readonly logTail: string[],
		readonly logPath?: string,
	) {
		super(message);
	}
}

/** `process_start_time_seconds` from Prometheus text, or undefined. */
export function parseStartTime(metrics: string): number | undefined {
	const match = /^process_start_time_seconds(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$/m.exec(metrics);
	if (!match) return undefined;
	const value = Number(match[1]);
	return Number.isFinite(value) && value > 0 ? value : undefined;
}

/** The apiserver's process start time (seconds), or undefined when it cannot be read now. */
export async function readStartTime(api: KubeApi, signal?: AbortSignal): Promise<number | undefined> {
	try {
		const response = await api.request('GET', '/metrics', {accept: 'text/plain', retries: 0, timeoutMs: 10_000, signal});
		return parseStartTime(response.body.toString('utf8'));
	} catch (error) {
		if (signal?.aborted) throw error;
		return undefined;
	}
}

/** GET /readyz: ready means 200 and "ok". */
export async function checkReady(api: KubeApi, signal?: AbortSignal): Promise<{reachable: boolean; ready: boolean; detail: string}> {
	try {
		const response = await api.request('GET', '/readyz', {accept: 'text/plain', retries: 0, timeoutMs: 5000, signal});
		const body = response.body.toString('utf8').trim();
		return {reachable: true, ready: response.status === 200 && body === 'ok', detail: body.slice(0, 200)};
	} catch (error) {
		if (signal?.aborted) throw error;
		if (error instanceof KubeApiError && error.status > 0) {
			const lines = error.message.split('\n').filter(line => line.includes('failed'));
			return {reachable: true, ready: false, detail: lines.slice(0, 3).join('; ') || error.message.slice(0, 200)};
		}
		return {reachable: false, ready: false, detail: error instanceof Error ? error.message : String(error)};
	}
}

function segmentMatcher(pattern: string): RegExp {
	const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replaceAll('*', '[^/]*');
	return new RegExp(`^${escaped}$`);
}

/** Expand node-path patterns (`*` within a segment) through the host. */
export async function expandPaths(host: Host, patterns: readonly string[]): Promise<string[]> {
	const found = new Set<string>();
	for (const pattern of patterns) {
		const segments = pattern.split('/').filter(Boolean);
		let current = ['/'];
		for (const segment of segments) {
			const next: string[] = [];
			for (const directory of current) {
				if (!segment.includes('*')) {
					next.push(path.posix.join(directory, segment));
					continue;
				}
				const matcher = segmentMatcher(segment);
				for (const entry of (await host.listDir(directory).catch(() => undefined)) ?? []) {
					if (matcher.test(entry)) next.push(path.posix.join(directory, entry));
				}
			}
			current = next;
		}
		for (const file of current) found.add(file);
	}
	return [...found].sort();
}

/** The last lines of the most recently modified log matching the patterns. */
export async function readLogTail(host: Host, patterns: readonly string[], lines = 20): Promise<{path: string; lines: string[]} | undefined> {
	let newest: {path: string; mtimeMs: number} | undefined;
	for (const file of await expandPaths(host, patterns)) {
		const stat = await host.stat(file).catch(() => undefined);
		if (!stat?.isFile) continue;
		if (!newest || stat.mtimeMs >= newest.mtimeMs) newest = {path: file, mtimeMs: stat.mtimeMs};
	}
	if (!newest) return undefined;
	const text = (await host.readText(newest.path).catch(() => undefined)) ?? '';
	const all = text.split('\n').filter(line => line.trim() !== '');
	return {path: newest.path, lines: all.slice(-lines)};
}

/** The kubelet names container logs `<restart count>.log`: the highest number seen. */
async function restartCountFromLogs(host: Host, patterns: readonly string[]): Promise<number | undefined> {
	let highest: number | undefined;
	for (const file of await expandPaths(host, patterns)) {
		const match = /^(\d+)\.log$/.exec(path.posix.basename(file));
		if (match) highest = Math.max(highest ?? 0, Number(match[1]));
	}
	return highest;
}

/** Wait until the apiserver runs a process started after the change and passes /readyz. */
export async function waitForRestart(api: KubeApi, options: GateOptions = {}): Promise<GateResult> {
	const {host} = api;
	const timeoutMs = options.timeoutMs ?? 180_000;
	const pollMs = options.pollMs ?? 1000;
	const logPaths = options.logPaths ?? DEFAULT_APISERVER_LOGS;
	const crashLoopRestarts = options.crashLoopRestarts ?? 3;
	const started = host.now().getTime();
	const deadline = started + timeoutMs;

	let notBefore = options.notBefore;
	if (notBefore === undefined && options.before === undefined && options.manifestPath !== undefined) {
		const stat = await host.stat(options.manifestPath);
		if (stat) notBefore = stat.mtimeMs / 1000 - 1;
	}
	const isNew = (startTime: number): boolean => {
		if (options.before !== undefined && startTime <= options.before + 1) return false;
		if (notBefore !== undefined && startTime < notBefore) return false;
		return options.before !== undefined || notBefore !== undefined;
	};
	const isOld = (startTime: number): boolean => options.before !== undefined && Math.abs(startTime - options.before) <= 1;

	const logsAtStart = await restartCountFromLogs(host, logPaths).catch(() => undefined);
	const newStarts = new Set<number>();
	let lastDetail = 'no answer yet';
	const elapsed = () => (host.now().getTime() - started) / 1000;
	const status = (state: GateStatus['state'], detail?: string) =>
		options.onStatus?.({state, elapsedSeconds: elapsed(), timeoutSeconds: timeoutMs / 1000, detail});

	const fail = async (reason: 'timeout' | 'crash-loop', summary: string): Promise<never> => {
		const tail = await readLogTail(host, logPaths, options.logLines ?? 20).catch(() => undefined);
		const logText = tail ? `\nLast lines of ${tail.path}:\n${tail.lines.map(line => `  ${line}`).join('\n')}` : '';
		throw new RestartGateError(`${summary} (last seen: ${lastDetail})${logText}`, reason, tail?.lines ?? [], tail?.path);
	};

	while (true) {
		if (options.signal?.aborted) throw new Error('restart gate interrupted');
		const ready = await checkReady(api, options.signal);
		if (!ready.reachable) {
			lastDetail = `unreachable: ${ready.detail}`;
			status('unreachable', ready.detail);
		} else {
			const startTime = await readStartTime(api, options.signal);
			if (startTime === undefined) {
				lastDetail = `answers but /metrics has no start time; /readyz: ${ready.detail}`;
				status(ready.ready ? 'old-process' : 'restarted-not-ready', lastDetail);
			} else if (isNew(startTime)) {
				if (ready.ready) {
					status('ready');
					return {startTime, seconds: elapsed(), restarted: true};
				}
				newStarts.add(Math.round(startTime));
				lastDetail = `restarted (process started ${new Date(startTime * 1000).toISOString()}) but /readyz: ${ready.detail}`;
				status('restarted-not-ready', ready.detail);
			} else if (options.acceptUnchanged && isOld(startTime) && ready.ready) {
				status('ready', 'the earlier process is still running');
				return {startTime, seconds: elapsed(), restarted: false};
			} else {
				lastDetail = `the process started ${new Date(startTime * 1000).toISOString()} (before the change) still answers`;
				status('old-process', lastDetail);
			}
		}
		if (newStarts.size >= crashLoopRestarts) {
			await fail('crash-loop', `kube-apiserver is crash-looping: it restarted ${newStarts.size} times after the change without becoming ready`);
		}
		const logsNow = await restartCountFromLogs(host, logPaths).catch(() => undefined);
		if (logsAtStart !== undefined && logsNow !== undefined && logsNow - logsAtStart >= crashLoopRestarts) {
			await fail('crash-loop', `kube-apiserver is crash-looping: the kubelet restarted it ${logsNow - logsAtStart} times after the change without it becoming ready`);
		}
		const now = host.now().getTime();
		if (now >= deadline) {
			await fail('timeout', `kube-apiserver did not restart and pass /readyz within ${Math.round(timeoutMs / 1000)} s`);
		}
		await host.sleep(Math.min(pollMs, Math.max(0, deadline - now)), options.signal);
	}
}

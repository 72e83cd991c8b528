/**
 * etcdctl calls for backups and restore checks: snapshot save/status/restore and a key count.
 * Everything runs through the Host.
 */
import type {Host} from '../host/types.js';
import {renderArgv} from '../host/types.js';
import type {EtcdConnection} from '../etcd/connection.js';
import {ETCDCTL, EtcdctlError, etcdctlEnv, runEtcdctl} from '../etcd/etcdctl.js';

export type SnapshotStatus = {hash: number; revision: number; totalKey: number; totalSize: number};

/**
 * The program for the offline snapshot commands (status, restore): `etcdutl` where it exists
 * (etcd >= 3.5 ships it; etcdctl's offline snapshot commands are deprecated in 3.5 and removed in
 * 3.6), else etcdctl (3.4 has no etcdutl). Told by running `etcdutl version`, not by guessing from
 * a version number: a node may carry a newer etcdctl than its etcd, or the other way round.
 */
export type SnapshotTool = 'etcdutl' | typeof ETCDCTL;

export async function snapshotTool(host: Host, signal?: AbortSignal): Promise<SnapshotTool> {
	const probe = await host.run(['etcdutl', 'version'], {readOnly: true, timeoutMs: 20_000, ...(signal ? {signal} : {})});
	return probe.exitCode === 0 && !probe.timedOut && /etcdutl version/i.test(probe.stdout) ? 'etcdutl' : ETCDCTL;
}

function failed(result: {exitCode: number; timedOut: boolean}): boolean {
	return result.exitCode !== 0 || result.timedOut;
}

/**
 * The one endpoint a snapshot is taken from (etcdctl refuses several): the local member when
 * the apiserver lists it, else the first.
 */
export function snapshotEndpoint(connection: EtcdConnection): string {
	const local = connection.endpoints.find(endpoint => /^\w+:\/\/(127\.0\.0\.1|localhost|\[::1\])(:|\/|$)/.test(endpoint));
	const endpoint = local ?? connection.endpoints[0];
	if (endpoint === undefined) throw new Error('internal: etcd connection without endpoints');
	return endpoint;
}

/** `etcdctl snapshot save FILE` from one endpoint. */
export async function snapshotSave(host: Host, connection: EtcdConnection, file: string, options: {timeoutSeconds: number; signal?: AbortSignal}): Promise<void> {
	const single: EtcdConnection = {...connection, endpoints: [snapshotEndpoint(connection)]};
	const result = await runEtcdctl(host, single, ['snapshot', 'save', {path: file}], {
		readOnly: false,
		commandTimeout: `${options.timeoutSeconds}s`,
		timeoutMs: (options.timeoutSeconds + 30) * 1000,
		...(options.signal ? {signal: options.signal} : {}),
	});
	if (failed(result)) throw new EtcdctlError(result.command, result.exitCode, result.stderr, result.timedOut);
}

/** `etcdutl|etcdctl snapshot status FILE -w json`: etcd's own integrity check of a snapshot file. */
export async function snapshotStatus(host: Host, file: string, signal?: AbortSignal, tool: SnapshotTool = ETCDCTL): Promise<SnapshotStatus> {
	const argv = [tool, 'snapshot', 'status', {path: file}, '-w', 'json'];
	const result = await host.run(argv, {env: etcdctlEnv(), timeoutMs: 600_000, readOnly: true, ...(signal ? {signal} : {})});
	const command = renderArgv(argv);
	if (failed(result)) throw new EtcdctlError(command, result.exitCode, result.stderr, result.timedOut);
	let data: Partial<Record<keyof SnapshotStatus, unknown>>;
	try {
		data = JSON.parse(result.stdout) as typeof data;
	} catch {
		throw new EtcdctlError(command, result.exitCode, `output is not JSON (${result.stdout.length} bytes)`, false);
	}
	const status = {hash: Number(data.hash), revision: Number(data.revision), totalKey: Number(data.totalKey), totalSize: Number(data.totalSize)};
	if (!Number.isInteger(status.revision) || status.revision <= 0 || !Number.isInteger(status.totalKey)) {
		throw new EtcdctlError(command, result.exitCode, 'snapshot status reported no revision: the file is not a usable snapshot', false);
	}
	return status;
}

/**
 * Live keys in the whole keyspace (at `revision` when given): the range's `count`, asking for one
 * key only (etcdctl 3.4 has no --count-only).
 */
export async function countKeys(
	host: Host,
	connection: EtcdConnection,
	options: {revision?: number; signal?: AbortSignal; commandTimeout?: string; timeoutMs?: number} = {},
): Promise<number> {
	const args = ['get', '', '--prefix', '--keys-only', '--limit=1', ...(options.revision === undefined ? [] : [`--rev=${options.revision}`]), '-w', 'json'];
	const result = await runEtcdctl(host, connection, args, {
		readOnly: true,
		...(options.signal ? {signal: options.signal} : {}),
		...(options.commandTimeout ? {commandTimeout: options.commandTimeout} : {}),
		...(options.timeoutMs ? {timeoutMs: options.timeoutMs} : {}),
	});
	if (failed(result)) throw new EtcdctlError(result.command, result.exitCode, result.stderr, result.timedOut);
	const count = Number((JSON.parse(result.stdout) as {count?: number | string}).count ?? 0);
	if (!Number.isInteger(count)) throw new EtcdctlError(result.command, result.exitCode, 'no count in the output', false);
	return count;
}

/** `etcdutl|etcdctl snapshot restore FILE --data-dir DIR` as a one-member cluster on loopback. */
export async function snapshotRestore(
	host: Host,
	file: string,
	options: {dataDir: string; name: string; peerUrl: string; signal?: AbortSignal; tool?: SnapshotTool},
): Promise<void> {
	const argv = [
		options.tool ?? ETCDCTL,
		'snapshot',
		'restore',
		{path: file},
		'--data-dir',
		{path: options.dataDir},
		'--name',
		options.name,
		'--initial-cluster',
		`${options.name}=${options.peerUrl}`,
		'--initial-cluster-token',
		'etcd-harden-restore-check',
		'--initial-advertise-peer-urls',
		options.peerUrl,
	];
	const result = await host.run(argv, {env: etcdctlEnv(), timeoutMs: 1_800_000, ...(options.signal ? {signal: options.signal} : {})});
	if (failed(result)) throw new EtcdctlError(renderArgv(argv), result.exitCode, result.stderr, result.timedOut);
}

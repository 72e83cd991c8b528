/**
 * Plaintext history on this node's disk: etcd's data directory (the etcd manifest's --data-dir,
 * through its hostPath mount) scanned file by file, read-only and streaming, for plaintext
 * records of the resources the config encrypts and records under keys it no longer has
 * (source/etcd/history.ts); plus the cluster's members, leader, db sizes and alarms, which the
 * purge-history stage plans from. Live discovery only (etcd-harden on the node itself).
 */
import {posix} from 'node:path';
import type {Host} from '../host/types.js';
import {etcdConnectionFromFlags} from '../etcd/connection.js';
import {countHistory, encryptedResources, plaintextTotal, readableLabels, uncountedResources, underRemovedKeys, type HistoryCounts} from '../etcd/history.js';
import {alarms, listMembers} from '../etcd/members.js';
import type {HistoryFacts, HistoryFileScan} from '../etcd/types.js';
import {scannedResources} from '../kube/encryption-config.js';
import {hostPathFor} from '../kube/manifest.js';
import type {Facts} from '../stages/facts.js';

/** kubeadm's --data-dir, and etcd's defaults for when WAL files are dropped. */
const DEFAULT_DATA_DIR = '/var/lib/etcd';
const DEFAULT_SNAPSHOT_COUNT = 100_000;
const DEFAULT_MAX_WALS = 5;

function positive(value: string | undefined, fallback: number): number {
	const number = Number(value);
	return value !== undefined && Number.isInteger(number) && number >= 0 ? number : fallback;
}

/** The data directory on the node: the manifest's --data-dir behind its hostPath mount. */
export function dataDirOf(facts: Pick<Facts, 'etcd'>): string {
	const flag = facts.etcd.flags['data-dir'] ?? DEFAULT_DATA_DIR;
	return hostPathFor(facts.etcd, flag) ?? flag;
}

function fileScan(path: string, counts: HistoryCounts, readable: ReadonlySet<string>): HistoryFileScan {
	const removedKeys = underRemovedKeys(counts, readable);
	return {
		path,
		bytes: counts.bytes,
		plaintext: counts.plaintext,
		plaintextTotal: plaintextTotal(counts),
		removedKeys,
		removedTotal: Object.values(removedKeys).reduce((sum, count) => sum + count, 0),
	};
}

function sum(a: HistoryCounts, b: HistoryCounts): HistoryCounts {
	const add = (x: Record<string, number>, y: Record<string, number>) => {
		const out = {...x};
		for (const [key, count] of Object.entries(y)) out[key] = (out[key] ?? 0) + count;
		return out;
	};
	return {plaintext: add(a.plaintext, b.plaintext), encrypted: add(a.encrypted, b.encrypted), bytes: a.bytes + b.bytes};
}

/**
 * Counts of WAL files already scanned in this process, by path, size, mtime and resources: a
 * run discovers once per stage, and WAL segments other than the last never change. The db file
 * (the proof of a purge) is always read again.
 */
const scanned = new Map<string, HistoryCounts>();

/** Scan one file (a snapshot, a db) for the config's residue. */
export async function scanHistoryFile(host: Host, path: string, resources: readonly string[], cache = false): Promise<HistoryCounts> {
	const stat = cache ? await host.stat(path) : undefined;
	const key = stat ? JSON.stringify([host.root, path, stat.size, stat.mtimeMs, resources]) : undefined;
	const cached = key === undefined ? undefined : scanned.get(key);
	if (cached) return cached;
	const counts = await countHistory(host.readChunks(path), resources);
	if (key !== undefined) {
		if (scanned.size > 1000) scanned.clear();
		scanned.set(key, counts);
	}
	return counts;
}

export async function discoverHistory(host: Host, facts: Facts): Promise<HistoryFacts | undefined> {
	if (!facts.etcd.exists || facts.etcd.error) return undefined;
	const config = facts.encryption.config;
	const all = scannedResources(config);
	const resources = encryptedResources(config, all);
	const readable = readableLabels(config);
	const dataDir = dataDirOf(facts);
	const history: HistoryFacts = {
		dataDir,
		resources,
		uncounted: uncountedResources(resources),
		walSettings: {snapshotCount: positive(facts.etcd.flags['snapshot-count'], DEFAULT_SNAPSHOT_COUNT), maxWals: positive(facts.etcd.flags['max-wals'], DEFAULT_MAX_WALS)},
	};
	try {
		const stat = await host.stat(dataDir);
		if (!stat?.isDirectory) {
			history.problem = `etcd's data directory ${dataDir} (--data-dir in ${facts.etcd.path}) does not exist on this node.`;
		} else {
			history.dataDirMode = stat.mode;
			const db = `${dataDir}/member/snap/db`;
			if (await host.stat(db)) history.db = fileScan(db, await scanHistoryFile(host, db, resources), readable);
			const walDir = `${dataDir}/member/wal`;
			const wals = ((await host.listDir(walDir)) ?? []).filter(name => name.endsWith('.wal'));
			let total: HistoryCounts = {plaintext: {}, encrypted: {}, bytes: 0};
			for (const name of wals) total = sum(total, await scanHistoryFile(host, posix.join(walDir, name), resources, true));
			history.wal = {...fileScan(walDir, {...total, plaintext: {...Object.fromEntries(resources.map(r => [r, 0])), ...total.plaintext}}, readable), files: wals.length};
		}
	} catch (error) {
		const code = (error as NodeJS.ErrnoException).code;
		history.problem =
			code === 'EACCES' || code === 'EPERM'
				? `cannot read etcd's data directory ${dataDir}: permission denied. Run etcd-harden as root.`
				: `cannot scan etcd's data directory ${dataDir}: ${(error as Error).message.split('\n')[0]}`;
	}
	let connection;
	try {
		connection = etcdConnectionFromFlags(facts.apiserver.flags);
	} catch (error) {
		history.membersProblem = (error as Error).message;
		return history;
	}
	try {
		const {members, revision} = await listMembers(host, connection);
		history.members = members;
		if (revision !== undefined) history.revision = revision;
		history.alarms = await alarms(host, connection);
	} catch (error) {
		history.membersProblem = `cannot list the etcd members at ${connection.endpoints.join(',')}: ${(error as Error).message.split('\n')[0]}`;
	}
	return history;
}

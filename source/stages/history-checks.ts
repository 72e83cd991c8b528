/**
 * The checks of the file-level scan of etcd's data directory (source/discover/history.ts),
 * shared by purge-history (verify and status) and reencrypt (verify, as a warning: the purge
 * comes after it).
 */
import type {Check} from '../engine/contract.js';
import {megabytes} from '../etcd/members.js';
import type {HistoryFacts, HistoryFileScan} from '../etcd/types.js';
import type {Facts} from './facts.js';

export function historyCounts(scan: HistoryFileScan): string {
	const parts = Object.entries(scan.plaintext)
		.filter(([, count]) => count > 0)
		.map(([resource, count]) => `${count} plaintext ${resource}`);
	for (const [key, count] of Object.entries(scan.removedKeys)) parts.push(`${count} under ${key} (no longer in the config)`);
	return parts.length > 0 ? parts.join(', ') : '0 plaintext records';
}

/** What the WAL's residue means, how long it stays, and what protects it meanwhile. */
export function walExplanation(history: HistoryFacts): string {
	const {snapshotCount, maxWals} = history.walSettings;
	return (
		`etcd's write-ahead log keeps every write it received, as it was received. etcd deletes a WAL file only after a raft snapshot ` +
		`(every --snapshot-count=${snapshotCount} applied writes) has passed it, and always keeps the newest --max-wals=${maxWals} files (64 MB each): ` +
		`these records stay on disk until at least ${snapshotCount} more writes and ${maxWals} newer WAL files. ` +
		`Rewriting the WAL needs the member re-created from a snapshot, which this tool does not do (see README). ` +
		`Meanwhile: encrypt the disk that holds ${history.dataDir} (LUKS/dm-crypt), keep it 0700 root, and treat the node's disks and disk images as secret.`
	);
}

/** The checks of the data directory scan (verify and status). */
export function historyChecks(facts: Facts, when: 'verify' | 'status'): Check[] {
	const history = facts.history;
	if (!history) {
		return when === 'verify'
			? []
			: [{id: 'history.db', title: "etcd's data file holds no plaintext history", status: 'warn', actual: 'not scanned (no live control plane, or no etcd manifest)', remediation: 'Run etcd-harden status on the control-plane node itself (without --root).'}];
	}
	if (history.problem) return [{id: 'history.db', title: "etcd's data file can be scanned", status: 'fail', actual: history.problem, remediation: 'Run etcd-harden as root on the node that runs this etcd member.'}];
	const checks: Check[] = [];
	const db = history.db;
	if (history.resources.length === 0) {
		checks.push({id: 'history.db', title: "etcd's data file holds no plaintext history", status: 'pass', actual: 'no resource is encrypted on write: there is no plaintext history to look for'});
	} else if (!db) {
		checks.push({id: 'history.db', title: "etcd's data file holds no plaintext history", status: 'warn', actual: `${history.dataDir}/member/snap/db does not exist`, remediation: 'Check --data-dir in the etcd manifest.'});
	} else {
		const residue = db.plaintextTotal + db.removedTotal;
		checks.push({
			id: 'history.db',
			title: `etcd's data file holds no plaintext history of ${history.resources.join(', ')}`,
			status: residue === 0 ? 'pass' : 'fail',
			actual: `${db.path} (${megabytes(db.bytes)}): ${historyCounts(db)}${history.uncounted.length ? `; not counted: ${history.uncounted.join(', ')}` : ''}`,
			...(residue === 0
				? {}
				: {remediation: `Old revisions still hold these values: run etcd-harden --only purge-history (compacts etcd and defragments every member), after reencrypt has put every object on the primary key.`}),
		});
	}
	const wal = history.wal;
	if (wal && history.resources.length > 0) {
		const residue = wal.plaintextTotal + wal.removedTotal;
		checks.push({
			id: 'history.wal',
			title: "etcd's write-ahead log holds no plaintext history",
			status: residue === 0 ? 'pass' : 'warn',
			actual: `${wal.files} WAL file(s), ${megabytes(wal.bytes)}: ${historyCounts(wal)}`,
			...(residue === 0 ? {} : {remediation: walExplanation(history)}),
		});
	}
	if (history.dataDirMode !== undefined && (history.dataDirMode & 0o077) !== 0) {
		checks.push({
			id: 'history.data-dir-mode',
			title: `etcd's data directory is readable by root only (0700)`,
			status: 'warn',
			actual: `${history.dataDir} has mode 0${history.dataDirMode.toString(8)}`,
			remediation: `chmod 700 ${history.dataDir}`,
		});
	}
	return checks;
}


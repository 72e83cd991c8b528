import type {Host} from '../host/types.js';
import {InputError, RUNS_DIR, STATE_DIR, type JournalEntry, type RunRecord} from './contract.js';

export type {JournalEntry} from './contract.js';

export const LOCK_PATH = `${STATE_DIR}/lock`;


/**
 * One run's directory: `/var/lib/etcd-harden/runs/<timestamp>/` with `journal.jsonl` and
 * `backup/<node path>` copies of every file the run overwrote. Backups never go into the
 * manifests directory, where kubelet would start them.
 */
export class RunDir implements RunRecord {
	readonly id: string;
	readonly dir: string;

	constructor(
		private readonly host: Host,
		now: Date,
	) {
		this.id = now.toISOString().replaceAll(':', '').replace(/\.\d+Z$/, 'Z');
		this.dir = `${RUNS_DIR}/${this.id}`;
	}

	get journalPath(): string {
		return `${this.dir}/journal.jsonl`;
	}

	backupPath(nodePath: string): string {
		return `${this.dir}/backup${nodePath}`;
	}

	async journal(entry: Omit<JournalEntry, 'time'>): Promise<void> {
		const line: JournalEntry = {time: this.host.now().toISOString(), ...entry};
		await this.host.appendFile(this.journalPath, `${JSON.stringify(line)}\n`, 0o600);
	}
}

/** Find the newest earlier run whose journal shows a stage that started and never finished. */
export async function findInterruptedRun(host: Host): Promise<{id: string; stage: string} | undefined> {
	const runs = (await host.listDir(RUNS_DIR)) ?? [];
	for (const id of [...runs].sort().reverse()) {
		const text = await host.readText(`${RUNS_DIR}/${id}/journal.jsonl`);
		if (!text) continue;
		let open: string | undefined;
		let ended = false;
		for (const line of text.split('\n')) {
			if (!line.trim()) continue;
			let entry: JournalEntry;
			try {
				entry = JSON.parse(line) as JournalEntry;
			} catch {
				continue; // a torn last line from a killed run
			}
			if (entry.event === 'stage-start') open = entry.stage;
			if (['stage-done', 'stage-unchanged', 'stage-failed', 'rolled-back'].includes(entry.event)) open = undefined;
			if (entry.event === 'run-end') ended = true;
		}
		return open && !ended ? {id, stage: open} : undefined;
	}
	return undefined;
}

/** Refuse early, without writing anything, when a live run holds the lock. */
export async function checkLock(host: Host, pid: number): Promise<void> {
	const holder = Number.parseInt((await host.readText(LOCK_PATH)) ?? '', 10);
	if (Number.isInteger(holder) && holder > 0 && holder !== pid && host.processAlive(holder)) {
		throw new InputError(
			`another etcd-harden run (pid ${holder}) holds ${LOCK_PATH}: wait for it to finish. ` +
				`If no such run exists, remove ${LOCK_PATH} and try again.`,
		);
	}
}

/** One run at a time: an O_EXCL lock file holding the pid; a dead pid's lock is taken over. */
export async function acquireLock(host: Host, pid: number): Promise<() => Promise<void>> {
	for (let attempt = 0; attempt < 2; attempt++) {
		if (await host.createExclusive(LOCK_PATH, `${pid}\n`, 0o600)) {
			return async () => host.remove(LOCK_PATH);
		}
		const holder = Number.parseInt((await host.readText(LOCK_PATH)) ?? '', 10);
		if (Number.isInteger(holder) && holder > 0 && host.processAlive(holder)) {
			throw new InputError(
				`another etcd-harden run (pid ${holder}) holds ${LOCK_PATH}: wait for it to finish. ` +
					`If no such run exists, remove ${LOCK_PATH} and try again.`,
			);
		}
		await host.remove(LOCK_PATH); // stale: its process is gone
	}
	throw new InputError(`could not take the lock ${LOCK_PATH}: remove it if no etcd-harden run is active.`);
}

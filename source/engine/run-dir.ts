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
		suffix = '',
	) {
		this.id = now.toISOString().replaceAll(':', '').replace(/\.\d+Z$/, 'Z') + suffix;
		this.dir = `${RUNS_DIR}/${this.id}`;
	}

	/**
	 * A run directory no other run uses: the time to the second, and "-2", "-3"... when a
	 * run of the same second exists. Claimed by creating its journal exclusively (O_EXCL), so
	 * two runs never share one (and never overwrite each other's backups).
	 */
	static async create(host: Host, now: Date): Promise<RunDir> {
		for (let n = 1; n < 1000; n++) {
			const runDir = new RunDir(host, now, n === 1 ? '' : `-${n}`);
			if (await host.createExclusive(runDir.journalPath, '', 0o600)) return runDir;
		}
		throw new Error(`could not create a run directory in ${RUNS_DIR}: 999 runs started in the same second`);
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

/** The directories above `nodePath` that do not exist yet, deepest first. */
export async function missingDirectories(host: Host, nodePath: string): Promise<string[]> {
	const missing: string[] = [];
	for (let dir = nodePath.replace(/\/[^/]*$/, '') || '/'; dir !== '/'; dir = dir.replace(/\/[^/]*$/, '') || '/') {
		if ((await host.stat(dir)) !== undefined) break;
		missing.push(dir);
	}
	return missing;
}

/** Remove directories a run created, deepest first, each only while it is empty. */
export async function removeCreatedDirectories(host: Host, directories: readonly string[]): Promise<void> {
	for (const dir of directories) {
		const entries = await host.listDir(dir);
		if (entries === undefined) continue;
		if (entries.length > 0) return; // something else lives there now: keep it and its parents
		await host.remove(dir);
	}
}

/**
 * One run at a time: an O_EXCL lock file holding the pid; a dead pid's lock is taken over.
 * Taken before the node is read, so a second run plans only after the first has finished.
 * Releasing it removes the directories taking it created (a run that changed nothing
 * leaves the node byte for byte as it was).
 */
export async function acquireLock(host: Host, pid: number): Promise<() => Promise<void>> {
	const created = await missingDirectories(host, LOCK_PATH);
	for (let attempt = 0; attempt < 2; attempt++) {
		if (await host.createExclusive(LOCK_PATH, `${pid}\n`, 0o600)) {
			return async () => {
				await host.remove(LOCK_PATH);
				await removeCreatedDirectories(host, created);
			};
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

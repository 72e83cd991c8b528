/**
 * `etcd-harden restore-check`, which does not fit the engine: a read-only check (like
 * `status`): it changes nothing on the node (its temporary files are private and removed),
 * so it runs directly, prints Checks, and exits 1 when the backup would not restore. It needs
 * no root: it can run wherever the age identity is.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import {exitCodes, InputError} from '../engine/contract.js';
import {RealHost} from '../host/real.js';
import type {BackupCliOptions} from '../backup/cli-args.js';
import {DEFAULT_OUTPUT_DIR, DEFAULT_STAGING_PARENT, isBackupId} from '../backup/manifest.js';
import {restoreCheck, RestoreCheckInputError} from '../backup/restore-check.js';
import {checkText} from '../ui/format.js';

type Io = {stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream; isRoot: boolean; handleSignals?: boolean};

export type RestoreCheckRequest = {dryRun: boolean; root?: string; json: boolean; backup: BackupCliOptions};

export async function restoreCheckCommand(options: RestoreCheckRequest, io: Io): Promise<number> {
	// Ctrl-C stops at the next step and still runs the cleanup (throwaway etcd, plaintext).
	const abort = new AbortController();
	const onSignal = (): void => {
		if (!abort.signal.aborted) io.stderr.write('Interrupted: stopping etcd and removing the temporary files.\n');
		abort.abort();
	};
	if (io.handleSignals) {
		process.on('SIGINT', onSignal);
		process.on('SIGTERM', onSignal);
	}
	try {
		return await restoreCheckRun(options, io, abort.signal);
	} finally {
		if (io.handleSignals) {
			process.off('SIGINT', onSignal);
			process.off('SIGTERM', onSignal);
		}
	}
}

async function restoreCheckRun(options: RestoreCheckRequest, io: Io, signal: AbortSignal): Promise<number> {
	if (options.dryRun) throw new InputError('restore-check changes nothing on the node (only private temporary files, removed afterwards): run it without --dry-run.');
	const root = options.root;
	const host = new RealHost(root ?? '/');
	const flags = options.backup;
	let backupDir = flags.backupDir;
	if (backupDir === undefined) {
		const output = flags.output ?? DEFAULT_OUTPUT_DIR;
		const newest = ((await host.listDir(output)) ?? []).filter(isBackupId).sort().pop();
		if (newest === undefined) throw new InputError(`no etcd-backup-* directory in ${output}: pass the backup directory, or --output DIR where the backups are.`);
		backupDir = `${output}/${newest}`;
	}
	if (!(await host.stat(backupDir))?.isDirectory) throw new InputError(`${backupDir}: no such backup directory.`);
	// Root keeps the plaintext beside the tool's state; anyone else in their temporary directory.
	const stagingParent = io.isRoot || root !== undefined ? DEFAULT_STAGING_PARENT : path.join(os.tmpdir(), `etcd-harden-${process.getuid?.() ?? 'user'}`);
	io.stderr.write(`restore-check ${backupDir}\n`);
	let report;
	try {
		report = await restoreCheck(host, {
			backupDir,
			// The operator's key files, never looked up under --root.
			keyHost: new RealHost('/'),
			...(flags.identity ? {identityFile: flags.identity} : {}),
			...(flags.passphraseFile ? {passphraseFile: flags.passphraseFile} : {}),
			stagingParent,
			signal,
			onStep: label => {
				if (signal.aborted) throw new Error('interrupted');
				io.stderr.write(`  ${label}\n`);
			},
		});
	} catch (error) {
		if (error instanceof RestoreCheckInputError) throw new InputError(error.message);
		if (signal.aborted) {
			io.stderr.write('restore-check interrupted; nothing is left behind.\n');
			return exitCodes.aborted;
		}
		throw error;
	}
	if (options.json) {
		io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
	} else {
		for (const check of report.checks) io.stdout.write(checkText(check, '  '));
		io.stdout.write(
			report.ok
				? `\nThe backup ${report.id ?? backupDir} restores: etcd serves it and every secret decrypts with its config.\n`
				: `\nThe backup ${report.id ?? backupDir} would NOT restore: see the failed checks above.\n`,
		);
	}
	return report.ok ? exitCodes.ok : exitCodes.failed;
}

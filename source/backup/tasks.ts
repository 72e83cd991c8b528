/**
 * The backup stage's task. Params (BackupParams, backup.ts): node paths, public recipients,
 * the etcd connection; never key material or the passphrase (only the path of its file).
 */
import {defineTask} from '../engine/contract.js';
import {takeBackup, type BackupParams} from './backup.js';

export const etcdBackupTask = defineTask<BackupParams>('etcd-backup', {
	async run(params, context) {
		const result = await takeBackup(
			context.host,
			params,
			{
				step: label => context.progress({label}),
				info: text => context.log({level: 'info', text}),
				warn: text => context.log({level: 'warn', text}),
			},
			context.signal,
		);
		const {manifest} = result;
		context.log({
			level: 'success',
			text:
				`Backup written: ${result.dir} (etcd revision ${manifest.etcd.revision}, ${manifest.etcd.keys ?? manifest.etcd.totalKey} keys, ` +
				`snapshot sha256 ${manifest.snapshot.sha256.slice(0, 16)}…, ${(manifest.snapshot.encryptedBytes / 1e6).toFixed(1)} MB encrypted` +
				`${manifest.encryptionConfig ? `, config with keys ${[...new Set(manifest.encryptionConfig.keys.map(key => `${key.provider}:${key.name}`))].join(', ')}` : ''}).`,
		});
		await context.runDir?.journal({stage: 'backup', event: 'created', path: result.dir, detail: `etcd revision ${manifest.etcd.revision}, snapshot sha256 ${manifest.snapshot.sha256}`});
		if (result.pruned.length > 0) context.log({level: 'info', text: `Retention: removed ${result.pruned.join(', ')}.`});
	},
	// No undo: a finished backup is kept even if a later change of the stage (the timer) fails.
});

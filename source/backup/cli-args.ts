/**
 * The flags of `backup` and `restore-check` (pure): checked here, and for `backup` turned into
 * answers of the backup stage, so `--answers`/`--set backup.*` work the same way.
 */
import * as path from 'node:path';
import {InputError, type Answers} from '../engine/contract.js';
import {RecipientError} from './recipients.js';
import {splitRecipients} from './manifest.js';

export type BackupCliOptions = {
	recipients: string[];
	passphraseFile?: string;
	output?: string;
	keep?: string;
	identity?: string;
	/** restore-check's positional: one backup directory. */
	backupDir?: string;
};

type BackupFlagValues = {
	recipient?: string[];
	'passphrase-file'?: string;
	output?: string;
	keep?: string;
	identity?: string;
	'allow-plaintext-history'?: boolean;
};

function absolute(value: string | undefined): string | undefined {
	return value === undefined ? undefined : path.resolve(value);
}

export function parseBackupFlags(command: string, values: BackupFlagValues, positional: string | undefined, set: Answers): BackupCliOptions {
	const given = (name: string, value: unknown): boolean => (Array.isArray(value) ? value.length > 0 : value !== undefined) && name.length > 0;
	const flags: Array<[string, unknown, readonly string[]]> = [
		['--recipient', values.recipient, ['backup']],
		['--passphrase-file', values['passphrase-file'], ['backup', 'restore-check']],
		['--output', values.output, ['backup', 'restore-check', 'fleet']],
		['--keep', values.keep, ['backup']],
		['--identity', values.identity, ['restore-check']],
		['--allow-plaintext-history', values['allow-plaintext-history'] || undefined, ['backup']],
	];
	for (const [name, value, commands] of flags) {
		if (given(name, value) && !commands.includes(command)) {
			throw new InputError(`${name} belongs to etcd-harden ${commands.join(' and ')}, not ${command}. See etcd-harden --help.`);
		}
	}
	let recipients: string[] = [];
	try {
		recipients = splitRecipients(values.recipient ?? []);
	} catch (error) {
		if (error instanceof RecipientError) throw new InputError(`--recipient: ${error.message}`);
		throw error;
	}
	const passphraseFile = absolute(values['passphrase-file']);
	if (recipients.length > 0 && passphraseFile !== undefined) {
		throw new InputError('give either --recipient (recommended) or --passphrase-file, not both: an age file is encrypted to recipients or to one passphrase.');
	}
	if (values.identity !== undefined && passphraseFile !== undefined) {
		throw new InputError('give either --identity or --passphrase-file, not both.');
	}
	const output = absolute(values.output);
	const options: BackupCliOptions = {recipients};
	if (passphraseFile !== undefined) options.passphraseFile = passphraseFile;
	if (output !== undefined) options.output = output;
	if (values.keep !== undefined) options.keep = values.keep;
	const identity = absolute(values.identity);
	if (identity !== undefined) options.identity = identity;
	const backupDir = absolute(positional);
	if (backupDir !== undefined) options.backupDir = backupDir;

	if (command === 'backup') {
		const answers = (set['backup'] ??= {});
		if (output !== undefined) answers['output'] = output;
		if (values.keep !== undefined) answers['keep'] = values.keep;
		if (values['allow-plaintext-history'] === true) answers['allowPlaintextHistory'] = true;
		if (recipients.length > 0) {
			answers['protect'] = 'recipients';
			answers['recipients'] = recipients.join(',');
		}
		if (passphraseFile !== undefined) {
			answers['protect'] = 'passphrase';
			answers['passphraseFile'] = passphraseFile;
		}
	}
	return options;
}

/**
 * The backup setup already on the node: the recipients, passphrase file and output directory
 * of the scheduled backup service (units.ts writes it), read back from its ExecStart line.
 * Pure: unit text in, settings out.
 */
import {splitRecipients} from './manifest.js';

export type BackupSetup = {
	/** Node path of the service unit it was read from. */
	unit: string;
	recipients: string[];
	passphraseFile?: string;
	output?: string;
};

function unquote(word: string): string {
	return word.startsWith('"') && word.endsWith('"') ? word.slice(1, -1).replace(/\\(.)/g, '$1') : word;
}

/** The settings of the ExecStart line, or undefined when it names no way to encrypt. */
export function parseBackupService(unit: string, text: string): BackupSetup | undefined {
	const line = /^ExecStart=(.*)$/m.exec(text)?.[1];
	if (line === undefined) return undefined;
	const words = line.match(/"(?:[^"\\]|\\.)*"|\S+/g)?.map(unquote) ?? [];
	const recipients: string[] = [];
	let passphraseFile: string | undefined;
	let output: string | undefined;
	for (let index = 0; index < words.length - 1; index++) {
		const value = words[index + 1]!;
		if (words[index] === '--recipient') recipients.push(value);
		if (words[index] === '--passphrase-file') passphraseFile = value;
		if (words[index] === '--output') output = value;
	}
	let checked: string[];
	try {
		checked = splitRecipients(recipients);
	} catch {
		checked = [];
	}
	if (checked.length === 0 && passphraseFile === undefined) return undefined;
	return {unit, recipients: checked, ...(passphraseFile ? {passphraseFile} : {}), ...(output ? {output} : {})};
}

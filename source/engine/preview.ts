import {createTwoFilesPatch} from 'diff';
import type {Host} from '../host/types.js';
import {renderArgv} from '../host/types.js';
import type {PreviewItem} from './state.js';
import type {Change} from './contract.js';

export const REDACTED = '<redacted>';

/**
 * Replace every secret substring, and the value of every `secret:` field (the shape key
 * material takes in an EncryptionConfiguration), so previews and logs never carry keys
 * even when a stage forgot to list one.
 */
export function redact(text: string, secrets: readonly string[] = []): string {
	let result = text;
	for (const secret of secrets) {
		if (secret.length > 0) result = result.split(secret).join(REDACTED);
	}
	return result.replace(/^(\s*-?\s*secret:\s*)(?!<redacted>)\S.*$/gm, `$1${REDACTED}`);
}

function modeText(mode: number): string {
	return `0${mode.toString(8)}`;
}

/** Render a change as the operator sees it before confirming. */
export async function previewChange(change: Change, host: Host): Promise<PreviewItem> {
	switch (change.kind) {
		case 'write-file': {
			const before = await host.readText(change.path);
			const stat = await host.stat(change.path);
			const oldText = redact(before ?? '', change.secrets);
			const newText = redact(change.content, change.secrets);
			const header: string[] = [];
			if (before === undefined) header.push(`new file, mode ${modeText(change.mode)}`);
			else if (stat && stat.mode !== change.mode) header.push(`mode ${modeText(stat.mode)} -> ${modeText(change.mode)}`);
			const patch =
				oldText === newText
					? '(content unchanged)\n'
					: createTwoFilesPatch(
							before === undefined ? '/dev/null' : `a${change.path}`,
							`b${change.path}`,
							oldText,
							newText,
							undefined,
							undefined,
							{context: 3},
						)
							.split('\n')
							.filter(line => !line.startsWith('====='))
							.join('\n');
			return {kind: 'write-file', summary: redact(change.summary, change.secrets), body: [...header, patch.trimEnd()].join('\n')};
		}
		case 'run': {
			const lines = [`$ ${renderArgv(change.argv)}`];
			if (change.undo) lines.push(`(undo: ${renderArgv(change.undo)})`);
			return {kind: 'run', summary: change.summary, body: lines.join('\n')};
		}
		case 'task':
			return {kind: 'task', summary: change.summary, body: (change.detail ?? []).join('\n')};
	}
}

export async function previewChanges(changes: readonly Change[], host: Host): Promise<PreviewItem[]> {
	const items: PreviewItem[] = [];
	for (const change of changes) items.push(await previewChange(change, host));
	return items;
}

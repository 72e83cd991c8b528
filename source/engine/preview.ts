import {createTwoFilesPatch} from 'diff';
import {isScalar, parseDocument, visit} from 'yaml';
import type {Host} from '../host/types.js';
import {renderArgv} from '../host/types.js';
import type {PreviewItem} from './state.js';
import {InputError, type Change, type WriteFileChange} from './contract.js';

export const REDACTED = '<redacted>';

/** Key lengths (bytes) of the apiserver's providers: aescbc/aesgcm 16/24/32, secretbox 32. */
const keyByteLengths = new Set([16, 24, 32]);

/** Keys whose values are never shown, whatever they hold. */
const secretKeyNames = /^(secret|password|passphrase|token)$/i;

/**
 * Whether a string is key material as the apiserver reads it: strict standard base64 with
 * padding (24, 32 or 44 characters) of 16, 24 or 32 bytes. The unpadded 32-character form
 * must also mix character classes, so a plain word or path of that length is not taken for one.
 */
export function decodesToKey(value: string): boolean {
	const text = value.trim();
	if (text.length === 24) return /^[A-Za-z0-9+/]{22}==$/.test(text);
	if (text.length === 44) return /^[A-Za-z0-9+/]{43}=$/.test(text);
	if (text.length === 32) return /^[A-Za-z0-9+/]{32}$/.test(text) && /[0-9+/]/.test(text) && /[A-Z]/.test(text) && /[a-z]/.test(text);
	return false;
}

/**
 * Redact a YAML or JSON text on its parsed nodes: the value of every `secret` (also
 * password, passphrase, token) key, whatever its form (quoted, folded over lines, JSON with
 * escapes, an alias), and every string value that decodes to key bytes. Text that does not
 * parse loses every token that could be key material instead.
 */
export function redactYaml(text: string, unparsable: 'aggressive' | 'keys-only' = 'aggressive'): string {
	const fallback = () => redactTokens(text, unparsable === 'aggressive');
	if (text.length > 4 * 1024 * 1024) return fallback();
	let doc;
	try {
		doc = parseDocument(text, {prettyErrors: false, uniqueKeys: false});
	} catch {
		return fallback();
	}
	if (doc.errors.length > 0) return fallback();
	const ranges: Array<[number, number]> = [];
	const add = (node: unknown): void => {
		const range = (node as {range?: [number, number, number]} | null)?.range;
		if (range) ranges.push([range[0], range[1]]);
	};
	visit(doc, {
		Pair(_, pair) {
			const key = isScalar(pair.key) ? pair.key.value : undefined;
			if (typeof key === 'string' && secretKeyNames.test(key) && pair.value !== null) add(pair.value);
		},
		Scalar(_, node) {
			if (typeof node.value === 'string' && decodesToKey(node.value)) add(node);
		},
		Alias(_, node) {
			if (decodesToKey(node.source)) add(node);
		},
	});
	// Outermost first; nested ranges fall inside an earlier one.
	ranges.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
	let out = '';
	let at = 0;
	for (const [start, end] of ranges) {
		if (start < at) continue;
		out += text.slice(at, start) + REDACTED;
		at = end;
	}
	return redactTokens(out + text.slice(at), false);
}

/**
 * Free text (summaries, messages, unparsable files): every token that decodes to key bytes
 * (a JSON "\/" escape read as "/"), and with `aggressive` every long base64-like token and
 * whatever follows a "secret" key on its line.
 */
function redactTokens(text: string, aggressive: boolean): string {
	let out = text.replace(/(?:[A-Za-z0-9+]|\\?\/){16,}(?:=|\\u003[dD]){0,2}/g, token => {
		const plain = token.replaceAll('\\/', '/').replace(/\\u003[dD]/g, '=');
		if (decodesToKey(plain)) return REDACTED;
		if (aggressive && /[0-9+/]/.test(plain) && /[A-Za-z]/.test(plain)) return REDACTED;
		return token;
	});
	if (aggressive) out = out.replace(/(secret|password|passphrase|token)(["']?\s*[:=]\s*).*$/gim, `$1$2${REDACTED}`);
	return out;
}

/**
 * Redact free text: the given secret substrings (and their JSON-escaped forms), then every
 * token that decodes to key bytes. For YAML files use redactYaml, which works on the nodes.
 */
export function redact(text: string, secrets: readonly string[] = []): string {
	let result = text;
	for (const secret of [...secrets].filter(s => s.length >= 4).sort((a, b) => b.length - a.length)) {
		for (const form of new Set([secret, secret.replaceAll('/', '\\/')])) result = result.split(form).join(REDACTED);
	}
	return redactTokens(result, false);
}

/**
 * A file's text as previews show it: redacted on its YAML nodes and by the known secrets. A
 * file that should be YAML or JSON (by its name, or under /etc/kubernetes) but does not parse
 * loses every token that could be key material; any other file that does not parse (a systemd
 * unit, a rules script) loses the tokens that decode to key bytes, so its paths and public
 * age recipients stay readable.
 */
export function redactFile(text: string, secrets: readonly string[] = [], path = ''): string {
	const yamlLike = /\.(ya?ml|json|conf|kubeconfig)$/i.test(path) || path.startsWith('/etc/kubernetes/') || path === '';
	return redact(redactYaml(text, yamlLike ? 'aggressive' : 'keys-only'), secrets);
}

/**
 * Refuse (bad input, nothing changed) a write that would land on a directory, or replace a
 * file that is not the one the plan was made from (see WriteFileChange.guard).
 */
export async function checkWriteTarget(change: WriteFileChange, host: Host): Promise<void> {
	const stat = await host.stat(change.path);
	if (stat?.isDirectory) {
		throw new InputError(`${change.path} is a directory, so the file cannot be written there: name a file inside it, or move the directory away.`);
	}
	if (stat && !stat.isFile) throw new InputError(`${change.path} is not a regular file (a device or a socket?): etcd-harden writes only regular files. Choose another path.`);
	if (change.guard === undefined) return;
	const now = stat ? await host.readText(change.path) : undefined;
	const expected = change.guard.before;
	const ok = expected === null ? now === undefined || now === change.content : now === expected || now === change.content;
	if (!ok) throw new InputError(change.guard.refusal);
}

/** The node path a symlinked `nodePath` resolves to (inside the root), or undefined. */
function linkTarget(nodePath: string, host: Host): string | undefined {
	let resolved: string;
	try {
		resolved = host.resolve(nodePath);
	} catch {
		return undefined;
	}
	const plain = host.root === '/' ? nodePath : `${host.root}${nodePath}`;
	if (resolved === plain) return undefined;
	return host.root === '/' ? resolved : resolved.slice(host.root.length) || '/';
}

function modeText(mode: number): string {
	return `0${mode.toString(8)}`;
}

/** Render a change as the operator sees it before confirming. */
export async function previewChange(change: Change, host: Host): Promise<PreviewItem> {
	switch (change.kind) {
		case 'write-file': {
			await checkWriteTarget(change, host);
			const before = await host.readText(change.path);
			const stat = await host.stat(change.path);
			const oldText = redactFile(before ?? '', change.secrets, change.path);
			const newText = redactFile(change.content, change.secrets, change.path);
			const header: string[] = [];
			const linked = linkTarget(change.path, host);
			if (linked !== undefined) header.push(`${change.path} is a symbolic link: ${linked} is replaced and the link stays`);
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

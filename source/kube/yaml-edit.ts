/**
 * Editing YAML files so that only the lines a change touches differ.
 *
 * The yaml Document API keeps comments, key order and scalar styles, but its printer
 * normalises some whitespace (the spaces before a trailing comment, sequence indentation).
 * To keep every untouched line byte for byte, `editYaml` prints the document twice (before
 * and after the edit, with the printer options that best reproduce the original), diffs
 * the two printouts by line, and applies only the changed lines to the original text.
 */
import {diffArrays} from 'diff';
import {LineCounter, parseDocument, type Document, type ToStringOptions} from 'yaml';

export type YamlProblem = {message: string; line?: number};

/**
 * Largest manifest or config etcd-harden parses and patches. A real static pod manifest or
 * EncryptionConfiguration is under 10 KB; anything near this is not one.
 */
export const MAX_YAML_BYTES = 256 * 1024;

/** Aliases a document may expand to before it counts as an alias bomb. */
const MAX_ALIAS_COUNT = 100;

/**
 * What went wrong, in our own words by the parser's error code: the parser's messages can
 * quote the source (an alias name, a tag), which may be key material.
 */
const problemText: Record<string, string> = {
	ALIAS_PROPS: 'an alias with an anchor or a tag',
	BAD_ALIAS: 'an invalid alias',
	BAD_COLLECTION_TYPE: 'a collection of the wrong type',
	BAD_DIRECTIVE: 'an invalid directive',
	BAD_DQ_ESCAPE: 'an invalid escape in a double-quoted string',
	BAD_INDENT: 'bad indentation',
	BAD_PROP_ORDER: 'an anchor or tag in the wrong place',
	BAD_SCALAR_START: 'a value that cannot start with this character',
	BLOCK_AS_IMPLICIT_KEY: 'a nested mapping in a compact mapping',
	BLOCK_IN_FLOW: 'a block value inside a flow collection',
	DUPLICATE_KEY: 'a key that appears twice in one mapping',
	IMPOSSIBLE: 'a syntax error',
	KEY_OVER_1024_CHARS: 'a key longer than 1024 characters',
	MISSING_CHAR: 'a missing closing quote or bracket',
	MULTILINE_IMPLICIT_KEY: 'a key spread over several lines',
	MULTIPLE_ANCHORS: 'a node with two anchors',
	MULTIPLE_DOCS: 'several documents (---) where one is expected',
	MULTIPLE_TAGS: 'a node with two tags',
	NON_STRING_KEY: 'a key that is not text',
	TAB_AS_INDENT: 'a tab used for indentation',
	TAG_RESOLVE_FAILED: 'a value that does not match its tag',
	UNEXPECTED_TOKEN: 'an unexpected token',
	BAD_STRING: 'an invalid string',
};

/**
 * Parse one YAML document; the first problem (with its line) or the document. Problems are
 * described without quoting the source. Aliases are resolved once here, bounded, so an
 * alias bomb or an alias to a missing anchor is a problem like a syntax error.
 */
export function parseYaml(text: string): {doc: Document.Parsed; problem?: undefined} | {doc?: undefined; problem: YamlProblem} {
	if (text.length > MAX_YAML_BYTES) {
		return {problem: {message: `${text.length} bytes, more than the ${MAX_YAML_BYTES / 1024} KiB etcd-harden parses (a real one is under 10 KB)`}};
	}
	// YAML allows tab, LF and CR among the C0 controls and not DEL; the yaml library reads a
	// raw NUL into a value, which would reach the file system as part of a path.
	// eslint-disable-next-line no-control-regex
	const control = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.exec(text);
	if (control) {
		const line = text.slice(0, control.index).split('\n').length;
		return {problem: {message: `a control character (U+${control[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}), which a YAML file may not hold`, line}};
	}
	const lineCounter = new LineCounter();
	// prettyErrors off: its messages quote source lines, which may hold key material.
	const doc = parseDocument(text, {prettyErrors: false, uniqueKeys: true, lineCounter});
	const error = doc.errors[0];
	if (error) {
		const line = lineCounter.linePos(error.pos[0]).line;
		return {problem: {message: problemText[error.code] ?? `a syntax error (${error.code})`, line}};
	}
	try {
		doc.toJS({maxAliasCount: MAX_ALIAS_COUNT});
	} catch (caught) {
		const message = caught instanceof Error ? caught.message : '';
		if (/excessive alias count/i.test(message)) {
			return {problem: {message: 'aliases that expand beyond any real file (an alias bomb); write the values out'}};
		}
		if (/unresolved alias/i.test(message)) {
			return {problem: {message: 'an alias (*name) to an anchor that does not exist; a stray "*" before a value?'}};
		}
		return {problem: {message: 'a value that cannot be read'}};
	}
	return {doc};
}
const candidateOptions: ToStringOptions[] = [
	{indent: 2, indentSeq: false, lineWidth: 0},
	{indent: 2, indentSeq: true, lineWidth: 0},
	{indent: 4, indentSeq: false, lineWidth: 0},
	{indent: 4, indentSeq: true, lineWidth: 0},
];

/** Printer options under which `text` round-trips with the most identical lines. */
export function printOptionsFor(text: string): ToStringOptions {
	let best = candidateOptions[0]!;
	let bestScore = -1;
	for (const options of candidateOptions) {
		const printed = parseDocument(text).toString(options);
		if (printed === text) return options;
		const score = sameLines(splitLines(text), splitLines(printed));
		if (score > bestScore) {
			best = options;
			bestScore = score;
		}
	}
	return best;
}

/**
 * Apply `edit` to the document parsed from `text` and return the new text. Lines the edit
 * does not change are copied from `text` unchanged. Returns `text` itself when the edit
 * changes nothing.
 */
export function editYaml(text: string, edit: (doc: Document.Parsed) => void): string {
	const options = printOptionsFor(text);
	const before = parseDocument(text).toString(options);
	const doc = parseDocument(text);
	edit(doc);
	const after = doc.toString(options);
	if (after === before) return text;

	const merged = mergeLines(splitLines(text), splitLines(before), splitLines(after)).join('\n');
	// The line merge keeps untouched lines byte for byte, but a file that mixes indentation
	// styles can defeat it (an inserted line indented like the printer, not like its
	// neighbours). Keep the merge only when it reads back as exactly the edited document;
	// else the printer's whole text, which does (found by test/unit/hostile-fuzz.test.ts).
	const check = parseDocument(merged, {uniqueKeys: true});
	if (check.errors.length === 0 && JSON.stringify(check.toJS()) === JSON.stringify(doc.toJS())) return merged;
	return after;
}

function splitLines(text: string): string[] {
	return text.split('\n');
}

function sameLines(a: string[], b: string[]): number {
	let same = 0;
	for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] === b[i]) same++;
	return same;
}

type Op = {kind: 'keep'; j: number; k: number} | {kind: 'del'; j: number} | {kind: 'ins'; k: number};

/**
 * Edits beyond which two printouts count as unrelated. Myers' algorithm takes time
 * O((N + M) * D) for D edits: near linear for the few lines an edit or the printer changes,
 * and bounded here, so a hostile file never makes it quadratic.
 */
const MAX_EDIT_LENGTH = 2_000;

/** Common lines of two line lists in order, as [i, j] pairs (Myers' diff, jsdiff). */
function commonPairs(a: readonly string[], b: readonly string[]): Array<[number, number]> {
	const pairs: Array<[number, number]> = [];
	const changes = diffArrays(a as string[], b as string[], {maxEditLength: MAX_EDIT_LENGTH});
	// Too different to align: no common lines (the whole text becomes one block).
	if (changes === undefined) return pairs;
	let i = 0;
	let j = 0;
	for (const change of changes) {
		const count = change.count ?? change.value.length;
		if (change.added) j += count;
		else if (change.removed) i += count;
		else for (let n = 0; n < count; n++) pairs.push([i++, j++]);
	}
	return pairs;
}

/**
 * Three-way line merge. `before` is the original reprinted, `after` the edited document
 * reprinted. The original and `before` are aligned into blocks (equal lines, and runs the
 * printer reformatted); every block the edit does not touch is copied from the original,
 * touched blocks come from `after`.
 */
function mergeLines(original: string[], before: string[], after: string[]): string[] {
	// Edit script before -> after.
	const ops: Op[] = [];
	{
		let j = 0;
		let k = 0;
		for (const [pj, pk] of [...commonPairs(before, after), [before.length, after.length] as [number, number]]) {
			while (j < pj) ops.push({kind: 'del', j: j++});
			while (k < pk) ops.push({kind: 'ins', k: k++});
			if (pj < before.length) ops.push({kind: 'keep', j: j++, k: k++});
		}
	}

	// Blocks aligning original and before.
	type Block = {origStart: number; origEnd: number; beforeStart: number; beforeEnd: number};
	const blocks: Block[] = [];
	{
		let i = 0;
		let j = 0;
		for (const [pi, pj] of [...commonPairs(original, before), [original.length, before.length] as [number, number]]) {
			if (pi > i || pj > j) blocks.push({origStart: i, origEnd: pi, beforeStart: j, beforeEnd: pj});
			if (pi < original.length) blocks.push({origStart: pi, origEnd: pi + 1, beforeStart: pj, beforeEnd: pj + 1});
			i = pi + 1;
			j = pj + 1;
		}
	}
	const blockOf = new Int32Array(before.length).fill(-1);
	blocks.forEach((block, b) => {
		for (let j = block.beforeStart; j < block.beforeEnd; j++) blockOf[j] = b;
	});
	/** Blocks with original lines only (the printer dropped them), by before position. */
	const origOnlyAt = new Map<number, Block[]>();
	for (const block of blocks) {
		if (block.beforeStart === block.beforeEnd) origOnlyAt.set(block.beforeStart, [...(origOnlyAt.get(block.beforeStart) ?? []), block]);
	}

	// A block is touched when the edit deletes one of its lines or inserts inside it.
	const touched = new Set<number>();
	{
		let position = 0; // before lines consumed so far
		for (const op of ops) {
			if (op.kind === 'ins') {
				if (position > 0 && position < before.length && blockOf[position - 1] === blockOf[position]) touched.add(blockOf[position]!);
				continue;
			}
			if (op.kind === 'del') touched.add(blockOf[op.j]!);
			position = op.j + 1;
		}
	}

	const out: string[] = [];
	const emitOriginal = (block: Block) => {
		for (let i = block.origStart; i < block.origEnd; i++) out.push(original[i]!);
	};
	for (const op of ops) {
		if (op.kind === 'ins') {
			out.push(after[op.k]!);
			continue;
		}
		const b = blockOf[op.j]!;
		const block = blocks[b]!;
		if (op.j === block.beforeStart) {
			for (const dropped of origOnlyAt.get(op.j) ?? []) emitOriginal(dropped);
			if (!touched.has(b)) emitOriginal(block);
		}
		if (touched.has(b) && op.kind === 'keep') out.push(after[op.k]!);
	}
	for (const dropped of origOnlyAt.get(before.length) ?? []) emitOriginal(dropped);
	return out;
}

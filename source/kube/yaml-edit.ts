/**
 * Editing YAML files so that only the lines a change touches differ.
 *
 * The yaml Document API keeps comments, key order and scalar styles, but its printer
 * normalises some whitespace (the spaces before a trailing comment, sequence indentation).
 * To keep every untouched line byte for byte, `editYaml` prints the document twice (before
 * and after the edit, with the printer options that best reproduce the original), diffs
 * the two printouts by line, and applies only the changed lines to the original text.
 */
import {LineCounter, parseDocument, type Document, type ToStringOptions} from 'yaml';

export type YamlProblem = {message: string; line?: number};

/** Parse one YAML document; the first error (with its line) or the document. */
export function parseYaml(text: string): {doc: Document.Parsed; problem?: undefined} | {doc?: undefined; problem: YamlProblem} {
	const lineCounter = new LineCounter();
	// prettyErrors off: its messages quote source lines, which may hold key material.
	const doc = parseDocument(text, {prettyErrors: false, uniqueKeys: true, lineCounter});
	const error = doc.errors[0];
	if (error) {
		const line = lineCounter.linePos(error.pos[0]).line;
		return {problem: {message: firstLine(error.message), line}};
	}
	return {doc};
}

function firstLine(message: string): string {
	return message.split('\n')[0]!.trim();
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

	return mergeLines(splitLines(text), splitLines(before), splitLines(after)).join('\n');
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

/** Longest-common-subsequence alignment of two line lists, as [i, j] pairs in order. */
function lcsPairs(a: readonly string[], b: readonly string[]): Array<[number, number]> {
	const n = a.length;
	const m = b.length;
	// Manifests and configs are a few hundred lines at most.
	const table: Uint32Array[] = [];
	for (let i = 0; i <= n; i++) table.push(new Uint32Array(m + 1));
	for (let i = n - 1; i >= 0; i--) {
		for (let j = m - 1; j >= 0; j--) {
			table[i]![j] = a[i] === b[j] ? table[i + 1]![j + 1]! + 1 : Math.max(table[i + 1]![j]!, table[i]![j + 1]!);
		}
	}
	const pairs: Array<[number, number]> = [];
	let i = 0;
	let j = 0;
	while (i < n && j < m) {
		if (a[i] === b[j]) {
			pairs.push([i, j]);
			i++;
			j++;
		} else if (table[i + 1]![j]! >= table[i]![j + 1]!) i++;
		else j++;
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
		for (const [pj, pk] of [...lcsPairs(before, after), [before.length, after.length] as [number, number]]) {
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
		for (const [pi, pj] of [...lcsPairs(original, before), [original.length, before.length] as [number, number]]) {
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

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

	const original = splitLines(text);
	const beforeLines = splitLines(before);
	// The line merge needs a 1:1 line mapping between the original and its reprint.
	if (original.length !== beforeLines.length) return after;
	return mergeLines(original, beforeLines, splitLines(after)).join('\n');
}

function splitLines(text: string): string[] {
	return text.split('\n');
}

function sameLines(a: string[], b: string[]): number {
	let same = 0;
	for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] === b[i]) same++;
	return same;
}

/**
 * Lines common to `before` and `after` (longest common subsequence) are taken from
 * `original` (same index as in `before`); all other lines come from `after`.
 */
function mergeLines(original: string[], before: string[], after: string[]): string[] {
	const n = before.length;
	const m = after.length;
	// LCS table; manifests and configs are a few hundred lines at most.
	const table: Uint32Array[] = [];
	for (let i = 0; i <= n; i++) table.push(new Uint32Array(m + 1));
	for (let i = n - 1; i >= 0; i--) {
		for (let j = m - 1; j >= 0; j--) {
			table[i]![j] = before[i] === after[j] ? table[i + 1]![j + 1]! + 1 : Math.max(table[i + 1]![j]!, table[i]![j + 1]!);
		}
	}
	const out: string[] = [];
	let i = 0;
	let j = 0;
	while (i < n && j < m) {
		if (before[i] === after[j]) {
			out.push(original[i]!);
			i++;
			j++;
		} else if (table[i + 1]![j]! >= table[i]![j + 1]!) {
			i++; // line removed by the edit
		} else {
			out.push(after[j]!);
			j++;
		}
	}
	while (j < m) out.push(after[j++]!);
	return out;
}

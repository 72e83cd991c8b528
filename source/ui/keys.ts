/**
 * Keys from raw terminal input, one at a time. A terminal delivers keys typed faster than the
 * program reads (or pasted) as one chunk: "yy", "\r\r", "\u001B[B " (Down, Space). Ink splits
 * escape sequences but leaves a run of plain characters as one event, and it reads Backspace
 * (0x7f) as "delete". Here every key of a chunk becomes its own KeyPress, in order, so each one
 * acts on the state the previous one left (see the wizard's key dispatch).
 */
export type KeyName =
	| 'up'
	| 'down'
	| 'left'
	| 'right'
	| 'home'
	| 'end'
	| 'pageup'
	| 'pagedown'
	| 'delete'
	| 'backspace'
	| 'return'
	| 'escape'
	| 'tab'
	| 'ctrl'
	| 'char'
	| 'unknown';

/**
 * One key: a name, and the character for `char` and the letter for `ctrl` (ctrl-u: "u").
 * `pasted`: a printable character from a run of several read at once (typed ahead or pasted):
 * it still acts, but never as a command key (a pasted "q" does not quit).
 */
export type KeyPress = {name: KeyName; char?: string; pasted?: boolean};

const sequences: Record<string, KeyName> = {
	'[A': 'up',
	'[B': 'down',
	'[C': 'right',
	'[D': 'left',
	OA: 'up',
	OB: 'down',
	OC: 'right',
	OD: 'left',
	'[H': 'home',
	'[F': 'end',
	OH: 'home',
	OF: 'end',
	'[1~': 'home',
	'[7~': 'home',
	'[4~': 'end',
	'[8~': 'end',
	'[3~': 'delete',
	'[5~': 'pageup',
	'[6~': 'pagedown',
};

/** The keys of one input event (as Ink's input parser hands them over). */
export function parseKeys(event: string): KeyPress[] {
	if (event.startsWith('\u001B')) {
		const rest = event.slice(1);
		if (rest === '' || rest === '\u001B') return [{name: 'escape'}];
		const name = sequences[rest];
		if (name) return [{name}];
		// A modified arrow (ESC[1;5C and the like): take its final letter.
		const modified = /^\[1;\d+([ABCDHF])$/.exec(rest);
		if (modified) return [{name: sequences[`[${modified[1]}`] ?? 'unknown'}];
		return [{name: 'unknown'}];
	}
	const keys: KeyPress[] = [];
	const run = [...event].length > 1;
	for (const char of event) {
		const code = char.codePointAt(0) ?? 0;
		if (char === '\r' || char === '\n') keys.push({name: 'return'});
		else if (char === '\t') keys.push({name: 'tab'});
		else if (code === 0x7f || code === 0x08) keys.push({name: 'backspace'});
		else if (code >= 1 && code <= 26) keys.push({name: 'ctrl', char: String.fromCodePoint(code + 96)});
		else if (code < 0x20) keys.push({name: 'unknown'});
		else keys.push({name: 'char', char, ...(run ? {pasted: true} : {})});
	}
	return keys;
}

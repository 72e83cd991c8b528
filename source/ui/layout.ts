/**
 * Pure layout for the live frame: word wrapping that the frame can count, so the live area
 * never reaches the terminal's height (Ink clears the whole screen, scrollback included,
 * when it does) and wrapped lines never run words together or start with a stray space.
 */

/** Display width of a string (one column per code point; the wizard's text has no wide characters). */
export function width(text: string): number {
	return [...text].length;
}

/**
 * Wrap at word boundaries to `columns` (at least 10); a word longer than a line is cut.
 * Explicit newlines are kept. Never returns a line with leading spaces it did not have.
 */
export function wrapText(text: string, columns: number): string[] {
	const max = Math.max(10, columns);
	const out: string[] = [];
	for (const paragraph of text.split('\n')) {
		const indent = /^\s*/.exec(paragraph)?.[0] ?? '';
		// Words with the spaces before them (kept inside a line: "PASS  title" stays aligned).
		const tokens = paragraph.slice(indent.length).match(/\s*\S+/g) ?? [];
		if (tokens.length === 0) {
			out.push(paragraph.length > max ? paragraph.slice(0, max) : paragraph);
			continue;
		}
		let line = indent;
		let fresh = true;
		for (const token of tokens) {
			if (!fresh && width(line) + width(token) <= max) {
				line += token;
				continue;
			}
			if (!fresh) {
				out.push(line);
				line = indent;
			}
			// A wrapped line starts at its word, never with the space before it.
			let word = token.trimStart();
			while (width(line) + width(word) > max && max - width(line) > 0) {
				const chars = [...word];
				const room = max - width(line);
				out.push(line + chars.slice(0, room).join(''));
				word = chars.slice(room).join('');
				line = indent;
			}
			line += word;
			fresh = false;
		}
		out.push(line);
	}
	return out;
}

/** Cut lines to `columns`, ending with "…" where cut. */
export function truncate(text: string, columns: number): string {
	const chars = [...text];
	if (chars.length <= columns) return text;
	return `${chars.slice(0, Math.max(0, columns - 1)).join('')}…`;
}

/** A window of `size` items that keeps `cursor` visible (select lists, the diff pager). */
export function windowAround(count: number, cursor: number, size: number): {start: number; end: number} {
	if (count <= size) return {start: 0, end: count};
	const half = Math.floor(size / 2);
	const start = Math.min(Math.max(0, cursor - half), count - size);
	return {start, end: start + size};
}

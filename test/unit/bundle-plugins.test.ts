/**
 * The build-time rewrites of dependencies in scripts/esbuild-plugins.mjs must not change what the
 * code computes. string-width's emoji guard: the bundled string-width (with the guard) and the
 * package as published give the same width for every string here, including every kind of RGI
 * emoji sequence, the glyphs the wizard draws, and every code point in the ranges that hold
 * symbols and emoji, alone, with VS16, and between ASCII text (the regex it guards is created at
 * its first use, so these also prove that lazy regex gives the published widths).
 */
import {mkdtemp, rm} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {pathToFileURL} from 'node:url';
import {build} from 'esbuild';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import stringWidth from 'string-width';
// @ts-expect-error: a plain .mjs build script without types
import {stringWidthEmojiGuard} from '../../scripts/esbuild-plugins.mjs';

type Width = (text: string) => number;
let guarded: Width;
let dir: string;

beforeAll(async () => {
	dir = await mkdtemp(join(tmpdir(), 'etcd-harden-plugins-'));
	const outfile = join(dir, 'string-width.mjs');
	const result = await build({
		stdin: {contents: "export {default} from 'string-width';", resolveDir: process.cwd(), loader: 'js'},
		bundle: true,
		platform: 'node',
		format: 'esm',
		target: 'node20',
		outfile,
		plugins: [stringWidthEmojiGuard],
		logLevel: 'silent',
		write: true,
	});
	expect(result.errors).toEqual([]);
	guarded = ((await import(pathToFileURL(outfile).href)) as {default: Width}).default;
});

afterAll(async () => {
	await rm(dir, {recursive: true, force: true});
});

describe('string-width emoji guard (esbuild plugin)', () => {
	it('is applied: the bundle tests the Emoji property before the RGI emoji regex', async () => {
		const {readFile} = await import('node:fs/promises');
		const bundled = await readFile(join(dir, 'string-width.mjs'), 'utf8');
		expect(bundled).toMatch(/mayBeEmojiRegex\.test\(segment\)\s*&&\s*rgiEmojiRegex\.test\(segment\)/);
		// The RGI emoji regex is created at its first use, not when the module loads.
		expect(bundled).not.toMatch(/\/\^\\p\{RGI_Emoji\}\$\/v/);
		expect(bundled).toMatch(/rgiEmojiRegexCreated \?\?= new RegExp\(/);
	});

	it('gives the published widths for emoji sequences of every kind, the wizard glyphs and mixed text', () => {
		const samples = [
			'✅', '❤️', '❤', '©️', '©', '1️⃣', '#️⃣', '*️⃣', '1⃣', '🇩🇪', '🇩', '👍🏽', '👩‍💻', '👨‍👩‍👧‍👦', '🏴󠁧󠁢󠁳󠁣󠁴󠁿', '🏳️‍🌈', '☺️', '☺', '⌚', '🕐', '🀄', '🃏',
			'❯ · Safety snapshot before rewriting objects  to do', 'q quit · ctrl-c abort', '⠋ preparing', '✓ done ✗ failed ⚠ warn', '→ ← ↑ ↓ …',
			'日本語テキスト', 'Ünïcödé 123 · 4/5', 'ｶﾞｷﾞ', '한국어', '각', 'e\u0301', 'a\u200db', '\u200b', '10 secrets · 3 keys 🔑', '',
		];
		for (const text of samples) expect(guarded(text), JSON.stringify(text)).toBe(stringWidth(text));
	});

	it('gives the published widths for every code point of the symbol and emoji ranges, alone, with VS16 and in text', () => {
		const ranges: Array<[number, number]> = [[0x20, 0x2ff], [0x2000, 0x2bff], [0x3000, 0x303f], [0x1f000, 0x1faff]];
		let checked = 0;
		for (const [from, to] of ranges) {
			for (let code = from; code <= to; code++) {
				const char = String.fromCodePoint(code);
				for (const text of [char, `${char}\ufe0f`, `a ${char} 1`]) {
					if (guarded(text) !== stringWidth(text)) expect(guarded(text), `U+${code.toString(16)} in ${JSON.stringify(text)}`).toBe(stringWidth(text));
					checked++;
				}
			}
		}
		expect(checked).toBe(3 * (0x2e0 + 0xc00 + 0x40 + 0xb00));
	});
});

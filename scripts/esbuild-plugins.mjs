// esbuild settings shared by scripts/bundle.mjs (dist/), scripts/build-exe.mjs (the executable) and
// bench/verify (which bundles the scan exactly as dist/ is bundled).
import {readFile} from 'node:fs/promises';

/**
 * yoga-layout (Ink's layout engine) embeds its WebAssembly as a base64 data: URL and, wherever a
 * global `fetch` exists (Node >= 18), loads it with fetch(dataURL). In Node that first fetch loads
 * undici, Node's fetch implementation: about 30 ms of the wizard's ~270 ms to its first frame
 * (bench/startup, node --cpu-prof), spent only to decode a string that is already in memory.
 * The module's own fallback (no fetch: decode the base64 with atob, WebAssembly.instantiate) gives
 * the same bytes, so the bundle takes that path. The build fails if the pattern is missing (a new
 * yoga-layout), rather than silently losing the saving.
 */
export const yogaWithoutFetch = {
	name: 'yoga-without-fetch',
	setup(build) {
		build.onLoad({filter: /yoga-layout[\\/]dist[\\/]binaries[\\/]yoga-wasm-base64-esm\.js$/}, async args => {
			const source = await readFile(args.path, 'utf8');
			const pattern = '"function"!=typeof fetch';
			const count = source.split(pattern).length - 1;
			if (count === 0) throw new Error(`${args.path}: expected ${JSON.stringify(pattern)} (yoga-layout changed; update scripts/esbuild-plugins.mjs)`);
			return {contents: source.replaceAll(pattern, 'true'), loader: 'js'};
		});
	},
};

/**
 * string-width (Ink's text measure) tests every grapheme of a non-ASCII line against
 * /^\p{RGI_Emoji}$/v, and V8 compiles that regex (every RGI emoji sequence) at its first use:
 * ~18 ms of the ~25 ms the first frame spent measuring text (node --cpu-prof), for a frame
 * with no emoji in it ("❯", "·"). Every RGI emoji sequence contains a code point with the
 * Emoji property (a basic emoji, a keycap's base digit, regional indicators, a modifier base,
 * the elements of a ZWJ or tag sequence), and a lone ASCII character is never one, so testing
 * that first gives the same widths and compiles the big regex only when a line may hold an emoji.
 */
export const stringWidthEmojiGuard = {
	name: 'string-width-emoji-guard',
	setup(build) {
		build.onLoad({filter: /[\\/]string-width[\\/]index\.js$/}, async args => {
			const source = await readFile(args.path, 'utf8');
			const call = 'rgiEmojiRegex.test(segment)';
			// Older copies (used by other packages, not by Ink's measure) match emoji another way.
			if (!source.includes('const rgiEmojiRegex')) return undefined;
			if (source.split(call).length !== 2) throw new Error(`${args.path}: expected one ${JSON.stringify(call)} (string-width changed; update scripts/esbuild-plugins.mjs)`);
			const guard = '((segment.length > 1 || segment.charCodeAt(0) > 0x7F) && mayBeEmojiRegex.test(segment) && rgiEmojiRegex.test(segment))';
			const declaration = 'const rgiEmojiRegex =';
			return {contents: source.replace(call, guard).replace(declaration, `const mayBeEmojiRegex = /\\p{Emoji}/u;\n${declaration}`), loader: 'js'};
		});
	},
};

/**
 * How the program's code is bundled (dist/cli.js and the executable): ESM for Node 20, split at
 * dynamic imports, minified without renaming (identifiers stay readable in journaled traces;
 * whitespace and syntax minification took the chunks from 3.2 MB to 2.4 MB and V8's compile of
 * them before the first frame from ~45 ms to ~37 ms, node --cpu-prof).
 */
export const programBundle = {
	bundle: true,
	platform: 'node',
	format: 'esm',
	target: 'node20',
	// CommonJS packages inside the bundle (react, signal-exit) call require() for builtins.
	banner: {js: "import {createRequire as __etcdHardenRequire} from 'node:module'; const require = __etcdHardenRequire(import.meta.url);"},
	legalComments: 'none',
	minifyWhitespace: true,
	minifySyntax: true,
	logLevel: 'warning',
};

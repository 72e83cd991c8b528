// esbuild settings shared by scripts/bundle.mjs (dist/), scripts/build-exe.mjs (the executable) and
// bench/verify (which bundles the scan exactly as dist/ is bundled).
import {readFile} from 'node:fs/promises';
import {isBuiltin} from 'node:module';
import {build} from 'esbuild';

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
 * The regex is also created at its first use, not when the module loads: V8 parses a /v pattern
 * when the RegExp is created, and expanding \p{RGI_Emoji} took ~14 ms of every start.
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
			const declaration = 'const rgiEmojiRegex = /^\\p{RGI_Emoji}$/v;';
			if (source.split(declaration).length !== 2) throw new Error(`${args.path}: expected one ${JSON.stringify(declaration)} (string-width changed; update scripts/esbuild-plugins.mjs)`);
			// Same test, same regex (no g flag, so test() keeps no state), created on first use.
			const lazy = "let rgiEmojiRegexCreated;\nconst rgiEmojiRegex = {test: segment => (rgiEmojiRegexCreated ??= new RegExp('^\\\\p{RGI_Emoji}$', 'v')).test(segment)};";
			// (Replaced by a function: a replacement string would read the pattern's "$'" as a placeholder.)
			return {contents: source.replace(call, () => guard).replace(declaration, () => `const mayBeEmojiRegex = /\\p{Emoji}/u;\n${lazy}`), loader: 'js'};
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

/**
 * Node builtins as CommonJS requires. The program script (see programScript) is not a module, so
 * it can hold no import statement: each builtin becomes `module.exports = require('node:x')`,
 * reached through the `require` the loader passes in.
 */
export const builtinsAsRequire = {
	name: 'builtins-as-require',
	setup(build) {
		build.onResolve({filter: /.*/}, args => {
			if (args.namespace === 'builtin') return {path: args.path, external: true};
			if (isBuiltin(args.path)) return {path: args.path, namespace: 'builtin'};
			return undefined;
		});
		build.onLoad({filter: /.*/, namespace: 'builtin'}, args => ({contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: 'js'}));
	},
};

/**
 * Ink imports react-devtools-core only when DEV=true; it is not a dependency and nothing outside
 * the program can be loaded, so it fails as a missing module does (Ink then warns and goes on).
 */
export const noDevtools = {
	name: 'no-devtools',
	setup(build) {
		build.onResolve({filter: /^react-devtools-core$/}, () => ({path: 'react-devtools-core', namespace: 'no-devtools'}));
		build.onLoad({filter: /.*/, namespace: 'no-devtools'}, () => ({
			contents: "throw Object.assign(new Error('react-devtools-core is not part of etcd-harden (unset DEV)'), {code: 'ERR_MODULE_NOT_FOUND'});",
			loader: 'js',
		}));
	},
};

/** The parameters of the program script's function (scripts/program-loader.mjs passes them). */
const PROGRAM_PARAMETERS = ['require', '__etcdHardenUrl'];

/**
 * The whole CLI as one script for scripts/program-loader.mjs (dist/program.js, and the executable):
 * bundled from cli.tsx without code splitting (esbuild evaluates each dynamically imported module
 * only when it is imported, so --help still runs nothing but the argument module), wrapped in
 * `(async function (require, __etcdHardenUrl) {...})`. A script, unlike ES modules, can be compiled
 * from a V8 code cache without flags on Node 20. Fails when anything would have to be imported (not
 * required) at run time.
 */
export async function buildProgramScript({repo, define}) {
	const {banner: _esmBanner, ...settings} = programBundle;
	const result = await build({
		...settings,
		absWorkingDir: repo,
		entryPoints: ['cli.tsx'],
		write: false,
		outdir: 'out',
		splitting: false,
		metafile: true,
		plugins: [builtinsAsRequire, noDevtools, yogaWithoutFetch, stringWidthEmojiGuard],
		define: {...define, 'import.meta.url': '__etcdHardenUrl'},
	});
	const [output] = Object.values(result.metafile.outputs);
	// Only require() calls stay (builtins, and ws's optional bufferutil and utf-8-validate, which it
	// requires inside try/catch and does without): an import statement or import() could not run.
	const foreign = output.imports.filter(entry => entry.kind !== 'require-call');
	if (foreign.length > 0) throw new Error(`the program script would import ${foreign.map(entry => `${entry.path} (${entry.kind})`).join(', ')} at run time: a script can only require()`);
	const code = result.outputFiles[0].text.replace(/^#!.*\n/, '');
	if (/\bimport\.meta\b/.test(code)) throw new Error('the program script still uses import.meta');
	// esbuild escapes non-ASCII characters in strings and templates but not in regex literals; the
	// loader reads an ASCII program faster (scripts/program-loader.mjs), so say where one is.
	const nonAscii = /[^\x00-\x7f]/.exec(code);
	if (nonAscii) console.warn(`warning: the program script is not ASCII (${JSON.stringify(code.slice(Math.max(0, nonAscii.index - 40), nonAscii.index + 10))}): write the character as a \\u escape; it loads ~10 ms slower`);
	return `(async function (${PROGRAM_PARAMETERS.join(', ')}) {"use strict";\n${code}\n})\n`;
}

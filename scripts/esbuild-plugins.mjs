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

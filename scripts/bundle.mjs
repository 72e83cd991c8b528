#!/usr/bin/env node
// Bundle the CLI into dist/cli.js (+ dist/chunks/) with esbuild, after tsc has type-checked
// and emitted dist/. One bundle instead of ~200 ESM files halves the time to the wizard's
// first frame (bench/startup: ~0.9 s -> ~0.4 s on this 2-core machine): module resolution
// and CommonJS export scanning of react and ink dominated the unbundled start. Code split
// at the dynamic imports, so --help and the plain frontend never load Ink.
import {build} from 'esbuild';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {rm} from 'node:fs/promises';
import {buildInfo} from './build-info.mjs';
import {programBundle, stringWidthEmojiGuard, yogaWithoutFetch} from './esbuild-plugins.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
await rm(path.join(repo, 'dist', 'chunks'), {recursive: true, force: true});
await build({
	...programBundle,
	absWorkingDir: repo,
	entryPoints: {cli: 'cli.tsx'},
	outdir: 'dist',
	chunkNames: 'chunks/[name]-[hash]',
	splitting: true,
	// Ink loads its devtools only when DEV=true; they are not a dependency.
	external: ['react-devtools-core'],
	plugins: [yogaWithoutFetch, stringWidthEmojiGuard],
	define: {'process.env.NODE_ENV': '"production"', ETCD_HARDEN_BUILD: JSON.stringify(buildInfo(repo))},
});

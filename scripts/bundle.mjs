#!/usr/bin/env node
// Bundle the CLI with esbuild, after tsc has type-checked and emitted dist/:
//   dist/program.js     the whole CLI as one script (scripts/esbuild-plugins.mjs, buildProgramScript)
//   dist/program.cache  its V8 code cache, made by running the wizard to its first frame
//                       (scripts/code-cache.mjs); checked and used by the loader, never required
//   dist/cli.js         the bin: the loader (scripts/cli-entry.mjs, scripts/program-loader.mjs)
// One bundle instead of ~200 ESM files halved the time to the wizard's first frame (module
// resolution and CommonJS export scanning of react and ink dominated); compiling it from the code
// cache instead of parsing it saves about a third of the rest (bench/startup prints both).
import {build} from 'esbuild';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {rm, writeFile} from 'node:fs/promises';
import {buildInfo} from './build-info.mjs';
import {trainCodeCache} from './code-cache.mjs';
import {buildProgramScript, programBundle} from './esbuild-plugins.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(repo, 'dist');
// The split ESM build this replaced.
await rm(path.join(dist, 'chunks'), {recursive: true, force: true});
await rm(path.join(dist, 'program.cache'), {force: true});
const program = await buildProgramScript({repo, define: {'process.env.NODE_ENV': '"production"', ETCD_HARDEN_BUILD: JSON.stringify(buildInfo(repo))}});
await writeFile(path.join(dist, 'program.js'), program);
await build({
	...programBundle,
	// The loader needs no require of its own (it creates the program's).
	banner: {},
	absWorkingDir: repo,
	entryPoints: {cli: 'scripts/cli-entry.mjs'},
	outdir: 'dist',
});
await trainCodeCache([process.execPath, path.join(dist, 'cli.js')], path.join(dist, 'program.cache'));

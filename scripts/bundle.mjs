#!/usr/bin/env node
// Bundle the CLI into dist/ with esbuild, after tsc has type-checked and emitted dist/:
// dist/cli.js (the bin: a small loader), dist/program.js (the whole CLI as one script) and
// dist/program.cache (its V8 code cache), see scripts/program-build.mjs.
// One bundle instead of ~200 ESM files halved the time to the wizard's first frame (module
// resolution and CommonJS export scanning of react and ink dominated); compiling it from the code
// cache instead of parsing it takes a good part off the rest (bench/startup prints both).
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {rm} from 'node:fs/promises';
import {buildProgram} from './program-build.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// The split ES module build this replaced.
await rm(path.join(repo, 'dist', 'chunks'), {recursive: true, force: true});
await buildProgram({repo, outDir: path.join(repo, 'dist')});

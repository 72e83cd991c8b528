#!/usr/bin/env node
// dist/cli.js (the package's bin), bundled by scripts/bundle.mjs: starts dist/program.js, the
// whole CLI as one script, with dist/program.cache, its V8 code cache (scripts/program-loader.mjs).
import {readFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {fileURLToPath, pathToFileURL} from 'node:url';
import {startProgram} from './program-loader.mjs';

const filename = fileURLToPath(new URL('program.js', import.meta.url));
let cacheFile;
try {
	cacheFile = readFileSync(fileURLToPath(new URL('program.cache', import.meta.url)));
} catch {
	// no cache: V8 compiles the program from its source
}
const {done} = startProgram({source: readFileSync(filename), cacheFile, filename, require: createRequire(import.meta.url), url: pathToFileURL(filename).href});
// As an ES module entry would: an error that escapes the CLI (main() reports its own) is Node's
// uncaught exception, with exit code 1.
done.catch(error => {
	process.nextTick(() => {
		throw error;
	});
});

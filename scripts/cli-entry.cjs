#!/usr/bin/env node
'use strict';
// dist/cli.js (the package's bin), bundled by scripts/program-build.mjs: starts dist/program.js,
// the whole CLI as one script, with dist/program.cache, its V8 code cache
// (scripts/program-loader.mjs). CommonJS (dist/package.json says so): node starts a CommonJS
// entry ~8 ms of CPU sooner than an ES module one, and the program needs neither.
const {readFileSync} = require('node:fs');
const path = require('node:path');
const {pathToFileURL} = require('node:url');
const {startProgram} = require('./program-loader.mjs');

const filename = path.join(__dirname, 'program.js');
let cacheFile;
try {
	cacheFile = readFileSync(path.join(__dirname, 'program.cache'));
} catch {
	// no cache: V8 compiles the program from its source
}
const {done} = startProgram({source: readFileSync(filename), cacheFile, filename, require, url: pathToFileURL(filename).href});
// As an ES module entry would: an error that escapes the CLI (main() reports its own) is Node's
// uncaught exception, with exit code 1.
done.catch(error => {
	process.nextTick(() => {
		throw error;
	});
});

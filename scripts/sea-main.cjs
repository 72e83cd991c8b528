'use strict';
// The single executable's CommonJS main, bundled with scripts/program-loader.mjs by
// scripts/build-exe.mjs. The program script and its V8 code cache are SEA assets (the very
// dist/program.js and dist/program.cache of `npm run build`): they are compiled from memory,
// nothing is unpacked or read from beside the executable. `require` here loads node builtins only.
const sea = require('node:sea');
const {pathToFileURL} = require('node:url');
const {startProgram} = require('./program-loader.mjs');

const source = Buffer.from(sea.getAsset('program.js'));
let cacheFile;
try {
	cacheFile = Buffer.from(sea.getAsset('program.cache'));
} catch {
	// built without a cache: V8 compiles the program from its source
}
startProgram({source, cacheFile, filename: 'etcd-harden:program.js', require, url: pathToFileURL(process.execPath).href}).done.catch(error => {
	process.stderr.write(`etcd-harden: internal error: ${(error && error.stack) || error}\n`);
	process.exitCode = 70;
});

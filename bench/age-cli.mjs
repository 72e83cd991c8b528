#!/usr/bin/env node
// Minimal command line over the age library, used by bench/backup:
//   node bench/age-cli.mjs encrypt -r age1... IN OUT
//   node bench/age-cli.mjs decrypt -i IDENTITY_FILE IN OUT      (OUT "-" streams to stdout)
// Prints one JSON line to stderr: {"seconds": ..., "maxRssBytes": ...}.
// The library is loaded from $AGE_LIB (a built age.js), default dist/source/crypto/age.js, and
// its file loop from $AGE_FILES_LIB (the host's age-files.js), default beside it in dist.
// AGE_CLI_SYNC=0 skips the fsync of encryptFile/decryptFile (the age command does not fsync).
// AGE_CLI_WORKERS=N passes workers: N (1: the sequential loop); unset: the library's default.
import {createReadStream, readFileSync} from 'node:fs';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const library = process.env.AGE_LIB ? resolve(process.env.AGE_LIB) : join(here, '..', 'dist', 'source', 'crypto', 'age.js');
const filesLibrary = process.env.AGE_FILES_LIB ? resolve(process.env.AGE_FILES_LIB) : join(here, '..', 'dist', 'source', 'host', 'age-files.js');
const age = {...(await import(pathToFileURL(library).href)), ...(await import(pathToFileURL(filesLibrary).href))};

const [mode, flag, key, input, output] = process.argv.slice(2);
if (!((mode === 'encrypt' && flag === '-r') || (mode === 'decrypt' && flag === '-i')) || !key || !input || !output) {
	process.stderr.write('usage: age-cli.mjs encrypt -r RECIPIENT IN OUT | decrypt -i IDENTITY_FILE IN OUT|-\n');
	process.exit(2);
}
const sync = process.env.AGE_CLI_SYNC !== '0';
const options = {sync, ...(process.env.AGE_CLI_WORKERS ? {workers: Number(process.env.AGE_CLI_WORKERS)} : {})};
const started = process.hrtime.bigint();
try {
	if (mode === 'encrypt') {
		await age.encryptFile(input, output, key, options);
	} else {
		const identities = age.parseIdentityFile(readFileSync(key, 'utf8'));
		if (output === '-') await age.decryptStream(createReadStream(input), process.stdout, identities);
		else await age.decryptFile(input, output, identities, options);
	}
} catch (error) {
	process.stderr.write(`age-cli: ${error instanceof Error ? error.message : String(error)}\n`);
	process.exit(1);
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
// resourceUsage().maxRSS is in kilobytes.
process.stderr.write(JSON.stringify({seconds, maxRssBytes: process.resourceUsage().maxRSS * 1024}) + '\n');

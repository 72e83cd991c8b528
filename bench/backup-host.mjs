#!/usr/bin/env node
// The backup command's own encryption path, for bench/backup: RealHost.ageEncryptFile (what the
// etcd-backup task calls on the plaintext snapshot), with its fsync, as the tool does it.
//   node bench/backup-host.mjs RECIPIENT IN OUT
// Node paths are resolved by a RealHost rooted at /. Prints one JSON line to stderr:
// {"seconds": ..., "maxRssBytes": ...}. The host module is loaded from $HOST_LIB (a built real.js).
import {resolve} from 'node:path';
import {pathToFileURL} from 'node:url';

const [recipient, input, output] = process.argv.slice(2);
if (!recipient || !input || !output || !process.env.HOST_LIB) {
	process.stderr.write('usage: HOST_LIB=.../real.js backup-host.mjs RECIPIENT IN OUT\n');
	process.exit(2);
}
const {RealHost} = await import(pathToFileURL(resolve(process.env.HOST_LIB)).href);
const host = new RealHost('/');
const started = process.hrtime.bigint();
try {
	await host.ageEncryptFile(resolve(input), resolve(output), [recipient], 0o600);
} catch (error) {
	process.stderr.write(`backup-host: ${error instanceof Error ? error.message : String(error)}\n`);
	process.exit(1);
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
process.stderr.write(JSON.stringify({seconds, maxRssBytes: process.resourceUsage().maxRSS * 1024}) + '\n');

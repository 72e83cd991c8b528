#!/usr/bin/env node
// The npm package age-encryption (0.3.x, its ReadableStream API), file to file, for bench/backup:
//   node bench/age-package.mjs encrypt -r age1... IN OUT
//   node bench/age-package.mjs decrypt -i IDENTITY_FILE IN OUT
// Prints one JSON line to stderr: {"seconds": ..., "maxRssBytes": ...}. No fsync (like `age`).
import {createReadStream, createWriteStream, readFileSync} from 'node:fs';
import {Readable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {Decrypter, Encrypter} from 'age-encryption';

const [mode, flag, key, input, output] = process.argv.slice(2);
if (!((mode === 'encrypt' && flag === '-r') || (mode === 'decrypt' && flag === '-i')) || !key || !input || !output) {
	process.stderr.write('usage: age-package.mjs encrypt -r RECIPIENT IN OUT | decrypt -i IDENTITY_FILE IN OUT\n');
	process.exit(2);
}
const started = process.hrtime.bigint();
try {
	const source = Readable.toWeb(createReadStream(input, {highWaterMark: 1024 * 1024}));
	let result;
	if (mode === 'encrypt') {
		const encrypter = new Encrypter();
		encrypter.addRecipient(key);
		result = await encrypter.encrypt(source);
	} else {
		const decrypter = new Decrypter();
		for (const line of readFileSync(key, 'utf8').split('\n')) {
			if (line.startsWith('AGE-SECRET-KEY-1')) decrypter.addIdentity(line.trim());
		}
		result = await decrypter.decrypt(source);
	}
	await pipeline(Readable.fromWeb(result), createWriteStream(output, {mode: 0o600}));
} catch (error) {
	process.stderr.write(`age-package: ${error instanceof Error ? error.message : String(error)}\n`);
	process.exit(1);
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
process.stderr.write(JSON.stringify({seconds, maxRssBytes: process.resourceUsage().maxRSS * 1024}) + '\n');

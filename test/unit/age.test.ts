import {randomBytes, createHash} from 'node:crypto';
import {mkdtemp, readdir, readFile, rm, stat, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {PassThrough, Readable, Writable} from 'node:stream';
import {inspect} from 'node:util';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {
	AgeError,
	CHUNK_SIZE,
	createDecryptStream,
	createEncryptStream,
	decrypt,
	decryptStream,
	DEFAULT_WORK_FACTOR,
	encrypt,
	encryptStream,
	formatIdentityFile,
	generateIdentity,
	identityToRecipient,
	parseIdentity,
	parseIdentityFile,
	parseRecipient,
	parseRecipientsFile,
	ScryptRecipient,
	X25519Identity,
} from '../../source/crypto/age.js';
import {decryptFile, encryptFile} from '../../source/host/age-files.js';

const SEALED = CHUNK_SIZE + 16;

/** Expected age file size for a plaintext of n bytes, given the header length. */
function payloadSize(n: number): number {
	const chunks = Math.max(1, Math.ceil(n / CHUNK_SIZE));
	return 16 + n + 16 * chunks;
}

function headerLength(file: Buffer): number {
	const macLine = file.indexOf('\n---');
	return file.indexOf('\n', macLine + 1) + 1;
}

async function expectAgeError(promise: Promise<unknown>, code?: string, message?: RegExp): Promise<AgeError> {
	let caught: unknown;
	try {
		await promise;
	} catch (error) {
		caught = error;
	}
	expect(caught).toBeInstanceOf(AgeError);
	const error = caught as AgeError;
	if (code !== undefined) expect(error.code).toBe(code);
	if (message !== undefined) expect(error.message).toMatch(message);
	return error;
}

/** Readable that yields `data` in pieces of `size` bytes. */
function piecewise(data: Buffer, size: number): Readable {
	const pieces: Buffer[] = [];
	for (let i = 0; i < data.length; i += size) pieces.push(data.subarray(i, i + size));
	return Readable.from(pieces, {objectMode: false});
}

/** Writable that records everything written, so tests can see what escaped before an error. */
function recorder(): {stream: Writable; bytes: () => Buffer} {
	const parts: Buffer[] = [];
	const stream = new Writable({
		write(chunk: Buffer, _encoding, callback) {
			parts.push(Buffer.from(chunk));
			callback();
		},
	});
	return {stream, bytes: () => Buffer.concat(parts)};
}

const alice = generateIdentity();
const bob = generateIdentity();
const carol = generateIdentity();

describe('keys', () => {
	it('generates Bech32 identities and recipients that belong together', () => {
		expect(alice.recipient).toMatch(/^age1[02-9ac-hj-np-z]{58}$/);
		expect(alice.identity).toMatch(/^AGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}$/);
		expect(identityToRecipient(alice.identity)).toBe(alice.recipient);
		expect(parseIdentity(alice.identity).encode()).toBe(alice.identity);
		expect(parseRecipient(alice.recipient).toString()).toBe(alice.recipient);
		expect(alice.identity).not.toBe(bob.identity);
	});

	it('derives the recipient of the specification example identity', () => {
		expect(identityToRecipient('AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX')).toBe(
			'age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj',
		);
	});

	it('rejects malformed keys with a clear error', () => {
		const flipped = alice.recipient.slice(0, -1) + (alice.recipient.endsWith('q') ? 'p' : 'q');
		expect(() => parseRecipient(flipped)).toThrow(/checksum/);
		expect(() => parseRecipient('age1')).toThrow(AgeError);
		expect(() => parseRecipient(alice.identity)).toThrow(/age1/);
		expect(() => parseIdentity(alice.recipient)).toThrow(/AGE-SECRET-KEY-1/);
		expect(() => parseIdentity(alice.identity.replace('AGE-SECRET-KEY-1', 'AGE-SECRET-KEY-2'))).toThrow(AgeError);
	});

	it('parses identity files with comments, blank lines and CRLF', () => {
		const text = `# created: 2024-01-01T00:00:00Z\r\n# public key: ${alice.recipient}\r\n\r\n${alice.identity}\r\n  ${bob.identity}  \n`;
		const identities = parseIdentityFile(text);
		expect(identities.map((i) => i.recipient.toString())).toEqual([alice.recipient, bob.recipient]);
		const written = formatIdentityFile(carol.identity, new Date('2024-05-06T07:08:09.123Z'));
		expect(written).toBe(
			`# created: 2024-05-06T07:08:09Z\n# public key: ${carol.recipient}\n${carol.identity}\n`,
		);
		expect(parseIdentityFile(written)[0]?.encode()).toBe(carol.identity);
		expect(parseRecipientsFile(`# team\n${alice.recipient}\n\n${bob.recipient}\n`).map(String)).toEqual([
			alice.recipient,
			bob.recipient,
		]);
	});

	it('reports the bad line of an identity file without echoing its content', () => {
		const broken = alice.identity.slice(0, -2) + 'QQ';
		let message = '';
		try {
			parseIdentityFile(`# comment\n${bob.identity}\n${broken}\n`);
		} catch (error) {
			message = (error as Error).message;
		}
		expect(message).toMatch(/^identity file line 3: /);
		expect(message).not.toContain(broken.slice(16, 40));
		expect(() => parseIdentityFile('# only comments\n\n')).toThrow(/no identities/);
	});

	it('never exposes secret material through inspect, String or JSON', () => {
		const identity = parseIdentity(alice.identity);
		const secretPart = alice.identity.slice('AGE-SECRET-KEY-1'.length, 40);
		for (const shown of [inspect(identity, {depth: 5, showHidden: true}), String(identity), JSON.stringify({identity})]) {
			expect(shown.toUpperCase()).not.toContain(secretPart);
		}
		expect(String(identity)).toContain(alice.recipient);
		const scrypt = new ScryptRecipient('correct horse battery staple', 10);
		for (const shown of [inspect(scrypt, {depth: 5, showHidden: true}), String(scrypt), JSON.stringify(scrypt)]) {
			expect(shown).not.toContain('horse');
		}
	});

	it('defaults to the age command work factor and bounds it', () => {
		expect(DEFAULT_WORK_FACTOR).toBe(18);
		expect(new ScryptRecipient('pw').workFactor).toBe(18);
		expect(() => new ScryptRecipient('pw', 0)).toThrow(AgeError);
		expect(() => new ScryptRecipient('pw', 23)).toThrow(AgeError);
		expect(() => new ScryptRecipient('', 10)).toThrow(/non-empty/);
	});
});

describe('round trips', () => {
	const sizes = [
		0,
		1,
		100,
		CHUNK_SIZE - 1,
		CHUNK_SIZE,
		CHUNK_SIZE + 1,
		2 * CHUNK_SIZE,
		3 * CHUNK_SIZE + 5,
		16 * CHUNK_SIZE,
		17 * CHUNK_SIZE + 1,
		40 * CHUNK_SIZE - 3,
	];

	it.each(sizes)('buffer helpers: %i bytes', async (size) => {
		const plaintext = randomBytes(size);
		const file = await encrypt(plaintext, alice.recipient);
		expect(file.subarray(0, 22).toString()).toBe('age-encryption.org/v1\n');
		expect(file.length - headerLength(file)).toBe(payloadSize(size));
		expect((await decrypt(file, alice.identity)).equals(plaintext)).toBe(true);
	});

	it.each([
		[CHUNK_SIZE, 1000],
		[CHUNK_SIZE + 1, CHUNK_SIZE],
		[5 * CHUNK_SIZE + 77, 7],
		[3 * CHUNK_SIZE, 3 * CHUNK_SIZE],
		[20 * CHUNK_SIZE + 1, 300 * 1024],
		[2 * 1024 * 1024, 2 * 1024 * 1024],
	])('streams: %i bytes in pieces of %i', async (size, piece) => {
		const plaintext = randomBytes(size);
		const encrypted = recorder();
		await encryptStream(piecewise(plaintext, piece), encrypted.stream, [alice.recipient]);
		const file = encrypted.bytes();
		expect(file.length - headerLength(file)).toBe(payloadSize(size));
		const decrypted = recorder();
		// Feed the ciphertext in pieces that do not line up with chunks either.
		await decryptStream(piecewise(file, piece + 3), decrypted.stream, [alice.identity]);
		expect(decrypted.bytes().equals(plaintext)).toBe(true);
	});

	it('works as Duplex transforms', async () => {
		const plaintext = randomBytes(3 * CHUNK_SIZE + 11);
		const out = recorder();
		const source = new PassThrough();
		const done = new Promise<void>((resolve, reject) => {
			source
				.pipe(createEncryptStream(bob.recipient))
				.pipe(createDecryptStream(bob.identity))
				.on('error', reject)
				.pipe(out.stream)
				.on('finish', resolve)
				.on('error', reject);
		});
		source.end(plaintext);
		await done;
		expect(out.bytes().equals(plaintext)).toBe(true);
	});

	it('encrypts the same plaintext differently each time', async () => {
		const a = await encrypt('same', alice.recipient);
		const b = await encrypt('same', alice.recipient);
		expect(a.equals(b)).toBe(false);
		expect((await decrypt(a, alice.identity)).toString()).toBe('same');
	});

	it('encrypts to multiple recipients, each of which can decrypt alone', async () => {
		const plaintext = randomBytes(CHUNK_SIZE + 9);
		const file = await encrypt(plaintext, [alice.recipient, bob.recipient, parseRecipient(carol.recipient)]);
		expect(file.toString('latin1', 0, headerLength(file)).match(/^-> X25519 /gm)).toHaveLength(3);
		for (const who of [alice, bob, carol]) {
			expect((await decrypt(file, who.identity)).equals(plaintext)).toBe(true);
		}
		// An identity list where only a later entry matches.
		const stranger = generateIdentity();
		expect((await decrypt(file, [stranger.identity, carol.identity])).equals(plaintext)).toBe(true);
		expect((await decrypt(file, parseIdentityFile(`${stranger.identity}\n${bob.identity}\n`))).equals(plaintext)).toBe(true);
	});

	it('encrypts to a passphrase with scrypt', async () => {
		const plaintext = randomBytes(2 * CHUNK_SIZE + 1);
		const file = await encrypt(plaintext, {passphrase: 'correct horse', workFactor: 10});
		const header = file.toString('latin1', 0, headerLength(file));
		expect(header).toMatch(/^-> scrypt [A-Za-z0-9+/]{22} 10\n/m);
		expect(header).not.toContain('correct horse');
		expect((await decrypt(file, {passphrase: 'correct horse'})).equals(plaintext)).toBe(true);
		await expectAgeError(decrypt(file, {passphrase: 'wrong horse'}), 'NO_MATCH', /no identity matched any recipient stanza \(wrong passphrase\)/);
		await expectAgeError(decrypt(file, alice.identity), 'NO_MATCH', /encrypted with a passphrase/);
	});

	it('enforces the maximum scrypt work factor on decryption', async () => {
		const file = await encrypt('x', {passphrase: 'pw', workFactor: 12});
		await expectAgeError(decrypt(file, {passphrase: 'pw', maxWorkFactor: 11}), 'WORK_FACTOR', /2\^12 exceeds the allowed maximum 2\^11/);
		expect((await decrypt(file, {passphrase: 'pw', maxWorkFactor: 12})).toString()).toBe('x');
		// A header claiming 2^30 is refused before any scrypt work happens.
		const huge = Buffer.from(file.toString('latin1').replace(/ 12\n/, ' 30\n'), 'latin1');
		const started = Date.now();
		await expectAgeError(decrypt(huge, {passphrase: 'pw'}), 'WORK_FACTOR');
		expect(Date.now() - started).toBeLessThan(2000);
	});

	it('refuses to mix a passphrase with other recipients', async () => {
		await expect(encrypt('x', [new ScryptRecipient('pw', 10), alice.recipient])).rejects.toThrow(/only recipient/);
		await expect(encrypt('x', [])).rejects.toThrow(/no recipients/);
	});
});

describe('authentication', () => {
	let plaintext: Buffer;
	let file: Buffer;
	let header: number;

	beforeAll(async () => {
		plaintext = randomBytes(3 * CHUNK_SIZE + 1000);
		file = await encrypt(plaintext, [alice.recipient, bob.recipient]);
		header = headerLength(file);
	});

	it('rejects the wrong key', async () => {
		await expectAgeError(decrypt(file, carol.identity), 'NO_MATCH', /^no identity matched any recipient stanza$/);
		await expectAgeError(decrypt(file, {passphrase: 'pw'}), 'NO_MATCH', /not passphrase-encrypted/);
	});

	it('detects a flipped byte anywhere in the header', async () => {
		for (let i = 0; i < header; i++) {
			const tampered = Buffer.from(file);
			tampered[i] = (tampered[i] ?? 0) ^ 0x01;
			await expectAgeError(decrypt(tampered, alice.identity));
		}
	});

	it('detects a flipped byte in the nonce and every region of every chunk', async () => {
		const positions = new Set<number>();
		for (let i = 0; i < 16; i++) positions.add(header + i);
		const payload = header + 16;
		for (let chunk = 0; chunk < 4; chunk++) {
			const start = payload + chunk * SEALED;
			const end = Math.min(file.length, start + SEALED);
			for (const offset of [0, 1, 100, (end - start) >> 1, end - start - 17, end - start - 16, end - start - 1]) {
				positions.add(start + offset);
			}
		}
		for (let i = 0; i < 50; i++) positions.add(payload + Math.floor(Math.random() * (file.length - payload)));
		for (const position of positions) {
			const tampered = Buffer.from(file);
			tampered[position] = (tampered[position] ?? 0) ^ 0x80;
			const error = await expectAgeError(decrypt(tampered, bob.identity));
			if (position >= payload) expect(error.message).toMatch(/^chunk \d failed authentication: file is truncated or tampered$/);
			else expect(error.code).toBe('CHUNK_AUTH');
		}
	});

	it('reports the header MAC when the header is altered consistently', async () => {
		// Dropping bob's stanza leaves a well-formed header that alice can still unwrap.
		const text = file.toString('latin1', 0, header);
		const stanzas = text.split(/(?=^-> )/m);
		expect(stanzas).toHaveLength(3);
		const withoutBob = Buffer.concat([
			Buffer.from((stanzas[0] ?? '') + (stanzas[1] ?? '') + (stanzas[2] ?? '').replace(/^-> X25519[^\n]*\n[^\n]*\n/, ''), 'latin1'),
			file.subarray(header),
		]);
		await expectAgeError(decrypt(withoutBob, alice.identity), 'HEADER_MAC', /^header MAC mismatch: file tampered or wrong key$/);
	});

	it('detects truncation at any point', async () => {
		const payload = header + 16;
		const cuts = [0, 10, header - 1, header, header + 8, payload, payload + 1, payload + 15, payload + 16];
		for (let chunk = 1; chunk <= 3; chunk++) cuts.push(payload + chunk * SEALED, payload + chunk * SEALED - 1, payload + chunk * SEALED + 16);
		cuts.push(file.length - 1, file.length - 16, file.length - 17);
		for (const cut of cuts) {
			await expectAgeError(decrypt(file.subarray(0, cut), alice.identity));
		}
		await expectAgeError(decrypt(file.subarray(0, payload + SEALED), alice.identity), 'CHUNK_AUTH', /chunk 0 failed/);
		await expectAgeError(decrypt(file.subarray(0, payload), alice.identity), 'TRUNCATED', /no chunks/);
		await expectAgeError(decrypt(file.subarray(0, header + 5), alice.identity), 'TRUNCATED', /nonce/);
		await expectAgeError(decrypt(Buffer.alloc(0), alice.identity), 'TRUNCATED', /empty/);
	});

	it('detects appended data', async () => {
		for (const extra of [Buffer.from([0]), Buffer.alloc(16), randomBytes(SEALED), file.subarray(header + 16, header + 16 + SEALED)]) {
			await expectAgeError(decrypt(Buffer.concat([file, extra]), alice.identity), 'CHUNK_AUTH');
		}
	});

	it('detects a full final chunk followed by an extra empty chunk', async () => {
		const exact = await encrypt(randomBytes(2 * CHUNK_SIZE), alice.recipient);
		// Appending an authentic-looking 16-byte "empty chunk" cannot authenticate: chunk 1 was sealed as last.
		await expectAgeError(decrypt(Buffer.concat([exact, randomBytes(16)]), alice.identity), 'CHUNK_AUTH', /chunk 1 failed/);
	});

	it('emits no plaintext when the header or first chunk is bad, and only an authentic prefix later', async () => {
		const badFirst = Buffer.from(file);
		badFirst[header + 16 + 5] = (badFirst[header + 16 + 5] ?? 0) ^ 1;
		const out1 = recorder();
		await expectAgeError(decryptStream(piecewise(badFirst, 4096), out1.stream, alice.identity), 'CHUNK_AUTH');
		expect(out1.bytes().length).toBe(0);

		const badMac = Buffer.from(file);
		const macAt = file.indexOf('\n--- ') + 6;
		badMac[macAt] = badMac[macAt] === 0x41 ? 0x42 : 0x41;
		const out2 = recorder();
		await expectAgeError(decryptStream(piecewise(badMac, 4096), out2.stream, alice.identity), 'HEADER_MAC');
		expect(out2.bytes().length).toBe(0);

		const badLast = Buffer.from(file);
		badLast[file.length - 3] = (badLast[file.length - 3] ?? 0) ^ 1;
		const out3 = recorder();
		await expectAgeError(decryptStream(piecewise(badLast, 4096), out3.stream, alice.identity), 'CHUNK_AUTH', /chunk 3/);
		const escaped = out3.bytes();
		expect(escaped.length).toBeLessThan(plaintext.length);
		expect(escaped.equals(plaintext.subarray(0, escaped.length))).toBe(true);
	});

	it('rejects inputs that are not binary age v1 files', async () => {
		await expectAgeError(decrypt(Buffer.from('hello world, this is not age\n'), alice.identity), 'NOT_AGE');
		await expectAgeError(decrypt(Buffer.from('-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n'), alice.identity), 'UNSUPPORTED', /armor/);
		await expectAgeError(decrypt(Buffer.from('age-encryption.org/v2\n-> X\n\n--- x\n'), alice.identity), 'UNSUPPORTED');
		// A non-canonical base64 body (trailing bits set) must be rejected.
		const text = file.toString('latin1', 0, header);
		const lines = text.split('\n');
		const bodyIndex = lines.findIndex((l) => l.startsWith('-> X25519')) + 1;
		const body = lines[bodyIndex] ?? '';
		const last = body.at(-1) ?? 'A';
		const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
		lines[bodyIndex] = body.slice(0, -1) + alphabet[alphabet.indexOf(last) ^ 1];
		const noncanonical = Buffer.concat([Buffer.from(lines.join('\n'), 'latin1'), file.subarray(header)]);
		await expectAgeError(decrypt(noncanonical, alice.identity), 'MALFORMED_HEADER', /canonical/);
		// Padding characters are rejected too.
		lines[bodyIndex] = body + '=';
		await expectAgeError(decrypt(Buffer.concat([Buffer.from(lines.join('\n'), 'latin1'), file.subarray(header)]), alice.identity), 'MALFORMED_HEADER');
	});

	it('rejects an scrypt stanza mixed with other stanzas', async () => {
		const scryptFile = await encrypt('x', {passphrase: 'pw', workFactor: 10});
		const other = file.toString('latin1', 0, header).split('\n').slice(1, 3).join('\n') + '\n';
		const text = scryptFile.toString('latin1');
		const mixed = Buffer.from(text.replace('age-encryption.org/v1\n', 'age-encryption.org/v1\n' + other), 'latin1');
		await expectAgeError(decrypt(mixed, {passphrase: 'pw'}), 'MALFORMED_HEADER', /only stanza/);
	});
});

describe('files', () => {
	let dir: string;
	beforeAll(async () => {
		dir = await mkdtemp(join(tmpdir(), 'age-unit-'));
	});
	afterAll(async () => {
		await rm(dir, {recursive: true, force: true});
	});

	it('encrypts and decrypts files atomically with mode 0600', async () => {
		const plaintext = randomBytes(5 * CHUNK_SIZE + 123);
		await writeFile(join(dir, 'plain'), plaintext);
		await encryptFile(join(dir, 'plain'), join(dir, 'plain.age'), [alice.recipient, bob.recipient]);
		await decryptFile(join(dir, 'plain.age'), join(dir, 'out'), bob.identity);
		expect(createHash('sha256').update(await readFile(join(dir, 'out'))).digest('hex')).toBe(
			createHash('sha256').update(plaintext).digest('hex'),
		);
		expect((await stat(join(dir, 'out'))).mode & 0o777).toBe(0o600);
		expect((await stat(join(dir, 'plain.age'))).mode & 0o777).toBe(0o600);
		expect((await readdir(dir)).sort()).toEqual(['out', 'plain', 'plain.age']);
	});

	it('leaves no plaintext behind when decryption fails late', async () => {
		const plaintext = randomBytes(40 * CHUNK_SIZE);
		await writeFile(join(dir, 'big'), plaintext);
		await encryptFile(join(dir, 'big'), join(dir, 'big.age'), alice.recipient);
		const file = await readFile(join(dir, 'big.age'));
		file[file.length - 1] = (file[file.length - 1] ?? 0) ^ 1; // the last chunk, after 39 good ones
		await writeFile(join(dir, 'bad.age'), file);
		await expectAgeError(decryptFile(join(dir, 'bad.age'), join(dir, 'restored'), alice.identity), 'CHUNK_AUTH', /chunk 39/);
		await expectAgeError(decryptFile(join(dir, 'big.age'), join(dir, 'restored'), carol.identity), 'NO_MATCH');
		const names = await readdir(dir);
		expect(names).not.toContain('restored');
		expect(names.filter((n) => n.includes('partial'))).toEqual([]);
	});

	it('does not touch an existing destination when decryption fails', async () => {
		await writeFile(join(dir, 'keep'), 'previous content');
		await writeFile(join(dir, 'junk.age'), 'not an age file at all\n');
		await expectAgeError(decryptFile(join(dir, 'junk.age'), join(dir, 'keep'), alice.identity), 'NOT_AGE');
		expect(await readFile(join(dir, 'keep'), 'utf8')).toBe('previous content');
	});

	it('handles an empty file', async () => {
		await writeFile(join(dir, 'empty'), '');
		await encryptFile(join(dir, 'empty'), join(dir, 'empty.age'), {passphrase: 'pw', workFactor: 10});
		await decryptFile(join(dir, 'empty.age'), join(dir, 'empty.out'), {passphrase: 'pw'});
		expect((await readFile(join(dir, 'empty.out'))).length).toBe(0);
	});
});

describe('X25519Identity', () => {
	it('generates distinct identities', () => {
		const a = X25519Identity.generate();
		const b = X25519Identity.generate();
		expect(a.encode()).not.toBe(b.encode());
		expect(a.recipient.toString()).toBe(identityToRecipient(a.encode()));
	});
});

/**
 * Interoperability with the real `age` / `age-keygen` commands (Debian package `age`), an
 * independent implementation: files from our library decrypt with `age -d`, files from `age`
 * decrypt with ours, for X25519 identities and scrypt passphrases, and tampered files fail on
 * both sides without plaintext output.
 *
 * `age` reads passphrases only from a terminal, so passphrase tests drive it through a pty made
 * by util-linux `script`, typing the passphrase when the prompt appears.
 */
import {spawn, spawnSync} from 'node:child_process';
import {createHash, randomBytes} from 'node:crypto';
import {mkdtemp, readdir, readFile, rm, stat, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {
	AgeError,
	CHUNK_SIZE,
	decrypt,
	encrypt,
	formatIdentityFile,
	generateIdentity,
	parseIdentityFile,
} from '../../source/crypto/age.js';
import {decryptFile, encryptFile, PARALLEL_MIN_BYTES} from '../../source/host/age-files.js';
import {BATCH_CHUNKS} from '../../source/host/age-parallel.js';

function have(command: string): boolean {
	return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

function run(command: string, args: string[], input?: Buffer) {
	const result = spawnSync(command, args, {input, maxBuffer: 64 * 1024 * 1024});
	return {status: result.status, stdout: result.stdout, stderr: result.stderr.toString()};
}

function sha256(data: Buffer): string {
	return createHash('sha256').update(data).digest('hex');
}

/** Bytes of the header (through the MAC line) at the start of an age file. */
function headerLength(file: Buffer): number {
	return file.indexOf('\n', file.indexOf('\n---') + 1) + 1;
}

function shellQuote(s: string): string {
	return `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * Run an `age` command line in a pty and answer each passphrase prompt with `passphrase`.
 * Returns the exit status and the terminal transcript (the pty may echo the answer when it
 * arrives before age turns echo off, so the transcript is test-only output).
 */
function ageWithPassphrase(commandLine: string, passphrase: string): Promise<{status: number | null; transcript: string}> {
	return new Promise((resolve, reject) => {
		const child = spawn('script', ['-qec', commandLine, '/dev/null'], {stdio: ['pipe', 'pipe', 'pipe']});
		let transcript = '';
		let answered = 0;
		const timer = setTimeout(() => {
			child.kill('SIGKILL');
			reject(new Error(`age did not finish; transcript: ${transcript}`));
		}, 60_000);
		const onData = (data: Buffer) => {
			transcript += data.toString();
			const prompts = transcript.match(/passphrase/gi)?.length ?? 0;
			while (answered < prompts) {
				answered++;
				child.stdin.write(passphrase + '\n');
			}
		};
		child.stdout.on('data', onData);
		child.stderr.on('data', onData);
		child.on('error', reject);
		child.stdin.on('error', () => undefined); // age may exit before reading a late answer
		child.on('close', (status) => {
			clearTimeout(timer);
			resolve({status, transcript});
		});
	});
}

let dir: string;

beforeAll(async () => {
	if (!have('age') || !have('age-keygen')) {
		if (process.getuid?.() === 0) {
			const install = spawnSync('apt-get', ['install', '-y', '-o', 'DPkg::Lock::Timeout=300', 'age'], {
				stdio: 'inherit',
				env: {...process.env, DEBIAN_FRONTEND: 'noninteractive'},
			});
			if (install.status !== 0) {
				spawnSync('apt-get', ['update'], {stdio: 'inherit'});
				spawnSync('apt-get', ['install', '-y', '-o', 'DPkg::Lock::Timeout=300', 'age'], {
					stdio: 'inherit',
					env: {...process.env, DEBIAN_FRONTEND: 'noninteractive'},
				});
			}
		}
	}
	if (!have('age') || !have('age-keygen')) {
		throw new Error('the age and age-keygen commands are required (apt-get install age)');
	}
	dir = await mkdtemp(join(tmpdir(), 'age-interop-'));
});

afterAll(async () => {
	if (dir !== undefined) await rm(dir, {recursive: true, force: true});
});

describe('age interop: X25519', () => {
	const sizes = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 16 * CHUNK_SIZE, 5 * 1024 * 1024 + 3];

	it.each(sizes)('our encryption of %i bytes decrypts with age -d -i', async (size) => {
		const {identity, recipient} = generateIdentity();
		const keyFile = join(dir, `ours-${size}.key`);
		await writeFile(keyFile, formatIdentityFile(identity), {mode: 0o600});
		const plaintext = randomBytes(size);
		await writeFile(join(dir, `plain-${size}`), plaintext);
		await encryptFile(join(dir, `plain-${size}`), join(dir, `ours-${size}.age`), recipient);
		const result = run('age', ['-d', '-i', keyFile, join(dir, `ours-${size}.age`)]);
		expect(result.stderr).toBe('');
		expect(result.status).toBe(0);
		expect(sha256(result.stdout)).toBe(sha256(plaintext));
	});

	it.each(sizes)('age -r encryption of %i bytes decrypts with ours', async (size) => {
		const keyFile = join(dir, `theirs-${size}.key`);
		expect(run('age-keygen', ['-o', keyFile]).status).toBe(0);
		const recipient = run('age-keygen', ['-y', keyFile]).stdout.toString().trim();
		const plaintext = randomBytes(size);
		const encrypted = run('age', ['-r', recipient], plaintext);
		expect(encrypted.status).toBe(0);
		await writeFile(join(dir, `theirs-${size}.age`), encrypted.stdout);
		const identities = parseIdentityFile(await readFile(keyFile, 'utf8'));
		await decryptFile(join(dir, `theirs-${size}.age`), join(dir, `theirs-${size}.out`), identities);
		expect(sha256(await readFile(join(dir, `theirs-${size}.out`)))).toBe(sha256(plaintext));
		expect((await decrypt(encrypted.stdout, identities)).equals(plaintext)).toBe(true);
	});

	it('agrees with age-keygen on the public key of our identities and theirs', async () => {
		const {identity, recipient} = generateIdentity();
		const keyFile = join(dir, 'ours-y.key');
		await writeFile(keyFile, formatIdentityFile(identity), {mode: 0o600});
		expect(run('age-keygen', ['-y', keyFile]).stdout.toString().trim()).toBe(recipient);

		const theirs = join(dir, 'theirs-y.key');
		expect(run('age-keygen', ['-o', theirs]).status).toBe(0);
		const parsed = parseIdentityFile(await readFile(theirs, 'utf8'));
		expect(parsed).toHaveLength(1);
		expect(parsed[0]?.recipient.toString()).toBe(run('age-keygen', ['-y', theirs]).stdout.toString().trim());
	});

	it('multiple recipients work in both directions', async () => {
		const a = generateIdentity();
		const b = generateIdentity();
		const aFile = join(dir, 'multi-a.key');
		const bFile = join(dir, 'multi-b.key');
		await writeFile(aFile, formatIdentityFile(a.identity), {mode: 0o600});
		await writeFile(bFile, formatIdentityFile(b.identity), {mode: 0o600});
		const plaintext = randomBytes(3 * CHUNK_SIZE + 7);

		const ours = await encrypt(plaintext, [a.recipient, b.recipient]);
		await writeFile(join(dir, 'multi-ours.age'), ours);
		for (const key of [aFile, bFile]) {
			const result = run('age', ['-d', '-i', key, join(dir, 'multi-ours.age')]);
			expect(result.status).toBe(0);
			expect(result.stdout.equals(plaintext)).toBe(true);
		}

		const theirs = run('age', ['-r', a.recipient, '-r', b.recipient], plaintext);
		expect(theirs.status).toBe(0);
		expect((await decrypt(theirs.stdout, a.identity)).equals(plaintext)).toBe(true);
		expect((await decrypt(theirs.stdout, b.identity)).equals(plaintext)).toBe(true);
		await expect(decrypt(theirs.stdout, generateIdentity().identity)).rejects.toThrow(
			/no identity matched any recipient stanza/,
		);
	});
});

describe('age interop: the parallel file loop (worker threads)', () => {
	// BATCH_CHUNKS chunks per batch: 5 batches exactly, 5 batches and a short final chunk, the
	// empty file (one empty final chunk), and the default path above PARALLEL_MIN_BYTES.
	const cases: Array<[string, number, number | undefined]> = [
		['empty, 2 workers', 0, 2],
		['one byte, 2 workers', 1, 2],
		['5 batches, an exact multiple of 64 KiB, 2 workers', 5 * BATCH_CHUNKS * CHUNK_SIZE, 2],
		['5 batches + 12345 bytes, 3 workers', 5 * BATCH_CHUNKS * CHUNK_SIZE + 12_345, 3],
		// Around the chunk and batch boundaries, where the last-chunk flag moves between lanes.
		['one chunk exactly, 2 workers', CHUNK_SIZE, 2],
		['one chunk + 1 byte, 2 workers', CHUNK_SIZE + 1, 2],
		['one batch - 1 byte, 4 workers', BATCH_CHUNKS * CHUNK_SIZE - 1, 4],
		['one batch + 1 byte, 2 workers', BATCH_CHUNKS * CHUNK_SIZE + 1, 2],
		['3 batches + 1 chunk, 4 workers', (3 * BATCH_CHUNKS + 1) * CHUNK_SIZE, 4],
		['PARALLEL_MIN_BYTES + 3 bytes, default workers', PARALLEL_MIN_BYTES + 3, undefined],
	];
	let keyFile: string;
	let recipient: string;
	beforeAll(() => {
		keyFile = join(dir, 'parallel.key');
		expect(run('age-keygen', ['-o', keyFile]).status).toBe(0);
		recipient = run('age-keygen', ['-y', keyFile]).stdout.toString().trim();
	});

	it.each(cases)('%s: age -d opens ours, ours opens age -r’s', async (_name, size, workers) => {
		const options = workers === undefined ? {} : {workers};
		const plaintext = randomBytes(size);
		const plain = join(dir, `parallel-${size}`);
		await writeFile(plain, plaintext);
		await encryptFile(plain, `${plain}.ours.age`, recipient, options);
		const chunks = Math.max(1, Math.ceil(size / CHUNK_SIZE));
		expect((await stat(`${plain}.ours.age`)).size - headerLength(await readFile(`${plain}.ours.age`))).toBe(16 + size + 16 * chunks);
		const opened = run('age', ['-d', '-i', keyFile, '-o', `${plain}.age-out`, `${plain}.ours.age`]);
		expect(opened.stderr).toBe('');
		expect(opened.status).toBe(0);
		// age creates its -o file on the first plaintext byte: none for the empty file.
		const byAge = size === 0 ? await readFile(`${plain}.age-out`).catch(() => Buffer.alloc(0)) : await readFile(`${plain}.age-out`);
		expect(sha256(byAge)).toBe(sha256(plaintext));

		expect(run('age', ['-r', recipient, '-o', `${plain}.theirs.age`, plain]).status).toBe(0);
		const identities = parseIdentityFile(await readFile(keyFile, 'utf8'));
		await decryptFile(`${plain}.theirs.age`, `${plain}.out`, identities, options);
		expect(sha256(await readFile(`${plain}.out`))).toBe(sha256(plaintext));
		// Ours opens ours too, and both directions leave exactly the files named.
		await decryptFile(`${plain}.ours.age`, `${plain}.out2`, identities, options);
		expect(sha256(await readFile(`${plain}.out2`))).toBe(sha256(plaintext));
		await rm(plain);
		for (const suffix of ['.ours.age', '.age-out', '.theirs.age', '.out', '.out2']) await rm(plain + suffix, {force: true});
	});

	it('a damaged age file fails in parallel exactly as it does sequentially, leaving nothing', async () => {
		const plaintext = randomBytes(200 * CHUNK_SIZE + 500); // several batches at any BATCH_CHUNKS up to 32
		const sub = await mkdtemp(join(dir, 'parallel-damage-'));
		await writeFile(join(sub, 'plain'), plaintext);
		expect(run('age', ['-r', recipient, '-o', join(sub, 'good.age'), join(sub, 'plain')]).status).toBe(0);
		await rm(join(sub, 'plain'));
		const good = await readFile(join(sub, 'good.age'));
		const payload = headerLength(good) + 16;
		const flip = (at: number) => {
			const copy = Buffer.from(good);
			copy[at] = (copy[at] ?? 0) ^ 0x20;
			return copy;
		};
		const damaged: Array<[string, Buffer]> = [
			['chunk 70 flipped', flip(payload + 70 * (CHUNK_SIZE + 16) + 9)],
			['chunks 100 and 40 flipped', (() => {
				const copy = flip(payload + 100 * (CHUNK_SIZE + 16) + 9);
				copy[payload + 40 * (CHUNK_SIZE + 16)] ^= 0x20;
				return copy;
			})()],
			['last byte flipped', flip(good.length - 1)],
			['cut by one byte', good.subarray(0, good.length - 1)],
			['cut at a chunk boundary', good.subarray(0, payload + 150 * (CHUNK_SIZE + 16))],
			['cut inside a tag', good.subarray(0, payload + 150 * (CHUNK_SIZE + 16) + 7)],
			['one byte appended', Buffer.concat([good, Buffer.from([0])])],
		];
		const identities = parseIdentityFile(await readFile(keyFile, 'utf8'));
		for (const [name, bytes] of damaged) {
			await writeFile(join(sub, 'in.age'), bytes);
			const sequential = await decryptFile(join(sub, 'in.age'), join(sub, 'out'), identities, {workers: 1}).then(() => 'decrypted', (error: unknown) => error);
			const parallel = await decryptFile(join(sub, 'in.age'), join(sub, 'out'), identities, {workers: 2}).then(() => 'decrypted', (error: unknown) => error);
			expect(sequential, name).toBeInstanceOf(AgeError);
			expect(parallel, name).toBeInstanceOf(AgeError);
			expect((parallel as AgeError).message, name).toBe((sequential as AgeError).message);
			expect((parallel as AgeError).message, name).not.toContain('\n');
			expect(await readdir(sub), name).toEqual(['good.age', 'in.age']);
			expect(run('age', ['-d', '-i', keyFile, join(sub, 'in.age')]).status, `${name}: age -d agrees it is damaged`).not.toBe(0);
		}
	});
});

describe('age interop: scrypt passphrases (through a pty)', () => {
	it('our passphrase encryption (default work factor 18) decrypts with age -d', async () => {
		const plaintext = randomBytes(2 * CHUNK_SIZE + 99);
		const file = await encrypt(plaintext, {passphrase: 'battery staple 42'});
		expect(file.toString('latin1', 0, 200)).toMatch(/-> scrypt \S+ 18\n/);
		await writeFile(join(dir, 'pass-ours.age'), file);
		const out = join(dir, 'pass-ours.out');
		const result = await ageWithPassphrase(`age -d -o ${shellQuote(out)} ${shellQuote(join(dir, 'pass-ours.age'))}`, 'battery staple 42');
		expect(result.status).toBe(0);
		expect((await readFile(out)).equals(plaintext)).toBe(true);

		const wrong = await ageWithPassphrase(
			`age -d -o ${shellQuote(join(dir, 'pass-wrong.out'))} ${shellQuote(join(dir, 'pass-ours.age'))}`,
			'not the passphrase',
		);
		expect(wrong.status).not.toBe(0);
	});

	it('age -p encryption decrypts with ours', async () => {
		const plaintext = randomBytes(CHUNK_SIZE + 1);
		await writeFile(join(dir, 'pass-plain'), plaintext);
		const encrypted = join(dir, 'pass-theirs.age');
		const result = await ageWithPassphrase(
			`age -p -o ${shellQuote(encrypted)} ${shellQuote(join(dir, 'pass-plain'))}`,
			'tr0ub4dor & 3',
		);
		expect(result.status).toBe(0);
		const file = await readFile(encrypted);
		expect(file.toString('latin1', 0, 100)).toMatch(/^age-encryption\.org\/v1\n-> scrypt /);
		expect((await decrypt(file, {passphrase: 'tr0ub4dor & 3'})).equals(plaintext)).toBe(true);
		await expect(decrypt(file, {passphrase: 'tr0ub4dor & 4'})).rejects.toThrow(/wrong passphrase/);
	});
});

describe('age interop: tampering', () => {
	it('age -d rejects our files with a flipped byte or truncation, printing no plaintext', async () => {
		const {identity, recipient} = generateIdentity();
		const keyFile = join(dir, 'tamper.key');
		await writeFile(keyFile, formatIdentityFile(identity), {mode: 0o600});
		const plaintext = randomBytes(CHUNK_SIZE - 100); // one chunk: any failure means no output at all
		const file = await encrypt(plaintext, recipient);
		const header = file.indexOf('\n', file.indexOf('\n---') + 1) + 1;
		const cases: Array<[string, Buffer]> = [];
		for (const position of [30, header - 5, header + 3, header + 16 + 10, file.length - 1]) {
			const tampered = Buffer.from(file);
			tampered[position] = (tampered[position] ?? 0) ^ 0x04;
			cases.push([`flip@${position}`, tampered]);
		}
		cases.push(['truncated', file.subarray(0, file.length - 1)]);
		cases.push(['extended', Buffer.concat([file, Buffer.from([0])])]);
		for (const [name, tampered] of cases) {
			await writeFile(join(dir, `tampered-${name}.age`), tampered);
			const result = run('age', ['-d', '-i', keyFile, join(dir, `tampered-${name}.age`)]);
			expect(result.status, name).not.toBe(0);
			expect(result.stdout.length, name).toBe(0);
		}
		// The untampered file still decrypts, so the failures above are due to the tampering.
		await writeFile(join(dir, 'tamper-good.age'), file);
		expect(run('age', ['-d', '-i', keyFile, join(dir, 'tamper-good.age')]).stdout.equals(plaintext)).toBe(true);
	});

	it('ours rejects age files with a flipped byte and leaves no output file', async () => {
		const keyFile = join(dir, 'tamper-theirs.key');
		expect(run('age-keygen', ['-o', keyFile]).status).toBe(0);
		const recipient = run('age-keygen', ['-y', keyFile]).stdout.toString().trim();
		const identities = parseIdentityFile(await readFile(keyFile, 'utf8'));
		const plaintext = randomBytes(10 * CHUNK_SIZE + 5);
		const encrypted = run('age', ['-r', recipient], plaintext).stdout;
		const sub = await mkdtemp(join(dir, 'clean-'));
		for (const position of [40, encrypted.length - 8 * CHUNK_SIZE, encrypted.length - 2]) {
			const tampered = Buffer.from(encrypted);
			tampered[position] = (tampered[position] ?? 0) ^ 0x10;
			await writeFile(join(sub, 'in.age'), tampered);
			await expect(decryptFile(join(sub, 'in.age'), join(sub, 'restored'), identities)).rejects.toBeInstanceOf(AgeError);
			expect(await readdir(sub)).toEqual(['in.age']);
		}
		await writeFile(join(sub, 'in.age'), encrypted);
		await decryptFile(join(sub, 'in.age'), join(sub, 'restored'), identities);
		expect((await stat(join(sub, 'restored'))).mode & 0o777).toBe(0o600);
		expect(sha256(await readFile(join(sub, 'restored')))).toBe(sha256(plaintext));
	});
});

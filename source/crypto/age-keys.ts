/**
 * age recipients and identities: X25519 (Bech32 `age1...` / `AGE-SECRET-KEY-1...`) and scrypt
 * passphrases. Each type wraps and unwraps the 16-byte file key in a header stanza.
 *
 * Key material lives in KeyObjects and ECMAScript private fields, so `console.log`,
 * `util.inspect` and `JSON.stringify` of these objects never show it.
 */
import {
	createCipheriv,
	createDecipheriv,
	createPrivateKey,
	createPublicKey,
	diffieHellman,
	generateKeyPairSync,
	hkdfSync,
	randomBytes,
	scrypt,
	type KeyObject,
} from 'node:crypto';
import {bech32} from 'bech32';
import {AgeError, decodeBase64, encodeBase64, type Stanza} from './age-header.js';

export const FILE_KEY_BYTES = 16;
/** The age command's default scrypt work factor (log2 N). */
export const DEFAULT_WORK_FACTOR = 18;
/**
 * Decryption refuses scrypt stanzas above this work factor unless the caller raises the limit:
 * log2 N = 20 costs 1 GiB of memory and about a second of CPU; an attacker-chosen 2^30 would not.
 */
export const DEFAULT_MAX_WORK_FACTOR = 20;
/** Absolute ceiling for both directions (4 GiB of scrypt memory). */
export const MAX_SUPPORTED_WORK_FACTOR = 22;

const X25519_LABEL = 'age-encryption.org/v1/X25519';
const SCRYPT_LABEL = 'age-encryption.org/v1/scrypt';
const RECIPIENT_HRP = 'age';
const IDENTITY_HRP = 'age-secret-key-';
/** Bech32 as used by age has no 90-character limit. */
const BECH32_LIMIT = 1024;
const ZERO_NONCE = Buffer.alloc(12);
const WRAPPED_KEY_BYTES = FILE_KEY_BYTES + 16;

// DER prefixes that turn 32 raw X25519 bytes into SPKI / PKCS#8 structures (RFC 8410).
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

function publicKeyFromRaw(raw: Uint8Array): KeyObject {
	return createPublicKey({key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki'});
}

function privateKeyFromRaw(raw: Uint8Array): KeyObject {
	return createPrivateKey({key: Buffer.concat([PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8'});
}

function rawPublicKey(key: KeyObject): Buffer {
	return key.export({format: 'der', type: 'spki'}).subarray(SPKI_PREFIX.length);
}

function rawPrivateKey(key: KeyObject): Buffer {
	return key.export({format: 'der', type: 'pkcs8'}).subarray(PKCS8_PREFIX.length);
}

export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string): Buffer {
	return Buffer.from(hkdfSync('sha256', ikm, salt, info, 32));
}

function aeadSeal(key: Uint8Array, plaintext: Uint8Array): Buffer {
	const cipher = createCipheriv('chacha20-poly1305', key, ZERO_NONCE, {authTagLength: 16});
	return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** Returns undefined when authentication fails (the stanza is not for this key). */
function aeadOpen(key: Uint8Array, sealed: Buffer): Buffer | undefined {
	const decipher = createDecipheriv('chacha20-poly1305', key, ZERO_NONCE, {authTagLength: 16});
	decipher.setAuthTag(sealed.subarray(sealed.length - 16));
	const plaintext = decipher.update(sealed.subarray(0, sealed.length - 16));
	try {
		decipher.final();
	} catch {
		return undefined;
	}
	return plaintext;
}

function x25519(privateKey: KeyObject, publicKey: KeyObject): Buffer | undefined {
	let shared: Buffer;
	try {
		shared = diffieHellman({privateKey, publicKey});
	} catch {
		return undefined; // OpenSSL refuses low-order points (all-zero shared secret)
	}
	return shared.every((b) => b === 0) ? undefined : shared;
}

function decodeBech32(text: string, hrp: string, what: string): Buffer {
	let decoded;
	try {
		decoded = bech32.decode(text, BECH32_LIMIT);
	} catch {
		throw new AgeError('INVALID_KEY', `invalid ${what}: bad Bech32 encoding or checksum`);
	}
	if (decoded.prefix !== hrp) throw new AgeError('INVALID_KEY', `invalid ${what}: wrong prefix`);
	let bytes: number[];
	try {
		bytes = bech32.fromWords(decoded.words);
	} catch {
		throw new AgeError('INVALID_KEY', `invalid ${what}: bad Bech32 padding`);
	}
	if (bytes.length !== 32) throw new AgeError('INVALID_KEY', `invalid ${what}: wrong key length`);
	return Buffer.from(bytes);
}

// ---------------------------------------------------------------------------------------------
// X25519

/** A public key to encrypt to. `toString()` gives the `age1...` form. */
export class X25519Recipient {
	readonly type = 'X25519';
	readonly #raw: Buffer;
	readonly #key: KeyObject;

	constructor(raw: Uint8Array) {
		if (raw.length !== 32) throw new AgeError('INVALID_KEY', 'invalid age recipient: wrong key length');
		this.#raw = Buffer.from(raw);
		this.#key = publicKeyFromRaw(this.#raw);
	}

	static parse(text: string): X25519Recipient {
		const trimmed = text.trim();
		if (!trimmed.toLowerCase().startsWith('age1')) {
			throw new AgeError('INVALID_KEY', 'invalid age recipient: expected an age1... X25519 public key');
		}
		return new X25519Recipient(decodeBech32(trimmed, RECIPIENT_HRP, 'age recipient'));
	}

	/** The raw 32-byte public key (a copy). */
	get publicKey(): Buffer {
		return Buffer.from(this.#raw);
	}

	toString(): string {
		return bech32.encode(RECIPIENT_HRP, bech32.toWords(this.#raw), BECH32_LIMIT);
	}

	toJSON(): string {
		return this.toString();
	}

	wrap(fileKey: Buffer): Stanza {
		const ephemeral = generateKeyPairSync('x25519');
		const share = rawPublicKey(ephemeral.publicKey);
		const shared = x25519(ephemeral.privateKey, this.#key);
		if (shared === undefined) {
			throw new AgeError('INVALID_KEY', 'invalid age recipient: public key is a low-order point');
		}
		const wrapKey = hkdf(shared, Buffer.concat([share, this.#raw]), X25519_LABEL);
		return {args: ['X25519', encodeBase64(share)], body: aeadSeal(wrapKey, fileKey)};
	}
}

/** A secret key to decrypt with. Its secret is only reachable through `encode()`. */
export class X25519Identity {
	readonly type = 'X25519';
	readonly #key: KeyObject;
	readonly #recipient: X25519Recipient;

	constructor(key: KeyObject) {
		if (key.type !== 'private' || key.asymmetricKeyType !== 'x25519') {
			throw new AgeError('INVALID_KEY', 'invalid age identity: not an X25519 private key');
		}
		this.#key = key;
		this.#recipient = new X25519Recipient(rawPublicKey(createPublicKey(key)));
	}

	static generate(): X25519Identity {
		return new X25519Identity(generateKeyPairSync('x25519').privateKey);
	}

	static parse(text: string): X25519Identity {
		const trimmed = text.trim();
		if (!trimmed.toUpperCase().startsWith('AGE-SECRET-KEY-1')) {
			throw new AgeError('INVALID_KEY', 'invalid age identity: expected an AGE-SECRET-KEY-1... X25519 secret key');
		}
		return new X25519Identity(privateKeyFromRaw(decodeBech32(trimmed, IDENTITY_HRP, 'age identity')));
	}

	/** The corresponding public recipient. */
	get recipient(): X25519Recipient {
		return this.#recipient;
	}

	/** The secret `AGE-SECRET-KEY-1...` string. Handle as key material: never log it. */
	encode(): string {
		return bech32.encode(IDENTITY_HRP, bech32.toWords(rawPrivateKey(this.#key)), BECH32_LIMIT).toUpperCase();
	}

	toString(): string {
		return `[age X25519 identity for ${this.#recipient.toString()}]`;
	}

	toJSON(): string {
		return this.toString();
	}

	unwrap(stanzas: readonly Stanza[]): Buffer | undefined {
		for (const stanza of stanzas) {
			if (stanza.args[0] !== 'X25519') continue;
			if (stanza.args.length !== 2) {
				throw new AgeError('MALFORMED_HEADER', 'malformed X25519 stanza: expected exactly one argument after X25519');
			}
			const share = decodeBase64(stanza.args[1] ?? '', 'X25519 ephemeral share');
			if (share.length !== 32) throw new AgeError('MALFORMED_HEADER', 'malformed X25519 stanza: bad share length');
			if (stanza.body.length !== WRAPPED_KEY_BYTES) {
				throw new AgeError('MALFORMED_HEADER', 'malformed X25519 stanza: bad body length');
			}
			const shared = x25519(this.#key, publicKeyFromRaw(share));
			if (shared === undefined) {
				throw new AgeError('MALFORMED_HEADER', 'malformed X25519 stanza: low-order ephemeral share');
			}
			const salt = Buffer.concat([share, this.#recipient.publicKey]);
			const fileKey = aeadOpen(hkdf(shared, salt, X25519_LABEL), stanza.body);
			if (fileKey !== undefined) return fileKey;
		}
		return undefined;
	}
}

// ---------------------------------------------------------------------------------------------
// scrypt

function checkWorkFactor(n: number, what: string): void {
	if (!Number.isInteger(n) || n < 1 || n > MAX_SUPPORTED_WORK_FACTOR) {
		throw new AgeError('INVALID_ARGUMENT', `${what} must be an integer from 1 to ${MAX_SUPPORTED_WORK_FACTOR}`);
	}
}

function scryptKey(passphrase: Buffer, salt: Buffer, workFactor: number): Promise<Buffer> {
	const N = 2 ** workFactor;
	const r = 8;
	return new Promise((resolve, reject) => {
		scrypt(
			passphrase,
			Buffer.concat([Buffer.from(SCRYPT_LABEL, 'latin1'), salt]),
			32,
			{N, r, p: 1, maxmem: 2 * 128 * r * (N + 2)},
			(error, key) => (error ? reject(new AgeError('WORK_FACTOR', `scrypt failed: ${error.message}`)) : resolve(key)),
		);
	});
}

function passphraseBytes(passphrase: string): Buffer {
	if (typeof passphrase !== 'string' || passphrase.length === 0) {
		throw new AgeError('INVALID_ARGUMENT', 'passphrase must be a non-empty string');
	}
	return Buffer.from(passphrase, 'utf8');
}

/** Encrypts to a passphrase. Must be the only recipient of a file (the spec forbids mixing). */
export class ScryptRecipient {
	readonly type = 'scrypt';
	readonly workFactor: number;
	readonly #passphrase: Buffer;

	constructor(passphrase: string, workFactor: number = DEFAULT_WORK_FACTOR) {
		checkWorkFactor(workFactor, 'scrypt work factor');
		this.#passphrase = passphraseBytes(passphrase);
		this.workFactor = workFactor;
	}

	toString(): string {
		return `[age scrypt recipient, work factor ${this.workFactor}]`;
	}

	toJSON(): string {
		return this.toString();
	}

	async wrap(fileKey: Buffer): Promise<Stanza> {
		const salt = randomBytes(16);
		const key = await scryptKey(this.#passphrase, salt, this.workFactor);
		return {args: ['scrypt', encodeBase64(salt), String(this.workFactor)], body: aeadSeal(key, fileKey)};
	}
}

/** Decrypts with a passphrase, refusing work factors above `maxWorkFactor`. */
export class ScryptIdentity {
	readonly type = 'scrypt';
	readonly maxWorkFactor: number;
	readonly #passphrase: Buffer;

	constructor(passphrase: string, maxWorkFactor: number = DEFAULT_MAX_WORK_FACTOR) {
		checkWorkFactor(maxWorkFactor, 'maximum scrypt work factor');
		this.#passphrase = passphraseBytes(passphrase);
		this.maxWorkFactor = maxWorkFactor;
	}

	toString(): string {
		return '[age scrypt identity]';
	}

	toJSON(): string {
		return this.toString();
	}

	async unwrap(stanzas: readonly Stanza[]): Promise<Buffer | undefined> {
		const stanza = stanzas.find((s) => s.args[0] === 'scrypt');
		if (stanza === undefined) return undefined;
		if (stanzas.length !== 1) {
			throw new AgeError('MALFORMED_HEADER', 'malformed header: an scrypt stanza must be the only stanza');
		}
		const [, saltText, workFactorText] = stanza.args;
		if (stanza.args.length !== 3 || saltText === undefined || workFactorText === undefined) {
			throw new AgeError('MALFORMED_HEADER', 'malformed scrypt stanza: expected salt and work factor');
		}
		const salt = decodeBase64(saltText, 'scrypt salt');
		if (salt.length !== 16) throw new AgeError('MALFORMED_HEADER', 'malformed scrypt stanza: bad salt length');
		if (!/^[1-9][0-9]*$/.test(workFactorText)) {
			throw new AgeError('MALFORMED_HEADER', 'malformed scrypt stanza: bad work factor');
		}
		const workFactor = Number(workFactorText);
		if (workFactor > this.maxWorkFactor) {
			throw new AgeError(
				'WORK_FACTOR',
				`scrypt work factor 2^${workFactorText} exceeds the allowed maximum 2^${this.maxWorkFactor}`,
			);
		}
		if (stanza.body.length !== WRAPPED_KEY_BYTES) {
			throw new AgeError('MALFORMED_HEADER', 'malformed scrypt stanza: bad body length');
		}
		return aeadOpen(await scryptKey(this.#passphrase, salt, workFactor), stanza.body);
	}
}

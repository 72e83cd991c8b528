/**
 * The textual header of an age-encryption.org/v1 file: parsing (strict, as the spec requires) and
 * formatting. No cryptography happens here except the canonical-base64 rules; see age.ts.
 */

export const VERSION_LINE = 'age-encryption.org/v1';
/** Refuse headers larger than this; a legitimate header with hundreds of recipients is a few KiB. */
export const MAX_HEADER_BYTES = 1024 * 1024;

const BODY_COLUMNS = 64;
const LF = 0x0a;
const BASE64_CHARS = /^[A-Za-z0-9+/]*$/;

/** Every failure of this library is an AgeError; `code` lets callers branch without parsing text. */
export type AgeErrorCode =
	| 'NOT_AGE'
	| 'MALFORMED_HEADER'
	| 'UNSUPPORTED'
	| 'NO_MATCH'
	| 'HEADER_MAC'
	| 'WORK_FACTOR'
	| 'TRUNCATED'
	| 'CHUNK_AUTH'
	| 'INVALID_KEY'
	| 'INVALID_ARGUMENT';

export class AgeError extends Error {
	readonly code: AgeErrorCode;
	constructor(code: AgeErrorCode, message: string) {
		super(message);
		this.name = 'AgeError';
		this.code = code;
	}
}

export interface Stanza {
	readonly args: readonly string[];
	readonly body: Buffer;
}

export interface ParsedHeader {
	readonly stanzas: readonly Stanza[];
	/** The header bytes covered by the MAC: everything up to and including the `---` mark. */
	readonly macInput: Buffer;
	readonly mac: Buffer;
	/** Number of bytes of the input taken by the header (including the MAC line's LF). */
	readonly length: number;
}

/** Unpadded standard base64. */
export function encodeBase64(data: Uint8Array): string {
	return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('base64').replace(/=+$/, '');
}

/**
 * Strict unpadded base64: rejects padding, characters outside the alphabet and non-canonical
 * trailing bits (the spec requires decoders to reject non-canonical encodings).
 */
export function decodeBase64(text: string, what: string): Buffer {
	if (!BASE64_CHARS.test(text) || text.length % 4 === 1) {
		throw new AgeError('MALFORMED_HEADER', `malformed header: ${what} is not valid unpadded base64`);
	}
	const bytes = Buffer.from(text, 'base64');
	if (encodeBase64(bytes) !== text) {
		throw new AgeError('MALFORMED_HEADER', `malformed header: ${what} is not canonical base64`);
	}
	return bytes;
}

function isArgument(s: string): boolean {
	if (s.length === 0) return false;
	for (let i = 0; i < s.length; i++) {
		const c = s.charCodeAt(i);
		if (c < 0x21 || c > 0x7e) return false;
	}
	return true;
}

/**
 * Try to parse a header at the start of `buf`. Returns `undefined` when `buf` ends before the
 * header does (read more and call again); throws AgeError when the bytes cannot be an age header.
 */
export function tryParseHeader(buf: Buffer): ParsedHeader | undefined {
	const firstLine = VERSION_LINE + '\n';
	const prefixLength = Math.min(buf.length, firstLine.length);
	if (buf.toString('latin1', 0, prefixLength) !== firstLine.slice(0, prefixLength)) {
		if (buf.toString('latin1', 0, Math.min(buf.length, 5)) === '-----') {
			throw new AgeError('UNSUPPORTED', 'ASCII-armored age files are not supported; decode the armor first');
		}
		if (buf.toString('latin1', 0, Math.min(buf.length, 19)) === 'age-encryption.org/'.slice(0, Math.min(buf.length, 19))) {
			throw new AgeError('UNSUPPORTED', 'unsupported age format version (only age-encryption.org/v1 is supported)');
		}
		throw new AgeError('NOT_AGE', 'not an age file: the age-encryption.org/v1 version line is missing');
	}
	let pos = firstLine.length;
	const stanzas: Stanza[] = [];
	const nextLine = (): string | undefined => {
		const end = buf.indexOf(LF, pos);
		if (end < 0) return undefined;
		const line = buf.toString('latin1', pos, end);
		pos = end + 1;
		return line;
	};
	for (;;) {
		const lineStart = pos;
		const line = nextLine();
		if (line === undefined) return undefined;
		if (line.startsWith('---')) {
			if (!line.startsWith('--- ')) throw new AgeError('MALFORMED_HEADER', 'malformed header: bad MAC line');
			if (stanzas.length === 0) throw new AgeError('MALFORMED_HEADER', 'malformed header: no recipient stanzas');
			const macText = line.slice(4);
			if (macText.length !== 43) throw new AgeError('MALFORMED_HEADER', 'malformed header: bad MAC length');
			const mac = decodeBase64(macText, 'header MAC');
			return {stanzas, macInput: buf.subarray(0, lineStart + 3), mac, length: pos};
		}
		if (!line.startsWith('-> ')) {
			throw new AgeError('MALFORMED_HEADER', 'malformed header: expected a recipient stanza or the MAC line');
		}
		const args = line.slice(3).split(' ');
		if (!args.every(isArgument)) {
			throw new AgeError('MALFORMED_HEADER', 'malformed header: invalid stanza argument');
		}
		const bodyLines: string[] = [];
		for (;;) {
			const bodyLine = nextLine();
			if (bodyLine === undefined) return undefined;
			if (bodyLine.length > BODY_COLUMNS) {
				throw new AgeError('MALFORMED_HEADER', 'malformed header: stanza body line longer than 64 columns');
			}
			bodyLines.push(bodyLine);
			if (bodyLine.length < BODY_COLUMNS) break;
		}
		stanzas.push({args, body: decodeBase64(bodyLines.join(''), 'stanza body')});
	}
}

/** The header text up to and including `---` (the MAC input), for the given stanzas. */
export function formatHeaderWithoutMac(stanzas: readonly Stanza[]): Buffer {
	let text = VERSION_LINE + '\n';
	for (const stanza of stanzas) {
		if (stanza.args.length === 0 || !stanza.args.every(isArgument)) {
			throw new AgeError('INVALID_ARGUMENT', 'invalid stanza arguments');
		}
		text += '-> ' + stanza.args.join(' ') + '\n';
		const body = encodeBase64(stanza.body);
		for (let i = 0; i + BODY_COLUMNS <= body.length; i += BODY_COLUMNS) {
			text += body.slice(i, i + BODY_COLUMNS) + '\n';
		}
		// The final line is always shorter than 64 columns, possibly empty.
		text += body.slice(body.length - (body.length % BODY_COLUMNS)) + '\n';
	}
	text += '---';
	return Buffer.from(text, 'latin1');
}

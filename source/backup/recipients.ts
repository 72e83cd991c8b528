/** Checking age recipients given on the command line (pure). */
import {parseRecipient} from '../crypto/age.js';

export class RecipientError extends Error {
	override name = 'RecipientError';
}

/** A checked `age1...` X25519 recipient in its canonical form; the error shows what was given (it is public). */
export function parseAgeRecipient(text: string): string {
	const trimmed = text.trim();
	try {
		return parseRecipient(trimmed).toString();
	} catch {
		if (/^AGE-SECRET-KEY-/i.test(trimmed)) {
			// Never echo a secret key, not even in an error.
			throw new RecipientError('a recipient was given as a secret key (AGE-SECRET-KEY-1...): give its public key instead (age-keygen -y KEYFILE), and keep the secret key off this node.');
		}
		throw new RecipientError(
			`${JSON.stringify(trimmed)} is not an age X25519 recipient: give the public key (age1..., from "age-keygen -y KEYFILE"), never the secret key.`,
		);
	}
}

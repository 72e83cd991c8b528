/**
 * The sealed copy: a text holding key material (an EncryptionConfiguration), written
 * age-encrypted for the operator's X25519 recipient or passphrase, before the key it holds is
 * relied on. It is both the recovery copy of a new key and the rotation bundle the other
 * control planes apply. The plaintext travels in params only in memory (the engine journals
 * a change's summary, never its params).
 */
import {defineTask} from '../engine/contract.js';
import {decrypt as ageDecrypt, encrypt as ageEncrypt} from './age.js';

export type SealedCopyParams = {
	/** Node path of the .age file (written 0600). */
	path: string;
	/** The plaintext: key material, never journaled or logged. */
	secretContent: string;
	to: {recipient: string} | {passphrase: string};
	/** How the log names the file: "recovery copy" or "rotation bundle". */
	what: 'recovery copy' | 'rotation bundle';
	/** Shown after writing: what to run with it elsewhere. */
	command?: string;
};

export const sealedCopyTask = defineTask<SealedCopyParams>('sealed-copy', {
	async run(params, context) {
		const {path, secretContent, to} = params;
		const ciphertext = await ageEncrypt(secretContent, 'recipient' in to ? to.recipient : {passphrase: to.passphrase});
		if ('passphrase' in to) {
			// Prove the copy opens with the passphrase before the key is relied on.
			const back = await ageDecrypt(ciphertext, {passphrase: to.passphrase});
			if (back.toString('utf8') !== secretContent) throw new Error(`the ${params.what} did not decrypt back to the config`);
		}
		await context.host.writeFileAtomic(path, ciphertext, 0o600);
		context.log({
			level: 'success',
			text:
				params.what === 'recovery copy'
					? `wrote the recovery copy ${path} (age-encrypted): copy it off this node now`
					: `Wrote the rotation bundle ${path} (age-encrypted; it is also the recovery copy of the keys).`,
		});
		if (params.command) context.log({level: 'info', text: `On every other control-plane node, copy it there and run: ${params.command}`});
	},
	// No undo: the copy is kept even when its stage is undone (an apiserver with automatic
	// reload may already have read the key).
});

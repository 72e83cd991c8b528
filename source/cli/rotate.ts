/**
 * CLI glue for `rotate` and `disable`: their stage lists (--only/--skip pick among them),
 * `--bundle FILE` (decrypted here, held in memory, applied by the rotate-bundle stage),
 * `--bundle-key FILE` (an age identity or a passphrase file: encrypts the bundles this run
 * writes, decrypts the one it applies), and the rotation facts and status rows.
 */
import * as path from 'node:path';
import {decrypt as ageDecrypt, parseIdentityFile, type X25519Identity} from '../crypto/age.js';
import {InputError, type Answers, type Check, type Facts, type Stage} from '../engine/types.js';
import {RealHost} from '../host/real.js';
import type {Host} from '../host/types.js';
import {discoverRotation, nodeNameFrom} from '../kube/rotation-status.js';
import {adminKubeconfig} from '../stages/discover-live.js';
import {disableIdentityStage, disableRemoveStage} from '../stages/disable.js';
import {reencryptStage} from '../stages/reencrypt.js';
import {rotateBundleStage, rotatePrepareStage, rotatePromoteStage, rotatePruneStage, rotationStatus} from '../stages/rotate.js';
import type {CliOptions} from './args.js';

export const rotateStages: Stage[] = [rotatePrepareStage, rotatePromoteStage, reencryptStage, rotatePruneStage];
export const disableStages: Stage[] = [disableIdentityStage, reencryptStage, disableRemoveStage];

type BundleKey = {kind: 'identity'; identities: X25519Identity[]} | {kind: 'passphrase'; passphrase: string};

async function readBundleKey(file: string): Promise<BundleKey> {
	const text = await new RealHost('/').readText(path.resolve(file));
	if (text === undefined) throw new InputError(`--bundle-key ${file}: no such file.`);
	if (text.includes('AGE-SECRET-KEY-1')) {
		try {
			return {kind: 'identity', identities: parseIdentityFile(text)};
		} catch (error) {
			throw new InputError(`--bundle-key ${file}: not a valid age identity file (${(error as Error).message}).`);
		}
	}
	const passphrase = text.split('\n')[0]!.replace(/\r$/, '');
	if (passphrase.length < 12) throw new InputError(`--bundle-key ${file}: the passphrase (its first line) must have at least 12 characters.`);
	return {kind: 'passphrase', passphrase};
}

export async function rotateCommandStages(options: CliOptions): Promise<{selected: Stage[]; skipped: Stage[]}> {
	if (options.bundle !== undefined) {
		if (options.command !== 'rotate') throw new InputError('--bundle belongs to etcd-harden rotate.');
		if (options.only || options.skip) throw new InputError('--bundle applies one config: drop --only/--skip.');
		if (options.bundleKey === undefined) throw new InputError('--bundle needs --bundle-key FILE: your age identity file, or a file holding the passphrase.');
		const file = path.resolve(options.bundle);
		const data = await new RealHost('/').readFile(file);
		if (data === undefined) throw new InputError(`--bundle ${options.bundle}: no such file.`);
		const key = await readBundleKey(options.bundleKey);
		let text: string;
		try {
			const plain = await ageDecrypt(data, key.kind === 'identity' ? key.identities : {passphrase: key.passphrase});
			text = plain.toString('utf8');
		} catch (error) {
			throw new InputError(`--bundle ${options.bundle}: cannot be decrypted with --bundle-key ${options.bundleKey} (${(error as Error).message.split('\n')[0]}). Nothing was changed.`);
		}
		return {selected: [rotateBundleStage(text, file)], skipped: []};
	}
	const all = options.command === 'disable' ? disableStages : rotateStages;
	const ids = all.map(stage => stage.id);
	for (const id of [...(options.only ?? []), ...(options.skip ?? [])]) {
		if (!ids.includes(id)) throw new InputError(`unknown stage "${id}" for ${options.command}: its stages are ${ids.join(', ')}.`);
	}
	const wanted = (stage: Stage): boolean => (options.only ? options.only.includes(stage.id) : !(options.skip ?? []).includes(stage.id));
	return {selected: all.filter(wanted), skipped: all.filter(stage => !wanted(stage))};
}

/** --bundle-key as the answers of the first stage (the others follow it), unless answered already. */
export async function rotationAnswers(options: CliOptions, answers: Answers): Promise<Answers> {
	if (options.bundleKey === undefined || options.bundle !== undefined) return answers;
	const key = await readBundleKey(options.bundleKey);
	const stage = options.command === 'disable' ? disableIdentityStage.id : rotatePrepareStage.id;
	const given = answers[stage] ?? {};
	if (given['bundle'] !== undefined) return answers;
	const preset: Record<string, string> = key.kind === 'identity' ? {bundle: 'age-recipient', recipient: key.identities[0]!.recipient.toString()} : {bundle: 'passphrase', passphrase: key.passphrase};
	return {...answers, [stage]: {...given, ...preset}};
}

export async function rotationFactsFor(host: Host, options: CliOptions, facts: Facts): Promise<Facts> {
	if (!['rotate', 'disable', 'status'].includes(options.command)) return facts;
	const node = nodeNameFrom(options.nodeName, facts.etcd.flags);
	const rotation = await discoverRotation(host, facts.cluster?.kubeconfig ?? options.kubeconfig ?? adminKubeconfig, facts.apiserver.flags, node);
	return {...facts, rotation};
}

export function rotationStatusRows(facts: Facts): Array<Check & {stage: string}> {
	return rotationStatus(facts).map(check => ({stage: 'rotation', ...check}));
}

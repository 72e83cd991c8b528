/**
 * `rotate` and `disable`: their stage lists (--only/--skip pick among them), `--bundle FILE`
 * (decrypted here, held in memory, applied by the rotate-bundle stage), and `--bundle-key
 * FILE` (an age identity or a passphrase file: encrypts the bundles this run writes,
 * decrypts the one it applies).
 */
import * as path from 'node:path';
import {decrypt as ageDecrypt, parseIdentityFile, type X25519Identity} from '../crypto/age.js';
import {InputError, type Answers, type RunSettings} from '../engine/contract.js';
import type {Host} from '../host/types.js';
import {disableIdentityStage, disableRemoveStage} from '../stages/disable.js';
import type {NodeStage} from '../stages/facts.js';
import {purgeHistoryStage} from '../stages/purge-history.js';
import {reencryptStage} from '../stages/reencrypt.js';
import {safetyBackupStage} from '../stages/safety-backup.js';
import {rotateBundleStage, rotatePrepareStage, rotatePromoteStage, rotatePruneStage} from '../stages/rotate.js';
import {answerableStages} from './harden.js';
import {nodeDiscovery, type NodeTarget} from './node.js';
import {selectStages, type StagePick} from './select.js';
import type {Workflow} from './workflow.js';

export const rotateStages: readonly NodeStage[] = [safetyBackupStage('rotate'), rotatePrepareStage, rotatePromoteStage, reencryptStage, purgeHistoryStage, rotatePruneStage];
export const disableStages: readonly NodeStage[] = [safetyBackupStage('disable'), disableIdentityStage, reencryptStage, purgeHistoryStage, disableRemoveStage];

export type RotateRequest = StagePick & {
	command: 'rotate' | 'disable';
	/** --bundle FILE (rotate only). */
	bundle?: string;
	/** --bundle-key FILE. */
	bundleKey?: string;
};

type BundleKey = {kind: 'identity'; identities: X25519Identity[]} | {kind: 'passphrase'; passphrase: string};

/** `files` reads the operator's paths (not under --root). */
async function readBundleKey(files: Host, file: string): Promise<BundleKey> {
	const text = await files.readText(path.resolve(file));
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

async function bundleStage(files: Host, request: RotateRequest & {bundle: string}): Promise<NodeStage> {
	if (request.command !== 'rotate') throw new InputError('--bundle belongs to etcd-harden rotate.');
	if (request.only || request.skip) throw new InputError('--bundle applies one config: drop --only/--skip.');
	if (request.bundleKey === undefined) throw new InputError('--bundle needs --bundle-key FILE: your age identity file, or a file holding the passphrase.');
	const file = path.resolve(request.bundle);
	const data = await files.readFile(file);
	if (data === undefined) throw new InputError(`--bundle ${request.bundle}: no such file.`);
	const key = await readBundleKey(files, request.bundleKey);
	let text: string;
	try {
		const plain = await ageDecrypt(data, key.kind === 'identity' ? key.identities : {passphrase: key.passphrase});
		text = plain.toString('utf8');
	} catch (error) {
		throw new InputError(`--bundle ${request.bundle}: cannot be decrypted with --bundle-key ${request.bundleKey} (${(error as Error).message.split('\n')[0]}). Nothing was changed.`);
	}
	return rotateBundleStage(text, file);
}

/**
 * --bundle-key as the bundle answers of every selected stage that asks for a bundle (unless
 * answered already): the first stage's, and those of later stages when the run starts later
 * (`--only rotate-promote`, as etcd-harden fleet runs one step at a time).
 */
async function bundleKeyAnswers(files: Host, request: RotateRequest, selected: readonly NodeStage[], answers: Answers): Promise<Answers> {
	if (request.bundleKey === undefined || request.bundle !== undefined) return answers;
	const key = await readBundleKey(files, request.bundleKey);
	const preset: Record<string, string> = key.kind === 'identity' ? {bundle: 'age-recipient', recipient: key.identities[0]!.recipient.toString()} : {bundle: 'passphrase', passphrase: key.passphrase};
	const asking = request.command === 'disable' ? [disableIdentityStage.id, disableRemoveStage.id] : [rotatePrepareStage.id, rotatePromoteStage.id, rotatePruneStage.id];
	const first = request.command === 'disable' ? disableIdentityStage.id : rotatePrepareStage.id;
	const result = {...answers};
	for (const stage of selected.map(item => item.id).filter(id => asking.includes(id))) {
		const given = answers[stage] ?? {};
		if (given['bundle'] !== undefined) continue;
		// Later stages follow the first stage's answer ("same") when it runs in this run too.
		if (stage !== first && selected.some(item => item.id === first)) continue;
		result[stage] = {...given, ...preset};
	}
	return result;
}

export async function rotateWorkflow(files: Host, request: RotateRequest, target: NodeTarget, settings: RunSettings): Promise<Workflow> {
	const {selected, skipped} =
		request.bundle !== undefined
			? {selected: [await bundleStage(files, {...request, bundle: request.bundle})], skipped: []}
			: selectStages(request.command === 'disable' ? disableStages : rotateStages, request, request.command);
	return {
		command: request.command,
		stages: selected,
		skipped,
		discover: nodeDiscovery(target, true),
		knownStages: answerableStages(selected),
		answers: given => bundleKeyAnswers(files, request, selected, given),
		settings,
	};
}

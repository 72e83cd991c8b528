/**
 * Stage safety-backup: before a run that rewrites objects (enable, rotate, disable) touches
 * anything, an age-encrypted etcd snapshot, as `kubeadm upgrade` backs up etcd before it
 * changes it. Offered with yes as the default when the node has a backup set up (the scheduled
 * backup's recipients); otherwise asked, no by default. The same task as `etcd-harden backup`;
 * the snapshot is taken before re-encryption, so it holds the plaintext that is about to be
 * rewritten: it is written anyway (that is its purpose) and marked so in its manifest.
 */
import type {NodeStage} from './facts.js';
import {etcdBackupTask} from '../backup/tasks.js';
import {backupId, DEFAULT_OUTPUT_DIR, DEFAULT_STAGING_PARENT, splitRecipients} from '../backup/manifest.js';
import {outputProblem, recipientsProblem} from './backup.js';
import {etcdConnectionFromFlags, etcdPrefixFromFlags} from '../etcd/connection.js';
import {encryptedResources, readableLabels} from '../etcd/history.js';
import {InputError, type Question, type StageAnswers, type StagePlan} from '../engine/contract.js';
import {scannedResources} from '../kube/encryption-config.js';
import type {Facts} from './facts.js';

export const safetyBackupStageId = 'safety-backup';

/** Whether this run will rewrite objects: always for rotate and disable; for harden when something is not on the primary yet. */
function rewriteExpected(facts: Facts, command: 'harden' | 'rotate' | 'disable'): boolean {
	if (command !== 'harden') return true;
	if (!facts.encryption.config) return true;
	return (facts.atRest?.resources ?? []).some(resource => resource.notOnPrimary > 0);
}

function questions(facts: Facts, command: 'harden' | 'rotate' | 'disable'): Question[] {
	const setup = facts.backupSetup;
	const live = Boolean(facts.cluster);
	return [
		{
			id: 'take',
			kind: 'confirm',
			message: 'Take an encrypted etcd backup before any object is rewritten?',
			help: setup
				? `The scheduled backup (${setup.unit}) encrypts to ${setup.recipients.length ? setup.recipients.join(', ') : `the passphrase in ${setup.passphraseFile}`}: the same is used here.`
				: 'Encrypted to an age recipient: the node keeps only the public key.',
			default: Boolean(setup) && live && rewriteExpected(facts, command),
			when: () => live,
		},
		{
			id: 'recipients',
			kind: 'text',
			message: 'age recipients (age1..., separated by commas)',
			...(setup?.recipients.length ? {default: setup.recipients.join(',')} : {}),
			when: answers => answers['take'] === true && !setup?.passphraseFile,
			validate: recipientsProblem,
		},
		{id: 'output', kind: 'text', message: 'Directory for the backup', default: setup?.output ?? DEFAULT_OUTPUT_DIR, when: answers => answers['take'] === true, validate: outputProblem},
	];
}

function plan(facts: Facts, answers: StageAnswers, now: Date): StagePlan {
	if (!facts.cluster) return {changes: [], leftOut: 'no running control plane was probed (etcd-harden runs with --root): a snapshot needs the live etcd.'};
	if (answers['take'] !== true) return {changes: [], notes: ['No safety snapshot: answer yes (--set safety-backup.take=true --set safety-backup.recipients=age1...) to take one before objects are rewritten.']};
	let connection;
	try {
		connection = etcdConnectionFromFlags(facts.apiserver.flags);
	} catch (error) {
		throw new InputError(`${(error as Error).message}: fix ${facts.apiserver.path}, then rerun.`);
	}
	const passphraseFile = facts.backupSetup?.passphraseFile;
	const recipients = passphraseFile ? undefined : splitRecipients(answers['recipients'] as string);
	const output = (answers['output'] as string).replace(/\/+$/, '');
	const id = backupId(now);
	const config = facts.encryption.config;
	return {
		changes: [
			etcdBackupTask.change(
				{
					id,
					outputDir: output,
					stagingParent: DEFAULT_STAGING_PARENT,
					...(recipients ? {recipients} : {}),
					...(passphraseFile ? {passphraseFile} : {}),
					connection,
					etcdPrefix: etcdPrefixFromFlags(facts.apiserver.flags),
					resources: scannedResources(config),
					...(facts.encryption.exists ? {configPath: facts.encryption.path} : {}),
					...(facts.cluster.version ? {kubernetesVersion: facts.cluster.version} : {}),
					keep: 0,
					history: {resources: encryptedResources(config, scannedResources(config)), readableKeys: [...readableLabels(config)], allow: 'safety snapshot taken before objects are rewritten'},
				},
				`Safety snapshot: an age-encrypted etcd backup in ${output}/${id}/ before anything is rewritten`,
				[
					`etcdctl snapshot save from ${connection.endpoints[0]}, checked, encrypted ${recipients ? `to ${recipients.join(', ')}` : `with the passphrase in ${passphraseFile}`}; no older backup is deleted`,
					'it holds the values as they are now (plaintext where they are not encrypted yet): marked so in its manifest',
					`restore it with etcdctl snapshot restore after "etcd-harden restore-check ${output}/${id}" proves it`,
				],
			),
		],
		notes: [`Safety snapshot: ${output}/${id}/`],
	};
}

export function safetyBackupStage(command: 'harden' | 'rotate' | 'disable'): NodeStage {
	return {
		id: safetyBackupStageId,
		title: 'Safety snapshot before rewriting objects',
		explain:
			'This run rewrites objects in etcd. Before anything changes, an etcd snapshot is taken and written age-encrypted, ' +
			'as kubeadm backs up etcd before an upgrade: if anything goes wrong, it is the way back.',
		questions: facts => questions(facts, command),
		plan: (facts, answers, context) => plan(facts, answers, context.now),
		verify: () => [],
		status: () => [],
	};
}

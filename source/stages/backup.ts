/**
 * Stage backup (run by `etcd-harden backup`, not part of `harden`): an age-encrypted etcd
 * snapshot with the encryption config in use and a manifest, and optionally a systemd timer
 * that repeats it with retention. Pure planning; the `etcd-backup` task does the work.
 */
import type {NodeStage} from './facts.js';
import {etcdBackupTask} from '../backup/tasks.js';
import {backupId, DEFAULT_OUTPUT_DIR, DEFAULT_STAGING_PARENT, splitRecipients} from '../backup/manifest.js';
import {RecipientError} from '../backup/recipients.js';
import {isSchedule, renderUnits, SERVICE_NAME, TIMER_NAME, UNIT_DIR, type Schedule} from '../backup/units.js';
import {etcdConnectionFromFlags, etcdPrefixFromFlags} from '../etcd/connection.js';
import {InputError, type AnswerValue, type Change, type Check, type Stage, type StageAnswers, type StagePlan} from '../engine/contract.js';
import type {BackupParams} from '../backup/backup.js';
import {scannedResources} from '../kube/encryption-config.js';
import {encryptedResources, readableLabels} from '../etcd/history.js';
import type {Facts} from './facts.js';

export const backupStageId = 'backup';

function absolutePath(name: string) {
	return (value: AnswerValue): string | undefined => {
		if (typeof value !== 'string' || !value.startsWith('/')) return `${name} must be an absolute path, got ${JSON.stringify(value)}`;
		if (value.split('/').includes('..')) return `${name} must not contain "..": ${value}`;
		return undefined;
	};
}

/** The backup directory: absolute, no "..", never the manifests directory. */
export function outputProblem(value: AnswerValue): string | undefined {
	const problem = absolutePath('output')(value);
	if (problem) return problem;
	const path = (value as string).replace(/\/+$/, '');
	if (path === '/etc/kubernetes/manifests' || path.startsWith('/etc/kubernetes/manifests/')) {
		return 'backups never go into /etc/kubernetes/manifests (kubelet starts every file there): choose e.g. /var/backups/etcd-harden';
	}
	return undefined;
}

/** At least one valid age X25519 recipient. */
export function recipientsProblem(value: AnswerValue): string | undefined {
	try {
		if (splitRecipients(typeof value === 'boolean' ? '' : value).length === 0) return 'give at least one age recipient (age1...)';
	} catch (error) {
		if (error instanceof RecipientError) return error.message;
		throw error;
	}
	return undefined;
}

function keepProblem(value: AnswerValue): string | undefined {
	const number = Number(value);
	if (typeof value !== 'string' || !Number.isInteger(number) || number < 0 || number > 100_000) {
		return `keep must be a whole number of backups (0 keeps all), got ${JSON.stringify(value)}`;
	}
	return undefined;
}

function programWords(value: AnswerValue): string[] {
	return typeof value === 'string' ? value.split(/\s+/).filter(Boolean) : Array.isArray(value) ? value : [];
}

function programProblem(value: AnswerValue): string | undefined {
	const words = programWords(value);
	if (words.length === 0 || !words[0]!.startsWith('/')) return `program must start with an absolute path (e.g. /usr/local/bin/etcd-harden), got ${JSON.stringify(value)}`;
	return undefined;
}

function plan(facts: Facts, answers: StageAnswers, context: {now: Date}): StagePlan {
	if (!facts.apiserver.exists) throw new InputError(`${facts.apiserver.path} does not exist: the backup reads the etcd endpoints and client certificate from the kube-apiserver manifest.`);
	if (facts.apiserver.error) throw new InputError(facts.apiserver.error);
	let connection;
	try {
		connection = etcdConnectionFromFlags(facts.apiserver.flags);
	} catch (error) {
		throw new InputError(`${(error as Error).message}: fix ${facts.apiserver.path}, then rerun.`);
	}
	const output = (answers['output'] as string).replace(/\/+$/, '');
	const protect = answers['protect'];
	const recipients = protect === 'recipients' ? splitRecipients(answers['recipients'] as string) : undefined;
	const passphraseFile = protect === 'passphrase' ? (answers['passphraseFile'] as string) : undefined;
	const keep = Number(answers['keep'] ?? '7');
	const id = backupId(context.now);
	const enc = facts.encryption;
	const configPath = enc.exists ? enc.path : undefined;
	const params: BackupParams = {
		id,
		outputDir: output,
		stagingParent: DEFAULT_STAGING_PARENT,
		...(recipients ? {recipients} : {}),
		...(passphraseFile ? {passphraseFile} : {}),
		connection,
		etcdPrefix: etcdPrefixFromFlags(facts.apiserver.flags),
		resources: scannedResources(facts.encryption.config),
		...(configPath ? {configPath} : {}),
		...(facts.cluster?.version ?? facts.apiserver.version ? {kubernetesVersion: facts.cluster?.version ?? facts.apiserver.version} : {}),
		keep,
		history: {
			resources: encryptedResources(facts.encryption.config, scannedResources(facts.encryption.config)),
			readableKeys: [...readableLabels(facts.encryption.config)],
			...(answers['allowPlaintextHistory'] === true ? {allow: '--allow-plaintext-history'} : {}),
		},
	};
	const to = recipients ? `to ${recipients.length === 1 ? recipients[0] : `${recipients.length} age recipients`}` : `with the passphrase in ${passphraseFile} (scrypt)`;
	const warnings: string[] = [];
	if (!configPath) warnings.push('This node has no encryption config: secrets are stored in plaintext in etcd, so the snapshot holds them in plaintext (the backup file itself is still encrypted).');
	if (enc.errors.length > 0) warnings.push(...enc.errors);
	const changes: Change[] = [
		etcdBackupTask.change(params, `Snapshot etcd and write an age-encrypted backup ${to} to ${output}/${id}/`, [
				`etcdctl snapshot save from ${connection.endpoints[0]} into a private 0700 directory under ${DEFAULT_STAGING_PARENT}, deleted when done or failed`,
				'etcdctl snapshot status checks it; its sha256, revision and key count go into manifest.json',
				`${output}/${id}/snapshot.db.age (age, streaming, 0600)`,
				configPath ? `${output}/${id}/encryption-config.yaml.age: ${configPath}, encrypted the same way (keys listed in the manifest by name only)` : 'no encryption config to archive',
				answers['allowPlaintextHistory'] === true
					? 'the snapshot is scanned for plaintext history (old revisions from before re-encryption); with --allow-plaintext-history a backup that holds some is written anyway and marked so'
					: 'the snapshot is scanned for plaintext history (old revisions from before re-encryption): a snapshot that holds some is refused, nothing written (etcd-harden --only purge-history removes it)',
				keep > 0 ? `keep the newest ${keep} backups in ${output}, delete older etcd-backup-* directories` : `keep every backup in ${output}`,
				recipients ? 'only the public recipients are on this node: prove the backup with "etcd-harden restore-check --identity KEYFILE" where the key is' : 'the backup is decrypted again with the passphrase (into a hash) before it counts as written',
		]),
	];
	const schedule = answers['schedule'];
	if (isSchedule(schedule)) changes.push(...unitChanges(schedule as Schedule, answers, {output, keep, ...(recipients ? {recipients} : {}), ...(passphraseFile ? {passphraseFile} : {})}));
	return {changes, warnings, notes: [`Backup directory: ${output}/${id}/ (snapshot.db.age, ${configPath ? 'encryption-config.yaml.age, ' : ''}manifest.json)`]};
}

function unitChanges(schedule: Schedule, answers: StageAnswers, options: {output: string; keep: number; recipients?: string[]; passphraseFile?: string}): Change[] {
	const units = renderUnits({program: programWords(answers['program'] ?? ''), schedule, ...options});
	return [
		{kind: 'write-file', path: `${UNIT_DIR}/${SERVICE_NAME}`, content: units.service, mode: 0o644, summary: `Write ${SERVICE_NAME} (runs the same backup)`},
		{kind: 'write-file', path: `${UNIT_DIR}/${TIMER_NAME}`, content: units.timer, mode: 0o644, summary: `Write ${TIMER_NAME} (${schedule})`},
		{kind: 'run', argv: ['systemctl', 'daemon-reload'], summary: 'Reload systemd units'},
		{
			kind: 'run',
			argv: ['systemctl', 'enable', '--now', TIMER_NAME],
			summary: `Enable and start ${TIMER_NAME}`,
			undo: ['systemctl', 'disable', '--now', TIMER_NAME],
		},
	];
}

export const backupStage: NodeStage = {
	dependsOn: [],
	id: backupStageId,
	title: 'Encrypted etcd backup',
	explain:
		'An etcd snapshot holds every secret of the cluster, and is useless without the encryption keys that were in use. ' +
		'This takes a snapshot, checks it, and writes it age-encrypted (preferably to a public age recipient, so this node ' +
		'cannot read its own backups) together with the encryption config and a manifest. The plaintext snapshot only ever ' +
		'sits in a private temporary directory, removed whatever happens. Prove a backup restores with "etcd-harden restore-check".',
	questions: () => [
		{id: 'output', kind: 'text', message: 'Directory for backups', default: DEFAULT_OUTPUT_DIR, validate: outputProblem},
		{
			id: 'protect',
			kind: 'select',
			message: 'Encrypt backups',
			help: 'With an age recipient the node holds only a public key; the secret key that restores stays with you.',
			choices: [
				{value: 'recipients', label: 'to age recipients (age1...)', hint: 'recommended'},
				{value: 'passphrase', label: 'with a passphrase read from a file (scrypt)'},
			],
		},
		{id: 'recipients', kind: 'text', message: 'age recipients (age1..., separated by commas)', when: answers => answers['protect'] === 'recipients', validate: recipientsProblem},
		{id: 'passphraseFile', kind: 'text', message: 'File holding the passphrase (first line)', when: answers => answers['protect'] === 'passphrase', validate: absolutePath('passphraseFile')},
		{id: 'keep', kind: 'text', message: 'Backups to keep (0: all)', default: '7', validate: keepProblem},
		{
			id: 'allowPlaintextHistory',
			kind: 'confirm',
			message: 'Write the backup even if the snapshot holds plaintext history?',
			help: 'etcd keeps old revisions (the values from before re-encryption) until etcd-harden --only purge-history compacts and defragments it. Default: refuse such a snapshot.',
			default: false,
		},
		{
			id: 'schedule',
			kind: 'select',
			message: 'Also back up on a schedule (systemd timer)?',
			default: 'none',
			choices: [
				{value: 'none', label: 'no, only now'},
				{value: 'hourly', label: 'hourly'},
				{value: 'daily', label: 'daily (02:00)'},
				{value: 'weekly', label: 'weekly (Sunday 02:00)'},
			],
		},
		{
			id: 'program',
			kind: 'text',
			message: 'Command that runs etcd-harden (for the service)',
			default: '/usr/local/bin/etcd-harden',
			when: answers => isSchedule(answers['schedule']),
			validate: programProblem,
		},
	],
	plan,
	verify: () => [],
	status: (facts: Facts): Check[] => [],
};

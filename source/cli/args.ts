import {parseArgs} from 'node:util';
import {parse as parseYaml} from 'yaml';
import {InputError, type AnswerValue, type Answers} from '../engine/contract.js';
import {parseBackupFlags, type BackupCliOptions} from '../backup/cli-args.js';

export const commands = ['harden', 'status', 'demo', 'backup', 'restore-check', 'rotate', 'disable', 'root-password', 'undo'] as const;
export type Command = (typeof commands)[number];

export type CliOptions = {
	command: Command;
	dryRun: boolean;
	root?: string;
	yes: boolean;
	answersFile?: string;
	/** --set stage.question=value, parsed. */
	set: Answers;
	plain: boolean;
	only?: string[];
	skip?: string[];
	json: boolean;
	/** Decrypt every raw value when verifying, not a sample. */
	deep: boolean;
	/** The admin kubeconfig (default /etc/kubernetes/admin.conf). */
	kubeconfig?: string;
	/** Restart gate timeout, seconds. */
	timeout?: number;
	help: boolean;
	version: boolean;
	/** rotate: apply this rotation bundle (age file) made on another control plane. */
	bundle?: string;
	/** rotate/disable: age identity file or passphrase file for the bundles. */
	bundleKey?: string;
	/** This node's name in kube-system/etcd-harden-status (default: etcd's --name, else the host name). */
	nodeName?: string;
	/** backup and restore-check (source/backup/cli.ts). */
	backup: BackupCliOptions;
	/** status --failed: show only FAIL and WARN findings. */
	failed: boolean;
	/** undo --force: restore even files that changed since the run. */
	force: boolean;
	/** undo RUN_ID (default: the last run). */
	runId?: string;
};

export const helpText = `etcd-harden: harden etcd and Kubernetes secrets at rest on a kubeadm control-plane node

Usage
  etcd-harden [harden] [flags]     the wizard: every stage, previewed and confirmed one by one
  etcd-harden status [--json]      read-only findings for every stage; exit 1 when any fails
  etcd-harden demo [flags]         the wizard on a temporary copy of a built-in kubeadm-like
                                   tree (no cluster, no root needed); prints where the copy is
  etcd-harden backup --recipient age1... | --passphrase-file FILE [--output DIR] [--keep N]
                                   etcd snapshot, checked and age-encrypted, with the encryption
                                   config in use and a manifest, into DIR/etcd-backup-<time>/
  etcd-harden restore-check [BACKUP_DIR] --identity FILE | --passphrase-file FILE
                                   decrypt a backup (default: the newest in --output), restore it
                                   into a throwaway etcd on 127.0.0.1 and decrypt every secret
                                   with the archived config; exit 1 when it would not restore
  etcd-harden rotate [--bundle-key FILE]
                                   rotate the encryption key: prepare (new key, read-only),
                                   promote (it encrypts), reencrypt, prune (old key removed only
                                   when a raw etcd scan finds no object using it); rerun to resume
  etcd-harden rotate --bundle FILE --bundle-key FILE
                                   on another control plane: run the config from a rotation bundle
  etcd-harden disable              identity first, rewrite everything in plaintext, then remove
                                   the keys once no encrypted value remains
  etcd-harden undo [RUN_ID] [--force]
                                   restore every file a run changed (default: the last run) from
                                   its run directory, byte for byte, previewed and confirmed like
                                   any stage; refuses files changed since unless --force; never
                                   deletes a key objects may be encrypted with
  etcd-harden root-password        print etcd's root password (made by the etcd-auth stage and
                                   kept 0600 in /var/lib/etcd-harden); shown only when asked

Flags
  --dry-run             show every change as a diff or the exact command; change nothing
  --root DIR            resolve every path under DIR (a copied tree, a chroot, tests)
  --yes                 non-interactive: never prompt, accept defaults, apply without asking;
                        a question with no default must be answered by --answers or --set
  --answers FILE        YAML answers by stage, e.g.  encryption-config: {provider: secretbox}
  --set STAGE.Q=VALUE   one answer (repeatable), e.g. --set encryption-config.provider=aesgcm
  --plain               line-mode prompts instead of the full-screen wizard
  --only STAGE,...      run only these stages
  --skip STAGE,...      run every stage but these
  --json                results as JSON on stdout (status, and the run summary)
  --failed              status: show only the FAIL and WARN findings
  --force               undo: also restore files that changed since the run
  --concurrency N       re-encryption writes in flight (default 16)
  --rate N              re-encryption: at most N objects per second (default: no limit)
  --deep                verify by decrypting every raw etcd value, not a sample
  --kubeconfig FILE     admin kubeconfig (default /etc/kubernetes/admin.conf)
  --timeout SECONDS     how long to wait for kube-apiserver after a manifest change before
                        undoing the stage (default 180)
  --recipient age1...   backup: encrypt to this age public key (repeatable); the node then
                        cannot read its own backups
  --passphrase-file F   backup/restore-check: passphrase (first line of F) instead (scrypt)
  --output DIR          backup: where backups go (default /var/backups/etcd-harden)
  --keep N              backup: keep the newest N backups in DIR (default 7, 0: all)
  --identity FILE       restore-check: age identity file (AGE-SECRET-KEY-1...) of a recipient
  --bundle FILE         rotate: apply a rotation bundle written by another control plane
  --bundle-key FILE     rotate/disable: an age identity file (bundles are encrypted to its
                        recipient) or a file whose first line is a passphrase
  --node-name NAME      rotate/disable/status: this node's name in kube-system/etcd-harden-status
  --version             print the version
  -h, --help            this help

Stages
  encryption-config     generate a key and write the EncryptionConfiguration (0600)
  apiserver-manifest    point kube-apiserver at it: flag, read-only mount, hostPath volume,
                        sha256 annotation; wait for the restart (undo on failure); persist
                        in kubeadm-config
  reencrypt             rewrite every object not yet on the primary key; verify raw etcd values
  etcd-tls              CIS 2.1-2.7 on the etcd manifest: client/peer certificates and
                        client-cert-auth, no auto TLS, https URLs; wait for etcd and the
                        apiserver after the restart (undo on failure); real connection tests
  etcd-auth             etcd RBAC: root (password in /var/lib/etcd-harden, 0600, never
                        printed), a root-role user per client certificate CN, optional
                        read-only monitoring user; auth enable, disabled again on failure
  firewall              etcd's ports 2379/2380 only from loopback, this node, the etcd
                        members and control-plane nodes (+ --set firewall.client-cidrs=,
                        peer-cidrs=, exclude=, log=true): chain ETCD-HARDEN (iptables legacy
                        or nf_tables, IPv4+IPv6) or table inet etcd_harden (backend=iptables|
                        nftables; default: the one in use); member health and /readyz checked,
                        then confirmed within confirm-timeout= seconds (30) or reverted exactly

Exit codes
  0 done   1 verification or status findings failed   2 bad input or usage   3 aborted or rolled back

Colour only on a terminal, and never with NO_COLOR set.
Results go to stdout; prompts and progress go to stderr. Every run that changes something
keeps a journal and a backup of every file it overwrote in /var/lib/etcd-harden/runs/<id>/.
`;

function splitList(value: string | undefined): string[] | undefined {
	if (value === undefined) return undefined;
	return value
		.split(',')
		.map(item => item.trim())
		.filter(Boolean);
}

/** Parse a --set or answers-file scalar: YAML, so true/false and [a, b] work. */
function parseValue(raw: string): AnswerValue {
	let value: unknown;
	try {
		value = parseYaml(raw);
	} catch {
		return raw;
	}
	if (typeof value === 'boolean' || typeof value === 'string') return value;
	if (Array.isArray(value) && value.every(item => typeof item === 'string')) return value as string[];
	return raw;
}

export function parseCli(argv: string[]): CliOptions {
	let parsed;
	try {
		parsed = parseArgs({
			args: argv,
			allowPositionals: true,
			strict: true,
			options: {
				'dry-run': {type: 'boolean', default: false},
				root: {type: 'string'},
				yes: {type: 'boolean', short: 'y', default: false},
				answers: {type: 'string'},
				set: {type: 'string', multiple: true, default: []},
				plain: {type: 'boolean', default: false},
				only: {type: 'string'},
				skip: {type: 'string'},
				json: {type: 'boolean', default: false},
				deep: {type: 'boolean', default: false},
				kubeconfig: {type: 'string'},
				timeout: {type: 'string'},
				concurrency: {type: 'string'},
				rate: {type: 'string'},
				recipient: {type: 'string', multiple: true, default: []},
				'passphrase-file': {type: 'string'},
				output: {type: 'string'},
				keep: {type: 'string'},
				identity: {type: 'string'},
				bundle: {type: 'string'},
				'bundle-key': {type: 'string'},
				'node-name': {type: 'string'},
				help: {type: 'boolean', short: 'h', default: false},
				version: {type: 'boolean', default: false},
				failed: {type: 'boolean', default: false},
				force: {type: 'boolean', default: false},
			},
		});
	} catch (error) {
		throw new InputError(unknownFlagMessage((error as Error).message) ?? `${(error as Error).message}. See etcd-harden --help.`);
	}
	const {values, positionals} = parsed;
	if (positionals.length > (positionals[0] === 'restore-check' || positionals[0] === 'undo' ? 2 : 1)) throw new InputError(`unexpected argument "${positionals[1]}". See etcd-harden --help.`);
	const command = (positionals[0] ?? 'harden') as Command;
	if (!commands.includes(command)) {
		throw new InputError(`unknown command "${positionals[0]}": use one of ${commands.join(', ')}. See etcd-harden --help.`);
	}
	if (values.only !== undefined && values.skip !== undefined) throw new InputError('--only and --skip cannot be combined: use one.');
	const set: Answers = {};
	for (const item of values.set ?? []) {
		const match = /^([\w-]+)\.([\w-]+)=(.*)$/s.exec(item);
		if (!match) throw new InputError(`--set "${item}" is not STAGE.QUESTION=VALUE, e.g. --set encryption-config.provider=secretbox`);
		const [, stage, question, raw] = match as unknown as [string, string, string, string];
		(set[stage] ??= {})[question] = parseValue(raw);
	}
	// Shorthands for the reencrypt stage's answers.
	if (values.concurrency !== undefined) (set['reencrypt'] ??= {})['concurrency'] = values.concurrency;
	if (values.rate !== undefined) (set['reencrypt'] ??= {})['rate'] = values.rate;
	let timeout: number | undefined;
	if (values.timeout !== undefined) {
		timeout = Number(values.timeout);
		if (!Number.isInteger(timeout) || timeout < 10 || timeout > 3600) {
			throw new InputError(`--timeout ${values.timeout}: give whole seconds from 10 to 3600 (default 180).`);
		}
	}
	const backup = parseBackupFlags(command, values, positionals[1], set);
	return {
		command,
		backup,
		failed: values.failed ?? false,
		force: values.force ?? false,
		...(command === 'undo' && positionals[1] !== undefined ? {runId: positionals[1]} : {}),
		...(values.bundle === undefined ? {} : {bundle: values.bundle}),
		...(values['bundle-key'] === undefined ? {} : {bundleKey: values['bundle-key']}),
		...(values['node-name'] === undefined ? {} : {nodeName: values['node-name']}),
		timeout,
		deep: values.deep ?? false,
		kubeconfig: values.kubeconfig,
		dryRun: values['dry-run'] ?? false,
		root: values.root,
		yes: values.yes ?? false,
		answersFile: values.answers,
		set,
		plain: values.plain ?? false,
		only: splitList(values.only),
		skip: splitList(values.skip),
		json: values.json ?? false,
		help: values.help ?? false,
		version: values.version ?? false,
	};
}

/** Every long flag parseCli knows, for the "did you mean" hint. */
const knownFlags = [
	'dry-run', 'root', 'yes', 'answers', 'set', 'plain', 'only', 'skip', 'json', 'deep', 'kubeconfig', 'timeout', 'concurrency', 'rate',
	'recipient', 'passphrase-file', 'output', 'keep', 'identity', 'bundle', 'bundle-key', 'node-name', 'help', 'version', 'failed', 'force',
];

function editDistance(a: string, b: string): number {
	const row = Array.from({length: b.length + 1}, (_, i) => i);
	for (let i = 1; i <= a.length; i++) {
		let diagonal = row[0]!;
		row[0] = i;
		for (let j = 1; j <= b.length; j++) {
			const above = row[j]!;
			row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
			diagonal = above;
		}
	}
	return row[b.length]!;
}

/**
 * "unknown flag --dry-rn: did you mean --dry-run? See etcd-harden --help." for node's
 * parseArgs "Unknown option" error; undefined for any other error.
 */
export function unknownFlagMessage(message: string): string | undefined {
	const unknown = /Unknown option '(-{1,2})([^'=]+)/.exec(message);
	if (!unknown) return undefined;
	const [, dashes, name] = unknown as unknown as [string, string, string];
	const [best] = knownFlags.map(flag => ({flag, distance: editDistance(name, flag)})).sort((a, b) => a.distance - b.distance);
	const close = best && best.distance <= Math.max(2, Math.floor(name.length / 3));
	return `unknown flag ${dashes}${name}${close ? `: did you mean --${best.flag}?` : '.'} See etcd-harden --help for the flags.`;
}

/** `etcd-harden demo --help`: the demo's own help. */
export const demoHelpText = `etcd-harden demo: the wizard on a temporary copy of a built-in kubeadm-like tree

Usage
  etcd-harden demo [--dry-run] [--plain] [--yes --set STAGE.Q=VALUE ...] [--only/--skip STAGE,...]

What it does
  Copies a small kubeadm control-plane tree (static pod manifests, PKI placeholders) to a new
  directory under the system's temporary directory and runs the wizard on that copy, exactly as
  "etcd-harden harden --root COPY" would. No cluster and no root are needed; nothing outside the
  copy is read or changed. Stages that need a live control plane (re-encryption, etcd auth, the
  firewall) are left out and say why.

  The copy's certificates are real (a kubeadm-shaped PKI made by scripts/make-demo-pki.sh, valid
  for 100 years) but public: they are in the package, and secure nothing but the demo copy.

  At the end it prints where the copy is and how to remove it; a run that is refused before the
  wizard starts removes the copy itself. Undo a demo run with the command its receipt prints.

Flags are those of etcd-harden harden except --root (the demo picks its own). See etcd-harden --help.
`;

/** Parse an --answers file's text: a mapping of stage id to a mapping of answers. */
export function parseAnswersFile(file: string, text: string): Answers {
	let data: unknown;
	try {
		data = parseYaml(text);
	} catch (error) {
		throw new InputError(`${file} is not valid YAML: ${(error as Error).message.split('\n')[0]}. Fix the file and rerun.`);
	}
	if (data === null || data === undefined) return {};
	if (typeof data !== 'object' || Array.isArray(data)) {
		throw new InputError(`${file} must be a mapping of stage ids to answers, e.g. "encryption-config: {provider: secretbox}".`);
	}
	const answers: Answers = {};
	for (const [stage, value] of Object.entries(data as Record<string, unknown>)) {
		if (typeof value !== 'object' || value === null || Array.isArray(value)) {
			throw new InputError(`${file}: "${stage}" must be a mapping of question ids to answers.`);
		}
		answers[stage] = {};
		for (const [question, answer] of Object.entries(value as Record<string, unknown>)) {
			if (typeof answer === 'boolean' || typeof answer === 'string') answers[stage][question] = answer;
			else if (typeof answer === 'number') answers[stage][question] = String(answer);
			else if (Array.isArray(answer) && answer.every(item => typeof item === 'string')) answers[stage][question] = answer as string[];
			else throw new InputError(`${file}: "${stage}.${question}" must be text, true/false or a list of text.`);
		}
	}
	return answers;
}

/** Answers from the file, overridden by --set. */
export function mergeAnswers(base: Answers, override: Answers): Answers {
	const result: Answers = {};
	for (const stage of new Set([...Object.keys(base), ...Object.keys(override)])) {
		result[stage] = {...base[stage], ...override[stage]};
	}
	return result;
}

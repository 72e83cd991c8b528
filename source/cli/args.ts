import {parseArgs} from 'node:util';
import {parse as parseYaml} from 'yaml';
import {REENCRYPT_DEFAULTS} from '../kube/reencrypt.js';
import {InputError, type AnswerValue, type Answers} from '../engine/contract.js';
import {parseBackupFlags, type BackupCliOptions} from '../backup/cli-args.js';
import {parseReportFlags, reportFlagSpecs, type MonitorCliOptions, type StatusCliOptions} from './report-args.js';

export const commands = ['harden', 'status', 'demo', 'backup', 'restore-check', 'rotate', 'disable', 'root-password', 'monitor', 'undo', 'fleet'] as const;
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
	/** purge-history: seconds between proving a revision clean and compacting at it. */
	compactionGrace?: number;
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
	/** monitor's flags, and status's --format/--rbac-proposal (source/cli/report-args.ts). */
	monitor: MonitorCliOptions;
	status: StatusCliOptions;
	/** status --failed: show only FAIL and WARN findings. */
	failed: boolean;
	/** undo --force: restore even files that changed since the run. */
	force: boolean;
	/** undo RUN_ID (default: the last run). */
	runId?: string;
	/** fleet OPERATION and its flags (source/workflow/fleet.ts). */
	fleet?: FleetCliOptions;
};

export const fleetOperationNames = ['rotate', 'enable', 'disable', 'status', 'export'] as const;
export type FleetCliOptions = {
	operation: (typeof fleetOperationNames)[number];
	inventory?: string;
	limit?: string;
	nodes: boolean;
	executable?: string;
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
  etcd-harden fleet rotate|enable|disable|status|export --inventory FILE | --nodes
                  [--limit PATTERN] [--bundle-key FILE] [--executable FILE|installed] [-o DIR]
                                   every control plane through Ansible, from a workstation:
                                   each step on all nodes, gated on every node's reported
                                   config hash (enable: the key read-only everywhere first);
                                   --limit only with status; export writes the play (README: Fleet)
  etcd-harden monitor [--once [--json]] [--textfile DIR] [--etcd-log FILE]
                                   watch for unauthorized access: etcd auth/TLS failures,
                                   firewall drops by source, values the apiserver cannot decrypt,
                                   config reload failures, secret read rate, certificate expiry;
                                   a live dashboard on a terminal (q quits); exit 1 on an alert
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
  --concurrency N|auto  re-encryption writes in flight (default auto: adaptive; N pins it)
  --rate N              re-encryption: at most N objects per second (default: no limit)
  --deep                verify by decrypting every raw etcd value, not a sample
  --kubeconfig FILE     admin kubeconfig (default /etc/kubernetes/admin.conf)
  --timeout SECONDS     how long to wait for kube-apiserver after a manifest change before
                        undoing the stage (default 180)
  --compaction-grace SECONDS
                        purge-history: wait this long between proving every value encrypted
                        at a revision and compacting etcd at it, so API LISTs already in
                        flight finish (default 30; 0 compacts at once)
  --recipient age1...   backup: encrypt to this age public key (repeatable); the node then
                        cannot read its own backups
  --passphrase-file F   backup/restore-check: passphrase (first line of F) instead (scrypt)
  --output DIR          backup: where backups go (default /var/backups/etcd-harden)
  --keep N              backup: keep the newest N backups in DIR (default 7, 0: all)
  --identity FILE       restore-check: age identity file (AGE-SECRET-KEY-1...) of a recipient
  --allow-plaintext-history
                        backup: write the backup even when the snapshot holds plaintext
                        history (old revisions from before re-encryption); default: refuse
  --bundle FILE         rotate: apply a rotation bundle written by another control plane
  --bundle-key FILE     rotate/disable: an age identity file (bundles are encrypted to its
                        recipient) or a file whose first line is a passphrase
  --format F            status: text (default), json, or kube-bench (kube-bench's JSON schema,
                        ids numbered by the CIS version for the detected Kubernetes version)
  --rbac-proposal FILE  status: write a least-privilege ClusterRole/bindings proposal for who
                        reads Secrets to FILE, for review (never applied)
  --once                monitor: take one sample, print it (text, or --json) and exit
  --textfile DIR        monitor: write DIR/etcd-harden.prom for node_exporter's textfile
                        collector (run it from cron or a timer every minute)
  --etcd-log FILE       monitor: etcd's log (default: its static pod log under /var/log/pods)
  --prometheus-rule F   monitor: write the alerting rules as a PrometheusRule object to F
  --interval SECONDS    monitor: dashboard refresh (default 5)
  --read-threshold N    monitor: secret reads per second that alert (default 5)
  --node-name NAME      rotate/disable/status: this node's name in kube-system/etcd-harden-status
  --inventory FILE      fleet: an Ansible inventory of the control planes
  --nodes               fleet: the inventory from the cluster's control-plane Nodes
  --limit PATTERN       fleet: Ansible's --limit
  --executable F        fleet: the single executable to copy to every node, or "installed"
  -o, --output DIR      fleet export: where the play is written
  --version             print the version
  -h, --help            this help

Stages
  encryption-config     generate a key and write the EncryptionConfiguration (0600)
  apiserver-manifest    point kube-apiserver at it: flag, read-only mount, hostPath volume,
                        sha256 annotation; wait for the restart (undo on failure); persist
                        in kubeadm-config
  reencrypt             rewrite every object not yet on the primary key; verify raw etcd values
  purge-history         compact etcd at the revision a scan proves clean, then defragment every member
                        (followers first, the leader last, each healthy before the next);
                        prove etcd's data file holds no plaintext of an encrypted resource
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

/** The long flags parseCli knows, for "did you mean". */
const flagNames = [
	'dry-run', 'root', 'yes', 'answers', 'set', 'plain', 'only', 'skip', 'json', 'deep', 'kubeconfig', 'timeout', 'compaction-grace', 'concurrency', 'rate',
	'recipient', 'passphrase-file', 'output', 'keep', 'identity', 'bundle', 'bundle-key', 'node-name', 'help', 'version', 'failed', 'force',
	'inventory', 'limit', 'nodes', 'executable',
	...Object.keys(reportFlagSpecs),
];

/** "unknown flag --dry-rn: did you mean --dry-run? ..." for node's parseArgs "Unknown option" error; undefined for any other error. */
export function unknownFlagMessage(message: string): string | undefined {
	return /Unknown option '/.test(message) ? flagError(new Error(message)).message : undefined;
}

/** Edit distance (insert, delete, substitute), for suggesting the closest flag or command. */
export function editDistance(a: string, b: string): number {
	let previous = Array.from({length: b.length + 1}, (_, j) => j);
	for (let i = 1; i <= a.length; i++) {
		const current = [i];
		for (let j = 1; j <= b.length; j++) {
			current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
		}
		previous = current;
	}
	return previous[b.length]!;
}

/** The closest of `candidates` to `given`, when it is close enough to be a likely typo. */
export function closest(given: string, candidates: readonly string[]): string | undefined {
	let best: {name: string; distance: number} | undefined;
	for (const name of candidates) {
		const distance = name.startsWith(given) || given.startsWith(name) ? Math.abs(name.length - given.length) * 0.5 : editDistance(given, name);
		if (!best || distance < best.distance) best = {name, distance};
	}
	return best && best.distance <= Math.max(2, Math.floor(given.length / 3)) ? best.name : undefined;
}

/** node:util parseArgs errors, as one line naming the flag and the fix. */
function flagError(error: Error): InputError {
	const message = error.message.split('\n')[0]!;
	const unknown = /Unknown option '(-{1,2})([^'=]*)/.exec(message);
	if (unknown) {
		const [, dashes, name] = unknown as unknown as [string, string, string];
		const suggestion = closest(name, flagNames);
		return new InputError(`unknown flag ${dashes}${name}${suggestion ? `: did you mean --${suggestion}?` : '.'} See etcd-harden --help.`);
	}
	const missing = /Option '(-\w, )?(--[\w-]+)[^']*' argument missing/.exec(message);
	if (missing) return new InputError(`${missing[2]} needs a value. See etcd-harden --help.`);
	const noValue = /Option '(-\w, )?(--[\w-]+)' does not take an argument/.exec(message);
	if (noValue) return new InputError(`${noValue[2]} is a switch and takes no value: drop "=...". See etcd-harden --help.`);
	return new InputError(`${message.replace(/\.$/, '')}. See etcd-harden --help.`);
}

/** A control character (newline, NUL, escape...) in a flag value is never meant. */
function checkPlainValue(flag: string, value: string | undefined): void {
	if (value === undefined) return;
	if (value === '') throw new InputError(`${flag} is empty: give a value, or leave the flag out. See etcd-harden --help.`);
	// eslint-disable-next-line no-control-regex
	if (/[\u0000-\u001f\u007f]/.test(value)) throw new InputError(`${flag} ${JSON.stringify(value)} contains a control character (a newline?): give it on one line.`);
}

/** --only/--skip: a comma-separated list of stage ids, none empty. */
function stageList(flag: string, value: string | undefined): string[] | undefined {
	if (value === undefined) return undefined;
	const items = value.split(',').map(item => item.trim());
	if (items.every(item => item === '')) throw new InputError(`${flag} is empty: name at least one stage, e.g. ${flag} encryption-config. See etcd-harden --help.`);
	if (items.some(item => item === '')) throw new InputError(`${flag} ${JSON.stringify(value)} has an empty stage name: write the stage ids separated by single commas.`);
	for (const item of items) checkPlainValue(flag, item);
	return [...new Set(items)];
}

/** A whole number in [min, max] written as plain decimal digits (no 1e9, no 0x10, no -5). */
function wholeNumber(flag: string, value: string, min: number, max: number, hint: string): number {
	const number = /^\d{1,9}$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
	if (!Number.isInteger(number) || number < min || number > max) {
		throw new InputError(`${flag} ${JSON.stringify(value)}: give a whole number from ${min} to ${max} (${hint}).`);
	}
	return number;
}

/** Kubernetes node names are DNS subdomains: lower case letters, digits, '-' and '.', at most 253. */
export function nodeNameProblem(name: string): string | undefined {
	if (name.length === 0 || name.length > 253) return 'must be 1 to 253 characters';
	if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(name)) {
		return 'must be a DNS subdomain: lower-case letters, digits, "-" and "." (as kubectl get nodes shows it)';
	}
	return undefined;
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
				'compaction-grace': {type: 'string'},
				concurrency: {type: 'string'},
				rate: {type: 'string'},
				recipient: {type: 'string', multiple: true, default: []},
				'passphrase-file': {type: 'string'},
				output: {type: 'string', short: 'o'},
				keep: {type: 'string'},
				identity: {type: 'string'},
				'allow-plaintext-history': {type: 'boolean'},
				bundle: {type: 'string'},
				'bundle-key': {type: 'string'},
				'node-name': {type: 'string'},
				help: {type: 'boolean', short: 'h', default: false},
				version: {type: 'boolean', default: false},
				...reportFlagSpecs,
				failed: {type: 'boolean', default: false},
				force: {type: 'boolean', default: false},
				inventory: {type: 'string'},
				limit: {type: 'string'},
				nodes: {type: 'boolean', default: false},
				executable: {type: 'string'},
			},
		});
	} catch (error) {
		throw flagError(error as Error);
	}
	const {values, positionals} = parsed;
	const command = (positionals[0] ?? 'harden') as Command;
	if (!commands.includes(command)) {
		const suggestion = closest(positionals[0]!, commands);
		throw new InputError(`unknown command ${JSON.stringify(positionals[0])}: ${suggestion ? `did you mean ${suggestion}? ` : ''}The commands are ${commands.join(', ')}. See etcd-harden --help.`);
	}
	const allowed = command === 'restore-check' || command === 'undo' || command === 'fleet' ? 2 : 1;
	if (positionals.length > allowed) {
		const takes = command === 'restore-check' ? 'one backup directory at most' : command === 'undo' ? 'one run id at most' : command === 'fleet' ? `one operation (${fleetOperationNames.join(', ')})` : 'flags only';
		throw new InputError(`unexpected argument ${JSON.stringify(positionals[allowed])}: ${command} takes ${takes}. See etcd-harden --help.`);
	}
	if (positionals[1] !== undefined && command !== 'fleet') checkPlainValue(command === 'undo' ? 'the run id' : 'the backup directory', positionals[1]);
	// Every value is checked whatever the command and whichever stages run: a typo is never
	// accepted silently just because the stage that would read it is left out.
	for (const name of ['root', 'answers', 'kubeconfig', 'passphrase-file', 'output', 'identity', 'bundle', 'bundle-key', 'node-name', 'inventory', 'limit', 'executable'] as const) {
		checkPlainValue(`--${name}`, values[name]);
	}
	for (const recipient of values.recipient ?? []) checkPlainValue('--recipient', recipient);
	if (values['node-name'] !== undefined) {
		const problem = nodeNameProblem(values['node-name']);
		if (problem) throw new InputError(`--node-name ${JSON.stringify(values['node-name'])}: ${problem}.`);
	}
	// Flags that only one kind of command reads: given elsewhere they would be ignored silently.
	const belongs: Array<[string, unknown, readonly Command[]]> = [
		['--bundle', values.bundle, ['rotate']],
		['--bundle-key', values['bundle-key'], ['rotate', 'disable', 'fleet']],
		['--inventory', values.inventory, ['fleet']],
		['--limit', values.limit, ['fleet']],
		['--nodes', values.nodes || undefined, ['fleet']],
		['--executable', values.executable, ['fleet']],
		['--node-name', values['node-name'], ['rotate', 'disable', 'status']],
		['--concurrency', values.concurrency, ['harden', 'demo', 'rotate', 'disable']],
		['--rate', values.rate, ['harden', 'demo', 'rotate', 'disable']],
		['--compaction-grace', values['compaction-grace'], ['harden', 'rotate', 'disable']],
		['--failed', values.failed || undefined, ['status']],
		['--force', values.force || undefined, ['undo']],
	];
	for (const [flag, value, owners] of belongs) {
		if (value !== undefined && !owners.includes(command)) throw new InputError(`${flag} belongs to etcd-harden ${owners.join(', ')}, not ${command}. See etcd-harden --help.`);
	}
	if (values.only !== undefined && values.skip !== undefined) throw new InputError('--only and --skip cannot be combined: use one.');
	const only = stageList('--only', values.only);
	const skip = stageList('--skip', values.skip);
	const set: Answers = {};
	for (const item of values.set ?? []) {
		const match = /^([\w-]+)\.([\w-]+)=(.*)$/s.exec(item);
		// The value is not echoed: it may be a passphrase.
		const shown = item.includes('=') ? `${item.slice(0, item.indexOf('='))}=…` : item.slice(0, 60);
		if (!match) throw new InputError(`--set ${JSON.stringify(shown)} is not STAGE.QUESTION=VALUE, e.g. --set encryption-config.provider=secretbox`);
		const [, stage, question, raw] = match as unknown as [string, string, string, string];
		// Verbatim: the question's type decides how the text is read (coerceAnswer), so a
		// passphrase keeps its '#', its quotes and its spaces.
		(set[stage] ??= {})[question] = raw;
	}
	// Shorthands for the reencrypt stage's answers, checked here whether or not the stage runs.
	if (values.concurrency !== undefined) {
		// `auto` (the default) lets the adaptive controller find the server's ceiling; a number pins it.
		if (values.concurrency.trim() !== 'auto') wholeNumber('--concurrency', values.concurrency, 1, REENCRYPT_DEFAULTS.maxConcurrency, 'writes in flight, or auto (the default: adaptive)');
		(set['reencrypt'] ??= {})['concurrency'] = values.concurrency.trim();
	}
	if (values.rate !== undefined) {
		wholeNumber('--rate', values.rate, 0, 100_000, 'objects per second, 0 for no limit');
		(set['reencrypt'] ??= {})['rate'] = values.rate.trim();
	}
	let timeout: number | undefined;
	if (values.timeout !== undefined) {
		timeout = wholeNumber('--timeout', values.timeout, 10, 3600, 'seconds, default 180');
	}
	const compactionGrace = values['compaction-grace'] === undefined ? undefined : wholeNumber('--compaction-grace', values['compaction-grace'], 0, 3600, 'seconds, default 30');
	if (values.keep !== undefined) wholeNumber('--keep', values.keep, 0, 100_000, 'backups to keep, 0 for all');
	const backup = parseBackupFlags(command, values, command === 'fleet' ? undefined : positionals[1], set);
	let fleet: FleetCliOptions | undefined;
	if (command === 'fleet') {
		const operation = positionals[1];
		if (operation === undefined || !(fleetOperationNames as readonly string[]).includes(operation)) {
			const suggestion = operation === undefined ? undefined : closest(operation, fleetOperationNames);
			throw new InputError(
				`${operation === undefined ? 'fleet needs an operation' : `unknown fleet operation ${JSON.stringify(operation)}`}: ${suggestion ? `did you mean ${suggestion}? ` : ''}give one of ${fleetOperationNames.join(', ')}, e.g. etcd-harden fleet rotate --inventory FILE --bundle-key FILE.`,
			);
		}
		if (values.root !== undefined) throw new InputError('--root does not apply to fleet: it runs on your workstation and reaches the control planes through Ansible. Drop --root.');
		if (values.kubeconfig !== undefined && !values.nodes) throw new InputError('--kubeconfig belongs to fleet --nodes (the cluster whose control-plane Nodes make the inventory). Drop it, or add --nodes.');
		if (values.only !== undefined || values.skip !== undefined) throw new InputError('--only/--skip do not apply to fleet: it runs every step of the operation in order (a rerun resumes where the nodes are).');
		fleet = {
			operation: operation as FleetCliOptions['operation'],
			nodes: values.nodes ?? false,
			...(values.inventory === undefined ? {} : {inventory: values.inventory}),
			...(values.limit === undefined ? {} : {limit: values.limit}),
			...(values.executable === undefined ? {} : {executable: values.executable}),
		};
	}
	return {
		command,
		backup,
		...parseReportFlags(command, values),
		failed: values.failed ?? false,
		force: values.force ?? false,
		...(command === 'undo' && positionals[1] !== undefined ? {runId: positionals[1]} : {}),
		...(fleet === undefined ? {} : {fleet}),
		...(values.bundle === undefined ? {} : {bundle: values.bundle}),
		...(values['bundle-key'] === undefined ? {} : {bundleKey: values['bundle-key']}),
		...(values['node-name'] === undefined ? {} : {nodeName: values['node-name']}),
		timeout,
		...(compactionGrace === undefined ? {} : {compactionGrace}),
		deep: values.deep ?? false,
		kubeconfig: values.kubeconfig,
		dryRun: values['dry-run'] ?? false,
		root: values.root,
		yes: values.yes ?? false,
		answersFile: values.answers,
		set,
		plain: values.plain ?? false,
		only,
		skip,
		json: values.json ?? false,
		help: values.help ?? false,
		version: values.version ?? false,
	};
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

/**
 * Parse an --answers file's text: a mapping of stage id to a mapping of answers. Read with
 * YAML's failsafe schema, so every scalar stays the text that was written (a passphrase
 * "0123" is not the number 123, "yes" is not a boolean); the question's type decides how
 * it is read (coerceAnswer). Aliases are refused (no alias bombs in an answers file).
 */
export function parseAnswersFile(file: string, text: string): Answers {
	if (text.length > 1024 * 1024) throw new InputError(`${file} is ${text.length} bytes: an answers file is a few lines. Pass the right file.`);
	let data: unknown;
	try {
		data = parseYaml(text, {schema: 'failsafe', prettyErrors: false, uniqueKeys: true, maxAliasCount: 0});
	} catch (error) {
		const message = (error as Error).message.split('\n')[0];
		throw new InputError(`${file} is not valid YAML: ${/alias/i.test(message ?? '') ? 'it uses YAML aliases (*name), which answers files do not allow' : message}. Fix the file and rerun.`);
	}
	if (data === null || data === undefined || data === '') return {};
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
			if (typeof answer === 'string') answers[stage][question] = answer;
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

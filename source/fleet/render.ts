/**
 * `etcd-harden fleet`: the play, rendered from templates/ansible/ (embedded by its
 * generate.mjs). Pure: settings in, files (relative path -> text) out. The operation's steps
 * are one table here: the play runs them in order, and the frontends show one row per node
 * per step from the same table.
 */
import {Document, isSeq, parseDocument, stringify} from 'yaml';
import {ansibleTemplates} from './templates.generated.js';

export const fleetOperations = ['rotate', 'enable', 'disable', 'status'] as const;
export type FleetOperation = (typeof fleetOperations)[number];

export type FleetStep = {
	/** Row key and the task name prefix ("prepare: ..."). */
	id: string;
	title: string;
	/** What the first control plane runs (after the tool's path). */
	first?: string[];
	/** The first control plane's config then goes to every other one as its bundle. */
	apply?: boolean;
	/** A gate: wait until every control plane reports the same config hash. */
	gate?: boolean;
};

const agree = (after: string): FleetStep => ({id: `agree-${after}`, title: `every control plane reports the config of ${after}`, gate: true});

const STEPS: Record<FleetOperation, FleetStep[]> = {
	rotate: [
		{id: 'prepare', title: 'new key added after the primary (reads, does not write)', first: ['rotate', '--only', 'rotate-prepare'], apply: true},
		agree('prepare'),
		{id: 'promote', title: 'the new key becomes primary', first: ['rotate', '--only', 'rotate-promote'], apply: true},
		agree('promote'),
		{id: 'reencrypt', title: 'every object rewritten with the new key (once)', first: ['rotate', '--only', 'reencrypt']},
		{id: 'purge', title: 'old revisions compacted, every etcd member defragmented (once)', first: ['rotate', '--only', 'purge-history']},
		{id: 'prune', title: 'the old key removed once a raw etcd scan finds no object using it', first: ['rotate', '--only', 'rotate-prune'], apply: true},
		agree('prune'),
	],
	// Turning encryption on is a rotation whose primary is identity (source/stages/rotate.ts): the
	// key goes after identity on every node first (all read it, none writes with it); only once
	// every node reports that config does it become primary. Nothing old to prune.
	enable: [
		{id: 'prepare', title: 'the key added after identity (reads; new writes stay plaintext)', first: ['rotate', '--only', 'rotate-prepare'], apply: true},
		agree('prepare'),
		{id: 'promote', title: 'the key becomes primary (new writes are encrypted)', first: ['rotate', '--only', 'rotate-promote'], apply: true},
		agree('promote'),
		{id: 'reencrypt', title: 'every object rewritten with the key (once)', first: ['rotate', '--only', 'reencrypt']},
		{id: 'purge', title: 'plaintext revisions compacted, every etcd member defragmented (once)', first: ['rotate', '--only', 'purge-history']},
	],
	disable: [
		{id: 'identity', title: 'identity first: new writes in plaintext, every key still reads', first: ['disable', '--only', 'disable-identity-first'], apply: true},
		agree('identity'),
		{id: 'reencrypt', title: 'every object rewritten in plaintext (once)', first: ['disable', '--only', 'reencrypt']},
		{id: 'purge', title: 'old revisions compacted, every etcd member defragmented (once)', first: ['disable', '--only', 'purge-history']},
		{id: 'remove', title: 'the keys removed once a raw etcd scan finds no encrypted value', first: ['disable', '--only', 'disable-remove-keys'], apply: true},
		agree('remove'),
	],
	status: [{id: 'status', title: 'etcd-harden status --json on every control plane'}],
};

/** Operations that change the nodes' config: they run on every control plane of the inventory or not at all. */
export const changesConfig = (operation: FleetOperation): boolean => operation !== 'status';

/** The rows' columns: setup, the operation's steps, cleanup. */
export function fleetSteps(operation: FleetOperation): FleetStep[] {
	return [{id: 'setup', title: 'the tool and the bundle key on every control plane'}, ...STEPS[operation], {id: 'cleanup', title: 'the bundle key and the copied bundles removed'}];
}

export type FleetSettings = {
	/** The executable copied to every node ('' : the installed one is used). */
	executableSrc: string;
	/** How the nodes run the tool: the copied path, or the installed command. */
	bin: string[];
	/** The bundle key file on the workstation ('' : none, for status). */
	bundleKeySrc: string;
	/** Where the play keeps its files on each node (removed by cleanup.yml). */
	remoteDir: string;
	/** Where the tool writes its bundles on the first node. */
	bundleDir: string;
	/** The encryption config on the first node (its sha256 names the bundle). */
	configPath: string;
	/** How long a gate waits for every control plane to agree. */
	gateSeconds: number;
	/** More flags for every node's etcd-harden (e.g. --timeout 60). */
	extraArgs: string[];
};

export const playbookName = (operation: FleetOperation): string => `${operation}.yml`;

function stepTasks(step: FleetStep): Record<string, unknown> {
	if (step.gate) return {name: `Step ${step.id}`, 'ansible.builtin.import_tasks': 'tasks/gate.yml', vars: {etcd_harden_step: step.id}};
	return {
		name: `Step ${step.id}`,
		'ansible.builtin.import_tasks': 'tasks/step.yml',
		vars: {etcd_harden_step: step.id, etcd_harden_first_args: step.first ?? [], etcd_harden_apply: step.apply === true},
	};
}

/** The operation's playbook: the template's play with the steps appended to its tasks. */
export function renderPlaybook(operation: FleetOperation): string {
	if (operation === 'status') return ansibleTemplates['status.yml'];
	const template = ansibleTemplates['playbook.yml'];
	const doc = parseDocument(template);
	const tasks = doc.getIn([0, 'tasks'], true);
	if (!isSeq(tasks)) throw new Error('internal: templates/ansible/playbook.yml has no task list');
	for (const step of STEPS[operation]) tasks.items.push(doc.createNode(stepTasks(step)));
	doc.setIn([0, 'name'], `Etcd-harden fleet ${operation}`);
	// The template's "# Steps" marker comment ends the tasks: keep the rendered text lint-clean.
	return doc.toString({lineWidth: 0}).replace(/\n\s*# Steps\n/, '\n');
}

export function renderVars(settings: FleetSettings): string {
	const doc = new Document({
		etcd_harden_executable_src: settings.executableSrc,
		etcd_harden_bin: settings.bin,
		etcd_harden_bundle_key_src: settings.bundleKeySrc,
		etcd_harden_remote_dir: settings.remoteDir,
		etcd_harden_bundle_dir: settings.bundleDir,
		etcd_harden_config_path: settings.configPath,
		etcd_harden_gate_seconds: settings.gateSeconds,
		etcd_harden_fetch_dir: '{{ playbook_dir }}/bundles',
		etcd_harden_extra_args: settings.extraArgs,
	});
	doc.commentBefore =
		' etcd-harden fleet settings (rendered by etcd-harden fleet). etcd_harden_executable_src: the executable\n' +
		' copied to every node, empty to use etcd_harden_bin as installed. etcd_harden_bundle_key_src: the age\n' +
		' identity or passphrase file that encrypts the rotation bundles (copied with no_log, removed by cleanup.yml).';
	return `---\n${doc.toString({lineWidth: 0})}`;
}

export type RenderedFile = {path: string; content: string; mode: number};

/** Every file of the play directory: playbooks (rotate, enable, disable, status, cleanup), task files, plugins, ansible.cfg, vars. */
export function renderFleet(settings: FleetSettings, inventory?: string): RenderedFile[] {
	const files: RenderedFile[] = [];
	for (const [name, content] of Object.entries(ansibleTemplates)) {
		if (name === 'playbook.yml' || name === 'status.yml') continue;
		files.push({path: name, content, mode: 0o644});
	}
	for (const operation of fleetOperations) files.push({path: playbookName(operation), content: renderPlaybook(operation), mode: 0o644});
	files.push({path: 'etcd-harden-vars.yml', content: renderVars(settings), mode: 0o600});
	if (inventory !== undefined) files.push({path: 'inventory', content: inventory, mode: 0o600});
	return files.sort((a, b) => a.path.localeCompare(b.path));
}

/** An inventory of the cluster's control-plane Nodes (--nodes): name -> address. */
export function nodesInventory(nodes: ReadonlyArray<{name: string; address?: string}>): string {
	const hosts: Record<string, Record<string, string>> = {};
	for (const node of nodes) hosts[node.name] = {...(node.address ? {ansible_host: node.address} : {}), etcd_harden_node_name: node.name};
	return `# Control-plane Nodes of the cluster (etcd-harden fleet --nodes); ssh as your Ansible configuration says.\n${stringify({all: {hosts}})}`;
}

/** Defaults of etcd-harden fleet (their one home). */
export const FLEET_DEFAULTS = {
	/** How long a gate waits for every control plane to report the same config hash. */
	gateSeconds: 300,
} as const;

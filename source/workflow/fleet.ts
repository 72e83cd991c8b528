/**
 * `etcd-harden fleet rotate|enable|disable|status|export`: every control plane driven through
 * Ansible. The play is rendered from templates/ansible/ (source/fleet/render.ts) into a
 * private directory, checked against the inventory (`ansible-playbook --list-hosts`), run with
 * the etcd_harden callback (one JSON line per task result -> one cell per node per step), and
 * followed by cleanup.yml whatever happened. `--dry-run` runs it in check mode: each step's
 * tool runs with --dry-run and shows its plan; nothing is copied or changed.
 */
import * as path from 'node:path';
import {InputError, STATE_DIR} from '../engine/contract.js';
import type {Host} from '../host/types.js';
import {applyEvent, initialView, parseEventLine, type FleetView} from '../fleet/events.js';
import {changesConfig, FLEET_DEFAULTS, fleetSteps, nodesInventory, playbookName, renderFleet, renderPlaybook, type FleetOperation, type FleetSettings, type RenderedFile} from '../fleet/render.js';
import {KubeApi} from '../kube/api.js';
import {ADMIN_KUBECONFIG} from '../kube/defaults.js';
import {defaultConfigPath} from '../kube/encryption-config.js';
import {loadKubeconfig} from '../kube/kubeconfig.js';
import {bundleDir} from '../stages/rotate-common.js';

export type FleetRequest = {
	operation: FleetOperation | 'export';
	inventory?: string;
	/** Build the inventory from the cluster's control-plane Nodes. */
	nodes: boolean;
	limit?: string;
	bundleKey?: string;
	/** A file to copy to every node, or 'installed'. */
	executable?: string;
	/** export: the directory to write. */
	output?: string;
	dryRun: boolean;
	/** Passed on to every node's etcd-harden as --timeout. */
	timeout?: number;
	kubeconfig?: string;
};

/** What the workflow needs of Ansible on the workstation (source/host/ansible.ts; the CLI wires it). */
export type AnsibleRunner = {
	writePlayDir(dir: string | undefined, files: readonly RenderedFile[]): Promise<string>;
	removePlayDir(dir: string): Promise<void>;
	run(argv: readonly string[], options: {cwd: string; env?: Record<string, string>; onLine?: (line: string) => void; signal?: AbortSignal}): Promise<{exitCode: number; stdout: string; stderr: string; notFound?: boolean}>;
};

export type FleetContext = {
	/** The operator's files (inventory, bundle key, executable, export directory): not under --root. */
	files: Host;
	ansible: AnsibleRunner;
	/** The running executable when it is the single executable (copied by default). */
	singleExecutable?: string;
	signal?: AbortSignal;
};

export type FleetResult = {view: FleetView; playbook: string; exitCode: number; exportedTo?: string; files?: string[]};

const REMOTE_DIR = `${STATE_DIR}/fleet`;

async function checkFile(files: Host, flag: string, value: string): Promise<string> {
	const file = path.resolve(value);
	const stat = await files.stat(file);
	if (stat === undefined) throw new InputError(`${flag} ${value}: no such file.`);
	if (stat.isDirectory) throw new InputError(`${flag} ${value}: is a directory. Pass the file itself.`);
	return file;
}

async function settingsFor(request: FleetRequest, context: FleetContext, exporting: boolean): Promise<FleetSettings> {
	let executableSrc = '';
	let bin = ['etcd-harden'];
	const executable = request.executable ?? (exporting ? 'installed' : context.singleExecutable);
	if (executable === undefined) {
		throw new InputError(
			'--executable: this etcd-harden runs from its JavaScript files, which cannot be copied as one file: pass --executable FILE (the single executable, npm run build:exe) or --executable installed (etcd-harden on every node\'s PATH).',
		);
	}
	if (executable !== 'installed') {
		executableSrc = await checkFile(context.files, '--executable', executable);
		bin = [`${REMOTE_DIR}/etcd-harden`];
	}
	const needsKey = request.operation !== 'status' && request.operation !== 'export';
	if (needsKey && request.bundleKey === undefined) {
		throw new InputError(`fleet ${request.operation} needs --bundle-key FILE: an age identity file or a passphrase file; the new config travels to the other control planes encrypted with it.`);
	}
	const bundleKeySrc = request.bundleKey === undefined ? '' : await checkFile(context.files, '--bundle-key', request.bundleKey);
	return {
		executableSrc,
		bin,
		bundleKeySrc,
		remoteDir: REMOTE_DIR,
		bundleDir,
		configPath: defaultConfigPath,
		gateSeconds: FLEET_DEFAULTS.gateSeconds,
		extraArgs: request.timeout === undefined ? [] : ['--timeout', String(request.timeout)],
	};
}

/** --nodes: an inventory of the cluster's control-plane Nodes, addressed by their InternalIP. */
async function inventoryFromNodes(files: Host, kubeconfig: string | undefined): Promise<string> {
	const file = path.resolve(kubeconfig ?? ADMIN_KUBECONFIG);
	let items: Array<{metadata: {name: string}; status?: {addresses?: Array<{type: string; address: string}>}}> = [];
	try {
		const api = new KubeApi(files, await loadKubeconfig(files, file), {retries: 1, timeoutMs: 10_000});
		const seen = new Map<string, (typeof items)[number]>();
		for (const label of ['node-role.kubernetes.io/control-plane', 'node-role.kubernetes.io/master']) {
			const list = await api.get<{items?: typeof items}>('/api/v1/nodes', {query: {labelSelector: label}});
			for (const item of list.items ?? []) seen.set(item.metadata.name, item);
		}
		items = [...seen.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
	} catch (error) {
		throw new InputError(`--nodes: cannot list the control-plane Nodes with ${file} (${(error as Error).message.split('\n')[0]}). Pass --kubeconfig FILE, or --inventory FILE instead.`);
	}
	if (items.length === 0) throw new InputError(`--nodes: the cluster (${file}) has no Node labelled node-role.kubernetes.io/control-plane. Pass --inventory FILE instead.`);
	return nodesInventory(items.map(item => ({name: item.metadata.name, address: item.status?.addresses?.find(a => a.type === 'InternalIP')?.address})));
}

/** The hosts the play would run on, from ansible-playbook --list-hosts (which also parses the inventory and --limit). */
async function listHosts(context: FleetContext, dir: string, inventory: string, limit: string | undefined, playbook: string): Promise<string[]> {
	const argv = ['ansible-playbook', '-i', inventory, ...(limit ? ['--limit', limit] : []), '--list-hosts', playbook];
	const result = await context.ansible.run(argv, {cwd: dir, env: {ANSIBLE_INVENTORY_UNPARSED_FAILED: 'True', ANSIBLE_STDOUT_CALLBACK: 'default'}, signal: context.signal});
	if (result.notFound) throw new InputError('ansible-playbook was not found: install Ansible on this workstation (the Debian package "ansible"), or run the exported play yourself (etcd-harden fleet export).');
	const problem = inventoryProblem(`${result.stderr}\n${result.stdout}`, limit);
	if (result.exitCode !== 0 || problem) {
		throw new InputError(problem ?? `--inventory: ansible-playbook --list-hosts exited ${result.exitCode}: ${lastLine(result.stderr) ?? 'no message'}. Fix the inventory file.`);
	}
	const lines = result.stdout.split('\n');
	const at = lines.findIndex(line => /^\s*hosts \(\d+\):/.test(line));
	const hosts = (at === -1 ? [] : lines.slice(at + 1).map(line => line.trim()).filter(line => line !== '')).sort();
	if (hosts.length === 0) throw new InputError(`--inventory${limit ? '/--limit' : ''}: no host to run on. List the control planes in the inventory${limit ? ', or widen --limit' : ''}.`);
	return hosts;
}

/** Run a playbook with the etcd_harden callback, feeding the view. */
async function play(context: FleetContext, dir: string, argv: string[], view: {current: FleetView}, onView: (view: FleetView) => void, signal: AbortSignal | undefined): Promise<{exitCode: number; stderr: string}> {
	const result = await context.ansible.run(argv, {
		cwd: dir,
		env: {ANSIBLE_STDOUT_CALLBACK: 'etcd_harden', ANSIBLE_INVENTORY_UNPARSED_FAILED: 'True'},
		...(signal ? {signal} : {}),
		onLine: line => {
			const event = parseEventLine(line);
			if (!event) return;
			view.current = applyEvent(view.current, event);
			onView(view.current);
		},
	});
	return {exitCode: result.exitCode, stderr: result.stderr};
}

export async function runFleet(request: FleetRequest, context: FleetContext, onView: (view: FleetView) => void = () => undefined): Promise<FleetResult> {
	if (request.inventory !== undefined && request.nodes) throw new InputError('--inventory and --nodes cannot be combined: use one.');
	if (request.inventory === undefined && !request.nodes) throw new InputError('fleet needs --inventory FILE (an Ansible inventory of the control planes) or --nodes (the cluster\'s control-plane Nodes).');
	const exporting = request.operation === 'export';
	const settings = await settingsFor(request, context, exporting);
	const inventoryPath = request.inventory === undefined ? undefined : await checkFile(context.files, '--inventory', request.inventory);
	const inventoryText = request.nodes ? await inventoryFromNodes(context.files, request.kubeconfig) : undefined;
	const files = renderFleet(settings, inventoryText ?? (inventoryPath === undefined ? undefined : await context.files.readText(inventoryPath)));

	if (exporting) {
		const dir = path.resolve(request.output ?? 'etcd-harden-fleet');
		const existing = await context.files.stat(dir);
		if (existing && !existing.isDirectory) throw new InputError(`--output ${request.output}: is a file. Name a new directory.`);
		if (existing) {
			const clash = [];
			for (const file of files) if (await context.files.stat(path.join(dir, file.path))) clash.push(file.path);
			if (clash.length > 0) throw new InputError(`--output ${request.output ?? dir}: already holds ${clash.slice(0, 3).join(', ')}${clash.length > 3 ? ', …' : ''}. Name a new directory; nothing was written.`);
		}
		await context.ansible.writePlayDir(dir, files);
		return {view: initialView('export', false, [], []), playbook: renderPlaybook('rotate'), exitCode: 0, exportedTo: dir, files: files.map(file => file.path)};
	}

	const operation = request.operation as FleetOperation;
	const playbook = playbookName(operation);
	const dir = await context.ansible.writePlayDir(undefined, files);
	try {
		const inventory = inventoryText === undefined ? inventoryPath! : path.join(dir, 'inventory');
		const hosts = await listHosts(context, dir, inventory, request.limit, playbook);
		if (request.limit && changesConfig(operation)) {
			const all = await listHosts(context, dir, inventory, undefined, playbook);
			const left = all.filter(host => !hosts.includes(host));
			if (left.length > 0) throw new InputError(limitRefusal(operation, request.limit, left));
		}
		const steps = fleetSteps(operation);
		const view = {current: initialView(operation, request.dryRun, steps, hosts)};
		onView(view.current);
		const limit = request.limit ? ['--limit', request.limit] : [];
		const main = await play(context, dir, ['ansible-playbook', '-i', inventory, ...limit, ...(request.dryRun ? ['--check'] : []), playbook], view, onView, context.signal);
		{
			// Whatever happened (a dry run too: it copied the tool and the key to run each node's --dry-run).
			const cleanup = await play(context, dir, ['ansible-playbook', '-i', inventory, ...limit, 'cleanup.yml'], {current: view.current}, next => {
				view.current = {...next, finished: false};
				onView(view.current);
				// Not cancelled with the run: after Ctrl-C the key still has to go.
			}, undefined);
			if (cleanup.exitCode !== 0 && main.exitCode === 0) view.current = {...view.current, failure: {step: 'cleanup', node: '-', reason: lastLine(cleanup.stderr) ?? `cleanup.yml exited ${cleanup.exitCode}`}};
		}
		let final = {...view.current, finished: true};
		if (main.exitCode !== 0 && !final.failure) final = {...final, failure: {step: final.current ?? '-', node: '-', reason: lastLine(main.stderr) ?? `ansible-playbook exited ${main.exitCode}`}};
		onView(final);
		const statusFailed = operation === 'status' && Object.values(final.outputs).some(out => Array.isArray(out['status']) && (out['status'] as Array<{status?: string}>).some(row => row.status === 'FAIL'));
		return {view: final, playbook: renderPlaybook(operation), exitCode: final.failure ? 3 : statusFailed ? 1 : 0};
	} finally {
		await context.ansible.removePlayDir(dir);
	}
}

/**
 * --limit on an operation that changes the config: every control plane must read a key before
 * any writes with it (and keep reading it until none is stored with it), so a run on a subset
 * would promote where the others cannot read. Refused before anything runs; --limit stays for
 * fleet status (and a rerun resumes on every node by itself).
 */
export function limitRefusal(operation: FleetOperation, limit: string, left: readonly string[]): string {
	const names = `${left.slice(0, 3).join(', ')}${left.length > 3 ? ', …' : ''}`;
	return `--limit ${limit}: fleet ${operation} must run on every control plane of the inventory, and this leaves out ${names} (each step is gated on every node reading the new config; a subset would write what ${left.length === 1 ? 'it' : 'they'} cannot read). Drop --limit (a rerun resumes where each node is), or use --limit with fleet status. Nothing was run.`;
}

/**
 * Ansible's complaint about the inventory or --limit, as one line: its messages are wrapped
 * to the terminal and split into [WARNING]/ERROR! parts; the parse failures say the most.
 */
export function inventoryProblem(output: string, limit: string | undefined): string | undefined {
	const text = output.replace(/\s*\n\s*/g, ' ');
	const parts = text.split(/\[WARNING\]:|ERROR!/).map(part => part.trim()).filter(Boolean);
	const unmatched = parts.find(part => /^Could not match supplied host pattern/.test(part));
	if (unmatched && limit !== undefined) return `--limit ${limit}: matches no host of the inventory (${unmatched.replace(/^Could not match supplied host pattern, ignoring: /, 'no match for ')}). Name inventory hosts or groups.`;
	const parse = parts.filter(part => /^\* Failed to parse/.test(part)).map(part => part.replace(/^\* Failed to parse \S+ with (\w+) plugin: /, '$1: ').slice(0, 220));
	if (parse.length > 0) return `--inventory: Ansible cannot parse it (${parse.join('; ')}). Fix the inventory file.`;
	const error = parts.find(part => /no hosts to target|No inventory was parsed|Unable to parse/.test(part));
	if (error) return `--inventory${limit ? '/--limit' : ''}: ${error.replace(/\.$/, '')}. Fix the inventory file${limit ? ' or --limit' : ''}.`;
	return undefined;
}

function lastLine(text: string): string | undefined {
	return text.split('\n').map(line => line.trim()).filter(Boolean).at(-1);
}

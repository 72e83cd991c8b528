// etcd-harden fleet's pure parts: the play rendered from templates/ansible (step order, the
// gates, fail-fast, no_log on everything that touches the bundle or its key), the callback's
// JSON lines folded into one cell per node per step with where the play stopped, and
// Ansible's inventory complaints as one line. The rendered play is checked by the real
// ansible-lint, offline, in a network namespace of its own (no way to reach a network).
import {spawnSync} from 'node:child_process';
import {mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import os from 'node:os';
import {dirname, join, relative} from 'node:path';
import {fileURLToPath} from 'node:url';
import {describe, expect, it} from 'vitest';
import {parse} from 'yaml';
import {applyEvent, failureReason, initialView, parseEventLine, type PlayEvent} from '../../source/fleet/events.js';
import {fleetSteps, nodesInventory, renderFleet, renderPlaybook, type FleetSettings} from '../../source/fleet/render.js';
import {ansibleTemplates} from '../../source/fleet/templates.generated.js';
import {inventoryProblem, runFleet, type AnsibleRunner} from '../../source/workflow/fleet.js';
import type {Host} from '../../source/host/types.js';
import {MemoryHost} from './helpers/memory-host.js';
import {fleetTableLines} from '../../source/ui/fleet-format.js';
import {parseCli} from '../../source/cli/args.js';
import {disableStages, rotateStages} from '../../source/workflow/rotate.js';

const templatesDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'templates', 'ansible');
const settings: FleetSettings = {
	executableSrc: '/usr/local/bin/etcd-harden',
	bin: ['/var/lib/etcd-harden/fleet/etcd-harden'],
	bundleKeySrc: '/home/op/bundle.key',
	remoteDir: '/var/lib/etcd-harden/fleet',
	bundleDir: '/var/lib/etcd-harden/bundles',
	configPath: '/etc/kubernetes/enc/encryption-config.yaml',
	gateSeconds: 300,
	extraArgs: ['--timeout', '60'],
};

type Task = Record<string, unknown> & {name?: string; vars?: Record<string, unknown>};

function walk(dir: string): string[] {
	return readdirSync(dir).flatMap(name => {
		const full = join(dir, name);
		if (statSync(full).isDirectory()) return name === '__pycache__' ? [] : walk(full);
		return /\.(yml|py|cfg)$/.test(name) ? [relative(templatesDir, full)] : [];
	});
}

describe('fleet: the rendered play', () => {
	it('the generated module matches templates/ansible (run node templates/ansible/generate.mjs)', () => {
		const files = walk(templatesDir).sort();
		expect(Object.keys(ansibleTemplates).sort()).toEqual(files);
		for (const name of files) expect(ansibleTemplates[name as keyof typeof ansibleTemplates]).toBe(readFileSync(join(templatesDir, name), 'utf8'));
	});

	it('rotate: prepare, agreement, promote, agreement, re-encrypt once, purge, prune, agreement; any error stops every node', () => {
		const [play] = parse(renderPlaybook('rotate')) as Array<{any_errors_fatal: boolean; max_fail_percentage: number; tasks: Task[]}>;
		expect(play!.any_errors_fatal).toBe(true);
		expect(play!.max_fail_percentage).toBe(0);
		const steps = play!.tasks.filter(task => 'ansible.builtin.import_tasks' in task).map(task => [task.vars?.['etcd_harden_step'], task['ansible.builtin.import_tasks']]);
		// Before any step: the first control plane (the one that writes the new config) must be a host of the play.
		expect(JSON.stringify(play!.tasks[1])).toContain('etcd_harden_first in ansible_play_hosts_all');
		expect(steps).toEqual([
			['setup', 'tasks/setup.yml'],
			['prepare', 'tasks/step.yml'],
			['agree-prepare', 'tasks/gate.yml'],
			['promote', 'tasks/step.yml'],
			['agree-promote', 'tasks/gate.yml'],
			['reencrypt', 'tasks/step.yml'],
			['purge', 'tasks/step.yml'],
			['prune', 'tasks/step.yml'],
			['agree-prune', 'tasks/gate.yml'],
		]);
		const byStep = Object.fromEntries(play!.tasks.filter(task => 'ansible.builtin.import_tasks' in task).map(task => [task.vars?.['etcd_harden_step'], task.vars]));
		expect(byStep['prepare']).toMatchObject({etcd_harden_first_args: ['rotate', '--only', 'rotate-prepare'], etcd_harden_apply: true});
		// Re-encryption and purge run once (on the first control plane), no bundle follows them.
		expect(byStep['reencrypt']).toMatchObject({etcd_harden_first_args: ['rotate', '--only', 'reencrypt'], etcd_harden_apply: false});
		expect(byStep['purge']).toMatchObject({etcd_harden_first_args: ['rotate', '--only', 'purge-history'], etcd_harden_apply: false});
		expect(fleetSteps('rotate').map(step => step.id)).toEqual(['setup', ...steps.slice(1).map(([id]) => id), 'cleanup']);
	});

	it('disable: identity first, agreement, re-encrypt, purge, keys removed, agreement', () => {
		const [play] = parse(renderPlaybook('disable')) as Array<{tasks: Task[]}>;
		expect(play!.tasks.filter(task => 'ansible.builtin.import_tasks' in task).map(task => task.vars?.['etcd_harden_step'])).toEqual(['setup', 'identity', 'agree-identity', 'reencrypt', 'purge', 'remove', 'agree-remove']);
	});

	it('enable: the key read-only after identity on every node, agreement, then primary, agreement, re-encrypt once, purge; no prune', () => {
		const [play] = parse(renderPlaybook('enable')) as Array<{any_errors_fatal: boolean; name: string; tasks: Task[]}>;
		expect(play!.any_errors_fatal).toBe(true);
		expect(play!.name).toBe('Etcd-harden fleet enable');
		const steps = play!.tasks.filter(task => 'ansible.builtin.import_tasks' in task);
		expect(steps.map(task => task.vars?.['etcd_harden_step'])).toEqual(['setup', 'prepare', 'agree-prepare', 'promote', 'agree-promote', 'reencrypt', 'purge']);
		const byStep = Object.fromEntries(steps.map(task => [task.vars?.['etcd_harden_step'], task.vars]));
		// Enabling is the rotation whose primary is identity: the same stages, prepare and promote each followed by its bundle on every other node.
		expect(byStep['prepare']).toMatchObject({etcd_harden_first_args: ['rotate', '--only', 'rotate-prepare'], etcd_harden_apply: true});
		expect(byStep['promote']).toMatchObject({etcd_harden_first_args: ['rotate', '--only', 'rotate-promote'], etcd_harden_apply: true});
		expect(byStep['reencrypt']).toMatchObject({etcd_harden_apply: false});
		expect(renderFleet(settings).map(file => file.path)).toContain('enable.yml');
	});

	it('under --check every control plane plans each config step with its own tool; only the first plans the once-only steps', () => {
		const tasks = parse(ansibleTemplates['tasks/step.yml']) as Array<Task & {when?: string | string[]; check_mode?: boolean}>;
		const plan = tasks.find(task => String(task.name).startsWith('Plan the step on the other control planes'))!;
		expect(plan.check_mode).toBe(false);
		expect(plan.when).toEqual(['ansible_check_mode', 'etcd_harden_apply', 'inventory_hostname != etcd_harden_first']);
		expect(JSON.stringify(plan['ansible.builtin.command'])).toContain("etcd_harden_first_args + etcd_harden_common_args + ['--dry-run']");
		// Nothing travels under --check: fetch, copy and apply are skipped.
		for (const name of ['Fetch the age-encrypted bundle', 'Copy the bundle', 'Apply the bundle']) {
			expect(tasks.find(task => String(task.name).startsWith(name))!.when, name).toContain('not ansible_check_mode');
		}
	});

	it('each step names stages its command has (etcd-harden rotate/disable --only STAGE)', () => {
		for (const [operation, stages] of [['rotate', rotateStages], ['enable', rotateStages], ['disable', disableStages]] as const) {
			const ids = stages.map(stage => stage.id);
			for (const step of fleetSteps(operation)) {
				if (!step.first) continue;
				expect(step.first[0]).toBe(operation === 'enable' ? 'rotate' : operation);
				expect(ids, `${operation} step ${step.id}`).toContain(step.first[2]);
			}
		}
	});

	it('every task that touches the bundle or its key has no_log; the bundle travels only as the .age file', () => {
		const tasks = [...(parse(ansibleTemplates['tasks/step.yml']) as Task[]), ...(parse(ansibleTemplates['tasks/setup.yml']) as Task[]), ...(parse(ansibleTemplates['cleanup.yml'])[0].tasks as Task[])];
		const touching = tasks.filter(task => /bundle/i.test(String(task.name)) && ('ansible.builtin.copy' in task || 'ansible.builtin.fetch' in task || 'ansible.builtin.file' in task));
		expect(touching.length).toBeGreaterThanOrEqual(3);
		for (const task of touching) expect(task['no_log'], String(task.name)).toBe(true);
		const fetch = tasks.find(task => 'ansible.builtin.fetch' in task)!['ansible.builtin.fetch'] as {src: string; dest: string};
		expect(fetch.src).toMatch(/\.yaml\.age$/);
		expect(fetch.dest).toMatch(/\.yaml\.age$/);
		// The first node's step and the gate are the only commands; the other nodes apply the bundle with rotate --bundle.
		const apply = tasks.find(task => String(task.name).startsWith('Apply the bundle'))!;
		expect(JSON.stringify(apply)).toContain("'rotate', '--bundle'");
	});

	it('the vars file carries the settings; --nodes makes a YAML inventory of the Nodes', () => {
		const files = renderFleet(settings, nodesInventory([{name: 'cp-1', address: '10.0.0.1'}, {name: 'cp-2'}]));
		const vars = parse(files.find(file => file.path === 'etcd-harden-vars.yml')!.content) as Record<string, unknown>;
		expect(vars).toMatchObject({etcd_harden_bin: settings.bin, etcd_harden_bundle_key_src: settings.bundleKeySrc, etcd_harden_extra_args: ['--timeout', '60'], etcd_harden_gate_seconds: 300});
		expect(files.find(file => file.path === 'etcd-harden-vars.yml')!.mode).toBe(0o600);
		expect(parse(files.find(file => file.path === 'inventory')!.content)).toEqual({all: {hosts: {'cp-1': {ansible_host: '10.0.0.1', etcd_harden_node_name: 'cp-1'}, 'cp-2': {etcd_harden_node_name: 'cp-2'}}}});
		expect(files.map(file => file.path)).toEqual(expect.arrayContaining(['rotate.yml', 'disable.yml', 'status.yml', 'cleanup.yml', 'tasks/step.yml', 'tasks/gate.yml', 'callback_plugins/etcd_harden.py', 'filter_plugins/etcd_harden.py', 'ansible.cfg']));
	});

	it('ansible-lint (production profile) passes on the rendered play, offline, without a network', () => {
		const dir = mkdtempSync(join(os.tmpdir(), 'fleet-lint-'));
		try {
			for (const file of renderFleet(settings, 'all:\n  hosts:\n    cp-1:\n')) {
				mkdirSync(dirname(join(dir, file.path)), {recursive: true});
				writeFileSync(join(dir, file.path), file.content, {mode: file.mode});
			}
			// A network namespace of its own: only a loopback that is down, so a lookup would fail the run.
			const result = spawnSync('unshare', ['--net', '--', 'ansible-lint', '--offline', '--nocolor', '-p', 'rotate.yml', 'enable.yml', 'disable.yml', 'status.yml', 'cleanup.yml'], {
				cwd: dir,
				encoding: 'utf8',
				env: {...process.env, HOME: dir, ANSIBLE_LOCAL_TEMP: join(dir, '.tmp')},
			});
			if (result.error) throw new Error(`ansible-lint is not installed (${result.error.message}): run sudo bash scripts/provision.sh (Debian package ansible-lint)`);
			expect(result.status, `${result.stdout}\n${result.stderr}`).toBe(0);
			expect(`${result.stdout}${result.stderr}`).toMatch(/Passed with production profile: 0 failure/);
		} finally {
			rmSync(dir, {recursive: true, force: true});
		}
	}, 120_000);
});

describe('fleet: the play progress as cells', () => {
	const steps = fleetSteps('rotate');
	const run = (events: PlayEvent[]) => events.reduce(applyEvent, initialView('rotate', false, steps, ['cp-1', 'cp-2', 'cp-3']));

	it('reads only the callback JSON lines', () => {
		expect(parseEventLine('{"event": "task", "task": "x", "step": "prepare"}')).toEqual({event: 'task', task: 'x', step: 'prepare'});
		expect(parseEventLine('[WARNING]: something')).toBeUndefined();
		expect(parseEventLine('{"event": "other"}')).toBeUndefined();
		expect(parseEventLine('{broken')).toBeUndefined();
	});

	it('a step shows its most telling task per node; a failure names the step, the node and the tool\'s reason', () => {
		const toolResult = JSON.stringify({stages: [{id: 'rotate-bundle', error: 'kube-apiserver did not become ready within 15 s: restored the previous config'}]});
		const view = run([
			{event: 'task', task: 'Run the step on the first control plane: prepare', step: 'prepare'},
			{event: 'result', host: 'cp-1', task: 't', step: 'prepare', status: 'changed', rc: 0},
			{event: 'result', host: 'cp-2', task: 't', step: 'prepare', status: 'skipped'},
			{event: 'result', host: 'cp-3', task: 't', step: 'prepare', status: 'skipped'},
			{event: 'task', task: 'Apply the bundle on the other control planes: prepare', step: 'prepare'},
			{event: 'result', host: 'cp-1', task: 'a', step: 'prepare', status: 'skipped'},
			{event: 'result', host: 'cp-2', task: 'a', step: 'prepare', status: 'changed', rc: 0},
			{event: 'task', task: 'Wait until every control plane reports the same config hash: agree-prepare', step: 'agree-prepare'},
			{event: 'retry', host: 'cp-1', task: 'w', step: 'agree-prepare', attempts: 2, retries: 60},
		]);
		expect(view.cells['cp-1']!['prepare']!.state).toBe('changed');
		expect(view.cells['cp-2']!['prepare']!.state).toBe('changed');
		expect(view.cells['cp-3']!['prepare']!.state).toBe('running');
		expect(view.cells['cp-1']!['agree-prepare']).toEqual({state: 'waiting', detail: 'attempt 2 of 60'});
		const failed = applyEvent(view, {event: 'result', host: 'cp-3', task: 'a', step: 'prepare', status: 'failed', rc: 3, msg: 'non-zero return code', stdout: toolResult, stderr: ['etcd-harden: stopped']});
		expect(failed.failure).toEqual({step: 'prepare', node: 'cp-3', reason: 'rotate-bundle: kube-apiserver did not become ready within 15 s: restored the previous config'});
		expect(failed.cells['cp-3']!['prepare']!.state).toBe('failed');
		const done = applyEvent(failed, {event: 'stats', hosts: {}});
		expect(done.finished).toBe(true);
		// What never ran stays pending; the frontends say where it stopped and how to resume.
		expect(done.cells['cp-1']!['agree-prepare']!.state).toBe('pending');
		const lines = fleetTableLines(done).map(line => line.text);
		expect(lines[1]).toMatch(/^step\s+cp-1\s+cp-2\s+cp-3$/);
		expect(lines.find(line => line.startsWith('prepare'))).toMatch(/^prepare\s+changed\s+changed\s+FAILED$/);
		expect(lines).toContain('Stopped at step prepare on cp-3: rotate-bundle: kube-apiserver did not become ready within 15 s: restored the previous config');
	});

	it('failure reasons: the tool\'s stderr line, Ansible\'s message, a hidden (no_log) result', () => {
		const base = {event: 'result' as const, host: 'cp-2', task: 'Copy the bundle', step: 'prepare', status: 'failed' as const};
		expect(failureReason({...base, rc: 2, msg: 'non-zero return code', stderr: ['', 'etcd-harden: --bundle x: cannot be decrypted']})).toBe('--bundle x: cannot be decrypted');
		expect(failureReason({...base, msg: 'control planes disagree after 300 s: cp-3: has not reported'})).toBe('control planes disagree after 300 s: cp-3: has not reported');
		expect(failureReason({...base, censored: true})).toBe('Copy the bundle failed (its output is hidden: no_log)');
	});

	it('Ansible\'s wrapped inventory complaints become one line naming the flag', () => {
		const wrapped = `[WARNING]:  * Failed to parse /tmp/inv with yaml plugin: We were unable to\nread either as JSON nor YAML\n[WARNING]:  * Failed to parse /tmp/inv with ini plugin: Invalid host pattern\n'garbage:' supplied\n[WARNING]: Unable to parse /tmp/inv as an inventory source\nERROR! No inventory was parsed, please check your configuration and options.`;
		expect(inventoryProblem(wrapped, undefined)).toBe("--inventory: Ansible cannot parse it (yaml: We were unable to read either as JSON nor YAML; ini: Invalid host pattern 'garbage:' supplied). Fix the inventory file.");
		expect(inventoryProblem('[WARNING]: Could not match supplied host pattern, ignoring: cp-9\nERROR! Specified inventory, host pattern and/or --limit leaves us with no hosts to target.', 'cp-9')).toBe(
			'--limit cp-9: matches no host of the inventory (no match for cp-9). Name inventory hosts or groups.',
		);
		expect(inventoryProblem('playbook: rotate.yml\n  hosts (1):\n    cp-1', undefined)).toBeUndefined();
	});
});

describe('fleet: flags', () => {
	it('parses the operation and its flags; bad ones are one-line errors naming the flag', () => {
		expect(parseCli(['fleet', 'rotate', '--inventory', 'hosts', '--limit', 'cp-1,cp-2', '--bundle-key', 'k', '--executable', 'installed', '-o', 'x']).fleet).toEqual({
			operation: 'rotate',
			nodes: false,
			inventory: 'hosts',
			limit: 'cp-1,cp-2',
			executable: 'installed',
		});
		expect(parseCli(['fleet', 'enable', '--inventory', 'hosts', '--bundle-key', 'k']).fleet).toMatchObject({operation: 'enable'});
		expect(() => parseCli(['fleet'])).toThrow(/fleet needs an operation: give one of rotate, enable, disable, status, export/);
		expect(() => parseCli(['fleet', 'rotat'])).toThrow(/unknown fleet operation "rotat": did you mean rotate\?/);
		expect(() => parseCli(['fleet', 'rotate', '--root', '/x'])).toThrow(/--root does not apply to fleet/);
		expect(() => parseCli(['fleet', 'rotate', '--only', 'prepare'])).toThrow(/--only\/--skip do not apply to fleet/);
		expect(() => parseCli(['fleet', 'status', '--kubeconfig', 'k'])).toThrow(/--kubeconfig belongs to fleet --nodes/);
		expect(() => parseCli(['rotate', '--inventory', 'x'])).toThrow(/--inventory belongs to etcd-harden fleet, not rotate/);
		expect(() => parseCli(['fleet', 'rotate', 'extra'])).toThrow(/unexpected argument "extra": fleet takes one operation/);
	});
});

describe('fleet: --limit', () => {
	/** Ansible's --list-hosts as a fake (unit tier): the inventory holds cp-1..cp-3, --limit picks by name. */
	function fakeAnsible(): AnsibleRunner & {calls: string[][]} {
		const calls: string[][] = [];
		return {
			calls,
			writePlayDir: async () => '/tmp/fleet-unit',
			removePlayDir: async () => undefined,
			run: async argv => {
				calls.push([...argv]);
				const at = argv.indexOf('--limit');
				const hosts = at === -1 ? ['cp-1', 'cp-2', 'cp-3'] : ['cp-1', 'cp-2', 'cp-3'].filter(host => argv[at + 1]!.split(',').includes(host));
				if (argv.includes('--list-hosts')) return {exitCode: 0, stdout: `playbook: x.yml\n  play #1 (all): x\n    pattern: ['all']\n    hosts (${hosts.length}):\n${hosts.map(h => `      ${h}`).join('\n')}\n`, stderr: ''};
				return {exitCode: 0, stdout: '', stderr: ''};
			},
		};
	}
	const files = new MemoryHost({'/ops/inventory': 'all:\n  hosts:\n    cp-1:\n    cp-2:\n    cp-3:\n', '/ops/key': 'correct horse battery staple\n', '/ops/etcd-harden': '#!/bin/sh\n'}) as unknown as Host;

	for (const operation of ['rotate', 'enable', 'disable'] as const) {
		it(`fleet ${operation} --limit on a subset is refused before any play runs, naming the nodes left out`, async () => {
			const ansible = fakeAnsible();
			const request = {operation, inventory: '/ops/inventory', nodes: false, limit: 'cp-1,cp-2', bundleKey: '/ops/key', executable: '/ops/etcd-harden', dryRun: false};
			await expect(runFleet(request, {files, ansible}, () => undefined)).rejects.toThrow(
				new RegExp(`^--limit cp-1,cp-2: fleet ${operation} must run on every control plane of the inventory, and this leaves out cp-3 .*Nothing was run\\.$`),
			);
			expect(ansible.calls.every(argv => argv.includes('--list-hosts'))).toBe(true);
		});
	}

	it('a --limit that covers every host is a full run; status --limit runs on the named nodes only', async () => {
		const ansible = fakeAnsible();
		const all = await runFleet({operation: 'enable', inventory: '/ops/inventory', nodes: false, limit: 'cp-1,cp-2,cp-3', bundleKey: '/ops/key', executable: '/ops/etcd-harden', dryRun: true}, {files, ansible}, () => undefined);
		expect(all.view.nodes).toEqual(['cp-1', 'cp-2', 'cp-3']);
		const status = fakeAnsible();
		const one = await runFleet({operation: 'status', inventory: '/ops/inventory', nodes: false, limit: 'cp-2', executable: '/ops/etcd-harden', dryRun: false}, {files, ansible: status}, () => undefined);
		expect(one.view.nodes).toEqual(['cp-2']);
		const plays = status.calls.filter(argv => !argv.includes('--list-hosts'));
		expect(plays.map(argv => argv.at(-1))).toEqual(['status.yml', 'cleanup.yml']);
		for (const argv of plays) expect(argv.slice(argv.indexOf('--limit'), argv.indexOf('--limit') + 2)).toEqual(['--limit', 'cp-2']);
	});
});

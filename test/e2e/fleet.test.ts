// etcd-harden fleet on three control planes: three kube-apiservers (cp-1 the testbed's own,
// cp-2 and cp-3 each with its own kubelet stand-in, config directory and manifests; one etcd),
// each reached by the real ansible-playbook through Debian's community.docker.nsenter
// connection into the node's mount namespace. The play runs from cp-1 (a control plane as the
// workstation). cp-3's kubelet is stopped mid-play: its restart gate fails at promote, the play
// stops there naming it, every apiserver still reads every secret; once the kubelet runs again
// a rerun finishes: one config hash on all three, every secret on key2, key1 gone. A reader
// loop through all three apiservers sees no read error throughout. --limit: status on one node
// only; a limited rotate is refused before anything runs. --dry-run: every node's plan. After
// disable (and cp-1, cp-3 taken back to no encryption config at all), enable turns encryption
// on across all three: the key read-only after identity everywhere first, then primary, with
// writes through every apiserver and no read error.
import {afterAll, describe, expect, it} from 'vitest';
import {startTestbed, type Testbed} from '../testbed/index.js';
import {startSecondApiserver, type SecondApiserver} from '../testbed/second-apiserver.js';
import {cli, CLI, CONFIG, configProviders, ENABLE, secretCounts, show, sleep, type Run} from './rotate-helpers.js';

let tb: Testbed | undefined;
afterAll(async () => {
	await tb?.stop();
});

const WORK = '/tmp/fleet-e2e';
const SECRETS = 60;
const SERVERS = ['https://10.0.0.10:6443', 'https://10.0.0.10:6444', 'https://10.0.0.10:6445'];

/** Lists every secret through each apiserver in turn until stopped; API errors are read errors, a restarting apiserver is counted apart. */
function readerLoop(testbed: Testbed) {
	const state = {reads: 0, errors: [] as string[], unavailable: 0, stopped: false};
	const loop = (async () => {
		for (let i = 0; !state.stopped; i++) {
			const server = SERVERS[i % SERVERS.length]!;
			const result = await testbed.kubectl(['--server', server, 'get', 'secrets', '-A', '-o', 'name', '--request-timeout=20s'], {reject: false, stdin: 'ignore'});
			if (result.exitCode === 0) {
				const count = String(result.stdout).split('\n').filter(Boolean).length;
				if (count >= SECRETS) state.reads++;
				else state.errors.push(`${server}: listed ${count} secrets, expected at least ${SECRETS}`);
			} else if (/connection refused|was refused|EOF|connection reset|Unable to connect|i\/o timeout|TLS handshake|ServiceUnavailable|currently unable|not ready|Client.Timeout/i.test(String(result.stderr))) {
				state.unavailable++;
				await sleep(200);
			} else {
				state.errors.push(`${server}: ${String(result.stderr).trim().split('\n')[0]}`);
			}
		}
	})();
	return {state, stop: async () => ((state.stopped = true), await loop, state)};
}

type FleetJson = {exitCode: number; nodes: string[]; cells: Record<string, Record<string, {state: string; detail?: string}>>; failure: {step: string; node: string; reason: string} | null; outputs: Record<string, Record<string, unknown>>};

function fleetJson(run: Run): FleetJson {
	try {
		return JSON.parse(run.stdout) as FleetJson;
	} catch {
		throw new Error(`fleet did not print JSON:\n${show(run)}`);
	}
}

describe('etcd-harden fleet through Ansible on three control planes', () => {
	const started = Date.now();
	let fleet: (args: string[], json?: boolean) => Promise<Run> = async () => {
		throw new Error('the first test did not get to start the fleet');
	};
	let nodes: SecondApiserver[] = [];
	const config = (node: SecondApiserver) => `${node.dir}/kubernetes/enc/encryption-config.yaml`;
	/** Progress of this long test on stderr (the e2e log), with each fleet run's exit code. */
	const log = (what: string, run?: Run) => process.stderr.write(`[fleet e2e ${((Date.now() - started) / 1000).toFixed(0)} s] ${what}${run ? `: exit ${run.exitCode}` : ''}\n`);

	it('rotate stops at the node that fails its restart gate with every apiserver reading every secret; the rerun ends with key2 only on all three', async () => {
		tb = await startTestbed({secrets: SECRETS, configMaps: 5, namespaces: 2});
		const testbed = tb;
		expect((await cli(testbed, ENABLE)).exitCode).toBe(0);
		const cp2 = await startSecondApiserver(testbed, {nodeName: 'cp-2', port: 6444});
		const cp3 = await startSecondApiserver(testbed, {nodeName: 'cp-3', port: 6445});
		nodes = [cp2, cp3];

		// The workstation's files: an inventory (nsenter into each node), the bundle passphrase, and the executable to copy.
		const connection = (pid: number) => ({ansible_connection: 'community.docker.nsenter', ansible_nsenter_pid: pid, ansible_python_interpreter: '/usr/bin/python3'});
		const inventory = {all: {hosts: {'cp-1': connection(1), 'cp-2': connection(cp2.pid), 'cp-3': connection(cp3.pid)}}};
		await testbed.exec(['mkdir', '-p', `${WORK}/tmp`]);
		await testbed.writeFile(`${WORK}/inventory.json`, JSON.stringify(inventory));
		await testbed.writeFile(`${WORK}/bundle-passphrase`, 'correct horse battery staple\n', {mode: 0o600});
		await testbed.writeFile(`${WORK}/etcd-harden`, `#!/bin/sh\nexec ${process.execPath} ${CLI} "$@"\n`, {mode: 0o755});
		fleet = async (args: string[], json = true): Promise<Run> => {
			const result = await testbed.exec([process.execPath, CLI, 'fleet', ...args, '--inventory', `${WORK}/inventory.json`, '--executable', `${WORK}/etcd-harden`, ...(json ? ['--json'] : [])], {
				reject: false,
				stdin: 'ignore',
				env: {CI: 'true', HOME: `${WORK}/tmp`, ANSIBLE_LOCAL_TEMP: `${WORK}/tmp/local`, ANSIBLE_REMOTE_TEMP: `${WORK}/tmp/remote`},
			});
			return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
		};

		// status: every node's etcd-harden status --json, collected by the play.
		log('three control planes up');
		const status = await fleet(['status']);
		log('status', status);
		expect(status.exitCode, show(status)).toBeLessThanOrEqual(1);
		const statusJson = fleetJson(status);
		expect(statusJson.nodes).toEqual(['cp-1', 'cp-2', 'cp-3']);
		for (const node of statusJson.nodes) expect(Array.isArray(statusJson.outputs[node]?.['status']), show(status)).toBe(true);

		// export --nodes: the play for one's own Ansible, the inventory from the control-plane Nodes (cp-2, cp-3 have Node objects here).
		const exported = await cli(testbed, ['fleet', 'export', '--nodes', '--executable', 'installed', '-o', `${WORK}/export`]);
		expect(exported.exitCode, show(exported)).toBe(0);
		expect(exported.stdout).toContain(`Wrote the fleet play to ${WORK}/export`);
		const exportedInventory = await testbed.readFile(`${WORK}/export/inventory`, 'utf8');
		expect(exportedInventory).toMatch(/cp-2:\n\s+etcd_harden_node_name: cp-2/);
		expect(exportedInventory).toMatch(/cp-3:\n\s+etcd_harden_node_name: cp-3/);
		for (const file of ['rotate.yml', 'disable.yml', 'status.yml', 'cleanup.yml', 'tasks/step.yml', 'etcd-harden-vars.yml']) await testbed.readFile(`${WORK}/export/${file}`, 'utf8');
		const again = await cli(testbed, ['fleet', 'export', '--nodes', '--executable', 'installed', '-o', `${WORK}/export`]);
		expect(again.exitCode, show(again)).toBe(2);
		expect(again.stderr).toMatch(/already holds .*Name a new directory; nothing was written/);

		// --limit: status runs on the named node only; a limited rotate is refused before anything runs.
		const limited = await fleet(['status', '--limit', 'cp-2']);
		log('status --limit cp-2', limited);
		expect(limited.exitCode, show(limited)).toBeLessThanOrEqual(1);
		const limitedJson = fleetJson(limited);
		expect(limitedJson.nodes).toEqual(['cp-2']);
		expect(Object.keys(limitedJson.outputs)).toEqual(['cp-2']);
		const partial = await fleet(['rotate', '--limit', 'cp-1,cp-2', '--bundle-key', `${WORK}/bundle-passphrase`], false);
		expect(partial.exitCode, show(partial)).toBe(2);
		expect(partial.stderr.trim().split('\n')).toHaveLength(1);
		expect(partial.stderr).toMatch(/--limit cp-1,cp-2: fleet rotate must run on every control plane of the inventory, and this leaves out cp-3 .*Nothing was run\./);

		// --dry-run: the play, each step's plan from every node's own tool (--dry-run), nothing changed, nothing left behind.
		const dry = await fleet(['rotate', '--dry-run', '--bundle-key', `${WORK}/bundle-passphrase`], false);
		log('dry run', dry);
		expect(dry.exitCode, show(dry)).toBe(0);
		expect(dry.stdout).toContain('any_errors_fatal: true');
		for (const node of ['cp-1', 'cp-2', 'cp-3']) expect(dry.stdout, show(dry)).toMatch(new RegExp(`^${node} prepare: rotate-prepare: Add secretbox key key2 after key1`, 'm'));
		// Re-encryption runs once: only the first node plans it.
		expect(dry.stdout).toMatch(/^cp-1 reencrypt: /m);
		expect(dry.stdout).not.toMatch(/^cp-[23] reencrypt: /m);
		expect(dry.stdout).toMatch(/^step\s+cp-1\s+cp-2\s+cp-3$/m);
		expect(dry.stdout).toContain('Dry run finished: nothing was changed.');
		for (const file of [CONFIG, config(cp2), config(cp3)]) expect(await configProviders(testbed, file)).toEqual(['secretbox:key1', 'identity']);
		for (const node of [cp2, cp3]) expect((await node.exec(['test', '-e', '/var/lib/etcd-harden/fleet'], {reject: false})).exitCode).not.toBe(0);

		const reader = readerLoop(testbed);
		// cp-3 stops restarting its pods once it has applied prepare (its report in the ConfigMap):
		// its promote restart gate then times out and is undone.
		let firstDone = false;
		const stopCp3 = (async () => {
			while (!firstDone) {
				const cm = await testbed.kubectl(['-n', 'kube-system', 'get', 'configmap', 'etcd-harden-status', '-o', 'jsonpath={.data.cp-3}'], {reject: false, stdin: 'ignore'});
				const entry = String(cm.stdout) ? (JSON.parse(String(cm.stdout)) as {phase: string; state: string}) : undefined;
				if (entry?.phase === 'bundle' && entry.state === 'done') {
					await cp3.pause();
					return true;
				}
				await sleep(300);
			}
			return false;
		})();
		const first = await fleet(['rotate', '--bundle-key', `${WORK}/bundle-passphrase`, '--timeout', '30']);
		firstDone = true;
		log('first rotate', first);
		expect(await stopCp3, show(first)).toBe(true);
		const firstJson = fleetJson(first);
		expect(first.exitCode, show(first)).toBe(3);
		expect(firstJson.failure, show(first)).toMatchObject({step: 'promote', node: 'cp-3'});
		expect(firstJson.failure!.reason).toMatch(/kube-apiserver|restart|ready/i);
		expect(firstJson.cells['cp-3']!['promote']!.state).toBe('failed');
		expect(firstJson.cells['cp-1']!['reencrypt']!.state).toBe('pending');
		// cp-1 and cp-2 promoted (key2 writes), cp-3 back on the prepared config (key2 reads): all read every object.
		expect(await configProviders(testbed)).toEqual(['secretbox:key2', 'secretbox:key1', 'identity']);
		expect(await configProviders(testbed, config(cp2))).toEqual(['secretbox:key2', 'secretbox:key1', 'identity']);
		expect(await configProviders(testbed, config(cp3))).toEqual(['secretbox:key1', 'secretbox:key2', 'identity']);
		await testbed.kubectl(['create', 'secret', 'generic', 'after-stop', '-n', 'seed-0', '--from-literal=k=v']);
		for (const server of SERVERS) {
			const got = await testbed.kubectl(['--server', server, 'get', 'secret', 'after-stop', '-n', 'seed-0', '-o', 'jsonpath={.data.k}']);
			expect(String(got.stdout)).toBe('dg==');
		}
		// The passphrase never shows; the copied key is removed by cleanup.yml even though the play stopped.
		expect(`${first.stdout}${first.stderr}`).not.toContain('correct horse');
		expect(await cp3.exec(['test', '-e', '/var/lib/etcd-harden/fleet/bundle-key'], {reject: false}).then(r => r.exitCode)).not.toBe(0);

		// The node fixed: the rerun resumes from what the nodes report and finishes.
		await cp3.resume();
		const second = await fleet(['rotate', '--bundle-key', `${WORK}/bundle-passphrase`, '--timeout', '60']);
		log('second rotate', second);
		const secondJson = fleetJson(second);
		expect(second.exitCode, show(second)).toBe(0);
		expect(secondJson.failure).toBeNull();
		const state = await reader.stop();
		expect(state.errors).toEqual([]);
		expect(state.reads).toBeGreaterThan(10);

		for (const file of [CONFIG, config(cp2), config(cp3)]) expect(await configProviders(testbed, file)).toEqual(['secretbox:key2', 'identity']);
		expect(Object.keys(await secretCounts(testbed))).toEqual(['secretbox:key2']);
		const cm = await testbed.kubectl(['-n', 'kube-system', 'get', 'configmap', 'etcd-harden-status', '-o', 'jsonpath={.data}']);
		const data = JSON.parse(String(cm.stdout)) as Record<string, string>;
		expect(Object.keys(data).sort()).toEqual(['cp-1', 'cp-2', 'cp-3']);
		expect(new Set(Object.values(data).map(value => (JSON.parse(value) as {configSha256: string}).configSha256)).size).toBe(1);
		log(`rotate done; reader: ${state.reads} reads, ${state.unavailable} unavailable`);
	});

	it('disable: identity first on all three, everything rewritten in plaintext, the keys removed everywhere', async () => {
		const testbed = tb!;
		const [cp2, cp3] = nodes as [SecondApiserver, SecondApiserver];
		const run = await fleet(['disable', '--bundle-key', `${WORK}/bundle-passphrase`, '--timeout', '60']);
		log('disable', run);
		expect(run.exitCode, show(run)).toBe(0);
		expect(fleetJson(run).cells['cp-1']!['reencrypt']!.state).toBe('changed');
		for (const file of [CONFIG, config(cp2), config(cp3)]) expect(await configProviders(testbed, file)).toEqual(['identity']);
		expect(Object.keys(await secretCounts(testbed))).toEqual(['plaintext']);
		const cm = await testbed.kubectl(['-n', 'kube-system', 'get', 'configmap', 'etcd-harden-status', '-o', 'jsonpath={.data}']);
		const data = JSON.parse(String(cm.stdout)) as Record<string, string>;
		expect(new Set(Object.values(data).map(value => (JSON.parse(value) as {configSha256: string}).configSha256)).size).toBe(1);
	});

	it('enable from a mixed fleet (cp-1 and cp-3 without any encryption config, cp-2 identity only): the key read-only after identity on all three first, then primary; every secret on it, one config hash, no read error', async () => {
		const testbed = tb!;
		const [cp2, cp3] = nodes as [SecondApiserver, SecondApiserver];
		const key = ['--bundle-key', `${WORK}/bundle-passphrase`];
		const MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';
		const manifestOf = (node?: SecondApiserver) => (node ? `${node.dir}/kubernetes/manifests/kube-apiserver.yaml` : MANIFEST);

		// Everything is plaintext after disable: take cp-1 and cp-3 back to no encryption config at
		// all (the flag out of the manifest, the file gone), as a node that never had one.
		const cp1Starts = await testbed.podStarts('kube-apiserver');
		const cp3Starts = await cp3.starts();
		for (const node of [undefined, cp3]) {
			const text = await testbed.readFile(manifestOf(node), 'utf8');
			await testbed.writeFile(manifestOf(node), text.split('\n').filter(line => !line.includes('--encryption-provider-config')).join('\n'), {mode: 0o600});
		}
		await testbed.waitForPodStarts('kube-apiserver', cp1Starts + 1, 60_000);
		for (let i = 0; (await cp3.starts()) <= cp3Starts; i++) {
			if (i > 120) throw new Error('cp-3 did not restart its apiserver without the encryption config');
			await sleep(500);
		}
		await testbed.waitForReady(90_000);
		for (let i = 0; !(await cp3.isReady()); i++) {
			if (i > 180) throw new Error('cp-3 apiserver not ready without the encryption config');
			await sleep(500);
		}
		await testbed.exec(['rm', '-f', CONFIG, config(cp3)]);
		log('cp-1 and cp-3 without an encryption config');

		const dry = await fleet(['enable', '--dry-run', ...key], false);
		log('enable dry run', dry);
		expect(dry.exitCode, show(dry)).toBe(0);
		for (const node of ['cp-1', 'cp-3']) expect(dry.stdout, show(dry)).toMatch(new RegExp(`^${node} prepare: rotate-prepare: Write ${CONFIG} with identity first and secretbox key key1 after it for secrets`, 'm'));
		expect(dry.stdout, show(dry)).toMatch(/^cp-2 prepare: rotate-prepare: Add secretbox key key1 after identity/m);
		expect(await configProviders(testbed, config(cp2))).toEqual(['identity']);
		for (const node of [undefined, cp3]) expect(await testbed.readFile(manifestOf(node), 'utf8')).not.toContain('--encryption-provider-config');

		// Writes through every apiserver while the nodes switch: a secret one node writes with the key must read on the others.
		const reader = readerLoop(testbed);
		const written: string[] = [];
		let writing = true;
		const writer = (async () => {
			for (let i = 0; writing; i++) {
				const server = SERVERS[i % SERVERS.length]!;
				const name = `during-enable-${i}`;
				const made = await testbed.kubectl(['--server', server, 'create', 'secret', 'generic', name, '-n', 'seed-1', `--from-literal=k=${name}`, '--request-timeout=20s'], {reject: false, stdin: 'ignore'});
				if (made.exitCode === 0) written.push(name);
				await sleep(1500);
			}
		})();
		const run = await fleet(['enable', ...key, '--timeout', '60']);
		writing = false;
		await writer;
		log('enable', run);
		const json = fleetJson(run);
		expect(run.exitCode, show(run)).toBe(0);
		expect(json.failure).toBeNull();
		for (const node of ['cp-1', 'cp-2', 'cp-3']) {
			expect(json.cells[node]!['prepare']!.state, `${node} prepare`).toBe('changed');
			expect(json.cells[node]!['promote']!.state, `${node} promote`).toBe('changed');
		}
		expect(json.cells['cp-1']!['reencrypt']!.state).toBe('changed');
		const state = await reader.stop();
		expect(state.errors).toEqual([]);
		expect(state.reads).toBeGreaterThan(5);

		for (const file of [CONFIG, config(cp2), config(cp3)]) expect(await configProviders(testbed, file)).toEqual(['secretbox:key1', 'identity']);
		for (const node of [undefined, cp2, cp3]) expect(await testbed.readFile(manifestOf(node), 'utf8')).toContain(`--encryption-provider-config=${CONFIG}`);
		expect(Object.keys(await secretCounts(testbed))).toEqual(['secretbox:key1']);
		const cm = await testbed.kubectl(['-n', 'kube-system', 'get', 'configmap', 'etcd-harden-status', '-o', 'jsonpath={.data}']);
		const data = JSON.parse(String(cm.stdout)) as Record<string, string>;
		expect(Object.keys(data).sort()).toEqual(['cp-1', 'cp-2', 'cp-3']);
		expect(new Set(Object.values(data).map(value => (JSON.parse(value) as {configSha256: string}).configSha256)).size).toBe(1);
		expect(written.length).toBeGreaterThan(3);
		for (const server of SERVERS) {
			const got = await testbed.kubectl(['--server', server, 'get', 'secret', written.at(-1)!, '-n', 'seed-1', '-o', 'jsonpath={.data.k}']);
			expect(Buffer.from(String(got.stdout), 'base64').toString()).toBe(written.at(-1));
		}
		log(`enable done; reader: ${state.reads} reads, ${state.unavailable} unavailable; ${written.length} secrets written during it`);
	});
});

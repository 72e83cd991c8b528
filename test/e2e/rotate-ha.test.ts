// Rotation with two control planes: a second kube-apiserver (its own kubelet, config
// directory and port, same etcd; test/testbed/second-apiserver.ts). Promote refuses while
// node 2 does not run the config with the new key and names it; the bundle applied there
// (etcd-harden rotate --bundle FILE on node 2) lets it proceed; prune waits the same way.
import {afterEach, describe, expect, it} from 'vitest';
import {startTestbed, type Testbed} from '../testbed/index.js';
import {startSecondApiserver, type SecondApiserver} from '../testbed/second-apiserver.js';
import {cli, CLI, CONFIG, configProviders, ENABLE, secretCounts, show, type Run} from './rotate-helpers.js';

let tb: Testbed | undefined;
afterEach(async () => {
	await tb?.stop();
	tb = undefined;
});

const PASSFILE = '/tmp/bundle-passphrase';
const ROTATE_HA = ['rotate', '--yes', '--plain', '--bundle-key', PASSFILE, '--set', 'rotate-promote.waitSeconds=3', '--set', 'rotate-prune.waitSeconds=3', '--compaction-grace', '0'];

async function onNode2(node2: SecondApiserver, args: string[]): Promise<Run> {
	const result = await node2.exec([process.execPath, CLI, ...args], {reject: false, stdin: 'ignore', env: {CI: 'true'}});
	return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

/** The bundle path the run printed ("copy it there and run: etcd-harden rotate --bundle PATH"). */
function bundleOf(run: Run): string {
	const matches = [...run.stderr.matchAll(/etcd-harden rotate --bundle (\S+)/g)];
	expect(matches.length, show(run)).toBeGreaterThan(0);
	return matches.at(-1)![1]!;
}

describe('rotation with two control planes', () => {
	it('promote and prune refuse naming cp-2 until the bundle is applied there; both end on the same config with key2 only', async () => {
		tb = await startTestbed({secrets: 200, configMaps: 5, namespaces: 2});
		const testbed = tb;
		expect((await cli(testbed, ENABLE)).exitCode).toBe(0);
		const node2 = await startSecondApiserver(testbed);
		await testbed.writeFile(PASSFILE, 'correct horse battery staple\n', {mode: 0o600});
		const node2Config = `${node2.dir}/kubernetes/enc/encryption-config.yaml`;

		const apply = async (bundle: string) => {
			// "Copy it there": node 2 has its own /var/lib/etcd-harden; /tmp is shared in the testbed.
			await testbed.exec(['cp', bundle, '/tmp/bundle.age']);
			const startsBefore = await node2.starts();
			const run = await onNode2(node2, ['rotate', '--bundle', '/tmp/bundle.age', '--bundle-key', PASSFILE, '--node-name', 'cp-2', '--yes', '--plain']);
			expect(run.exitCode, show(run)).toBe(0);
			expect(await node2.starts()).toBeGreaterThan(startsBefore);
			expect(await testbed.readFile(node2Config, 'utf8')).toBe(await testbed.readFile(CONFIG, 'utf8'));
		};

		// 1. prepare runs on cp-1; promote refuses: cp-2 has not reported the config with key2.
		const first = await cli(testbed, ROTATE_HA);
		expect(first.exitCode, show(first)).toBe(3);
		expect(first.stdout).toContain('Rotate: prepare the new key: applied and verified.');
		expect(first.stderr).toMatch(/control plane\(s\) cp-2 do not run this node's config .*cp-2 has not reported/);
		expect(await configProviders(testbed)).toEqual(['secretbox:key1', 'secretbox:key2', 'identity']);
		expect(await configProviders(testbed, node2Config)).toEqual(['secretbox:key1', 'identity']);
		// The bundle holds key material only encrypted: the passphrase never appears.
		expect(`${first.stdout}${first.stderr}`).not.toContain('correct horse');

		// 2. the bundle applied on cp-2: promote and re-encryption proceed; prune refuses (cp-2 lacks the promoted config).
		await apply(bundleOf(first));
		const second = await cli(testbed, ROTATE_HA);
		expect(second.exitCode, show(second)).toBe(3);
		expect(second.stdout).toContain('Rotate: promote the new key: applied and verified.');
		expect(second.stdout).toContain('Re-encrypt existing objects: applied and verified.');
		expect(second.stderr).toMatch(/control plane\(s\) cp-2 do not run this node's config .*cp-2 runs config sha256/);
		expect(Object.keys(await secretCounts(testbed))).toEqual(['secretbox:key2']);

		// 3. the promoted config applied on cp-2: prune proceeds; its bundle brings cp-2 to key2 only.
		await apply(bundleOf(second));
		const third = await cli(testbed, ROTATE_HA);
		expect(third.exitCode, show(third)).toBe(0);
		expect(third.stdout).toContain('Rotate: prune the old keys: applied and verified.');
		await apply(bundleOf(third));
		expect(await configProviders(testbed)).toEqual(['secretbox:key2', 'identity']);
		expect(await configProviders(testbed, node2Config)).toEqual(['secretbox:key2', 'identity']);

		// Both apiservers read every secret; the ConfigMap reports the same hash for both nodes.
		for (const server of ['https://10.0.0.10:6443', 'https://10.0.0.10:6444']) {
			const list = await testbed.kubectl(['--server', server, 'get', 'secrets', '-A', '-o', 'name']);
			expect(String(list.stdout).split('\n').filter(Boolean).length).toBeGreaterThanOrEqual(200);
		}
		const cm = await testbed.kubectl(['-n', 'kube-system', 'get', 'configmap', 'etcd-harden-status', '-o', 'jsonpath={.data}']);
		const data = JSON.parse(String(cm.stdout)) as Record<string, string>;
		const hashes = Object.values(data).map(value => (JSON.parse(value) as {configSha256: string}).configSha256);
		expect(Object.keys(data).sort()).toEqual(['cp-1', 'cp-2']);
		expect(new Set(hashes).size).toBe(1);
	});
});

// What goes wrong on a live control plane, on the real testbed: a config the apiserver
// rejects (the restart gate undoes everything byte for byte), and a run killed with SIGKILL
// in the middle of re-encryption (a rerun finishes the job).
import {createHash} from 'node:crypto';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterEach, describe, expect, it} from 'vitest';
import {startTestbed, storedValueCounts, type Testbed} from '../testbed/index.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'dist', 'cli.js');
const MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const CONFIG = '/etc/kubernetes/enc/encryption-config.yaml';
// The encryption stages only: other stages (firewall, etcd TLS and auth) have their own tests.
const RECOVERY = ['--only', 'encryption-config,apiserver-manifest,reencrypt', '--set', 'encryption-config.recovery=stored-elsewhere', '--set', 'encryption-config.storedElsewhere=true'];

let tb: Testbed | undefined;
afterEach(async () => {
	await tb?.stop();
	tb = undefined;
});

function cliArgv(args: string[]): string[] {
	return [process.execPath, CLI, ...args];
}

async function digest(testbed: Testbed, file: string): Promise<string> {
	return createHash('sha256').update(await testbed.readFile(file)).digest('hex');
}

async function clusterConfiguration(testbed: Testbed): Promise<string> {
	const result = await testbed.kubectl(['-n', 'kube-system', 'get', 'configmap', 'kubeadm-config', '-o', 'jsonpath={.data.ClusterConfiguration}']);
	return String(result.stdout);
}

const secretCounts = (testbed: Testbed) => storedValueCounts(testbed);

describe('failures on a live control plane', () => {
	it('a config the apiserver rejects: the gate fails, manifest, config and kubeadm-config are restored byte for byte, exit 3', async () => {
		tb = await startTestbed({secrets: 50, configMaps: 5, namespaces: 2});
		// An existing config whose first provider is a KMS plugin that is not running: it
		// validates, but the apiserver never passes /readyz with it.
		const brokenConfig = [
			'apiVersion: apiserver.config.k8s.io/v1',
			'kind: EncryptionConfiguration',
			'resources:',
			'  - resources: [secrets]',
			'    providers:',
			'      - kms:',
			'          name: missing-plugin',
			'          endpoint: unix:///var/run/kms-missing.sock',
			'          cachesize: 100',
			'          timeout: 3s',
			'      - identity: {}',
			'',
		].join('\n');
		await tb.exec(['mkdir', '-p', '/etc/kubernetes/enc']);
		await tb.writeFile(CONFIG, brokenConfig, {mode: 0o600});
		const before = {manifest: await digest(tb, MANIFEST), config: await digest(tb, CONFIG), kubeadm: await clusterConfiguration(tb)};
		const startsBefore = await tb.podStarts('kube-apiserver');

		const run = await tb.exec(cliArgv(['--yes', '--plain', '--timeout', '30', ...RECOVERY]), {reject: false, stdin: 'ignore', env: {CI: 'true'}});
		expect(run.exitCode, String(run.stderr).slice(-3000)).toBe(3);
		const output = `${String(run.stdout)}\n${String(run.stderr)}`;
		expect(output).toMatch(/did not restart and pass \/readyz within 30 s/);
		expect(output).toContain('kms-provider-0');
		// The log's last lines are shown from the kubelet's pod log path.
		expect(output).toMatch(/Last lines of \/var\/log\/pods\/kube-system_kube-apiserver-/);
		expect(String(run.stdout)).toContain('Encryption config: undone together with "kube-apiserver manifest"');

		expect({manifest: await digest(tb, MANIFEST), config: await digest(tb, CONFIG), kubeadm: await clusterConfiguration(tb)}).toEqual(before);
		expect(await tb.isReady()).toBe(true);
		// It really restarted twice: once with the change, once with the restored files.
		expect(await tb.podStarts('kube-apiserver')).toBeGreaterThanOrEqual(startsBefore + 2);
	});

	it('killed with SIGKILL in the middle of re-encryption, a rerun finishes it: every secret on key1', async () => {
		tb = await startTestbed({secrets: 3000, configMaps: 10, namespaces: 3});
		const testbed = tb;
		// Throttled so the kill lands in the middle of the rewrite.
		const first = testbed.exec(cliArgv(['--yes', '--plain', '--rate', '150', ...RECOVERY]), {reject: false, stdin: 'ignore', env: {CI: 'true'}});
		let counts: Record<string, number> = {};
		for (let i = 0; i < 240; i++) {
			await new Promise(resolve => setTimeout(resolve, 500));
			counts = await secretCounts(testbed);
			if ((counts['secretbox:key1'] ?? 0) >= 300) break;
		}
		expect(counts['secretbox:key1'] ?? 0).toBeGreaterThanOrEqual(300);
		await testbed.exec(['pkill', '-KILL', '-f', 'dist/cli.js'], {reject: false});
		const killed = await first;
		expect(killed.exitCode === 0).toBe(false);
		const midway = await secretCounts(testbed);
		expect(midway['plaintext'] ?? 0).toBeGreaterThan(0);

		const rerun = await testbed.exec(cliArgv(['--yes', '--plain', ...RECOVERY]), {reject: false, stdin: 'ignore', env: {CI: 'true'}});
		expect(rerun.exitCode, String(rerun.stderr).slice(-3000)).toBe(0);
		expect(String(rerun.stderr)).toMatch(/was interrupted during stage "reencrypt"/);
		// The rerun rewrote only what was left, and made no new key.
		expect(String(rerun.stdout)).toContain('Encryption config: already in place');
		expect(String(rerun.stderr)).toMatch(/Rewrite (\d+) object\(s\)/);
		const rewritten = Number(/Rewrite (\d+) object\(s\)/.exec(String(rerun.stderr))![1]);
		expect(rewritten).toBeLessThan(3000);
		expect(rewritten).toBe(midway['plaintext']);
		const final = await secretCounts(testbed);
		expect(Object.keys(final)).toEqual(['secretbox:key1']);
	});
});

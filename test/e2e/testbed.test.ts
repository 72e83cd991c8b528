// The real control-plane testbed: etcd 3.4 (Debian) + kube-apiserver 1.20.2 (built from Debian's
// source) under the kubelet stand-in, in private namespaces. No mocks.
import {existsSync} from 'node:fs';
import {readdir, readFile, readlink} from 'node:fs/promises';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {execa} from 'execa';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {seededSecret, startTestbed, type Testbed} from '../testbed/index.js';

const SECRETS = 3000;
const NAMESPACES = 3;
const MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const PKI = '/etc/kubernetes/pki';

let tb: Testbed;
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const hostHad = {runDir: existsSync('/var/lib/etcd-harden'), testbedDir: existsSync('/var/lib/testbed')};
let originalManifest: string;

/** The manifest with extra lines inserted right after `- kube-apiserver` (the command). */
function withFlags(manifest: string, ...flags: string[]): string {
	const anchor = '    - kube-apiserver\n';
	expect(manifest).toContain(anchor);
	return manifest.replace(anchor, anchor + flags.map((f) => `    - ${f}\n`).join(''));
}

async function processesInNetns(netns: string): Promise<number[]> {
	const pids: number[] = [];
	for (const entry of await readdir('/proc')) {
		if (!/^\d+$/.test(entry)) continue;
		if ((await readlink(`/proc/${entry}/ns/net`).catch(() => '')) === netns) pids.push(Number(entry));
	}
	return pids;
}

async function sleep(ms: number): Promise<void> {
	await new Promise((r) => setTimeout(r, ms));
}

describe('real control-plane testbed', () => {
	beforeAll(async () => {
		tb = await startTestbed({secrets: SECRETS, configMaps: 30, namespaces: NAMESPACES});
		originalManifest = await tb.readFile(MANIFEST, 'utf8');
	});

	afterAll(async () => {
		await tb?.stop();
	});

	it('starts a warm testbed with the 3,000 seeded secrets (its duration is bench/testbed\'s job)', () => {
		expect(tb.seeded.secrets).toBe(3000);
		expect(tb.timings['total']).toBeGreaterThan(0);
	});

	it('etcd refuses a client without a certificate, and accepts one with a certificate from its CA', async () => {
		const version = ['curl', '-sS', '--max-time', '5', '--cacert', `${PKI}/etcd/ca.crt`];
		const withoutCert = await tb.exec([...version, 'https://127.0.0.1:2379/version'], {reject: false});
		expect(withoutCert.exitCode).not.toBe(0);
		expect(withoutCert.stdout).not.toContain('etcdserver');

		const etcdctlNoCert = await tb.exec(
			['etcdctl', '--endpoints=https://127.0.0.1:2379', `--cacert=${PKI}/etcd/ca.crt`, '--dial-timeout=3s', '--command-timeout=5s', 'get', '/registry/namespaces/default'],
			{reject: false, env: {ETCDCTL_API: '3'}},
		);
		expect(etcdctlNoCert.exitCode).not.toBe(0);
		expect(etcdctlNoCert.stdout).toBe('');

		const withCert = await tb.exec([...version, '--cert', `${PKI}/etcd/healthcheck-client.crt`, '--key', `${PKI}/etcd/healthcheck-client.key`, 'https://127.0.0.1:2379/version']);
		expect(JSON.parse(withCert.stdout)).toMatchObject({etcdserver: expect.stringMatching(/^3\.4\./)});
	});

	it('etcd refuses a plaintext connection', async () => {
		const plain = await tb.exec(['curl', '-sS', '--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', 'http://127.0.0.1:2379/version'], {reject: false});
		expect(plain.stdout).not.toBe('200');
		const etcdctlPlain = await tb.exec(['etcdctl', '--endpoints=http://127.0.0.1:2379', '--dial-timeout=3s', '--command-timeout=5s', 'get', '/registry/namespaces/default'], {
			reject: false,
			env: {ETCDCTL_API: '3'},
		});
		expect(etcdctlPlain.exitCode).not.toBe(0);
		expect(etcdctlPlain.stdout).toBe('');
	});

	it("etcd accepts the apiserver's client certificate", async () => {
		const r = await tb.exec(
			[
				'etcdctl',
				'--endpoints=https://127.0.0.1:2379',
				`--cacert=${PKI}/etcd/ca.crt`,
				`--cert=${PKI}/apiserver-etcd-client.crt`,
				`--key=${PKI}/apiserver-etcd-client.key`,
				'get',
				'/registry/namespaces/default',
				'--keys-only',
			],
			{env: {ETCDCTL_API: '3'}},
		);
		expect(r.stdout.trim()).toBe('/registry/namespaces/default');
	});

	it('the apiserver passes /readyz', async () => {
		expect(await tb.isReady()).toBe(true);
		const r = await tb.kubectl(['get', '--raw', '/readyz']);
		expect(r.stdout.trim()).toBe('ok');
	});

	it('kubectl with admin.conf lists the seeded secrets with their values', async () => {
		const r = await tb.kubectl(['get', 'secrets', '--all-namespaces', '-l', 'testbed/seed=true', '-o', 'json'], {maxBuffer: 512 * 1024 * 1024});
		const items = (JSON.parse(r.stdout) as {items: Array<{metadata: {name: string; namespace: string}; data: Record<string, string>}>}).items;
		expect(items).toHaveLength(SECRETS);
		const byKey = new Map(items.map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s]));
		for (const i of [0, 1, 1234, SECRETS - 1]) {
			const want = seededSecret(i, NAMESPACES);
			const got = byKey.get(`${want.namespace}/${want.name}`);
			expect(got, `${want.namespace}/${want.name}`).toBeDefined();
			const decoded = Object.fromEntries(Object.entries(got!.data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]));
			expect(decoded).toEqual(want.data);
		}
		const cm = await tb.kubectl(['-n', 'kube-system', 'get', 'configmap', 'kubeadm-config', '-o', 'jsonpath={.data.ClusterConfiguration}']);
		expect(cm.stdout).toContain('kind: ClusterConfiguration');
		expect(cm.stdout).toContain('kubernetesVersion: v1.20.2');
	});

	it('raw etcd values of seeded secrets are plaintext protobuf (k8s\\0) before hardening', async () => {
		for (const i of [0, 7, SECRETS - 1]) {
			const s = seededSecret(i, NAMESPACES);
			const r = await tb.etcdctl(['get', `/registry/secrets/${s.namespace}/${s.name}`, '--print-value-only'], {encoding: 'buffer'});
			const raw = Buffer.from(r.stdout as unknown as Uint8Array);
			expect(raw.subarray(0, 4)).toEqual(Buffer.from('k8s\0', 'binary'));
			expect(raw.includes(Buffer.from(s.data['password']!))).toBe(true);
		}
	});

	it('editing kube-apiserver.yaml restarts the apiserver within a few seconds, with the new flags', async () => {
		const before = await tb.podState('kube-apiserver');
		expect(before?.running).toBe(true);
		await tb.writeFile(MANIFEST, withFlags(originalManifest, '--profiling=false'));
		const after = await tb.waitForPodStarts('kube-apiserver', before!.starts + 1, 15_000);
		expect(after.hash).not.toBe(before!.hash);
		await tb.waitForReady(60_000);
		const now = await tb.podState('kube-apiserver');
		expect(now?.pid).not.toBe(before!.pid);
		const cmdline = await tb.exec(['cat', `/proc/${now!.pid}/cmdline`]);
		expect(cmdline.stdout.split('\0')).toContain('--profiling=false');
		// the pod's own view of /etc/kubernetes holds only what the manifest mounts
		const view = await tb.exec(['ls', '-A', `/proc/${now!.pid}/root/etc/kubernetes`]);
		expect(view.stdout.trim().split('\n')).toEqual(['pki']);
	});

	it('an invalid flag leaves the apiserver crash-looping and not ready; restoring the manifest brings it back', async () => {
		const before = await tb.podState('kube-apiserver');
		const logOffset = (await tb.podLog('kube-apiserver')).length;
		await tb.writeFile(MANIFEST, withFlags(originalManifest, '--no-such-flag=true'));
		await tb.waitForPodStarts('kube-apiserver', before!.starts + 3, 60_000);
		expect(await tb.isReady()).toBe(false);
		const log = (await tb.podLog('kube-apiserver')).slice(logOffset);
		expect(log).toContain('unknown flag: --no-such-flag');
		expect(log).toContain('back-off');

		await tb.writeFile(MANIFEST, originalManifest);
		await tb.waitForReady(60_000);
		expect(await tb.isReady()).toBe(true);
	});

	it('a flag pointing at a path not mounted into the pod leaves it not ready; mounting it fixes it; restoring brings it back', async () => {
		const encDir = '/etc/kubernetes/enc';
		const encFile = `${encDir}/config.yaml`;
		await tb.exec(['mkdir', '-p', encDir]);
		await tb.writeFile(
			encFile,
			'apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n',
		);
		// The file exists on the node...
		expect(await tb.readFile(encFile, 'utf8')).toContain('EncryptionConfiguration');

		// ...but without a volumeMount the apiserver cannot see it.
		const before = await tb.podState('kube-apiserver');
		const logOffset = (await tb.podLog('kube-apiserver')).length;
		const unmounted = withFlags(originalManifest, `--encryption-provider-config=${encFile}`);
		await tb.writeFile(MANIFEST, unmounted);
		await tb.waitForPodStarts('kube-apiserver', before!.starts + 2, 60_000);
		expect(await tb.isReady()).toBe(false);
		const log = (await tb.podLog('kube-apiserver')).slice(logOffset);
		expect(log).toContain(encFile);
		expect(log).toMatch(/no such file or directory/);

		// With the hostPath volume and volumeMount (what the tool must add) the same flag works.
		const mounted = unmounted
			.replace(
				'    volumeMounts:\n',
				`    volumeMounts:\n    - mountPath: ${encDir}\n      name: encryption-config\n      readOnly: true\n`,
			)
			.replace('  volumes:\n', `  volumes:\n  - hostPath:\n      path: ${encDir}\n      type: DirectoryOrCreate\n    name: encryption-config\n`);
		await tb.writeFile(MANIFEST, mounted);
		await tb.waitForReady(60_000);
		const pid = (await tb.podState('kube-apiserver'))!.pid!;
		const view = await tb.exec(['ls', '-A', `/proc/${pid}/root/etc/kubernetes`]);
		expect(view.stdout.trim().split('\n').sort()).toEqual(['enc', 'pki']);

		await tb.writeFile(MANIFEST, originalManifest);
		const restarted = (await tb.podState('kube-apiserver'))!.starts;
		await tb.waitForPodStarts('kube-apiserver', restarted + 1, 15_000);
		await tb.waitForReady(60_000);
		const cmdline = await tb.exec(['cat', `/proc/${(await tb.podState('kube-apiserver'))!.pid}/cmdline`]);
		expect(cmdline.stdout).not.toContain('--encryption-provider-config');
	});

	it('stop() leaves no process, mount or temp directory', async () => {
		const {dir, pid, namespaces} = tb;
		const inside = await processesInNetns(namespaces.net);
		// holder, kubelet stand-in, etcd, kube-apiserver (at least)
		expect(inside.length).toBeGreaterThanOrEqual(4);
		expect(existsSync(dir)).toBe(true);

		const report = await tb.stop();
		expect(report).toEqual({leftoverProcesses: [], leftoverMounts: [], dirRemoved: true});

		await sleep(200);
		expect(existsSync(`/proc/${pid}`)).toBe(false);
		for (const p of inside) expect(existsSync(`/proc/${p}`), `process ${p}`).toBe(false);
		expect(await processesInNetns(namespaces.net)).toEqual([]);
		const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
		expect(mountinfo).not.toContain(dir);
		expect(mountinfo).not.toContain('testbed-overlay');
		expect(existsSync(dir)).toBe(false);
		// nothing was created on the host's real paths
		expect(existsSync('/var/lib/etcd-harden')).toBe(hostHad.runDir);
		expect(existsSync('/var/lib/testbed')).toBe(hostHad.testbedDir);
	});
});

describe('testbed preconditions', () => {
	it('refuses clearly, naming the provisioning script, when the binaries are missing', async () => {
		const r = await execa(
			process.execPath,
			['--import', 'tsx', '--input-type=module', '-e', "import('./test/testbed/index.ts').then((m) => m.startTestbed({secrets: 1}))"],
			{cwd: REPO, env: {ETCD_HARDEN_CACHE: '/nonexistent-etcd-harden-cache'}, reject: false},
		);
		expect(r.exitCode).not.toBe(0);
		expect(r.stderr).toContain('/nonexistent-etcd-harden-cache/bin/kube-apiserver-1.20.2');
		expect(r.stderr).toContain('scripts/provision.sh');
	});
});

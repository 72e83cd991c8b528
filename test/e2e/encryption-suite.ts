// The encryption-at-rest e2e suite, shared by the run with `node dist/cli.js`
// (encryption-wizard.test.ts) and the one with the single executable (executable.test.ts): the
// program under test runs inside the testbed's namespaces with its real default paths, against
// real etcd and a real kube-apiserver 1.20.2 run by the kubelet stand-in. Nothing here is mocked.
import {createHash} from 'node:crypto';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {seededSecret, startTestbed, storedValueCounts, type Testbed, type TestbedOptions} from '../testbed/index.js';

const MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const CONFIG = '/etc/kubernetes/enc/encryption-config.yaml';
// The encryption stages only: other stages (firewall, etcd TLS and auth) have their own tests.
const RECOVERY = ['--only', 'encryption-config,apiserver-manifest,reencrypt,purge-history', '--compaction-grace', '0', '--set', 'encryption-config.recovery=stored-elsewhere', '--set', 'encryption-config.storedElsewhere=true'];

export type EncryptionSuiteOptions = {
	/** The argv that starts etcd-harden inside the testbed, e.g. [node, dist/cli.js]. */
	program: string[];
	secrets: number;
	configMaps: number;
	namespaces: number;
	testbed?: TestbedOptions;
};

type Run = {exitCode: number; stdout: string; stderr: string};

async function cli(tb: Testbed, program: string[], args: string[]): Promise<Run> {
	const result = await tb.exec([...program, ...args], {reject: false, stdin: 'ignore', env: {CI: 'true'}});
	return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

const rawCounts = storedValueCounts;

/** sha256 of every raw value under a prefix, by key: proves nothing was rewritten. */
async function rawDigest(tb: Testbed, prefix: string): Promise<string> {
	const result = await tb.etcdctl(['get', prefix, '--prefix', '-w', 'json'], {maxBuffer: 1024 * 1024 * 1024});
	const data = JSON.parse(String(result.stdout)) as {kvs?: Array<{key: string; value: string; mod_revision: number}>};
	const hash = createHash('sha256');
	for (const kv of data.kvs ?? []) hash.update(`${kv.key} ${kv.mod_revision} ${kv.value}\n`);
	return hash.digest('hex');
}

async function fileDigests(tb: Testbed, files: string[]): Promise<Record<string, string>> {
	const out: Record<string, string> = {};
	for (const file of files) {
		try {
			out[file] = createHash('sha256').update(await tb.readFile(file)).digest('hex');
		} catch {
			out[file] = 'missing';
		}
	}
	return out;
}

async function kubeadmConfig(tb: Testbed): Promise<string> {
	const result = await tb.kubectl(['-n', 'kube-system', 'get', 'configmap', 'kubeadm-config', '-o', 'jsonpath={.data.ClusterConfiguration}']);
	return String(result.stdout);
}

export function encryptionAtRestSuite(title: string, options: EncryptionSuiteOptions): void {
describe(title, () => {
	const {program, secrets: SECRETS, configMaps: CONFIGMAPS, namespaces: NAMESPACES} = options;
	let tb: Testbed;
	beforeAll(async () => {
		tb = await startTestbed({...options.testbed, secrets: SECRETS, configMaps: CONFIGMAPS, namespaces: NAMESPACES});
	});
	afterAll(async () => {
		await tb?.stop();
	});

	it('--dry-run changes no file and no raw etcd value', async () => {
		const files = [MANIFEST, CONFIG, '/etc/kubernetes/manifests/etcd.yaml'];
		const before = {files: await fileDigests(tb, files), secrets: await rawDigest(tb, '/registry/secrets/'), kubeadm: await kubeadmConfig(tb)};
		const run = await cli(tb, program, ['--yes', '--dry-run', '--set', 'encryption-config.resources=secrets,configmaps', ...RECOVERY]);
		expect(run.stderr).not.toMatch(/etcd-harden: /);
		expect(run.exitCode).toBe(0);
		expect(run.stdout).toContain('Dry run: nothing was changed');
		// The preview names the live work: the gate, kubeadm-config and the rewrite of every object.
		expect(run.stderr).toContain('Wait until kube-apiserver has restarted');
		expect(run.stderr).toContain('kubeadm-config');
		expect(run.stderr).toMatch(/Rewrite \d+ object\(s\) not yet on the primary key/);
		expect({files: await fileDigests(tb, files), secrets: await rawDigest(tb, '/registry/secrets/'), kubeadm: await kubeadmConfig(tb)}).toEqual(before);
	});

	it('enables secretbox non-interactively: every secret and configmap on key1 at rest, readable through the API', async () => {
		expect(await rawCounts(tb, '/registry/secrets/')).toMatchObject({plaintext: expect.any(Number)});
		const run = await cli(tb, program, ['--yes', '--plain', '--set', 'encryption-config.resources=secrets,configmaps', ...RECOVERY]);
		expect(run.stderr).not.toMatch(/etcd-harden: /);
		expect(run.exitCode, run.stderr.slice(-3000)).toBe(0);
		expect(run.stdout).toContain('Re-encrypt existing objects: applied and verified.');
		// Enabling is complete only with the old plaintext revisions gone (status fails otherwise).
		expect(run.stdout).toContain('Purge plaintext history: applied and verified.');

		const secrets = await rawCounts(tb, '/registry/secrets/');
		expect(Object.keys(secrets)).toEqual(['secretbox:key1']);
		expect(secrets['secretbox:key1']).toBeGreaterThanOrEqual(SECRETS);
		const configmaps = await rawCounts(tb, '/registry/configmaps/');
		expect(Object.keys(configmaps)).toEqual(['secretbox:key1']);
		expect(configmaps['secretbox:key1']).toBeGreaterThanOrEqual(CONFIGMAPS);

		// Every seeded secret reads back through the API with its seeded value.
		const list = await tb.kubectl(['get', 'secrets', '-A', '-l', 'testbed/seed', '-o', 'json'], {maxBuffer: 1024 * 1024 * 1024});
		const items = (JSON.parse(String(list.stdout)) as {items: Array<{metadata: {namespace: string; name: string}; data: Record<string, string>}>}).items;
		const byName = new Map(items.map(item => [`${item.metadata.namespace}/${item.metadata.name}`, item.data]));
		for (let i = 0; i < SECRETS; i++) {
			const seeded = seededSecret(i, NAMESPACES);
			const data = byName.get(`${seeded.namespace}/${seeded.name}`);
			expect(data, `${seeded.namespace}/${seeded.name}`).toBeDefined();
			const decoded = Object.fromEntries(Object.entries(data!).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));
			expect(decoded).toEqual(seeded.data);
		}

		// kubeadm upgrade keeps the setting: the ClusterConfiguration holds the flag and the volume.
		const cluster = await kubeadmConfig(tb);
		expect(cluster).toContain(`encryption-provider-config: ${CONFIG}`);
		expect(cluster).toMatch(/extraVolumes:[\s\S]*hostPath: \/etc\/kubernetes\/enc/);

		const status = await cli(tb, program, ['status', '--json']);
		const rows = JSON.parse(status.stdout) as Array<{id: string; status: string}>;
		expect(rows.filter(row => row.status === 'FAIL')).toEqual([]);
		expect(rows.find(row => row.id === 'at-rest.secrets')?.status).toBe('PASS');
		expect(status.exitCode).toBe(0);
	});

	it('a rerun with the same answers changes nothing: no new key, no file or object rewritten', async () => {
		const files = [MANIFEST, CONFIG];
		const before = {
			files: await fileDigests(tb, files),
			secrets: await rawDigest(tb, '/registry/secrets/'),
			configmaps: await rawDigest(tb, '/registry/configmaps/'),
			starts: await tb.podStarts('kube-apiserver'),
		};
		const run = await cli(tb, program, ['--yes', '--plain', '--set', 'encryption-config.resources=secrets,configmaps', ...RECOVERY]);
		expect(run.exitCode, run.stderr.slice(-2000)).toBe(0);
		expect(run.stdout.match(/already in place, nothing changed/g)).toHaveLength(4);
		expect({
			files: await fileDigests(tb, files),
			secrets: await rawDigest(tb, '/registry/secrets/'),
			configmaps: await rawDigest(tb, '/registry/configmaps/'),
			starts: await tb.podStarts('kube-apiserver'),
		}).toEqual(before);
	});
});
}

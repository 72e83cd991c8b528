// etcd's own RBAC authentication on the real testbed (etcd 3.4 with client-cert-auth, a real
// kube-apiserver 1.20.2): refused before it starts when a connecting CN has no user; rolled
// back (auth disabled with the root password, the users it made removed) when kube-apiserver's
// certificate cannot read its prefix; enabled with kube-apiserver staying ready, a read-only
// monitoring user confined to its prefix, and a certificate whose CN has no user refused.
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {startTestbed, type Testbed} from '../testbed/index.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'dist', 'cli.js');
const PKI = '/etc/kubernetes/pki';
const PASSWORD_FILE = '/var/lib/etcd-harden/etcd-root-password';

type Run = {exitCode: number; stdout: string; stderr: string};
type Row = {stage: string; id: string; status: string; actual?: string};

async function cli(tb: Testbed, args: string[]): Promise<Run> {
	const result = await tb.exec([process.execPath, CLI, ...args], {reject: false, stdin: 'ignore', env: {CI: 'true'}});
	return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

/** etcdctl with a client certificate from the PKI (base name without .crt/.key). */
async function etcdctlAs(tb: Testbed, cert: string, args: string[]) {
	const result = await tb.exec(
		['etcdctl', '--endpoints=https://127.0.0.1:2379', `--cacert=${PKI}/etcd/ca.crt`, `--cert=${PKI}/${cert}.crt`, `--key=${PKI}/${cert}.key`, '--command-timeout=5s', ...args],
		{reject: false, stdin: 'ignore', env: {ETCDCTL_API: '3'}},
	);
	return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

/** Auth is off when a certificate whose CN (the node name) has no etcd user can still read. */
async function authEnabled(tb: Testbed): Promise<boolean> {
	const read = await etcdctlAs(tb, 'etcd/peer', ['get', '/registry/namespaces/default', '--keys-only']);
	return read.exitCode !== 0;
}

async function users(tb: Testbed): Promise<string[]> {
	const list = await etcdctlAs(tb, 'etcd/healthcheck-client', ['user', 'list']);
	expect(list.exitCode, list.stderr).toBe(0);
	return list.stdout.split('\n').map(line => line.trim()).filter(Boolean).sort();
}

let tb: Testbed;

beforeAll(async () => {
	tb = await startTestbed({secrets: 20, configMaps: 5, namespaces: 1});
});

afterAll(async () => {
	await tb?.stop();
});

describe('etcd RBAC authentication on the real testbed', () => {
	it('is refused before it starts when a connecting CN would have no user, naming the CN; nothing changes', async () => {
		const run = await cli(tb, ['--yes', '--plain', '--only', 'etcd-auth', '--set', 'etcd-auth.users=kube-etcd-healthcheck-client']);
		expect(run.exitCode, run.stderr.slice(-2000)).toBe(2);
		expect(run.stderr).toMatch(/auth enable would lock out CN "kube-apiserver-etcd-client" \(kube-apiserver's --etcd-certfile/);
		expect(run.stderr).toContain('--set etcd-auth.users=kube-etcd-healthcheck-client,kube-apiserver-etcd-client');
		expect(await users(tb)).toEqual([]);
		expect(await authEnabled(tb)).toBe(false);
		expect((await tb.exec(['test', '-e', PASSWORD_FILE], {reject: false})).exitCode).not.toBe(0);
	});

	it("rolled back when kube-apiserver's certificate cannot read its prefix: auth disabled as root, the users it made removed, exit 3", async () => {
		// kube-apiserver's CN already has a user, but one that may only read /other/.
		for (const args of [['role', 'add', 'limited'], ['role', 'grant-permission', 'limited', 'read', '/other/', '--prefix=true'], ['user', 'add', 'kube-apiserver-etcd-client', '--no-password'], ['user', 'grant-role', 'kube-apiserver-etcd-client', 'limited']]) {
			const result = await etcdctlAs(tb, 'etcd/healthcheck-client', args);
			expect(result.exitCode, result.stderr).toBe(0);
		}
		const run = await cli(tb, ['--yes', '--plain', '--only', 'etcd-auth', '--set', 'etcd-auth.users=kube-etcd-healthcheck-client', '--timeout', '10']);
		expect(run.exitCode, run.stderr.slice(-3000)).toBe(3);
		expect(run.stderr).toMatch(/kube-apiserver's certificate cannot read \/registry\/: .*permission denied/);
		expect(run.stderr).toMatch(/etcd authentication disabled again \(as root\)/);
		expect(run.stdout).toMatch(/etcd authentication: failed .*; its changes were undone/);
		expect(await authEnabled(tb)).toBe(false);
		// What the run created is gone (root, the health-check user); the operator's user stays.
		expect(await users(tb)).toEqual(['kube-apiserver-etcd-client']);
		expect((await tb.exec(['test', '-e', PASSWORD_FILE], {reject: false})).exitCode).not.toBe(0);
		expect(await tb.isReady()).toBe(true);
		for (const args of [['user', 'delete', 'kube-apiserver-etcd-client'], ['role', 'delete', 'limited']]) {
			expect((await etcdctlAs(tb, 'etcd/healthcheck-client', args)).exitCode).toBe(0);
		}
	});

	it('enables auth: kube-apiserver stays ready, monitoring reads only its prefix, an unknown CN is refused; a rerun changes nothing', async () => {
		expect((await etcdctlAs(tb, 'etcd/healthcheck-client', ['put', '/monitoring/probe', 'ok'])).exitCode).toBe(0);
		const run = await cli(tb, ['--yes', '--plain', '--only', 'etcd-auth', '--set', 'etcd-auth.monitoring=true', '--set', 'etcd-auth.monitoringPrefix=/monitoring/']);
		expect(run.exitCode, run.stderr.slice(-3000)).toBe(0);
		expect(run.stdout).toContain('etcd authentication: applied and verified.');

		// The root password: 0600, never printed, and it is root's.
		const stat = await tb.exec(['stat', '-c', '%a %u', PASSWORD_FILE]);
		expect(String(stat.stdout).trim()).toBe('600 0');
		const password = (await tb.readFile(PASSWORD_FILE, 'utf8')).trim();
		expect(password.length).toBeGreaterThanOrEqual(24);
		const journal = await tb.exec(['sh', '-c', 'cat /var/lib/etcd-harden/runs/*/journal.jsonl']);
		for (const text of [run.stdout, run.stderr, String(journal.stdout)]) expect(text).not.toContain(password);
		const asRoot = await tb.exec(['etcdctl', '--endpoints=https://127.0.0.1:2379', `--cacert=${PKI}/etcd/ca.crt`, `--cert=${PKI}/etcd/peer.crt`, `--key=${PKI}/etcd/peer.key`, '--user=root', `--password=${password}`, 'user', 'list'], {
			reject: false,
			stdin: 'ignore',
			env: {ETCDCTL_API: '3'},
		});
		expect(asRoot.exitCode, String(asRoot.stderr)).toBe(0);

		expect(await authEnabled(tb)).toBe(true);
		const refused = await etcdctlAs(tb, 'etcd/peer', ['get', '/registry/namespaces/default', '--keys-only']);
		expect(refused.stderr).toMatch(/user name not found|permission denied|user name is empty/);
		expect(await users(tb)).toEqual(['etcd-monitor', 'kube-apiserver-etcd-client', 'kube-etcd-healthcheck-client', 'root']);

		// kube-apiserver keeps working: ready, and it reads and writes through etcd.
		expect(await tb.isReady()).toBe(true);
		expect((await tb.kubectl(['-n', 'default', 'create', 'secret', 'generic', 'after-auth', '--from-literal=k=v'], {reject: false})).exitCode).toBe(0);
		expect(String((await tb.kubectl(['-n', 'default', 'get', 'secret', 'after-auth', '-o', 'name'])).stdout).trim()).toBe('secret/after-auth');
		expect((await tb.etcdctl(['endpoint', 'health'], {reject: false, stdin: 'ignore'})).exitCode).toBe(0);

		// The monitoring user (its own certificate, CN etcd-monitor) reads its prefix only.
		const stat2 = await tb.exec(['stat', '-c', '%a', `${PKI}/etcd/etcd-monitor.key`]);
		expect(String(stat2.stdout).trim()).toBe('600');
		const read = await etcdctlAs(tb, 'etcd/etcd-monitor', ['get', '/monitoring/', '--prefix']);
		expect(read.exitCode, read.stderr).toBe(0);
		expect(read.stdout).toContain('/monitoring/probe');
		const write = await etcdctlAs(tb, 'etcd/etcd-monitor', ['put', '/monitoring/x', 'y']);
		expect(write.exitCode).not.toBe(0);
		expect(write.stderr).toMatch(/permission denied/);
		const outside = await etcdctlAs(tb, 'etcd/etcd-monitor', ['get', '/registry/namespaces/default']);
		expect(outside.exitCode).not.toBe(0);
		expect(outside.stderr).toMatch(/permission denied/);

		const status = await cli(tb, ['status', '--json', '--only', 'etcd-auth']);
		const rows = new Map((JSON.parse(status.stdout) as Row[]).map(row => [row.id, row]));
		for (const id of ['etcd.auth.enabled', 'etcd.auth.client-users', 'etcd.auth.root', 'etcd.auth.root-password-file']) {
			expect(rows.get(id)?.status, `${id}: ${JSON.stringify(rows.get(id))}`).toBe('PASS');
		}

		const again = await cli(tb, ['--yes', '--plain', '--only', 'etcd-auth', '--set', 'etcd-auth.monitoring=true', '--set', 'etcd-auth.monitoringPrefix=/monitoring/']);
		expect(again.exitCode, again.stderr.slice(-2000)).toBe(0);
		expect(again.stdout).toContain('etcd authentication: already in place, nothing changed.');
		expect((await tb.readFile(PASSWORD_FILE, 'utf8')).trim()).toBe(password);
	});
});

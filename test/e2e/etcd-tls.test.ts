// etcd transport security on the real testbed: a real etcd 3.4 started with weak flags (no
// client-cert-auth, auto-tls, no peer client-cert-auth), status failing the right CIS ids,
// a fix that breaks etcd (a certificate path etcd cannot read) rolled back with exit 3, and
// the fix that works: real connections prove plaintext and certificate-less clients are
// refused, the apiserver's certificate is accepted, and the peer port demands a certificate.
import {createHash} from 'node:crypto';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {etcdManifest, startTestbed, type Testbed} from '../testbed/index.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'dist', 'cli.js');
const MANIFEST = '/etc/kubernetes/manifests/etcd.yaml';
const PKI = '/etc/kubernetes/pki';
const POD_CERTS = '/etc/kubernetes/pki/etcd-pod';

type Run = {exitCode: number; stdout: string; stderr: string};
type Row = {stage: string; id: string; status: string; actual?: string; remediation?: string};

async function cli(tb: Testbed, args: string[]): Promise<Run> {
	const result = await tb.exec([process.execPath, CLI, ...args], {reject: false, stdin: 'ignore', env: {CI: 'true'}});
	return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

async function status(tb: Testbed): Promise<Map<string, Row>> {
	const run = await cli(tb, ['status', '--json', '--only', 'etcd-tls']);
	const rows = JSON.parse(run.stdout) as Row[];
	return new Map(rows.map(row => [row.id, row]));
}

async function sha(tb: Testbed, file: string): Promise<string> {
	return createHash('sha256').update(await tb.readFile(file)).digest('hex');
}

/** HTTP status from curl, or "000" when the connection or the TLS handshake failed. */
async function curl(tb: Testbed, args: string[]): Promise<string> {
	const result = await tb.exec(['curl', '-s', '--http1.1', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', ...args], {reject: false, stdin: 'ignore'});
	return String(result.stdout).trim();
}

async function etcdctlWith(tb: Testbed, cert: string, key: string, args: string[]) {
	return tb.exec(['etcdctl', '--endpoints=https://127.0.0.1:2379', `--cacert=${PKI}/etcd/ca.crt`, `--cert=${cert}`, `--key=${key}`, '--command-timeout=5s', ...args], {
		reject: false,
		stdin: 'ignore',
		env: {ETCDCTL_API: '3'},
	});
}

/** kubeadm's etcd manifest, weakened; the certificates come from POD_CERTS (which lacks ca.crt). */
function weakManifest(tb: Testbed): string {
	const lines = etcdManifest({nodeName: tb.nodeName, nodeIp: tb.nodeIp})
		.split('\n')
		.filter(line => !/--(trusted-ca-file|peer-trusted-ca-file|peer-client-cert-auth)=/.test(line))
		.map(line => line.replace('--client-cert-auth=true', '--client-cert-auth=false'));
	const text = lines.join('\n').replace(`      path: ${PKI}/etcd\n      type: DirectoryOrCreate\n    name: etcd-certs`, `      path: ${POD_CERTS}\n      type: DirectoryOrCreate\n    name: etcd-certs`);
	return text
		.replace('    - --snapshot-count=10000\n', '    - --snapshot-count=10000\n    - --auto-tls=true\n    - --peer-auto-tls=true\n')
		.replace('spec:\n', '# weakened for the test: keep this comment\nspec:\n');
}

let tb: Testbed;

beforeAll(async () => {
	tb = await startTestbed({secrets: 20, configMaps: 5, namespaces: 1});
	// The etcd pod sees its certificates from a copy that has no CA: the path the fix will
	// name for --trusted-ca-file exists on the node but not inside the pod.
	await tb.exec(['sh', '-c', `mkdir -p ${POD_CERTS} && cp ${PKI}/etcd/server.* ${PKI}/etcd/peer.* ${POD_CERTS}/`], {stdin: 'ignore'});
	const starts = await tb.podStarts('etcd');
	await tb.writeFile(MANIFEST, weakManifest(tb), {mode: 0o600});
	await tb.waitForPodStarts('etcd', starts + 1, 60_000);
	await tb.waitForReady(120_000);
});

afterAll(async () => {
	await tb?.stop();
});

describe('etcd transport security on a real etcd with weak flags', () => {
	it('status fails the CIS ids of the weak flags, from the manifest and from real connections', async () => {
		// The weakness is real: a client without a certificate is served.
		expect(await curl(tb, ['-k', 'https://127.0.0.1:2379/version'])).toBe('200');
		expect(await curl(tb, ['-k', `https://${tb.nodeIp}:2380/version`])).toBe('200');
		const rows = await status(tb);
		for (const id of ['2.2', '2.3', '2.5', '2.6', '2.7', 'etcd.conn.no-client-cert', 'etcd.conn.peer-cert']) {
			expect(rows.get(id)?.status, `${id}: ${JSON.stringify(rows.get(id))}`).toBe('FAIL');
			expect(rows.get(id)?.remediation).toBeTruthy();
		}
		for (const id of ['2.1', '2.4', '1.2.24', '1.2.27', 'apiserver.etcd-servers-https', 'etcd.client-urls-https', 'etcd.conn.plaintext', 'etcd.conn.apiserver-cert']) {
			expect(rows.get(id)?.status, `${id}: ${JSON.stringify(rows.get(id))}`).toBe('PASS');
		}
		expect(rows.get('2.2')?.actual).toBe('--client-cert-auth=false');
		expect(rows.get('etcd.cert.server.expiry')?.status).toBe('PASS');
		expect(rows.get('etcd.cert.server.sans')?.status).toBe('PASS');
		expect(rows.get('etcd.cert.apiserverClient.key-usage')?.status).toBe('PASS');
		// The CIS status of the weak node is a failure for monitoring.
		const run = await cli(tb, ['status', '--only', 'etcd-tls']);
		expect(run.exitCode).toBe(1);
		expect(run.stdout).toMatch(/FAIL\s+2\.2\s/);
	});

	it('a fix that breaks etcd (a CA path etcd cannot read) is rolled back: manifest restored, etcd and apiserver healthy, exit 3', async () => {
		const before = await sha(tb, MANIFEST);
		const starts = await tb.podStarts('etcd');
		const run = await cli(tb, ['--yes', '--plain', '--only', 'etcd-tls', '--timeout', '30']);
		expect(run.exitCode, run.stderr.slice(-3000)).toBe(3);
		expect(run.stderr).toMatch(/etcd did not restart healthy with kube-apiserver ready within 30 s/);
		expect(run.stderr).toMatch(/Last lines of \/var\/log\/pods\/kube-system_etcd-/);
		expect(run.stdout).toMatch(/etcd transport security: failed .*; its changes were undone/);
		expect(await sha(tb, MANIFEST)).toBe(before);
		// etcd really ran with the fix and again with the restored manifest.
		expect(await tb.podStarts('etcd')).toBeGreaterThanOrEqual(starts + 2);
		expect(await tb.isReady()).toBe(true);
		expect((await tb.etcdctl(['endpoint', 'health'], {reject: false, stdin: 'ignore'})).exitCode).toBe(0);
		// Still the weak etcd: nothing half-applied.
		expect(await curl(tb, ['-k', 'https://127.0.0.1:2379/version'])).toBe('200');
	});

	it('the fix: every flag set, comments kept, connections refused without a certificate, the apiserver accepted; a rerun changes nothing', async () => {
		await tb.exec(['cp', `${PKI}/etcd/ca.crt`, `${POD_CERTS}/ca.crt`], {stdin: 'ignore'});
		const before = await tb.readFile(MANIFEST, 'utf8');
		const run = await cli(tb, ['--yes', '--plain', '--only', 'etcd-tls']);
		expect(run.exitCode, run.stderr.slice(-3000)).toBe(0);
		expect(run.stdout).toContain('etcd transport security: applied and verified.');
		expect(run.stderr).toMatch(/etcd restarted and is healthy; kube-apiserver is ready/);

		const after = await tb.readFile(MANIFEST, 'utf8');
		expect(after).toContain('# weakened for the test: keep this comment');
		for (const flag of ['--client-cert-auth=true', '--auto-tls=false', '--peer-auto-tls=false', '--peer-client-cert-auth=true', `--trusted-ca-file=${PKI}/etcd/ca.crt`, `--peer-trusted-ca-file=${PKI}/etcd/ca.crt`]) {
			expect(after).toContain(`- ${flag}\n`);
		}
		// Only flag lines changed or were added; every other line stays, in order.
		const kept = before.split('\n').filter(line => !/--(client-cert-auth|auto-tls|peer-auto-tls)=/.test(line));
		const afterLines = after.split('\n');
		let at = 0;
		for (const line of kept) {
			at = afterLines.indexOf(line, at);
			expect(at, line).toBeGreaterThanOrEqual(0);
		}

		// Real connections.
		expect(await curl(tb, ['http://127.0.0.1:2379/version'])).not.toBe('200');
		expect(await curl(tb, ['-k', 'https://127.0.0.1:2379/version'])).toBe('000');
		expect(await curl(tb, ['-k', `https://${tb.nodeIp}:2379/version`])).toBe('000');
		expect(await curl(tb, ['-k', `https://${tb.nodeIp}:2380/version`])).toBe('000');
		expect(await curl(tb, ['-k', '--cert', `${PKI}/etcd/peer.crt`, '--key', `${PKI}/etcd/peer.key`, `https://${tb.nodeIp}:2380/version`])).toBe('200');
		const apiserver = await etcdctlWith(tb, `${PKI}/apiserver-etcd-client.crt`, `${PKI}/apiserver-etcd-client.key`, ['get', '/registry/namespaces/default', '--keys-only']);
		expect(apiserver.exitCode, String(apiserver.stderr)).toBe(0);
		expect(String(apiserver.stdout)).toContain('/registry/namespaces/default');
		expect(await tb.isReady()).toBe(true);

		const rows = await status(tb);
		for (const id of ['2.1', '2.2', '2.3', '2.4', '2.5', '2.6', '2.7', 'etcd.conn.plaintext', 'etcd.conn.no-client-cert', 'etcd.conn.apiserver-cert', 'etcd.conn.peer-cert']) {
			expect(rows.get(id)?.status, `${id}: ${JSON.stringify(rows.get(id))}`).toBe('PASS');
		}
		// Everything but encryption at rest (CIS 1.2.28, other stages) passes.
		expect([...rows.values()].filter(row => row.status === 'FAIL' && !row.id.startsWith('1.2.28'))).toEqual([]);

		const starts = await tb.podStarts('etcd');
		const again = await cli(tb, ['--yes', '--plain', '--only', 'etcd-tls']);
		expect(again.exitCode, again.stderr.slice(-2000)).toBe(0);
		expect(again.stdout).toContain('etcd transport security: already in place, nothing changed.');
		expect(await tb.readFile(MANIFEST, 'utf8')).toBe(after);
		expect(await tb.podStarts('etcd')).toBe(starts);
	});
});

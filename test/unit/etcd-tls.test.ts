// The etcd transport-security audit and fix as pure logic: manifests and certificates in,
// CIS checks and a manifest patch out. Certificates are real (made with openssl once).
import {execFileSync} from 'node:child_process';
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {InputError, type Check} from '../../source/engine/contract.js';
import {coversHost, daysLeft, parseCertificate, parseSubjectAltName} from '../../source/etcd/certs.js';
import {certificateChecks, encryptionChecks, etcdFlagChecks, planTlsFix, tlsAudit} from '../../source/etcd/tls.js';
import {discover} from '../../source/discover/files.js';
import {etcdTlsStage, metricsUrl} from '../../source/stages/etcd-tls.js';
import type {Facts} from '../../source/stages/facts.js';
import {countingBytes, MemoryHost} from './helpers/memory-host.js';

const demoDir = fileURLToPath(new URL('../../demo/', import.meta.url));
const ETCD = '/etc/kubernetes/manifests/etcd.yaml';
const API = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const PKI = '/etc/kubernetes/pki';

let dir: string;
const pem: Record<string, string> = {};

function openssl(args: string[]): void {
	execFileSync('openssl', args, {stdio: ['ignore', 'ignore', 'pipe']});
}

/** A CA, and leaves signed by it (EC keys: fast), like kubeadm's etcd PKI. */
function makeCert(name: string, subject: string, ca?: string, ext = '', days = 365): void {
	const key = join(dir, `${name}.key`);
	const crt = join(dir, `${name}.crt`);
	const cnf = join(dir, `${name}.cnf`);
	writeFileSync(cnf, `[req]\ndistinguished_name = dn\n[dn]\n[ext]\n${ext || 'basicConstraints = critical,CA:TRUE'}\n`);
	openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
	const args = ['req', '-x509', '-new', '-key', key, '-subj', subject, '-days', String(days), '-config', cnf, '-extensions', 'ext', '-out', crt];
	if (ca) args.push('-CA', join(dir, `${ca}.crt`), '-CAkey', join(dir, `${ca}.key`));
	openssl(args);
	pem[name] = readFileSync(crt, 'utf8');
}

beforeAll(() => {
	dir = mkdtempSync(join(tmpdir(), 'etcd-tls-unit-'));
	const leaf = (eku: string, san?: string) => `basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = ${eku}${san ? `\nsubjectAltName = ${san}` : ''}`;
	makeCert('etcd-ca', '/CN=etcd-ca');
	makeCert('kube-ca', '/CN=kubernetes');
	makeCert('server', '/CN=demo-node', 'etcd-ca', leaf('serverAuth,clientAuth', 'DNS:demo-node,DNS:localhost,IP:10.0.0.10,IP:127.0.0.1,IP:::1'));
	makeCert('peer', '/CN=demo-node', 'etcd-ca', leaf('serverAuth,clientAuth', 'DNS:demo-node,IP:10.0.0.10'));
	makeCert('apiserver-etcd-client', '/O=system:masters/CN=kube-apiserver-etcd-client', 'etcd-ca', leaf('clientAuth'));
	makeCert('healthcheck', '/O=system:masters/CN=kube-etcd-healthcheck-client', 'etcd-ca', leaf('clientAuth'));
	makeCert('short', '/CN=short-lived', 'etcd-ca', leaf('serverAuth', 'IP:127.0.0.1'), 5);
	makeCert('client-only', '/CN=wrong-usage', 'etcd-ca', leaf('clientAuth', 'IP:127.0.0.1,IP:10.0.0.10'));
	makeCert('foreign', '/CN=foreign', 'kube-ca', leaf('clientAuth'));
});

afterAll(() => {
	rmSync(dir, {recursive: true, force: true});
});

/** The demo tree with real certificates in place of its placeholders. */
function demoHost(): MemoryHost {
	const host = MemoryHost.fromDir(demoDir);
	host.put(`${PKI}/etcd/ca.crt`, pem['etcd-ca']!, 0o644);
	host.put(`${PKI}/ca.crt`, pem['kube-ca']!, 0o644);
	host.put(`${PKI}/etcd/server.crt`, pem['server']!, 0o644);
	host.put(`${PKI}/etcd/peer.crt`, pem['peer']!, 0o644);
	host.put(`${PKI}/apiserver-etcd-client.crt`, pem['apiserver-etcd-client']!, 0o644);
	host.put(`${PKI}/etcd/healthcheck-client.crt`, pem['healthcheck']!, 0o644);
	return host;
}

/** Edit the etcd manifest's flag lines. */
function editFlags(host: MemoryHost, edit: (lines: string[]) => string[], file = ETCD): void {
	host.put(file, edit(host.text(file)!.split('\n')).join('\n'), 0o600);
}

const weaken = (lines: string[]) =>
	lines
		.filter(line => !/--(peer-client-cert-auth|trusted-ca-file)=/.test(line))
		.map(line => line.replace('--client-cert-auth=true', '--client-cert-auth=false'))
		.flatMap(line => (line.includes('--snapshot-count') ? [line, '    - --auto-tls=true', '    - --peer-auto-tls=true'] : [line]));

function byId(checks: Check[]): Map<string, Check> {
	return new Map(checks.map(check => [check.id, check]));
}

const now = new Date();

describe('certificates', () => {
	it('parses CN, issuer, SANs, extended key usage and verifies the issuer', () => {
		const info = parseCertificate('/x/server.crt', pem['server'], pem['etcd-ca']);
		expect(info).toMatchObject({subjectCN: 'demo-node', issuerCN: 'etcd-ca', isCA: false, dnsNames: ['demo-node', 'localhost'], ips: ['10.0.0.10', '127.0.0.1', '::1'], extendedKeyUsage: ['serverAuth', 'clientAuth']});
		expect(info.verifiedBy).toBe(parseCertificate('/x/ca.crt', pem['etcd-ca']).fingerprint256);
		expect(parseCertificate('/x/foreign.crt', pem['foreign'], pem['etcd-ca']).verifiedBy).toBeUndefined();
		expect(daysLeft(info, now)).toBeGreaterThanOrEqual(363);
		expect(coversHost(info, '127.0.0.1')).toBe(true);
		expect(coversHost(info, '[::1]')).toBe(true);
		expect(coversHost(info, '10.0.0.11')).toBe(false);
		expect(coversHost(info, 'DEMO-node')).toBe(true);
	});

	it('reports a missing or non-PEM file instead of throwing', () => {
		expect(parseCertificate('/x/a.crt', undefined).error).toBe('/x/a.crt does not exist');
		expect(parseCertificate('/x/a.crt', 'placeholder').error).toMatch(/^\/x\/a\.crt is not a PEM certificate/);
	});

	it('reads subjectAltName text, wildcards match one label', () => {
		expect(parseSubjectAltName('DNS:*.etcd.local, IP Address:0:0:0:0:0:0:0:1')).toEqual({dnsNames: ['*.etcd.local'], ips: ['::1']});
		const info = {path: 'x', dnsNames: ['*.etcd.local']};
		expect(coversHost(info, 'a.etcd.local')).toBe(true);
		expect(coversHost(info, 'a.b.etcd.local')).toBe(false);
	});
});

describe('the audit (CIS Kubernetes Benchmark v1.8.0 ids)', () => {
	it('a kubeadm node passes 2.1-2.7, 1.2.24, 1.2.27 and every certificate check; no encryption fails 1.2.28', async () => {
		const checks = byId(tlsAudit(await discover(demoHost()), now));
		for (const id of ['2.1', '2.2', '2.3', '2.4', '2.5', '2.6', '2.7', '1.2.24', '1.2.27', 'apiserver.etcd-servers-https', 'etcd.client-urls-https', 'etcd.peer-urls-https']) {
			expect(checks.get(id)?.status, id).toBe('pass');
		}
		for (const [id, check] of checks) if (id.startsWith('etcd.cert.')) expect(check.status, `${id}: ${check.actual}`).toBe('pass');
		expect(checks.get('1.2.28')?.status).toBe('fail');
		expect(checks.has('1.2.29')).toBe(false);
		// No live etcd (--root): no connection checks.
		expect([...checks.keys()].some(id => id.startsWith('etcd.conn.'))).toBe(false);
	});

	it('weak flags fail exactly the matching ids, each with a remediation', async () => {
		const host = demoHost();
		editFlags(host, weaken);
		const checks = byId(etcdFlagChecks(await discover(host)));
		const failed = [...checks.values()].filter(check => check.status !== 'pass').map(check => check.id);
		expect(failed).toEqual(['2.2', '2.3', '2.5', '2.6', '2.7']);
		for (const id of failed) expect(checks.get(id)?.remediation).toBeTruthy();
		expect(checks.get('2.3')?.actual).toBe('--auto-tls=true');
	});

	it('2.7 fails when etcd trusts the Kubernetes CA (same file or same certificate)', async () => {
		const host = demoHost();
		editFlags(host, lines => lines.map(line => line.replace('--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt', '--trusted-ca-file=/etc/kubernetes/pki/ca.crt')));
		expect(byId(etcdFlagChecks(await discover(host))).get('2.7')).toMatchObject({status: 'fail', actual: expect.stringContaining("is the apiserver's --client-ca-file")});
		const copy = demoHost();
		copy.put(`${PKI}/etcd/ca.crt`, pem['kube-ca']!, 0o644);
		expect(byId(etcdFlagChecks(await discover(copy))).get('2.7')?.status).toBe('fail');
	});

	it('http client URLs and wildcard listeners are reported', async () => {
		const host = demoHost();
		editFlags(host, lines => lines.map(line => line.replace('--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.10:2379', '--listen-client-urls=http://0.0.0.0:2379')));
		const checks = byId(etcdFlagChecks(await discover(host)));
		expect(checks.get('etcd.client-urls-https')).toMatchObject({status: 'fail', actual: 'not https: http://0.0.0.0:2379'});
		expect(checks.get('etcd.client-urls-scope')?.status).toBe('warn');
	});

	it('the apiserver without etcd client flags fails 1.2.24, 1.2.27 and https --etcd-servers', async () => {
		const host = demoHost();
		editFlags(host, lines => lines.filter(line => !/--etcd-(certfile|keyfile|cafile)=/.test(line)).map(line => line.replace('--etcd-servers=https://', '--etcd-servers=http://')), API);
		const checks = byId(tlsAudit(await discover(host), now));
		expect(checks.get('1.2.24')?.status).toBe('fail');
		expect(checks.get('1.2.27')?.status).toBe('fail');
		expect(checks.get('apiserver.etcd-servers-https')?.status).toBe('fail');
	});

	it('certificates: near expiry warns, missing SANs and key usage fail, a foreign issuer fails', async () => {
		const host = demoHost();
		host.put(`${PKI}/etcd/server.crt`, pem['short']!, 0o644);
		host.put(`${PKI}/etcd/peer.crt`, pem['client-only']!, 0o644);
		host.put(`${PKI}/apiserver-etcd-client.crt`, pem['foreign']!, 0o644);
		const checks = byId(certificateChecks(await discover(host), now));
		expect(checks.get('etcd.cert.server.expiry')?.status).toBe('warn');
		expect(checks.get('etcd.cert.server.sans')).toMatchObject({status: 'fail', actual: expect.stringContaining('lacks 10.0.0.10')});
		expect(checks.get('etcd.cert.peer.key-usage')?.status).toBe('fail');
		expect(checks.get('etcd.cert.apiserverClient.issuer')?.status).toBe('fail');
		expect(checks.get('etcd.cert.healthcheckClient.issuer')?.status).toBe('pass');
		const later = byId(certificateChecks(await discover(host), new Date(Date.now() + 10 * 86_400_000)));
		expect(later.get('etcd.cert.server.expiry')).toMatchObject({status: 'fail', actual: expect.stringContaining('expired')});
	});

	it('1.2.29: only identity fails, aescbc/aesgcm first warns, secretbox passes', () => {
		const base = {apiserver: {exists: true, flags: {'encryption-provider-config': '/e.yaml'}}, encryption: {path: '/e.yaml', exists: true, errors: [], mountedInPod: true}} as unknown as Facts;
		const withProviders = (providers: unknown[]) =>
			byId(encryptionChecks({...base, encryption: {...base.encryption, config: {apiVersion: 'v1', kind: 'EncryptionConfiguration', resources: [{resources: ['secrets'], providers}]}}} as Facts)).get('1.2.29');
		expect(withProviders([{type: 'identity'}])?.status).toBe('fail');
		expect(withProviders([{type: 'identity'}, {type: 'secretbox', keys: [{name: 'k', secret: 'x'}]}])?.status).toBe('fail');
		expect(withProviders([{type: 'aescbc', keys: [{name: 'k', secret: 'x'}]}, {type: 'identity'}])?.status).toBe('warn');
		expect(withProviders([{type: 'aesgcm', keys: [{name: 'k', secret: 'x'}]}])?.status).toBe('warn');
		expect(withProviders([{type: 'secretbox', keys: [{name: 'k', secret: 'x'}]}, {type: 'identity'}])?.status).toBe('pass');
	});
});

describe('the fix', () => {
	const context = {randomBytes: countingBytes().randomBytes, now: new Date(0)};

	it('sets the missing flags in place, keeps comments and order; a second plan changes nothing', async () => {
		const host = demoHost();
		editFlags(host, lines => ['# operator comment', ...weaken(lines)]);
		const before = host.text(ETCD)!;
		const plan = etcdTlsStage.plan(await discover(host), {restrictClientUrls: false}, context);
		expect(plan.changes).toHaveLength(1); // --root: no live etcd, no restart gate
		const write = plan.changes[0]!;
		if (write.kind !== 'write-file') throw new Error('expected a write');
		expect(write.path).toBe(ETCD);
		expect(write.summary).toContain('--client-cert-auth=true (CIS 2.2)');
		const after = write.content;
		expect(after.startsWith('# operator comment\n')).toBe(true);
		for (const flag of ['--client-cert-auth=true', '--auto-tls=false', '--peer-auto-tls=false', '--peer-client-cert-auth=true', `--trusted-ca-file=${PKI}/etcd/ca.crt`]) expect(after).toContain(`- ${flag}\n`);
		// The flag that was there changed in place.
		expect(after.split('\n').indexOf('    - --client-cert-auth=true')).toBe(before.split('\n').indexOf('    - --client-cert-auth=false'));
		host.put(ETCD, after);
		expect(etcdTlsStage.plan(await discover(host), {restrictClientUrls: false}, context).changes).toEqual([]);
		expect(etcdTlsStage.verify(await discover(host), {}).filter(check => check.status === 'fail')).toEqual([]);
	});

	it('restricts --listen-client-urls to loopback and the node address on request', async () => {
		const host = demoHost();
		editFlags(host, lines => lines.map(line => line.replace('--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.10:2379', '--listen-client-urls=https://0.0.0.0:2379')));
		const fix = planTlsFix(await discover(host), {restrictClientUrls: true});
		expect(fix.problems).toEqual([]);
		expect(fix.patch.flags).toEqual({'listen-client-urls': 'https://127.0.0.1:2379,https://10.0.0.10:2379'});
		expect(planTlsFix(await discover(host), {restrictClientUrls: false}).patch.flags).toEqual({});
	});

	it('refuses when the apiserver would be locked out or a certificate is missing, naming the fix', async () => {
		const noClientCert = demoHost();
		editFlags(noClientCert, weaken);
		editFlags(noClientCert, lines => lines.filter(line => !/--etcd-(certfile|keyfile)=/.test(line)), API);
		const facts = await discover(noClientCert);
		expect(() => etcdTlsStage.plan(facts, {}, context)).toThrow(InputError);
		expect(() => etcdTlsStage.plan(facts, {}, context)).toThrow(/kube-apiserver has no --etcd-certfile/);

		const noCa = demoHost();
		editFlags(noCa, weaken);
		noCa.files.delete(`${PKI}/etcd/ca.crt`);
		const noCaFacts = await discover(noCa);
		expect(() => etcdTlsStage.plan(noCaFacts, {}, context)).toThrow(/--trusted-ca-file is not set and \/etc\/kubernetes\/pki\/etcd\/ca\.crt does not exist/);
	});

	it('with a live control plane the write is bracketed by the etcd restart gate', async () => {
		const host = demoHost();
		editFlags(host, weaken);
		const facts: Facts = {...(await discover(host)), cluster: {kubeconfig: '/etc/kubernetes/admin.conf', reachable: true, ready: true}};
		const plan = etcdTlsStage.plan(facts, {}, {...context, settings: {gateTimeoutSeconds: 42}});
		expect(plan.changes.map(change => (change.kind === 'task' ? `${change.task}:${String(change.params['phase'])}` : change.kind))).toEqual(['etcd-restart-gate:before', 'write-file', 'etcd-restart-gate:after']);
		const gate = plan.changes[2]!;
		expect(gate.kind === 'task' && gate.params).toMatchObject({
			timeoutSeconds: 42,
			metricsUrl: 'http://127.0.0.1:2381/metrics',
			health: {endpoints: ['https://127.0.0.1:2379'], cacert: `${PKI}/etcd/ca.crt`, cert: `${PKI}/etcd/healthcheck-client.crt`, key: `${PKI}/etcd/healthcheck-client.key`},
		});
		expect(metricsUrl(facts)).toBe('http://127.0.0.1:2381/metrics');
	});
});

/**
 * The raw at-rest scan against a REAL etcd (the release under test): plain http on loopback with
 * random ports and a temporary data dir, and a second etcd with kubeadm's mutual TLS (client
 * certificates required). Values in every stored format are written through etcd's own JSON
 * gateway (binary safe), then scanned through the tool's code paths - RealHost's gRPC range
 * reads (the default) and etcdctl (hosts without gRPC, and the fallback) - with small pages
 * across page boundaries, and decrypted.
 */
import {spawn, spawnSync, type ChildProcess} from 'node:child_process';
import {createCipheriv, randomBytes} from 'node:crypto';
import {mkdtemp, rm} from 'node:fs/promises';
import {createServer} from 'node:net';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import nacl from 'tweetnacl';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {RealHost} from '../../source/host/real.js';
import type {EtcdConnection} from '../../source/etcd/connection.js';
import {decryptValue} from '../../source/etcd/decrypt.js';
import {runEtcdctl} from '../../source/etcd/etcdctl.js';
import {defaultEtcdVersion, ETCD35_BIN_DIR} from '../testbed/paths.js';
import {generatePki} from '../testbed/pki.js';
import {request as httpsRequest} from 'node:https';
import {readFile} from 'node:fs/promises';
import type {Host} from '../../source/host/types.js';
import {scanIsClean, scanResources} from '../../source/etcd/scan.js';
import type {EncryptionConfig} from '../../source/stages/facts.js';

function have(command: string): boolean {
	return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

function ensureEtcdInstalled(): void {
	if (have('etcd') && have('etcdctl')) return;
	const install = spawnSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', 'etcd-server', 'etcd-client'], {
		stdio: 'inherit',
		env: {...process.env, DEBIAN_FRONTEND: 'noninteractive'},
	});
	if (install.status !== 0) throw new Error('apt-get install etcd-server etcd-client failed');
	// The package may start a system etcd on the default ports; this test wants none.
	spawnSync('sh', ['-c', 'systemctl disable --now etcd 2>/dev/null || service etcd stop 2>/dev/null || true']);
}

async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const server = createServer();
		server.once('error', reject);
		server.listen(0, '127.0.0.1', () => {
			const address = server.address();
			server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
		});
	});
}

// --- values in the exact kube-apiserver formats, made independently of source/etcd ---
const PROTO = Buffer.from('k8s\0');
function object(name: string): Buffer {
	// Not a full protobuf, but what matters here: the magic, then an object-sized body.
	return Buffer.concat([PROTO, Buffer.from(`\n\x0c\n\x02v1\x12\x06Secret\x12${name}`), randomBytes(200 + (name.length % 5) * 50)]);
}
function secretbox(keyName: string, key: Buffer, plain: Buffer): Buffer {
	const nonce = randomBytes(24);
	return Buffer.concat([Buffer.from(`k8s:enc:secretbox:v1:${keyName}:`), nonce, nacl.secretbox(plain, nonce, key)]);
}
function aesgcm(keyName: string, key: Buffer, plain: Buffer, etcdKey: string): Buffer {
	const nonce = randomBytes(12);
	const cipher = createCipheriv('aes-256-gcm', key, nonce);
	cipher.setAAD(Buffer.from(etcdKey));
	const body = Buffer.concat([cipher.update(plain), cipher.final()]);
	return Buffer.concat([Buffer.from(`k8s:enc:aesgcm:v1:${keyName}:`), nonce, body, cipher.getAuthTag()]);
}
function aescbc(keyName: string, key: Buffer, plain: Buffer): Buffer {
	const iv = randomBytes(16);
	const cipher = createCipheriv('aes-256-cbc', key, iv);
	return Buffer.concat([Buffer.from(`k8s:enc:aescbc:v1:${keyName}:`), iv, cipher.update(plain), cipher.final()]);
}

const key1 = randomBytes(32);
const key2 = randomBytes(32);
const gcmKey = randomBytes(32);
const cbcKey = randomBytes(32);
const retiredKey = randomBytes(32);
const config: EncryptionConfig = {
	apiVersion: 'apiserver.config.k8s.io/v1',
	kind: 'EncryptionConfiguration',
	resources: [
		{
			resources: ['secrets', 'configmaps'],
			providers: [
				{
					type: 'secretbox',
					keys: [
						{name: 'key1', secret: key1.toString('base64')},
						{name: 'key2', secret: key2.toString('base64')},
					],
				},
				{type: 'aesgcm', keys: [{name: 'gcm1', secret: gcmKey.toString('base64')}]},
				{type: 'aescbc', keys: [{name: 'cbc1', secret: cbcKey.toString('base64')}]},
				{type: 'identity'},
			],
		},
	],
};

type Seed = {key: string; value: Buffer; plain?: Buffer};
const seeds: Seed[] = [];
function add(key: string, make: (plain: Buffer, key: string) => Buffer, plain = object(key)): void {
	seeds.push({key, value: make(plain, key), plain});
}
const ns = (index: number): string => ['default', 'kube-system', 'team-a', 'team-b'][index % 4]!;
for (let index = 0; index < 40; index++) add(`/registry/secrets/${ns(index)}/app-${String(index).padStart(3, '0')}`, p => secretbox('key1', key1, p));
for (let index = 0; index < 6; index++) add(`/registry/secrets/${ns(index)}/old-${index}`, p => secretbox('key2', key2, p));
for (let index = 0; index < 4; index++) add(`/registry/secrets/${ns(index)}/gcm-${index}`, (p, k) => aesgcm('gcm1', gcmKey, p, k));
for (let index = 0; index < 3; index++) add(`/registry/secrets/${ns(index)}/cbc-${index}`, p => aescbc('cbc1', cbcKey, p));
for (let index = 0; index < 5; index++) add(`/registry/secrets/${ns(index)}/plain-${index}`, p => p);
add('/registry/secrets/default/json-0', () => Buffer.from('{"kind":"Secret","apiVersion":"v1","metadata":{"name":"json-0"}}'));
add('/registry/secrets/default/json-1', () => Buffer.from('{"kind":"Secret","apiVersion":"v1","metadata":{"name":"json-1"}}'));
add('/registry/secrets/default/retired', p => secretbox('retired', retiredKey, p));
add('/registry/secrets/default/garbage', () => Buffer.from([0x01, 0x02, 0x03, 0x00, 0xff]));
add('/registry/secrets/default/wrongkey', p => secretbox('key1', key2, p)); // claims key1, made with key2
for (let index = 0; index < 9; index++) add(`/registry/configmaps/${ns(index)}/cm-${index}`, p => (index < 6 ? secretbox('key1', key1, p) : p));
// Neighbours that a prefix scan of secrets must not pick up.
add('/registry/secrets', p => p);
add('/registry/secretsx/default/a', p => p);
add('/registry/serviceaccounts/default/default', p => p);
// Namespace objects: over gRPC the scan bounds its reads between namespaces (kube-system has no
// object here, so its secrets lie in a segment between two others: still scanned).
for (const name of ['default', 'team-a', 'team-b']) add(`/registry/namespaces/${name}`, p => p);

const SECRET_TOTAL = 40 + 6 + 4 + 3 + 5 + 2 + 1 + 1 + 1; // 63

let etcd: ChildProcess | undefined;
let dataDir: string | undefined;
let connection: EtcdConnection;
let gateway: string;
// The etcd release under test (ETCD_HARDEN_TEST_ETCD, see test/testbed/paths.ts): with 3.5 the
// cached trixie binaries come first on PATH, for the etcd started here and the tool's etcdctl.
const ETCD_VERSION = defaultEtcdVersion();
if (ETCD_VERSION === '3.5') process.env['PATH'] = `${ETCD35_BIN_DIR}:${process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`;

const host = new RealHost('/');

async function put(entries: Seed[]): Promise<void> {
	// etcd's default --max-txn-ops is 128.
	for (let start = 0; start < entries.length; start += 100) {
		const success = entries.slice(start, start + 100).map(entry => ({
			requestPut: {key: Buffer.from(entry.key).toString('base64'), value: entry.value.toString('base64')},
		}));
		const response = await fetch(`${gateway}/v3/kv/txn`, {method: 'POST', body: JSON.stringify({success})});
		if (!response.ok) throw new Error(`etcd txn failed: ${response.status} ${await response.text()}`);
	}
}

/** A host that counts how pages were read: gRPC calls and etcdctl runs. */
function countingHost(inner: RealHost, withGrpc = true): {host: Host; counts: {grpc: number; etcdctl: number}} {
	const counts = {grpc: 0, etcdctl: 0};
	const host = Object.create(inner) as Host;
	host.run = async (argv, options) => {
		if (argv[0] === 'etcdctl') counts.etcdctl++;
		return inner.run(argv, options);
	};
	host.grpcUnary = withGrpc
		? async request => {
				counts.grpc++;
				return inner.grpcUnary(request);
			}
		: undefined;
	return {host, counts};
}

/** Start an etcd on loopback (extra flags for TLS); resolves once /health answers. */
async function startEtcd(name: string, dir: string, scheme: 'http' | 'https', extra: string[], health: () => Promise<boolean>, url?: (client: string) => void): Promise<ChildProcess> {
	const [clientPort, peerPort] = [await freePort(), await freePort()];
	const client = `${scheme}://127.0.0.1:${clientPort}`;
	const peer = `http://127.0.0.1:${peerPort}`;
	url?.(client);
	const child = spawn(
		'etcd',
		[
			`--name=${name}`,
			`--data-dir=${join(dir, 'data')}`,
			`--listen-client-urls=${client}`,
			`--advertise-client-urls=${client}`,
			`--listen-peer-urls=${peer}`,
			`--initial-advertise-peer-urls=${peer}`,
			`--initial-cluster=${name}=${peer}`,
			'--log-level=warn',
			...extra,
		],
		{stdio: ['ignore', 'ignore', 'pipe']},
	);
	let log = '';
	child.stderr?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-4000)));
	const deadline = Date.now() + 30_000;
	for (;;) {
		if (await health()) return child;
		if (child.exitCode !== null || Date.now() > deadline) throw new Error(`etcd did not start:\n${log}`);
		await new Promise(resolve => setTimeout(resolve, 200));
	}
}

async function stopEtcd(child: ChildProcess | undefined): Promise<void> {
	if (child?.pid === undefined || child.exitCode !== null) return;
	const exited = new Promise(resolve => child.once('exit', resolve));
	child.kill('SIGTERM');
	await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 10_000))]);
	if (child.exitCode === null) child.kill('SIGKILL');
}

/** What every scan of the seeded secrets must report, however it reads the pages. */
function expectSeededSecrets(secrets: unknown, label: string): void {
	expect(secrets, label).toMatchObject({
		prefix: '/registry/secrets/',
		total: SECRET_TOTAL,
		byKey: {'secretbox:key1': 41, 'secretbox:key2': 6, 'aesgcm:gcm1': 4, 'aescbc:cbc1': 3, 'secretbox:retired': 1},
		plaintext: 7,
		unknown: 1,
		unknownKeys: ['/registry/secrets/default/garbage'],
		keyNotInConfig: 1,
		keyNotInConfigKeys: ['/registry/secrets/default/retired'],
		primary: 'secretbox:key1',
		consistent: true,
	});
	const expectedOff = seeds
		.filter(seed => seed.key.startsWith('/registry/secrets/'))
		.filter(seed => !seed.value.subarray(0, 26).equals(Buffer.from('k8s:enc:secretbox:v1:key1:')))
		.map(seed => seed.key)
		.sort();
	expect(expectedOff).toHaveLength(SECRET_TOTAL - 41);
	expect((secrets as {notOnPrimary: Array<{key: string}>}).notOnPrimary.map(ref => ref.key), label).toEqual(expectedOff);
}

beforeAll(async () => {
	ensureEtcdInstalled();
	for (const program of [['etcd', '--version'], ['etcdctl', 'version']]) {
		const reported = spawnSync(program[0]!, [program[1]!], {encoding: 'utf8'}).stdout;
		if (!new RegExp(`(etcd Version|etcdctl version): ${ETCD_VERSION.replace('.', '\\.')}\\.`).test(reported)) {
			throw new Error(`asked for etcd ${ETCD_VERSION}, but ${program[0]} reports: ${reported}`);
		}
	}
	dataDir = await mkdtemp(join(tmpdir(), 'etcd-harden-scan-'));
	let client = '';
	etcd = await startEtcd('scan-test', dataDir, 'http', [], () => fetch(`${client}/health`).then(response => response.ok, () => false), url => (client = url));
	connection = {endpoints: [client]};
	gateway = client;
	await put(seeds);
});

afterAll(async () => {
	await stopEtcd(etcd);
	if (dataDir !== undefined) await rm(dataDir, {recursive: true, force: true});
});

describe('raw scan on a real etcd', () => {
	it('classifies every value exactly, across page boundaries, with ETCDCTL_* set in the environment', async () => {
		// Operators often export these; etcdctl refuses flags that an env variable also sets.
		const saved = {endpoints: process.env.ETCDCTL_ENDPOINTS, cacert: process.env.ETCDCTL_CACERT};
		process.env.ETCDCTL_ENDPOINTS = 'http://127.0.0.1:1';
		process.env.ETCDCTL_CACERT = '/nonexistent/ca.crt';
		try {
			// Both ways of reading pages: gRPC (RealHost's default) and etcdctl (a host without gRPC).
			const ways = [['gRPC', true], ['etcdctl', false]] as const;
			for (const [way, withGrpc, pageSize] of ways.flatMap(([way, withGrpc]) => [7, 1, 62, 63, 64, undefined].map(size => [way, withGrpc, size] as const))) {
				const options = pageSize === undefined ? {config} : {pageSize, config}; // undefined: adaptive
				const {host: counted, counts} = countingHost(host, withGrpc);
				const report = await scanResources(counted, connection, ['secrets', 'configmaps'], options);
				expect(withGrpc ? counts.etcdctl : counts.grpc, `${way}: nothing read the other way`).toBe(0);
				expect(withGrpc ? counts.grpc : counts.etcdctl, `${way}: pages read`).toBeGreaterThanOrEqual(pageSize === undefined ? 2 : Math.ceil(SECRET_TOTAL / pageSize));
				const [secrets, configmaps] = report.resources;
				expectSeededSecrets(secrets, `${way}, page size ${pageSize}`);
				expect(secrets!.notOnPrimary).toContainEqual({key: '/registry/secrets/team-a/gcm-2', namespace: 'team-a', name: 'gcm-2'});
				expect(configmaps).toMatchObject({total: 9, byKey: {'secretbox:key1': 6}, plaintext: 3, unknown: 0});
				expect(configmaps!.notOnPrimary!.map(ref => `${ref.namespace}/${ref.name}`)).toEqual(['default/cm-8', 'team-a/cm-6', 'team-b/cm-7']);
				expect(scanIsClean(secrets!)).toBe(false);
				expect(report.keysScanned).toBe(SECRET_TOTAL + 9);
			}
		} finally {
			for (const [name, value] of [
				['ETCDCTL_ENDPOINTS', saved.endpoints],
				['ETCDCTL_CACERT', saved.cacert],
			] as const) {
				if (value === undefined) delete process.env[name];
				else process.env[name] = value;
			}
		}
	});

	it('decrypts every value with --deep and names the failures by key', async () => {
		const report = await scanResources(host, connection, ['secrets'], {pageSize: 7, config, verify: {deep: true}});
		const verification = report.resources[0]!.verification!;
		expect(verification.checked).toBe(SECRET_TOTAL);
		expect(verification.ok).toBe(SECRET_TOTAL - 3);
		expect(verification.failures.map(failure => failure.key).sort()).toEqual([
			'/registry/secrets/default/garbage',
			'/registry/secrets/default/retired',
			'/registry/secrets/default/wrongkey',
		]);
		expect(verification.failures.find(failure => failure.key.endsWith('/wrongkey'))!.reason).toMatch(/secretbox key key1: authentication failed/);
		const text = JSON.stringify(report);
		for (const key of [key1, key2, gcmKey, cbcKey]) expect(text).not.toContain(key.toString('base64'));
	});

	it('samples per stored key without --deep', async () => {
		const report = await scanResources(host, connection, ['secrets'], {pageSize: 7, config, verify: {samplePerKey: 2}});
		const verification = report.resources[0]!.verification!;
		// key1 2 (of 41, one of which is the bad "wrongkey"), key2 2, gcm1 2, cbc1 2, retired 1.
		expect(verification.checked).toBe(9);
		expect(verification.failures.map(failure => failure.key)).toContain('/registry/secrets/default/retired');
	});

	it('reads the values etcd returns byte for byte and decrypts them to the seeded objects', async () => {
		for (const seed of seeds.filter(s => /\/(app-001|old-3|gcm-1|cbc-2)$/.test(s.key))) {
			const result = await runEtcdctl(host, connection, ['get', seed.key, '-w', 'json'], {readOnly: true});
			expect(result.exitCode).toBe(0);
			const stored = Buffer.from((JSON.parse(result.stdout) as {kvs: Array<{value: string}>}).kvs[0]!.value, 'base64');
			expect(stored.equals(seed.value)).toBe(true);
			const decrypted = decryptValue(config, 'secrets', seed.key, stored);
			expect(decrypted.ok, seed.key).toBe(true);
			if (decrypted.ok) expect(decrypted.object.equals(seed.plain!)).toBe(true);
		}
	});

	it('reads one consistent revision even while keys change mid-scan', async () => {
		const lateKey = '/registry/secrets/zz-late/new-secret'; // sorts after every seeded key
		const deletedKey = '/registry/secrets/team-b/old-3';
		expect(seeds.some(seed => seed.key === deletedKey)).toBe(true);
		let wrote = false;
		const report = await scanResources(host, connection, ['secrets'], {
			pageSize: 7,
			primary: {type: 'secretbox', keyName: 'key1'},
			onProgress: () => {
				if (wrote) return;
				wrote = true;
				// Synchronous on purpose: the write lands before the scan's later pages are read.
				const etcdctl = (...args: string[]): string => {
					const result = spawnSync('etcdctl', ['--endpoints', connection.endpoints[0]!, ...args], {encoding: 'utf8'});
					expect(result.status).toBe(0);
					return result.stdout.trim();
				};
				expect(etcdctl('put', lateKey, 'k8s-late')).toBe('OK');
				expect(etcdctl('del', deletedKey)).toBe('1');
			},
		});
		expect(wrote).toBe(true);
		expect(report.resources[0]).toMatchObject({total: SECRET_TOTAL, unknown: 1, consistent: true});
		expect(report.resources[0]!.unknownKeys).not.toContain(lateKey);
		expect(report.resources[0]!.notOnPrimary!.map(ref => ref.key)).toContain(deletedKey);
		// A fresh scan sees the change.
		const after = await scanResources(host, connection, ['secrets'], {pageSize: 7});
		expect(after.resources[0]!.total).toBe(SECRET_TOTAL); // +1 new, -1 deleted
		expect(after.resources[0]!.unknownKeys).toContain(lateKey);
		expect(after.resources[0]!.revision).toBe(report.resources[0]!.revision + 2);
	});
});

describe('raw scan over mutual TLS (kubeadm etcd: client certificates required)', () => {
	let tlsEtcd: ChildProcess | undefined;
	let tlsDir: string | undefined;
	let pki = '';
	let tls: EtcdConnection;

	/** POST to etcd's JSON gateway with the apiserver's client certificate. */
	async function tlsPost(path: string, body: string): Promise<{status: number; text: string}> {
		const [ca, cert, key] = await Promise.all(['etcd/ca.crt', 'apiserver-etcd-client.crt', 'apiserver-etcd-client.key'].map(file => readFile(join(pki, file))));
		return new Promise((resolve, reject) => {
			const outgoing = httpsRequest(`${tls.endpoints[0]}${path}`, {method: 'POST', ca, cert, key, timeout: 5000}, response => {
				let text = '';
				response.on('data', (chunk: Buffer) => (text += chunk.toString()));
				response.on('end', () => resolve({status: response.statusCode ?? 0, text}));
			});
			outgoing.on('error', reject);
			outgoing.end(body);
		});
	}

	beforeAll(async () => {
		tlsDir = await mkdtemp(join(tmpdir(), 'etcd-harden-scan-tls-'));
		pki = join(tlsDir, 'pki');
		await generatePki(pki, {nodeName: 'scan-node', nodeIp: '127.0.0.1'});
		tls = {endpoints: [], cacert: join(pki, 'etcd/ca.crt'), cert: join(pki, 'apiserver-etcd-client.crt'), key: join(pki, 'apiserver-etcd-client.key')};
		tlsEtcd = await startEtcd(
			'scan-tls',
			tlsDir,
			'https',
			['--client-cert-auth=true', `--trusted-ca-file=${join(pki, 'etcd/ca.crt')}`, `--cert-file=${join(pki, 'etcd/server.crt')}`, `--key-file=${join(pki, 'etcd/server.key')}`],
			() => tlsPost('/v3/maintenance/status', '{}').then(answer => answer.status === 200, () => false),
			url => (tls.endpoints = [url]),
		);
		const secrets = seeds.filter(seed => seed.key.startsWith('/registry/secrets/') || seed.key.startsWith('/registry/namespaces/'));
		for (let start = 0; start < secrets.length; start += 100) {
			const success = secrets.slice(start, start + 100).map(seed => ({requestPut: {key: Buffer.from(seed.key).toString('base64'), value: seed.value.toString('base64')}}));
			const answer = await tlsPost('/v3/kv/txn', JSON.stringify({success}));
			if (answer.status !== 200) throw new Error(`etcd txn failed: ${answer.status} ${answer.text}`);
		}
	});

	afterAll(async () => {
		await stopEtcd(tlsEtcd);
		if (tlsDir !== undefined) await rm(tlsDir, {recursive: true, force: true});
	});

	it('reads every page over gRPC with the client certificate, and reports what etcdctl reports', async () => {
		for (const withGrpc of [true, false]) {
			const {host: counted, counts} = countingHost(host, withGrpc);
			const report = await scanResources(counted, tls, ['secrets'], {pageSize: 7, config});
			expectSeededSecrets(report.resources[0], withGrpc ? 'gRPC over TLS' : 'etcdctl over TLS');
			if (withGrpc) expect(counts.grpc).toBeGreaterThanOrEqual(Math.ceil(SECRET_TOTAL / 7));
			expect(withGrpc ? counts.etcdctl : counts.grpc).toBe(0);
		}
	});

	it('falls back to etcdctl when no endpoint can be reached over gRPC, and names etcdctl failing too', async () => {
		// The first endpoint refuses connections: gRPC tries the next one (the real etcd).
		const refused = `https://127.0.0.1:${await freePort()}`;
		const {host: counted, counts} = countingHost(host);
		const report = await scanResources(counted, {...tls, endpoints: [refused, ...tls.endpoints]}, ['secrets'], {pageSize: 20, config});
		expectSeededSecrets(report.resources[0], 'second endpoint');
		expect(counts.etcdctl).toBe(0);

		// A client certificate from another CA: the TLS handshake fails for gRPC and for etcdctl alike.
		const wrong = {...tls, cert: join(pki, 'front-proxy-client.crt'), key: join(pki, 'front-proxy-client.key')};
		const failing = countingHost(host);
		// etcdctl only times out (here after 3 s); the error also carries gRPC's reason.
		await expect(scanResources(failing.host, wrong, ['secrets'], {pageSize: 20, timeoutMs: 3000})).rejects.toThrow(
			/etcdctl .*get \/registry\/secrets\/ .*(timed out|failed).*; reading over gRPC first failed: .*(certificate|alert|handshake)/i,
		);
		expect(failing.counts.grpc).toBe(1); // the first read fails: no second attempt over gRPC
		expect(failing.counts.etcdctl).toBe(1);
	});
});

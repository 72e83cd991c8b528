// Re-encryption, the restart gate and kubeadm-config persistence against the REAL testbed:
// etcd 3.4 + kube-apiserver 1.20.2 under the kubelet stand-in, in private namespaces. The
// task executors run inside the namespaces (test/e2e/kube-driver.ts) exactly as the engine
// calls them; raw values are read back with etcdctl. No mocks.
import {randomBytes} from 'node:crypto';
import {execFileSync} from 'node:child_process';
import {mkdtempSync, readFileSync, rmSync} from 'node:fs';
import {createServer} from 'node:https';
import type {AddressInfo} from 'node:net';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {RealHost} from '../../source/host/real.js';
import {patchManifest} from '../../source/kube/manifest.js';
import {seededSecret, startTestbed, type Testbed} from '../testbed/index.js';

const SECRETS = 600;
const NAMESPACES = 3;
const MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const ENC_DIR = '/etc/kubernetes/etcd-harden';
const ENC_CONFIG = `${ENC_DIR}/encryption-config.yaml`;
const TESTBED_LOG = '/var/log/testbed/kube-apiserver.log';
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DRIVER = path.join(REPO, 'test', 'e2e', 'kube-driver.ts');

let tb: Testbed;
let runCounter = 0;

/** A distinct run directory id per call group (RunDir ids are timestamps). */
function newRunId(): string {
	runCounter++;
	return new Date(Date.UTC(2030, 0, 1, 0, 0, runCounter)).toISOString();
}

type DriverResult = {
	ok: boolean;
	error?: string;
	name?: string;
	seconds?: number;
	logs?: Array<{level: string; text: string}>;
	lastProgress?: {label: string; done?: number; total?: number; rate?: number; etaSeconds?: number};
	progressCount?: number;
	maxRssMB?: number;
	runDir?: string;
	writes?: number;
	last?: Record<string, string>;
};

function driverArgv(command: unknown): string[] {
	return [process.execPath, '--import', 'tsx', DRIVER, JSON.stringify(command)];
}

async function driver(command: unknown): Promise<DriverResult> {
	const result = await tb.exec(driverArgv(command), {cwd: REPO, reject: false, stdin: 'ignore'});
	const line = String(result.stdout).trim().split('\n').at(-1) ?? '';
	try {
		return JSON.parse(line) as DriverResult;
	} catch {
		throw new Error(`driver printed no result (exit ${result.exitCode}): ${String(result.stdout).slice(-500)} ${String(result.stderr).slice(-2000)}`);
	}
}

function task(name: string, params: Record<string, unknown>, runId: string, action: 'run' | 'undo' = 'run', extra: Record<string, unknown> = {}) {
	return driver({op: 'task', task: name, action, params: {url: 'https://127.0.0.1:6443', ...params}, runId, ...extra});
}

function encryptionConfig(keys: Array<{name: string; secret: string}>): string {
	return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources:
  - secrets
  providers:
  - secretbox:
      keys:
${keys.map(key => `      - name: ${key.name}\n        secret: ${key.secret}\n`).join('')}  - identity: {}
`;
}

function enabledManifest(base: string, configHash: string): string {
	return patchManifest(base, MANIFEST, 'kube-apiserver', {
		flags: {'encryption-provider-config': ENC_CONFIG},
		mounts: [{name: 'etcd-harden', hostPath: ENC_DIR, mountPath: ENC_DIR, type: 'DirectoryOrCreate', readOnly: true}],
		annotations: {'etcd-harden/config-sha256': configHash},
	});
}

/** Raw etcd values under a prefix: key -> value (binary as latin1), with mod revisions. */
async function rawValues(prefix: string): Promise<Map<string, {value: string; modRevision: number}>> {
	const result = await tb.etcdctl(['get', prefix, '--prefix', '-w', 'json'], {maxBuffer: 512 * 1024 * 1024});
	const parsed = JSON.parse(String(result.stdout)) as {kvs?: Array<{key: string; value: string; mod_revision: number}>};
	const values = new Map<string, {value: string; modRevision: number}>();
	for (const kv of parsed.kvs ?? []) {
		values.set(Buffer.from(kv.key, 'base64').toString('utf8'), {value: Buffer.from(kv.value, 'base64').toString('latin1'), modRevision: kv.mod_revision});
	}
	return values;
}

function prefixCounts(values: Map<string, {value: string}>): Record<string, number> {
	const counts: Record<string, number> = {};
	for (const {value} of values.values()) {
		const label = value.startsWith('k8s:enc:') ? value.split(':').slice(0, 5).join(':') : value.startsWith('k8s\0') ? 'plaintext-protobuf' : 'other';
		counts[label] = (counts[label] ?? 0) + 1;
	}
	return counts;
}

async function secretValue(namespace: string, name: string, field: string): Promise<string> {
	const result = await tb.kubectl(['get', 'secret', '-n', namespace, name, '-o', `jsonpath={.data.${field}}`]);
	return Buffer.from(String(result.stdout), 'base64').toString('utf8');
}

/** Change the config and the manifest, with the gate around it, as a stage would plan it. */
async function applyConfig(config: string, runId: string): Promise<DriverResult> {
	const mark = await task('apiserver-restart-gate', {phase: 'before'}, runId);
	expect(mark).toMatchObject({ok: true});
	await tb.exec(['mkdir', '-p', ENC_DIR]);
	await tb.writeFile(ENC_CONFIG, config, {mode: 0o600});
	const hash = (await import('node:crypto')).createHash('sha256').update(config).digest('hex');
	const current = await tb.readFile(MANIFEST, 'utf8');
	await tb.writeFile(MANIFEST, enabledManifest(current, hash), {mode: 0o600});
	return task('apiserver-restart-gate', {phase: 'after', timeoutSeconds: 120, logPaths: [TESTBED_LOG]}, runId);
}

const key1 = {name: 'key1', secret: randomBytes(32).toString('base64')};
const key2 = {name: 'key2', secret: randomBytes(32).toString('base64')};

describe('RealHost.request over mutual TLS (loopback server)', () => {
	it('reuses kept-alive connections per TLS identity: 400 requests, 16 in flight, at most 16 handshakes', async () => {
		const dir = mkdtempSync(path.join(tmpdir(), 'etcd-harden-tls-'));
		try {
			const pem = (name: string) => readFileSync(path.join(dir, name), 'utf8');
			for (const name of ['a', 'b']) {
				execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${name}`,
					'-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(dir, `${name}.key`), '-out', path.join(dir, `${name}.crt`)], {stdio: 'ignore'});
			}
			let handshakes = 0;
			const clients = new Set<string>();
			const server = createServer({cert: pem('a.crt'), key: pem('a.key'), ca: [pem('a.crt'), pem('b.crt')], requestCert: true, rejectUnauthorized: true}, (request, response) => {
				const peer = (request.socket as import('node:tls').TLSSocket).getPeerCertificate();
				clients.add(peer.subject.CN as string);
				setTimeout(() => response.end('ok'), 2);
			});
			server.on('secureConnection', () => handshakes++);
			await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
			const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/x`;
			const host = new RealHost('/');
			const send = (identity: string) => host.request({url, ca: pem('a.crt'), cert: pem(`${identity}.crt`), key: pem(`${identity}.key`)});
			let next = 0;
			await Promise.all(Array.from({length: 16}, async () => {
				while (next++ < 400) expect((await send('a')).body.toString()).toBe('ok');
			}));
			expect(handshakes).toBeGreaterThan(1);
			expect(handshakes).toBeLessThanOrEqual(16);
			// Another client identity gets its own connections (and presents its own certificate).
			const before = handshakes;
			await send('b');
			expect(handshakes).toBe(before + 1);
			expect([...clients].sort()).toEqual(['a', 'b']);
			server.closeAllConnections();
			await new Promise(resolve => server.close(resolve));
		} finally {
			rmSync(dir, {recursive: true, force: true});
		}
	});
});

describe('re-encryption, restart gate and kubeadm-config on the real testbed', () => {
	beforeAll(async () => {
		tb = await startTestbed({secrets: SECRETS, configMaps: 20, namespaces: NAMESPACES});
	});

	afterAll(async () => {
		await tb?.stop();
	});

	it('the gate sees the restart with a secretbox config; re-encryption puts every secret on key1 and keeps a concurrent writer\'s last values', async () => {
		const before = await rawValues('/registry/secrets/');
		expect(before.size).toBeGreaterThanOrEqual(SECRETS);
		expect(prefixCounts(before)['plaintext-protobuf']).toBe(before.size);

		const startsBefore = await tb.podStarts('kube-apiserver');
		const gate = await applyConfig(encryptionConfig([key1]), newRunId());
		expect(gate.error).toBeUndefined();
		expect(gate.ok).toBe(true);
		expect(await tb.podStarts('kube-apiserver')).toBe(startsBefore + 1);
		// Enabling alone changes nothing stored.
		expect(prefixCounts(await rawValues('/registry/secrets/'))['plaintext-protobuf']).toBe(before.size);

		// A writer updates 90 secrets in a loop for the whole re-encryption.
		const written = Array.from({length: 90}, (_, i) => seededSecret(i * 6, NAMESPACES));
		const stopFile = '/tmp/writer-stop';
		const writer = tb.exec(driverArgv({op: 'writer', secrets: written.map(s => ({namespace: s.namespace, name: s.name})), stopFile, workers: 4}), {
			cwd: REPO,
			reject: false,
			stdin: 'ignore',
		});
		await new Promise(resolve => setTimeout(resolve, 1500)); // the writer is running
		const result = await task('reencrypt', {resources: ['secrets'], concurrency: 16, fingerprint: 'enable-key1'}, newRunId());
		await tb.exec(['touch', stopFile]);
		const writerOutput = await writer;
		const writerResult = JSON.parse(String(writerOutput.stdout).trim().split('\n').at(-1)!) as DriverResult;

		expect(result.error).toBeUndefined();
		expect(result.ok).toBe(true);
		expect(result.lastProgress).toMatchObject({done: before.size, total: before.size});
		expect(result.lastProgress!.label).toMatch(/^re-encrypting secrets, \d+ in flight$/);
		expect(result.lastProgress!.rate).toBeGreaterThan(0);
		expect(writerResult.ok).toBe(true);
		expect(writerResult.writes).toBeGreaterThan(written.length); // it really ran during the rewrite

		const after = await rawValues('/registry/secrets/');
		expect(prefixCounts(after)).toEqual({'k8s:enc:secretbox:v1:key1': after.size});
		for (const [key, value] of Object.entries(writerResult.last!)) {
			const [namespace, name] = key.split('/') as [string, string];
			expect(await secretValue(namespace, name, 'password'), key).toBe(value);
		}
		const untouched = seededSecret(1, NAMESPACES);
		expect(await secretValue(untouched.namespace, untouched.name, 'password')).toBe(untouched.data['password']);
	});

	it('a rerun rewrites nothing: every stored secret keeps its mod revision', async () => {
		const before = await rawValues('/registry/secrets/');
		const result = await task('reencrypt', {resources: ['secrets'], fingerprint: 'enable-key1'}, newRunId());
		expect(result.ok).toBe(true);
		const after = await rawValues('/registry/secrets/');
		expect(after.size).toBe(before.size);
		for (const [key, {modRevision}] of after) expect(modRevision, key).toBe(before.get(key)?.modRevision);
	});

	it('lists and writes back in protobuf for built-in types, protobuf errors come out typed', async () => {
		const wire = (await driver({op: 'wire', secretsPath: '/api/v1/secrets'})) as DriverResult & {
			secrets: {contentTypes: string[]; names: string[]; jsonNames: string[]; continue: boolean; jsonContinue: boolean};
			written: number;
			conflict?: {name: string; status: number; reason?: string; message: string};
			missing?: {name: string; status: number; reason?: string; message: string};
		};
		expect(wire.error).toBeUndefined();
		expect(wire.secrets.contentTypes).toEqual(['application/vnd.kubernetes.protobuf']);
		// The protobuf page holds the same objects, in the same order, as the JSON one.
		expect(wire.secrets.names).toHaveLength(50);
		expect(wire.secrets.names).toEqual(wire.secrets.jsonNames);
		expect(wire.secrets.continue).toBe(true);
		expect(wire.written).toBe(5);
		expect(wire.conflict).toMatchObject({name: 'ConflictError', status: 409, reason: 'Conflict'});
		expect(wire.conflict!.message).toMatch(/the object has been modified/);
		expect(wire.missing).toMatchObject({name: 'NotFoundError', status: 404, reason: 'NotFound'});
		expect(wire.missing!.message).toMatch(/secrets "no-such-secret" not found/);
	});

	it('killed with SIGKILL mid re-encryption (after a key rotation), a rerun continues from the state file and finishes', async () => {
		const gate = await applyConfig(encryptionConfig([key2, key1]), newRunId());
		expect(gate.ok).toBe(true);
		expect(prefixCounts(await rawValues('/registry/secrets/'))['k8s:enc:secretbox:v1:key1']).toBeGreaterThanOrEqual(SECRETS);

		const killedRun = newRunId();
		const pidFile = '/tmp/reencrypt-driver.pid';
		const params = {resources: ['secrets'], fingerprint: 'rotate-key2', rate: 50};
		const victim = tb.exec(driverArgv({op: 'task', task: 'reencrypt', params: {url: 'https://127.0.0.1:6443', ...params}, runId: killedRun, pidFile}), {
			cwd: REPO,
			reject: false,
			stdin: 'ignore',
		});
		// Rate 50/s (600 secrets take 12 s) and state saved every 2 s: after 5.5 s progress is on disk.
		let pid = '';
		for (let i = 0; i < 100 && !pid; i++) {
			pid = (await tb.exec(['cat', pidFile], {reject: false})).stdout.toString().trim();
			if (!pid) await new Promise(resolve => setTimeout(resolve, 100));
		}
		expect(pid).toMatch(/^\d+$/);
		await new Promise(resolve => setTimeout(resolve, 5500));
		await tb.exec(['kill', '-KILL', pid]);
		const killed = await victim;
		expect(String(killed.stdout)).toBe(''); // it never finished

		const midway = prefixCounts(await rawValues('/registry/secrets/'));
		expect(midway['k8s:enc:secretbox:v1:key2']).toBeGreaterThan(0);
		expect(midway['k8s:enc:secretbox:v1:key1']).toBeGreaterThan(0);
		const killedDir = `/var/lib/etcd-harden/runs/${new Date(killedRun).toISOString().replaceAll(':', '').replace(/\.\d+Z$/, 'Z')}`;
		const state = JSON.parse(await tb.readFile(`${killedDir}/reencrypt-state.json`, 'utf8')) as {
			fingerprint: string;
			resources: Record<string, {done: number; finished: boolean; after?: string}>;
		};
		expect(state.fingerprint).toBe('rotate-key2');
		expect(state.resources['secrets']?.finished).toBe(false);
		expect(state.resources['secrets']?.done).toBeGreaterThan(0);

		const rerun = await task('reencrypt', {resources: ['secrets'], fingerprint: 'rotate-key2'}, newRunId());
		expect(rerun.ok).toBe(true);
		expect(rerun.logs?.map(line => line.text)).toContain('Continuing the re-encryption an earlier run left unfinished.');
		const final = await rawValues('/registry/secrets/');
		expect(prefixCounts(final)).toEqual({'k8s:enc:secretbox:v1:key2': final.size});
	});

	it('the gate fails on a flag the apiserver rejects, with its log lines; after the restore the gate undo waits until it is ready again', async () => {
		const runId = newRunId();
		const good = await tb.readFile(MANIFEST, 'utf8');
		expect(await task('apiserver-restart-gate', {phase: 'before'}, runId)).toMatchObject({ok: true});
		const anchor = '    - kube-apiserver\n';
		await tb.writeFile(MANIFEST, good.replace(anchor, `${anchor}    - --etcd-harden-bogus-flag=1\n`), {mode: 0o600});
		const failed = await task('apiserver-restart-gate', {phase: 'after', timeoutSeconds: 20, logPaths: [TESTBED_LOG]}, runId);
		expect(failed.ok).toBe(false);
		expect(failed.name).toBe('RestartGateError');
		expect(failed.error).toMatch(/did not restart and pass \/readyz within 20 s/);
		expect(failed.error).toContain(`Last lines of ${TESTBED_LOG}:`);
		expect(failed.error).toMatch(/unknown flag: --etcd-harden-bogus-flag/);

		// The engine restores the stage's files, then runs the 'before' mark's undo.
		await tb.writeFile(MANIFEST, good, {mode: 0o600});
		const undo = await task('apiserver-restart-gate', {phase: 'before', logPaths: [TESTBED_LOG]}, runId, 'undo');
		expect(undo.error).toBeUndefined();
		expect(undo.ok).toBe(true);
		expect(undo.logs?.map(line => line.text).join('\n')).toMatch(/restarted with the restored files and is ready/);
		expect(await tb.isReady()).toBe(true);
		// Still the key2 config: secrets read fine.
		const sample = seededSecret(2, NAMESPACES);
		expect(await secretValue(sample.namespace, sample.name, 'username')).toBe(sample.data['username']);
	});

	it('targeted mode: a raw etcd scan at task start finds the objects not on the new primary, and only those are rewritten', async () => {
		const key3 = {name: 'key3', secret: randomBytes(32).toString('base64')};
		const gate = await applyConfig(encryptionConfig([key3, key2, key1]), newRunId());
		expect(gate.ok).toBe(true);
		// 30 secrets are updated after the rotation, so they are already on key3.
		for (let i = 0; i < 30; i++) {
			const secret = seededSecret(i * 7, NAMESPACES);
			await tb.kubectl(['patch', 'secret', '-n', secret.namespace, secret.name, '--type=merge', '-p', JSON.stringify({data: {extra: Buffer.from(`v${i}`).toString('base64')}})]);
		}
		const before = prefixCounts(await rawValues('/registry/secrets/'));
		expect(before['k8s:enc:secretbox:v1:key3']).toBe(30);
		const offPrimary = Object.entries(before).filter(([label]) => label !== 'k8s:enc:secretbox:v1:key3').reduce((sum, [, count]) => sum + count, 0);

		const result = await task('reencrypt', {resources: ['secrets'], scanConfigPath: ENC_CONFIG, manifestPath: MANIFEST}, newRunId());
		expect(result.error).toBeUndefined();
		expect(result.logs?.map(line => line.text)).toContain(`The etcd scan found ${offPrimary} object(s) not on the primary key.`);
		expect(result.lastProgress).toMatchObject({done: offPrimary, total: offPrimary});
		const after = await rawValues('/registry/secrets/');
		expect(prefixCounts(after)).toEqual({'k8s:enc:secretbox:v1:key3': after.size});
	});

	it('kubeadm-config holds the flag and the volume afterwards; a rerun changes nothing; undo restores it byte for byte', async () => {
		const read = async () =>
			String((await tb.kubectl(['get', 'configmap', '-n', 'kube-system', 'kubeadm-config', '-o', 'jsonpath={.data.ClusterConfiguration}'])).stdout);
		const original = await read();
		const runId = newRunId();
		const params = {
			extraArgs: {'encryption-provider-config': ENC_CONFIG},
			extraVolumes: [{name: 'etcd-harden', hostPath: ENC_DIR, mountPath: ENC_DIR, readOnly: true, pathType: 'DirectoryOrCreate'}],
		};
		expect(await task('kubeadm-config', params, runId)).toMatchObject({ok: true});
		const patched = await read();
		expect(patched).toContain(`    encryption-provider-config: ${ENC_CONFIG}\n`);
		expect(patched).toContain(`  extraVolumes:\n  - name: etcd-harden\n    hostPath: ${ENC_DIR}\n    mountPath: ${ENC_DIR}\n    readOnly: true\n    pathType: DirectoryOrCreate\n`);
		expect(patched).toContain('    authorization-mode: Node,RBAC\n');

		const again = await task('kubeadm-config', params, newRunId());
		expect(again.logs?.map(line => line.text)).toContain('kube-system/kubeadm-config already holds the settings.');
		expect(await read()).toBe(patched);

		expect(await task('kubeadm-config', params, runId, 'undo')).toMatchObject({ok: true});
		expect(await read()).toBe(original);
	});
});

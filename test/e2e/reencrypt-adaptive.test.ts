// Adaptive re-encryption against a REAL kube-apiserver 1.20.2 that throttles: started with
// --max-mutating-requests-inflight=3 (and API Priority and Fairness off, so the classic
// max-inflight filter answers every write beyond 3 in flight with 429 and Retry-After: 1).
// The tool runs at its defaults (no --concurrency) beside a concurrent writer; it must finish,
// honour the 429s, settle near the server's limit and lose no update. No mocks.
//
// The tool runs as a user bound to cluster-admin but NOT in system:masters: the max-inflight
// filter (and APF's exempt level) let system:masters through unthrottled, and kubeadm before
// 1.29 puts admin.conf in system:masters, so there the adaptive control is the only brake.
import {createHash, randomBytes} from 'node:crypto';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {patchManifest} from '../../source/kube/manifest.js';
import {seededSecret, startTestbed, type Testbed} from '../testbed/index.js';

const SECRETS = 1500;
const NAMESPACES = 3;
const MUTATING_INFLIGHT = 3;
const MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const ENC_DIR = '/etc/kubernetes/etcd-harden';
const ENC_CONFIG = `${ENC_DIR}/encryption-config.yaml`;
const THROTTLED_KUBECONFIG = '/etc/kubernetes/reencrypt-test.conf';
const CLIENT = '/etc/kubernetes/pki/reencrypt-test';
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DRIVER = path.join(REPO, 'test', 'e2e', 'kube-driver.ts');

let tb: Testbed;

type DriverResult = {
	ok: boolean;
	error?: string;
	logs?: Array<{level: string; text: string}>;
	lastProgress?: {label: string; done?: number; total?: number};
	writes?: number;
	last?: Record<string, string>;
};

const driverArgv = (command: unknown) => [process.execPath, '--import', 'tsx', DRIVER, JSON.stringify(command)];

async function driver(command: unknown): Promise<DriverResult> {
	const result = await tb.exec(driverArgv(command), {cwd: REPO, reject: false, stdin: 'ignore'});
	const line = String(result.stdout).trim().split('\n').at(-1) ?? '';
	try {
		return JSON.parse(line) as DriverResult;
	} catch {
		throw new Error(`driver printed no result (exit ${result.exitCode}): ${String(result.stderr).slice(-2000)}`);
	}
}

const runId = (n: number) => new Date(Date.UTC(2031, 0, 1, 0, 0, n)).toISOString();
const task = (name: string, params: Record<string, unknown>, id: string) => driver({op: 'task', task: name, params: {url: 'https://127.0.0.1:6443', ...params}, runId: id});

/** A client certificate (CN reencrypt-test, O etcd-harden-test: not system:masters) bound to cluster-admin, and its kubeconfig. */
async function throttledIdentity(): Promise<void> {
	await tb.exec(['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${CLIENT}.key`, '-out', `${CLIENT}.csr`, '-subj', '/O=etcd-harden-test/CN=reencrypt-test'], {stdin: 'ignore'});
	await tb.exec(['openssl', 'x509', '-req', '-in', `${CLIENT}.csr`, '-CA', '/etc/kubernetes/pki/ca.crt', '-CAkey', '/etc/kubernetes/pki/ca.key', '-CAcreateserial', '-days', '1', '-out', `${CLIENT}.crt`], {stdin: 'ignore'});
	await tb.kubectl(['create', 'clusterrolebinding', 'reencrypt-test', '--clusterrole=cluster-admin', '--group=etcd-harden-test']);
	const b64 = async (file: string) => Buffer.from(await tb.readFile(file, 'utf8')).toString('base64');
	await tb.writeFile(
		THROTTLED_KUBECONFIG,
		`apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: ${await b64('/etc/kubernetes/pki/ca.crt')}\n` +
			`users:\n- name: t\n  user:\n    client-certificate-data: ${await b64(`${CLIENT}.crt`)}\n    client-key-data: ${await b64(`${CLIENT}.key`)}\n` +
			`contexts:\n- name: t\n  context:\n    cluster: t\n    user: t\ncurrent-context: t\n`,
		{mode: 0o600},
	);
}

async function rawCounts(): Promise<Record<string, number>> {
	const result = await tb.etcdctl(['get', '/registry/secrets/', '--prefix', '-w', 'json'], {maxBuffer: 512 * 1024 * 1024});
	const counts: Record<string, number> = {};
	for (const kv of (JSON.parse(String(result.stdout)) as {kvs?: Array<{value: string}>}).kvs ?? []) {
		const value = Buffer.from(kv.value, 'base64').toString('latin1');
		const label = value.startsWith('k8s:enc:') ? value.split(':').slice(0, 5).join(':') : 'plaintext';
		counts[label] = (counts[label] ?? 0) + 1;
	}
	return counts;
}

describe('adaptive re-encryption under an apiserver that answers 429 (max-mutating-requests-inflight=3)', () => {
	beforeAll(async () => {
		tb = await startTestbed({secrets: SECRETS, configMaps: 10, namespaces: NAMESPACES});
		await throttledIdentity();
		// Encryption on (secretbox key1) and the low write limit, in one restart behind the gate.
		const id = runId(1);
		expect(await task('apiserver-restart-gate', {phase: 'before'}, id)).toMatchObject({ok: true});
		const config = `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources:\n  - secrets\n  providers:\n  - secretbox:\n      keys:\n      - name: key1\n        secret: ${randomBytes(32).toString('base64')}\n  - identity: {}\n`;
		await tb.exec(['mkdir', '-p', ENC_DIR]);
		await tb.writeFile(ENC_CONFIG, config, {mode: 0o600});
		const manifest = await tb.readFile(MANIFEST, 'utf8');
		await tb.writeFile(
			MANIFEST,
			patchManifest(manifest, MANIFEST, 'kube-apiserver', {
				flags: {
					'encryption-provider-config': ENC_CONFIG,
					'max-mutating-requests-inflight': String(MUTATING_INFLIGHT),
					'enable-priority-and-fairness': 'false',
				},
				mounts: [{name: 'etcd-harden', hostPath: ENC_DIR, mountPath: ENC_DIR, type: 'DirectoryOrCreate', readOnly: true}],
				annotations: {'etcd-harden/config-sha256': createHash('sha256').update(config).digest('hex')},
			}),
			{mode: 0o600},
		);
		const gate = await task('apiserver-restart-gate', {phase: 'after', timeoutSeconds: 120, logPaths: ['/var/log/testbed/kube-apiserver.log']}, id);
		expect(gate.error).toBeUndefined();
	});

	afterAll(async () => {
		await tb?.stop();
	});

	it('the server really throttles: a burst of 24 concurrent writes gets 429 with Retry-After', async () => {
		// A secret that does not exist: the filter counts the write before it is routed (429),
		// and the ones let through answer 404, so no seeded value changes.
		const url = `https://127.0.0.1:6443/api/v1/namespaces/${seededSecret(0, NAMESPACES).namespace}/secrets/no-such-secret`;
		const curl = `curl -s -o /dev/null -D - --cacert /etc/kubernetes/pki/ca.crt --cert ${CLIENT}.crt --key ${CLIENT}.key -X PATCH -H 'Content-Type: application/merge-patch+json' --data '{}' ${url}`;
		const result = await tb.exec(['sh', '-c', `for i in $(seq 24); do ${curl} & done; wait`], {stdin: 'ignore'});
		const out = String(result.stdout);
		expect(out).toMatch(/^HTTP\/\S+ 429/m);
		expect(out).toMatch(/^retry-after: 1/im);
	});

	it('at its defaults the tool honours the 429s, settles near the limit, rewrites every secret and keeps a concurrent writer\'s last values', async () => {
		expect((await rawCounts())['plaintext']).toBeGreaterThanOrEqual(SECRETS);
		const written = Array.from({length: 60}, (_, i) => seededSecret(i * 11, NAMESPACES));
		const stopFile = '/tmp/adaptive-writer-stop';
		const writer = tb.exec(driverArgv({op: 'writer', secrets: written.map(s => ({namespace: s.namespace, name: s.name})), stopFile, workers: 1}), {
			cwd: REPO,
			reject: false,
			stdin: 'ignore',
		});
		await new Promise(resolve => setTimeout(resolve, 1000));
		const result = await task('reencrypt', {kubeconfig: THROTTLED_KUBECONFIG, resources: ['secrets'], fingerprint: 'adaptive-key1'}, runId(2));
		await tb.exec(['touch', stopFile]);
		const writerResult = JSON.parse(String((await writer).stdout).trim().split('\n').at(-1)!) as DriverResult;

		expect(result.error).toBeUndefined();
		expect(result.ok).toBe(true);
		const summary = result.logs?.find(line => line.level === 'success')?.text ?? '';
		const settled = /adaptive: settled at (\d+) in flight \(highest (\d+)\), (\d+) throttled answer/.exec(summary);
		expect(settled, summary).not.toBeNull();
		const [, final, highest, throttled] = settled!.map(Number) as [number, number, number, number];
		// It met the server's limit (429s), and its limit stayed in the server's range instead of
		// growing on: a few above 3 (the writer and the apiserver's own writes share the 3).
		expect(throttled).toBeGreaterThan(0);
		expect(final).toBeLessThanOrEqual(2 * MUTATING_INFLIGHT);
		expect(highest).toBeLessThanOrEqual(8 * MUTATING_INFLIGHT);
		expect(result.lastProgress?.label).toMatch(/^re-encrypting secrets, \d+ in flight \(adaptive, limit \d+\)$/);

		expect(writerResult.ok).toBe(true);
		expect(writerResult.writes).toBeGreaterThan(written.length);
		const counts = await rawCounts();
		expect(counts).toEqual({'k8s:enc:secretbox:v1:key1': Object.values(counts).reduce((a, b) => a + b, 0)});
		for (const [key, value] of Object.entries(writerResult.last!)) {
			const [namespace, name] = key.split('/') as [string, string];
			const got = await tb.kubectl(['get', 'secret', '-n', namespace, name, '-o', 'jsonpath={.data.password}']);
			expect(Buffer.from(String(got.stdout), 'base64').toString('utf8'), key).toBe(value);
		}
	});
});

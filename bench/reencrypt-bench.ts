// The benchmark behind bench/reencrypt. Everything runs on the real testbed: the tool's task
// executor inside the namespaces (test/e2e/kube-driver.ts), kubectl inside the namespaces.
import {createHash, randomBytes} from 'node:crypto';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {patchManifest} from '../source/kube/manifest.js';
import {startTestbed, type Testbed} from '../test/testbed/index.js';

const args = process.argv.slice(2);
const option = (name: string, fallback: number): number => {
	const index = args.indexOf(`--${name}`);
	return index === -1 ? fallback : Number(args[index + 1]);
};
const SECRETS = option('secrets', 10_000);
const RSS_SECRETS = option('rss-secrets', 30_000);
const CONCURRENCY = option('concurrency', 16);
/** The tool's rewrite method (source/kube/reencrypt.ts): list-put (default) or patch. */
const METHOD = (() => {
	const index = args.indexOf('--method');
	return index === -1 ? 'list-put' : String(args[index + 1]);
})();
/** Also time the tool at this concurrency (informational; 0 to skip). */
const ALSO = option('also-concurrency', 32);
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DRIVER = path.join(REPO, 'test', 'e2e', 'kube-driver.ts');
const MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const ENC_DIR = '/etc/kubernetes/etcd-harden';
const ENC_CONFIG = `${ENC_DIR}/encryption-config.yaml`;
const log = (line: string) => process.stderr.write(`${line}\n`);
let run = 0;
const runId = () => new Date(Date.UTC(2030, 0, 1, 0, 0, ++run)).toISOString();

type DriverResult = {ok: boolean; error?: string; seconds?: number; maxRssMB?: number; rssBeforeMB?: number; lastProgress?: {done?: number; total?: number}};

async function driver(tb: Testbed, command: unknown): Promise<DriverResult> {
	const result = await tb.exec([process.execPath, '--import', 'tsx', DRIVER, JSON.stringify(command)], {cwd: REPO, reject: false, stdin: 'ignore'});
	const parsed = JSON.parse(String(result.stdout).trim().split('\n').at(-1) ?? '{}') as DriverResult;
	if (!parsed.ok) throw new Error(`driver failed: ${parsed.error ?? String(result.stderr).slice(-1000)}`);
	return parsed;
}

// One secret per key name for the whole run: a re-stage must still decrypt what key1 wrote.
const secrets = new Map<string, string>();
function config(keys: string[]): string {
	const secret = (name: string) => secrets.get(name) ?? secrets.set(name, randomBytes(32).toString('base64')).get(name)!;
	const entries = keys.map(name => `      - name: ${name}\n        secret: ${secret(name)}\n`).join('');
	return `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources:\n  - secrets\n  providers:\n  - secretbox:\n      keys:\n${entries}  - identity: {}\n`;
}

/** New config (every value now stale), manifest pointing at it, wait with the restart gate. */
async function restage(tb: Testbed, keys: string[]): Promise<void> {
	const id = runId();
	const task = (phase: string) =>
		driver(tb, {op: 'task', task: 'apiserver-restart-gate', params: {phase, url: 'https://127.0.0.1:6443', timeoutSeconds: 180, logPaths: ['/var/log/testbed/kube-apiserver.log']}, runId: id});
	await task('before');
	const text = config(keys);
	await tb.exec(['mkdir', '-p', ENC_DIR]);
	await tb.writeFile(ENC_CONFIG, text, {mode: 0o600});
	const manifest = await tb.readFile(MANIFEST, 'utf8');
	await tb.writeFile(
		MANIFEST,
		patchManifest(manifest, MANIFEST, 'kube-apiserver', {
			flags: {'encryption-provider-config': ENC_CONFIG},
			mounts: [{name: 'etcd-harden', hostPath: ENC_DIR, mountPath: ENC_DIR, type: 'DirectoryOrCreate', readOnly: true}],
			annotations: {'etcd-harden/config-sha256': createHash('sha256').update(text).digest('hex')},
		}),
		{mode: 0o600},
	);
	await task('after');
}

async function rawPrefixes(tb: Testbed): Promise<Record<string, number>> {
	const result = await tb.etcdctl(['get', '/registry/secrets/', '--prefix', '-w', 'json'], {maxBuffer: 1024 * 1024 * 1024});
	const counts: Record<string, number> = {};
	for (const kv of (JSON.parse(String(result.stdout)) as {kvs?: Array<{value: string}>}).kvs ?? []) {
		const value = Buffer.from(kv.value, 'base64').toString('latin1');
		const label = value.startsWith('k8s:enc:') ? value.split(':').slice(2, 5).join(':') : 'plaintext';
		counts[label] = (counts[label] ?? 0) + 1;
	}
	return counts;
}

/** CPU seconds used so far by the apiserver and etcd processes (robust to other load on the machine). */
async function serverCpu(tb: Testbed): Promise<number> {
	let total = 0;
	for (const name of ['kube-apiserver', 'etcd']) {
		const pid = (await tb.podState(name))?.pid;
		if (!pid) continue;
		const fields = String((await tb.exec(['cat', `/proc/${pid}/stat`])).stdout).split(') ')[1]!.split(' ');
		total += (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks (USER_HZ 100)
	}
	return total;
}

async function tool(tb: Testbed, label: string, concurrency = CONCURRENCY): Promise<DriverResult> {
	const result = await driver(tb, {op: 'task', task: 'reencrypt', params: {url: 'https://127.0.0.1:6443', resources: ['secrets'], concurrency, method: METHOD}, runId: runId()});
	log(`${label}: ${JSON.stringify(await rawPrefixes(tb))}`);
	return result;
}

async function withTestbed<T>(secrets: number, work: (tb: Testbed) => Promise<T>): Promise<T> {
	log(`starting the testbed with ${secrets} secrets...`);
	const tb = await startTestbed({secrets, configMaps: 10, namespaces: 3});
	try {
		return await work(tb);
	} finally {
		await tb.stop();
	}
}

const lines: string[] = [];
let ratio = 0;
const rss: Array<[number, number, number]> = [];

await withTestbed(SECRETS, async tb => {
	await restage(tb, ['key1']);
	const cpu0 = await serverCpu(tb);
	const ours = await tool(tb, 'after the tool');
	const oursCpu = (await serverCpu(tb)) - cpu0;
	const total = ours.lastProgress?.total ?? SECRETS;
	const oursRate = total / ours.seconds!;
	rss.push([SECRETS, ours.maxRssMB!, ours.rssBeforeMB!]);

	await restage(tb, ['key2', 'key1']);
	const cpu1 = await serverCpu(tb);
	const started = process.hrtime.bigint();
	await tb.exec(['sh', '-c', 'kubectl --kubeconfig /etc/kubernetes/admin.conf get secrets -A -o json | kubectl --kubeconfig /etc/kubernetes/admin.conf replace -f - >/dev/null'], {
		stdin: 'ignore',
	});
	const kubectlSeconds = Number(process.hrtime.bigint() - started) / 1e9;
	const kubectlCpu = (await serverCpu(tb)) - cpu1;
	log(`after kubectl replace: ${JSON.stringify(await rawPrefixes(tb))}`);
	const kubectlRate = total / kubectlSeconds;
	ratio = oursRate / kubectlRate;
	const load = (await import('node:os')).loadavg()[0]!.toFixed(1);
	lines.push(
		`load average when done: ${load} on ${(await import('node:os')).cpus().length} CPUs (other work on the machine skews both rates)`,
		`secrets: ${total} (kube-apiserver 1.20.2 + etcd 3.4 with TLS, testbed, ${CONCURRENCY} in flight)`,
		`tool re-encryption:      ${ours.seconds!.toFixed(2)} s  ${oursRate.toFixed(0)} objects/s`,
		`kubectl get | replace:   ${kubectlSeconds.toFixed(2)} s  ${kubectlRate.toFixed(0)} objects/s`,
		`ratio: ${ratio.toFixed(2)}x (target >= 4x)`,
		`apiserver+etcd CPU for the rewrite: tool ${oursCpu.toFixed(1)} s, kubectl ${kubectlCpu.toFixed(1)} s (${(kubectlCpu / oursCpu).toFixed(2)}x less for the tool)`,
	);
	if (ALSO > 0) {
		await restage(tb, ['key3', 'key2', 'key1']);
		const more = await tool(tb, `after the tool at ${ALSO} in flight`, ALSO);
		const moreRate = total / more.seconds!;
		lines.push(`tool at ${ALSO} in flight:  ${more.seconds!.toFixed(2)} s  ${moreRate.toFixed(0)} objects/s  (${(moreRate / kubectlRate).toFixed(2)}x kubectl; --concurrency ${ALSO})`);
	}
});

await withTestbed(RSS_SECRETS, async tb => {
	await restage(tb, ['key1']);
	const ours = await tool(tb, `after the tool (${RSS_SECRETS})`);
	rss.push([RSS_SECRETS, ours.maxRssMB!, ours.rssBeforeMB!]);
	lines.push(`tool at ${RSS_SECRETS}: ${ours.seconds!.toFixed(2)} s  ${((ours.lastProgress?.total ?? RSS_SECRETS) / ours.seconds!).toFixed(0)} objects/s`);
});

for (const [n, mb, base] of rss) lines.push(`tool peak RSS at ${n} secrets: ${mb.toFixed(1)} MB (target <= 150 MB; the node+tsx process was ${base.toFixed(1)} MB before it started)`);
process.stdout.write(`${lines.join('\n')}\n`);
const flat = rss.length === 2 && Math.abs(rss[1]![1] - rss[0]![1]) <= 0.25 * rss[0]![1];
process.stdout.write(`RSS flat in N (within 25%): ${flat ? 'yes' : 'no'}\n`);
if (process.env['REENCRYPT_BENCH_STRICT'] === '1' && (ratio < 4 || !flat || rss.some(([, mb]) => mb > 150))) process.exit(1);

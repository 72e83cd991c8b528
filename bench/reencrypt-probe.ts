// Raw clients for bench/reencrypt, run inside the testbed's namespaces. Independent of the
// tool's code (node:https only), so they measure the apiserver, not etcd-harden:
//
//   probe:  paginated list of every secret (pages of 500) + PUT of each listed object at a FIXED
//           number in flight: the ceiling a well-written client reaches at that concurrency.
//   reader: GET one secret after another (one in flight) until a stop file appears; prints
//           the latencies' p50/p99: what another API client sees.
//
// Usage: node --import tsx bench/reencrypt-probe.ts '{"op":"probe","concurrency":32}'
//        node --import tsx bench/reencrypt-probe.ts '{"op":"reader","stopFile":"/tmp/x","secrets":["ns/name",...]}'
import {existsSync, readFileSync} from 'node:fs';
import https from 'node:https';
import {parse} from 'yaml';

type Command = {op: 'probe'; concurrency: number; pageSize?: number; kubeconfig?: string} | {op: 'reader'; stopFile: string; secrets: string[]; kubeconfig?: string};
const command = JSON.parse(process.argv[2] ?? '{}') as Command;

type Kubeconfig = {clusters: Array<{cluster: {server: string; 'certificate-authority-data': string}}>; users: Array<{user: {'client-certificate-data': string; 'client-key-data': string}}>};
const kc = parse(readFileSync(command.kubeconfig ?? '/etc/kubernetes/admin.conf', 'utf8')) as Kubeconfig;
const unb64 = (s: string) => Buffer.from(s, 'base64');
const server = new URL('https://127.0.0.1:6443');
const agent = new https.Agent({
	keepAlive: true,
	maxSockets: command.op === 'probe' ? command.concurrency : 1,
	ca: unb64(kc.clusters[0]!.cluster['certificate-authority-data']),
	cert: unb64(kc.users[0]!.user['client-certificate-data']),
	key: unb64(kc.users[0]!.user['client-key-data']),
});

function request(method: string, path: string, body?: string): Promise<{status: number; body: string}> {
	return new Promise((resolve, reject) => {
		const req = https.request(
			{host: server.hostname, port: server.port, method, path, agent, headers: {accept: 'application/json', ...(body ? {'content-type': 'application/json', 'content-length': Buffer.byteLength(body)} : {})}},
			res => {
				const chunks: Buffer[] = [];
				res.on('data', chunk => chunks.push(chunk as Buffer));
				res.on('end', () => resolve({status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8')}));
				res.on('error', reject);
			},
		);
		req.on('error', reject);
		req.end(body);
	});
}

async function probe(concurrency: number, pageSize: number): Promise<void> {
	const started = process.hrtime.bigint();
	let written = 0;
	let conflicts = 0;
	let throttled = 0;
	const inflight = new Set<Promise<void>>();
	let token: string | undefined;
	do {
		const page = await request('GET', `/api/v1/secrets?limit=${pageSize}${token ? `&continue=${encodeURIComponent(token)}` : ''}`);
		if (page.status !== 200) throw new Error(`list: ${page.status} ${page.body.slice(0, 200)}`);
		const list = JSON.parse(page.body) as {metadata: {continue?: string}; items: Array<{metadata: {namespace: string; name: string}}>};
		token = list.metadata.continue || undefined;
		for (const item of list.items) {
			while (inflight.size >= concurrency) await Promise.race(inflight);
			const body = JSON.stringify({kind: 'Secret', apiVersion: 'v1', ...item});
			const path = `/api/v1/namespaces/${item.metadata.namespace}/secrets/${item.metadata.name}`;
			const write = (async () => {
				for (;;) {
					const response = await request('PUT', path, body);
					if (response.status === 200) return void written++;
					if (response.status === 409) return void conflicts++; // a newer version exists: nothing to re-encrypt from this body
					if (response.status === 429 || response.status >= 500) {
						throttled++;
						await new Promise(resolve => setTimeout(resolve, 1000));
						continue;
					}
					throw new Error(`PUT ${path}: ${response.status} ${response.body.slice(0, 200)}`);
				}
			})();
			const tracked: Promise<void> = write.finally(() => inflight.delete(tracked));
			inflight.add(tracked);
		}
	} while (token);
	await Promise.all(inflight);
	const seconds = Number(process.hrtime.bigint() - started) / 1e9;
	process.stdout.write(`${JSON.stringify({ok: true, seconds, written, conflicts, throttled, maxRssMB: process.resourceUsage().maxRSS / 1024})}\n`);
}

async function reader(stopFile: string, secrets: string[]): Promise<void> {
	const latencies: number[] = [];
	let i = 0;
	while (!existsSync(stopFile)) {
		const [namespace, name] = secrets[i++ % secrets.length]!.split('/') as [string, string];
		const t0 = process.hrtime.bigint();
		const response = await request('GET', `/api/v1/namespaces/${namespace}/secrets/${name}`);
		latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
		if (response.status !== 200) throw new Error(`GET: ${response.status}`);
		await new Promise(resolve => setTimeout(resolve, 10)); // about 50-90 reads/s: a client, not a load generator
	}
	latencies.sort((a, b) => a - b);
	const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
	process.stdout.write(`${JSON.stringify({ok: true, count: latencies.length, p50: at(0.5), p99: at(0.99)})}\n`);
}

if (command.op === 'probe') await probe(command.concurrency, command.pageSize ?? 500);
else await reader(command.stopFile, command.secrets);
agent.destroy();

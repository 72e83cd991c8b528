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

type Command = {op: 'probe'; concurrency: number; pageSize?: number; kubeconfig?: string; format?: 'json' | 'protobuf'} | {op: 'reader'; stopFile: string; secrets: string[]; kubeconfig?: string};
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

const PROTOBUF = 'application/vnd.kubernetes.protobuf';

function request(method: string, path: string, body?: string | Buffer, type = 'application/json'): Promise<{status: number; body: string; raw: Buffer}> {
	return new Promise((resolve, reject) => {
		const req = https.request(
			{host: server.hostname, port: server.port, method, path, agent, headers: {accept: type, ...(body ? {'content-type': type, 'content-length': Buffer.byteLength(body)} : {})}},
			res => {
				const chunks: Buffer[] = [];
				res.on('data', chunk => chunks.push(chunk as Buffer));
				res.on('end', () => {
					const raw = Buffer.concat(chunks);
					resolve({status: res.statusCode ?? 0, raw, get body() {
						return raw.toString('utf8');
					}});
				});
				res.on('error', reject);
			},
		);
		req.on('error', reject);
		req.end(body);
	});
}

async function probe(concurrency: number, pageSize: number, format: 'json' | 'protobuf'): Promise<void> {
	const started = process.hrtime.bigint();
	let written = 0;
	let conflicts = 0;
	let throttled = 0;
	const inflight = new Set<Promise<void>>();
	let token: string | undefined;
	do {
		const page = await listPage(token, pageSize, format);
		token = page.continue;
		for (const item of page.items) {
			while (inflight.size >= concurrency) await Promise.race(inflight);
			const {body} = item;
			const path = `/api/v1/namespaces/${item.namespace}/secrets/${item.name}`;
			const write = (async () => {
				for (;;) {
					const response = await request('PUT', path, body, format === 'protobuf' ? PROTOBUF : 'application/json');
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

type Listed = {namespace: string; name: string; body: string | Buffer};

/** One page of secrets, each with the body its PUT sends back (as listed, with its resourceVersion). */
async function listPage(token: string | undefined, pageSize: number, format: 'json' | 'protobuf'): Promise<{continue?: string; items: Listed[]}> {
	const path = `/api/v1/secrets?limit=${pageSize}${token ? `&continue=${encodeURIComponent(token)}` : ''}`;
	const page = await request('GET', path, undefined, format === 'protobuf' ? PROTOBUF : 'application/json');
	if (page.status !== 200) throw new Error(`list: ${page.status} ${page.body.slice(0, 200)}`);
	if (format === 'json') {
		const list = JSON.parse(page.body) as {metadata: {continue?: string}; items: Array<{metadata: {namespace: string; name: string}}>};
		return {
			continue: list.metadata.continue || undefined,
			items: list.items.map(item => ({namespace: item.metadata.namespace, name: item.metadata.name, body: JSON.stringify({kind: 'Secret', apiVersion: 'v1', ...item})})),
		};
	}
	// Protobuf: "k8s\0" + runtime.Unknown{1: typeMeta, 2: raw SecretList{1: ListMeta{3: continue}, 2: items}};
	// each item goes back as "k8s\0" + Unknown{typeMeta v1/Secret, raw: the item's bytes}.
	const envelope = fields(page.raw.subarray(4));
	const list = fields(envelope.get(2)![0]!);
	const listMeta = fields(list.get(1)?.[0] ?? Buffer.alloc(0));
	const typeMeta = Buffer.concat([field(1, Buffer.from('v1')), field(2, Buffer.from('Secret'))]);
	const items = (list.get(2) ?? []).map(item => {
		const meta = fields(fields(item).get(1)![0]!);
		return {
			name: meta.get(1)![0]!.toString(),
			namespace: meta.get(3)![0]!.toString(),
			body: Buffer.concat([Buffer.from('k8s\0', 'latin1'), field(1, typeMeta), field(2, item)]),
		};
	});
	const next = listMeta.get(3)?.[0]?.toString();
	return {continue: next || undefined, items};
}

function varint(buf: Buffer, at: number): [number, number] {
	let value = 0;
	let shift = 1;
	for (;;) {
		const byte = buf[at++]!;
		value += (byte & 0x7f) * shift;
		if (byte < 0x80) return [value, at];
		shift *= 128;
	}
}

/** The length-delimited fields of a message by number (other wire types skipped). */
function fields(buf: Buffer): Map<number, Buffer[]> {
	const out = new Map<number, Buffer[]>();
	let at = 0;
	while (at < buf.length) {
		const [key, next] = varint(buf, at);
		at = next;
		const wire = key & 7;
		if (wire === 0) at = varint(buf, at)[1];
		else if (wire === 1) at += 8;
		else if (wire === 5) at += 4;
		else if (wire === 2) {
			const [length, start] = varint(buf, at);
			const list = out.get(key >>> 3) ?? out.set(key >>> 3, []).get(key >>> 3)!;
			list.push(buf.subarray(start, start + length));
			at = start + length;
		} else throw new Error(`protobuf: wire type ${wire}`);
	}
	return out;
}

function encodeVarint(value: number): Buffer {
	const bytes: number[] = [];
	while (value >= 0x80) {
		bytes.push((value & 0x7f) | 0x80);
		value = Math.floor(value / 128);
	}
	bytes.push(value);
	return Buffer.from(bytes);
}

function field(number: number, bytes: Buffer): Buffer {
	return Buffer.concat([encodeVarint((number << 3) | 2), encodeVarint(bytes.length), bytes]);
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

if (command.op === 'probe') await probe(command.concurrency, command.pageSize ?? 500, command.format ?? 'json');
else await reader(command.stopFile, command.secrets);
agent.destroy();

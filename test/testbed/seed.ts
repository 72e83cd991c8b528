// Runs inside the testbed's namespaces: creates the kubeadm-config ConfigMap, the control-plane Node
// and the seeded namespaces, secrets and configmaps, with concurrent requests over keep-alive TLS.
// Usage: node --import tsx seed.ts '<SeedRequest as JSON>'
import {readFile} from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {parse as parseYaml} from 'yaml';
import {seededConfigMap, seededSecret, seedNamespaces} from './seed-data.js';

export interface SeedRequest {
	kubeconfig: string;
	secrets: number;
	configMaps: number;
	namespaces: number;
	concurrency?: number;
	/** kubeadm-config ConfigMap data (ClusterConfiguration, ClusterStatus); skipped when absent. */
	kubeadmConfig?: Record<string, string>;
	nodeName?: string;
	nodeIp?: string;
}

interface Kubeconfig {
	clusters: Array<{cluster: {server: string; 'certificate-authority-data': string}}>;
	users: Array<{user: {'client-certificate-data': string; 'client-key-data': string}}>;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64');

async function main(): Promise<void> {
	const req = JSON.parse(process.argv[2] ?? '') as SeedRequest;
	const kc = parseYaml(await readFile(req.kubeconfig, 'utf8')) as Kubeconfig;
	const server = new URL(kc.clusters[0]!.cluster.server);
	const concurrency = req.concurrency ?? 32;
	const agent = new https.Agent({
		keepAlive: true,
		maxSockets: concurrency,
		ca: unb64(kc.clusters[0]!.cluster['certificate-authority-data']),
		cert: unb64(kc.users[0]!.user['client-certificate-data']),
		key: unb64(kc.users[0]!.user['client-key-data']),
	});

	function post(apiPath: string, body: unknown, allowExisting = true): Promise<void> {
		const payload = JSON.stringify(body);
		return new Promise((resolve, reject) => {
			const r = https.request(
				{
					agent,
					host: server.hostname,
					port: server.port,
					method: 'POST',
					path: apiPath,
					headers: {'content-type': 'application/json', 'content-length': Buffer.byteLength(payload)},
				},
				(res) => {
					const chunks: Buffer[] = [];
					res.on('data', (c: Buffer) => chunks.push(c));
					res.on('end', () => {
						const status = res.statusCode ?? 0;
						if (status < 300 || (allowExisting && status === 409)) resolve();
						else reject(new Error(`POST ${apiPath}: HTTP ${status}: ${Buffer.concat(chunks).toString().slice(0, 300)}`));
					});
				},
			);
			r.on('error', reject);
			r.end(payload);
		});
	}

	async function pool(count: number, make: (i: number) => Promise<void>): Promise<void> {
		let next = 0;
		const worker = async () => {
			while (next < count) {
				const i = next++;
				await make(i);
			}
		};
		await Promise.all(Array.from({length: Math.min(concurrency, count)}, worker));
	}

	const t0 = Date.now();
	if (req.kubeadmConfig) {
		await post('/api/v1/namespaces/kube-system/configmaps', {
			apiVersion: 'v1',
			kind: 'ConfigMap',
			metadata: {name: 'kubeadm-config', namespace: 'kube-system'},
			data: req.kubeadmConfig,
		});
	}
	if (req.nodeName) {
		await post('/api/v1/nodes', {
			apiVersion: 'v1',
			kind: 'Node',
			metadata: {
				name: req.nodeName,
				labels: {
					'kubernetes.io/hostname': req.nodeName,
					'kubernetes.io/os': 'linux',
					'node-role.kubernetes.io/control-plane': '',
					'node-role.kubernetes.io/master': '',
				},
				annotations: {'kubeadm.alpha.kubernetes.io/cri-socket': '/run/containerd/containerd.sock'},
			},
			spec: {taints: [{key: 'node-role.kubernetes.io/master', effect: 'NoSchedule'}]},
		});
	}
	for (const ns of seedNamespaces(req.namespaces)) {
		await post('/api/v1/namespaces', {apiVersion: 'v1', kind: 'Namespace', metadata: {name: ns, labels: {'testbed/seed': 'true'}}});
	}
	await pool(req.secrets, async (i) => {
		const s = seededSecret(i, req.namespaces);
		const data = Object.fromEntries(Object.entries(s.data).map(([k, v]) => [k, b64(v)]));
		await post(`/api/v1/namespaces/${s.namespace}/secrets`, {
			apiVersion: 'v1',
			kind: 'Secret',
			metadata: {name: s.name, namespace: s.namespace, labels: {'testbed/seed': 'true'}},
			type: 'Opaque',
			data,
		});
	});
	await pool(req.configMaps, async (i) => {
		const c = seededConfigMap(i, req.namespaces);
		await post(`/api/v1/namespaces/${c.namespace}/configmaps`, {
			apiVersion: 'v1',
			kind: 'ConfigMap',
			metadata: {name: c.name, namespace: c.namespace, labels: {'testbed/seed': 'true'}},
			data: c.data,
		});
	});
	agent.destroy();
	process.stdout.write(JSON.stringify({secrets: req.secrets, configMaps: req.configMaps, ms: Date.now() - t0}) + '\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
	main().catch((error) => {
		process.stderr.write(`seed failed: ${error instanceof Error ? error.message : String(error)}\n`);
		process.exit(1);
	});
}

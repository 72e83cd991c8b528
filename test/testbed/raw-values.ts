import type {Testbed} from './index.js';

/**
 * Every raw etcd value under a prefix, counted by how it is stored: `secretbox:key1` (from
 * the `k8s:enc:<provider>:v1:<key>:` prefix), `plaintext` (`k8s\0` protobuf) or `other`.
 * Read with etcdctl inside the testbed, independently of the tool under test.
 */
export async function storedValueCounts(tb: Testbed, prefix = '/registry/secrets/'): Promise<Record<string, number>> {
	const result = await tb.etcdctl(['get', prefix, '--prefix', '-w', 'json'], {maxBuffer: 1024 * 1024 * 1024});
	const counts: Record<string, number> = {};
	for (const kv of (JSON.parse(String(result.stdout)) as {kvs?: Array<{value: string}>}).kvs ?? []) {
		const head = Buffer.from(kv.value, 'base64').subarray(0, 40).toString('latin1');
		const match = /^k8s:enc:(\w+):v1:([^:]+):/.exec(head);
		const label = match ? `${match[1]}:${match[2]}` : head.startsWith('k8s\0') ? 'plaintext' : 'other';
		counts[label] = (counts[label] ?? 0) + 1;
	}
	return counts;
}

import {describe, expect, it} from 'vitest';
import type {Arg, Host, RunOptions, RunResult} from '../../source/host/types.js';
import {etcdPrefixForResource, objectRefFromKey, prefixRangeEnd, scanIsClean, scanResources} from '../../source/etcd/scan.js';
import type {EtcdConnection} from '../../source/etcd/connection.js';

/**
 * A fake host whose only command is `etcdctl get START END --limit=N [--rev=R] -w json`,
 * answered from a sorted in-memory keyspace with etcd's range semantics.
 */
class FakeEtcdHost {
	readonly root = '/';
	readonly dryRun = false;
	readonly calls: Array<{argv: string[]; options?: RunOptions}> = [];
	compactNextRev = false;
	/** Fail like execa does when a page would be larger than its output buffer. */
	maxLimit = Infinity;
	constructor(
		readonly data: Map<string, Buffer>,
		readonly revision = 42,
	) {}

	async run(argv: Arg[], options?: RunOptions): Promise<RunResult> {
		const flat = argv.map(arg => (typeof arg === 'string' ? arg : 'path' in arg ? `@${arg.path}` : '<secret>'));
		this.calls.push({argv: flat, ...(options === undefined ? {} : {options})});
		const getIndex = flat.indexOf('get');
		const [start, end] = [flat[getIndex + 1]!, flat[getIndex + 2]!];
		const limit = Number(flat.find(arg => arg.startsWith('--limit='))!.slice('--limit='.length));
		const rev = flat.find(arg => arg.startsWith('--rev='));
		if (limit > this.maxLimit) {
			return {exitCode: 1, stdout: '', stderr: 'Command failed: stdout maxBuffer exceeded\n', timedOut: false};
		}
		if (rev !== undefined && this.compactNextRev) {
			this.compactNextRev = false;
			return {exitCode: 1, stdout: '', stderr: 'Error: etcdserver: mvcc: required revision has been compacted\n', timedOut: false};
		}
		const inRange = [...this.data.keys()]
			.filter(key => Buffer.compare(Buffer.from(key), Buffer.from(start)) >= 0 && Buffer.compare(Buffer.from(key), Buffer.from(end, 'latin1')) < 0)
			.sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
		const page = inRange.slice(0, limit);
		const response: Record<string, unknown> = {
			header: {cluster_id: 1, member_id: 2, revision: this.revision, raft_term: 2},
			count: inRange.length,
		};
		if (page.length > 0) {
			response.kvs = page.map(key => ({
				key: Buffer.from(key).toString('base64'),
				create_revision: 2,
				mod_revision: 3,
				version: 1,
				value: this.data.get(key)!.toString('base64'),
			}));
		}
		if (inRange.length > limit) response.more = true;
		return {exitCode: 0, stdout: JSON.stringify(response), stderr: '', timedOut: false};
	}
}

const connection: EtcdConnection = {endpoints: ['https://127.0.0.1:2379'], cacert: '/pki/ca.crt', cert: '/pki/c.crt', key: '/pki/c.key'};
const protobuf = (name: string): Buffer => Buffer.from(`k8s\0\n\x02v1${name}`, 'latin1');
const sealed = (label: string, name: string): Buffer => Buffer.from(`k8s:enc:${label}:${name}-ciphertext`, 'latin1');

function keyspace(): Map<string, Buffer> {
	const data = new Map<string, Buffer>();
	for (let index = 0; index < 23; index++) data.set(`/registry/secrets/ns${index % 3}/s${String(index).padStart(2, '0')}`, sealed('secretbox:v1:key1', `s${index}`));
	data.set('/registry/secrets/ns1/old-a', sealed('secretbox:v1:key2', 'a'));
	data.set('/registry/secrets/ns2/old-b', sealed('aesgcm:v1:g', 'b'));
	data.set('/registry/secrets/kube-system/plain', protobuf('p'));
	data.set('/registry/secrets/kube-system/json', Buffer.from('{"kind":"Secret","apiVersion":"v1"}'));
	data.set('/registry/secrets/x/garbage', Buffer.from('\x01\x02garbage'));
	// Neighbours that must not be scanned as secrets.
	data.set('/registry/secrets', protobuf('not-under-prefix'));
	data.set('/registry/secretsx/a/b', protobuf('other'));
	data.set('/registry/serviceaccounts/a/b', protobuf('other'));
	data.set('/registry/configmaps/ns0/c1', protobuf('c1'));
	data.set('/registry/configmaps/ns0/c2', sealed('secretbox:v1:key1', 'c2'));
	data.set('/registry/namespaces/ns0', protobuf('ns0'));
	return data;
}

describe('resource prefixes', () => {
	it('maps core, built-in group, special and custom resources', () => {
		expect(etcdPrefixForResource('secrets')).toBe('/registry/secrets/');
		expect(etcdPrefixForResource('configmaps')).toBe('/registry/configmaps/');
		expect(etcdPrefixForResource('deployments.apps')).toBe('/registry/deployments/');
		expect(etcdPrefixForResource('services')).toBe('/registry/services/specs/');
		expect(etcdPrefixForResource('nodes')).toBe('/registry/minions/');
		expect(etcdPrefixForResource('ingresses.networking.k8s.io')).toBe('/registry/ingress/');
		expect(etcdPrefixForResource('widgets.example.com')).toBe('/registry/example.com/widgets/');
		expect(etcdPrefixForResource('apiservices.apiregistration.k8s.io')).toBe('/registry/apiregistration.k8s.io/apiservices/');
		expect(etcdPrefixForResource('secrets', '/custom/')).toBe('/custom/secrets/');
		expect(() => etcdPrefixForResource('*.*')).toThrow();
	});

	it('computes range ends and object references', () => {
		expect(prefixRangeEnd('/registry/secrets/')).toBe('/registry/secrets0');
		expect(prefixRangeEnd('/registry/example.com/widgets/')).toBe('/registry/example.com/widgets0');
		expect(() => prefixRangeEnd('a\xff')).toThrow();
		expect(objectRefFromKey('/registry/secrets/', '/registry/secrets/ns/name')).toEqual({key: '/registry/secrets/ns/name', namespace: 'ns', name: 'name'});
		expect(objectRefFromKey('/registry/namespaces/', '/registry/namespaces/kube-system')).toEqual({key: '/registry/namespaces/kube-system', name: 'kube-system'});
	});
});

describe('scanResources', () => {
	for (const pageSize of [1, 2, 7, 28, 29, 1000]) {
		it(`counts every key exactly once with page size ${pageSize}`, async () => {
			const host = new FakeEtcdHost(keyspace());
			const report = await scanResources(host as unknown as Host, connection, ['secrets', 'configmaps'], {
				pageSize,
				primary: {type: 'secretbox', keyName: 'key1'},
			});
			const [secrets, configmaps] = report.resources;
			expect(secrets).toMatchObject({
				resource: 'secrets',
				prefix: '/registry/secrets/',
				total: 28,
				byKey: {'secretbox:key1': 23, 'secretbox:key2': 1, 'aesgcm:g': 1},
				plaintext: 2,
				unknown: 1,
				unknownKeys: ['/registry/secrets/x/garbage'],
				primary: 'secretbox:key1',
				revision: 42,
				consistent: true,
			});
			expect(secrets!.notOnPrimary!.map(ref => ref.key).sort()).toEqual(
				[
					'/registry/secrets/kube-system/json',
					'/registry/secrets/kube-system/plain',
					'/registry/secrets/ns1/old-a',
					'/registry/secrets/ns2/old-b',
					'/registry/secrets/x/garbage',
				].sort(),
			);
			expect(secrets!.notOnPrimary).toContainEqual({key: '/registry/secrets/ns1/old-a', namespace: 'ns1', name: 'old-a'});
			expect(configmaps).toMatchObject({total: 2, plaintext: 1, byKey: {'secretbox:key1': 1}});
			expect(configmaps!.notOnPrimary).toEqual([{key: '/registry/configmaps/ns0/c1', namespace: 'ns0', name: 'c1'}]);
			expect(report.keysScanned).toBe(30);
			expect(scanIsClean(secrets!)).toBe(false);

			// Paging: never more than pageSize + 1 keys per request, later pages pinned to the first revision.
			const secretCalls = host.calls.filter(call => call.argv.includes('/registry/secrets/') || call.argv.some(arg => arg.startsWith('/registry/secrets/')));
			expect(secretCalls.length).toBe(Math.max(1, Math.ceil(28 / pageSize)));
			for (const [index, call] of secretCalls.entries()) {
				expect(call.argv).toContain(`--limit=${index === 0 ? pageSize : pageSize + 1}`);
				if (index > 0) expect(call.argv).toContain('--rev=42');
				expect(call.argv).toContain('/registry/secrets0');
				expect(call.options?.readOnly).toBe(true);
				expect(call.argv).toContain('@/pki/ca.crt');
			}
		});
	}

	it('reports progress with the total from the first page', async () => {
		const host = new FakeEtcdHost(keyspace());
		const progress: Array<[number, number]> = [];
		await scanResources(host as unknown as Host, connection, ['secrets'], {pageSize: 10, onProgress: p => progress.push([p.scanned, p.total])});
		expect(progress).toEqual([
			[10, 28],
			[20, 28],
			[28, 28],
		]);
	});

	it('continues at the current revision when the pinned one is compacted', async () => {
		const host = new FakeEtcdHost(keyspace());
		host.compactNextRev = true;
		const report = await scanResources(host as unknown as Host, connection, ['secrets'], {pageSize: 5});
		expect(report.resources[0]).toMatchObject({total: 28, consistent: false});
	});

	it('sizes pages adaptively from the output per key when no page size is given', async () => {
		const big = new Map<string, Buffer>();
		for (let index = 0; index < 2500; index++) big.set(`/registry/secrets/ns/s${String(index).padStart(5, '0')}`, sealed('secretbox:v1:key1', `s${index}`));
		const small = new FakeEtcdHost(big);
		const one = await scanResources(small as unknown as Host, connection, ['secrets'], {pageBytes: 1});
		expect(one.resources[0]!.total).toBe(2500);
		// 1000 first, then the 100-key minimum.
		expect(small.calls.map(call => call.argv.find(arg => arg.startsWith('--limit=')))).toEqual([
			'--limit=1000',
			...Array.from({length: 15}, () => '--limit=101'),
		]);
		const large = new FakeEtcdHost(big);
		const two = await scanResources(large as unknown as Host, connection, ['secrets'], {pageBytes: 1e9});
		expect(two.resources[0]!.total).toBe(2500);
		expect(large.calls.map(call => call.argv.find(arg => arg.startsWith('--limit=')))).toEqual(['--limit=1000', '--limit=10001']);
	});

	it('halves the page when the output is too large for the buffer', async () => {
		const host = new FakeEtcdHost(keyspace());
		host.maxLimit = 8;
		const report = await scanResources(host as unknown as Host, connection, ['secrets'], {pageSize: 50});
		expect(report.resources[0]!.total).toBe(28);
		expect(Math.max(...host.calls.map(call => Number(call.argv.find(arg => arg.startsWith('--limit='))!.slice(8))))).toBe(50);
	});

	it('is clean when every value is on the primary; identity primary lists encrypted values', async () => {
		const data = new Map([...keyspace()].filter(([key]) => !key.startsWith('/registry/secrets/') || key.match(/\/s\d\d$/)));
		const host = new FakeEtcdHost(data);
		const report = await scanResources(host as unknown as Host, connection, ['secrets', 'namespaces'], {
			pageSize: 4,
			primary: resource => (resource === 'secrets' ? {type: 'secretbox', keyName: 'key1'} : {type: 'identity'}),
		});
		expect(report.resources[0]).toMatchObject({total: 23, notOnPrimary: []});
		expect(scanIsClean(report.resources[0]!)).toBe(true);
		expect(report.resources[1]).toMatchObject({total: 1, plaintext: 1, primary: 'identity', notOnPrimary: []});
		expect(scanIsClean(report.resources[1]!)).toBe(true);
	});

	it('throws on an etcdctl failure with the command and stderr, without key paths resolved', async () => {
		const host = {
			root: '/',
			dryRun: false,
			run: async () => ({exitCode: 1, stdout: '', stderr: 'Error: context deadline exceeded\n', timedOut: false}),
		};
		await expect(scanResources(host as unknown as Host, connection, ['secrets'])).rejects.toThrow(
			/etcdctl --endpoints=https:\/\/127.0.0.1:2379 .*get \/registry\/secrets\/ .*context deadline exceeded/,
		);
	});
});

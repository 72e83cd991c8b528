import {describe, expect, it} from 'vitest';
import type {Arg, GrpcRequest, GrpcResponse, Host, RunOptions, RunResult} from '../../source/host/types.js';
import {GrpcTransportError} from '../../source/host/types.js';
import {etcdPrefixForResource, objectRefFromKey, prefixRangeEnd, scanIsClean, scanResources} from '../../source/etcd/scan.js';
import type {EtcdConnection} from '../../source/etcd/connection.js';
import {decodeRangeResponse, encodeRangeRequest, ProtobufError} from '../../source/etcd/range-pb.js';
import {RANGE_METHOD} from '../../source/etcd/kv-grpc.js';

/**
 * A fake host whose only command is `etcdctl get START END --limit=N [--rev=R] -w protobuf`,
 * answered from a sorted in-memory keyspace with etcd's range semantics (as a RangeResponse
 * message; the decoder itself is checked against real etcdctl output below).
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
		if (flat.at(-1) !== 'protobuf' || !options?.binaryStdout) throw new Error(`fake etcdctl: expected -w protobuf with binary stdout: ${flat.join(' ')}`);
		const bytes = encodeRangeResponse({
			revision: this.revision,
			count: inRange.length,
			more: inRange.length > limit,
			kvs: page.map(key => ({key: Buffer.from(key), value: this.data.get(key)!})),
		});
		return {exitCode: 0, stdout: '', stdoutBytes: bytes, stderr: '', timedOut: false};
	}
}

/** RangeResponse encoder for the fake (only the fields the decoder reads). */
function encodeRangeResponse(response: {revision: number; count: number; more: boolean; kvs: Array<{key: Buffer; value: Buffer; modRevision?: number}>}): Buffer {
	const parts: Buffer[] = [];
	const pushVarint = (out: number[], value: number) => {
		let v = value;
		while (v >= 0x80) {
			out.push((v % 128) | 0x80);
			v = Math.floor(v / 128);
		}
		out.push(v);
	};
	const field = (number: number, payload: Buffer): Buffer => {
		const head: number[] = [];
		pushVarint(head, (number << 3) | 2);
		pushVarint(head, payload.length);
		return Buffer.concat([Buffer.from(head), payload]);
	};
	const scalar = (number: number, value: number): Buffer => {
		const out: number[] = [];
		pushVarint(out, number << 3);
		pushVarint(out, value);
		return Buffer.from(out);
	};
	parts.push(field(1, Buffer.concat([scalar(1, 7), scalar(3, response.revision)])));
	for (const kv of response.kvs) {
		parts.push(field(2, Buffer.concat([field(1, kv.key), scalar(2, 2), scalar(3, kv.modRevision ?? 3), scalar(4, 1), field(5, kv.value)])));
	}
	if (response.more) parts.push(scalar(3, 1));
	if (response.count > 0) parts.push(scalar(4, response.count));
	return Buffer.concat(parts);
}

describe('decodeRangeResponse (etcdctl get -w protobuf)', () => {
	// Captured from etcdctl 3.4.23 against etcd 3.4.23: `get /registry/secrets/ /registry/secrets0
	// --limit=1 -w protobuf` over two keys (a/b = "k8sxyz", a/c = "hello").
	const real = Buffer.from(
		'0a1a08aaf4e5f599f3ebe7d101108df2f48ec1f7a6d7bd01180320021225' + '0a152f72656769737472792f736563726574732f612f62' + '1002180220012a066b387378797a' + '18012002',
		'hex',
	);

	it('reads the header revision, the key, the value bytes, more and count from real etcdctl output', () => {
		const decoded = decodeRangeResponse(real);
		expect(decoded.revision).toBe(3);
		expect(decoded.more).toBe(true);
		expect(decoded.count).toBe(2);
		expect(decoded.kvs).toHaveLength(1);
		expect(decoded.kvs[0]!.key.toString('utf8')).toBe('/registry/secrets/a/b');
		expect(decoded.kvs[0]!.value).toEqual(Buffer.from('k8sxyz', 'latin1'));
		expect(decoded.kvs[0]!.modRevision).toBe(2);
	});

	it('round-trips binary values and large revisions, and rejects truncated input with a ProtobufError', () => {
		const value = Buffer.from([0, 255, 128, 10, 13, 0x80, 0xff]);
		const bytes = encodeRangeResponse({revision: 2 ** 40 + 5, count: 300, more: false, kvs: [{key: Buffer.from('/k/é'), value}]});
		const decoded = decodeRangeResponse(bytes);
		expect(decoded).toMatchObject({revision: 2 ** 40 + 5, count: 300, more: false});
		expect(decoded.kvs[0]!.value).toEqual(value);
		expect(decoded.kvs[0]!.key.toString('utf8')).toBe('/k/é');
		expect(() => decodeRangeResponse(bytes.subarray(0, bytes.length - 5))).toThrow(ProtobufError);
	});
});

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
	it('counts the objects off the primary without listing them when asked not to (discovery)', async () => {
		const host = new FakeEtcdHost(keyspace());
		const options = {pageSize: 7, primary: {type: 'secretbox' as const, keyName: 'key1'}};
		const listed = await scanResources(host as unknown as Host, connection, ['secrets', 'configmaps'], options);
		const counted = await scanResources(host as unknown as Host, connection, ['secrets', 'configmaps'], {...options, listNotOnPrimary: false});
		expect(listed.resources.map(scan => scan.notOnPrimaryCount)).toEqual([5, 1]);
		expect(listed.resources.map(scan => scan.notOnPrimary?.length)).toEqual([5, 1]);
		expect(counted.resources.map(scan => scan.notOnPrimaryCount)).toEqual([5, 1]);
		expect(counted.resources.map(scan => scan.notOnPrimary)).toEqual([undefined, undefined]);
		// Or handed over one by one, in the order a list would hold them, without being kept.
		const handed: string[] = [];
		const streamed = await scanResources(host as unknown as Host, connection, ['secrets', 'configmaps'], {
			...options,
			listNotOnPrimary: false,
			onNotOnPrimary: (resource, ref) => handed.push(`${resource}:${ref.key}`),
		});
		expect(streamed.resources.map(scan => scan.notOnPrimary)).toEqual([undefined, undefined]);
		expect(handed).toEqual(listed.resources.flatMap(scan => scan.notOnPrimary!.map(ref => `${scan.resource}:${ref.key}`)));
		// The verdict does not depend on the list.
		expect(counted.resources.map(scanIsClean)).toEqual([false, false]);
		const identity = await scanResources(host as unknown as Host, connection, ['secrets'], {...options, primary: {type: 'identity'}, listNotOnPrimary: false});
		expect(identity.resources[0]!.notOnPrimaryCount).toBe(26); // all but the 2 plaintext values
	});

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

/** RangeRequest fields 1-4 (key, range_end, limit, revision), decoded independently of the encoder. */
function decodeRangeRequest(bytes: Buffer): {key: Buffer; rangeEnd: Buffer; limit: number; revision: number; keysOnly: boolean; countOnly: boolean; other: number[]} {
	const out = {key: Buffer.alloc(0), rangeEnd: Buffer.alloc(0), limit: 0, revision: 0, keysOnly: false, countOnly: false, other: [] as number[]};
	let pos = 0;
	const varint = (): number => {
		let result = 0;
		for (let scale = 1; ; scale *= 128) {
			const byte = bytes[pos++]!;
			result += (byte & 0x7f) * scale;
			if (byte < 0x80) return result;
		}
	};
	while (pos < bytes.length) {
		const tag = varint();
		if ((tag & 7) === 2) {
			const length = varint();
			const value = bytes.subarray(pos, pos + length);
			pos += length;
			if (tag >> 3 === 1) out.key = value;
			else if (tag >> 3 === 2) out.rangeEnd = value;
			else out.other.push(tag >> 3);
		} else {
			const value = varint();
			if (tag >> 3 === 3) out.limit = value;
			else if (tag >> 3 === 4) out.revision = value;
			else if (tag >> 3 === 8) out.keysOnly = value === 1;
			else if (tag >> 3 === 9) out.countOnly = value === 1;
			else out.other.push(tag >> 3);
		}
	}
	return out;
}

describe('encodeRangeRequest (etcdserverpb.RangeRequest)', () => {
	it('encodes key, range end, limit and revision as protobuf fields 1-4, omitting zero values', () => {
		// Hand-encoded: field 1 "/a", field 2 "/b", field 3 = 300 (varint ac 02), field 4 = 2^40 + 5
		// (varint 85 80 80 80 80 20: six 7-bit groups, bit 40 is bit 5 of the sixth).
		expect(encodeRangeRequest({key: Buffer.from('/a'), rangeEnd: Buffer.from('/b'), limit: 300, revision: 2 ** 40 + 5}).toString('hex')).toBe(
			'0a022f611202' + '2f62' + '18ac02' + '20858080808020',
		);
		expect(encodeRangeRequest({key: Buffer.from('/a'), rangeEnd: Buffer.from('/b')}).toString('hex')).toBe('0a022f6112022f62');
		expect(decodeRangeRequest(encodeRangeRequest({key: Buffer.from([0, 255]), rangeEnd: Buffer.from('z'), limit: 1, revision: 7}))).toEqual({
			key: Buffer.from([0, 255]),
			rangeEnd: Buffer.from('z'),
			limit: 1,
			revision: 7,
			keysOnly: false,
			countOnly: false,
			other: [],
		});
		expect(encodeRangeRequest({key: Buffer.from('/a'), rangeEnd: Buffer.from('/b'), keysOnly: true, countOnly: true}).toString('hex')).toBe('0a022f6112022f62' + '4001' + '4801');
	});
});

/**
 * The same keyspace answered over gRPC (Host.grpcUnary, as RealHost does for http(s) endpoints):
 * the scan's own Range requests are decoded here, and etcdctl must not run.
 */
class FakeGrpcEtcdHost extends FakeEtcdHost {
	readonly grpcCalls: Array<{endpoint: string; request: ReturnType<typeof decodeRangeRequest>; caFile?: string}> = [];
	/** Endpoints that refuse connections. */
	unreachable = new Set<string>();
	/** Fail this call (1-based) with a transport error. */
	breakCall = 0;
	compactNextGrpcRev = false;

	async grpcUnary(call: GrpcRequest): Promise<GrpcResponse> {
		if (call.method !== RANGE_METHOD) throw new Error(`fake: unexpected method ${call.method}`);
		if (this.unreachable.has(call.endpoint)) throw new GrpcTransportError(`${call.endpoint}: connect ECONNREFUSED`);
		const request = decodeRangeRequest(Buffer.from(call.message));
		this.grpcCalls.push({endpoint: call.endpoint, request, ...(call.caFile === undefined ? {} : {caFile: call.caFile})});
		if (this.grpcCalls.length === this.breakCall) throw new GrpcTransportError(`${call.endpoint}: stream reset`);
		if (request.revision !== 0 && this.compactNextGrpcRev) {
			this.compactNextGrpcRev = false;
			return {status: 11, statusMessage: 'etcdserver: mvcc: required revision has been compacted', message: Buffer.alloc(0)};
		}
		const inRange = [...this.data.keys()]
			.map(key => Buffer.from(key))
			.filter(key => Buffer.compare(key, request.key) >= 0 && Buffer.compare(key, request.rangeEnd) < 0)
			.sort(Buffer.compare);
		const page = request.countOnly ? [] : request.limit === 0 ? inRange : inRange.slice(0, request.limit);
		const message = encodeRangeResponse({
			revision: this.revision,
			count: inRange.length,
			more: !request.countOnly && inRange.length > page.length,
			kvs: page.map(key => ({key, value: request.keysOnly ? Buffer.alloc(0) : this.data.get(key.toString())!})),
		});
		return {status: 0, statusMessage: '', message};
	}
}

/** The scan's page reads of secrets (not the namespace list or the count). */
function secretPages(host: FakeGrpcEtcdHost) {
	return host.grpcCalls.filter(call => !call.request.keysOnly && !call.request.countOnly && call.request.key.toString().startsWith('/registry/secrets/'));
}

describe('scanResources over gRPC', () => {
	for (const pageSize of [1, 7, 29]) {
		it(`reads every page over gRPC with page size ${pageSize}, pinned to the first revision, and counts as etcdctl does`, async () => {
			const host = new FakeGrpcEtcdHost(keyspace());
			const options = {pageSize, primary: {type: 'secretbox', keyName: 'key1'}} as const;
			const report = await scanResources(host as unknown as Host, connection, ['secrets', 'configmaps'], options);
			expect(host.calls).toEqual([]); // no etcdctl
			const viaEtcdctl = await scanResources(new FakeEtcdHost(keyspace()) as unknown as Host, connection, ['secrets', 'configmaps'], options);
			expect({...report, elapsedMs: 0}).toEqual({...viaEtcdctl, elapsedMs: 0});
			expect(report.resources[0]).toMatchObject({total: 28, unknown: 1, revision: 42, consistent: true});
			const pages = secretPages(host);
			expect(pages.length).toBeGreaterThanOrEqual(Math.ceil(28 / pageSize));
			for (const [index, call] of pages.entries()) {
				expect(call.request.limit).toBeLessThanOrEqual(pageSize + 1);
				expect(call.request.revision).toBe(index === 0 ? 0 : 42);
				expect(call.request.other).toEqual([]);
				expect(call.caFile).toBe('/pki/ca.crt');
				expect(call.endpoint).toBe('https://127.0.0.1:2379');
				expect(Buffer.compare(call.request.rangeEnd, Buffer.from('/registry/secrets0'))).toBeLessThanOrEqual(0);
			}
			// The namespace list (keys only) and one count of the whole prefix, for progress.
			expect(host.grpcCalls.filter(call => call.request.keysOnly).map(call => call.request.key.toString())).toContain('/registry/namespaces/');
			expect(host.grpcCalls.filter(call => call.request.countOnly && call.request.key.toString() === '/registry/secrets/')).toHaveLength(1);
		});
	}

	it('bounds every page read by namespace split points, so etcd never walks far past a page', async () => {
		// 40 namespaces of 25 secrets (and namespaces without any): etcd 3.4 walks from a page's
		// start key to its range end, so each read's range must hold few keys beyond its page.
		const data = new Map<string, Buffer>();
		for (let ns = 0; ns < 60; ns++) {
			data.set(`/registry/namespaces/team-${String(ns).padStart(2, '0')}`, protobuf(`ns${ns}`));
			if (ns % 3 === 2) continue;
			for (let index = 0; index < 25; index++) data.set(`/registry/secrets/team-${String(ns).padStart(2, '0')}/s${index}`, sealed('secretbox:v1:key1', `s${index}`));
		}
		data.set('/registry/secrets/orphan-ns/s', protobuf('no namespace object')); // still scanned
		const host = new FakeGrpcEtcdHost(data);
		const progress: number[] = [];
		const report = await scanResources(host as unknown as Host, connection, ['secrets'], {pageSize: 50, onProgress: p => progress.push(p.total)});
		expect(report.resources[0]).toMatchObject({total: 40 * 25 + 1, byKey: {'secretbox:key1': 1000}, plaintext: 1, consistent: true});
		expect(new Set(progress)).toEqual(new Set([1001]));
		const keys = [...data.keys()].filter(key => key.startsWith('/registry/secrets/'));
		const inRange = (call: (typeof host.grpcCalls)[number]) => keys.filter(key => key >= call.request.key.toString() && key < call.request.rangeEnd.toString()).length;
		const pages = secretPages(host);
		expect(Math.max(...pages.map(inRange))).toBeLessThanOrEqual(4 * 50);
		// The reads cover the prefix without a gap: each starts where the previous ended or inside it.
		expect(pages[0]!.request.key.toString()).toBe('/registry/secrets/');
		expect(pages.at(-1)!.request.rangeEnd.toString()).toBe('/registry/secrets0');
	});

	it('tries the next endpoint when one cannot be reached', async () => {
		const host = new FakeGrpcEtcdHost(keyspace());
		host.unreachable.add('https://10.0.0.1:2379');
		const report = await scanResources(host as unknown as Host, {...connection, endpoints: ['https://10.0.0.1:2379', 'https://127.0.0.1:2379']}, ['secrets'], {pageSize: 10});
		expect(report.resources[0]!.total).toBe(28);
		expect(new Set(host.grpcCalls.map(call => call.endpoint))).toEqual(new Set(['https://127.0.0.1:2379']));
		expect(host.calls).toEqual([]);
	});

	it('falls back to etcdctl for the whole scan when gRPC fails before any page', async () => {
		const host = new FakeGrpcEtcdHost(keyspace());
		host.unreachable.add('https://127.0.0.1:2379');
		const report = await scanResources(host as unknown as Host, connection, ['secrets'], {pageSize: 10});
		expect(report.resources[0]!.total).toBe(28);
		expect(host.grpcCalls).toEqual([]);
		expect(host.calls.length).toBe(3);
	});

	it('fails (no silent switch) when gRPC breaks after a page was read', async () => {
		const host = new FakeGrpcEtcdHost(keyspace());
		host.breakCall = 4; // the namespace list, the first page, the count, then this read
		await expect(scanResources(host as unknown as Host, connection, ['secrets'], {pageSize: 10})).rejects.toThrow(/stream reset/);
		expect(host.calls).toEqual([]);
	});

	it('uses etcdctl for endpoints gRPC does not take (unix sockets)', async () => {
		const host = new FakeGrpcEtcdHost(keyspace());
		const report = await scanResources(host as unknown as Host, {endpoints: ['unix:///run/etcd.sock']}, ['secrets'], {pageSize: 10});
		expect(report.resources[0]!.total).toBe(28);
		expect(host.grpcCalls).toEqual([]);
		expect(host.calls.length).toBe(3);
	});

	it('continues at the current revision when etcd answers that the pinned one is compacted', async () => {
		const host = new FakeGrpcEtcdHost(keyspace());
		host.compactNextGrpcRev = true;
		const report = await scanResources(host as unknown as Host, connection, ['secrets'], {pageSize: 5});
		expect(report.resources[0]).toMatchObject({total: 28, consistent: false});
		// The first page unpinned, the second pinned (compacted), then unpinned to the end, as with etcdctl.
		const revisions = secretPages(host).map(call => call.request.revision);
		expect(revisions.slice(0, 3)).toEqual([0, 42, 0]);
		expect(new Set(revisions.slice(2))).toEqual(new Set([0]));
	});

	it('names the endpoint and etcd\'s message when etcd refuses the read', async () => {
		const host = new FakeGrpcEtcdHost(keyspace());
		host.grpcUnary = async () => ({status: 7, statusMessage: 'etcdserver: permission denied', message: Buffer.alloc(0)});
		await expect(scanResources(host as unknown as Host, connection, ['secrets'])).rejects.toThrow('etcd at https://127.0.0.1:2379 refused the range read: etcdserver: permission denied');
	});
});

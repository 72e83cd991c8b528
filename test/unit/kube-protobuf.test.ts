// The apiserver's protobuf envelope as re-encryption reads and writes it (source/kube/protobuf.ts).
// Messages are built here with @bufbuild/protobuf's writer by field number, as the apiserver's
// generated code lays them out; the real apiserver's answers are checked in test/e2e/reencrypt.test.ts.
import {BinaryReader, BinaryWriter, WireType} from '@bufbuild/protobuf/wire';
import {describe, expect, test} from 'vitest';
import {KubeApi} from '../../source/kube/api.js';
import {decodeListPage, decodeStatus, encodeObject, isProtobuf, KubeProtobufError} from '../../source/kube/protobuf.js';
import type {Host, HttpRequest, HttpResponse} from '../../source/host/types.js';

const LD = WireType.LengthDelimited;
const MAGIC = Buffer.from('k8s\0', 'latin1');

function message(build: (w: BinaryWriter) => void): Uint8Array {
	const w = new BinaryWriter();
	build(w);
	return w.finish();
}

function envelope(apiVersion: string, kind: string, raw: Uint8Array, contentEncoding?: string): Buffer {
	const typeMeta = message(w => w.tag(1, LD).string(apiVersion).tag(2, LD).string(kind));
	return Buffer.concat([MAGIC, message(w => {
		w.tag(1, LD).bytes(typeMeta).tag(2, LD).bytes(raw);
		if (contentEncoding !== undefined) w.tag(3, LD).string(contentEncoding);
	})]);
}

/** A Secret: ObjectMeta (name, namespace, uid, resourceVersion, a creation timestamp), data, type. */
function secret(namespace: string, name: string, resourceVersion: string): Uint8Array {
	const meta = message(w =>
		w.tag(1, LD).string(name).tag(3, LD).string(namespace).tag(5, LD).string(`uid-${name}`).tag(6, LD).string(resourceVersion).tag(8, LD).bytes(message(t => t.tag(1, WireType.Varint).int64(1_700_000_000))),
	);
	const entry = message(w => w.tag(1, LD).string('password').tag(2, LD).bytes(Buffer.from('s3cret')));
	return message(w => w.tag(1, LD).bytes(meta).tag(2, LD).bytes(entry).tag(3, LD).string('Opaque'));
}

function secretList(items: Uint8Array[], listMeta: {resourceVersion?: string; continue?: string; remaining?: number}): Buffer {
	const meta = message(w => {
		if (listMeta.resourceVersion) w.tag(2, LD).string(listMeta.resourceVersion);
		if (listMeta.continue) w.tag(3, LD).string(listMeta.continue);
		if (listMeta.remaining !== undefined) w.tag(4, WireType.Varint).int64(listMeta.remaining);
	});
	return envelope('v1', 'SecretList', message(w => {
		w.tag(1, LD).bytes(meta);
		for (const item of items) w.tag(2, LD).bytes(item);
	}));
}

describe('decodeListPage', () => {
	test('splits a page into its items, each with its name, namespace, version and unchanged bytes', () => {
		const items = [secret('ns-a', 'one', '101'), secret('ns-b', 'two', '102')];
		const page = decodeListPage(secretList(items, {resourceVersion: '150', continue: 'token-1', remaining: 498}));
		expect(page).toMatchObject({apiVersion: 'v1', kind: 'SecretList', continue: 'token-1', resourceVersion: '150', remainingItemCount: 498});
		expect(page.items.map(({name, namespace, resourceVersion}) => ({name, namespace, resourceVersion}))).toEqual([
			{name: 'one', namespace: 'ns-a', resourceVersion: '101'},
			{name: 'two', namespace: 'ns-b', resourceVersion: '102'},
		]);
		expect(Buffer.from(page.items[1]!.raw).equals(Buffer.from(items[1]!))).toBe(true);
	});

	test('the last page has no continue token; an empty list has no items', () => {
		const page = decodeListPage(secretList([], {resourceVersion: '7'}));
		expect(page.items).toEqual([]);
		expect(page.continue).toBeUndefined();
		expect(page.resourceVersion).toBe('7');
	});

	test('fields it does not know (a newer apiserver) are skipped', () => {
		const item = secret('ns', 'x', '1');
		const extra = message(w => w.tag(1, LD).bytes(message(m => m.tag(3, LD).string('c'))).tag(2, LD).bytes(item).tag(9, WireType.Varint).uint32(5).tag(10, WireType.Bit64).fixed64(1n));
		expect(decodeListPage(envelope('v1', 'SecretList', extra)).items.map(i => i.name)).toEqual(['x']);
	});

	test('anything else is a KubeProtobufError, never a crash', () => {
		expect(() => decodeListPage(Buffer.from('{"kind":"SecretList"}'))).toThrow(KubeProtobufError);
		const truncated = secretList([secret('ns', 'x', '1')], {});
		expect(() => decodeListPage(truncated.subarray(0, truncated.length - 3))).toThrow(KubeProtobufError);
		expect(() => decodeListPage(envelope('v1', 'SecretList', message(w => w.tag(1, LD).bytes(new Uint8Array(0))), 'gzip'))).toThrow(/content encoding "gzip"/);
		const nameless = message(w => w.tag(1, LD).bytes(message(m => m.tag(3, LD).string('ns'))));
		expect(() => decodeListPage(envelope('v1', 'SecretList', message(w => w.tag(2, LD).bytes(nameless))))).toThrow(/no metadata.name/);
	});
});

describe('encodeObject', () => {
	test('wraps the listed bytes with the object kind; the envelope reads back to the same type and bytes', () => {
		const item = secret('ns', 'one', '5');
		const body = encodeObject('v1', 'Secret', item);
		expect(Buffer.from(body.subarray(0, 4)).equals(MAGIC)).toBe(true);
		const reader = new BinaryReader(body.subarray(4));
		const fields: Record<number, Uint8Array> = {};
		while (reader.pos < reader.len) {
			const [no] = reader.tag();
			fields[no] = reader.bytes();
		}
		const typeMeta = new BinaryReader(fields[1]!);
		typeMeta.tag();
		expect(typeMeta.string()).toBe('v1');
		typeMeta.tag();
		expect(typeMeta.string()).toBe('Secret');
		expect(Buffer.from(fields[2]!).equals(Buffer.from(item))).toBe(true);
	});
});

describe('decodeStatus', () => {
	test('reads reason, message and retryAfterSeconds of a Status', () => {
		const details = message(w => w.tag(1, LD).string('x').tag(5, WireType.Varint).int32(3));
		const raw = message(w => w.tag(2, LD).string('Failure').tag(3, LD).string('too many requests, please try again later').tag(4, LD).string('TooManyRequests').tag(5, LD).bytes(details).tag(6, WireType.Varint).int32(429));
		expect(decodeStatus(envelope('v1', 'Status', raw))).toEqual({reason: 'TooManyRequests', message: 'too many requests, please try again later', retryAfterSeconds: 3});
	});

	test('another kind, or no protobuf at all, is not a Status', () => {
		expect(decodeStatus(envelope('v1', 'Secret', secret('ns', 'x', '1')))).toBeUndefined();
		expect(decodeStatus(Buffer.from('<html>bad gateway</html>'))).toBeUndefined();
	});

	test('isProtobuf reads the media type with or without parameters', () => {
		expect(isProtobuf('application/vnd.kubernetes.protobuf')).toBe(true);
		expect(isProtobuf('application/vnd.kubernetes.protobuf;stream=watch')).toBe(true);
		expect(isProtobuf('application/json')).toBe(false);
		expect(isProtobuf(undefined)).toBe(false);
	});
});

describe('KubeApi.listForRewrite', () => {
	/** A host answering every request with one canned response (pure: no network). */
	function apiAnswering(response: HttpResponse): {api: KubeApi; requests: HttpRequest[]} {
		const requests: HttpRequest[] = [];
		const host = {
			request: async (request: HttpRequest) => {
				requests.push(request);
				return response;
			},
			now: () => new Date(0),
			sleep: async () => undefined,
		} as unknown as Host;
		return {api: new KubeApi(host, {server: 'https://127.0.0.1:6443'}), requests};
	}

	test('offers protobuf first; a protobuf page becomes PUT bodies of the object kind', async () => {
		const {api, requests} = apiAnswering({status: 200, headers: {'content-type': 'application/vnd.kubernetes.protobuf'}, body: secretList([secret('ns', 'one', '9')], {continue: 'next'})});
		const page = await api.listForRewrite('/api/v1/secrets', {limit: 500});
		expect(requests[0]!.headers!['accept']).toBe('application/vnd.kubernetes.protobuf, application/json');
		expect(requests[0]!.url).toBe('https://127.0.0.1:6443/api/v1/secrets?limit=500');
		expect(page.continue).toBe('next');
		expect(page.items).toHaveLength(1);
		expect(page.items[0]).toMatchObject({name: 'one', namespace: 'ns', contentType: 'application/vnd.kubernetes.protobuf'});
		expect(Buffer.from(page.items[0]!.body as Uint8Array).equals(Buffer.from(encodeObject('v1', 'Secret', secret('ns', 'one', '9'))))).toBe(true);
	});

	test('a JSON answer (custom resources) gives each item the kind the list names', async () => {
		const body = Buffer.from(JSON.stringify({kind: 'WidgetList', apiVersion: 'example.com/v1', metadata: {continue: ''}, items: [{metadata: {name: 'w1', namespace: 'default'}, spec: {}}]}));
		const {api} = apiAnswering({status: 200, headers: {'content-type': 'application/json'}, body});
		const page = await api.listForRewrite('/apis/example.com/v1/widgets');
		expect(page.continue).toBeUndefined();
		expect(page.items).toEqual([{name: 'w1', namespace: 'default', contentType: 'application/json', body: {kind: 'Widget', apiVersion: 'example.com/v1', metadata: {name: 'w1', namespace: 'default'}, spec: {}}}]);
	});

	test('a damaged protobuf page is a one-line API error naming the path', async () => {
		const {api} = apiAnswering({status: 200, headers: {'content-type': 'application/vnd.kubernetes.protobuf'}, body: Buffer.from('k8s\0\x0a\xff')});
		await expect(api.listForRewrite('/api/v1/secrets')).rejects.toThrow(/^GET \/api\/v1\/secrets: list response: not a valid Kubernetes protobuf message \(/);
	});

	test('an error answered in protobuf is typed from its Status', async () => {
		const raw = message(w => w.tag(3, LD).string('secrets "x" not found').tag(4, LD).string('NotFound'));
		const {api} = apiAnswering({status: 404, headers: {'content-type': 'application/vnd.kubernetes.protobuf'}, body: envelope('v1', 'Status', raw)});
		await expect(api.request('GET', '/api/v1/namespaces/ns/secrets/x')).rejects.toMatchObject({name: 'NotFoundError', reason: 'NotFound', message: 'GET /api/v1/namespaces/ns/secrets/x: 404 NotFound: secrets "x" not found'});
	});
});

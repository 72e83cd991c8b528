/** The streaming history matcher (pure): exact counts whatever the chunking. */
import {randomBytes} from 'node:crypto';
import {mkdtemp, rm, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {describe, expect, it} from 'vitest';
import {countHistory, encryptedResources, HistoryMatcher, jsonPattern, plaintextTotal, protobufPattern, readableLabels, underRemovedKeys} from '../../source/etcd/history.js';
import type {EncryptionConfig} from '../../source/kube/types.js';
import {RealHost} from '../../source/host/real.js';

// Written out by hand from kube-apiserver's stored form, independently of the code.
const SECRET_PROTO = Buffer.from('6b3873000a0c0a0276311206536563726574', 'hex');
const CONFIGMAP_PROTO = Buffer.concat([Buffer.from('k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap', 'latin1')]);

function file(): {data: Buffer; expected: {secrets: number; configmaps: number; key1: number; key2: number}} {
	const parts: Buffer[] = [];
	const expected = {secrets: 0, configmaps: 0, key1: 0, key2: 0};
	for (let i = 0; i < 200; i++) {
		parts.push(randomBytes(50 + ((i * 37) % 300)).map(byte => (byte === 0x6b || byte === 0x7b ? 0 : byte)));
		switch (i % 5) {
			case 0: parts.push(SECRET_PROTO, Buffer.from(`\x12marker-${i}`)); expected.secrets++; break;
			case 1: parts.push(Buffer.from(`{"kind":"Secret","apiVersion":"v1","data":{"a":"b"}}`)); expected.secrets++; break;
			case 2: parts.push(CONFIGMAP_PROTO); expected.configmaps++; break;
			case 3: parts.push(Buffer.from('k8s:enc:secretbox:v1:key1:'), randomBytes(40).map(b => (b === 0x6b ? 0 : b))); expected.key1++; break;
			case 4: parts.push(Buffer.from('k8s:enc:aesgcm:v1:key2:'), randomBytes(40).map(b => (b === 0x6b ? 0 : b))); expected.key2++; break;
		}
	}
	return {data: Buffer.concat(parts), expected};
}

describe('HistoryMatcher', () => {
	it('builds the protobuf and JSON prefixes kube-apiserver writes', () => {
		expect(protobufPattern({apiVersion: 'v1', kind: 'Secret'}).equals(SECRET_PROTO)).toBe(true);
		expect(protobufPattern({apiVersion: 'v1', kind: 'ConfigMap'}).equals(CONFIGMAP_PROTO)).toBe(true);
		expect(jsonPattern({apiVersion: 'v1', kind: 'Secret'}).toString()).toBe('{"kind":"Secret","apiVersion":"v1"');
	});

	it('counts every record exactly once for any chunk size (matches across boundaries)', async () => {
		const {data, expected} = file();
		for (const size of [1, 3, 17, 64, 200, 333, 1000, 4096, data.length]) {
			const matcher = new HistoryMatcher(['secrets', 'configmaps']);
			for (let at = 0; at < data.length; at += size) matcher.push(data.subarray(at, at + size));
			const counts = matcher.end();
			expect(counts, `chunk size ${size}`).toEqual({plaintext: {secrets: expected.secrets, configmaps: expected.configmaps}, encrypted: {'secretbox:key1': expected.key1, 'aesgcm:key2': expected.key2}, bytes: data.length});
		}
	});

	it('counts the same through the host\'s file chunks, which reuse one buffer (a matcher keeps no chunk)', async () => {
		const {data, expected} = file();
		const dir = await mkdtemp(path.join(os.tmpdir(), 'history-chunks-'));
		try {
			await writeFile(path.join(dir, 'db'), data);
			const host = new RealHost(dir);
			for (const size of [7, 64, 333, 4096]) {
				const counts = await countHistory(host.readChunks('/db', size), ['secrets', 'configmaps']);
				expect(counts, `chunk size ${size}`).toEqual({plaintext: {secrets: expected.secrets, configmaps: expected.configmaps}, encrypted: {'secretbox:key1': expected.key1, 'aesgcm:key2': expected.key2}, bytes: data.length});
			}
			// The contract the counts depend on: every chunk is the same memory, read into again.
			const seen = new Set<ArrayBufferLike>();
			for await (const chunk of host.readChunks('/db', 8192)) seen.add(chunk.buffer); // above Buffer's pool size
			expect(seen.size).toBe(1);
		} finally {
			await rm(dir, {recursive: true, force: true});
		}
	});

	it('counts only the resources asked for, and a record at the very end of the stream', async () => {
		async function* chunks() {
			yield Buffer.from('xx');
			yield SECRET_PROTO;
		}
		const counts = await countHistory(chunks(), ['configmaps']);
		expect(plaintextTotal(counts)).toBe(0);
		const secrets = await countHistory(chunks(), ['secrets']);
		expect(secrets.plaintext).toEqual({secrets: 1});
	});

	it('ignores a truncated or malformed k8s:enc: prefix', async () => {
		const counts = await countHistory([Buffer.from('k8s:enc:secretbox:v1:key1\n'), Buffer.from('k8s:enc:bogus:v1:k:'), Buffer.from('k8s:enc:kms:v2:vault:x')] as unknown as AsyncIterable<Buffer>, []);
		expect(counts.encrypted).toEqual({'kms-v2:vault': 1});
	});
});

describe('encrypted resources and removed keys', () => {
	const config: EncryptionConfig = {
		apiVersion: 'apiserver.config.k8s.io/v1',
		kind: 'EncryptionConfiguration',
		resources: [
			{resources: ['secrets'], providers: [{type: 'secretbox', keys: [{name: 'key2', secret: 'x'}]}, {type: 'identity'}]},
			{resources: ['configmaps'], providers: [{type: 'identity'}, {type: 'aesgcm', keys: [{name: 'old', secret: 'y'}]}]},
		],
	};
	it('counts plaintext only of resources encrypted on write, and keys the config lacks', () => {
		expect(encryptedResources(config, ['secrets', 'configmaps'])).toEqual(['secrets']);
		expect(encryptedResources(undefined, ['secrets'])).toEqual([]);
		expect(underRemovedKeys({encrypted: {'secretbox:key1': 4, 'secretbox:key2': 9, 'aesgcm:old': 1}}, readableLabels(config))).toEqual({'secretbox:key1': 4});
	});
});

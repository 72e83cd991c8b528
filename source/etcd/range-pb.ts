/**
 * Decode etcd's RangeResponse as `etcdctl get -w protobuf` prints it (etcdserverpb.RangeResponse,
 * api/etcdserverpb/rpc.proto; KeyValue from api/mvccpb/kv.proto). Pure: bytes in, views out.
 *
 * Why not `-w json`: JSON makes etcdctl base64-encode every key and value and the scan decode
 * them again, and puts every value in a JS string first; the protobuf output is the bytes etcd
 * sent, and keys and values come out as zero-copy views of one buffer.
 *
 *   RangeResponse { ResponseHeader header = 1; repeated KeyValue kvs = 2; bool more = 3; int64 count = 4; }
 *   ResponseHeader { uint64 cluster_id = 1; uint64 member_id = 2; int64 revision = 3; uint64 raft_term = 4; }
 *   KeyValue { bytes key = 1; int64 create_revision = 2; int64 mod_revision = 3; int64 version = 4; bytes value = 5; int64 lease = 6; }
 *
 * And the request the scan sends over gRPC itself (encodeRangeRequest):
 *   RangeRequest { bytes key = 1; bytes range_end = 2; int64 limit = 3; int64 revision = 4; ...;
 *                  bool keys_only = 8; bool count_only = 9; ... }
 * (the other fields left at their defaults: linearizable, unsorted).
 */

export type RangeKeyValue = {key: Buffer; value: Buffer; modRevision: number};
export type DecodedRange = {revision: number; count: number; more: boolean; kvs: RangeKeyValue[]};

export class ProtobufError extends Error {
	override name = 'ProtobufError';
}

type Cursor = {buf: Buffer; pos: number; end: number};

/** A varint as a number (exact below 2^53; revisions and counts are far below). */
function varint(c: Cursor): number {
	let result = 0;
	let scale = 1;
	for (let i = 0; i < 10; i++) {
		if (c.pos >= c.end) throw new ProtobufError('truncated varint');
		const byte = c.buf[c.pos++]!;
		result += (byte & 0x7f) * scale;
		if (byte < 0x80) return result;
		scale *= 128;
	}
	throw new ProtobufError('varint longer than 10 bytes');
}

/** Skip a field of this wire type (the ones a newer etcd may add). */
function skip(c: Cursor, wireType: number): void {
	if (wireType === 0) varint(c);
	else if (wireType === 1) c.pos += 8;
	else if (wireType === 2) c.pos += varint(c);
	else if (wireType === 5) c.pos += 4;
	else throw new ProtobufError(`unsupported wire type ${wireType}`);
	if (c.pos > c.end) throw new ProtobufError('truncated field');
}

/** A length-delimited field's extent. */
function sub(c: Cursor): Cursor {
	const length = varint(c);
	const end = c.pos + length;
	if (end > c.end) throw new ProtobufError('truncated message');
	const inner = {buf: c.buf, pos: c.pos, end};
	c.pos = end;
	return inner;
}

function keyValue(c: Cursor): RangeKeyValue {
	let key = c.buf.subarray(0, 0);
	let value = key;
	let modRevision = 0;
	while (c.pos < c.end) {
		const tag = varint(c);
		const field = Math.floor(tag / 8);
		const wire = tag & 7;
		if (field === 1 && wire === 2) {
			const s = sub(c);
			key = c.buf.subarray(s.pos, s.end);
		} else if (field === 5 && wire === 2) {
			const s = sub(c);
			value = c.buf.subarray(s.pos, s.end);
		} else if (field === 3 && wire === 0) modRevision = varint(c);
		else skip(c, wire);
	}
	return {key, value, modRevision};
}

function header(c: Cursor): number {
	let revision = 0;
	while (c.pos < c.end) {
		const tag = varint(c);
		if (tag === (3 << 3)) revision = varint(c);
		else skip(c, tag & 7);
	}
	return revision;
}

export function decodeRangeResponse(buf: Buffer): DecodedRange {
	const c: Cursor = {buf, pos: 0, end: buf.length};
	const result: DecodedRange = {revision: 0, count: 0, more: false, kvs: []};
	while (c.pos < c.end) {
		const tag = varint(c);
		const field = Math.floor(tag / 8);
		const wire = tag & 7;
		if (field === 1 && wire === 2) result.revision = header(sub(c));
		else if (field === 2 && wire === 2) result.kvs.push(keyValue(sub(c)));
		else if (field === 3 && wire === 0) result.more = varint(c) !== 0;
		else if (field === 4 && wire === 0) result.count = varint(c);
		else skip(c, wire);
	}
	return result;
}

function pushVarint(out: number[], value: number): void {
	if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`varint out of range: ${value}`);
	let v = value;
	while (v >= 0x80) {
		out.push((v % 128) | 0x80);
		v = Math.floor(v / 128);
	}
	out.push(v);
}

export type RangeRequest = {key: Uint8Array; rangeEnd: Uint8Array; limit?: number; revision?: number; keysOnly?: boolean; countOnly?: boolean};

/** etcdserverpb.RangeRequest with the fields the scan sets (zero values are omitted, as proto3 does). */
export function encodeRangeRequest(request: RangeRequest): Buffer {
	const head: number[] = [];
	const bytesField = (field: number, value: Uint8Array): Buffer => {
		head.length = 0;
		pushVarint(head, (field << 3) | 2);
		pushVarint(head, value.length);
		return Buffer.concat([Buffer.from(head), value]);
	};
	const parts = [bytesField(1, request.key), bytesField(2, request.rangeEnd)];
	const flags = [[8, request.keysOnly ? 1 : 0], [9, request.countOnly ? 1 : 0]] as const;
	for (const [field, value] of [[3, request.limit], [4, request.revision], ...flags] as const) {
		if (value === undefined || value === 0) continue;
		const out: number[] = [];
		pushVarint(out, field << 3);
		pushVarint(out, value);
		parts.push(Buffer.from(out));
	}
	return Buffer.concat(parts);
}

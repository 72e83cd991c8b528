/**
 * RealHost.grpcUnary against a real HTTP/2 server on loopback (node:http2, cleartext): the
 * answer's one length-prefixed message is read into one buffer as its DATA frames arrive,
 * whatever the frames' sizes, and anything that is not exactly one uncompressed message is
 * refused with a GrpcTransportError naming the bytes.
 */
import * as http2 from 'node:http2';
import type {AddressInfo} from 'node:net';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {RealHost} from '../../source/host/real.js';
import {GrpcTransportError} from '../../source/host/types.js';

/** What the server answers for a method: DATA frames written one by one, then grpc-status 0. */
const answers = new Map<string, Buffer[]>();
let server: http2.Http2Server;
let endpoint: string;
/** The client keeps its session open (idle, unref'd): closed here so the server can stop. */
const sessions = new Set<http2.ServerHttp2Session>();

function framed(message: Buffer, flag = 0): Buffer {
	const head = Buffer.alloc(5);
	head[0] = flag;
	head.writeUInt32BE(message.length, 1);
	return Buffer.concat([head, message]);
}

/** `bytes` cut into pieces of the given sizes (the rest in one). */
function cut(bytes: Buffer, sizes: number[]): Buffer[] {
	const pieces: Buffer[] = [];
	let at = 0;
	for (const size of sizes) {
		pieces.push(bytes.subarray(at, at + size));
		at += size;
	}
	if (at < bytes.length) pieces.push(bytes.subarray(at));
	return pieces;
}

beforeAll(async () => {
	server = http2.createServer();
	server.on('session', session => sessions.add(session));
	server.on('stream', (stream, headers) => {
		const pieces = answers.get(String(headers[':path'])) ?? [];
		stream.respond({':status': 200, 'content-type': 'application/grpc'}, {waitForTrailers: true});
		stream.on('wantTrailers', () => stream.sendTrailers({'grpc-status': '0'}));
		stream.resume();
		const write = async (): Promise<void> => {
			for (const piece of pieces) {
				// One piece per DATA frame: wait for it to leave before the next.
				await new Promise<void>(resolve => stream.write(piece, () => resolve()));
			}
			stream.end();
		};
		void write();
	});
	await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
	endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
	for (const session of sessions) session.destroy();
	await new Promise(resolve => server.close(resolve));
});

describe('RealHost.grpcUnary reads one gRPC message', () => {
	const host = new RealHost();
	const call = (method: string) => host.grpcUnary({endpoint, method, message: Buffer.from('request'), timeoutMs: 10_000});

	it('whole, whatever the DATA frames (a prefix split across frames, one byte, a large message)', async () => {
		const large = Buffer.alloc(3 * 1024 * 1024 + 17);
		for (let index = 0; index < large.length; index++) large[index] = (index * 31) & 0xff;
		const cases: Array<[string, Buffer, number[]]> = [
			['/t/small', Buffer.from('hello etcd'), []],
			['/t/split-prefix', Buffer.from('a message after a split prefix'), [2, 1, 3, 1]],
			['/t/one-byte', Buffer.from('x'), [5]],
			['/t/large', large, [1, 4, 70_000, 1]],
		];
		for (const [method, message, sizes] of cases) answers.set(method, cut(framed(message), sizes));
		for (const [method, message] of cases) {
			const answer = await call(method);
			expect(answer.status).toBe(0);
			expect(answer.message.equals(message)).toBe(true);
		}
	});

	it('an empty message', async () => {
		answers.set('/t/empty', [framed(Buffer.alloc(0))]);
		const answer = await call('/t/empty');
		expect(answer.message.length).toBe(0);
	});

	it('refuses a truncated message, bytes past it, a compressed message and no message at all', async () => {
		const whole = framed(Buffer.from('twelve bytes'));
		answers.set('/t/truncated', [whole.subarray(0, whole.length - 1)]);
		answers.set('/t/trailing', [whole, Buffer.from('!')]);
		answers.set('/t/compressed', [framed(Buffer.from('zz'), 1)]);
		answers.set('/t/nothing', []);
		answers.set('/t/half-prefix', [whole.subarray(0, 3)]);
		for (const [method, detail] of [
			['/t/truncated', /16 bytes, announcing a message of 12/],
			['/t/trailing', /18 bytes, announcing a message of 12/],
			['/t/compressed', /announcing a compressed message of 2/],
			['/t/nothing', /malformed gRPC response \(0 bytes\)/],
			['/t/half-prefix', /malformed gRPC response \(3 bytes\)/],
		] as const) {
			const error = await call(method).then(
				() => undefined,
				(failure: unknown) => failure,
			);
			expect(error, method).toBeInstanceOf(GrpcTransportError);
			expect((error as Error).message).toMatch(detail);
		}
	});
});

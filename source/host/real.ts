import {spawn} from 'node:child_process';
import {constants as fsConstants, createReadStream, lstatSync, readlinkSync} from 'node:fs';
import * as fs from 'node:fs/promises';
import * as https from 'node:https';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import {Writable} from 'node:stream';
import {createHash, randomBytes} from 'node:crypto';
import {setTimeout as delay} from 'node:timers/promises';
import {decrypt as ageDecrypt, decryptStream as ageDecryptStream, type DecryptWith, type EncryptTo} from '../crypto/age.js';
import {decryptFile as ageDecryptFile, encryptFile as ageEncryptFile} from './age-files.js';
import {reclaimCipherBuffers} from './memory.js';
import type * as Http2 from 'node:http2';
import type {Arg, DetachedProcess, FileDigest, FileStat, GrpcRequest, GrpcResponse, Host, HttpRequest, HttpResponse, ProcessHandle, RunOptions, RunResult} from './types.js';
import {GrpcTransportError} from './types.js';

/**
 * execa, loaded at the first command: its module start-up (signal tables, exit hooks) was ~20 ms
 * of the wizard's time to its first frame (node --cpu-prof), which runs no command before it.
 */
let execaModule: Promise<typeof import('execa')> | undefined;
const loadExeca = (): Promise<typeof import('execa')> => (execaModule ??= import('execa'));

/** Node's errors from a file handle (read, write, fsync) carry no path: name the file. */
function withPath(error: unknown, file: string): unknown {
	const errno = error as NodeJS.ErrnoException;
	if (errno && typeof errno === 'object' && typeof errno.code === 'string' && errno.path === undefined) errno.path = file;
	return error;
}

function isMissing(error: unknown): boolean {
	const code = (error as NodeJS.ErrnoException | undefined)?.code;
	return code === 'ENOENT' || code === 'ENOTDIR';
}

/** The host that really reads, writes and runs: `/` on a node, or `--root DIR`. */
export class RealHost implements Host {
	readonly dryRun: boolean = false;
	readonly root: string;

	constructor(root = '/') {
		this.root = path.resolve(root);
	}

	/**
	 * The machine path of a node path, resolved as a chroot into the root would: every
	 * symbolic link on the way is followed *inside* the root (an absolute target starts again
	 * at the root, ".." stops at it), so no read or write ever leaves --root. A link at the end
	 * is followed too, so an atomic write replaces the file a link points at and the link
	 * stays a link (a symlinked manifest is never turned into a regular file).
	 */
	resolve(nodePath: string): string {
		if (!path.posix.isAbsolute(nodePath)) {
			throw Object.assign(new Error(`${nodePath}: not an absolute path`), {code: 'EINVAL_PATH'});
		}
		const pending = nodePath.split('/').filter(part => part !== '' && part !== '.');
		let resolved: string[] = [];
		let links = 0;
		while (pending.length > 0) {
			const part = pending.shift()!;
			if (part === '..') {
				resolved.pop();
				continue;
			}
			const candidate = path.join(this.root, ...resolved, part);
			let target: string | undefined;
			try {
				if (lstatSync(candidate).isSymbolicLink()) target = readlinkSync(candidate);
			} catch {
				// Missing (or unreadable): the rest is taken literally; the operation reports it.
			}
			if (target === undefined) {
				resolved.push(part);
				continue;
			}
			if (++links > 40) throw Object.assign(new Error(`${nodePath}: too many levels of symbolic links`), {code: 'ELOOP', path: candidate});
			if (target.startsWith('/')) resolved = [];
			pending.unshift(...target.split('/').filter(item => item !== '' && item !== '.'));
		}
		return path.join(this.root, ...resolved);
	}

	async readFile(nodePath: string): Promise<Buffer | undefined> {
		const file = this.resolve(nodePath);
		try {
			return await fs.readFile(file);
		} catch (error) {
			if (isMissing(error)) return undefined;
			throw withPath(error, file);
		}
	}

	async readText(nodePath: string): Promise<string | undefined> {
		return (await this.readFile(nodePath))?.toString('utf8');
	}

	async stat(nodePath: string): Promise<FileStat | undefined> {
		try {
			const stats = await fs.stat(this.resolve(nodePath));
			return {
				mode: stats.mode & 0o7777,
				uid: stats.uid,
				gid: stats.gid,
				size: stats.size,
				isFile: stats.isFile(),
				isDirectory: stats.isDirectory(),
				mtimeMs: stats.mtimeMs,
			};
		} catch (error) {
			if (isMissing(error)) return undefined;
			throw error;
		}
	}

	async listDir(nodePath: string): Promise<string[] | undefined> {
		try {
			return (await fs.readdir(this.resolve(nodePath))).sort();
		} catch (error) {
			if (isMissing(error)) return undefined;
			throw error;
		}
	}

	async writeFileAtomic(nodePath: string, data: string | Uint8Array, mode: number): Promise<void> {
		const target = this.resolve(nodePath);
		const directory = path.dirname(target);
		await this.mkdirReal(directory, 0o700);
		// Dot-prefixed so kubelet ignores it if it ever sits in the manifests directory.
		const temporary = path.join(directory, `.${path.basename(target)}.etcd-harden-${randomBytes(6).toString('hex')}.tmp`);
		let handle: fs.FileHandle | undefined;
		try {
			handle = await fs.open(temporary, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
			// The mode is set on the descriptor, so umask never applies and the content is
			// never readable with a wider mode, even for a moment.
			await handle.chmod(mode);
			if (process.geteuid?.() === 0) await handle.chown(0, 0);
			await handle.writeFile(data);
			await handle.sync();
			await handle.close();
			handle = undefined;
			await fs.rename(temporary, target);
		} catch (error) {
			await handle?.close().catch(() => undefined);
			await fs.rm(temporary, {force: true});
			throw withPath(error, target);
		}
		await syncDirectory(directory);
	}

	async mkdir(nodePath: string, mode: number): Promise<void> {
		await this.mkdirReal(this.resolve(nodePath), mode);
	}

	private async mkdirReal(directory: string, mode: number): Promise<void> {
		const created = await fs.mkdir(directory, {recursive: true, mode});
		// mkdir's mode is filtered by umask; set it exactly on what we created.
		if (created !== undefined) {
			let current = directory;
			while (current.length >= created.length) {
				await fs.chmod(current, mode);
				current = path.dirname(current);
				if (current === path.dirname(current)) break;
			}
		}
	}

	async createExclusive(nodePath: string, data: string, mode: number): Promise<boolean> {
		const target = this.resolve(nodePath);
		const directory = path.dirname(target);
		await this.mkdirReal(directory, 0o700);
		// Written whole under a temporary name, then hard-linked into place (link fails if the
		// name exists): a second process never reads a half-written file, which it would take
		// for a stale lock. The name is not the atomic writes' temp pattern, so a run that holds
		// the lock never sweeps it away from a run still taking it.
		const temporary = path.join(directory, `.${path.basename(target)}.pending-${randomBytes(6).toString('hex')}`);
		try {
			await writeSynced(temporary, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode, data);
			await fs.link(temporary, target);
		} catch (error) {
			if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
			throw withPath(error, target);
		} finally {
			await fs.rm(temporary, {force: true});
		}
		await syncDirectory(directory);
		return true;
	}

	async appendFile(nodePath: string, data: string, mode: number): Promise<void> {
		const target = this.resolve(nodePath);
		await this.mkdirReal(path.dirname(target), 0o700);
		await writeSynced(target, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, mode, data);
	}

	processAlive(pid: number): boolean {
		try {
			process.kill(pid, 0);
			return true;
		} catch (error) {
			return (error as NodeJS.ErrnoException).code === 'EPERM';
		}
	}

	async remove(nodePath: string): Promise<void> {
		const target = this.resolve(nodePath);
		try {
			const stats = await fs.lstat(target);
			if (stats.isDirectory()) await fs.rmdir(target);
			else await fs.unlink(target);
			await syncDirectory(path.dirname(target));
		} catch (error) {
			if (!isMissing(error)) throw error;
		}
	}

	/** The program and its arguments: node paths resolved under the root, secrets passed as is. */
	private commandLine(argv: Arg[]): [string, string[]] {
		const [file, ...args] = argv.map(arg => {
			if (typeof arg === 'string') return arg;
			if ('path' in arg) return this.resolve(arg.path);
			return arg.secret;
		});
		if (file === undefined) throw new Error('internal: empty argv');
		return [file, args];
	}

	async run(argv: Arg[], options: RunOptions = {}): Promise<RunResult> {
		const [file, args] = this.commandLine(argv);
		const {execa} = await loadExeca();
		const result = await execa(file, args, {
			reject: false,
			input: options.input,
			timeout: options.timeoutMs,
			env: options.env,
			cwd: options.cwd === undefined ? undefined : this.resolve(options.cwd),
			cancelSignal: options.signal,
			stripFinalNewline: false,
			encoding: options.binaryStdout ? 'buffer' : 'utf8',
		});
		const raw = result.stdout as unknown;
		const bytes = !options.binaryStdout ? undefined : raw instanceof Uint8Array ? Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength) : Buffer.alloc(0);
		const text = (value: unknown): string => (value instanceof Uint8Array ? Buffer.from(value).toString('utf8') : String(value ?? ''));
		return {
			...(bytes === undefined ? {} : {stdoutBytes: bytes}),
			exitCode: result.exitCode ?? (result.failed ? 1 : 0),
			stdout: bytes === undefined ? text(result.stdout) : '',
			stderr: result.exitCode === undefined && result.failed && !result.stderr ? String(result.message) : text(result.stderr),
			timedOut: Boolean(result.timedOut),
		};
	}

	/** Keep-alive agents by protocol and TLS identity (a hash of CA, certificate and key). */
	private readonly agents = new Map<string, http.Agent>();

	private agentFor(protocol: string, ca?: Buffer | string, cert?: Buffer | string, key?: Buffer | string): http.Agent {
		const hash = createHash('sha256').update(protocol);
		for (const part of [ca, cert, key]) hash.update('\0').update(part ?? '');
		const id = hash.digest('hex');
		let agent = this.agents.get(id);
		if (agent === undefined) {
			// Idle sockets are unref'd by the agent, so a cached agent never keeps the process alive.
			const options = {keepAlive: true, keepAliveMsecs: 10_000, maxFreeSockets: 128, scheduling: 'lifo' as const};
			agent = protocol === 'https:' ? new https.Agent({...options, ca, cert, key}) : new http.Agent(options);
			this.agents.set(id, agent);
		}
		return agent;
	}

	async request(request: HttpRequest): Promise<HttpResponse> {
		const [ca, cert, key] = await Promise.all([
			request.caFile ? fs.readFile(this.resolve(request.caFile)) : request.ca,
			request.certFile ? fs.readFile(this.resolve(request.certFile)) : request.cert,
			request.keyFile ? fs.readFile(this.resolve(request.keyFile)) : request.key,
		]);
		const url = new URL(request.url);
		const client = url.protocol === 'https:' ? https : http;
		const agent = this.agentFor(url.protocol, ca, cert, key);
		return new Promise<HttpResponse>((resolve, reject) => {
			const outgoing = client.request(
				url,
				{
					method: request.method ?? 'GET',
					headers: request.headers,
					agent,
					ca,
					cert,
					key,
					timeout: request.timeoutMs ?? 10_000,
					signal: request.signal,
				},
				response => {
					const chunks: Buffer[] = [];
					response.on('data', (chunk: Buffer) => chunks.push(chunk));
					response.on('error', reject);
					response.on('end', () => {
						const headers: Record<string, string> = {};
						for (const [name, value] of Object.entries(response.headers)) {
							if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
						}
						resolve({status: response.statusCode ?? 0, headers, body: Buffer.concat(chunks)});
					});
				},
			);
			outgoing.on('timeout', () => outgoing.destroy(new Error(`request to ${request.url} timed out`)));
			outgoing.on('error', reject);
			outgoing.end(request.body);
		});
	}

	/** HTTP/2 sessions for gRPC by endpoint and TLS identity; dropped when they close. */
	private readonly grpcSessions = new Map<string, {session: Http2.ClientHttp2Session; ready: Promise<void>; inFlight: number}>();

	private async grpcSession(request: GrpcRequest): Promise<{session: Http2.ClientHttp2Session; inFlight: number}> {
		const [ca, cert, key] = await Promise.all([
			request.caFile ? fs.readFile(this.resolve(request.caFile)) : undefined,
			request.certFile ? fs.readFile(this.resolve(request.certFile)) : undefined,
			request.keyFile ? fs.readFile(this.resolve(request.keyFile)) : undefined,
		]);
		const url = new URL(request.endpoint);
		if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new GrpcTransportError(`${request.endpoint}: only http:// and https:// endpoints are read over gRPC`);
		const hash = createHash('sha256').update(url.origin);
		for (const part of [ca, cert, key]) hash.update('\0').update(part ?? '');
		const id = hash.digest('hex');
		let entry = this.grpcSessions.get(id);
		if (entry === undefined || entry.session.closed || entry.session.destroyed) {
			// Loaded on first use: the wizard's start-up does not pay for HTTP/2.
			const http2 = await import('node:http2');
			// Windows far above the 64 KiB default: a page of etcd values (megabytes) streams
			// without waiting for a window update every 64 KiB.
			const session = http2.connect(url.origin, {
				...(url.protocol === 'https:' ? {ca, cert, key, ALPNProtocols: ['h2']} : {}),
				settings: {initialWindowSize: 16 * 1024 * 1024},
			});
			const created = {
				session,
				inFlight: 0,
				ready: new Promise<void>((resolve, reject) => {
					session.once('connect', () => {
						session.setLocalWindowSize(64 * 1024 * 1024);
						resolve();
					});
					session.once('error', error => reject(new GrpcTransportError(`${url.origin}: ${error.message}`)));
				}),
			};
			created.ready.catch(() => undefined);
			session.on('error', () => this.grpcSessions.delete(id));
			session.on('close', () => this.grpcSessions.delete(id));
			session.on('goaway', () => this.grpcSessions.delete(id));
			// An idle session never keeps the process alive; a call in flight refs it (below).
			session.unref();
			this.grpcSessions.set(id, (entry = created));
		}
		const connectTimeout = Math.min(request.timeoutMs ?? 10_000, 10_000);
		let timer: NodeJS.Timeout | undefined;
		try {
			await Promise.race([
				entry.ready,
				new Promise<never>((_, reject) => {
					timer = setTimeout(() => reject(new GrpcTransportError(`${url.origin}: no HTTP/2 connection within ${connectTimeout} ms`)), connectTimeout);
				}),
			]);
		} catch (error) {
			entry.session.destroy();
			this.grpcSessions.delete(id);
			throw error;
		} finally {
			clearTimeout(timer);
		}
		return entry;
	}

	async grpcUnary(request: GrpcRequest): Promise<GrpcResponse> {
		const entry = await this.grpcSession(request);
		const {session} = entry;
		const frame = Buffer.allocUnsafe(5 + request.message.length);
		frame[0] = 0; // not compressed
		frame.writeUInt32BE(request.message.length, 1);
		frame.set(request.message, 5);
		if (entry.inFlight++ === 0) session.ref();
		try {
			return await new Promise<GrpcResponse>((resolve, reject) => {
				const stream = session.request(
					{':method': 'POST', ':path': request.method, 'content-type': 'application/grpc', te: 'trailers'},
					request.signal === undefined ? {} : {signal: request.signal},
				);
				const body = new GrpcMessageReader();
				let status: string | undefined;
				let statusMessage = '';
				let httpStatus = 0;
				const takeStatus = (headers: Http2.IncomingHttpHeaders): void => {
					const value = headers['grpc-status'];
					if (value !== undefined) {
						status = String(value);
						statusMessage = decodeURIComponent(String(headers['grpc-message'] ?? ''));
					}
				};
				stream.on('response', headers => {
					httpStatus = Number(headers[':status'] ?? 0);
					takeStatus(headers); // a trailers-only answer (an error) carries the status here
				});
				stream.on('trailers', takeStatus);
				stream.on('data', (chunk: Buffer) => body.push(chunk));
				stream.setTimeout(request.timeoutMs ?? 60_000, () => {
					stream.close(0x8); // CANCEL
					reject(new GrpcTransportError(`${request.endpoint}${request.method} timed out after ${request.timeoutMs ?? 60_000} ms`));
				});
				stream.on('error', error => reject(new GrpcTransportError(`${request.endpoint}${request.method}: ${error.message}`)));
				// Settled already after 'end'; otherwise the stream was reset without an answer.
				stream.on('close', () => reject(new GrpcTransportError(`${request.endpoint}${request.method}: the stream closed without an answer`)));
				stream.on('end', () => {
					if (status === undefined) {
						reject(new GrpcTransportError(`${request.endpoint}${request.method}: no gRPC status (HTTP ${httpStatus})`));
						return;
					}
					if (status !== '0') {
						resolve({status: Number(status), statusMessage, message: Buffer.alloc(0)});
						return;
					}
					const message = body.message();
					if (message === undefined) {
						reject(new GrpcTransportError(`${request.endpoint}${request.method}: malformed gRPC response (${body.describe()})`));
						return;
					}
					resolve({status: 0, statusMessage: '', message});
				});
				stream.end(frame);
			});
		} finally {
			if (--entry.inFlight === 0 && !session.destroyed) session.unref();
		}
	}

	// ---- backups ----

	async ageEncryptFile(input: string, output: string, to: EncryptTo, mode: number): Promise<void> {
		await ageEncryptFile(this.resolve(input), this.resolve(output), to, {mode});
	}

	async ageDecryptFile(input: string, output: string, keys: DecryptWith, mode: number): Promise<void> {
		await ageDecryptFile(this.resolve(input), this.resolve(output), keys, {mode});
	}

	async ageDecrypt(input: string, keys: DecryptWith): Promise<Buffer> {
		return ageDecrypt(await fs.readFile(this.resolve(input)), keys);
	}

	async ageDecryptDigest(input: string, keys: DecryptWith): Promise<FileDigest> {
		const hash = createHash('sha256');
		let bytes = 0;
		const sink = new Writable({
			write(chunk: Buffer, _encoding, done) {
				hash.update(chunk);
				bytes += chunk.length;
				done();
			},
		});
		await ageDecryptStream(createReadStream(this.resolve(input)), sink, keys, {reclaim: reclaimCipherBuffers});
		return {sha256: hash.digest('hex'), bytes};
	}

	async digestFile(nodePath: string): Promise<FileDigest | undefined> {
		const hash = createHash('sha256');
		let bytes = 0;
		try {
			for await (const chunk of createReadStream(this.resolve(nodePath), {highWaterMark: 1024 * 1024})) {
				hash.update(chunk as Buffer);
				bytes += (chunk as Buffer).length;
			}
		} catch (error) {
			if (isMissing(error)) return undefined;
			throw error;
		}
		return {sha256: hash.digest('hex'), bytes};
	}

	async *readChunks(nodePath: string, chunkBytes = 1024 * 1024): AsyncIterable<Buffer> {
		// One buffer, read into again for every chunk (the contract: a chunk is valid until the
		// next is asked for). A fresh buffer per chunk cost the CLI about 70 MB of RSS scanning a
		// 42 MB data file and its WAL: dead chunks wait for a GC while malloc keeps their pages.
		const handle = await fs.open(this.resolve(nodePath), fsConstants.O_RDONLY);
		const buffer = Buffer.allocUnsafe(chunkBytes);
		try {
			for (;;) {
				const {bytesRead} = await handle.read(buffer, 0, chunkBytes, null);
				if (bytesRead === 0) return;
				yield bytesRead === chunkBytes ? buffer : buffer.subarray(0, bytesRead);
			}
		} finally {
			await handle.close();
		}
	}

	async makeTempDir(parent: string, prefix: string): Promise<string> {
		if (prefix.includes('/')) throw new Error(`internal: temp dir prefix must be a name: ${prefix}`);
		await this.mkdirReal(this.resolve(parent), 0o700);
		const created = await fs.mkdtemp(path.join(this.resolve(parent), prefix));
		await fs.chmod(created, 0o700); // mkdtemp uses 0700, but be explicit
		return path.posix.join(path.posix.normalize(parent), path.basename(created));
	}

	async removeTree(nodePath: string): Promise<void> {
		const target = this.resolve(nodePath);
		if (target === '/' || target === this.root) throw new Error(`internal: refusing to remove ${nodePath}`);
		await fs.rm(target, {recursive: true, force: true});
	}

	async rename(from: string, to: string): Promise<void> {
		const target = this.resolve(to);
		await fs.rename(this.resolve(from), target);
		await syncDirectory(path.dirname(target));
	}

	async startProcess(argv: Arg[], options: Pick<RunOptions, 'env' | 'cwd'> = {}): Promise<ProcessHandle> {
		const [file, args] = this.commandLine(argv);
		const {execa} = await loadExeca();
		const child = execa(file, args, {
			reject: false,
			buffer: false,
			stdin: 'ignore',
			env: options.env,
			cwd: options.cwd === undefined ? undefined : this.resolve(options.cwd),
			// Killed with us if we die first.
			cleanup: true,
		});
		let tail = '';
		const keep = (chunk: Buffer): void => {
			tail = (tail + chunk.toString('utf8')).slice(-16_384);
		};
		child.stdout?.on('data', keep);
		child.stderr?.on('data', keep);
		const exited: Promise<RunResult> = child.then(
			result => ({exitCode: result.exitCode ?? 1, stdout: '', stderr: tail, timedOut: false}),
			(error: unknown) => ({exitCode: 1, stdout: '', stderr: `${tail}${String(error)}`, timedOut: false}),
		);
		let ended = false;
		void exited.then(() => (ended = true));
		// A command that cannot start at all (ENOENT) fails right away.
		await new Promise<void>(resolve => {
			child.once('spawn', () => resolve());
			child.once('error', () => resolve());
		});
		return {
			pid: child.pid,
			exited,
			outputTail: () => tail,
			stop: async (graceMs = 10_000) => {
				if (!ended) {
					child.kill('SIGTERM');
					const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
					try {
						return await exited;
					} finally {
						clearTimeout(timer);
					}
				}
				return exited;
			},
		};
	}

	async spawnDetached(argv: Arg[], options: Pick<RunOptions, 'env' | 'cwd'> = {}): Promise<DetachedProcess> {
		const [file, args] = this.commandLine(argv);
		// detached: setsid() in the child, so it has no controlling terminal and a hangup of
		// ours never reaches it; unref: we neither wait for it nor keep it alive.
		const child = spawn(file, args, {
			detached: true,
			stdio: 'ignore',
			...(options.env ? {env: options.env} : {}),
			...(options.cwd === undefined ? {} : {cwd: this.resolve(options.cwd)}),
		});
		await new Promise<void>((resolve, reject) => {
			child.once('spawn', () => resolve());
			child.once('error', reject);
		});
		child.unref();
		return {pid: child.pid, kill: () => void child.kill('SIGTERM')};
	}

	async freeLoopbackPorts(count: number): Promise<number[]> {
		const servers: net.Server[] = [];
		try {
			const ports: number[] = [];
			for (let i = 0; i < count; i++) {
				const server = net.createServer();
				servers.push(server);
				await new Promise<void>((resolve, reject) => {
					server.once('error', reject);
					server.listen(0, '127.0.0.1', () => resolve());
				});
				ports.push((server.address() as net.AddressInfo).port);
			}
			return ports;
		} finally {
			await Promise.all(servers.map(server => new Promise(resolve => server.close(resolve))));
		}
	}

	async sleep(ms: number, signal?: AbortSignal): Promise<void> {
		await delay(ms, undefined, {signal});
	}

	now(): Date {
		return new Date();
	}

	isRoot(): boolean {
		return process.geteuid?.() === 0;
	}
}

/**
 * One length-prefixed gRPC message (uncompressed: no grpc-accept-encoding is offered), read as
 * its DATA frames arrive into one buffer of the size its prefix announces. Collecting the frames
 * and concatenating them at the end held every page of an etcd scan twice (the frames until the
 * end, then the copy): 8 MB for a 4 MB page, more with the next page read meanwhile, and the
 * frames were garbage for the collector (outside the JS heap, so nothing asked it to hurry).
 */
class GrpcMessageReader {
	private readonly prefix = Buffer.alloc(5);
	private prefixBytes = 0;
	private buffer: Buffer | undefined;
	private filled = 0;
	/** Bytes beyond the announced message, or a compressed flag: not a message this client reads. */
	private malformed = false;
	private received = 0;

	push(chunk: Buffer): void {
		this.received += chunk.length;
		if (this.malformed) return;
		let at = 0;
		if (this.prefixBytes < 5) {
			const take = Math.min(5 - this.prefixBytes, chunk.length);
			chunk.copy(this.prefix, this.prefixBytes, 0, take);
			this.prefixBytes += take;
			at = take;
			if (this.prefixBytes < 5) return;
			if (this.prefix[0] !== 0) {
				this.malformed = true;
				return;
			}
			try {
				this.buffer = Buffer.allocUnsafe(this.prefix.readUInt32BE(1));
			} catch {
				// Larger than a Buffer can be (or than memory allows): reported as malformed at the end.
				this.malformed = true;
				return;
			}
		}
		const rest = chunk.length - at;
		if (rest === 0) return;
		if (this.filled + rest > this.buffer!.length) {
			this.malformed = true;
			return;
		}
		chunk.copy(this.buffer!, this.filled, at);
		this.filled += rest;
	}

	/** The whole message, or undefined if what arrived is not exactly one. */
	message(): Buffer | undefined {
		if (this.malformed || this.buffer === undefined || this.filled !== this.buffer.length) return undefined;
		return this.buffer;
	}

	describe(): string {
		return `${this.received} bytes${this.prefixBytes === 5 ? `, announcing a ${this.prefix[0] === 0 ? '' : 'compressed '}message of ${this.prefix.readUInt32BE(1)}` : ''}`;
	}
}

async function syncDirectory(directory: string): Promise<void> {
	const handle = await fs.open(directory, fsConstants.O_RDONLY);
	try {
		await handle.sync();
	} finally {
		await handle.close();
	}
}

/** Open with `flags`, set `mode` on the descriptor (umask never applies), write, fsync, close. */
async function writeSynced(file: string, flags: number, mode: number, data: string): Promise<void> {
	const handle = await fs.open(file, flags, mode);
	try {
		await handle.chmod(mode);
		await handle.writeFile(data);
		await handle.sync();
	} finally {
		await handle.close();
	}
}

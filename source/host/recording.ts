import * as path from 'node:path';
import type {DecryptWith, EncryptTo} from '../crypto/age.js';
import type {Arg, DetachedProcess, FileDigest, FileStat, GrpcRequest, GrpcResponse, Host, HttpRequest, HttpResponse, ProcessHandle, RunOptions, RunResult} from './types.js';
import {GrpcTransportError, renderArgv} from './types.js';

export type RecordedAction =
	| {kind: 'write'; path: string; mode: number; bytes: number}
	| {kind: 'mkdir'; path: string; mode: number}
	| {kind: 'remove'; path: string}
	| {kind: 'run'; command: string}
	| {kind: 'request'; method: string; url: string};

type Overlay = {data: Buffer; mode: number} | 'removed';

/**
 * The `--dry-run` host. Reads go to the real machine, but writes land in an in-memory
 * overlay that later reads see, so each stage plans on what the previous stages would have
 * written. Commands and non-GET requests are recorded, never run; nothing on the machine
 * changes.
 */
export class RecordingHost implements Host {
	readonly dryRun = true;
	readonly actions: RecordedAction[] = [];
	private readonly overlay = new Map<string, Overlay>();

	constructor(private readonly inner: Host) {}

	get root(): string {
		return this.inner.root;
	}

	resolve(nodePath: string): string {
		return this.inner.resolve(nodePath);
	}

	async readFile(nodePath: string): Promise<Buffer | undefined> {
		const entry = this.overlay.get(path.posix.normalize(nodePath));
		if (entry === 'removed') return undefined;
		if (entry) return Buffer.from(entry.data);
		return this.inner.readFile(nodePath);
	}

	async readText(nodePath: string): Promise<string | undefined> {
		return (await this.readFile(nodePath))?.toString('utf8');
	}

	async stat(nodePath: string): Promise<FileStat | undefined> {
		const entry = this.overlay.get(path.posix.normalize(nodePath));
		if (entry === 'removed') return undefined;
		if (entry) {
			return {mode: entry.mode, uid: 0, gid: 0, size: entry.data.length, isFile: true, isDirectory: false, mtimeMs: Date.now()};
		}
		return this.inner.stat(nodePath);
	}

	async listDir(nodePath: string): Promise<string[] | undefined> {
		const directory = path.posix.normalize(nodePath);
		const names = new Set((await this.inner.listDir(directory)) ?? []);
		let touched = false;
		for (const [file, entry] of this.overlay) {
			if (path.posix.dirname(file) !== directory) continue;
			touched = true;
			if (entry === 'removed') names.delete(path.posix.basename(file));
			else names.add(path.posix.basename(file));
		}
		if (!touched && (await this.inner.listDir(directory)) === undefined) return undefined;
		return [...names].sort();
	}

	async writeFileAtomic(nodePath: string, data: string | Uint8Array, mode: number): Promise<void> {
		const buffer = Buffer.from(data);
		this.overlay.set(path.posix.normalize(nodePath), {data: buffer, mode});
		this.actions.push({kind: 'write', path: nodePath, mode, bytes: buffer.length});
	}

	async mkdir(nodePath: string, mode: number): Promise<void> {
		this.actions.push({kind: 'mkdir', path: nodePath, mode});
	}

	async createExclusive(nodePath: string, data: string, mode: number): Promise<boolean> {
		if ((await this.readFile(nodePath)) !== undefined) return false;
		await this.writeFileAtomic(nodePath, data, mode);
		return true;
	}

	async appendFile(nodePath: string, data: string, mode: number): Promise<void> {
		const before = (await this.readFile(nodePath)) ?? Buffer.alloc(0);
		await this.writeFileAtomic(nodePath, Buffer.concat([before, Buffer.from(data)]), mode);
	}

	processAlive(pid: number): boolean {
		return this.inner.processAlive(pid);
	}

	async remove(nodePath: string): Promise<void> {
		this.overlay.set(path.posix.normalize(nodePath), 'removed');
		this.actions.push({kind: 'remove', path: nodePath});
	}

	async run(argv: Arg[], options?: RunOptions): Promise<RunResult> {
		if (options?.readOnly) return this.inner.run(argv, options);
		this.actions.push({kind: 'run', command: renderArgv(argv)});
		return {exitCode: 0, stdout: '', stderr: '', timedOut: false};
	}

	async request(request: HttpRequest): Promise<HttpResponse> {
		const method = request.method ?? 'GET';
		if (method === 'GET') return this.inner.request(request);
		this.actions.push({kind: 'request', method, url: request.url});
		return {status: 200, headers: {}, body: Buffer.alloc(0)};
	}

	/** gRPC calls only read (etcd's Range): made for real, like read-only commands. */
	async grpcUnary(request: GrpcRequest): Promise<GrpcResponse> {
		if (this.inner.grpcUnary === undefined) throw new GrpcTransportError('this host has no gRPC client');
		return this.inner.grpcUnary(request);
	}

	// ---- backups: writes are recorded, reads of the machine go through ----

	async ageEncryptFile(input: string, output: string, _to: EncryptTo, mode: number): Promise<void> {
		this.actions.push({kind: 'write', path: output, mode, bytes: (await this.stat(input))?.size ?? 0});
	}

	async ageDecryptFile(_input: string, output: string, _keys: DecryptWith, mode: number): Promise<void> {
		this.actions.push({kind: 'write', path: output, mode, bytes: 0});
	}

	async ageDecrypt(input: string, keys: DecryptWith): Promise<Buffer> {
		return this.inner.ageDecrypt(input, keys);
	}

	async ageDecryptDigest(input: string, keys: DecryptWith): Promise<FileDigest> {
		return this.inner.ageDecryptDigest(input, keys);
	}

	async digestFile(nodePath: string): Promise<FileDigest | undefined> {
		return this.inner.digestFile(nodePath);
	}

	readChunks(nodePath: string, chunkBytes?: number): AsyncIterable<Buffer> {
		return this.inner.readChunks(nodePath, chunkBytes);
	}

	async makeTempDir(parent: string, prefix: string): Promise<string> {
		const dir = path.posix.join(parent, `${prefix}DRYRUN`);
		this.actions.push({kind: 'mkdir', path: dir, mode: 0o700});
		return dir;
	}

	async removeTree(nodePath: string): Promise<void> {
		this.overlay.set(path.posix.normalize(nodePath), 'removed');
		this.actions.push({kind: 'remove', path: nodePath});
	}

	async rename(from: string, to: string): Promise<void> {
		this.actions.push({kind: 'run', command: renderArgv(['mv', {path: from}, {path: to}])});
	}

	async startProcess(argv: Arg[]): Promise<ProcessHandle> {
		this.actions.push({kind: 'run', command: renderArgv(argv)});
		const exited = Promise.resolve({exitCode: 0, stdout: '', stderr: '', timedOut: false});
		return {pid: undefined, exited, stop: async () => exited, outputTail: () => ''};
	}

	async spawnDetached(argv: Arg[]): Promise<DetachedProcess> {
		this.actions.push({kind: 'run', command: renderArgv(argv)});
		return {pid: undefined, kill: () => undefined};
	}

	async freeLoopbackPorts(count: number): Promise<number[]> {
		return this.inner.freeLoopbackPorts(count);
	}

	async sleep(ms: number, signal?: AbortSignal): Promise<void> {
		return this.inner.sleep(ms, signal);
	}

	now(): Date {
		return this.inner.now();
	}

	isRoot(): boolean {
		return this.inner.isRoot();
	}
}

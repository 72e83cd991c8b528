import {constants as fsConstants} from 'node:fs';
import * as fs from 'node:fs/promises';
import * as https from 'node:https';
import * as http from 'node:http';
import * as path from 'node:path';
import {createHash, randomBytes} from 'node:crypto';
import {setTimeout as delay} from 'node:timers/promises';
import {execa} from 'execa';
import type {Arg, FileStat, Host, HttpRequest, HttpResponse, RunOptions, RunResult} from './types.js';

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

	resolve(nodePath: string): string {
		if (!path.isAbsolute(nodePath)) throw new Error(`internal: node path must be absolute: ${nodePath}`);
		const normal = path.posix.normalize(nodePath);
		return this.root === '/' ? normal : path.join(this.root, normal);
	}

	async readFile(nodePath: string): Promise<Buffer | undefined> {
		try {
			return await fs.readFile(this.resolve(nodePath));
		} catch (error) {
			if (isMissing(error)) return undefined;
			throw error;
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
			throw error;
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
		await this.mkdirReal(path.dirname(target), 0o700);
		let handle: fs.FileHandle;
		try {
			handle = await fs.open(target, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
		} catch (error) {
			if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
			throw error;
		}
		try {
			await handle.chmod(mode);
			await handle.writeFile(data);
			await handle.sync();
		} finally {
			await handle.close();
		}
		return true;
	}

	async appendFile(nodePath: string, data: string, mode: number): Promise<void> {
		const target = this.resolve(nodePath);
		await this.mkdirReal(path.dirname(target), 0o700);
		const handle = await fs.open(target, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, mode);
		try {
			await handle.chmod(mode);
			await handle.writeFile(data);
			await handle.sync();
		} finally {
			await handle.close();
		}
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

	async run(argv: Arg[], options: RunOptions = {}): Promise<RunResult> {
		const [file, ...args] = argv.map(arg => {
			if (typeof arg === 'string') return arg;
			if ('path' in arg) return this.resolve(arg.path);
			return arg.secret;
		});
		if (file === undefined) throw new Error('internal: empty argv');
		const result = await execa(file, args, {
			reject: false,
			input: options.input,
			timeout: options.timeoutMs,
			env: options.env,
			cwd: options.cwd === undefined ? undefined : this.resolve(options.cwd),
			cancelSignal: options.signal,
			stripFinalNewline: false,
			encoding: 'utf8',
		});
		return {
			exitCode: result.exitCode ?? (result.failed ? 1 : 0),
			stdout: String(result.stdout ?? ''),
			stderr: result.exitCode === undefined && result.failed && !result.stderr ? String(result.message) : String(result.stderr ?? ''),
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

async function syncDirectory(directory: string): Promise<void> {
	const handle = await fs.open(directory, fsConstants.O_RDONLY);
	try {
		await handle.sync();
	} finally {
		await handle.close();
	}
}

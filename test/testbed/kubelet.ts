// A kubelet stand-in (test fixture). It runs as its own process inside the testbed's namespaces,
// watches the static pod manifest directory and runs each pod's container command as a process:
//  - each pod gets its own mount namespace in which the "hidden roots" (/etc/kubernetes, /var/lib/etcd,
//    /var/lib/etcd-harden) are empty tmpfs, and only the pod's hostPath volumes are bind-mounted at
//    their mountPaths, so a path that is not mounted into the pod is not visible to it;
//  - a pod is restarted (within about a second) when its manifest file changes, removed when the file
//    goes, and restarted with exponential back-off when its process exits; dot-files are ignored;
//  - each pod's output is appended to <logDir>/<pod>.log and its state (start counter, pid, last exit)
//    is written to <stateDir>/<pod>.json.
// Usage: node --import tsx kubelet.ts '<KubeletConfig as JSON>'
import {spawn, type ChildProcess} from 'node:child_process';
import {createHash} from 'node:crypto';
import {existsSync, openSync, closeSync, writeSync, statSync, watch, mkdirSync} from 'node:fs';
import {readdir, readFile, rename, writeFile, mkdir, stat} from 'node:fs/promises';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {parse as parseYaml} from 'yaml';

export interface KubeletConfig {
	manifestDir: string;
	logDir: string;
	stateDir: string;
	/** An existing, empty directory the pod launcher may mount a scratch tmpfs on. */
	stageDir: string;
	/** command[0] basename -> real binary. */
	binaries: Record<string, string>;
	/** Trees that are empty in every pod except for what the pod mounts. */
	hiddenRoots: string[];
	nodeName: string;
	initialBackoffMs?: number;
	maxBackoffMs?: number;
	gracePeriodMs?: number;
	pollMs?: number;
}

/** What the kubelet stand-in records for each pod, in <stateDir>/<pod>.json. */
export interface PodState {
	name: string;
	manifest: string;
	hash: string;
	/** Process starts since the kubelet began (every restart, for any reason, counts). */
	starts: number;
	/** Starts of the current manifest version (reset when the manifest changes). */
	startsThisVersion: number;
	pid: number | null;
	running: boolean;
	startedAt: string | null;
	lastExit: {code: number | null; signal: string | null; at: string} | null;
	/** Why the last start attempt failed before the process could run (volume checks etc.). */
	error: string | null;
}

interface HostPathVolume {
	name: string;
	hostPath?: {path: string; type?: string};
}

interface VolumeMount {
	name: string;
	mountPath: string;
	readOnly?: boolean;
	subPath?: string;
}

interface Container {
	name: string;
	command?: string[];
	args?: string[];
	env?: Array<{name: string; value?: string}>;
	workingDir?: string;
	volumeMounts?: VolumeMount[];
}

interface PodManifest {
	metadata?: {name?: string};
	spec?: {containers?: Container[]; volumes?: HostPathVolume[]};
}

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
const now = () => new Date().toISOString();

function log(msg: string): void {
	process.stdout.write(`${now()} kubelet: ${msg}\n`);
}

async function writeAtomic(file: string, data: string): Promise<void> {
	const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
	await writeFile(tmp, data);
	await rename(tmp, file);
}

class Pod {
	private proc: ChildProcess | undefined;
	private exited: Promise<void> = Promise.resolve();
	private timer: NodeJS.Timeout | undefined;
	private stopping = false;
	private backoffMs: number;
	readonly state: PodState;

	constructor(
		private readonly cfg: Required<KubeletConfig>,
		readonly name: string,
		readonly file: string,
		readonly hash: string,
		private readonly manifest: PodManifest,
		startsSoFar: number,
	) {
		this.backoffMs = cfg.initialBackoffMs;
		this.state = {
			name,
			manifest: file,
			hash,
			starts: startsSoFar,
			startsThisVersion: 0,
			pid: null,
			running: false,
			startedAt: null,
			lastExit: null,
			error: null,
		};
	}

	get logFile(): string {
		return path.join(this.cfg.logDir, `${this.name}.log`);
	}

	private appendLog(line: string): void {
		const fd = openSync(this.logFile, 'a');
		try {
			writeSync(fd, `${now()} [testbed-kubelet] ${line}\n`);
		} finally {
			closeSync(fd);
		}
	}

	private async saveState(): Promise<void> {
		await writeAtomic(path.join(this.cfg.stateDir, `${this.name}.json`), JSON.stringify(this.state, null, 2) + '\n');
	}

	/** Build the launcher script: mounts exactly the pod's hostPath volumes, then execs the command. */
	private launcher(container: Container): string {
		const volumes = new Map((this.manifest.spec?.volumes ?? []).map((v) => [v.name, v]));
		const stage = this.cfg.stageDir;
		const lines = ['set -e', `mount -t tmpfs -o mode=0700 testbed-stage ${q(stage)}`];
		const binds: Array<{i: number; mountPath: string; dir: boolean; readOnly: boolean}> = [];
		(container.volumeMounts ?? []).forEach((m, i) => {
			const vol = volumes.get(m.name);
			if (!vol) throw new Error(`volumeMount ${m.name}: no volume of that name in the pod`);
			if (!vol.hostPath) throw new Error(`volume ${m.name}: only hostPath volumes are supported`);
			const type = vol.hostPath.type ?? '';
			let src = vol.hostPath.path;
			if (!existsSync(src)) {
				if (type === 'DirectoryOrCreate' || type === '') mkdirSync(src, {recursive: true, mode: 0o755});
				else if (type === 'FileOrCreate') {
					mkdirSync(path.dirname(src), {recursive: true});
					closeSync(openSync(src, 'a', 0o644));
				} else {
					throw new Error(`MountVolume.SetUp failed for volume "${m.name}": hostPath type check failed: ${src} does not exist`);
				}
			}
			const st0 = statSync(src);
			if ((type === 'Directory' || type === 'DirectoryOrCreate') && !st0.isDirectory())
				throw new Error(`MountVolume.SetUp failed for volume "${m.name}": ${src} is not a directory`);
			if ((type === 'File' || type === 'FileOrCreate') && !st0.isFile())
				throw new Error(`MountVolume.SetUp failed for volume "${m.name}": ${src} is not a file`);
			if (m.subPath) src = path.join(src, m.subPath);
			const dir = statSync(src).isDirectory();
			lines.push(dir ? `mkdir ${q(`${stage}/${i}`)}` : `touch ${q(`${stage}/${i}`)}`);
			lines.push(`mount --bind ${q(src)} ${q(`${stage}/${i}`)}`);
			binds.push({i, mountPath: m.mountPath, dir, readOnly: m.readOnly === true});
		});
		for (const root of this.cfg.hiddenRoots) {
			if (existsSync(root)) lines.push(`mount -t tmpfs -o mode=0755 testbed-hidden ${q(root)}`);
		}
		binds.sort((a, b) => a.mountPath.split('/').length - b.mountPath.split('/').length);
		for (const b of binds) {
			const mp = b.mountPath;
			if (b.dir) lines.push(`mkdir -p ${q(mp)}`);
			else lines.push(`mkdir -p ${q(path.dirname(mp))}`, `[ -e ${q(mp)} ] || touch ${q(mp)}`);
			lines.push(`mount --bind ${q(`${stage}/${b.i}`)} ${q(mp)}`);
			if (b.readOnly) lines.push(`mount -o remount,bind,ro ${q(mp)}`);
		}
		lines.push(`umount -l ${q(stage)}`);
		if (container.workingDir) lines.push(`cd ${q(container.workingDir)}`);
		lines.push('exec "$@"');
		return lines.join('\n');
	}

	start(): void {
		this.timer = undefined;
		if (this.stopping) return;
		this.state.error = null;
		let child: ChildProcess;
		try {
			const containers = this.manifest.spec?.containers ?? [];
			if (containers.length !== 1) throw new Error(`expected exactly one container, found ${containers.length}`);
			const c = containers[0]!;
			const argv = [...(c.command ?? []), ...(c.args ?? [])];
			if (argv.length === 0) throw new Error(`container ${c.name} has no command`);
			const bin = this.cfg.binaries[path.basename(argv[0]!)];
			if (!bin) throw new Error(`no binary for command ${argv[0]} (known: ${Object.keys(this.cfg.binaries).join(', ')})`);
			const script = this.launcher(c);
			const env: Record<string, string> = {
				PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
				HOSTNAME: this.cfg.nodeName,
				HOME: '/root',
			};
			for (const e of c.env ?? []) env[e.name] = e.value ?? '';
			this.state.starts += 1;
			this.state.startsThisVersion += 1;
			this.appendLog(`starting ${this.name} (start ${this.state.starts}, manifest ${this.hash.slice(0, 12)}): ${argv.join(' ')}`);
			const fd = openSync(this.logFile, 'a');
			try {
				child = spawn('unshare', ['--mount', '--propagation', 'private', '--', '/bin/sh', '-c', script, this.name, bin, ...argv.slice(1)], {
					stdio: ['ignore', fd, fd],
					env,
				});
			} finally {
				closeSync(fd);
			}
		} catch (error) {
			const message = error instanceof Error ? error.message : String(error);
			this.state.error = message;
			this.appendLog(`failed to start: ${message}`);
			log(`${this.name}: failed to start: ${message}`);
			void this.saveState();
			this.scheduleRestart();
			return;
		}
		this.proc = child;
		const startedAt = Date.now();
		this.state.pid = child.pid ?? null;
		this.state.running = true;
		this.state.startedAt = new Date(startedAt).toISOString();
		void this.saveState();
		log(`${this.name}: started pid ${child.pid} (start ${this.state.starts})`);
		this.exited = new Promise((resolve) => {
			child.once('error', (error) => this.appendLog(`spawn error: ${error.message}`));
			child.once('exit', (code, signal) => {
				this.proc = undefined;
				this.state.running = false;
				this.state.pid = null;
				this.state.lastExit = {code, signal, at: now()};
				this.appendLog(`${this.name} exited (code ${code}, signal ${signal})`);
				log(`${this.name}: exited code=${code} signal=${signal}`);
				void this.saveState().then(() => resolve());
				if (!this.stopping) {
					if (Date.now() - startedAt > 20_000) this.backoffMs = this.cfg.initialBackoffMs;
					this.scheduleRestart();
				}
			});
		});
	}

	private scheduleRestart(): void {
		if (this.stopping) return;
		const delay = this.backoffMs;
		this.backoffMs = Math.min(this.backoffMs * 2, this.cfg.maxBackoffMs);
		this.appendLog(`back-off ${delay}ms before restarting ${this.name}`);
		this.timer = setTimeout(() => this.start(), delay);
	}

	async stop(reason: string): Promise<void> {
		this.stopping = true;
		if (this.timer) clearTimeout(this.timer);
		const proc = this.proc;
		if (proc && proc.exitCode === null && proc.signalCode === null) {
			this.appendLog(`stopping ${this.name}: ${reason}`);
			proc.kill('SIGTERM');
			const killer = setTimeout(() => proc.kill('SIGKILL'), this.cfg.gracePeriodMs);
			await this.exited;
			clearTimeout(killer);
		}
	}
}

export class Kubelet {
	private readonly cfg: Required<KubeletConfig>;
	private readonly pods = new Map<string, Pod>();
	private readonly starts = new Map<string, number>();
	private syncing: Promise<void> = Promise.resolve();
	private pending = false;
	private closed = false;
	private poller: NodeJS.Timeout | undefined;

	constructor(cfg: KubeletConfig) {
		this.cfg = {initialBackoffMs: 1000, maxBackoffMs: 8000, gracePeriodMs: 5000, pollMs: 1000, ...cfg};
	}

	async run(): Promise<void> {
		for (const d of [this.cfg.manifestDir, this.cfg.logDir, this.cfg.stateDir, this.cfg.stageDir]) {
			await mkdir(d, {recursive: true});
		}
		watch(this.cfg.manifestDir, () => this.requestSync());
		this.poller = setInterval(() => this.requestSync(), this.cfg.pollMs);
		this.requestSync();
		log(`watching ${this.cfg.manifestDir}`);
	}

	requestSync(): void {
		if (this.pending || this.closed) return;
		this.pending = true;
		this.syncing = this.syncing.then(async () => {
			this.pending = false;
			try {
				await this.sync();
			} catch (error) {
				log(`sync failed: ${error instanceof Error ? error.stack : String(error)}`);
			}
		});
	}

	private async desired(): Promise<Map<string, {file: string; hash: string; manifest: PodManifest}>> {
		const result = new Map<string, {file: string; hash: string; manifest: PodManifest}>();
		const entries = await readdir(this.cfg.manifestDir).catch(() => [] as string[]);
		for (const entry of entries.sort()) {
			if (entry.startsWith('.')) continue; // kubelet ignores dot-files (atomic-write temp files)
			const file = path.join(this.cfg.manifestDir, entry);
			let text: string;
			try {
				if (!(await stat(file)).isFile()) continue;
				text = await readFile(file, 'utf8');
			} catch {
				continue;
			}
			const hash = createHash('sha256').update(text).digest('hex');
			let manifest: PodManifest;
			try {
				manifest = parseYaml(text) as PodManifest;
			} catch (error) {
				log(`${entry}: could not parse: ${error instanceof Error ? error.message : String(error)}`);
				continue;
			}
			const name = manifest?.metadata?.name;
			if (!name) {
				log(`${entry}: no metadata.name; ignored`);
				continue;
			}
			if (result.has(name)) {
				log(`${entry}: duplicate pod name ${name}; ignored`);
				continue;
			}
			result.set(name, {file, hash, manifest});
		}
		return result;
	}

	private async sync(): Promise<void> {
		if (this.closed) return;
		const want = await this.desired();
		for (const [name, pod] of this.pods) {
			const w = want.get(name);
			if (!w || w.hash !== pod.hash || w.file !== pod.file) {
				log(`${name}: manifest ${w ? 'changed' : 'removed'}; stopping`);
				await pod.stop(w ? 'manifest changed' : 'manifest removed');
				this.starts.set(name, pod.state.starts);
				this.pods.delete(name);
			}
		}
		for (const [name, w] of want) {
			if (this.pods.has(name) || this.closed) continue;
			const pod = new Pod(this.cfg, name, w.file, w.hash, w.manifest, this.starts.get(name) ?? 0);
			this.pods.set(name, pod);
			pod.start();
		}
	}

	async close(): Promise<void> {
		this.closed = true;
		if (this.poller) clearInterval(this.poller);
		await this.syncing;
		await Promise.all([...this.pods.values()].map((p) => p.stop('kubelet stopping')));
	}
}

async function main(): Promise<void> {
	const cfg = JSON.parse(process.argv[2] ?? '') as KubeletConfig;
	const kubelet = new Kubelet(cfg);
	let closing = false;
	const shutdown = (sig: string) => {
		if (closing) return;
		closing = true;
		log(`${sig}: stopping all pods`);
		void kubelet.close().then(() => process.exit(0));
	};
	process.on('SIGTERM', () => shutdown('SIGTERM'));
	process.on('SIGINT', () => shutdown('SIGINT'));
	await kubelet.run();
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
	main().catch((error) => {
		log(`fatal: ${error instanceof Error ? error.stack : String(error)}`);
		process.exit(1);
	});
}

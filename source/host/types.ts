/**
 * The host is the only place with side effects. Stages never see it; discovery reads
 * through it, the engine applies changes through it. `--dry-run` swaps in a host that
 * records writes and commands instead of doing them (see recording.ts).
 *
 * Every path given to a host is a *node path* (`/etc/kubernetes/...`). The host maps it
 * under its root (`--root DIR`), so tests and demos run against a copied tree.
 */
import type {DecryptWith, EncryptTo} from '../crypto/age.js';

export type RunResult = {
	exitCode: number;
	stdout: string;
	stderr: string;
	/** True when the command was killed by the timeout. */
	timedOut: boolean;
	/** Stdout as bytes, when `binaryStdout` was asked for (then `stdout` is empty). */
	stdoutBytes?: Buffer;
};

export type RunOptions = {
	/** Written to the command's stdin. Never logged. */
	input?: string | Uint8Array;
	timeoutMs?: number;
	env?: Record<string, string>;
	/** Node path; resolved under the root. */
	cwd?: string;
	/** Abort with the run (Ctrl-C). */
	signal?: AbortSignal;
	/** The command only reads (etcdctl get, kubectl get): the dry-run host runs it for real. */
	readOnly?: boolean;
	/** Keep stdout as bytes (`stdoutBytes`): binary output such as etcdctl's `-w protobuf`. */
	binaryStdout?: boolean;
};

/**
 * An argv element: either a literal, or a node path the host resolves under its root.
 * `{secret}` is passed to the command but rendered as `<redacted>` in previews and logs.
 */
export type Arg = string | {path: string} | {secret: string};

export type FileStat = {
	mode: number; // permission bits only (0o600)
	uid: number;
	gid: number;
	size: number;
	isFile: boolean;
	isDirectory: boolean;
	mtimeMs: number;
};

export type HttpRequest = {
	url: string;
	method?: string;
	headers?: Record<string, string>;
	body?: string | Uint8Array;
	/** Node paths of PEM files for mutual TLS. */
	caFile?: string;
	certFile?: string;
	keyFile?: string;
	/**
	 * Inline PEM text instead of files (e.g. a kubeconfig's `*-data`), used when the
	 * matching `*File` is not given. Never logged or recorded.
	 */
	ca?: string;
	cert?: string;
	key?: string;
	timeoutMs?: number;
	signal?: AbortSignal;
};

export type HttpResponse = {status: number; headers: Record<string, string>; body: Buffer};

/**
 * One unary gRPC call over HTTP/2 (h2c for http://, ALPN h2 with mutual TLS for https://), such as
 * etcd's `/etcdserverpb.KV/Range`. Only calls that read: the dry-run host makes them for real.
 */
export type GrpcRequest = {
	/** `http://host:port` or `https://host:port` (an etcd client URL). */
	endpoint: string;
	/** The method's path: `/etcdserverpb.KV/Range`. */
	method: string;
	/** The serialized request message (without gRPC's 5-byte frame header). */
	message: Uint8Array;
	/** Node paths of PEM files for mutual TLS. */
	caFile?: string;
	certFile?: string;
	keyFile?: string;
	timeoutMs?: number;
	signal?: AbortSignal;
};

/**
 * The answer: gRPC status 0 with the response message, or the server's status and message
 * (`grpc-status` 11 "etcdserver: mvcc: required revision has been compacted"). Failing to reach
 * the endpoint (refused, TLS, timeout) rejects with a GrpcTransportError instead.
 */
export type GrpcResponse = {status: number; statusMessage: string; message: Buffer};

/** The endpoint could not be reached or the call broke off: not an answer from the server. */
export class GrpcTransportError extends Error {
	override name = 'GrpcTransportError';
}

/** A background process started by `Host.startProcess` (a throwaway etcd for restore-check). */
export type ProcessHandle = {
	readonly pid: number | undefined;
	/** Resolves when the process has ended (never rejects). */
	readonly exited: Promise<RunResult>;
	/** SIGTERM, then SIGKILL after `graceMs` (default 10 s); resolves once it has ended. */
	stop(graceMs?: number): Promise<RunResult>;
	/** The last lines of its stdout and stderr (bounded), for error messages. */
	outputTail(): string;
};

/** A process started by `Host.spawnDetached`. */
export type DetachedProcess = {
	readonly pid: number | undefined;
	/** SIGTERM, unless it has already ended (never signals a reused pid). */
	kill(): void;
};

/** The digest of a file's content. */
export type FileDigest = {sha256: string; bytes: number};

export interface Host {
	/** `/` on a real node, or the `--root` directory. */
	readonly root: string;
	/** True for the recording host used by `--dry-run`. */
	readonly dryRun: boolean;

	/** Map a node path to the path on this machine (under the root). */
	resolve(nodePath: string): string;

	/** File contents, or undefined when the file does not exist. Other errors throw. */
	readFile(nodePath: string): Promise<Buffer | undefined>;
	readText(nodePath: string): Promise<string | undefined>;
	stat(nodePath: string): Promise<FileStat | undefined>;
	/** Entry names, or undefined when the directory does not exist. */
	listDir(nodePath: string): Promise<string[] | undefined>;

	/**
	 * Atomic write: dot-prefixed temp file in the same directory, fsync, chmod, rename,
	 * fsync the directory. Parent directories are created (0700) when missing. The mode is
	 * applied regardless of umask.
	 */
	writeFileAtomic(nodePath: string, data: string | Uint8Array, mode: number): Promise<void>;
	mkdir(nodePath: string, mode: number): Promise<void>;
	/** Create a file only if it does not exist (O_EXCL); false when it exists. For the lock. */
	createExclusive(nodePath: string, data: string, mode: number): Promise<boolean>;
	/** Append to a file (created with the mode when missing), then fsync. For the journal. */
	appendFile(nodePath: string, data: string, mode: number): Promise<void>;
	/** Remove a file or an empty directory; no error when missing. */
	remove(nodePath: string): Promise<void>;

	/** Run a command (execa, no shell). Does not throw on a non-zero exit. */
	run(argv: Arg[], options?: RunOptions): Promise<RunResult>;

	/**
	 * HTTPS/HTTP request, e.g. the apiserver's /readyz with client certificates. Connections
	 * are kept alive and reused per TLS identity (CA, client certificate and key), so many
	 * requests in flight do not each pay a TLS handshake.
	 */
	request(request: HttpRequest): Promise<HttpResponse>;

	/**
	 * A unary gRPC call that only reads (etcd's Range), on an HTTP/2 connection kept per
	 * endpoint and TLS identity. Optional: without it, etcd is read through etcdctl.
	 */
	grpcUnary?(request: GrpcRequest): Promise<GrpcResponse>;

	// ---- backups (source/backup) ----

	/**
	 * Encrypt a file in the age format, streaming (constant memory), into `output`: a
	 * dot-prefixed temporary file beside it, fsync, rename; removed on failure.
	 */
	ageEncryptFile(input: string, output: string, to: EncryptTo, mode: number): Promise<void>;
	/**
	 * Decrypt an age file into `output` (mode 0600 or `mode`). Only a fully authenticated
	 * plaintext is renamed into place; on failure the temporary file is deleted.
	 */
	ageDecryptFile(input: string, output: string, keys: DecryptWith, mode: number): Promise<void>;
	/** Decrypt an age file into memory (small files only, such as an encryption config). */
	ageDecrypt(input: string, keys: DecryptWith): Promise<Buffer>;
	/** sha256 of the plaintext of an age file, decrypted chunk by chunk; nothing is written. */
	ageDecryptDigest(input: string, keys: DecryptWith): Promise<FileDigest>;
	/** sha256 and size of a file, streamed; undefined when it does not exist. */
	digestFile(nodePath: string): Promise<FileDigest | undefined>;
	/**
	 * A file's content in chunks of about `chunkBytes` (default 1 MiB), read-only and streamed:
	 * constant memory whatever the file's size (etcd's data file, a snapshot). A chunk is valid
	 * until the next one is asked for (its memory is read into again): copy what you keep.
	 * Throws when the file cannot be read (ENOENT for a missing one).
	 */
	readChunks(nodePath: string, chunkBytes?: number): AsyncIterable<Buffer>;
	/** Create a fresh private (0700) directory `<parent>/<prefix>XXXXXX`; returns its node path. */
	makeTempDir(parent: string, prefix: string): Promise<string>;
	/** Remove a file or a directory tree; no error when missing. */
	removeTree(nodePath: string): Promise<void>;
	/** Rename a file or directory (same file system), then fsync the parent directory. */
	rename(from: string, to: string): Promise<void>;
	/** Start a long-running command in the background (execa, no shell). */
	startProcess(argv: Arg[], options?: Pick<RunOptions, 'env' | 'cwd'>): Promise<ProcessHandle>;
	/**
	 * Start a command that outlives this process: its own session (setsid, so no terminal
	 * hangup reaches it), stdio on /dev/null, not waited for. For the firewall watchdog, which
	 * must act when the tool has died. Resolves once it started; pid undefined when not started
	 * (the dry-run host only records it).
	 */
	spawnDetached(argv: Arg[], options?: Pick<RunOptions, 'env' | 'cwd'>): Promise<DetachedProcess>;
	/** Loopback TCP ports that were free a moment ago (for a throwaway server). */
	freeLoopbackPorts(count: number): Promise<number[]>;

	sleep(ms: number, signal?: AbortSignal): Promise<void>;
	now(): Date;
	/** Whether a process with this pid exists (stale lock detection). */
	processAlive(pid: number): boolean;
	/** Effective uid is 0. */
	isRoot(): boolean;
}

/** Render an argv for previews and logs, with secrets redacted. */
export function renderArgv(argv: readonly Arg[]): string {
	return argv
		.map(arg => {
			if (typeof arg === 'string') return shellQuote(arg);
			if ('path' in arg) return shellQuote(arg.path);
			return '<redacted>';
		})
		.join(' ');
}

export function shellQuote(value: string): string {
	if (value !== '' && /^[\w@%+=:,./-]+$/.test(value)) return value;
	return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** What read-only discovery needs of a host. */
export type ReadHost = Pick<Host, 'root' | 'readText' | 'stat' | 'listDir' | 'isRoot'>;

/**
 * The host is the only place with side effects. Stages never see it; discovery reads
 * through it, the engine applies changes through it. `--dry-run` swaps in a host that
 * records writes and commands instead of doing them (see recording.ts).
 *
 * Every path given to a host is a *node path* (`/etc/kubernetes/...`). The host maps it
 * under its root (`--root DIR`), so tests and demos run against a copied tree.
 */

export type RunResult = {
	exitCode: number;
	stdout: string;
	stderr: string;
	/** True when the command was killed by the timeout. */
	timedOut: boolean;
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

/**
 * Unexpected errors as the operator reads them: one line naming the file (or what failed)
 * and the problem, never a stack trace. The trace goes only into the run's journal.
 */

const errnoText: Record<string, string> = {
	EISDIR: 'is a directory, expected a file',
	ENOTDIR: 'a part of the path is not a directory',
	EACCES: 'permission denied',
	EPERM: 'operation not permitted',
	ENOSPC: 'no space left on the device',
	EDQUOT: 'disk quota exceeded',
	EROFS: 'read-only file system',
	ELOOP: 'too many levels of symbolic links',
	ENAMETOOLONG: 'the name is too long',
	EMFILE: 'too many open files',
	EEXIST: 'already exists',
	ENOENT: 'no such file or directory',
	EIO: 'input/output error',
	EXDEV: 'crosses file systems',
	ETXTBSY: 'text file busy',
	EBUSY: 'busy',
};

/** The errno code of a Node system error, if it is one. */
export function errnoCode(error: unknown): string | undefined {
	const code = (error as NodeJS.ErrnoException | undefined)?.code;
	return typeof code === 'string' && /^E[A-Z]+$/.test(code) ? code : undefined;
}

/**
 * One line for any thrown value: a system error as "PATH: problem", anything else as the
 * first line of its message. `shown` maps a machine path back to what the operator gave
 * (the node path under --root).
 */
export function describeError(error: unknown, shown: (file: string) => string = file => file): string {
	const code = errnoCode(error);
	const errno = error as NodeJS.ErrnoException;
	if (code !== undefined) {
		const what = errnoText[code] ?? code;
		const file = typeof errno.path === 'string' ? shown(errno.path) : undefined;
		const dest = (error as {dest?: unknown}).dest;
		const target = typeof dest === 'string' ? ` -> ${shown(dest)}` : '';
		const hint = code === 'EACCES' || code === 'EPERM' ? ' (run etcd-harden as root)' : code === 'ENOSPC' || code === 'EDQUOT' ? ' (free some space and rerun)' : code === 'EROFS' ? ' (remount it read-write and rerun)' : '';
		return `${file === undefined ? `${errno.syscall ?? 'a system call'} failed` : `${file}${target}`}: ${what}${hint}`;
	}
	const message = error instanceof Error ? error.message : String(error);
	const first = message.split('\n').find(line => line.trim() !== '') ?? (error instanceof Error ? error.name : 'unknown error');
	return first.trim().slice(0, 500);
}

/** The stack (or message) of a thrown value, for the journal. */
export function traceOf(error: unknown): string {
	if (error instanceof Error) return error.stack ?? `${error.name}: ${error.message}`;
	return String(error);
}

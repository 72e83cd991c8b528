/**
 * The tool's own temporary files: every atomic write goes through a dot-prefixed temporary
 * file beside its target, named `.<target>.etcd-harden-<12 hex>.tmp` (host/real.ts; age output: `.<target>.<12 hex>.partial`). A kill
 * between the write and the rename leaves one behind, possibly holding key material; this
 * recognises them by name and removes them.
 */
import type {Host} from '../host/types.js';

/** Atomic writes (host/real.ts) and age output (host/age-files.ts). */
const patterns = [/^\..+\.etcd-harden-[0-9a-f]{12}\.tmp$/, /^\..+\.[0-9a-f]{12}\.partial$/];

export function isToolTempFile(name: string): boolean {
	return patterns.some(pattern => pattern.test(name));
}

/** Node paths of the tool's leftover temporary files in `dirs` (removed when `remove`). */
export async function sweepTempFiles(host: Host, dirs: readonly string[], remove: boolean): Promise<string[]> {
	const found: string[] = [];
	for (const dir of [...new Set(dirs)].sort()) {
		let names: string[];
		try {
			names = (await host.listDir(dir)) ?? [];
		} catch {
			continue; // unreadable or not a directory: discovery reports what matters
		}
		for (const name of names.filter(isToolTempFile)) {
			const file = `${dir === '/' ? '' : dir}/${name}`;
			const stat = await host.stat(file).catch(() => undefined);
			if (!stat?.isFile) continue;
			if (remove) await host.remove(file);
			found.push(file);
		}
	}
	return found;
}

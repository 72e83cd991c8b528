import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import {fileURLToPath} from 'node:url';
import {demoTree} from './demo-tree.generated.js';

/** The package's own directory (where package.json lives), when running from source or dist. */
export async function packageDirectory(): Promise<string> {
	let directory = path.dirname(fileURLToPath(import.meta.url));
	while (true) {
		try {
			const manifest = JSON.parse(await fs.readFile(path.join(directory, 'package.json'), 'utf8')) as {name?: string};
			if (manifest.name === 'etcd-harden') return directory;
		} catch {
			// keep walking up
		}
		const parent = path.dirname(directory);
		if (parent === directory) throw new Error('internal: cannot find the etcd-harden package directory');
		directory = parent;
	}
}

/**
 * Write the built-in kubeadm-like fixture tree (demo/, embedded at build time by
 * scripts/generate-demo-tree.mjs) to a fresh temporary directory, for `etcd-harden demo`: the
 * wizard then runs with --root pointing there, touching nothing else. Embedded, so the single
 * executable needs no file beside it.
 */
export async function prepareDemoTree(): Promise<string> {
	const target = await fs.mkdtemp(path.join(os.tmpdir(), 'etcd-harden-demo-'));
	for (const [relative, content] of Object.entries(demoTree)) {
		const file = path.join(target, ...relative.split('/'));
		await fs.mkdir(path.dirname(file), {recursive: true, mode: 0o755});
		await fs.writeFile(file, content, {mode: 0o644});
	}
	return target;
}

/** Remove a demo copy made by prepareDemoTree (only such a directory: a refused demo leaves nothing behind). */
export async function removeDemoTree(directory: string): Promise<void> {
	const resolved = path.resolve(directory);
	if (path.dirname(resolved) !== path.resolve(os.tmpdir()) || !path.basename(resolved).startsWith('etcd-harden-demo-')) return;
	await fs.rm(resolved, {recursive: true, force: true});
}

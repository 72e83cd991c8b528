/** Temporary copies of the shipped demo tree, and byte-for-byte snapshots of a tree. */
import {createHash} from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import {fileURLToPath} from 'node:url';

export const repoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const demoDir = path.join(repoDir, 'demo');

/** A fresh copy of demo/ (modes kept) in a temporary directory. */
export async function copyDemo(): Promise<string> {
	const root = await fs.mkdtemp(path.join(os.tmpdir(), 'etcd-harden-ui-root-'));
	await fs.cp(demoDir, root, {recursive: true, preserveTimestamps: true});
	return root;
}

export type Snapshot = Record<string, {mode: string; sha256: string}>;

/** Every file under `root`: permission bits and a content hash. */
export async function snapshot(root: string): Promise<Snapshot> {
	const result: Snapshot = {};
	async function walk(directory: string): Promise<void> {
		for (const entry of await fs.readdir(directory, {withFileTypes: true})) {
			const full = path.join(directory, entry.name);
			if (entry.isDirectory()) await walk(full);
			else {
				const stat = await fs.stat(full);
				result[path.relative(root, full)] = {
					mode: (stat.mode & 0o7777).toString(8),
					sha256: createHash('sha256').update(await fs.readFile(full)).digest('hex'),
				};
			}
		}
	}
	await walk(root);
	return result;
}

/** Leftover temporary files of an atomic write (dot-prefixed, *.tmp) anywhere under `root`. */
export async function tempFiles(root: string): Promise<string[]> {
	const files = Object.keys(await snapshot(root));
	return files.filter(file => /(^|\/)\.[^/]*\.tmp$/.test(file) || /etcd-harden-[0-9a-f]+\.tmp$/.test(file));
}

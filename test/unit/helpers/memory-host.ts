/**
 * An in-memory host for unit tests of discovery and planning (a fake, so unit tier only):
 * the read methods discovery uses, plus writeFileAtomic to apply a plan's file writes.
 */
import {readdirSync, readFileSync, statSync} from 'node:fs';
import {join, posix} from 'node:path';
import type {FileStat} from '../../../source/host/types.js';
import type {ReadHost} from '../../../source/discover/files.js';

type Entry = {data: Buffer; mode: number} | {error: string};

export class MemoryHost implements ReadHost {
	readonly root = '/memory';
	readonly dryRun = false;
	readonly files = new Map<string, Entry>();
	readonly writes: Array<{path: string; mode: number}> = [];

	constructor(files: Record<string, string | {text: string; mode?: number} | {error: string}> = {}) {
		for (const [path, value] of Object.entries(files)) {
			if (typeof value === 'string') this.put(path, value);
			else if ('error' in value) this.files.set(path, value);
			else this.put(path, value.text, value.mode);
		}
	}

	/** Load a directory tree (e.g. demo/) as node paths. */
	static fromDir(dir: string): MemoryHost {
		const host = new MemoryHost();
		const walk = (sub: string) => {
			for (const name of readdirSync(join(dir, sub))) {
				const rel = posix.join(sub, name);
				const stat = statSync(join(dir, rel));
				if (stat.isDirectory()) walk(rel);
				else host.files.set(`/${rel}`, {data: readFileSync(join(dir, rel)), mode: stat.mode & 0o777});
			}
		};
		walk('');
		return host;
	}

	put(path: string, text: string, mode = 0o600): void {
		this.files.set(path, {data: Buffer.from(text), mode});
	}

	text(path: string): string | undefined {
		const entry = this.files.get(path);
		return entry && 'data' in entry ? entry.data.toString('utf8') : undefined;
	}

	resolve(nodePath: string): string {
		return posix.join(this.root, nodePath);
	}

	async readFile(nodePath: string): Promise<Buffer | undefined> {
		const entry = this.files.get(nodePath);
		if (!entry) return undefined;
		if ('error' in entry) throw Object.assign(new Error(`${entry.error}: ${nodePath}`), {code: entry.error});
		return entry.data;
	}

	async readText(nodePath: string): Promise<string | undefined> {
		return (await this.readFile(nodePath))?.toString('utf8');
	}

	async stat(nodePath: string): Promise<FileStat | undefined> {
		const entry = this.files.get(nodePath);
		if (entry && 'data' in entry) {
			return {mode: entry.mode, uid: 0, gid: 0, size: entry.data.length, isFile: true, isDirectory: false, mtimeMs: 0};
		}
		if (entry) return {mode: 0o600, uid: 0, gid: 0, size: 0, isFile: true, isDirectory: false, mtimeMs: 0};
		const prefix = nodePath.endsWith('/') ? nodePath : `${nodePath}/`;
		if ([...this.files.keys()].some(p => p.startsWith(prefix))) {
			return {mode: 0o755, uid: 0, gid: 0, size: 0, isFile: false, isDirectory: true, mtimeMs: 0};
		}
		return undefined;
	}

	async listDir(nodePath: string): Promise<string[] | undefined> {
		const prefix = nodePath.endsWith('/') ? nodePath : `${nodePath}/`;
		const names = new Set<string>();
		for (const path of this.files.keys()) if (path.startsWith(prefix)) names.add(path.slice(prefix.length).split('/')[0]!);
		return names.size > 0 ? [...names] : undefined;
	}

	async writeFileAtomic(nodePath: string, data: string | Uint8Array, mode: number): Promise<void> {
		this.files.set(nodePath, {data: Buffer.from(data), mode});
		this.writes.push({path: nodePath, mode});
	}

	async remove(nodePath: string): Promise<void> {
		this.files.delete(nodePath);
	}

	now(): Date {
		return new Date('2024-01-01T00:00:00Z');
	}

	isRoot(): boolean {
		return true;
	}
}

/** Deterministic "random" bytes for planning tests: 0x01, 0x02, ... per call. */
export function countingBytes(): {randomBytes(size: number): Buffer; calls: number} {
	const state = {
		calls: 0,
		randomBytes(size: number): Buffer {
			state.calls++;
			return Buffer.alloc(size, state.calls);
		},
	};
	return state;
}

// Shared by the unit tests that run the CLI: main() in process over a temporary copy of demo/
// with --root, captured output, and a byte-for-byte snapshot of the tree (symlinks as links).
// Call cleanup() in afterEach: it removes every directory tempDir() made.
import {createHash} from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import {PassThrough} from 'node:stream';
import {fileURLToPath} from 'node:url';
import {expect} from 'vitest';
import {main, type Io} from '../../source/cli/main.js';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const manifest = 'etc/kubernetes/manifests/kube-apiserver.yaml';
export const etcdManifest = 'etc/kubernetes/manifests/etcd.yaml';
export const configFile = 'etc/kubernetes/enc/encryption-config.yaml';
export const recovery = ['--set', 'encryption-config.recovery=stored-elsewhere', '--set', 'encryption-config.storedElsewhere=true'];

const made: string[] = [];

export async function cleanup(): Promise<void> {
	for (const dir of made.splice(0)) await fs.rm(dir, {recursive: true, force: true});
}

export async function tempDir(prefix = 'etcd-harden-test-'): Promise<string> {
	const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
	made.push(dir);
	return dir;
}

export async function demoCopy(): Promise<string> {
	const root = await tempDir('etcd-harden-root-');
	await fs.cp(path.join(repo, 'demo'), root, {recursive: true});
	return root;
}

/** Every entry under root: directories with their mode, files with mode and sha256, links with their target. */
export async function snapshot(root: string): Promise<Record<string, string>> {
	const result: Record<string, string> = {};
	async function walk(directory: string): Promise<void> {
		for (const entry of await fs.readdir(directory, {withFileTypes: true})) {
			const full = path.join(directory, entry.name);
			const stat = await fs.lstat(full);
			const name = path.relative(root, full);
			if (stat.isSymbolicLink()) result[name] = `-> ${await fs.readlink(full)}`;
			else if (stat.isDirectory()) {
				result[`${name}/`] = (stat.mode & 0o7777).toString(8);
				await walk(full);
			} else {
				const hash = createHash('sha256').update(await fs.readFile(full)).digest('hex');
				result[name] = `${(stat.mode & 0o7777).toString(8)} ${hash}`;
			}
		}
	}
	await walk(root);
	return result;
}

export type Run = {code: number; stdout: string; stderr: string};

export async function run(argv: string[], io: Partial<Io> = {}): Promise<Run> {
	const stdout = new PassThrough();
	const stderr = new PassThrough();
	const stdin = new PassThrough();
	let out = '';
	let err = '';
	stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
	stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
	const code = await main(argv, {
		stdin: stdin as unknown as NodeJS.ReadStream,
		stdout: stdout as unknown as NodeJS.WriteStream,
		stderr: stderr as unknown as NodeJS.WriteStream,
		isRoot: true,
		handleSignals: false,
		...io,
	});
	return {code, stdout: out, stderr: err};
}

/** No stack trace: no "    at " frame lines, no "Error:" class prefixes from Node. */
export function expectNoTrace(result: Run): void {
	const text = result.stdout + result.stderr;
	expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
	expect(text).not.toMatch(/\b(TypeError|ReferenceError|RangeError|SyntaxError)\b/);
}

/** Exit 2, the message, no trace, and the tree byte for byte as it was. */
export async function expectRefused(root: string, argv: string[], message: RegExp, io: Partial<Io> = {}): Promise<Run> {
	const before = await snapshot(root);
	const result = await run(argv, io);
	expect(result.stderr + result.stdout).toMatch(message);
	expect(result.code).toBe(2);
	expectNoTrace(result);
	expect(await snapshot(root)).toEqual(before);
	return result;
}

/** Point the demo apiserver at a config path (the file itself is up to the test). */
export async function pointApiserverAt(root: string, configPath: string): Promise<void> {
	const text = await fs.readFile(path.join(root, manifest), 'utf8');
	await fs.writeFile(path.join(root, manifest), text.replace('    - --allow-privileged=true\n', `    - --allow-privileged=true\n    - --encryption-provider-config=${configPath}\n`));
}

export const validConfig = (secret: string) => `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - secretbox:
          keys:
            - name: key1
              secret: ${secret}
      - identity: {}
`;

/** Every file's text under a directory, concatenated (to look for a key anywhere). */
export async function allText(directory: string): Promise<string> {
	let text = '';
	for (const entry of await fs.readdir(directory, {withFileTypes: true, recursive: true})) {
		if (entry.isFile()) text += await fs.readFile(path.join(entry.parentPath, entry.name), 'utf8');
	}
	return text;
}

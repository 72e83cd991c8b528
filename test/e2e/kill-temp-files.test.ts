// Issue 13, class 10: the built CLI (dist/cli.js) killed by strace at an exact system call
// (the rename that would put an atomic write in place) leaves its dot-temp file behind; the
// next run removes it and says so. No control plane: a copy of demo/ with --root.
import {execa} from 'execa';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {afterEach, describe, expect, test} from 'vitest';
import {cleanup, demoCopy, recovery, repo} from '../unit/cli-harness.js';

afterEach(cleanup);

const cli = path.join(repo, 'dist/cli.js');
const args = (root: string) => ['harden', '--root', root, '--yes', '--plain', '--only', 'encryption-config,apiserver-manifest', ...recovery];

/** The tool's temp files anywhere under root. */
async function tempFiles(root: string): Promise<string[]> {
	const entries = await fs.readdir(root, {recursive: true, withFileTypes: true});
	return entries.filter(entry => entry.isFile() && /^\..+\.etcd-harden-[0-9a-f]{12}\.tmp$/.test(entry.name)).map(entry => path.relative(root, path.join(entry.parentPath, entry.name)));
}

/**
 * Run the CLI under strace, SIGKILLed at its `when`-th rename. strace counts per thread, so
 * libuv's pool is one thread (UV_THREADPOOL_SIZE=1): every file system call is made by it, in
 * order. The renames of this run: 1 the config, 2 the manifest's backup, 3 the manifest.
 */
async function killedAtRename(root: string, when: number) {
	return execa(
		'strace',
		['-f', '-qq', '-o', '/dev/null', '-e', 'trace=rename,renameat,renameat2', '-e', `inject=rename,renameat,renameat2:signal=SIGKILL:when=${when}`, process.execPath, cli, ...args(root)],
		{reject: false, env: {UV_THREADPOOL_SIZE: '1'}},
	);
}

describe('a kill between a temp file write and its rename', () => {
	test('at the config write: the key-holding temp file is left, the rerun removes it and says so', async () => {
		const root = await demoCopy();
		const killed = await killedAtRename(root, 1);
		expect(killed.exitCode).not.toBe(0);
		expect(killed.stderr + killed.stdout).not.toMatch(/Done \(exit 0\)/);
		const left = await tempFiles(root);
		expect(left).toHaveLength(1);
		expect(left[0]).toMatch(/^etc\/kubernetes\/enc\/\.encryption-config\.yaml\.etcd-harden-/);
		expect(await fs.readFile(path.join(root, left[0]!), 'utf8')).toContain('secret:');

		const rerun = await execa(process.execPath, [cli, ...args(root)], {reject: false});
		expect(rerun.exitCode).toBe(0);
		expect(rerun.stderr + rerun.stdout).toMatch(/Removed 1 temporary file\(s\) of an interrupted etcd-harden write: \/etc\/kubernetes\/enc\/\.encryption-config\.yaml\.etcd-harden-/);
		expect(await tempFiles(root)).toEqual([]);
	});

	test('at the manifest write: a dry run reports the temp file in manifests/ and keeps it; a real run removes it', async () => {
		const root = await demoCopy();
		const killed = await killedAtRename(root, 3);
		expect(killed.exitCode).not.toBe(0);
		expect(killed.stderr + killed.stdout).not.toMatch(/Done \(exit 0\)/);
		const left = await tempFiles(root);
		expect(left.filter(file => file.startsWith('etc/kubernetes/manifests/.kube-apiserver.yaml.etcd-harden-'))).toHaveLength(1);

		const dry = await execa(process.execPath, [cli, ...args(root), '--dry-run'], {reject: false});
		expect(dry.exitCode).toBe(0);
		expect(dry.stderr + dry.stdout).toMatch(/Found 1 temporary file\(s\) of an interrupted etcd-harden write \(a real run removes them\)/);
		expect(await tempFiles(root)).toEqual(left);

		const rerun = await execa(process.execPath, [cli, ...args(root)], {reject: false});
		expect(rerun.exitCode).toBe(0);
		expect(rerun.stderr + rerun.stdout).toMatch(/Removed 1 temporary file/);
		expect(await tempFiles(root)).toEqual([]);
		// The killed run's lock (its pid is gone) was taken over, and released again.
		await expect(fs.stat(path.join(root, 'var/lib/etcd-harden/lock'))).rejects.toThrow();
	});
});

describe('a run paused while it takes the lock', () => {
	test('the lock is never visible half-written (an empty lock read as stale let two runs apply at once); a run meanwhile takes it, the paused one then waits its turn', async () => {
		const root = await demoCopy();
		const lock = path.join(root, 'var/lib/etcd-harden/lock');
		// The first fchmod of the run is on the lock file as it is created: hold the run there 4 s.
		const first = execa('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=fchmod', '-e', 'inject=fchmod:delay_enter=4000000:when=1', process.execPath, cli, ...args(root)], {
			reject: false,
			env: {UV_THREADPOOL_SIZE: '1'},
		});
		let paused = false;
		for (let i = 0; i < 100 && !paused; i++) {
			await new Promise(resolve => setTimeout(resolve, 50));
			paused = (await fs.readdir(path.dirname(lock)).catch(() => [])).length > 0;
		}
		expect(paused).toBe(true);
		// Paused mid-creation: there is no lock to read yet, not an empty one.
		expect(await fs.readFile(lock, 'utf8').catch(() => 'absent')).toBe('absent');
		const second = await execa(process.execPath, [cli, ...args(root)], {reject: false});
		expect(second.exitCode, second.stderr).toBe(0);
		const done = await first;
		// The second run had finished and let the lock go: the first takes it and finds nothing left to do.
		expect(done.exitCode, done.stderr + done.stdout).toBe(0);
		expect(done.stdout + done.stderr).toMatch(/nothing was changed/);
		await expect(fs.stat(lock)).rejects.toThrow();
		expect((await fs.readdir(path.dirname(lock))).filter(name => name.includes('pending'))).toEqual([]);
	}, 60_000);
});

// The single executable (npm run build:exe) where there is no Node.js at all: built here, run in a
// Debian minbase root filesystem made by debootstrap (no node, no npm, no libnode), then run once
// through the encryption-at-rest e2e suite on the real control-plane testbed instead of
// `node dist/cli.js`. ldd and the GLIBC symbol versions it needs say where it can run.
import {execa} from 'execa';
import {existsSync} from 'node:fs';
import {readFile, stat} from 'node:fs/promises';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {beforeAll, describe, expect, it} from 'vitest';
import {encryptionAtRestSuite} from './encryption-suite.js';
import {noNodeRootfs, runInRootfs} from './no-node-rootfs.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXE = path.join(REPO, 'dist', 'etcd-harden-linux-amd64');
const RECOVERY = ['--set', 'encryption-config.recovery=stored-elsewhere', '--set', 'encryption-config.storedElsewhere=true'];

// Debian 11 (bullseye) ships glibc 2.31 and libstdc++ from GCC 10 (GLIBCXX_3.4.28, CXXABI_1.3.12);
// Ubuntu 20.04 ships glibc 2.31 and GCC 10's libstdc++ too. An executable that needs no newer
// symbol version than these runs on both and everything later.
const CEILING: Record<string, string> = {GLIBC: '2.31', GLIBCXX: '3.4.28', CXXABI: '1.3.12', GCC: '7.0.0'};
// The libraries such an executable may link: glibc's own, libstdc++ and libgcc_s (in every
// Debian/Ubuntu base system), and the vdso.
const ALLOWED_LIBRARIES = new Set(['linux-vdso.so.1', 'libc.so.6', 'libm.so.6', 'libdl.so.2', 'libpthread.so.0', 'librt.so.1', 'libstdc++.so.6', 'libgcc_s.so.1', '/lib64/ld-linux-x86-64.so.2']);

function versionAbove(version: string, ceiling: string): boolean {
	const a = version.split('.').map(Number);
	const b = ceiling.split('.').map(Number);
	for (let i = 0; i < Math.max(a.length, b.length); i++) {
		if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
	}
	return false;
}

describe('the single executable on a root filesystem without Node.js', () => {
	let rootfs: string;
	beforeAll(async () => {
		// Build from this checkout: the test proves what `npm run build:exe` makes now.
		await execa('npm', ['run', 'build:exe', '--silent'], {cwd: REPO, stdin: 'ignore'});
		rootfs = await noNodeRootfs();
	});

	it('is one file with its SHA256SUMS entry beside it', async () => {
		const sums = await readFile(path.join(REPO, 'dist', 'SHA256SUMS'), 'utf8');
		expect(sums).toMatch(/^[0-9a-f]{64} {2}etcd-harden-linux-amd64\n$/);
		const check = await execa('sha256sum', ['--check', '--strict', 'SHA256SUMS'], {cwd: path.join(REPO, 'dist'), reject: false});
		expect(check.exitCode, String(check.stderr)).toBe(0);
		expect((await stat(EXE)).mode & 0o111).toBe(0o111);
	});

	it('links only glibc-era base libraries, with symbol versions no newer than Debian 11 / Ubuntu 20.04', async () => {
		const ldd = String((await execa('ldd', [EXE])).stdout);
		const libraries = ldd
			.split('\n')
			.map(line => line.trim().split(/\s+/)[0]!)
			.filter(Boolean);
		expect(libraries.length).toBeGreaterThan(2);
		expect(libraries.filter(library => !ALLOWED_LIBRARIES.has(library))).toEqual([]);
		const dynamic = String((await execa('objdump', ['-T', EXE], {maxBuffer: 512 * 1024 * 1024})).stdout);
		const needed = new Map<string, string>();
		for (const [, family, version] of dynamic.matchAll(/\b(GLIBC|GLIBCXX|CXXABI|GCC)_([0-9.]+)\b/g)) {
			const seen = needed.get(family!);
			if (seen === undefined || versionAbove(version!, seen)) needed.set(family!, version!);
		}
		expect(needed.get('GLIBC')).toBeDefined();
		const tooNew = [...needed].filter(([family, version]) => versionAbove(version, CEILING[family]!));
		expect(tooNew, `needed: ${JSON.stringify(Object.fromEntries(needed))}`).toEqual([]);
	});

	it('the root filesystem has no Node.js: no node binary and no libnode', async () => {
		const which = await runInRootfs(rootfs, EXE, ['sh', '-c', 'command -v node || command -v nodejs || ls /usr/lib/x86_64-linux-gnu/libnode* 2>/dev/null || echo none']);
		expect(which.stdout.trim()).toBe('none');
		expect(existsSync(path.join(rootfs, 'usr', 'bin', 'node'))).toBe(false);
	});

	it('--version names the version, the commit and the embedded runtime', async () => {
		const run = await runInRootfs(rootfs, EXE, ['etcd-harden', '--version']);
		expect(run.stderr).toBe('');
		expect(run.exitCode).toBe(0);
		const {version} = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as {version: string};
		const head = String((await execa('git', ['rev-parse', '--short=12', 'HEAD'], {cwd: REPO})).stdout).trim();
		const [name, commit, runtime] = run.stdout.trimEnd().split('\n');
		expect(name).toBe(`etcd-harden ${version}`);
		expect(commit).toMatch(new RegExp(`^commit: ${head}(-dirty)?$`));
		expect(runtime).toBe(`runtime: Node.js ${process.version} embedded (single executable, linux-x64)`);
	});

	it('compiles its embedded program with the embedded code cache, and writes nothing for it to disk', async () => {
		const script = [
			'ETCD_HARDEN_TRACE_CODE_CACHE=1 etcd-harden --version 2>&1 >/dev/null',
			// Nothing unpacked: no state directory, nothing in /tmp (a fresh tmpfs here).
			'test -e /var/lib/etcd-harden && echo state-dir || echo no-state-dir',
			'ls -A /tmp | wc -l',
		].join(' && ');
		const run = await runInRootfs(rootfs, EXE, ['sh', '-c', script]);
		expect(run.exitCode, run.stderr).toBe(0);
		expect(run.stdout.trim().split('\n')).toEqual(['etcd-harden: code cache used', 'no-state-dir', '0']);
	});

	it('--help and backup --help print the usage', async () => {
		for (const argv of [['--help'], ['backup', '--help']]) {
			const run = await runInRootfs(rootfs, EXE, ['etcd-harden', ...argv]);
			expect(run.exitCode, run.stderr).toBe(0);
			expect(run.stdout).toContain('Usage');
			expect(run.stdout).toContain('restore-check');
		}
	});

	it('status --root reads a copied kubeadm tree', async () => {
		const run = await runInRootfs(rootfs, EXE, ['etcd-harden', 'status', '--root', '/srv/node', '--json'], {[path.join(REPO, 'demo')]: '/srv/node'});
		const rows = JSON.parse(run.stdout) as Array<{id: string; status: string}>;
		expect(rows.find(row => row.id === '1.2.28')?.status).toBe('FAIL');
		expect(rows.find(row => row.id === 'etcd.v2-store')?.status).toBe('PASS');
		expect(run.exitCode).toBe(1);
	});

	it('demo --yes writes the encryption config and the manifest change into its embedded demo tree', async () => {
		const run = await runInRootfs(rootfs, EXE, ['etcd-harden', 'demo', '--yes', ...RECOVERY]);
		expect(run.exitCode, run.stderr.slice(-2000)).toBe(0);
		expect(run.stdout).toContain('Encryption config: applied and verified.');
		expect(run.stdout).toContain('kube-apiserver manifest: applied and verified.');
		expect(run.stdout).toMatch(/The demo tree is at \/tmp\/etcd-harden-demo-/);
	});
});

encryptionAtRestSuite('encryption at rest on a live control plane, run by the single executable', {program: [EXE], secrets: 300, configMaps: 50, namespaces: 2});

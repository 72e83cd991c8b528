/**
 * The V8 code cache of the program script (scripts/program-loader.mjs): built here exactly as
 * `npm run build` builds dist/ (scripts/program-build.mjs, into a temporary directory), then run
 * as real node processes. The cache is used when it is valid; when it is missing, corrupt, made
 * for another program or another node, or rejected by V8, the CLI still runs and prints the same.
 * ETCD_HARDEN_TRACE_CODE_CACHE=1 makes the loader say on stderr how the cache was used.
 */
import {execFileSync, spawnSync} from 'node:child_process';
import {cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
// @ts-expect-error: a plain .mjs build script without types
import {buildProgram} from '../../scripts/program-build.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let scratch: string;
let built: string;

beforeAll(async () => {
	scratch = mkdtempSync(path.join(tmpdir(), 'etcd-harden-code-cache-test-'));
	built = path.join(scratch, 'built');
	await (buildProgram as (options: {repo: string; outDir: string}) => Promise<void>)({repo, outDir: built});
}, 180_000);

afterAll(() => {
	rmSync(scratch, {recursive: true, force: true});
});

let copies = 0;
/** A copy of the built CLI to damage. */
function copy(): string {
	const dir = path.join(scratch, `copy-${copies++}`);
	cpSync(built, dir, {recursive: true});
	return dir;
}

type Run = {cache: string | undefined; stdout: string; stderr: string; status: number | null};
function run(dir: string, argv: string[], nodeFlags: string[] = []): Run {
	const tmp = mkdtempSync(path.join(scratch, 'tmp-'));
	const result = spawnSync(process.execPath, [...nodeFlags, path.join(dir, 'cli.js'), ...argv], {
		encoding: 'utf8',
		env: {...process.env, ETCD_HARDEN_TRACE_CODE_CACHE: '1', TMPDIR: tmp},
		input: '',
	});
	const cache = /^etcd-harden: code cache (\w+)$/m.exec(result.stderr)?.[1];
	// The demo's temporary tree has a random name and its new key a random sha256: the same
	// output, run to run, without them.
	const plain = (text: string) =>
		text
			.replaceAll(tmp, 'TMP')
			.replace(/etcd-harden-demo-\w+/g, 'etcd-harden-demo-X')
			.replace(/\b[0-9a-f]{64}\b/g, 'SHA256')
			.replace(/^etcd-harden: code cache \w+\n/m, '');
	return {cache, stdout: plain(result.stdout), stderr: plain(result.stderr), status: result.status};
}

/** The cache file as the loader reads it: a JSON header line, then V8's data. */
function splitCache(dir: string): {header: Record<string, unknown>; data: Buffer} {
	const file = readFileSync(path.join(dir, 'program.cache'));
	const newline = file.indexOf(10);
	return {header: JSON.parse(file.subarray(0, newline).toString('utf8')) as Record<string, unknown>, data: file.subarray(newline + 1)};
}
function writeCache(dir: string, header: Record<string, unknown>, data: Buffer): void {
	writeFileSync(path.join(dir, 'program.cache'), Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), data]));
}

describe('the program code cache', () => {
	let reference: {version: Run; demo: Run};

	it('is made by the build for this node and used by the loader', () => {
		const {header, data} = splitCache(built);
		expect(header).toMatchObject({node: process.version, v8: process.versions.v8, arch: process.arch, size: data.length});
		// Far more than the top level: the functions the wizard ran up to its first frame.
		expect(data.length).toBeGreaterThan(500_000);
		const version = run(built, ['--version']);
		expect(version.cache).toBe('used');
		expect(version.status).toBe(0);
		expect(version.stdout).toMatch(/^etcd-harden \d+\.\d+\.\d+\ncommit: /);
		const demo = run(built, ['demo', '--yes', '--dry-run']);
		expect(demo.cache).toBe('used');
		expect(demo.status, demo.stderr).toBe(0);
		expect(demo.stdout).toContain('Rerun without --dry-run to apply the changes shown');
		reference = {version, demo};
	});

	it('missing: the CLI runs from its source and prints the same', () => {
		const dir = copy();
		rmSync(path.join(dir, 'program.cache'));
		const demo = run(dir, ['demo', '--yes', '--dry-run']);
		expect(demo.cache).toBe('absent');
		expect(demo).toMatchObject({status: 0, stdout: reference.demo.stdout, stderr: reference.demo.stderr});
	});

	it('corrupt (bytes of the data changed, or cut short): never given to V8, the CLI runs and prints the same', () => {
		const flipped = copy();
		const {header, data} = splitCache(flipped);
		for (let offset = 1000; offset < data.length; offset += 997) data[offset] = data[offset]! ^ 0xff;
		writeCache(flipped, header, data);
		const cut = copy();
		writeFileSync(path.join(cut, 'program.cache'), readFileSync(path.join(cut, 'program.cache')).subarray(0, 100_000));
		const garbage = copy();
		writeFileSync(path.join(garbage, 'program.cache'), Buffer.alloc(4096, 7));
		for (const dir of [flipped, cut, garbage]) {
			const demo = run(dir, ['demo', '--yes', '--dry-run']);
			expect(demo.cache).toBe('corrupt');
			expect(demo).toMatchObject({status: 0, stdout: reference.demo.stdout, stderr: reference.demo.stderr});
		}
	});

	it('stale, made for another program of the same length: the program as it is now runs, not the cached code', () => {
		const dir = copy();
		const file = path.join(dir, 'program.js');
		const source = readFileSync(file, 'latin1');
		expect(source).toContain('commit: ');
		// Same length: V8 alone compares only the length of the source with the cache's.
		writeFileSync(file, source.replace('commit: ', 'COMMIT: '), 'latin1');
		const version = run(dir, ['--version']);
		expect(version.cache).toBe('stale');
		expect(version.status).toBe(0);
		expect(version.stdout).toBe(reference.version.stdout.replace('commit: ', 'COMMIT: '));
	});

	it('stale, made by another node: not used, the CLI runs and prints the same', () => {
		const dir = copy();
		const {header, data} = splitCache(dir);
		writeCache(dir, {...header, node: 'v20.0.0'}, data);
		const demo = run(dir, ['demo', '--yes', '--dry-run']);
		expect(demo.cache).toBe('stale');
		expect(demo).toMatchObject({status: 0, stdout: reference.demo.stdout, stderr: reference.demo.stderr});
	});

	it('rejected by V8 (node run with another V8 flag): V8 compiles from source, the CLI runs and prints the same', () => {
		const demo = run(built, ['demo', '--yes', '--dry-run'], ['--stack-size=2000']);
		expect(demo.cache).toBe('rejected');
		expect(demo).toMatchObject({status: 0, stdout: reference.demo.stdout, stderr: reference.demo.stderr});
	});

	it('--help answers with the cache as without it', () => {
		const dir = copy();
		rmSync(path.join(dir, 'program.cache'));
		const [withCache, without] = [run(built, ['--help']), run(dir, ['--help'])];
		expect([withCache.cache, without.cache]).toEqual(['used', 'absent']);
		expect(withCache.stdout).toContain('Usage');
		expect(withCache.stdout).toBe(without.stdout);
	});
});

describe('the program script', () => {
	it('is ASCII (the loader reads it as a one-byte string) and compiles as a script (no import declaration, no import.meta)', () => {
		const source = readFileSync(path.join(built, 'program.js'));
		expect(source.every(byte => byte < 0x80)).toBe(true);
		const script = path.join(scratch, 'program-as-script.cjs');
		writeFileSync(script, source);
		expect(() => execFileSync(process.execPath, ['--check', script], {stdio: 'pipe'})).not.toThrow();
		writeFileSync(script, Buffer.concat([source, Buffer.from('\nimport.meta;\n')]));
		expect(() => execFileSync(process.execPath, ['--check', script], {stdio: 'pipe'})).toThrow();
	});

	it('the process it starts keeps its young generation at its first size (RUNTIME_V8_FLAGS), where plain node grows it', () => {
		// Allocates fast with survivors, as a long re-encryption does, and prints the young generation's size.
		const body = `const v8 = require('node:v8'); let keep = []; for (let i = 0; i < 2e6; i++) { keep.push({i, s: 'x' + i}); if (keep.length > 20000) keep = []; }
			process.stdout.write(String(v8.getHeapSpaceStatistics().find(space => space.space_name === 'new_space').space_size));`;
		const dir = copy();
		rmSync(path.join(dir, 'program.cache'));
		writeFileSync(path.join(dir, 'program.js'), `(async function (require, url) { ${body} })`);
		const loaded = Number(run(dir, []).stdout);
		const plain = Number(execFileSync(process.execPath, ['-e', body], {encoding: 'utf8'}));
		expect(loaded).toBeGreaterThan(0);
		expect(loaded).toBeLessThanOrEqual(2 * 1024 * 1024);
		expect(plain).toBeGreaterThan(4 * 1024 * 1024);
	});
});


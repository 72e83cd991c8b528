#!/usr/bin/env node
// `npm run build:exe`: one self-contained executable for linux-amd64, dist/etcd-harden-linux-amd64,
// and dist/SHA256SUMS beside it. A node on a control-plane node is not needed to run it.
//
// How: a Node single executable application (SEA) - the node binary that runs this script, with
// the program injected by postject (npm) as the NODE_SEA_BLOB resource. The program is dist/'s
// own: dist/program.js (the whole CLI as one script) and dist/program.cache (its V8 code cache),
// both made by `npm run build` with this node, embedded as SEA assets. The small CommonJS main
// (scripts/sea-main.cjs with scripts/program-loader.mjs) compiles the program from memory with
// the cache, as dist/cli.js does from disk: nothing is unpacked, nothing is read from beside the
// executable. Templates, the firewall watchdog and the demo tree are modules (*.generated.ts), so
// they are inside the program.
//
// Why SEA over other packagers (measured and compared in the commit that added this): it embeds the
// very runtime the test suite runs on (no second JavaScript engine to trust), needs only postject
// from npm, and downloads nothing; the packagers that fetch prebuilt runtimes at build time are
// out, as is any runtime whose behaviour the tests do not cover.
import {execFileSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import {existsSync} from 'node:fs';
import {copyFile, chmod, mkdir, readFile, rm, writeFile} from 'node:fs/promises';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {build} from 'esbuild';
import {inject} from 'postject';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NAME = 'etcd-harden-linux-amd64';
const SENTINEL = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

if (process.platform !== 'linux' || process.arch !== 'x64') {
	console.error(`build:exe: builds ${NAME} with the running node, so it must run on linux x64 (this is ${process.platform}-${process.arch})`);
	process.exit(1);
}
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 12)) {
	console.error(`build:exe: needs Node.js >= 20.12 (SEA assets); this is ${process.version}`);
	process.exit(1);
}

const work = path.join(repo, 'dist', 'sea');
const output = path.join(repo, 'dist', NAME);
await rm(work, {recursive: true, force: true});
await mkdir(work, {recursive: true});
const started = performance.now();

// `npm run build` (run by build:exe first) made both with this node; the cache only saves time.
const program = {'program.js': path.join(repo, 'dist', 'program.js')};
if (!existsSync(program['program.js'])) {
	console.error('build:exe: dist/program.js is missing: run npm run build first (npm run build:exe does)');
	process.exit(1);
}
if (existsSync(path.join(repo, 'dist', 'program.cache'))) program['program.cache'] = path.join(repo, 'dist', 'program.cache');
else console.warn('warning: dist/program.cache is missing (npm run build said why): the executable will start slower');
await build({
	bundle: true,
	platform: 'node',
	format: 'cjs',
	target: 'node20',
	absWorkingDir: repo,
	entryPoints: ['scripts/sea-main.cjs'],
	outfile: path.join(work, 'main.cjs'),
	legalComments: 'none',
	logLevel: 'warning',
});
await writeFile(
	path.join(work, 'sea-config.json'),
	JSON.stringify(
		{
			main: path.join(work, 'main.cjs'),
			output: path.join(work, 'sea-prep.blob'),
			disableExperimentalSEAWarning: true,
			// The main is a few lines; the program has its own cache (above).
			useCodeCache: false,
			assets: program,
		},
		null,
		'\t',
	),
);
execFileSync(process.execPath, ['--experimental-sea-config', path.join(work, 'sea-config.json')], {stdio: ['ignore', 'ignore', 'inherit']});

// The runtime: this node, without its debug symbols (strip, Debian's binutils) - about half the size.
const exe = path.join(work, NAME);
await copyFile(process.execPath, exe);
await chmod(exe, 0o755);
execFileSync('strip', ['--strip-all', exe]);
await inject(exe, 'NODE_SEA_BLOB', await readFile(path.join(work, 'sea-prep.blob')), {sentinelFuse: SENTINEL});
await rm(output, {force: true});
await copyFile(exe, output);
await chmod(output, 0o755);
const digest = createHash('sha256').update(await readFile(output)).digest('hex');
await writeFile(path.join(repo, 'dist', 'SHA256SUMS'), `${digest}  ${NAME}\n`);
await rm(work, {recursive: true, force: true});
const {size} = await import('node:fs').then(fs => fs.statSync(output));
console.log(`${path.relative(repo, output)}: ${(size / 1e6).toFixed(1)} MB, sha256 ${digest} (${((performance.now() - started) / 1000).toFixed(1)} s)`);

#!/usr/bin/env node
// `npm run build:exe`: one self-contained executable for linux-amd64, dist/etcd-harden-linux-amd64,
// and dist/SHA256SUMS beside it. A node on a control-plane node is not needed to run it.
//
// How: a Node single executable application (SEA) - the node binary that runs this script, with
// the program injected by postject (npm) as the NODE_SEA_BLOB resource. Node 20's SEA main script
// must be CommonJS, and Ink and yoga-layout use top-level await, which CommonJS cannot express. So
// the CLI is bundled as ES modules split at its dynamic imports, exactly like dist/ (--help loads
// no Ink), and embedded as SEA assets; the small CommonJS main unpacks them once per build into a
// private directory named by their sha256 (root: /var/lib/etcd-harden/exe-<sha>; others: a 0700
// directory of their own under the temp directory), checks the digest on every start, and imports
// the entry through vm's main-context loader (vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER, Node
// >= 20.12). Measured first: importing the program from a data: URL instead (nothing on disk) cost
// about 1 s more per start on this machine, since every import in it resolves against a
// multi-megabyte base URL. Templates, the firewall watchdog and the demo tree are modules
// (*.generated.ts), so they are inside the program.
//
// Why SEA over other packagers (measured and compared in the commit that added this): it embeds the
// very runtime the test suite runs on (no second JavaScript engine to trust), needs only postject
// from npm, and downloads nothing; the packagers that fetch prebuilt runtimes at build time are
// out, as is any runtime whose behaviour the tests do not cover.
import {execFileSync} from 'node:child_process';
import {createHash} from 'node:crypto';
import {copyFile, chmod, mkdir, readdir, readFile, rm, writeFile} from 'node:fs/promises';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {build} from 'esbuild';
import {inject} from 'postject';
import {buildInfo} from './build-info.mjs';
import {programBundle, stringWidthEmojiGuard, yogaWithoutFetch} from './esbuild-plugins.mjs';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NAME = 'etcd-harden-linux-amd64';
const SENTINEL = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

if (process.platform !== 'linux' || process.arch !== 'x64') {
	console.error(`build:exe: builds ${NAME} with the running node, so it must run on linux x64 (this is ${process.platform}-${process.arch})`);
	process.exit(1);
}
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 12)) {
	console.error(`build:exe: needs Node.js >= 20.12 (SEA assets and vm's main-context loader); this is ${process.version}`);
	process.exit(1);
}

const work = path.join(repo, 'dist', 'sea');
const output = path.join(repo, 'dist', NAME);
await rm(work, {recursive: true, force: true});
await mkdir(work, {recursive: true});
const started = performance.now();

const app = path.join(work, 'app');
await build({
	...programBundle,
	absWorkingDir: repo,
	entryPoints: {cli: 'cli.tsx'},
	outdir: app,
	chunkNames: 'chunks/[name]-[hash]',
	// .mjs: the unpacked directory has no package.json saying "type": "module".
	outExtension: {'.js': '.mjs'},
	splitting: true,
	// Ink loads its devtools only when DEV=true; they are not a dependency, and nothing beside the
	// program can be imported, so the executable says so instead.
	plugins: [
		yogaWithoutFetch,
		stringWidthEmojiGuard,
		{
			name: 'no-devtools',
			setup(build) {
				build.onResolve({filter: /^react-devtools-core$/}, () => ({path: 'react-devtools-core', namespace: 'no-devtools'}));
				build.onLoad({filter: /.*/, namespace: 'no-devtools'}, () => ({
					contents: "throw new Error('React devtools are not part of the etcd-harden executable (unset DEV)');",
					loader: 'js',
				}));
			},
		},
	],
	define: {'process.env.NODE_ENV': '"production"', ETCD_HARDEN_BUILD: JSON.stringify(buildInfo(repo))},
});

// The program's files, in a fixed order, and one digest over names and contents.
const files = [];
for (const entry of await readdir(app, {recursive: true, withFileTypes: true})) {
	if (entry.isFile()) files.push(path.relative(app, path.join(entry.parentPath ?? entry.path, entry.name)).split(path.sep).join('/'));
}
files.sort();
const programHash = createHash('sha256');
for (const file of files) programHash.update(file).update('\0').update(await readFile(path.join(app, file))).update('\0');
const manifest = {sha256: programHash.digest('hex'), entry: 'cli.mjs', files};
await writeFile(path.join(work, 'program.json'), JSON.stringify(manifest));

await writeFile(path.join(work, 'main.cjs'), await readFile(path.join(repo, 'scripts', 'sea-main.cjs')));
await writeFile(
	path.join(work, 'sea-config.json'),
	JSON.stringify(
		{
			main: path.join(work, 'main.cjs'),
			output: path.join(work, 'sea-prep.blob'),
			disableExperimentalSEAWarning: true,
			useCodeCache: false,
			assets: {'program.json': path.join(work, 'program.json'), ...Object.fromEntries(files.map(file => [`program/${file}`, path.join(app, file)]))},
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

// Build the runnable CLI into a directory (dist/ for `npm run build`; tests use a temporary one):
//   program.js     the whole CLI as one script (scripts/esbuild-plugins.mjs, buildProgramScript)
//   program.cache  its V8 code cache, made by running the wizard to its first frame
//                  (scripts/code-cache.mjs); checked and used by the loader, never required
//   cli.js         the loader (scripts/cli-entry.cjs with scripts/program-loader.mjs), CommonJS,
//                  with package.json saying so
import {mkdir, rm, writeFile} from 'node:fs/promises';
import path from 'node:path';
import {build} from 'esbuild';
import {buildInfo} from './build-info.mjs';
import {trainCodeCache} from './code-cache.mjs';
import {buildProgramScript} from './esbuild-plugins.mjs';

export async function buildProgram({repo, outDir}) {
	await mkdir(outDir, {recursive: true});
	await rm(path.join(outDir, 'program.cache'), {force: true});
	const program = await buildProgramScript({repo, define: {'process.env.NODE_ENV': '"production"', ETCD_HARDEN_BUILD: JSON.stringify(buildInfo(repo))}});
	await writeFile(path.join(outDir, 'program.js'), program);
	await build({
		bundle: true,
		platform: 'node',
		format: 'cjs',
		target: 'node20',
		legalComments: 'none',
		minifyWhitespace: true,
		logLevel: 'warning',
		absWorkingDir: repo,
		entryPoints: ['scripts/cli-entry.cjs'],
		outfile: path.join(outDir, 'cli.js'),
	});
	// cli.js is CommonJS; nothing else in the directory is loaded by node (tsc's dist/source/ is
	// only type-checking output).
	await writeFile(path.join(outDir, 'package.json'), `${JSON.stringify({type: 'commonjs'})}\n`);
	try {
		await trainCodeCache([process.execPath, path.join(outDir, 'cli.js')], path.join(outDir, 'program.cache'));
	} catch (error) {
		// The cache only saves time: the CLI runs without it (test/unit/code-cache.test.ts fails
		// when a build makes none, so this does not pass unnoticed).
		await rm(path.join(outDir, 'program.cache'), {force: true});
		console.warn(`warning: no code cache, the CLI will start slower: ${error instanceof Error ? error.message : error}`);
	}
}

// Build time: make the V8 code cache of the program script (scripts/program-loader.mjs) by running
// the CLI as an operator's first look does - the wizard of `etcd-harden demo --dry-run` in a
// real terminal (script(1) gives it a pty), up to its first frame, then ctrl-c - with
// ETCD_HARDEN_CODE_CACHE_OUT set, so the loader writes the cache of every function that ran when
// the process exits. The demo works on its own temporary copy, made here in a directory that is
// removed afterwards; --dry-run changes nothing even there.
import {spawn} from 'node:child_process';
import {existsSync, mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import path from 'node:path';

const FIRST_FRAME = 'Encryption config';

/** Run `command` (argv: the CLI, e.g. [node, dist/cli.js]) through its first frame; the cache lands in `cacheFile`. */
export async function trainCodeCache(command, cacheFile) {
	const scratch = mkdtempSync(path.join(tmpdir(), 'etcd-harden-code-cache-'));
	rmSync(cacheFile, {force: true});
	try {
		const env = {...process.env, TERM: 'xterm-256color', TMPDIR: scratch, ETCD_HARDEN_CODE_CACHE_OUT: cacheFile};
		// A CI variable would pick the plain frontend; the cache is for the wizard.
		delete env.CI;
		delete env.CONTINUOUS_INTEGRATION;
		const quoted = [...command, 'demo', '--dry-run'].map(word => `'${word.replaceAll("'", "'\\''")}'`).join(' ');
		const child = spawn('script', ['-qfec', `stty cols 120 rows 40; exec ${quoted}`, '/dev/null'], {stdio: ['pipe', 'pipe', 'pipe'], env});
		let seen = '';
		let framed = false;
		const outcome = new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				child.kill('SIGKILL');
				reject(new Error(`no first frame within 60 s:\n${seen.slice(-2000)}`));
			}, 60_000);
			const onData = chunk => {
				seen += chunk.toString().replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '');
				if (!framed && seen.includes(FIRST_FRAME)) {
					framed = true;
					child.stdin.write('\x03'); // ctrl-c: the wizard stops as an operator's would
				}
			};
			child.stdout.on('data', onData);
			child.stderr.on('data', onData);
			child.on('error', error => {
				clearTimeout(timer);
				reject(error.code === 'ENOENT' ? new Error('script(1) (util-linux) is needed to run the wizard in a terminal') : error);
			});
			child.on('exit', () => {
				clearTimeout(timer);
				if (!framed) reject(new Error(`the wizard exited before its first frame:\n${seen.slice(-2000)}`));
				else resolve();
			});
		});
		await outcome;
		if (!existsSync(cacheFile)) throw new Error(`the run wrote no code cache:\n${seen.slice(-2000)}`);
	} finally {
		rmSync(scratch, {recursive: true, force: true});
	}
}

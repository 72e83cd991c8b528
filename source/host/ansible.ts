/**
 * Ansible, as a side effect: `ansible-playbook` (and its --list-hosts) run with execa, the
 * callback's JSON lines handed over one by one as they come, and the play directory written
 * to a private temporary directory. The only place etcd-harden fleet touches the workstation.
 */
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export type PlayFile = {path: string; content: string; mode: number};

/** Write the files under `dir` (created 0700 when missing); returns the directory. */
export async function writePlayDir(dir: string | undefined, files: readonly PlayFile[]): Promise<string> {
	const target = dir ?? (await mkdtemp(path.join(os.tmpdir(), 'etcd-harden-fleet-')));
	await mkdir(target, {recursive: true, mode: 0o700});
	for (const file of files) {
		const full = path.join(target, file.path);
		await mkdir(path.dirname(full), {recursive: true, mode: 0o700});
		await writeFile(full, file.content, {mode: file.mode});
	}
	return target;
}

export async function removePlayDir(dir: string): Promise<void> {
	await rm(dir, {recursive: true, force: true});
}

export type AnsibleRun = {exitCode: number; stdout: string; stderr: string; notFound?: boolean};

/**
 * Run an Ansible command in `cwd` with ANSIBLE_CONFIG set to the play's ansible.cfg. Each
 * stdout line goes to `onLine` as it arrives; stderr is kept (its tail names what failed).
 */
export async function runAnsible(
	argv: readonly string[],
	options: {cwd: string; env?: Record<string, string>; onLine?: (line: string) => void; signal?: AbortSignal},
): Promise<AnsibleRun> {
	const [file, ...args] = argv;
	// Loaded here, not with the module: main imports this module (fleet) for every command, and
	// execa's module start-up cost the wizard ~15 ms before its first frame (node --cpu-prof).
	const {execa} = await import('execa');
	const child = execa(file!, args, {
		cwd: options.cwd,
		env: {ANSIBLE_CONFIG: path.join(options.cwd, 'ansible.cfg'), ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0', ...options.env},
		reject: false,
		stdin: 'ignore',
		cancelSignal: options.signal,
		forceKillAfterDelay: 10_000,
		buffer: {stdout: true, stderr: true},
	});
	const lines: string[] = [];
	if (options.onLine) {
		for await (const line of child.iterable({from: 'stdout'})) {
			lines.push(String(line));
			options.onLine(String(line));
		}
	}
	const result = await child;
	const notFound = (result as {code?: string}).code === 'ENOENT' || /ENOENT/.test(String(result.message ?? '')) && result.exitCode === undefined;
	return {
		exitCode: result.exitCode ?? 1,
		stdout: options.onLine ? lines.join('\n') : String(result.stdout ?? ''),
		stderr: String(result.stderr ?? ''),
		...(notFound ? {notFound: true} : {}),
	};
}

// Shared by the rotate and disable e2e tests: the built CLI in the testbed, raw etcd counts,
// the config's key names, a reader loop through the API, and waiting on the run journal.
import {readdir, readFile} from 'node:fs/promises';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {parse as parseYaml} from 'yaml';
import {storedValueCounts, type Testbed} from '../testbed/index.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = path.join(REPO, 'dist', 'cli.js');
export const CONFIG = '/etc/kubernetes/enc/encryption-config.yaml';
export const ENABLE = [
	'--yes',
	'--plain',
	'--only',
	'encryption-config,apiserver-manifest,reencrypt',
	'--set',
	'encryption-config.recovery=stored-elsewhere',
	'--set',
	'encryption-config.storedElsewhere=true',
];
/** rotate, non-interactive, no bundle (single control plane; the config is "stored elsewhere"). */
export const ROTATE = ['rotate', '--yes', '--plain', '--set', 'rotate-prepare.bundle=stored-elsewhere', '--set', 'rotate-prepare.storedElsewhere=true'];
/**
 * For runs no API client reads through (no reader loop): compact at once. The default grace
 * (30 s, so LISTs in flight finish) is kept wherever a reader loop checks zero read errors.
 */
export const NO_GRACE = ['--compaction-grace', '0'];

export type Run = {exitCode: number; stdout: string; stderr: string};

export async function cli(tb: Testbed, args: string[]): Promise<Run> {
	const result = await tb.exec([process.execPath, CLI, ...args], {reject: false, stdin: 'ignore', env: {CI: 'true'}});
	return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

export function show(run: Run): string {
	return `exit ${run.exitCode}\n--- stdout ---\n${run.stdout.slice(-3000)}\n--- stderr ---\n${run.stderr.slice(-5000)}`;
}

/** Raw etcd values of every secret, classified by stored prefix: `secretbox:key2`, `plaintext`. */
export const secretCounts = (tb: Testbed): Promise<Record<string, number>> => storedValueCounts(tb);

/** The config's providers for secrets, as `secretbox:key2` / `identity`, in order. */
export async function configProviders(tb: Testbed, file = CONFIG): Promise<string[]> {
	const config = parseYaml(await tb.readFile(file, 'utf8')) as {resources: Array<{providers: Array<Record<string, {keys?: Array<{name: string}>}>>}>};
	return config.resources[0]!.providers.flatMap(provider => {
		const [type, body] = Object.entries(provider)[0]!;
		return body?.keys ? body.keys.map(key => `${type}:${key.name}`) : [type];
	});
}

/**
 * Reads every secret through the API (a full list decrypts each one) until stopped. A read
 * that the API answers with an error is a read error; an apiserver that is restarting
 * (connection refused) is counted apart as unavailable.
 */
export function startReader(tb: Testbed, expected: number) {
	const state = {reads: 0, errors: [] as string[], unavailable: 0, stopped: false, marks: [] as Array<{label: string; reads: number}>};
	const loop = (async () => {
		while (!state.stopped && state.reads + state.errors.length + state.unavailable < 100_000) {
			const result = await tb.kubectl(['get', 'secrets', '-A', '-o', 'jsonpath={range .items[*]}{.metadata.name}{"\\n"}{end}', '--request-timeout=20s'], {
				reject: false,
				stdin: 'ignore',
				maxBuffer: 256 * 1024 * 1024,
			});
			if (result.exitCode === 0) {
				const count = String(result.stdout).split('\n').filter(Boolean).length;
				if (count >= expected) state.reads++;
				else state.errors.push(`listed ${count} secrets, expected at least ${expected}`);
			} else if (/connection refused|was refused|EOF|connection reset|Unable to connect|i\/o timeout|TLS handshake|ServiceUnavailable|currently unable|not ready|Client.Timeout/i.test(String(result.stderr))) {
				state.unavailable++;
				await new Promise(resolve => setTimeout(resolve, 200));
			} else {
				state.errors.push(String(result.stderr).trim().split('\n')[0] ?? `exit ${result.exitCode}`);
			}
		}
	})();
	return {
		state,
		mark(label: string) {
			state.marks.push({label, reads: state.reads});
		},
		async stop() {
			state.stopped = true;
			await loop;
			return state;
		},
	};
}

/** Journal events of every run so far (oldest run first). */
export async function journalEvents(tb: Testbed): Promise<Array<{stage: string; event: string; path?: string}>> {
	const dir = tb.hostPath('/var/lib/etcd-harden/runs');
	const runs = (await readdir(dir).catch(() => [] as string[])).sort();
	const events: Array<{stage: string; event: string; path?: string}> = [];
	for (const run of runs) {
		const text = await readFile(path.join(dir, run, 'journal.jsonl'), 'utf8').catch(() => '');
		for (const line of text.split('\n')) if (line.trim()) events.push(JSON.parse(line) as {stage: string; event: string});
	}
	return events;
}

export const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

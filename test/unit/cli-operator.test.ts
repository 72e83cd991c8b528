// Small things an operator meets first (issue 14, items 12 and 14), in process: an unknown
// flag names the closest one, demo --help is the demo's, a refused demo leaves no copy, status
// --failed shows only problems, NO_COLOR and a non-TTY get no colour, status is coloured on a TTY.
import * as fs from 'node:fs/promises';
import {PassThrough} from 'node:stream';
import {afterEach, describe, expect, test} from 'vitest';
import {main} from '../../source/cli/main.js';
import {cleanup, demoCopy} from './cli-harness.js';
import {unknownFlagMessage} from '../../source/cli/args.js';

afterEach(cleanup);

async function run(argv: string[], options: {tty?: boolean; env?: Record<string, string | undefined>} = {}) {
	const stdout = Object.assign(new PassThrough(), {isTTY: options.tty ?? false});
	const stderr = new PassThrough();
	let out = '';
	let err = '';
	stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
	stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
	const saved = {...process.env};
	Object.assign(process.env, options.env ?? {});
	for (const [key, value] of Object.entries(options.env ?? {})) if (value === undefined) delete process.env[key];
	try {
		const code = await main(argv, {
			stdin: new PassThrough() as unknown as NodeJS.ReadStream,
			stdout: stdout as unknown as NodeJS.WriteStream,
			stderr: stderr as unknown as NodeJS.WriteStream,
			isRoot: true,
			handleSignals: false,
		});
		return {code, stdout: out, stderr: err};
	} finally {
		process.env = saved;
	}
}


describe('first contact', () => {
	test('an unknown flag is named, with the closest valid one when there is one', async () => {
		expect(unknownFlagMessage("Unknown option '--dry-rn'. To specify a positional argument")).toBe('unknown flag --dry-rn: did you mean --dry-run? See etcd-harden --help.');
		expect(unknownFlagMessage("Unknown option '--bogus'.")).toBe('unknown flag --bogus. See etcd-harden --help.');
		const result = await run(['--forse']);
		expect(result.code).toBe(2);
		expect(result.stderr).toBe('etcd-harden: unknown flag --forse: did you mean --force? See etcd-harden --help.\n');
	});

	test('demo --help is the demo\'s own help', async () => {
		const result = await run(['demo', '--help']);
		expect(result.code).toBe(0);
		expect(result.stdout).toMatch(/^etcd-harden demo: the wizard on a temporary copy/);
		expect(result.stdout).toContain('scripts/make-demo-pki.sh');
	});

	test('a demo refused before its wizard starts removes its copy', async () => {
		// stdin is not a terminal and there is no --yes: refused after the copy was made.
		const result = await run(['demo']);
		expect(result.code).toBe(2);
		const copy = /copied to (\S+);/.exec(result.stderr)?.[1];
		expect(copy).toBeDefined();
		expect(result.stderr).toContain(`the copy at ${copy} was removed`);
		await expect(fs.stat(copy!)).rejects.toThrow();
	});
});

describe('status output', () => {
	test('--failed shows only FAIL and WARN findings, the counts still cover all', async () => {
		const root = await demoCopy();
		const all = await run(['status', '--root', root]);
		const failed = await run(['status', '--root', root, '--failed']);
		expect(all.stdout).toContain('PASS');
		expect(failed.stdout).not.toContain('PASS');
		expect(failed.stdout).toContain('FAIL');
		const counts = (text: string) => text.trim().split('\n').at(-1);
		expect(counts(failed.stdout)).toBe(counts(all.stdout));
	});

	test('colour on a TTY, none with NO_COLOR or without a TTY', async () => {
		const root = await demoCopy();
		// eslint-disable-next-line no-control-regex
		const ansi = /\u001B\[\d+m/;
		expect((await run(['status', '--root', root], {tty: true, env: {NO_COLOR: undefined}})).stdout).toMatch(ansi);
		expect((await run(['status', '--root', root], {tty: true, env: {NO_COLOR: '1'}})).stdout).not.toMatch(ansi);
		expect((await run(['status', '--root', root], {tty: false, env: {NO_COLOR: undefined}})).stdout).not.toMatch(ansi);
	});

	test('the run\'s --json has the receipt\'s fields and one casing of check status', async () => {
		const root = await demoCopy();
		const result = await run(['--root', root, '--yes', '--json', '--set', 'encryption-config.recovery=stored-elsewhere']);
		expect(result.code).toBe(0);
		const data = JSON.parse(result.stdout) as Record<string, unknown> & {stages: Array<{checks: Array<{status: string}>}>; files: Array<{onDisk: string; backupOnDisk?: string}>};
		expect(data['runId']).toMatch(/^\d{4}-\d\d-\d\dT\d{6}Z$/);
		expect(data['runDirOnDisk']).toBe(`${root}/var/lib/etcd-harden/runs/${String(data['runId'])}`);
		expect(data['undo']).toBe(`etcd-harden undo ${String(data['runId'])} --root ${root}`);
		expect(data.files.some(file => file.backupOnDisk?.startsWith(`${root}/var/lib/etcd-harden/runs/`))).toBe(true);
		expect((data['skipped'] as Array<{stage: string; reason: string}>).map(s => `${s.stage}:${s.reason}`)).toEqual(['safety-backup:left-out', 'reencrypt:left-out', 'purge-history:left-out', 'etcd-auth:left-out', 'firewall:left-out']);
		const statuses = new Set(data.stages.flatMap(stage => stage.checks.map(check => check.status)));
		expect([...statuses].every(status => ['PASS', 'FAIL', 'WARN'].includes(status))).toBe(true);
		expect(statuses.size).toBeGreaterThan(0);
	});
});

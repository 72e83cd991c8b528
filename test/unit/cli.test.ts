// The command line, in process: main() over a temporary copy of demo/ with --root, with
// captured stdout/stderr. Every bad input must name the file (or flag) and the fix, exit 2,
// and leave the tree unchanged byte for byte.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {afterEach, describe, expect, test} from 'vitest';
import {cleanup, configFile, demoCopy, expectRefused, manifest, recovery, repo, run, snapshot, tempDir, validConfig} from './cli-harness.js';

afterEach(cleanup);

/** Point the demo apiserver at an existing config with this content. */
async function withExistingConfig(root: string, content: string | 'directory'): Promise<void> {
	const file = path.join(root, configFile);
	await fs.mkdir(path.dirname(file), {recursive: true});
	if (content === 'directory') await fs.mkdir(file);
	else await fs.writeFile(file, content, {mode: 0o600});
	const text = await fs.readFile(path.join(root, manifest), 'utf8');
	await fs.writeFile(
		path.join(root, manifest),
		text.replace('    - --allow-privileged=true\n', `    - --allow-privileged=true\n    - --encryption-provider-config=/${configFile}\n`),
	);
}


describe('bad input: exit 2, a message naming the problem and the fix, the tree unchanged', () => {
	test('malformed YAML in the apiserver manifest', async () => {
		const root = await demoCopy();
		await fs.appendFile(path.join(root, manifest), '  bad: [unclosed\n');
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /kube-apiserver\.yaml.*(YAML|yaml)/);
	});

	test('a manifest without the kube-apiserver container', async () => {
		const root = await demoCopy();
		const text = await fs.readFile(path.join(root, manifest), 'utf8');
		await fs.writeFile(path.join(root, manifest), text.replace('    name: kube-apiserver\n', '    name: something-else\n'));
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /kube-apiserver\.yaml.*no container named kube-apiserver/);
	});

	test('an existing encryption config that is not valid YAML', async () => {
		const root = await demoCopy();
		await withExistingConfig(root, 'kind: EncryptionConfiguration\nresources: [\n');
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /encryption-config\.yaml: not valid YAML/);
	});

	test('an existing encryption config that cannot be read (a directory)', async () => {
		const root = await demoCopy();
		await withExistingConfig(root, 'directory');
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /encryption-config\.yaml/);
	});

	test('a key of the wrong length, without printing the key', async () => {
		const root = await demoCopy();
		const short = Buffer.from('only-sixteen-byt').toString('base64');
		await withExistingConfig(root, validConfig(short));
		const result = await expectRefused(root, ['--root', root, '--yes', ...recovery], /key1.*16 bytes.*32/s);
		expect(result.stderr + result.stdout).not.toContain(short);
	});

	test('a key that is not base64', async () => {
		const root = await demoCopy();
		await withExistingConfig(root, validConfig('not*base64!'));
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /base64/);
	});

	test('empty providers', async () => {
		const root = await demoCopy();
		await withExistingConfig(root, 'apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers: []\n');
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /providers/);
	});

	test('an unknown stage name', async () => {
		const root = await demoCopy();
		await expectRefused(root, ['--root', root, '--yes', '--only', 'encryption-confg'], /unknown stage "encryption-confg": known stages are safety-backup, encryption-config, apiserver-manifest, reencrypt, purge-history/);
	});

	test('not root and no --root', async () => {
		const root = await demoCopy();
		await expectRefused(root, ['--yes'], /run it as root .*or pass --root DIR/, {isRoot: false});
	});

	test('no terminal and no --yes', async () => {
		const root = await demoCopy();
		await expectRefused(root, ['--root', root], /not a terminal.*pass --yes/);
	});

	test('a missing answer in a non-interactive run is named', async () => {
		const root = await demoCopy();
		await expectRefused(root, ['--root', root, '--yes'], /missing answer "encryption-config\.recovery"/);
	});

	test('an answers file that is not YAML, and an unknown answer', async () => {
		const root = await demoCopy();
		const answers = path.join(await tempDir(), 'answers.yaml');
		await fs.writeFile(answers, 'encryption-config: [\n');
		await expectRefused(root, ['--root', root, '--yes', '--answers', answers], /answers\.yaml is not valid YAML/);
		await fs.writeFile(answers, 'encryption-config:\n  provder: secretbox\n');
		await expectRefused(root, ['--root', root, '--yes', '--answers', answers], /unknown answer "encryption-config\.provder"/);
	});

	test('an unknown command and a malformed --set', async () => {
		const root = await demoCopy();
		await expectRefused(root, ['hardn', '--root', root], /unknown command "hardn"/);
		await expectRefused(root, ['--root', root, '--yes', '--set', 'provider=secretbox'], /is not STAGE\.QUESTION=VALUE/);
	});
});

describe('non-interactive run', () => {
	test('--yes --answers writes the config 0600 and patches the manifest; no key in any output, journal or backup', async () => {
		const root = await demoCopy();
		const answers = path.join(root, 'answers.yaml');
		await fs.writeFile(answers, 'encryption-config:\n  provider: secretbox\n  resources: [secrets, configmaps]\n  recovery: stored-elsewhere\n  storedElsewhere: true\n');
		const result = await run(['--root', root, '--yes', '--answers', answers]);
		expect(result.stderr).not.toContain('etcd-harden:');
		expect(result.code).toBe(0);
		expect(result.stdout).toContain('Encryption config: applied and verified.');
		const config = await fs.readFile(path.join(root, configFile), 'utf8');
		expect((await fs.stat(path.join(root, configFile))).mode & 0o777).toBe(0o600);
		expect(config).toContain('- configmaps');
		expect(await fs.readFile(path.join(root, manifest), 'utf8')).toContain(`--encryption-provider-config=/${configFile}`);

		const secret = /secret: "?([A-Za-z0-9+/=]+)"?/.exec(config)![1]!;
		const forms = [secret, Buffer.from(secret, 'base64').toString('hex'), Buffer.from(secret, 'base64').toString('base64url')];
		const stateFiles: string[] = [];
		async function collect(directory: string): Promise<void> {
			for (const entry of await fs.readdir(directory, {withFileTypes: true})) {
				const full = path.join(directory, entry.name);
				if (entry.isDirectory()) await collect(full);
				else stateFiles.push(full);
			}
		}
		await collect(path.join(root, 'var/lib/etcd-harden'));
		expect(stateFiles.some(file => file.endsWith('journal.jsonl'))).toBe(true);
		expect(stateFiles.some(file => file.includes('/backup/'))).toBe(true);
		const written = [result.stdout, result.stderr, ...(await Promise.all(stateFiles.map(file => fs.readFile(file, 'latin1'))))].join('\n');
		for (const form of forms) expect(written).not.toContain(form);

		// A second run with the same answers changes nothing: no new key, no file rewritten.
		const before = await snapshot(path.join(root, 'etc'));
		const again = await run(['--root', root, '--yes', '--answers', answers]);
		expect(again.code).toBe(0);
		expect(again.stdout).toContain('already in place');
		expect(await snapshot(path.join(root, 'etc'))).toEqual(before);
	});

	test('--dry-run --json prints the plan on stdout and writes nothing', async () => {
		const root = await demoCopy();
		const before = await snapshot(root);
		const result = await run(['--root', root, '--yes', '--dry-run', '--json', ...recovery]);
		expect(result.code).toBe(0);
		const data = JSON.parse(result.stdout) as {dryRun: boolean; summary: string[]; stages: Array<{id: string; phase: string; changes: Array<{body: string}>}>};
		expect(data.dryRun).toBe(true);
		expect(data.stages.map(stage => [stage.id, stage.phase])).toEqual([
			// These need the live control plane; with --root they are left out, not "unchanged".
			['safety-backup', 'skipped'],
			['encryption-config', 'previewed'],
			['apiserver-manifest', 'previewed'],
			['reencrypt', 'skipped'],
			['purge-history', 'skipped'],
			['etcd-tls', 'unchanged'],
			['etcd-auth', 'skipped'],
			['firewall', 'skipped'],
		]);
		expect(data.summary.join('\n')).toContain('Re-encrypt existing objects: left out: no running control plane was probed');
		expect(data.stages.find(stage => stage.id === 'encryption-config')!.changes[0]!.body).toContain('secret: <redacted>');
		expect(await snapshot(root)).toEqual(before);
	});

	test('status: exit 1 with the fix on an unhardened tree, --json for monitoring', async () => {
		const root = await demoCopy();
		const text = await run(['status', '--root', root]);
		expect(text.code).toBe(1);
		expect(text.stdout).toMatch(/FAIL\s+encryption-enabled/);
		expect(text.stdout).toContain('fix: ');
		const json = await run(['status', '--root', root, '--json']);
		expect(json.code).toBe(1);
		const rows = JSON.parse(json.stdout) as Array<{stage: string; id: string; status: string; remediation?: string}>;
		expect(rows.find(row => row.id === 'encryption-enabled')).toMatchObject({stage: 'encryption-config', status: 'FAIL'});
	});

	test('root-password prints etcd\'s root password only when asked, and names the stage when there is none', async () => {
		const root = await demoCopy();
		await expectRefused(root, ['root-password', '--root', root], /etcd-root-password does not exist: .*--only etcd-auth/);
		await fs.mkdir(path.join(root, 'var/lib/etcd-harden'), {recursive: true});
		await fs.writeFile(path.join(root, 'var/lib/etcd-harden/etcd-root-password'), 'generated-password-for-test\n', {mode: 0o600});
		const shown = await run(['root-password', '--root', root]);
		expect(shown.code).toBe(0);
		expect(shown.stdout).toBe('generated-password-for-test\n');
		expect(shown.stderr).toBe('');
	});

	test('--help and --version', async () => {
		const help = await run(['--help']);
		expect(help.code).toBe(0);
		for (const flag of ['--dry-run', '--root', '--yes', '--answers', '--set', '--plain', '--only', '--skip', '--json', '--version']) {
			expect(help.stdout).toContain(flag);
		}
		const version = await run(['--version']);
		const pkg = JSON.parse(await fs.readFile(path.join(repo, 'package.json'), 'utf8')) as {version: string};
		const [name, commit, runtime] = version.stdout.trimEnd().split('\n');
		expect(name).toBe(`etcd-harden ${pkg.version}`);
		expect(commit).toBe('commit: unknown (running from the sources)');
		expect(runtime).toBe(`runtime: Node.js ${process.version} at ${process.execPath}`);
	});
});

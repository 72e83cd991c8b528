// Issue 13: hostile input never destroys a file, leaks a key or shows a stack trace. One
// describe per class of the issue, each over real files in a temporary copy of demo/ (--root)
// or, where the logic is pure, on the function itself.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {afterEach, describe, expect, test} from 'vitest';
import {parseCli, parseAnswersFile} from '../../source/cli/args.js';
import {coerceAnswer, checkAnswer, createEngine} from '../../source/engine/engine.js';
import {InputError, RUNS_DIR, type Question} from '../../source/engine/contract.js';
import {acquireLock, RunDir} from '../../source/engine/run-dir.js';
import {redactFile, decodesToKey} from '../../source/engine/preview.js';
import {RealHost} from '../../source/host/real.js';
import {decrypt, generateIdentity} from '../../source/crypto/age.js';
import {parseFlags, patchManifest, inspectManifest, type ManifestPatch} from '../../source/kube/manifest.js';
import {parseKubeconfig} from '../../source/kube/kubeconfig.js';
import {hardenWorkflow} from '../../source/workflow/harden.js';
import {tasks} from '../../source/workflow/tasks.js';
import {
	allText,
	cleanup,
	configFile,
	demoCopy,
	etcdManifest,
	expectNoTrace,
	expectRefused,
	manifest,
	pointApiserverAt,
	recovery,
	run,
	snapshot,
	tempDir,
	validConfig,
} from './cli-harness.js';

afterEach(cleanup);

const key = 'q1Tx8mJv0bZrVw3k9Pq+/eY2sD5fG7hJ1kL4mN6pQ8A=';
const withoutRoot = (argv: string[]) => argv; // readability: flags checked before any tree is read

describe('1. an unrelated file at the config path is never overwritten', () => {
	for (const [what, target] of [
		['the cluster CA', '/etc/kubernetes/pki/ca.crt'],
		['a kubeconfig', '/etc/kubernetes/admin.conf'],
	] as const) {
		test(`${what}: exit 2 naming it, the tree unchanged`, async () => {
			const root = await demoCopy();
			await expectRefused(root, ['--root', root, '--yes', '--set', `encryption-config.path=${target}`, ...recovery], new RegExp(`${target.replaceAll('.', '\\.')} already exists and is not an EncryptionConfiguration`));
		});
	}

	test('another EncryptionConfiguration the apiserver does not use is merged into: its key and comments stay, a new key is added', async () => {
		const root = await demoCopy();
		await fs.mkdir(path.join(root, 'etc/kubernetes/enc'), {recursive: true});
		const other = path.join(root, 'etc/kubernetes/enc/other.yaml');
		await fs.writeFile(other, `# kept by the operator\n${validConfig(key).replace('secretbox', 'aescbc')}`, {mode: 0o644});
		const result = await run(['--root', root, '--yes', '--set', 'encryption-config.path=/etc/kubernetes/enc/other.yaml', '--only', 'encryption-config,apiserver-manifest', ...recovery]);
		expect(result.code, result.stderr).toBe(0);
		expect(result.stdout + result.stderr).not.toContain(key);
		const merged = await fs.readFile(other, 'utf8');
		expect(merged).toContain('# kept by the operator');
		expect(merged).toContain(key);
		expect(merged.match(/secret:/g)).toHaveLength(2);
		expect((await fs.stat(other)).mode & 0o777).toBe(0o600);
		expect(await fs.readFile(path.join(root, manifest), 'utf8')).toContain('--encryption-provider-config=/etc/kubernetes/enc/other.yaml');
	});

	test('the apiserver\'s config and another one at the chosen path: every key of both ends in the chosen file', async () => {
		const root = await demoCopy();
		const used = '4iPoS2wv3hFpcpmhxL+Ng2bYMk9R+knw8nsnN9XP6nU=';
		await fs.mkdir(path.join(root, 'etc/kubernetes/enc'), {recursive: true});
		await fs.writeFile(path.join(root, configFile), validConfig(used).replace('name: key1', 'name: live'), {mode: 0o600});
		await pointApiserverAt(root, `/${configFile}`);
		const other = path.join(root, 'etc/kubernetes/enc/other.yaml');
		await fs.writeFile(other, validConfig(key), {mode: 0o600});
		const preview = await run(['--root', root, '--yes', '--dry-run', '--set', 'encryption-config.path=/etc/kubernetes/enc/other.yaml', '--only', 'encryption-config,apiserver-manifest', ...recovery]);
		expect(preview.code, preview.stderr).toBe(0);
		for (const secret of [key, used]) expect(preview.stdout + preview.stderr).not.toContain(secret);
		expect(preview.stdout + preview.stderr).toMatch(/every key of \/etc\/kubernetes\/enc\/encryption-config\.yaml/);
		expect(preview.stdout + preview.stderr).toContain('<redacted>');
		const result = await run(['--root', root, '--yes', '--set', 'encryption-config.path=/etc/kubernetes/enc/other.yaml', '--set', 'encryption-config.primary=true', '--only', 'encryption-config,apiserver-manifest', ...recovery]);
		expect(result.code, result.stderr).toBe(0);
		for (const secret of [key, used]) expect(result.stdout + result.stderr).not.toContain(secret);
		const merged = await fs.readFile(other, 'utf8');
		expect(merged).toContain(key);
		expect(merged).toContain(used);
		// other.yaml's own key still writes; the apiserver's key reads what it wrote. Both are secretbox, so no key is added.
		expect(merged.indexOf('name: key1')).toBeLessThan(merged.indexOf('name: live'));
		expect(merged.match(/secret:/g)).toHaveLength(2);
		// The config the apiserver used is left in place, untouched.
		expect(await fs.readFile(path.join(root, configFile), 'utf8')).toContain(used);
	});

	test('the same key name with different secrets in both configs: exit 2 naming both, no secret printed, the tree unchanged', async () => {
		const root = await demoCopy();
		const used = '4iPoS2wv3hFpcpmhxL+Ng2bYMk9R+knw8nsnN9XP6nU=';
		await fs.mkdir(path.join(root, 'etc/kubernetes/enc'), {recursive: true});
		await fs.writeFile(path.join(root, configFile), validConfig(used), {mode: 0o600});
		await pointApiserverAt(root, `/${configFile}`);
		await fs.writeFile(path.join(root, 'etc/kubernetes/enc/other.yaml'), validConfig(key), {mode: 0o600});
		const result = await expectRefused(root, ['--root', root, '--yes', '--set', 'encryption-config.path=/etc/kubernetes/enc/other.yaml', ...recovery], /other\.yaml and \/etc\/kubernetes\/enc\/encryption-config\.yaml both have a secretbox key named key1/);
		for (const secret of [key, used]) expect(result.stdout + result.stderr).not.toContain(secret);
	});

	test('the config the apiserver uses is merged: its key stays', async () => {
		const root = await demoCopy();
		await fs.mkdir(path.join(root, 'etc/kubernetes/enc'), {recursive: true});
		await fs.writeFile(path.join(root, configFile), validConfig(key), {mode: 0o600});
		await pointApiserverAt(root, `/${configFile}`);
		const result = await run(['--root', root, '--yes', '--set', 'encryption-config.primary=true', '--only', 'encryption-config,apiserver-manifest', ...recovery]);
		expect(result.code).toBe(0);
		expect(await fs.readFile(path.join(root, configFile), 'utf8')).toContain(key);
		expect(result.stdout + result.stderr).not.toContain(key);
	});

	test('a config path naming a directory: exit 2, not a bare EISDIR', async () => {
		const root = await demoCopy();
		await fs.mkdir(path.join(root, 'etc/kubernetes/enc/dir.yaml'), {recursive: true});
		const result = await expectRefused(root, ['--root', root, '--yes', '--set', 'encryption-config.path=/etc/kubernetes/enc/dir.yaml', ...recovery], /dir\.yaml is a directory/);
		expect(result.stderr).not.toMatch(/EISDIR/);
	});
});

describe('2. concurrent runs: the lock comes before discovery, run ids are unique', () => {
	test('two --yes runs started together: one applies, the other is refused; one key, the original manifest backed up', async () => {
		const root = await demoCopy();
		const original = await fs.readFile(path.join(root, manifest), 'utf8');
		const argv = ['--root', root, '--yes', '--only', 'encryption-config,apiserver-manifest', ...recovery];
		const results = await Promise.all([run(argv), run(argv)]);
		const codes = results.map(result => result.code).sort();
		expect(codes).toEqual([0, 2]);
		const refused = results.find(result => result.code === 2)!;
		expect(refused.stdout + refused.stderr).toMatch(/another etcd-harden run .* holds/);
		const config = await fs.readFile(path.join(root, configFile), 'utf8');
		expect(config.match(/secret:/g)).toHaveLength(1);
		const runs = await fs.readdir(path.join(root, RUNS_DIR.slice(1)));
		expect(runs).toHaveLength(1);
		const backup = await fs.readFile(path.join(root, RUNS_DIR.slice(1), runs[0]!, 'backup', manifest), 'utf8');
		expect(backup).toBe(original);
		// The lock is gone once the run ended.
		await expect(fs.stat(path.join(root, 'var/lib/etcd-harden/lock'))).rejects.toThrow();
	});

	test('twenty runs taking the lock at once: exactly one gets it, the others are told who holds it', async () => {
		const root = await tempDir();
		const host = new RealHost(root);
		const outcomes = await Promise.allSettled(Array.from({length: 20}, () => acquireLock(host, process.pid)));
		expect(outcomes.filter(outcome => outcome.status === 'fulfilled')).toHaveLength(1);
		for (const outcome of outcomes) {
			if (outcome.status === 'rejected') expect(String(outcome.reason)).toMatch(/another etcd-harden run \(pid \d+\) holds/);
		}
		expect(await fs.readdir(path.join(root, 'var/lib/etcd-harden'))).toEqual(['lock']);
	});

	test('run directories of the same second get their own ids', async () => {
		const root = await tempDir();
		const host = new RealHost(root);
		const now = new Date('2026-01-02T03:04:05.678Z');
		const ids = [];
		for (let i = 0; i < 3; i++) ids.push((await RunDir.create(host, now)).id);
		expect(ids).toEqual(['2026-01-02T030405Z', '2026-01-02T030405Z-2', '2026-01-02T030405Z-3']);
	});

	test('a refused run (bad input) leaves no lock and no state directory behind', async () => {
		const root = await demoCopy();
		await expectRefused(root, ['--root', root, '--yes', '--set', 'encryption-config.provider=rot13', ...recovery], /rot13/);
	});
});

describe('3. answers are taken verbatim; typed answers are read by their question type', () => {
	const text: Question = {id: 'p', kind: 'password', message: 'p'};
	test('--set keeps #, quotes and spaces', () => {
		const options = parseCli(['--set', `encryption-config.passphrase=correct horse #battery "staple" 'x'`, '--set', 'a.b= spaced ']);
		expect(options.set['encryption-config']!['passphrase']).toBe(`correct horse #battery "staple" 'x'`);
		expect(options.set['a']!['b']).toBe(' spaced ');
		expect(coerceAnswer(text, '0123')).toBe('0123');
	});

	test('an answers file is read as text (failsafe schema): "0123" stays 0123, yes stays yes until a confirm reads it', () => {
		const answers = parseAnswersFile('a.yaml', 'encryption-config:\n  passphrase: 0123456789012\n  primary: yes\n  resources: [secrets, configmaps]\n');
		expect(answers['encryption-config']).toEqual({passphrase: '0123456789012', primary: 'yes', resources: ['secrets', 'configmaps']});
		const confirm: Question = {id: 'c', kind: 'confirm', message: 'c'};
		expect(coerceAnswer(confirm, 'yes')).toBe(true);
		expect(coerceAnswer(confirm, 'False')).toBe(false);
		expect(checkAnswer(confirm, coerceAnswer(confirm, 'maybe'), {})).toMatch(/expected true or false/);
		const list: Question = {id: 'l', kind: 'multiselect', message: 'l'};
		expect(coerceAnswer(list, '[secrets, "configmaps"]')).toEqual(['secrets', 'configmaps']);
		expect(coerceAnswer(list, 'secrets,configmaps')).toEqual(['secrets', 'configmaps']);
	});

	test('an answers file with an alias is refused', () => {
		expect(() => parseAnswersFile('a.yaml', 'x: &a {p: 1}\ny: *a\n')).toThrow(/aliases/);
	});

	test('the recovery copy opens with the exact passphrase given, # and quotes included', async () => {
		const root = await demoCopy();
		const passphrase = `correct horse #battery "staple"`;
		const result = await run(['--root', root, '--yes', '--only', 'encryption-config', '--set', 'encryption-config.recovery=passphrase', '--set', `encryption-config.passphrase=${passphrase}`]);
		expect(result.code).toBe(0);
		const dir = path.join(root, 'var/lib/etcd-harden/recovery');
		const [copy] = await fs.readdir(dir);
		const plain = await decrypt(await fs.readFile(path.join(dir, copy!)), {passphrase});
		expect(plain.toString()).toContain('kind: EncryptionConfiguration');
		await expect(decrypt(await fs.readFile(path.join(dir, copy!)), {passphrase: 'correct horse'})).rejects.toThrow();
	}, 120_000);

	test('a newline in a path answer is refused, not folded into a space', async () => {
		const root = await demoCopy();
		await expectRefused(root, ['--root', root, '--yes', '--set', 'encryption-config.path=/etc/kubernetes/enc/a\nb.yaml', ...recovery], /control character/);
	});
});

describe('4. key material is never printed', () => {
	const jsonConfig = (secret: string) =>
		JSON.stringify({apiVersion: 'apiserver.config.k8s.io/v1', kind: 'EncryptionConfiguration', resources: [{resources: ['secrets'], providers: [{aescbc: {keys: [{name: 'key1', secret}]}}, {identity: {}}]}]}).replaceAll('/', '\\/');
	const foldedConfig = (secret: string) =>
		validConfig('X').replace('secret: X', `secret: "${secret.slice(0, 20)}\\\n                ${secret.slice(20)}"`).replace('secretbox', 'aescbc');

	for (const [form, content] of [
		['JSON with \\/ escapes', jsonConfig(key)],
		['a double-quoted scalar folded over two lines', foldedConfig(key)],
	] as const) {
		test(`merging into a config written as ${form}: the dry-run diff shows no part of the key`, async () => {
			const root = await demoCopy();
			await fs.mkdir(path.join(root, 'etc/kubernetes/enc'), {recursive: true});
			await fs.writeFile(path.join(root, configFile), content, {mode: 0o600});
			await pointApiserverAt(root, `/${configFile}`);
			const result = await run(['--root', root, '--yes', '--dry-run', '--only', 'encryption-config', ...recovery]);
			expect(result.code).toBe(0);
			const output = result.stdout + result.stderr;
			expect(output).toContain('<redacted>');
			for (const part of [key, key.replaceAll('/', '\\/'), key.slice(0, 20), key.slice(20, 40)]) expect(output).not.toContain(part);
		});
	}

	test('a stray * before the key (an unresolved alias): exit 2 naming the file, the key not printed, status FAILs without it', async () => {
		const root = await demoCopy();
		await fs.mkdir(path.join(root, 'etc/kubernetes/enc'), {recursive: true});
		await fs.writeFile(path.join(root, configFile), validConfig(`*${key.replace(/[+/=]/g, 'x')}`), {mode: 0o600});
		await pointApiserverAt(root, `/${configFile}`);
		const bare = key.replace(/[+/=]/g, 'x');
		const result = await expectRefused(root, ['--root', root, '--yes', ...recovery], /encryption-config\.yaml: not valid YAML.*alias/);
		expect(result.stdout + result.stderr).not.toContain(bare);
		const status = await run(['status', '--root', root]);
		expect(status.code).toBe(1);
		expect(status.stdout).toMatch(/FAIL\s+config-valid\s+Encryption config is readable and valid/);
		expect(status.stdout + status.stderr).not.toContain(bare);
		expectNoTrace(status);
	});

	test('a malformed kubeconfig: the error names the file and never quotes it (it holds client keys)', () => {
		const keyData = Buffer.from('-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIDoNotPrintMe\n').toString('base64');
		const text = `apiVersion: v1\nusers:\n- name: admin\n  user:\n    client-key-data: ${keyData}\n   bad: [indent\n`;
		expect(() => parseKubeconfig(text, '/etc/kubernetes/admin.conf')).toThrow(/^\/etc\/kubernetes\/admin\.conf: not valid YAML at line \d+/);
		try {
			parseKubeconfig(text, '/etc/kubernetes/admin.conf');
		} catch (error) {
			expect((error as Error).message).not.toContain(keyData.slice(0, 20));
		}
	});

	test('redaction works on the parsed nodes: any form of a secret value, any string that decodes to key bytes', () => {
		const text = `a:\n  secret: 'short but secret'\n  password: "hunter2"\n  other: ${key}\n  list: [${key.slice(0, 43)}=]\n  name: etcd-harden-encryption\n`;
		const out = redactFile(text);
		expect(out).not.toContain('short but secret');
		expect(out).not.toContain('hunter2');
		expect(out).not.toContain(key);
		expect(out).toContain('name: etcd-harden-encryption');
		expect(decodesToKey(key)).toBe(true);
		expect(decodesToKey('/etc/kubernetes/pki/apiserver.key')).toBe(false);
	});

	test('a file that is not YAML (a systemd unit) keeps its paths and public recipients readable, and still loses key material', () => {
		const recipient = 'age17rvfec59wzu7chsrdltc06uj8zwzge08v8lmxnjaw53vdednw57szs3u9m';
		const unit = `[Service]\nExecStart=/usr/bin/node /opt/cli.js backup --output /var/lib/testbed/backup-test/backups --recipient ${recipient}\nEnvironment=K=${key}\n`;
		const out = redactFile(unit, [], '/etc/systemd/system/etcd-harden-backup.service');
		expect(out).toContain('--output /var/lib/testbed/backup-test/backups');
		expect(out).toContain(recipient);
		expect(out).not.toContain(key);
		// A file that should be YAML but does not parse loses every key-like token.
		expect(redactFile(`apiVersion: v1\n  bad: [${key.slice(0, 30)}x/y+z`, [], '/etc/kubernetes/enc/broken.yaml')).not.toContain(key.slice(0, 30));
	});
});

describe('5. valid but unusual manifests are read as kube-apiserver and etcd read them', () => {
	test('flag forms: --f=v, --f v, -f v, bare --f, last wins, stop at --', () => {
		expect(parseFlags(['kube-apiserver', '--a=1', '--b', '2', '-c', 'x', '--d', '--e=5', '--a=3', '--', '--z=9'])).toEqual({a: '3', b: '2', c: 'x', d: 'true', e: '5'});
	});

	test('--etcd-servers URL as two items: status does not call it "not https"', async () => {
		const root = await demoCopy();
		const text = await fs.readFile(path.join(root, manifest), 'utf8');
		await fs.writeFile(path.join(root, manifest), text.replace('- --etcd-servers=https://127.0.0.1:2379', '- --etcd-servers\n    - https://127.0.0.1:2379'));
		const status = await run(['status', '--root', root, '--json']);
		const rows = JSON.parse(status.stdout) as Array<{id: string; status: string; actual?: string}>;
		const row = rows.find(r => /etcd-servers/.test(JSON.stringify(r)));
		expect(row?.status).toBe('PASS');
	});

	test('the config flag and its value as two items: patched in place, no duplicate flag', async () => {
		const root = await demoCopy();
		const text = await fs.readFile(path.join(root, manifest), 'utf8');
		await fs.writeFile(path.join(root, manifest), text.replace('    - --allow-privileged=true\n', '    - --allow-privileged=true\n    - --encryption-provider-config\n    - /etc/kubernetes/enc/old.yaml\n'));
		const result = await run(['--root', root, '--yes', '--only', 'encryption-config,apiserver-manifest', '--set', 'encryption-config.path=/etc/kubernetes/enc/encryption-config.yaml', ...recovery]);
		expect(result.code).toBe(0);
		const patched = await fs.readFile(path.join(root, manifest), 'utf8');
		expect(patched).toContain('    - --encryption-provider-config\n    - /etc/kubernetes/enc/encryption-config.yaml\n');
		expect(patched.match(/--encryption-provider-config[\s=]/g)).toHaveLength(1);
		expect(inspectManifest(patched, manifest, 'kube-apiserver').flags['encryption-provider-config']).toBe('/etc/kubernetes/enc/encryption-config.yaml');
	});

	test('a "--" ending the flags (found by the fuzz property): new flags go before it, where kube-apiserver reads them', () => {
		const base = `apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - name: kube-apiserver\n`;
		const patch: ManifestPatch = {flags: {'encryption-provider-config': '/etc/kubernetes/enc/encryption-config.yaml'}, annotations: {}, mounts: []};
		for (const [what, lines] of [
			['args ending in --', '    command:\n    - kube-apiserver\n    args:\n    - --allow-privileged=true\n    - --\n'],
			['-- in command, flags in args', '    command:\n    - kube-apiserver\n    - --secure-port=6443\n    - --\n    args:\n    - positional\n'],
			['a flag in command whose value is the first arg', '    command:\n    - kube-apiserver\n    - --encryption-provider-config\n    args:\n    - /old.yaml\n    - --allow-privileged=true\n'],
		] as const) {
			const patched = patchManifest(base + lines, '/m.yaml', 'kube-apiserver', patch);
			const after = inspectManifest(patched, '/m.yaml', 'kube-apiserver');
			expect(after.flags['encryption-provider-config'], what).toBe('/etc/kubernetes/enc/encryption-config.yaml');
			expect(patched.match(/encryption-provider-config/g), what).toHaveLength(1);
		}
	});

	test('a tab inside the command (found by the fuzz property): patching refuses what reading refuses', () => {
		const text = `apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - "kube\\tapiserver"\n    - --a=true\n`;
		expect(() => inspectManifest(text, '/m.yaml', 'kube-apiserver')).toThrow(/\/m\.yaml: the command holds a control character \(U\+0009\)/);
		expect(() => patchManifest(text, '/m.yaml', 'kube-apiserver', {flags: {b: 'x'}})).toThrow(/\/m\.yaml: the command holds a control character \(U\+0009\)/);
	});

	test('a command written as one string: exit 2, the binary and its flags kept', async () => {
		const root = await demoCopy();
		const text = await fs.readFile(path.join(root, manifest), 'utf8');
		const flags = [...text.matchAll(/^    - (--\S+)$/gm)].map(match => match[1]).join(' ');
		const oneString = text.replace(/  - command:\n(    - .*\n)+/, `  - command: kube-apiserver ${flags}\n`);
		expect(oneString).not.toBe(text);
		await fs.writeFile(path.join(root, manifest), oneString);
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /kube-apiserver\.yaml: kube-apiserver's command is one string/);
	});

	test('a command run through sh -c: exit 2', async () => {
		const root = await demoCopy();
		const text = await fs.readFile(path.join(root, manifest), 'utf8');
		await fs.writeFile(path.join(root, manifest), text.replace(/  - command:\n(    - .*\n)+/, '  - command:\n    - /bin/sh\n    - -c\n    - exec kube-apiserver --allow-privileged=true\n'));
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /starts through a shell/);
	});

	test('an emptyDir already mounted at the config directory: exit 2, no second mount', async () => {
		const root = await demoCopy();
		const text = await fs.readFile(path.join(root, manifest), 'utf8');
		const withEmptyDir = text
			.replace('    volumeMounts:\n', '    volumeMounts:\n    - mountPath: /etc/kubernetes/enc\n      name: scratch\n')
			.replace('  volumes:\n', '  volumes:\n  - emptyDir: {}\n    name: scratch\n');
		expect(withEmptyDir).not.toBe(text);
		await fs.writeFile(path.join(root, manifest), withEmptyDir);
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /\/etc\/kubernetes\/enc is already mounted from volume scratch/);
	});

	for (const [form, nul] of [
		['a raw NUL byte (found by the fuzz property)', '\u0000'],
		['a NUL written as the escape \\0 in a double-quoted value', '\\0'],
	] as const) {
		test(`a path in the manifest holding ${form}: exit 2 naming the manifest, no trace`, async () => {
			const root = await demoCopy();
			const text = await fs.readFile(path.join(root, manifest), 'utf8');
			const broken = text.replace(/- --etcd-cafile=(\S+)/, (_, value: string) => `- "--etcd-cafile=${value.replace('kubernetes', `kube${nul}rnetes`)}"`);
			expect(broken).not.toBe(text);
			await fs.writeFile(path.join(root, manifest), broken);
			const result = await expectRefused(root, ['--root', root, '--yes', ...recovery], /kube-apiserver\.yaml: .*control character \(U\+0000\)/);
			expect(result.code).toBe(2);
			const status = await run(['status', '--root', root]);
			expectNoTrace(status);
			expect(status.stdout + status.stderr).toMatch(/control character/);
		});
	}

	test('a flag with no value and a relative config path: exit 2 naming the manifest, not "internal"', async () => {
		for (const flag of ['    - --encryption-provider-config\n', '    - --encryption-provider-config=enc.yaml\n']) {
			const root = await demoCopy();
			const text = await fs.readFile(path.join(root, manifest), 'utf8');
			await fs.writeFile(path.join(root, manifest), text.replace('    - --allow-privileged=true\n', `    - --allow-privileged=true\n${flag}`));
			const result = await expectRefused(root, ['--root', root, '--yes', ...recovery], /kube-apiserver\.yaml: --encryption-provider-config (has no value|=\S+ is a relative path)/);
			expect(result.stderr + result.stdout).not.toMatch(/internal/);
		}
	});

	test('patchManifest keeps a one-dash etcd flag in its form', () => {
		const text = 'apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: etcd\n    command:\n    - etcd\n    - -client-cert-auth\n    - "false"\n';
		const patched = patchManifest(text, '/m.yaml', 'etcd', {flags: {'client-cert-auth': 'true'}});
		expect(patched).toContain('    - -client-cert-auth\n    - "true"\n');
	});
});

describe('6. symlinks never lead outside --root; a symlinked file stays a symlink', () => {
	test('etc/kubernetes/enc and var/lib/etcd-harden linked to directories outside the root: nothing is written outside', async () => {
		const root = await demoCopy();
		const outside = await tempDir('outside-');
		await fs.mkdir(path.join(outside, 'enc'));
		await fs.mkdir(path.join(outside, 'state'));
		await fs.symlink(path.join(outside, 'enc'), path.join(root, 'etc/kubernetes/enc'));
		await fs.mkdir(path.join(root, 'var/lib'), {recursive: true});
		await fs.symlink(path.join(outside, 'state'), path.join(root, 'var/lib/etcd-harden'));
		const before = await snapshot(outside);
		const result = await run(['--root', root, '--yes', '--only', 'encryption-config,apiserver-manifest', ...recovery]);
		expect(result.code).toBe(0);
		expect(await snapshot(outside)).toEqual(before);
		// As a chroot would: the link's target is taken inside the root.
		const inside = path.join(root, outside.slice(1), 'enc/encryption-config.yaml');
		expect((await fs.readFile(inside, 'utf8')).includes('EncryptionConfiguration')).toBe(true);
		expect(await allText(path.join(root, outside.slice(1), 'state'))).toContain('run-start');
	});

	test('a manifest symlinked outside the root is never read from there nor replaced', async () => {
		const root = await demoCopy();
		const outside = await tempDir('outside-');
		await fs.rename(path.join(root, manifest), path.join(outside, 'kube-apiserver.yaml'));
		await fs.symlink(path.join(outside, 'kube-apiserver.yaml'), path.join(root, manifest));
		const before = await snapshot(outside);
		const result = await run(['--root', root, '--yes', '--only', 'encryption-config,apiserver-manifest', ...recovery]);
		expect(result.code).toBe(2);
		expectNoTrace(result);
		expect(await snapshot(outside)).toEqual(before);
		expect((await fs.lstat(path.join(root, manifest))).isSymbolicLink()).toBe(true);
	});

	test('a manifest symlinked inside the root: the file it points at is patched, the link stays', async () => {
		const root = await demoCopy();
		await fs.mkdir(path.join(root, 'srv'));
		await fs.rename(path.join(root, manifest), path.join(root, 'srv/kube-apiserver.yaml'));
		await fs.symlink('/srv/kube-apiserver.yaml', path.join(root, manifest));
		const dry = await run(['--root', root, '--yes', '--dry-run', '--only', 'encryption-config,apiserver-manifest', ...recovery]);
		// The preview says so.
		expect(dry.stdout + dry.stderr).toContain('/etc/kubernetes/manifests/kube-apiserver.yaml is a symbolic link: /srv/kube-apiserver.yaml is replaced and the link stays');
		const result = await run(['--root', root, '--yes', '--only', 'encryption-config,apiserver-manifest', ...recovery]);
		expect(result.code).toBe(0);
		expect((await fs.lstat(path.join(root, manifest))).isSymbolicLink()).toBe(true);
		expect(await fs.readFile(path.join(root, 'srv/kube-apiserver.yaml'), 'utf8')).toContain('--encryption-provider-config=');
	});
});

describe('7. YAML alias bombs', () => {
	const bomb = (() => {
		let text = 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n';
		for (let i = 1; i < 9; i++) text += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`;
		return text;
	})();

	test('in kube-apiserver.yaml: exit 2 naming the file', async () => {
		const root = await demoCopy();
		await fs.appendFile(path.join(root, manifest), bomb);
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /kube-apiserver\.yaml: not valid YAML.*alias bomb/);
	});

	test('in etcd.yaml: harden names it (exit 2) and status shows a FAIL row, no trace', async () => {
		const root = await demoCopy();
		await fs.appendFile(path.join(root, etcdManifest), bomb);
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /etcd\.yaml: not valid YAML.*alias bomb/);
		const status = await run(['status', '--root', root]);
		expect(status.code).toBe(1);
		expect(status.stdout).toMatch(/FAIL.*\n?.*etcd\.yaml: not valid YAML/);
		expectNoTrace(status);
	});

	test('in the encryption config: exit 2 naming it', async () => {
		const root = await demoCopy();
		await fs.mkdir(path.join(root, 'etc/kubernetes/enc'), {recursive: true});
		await fs.writeFile(path.join(root, configFile), validConfig(key) + bomb, {mode: 0o600});
		await pointApiserverAt(root, `/${configFile}`);
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /encryption-config\.yaml: not valid YAML.*alias bomb/);
	});
});

describe('8. size: oversized files are refused before they are read', () => {
	test('a 1 MB manifest: exit 2 naming it', async () => {
		const root = await demoCopy();
		const text = await fs.readFile(path.join(root, manifest), 'utf8');
		await fs.writeFile(path.join(root, manifest), text + Array.from({length: 20_000}, (_, i) => `# padding line ${i} ${'x'.repeat(30)}`).join('\n'));
		await expectRefused(root, ['--root', root, '--yes', ...recovery], /kube-apiserver\.yaml: is \d+ bytes; a real one is under 10 KB/);
	});
});

describe('9. undo removes what the run created and undoes only writes that happened', () => {
	test('the manifest write fails (read-only file system): the config and the directory the run created are gone; no "could not be fully undone"', async () => {
		const root = await demoCopy();
		const before = await snapshot(path.join(root, 'etc'));
		class ReadOnlyManifests extends RealHost {
			override async writeFileAtomic(nodePath: string, data: string | Uint8Array, mode: number): Promise<void> {
				if (nodePath.startsWith('/etc/kubernetes/manifests/')) {
					throw Object.assign(new Error(`EROFS: read-only file system, open '${this.resolve(nodePath)}'`), {code: 'EROFS', path: this.resolve(nodePath), syscall: 'open'});
				}
				return super.writeFileAtomic(nodePath, data, mode);
			}
		}
		const workflow = hardenWorkflow({only: ['encryption-config', 'apiserver-manifest']}, {root, deep: false}, {});
		const engine = createEngine({
			command: 'harden',
			host: new ReadOnlyManifests(root),
			stages: workflow.stages,
			skipped: workflow.skipped,
			answers: {'encryption-config': {recovery: 'stored-elsewhere', storedElsewhere: 'true'}},
			interactive: false,
			discover: workflow.discover,
			tasks,
		});
		expect(await engine.run()).toBe(3);
		const summary = engine.getState().result!.summary.join('\n');
		expect(summary).toMatch(/read-only file system/);
		expect(summary).not.toMatch(/could not be fully undone/);
		expect(summary).not.toMatch(/^\s+at /m);
		expect(await snapshot(path.join(root, 'etc'))).toEqual(before);
		// The trace is in the run's journal only.
		const [runId] = await fs.readdir(path.join(root, RUNS_DIR.slice(1)));
		const journal = await fs.readFile(path.join(root, RUNS_DIR.slice(1), runId!, 'journal.jsonl'), 'utf8');
		const error = journal.split('\n').filter(Boolean).map(line => JSON.parse(line) as {event: string; detail?: string}).find(entry => entry.event === 'error');
		expect(error?.detail).toMatch(/EROFS[\s\S]*\n\s+at /);
	});
});

describe('11. no stack trace: unexpected errors are one line naming the file, exit 3', () => {
	test('--answers naming a directory: exit 2 naming the flag', async () => {
		const root = await demoCopy();
		const dir = await tempDir();
		await expectRefused(root, ['--root', root, '--yes', '--answers', dir], /--answers .*: is a directory/);
	});

	for (const flag of ['--bundle', '--bundle-key', '--passphrase-file', '--identity', '--kubeconfig']) {
		test(`${flag} naming a directory: exit 2 naming the flag`, async () => {
			const dir = await tempDir();
			const command = {'--bundle': ['rotate'], '--bundle-key': ['rotate'], '--passphrase-file': ['backup'], '--identity': ['restore-check'], '--kubeconfig': ['status']}[flag]!;
			const result = await run([...command, flag, dir]);
			expect(result.code).toBe(2);
			expect(result.stderr).toMatch(new RegExp(`${flag} .*: is a directory`));
			expectNoTrace(result);
		});
	}

	test('--answers naming a missing file: exit 2', async () => {
		const root = await demoCopy();
		await expectRefused(root, ['--root', root, '--yes', '--answers', '/nonexistent/answers.yaml'], /--answers \/nonexistent\/answers\.yaml: no such file/);
	});

	test('an unexpected I/O error (the root password file is a directory): one line naming it, exit 3', async () => {
		const root = await demoCopy();
		await fs.mkdir(path.join(root, 'var/lib/etcd-harden/etcd-root-password'), {recursive: true});
		const result = await run(['root-password', '--root', root]);
		expect(result.code).toBe(3);
		expectNoTrace(result);
		expect(result.stderr.trim().split('\n')).toHaveLength(1);
		expect(result.stderr).toMatch(/\/var\/lib\/etcd-harden\/\S* \(under --root .*\): is a directory/);
	});
});

describe('12. every flag is validated in every mode', () => {
	const cases: Array<[string[], RegExp]> = [
		[['--only', ''], /--only is empty/],
		[['--skip', ','], /--skip is empty/],
		[['--only', 'a,,b'], /empty stage name/],
		[['--concurrency', '0'], /--concurrency "0": give a whole number from 1 to 256/],
		[['--concurrency', 'abc'], /--concurrency "abc"/],
		[['--concurrency', '1e9'], /--concurrency "1e9"/],
		[['--concurrency=-5'], /--concurrency "-5"/],
		[['--concurrency', '0x10'], /--concurrency "0x10"/],
		[['--rate=-1'], /--rate "-1"/],
		[['--rate', '1.5'], /--rate "1.5"/],
		[['--timeout', '5'], /--timeout "5"/],
		[['--compaction-grace=-1'], /--compaction-grace "-1": give a whole number from 0 to 3600/],
		[['--compaction-grace', '1m'], /--compaction-grace "1m"/],
		[['status', '--compaction-grace', '5'], /--compaction-grace belongs to etcd-harden harden, rotate, disable, not status/],
		[['--keep', 'all'], /--keep "all"/],
		[['--node-name', 'a\nb'], /--node-name .* control character/],
		[['--node-name', 'Node_1'], /--node-name "Node_1": must be a DNS subdomain/],
		[['--kubeconfig', ''], /--kubeconfig is empty/],
		[['--root', '/tmp/a\nb'], /--root .* control character/],
		[['--bogus'], /unknown flag --bogus\./],
		[['--dryrun'], /unknown flag --dryrun: did you mean --dry-run\?/],
		[['--concurency', '4'], /unknown flag --concurency: did you mean --concurrency\?/],
		[['hardne'], /unknown command "hardne": did you mean harden\?/],
		[['status', 'extra'], /unexpected argument "extra": status takes flags only/],
		[['restore-check', '/backups/x', 'extra'], /unexpected argument "extra"/],
		[['--yes=no'], /--yes is a switch and takes no value/],
		[['--json=1'], /--json is a switch and takes no value/],
		[['--root'], /--root needs a value/],
		[['--set', 'encryption-config passphrase=hunter2-hunter2'], /--set "encryption-config passphrase=…" is not STAGE\.QUESTION=VALUE/],
		[['--bundle', '/tmp/b.age'], /--bundle belongs to etcd-harden rotate, not harden/],
		[['status', '--concurrency', '4'], /--concurrency belongs to etcd-harden harden, demo, rotate, disable, not status/],
		[['--node-name', 'cp-1'], /--node-name belongs to etcd-harden rotate, disable, status, not harden/],
	];
	test('--concurrency takes auto (the adaptive default) or a whole number, and passes it to the reencrypt stage', () => {
		expect(parseCli(['--concurrency', 'auto']).set['reencrypt']?.['concurrency']).toBe('auto');
		expect(parseCli(['--concurrency', '32']).set['reencrypt']?.['concurrency']).toBe('32');
		expect(() => parseCli(['--concurrency', 'automatic'])).toThrow(/--concurrency "automatic": give a whole number from 1 to 256 \(writes in flight, or auto/);
	});
	for (const [argv, message] of cases) {
		test(`${JSON.stringify(argv)}`, async () => {
			expect(() => parseCli(withoutRoot(argv))).toThrow(InputError);
			const result = await run(argv);
			expect(result.code).toBe(2);
			expect(result.stderr).toMatch(message);
			expect(result.stderr.trim().split('\n')).toHaveLength(1);
		});
	}

	test("restore-check --identity with --root reads the operator's file, not the path under the root", async () => {
		const root = await tempDir();
		const {identity, recipient} = generateIdentity();
		const keyDir = await tempDir();
		const keyFile = path.join(keyDir, 'backup.key');
		await fs.writeFile(keyFile, `${identity}\n`, {mode: 0o600});
		// The same path under the root holds something else: reading it would fail "not an age identity".
		await fs.mkdir(path.join(root, keyDir), {recursive: true});
		await fs.writeFile(path.join(root, keyFile), 'not an identity\n');
		const backup = '/var/backups/etcd-harden/etcd-backup-20240131T020000Z';
		await fs.mkdir(path.join(root, backup), {recursive: true});
		const manifestJson = {
			format: 'etcd-harden-backup/v1',
			id: 'etcd-backup-20240131T020000Z',
			createdAt: '2024-01-31T02:00:00.000Z',
			encryptedTo: {recipients: [recipient]},
			snapshot: {file: 'snapshot.db.age', sha256: 'a'.repeat(64), bytes: 10, encryptedSha256: 'b'.repeat(64), encryptedBytes: 200},
			etcd: {endpoint: 'https://127.0.0.1:2379', revision: 42, hash: 1, totalKey: 50, totalSize: 4096, keys: 40},
			kubernetes: {version: '1.20.2', etcdPrefix: '/registry', resources: ['secrets']},
			encryptionConfig: {file: 'encryption-config.yaml.age', path: '/etc/kubernetes/enc/encryption-config.yaml', sha256: 'c'.repeat(64), encryptedSha256: 'd'.repeat(64), keys: []},
		};
		await fs.writeFile(path.join(root, backup, 'manifest.json'), JSON.stringify(manifestJson));
		const result = await run(['restore-check', '--root', root, '--identity', keyFile, backup]);
		expectNoTrace(result);
		// The key was read (no usage error); the check goes on to find the snapshot missing.
		expect(result.stderr + result.stdout).not.toMatch(/--identity .*not an age identity/);
		expect(result.code).toBe(1);
		expect(result.stdout).toMatch(/snapshot\.db\.age does not exist/);
	});

	test('the flags of stages left out are still checked under --root', async () => {
		const root = await demoCopy();
		await expectRefused(root, ['--root', root, '--yes', '--only', 'encryption-config', '--concurrency', '0', ...recovery], /--concurrency "0"/);
	});
});

// Encrypted etcd backups on a live control plane: the built CLI (dist/cli.js) runs inside the
// testbed's namespaces against real etcd 3.4 and kube-apiserver 1.20.2 with encryption at rest
// enabled; the `age` command (an independent implementation) and etcdctl check the results.
// Nothing here is mocked.
import {createHash, randomBytes} from 'node:crypto';
import {readdir, readFile, stat} from 'node:fs/promises';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {startTestbed, type Testbed} from '../testbed/index.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'dist', 'cli.js');
const SECRETS = 200;
const CONFIG = '/etc/kubernetes/enc/encryption-config.yaml';
// Everything the tests make lives in directories the testbed provides (bind mounts and tmpfs),
// never on the machine running the tests.
const WORK = '/var/lib/testbed/backup-test';
const OUT = `${WORK}/backups`;
const KEY = `${WORK}/age-key.txt`;
const STAGING = '/var/lib/etcd-harden/tmp';
// Encryption enabled as an operator would: the plaintext history purged too, so backups hold
// none (test/e2e/purge-history.test.ts covers a backup taken before the purge).
const ENABLE = [
	'--yes', '--plain', '--only', 'encryption-config,apiserver-manifest,reencrypt,purge-history', '--compaction-grace', '0',
	'--set', 'encryption-config.recovery=stored-elsewhere', '--set', 'encryption-config.storedElsewhere=true',
];

type Run = {exitCode: number; stdout: string; stderr: string};

async function cli(tb: Testbed, args: string[]): Promise<Run> {
	const result = await tb.exec([process.execPath, CLI, ...args], {reject: false, stdin: 'ignore', env: {CI: 'true'}});
	return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

async function sh(tb: Testbed, script: string): Promise<Run> {
	const result = await tb.exec(['/bin/sh', '-c', script], {reject: false, stdin: 'ignore'});
	return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

async function shOk(tb: Testbed, script: string): Promise<string> {
	const run = await sh(tb, script);
	expect(run.exitCode, `${script}\n${run.stderr}`).toBe(0);
	return run.stdout;
}

/** Every regular file under a directory of the testbed (paths as seen inside it). */
async function filesUnder(tb: Testbed, dir: string): Promise<string[]> {
	const out: string[] = [];
	const walk = async (rel: string): Promise<void> => {
		let entries;
		try {
			entries = await readdir(tb.hostPath(rel), {withFileTypes: true});
		} catch {
			return;
		}
		for (const entry of entries) {
			const child = path.posix.join(rel, entry.name);
			// A checkout under /tmp is bound into the testbed; its source is not the tool's output.
			if (child === REPO) continue;
			if (entry.isDirectory()) await walk(child);
			else if (entry.isFile()) out.push(child);
		}
	};
	await walk(dir);
	return out;
}

/**
 * Files that hold etcd plaintext: a bbolt database (its meta page magic 0xED0CDAED at offset 16)
 * or raw etcd keys such as /registry/secrets/. An age file holds neither.
 */
async function plaintextFiles(tb: Testbed, dirs: string[]): Promise<string[]> {
	const found: string[] = [];
	const magic = Buffer.from([0xed, 0xda, 0x0c, 0xed]);
	for (const dir of dirs) {
		for (const file of await filesUnder(tb, dir)) {
			const data = await readFile(tb.hostPath(file));
			if (data.subarray(16, 20).equals(magic) || data.includes('/registry/secrets/')) found.push(file);
		}
	}
	return found;
}

async function backupsIn(tb: Testbed, dir: string): Promise<string[]> {
	return (await readdir(tb.hostPath(dir))).filter(name => /^etcd-backup-\d{8}T\d{6}Z$/.test(name)).sort();
}

function sha256(data: Buffer | string): string {
	return createHash('sha256').update(data).digest('hex');
}

type Manifest = {
	id: string;
	encryptedTo: {recipients?: string[]; passphrase?: boolean};
	snapshot: {sha256: string; encryptedSha256: string};
	etcd: {revision: number; totalKey: number; keys?: number};
	kubernetes: {version?: string; resources: string[]};
	encryptionConfig?: {sha256: string; encryptedSha256: string; keys: Array<{provider: string; name: string}>};
};

describe('encrypted etcd backups that restore', () => {
	let tb: Testbed;
	let recipient: string;
	let configSecrets: string[];
	let good: string; // the first backup's directory (inside the testbed)
	const watched = [STAGING, '/var/lib/etcd-harden', '/tmp', WORK];

	beforeAll(async () => {
		tb = await startTestbed({secrets: SECRETS, configMaps: 20, namespaces: 2});
		const enable = await cli(tb, ENABLE);
		expect(enable.exitCode, enable.stderr.slice(-3000)).toBe(0);
		await shOk(tb, `mkdir -p ${WORK} && age-keygen -o ${KEY} 2>/dev/null`);
		recipient = (await shOk(tb, `age-keygen -y ${KEY}`)).trim();
		const config = await tb.readFile(CONFIG, 'utf8');
		configSecrets = [...config.matchAll(/secret:\s*(\S+)/g)].map(match => match[1]!);
		expect(configSecrets.length).toBeGreaterThan(0);
	});
	afterAll(async () => {
		await tb?.stop();
	});

	it('--dry-run previews the backup and writes nothing', async () => {
		const run = await cli(tb, ['backup', '--yes', '--plain', '--dry-run', '--recipient', recipient, '--output', OUT, '--set', 'backup.schedule=daily']);
		expect(run.exitCode, run.stderr.slice(-2000)).toBe(0);
		expect(run.stdout).toContain('Dry run: nothing was changed');
		expect(run.stderr).toContain(`Snapshot etcd and write an age-encrypted backup to ${recipient} to ${OUT}/etcd-backup-`);
		// The timer is previewed as unit files and the systemctl commands.
		expect(run.stderr).toContain('+OnCalendar=*-*-* 02:00:00');
		expect(run.stderr).toMatch(/ExecStart=\S+ \S*cli\.js backup --yes --plain --output \/var\/lib\/testbed\/backup-test\/backups --keep 7 --recipient age1/);
		expect(run.stderr).toContain('$ systemctl enable --now etcd-harden-backup.timer');
		await expect(stat(tb.hostPath(OUT))).rejects.toThrow();
	});

	it('writes a backup to an age recipient that the age command decrypts and etcdctl snapshot status accepts', async () => {
		const run = await cli(tb, ['backup', '--yes', '--plain', '--recipient', recipient, '--output', OUT]);
		expect(run.exitCode, run.stderr.slice(-3000)).toBe(0);
		expect(run.stdout).toContain('Encrypted etcd backup: applied and verified.');
		const [id] = await backupsIn(tb, OUT);
		expect(id).toBeDefined();
		good = `${OUT}/${id}`;
		expect((await readdir(tb.hostPath(good))).sort()).toEqual(['encryption-config.yaml.age', 'manifest.json', 'snapshot.db.age']);
		expect((await stat(tb.hostPath(good))).mode & 0o777).toBe(0o700);
		expect((await stat(tb.hostPath(`${good}/snapshot.db.age`))).mode & 0o777).toBe(0o600);
		// No staging directory and no half-written backup remain.
		expect(await readdir(tb.hostPath(STAGING))).toEqual([]);
		expect((await readdir(tb.hostPath(OUT))).filter(name => name.startsWith('.'))).toEqual([]);

		const manifestText = await tb.readFile(`${good}/manifest.json`, 'utf8');
		const manifest = JSON.parse(manifestText) as Manifest;
		expect(manifest.encryptedTo).toEqual({recipients: [recipient]});
		expect(manifest.kubernetes.version).toBe('1.20.2');
		expect(manifest.encryptionConfig?.keys.map(key => `${key.provider}:${key.name}`)).toContain('secretbox:key1');
		expect(manifest.etcd.keys).toBeGreaterThan(SECRETS);

		// The independent implementation decrypts it; etcd's own check accepts the result.
		const plain = `${WORK}/age-cli-plain.db`;
		await shOk(tb, `age -d -i ${KEY} -o ${plain} ${good}/snapshot.db.age`);
		expect(sha256(await tb.readFile(plain))).toBe(manifest.snapshot.sha256);
		const status = JSON.parse(await shOk(tb, `ETCDCTL_API=3 etcdctl snapshot status ${plain} -w json`)) as {revision: number; totalKey: number};
		expect(status.revision).toBe(manifest.etcd.revision);
		expect(status.totalKey).toBe(manifest.etcd.totalKey);
		// The detector the failure tests rely on does see a plaintext snapshot.
		expect(await plaintextFiles(tb, [WORK])).toEqual([plain]);
		await shOk(tb, `rm -f ${plain}`);
		const config = await shOk(tb, `age -d -i ${KEY} ${good}/encryption-config.yaml.age`);
		expect(config).toBe((await tb.readFile(CONFIG, 'utf8')).replace(/\n$/, ''));

		// Key material appears nowhere: not in the output, the manifest or the run journal.
		const journals = await filesUnder(tb, '/var/lib/etcd-harden/runs');
		const journalText = (await Promise.all(journals.map(file => tb.readFile(file, 'utf8')))).join('\n');
		for (const secret of configSecrets) {
			for (const text of [run.stdout, run.stderr, manifestText, journalText]) expect(text).not.toContain(secret);
		}
	});

	it('restore-check passes on the good backup: restored etcd, key count, every secret decrypts with the archived config', async () => {
		const run = await cli(tb, ['restore-check', good, '--identity', KEY]);
		expect(run.exitCode, `${run.stdout}\n${run.stderr.slice(-2000)}`).toBe(0);
		expect(run.stdout).toMatch(/PASS {2}The restored etcd holds the key count of the backup: \d+ keys/);
		expect(run.stdout).toMatch(/PASS {2}Every stored secrets value decrypts with the archived configuration: \d+ decrypted \(\d+ secretbox:key1/);
		expect(run.stdout).toContain('restores: etcd serves it and every secret decrypts');
		expect(await readdir(tb.hostPath(STAGING))).toEqual([]);
		expect(await plaintextFiles(tb, watched)).toEqual([]);
		// Identity material never printed.
		const identity = (await tb.readFile(KEY, 'utf8')).match(/AGE-SECRET-KEY-\S+/)![0];
		expect(run.stdout + run.stderr).not.toContain(identity);

		const json = await cli(tb, ['restore-check', good, '--identity', KEY, '--json']);
		expect(json.exitCode).toBe(0);
		const report = JSON.parse(json.stdout) as {ok: boolean; checks: Array<{id: string; status: string}>};
		expect(report.ok).toBe(true);
		expect(report.checks.map(check => check.id)).toEqual(
			expect.arrayContaining(['manifest', 'snapshot.decrypt', 'snapshot.status', 'etcd.start', 'etcd.keys', 'config.decrypt', 'decrypt.secrets']),
		);
	});

	it('decrypts files encrypted by the age command', async () => {
		const copy = `${WORK}/age-made`;
		const plain = `${WORK}/age-made-plain`;
		await shOk(
			tb,
			[
				`mkdir -p ${copy} && cp ${good}/manifest.json ${copy}/`,
				`age -d -i ${KEY} -o ${plain}.db ${good}/snapshot.db.age && age -r ${recipient} -o ${copy}/snapshot.db.age ${plain}.db && rm -f ${plain}.db`,
				`age -d -i ${KEY} ${good}/encryption-config.yaml.age | age -r ${recipient} -o ${copy}/encryption-config.yaml.age`,
			].join(' && '),
		);
		const manifest = JSON.parse(await tb.readFile(`${copy}/manifest.json`, 'utf8')) as Manifest;
		manifest.snapshot.encryptedSha256 = sha256(await tb.readFile(`${copy}/snapshot.db.age`));
		manifest.encryptionConfig!.encryptedSha256 = sha256(await tb.readFile(`${copy}/encryption-config.yaml.age`));
		await tb.writeFile(`${copy}/manifest.json`, JSON.stringify(manifest));
		const run = await cli(tb, ['restore-check', copy, '--identity', KEY]);
		expect(run.exitCode, `${run.stdout}\n${run.stderr.slice(-2000)}`).toBe(0);
		expect(run.stdout).toContain('PASS  The snapshot decrypts (age, authenticated)');
		expect(run.stdout).toMatch(/PASS {2}Every stored secrets value decrypts/);
	});

	it('a tampered backup (one byte flipped) fails to decrypt and writes no plaintext anywhere', async () => {
		const copy = `${WORK}/tampered`;
		await shOk(tb, `cp -a ${good} ${copy}`);
		const file = tb.hostPath(`${copy}/snapshot.db.age`);
		const data = await readFile(file);
		const at = Math.floor(data.length / 2);
		data[at] = data[at]! ^ 0x01;
		await tb.writeFile(`${copy}/snapshot.db.age`, data);
		const run = await cli(tb, ['restore-check', copy, '--identity', KEY]);
		expect(run.exitCode, run.stdout).toBe(1);
		expect(run.stdout).toMatch(/FAIL {2}The encrypted snapshot has the sha256 the backup recorded: sha256 \S+ differs from the manifest/);
		expect(run.stdout).toMatch(/FAIL {2}The snapshot decrypts: .*nothing was written\)/);
		expect(run.stdout).toContain('would NOT restore');
		expect(await readdir(tb.hostPath(STAGING))).toEqual([]);
		expect(await plaintextFiles(tb, watched)).toEqual([]);
		// The independent implementation refuses it as well.
		expect((await sh(tb, `age -d -i ${KEY} -o ${WORK}/tampered.db ${copy}/snapshot.db.age`)).exitCode).not.toBe(0);
		await shOk(tb, `rm -rf ${copy} ${WORK}/tampered.db`);
	});

	it('restore-check fails on a backup paired with the wrong encryption config, and says why', async () => {
		const copy = `${WORK}/wrong-config`;
		await shOk(tb, `cp -a ${good} ${copy}`);
		const config = await tb.readFile(CONFIG, 'utf8');
		let wrong = config;
		for (const secret of configSecrets) wrong = wrong.replaceAll(secret, randomBytes(32).toString('base64'));
		await tb.writeFile(`${WORK}/wrong.yaml`, wrong);
		await shOk(tb, `age -r ${recipient} -o ${copy}/encryption-config.yaml.age ${WORK}/wrong.yaml && rm -f ${WORK}/wrong.yaml`);
		const run = await cli(tb, ['restore-check', copy, '--identity', KEY]);
		expect(run.exitCode, run.stdout).toBe(1);
		expect(run.stdout).toMatch(/FAIL {2}The archived encryption config decrypts and is the one the backup recorded: .*not the config that was in use/);
		expect(run.stdout).toMatch(/FAIL {2}Every stored secrets value decrypts with the archived configuration: \d+ of \d+ values do not decrypt, e\.g\. \/registry\/secrets\/\S+: secretbox key key1: authentication failed/);
		expect(await readdir(tb.hostPath(STAGING))).toEqual([]);
		await shOk(tb, `rm -rf ${copy}`);
	});

	it('a failure after the snapshot and before encryption (read-only output) leaves no plaintext behind', async () => {
		const ro = `${WORK}/readonly`;
		await shOk(tb, `mkdir -p ${ro} && mount --bind ${ro} ${ro} && mount -o remount,bind,ro ${ro}`);
		try {
			const run = await cli(tb, ['backup', '--yes', '--plain', '--recipient', recipient, '--output', ro]);
			expect(run.exitCode).toBe(3);
			// The snapshot was taken (and checked) before the failure.
			expect(run.stderr).toMatch(/snapshot taken and checked: etcd revision \d+/);
			expect(run.stderr).toContain(`cannot write the backup into ${ro}`);
			expect(run.stdout).toContain('Encrypted etcd backup: failed');
		} finally {
			await shOk(tb, `umount ${ro}`);
		}
		expect(await readdir(tb.hostPath(STAGING))).toEqual([]);
		expect(await readdir(tb.hostPath(ro))).toEqual([]);
		expect(await plaintextFiles(tb, watched)).toEqual([]);
	});

	it('passphrase backups restore with the passphrase; retention keeps the newest N', async () => {
		const out = `${WORK}/passphrase`;
		const pass = `${WORK}/passphrase.txt`;
		const passphrase = `pp-${randomBytes(12).toString('hex')}`;
		await tb.writeFile(pass, `${passphrase}\n`, {mode: 0o600});
		// Two older backups (and an unrelated file) that retention must judge by name only.
		await shOk(tb, `mkdir -p ${out}/etcd-backup-20000101T000000Z ${out}/etcd-backup-20010101T000000Z && touch ${out}/notes.txt`);
		const run = await cli(tb, ['backup', '--yes', '--plain', '--passphrase-file', pass, '--output', out, '--keep', '1']);
		expect(run.exitCode, run.stderr.slice(-3000)).toBe(0);
		expect(run.stderr).toContain('Retention: removed etcd-backup-20000101T000000Z, etcd-backup-20010101T000000Z');
		expect(run.stdout + run.stderr).not.toContain(passphrase);
		const names = await backupsIn(tb, out);
		expect(names).toHaveLength(1);
		expect((await readdir(tb.hostPath(out))).sort()).toEqual([names[0], 'notes.txt'].sort());
		const manifest = JSON.parse(await tb.readFile(`${out}/${names[0]}/manifest.json`, 'utf8')) as Manifest;
		expect(manifest.encryptedTo).toEqual({passphrase: true});

		const check = await cli(tb, ['restore-check', '--output', out, '--passphrase-file', pass]);
		expect(check.exitCode, `${check.stdout}\n${check.stderr.slice(-2000)}`).toBe(0);
		expect(check.stdout + check.stderr).not.toContain(passphrase);
		const wrong = `${WORK}/wrong-passphrase.txt`;
		await tb.writeFile(wrong, 'not the passphrase\n', {mode: 0o600});
		const refused = await cli(tb, ['restore-check', '--output', out, '--passphrase-file', wrong]);
		expect(refused.exitCode).toBe(1);
		expect(refused.stdout).toMatch(/FAIL {2}The snapshot decrypts/);
		expect(await plaintextFiles(tb, watched)).toEqual([]);
	});

	it('a staging directory left by a killed run (plaintext) is removed by the next backup', async () => {
		// As a run killed with SIGKILL between snapshot and encryption would leave it: its pid is gone.
		const stale = `${STAGING}/backup-999999-AbCdEf`;
		await shOk(tb, `mkdir -p ${stale} && chmod 700 ${stale} && cp /var/lib/etcd/member/snap/db ${stale}/snapshot.db`);
		expect(await plaintextFiles(tb, [STAGING])).toEqual([`${stale}/snapshot.db`]);
		const run = await cli(tb, ['backup', '--yes', '--plain', '--recipient', recipient, '--output', OUT]);
		expect(run.exitCode, run.stderr.slice(-3000)).toBe(0);
		expect(run.stderr).toContain(`removed ${stale}, left by an earlier run that was killed (pid 999999)`);
		expect(await readdir(tb.hostPath(STAGING))).toEqual([]);
		expect(await plaintextFiles(tb, watched)).toEqual([]);
	});
});

import {execFileSync, spawnSync} from 'node:child_process';
import {mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {describe, expect, it} from 'vitest';
import {
	backupId,
	backupsToPrune,
	isBackupId,
	keysInUse,
	MANIFEST_FORMAT,
	ManifestError,
	parseManifest,
	renderManifest,
	splitRecipients,
	type BackupManifest,
} from '../../source/backup/manifest.js';
import {RecipientError} from '../../source/backup/recipients.js';
import {backupTemplates} from '../../source/backup/templates.generated.js';
import {backupArgv, renderUnits, systemdWord} from '../../source/backup/units.js';
import {snapshotEndpoint} from '../../source/backup/etcd.js';
import {parseCli} from '../../source/cli/args.js';
import {generateIdentity} from '../../source/crypto/age.js';
import {InputError, type StageAnswers, type TaskChange} from '../../source/engine/contract.js';
import {parseEncryptionConfig} from '../../source/kube/encryption-config.js';
import {backupStage} from '../../source/stages/backup.js';
import {discover} from '../../source/discover/files.js';
import {MemoryHost} from './helpers/memory-host.js';

const demoDir = fileURLToPath(new URL('../../demo/', import.meta.url));
const templatesDir = fileURLToPath(new URL('../../templates/backup/', import.meta.url));
const recipient = generateIdentity().recipient;
const other = generateIdentity().recipient;

const SECRET_A = 'c2VjcmV0LWtleS1tYXRlcmlhbC1BQUFBQUFBQUFBQUE=';
const SECRET_B = 'c2VjcmV0LWtleS1tYXRlcmlhbC1CQkJCQkJCQkJCQkI=';
const configText = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets, configmaps]
    providers:
      - secretbox:
          keys:
            - name: key2
              secret: ${SECRET_B}
            - name: key1
              secret: ${SECRET_A}
      - identity: {}
`;

function manifest(): BackupManifest {
	return {
		format: MANIFEST_FORMAT,
		id: 'etcd-backup-20240131T020000Z',
		createdAt: '2024-01-31T02:00:00.000Z',
		encryptedTo: {recipients: [recipient]},
		snapshot: {file: 'snapshot.db.age', sha256: 'a'.repeat(64), bytes: 10, encryptedSha256: 'b'.repeat(64), encryptedBytes: 200},
		etcd: {endpoint: 'https://127.0.0.1:2379', revision: 42, hash: 1, totalKey: 50, totalSize: 4096, keys: 40},
		kubernetes: {version: '1.20.2', etcdPrefix: '/registry', resources: ['secrets']},
		encryptionConfig: {file: 'encryption-config.yaml.age', path: '/etc/kubernetes/enc/encryption-config.yaml', sha256: 'c'.repeat(64), encryptedSha256: 'd'.repeat(64), keys: []},
	};
}

describe('backup manifest', () => {
	it('names backups by UTC time, and only those names count as backups', () => {
		expect(backupId(new Date('2024-01-31T02:03:04.567Z'))).toBe('etcd-backup-20240131T020304Z');
		expect(isBackupId('etcd-backup-20240131T020304Z')).toBe(true);
		for (const name of ['.etcd-backup-20240131T020304Z.partial', 'etcd-backup-latest', 'etcd-backup-20240131T020304Z.old', 'notes.txt']) {
			expect(isBackupId(name)).toBe(false);
		}
	});

	it('lists the keys in use by provider and name only, never their secrets', () => {
		const {config} = parseEncryptionConfig(configText, 'config.yaml');
		const keys = keysInUse(config);
		expect(keys).toEqual([
			{resources: ['secrets', 'configmaps'], provider: 'secretbox', name: 'key2', primary: true},
			{resources: ['secrets', 'configmaps'], provider: 'secretbox', name: 'key1', primary: false},
			{resources: ['secrets', 'configmaps'], provider: 'identity', name: 'identity', primary: false},
		]);
		const text = renderManifest({...manifest(), encryptionConfig: {...manifest().encryptionConfig!, keys}});
		expect(text).not.toContain(SECRET_A);
		expect(text).not.toContain(SECRET_B);
	});

	it('round-trips and rejects a damaged manifest naming the field', () => {
		expect(parseManifest(renderManifest(manifest()))).toEqual(manifest());
		const broken = (change: (m: Record<string, any>) => void): string => {
			const data = JSON.parse(renderManifest(manifest())) as Record<string, any>;
			change(data);
			return JSON.stringify(data);
		};
		expect(() => parseManifest('{')).toThrow(ManifestError);
		expect(() => parseManifest(broken(m => (m['format'] = 'other/v9')))).toThrow(/format is "other\/v9"/);
		expect(() => parseManifest(broken(m => (m['snapshot'].sha256 = 'xyz')))).toThrow(/snapshot\.sha256/);
		expect(() => parseManifest(broken(m => (m['snapshot'].file = '../etc/shadow')))).toThrow(/snapshot\.file/);
		expect(() => parseManifest(broken(m => (m['etcd'].revision = 'many')))).toThrow(/etcd\.revision/);
		expect(() => parseManifest(broken(m => (m['encryptedTo'] = {})))).toThrow(/encryptedTo/);
		expect(() => parseManifest(broken(m => (m['encryptionConfig'].file = 'x')))).toThrow(/encryptionConfig\.file/);
	});

	it('retention keeps the newest N complete backups and ignores everything else', () => {
		const names = ['etcd-backup-20240103T000000Z', 'notes.txt', 'etcd-backup-20240101T000000Z', '.etcd-backup-20240104T000000Z.partial', 'etcd-backup-20240102T000000Z'];
		expect(backupsToPrune(names, 2)).toEqual(['etcd-backup-20240101T000000Z']);
		expect(backupsToPrune(names, 1)).toEqual(['etcd-backup-20240101T000000Z', 'etcd-backup-20240102T000000Z']);
		expect(backupsToPrune(names, 3)).toEqual([]);
		expect(backupsToPrune(names, 0)).toEqual([]);
	});

	it('takes the snapshot from the local member when the apiserver lists several', () => {
		expect(snapshotEndpoint({endpoints: ['https://10.0.0.11:2379', 'https://127.0.0.1:2379']})).toBe('https://127.0.0.1:2379');
		expect(snapshotEndpoint({endpoints: ['https://10.0.0.11:2379', 'https://10.0.0.12:2379']})).toBe('https://10.0.0.11:2379');
	});
});

describe('recipients', () => {
	it('splits, checks and deduplicates age recipients', () => {
		expect(splitRecipients(`${recipient}, ${other}\n${recipient}`)).toEqual([recipient, other]);
		expect(splitRecipients([recipient, other])).toEqual([recipient, other]);
		expect(() => splitRecipients('age1notarecipient')).toThrow(RecipientError);
	});

	it('never echoes a secret key given as a recipient', () => {
		const {identity} = generateIdentity();
		let message = '';
		try {
			splitRecipients(identity);
		} catch (error) {
			message = (error as Error).message;
		}
		expect(message).toMatch(/secret key/);
		expect(message).not.toContain(identity);
		expect(message).not.toContain(identity.slice(20, 40));
	});
});

describe('backup and restore-check flags', () => {
	it('maps backup flags to the backup stage answers', () => {
		const options = parseCli(['backup', '--recipient', recipient, '--recipient', other, '--output', '/srv/backups', '--keep', '3']);
		expect(options.command).toBe('backup');
		expect(options.set['backup']).toEqual({protect: 'recipients', recipients: `${recipient},${other}`, output: '/srv/backups', keep: '3'});
		const pass = parseCli(['backup', '--passphrase-file', '/root/pass']);
		expect(pass.set['backup']).toEqual({protect: 'passphrase', passphraseFile: '/root/pass'});
	});

	it('refuses conflicting or misplaced flags with a message naming them', () => {
		expect(() => parseCli(['backup', '--recipient', recipient, '--passphrase-file', '/p'])).toThrow(/either --recipient .* or --passphrase-file/);
		expect(() => parseCli(['backup', '--identity', '/k'])).toThrow(/--identity belongs to etcd-harden restore-check/);
		expect(() => parseCli(['--recipient', recipient])).toThrow(/--recipient belongs to etcd-harden backup, not harden/);
		expect(() => parseCli(['backup', '--recipient', 'age1bogus'])).toThrow(InputError);
		expect(() => parseCli(['backup', 'extra'])).toThrow(/unexpected argument "extra"/);
		expect(() => parseCli(['restore-check', '/a', '/b'])).toThrow(/unexpected argument/);
	});

	it('restore-check takes one backup directory and an identity', () => {
		const options = parseCli(['restore-check', '/srv/backups/etcd-backup-20240131T020000Z', '--identity', '/home/me/key.txt', '--json']);
		expect(options.backup.backupDir).toBe('/srv/backups/etcd-backup-20240131T020000Z');
		expect(options.backup.identity).toBe('/home/me/key.txt');
		expect(options.set['backup']).toBeUndefined();
	});
});

describe('backup stage planning', () => {
	const answers = (extra: StageAnswers = {}): StageAnswers => ({output: '/var/backups/etcd-harden', protect: 'recipients', recipients: recipient, keep: '7', schedule: 'none', ...extra});

	it('plans one task with node paths, public recipients and the etcd connection; no secret in the params', async () => {
		const host = MemoryHost.fromDir(demoDir);
		host.put('/etc/kubernetes/enc/encryption-config.yaml', configText);
		const facts = await discover(host);
		const plan = backupStage.plan(facts, answers(), {randomBytes: () => Buffer.alloc(0), now: new Date('2024-01-31T02:00:00Z')});
		expect(plan.changes).toHaveLength(1);
		const task = plan.changes[0] as TaskChange;
		expect(task.task).toBe('etcd-backup');
		expect(task.params).toMatchObject({
			id: 'etcd-backup-20240131T020000Z',
			outputDir: '/var/backups/etcd-harden',
			stagingParent: '/var/lib/etcd-harden/tmp',
			recipients: [recipient],
			keep: 7,
			etcdPrefix: '/registry',
		});
		expect((task.params['connection'] as {endpoints: string[]}).endpoints.length).toBeGreaterThan(0);
		const serialized = JSON.stringify(plan);
		expect(serialized).not.toContain(SECRET_A);
		expect(serialized).not.toContain(SECRET_B);
	});

	it('a passphrase backup carries the file path, never a passphrase; the schedule adds the units', async () => {
		const facts = await discover(MemoryHost.fromDir(demoDir));
		const plan = backupStage.plan(facts, answers({protect: 'passphrase', passphraseFile: '/root/backup-pass', schedule: 'daily', program: '/usr/local/bin/etcd-harden'}), {
			randomBytes: () => Buffer.alloc(0),
			now: new Date('2024-01-31T02:00:00Z'),
		});
		const task = plan.changes[0] as TaskChange;
		expect(task.params['passphraseFile']).toBe('/root/backup-pass');
		expect(task.params['recipients']).toBeUndefined();
		expect(plan.changes.map(change => (change.kind === 'write-file' ? change.path : change.kind === 'run' ? change.argv.join(' ') : change.task))).toEqual([
			'etcd-backup',
			'/etc/systemd/system/etcd-harden-backup.service',
			'/etc/systemd/system/etcd-harden-backup.timer',
			'systemctl daemon-reload',
			'systemctl enable --now etcd-harden-backup.timer',
		]);
		expect(plan.warnings?.join('\n')).toMatch(/no encryption config/);
	});

	it('never writes backups into the manifests directory; validates answers', () => {
		const question = (id: string) => backupStage.questions({} as never, {}).find(q => q.id === id)!;
		expect(question('output').validate!('/etc/kubernetes/manifests', {})).toMatch(/kubelet starts every file there/);
		expect(question('output').validate!('/etc/kubernetes/manifests/backups', {})).toMatch(/never go into/);
		expect(question('output').validate!('relative/dir', {})).toMatch(/absolute path/);
		expect(question('recipients').validate!('age1nope', {})).toMatch(/not an age X25519 recipient/);
		expect(question('keep').validate!('-1', {})).toMatch(/whole number/);
		expect(question('keep').validate!('0', {})).toBeUndefined();
	});
});

describe('systemd units', () => {
	it('the generated module matches templates/backup (run node templates/backup/generate.mjs)', () => {
		const files = readdirSync(templatesDir).filter(name => /\.(service|timer)$/.test(name)).sort();
		expect(Object.keys(backupTemplates).sort()).toEqual(files);
		for (const name of files) expect(backupTemplates[name as keyof typeof backupTemplates]).toBe(readFileSync(join(templatesDir, name), 'utf8'));
	});

	it('quotes ExecStart words for systemd: spaces, quotes, % specifiers and $ expansion', () => {
		expect(systemdWord('/usr/bin/etcd-harden')).toBe('/usr/bin/etcd-harden');
		expect(systemdWord('/srv/my backups')).toBe('"/srv/my backups"');
		expect(systemdWord('/srv/100%')).toBe('"/srv/100%%"');
		expect(systemdWord('/srv/$HOME')).toBe('"/srv/$$HOME"');
		expect(systemdWord('a"b')).toBe('"a\\"b"');
	});

	it('the service runs the same backup; the timer has the schedule', () => {
		const options = {program: ['/usr/bin/node', '/opt/etcd-harden/dist/cli.js'], output: '/srv/etcd backups', recipients: [recipient], keep: 14, schedule: 'daily' as const};
		expect(backupArgv(options)).toEqual(['/usr/bin/node', '/opt/etcd-harden/dist/cli.js', 'backup', '--yes', '--plain', '--output', '/srv/etcd backups', '--keep', '14', '--recipient', recipient]);
		const units = renderUnits(options);
		expect(units.service).toContain(`ExecStart=/usr/bin/node /opt/etcd-harden/dist/cli.js backup --yes --plain --output "/srv/etcd backups" --keep 14 --recipient ${recipient}\n`);
		expect(units.timer).toContain('OnCalendar=*-*-* 02:00:00\n');
		expect(units.timer).toContain('Persistent=true\n');
		expect(units.service + units.timer).not.toMatch(/\{\{/);
	});

	// systemd-analyze comes with systemd (present on every systemd node and on this test machine).
	it('systemd-analyze verify accepts the rendered units', () => {
		const dir = mkdtempSync(join(tmpdir(), 'etcd-harden-units-'));
		try {
			const units = renderUnits({program: [process.execPath, fileURLToPath(import.meta.url)], output: '/var/backups/etcd-harden', passphraseFile: '/root/pass', keep: 7, schedule: 'weekly'});
			writeFileSync(join(dir, 'etcd-harden-backup.service'), units.service);
			writeFileSync(join(dir, 'etcd-harden-backup.timer'), units.timer);
			const result = spawnSync('systemd-analyze', ['verify', '--man=no', join(dir, 'etcd-harden-backup.timer'), join(dir, 'etcd-harden-backup.service')], {encoding: 'utf8'});
			// Complaints about the host's own units are not ours; ours must be clean.
			const ours = result.stderr.split('\n').filter(line => line.includes('etcd-harden-backup'));
			expect(ours).toEqual([]);
			expect(execFileSync('systemd-analyze', ['calendar', 'Sun *-*-* 02:00:00'], {encoding: 'utf8'})).toContain('Next elapse');
		} finally {
			rmSync(dir, {recursive: true, force: true});
		}
	});
});

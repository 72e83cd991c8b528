// Plaintext history on a live control plane (real etcd 3.4, real kube-apiserver 1.20.2, the
// built CLI in the testbed's namespaces), one testbed for the whole file, in order:
// a Secret with a unique marker value -> enable without the purge: the marker is in etcd's db
// file, status and the reencrypt stage's verify report the records, a backup is refused (and
// written, flagged, with --allow-plaintext-history) -> purge-history: the marker is gone from the
// db file and from a fresh `etcdctl snapshot save`, status reports 0 in the db and the WAL count
// -> a backup is accepted and restore-check reports 0 -> rotate (the purge runs inside it): no
// value under the pruned key remains in the db file.
import {randomBytes} from 'node:crypto';
import {readFile} from 'node:fs/promises';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {startTestbed, type Testbed} from '../testbed/index.js';
import {CLI, cli, ENABLE, ROTATE, show, sleep} from './rotate-helpers.js';

const DB = '/var/lib/etcd/member/snap/db';
const OUT = '/var/lib/testbed/purge-backups';
const KEY = '/var/lib/testbed/purge-backup.key';
const marker = `marker-${randomBytes(12).toString('hex')}`;

type Row = {stage: string; id: string; status: string; actual?: string; remediation?: string};

let tb: Testbed;
let recipient: string;

/** Occurrences of `needle` in a file inside the testbed (read from the host side). */
async function occurrences(path: string, needle: string | Buffer): Promise<number> {
	const data = await readFile(tb.hostPath(path));
	let count = 0;
	for (let at = data.indexOf(needle); at !== -1; at = data.indexOf(needle, at + 1)) count++;
	return count;
}

async function statusRows(): Promise<{exitCode: number; rows: Row[]}> {
	const run = await cli(tb, ['status', '--json', '--only', 'purge-history']);
	return {exitCode: run.exitCode, rows: JSON.parse(run.stdout) as Row[]};
}

async function backups(): Promise<string[]> {
	const listed = await tb.exec(['ls', OUT], {reject: false});
	return String(listed.stdout).split('\n').filter(name => name.startsWith('etcd-backup-'));
}

beforeAll(async () => {
	tb = await startTestbed({secrets: 20, configMaps: 2, namespaces: 1});
	await tb.kubectl(['-n', 'default', 'create', 'secret', 'generic', 'purge-marker', `--from-literal=value=${marker}`]);
	await tb.exec(['age-keygen', '-o', KEY]);
	recipient = String((await tb.exec(['age-keygen', '-y', KEY])).stdout).trim();
}, 300_000);

afterAll(async () => {
	await tb?.stop();
});

describe('purge-history on a live control plane', () => {
	it('before the purge: the marker is in the db file, status and verify report the records, a backup is refused', async () => {
		const enable = await cli(tb, ENABLE);
		expect(enable.exitCode, show(enable)).toBe(0);
		// Every current value is encrypted, yet the old revision with the marker is still in the file.
		expect(await occurrences(DB, marker)).toBeGreaterThan(0);
		// The reencrypt stage's verify reports the records (a warning: the purge comes next).
		expect(enable.stderr).toMatch(/etcd's data file holds no plaintext history of secrets: .*\d+ plaintext secrets \(until purge-history runs\)/);

		const status = await statusRows();
		expect(status.exitCode).toBe(1);
		const db = status.rows.find(row => row.id === 'history.db')!;
		expect(db.status).toBe('FAIL');
		expect(db.actual).toMatch(/\/var\/lib\/etcd\/member\/snap\/db \([\d.]+ MB\): \d+ plaintext secrets/);
		expect(Number(/: (\d+) plaintext secrets/.exec(db.actual!)![1])).toBeGreaterThanOrEqual(21);
		expect(db.remediation).toContain('etcd-harden --only purge-history');

		const refused = await cli(tb, ['backup', '--yes', '--plain', '--recipient', recipient, '--output', OUT]);
		expect(refused.exitCode, show(refused)).not.toBe(0);
		expect(refused.stdout + refused.stderr).toMatch(/the snapshot holds \d+ plaintext record\(s\) of secrets.*Nothing was written\. Run etcd-harden --only purge-history first/s);
		expect(await backups()).toEqual([]);
		// No plaintext snapshot left behind in the staging directory.
		expect(String((await tb.exec(['sh', '-c', 'ls -A /var/lib/etcd-harden/tmp 2>/dev/null || true'])).stdout).trim()).toBe('');

		const flagged = await cli(tb, ['backup', '--yes', '--plain', '--recipient', recipient, '--output', OUT, '--allow-plaintext-history']);
		expect(flagged.exitCode, show(flagged)).toBe(0);
		const [kept] = await backups();
		const manifest = JSON.parse(await tb.readFile(`${OUT}/${kept}/manifest.json`, 'utf8')) as {plaintextHistory: {plaintext: number; allowed: string}};
		expect(manifest.plaintextHistory.plaintext).toBeGreaterThan(0);
		expect(manifest.plaintextHistory.allowed).toBe('--allow-plaintext-history');
		const check = await cli(tb, ['restore-check', `${OUT}/${kept}`, '--identity', KEY, '--json']);
		expect(check.exitCode, show(check)).toBe(0);
		const report = JSON.parse(check.stdout) as {checks: Row[]};
		const history = report.checks.find(row => row.id === 'snapshot.history')!;
		expect(history.status).toBe('warn');
		expect(history.actual).toMatch(/^[1-9]\d* plaintext record\(s\) of secrets, 0 under keys no longer in the config \(written with --allow-plaintext-history\)/);
		await tb.exec(['rm', '-rf', `${OUT}/${kept}`]);
	});

	it('the purge: previewed as exact commands, then the marker is gone from the db file and a fresh snapshot', async () => {
		const preview = await cli(tb, ['--yes', '--plain', '--dry-run', '--only', 'purge-history']);
		expect(preview.exitCode, show(preview)).toBe(0);
		expect(preview.stderr).toMatch(/etcdctl --endpoints=https:\/\/\S+ --cacert \/etc\/kubernetes\/pki\/etcd\/ca\.crt .*compact REV --physical/);
		expect(preview.stderr).toMatch(/Defragment member cp-1 \(leader, 1 of 1\): db [\d.]+ MB, blocks it for about \d+ s/);
		expect(preview.stderr).toMatch(/etcdctl --endpoints=https:\/\/\S+ .*--command-timeout=\d+s defrag/);
		expect(preview.stderr).toContain('cannot be undone');
		expect(await occurrences(DB, marker)).toBeGreaterThan(0);

		// A paginated LIST in flight: its first page read at revision RV0, then a write moves etcd on.
		const first = JSON.parse(String((await tb.kubectl(['get', '--raw', '/api/v1/secrets?limit=1'])).stdout)) as {metadata: {continue: string}};
		const continueList = async () => (await tb.kubectl(['get', '--raw', `/api/v1/secrets?limit=1&continue=${encodeURIComponent(first.metadata.continue)}`], {reject: false})).exitCode === 0;
		await tb.kubectl(['-n', 'default', 'create', 'configmap', 'purge-after-list', '--from-literal=a=b']);

		// The purge proves a revision R >= RV0 clean, then waits --compaction-grace before compacting
		// at R: the LIST's next page still reads during the wait (compacting at once expired it).
		const started = Date.now();
		const child = tb.exec([process.execPath, CLI, '--yes', '--plain', '--compaction-grace', '12', '--only', 'encryption-config,apiserver-manifest,reencrypt,purge-history'], {reject: false, stdin: 'ignore', env: {CI: 'true'}});
		let provenAt: number | undefined;
		let stderr = '';
		child.stderr!.on('data', (chunk: Buffer) => {
			stderr += String(chunk);
			if (provenAt === undefined && /raw etcd scan: all \d+ current value\(s\) .* at revision \d+/.test(stderr)) provenAt = Date.now();
		});
		const pages: Array<{at: number; ok: boolean}> = [];
		let exited = false;
		const done = child.then(result => {
			exited = true;
			return result;
		});
		while (!exited) {
			pages.push({at: Date.now(), ok: await continueList()});
			await sleep(400);
		}
		const result = await done;
		const run = {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
		expect(run.exitCode, show(run)).toBe(0);
		expect(provenAt, show(run)).toBeDefined();
		const proven = Number(/at revision (\d+)/.exec(run.stderr)![1]);
		expect(run.stderr).toContain(`compacted etcd at revision ${proven}`);
		const during = pages.filter(page => page.at >= provenAt! + 6000 && page.at <= started + 60_000);
		expect(during.some(page => page.ok), JSON.stringify({provenAt: provenAt! - started, pages: pages.map(page => [page.at - started, page.ok])})).toBe(true);
		// After the compaction the same LIST has expired (its revision is below R): the grace is what kept it.
		expect(await continueList()).toBe(false);
		expect(run.stdout).toContain('Purge plaintext history: applied and verified.');
		expect(run.stderr).toMatch(/compacted etcd at revision \d+/);
		expect(run.stderr).toMatch(/member cp-1 \(\S+, leader\): defragmented in [\d.]+ s; db [\d.]+ MB -> [\d.]+ MB; healthy, no NOSPACE alarm, kube-apiserver ready/);
		expect(await occurrences(DB, marker)).toBe(0);

		await tb.etcdctl(['snapshot', 'save', '/var/lib/testbed/fresh.db']);
		expect(await occurrences('/var/lib/testbed/fresh.db', marker)).toBe(0);
		await tb.exec(['rm', '-f', '/var/lib/testbed/fresh.db']);

		const status = await statusRows();
		const db = status.rows.find(row => row.id === 'history.db')!;
		expect(db.status, JSON.stringify(status.rows)).toBe('PASS');
		expect(db.actual).toMatch(/: 0 plaintext records$/);
		const wal = status.rows.find(row => row.id === 'history.wal')!;
		// The WAL still has what etcd received before encryption; status counts it and says why it stays.
		const walCount = Number(/: (\d+) plaintext secrets/.exec(wal.actual ?? '')?.[1] ?? '0');
		const walMarkers = (await tb.exec(['sh', '-c', `cat /var/lib/etcd/member/wal/*.wal | grep -c -a ${marker} || true`])).stdout;
		expect(Number(String(walMarkers).trim())).toBeGreaterThan(0);
		expect(walCount).toBeGreaterThan(0);
		expect(wal.status).toBe('WARN');
		// kubeadm sets --snapshot-count=10000; the text follows the manifest.
		expect(wal.remediation).toMatch(/--snapshot-count=10000 applied writes.*--max-wals=5 files.*encrypt the disk/);
		expect(status.exitCode).toBe(0);

		// Repeatable: nothing left to purge, nothing changes.
		const again = await cli(tb, ['--yes', '--plain', '--only', 'purge-history']);
		expect(again.exitCode, show(again)).toBe(0);
		expect(again.stdout).toContain('Purge plaintext history: already in place, nothing changed.');
	});

	it('after the purge a backup is accepted and restore-check reports 0', async () => {
		const run = await cli(tb, ['backup', '--yes', '--plain', '--recipient', recipient, '--output', OUT]);
		expect(run.exitCode, show(run)).toBe(0);
		const kept = (await backups()).at(-1);
		const manifest = JSON.parse(await tb.readFile(`${OUT}/${kept}/manifest.json`, 'utf8')) as {plaintextHistory: object};
		expect(manifest.plaintextHistory).toEqual({plaintext: 0, removedKeys: 0});
		const check = await cli(tb, ['restore-check', `${OUT}/${kept}`, '--identity', KEY, '--json']);
		expect(check.exitCode, show(check)).toBe(0);
		const history = (JSON.parse(check.stdout) as {checks: Row[]}).checks.find(row => row.id === 'snapshot.history')!;
		expect(history).toMatchObject({status: 'pass', actual: '0 plaintext record(s) of secrets, 0 under keys no longer in the config'});
	});

	it('rotate takes the safety snapshot first and purges too: no value under the pruned key remains in the db file', async () => {
		expect(await occurrences(DB, 'k8s:enc:secretbox:v1:key1:')).toBeGreaterThan(0);
		const before = await backups();
		const run = await cli(tb, [...ROTATE, '--compaction-grace', '0', '--set', 'safety-backup.take=true', '--set', `safety-backup.recipients=${recipient}`, '--set', `safety-backup.output=${OUT}`]);
		expect(run.exitCode, show(run)).toBe(0);
		expect(run.stdout).toContain('Safety snapshot before rewriting objects: applied and verified.');
		const safety = (await backups()).filter(name => !before.includes(name));
		expect(safety).toHaveLength(1);
		expect(run.stderr).toContain(`Backup written: ${OUT}/${safety[0]}`);
		// Taken before anything changed: the config it archives has key1 and identity, not key2 yet.
		const manifest = JSON.parse(await tb.readFile(`${OUT}/${safety[0]}/manifest.json`, 'utf8')) as {encryptionConfig: {keys: Array<{name: string}>}; plaintextHistory: object};
		expect(manifest.encryptionConfig.keys.map(key => key.name)).toEqual(['key1', 'identity']);
		expect(manifest.plaintextHistory).toEqual({plaintext: 0, removedKeys: 0});
		expect(run.stdout).toContain('Purge plaintext history: applied and verified.');
		expect(run.stdout).toContain('Rotate: prune the old keys: applied and verified.');
		expect(await occurrences(DB, 'k8s:enc:secretbox:v1:key1:')).toBe(0);
		expect(await occurrences(DB, 'k8s:enc:secretbox:v1:key2:')).toBeGreaterThan(0);
		const status = await statusRows();
		const db = status.rows.find(row => row.id === 'history.db')!;
		expect(db).toMatchObject({status: 'PASS'});
		expect(db.actual).toMatch(/: 0 plaintext records$/);
	});
});

/** purge-history's planning (pure) and the parsing it relies on. */
import {fileURLToPath} from 'node:url';
import {describe, expect, it} from 'vitest';
import {discover} from '../../source/discover/files.js';
import {InputError, type PlanContext, type TaskChange} from '../../source/engine/contract.js';
import {defragOrder, defragSeconds, parseEndpointStatus, parseMemberList} from '../../source/etcd/members.js';
import type {HistoryFacts} from '../../source/etcd/types.js';
import {parseBackupService} from '../../source/backup/setup.js';
import type {Facts} from '../../source/stages/facts.js';
import {purgeHistoryStage} from '../../source/stages/purge-history.js';
import {MemoryHost} from './helpers/memory-host.js';

const demoDir = fileURLToPath(new URL('../../demo/', import.meta.url));
const context: PlanContext = {randomBytes: size => Buffer.alloc(size), now: new Date('2030-01-01T00:00:00Z')};

function history(overrides: Partial<HistoryFacts> = {}): HistoryFacts {
	return {
		dataDir: '/var/lib/etcd',
		resources: ['secrets'],
		uncounted: [],
		db: {path: '/var/lib/etcd/member/snap/db', bytes: 120e6, plaintext: {secrets: 3}, plaintextTotal: 3, removedKeys: {}, removedTotal: 0},
		wal: {path: '/var/lib/etcd/member/wal', bytes: 64e6, plaintext: {secrets: 5}, plaintextTotal: 5, removedKeys: {}, removedTotal: 0, files: 1},
		walSettings: {snapshotCount: 10000, maxWals: 5},
		members: [
			{id: 'a1', name: 'cp-1', endpoint: 'https://10.0.0.1:2379', leader: true, dbSize: 120e6},
			{id: 'b2', name: 'cp-2', endpoint: 'https://10.0.0.2:2379', leader: false, dbSize: 30e6},
			{id: 'c3', name: 'cp-3', endpoint: 'https://10.0.0.3:2379', leader: false, dbSize: 30e6},
		],
		revision: 900,
		alarms: [],
		...overrides,
	};
}

async function facts(overrides: Partial<HistoryFacts> = {}): Promise<Facts> {
	const base = await discover(MemoryHost.fromDir(demoDir));
	return {...base, cluster: {kubeconfig: '/etc/kubernetes/admin.conf', reachable: true, ready: true}, history: history(overrides)};
}

describe('purge-history plan', () => {
	it('compacts, then defragments the followers and the leader last, each previewed as its exact command', async () => {
		const plan = purgeHistoryStage.plan(await facts(), {}, context);
		const changes = plan.changes as TaskChange[];
		expect(changes.map(change => change.task)).toEqual(['etcd-compact-history', 'etcd-defrag-member', 'etcd-defrag-member', 'etcd-defrag-member']);
		expect(changes.slice(1).map(change => (change.params as {member: {name: string}}).member.name)).toEqual(['cp-2', 'cp-3', 'cp-1']);
		expect(changes[3]!.summary).toBe('Defragment member cp-1 (leader, 3 of 3): db 120.0 MB, blocks it for about 4 s');
		expect(changes[1]!.detail!.join('\n')).toMatch(/^etcdctl --endpoints=https:\/\/10\.0\.0\.2:2379 --cacert \S+ --cert \S+ --key \S+ --command-timeout=60s defrag$/m);
		expect(changes[0]!.detail!.join('\n')).toContain('compact REV --physical');
		expect(plan.notes!.join('\n')).toContain('cannot be undone');
		expect((changes[1]!.params as {kubeconfig?: string}).kubeconfig).toBe('/etc/kubernetes/admin.conf');
		// The compaction waits for LISTs in flight (default 30 s) and says what a longer one gets.
		expect((changes[0]!.params as {graceSeconds?: number}).graceSeconds).toBe(30);
		expect(changes[0]!.detail!.join('\n')).toMatch(/wait 30 s \(--compaction-grace\).*410 Expired/);
	});

	it('takes the grace from --compaction-grace (0: compacts at once, and says what that costs)', async () => {
		const plan = purgeHistoryStage.plan(await facts(), {}, {...context, settings: {compactionGraceSeconds: 0}});
		const compact = (plan.changes as TaskChange[])[0]!;
		expect((compact.params as {graceSeconds?: number}).graceSeconds).toBe(0);
		expect(compact.detail!.join('\n')).toMatch(/at once \(--compaction-grace 0\).*410 Expired/);
	});

	it('changes nothing when the db file is clean and nothing is rewritten in this run', async () => {
		const clean = {db: {...history().db!, plaintext: {secrets: 0}, plaintextTotal: 0}};
		expect(purgeHistoryStage.plan(await facts(clean), {}, context).changes).toEqual([]);
		// ...but runs after a re-encryption planned in the same run.
		const planned = {reencrypt: {changes: [{kind: 'run' as const, argv: ['true'], summary: 'x'}]}};
		expect(purgeHistoryStage.plan(await facts(clean), {}, {...context, planned}).changes).toHaveLength(4);
	});

	it('refuses to plan with a member down, no leader or a NOSPACE alarm', async () => {
		const down = history().members!.map(member => (member.name === 'cp-3' ? {...member, problem: 'context deadline exceeded'} : member));
		const withDown = await facts({members: down});
		expect(() => purgeHistoryStage.plan(withDown, {}, context)).toThrow(InputError);
		expect(() => purgeHistoryStage.plan(withDown, {}, context)).toThrow(/member cp-3 \(https:\/\/10\.0\.0\.3:2379\): context deadline exceeded/);
		const leaderless = await facts({members: history().members!.map(member => ({...member, leader: false}))});
		expect(() => purgeHistoryStage.plan(leaderless, {}, context)).toThrow(/no quorum/);
		const nospace = await facts({alarms: ['NOSPACE']});
		expect(() => purgeHistoryStage.plan(nospace, {}, context)).toThrow(/NOSPACE/);
	});

	it('verify fails while the db file holds plaintext; the WAL is a warning that says how long it stays', async () => {
		const checks = purgeHistoryStage.verify(await facts(), {});
		expect(checks.find(check => check.id === 'history.db')).toMatchObject({status: 'fail', actual: '/var/lib/etcd/member/snap/db (120.0 MB): 3 plaintext secrets'});
		const wal = checks.find(check => check.id === 'history.wal')!;
		expect(wal.status).toBe('warn');
		expect(wal.remediation).toMatch(/--snapshot-count=10000 applied writes.*--max-wals=5 files/);
	});

	it('is left out without a live control plane', async () => {
		const base = await discover(MemoryHost.fromDir(demoDir));
		expect(purgeHistoryStage.plan(base, {}, context).leftOut).toMatch(/no running control plane/);
	});
});

describe('etcdctl output and the backup unit', () => {
	it('keeps 64-bit member ids exact and orders followers before the leader', () => {
		const members = parseMemberList('{"header":{"cluster_id":17237436991929493444},"members":[{"ID":10276657743932975437,"name":"cp","clientURLs":["https://10.0.0.1:2379"]}]}');
		expect(members).toEqual([{id: '8e9e05c52164694d', name: 'cp', endpoint: 'https://10.0.0.1:2379'}]);
		const [status] = parseEndpointStatus('[{"Endpoint":"https://10.0.0.1:2379","Status":{"header":{"member_id":10276657743932975437,"revision":42},"leader":10276657743932975437,"dbSize":24576,"dbSizeInUse":16384}}]');
		expect(status).toEqual({endpoint: 'https://10.0.0.1:2379', memberId: '8e9e05c52164694d', leaderId: '8e9e05c52164694d', dbSize: 24576, dbSizeInUse: 16384, revision: 42});
		expect(defragOrder([{id: '1', name: 'a', endpoint: '', leader: true}, {id: '2', name: 'b', endpoint: '', leader: false}]).map(member => member.name)).toEqual(['b', 'a']);
		expect(defragSeconds(0)).toBe(1);
		expect(defragSeconds(2e9)).toBe(41);
	});

	it('reads the scheduled backup recipients back from its ExecStart', () => {
		const unit = '[Service]\nExecStart=/usr/bin/node "/opt/etcd harden/cli.js" backup --yes --plain --output /var/backups/eh --keep 7 --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n';
		expect(parseBackupService('/etc/systemd/system/etcd-harden-backup.service', unit)).toEqual({
			unit: '/etc/systemd/system/etcd-harden-backup.service',
			recipients: ['age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p'],
			output: '/var/backups/eh',
		});
		expect(parseBackupService('u', 'ExecStart=/bin/true backup\n')).toBeUndefined();
	});
});

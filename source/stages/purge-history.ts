/**
 * Stage purge-history: after re-encryption, the old revisions of every rewritten object still
 * hold its plaintext (or its value under a retired key) in etcd's data file, and in every
 * snapshot taken of it. This stage compacts etcd at the revision a raw scan proves every
 * current value on its primary key (after --compaction-grace seconds, so API LISTs in flight
 * finish), then defragments every member one at a
 * time, followers first and the leader last, each gated on its health, its db size, the
 * NOSPACE alarm and kube-apiserver's /readyz. Then a file-level scan of this member's data
 * directory proves the db file holds no plaintext of an encrypted resource.
 *
 * The WAL is not rewritten (see README, "Plaintext history"): its residue is reported with
 * its lifetime.
 */
import type {NodeStage} from './facts.js';
import type {StagePlan} from '../engine/contract.js';
import {InputError} from '../engine/contract.js';
import {etcdConnectionFromFlags, etcdPrefixFromFlags} from '../etcd/connection.js';
import {defragOrder, defragSeconds, megabytes} from '../etcd/members.js';
import {COMPACTION_GRACE_SECONDS, defragCommandTimeout, etcdCompactTask, etcdctlCommand, etcdDefragMemberTask} from '../etcd/purge.js';
import type {HistoryFacts} from '../etcd/types.js';
import {historyCounts as counts, historyChecks} from './history-checks.js';
import {scannedResources} from '../kube/encryption-config.js';
import type {Facts} from './facts.js';
import {reencryptStageId} from './reencrypt.js';

export const purgeHistoryStageId = 'purge-history';

function memberProblem(history: HistoryFacts): string | undefined {
	if (history.membersProblem) return history.membersProblem;
	const members = history.members ?? [];
	if (members.length === 0) return 'etcdctl member list returned no member';
	const down = members.filter(member => member.problem !== undefined);
	if (down.length > 0) return `${down.map(member => `member ${member.name || member.id} (${member.endpoint || 'no client URL'}): ${member.problem}`).join('; ')}. Defragmenting needs every member healthy: fix it first.`;
	if (!members.some(member => member.leader)) return 'no member reports a leader: the cluster has no quorum. Fix etcd first.';
	if (history.alarms?.includes('NOSPACE')) return 'etcd has a NOSPACE alarm: free space first (https://etcd.io/docs/v3.4/op-guide/maintenance/#space-quota), then etcdctl alarm disarm, then rerun.';
	return undefined;
}

function plan(facts: Facts, _answers: unknown, context: {planned?: Readonly<Record<string, StagePlan>>; settings?: {gateTimeoutSeconds?: number; compactionGraceSeconds?: number}}): StagePlan {
	const history = facts.history;
	if (!history || !facts.cluster) {
		return {changes: [], leftOut: "no running control plane was probed (etcd-harden runs with --root, or this node has no etcd manifest): the purge needs the live etcd and its data directory."};
	}
	if (history.problem) throw new InputError(history.problem);
	const rewrite = (context.planned?.[reencryptStageId]?.changes.length ?? 0) > 0;
	const db = history.db;
	const residue = (db?.plaintextTotal ?? 0) + (db?.removedTotal ?? 0);
	const notes: string[] = [];
	if (db) notes.push(`${db.path} (${megabytes(db.bytes)}) now: ${counts(db)}.`);
	if (!rewrite && residue === 0) {
		notes.push(history.resources.length === 0 ? 'No resource is encrypted on write: no plaintext history to purge.' : "etcd's data file holds no plaintext history: nothing to purge.");
		return {changes: [], notes};
	}
	const problem = memberProblem(history);
	if (problem) throw new InputError(problem);
	let connection;
	try {
		connection = etcdConnectionFromFlags(facts.apiserver.flags);
	} catch (error) {
		throw new InputError(`${(error as Error).message}: fix ${facts.apiserver.path}, then rerun.`);
	}
	const members = defragOrder(history.members!);
	const kubeconfig = facts.cluster.reachable && facts.cluster.ready ? facts.cluster.kubeconfig : undefined;
	const config = facts.encryption.config;
	const timeoutSeconds = context.settings?.gateTimeoutSeconds ?? 120;
	const graceSeconds = context.settings?.compactionGraceSeconds ?? COMPACTION_GRACE_SECONDS;
	const compact = etcdCompactTask.change(
		{connection, etcdPrefix: etcdPrefixFromFlags(facts.apiserver.flags), resources: scannedResources(config), graceSeconds, ...(config ? {configPath: facts.encryption.path} : {})},
		'Compact etcd at the revision a raw scan proves clean (every older revision is dropped)',
		[
			config
				? `first a raw etcd scan must find every current ${scannedResources(config).join(', ')} value on its primary key, else nothing is compacted; REV is the revision it read at`
				: `no encryption config: nothing to check before compacting; ${etcdctlCommand(connection, ['endpoint', 'status', '-w', 'json'])} gives the revision REV`,
			graceSeconds > 0
				? `then wait ${graceSeconds} s (--compaction-grace), so API LISTs already in flight finish: a paginated LIST that started before REV and is still running at the compaction gets 410 Expired and must start again`
				: 'then at once (--compaction-grace 0): a paginated LIST that started before REV and is still running gets 410 Expired and must start again',
			etcdctlCommand(connection, ['compact', 'REV', '--physical'], {commandTimeout: '600s'}),
		],
	);
	const defrags = members.map((member, index) => {
		const role = member.leader ? 'leader' : 'follower';
		const memberConnection = {...connection, endpoints: [member.endpoint]};
		return etcdDefragMemberTask.change(
			{connection, member: {name: member.name, id: member.id, endpoint: member.endpoint}, role, ...(member.dbSize === undefined ? {} : {dbSize: member.dbSize}), ...(kubeconfig ? {kubeconfig} : {}), timeoutSeconds},
			`Defragment member ${member.name} (${role}, ${index + 1} of ${members.length}): db ${megabytes(member.dbSize)}, blocks it for about ${defragSeconds(member.dbSize)} s`,
			[
				`before: ${etcdctlCommand(memberConnection, ['endpoint', 'health'])}; endpoint status (db size); alarm list (no NOSPACE)${kubeconfig ? '; kube-apiserver /readyz' : ''}`,
				etcdctlCommand(memberConnection, ['defrag'], {commandTimeout: `${defragCommandTimeout(member.dbSize)}s`}),
				`after: the same checks${kubeconfig ? '' : ' (kube-apiserver was not ready at planning: /readyz is not checked)'}; a member not healthy stops the run (waiting up to ${timeoutSeconds} s to tell whether it came back)`,
			],
		);
	});
	if (rewrite && residue === 0) notes.push('Re-encryption runs before this stage in this run: the objects it rewrites leave their old values in old revisions.');
	notes.push(
		`Defrag blocks each member while it runs (it answers no request): ${members.map(member => `${member.name} ${member.leader ? '(leader, last)' : '(follower)'} about ${defragSeconds(member.dbSize)} s for ${megabytes(member.dbSize)}`).join('; ')}. kube-apiserver keeps working through the other members${members.length === 1 ? ' (with one member, it waits for it)' : ''}.`,
		'Compaction and defragmentation cannot be undone: the old revisions are gone for good (that is the point). Take a backup first if you want them.',
		`The WAL (${history.dataDir}/member/wal) is not rewritten: etcd drops it on its own schedule (status reports what it still holds).`,
	);
	return {changes: [compact, ...defrags], notes};
}

export const purgeHistoryStage: NodeStage = {
	id: purgeHistoryStageId,
	title: 'Purge plaintext history',
	explain:
		'etcd keeps every old revision of an object until it is compacted, and the file keeps the bytes of compacted revisions ' +
		'until it is defragmented: after re-encryption the plaintext of every secret is still in the data file and in every backup ' +
		'taken from it. This stage compacts etcd at the revision a raw scan proves clean (after a grace period for API lists in flight), then defragments each member one at a time (followers ' +
		'first, the leader last), checking each is healthy before the next, and proves with a scan of the data file that no plaintext remains.',
	questions: () => [],
	plan: (facts, answers, context) => plan(facts, answers, context),
	verify: facts => historyChecks(facts, 'verify'),
	status: facts => historyChecks(facts, 'status'),
};

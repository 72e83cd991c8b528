/**
 * Tasks of the purge-history stage: drop etcd's old revisions (which still hold the values as
 * they were before re-encryption) and rewrite every member's data file without them.
 *
 * etcd-compact-history: a raw scan first proves every current value is on its primary key (a
 *   compaction keeps the current value of every key, so it must already be the encrypted one),
 *   at one revision R; then, after a grace period, `etcdctl compact R --physical` (returns once
 *   the compaction is applied to the backend). Cannot be undone: the old revisions are gone,
 *   which is the point.
 *
 *   Why R and the grace, not the current revision at once: a compaction at revision C expires
 *   every paginated LIST in flight that started before C (its continue token reads at its first
 *   page's revision: 410 "The provided continue parameter is too old"), so `kubectl get secrets
 *   -A` running at that moment fails. kube-apiserver's own compactor compacts at the revision
 *   it saw one interval (5 minutes) earlier for this reason. Compacting at the proven revision R
 *   after `graceSeconds` lets every LIST that started before R and takes less than the grace
 *   finish; LISTs that start later read at R or after and are not affected.
 * etcd-defrag-member: one member, gated before and after: `endpoint health`, no NOSPACE alarm,
 *   `endpoint status` (db size before and after), then `etcdctl defrag` on that member alone,
 *   then health, alarms and kube-apiserver's /readyz. A member that is not healthy after its
 *   defrag stops the run (after waiting to tell whether it came back). Cannot be undone either:
 *   a defrag rewrites the file with the same content minus the free pages.
 */
import {defineTask, type TaskContext} from '../engine/contract.js';
import {KubeApi} from '../kube/api.js';
import {parseEncryptionConfig} from '../kube/encryption-config.js';
import {loadKubeconfig} from '../kube/kubeconfig.js';
import {checkReady} from '../kube/restart-gate.js';
import type {EtcdConnection} from './connection.js';
import {etcdctlArgv, runEtcdctl, type EtcdctlOptions} from './etcdctl.js';
import {renderArgv} from '../host/types.js';
import {alarms, defragSeconds, endpointStatus, megabytes, memberHealthy} from './members.js';
import {scanResources} from './scan.js';

function lastLines(text: string, count = 2): string {
	return text.trim().split('\n').filter(Boolean).slice(-count).join(' ').slice(0, 400);
}

/** The exact etcdctl command line, as previews show it. */
export function etcdctlCommand(connection: EtcdConnection, args: readonly string[], options: EtcdctlOptions = {}): string {
	return renderArgv(etcdctlArgv(connection, args, options));
}

// ---- etcd-compact-history ----

export type CompactParams = {
	/** kube-apiserver's etcd client (the root role when etcd auth is on). */
	connection: EtcdConnection;
	etcdPrefix: string;
	/** Resources the raw scan checks. */
	resources: string[];
	/** Node path of the encryption config whose primaries the scan expects (re-read when the task runs). */
	configPath?: string;
	/** Seconds between reading the revision and compacting at it (--compaction-grace). Default COMPACTION_GRACE_SECONDS. */
	graceSeconds?: number;
};

/** The default of --compaction-grace: how long LISTs already in flight get to finish before the compaction. */
export const COMPACTION_GRACE_SECONDS = 30;

/**
 * The raw scan gate: every current value of every resource on its primary; else throws naming
 * what is left. Returns the revision the proof read at (the lowest of the resources'), or
 * undefined when there is no config to check against (or nothing was read).
 */
async function requireAllOnPrimary(params: CompactParams, context: TaskContext): Promise<number | undefined> {
	if (params.configPath === undefined) return undefined;
	const text = await context.host.readText(params.configPath);
	if (text === undefined) throw new Error(`${params.configPath} does not exist: cannot prove every value is on its primary key, so nothing was compacted.`);
	const {config, errors} = parseEncryptionConfig(text, params.configPath);
	if (!config) throw new Error(`${params.configPath} is not usable (${errors[0] ?? 'invalid'}): nothing was compacted.`);
	context.progress({label: 'raw etcd scan: is every current value on its primary key?'});
	const report = await scanResources(context.host, params.connection, params.resources, {config, etcdPrefix: params.etcdPrefix, signal: context.signal, maxListed: 5, listNotOnPrimary: false});
	const left = report.resources
		.map(scan => ({resource: scan.resource, count: (scan.notOnPrimaryCount ?? 0) + scan.unknown + (scan.keyNotInConfig ?? 0), primary: scan.primary}))
		.filter(entry => entry.count > 0);
	if (left.length > 0) {
		throw new Error(
			`the raw etcd scan finds ${left.map(entry => `${entry.count} ${entry.resource} not on ${entry.primary ?? 'the primary key'}`).join(', ')}: ` +
				'a compaction keeps every current value, so nothing was compacted. Run etcd-harden --only reencrypt, then rerun etcd-harden --only purge-history.',
		);
	}
	const revisions = report.resources.map(scan => scan.revision).filter(revision => revision > 0);
	const revision = revisions.length > 0 ? Math.min(...revisions) : undefined;
	context.log({level: 'info', text: `raw etcd scan: all ${report.keysScanned} current value(s) of ${params.resources.join(', ')} are on their primary key${revision === undefined ? '' : ` at revision ${revision}`}`});
	return revision;
}

export const etcdCompactTask = defineTask<CompactParams>('etcd-compact-history', {
	async run(params, context) {
		let revision = await requireAllOnPrimary(params, context);
		if (revision === undefined) {
			const endpoint = params.connection.endpoints[0]!;
			({revision} = await endpointStatus(context.host, params.connection, endpoint, {signal: context.signal}));
			if (!(revision > 0)) throw new Error(`etcdctl endpoint status ${endpoint} gave no revision: nothing was compacted.`);
		}
		// Measured from now (after the proof), which is at or after the moment R was current.
		const graceMs = (params.graceSeconds ?? COMPACTION_GRACE_SECONDS) * 1000;
		if (graceMs > 0) {
			context.progress({label: `waiting ${graceMs / 1000} s before compacting at revision ${revision}: API LISTs already in flight finish first (--compaction-grace)`});
			await context.host.sleep(graceMs, context.signal);
		}
		context.progress({label: `etcdctl compact ${revision} --physical`});
		const result = await runEtcdctl(context.host, params.connection, ['compact', String(revision), '--physical'], {readOnly: false, commandTimeout: '600s', timeoutMs: 660_000, signal: context.signal});
		if (result.exitCode !== 0) {
			// Someone (kube-apiserver compacts every 5 minutes) compacted at this revision or later meanwhile: the same result.
			if (/required revision has been compacted/.test(result.stderr)) {
				context.log({level: 'info', text: `etcd was already compacted at revision ${revision} or later`});
				return;
			}
			throw new Error(`etcdctl compact ${revision} --physical failed: ${lastLines(result.stderr || result.stdout)}`);
		}
		context.log({level: 'success', text: `compacted etcd at revision ${revision}: every older revision is gone (their pages are free until each member is defragmented)`});
	},
	// No undo: a compaction cannot be reversed (the stage says so before it asks).
});

// ---- etcd-defrag-member ----

export type DefragParams = {
	/** kube-apiserver's etcd client; its endpoints are replaced by the member's. */
	connection: EtcdConnection;
	member: {name: string; id: string; endpoint: string};
	/** Its role when the stage was planned. */
	role: 'follower' | 'leader';
	/** db size at planning (for the blocking estimate). */
	dbSize?: number;
	/** The admin kubeconfig when kube-apiserver was ready at planning: /readyz after the defrag. */
	kubeconfig?: string;
	/** How long to wait for the member (and kube-apiserver) after its defrag. Default 120 s. */
	timeoutSeconds?: number;
	pollMs?: number;
};

/** etcdctl's own timeout for a defrag: ten times the estimate, at least a minute. */
export function defragCommandTimeout(dbSize: number | undefined): number {
	return Math.max(60, defragSeconds(dbSize) * 10);
}

type Gate = {ok: boolean; detail: string; dbSize?: number};

async function gate(params: DefragParams, context: TaskContext, api: KubeApi | undefined): Promise<Gate> {
	const {host, signal} = context;
	const health = await memberHealthy(host, params.connection, params.member.endpoint, {signal});
	if (!health.healthy) return {ok: false, detail: `endpoint health: ${health.detail}`};
	let dbSize: number;
	try {
		dbSize = (await endpointStatus(host, params.connection, params.member.endpoint, {signal})).dbSize;
	} catch (error) {
		return {ok: false, detail: `endpoint status: ${(error as Error).message}`};
	}
	let active: string[];
	try {
		active = await alarms(host, {...params.connection, endpoints: [params.member.endpoint]}, {signal});
	} catch (error) {
		return {ok: false, detail: (error as Error).message, dbSize};
	}
	if (active.includes('NOSPACE')) return {ok: false, detail: 'etcd has a NOSPACE alarm (the cluster only serves reads and deletes)', dbSize};
	if (api) {
		const ready = await checkReady(api, signal);
		if (!ready.ready) return {ok: false, detail: `kube-apiserver /readyz: ${ready.detail}`, dbSize};
	}
	return {ok: true, detail: 'healthy', dbSize};
}

/** Poll the gate until it passes or `timeoutSeconds` pass; returns the last result and the seconds waited. */
async function waitGate(params: DefragParams, context: TaskContext, api: KubeApi | undefined, label: string): Promise<Gate & {seconds: number}> {
	const timeoutMs = (params.timeoutSeconds ?? 120) * 1000;
	const started = context.host.now().getTime();
	for (;;) {
		const result = await gate(params, context, api);
		const seconds = (context.host.now().getTime() - started) / 1000;
		if (result.ok || seconds * 1000 >= timeoutMs) return {...result, seconds};
		context.progress({label: `${label} (${result.detail.slice(0, 80)})`, done: Math.round(seconds), total: Math.round(timeoutMs / 1000)});
		await context.host.sleep(params.pollMs ?? 1000, context.signal);
	}
}

export const etcdDefragMemberTask = defineTask<DefragParams>('etcd-defrag-member', {
	async run(params, context) {
		const {member} = params;
		const who = `member ${member.name} (${member.endpoint}, ${params.role})`;
		const api = params.kubeconfig === undefined ? undefined : new KubeApi(context.host, await loadKubeconfig(context.host, params.kubeconfig), {retries: 0, timeoutMs: 10_000});
		const before = await gate(params, context, api);
		if (!before.ok) throw new Error(`${who} is not ready for its defrag: ${before.detail}. Nothing was defragmented on it; fix it, then rerun etcd-harden --only purge-history.`);
		if (params.role === 'follower') {
			const status = await endpointStatus(context.host, params.connection, member.endpoint, {signal: context.signal});
			if (status.leaderId === member.id) context.log({level: 'warn', text: `${member.name} became the leader after planning; it is defragmented in the planned order`});
		}
		const timeout = defragCommandTimeout(before.dbSize);
		context.log({level: 'info', text: `defragmenting ${who}: db ${megabytes(before.dbSize)}, it answers no request for about ${defragSeconds(before.dbSize)} s`});
		context.progress({label: `etcdctl defrag ${member.endpoint}`});
		const started = context.host.now().getTime();
		const result = await runEtcdctl(context.host, {...params.connection, endpoints: [member.endpoint]}, ['defrag'], {
			readOnly: false,
			commandTimeout: `${timeout}s`,
			timeoutMs: (timeout + 30) * 1000,
			signal: context.signal,
		});
		const took = (context.host.now().getTime() - started) / 1000;
		// A successful defrag returns with the member serving again: one check tells. Anything
		// else (the command failed, the member does not answer right after) stops the run; wait
		// first, to say whether it came back.
		const right = result.exitCode === 0 ? await gate(params, context, api) : undefined;
		if (result.exitCode !== 0 || !right?.ok) {
			const what = result.exitCode !== 0 ? `etcdctl defrag failed after ${took.toFixed(1)} s: ${lastLines(result.stderr || result.stdout)}` : `it was not healthy right after its defrag: ${right?.detail}`;
			const after = await waitGate(params, context, api, `waiting for ${member.name} after the failed defrag`);
			throw new Error(
				`${who}: ${what}. ${after.ok ? `It is healthy again after ${after.seconds.toFixed(0)} s` : `It is still not healthy after ${after.seconds.toFixed(0)} s (${after.detail})`}. ` +
					'The run stops here: no further member was defragmented. Once every member is healthy (etcdctl endpoint health --cluster), rerun etcd-harden --only purge-history.',
			);
		}
		context.log({level: 'success', text: `${who}: defragmented in ${took.toFixed(1)} s; db ${megabytes(before.dbSize)} -> ${megabytes(right.dbSize)}; healthy, no NOSPACE alarm${api ? ', kube-apiserver ready' : ''}`});
	},
	// No undo: a defrag cannot be reversed, and needs none (same data, fewer free pages).
});

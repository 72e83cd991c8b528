/**
 * The `firewall-apply` task: apply the planned rules like iptables-apply does.
 *
 *  1. Keep the current state of what etcd-harden owns (chain ETCD-HARDEN and its INPUT jumps
 *     per family, or table inet etcd_harden), in memory and in the run directory.
 *  2. Check etcd endpoint health for every member (and kube-apiserver /readyz when it was
 *     ready at planning): the baseline.
 *  3. Apply atomically (one iptables-restore --noflush commit per family; one nft transaction).
 *  4. After a settle time, check again: everything healthy before must still be healthy.
 *  5. Ask the operator to confirm within the timeout (TaskContext.confirm; non-interactive
 *     runs confirm once the checks passed).
 * Any failure, a "no", the timeout or Ctrl-C throws; the engine then runs `undo`, which
 * restores the kept state exactly and proves it by reading it back.
 * That undo runs in this process, so it is lost if the process dies while waiting (a dropped
 * ssh session, SIGKILL, the OOM killer). The backstop is a detached watchdog (watchdog.ts),
 * started before applying: at the deadline it restores the same kept state unless the run
 * confirmed (firewall-confirmed) or restored the rules itself (firewall-watchdog.stop). Other rules (kube-proxy's,
 * the distribution's) are never rewritten: only our chain, its jumps and our table.
 *
 */
import {defineTask, type TaskContext} from '../engine/contract.js';
import type {DetachedProcess, Host} from '../host/types.js';
import type {EtcdConnection} from '../etcd/connection.js';
import {runEtcdctl} from '../etcd/etcdctl.js';
import {KubeApi} from '../kube/api.js';
import {loadKubeconfig} from '../kube/kubeconfig.js';
import {checkReady} from '../kube/restart-gate.js';
import {applyScript, CHAIN, compareChain, parseSave, plainCommand, revertSteps, sameOwnState} from './iptables.js';
import {compareTable, replaceScript, revertScript, sameTable, TABLE, TABLE_REF} from './nft.js';
import type {IptablesVariant} from './types.js';
import {WATCHDOG_FILES, WATCHDOG_GRACE_SECONDS, watchdogArgv, watchdogPlan, type WatchdogState} from './watchdog.js';

type Parsed = ReturnType<typeof parseSave>;
/** One address family: its save and restore commands and the chain's rules. */
export type FamilyParams = {save: string; restore: string; chain: string[]};

export type FirewallApplyParams = {
	backend: 'iptables' | 'nftables';
	confirmTimeoutSeconds: number;
	/** Seconds between applying and the second health check (default 3). */
	settleSeconds?: number;
	/** Every member's client URLs: endpoint health before and after. */
	etcd?: EtcdConnection;
	/** The admin kubeconfig, when kube-apiserver was ready at planning: /readyz before and after. */
	kubeconfig?: string;
	/** iptables. */
	variant?: IptablesVariant;
	v4?: FamilyParams;
	v6?: FamilyParams;
	/** nftables: the whole table text. */
	table?: string;
};
type Snapshot = {backend: 'iptables'; v4?: Parsed; v6?: Parsed} | {backend: 'nftables'; table?: string};

const snapshots = new WeakMap<FirewallApplyParams, Snapshot>();
const watchdogs = new WeakMap<FirewallApplyParams, DetachedProcess>();

/** Seconds one round of health checks can take at most (etcdctl and /readyz time out). */
const HEALTH_BOUND_SECONDS = 45;

function snapshotPath(context: TaskContext): string | undefined {
	return context.runDir ? `${context.runDir.dir}/firewall-before.json` : undefined;
}

function families(params: FirewallApplyParams): Array<[4 | 6, FamilyParams]> {
	const out: Array<[4 | 6, FamilyParams]> = [];
	if (params.v4) out.push([4, params.v4]);
	if (params.v6) out.push([6, params.v6]);
	return out;
}

function firstLines(text: string, count = 5): string {
	return text.trim().split('\n').slice(-count).join('\n');
}

async function readSave(host: Host, save: string): Promise<Parsed> {
	const result = await host.run([save], {readOnly: true, timeoutMs: 30_000});
	if (result.exitCode !== 0) throw new Error(`${save} exited ${result.exitCode}: ${firstLines(result.stderr || result.stdout)}`);
	return parseSave(result.stdout);
}

async function readTable(host: Host): Promise<string | undefined> {
	const tables = await host.run(['nft', 'list', 'tables'], {readOnly: true, timeoutMs: 30_000});
	if (tables.exitCode !== 0) throw new Error(`nft list tables exited ${tables.exitCode}: ${firstLines(tables.stderr)}`);
	if (!tables.stdout.split('\n').some(line => line.trim() === `table ${TABLE_REF}`)) return undefined;
	const table = await host.run(['nft', 'list', 'table', 'inet', TABLE], {readOnly: true, timeoutMs: 30_000});
	if (table.exitCode !== 0) throw new Error(`nft list table ${TABLE_REF} exited ${table.exitCode}: ${firstLines(table.stderr)}`);
	return table.stdout;
}

async function must(host: Host, argv: string[], input: string | undefined, what: string, signal?: AbortSignal): Promise<void> {
	const result = await host.run(argv, {...(input === undefined ? {} : {input}), timeoutMs: 60_000, ...(signal ? {signal} : {})});
	if (result.exitCode !== 0) throw new Error(`${what} (${argv.join(' ')}) exited ${result.exitCode}: ${firstLines(result.stderr || result.stdout)}`);
}

async function takeSnapshot(host: Host, params: FirewallApplyParams): Promise<Snapshot> {
	if (params.backend === 'nftables') {
		const table = await readTable(host);
		return table === undefined ? {backend: 'nftables'} : {backend: 'nftables', table};
	}
	const snapshot: Snapshot = {backend: 'iptables'};
	for (const [family, commands] of families(params)) snapshot[family === 4 ? 'v4' : 'v6'] = await readSave(host, commands.save);
	return snapshot;
}

// ---- health ----

type Health = {etcd: Map<string, string | undefined>; apiserver?: string | undefined};

type EndpointHealth = {endpoint?: string; health?: boolean; error?: string};

async function etcdHealth(host: Host, etcd: EtcdConnection, signal: AbortSignal): Promise<Map<string, string | undefined>> {
	const result = await runEtcdctl(host, etcd, ['endpoint', 'health', '-w', 'json'], {readOnly: true, commandTimeout: '5s', timeoutMs: 30_000, signal});
	const health = new Map<string, string | undefined>();
	let parsed: EndpointHealth[] = [];
	try {
		parsed = JSON.parse(result.stdout) as EndpointHealth[];
	} catch {
		parsed = [];
	}
	for (const endpoint of etcd.endpoints) {
		const entry = parsed.find(item => item.endpoint === endpoint);
		if (entry?.health === true) health.set(endpoint, undefined);
		else health.set(endpoint, entry?.error ?? (firstLines(result.stderr, 2) || `exit ${result.exitCode}`));
	}
	return health;
}

async function apiserverReady(host: Host, kubeconfig: string, signal: AbortSignal): Promise<string | undefined> {
	try {
		const api = new KubeApi(host, await loadKubeconfig(host, kubeconfig), {retries: 0, timeoutMs: 10_000});
		const ready = await checkReady(api, signal);
		return ready.ready ? undefined : ready.detail;
	} catch (error) {
		return (error as Error).message.split('\n')[0];
	}
}

async function checkHealth(host: Host, params: FirewallApplyParams, signal: AbortSignal): Promise<Health> {
	const etcd = params.etcd;
	const kubeconfig = params.kubeconfig;
	const health: Health = {etcd: etcd && etcd.endpoints.length > 0 ? await etcdHealth(host, etcd, signal) : new Map()};
	if (typeof kubeconfig === 'string') health.apiserver = await apiserverReady(host, kubeconfig, signal);
	return health;
}

/** What was healthy in `before` and is not in `after`. */
export function regressions(before: Health, after: Health, apiserverChecked: boolean): string[] {
	const out: string[] = [];
	for (const [endpoint, problem] of after.etcd) {
		if (problem !== undefined && before.etcd.get(endpoint) === undefined) out.push(`etcd ${endpoint} is unhealthy: ${problem}`);
	}
	if (apiserverChecked && before.apiserver === undefined && after.apiserver !== undefined) out.push(`kube-apiserver is not ready: ${after.apiserver}`);
	return out;
}

// ---- apply and revert ----

async function apply(host: Host, params: FirewallApplyParams, context: TaskContext): Promise<void> {
	if (params.backend === 'nftables') {
		const table = params.table;
		if (typeof table !== 'string') throw new Error('internal: firewall-apply needs the table');
		await must(host, ['nft', '-f', '-'], replaceScript(table), `loading table ${TABLE_REF}`, context.signal);
		const live = await readTable(host);
		const result = compareTable(live, table);
		if (!result.inPlace) {
			context.log({level: 'warn', text: `nft lists table ${TABLE_REF} differently from the planned text (${[...result.missing, ...result.extra].slice(0, 2).join('; ')}); a rerun will apply it again.`});
		}
		context.log({level: 'success', text: `loaded table ${TABLE_REF}`});
		return;
	}
	for (const [family, commands] of families(params)) {
		const current = await readSave(host, commands.save);
		await must(host, [commands.restore, '--noflush'], applyScript(current, commands.chain), `loading chain ${CHAIN} (IPv${family})`, context.signal);
		const after = compareChain(await readSave(host, commands.save), commands.chain);
		if (!after.inPlace) {
			context.log({level: 'warn', text: `${commands.save} shows chain ${CHAIN} (IPv${family}) differently from the planned rules; a rerun will apply it again.`});
		}
		context.log({level: 'success', text: `loaded chain ${CHAIN} (IPv${family}, ${commands.restore})`});
	}
}

async function revert(host: Host, params: FirewallApplyParams, snapshot: Snapshot, context: TaskContext): Promise<void> {
	if (snapshot.backend === 'nftables') {
		const current = await readTable(host);
		if (sameTable(current, snapshot.table)) return;
		await must(host, ['nft', '-f', '-'], revertScript(snapshot.table), `restoring table ${TABLE_REF}`);
		const back = await readTable(host);
		if (!sameTable(back, snapshot.table)) throw new Error(`table ${TABLE_REF} could not be restored exactly; the earlier table is in the run directory (firewall-before.json)`);
		context.log({level: 'info', text: snapshot.table === undefined ? `removed table ${TABLE_REF} (it did not exist before)` : `restored the previous table ${TABLE_REF}`});
		return;
	}
	const variant = params.variant === 'legacy' ? 'legacy' : 'nft';
	for (const [family, commands] of families(params)) {
		const before = snapshot[family === 4 ? 'v4' : 'v6'];
		if (!before) continue;
		const current = await readSave(host, commands.save);
		const steps = revertSteps(current, before, variant);
		if (steps.script) await must(host, [commands.restore, '--noflush'], steps.script, `restoring chain ${CHAIN} (IPv${family})`);
		if (steps.deleteChain) await must(host, [plainCommand(commands), '-t', 'filter', '-X', CHAIN], undefined, `deleting chain ${CHAIN} (IPv${family})`);
		if (steps.deleteTable) await must(host, ['nft', 'delete', 'table', family === 4 ? 'ip' : 'ip6', 'filter'], undefined, `removing the filter table iptables-nft made (IPv${family})`);
		const back = await readSave(host, commands.save);
		if (!sameOwnState(back, before)) throw new Error(`chain ${CHAIN} (IPv${family}) could not be restored exactly; the earlier state is in the run directory (firewall-before.json)`);
		if (steps.script || steps.deleteTable) context.log({level: 'info', text: `restored the previous IPv${family} rules (${before.chainExists ? `chain ${CHAIN} as it was` : `no chain ${CHAIN}`})`});
	}
}

async function loadSnapshot(params: FirewallApplyParams, context: TaskContext): Promise<Snapshot | undefined> {
	const kept = snapshots.get(params);
	if (kept) return kept;
	const file = snapshotPath(context);
	const text = file ? await context.host.readText(file) : undefined;
	if (text === undefined) return undefined;
	return JSON.parse(text) as Snapshot;
}

function watchdogState(params: FirewallApplyParams, snapshot: Snapshot): WatchdogState {
	if (snapshot.backend === 'nftables') return {backend: 'nftables', table: snapshot.table};
	const variant = params.variant === 'legacy' ? 'legacy' : 'nft';
	const list: Extract<WatchdogState, {backend: 'iptables'}>['families'] = [];
	for (const [family, commands] of families(params)) {
		const before = snapshot[family === 4 ? 'v4' : 'v6'];
		if (before) list.push({family, commands: {save: commands.save, restore: commands.restore}, before});
	}
	return {backend: 'iptables', variant, families: list};
}

/**
 * Start the watchdog before anything changes (no watchdog, no change). It acts at `capSeconds`
 * from now at the latest; the deadline file brings that forward once the prompt starts.
 */
async function startWatchdog(params: FirewallApplyParams, snapshot: Snapshot, context: TaskContext, capSeconds: number): Promise<void> {
	const {host, runDir} = context;
	if (!runDir) return;
	const plan = watchdogPlan(watchdogState(params, snapshot));
	for (const [name, content] of Object.entries(plan.files)) await host.writeFileAtomic(`${runDir.dir}/${name}`, content, 0o600);
	let started: DetachedProcess;
	try {
		started = await host.spawnDetached(watchdogArgv(plan, host.resolve(runDir.dir), capSeconds));
	} catch (error) {
		throw new Error(`could not start the firewall watchdog (sh), so no rules were changed: ${(error as Error).message}`);
	}
	watchdogs.set(params, started);
	context.log({level: 'info', text: `watchdog started${started.pid === undefined ? '' : ` (pid ${started.pid})`}: it restores the previous rules unless the change is confirmed, even if this process dies`});
}

async function setWatchdogDeadline(context: TaskContext, seconds: number): Promise<void> {
	if (!context.runDir) return;
	const deadline = Math.ceil(context.host.now().getTime() / 1000) + seconds;
	await context.host.writeFileAtomic(`${context.runDir.dir}/${WATCHDOG_FILES.deadline}`, `${deadline}\n`, 0o600);
}

/** The watchdog must not act any more: `marker` is firewall-confirmed or firewall-watchdog.stop. */
async function stopWatchdog(params: FirewallApplyParams, context: TaskContext, marker: string): Promise<void> {
	if (context.runDir) await context.host.writeFileAtomic(`${context.runDir.dir}/${marker}`, `${context.host.now().toISOString()}\n`, 0o600);
	watchdogs.get(params)?.kill();
	watchdogs.delete(params);
}

function healthLine(health: Health): string {
	const parts = [...health.etcd].map(([endpoint, problem]) => `${endpoint} ${problem === undefined ? 'healthy' : `unhealthy (${problem})`}`);
	if ('apiserver' in health) parts.push(`kube-apiserver ${health.apiserver === undefined ? 'ready' : `not ready (${health.apiserver})`}`);
	return parts.join(', ');
}

export const firewallApplyTask = defineTask<FirewallApplyParams>('firewall-apply', {
	async run(params, context) {
		const {host, signal} = context;
		const snapshot = await takeSnapshot(host, params);
		snapshots.set(params, snapshot);
		const file = snapshotPath(context);
		if (file) await host.writeFileAtomic(file, `${JSON.stringify(snapshot)}\n`, 0o600);

		context.progress({label: 'checking etcd and kube-apiserver before the change'});
		const before = await checkHealth(host, params, signal);
		if (before.etcd.size > 0 || 'apiserver' in before) context.log({level: 'info', text: `before: ${healthLine(before)}`});

		const settle = params.settleSeconds ?? 3;
		const seconds = params.confirmTimeoutSeconds;
		await startWatchdog(params, snapshot, context, settle + 3 * (HEALTH_BOUND_SECONDS + 1) + seconds + WATCHDOG_GRACE_SECONDS);

		context.progress({label: 'applying the firewall rules'});
		await apply(host, params, context);

		context.progress({label: `checking etcd and kube-apiserver with the new rules (after ${settle} s)`});
		await host.sleep(settle * 1000, signal);
		let lost: string[] = [];
		let after = before;
		for (let attempt = 0; attempt < 3; attempt++) {
			after = await checkHealth(host, params, signal);
			lost = regressions(before, after, typeof params.kubeconfig === 'string');
			if (lost.length === 0) break;
			await host.sleep(1000, signal);
		}
		if (lost.length > 0) throw new Error(`the new rules cut something off: ${lost.join('; ')}. The previous rules are restored.`);
		if (after.etcd.size > 0 || 'apiserver' in after) context.log({level: 'success', text: `with the new rules: ${healthLine(after)}`});

		context.progress({label: `waiting for confirmation (${seconds} s)`});
		if (context.confirm) await setWatchdogDeadline(context, seconds + WATCHDOG_GRACE_SECONDS);
		const keep = context.confirm
			? await context.confirm(
					`The new rules are active and the checks pass. Can you still open NEW connections to this node (for example a second ssh session)? Keep the rules?`,
					seconds * 1000,
				)
			: true;
		if (!keep) throw new Error(`the new rules were not confirmed within ${seconds} s; the previous rules are restored`);
		await stopWatchdog(params, context, WATCHDOG_FILES.confirmed);
		context.log({level: 'success', text: 'firewall rules confirmed'});
	},
	async undo(params, context) {
		const snapshot = await loadSnapshot(params, context);
		if (!snapshot) return; // nothing was applied
		await revert(context.host, params, snapshot, context);
		// Restored and proven: the watchdog has nothing left to do. (When the revert failed it
		// stays, and tries the same at its deadline.)
		await stopWatchdog(params, context, WATCHDOG_FILES.stop);
	},
});

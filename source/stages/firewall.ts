/**
 * Stage firewall: restrict etcd's client port 2379 and peer port 2380 to the hosts that need
 * them, in a dedicated iptables chain (ETCD-HARDEN, IPv4 and IPv6) or nftables table
 * (inet etcd_harden), without ever cutting off loopback, the local apiserver or a member.
 *
 * Pure planning from the live firewall facts (source/stages/discover-firewall.ts). The rules
 * are applied by the `firewall-apply` task (source/firewall/tasks.ts): it keeps the previous
 * state, applies atomically, checks every member's health and the apiserver's /readyz, asks
 * the operator to confirm within a timeout, and otherwise restores the previous rules exactly.
 */
import type {NodeStage} from './facts.js';
import {firewallApplyTask, type FirewallApplyParams} from '../firewall/tasks.js';
import {InputError, type Change, type Check, type Question, type Stage, type StageAnswers, type StagePlan} from '../engine/contract.js';
import {etcdConnectionFromFlags, type EtcdConnection} from '../etcd/connection.js';
import {buildAllowList, describeRules, parseCidrList, refusals, type AllowList} from '../firewall/model.js';
import {applyScript, compareChain, renderChain, type ChainComparison} from '../firewall/iptables.js';
import {compareTable, renderTable, replaceScript, TABLE_REF} from '../firewall/nft.js';
import {planPersistence} from '../firewall/persistence.js';
import {RECORD_PATH, parseRecord, recordContent, type FirewallRecord} from '../firewall/record.js';
import type {BackendId, FirewallFacts, WatchdogFacts} from '../firewall/types.js';
import type {Facts} from './facts.js';

export const firewallStageId = 'firewall';
export const DEFAULT_CONFIRM_SECONDS = 30;

function backends(firewall: FirewallFacts): BackendId[] {
	const out: BackendId[] = [];
	if (firewall.iptables) out.push('iptables');
	if (firewall.nft) out.push('nftables');
	return out;
}

function cidrProblem(value: unknown): string | undefined {
	const {problems} = parseCidrList(value);
	return problems.length > 0 ? problems.join('; ') : undefined;
}

function secondsProblem(value: unknown): string | undefined {
	const number = Number(value);
	if (typeof value !== 'string' || !Number.isInteger(number) || number < 5 || number > 600) {
		return `give whole seconds from 5 to 600, got ${JSON.stringify(value)}`;
	}
	return undefined;
}

function questions(facts: Facts): Question[] {
	const firewall = facts.firewall;
	// Without the live node (--root, demo) the stage plans nothing, so it asks nothing.
	if (!firewall) return [];
	const available = backends(firewall);
	const variant = firewall?.iptables?.variant;
	return [
		{
			id: 'backend',
			kind: 'select',
			message: 'Firewall backend',
			help: firewall?.inUse ? `In use here: ${firewall.inUse.backend} (${firewall.inUse.reason}).` : undefined,
			choices: [
				{value: 'iptables', label: `iptables${variant ? ` (${variant === 'nft' ? 'nf_tables' : 'legacy'} variant)` : ''}`, hint: 'chain ETCD-HARDEN, IPv4 and IPv6'},
				{value: 'nftables', label: 'nftables', hint: `table ${TABLE_REF}`},
			].filter(choice => available.length === 0 || available.includes(choice.value as BackendId)),
			default: firewall?.inUse?.backend ?? available[0] ?? 'iptables',
			when: () => available.length > 1,
		},
		{
			id: 'client-cidrs',
			kind: 'text',
			message: 'Extra networks allowed to the client port 2379 (CIDRs, comma-separated; empty for none)',
			help: 'This node, the etcd members and the control-plane Nodes are allowed already. Add e.g. a monitoring host or a backup server.',
			default: '',
			validate: cidrProblem,
		},
		{
			id: 'peer-cidrs',
			kind: 'text',
			message: 'Extra networks allowed to the peer port 2380 (CIDRs; e.g. a member about to join)',
			help: 'The current members (etcdctl member list) are allowed already.',
			default: '',
			validate: cidrProblem,
		},
		{
			id: 'exclude',
			kind: 'text',
			message: 'Detected addresses to leave out (CIDRs; e.g. a decommissioned node), empty for none',
			help: 'Loopback, the local apiserver and the current etcd members can never be left out: such a plan is refused.',
			default: '',
			validate: cidrProblem,
		},
		{id: 'log', kind: 'confirm', message: 'Log dropped connections (at most 5 a minute)?', default: false},
		{
			id: 'confirm-timeout',
			kind: 'text',
			message: 'Seconds to confirm the new rules before they are reverted',
			help: 'Like iptables-apply: after the health checks pass you must confirm that you can still reach the node, or the previous rules come back.',
			default: String(DEFAULT_CONFIRM_SECONDS),
			validate: secondsProblem,
		},
	];
}

type Desired = {
	backend: BackendId;
	list: AllowList;
	chain4?: string[];
	chain6?: string[];
	table?: string;
};

function chosenBackend(firewall: FirewallFacts, answers: StageAnswers): BackendId {
	const available = backends(firewall);
	if (available.length === 0) {
		throw new InputError('neither iptables nor nft works on this node. Install one (apt install iptables, or apt install nftables) and rerun.');
	}
	const answer = answers['backend'];
	const backend = (typeof answer === 'string' ? answer : firewall.inUse?.backend ?? available[0]) as BackendId;
	if (!available.includes(backend)) {
		throw new InputError(`firewall.backend=${backend}: ${backend === 'iptables' ? 'iptables' : 'nft'} does not work on this node; choose ${available.join(' or ')}.`);
	}
	return backend;
}

function desiredRules(facts: Facts, firewall: FirewallFacts, answers: StageAnswers): Desired {
	const backend = chosenBackend(firewall, answers);
	const list = buildAllowList(
		{firewall, apiserverFlags: facts.apiserver.flags, etcdFlags: facts.etcd.flags},
		{
			clientCidrs: parseCidrList(answers['client-cidrs']).cidrs,
			peerCidrs: parseCidrList(answers['peer-cidrs']).cidrs,
			exclude: parseCidrList(answers['exclude']).cidrs,
			log: answers['log'] === true,
		},
	);
	if (backend === 'nftables') return {backend, list, table: renderTable(list)};
	const iptables = firewall.iptables!;
	return {
		backend,
		list,
		chain4: renderChain(list, 4),
		...(iptables.state6.available ? {chain6: renderChain(list, 6)} : {}),
	};
}

/** What is on the node now compared with the desired rules. */
function comparison(firewall: FirewallFacts, desired: Desired): {inPlace: boolean; lines: string[]} {
	if (desired.backend === 'nftables') {
		const result = compareTable(firewall.nft?.table, desired.table!);
		return {
			inPlace: result.inPlace,
			lines: firewall.nft?.table === undefined ? [`table ${TABLE_REF} does not exist`] : [...result.missing.map(line => `missing: ${line}`), ...result.extra.map(line => `extra: ${line}`)],
		};
	}
	const iptables = firewall.iptables!;
	const describe = (family: 4 | 6, result: ChainComparison, exists: boolean): string[] => {
		if (!exists) return [`IPv${family}: chain ETCD-HARDEN does not exist`];
		return [
			...(result.jumps === 1 ? [] : [`IPv${family}: ${result.jumps} jump(s) from INPUT (want 1)`]),
			...result.missing.map(line => `IPv${family} missing: ${line}`),
			...result.extra.map(line => `IPv${family} extra: ${line}`),
			...(result.orderOnly ? [`IPv${family}: rules out of order`] : []),
		];
	};
	const v4 = compareChain(iptables.state4, desired.chain4!);
	const lines = describe(4, v4, iptables.state4.chainExists);
	let inPlace = v4.inPlace;
	if (desired.chain6) {
		const v6 = compareChain(iptables.state6, desired.chain6);
		inPlace &&= v6.inPlace;
		lines.push(...describe(6, v6, iptables.state6.chainExists));
	}
	return {inPlace, lines};
}

function record(desired: Desired, firewall: FirewallFacts): FirewallRecord {
	return desired.backend === 'nftables'
		? {backend: 'nftables', table: desired.table!}
		: {backend: 'iptables', variant: firewall.iptables!.variant, chain4: desired.chain4!, ...(desired.chain6 ? {chain6: desired.chain6} : {})};
}

function plan(facts: Facts, answers: StageAnswers): StagePlan {
	const firewall = facts.firewall;
	if (!firewall) {
		return {
			changes: [],
			leftOut: 'no running node was probed (etcd-harden runs with --root): firewall rules need the live node, its addresses and etcd members.',
		};
	}
	const desired = desiredRules(facts, firewall, answers);
	const refused = refusals(desired.list);
	if (refused.length > 0) {
		throw new InputError(`refusing firewall rules that would cut off the cluster:\n  - ${refused.join('\n  - ')}`);
	}
	const notes = [...desired.list.notes];
	const warnings = [...desired.list.warnings];
	const watchdog = firewall.watchdog;
	if (watchdog?.state === 'pending') {
		throw new InputError(`the firewall watchdog of run ${watchdog.run} still waits to restore the rules from before that run; let it finish (at most a few minutes) and run again`);
	}
	if (watchdog) warnings.push(watchdogLine(watchdog));
	if (firewall.inUse) notes.push(`Backend ${desired.backend}${desired.backend === 'iptables' ? ` (iptables-${firewall.iptables!.variant})` : ''}; in use here: ${firewall.inUse.backend} (${firewall.inUse.reason}).`);
	if (desired.backend === 'iptables' && !desired.chain6) warnings.push(`ip6tables does not work here (${firewall.iptables!.state6.problem ?? 'unavailable'}): IPv6 is not filtered.`);
	if (desired.backend === 'iptables' && firewall.nft?.table !== undefined) warnings.push(`Table ${TABLE_REF} from an earlier run also filters etcd's ports; remove it with: nft delete table ${TABLE_REF}`);
	if (desired.backend === 'nftables' && firewall.iptables && (firewall.iptables.state4.chainExists || firewall.iptables.state6.chainExists)) {
		warnings.push('Chain ETCD-HARDEN from an earlier run (iptables) also filters etcd\'s ports; remove it (iptables -D INPUT ... -j ETCD-HARDEN; iptables -F/-X ETCD-HARDEN) or choose the iptables backend.');
	}

	const now = comparison(firewall, desired);
	const changes: Change[] = [];
	if (!now.inPlace) changes.push(applyTask(facts, firewall, desired, answers, now.lines));
	else notes.push('The rules are in place: nothing to change.');
	const content = recordContent(record(desired, firewall));
	if (firewall.record !== content) {
		changes.push({kind: 'write-file', path: RECORD_PATH, content, mode: 0o600, summary: `Record the applied rules in ${RECORD_PATH} (status compares the live rules with it)`});
	}
	const persistence = planPersistence(
		firewall.persistence,
		desired.backend === 'nftables' ? {backend: 'nftables', table: desired.table!} : {backend: 'iptables', chain4: desired.chain4!, ...(desired.chain6 ? {chain6: desired.chain6} : {})},
	);
	changes.push(...persistence.changes);
	notes.push(...persistence.notes);
	warnings.push(...persistence.warnings);
	return {changes, notes, warnings};
}

function applyTask(facts: Facts, firewall: FirewallFacts, desired: Desired, answers: StageAnswers, differences: string[]): Change {
	const timeout = Number(answers['confirm-timeout'] ?? DEFAULT_CONFIRM_SECONDS);
	let etcd: EtcdConnection | undefined;
	try {
		const connection = etcdConnectionFromFlags(facts.apiserver.flags);
		const endpoints = firewall.members?.flatMap(member => member.clientURLs) ?? [];
		etcd = {...connection, endpoints: endpoints.length > 0 ? endpoints : connection.endpoints};
	} catch {
		etcd = undefined;
	}
	const cluster = facts.cluster;
	const params: FirewallApplyParams = {
		backend: desired.backend,
		confirmTimeoutSeconds: timeout,
		etcd,
		...(cluster?.reachable && cluster.ready ? {kubeconfig: cluster.kubeconfig} : {}),
	};
	let script: string[];
	if (desired.backend === 'nftables') {
		params.table = desired.table;
		script = [`nft -f - <<EOF`, ...replaceScript(desired.table!).trimEnd().split('\n'), 'EOF'];
	} else {
		const iptables = firewall.iptables!;
		params.variant = iptables.variant;
		params.v4 = {...iptables.v4, chain: desired.chain4!};
		if (desired.chain6) params.v6 = {...iptables.v6, chain: desired.chain6};
		script = [`${iptables.v4.restore} --noflush <<EOF`, ...applyScript(iptables.state4, desired.chain4!).trimEnd().split('\n'), 'EOF'];
		if (desired.chain6) script.push(`${iptables.v6.restore} --noflush <<EOF`, ...applyScript(iptables.state6, desired.chain6).trimEnd().split('\n'), 'EOF');
	}
	const checks = [
		etcd ? `etcd endpoint health for ${etcd.endpoints.join(', ')}` : undefined,
		params.kubeconfig ? 'kube-apiserver /readyz' : undefined,
	].filter(Boolean);
	return firewallApplyTask.change(
		params,
		`Restrict etcd's ports 2379/2380 (${desired.backend === 'nftables' ? `nftables table ${TABLE_REF}` : `iptables-${firewall.iptables!.variant} chain ETCD-HARDEN`})`,
		[
			...describeRules(desired.list),
			'',
			...differences.map(line => `now: ${line}`),
			'',
			...script,
			'',
			`then: ${checks.length > 0 ? checks.join(' and ') : 'no health check possible (etcd and the apiserver are unknown)'}; ` +
				`interactively, confirm within ${timeout} s; otherwise the previous rules are restored exactly`,
		],
	);
}

function liveChecks(facts: Facts, expected: FirewallRecord | undefined, strict: boolean): Check[] {
	const firewall = facts.firewall;
	if (!firewall) {
		return strict
			? []
			: [{id: 'rules', title: 'etcd ports are firewalled', status: 'warn', actual: 'not probed (no live node)', remediation: 'Run etcd-harden status on the node itself (without --root).'}];
	}
	if (!expected) {
		return [
			{
				id: 'rules',
				title: "etcd's ports 2379/2380 are restricted by etcd-harden's rules",
				status: 'warn',
				actual: 'not applied (no record of etcd-harden firewall rules)',
				remediation: 'Run etcd-harden --only firewall.',
			},
		];
	}
	const desired: Desired =
		expected.backend === 'nftables'
			? {backend: 'nftables', list: emptyList, table: expected.table}
			: {backend: 'iptables', list: emptyList, chain4: expected.chain4, ...(expected.chain6 ? {chain6: expected.chain6} : {})};
	const checks: Check[] = [];
	if (expected.backend === 'iptables' && !firewall.iptables) {
		return [{id: 'rules', title: 'etcd-harden firewall rules are present and complete', status: 'fail', actual: 'iptables does not work here any more', remediation: 'Reinstall iptables and rerun etcd-harden --only firewall.'}];
	}
	if (expected.backend === 'nftables' && !firewall.nft) {
		return [{id: 'rules', title: 'etcd-harden firewall rules are present and complete', status: 'fail', actual: 'nft does not work here any more', remediation: 'Reinstall nftables and rerun etcd-harden --only firewall.'}];
	}
	const now = comparison(firewall, desired);
	checks.push({
		id: 'rules',
		title: `etcd-harden firewall rules are present and complete (${expected.backend === 'nftables' ? `table ${TABLE_REF}` : 'chain ETCD-HARDEN'})`,
		status: now.inPlace ? 'pass' : 'fail',
		actual: now.inPlace ? `as applied (${expected.backend})` : now.lines.slice(0, 6).join('; '),
		...(now.inPlace ? {} : {remediation: 'The rules were changed or flushed (e.g. by a firewalld reload): rerun etcd-harden --only firewall.'}),
	});
	return checks;
}

const emptyList: AllowList = {rules: [], log: false, required: [], notes: [], warnings: [], problems: []};

function verify(facts: Facts, answers: StageAnswers): Check[] {
	const firewall = facts.firewall;
	if (!firewall) return [];
	const desired = desiredRules(facts, firewall, answers);
	return liveChecks(facts, record(desired, firewall), true);
}

function watchdogLine(watchdog: WatchdogFacts): string {
	if (watchdog.state === 'pending') return `the watchdog of run ${watchdog.run} waits to restore the rules from before that run unless it is confirmed`;
	const when = watchdog.time ? ` at ${watchdog.time}` : '';
	if (watchdog.state === 'failed') return `the watchdog of run ${watchdog.run} could not restore the earlier firewall rules${when}: ${watchdog.detail ?? ''}`;
	return `the firewall change of run ${watchdog.run} was never confirmed and the tool was gone: its watchdog restored the earlier rules${when}`;
}

function status(facts: Facts): Check[] {
	const firewall = facts.firewall;
	const expected = firewall?.record === undefined ? undefined : parseRecord(firewall.record);
	const checks = liveChecks(facts, expected, false);
	if (firewall?.watchdog) {
		checks.push({
			id: 'watchdog',
			title: 'The last firewall change was confirmed',
			status: firewall.watchdog.state === 'failed' ? 'fail' : 'warn',
			actual: watchdogLine(firewall.watchdog),
			remediation: firewall.watchdog.state === 'pending' ? 'Wait for it, then rerun etcd-harden --only firewall.' : 'Rerun etcd-harden --only firewall (and confirm) to apply the rules again.',
		});
	}
	if (firewall && expected) {
		// Whatever the record says, the current members must still be let through.
		try {
			const list = buildAllowList({firewall, apiserverFlags: facts.apiserver.flags, etcdFlags: facts.etcd.flags}, {clientCidrs: [], peerCidrs: [], exclude: [], log: false});
			const now = expected.backend === 'nftables' ? renderTable(list) : renderChain(list, 4).join('\n');
			const applied = expected.backend === 'nftables' ? expected.table : expected.chain4.join('\n');
			const missing = now.split('\n').filter(line => /member|initial-cluster/.test(line) && !applied.includes(line.trim()));
			checks.push({
				id: 'members',
				title: 'Every current etcd member is allowed',
				status: missing.length === 0 ? 'pass' : 'fail',
				actual: missing.length === 0 ? `${firewall.members?.length ?? 0} member(s)` : `not allowed: ${missing.map(line => line.trim()).join('; ')}`,
				...(missing.length === 0 ? {} : {remediation: 'A member joined or moved since the rules were applied: rerun etcd-harden --only firewall.'}),
			});
		} catch {
			// Refusal-level problems are reported when planning.
		}
	}
	return checks;
}

export const firewallStage: NodeStage = {
	dependsOn: [],
	id: firewallStageId,
	title: "Firewall etcd's ports",
	explain:
		"Restricts etcd's client port 2379 and peer port 2380 to loopback, this node, the etcd members and the control-plane " +
		'nodes (plus any networks you add), in a dedicated chain or table that can be shown, replaced and removed as a unit. ' +
		'After applying, every member must stay healthy and the apiserver ready, and you confirm within a timeout that you ' +
		'can still reach the node; otherwise the previous rules come back exactly.',
	questions: facts => questions(facts),
	plan: (facts, answers) => plan(facts, answers),
	verify,
	status,
};

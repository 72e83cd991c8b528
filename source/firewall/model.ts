/**
 * The firewall's allow list, planned purely from facts and answers: loopback always; for the
 * client port 2379 this node's addresses, the etcd members' client URLs, the control-plane
 * Nodes and the operator's CIDRs; for the peer port 2380 the members' peer URLs (from
 * `etcdctl member list`, else the etcd manifest's --initial-cluster, saying so) and the
 * operator's peer CIDRs. Everything else to those ports is dropped.
 *
 * Before any backend renders it, the allow list is checked against what must never be cut
 * off (loopback, the local apiserver's etcd connection, every current member), and a plan
 * that would block one of them is refused, naming the missing entry.
 */
import {cidrContains, familyOf, hostCidr, isLoopback, parseCidr, sameCidr, urlHost, type Cidr, type Family} from './address.js';
import type {EtcdMember, FirewallFacts} from './types.js';

export const CLIENT_PORT = 2379;
export const PEER_PORT = 2380;
export type Port = typeof CLIENT_PORT | typeof PEER_PORT;
/** Rule comments (one short word per rule; the preview shows every origin in full). */
export type Tag = 'loopback' | 'node' | 'member' | 'control-plane' | 'initial-cluster' | 'operator';

export type AllowRule = {
	port: Port | 'both';
	/** Interface rule (loopback); otherwise `source` is set. */
	iface?: 'lo';
	source?: Cidr;
	tag: Tag;
	/** Where the entry came from, for the operator ("etcd member cp-2 peer URL https://..."). */
	origins: string[];
};

export type FirewallOptions = {
	clientCidrs: Cidr[];
	peerCidrs: Cidr[];
	/** Detected entries inside these CIDRs are left out (a decommissioned node). */
	exclude: Cidr[];
	/** Log dropped connections (rate-limited). */
	log: boolean;
};

/** Something the rules must never block. */
export type Requirement = {
	what: string;
	port: Port;
	/** Arrives on loopback (local traffic). */
	iface?: 'lo';
	/** Its source address, when known. */
	address?: string;
	/** How to fix a plan that blocks it. */
	fix: string;
};

export type AllowList = {
	rules: AllowRule[];
	log: boolean;
	/** What the rules must let through (checked by `refusals`). */
	required: Requirement[];
	notes: string[];
	warnings: string[];
	/** Entries that could not be made (an unresolvable member host): refusals. */
	problems: string[];
};

/** The parts of Facts the allow list reads (so unit tests can build them by hand). */
export type AllowFacts = {
	firewall: FirewallFacts;
	/** kube-apiserver's flags (--etcd-servers). */
	apiserverFlags: Record<string, string>;
	/** etcd's flags (--initial-cluster). */
	etcdFlags: Record<string, string>;
};

function portLabel(port: Port | 'both'): string {
	return port === 'both' ? `${CLIENT_PORT} and ${PEER_PORT}` : String(port);
}

/** Parse `name=https://10.0.0.10:2380,name2=...` (etcd's --initial-cluster). */
export function parseInitialCluster(value: string | undefined): EtcdMember[] {
	if (!value) return [];
	const byName = new Map<string, EtcdMember>();
	for (const item of value.split(',')) {
		const at = item.indexOf('=');
		if (at <= 0) continue;
		const name = item.slice(0, at).trim();
		const url = item.slice(at + 1).trim();
		const member = byName.get(name) ?? {name, id: '', peerURLs: [], clientURLs: []};
		member.peerURLs.push(url);
		byName.set(name, member);
	}
	return [...byName.values()];
}

/** Parse an operator's comma/space separated CIDR list; problems name each bad item. */
export function parseCidrList(value: unknown): {cidrs: Cidr[]; problems: string[]} {
	const items = (Array.isArray(value) ? value.join(',') : typeof value === 'string' ? value : '')
		.split(/[\s,]+/)
		.map(item => item.trim())
		.filter(Boolean);
	const cidrs: Cidr[] = [];
	const problems: string[] = [];
	for (const item of items) {
		const parsed = parseCidr(item);
		if (typeof parsed === 'string') problems.push(parsed);
		else cidrs.push(parsed);
	}
	return {cidrs, problems};
}

function addresses(facts: FirewallFacts, host: string): string[] | undefined {
	if (familyOf(host) !== undefined) return [host];
	const resolved = facts.resolved[host];
	return resolved && resolved.length > 0 ? resolved : undefined;
}

function isLocal(facts: FirewallFacts, address: string): boolean {
	const cidr = hostCidr(address);
	if (!cidr) return false;
	return isLoopback(address) || facts.addresses.some(own => own.family === cidr.family && hostCidr(own.address)?.address === cidr.address);
}

export function buildAllowList(input: AllowFacts, options: FirewallOptions): AllowList {
	const facts = input.firewall;
	const list: AllowList = {rules: [], log: options.log, required: [], notes: [], warnings: [], problems: []};
	const excluded = (cidr: Cidr): boolean => options.exclude.some(ex => ex.family === cidr.family && ex.prefix <= cidr.prefix && cidrContains(ex, cidr.address));
	const excludedOrigins: string[] = [];

	const add = (port: Port, cidr: Cidr, tag: Tag, origin: string, operator = false): void => {
		if (!operator && excluded(cidr)) {
			excludedOrigins.push(`${cidr.address}/${cidr.prefix} (${origin})`);
			return;
		}
		const same = list.rules.find(rule => rule.port === port && rule.source && sameCidr(rule.source, cidr));
		if (same) {
			if (!same.origins.includes(origin)) same.origins.push(origin);
			return;
		}
		list.rules.push({port, source: cidr, tag, origins: [origin]});
	};

	list.rules.push({port: 'both', iface: 'lo', tag: 'loopback', origins: ['loopback (always allowed)']});
	list.required.push(
		{what: 'loopback to the client port', port: CLIENT_PORT, iface: 'lo', fix: 'loopback is always allowed; this is a bug in etcd-harden'},
		{what: 'loopback to the peer port', port: PEER_PORT, iface: 'lo', fix: 'loopback is always allowed; this is a bug in etcd-harden'},
	);

	// This node's own addresses (local traffic arrives on lo, but a rule per address keeps the
	// allow list honest when it is read on its own).
	for (const own of facts.addresses) {
		const cidr = hostCidr(own.address);
		if (cidr) add(CLIENT_PORT, cidr, 'node', `this node (${own.iface})`);
	}

	// The local apiserver's etcd connection: to a local address it arrives on loopback.
	const servers = (input.apiserverFlags['etcd-servers'] ?? '').split(',').map(s => s.trim()).filter(Boolean);
	for (const server of servers) {
		const host = urlHost(server);
		if (host === undefined) continue;
		const local = (addresses(facts, host) ?? []).filter(address => isLocal(facts, address));
		for (const address of local) {
			list.required.push({
				what: `the local kube-apiserver's etcd connection (--etcd-servers ${server})`,
				port: CLIENT_PORT,
				iface: 'lo',
				address,
				fix: 'loopback must stay allowed',
			});
		}
	}

	// Members: peer URLs for 2380, client URLs for 2379.
	let members = facts.members;
	let memberSource = 'etcd member';
	if (members === undefined) {
		const fromManifest = parseInitialCluster(input.etcdFlags['initial-cluster']);
		if (fromManifest.length === 0) {
			list.problems.push(
				`cannot tell etcd's peers: etcdctl member list failed (${facts.membersProblem ?? 'not asked'}) and the etcd manifest has no --initial-cluster. ` +
					'Fix etcd access (etcdctl and the apiserver etcd client certificate), then rerun.',
			);
			members = [];
		} else {
			members = fromManifest;
			memberSource = 'etcd manifest --initial-cluster, member';
			list.warnings.push(
				`etcd did not answer (${facts.membersProblem ?? 'member list failed'}), so the peers come from the etcd manifest's --initial-cluster, which may be out of date. Check the allow list for 2380 before applying.`,
			);
		}
	}
	const tag: Tag = facts.members === undefined ? 'initial-cluster' : 'member';
	for (const member of members) {
		const name = member.name || member.id || '(unnamed)';
		for (const [port, urls, kind] of [
			[PEER_PORT, member.peerURLs, 'peer URL'],
			[CLIENT_PORT, member.clientURLs, 'client URL'],
		] as const) {
			for (const url of urls) {
				const host = urlHost(url);
				if (host === undefined) {
					list.problems.push(`${memberSource} ${name}: ${kind} ${url} is not a URL. Add the member's address with ${port === PEER_PORT ? 'peer-cidrs' : 'client-cidrs'}.`);
					continue;
				}
				const resolved = addresses(facts, host);
				if (resolved === undefined) {
					list.problems.push(
						`${memberSource} ${name}: ${kind} ${url} names the host "${host}", which does not resolve here. Add the member's address with ${port === PEER_PORT ? 'peer-cidrs' : 'client-cidrs'}, or fix name resolution.`,
					);
					continue;
				}
				for (const address of resolved) {
					const cidr = hostCidr(address)!;
					if (isLocal(facts, address)) {
						if (!isLoopback(address)) add(port, cidr, tag, `${memberSource} ${name} (this node) ${kind} ${url}`);
						continue;
					}
					add(port, cidr, tag, `${memberSource} ${name} ${kind} ${url}`);
					list.required.push({
						what: `${memberSource} ${name} (${kind} ${url})`,
						port,
						address,
						fix: `remove ${address} from exclude, or add it to ${port === PEER_PORT ? 'peer-cidrs' : 'client-cidrs'}`,
					});
				}
			}
		}
	}

	for (const node of facts.controlPlane ?? []) {
		for (const address of node.addresses) {
			const cidr = hostCidr(address);
			if (cidr && !isLocal(facts, address)) add(CLIENT_PORT, cidr, 'control-plane', `control-plane Node ${node.name}`);
		}
	}
	if (facts.controlPlaneProblem) list.notes.push(`Control-plane Nodes were not listed (${facts.controlPlaneProblem}); members and this node are still allowed.`);

	for (const cidr of options.clientCidrs) add(CLIENT_PORT, cidr, 'operator', 'operator (client-cidrs)', true);
	for (const cidr of options.peerCidrs) add(PEER_PORT, cidr, 'operator', 'operator (peer-cidrs)', true);

	if (excludedOrigins.length > 0) list.notes.push(`Left out (exclude): ${excludedOrigins.join('; ')}.`);
	list.rules = sortRules(list.rules);
	return list;
}

/** A stable order, whatever order discovery saw things in: a rerun renders the same rules. */
function sortRules(rules: AllowRule[]): AllowRule[] {
	const key = (rule: AllowRule): [number, number, number, string, number] => [
		rule.iface ? 0 : 1,
		rule.port === 'both' ? 0 : rule.port,
		rule.source?.family ?? 0,
		rule.source?.address.padStart(39, ' ') ?? '',
		rule.source?.prefix ?? 0,
	];
	return [...rules].sort((a, b) => {
		const ka = key(a);
		const kb = key(b);
		for (let i = 0; i < ka.length; i++) {
			const x = ka[i]!;
			const y = kb[i]!;
			if (x < y) return -1;
			if (x > y) return 1;
		}
		return 0;
	});
}

function covers(rule: AllowRule, requirement: Requirement): boolean {
	if (rule.port !== 'both' && rule.port !== requirement.port) return false;
	if (rule.iface === 'lo' && requirement.iface === 'lo') return true;
	return requirement.address !== undefined && rule.source !== undefined && cidrContains(rule.source, requirement.address);
}

/**
 * What the rules would block that must stay reachable, each naming the missing entry and the
 * fix; empty when the plan is safe. Also the entries that could not be made at all.
 */
export function refusals(list: Pick<AllowList, 'rules' | 'required' | 'problems'>): string[] {
	const out = [...list.problems];
	for (const requirement of list.required) {
		if (list.rules.some(rule => covers(rule, requirement))) continue;
		const from = requirement.iface === 'lo' ? 'on loopback' : `from ${requirement.address}`;
		out.push(`${requirement.what} would be blocked: no rule allows port ${requirement.port} ${from}. Fix: ${requirement.fix}.`);
	}
	return out;
}

/** Rules of one address family (loopback rules belong to both). */
export function rulesFor(list: Pick<AllowList, 'rules'>, family: Family): AllowRule[] {
	return list.rules.filter(rule => rule.iface !== undefined || rule.source?.family === family);
}

/** One line per rule for the preview: what is allowed and why. */
export function describeRules(list: AllowList): string[] {
	return [
		...list.rules.map(rule => {
			const what = rule.iface ? `interface ${rule.iface}` : `${rule.source!.address}/${rule.source!.prefix}`;
			return `allow ${what} -> ${portLabel(rule.port)}: ${rule.origins.join('; ')}`;
		}),
		`${list.log ? 'log (at most 5/min) and drop' : 'drop'} every other connection to ${CLIENT_PORT} and ${PEER_PORT}`,
	];
}

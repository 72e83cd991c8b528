/**
 * Live discovery for the firewall stage, read-only (every command runs with readOnly, so also
 * under --dry-run): the iptables variant in use (legacy or nf_tables, by rule count) and our
 * chain in it, the nftables table, this node's addresses (`ip -j addr`), etcd's members
 * (`etcdctl member list` with the apiserver's etcd client certificate), the control-plane
 * Nodes, host names in member URLs (`getent ahosts`), and whether the rules can be persisted.
 */
import type {Host} from '../host/types.js';
import {KubeApi} from '../kube/api.js';
import {loadKubeconfig} from '../kube/kubeconfig.js';
import {etcdConnectionFromFlags} from '../etcd/connection.js';
import {etcdctlJson} from '../etcd/etcdctl.js';
import {canonicalAddress, familyOf, urlHost, type Family} from '../firewall/address.js';
import {parseInitialCluster} from '../firewall/model.js';
import {parseSave, variantCommands} from '../firewall/iptables.js';
import {TABLE, TABLE_REF} from '../firewall/nft.js';
import {
	NFTABLES_CONF,
	NFT_FILE,
	RULES_V4,
	RULES_V6,
	NETFILTER_PERSISTENT_PATHS,
	NFTABLES_SERVICE_PATHS,
} from '../firewall/persistence.js';
import {RECORD_PATH} from '../firewall/record.js';
import {parseReverted, WATCHDOG_FILES} from '../firewall/watchdog.js';
import {RUNS_DIR} from '../engine/contract.js';
import type {
	BackendId,
	ChainState,
	ControlPlaneNode,
	EtcdMember,
	FirewallFacts,
	IptablesFacts,
	IptablesVariant,
	NftFacts,
	NodeAddress,
	WatchdogFacts,
} from '../firewall/types.js';
import type {Facts} from '../stages/facts.js';

const READ = {readOnly: true, timeoutMs: 20_000} as const;

export type FirewallDiscoveryOptions = {kubeconfig?: string};

export async function discoverFirewall(host: Host, facts: Facts, options: FirewallDiscoveryOptions = {}): Promise<FirewallFacts> {
	const [addresses, iptables, nft, membersResult, controlPlaneResult, persistence, record, watchdog] = await Promise.all([
		readAddresses(host),
		readIptables(host),
		readNft(host),
		readMembers(host, facts),
		readControlPlane(host, facts, options.kubeconfig),
		readPersistence(host),
		host.readText(RECORD_PATH),
		readWatchdog(host),
	]);
	const resolved = await resolveHosts(host, facts, membersResult.members);
	const firewall: FirewallFacts = {addresses, resolved, persistence};
	if (record !== undefined) firewall.record = record;
	if (watchdog) firewall.watchdog = watchdog;
	if (iptables) firewall.iptables = iptables;
	if (nft) firewall.nft = nft;
	if (membersResult.members) firewall.members = membersResult.members;
	if (membersResult.problem) firewall.membersProblem = membersResult.problem;
	if (controlPlaneResult.nodes) firewall.controlPlane = controlPlaneResult.nodes;
	if (controlPlaneResult.problem) firewall.controlPlaneProblem = controlPlaneResult.problem;
	const inUse = backendInUse(firewall);
	if (inUse) firewall.inUse = inUse;
	return firewall;
}

/**
 * What the watchdog of the newest run that applied firewall rules (it has firewall-before.json)
 * did: restored the earlier rules (the change was never confirmed and the tool was gone), or
 * still waits. Undefined when it had nothing to do.
 */
export async function readWatchdog(host: Host): Promise<WatchdogFacts | undefined> {
	const runs = ((await host.listDir(RUNS_DIR)) ?? []).sort().reverse().slice(0, 50);
	for (const run of runs) {
		const dir = `${RUNS_DIR}/${run}`;
		const names = (await host.listDir(dir)) ?? [];
		if (!names.includes('firewall-before.json')) continue;
		const report = names.includes(WATCHDOG_FILES.reverted) ? await host.readText(`${dir}/${WATCHDOG_FILES.reverted}`) : undefined;
		if (report !== undefined) {
			const parsed = parseReverted(report);
			return {run, state: parsed.ok ? 'reverted' : 'failed', ...(parsed.time ? {time: parsed.time} : {}), ...(parsed.ok ? {} : {detail: parsed.lines.join('; ')})};
		}
		const done = names.includes(WATCHDOG_FILES.confirmed) || names.includes(WATCHDOG_FILES.stop);
		const pid = Number((await host.readText(`${dir}/${WATCHDOG_FILES.pid}`))?.trim());
		// A watchdog acts within minutes; a pid file older than that is stale (SIGKILLed, pid reused).
		const started = Date.parse(run.replace(/^(\d{4}-\d\d-\d\dT\d\d)(\d\d)(\d\d)Z$/, '$1:$2:$3Z'));
		const recent = Number.isFinite(started) && host.now().getTime() - started < 30 * 60_000;
		if (!done && recent && Number.isInteger(pid) && pid > 0 && host.processAlive(pid)) return {run, state: 'pending'};
		return undefined;
	}
	return undefined;
}

type IpAddr = {ifname?: string; addr_info?: Array<{family?: string; local?: string; prefixlen?: number; scope?: string}>};

export function parseIpAddr(json: string): NodeAddress[] {
	let data: IpAddr[];
	try {
		data = JSON.parse(json) as IpAddr[];
	} catch {
		return [];
	}
	const out: NodeAddress[] = [];
	for (const link of data) {
		if (!link.ifname || link.ifname === 'lo') continue;
		for (const info of link.addr_info ?? []) {
			if (!info.local || info.scope === 'host' || info.scope === 'link') continue;
			const family = familyOf(info.local);
			if (family === undefined) continue;
			out.push({iface: link.ifname, address: canonicalAddress(info.local)!, family, prefix: info.prefixlen ?? (family === 4 ? 32 : 128)});
		}
	}
	return out;
}

async function readAddresses(host: Host): Promise<NodeAddress[]> {
	const result = await host.run(['ip', '-j', 'addr', 'show'], READ);
	return result.exitCode === 0 ? parseIpAddr(result.stdout) : [];
}

async function readChain(host: Host, variant: IptablesVariant, family: Family): Promise<ChainState & {count: number}> {
	const {save} = variantCommands(variant, family);
	const result = await host.run([save], READ);
	if (result.exitCode !== 0) {
		return {available: false, tablePresent: false, chainExists: false, rules: [], input: [], count: 0, problem: `${save}: ${(result.stderr || result.stdout).trim().split('\n')[0] ?? `exit ${result.exitCode}`}`};
	}
	const parsed = parseSave(result.stdout);
	const count = result.stdout.split('\n').filter(line => line.startsWith('-A ')).length;
	return {available: true, tablePresent: parsed.tablePresent, chainExists: parsed.chainExists, rules: parsed.rules, input: parsed.input, count};
}

async function readIptables(host: Host): Promise<IptablesFacts | undefined> {
	const [legacy, nft] = await Promise.all([readChain(host, 'legacy', 4), readChain(host, 'nft', 4)]);
	if (!legacy.available && !nft.available) return undefined;
	let variant: IptablesVariant;
	let reason: string;
	if (!legacy.available || !nft.available) {
		variant = legacy.available ? 'legacy' : 'nft';
		reason = `only iptables-${variant} works here`;
	} else if (legacy.chainExists !== nft.chainExists) {
		variant = legacy.chainExists ? 'legacy' : 'nft';
		reason = `etcd-harden's chain is in iptables-${variant}`;
	} else if (legacy.count !== nft.count) {
		variant = legacy.count > nft.count ? 'legacy' : 'nft';
		reason = `${legacy.count} rule(s) under iptables-legacy, ${nft.count} under iptables-nft`;
	} else {
		const version = await host.run(['iptables', '--version'], READ);
		variant = /legacy/.test(version.stdout) ? 'legacy' : 'nft';
		reason = `no rules in either variant; the iptables command is ${variant === 'legacy' ? 'iptables-legacy' : 'iptables-nft (nf_tables)'}`;
	}
	const state4 = variant === 'legacy' ? legacy : nft;
	const state6 = await readChain(host, variant, 6);
	const strip = ({count: _count, ...state}: ChainState & {count: number}): ChainState => state;
	return {variant, reason, v4: variantCommands(variant, 4), v6: variantCommands(variant, 6), state4: strip(state4), state6: strip(state6), ruleCount: state4.count};
}

/** Tables iptables-nft makes (so they do not count as nftables used natively). */
const IPTABLES_NFT_TABLES = /^(ip|ip6|arp|bridge) (filter|nat|mangle|raw|security|broute)$/;

async function readNft(host: Host): Promise<NftFacts | undefined> {
	const tables = await host.run(['nft', 'list', 'tables'], READ);
	if (tables.exitCode !== 0) return undefined;
	const names = tables.stdout
		.split('\n')
		.map(line => line.trim().replace(/^table\s+/, ''))
		.filter(Boolean);
	const facts: NftFacts = {otherTables: names.filter(name => name !== TABLE_REF)};
	if (names.includes(TABLE_REF)) {
		const table = await host.run(['nft', 'list', 'table', 'inet', TABLE], READ);
		if (table.exitCode === 0) facts.table = table.stdout;
	}
	return facts;
}

/** Which backend the node uses now, and why (the default answer to the backend question). */
export function backendInUse(facts: Pick<FirewallFacts, 'iptables' | 'nft'>): {backend: BackendId; reason: string} | undefined {
	const {iptables, nft} = facts;
	if (nft?.table !== undefined) return {backend: 'nftables', reason: `table ${TABLE_REF} (etcd-harden's) is loaded`};
	if (iptables && (iptables.state4.chainExists || iptables.state6.chainExists)) return {backend: 'iptables', reason: `chain ETCD-HARDEN (etcd-harden's) is in iptables-${iptables.variant}`};
	const native = (nft?.otherTables ?? []).filter(name => !IPTABLES_NFT_TABLES.test(name));
	const iptablesRules = iptables?.ruleCount ?? 0;
	if (nft && native.length > 0 && iptablesRules === 0) return {backend: 'nftables', reason: `nftables tables ${native.join(', ')} are loaded and iptables has no rules`};
	if (iptables && iptablesRules > 0) return {backend: 'iptables', reason: `iptables-${iptables.variant} has ${iptablesRules} rule(s) (${iptables.reason})`};
	if (nft && native.length > 0) return {backend: 'nftables', reason: `nftables tables ${native.join(', ')} are loaded`};
	if (iptables) return {backend: 'iptables', reason: iptables.reason};
	if (nft) return {backend: 'nftables', reason: 'nft is the only firewall tool here'};
	return undefined;
}

type MemberList = {members?: Array<{ID?: number | string; name?: string; peerURLs?: string[]; clientURLs?: string[]}>};

async function readMembers(host: Host, facts: Facts): Promise<{members?: EtcdMember[]; problem?: string}> {
	let connection;
	try {
		connection = etcdConnectionFromFlags(facts.apiserver.flags);
	} catch (error) {
		return {problem: (error as Error).message};
	}
	try {
		const list = await etcdctlJson<MemberList>(host, connection, ['member', 'list'], {readOnly: true, commandTimeout: '5s', timeoutMs: 20_000});
		const members = (list.members ?? []).map(member => ({
			name: member.name ?? '',
			id: member.ID === undefined ? '' : String(member.ID),
			peerURLs: member.peerURLs ?? [],
			clientURLs: member.clientURLs ?? [],
		}));
		return {members};
	} catch (error) {
		return {problem: (error as Error).message.split('\n')[0]};
	}
}

type NodeList = {items?: Array<{metadata?: {name?: string}; status?: {addresses?: Array<{type?: string; address?: string}>}}>};

async function readControlPlane(host: Host, facts: Facts, kubeconfig: string | undefined): Promise<{nodes?: ControlPlaneNode[]; problem?: string}> {
	const cluster = facts.cluster;
	if (!cluster?.reachable) return {problem: cluster?.problem ?? 'no live apiserver'};
	try {
		const api = new KubeApi(host, await loadKubeconfig(host, kubeconfig ?? cluster.kubeconfig), {retries: 0, timeoutMs: 10_000});
		const byName = new Map<string, ControlPlaneNode>();
		for (const label of ['node-role.kubernetes.io/control-plane', 'node-role.kubernetes.io/master']) {
			const list = await api.get<NodeList>(`/api/v1/nodes?labelSelector=${encodeURIComponent(label)}`);
			for (const item of list.items ?? []) {
				const name = item.metadata?.name ?? '';
				const addresses = (item.status?.addresses ?? [])
					.filter(address => address.type === 'InternalIP' && address.address && familyOf(address.address))
					.map(address => canonicalAddress(address.address!)!);
				byName.set(name, {name, addresses});
			}
		}
		return {nodes: [...byName.values()].sort((a, b) => a.name.localeCompare(b.name))};
	} catch (error) {
		return {problem: `cannot list control-plane Nodes: ${(error as Error).message.split('\n')[0]}`};
	}
}

async function resolveHosts(host: Host, facts: Facts, members: EtcdMember[] | undefined): Promise<Record<string, string[]>> {
	const urls = [
		...(members ?? []).flatMap(member => [...member.peerURLs, ...member.clientURLs]),
		...parseInitialCluster(facts.etcd.flags['initial-cluster']).flatMap(member => member.peerURLs),
		...(facts.apiserver.flags['etcd-servers'] ?? '').split(','),
	];
	const names = new Set<string>();
	for (const url of urls) {
		const name = urlHost(url.trim());
		if (name && familyOf(name) === undefined) names.add(name);
	}
	const resolved: Record<string, string[]> = {};
	for (const name of [...names].sort()) {
		const result = await host.run(['getent', 'ahosts', name], READ);
		if (result.exitCode !== 0) continue;
		const addresses = new Set<string>();
		for (const line of result.stdout.split('\n')) {
			const address = line.trim().split(/\s+/)[0];
			if (address && familyOf(address)) addresses.add(canonicalAddress(address)!);
		}
		if (addresses.size > 0) resolved[name] = [...addresses];
	}
	return resolved;
}

async function readPersistence(host: Host): Promise<FirewallFacts['persistence']> {
	const exists = async (paths: readonly string[]): Promise<boolean> => {
		for (const path of paths) if (await host.stat(path)) return true;
		return false;
	};
	const [netfilterPersistent, nftablesService, rulesV4, rulesV6, nftablesConf, nftFile] = await Promise.all([
		exists(NETFILTER_PERSISTENT_PATHS),
		exists(NFTABLES_SERVICE_PATHS),
		host.readText(RULES_V4),
		host.readText(RULES_V6),
		host.readText(NFTABLES_CONF),
		host.readText(NFT_FILE),
	]);
	const persistence: FirewallFacts['persistence'] = {netfilterPersistent, nftablesService};
	if (rulesV4 !== undefined) persistence.rulesV4 = rulesV4;
	if (rulesV6 !== undefined) persistence.rulesV6 = rulesV6;
	if (nftablesConf !== undefined) persistence.nftablesConf = nftablesConf;
	if (nftFile !== undefined) persistence.nftFile = nftFile;
	return persistence;
}

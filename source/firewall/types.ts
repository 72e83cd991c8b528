/**
 * What discovery finds about the node's firewall and etcd's network peers (plain data, part of
 * Facts as `firewall`). Read-only probing lives in source/stages/discover-firewall.ts.
 */
import type {Family} from './address.js';

export type IptablesVariant = 'legacy' | 'nft';
export type BackendId = 'iptables' | 'nftables';

/** Our part of one iptables family's filter table, as `iptables-save -t filter` prints it. */
export type ChainState = {
	/** The save command ran. */
	available: boolean;
	/** The output has a `*filter` section at all. */
	tablePresent: boolean;
	/** ETCD-HARDEN is declared. */
	chainExists: boolean;
	/** The chain's rules as printed (`-A ETCD-HARDEN ...`), in order. */
	rules: string[];
	/** Every `-A INPUT` line, in order (the jump's position is restored exactly on revert). */
	input: string[];
	/** Why the save command failed. */
	problem?: string;
};

export type IptablesCommands = {save: string; restore: string};

export type IptablesFacts = {
	variant: IptablesVariant;
	/** Why this variant was taken (rule counts, `iptables --version`). */
	reason: string;
	v4: IptablesCommands;
	v6: IptablesCommands;
	state4: ChainState;
	state6: ChainState;
	/** Rules (`-A` lines, every table) of the chosen variant, IPv4. */
	ruleCount: number;
};

export type NftFacts = {
	/** `nft list table inet etcd_harden` when the table exists. */
	table?: string;
	/** Other tables (`family name`), for deciding whether nftables is in use natively. */
	otherTables: string[];
};

export type NodeAddress = {iface: string; address: string; family: Family; prefix: number};

export type EtcdMember = {name: string; id: string; peerURLs: string[]; clientURLs: string[]};

export type ControlPlaneNode = {name: string; addresses: string[]};

export type PersistenceFacts = {
	/** netfilter-persistent (Debian's iptables-persistent) is installed. */
	netfilterPersistent: boolean;
	/** The nftables service (systemd unit) is installed. */
	nftablesService: boolean;
	rulesV4?: string;
	rulesV6?: string;
	nftablesConf?: string;
	/** Our include file, as written by an earlier run. */
	nftFile?: string;
};

export type WatchdogFacts = {
	/** The run directory's id. */
	run: string;
	/** reverted: it restored the earlier rules; failed: it tried and could not; pending: it still waits. */
	state: 'reverted' | 'failed' | 'pending';
	/** When it acted (UTC). */
	time?: string;
	/** Its report (firewall-watchdog-reverted), for failures. */
	detail?: string;
};

export type FirewallFacts = {
	/** Absent when neither iptables variant works here. */
	iptables?: IptablesFacts;
	/** Absent when `nft` does not run. */
	nft?: NftFacts;
	/** Which backend the node uses now, and why. */
	inUse?: {backend: BackendId; reason: string};
	/** This node's addresses (`ip -j addr`), loopback excluded. */
	addresses: NodeAddress[];
	/** `etcdctl member list`; undefined when etcd could not be asked (see membersProblem). */
	members?: EtcdMember[];
	membersProblem?: string;
	/** Control-plane Node objects (InternalIP addresses), when the apiserver answered. */
	controlPlane?: ControlPlaneNode[];
	controlPlaneProblem?: string;
	/** Host names from member URLs and --initial-cluster, resolved (`getent ahosts`). */
	resolved: Record<string, string[]>;
	persistence: PersistenceFacts;
	/** /var/lib/etcd-harden/firewall.json: the rules an earlier run applied. */
	record?: string;
	/** The watchdog of the latest run that applied firewall rules, when it acted or still waits. */
	watchdog?: WatchdogFacts;
};

/**
 * Facts: plain data that discovery (source/discover/) reads from the node through the host
 * and that every stage plans from. Composed from the domains' own types; no functions, no
 * host handles: facts can be printed as JSON.
 */
import type {Stage} from '../engine/contract.js';
import type {ClusterFacts, EncryptionFacts, ManifestFacts, PkiFacts} from '../kube/types.js';
import type {AtRestFacts, EtcdCertFacts, EtcdLiveFacts, HistoryFacts} from '../etcd/types.js';
import type {FirewallFacts} from '../firewall/types.js';
import type {RotationFacts} from '../kube/rotation-status.js';
import type {BackupSetup} from '../backup/setup.js';

export type * from '../kube/types.js';
export type {AtRestFacts, AtRestResource, HistoryFacts} from '../etcd/types.js';

export type Facts = {
	root: string;
	isRoot: boolean;
	apiserver: ManifestFacts;
	etcd: ManifestFacts;
	encryption: EncryptionFacts;
	pki: PkiFacts;
	/** Present only when discovery probed the running control plane (etcd-harden on the node). */
	cluster?: ClusterFacts;
	atRest?: AtRestFacts;
	/** The scheduled backup's recipients and output (its systemd service), when one is set up. */
	backupSetup?: BackupSetup;
	/** Plaintext history in etcd's data directory, and the members (live only; source/discover/history.ts). */
	history?: HistoryFacts;
	/** Certificates the etcd and apiserver manifests name (source/discover/etcd.ts). */
	etcdCerts?: EtcdCertFacts;
	/** Connection tests and auth state of the running etcd (live discovery only). */
	etcdLive?: EtcdLiveFacts;
	/** The node's firewall and etcd's peers (live only; source/discover/firewall.ts). */
	firewall?: FirewallFacts;
	/** This node's name, the control planes and their reported configs (rotate, disable, status; source/kube/rotation-status.ts). */
	rotation?: RotationFacts;
};

/** A stage of this tool: plans from these facts. */
export type NodeStage = Stage<Facts>;

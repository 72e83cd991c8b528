/**
 * The etcd domain's types: certificates the manifests name, what the running etcd showed,
 * and the raw values of encrypted resources. Plain data, composed into the stages' Facts by
 * source/stages/facts.ts.
 */
import type {ClusterFacts, EncryptionFacts, ManifestFacts, PkiFacts} from '../kube/types.js';
import type {CertInfo} from './certs.js';

/** What the etcd audits and plans read of the node (the stages' Facts has it all). */
export type EtcdNodeFacts = {
	apiserver: ManifestFacts;
	etcd: ManifestFacts;
	encryption: EncryptionFacts;
	pki: PkiFacts;
	etcdCerts?: EtcdCertFacts;
	etcdLive?: EtcdLiveFacts;
	cluster?: ClusterFacts;
};

/** Certificates named by the manifests (node paths, behind the pods' hostPath mounts). */
export type EtcdCertFacts = {
	/** etcd --cert-file */
	server?: CertInfo;
	/** etcd --peer-cert-file */
	peer?: CertInfo;
	/** etcd --trusted-ca-file */
	trustedCa?: CertInfo;
	/** etcd --peer-trusted-ca-file */
	peerTrustedCa?: CertInfo;
	/** kube-apiserver --etcd-certfile */
	apiserverClient?: CertInfo;
	/** kube-apiserver --etcd-cafile */
	apiserverEtcdCa?: CertInfo;
	/** <pki>/etcd/healthcheck-client.crt (kubeadm's health-check client) */
	healthcheckClient?: CertInfo;
	/** kube-apiserver --client-ca-file (the Kubernetes CA) */
	kubernetesCa?: CertInfo;
	/** When the files were read (ISO time): expiry is judged against it. */
	checkedAt?: string;
};

/** One real connection attempt to a running etcd. */
export type EtcdProbe = {
	id: 'plaintext' | 'no-client-cert' | 'apiserver-cert' | 'peer-cert';
	url: string;
	/** The secure outcome: plaintext and cert-less connections refused, the apiserver's cert accepted. */
	secure: boolean;
	/** What was seen (HTTP status, exit code, error). */
	detail: string;
};

export type EtcdAuthFacts = {
	/** undefined when it could not be told. */
	enabled?: boolean;
	/** user -> roles, when they could be listed. */
	users?: Record<string, string[]>;
	/** role -> permissions as etcdctl prints them. */
	roles?: string[];
	/** The root password file etcd-harden keeps (source/etcd/auth.ts ROOT_PASSWORD_FILE). */
	rootPasswordFile?: {path: string; exists: boolean; mode?: number};
	problem?: string;
};

/** What the running etcd showed (only when etcd-harden runs on the node itself). */
export type EtcdLiveFacts = {
	probes: EtcdProbe[];
	/** `etcdctl endpoint health` with the health-check client certificate. */
	healthy: boolean;
	auth: EtcdAuthFacts;
	problem?: string;
};

/** Raw etcd values of one resource, classified (never values or keys' material). */
export type AtRestResource = {
	resource: string;
	total: number;
	/** Counts per stored key: `secretbox:key1`, `plaintext`, `unknown`. */
	byKey: Record<string, number>;
	plaintext: number;
	unknown: number;
	/** Label of the primary of the config on disk, e.g. `secretbox:key1` or `identity`. */
	primary?: string;
	/** How many objects are not stored with the primary. */
	notOnPrimary: number;
	/** Values under a provider/key the config cannot read. */
	keyNotInConfig: number;
	/** Sample decryption with the config: checked, failed, first failures (etcd key + reason). */
	decrypt?: {checked: number; failed: number; failures: Array<{key: string; reason: string}>};
	/** Every value is on the primary and readable. */
	clean: boolean;
};

export type AtRestFacts = {
	resources: AtRestResource[];
	/** Set when etcd could not be scanned (names the problem and the fix). */
	problem?: string;
};

/** One of etcd's files scanned for plaintext history (source/etcd/history.ts). */
export type HistoryFileScan = {
	/** Node path (the db file, or the WAL directory). */
	path: string;
	bytes: number;
	/** Plaintext records per encrypted resource. */
	plaintext: Record<string, number>;
	plaintextTotal: number;
	/** Records under keys the config no longer has (`secretbox:key1` -> count). */
	removedKeys: Record<string, number>;
	removedTotal: number;
};

/** An etcd cluster member as `etcdctl member list` and `endpoint status` show it. */
export type EtcdMember = {
	/** Member ID in hex, as etcdctl prints it in tables. */
	id: string;
	name: string;
	/** Its first client URL. */
	endpoint: string;
	leader: boolean;
	/** Bytes of its db file (`endpoint status`), when it answered. */
	dbSize?: number;
	dbSizeInUse?: number;
	/** Why `endpoint status` failed for it. */
	problem?: string;
};

/** Plaintext history in etcd's data directory on this node, and the cluster a purge works on. */
export type HistoryFacts = {
	/** Node path of etcd's --data-dir (through its hostPath mount). */
	dataDir: string;
	/** Resources whose plaintext is residue (the config encrypts them on write). */
	resources: string[];
	/** Resources of the config the file scan cannot count (stored kind unknown). */
	uncounted: string[];
	/** member/snap/db; absent when the file does not exist. */
	db?: HistoryFileScan;
	/** member/wal/*.wal, together. */
	wal?: HistoryFileScan & {files: number};
	/** etcd's --snapshot-count and --max-wals (or their defaults): when WAL files are dropped. */
	walSettings: {snapshotCount: number; maxWals: number};
	/** Mode of the data directory (CIS: 0700). */
	dataDirMode?: number;
	members?: EtcdMember[];
	/** The cluster's current revision. */
	revision?: number;
	/** Active alarms (`etcdctl alarm list`), e.g. `NOSPACE`. */
	alarms?: string[];
	/** Why the files could not be scanned. */
	problem?: string;
	/** Why the members could not be listed. */
	membersProblem?: string;
};

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

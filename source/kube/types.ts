/**
 * The kube domain's types: what discovery reads from the static pod manifests, the
 * EncryptionConfiguration, kubeadm's PKI layout and the running apiserver. Plain data (no
 * functions, no host handles), composed into the stages' Facts by source/stages/facts.ts.
 */

export type Volume = {name: string; hostPath?: string; type?: string};
export type VolumeMount = {name: string; mountPath: string; readOnly?: boolean};

export type ManifestFacts = {
	/** Node path, e.g. /etc/kubernetes/manifests/kube-apiserver.yaml */
	path: string;
	exists: boolean;
	/** Raw file text; planning patches this text with the yaml Document API. */
	text?: string;
	mode?: number;
	/** Set when the file exists but cannot be used: names the file, the problem and the fix. */
	error?: string;
	image?: string;
	/** From the image tag, without the leading v: "1.20.2". */
	version?: string;
	/** The container's command and args, in order. */
	command: string[];
	/** `--flag=value` pairs from command (last occurrence wins); `--flag` alone maps to "true". */
	flags: Record<string, string>;
	volumes: Volume[];
	volumeMounts: VolumeMount[];
	annotations: Record<string, string>;
};

export type KeyedProviderType = 'secretbox' | 'aesgcm' | 'aescbc';
export type ProviderType = KeyedProviderType | 'identity' | 'kms';

export type EncryptionKey = {name: string; secret: string};

export type Provider =
	| {type: KeyedProviderType; keys: EncryptionKey[]}
	| {type: 'identity'}
	| {
			type: 'kms';
			apiVersion?: 'v1' | 'v2';
			name: string;
			endpoint: string;
			timeout?: string;
			cachesize?: number;
	  };

export type ResourceRule = {resources: string[]; providers: Provider[]};

export type EncryptionConfig = {
	apiVersion: string;
	kind: 'EncryptionConfiguration';
	resources: ResourceRule[];
};

/** One encryption config file as read (not necessarily the one kube-apiserver uses). */
export type EncryptionFileFacts = {
	/** Node path of the file. */
	path: string;
	exists: boolean;
	mode?: number;
	text?: string;
	/** Parsed and valid config. */
	config?: EncryptionConfig;
	/** Problems that make the config unusable: each names the file, the problem and the fix. */
	errors: string[];
};

/** The config kube-apiserver uses (the flag's, or the default path when there is no flag). */
export type EncryptionFacts = EncryptionFileFacts & {
	/** Value of --encryption-provider-config in the apiserver manifest, if set. */
	flagPath?: string;
	/** Whether the config's path is visible inside the apiserver pod through its hostPath mounts. */
	mountedInPod: boolean;
	/**
	 * The file at the config path the operator chose, when it is not `path` (read only when
	 * planning with answers): an existing EncryptionConfiguration there is merged, anything
	 * else is refused.
	 */
	target?: EncryptionFileFacts;
};

export type PkiFacts = {
	dir: string;
	/** Node path -> exists, for the files kubeadm lays out and the manifests reference. */
	files: Record<string, {exists: boolean; mode?: number}>;
};

/** The running control plane, read through the API (only when etcd-harden runs on the node itself). */
export type ClusterFacts = {
	/** Node path of the kubeconfig used (admin.conf). */
	kubeconfig: string;
	server?: string;
	/** The apiserver answered at all. */
	reachable: boolean;
	/** GET /readyz said ok. */
	ready: boolean;
	/** From /version, without the leading v: "1.20.2". */
	version?: string;
	/** Why the apiserver could not be used (names the problem and the fix). */
	problem?: string;
	/** The kubeadm-config ConfigMap's ClusterConfiguration text, when it exists. */
	kubeadmConfig?: string;
};

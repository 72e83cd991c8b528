/**
 * kubeadm's node paths and this tool's defaults for the control plane: the one home of each
 * (stages, tasks, discovery and the CLI import them from here).
 */

/** The admin kubeconfig kubeadm writes (--kubeconfig overrides it). */
export const ADMIN_KUBECONFIG = '/etc/kubernetes/admin.conf';
/** The static pod manifests directory (kubelet's staticPodPath). */
export const MANIFESTS_DIR = '/etc/kubernetes/manifests';
export const APISERVER_MANIFEST = `${MANIFESTS_DIR}/kube-apiserver.yaml`;
export const ETCD_MANIFEST = `${MANIFESTS_DIR}/etcd.yaml`;
/** How long a restart gate waits for kube-apiserver or etcd (--timeout), seconds. */
export const GATE_TIMEOUT_SECONDS = 180;
/** How often a restart gate polls, milliseconds. */
export const GATE_POLL_MS = 1000;
/** The annotation that makes the kubelet restart kube-apiserver when the config changes. */
export const CONFIG_DIGEST_ANNOTATION = 'etcd-harden.io/encryption-config-sha256';

/** The containers of kubeadm's static pods. */
export const APISERVER_CONTAINER = 'kube-apiserver';
export const ETCD_CONTAINER = 'etcd';
/** kube-apiserver's flag naming the EncryptionConfiguration. */
export const ENCRYPTION_FLAG = 'encryption-provider-config';

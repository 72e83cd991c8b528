// The files kubeadm 1.20 writes for a single control-plane node, in kubeadm's own formatting.

export interface NodeIdentity {
	nodeName: string;
	nodeIp: string;
}

export const KUBE_APISERVER_IMAGE = 'k8s.gcr.io/kube-apiserver:v1.20.2';
export const ETCD_IMAGE = 'k8s.gcr.io/etcd:3.4.13-0';
export const SERVICE_SUBNET = '10.96.0.0/12';

function listenClientUrls(nodeIp: string): string {
	return nodeIp === '127.0.0.1' ? 'https://127.0.0.1:2379' : `https://127.0.0.1:2379,https://${nodeIp}:2379`;
}

export function etcdManifest({nodeName, nodeIp}: NodeIdentity): string {
	return `apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://${nodeIp}:2379
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://${nodeIp}:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --client-cert-auth=true
    - --data-dir=/var/lib/etcd
    - --initial-advertise-peer-urls=https://${nodeIp}:2380
    - --initial-cluster=${nodeName}=https://${nodeIp}:2380
    - --key-file=/etc/kubernetes/pki/etcd/server.key
    - --listen-client-urls=${listenClientUrls(nodeIp)}
    - --listen-metrics-urls=http://127.0.0.1:2381
    - --listen-peer-urls=https://${nodeIp}:2380
    - --name=${nodeName}
    - --peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt
    - --peer-client-cert-auth=true
    - --peer-key-file=/etc/kubernetes/pki/etcd/peer.key
    - --peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    - --snapshot-count=10000
    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    image: ${ETCD_IMAGE}
    imagePullPolicy: IfNotPresent
    livenessProbe:
      failureThreshold: 8
      httpGet:
        host: 127.0.0.1
        path: /health
        port: 2381
        scheme: HTTP
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
    name: etcd
    resources:
      requests:
        cpu: 100m
        ephemeral-storage: 100Mi
        memory: 100Mi
    startupProbe:
      failureThreshold: 24
      httpGet:
        host: 127.0.0.1
        path: /health
        port: 2381
        scheme: HTTP
      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
    - mountPath: /etc/kubernetes/pki/etcd
      name: etcd-certs
  hostNetwork: true
  priorityClassName: system-node-critical
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki/etcd
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
status: {}
`;
}

function probe(nodeIp: string, pathName: string, extra: string): string {
	return `      httpGet:
        host: ${nodeIp}
        path: ${pathName}
        port: 6443
        scheme: HTTPS
${extra}`;
}

export function kubeApiserverManifest({nodeIp}: NodeIdentity): string {
	const liveness = `      initialDelaySeconds: 10
      periodSeconds: 10
      timeoutSeconds: 15
`;
	return `apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: ${nodeIp}:6443
  creationTimestamp: null
  labels:
    component: kube-apiserver
    tier: control-plane
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=${nodeIp}
    - --allow-privileged=true
    - --authorization-mode=Node,RBAC
    - --client-ca-file=/etc/kubernetes/pki/ca.crt
    - --enable-admission-plugins=NodeRestriction
    - --enable-bootstrap-token-auth=true
    - --etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt
    - --etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt
    - --etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key
    - --etcd-servers=https://127.0.0.1:2379
    - --insecure-port=0
    - --kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt
    - --kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key
    - --kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname
    - --proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt
    - --proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key
    - --requestheader-allowed-names=front-proxy-client
    - --requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt
    - --requestheader-extra-headers-prefix=X-Remote-Extra-
    - --requestheader-group-headers=X-Remote-Group
    - --requestheader-username-headers=X-Remote-User
    - --secure-port=6443
    - --service-account-issuer=https://kubernetes.default.svc.cluster.local
    - --service-account-key-file=/etc/kubernetes/pki/sa.pub
    - --service-account-signing-key-file=/etc/kubernetes/pki/sa.key
    - --service-cluster-ip-range=${SERVICE_SUBNET}
    - --tls-cert-file=/etc/kubernetes/pki/apiserver.crt
    - --tls-private-key-file=/etc/kubernetes/pki/apiserver.key
    image: ${KUBE_APISERVER_IMAGE}
    imagePullPolicy: IfNotPresent
    livenessProbe:
      failureThreshold: 8
${probe(nodeIp, '/livez', liveness)}    name: kube-apiserver
    readinessProbe:
      failureThreshold: 3
${probe(nodeIp, '/readyz', '      periodSeconds: 1\n      timeoutSeconds: 15\n')}    resources:
      requests:
        cpu: 250m
    startupProbe:
      failureThreshold: 24
${probe(nodeIp, '/livez', liveness)}    volumeMounts:
    - mountPath: /etc/ssl/certs
      name: ca-certs
      readOnly: true
    - mountPath: /etc/ca-certificates
      name: etc-ca-certificates
      readOnly: true
    - mountPath: /etc/pki
      name: etc-pki
      readOnly: true
    - mountPath: /etc/kubernetes/pki
      name: k8s-certs
      readOnly: true
    - mountPath: /usr/local/share/ca-certificates
      name: usr-local-share-ca-certificates
      readOnly: true
    - mountPath: /usr/share/ca-certificates
      name: usr-share-ca-certificates
      readOnly: true
  hostNetwork: true
  priorityClassName: system-node-critical
  volumes:
  - hostPath:
      path: /etc/ssl/certs
      type: DirectoryOrCreate
    name: ca-certs
  - hostPath:
      path: /etc/ca-certificates
      type: DirectoryOrCreate
    name: etc-ca-certificates
  - hostPath:
      path: /etc/pki
      type: DirectoryOrCreate
    name: etc-pki
  - hostPath:
      path: /etc/kubernetes/pki
      type: DirectoryOrCreate
    name: k8s-certs
  - hostPath:
      path: /usr/local/share/ca-certificates
      type: DirectoryOrCreate
    name: usr-local-share-ca-certificates
  - hostPath:
      path: /usr/share/ca-certificates
      type: DirectoryOrCreate
    name: usr-share-ca-certificates
status: {}
`;
}

export interface KubeconfigCredentials {
	caCrt: string;
	clientCrt: string;
	clientKey: string;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

export function adminKubeconfig(server: string, c: KubeconfigCredentials): string {
	return `apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ${b64(c.caCrt)}
    server: ${server}
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: ${b64(c.clientCrt)}
    client-key-data: ${b64(c.clientKey)}
`;
}

/** kubeadm 1.20's ClusterConfiguration, as stored in the kubeadm-config ConfigMap. */
export function clusterConfiguration(): string {
	return `apiServer:
  extraArgs:
    authorization-mode: Node,RBAC
  timeoutForControlPlane: 4m0s
apiVersion: kubeadm.k8s.io/v1beta2
certificatesDir: /etc/kubernetes/pki
clusterName: kubernetes
controllerManager: {}
dns:
  type: CoreDNS
etcd:
  local:
    dataDir: /var/lib/etcd
imageRepository: k8s.gcr.io
kind: ClusterConfiguration
kubernetesVersion: v1.20.2
networking:
  dnsDomain: cluster.local
  serviceSubnet: ${SERVICE_SUBNET}
scheduler: {}
`;
}

export function clusterStatus({nodeName, nodeIp}: NodeIdentity): string {
	return `apiEndpoints:
  ${nodeName}:
    advertiseAddress: ${nodeIp}
    bindPort: 6443
apiVersion: kubeadm.k8s.io/v1beta2
kind: ClusterStatus
`;
}

#!/bin/sh
# Regenerate the certificates of demo/ (etcd-harden demo): a kubeadm-shaped PKI made with openssl,
# valid for 100 years, so the demo tree passes its own `etcd-harden status` certificate checks.
# These keys are public (they are in this repository): they secure nothing but the demo copy.
set -eu
pki="$(cd "$(dirname "$0")/.." && pwd)/demo/etc/kubernetes/pki"
days=36500
node=demo-node
ip=10.0.0.10
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

ca() { # base subject
	printf '[req]\ndistinguished_name=dn\n[dn]\n[ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,keyEncipherment,keyCertSign\nsubjectKeyIdentifier=hash\n' >"$work/ca.cnf"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.crt" -subj "$2" -days "$days" -config "$work/ca.cnf" -extensions ca 2>/dev/null
}
leaf() { # base subject ca usage san
	{
		printf '[req]\ndistinguished_name=dn\n[dn]\n[leaf]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\nauthorityKeyIdentifier=keyid\n' "$4"
		if [ -n "$5" ]; then printf 'subjectAltName=%s\n' "$5"; fi
	} >"$work/leaf.cnf"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.crt" -subj "$2" -days "$days" \
		-CA "$pki/$3.crt" -CAkey "$pki/$3.key" -config "$work/leaf.cnf" -extensions leaf 2>/dev/null
}

ca ca /CN=kubernetes
ca front-proxy-ca /CN=front-proxy-ca
ca etcd/ca /CN=etcd-ca
etcd_names="DNS:$node,DNS:localhost,IP:$ip,IP:127.0.0.1,IP:::1"
leaf apiserver /CN=kube-apiserver ca serverAuth "DNS:$node,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1,IP:$ip,IP:127.0.0.1"
leaf apiserver-kubelet-client /O=system:masters/CN=kube-apiserver-kubelet-client ca clientAuth ""
leaf apiserver-etcd-client /O=system:masters/CN=kube-apiserver-etcd-client etcd/ca clientAuth ""
leaf front-proxy-client /CN=front-proxy-client front-proxy-ca clientAuth ""
leaf etcd/server "/CN=$node" etcd/ca serverAuth,clientAuth "$etcd_names"
leaf etcd/peer "/CN=$node" etcd/ca serverAuth,clientAuth "$etcd_names"
leaf etcd/healthcheck-client /O=system:masters/CN=kube-etcd-healthcheck-client etcd/ca clientAuth ""
# 0644 like every file of a checkout (git keeps no mode bits but +x); the demo copies them as they are.
find "$pki" \( -name '*.key' -o -name '*.crt' \) -exec chmod 644 {} +

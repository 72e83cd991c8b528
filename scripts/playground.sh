#!/usr/bin/env bash
# `npm run playground [-- <etcd-harden args>]`: provision the real components, build the tool, start
# a real kubeadm-shaped control plane in private namespaces and run the wizard against it.
# Everything it changes (/etc/kubernetes, /var/lib/etcd, /var/lib/etcd-harden, firewall rules) lives
# in those namespaces and temp dirs, and is removed on exit or Ctrl-C.
#
# Environment: PLAYGROUND_SECRETS (default 3000), PLAYGROUND_SHELL=1 (a shell in the namespace
# after the wizard exits, to look around: kubectl, etcdctl, /etc/kubernetes, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
	echo "The playground needs root (namespaces, mounts, packages): sudo npm run playground" >&2
	exit 1
fi
if ! PROVISION_CHECK=1 scripts/provision.sh 2>/dev/null; then
	echo "Provisioning the real components (first run on this machine builds kube-apiserver; a few minutes)..." >&2
	scripts/provision.sh </dev/null
fi
echo "Building etcd-harden..." >&2
if ! npm run --silent build >&2; then
	if [[ -f dist/cli.js ]]; then
		echo "warning: the build failed; using the previous dist/cli.js" >&2
	else
		echo "the build failed and there is no dist/cli.js" >&2
		exit 1
	fi
fi
exec node --import tsx scripts/playground.ts "$@"

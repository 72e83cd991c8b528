#!/usr/bin/env bash
# Provision the real components the e2e tests, benchmarks and the playground need.
#
# Idempotent: installs only missing Debian packages, and builds kube-apiserver 1.20.2 from Debian's
# `kubernetes` source package once per machine, caching the binary outside the repository.
# Quick (seconds) when everything is already present. Non-interactive (works with CI=true, no stdin).
#
# Environment:
#   ETCD_HARDEN_CACHE   cache directory (default /var/cache/etcd-harden)
#   PROVISION_CHECK=1   only check; exit 0 if everything is present, 1 otherwise (no changes)
set -euo pipefail

CACHE="${ETCD_HARDEN_CACHE:-/var/cache/etcd-harden}"
KUBE_VERSION="1.20.2"
APISERVER_BIN="$CACHE/bin/kube-apiserver-$KUBE_VERSION"
SRC_LIST=/etc/apt/sources.list.d/etcd-harden-deb-src.sources
PACKAGES=(etcd-server etcd-client golang-go rsync openssl iptables nftables iproute2 tmux age dpkg-dev util-linux strace prometheus debootstrap ansible ansible-lint)
# etcd 3.5 (what kubeadm installs since Kubernetes 1.22) beside the system's 3.4: Debian trixie's
# etcd-server/etcd-client packages, unpacked into the cache (static binaries; nothing replaced).
ETCD35_SUITE=trixie
ETCD35_DIR="$CACHE/etcd-3.5"

START=$(date +%s)
log() { printf '[provision %4ss] %s\n' "$(( $(date +%s) - START ))" "$*" >&2; }

missing_packages() {
	local p
	for p in "${PACKAGES[@]}"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			printf '%s\n' "$p"
		fi
	done
}

if [[ "${PROVISION_CHECK:-}" == 1 ]]; then
	missing=$(missing_packages)
	if [[ -z "$missing" && -x "$APISERVER_BIN" && -x "$ETCD35_DIR/bin/etcdutl" ]]; then exit 0; fi
	[[ -n "$missing" ]] && echo "missing packages: $(echo $missing)" >&2
	[[ -x "$APISERVER_BIN" ]] || echo "missing $APISERVER_BIN" >&2
	[[ -x "$ETCD35_DIR/bin/etcdutl" ]] || echo "missing $ETCD35_DIR/bin/etcdutl" >&2
	exit 1
fi

if [[ $(id -u) -ne 0 ]]; then
	if [[ -z "$(missing_packages)" && -x "$APISERVER_BIN" && -x "$ETCD35_DIR/bin/etcdutl" ]]; then
		log "everything present (kube-apiserver $KUBE_VERSION cached at $APISERVER_BIN)"
		exit 0
	fi
	echo "provision.sh must run as root (it installs Debian packages and builds into $CACHE)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# ---------------------------------------------------------------- packages
mapfile -t MISSING < <(missing_packages)
if (( ${#MISSING[@]} > 0 )); then
	log "installing missing packages: ${MISSING[*]}"
	# Keep the etcd package from starting a system etcd on 2379: deny service starts during install.
	POLICY=/usr/sbin/policy-rc.d
	created_policy=0
	if [[ ! -e "$POLICY" ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$POLICY"
		chmod 0755 "$POLICY"
		created_policy=1
	fi
	trap '[[ $created_policy == 1 ]] && rm -f "$POLICY"' EXIT
	if ! apt-get install "${APT_OPTS[@]}" --no-install-recommends "${MISSING[@]}" </dev/null; then
		log "install failed; refreshing package lists and retrying"
		apt-get update -q </dev/null
		apt-get install "${APT_OPTS[@]}" --no-install-recommends "${MISSING[@]}" </dev/null
	fi
	if [[ $created_policy == 1 ]]; then rm -f "$POLICY"; fi
	trap - EXIT
	log "packages installed"
else
	log "all packages present"
fi

# A system etcd service must not hold 2379 (tests run their own etcd inside namespaces, but the
# playground and operators expect the host port free).
if command -v systemctl >/dev/null 2>&1; then
	if [[ -d /run/systemd/system ]] && systemctl is-active --quiet etcd 2>/dev/null; then
		log "stopping the system etcd service"
		systemctl stop etcd >/dev/null 2>&1 || true
	fi
	# `disable` also works without a running systemd (it only removes the wants/ symlinks).
	if systemctl is-enabled --quiet etcd 2>/dev/null; then
		log "disabling the system etcd service"
		systemctl disable etcd >/dev/null 2>&1 || true
	fi
fi
if [[ -x /etc/init.d/etcd ]] && /etc/init.d/etcd status >/dev/null 2>&1; then
	log "stopping the system etcd service (sysv)"
	/etc/init.d/etcd stop >/dev/null 2>&1 || true
	command -v update-rc.d >/dev/null && update-rc.d etcd disable >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------- etcd 3.5 (trixie), beside 3.4
# Binary package entries for $ETCD35_SUITE derived from the machine's own deb sources (the stanza
# or line naming the release's main suite), used by a private apt configuration under the cache:
# the system's sources, lists and installed packages are not touched.
derive_suite_sources() {
	local suite=$1 release f
	release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[[ -n "$release" ]] || { echo "cannot read VERSION_CODENAME from /etc/os-release" >&2; return 1; }
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f "$f" && "$f" != "$SRC_LIST" ]] || continue
		awk -v release="$release" -v suite="$suite" '
			function flush() {
				if (n > 0 && keep && hasmain && !disabled) { for (i = 1; i <= n; i++) print buf[i]; print "" }
				n = 0; keep = 0; hasmain = 0; disabled = 0
			}
			/^[[:space:]]*$/ { flush(); next }
			/^[[:space:]]*#/ { next }
			/^Enabled:[[:space:]]*no/ { disabled = 1 }
			/^Types:/ { if ($0 ~ /[[:space:]]deb([[:space:]]|$)/) keep = 1; buf[++n] = "Types: deb"; next }
			/^Suites:/ {
				for (k = 2; k <= NF; k++) if ($k == release) hasmain = 1
				buf[++n] = "Suites: " suite; next
			}
			{ buf[++n] = $0 }
			END { flush() }
		' "$f"
	done
	local legacy=()
	[[ -f /etc/apt/sources.list ]] && legacy+=(/etc/apt/sources.list)
	for f in /etc/apt/sources.list.d/*.list; do [[ -f "$f" ]] && legacy+=("$f"); done
	if (( ${#legacy[@]} > 0 )); then
		awk -v release="$release" -v suite="$suite" '
			$1 != "deb" { next }
			{ for (k = 2; k <= NF; k++) if ($k == release) { $k = suite; print; next } }
		' "${legacy[@]}"
	fi
}

if [[ -x "$ETCD35_DIR/bin/etcd" && -x "$ETCD35_DIR/bin/etcdctl" && -x "$ETCD35_DIR/bin/etcdutl" ]]; then
	log "etcd 3.5 cached at $ETCD35_DIR/bin"
else
	log "fetching etcd 3.5 ($ETCD35_SUITE's etcd-server and etcd-client) into $ETCD35_DIR"
	APT_DIR="$CACHE/apt-$ETCD35_SUITE"
	rm -rf "$APT_DIR" "$ETCD35_DIR.tmp"
	mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial" "$APT_DIR/debs" "$ETCD35_DIR.tmp"
	derive_suite_sources "$ETCD35_SUITE" >"$APT_DIR/suite.sources"
	if [[ -s "$APT_DIR/suite.sources" ]] && grep -q '^Types:' "$APT_DIR/suite.sources"; then
		mv "$APT_DIR/suite.sources" "$APT_DIR/sources.sources"
		SUITE_APT=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$APT_DIR" -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache::Archives="$APT_DIR/archives" -o Dir::State::Status=/dev/null -o APT::Architecture=amd64 -o APT::Sandbox::User=root)
	else
		[[ -s "$APT_DIR/suite.sources" ]] || { echo "could not derive a $ETCD35_SUITE entry from the apt sources on this machine" >&2; exit 1; }
		mkdir -p "$APT_DIR/parts"
		mv "$APT_DIR/suite.sources" "$APT_DIR/sources.list"
		SUITE_APT=(-o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts="$APT_DIR/parts" -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache::Archives="$APT_DIR/archives" -o Dir::State::Status=/dev/null -o APT::Architecture=amd64 -o APT::Sandbox::User=root)
	fi
	apt-get "${SUITE_APT[@]}" -q update </dev/null >&2
	(cd "$APT_DIR/debs" && apt-get "${SUITE_APT[@]}" -q download etcd-server etcd-client </dev/null >&2)
	for deb in "$APT_DIR"/debs/*.deb; do dpkg-deb -x "$deb" "$ETCD35_DIR.tmp/root"; done
	mkdir -p "$ETCD35_DIR.tmp/bin"
	for b in etcd etcdctl etcdutl; do
		found=$(find "$ETCD35_DIR.tmp/root/usr/bin" "$ETCD35_DIR.tmp/root/usr/sbin" -type f -name "$b" -perm -u+x 2>/dev/null | head -n1 || true)
		[[ -n "$found" ]] || { echo "the $ETCD35_SUITE etcd packages hold no $b binary" >&2; exit 1; }
		install -m 0755 "$found" "$ETCD35_DIR.tmp/bin/$b"
	done
	"$ETCD35_DIR.tmp/bin/etcd" --version >&2
	rm -rf "$ETCD35_DIR.tmp/root" "$ETCD35_DIR" "$APT_DIR"
	mv "$ETCD35_DIR.tmp" "$ETCD35_DIR"
	log "etcd 3.5 unpacked to $ETCD35_DIR/bin"
fi

# ---------------------------------------------------------------- kube-apiserver
if [[ -x "$APISERVER_BIN" ]]; then
	log "kube-apiserver $KUBE_VERSION cached at $APISERVER_BIN"
	log "done in $(( $(date +%s) - START ))s"
	exit 0
fi

mkdir -p "$CACHE/bin" "$CACHE/src"

have_deb_src() {
	grep -rqsE '^\s*deb-src\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null && return 0
	grep -rqsE '^\s*Types:.*\bdeb-src\b' /etc/apt/sources.list.d/*.sources 2>/dev/null && return 0
	return 1
}

# Derive deb-src entries from the machine's own apt sources (no host name is hard-coded anywhere).
derive_deb_src() {
	local tmp
	tmp=$(mktemp)
	local f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f "$f" && "$f" != "$SRC_LIST" ]] || continue
		# deb822: copy every stanza whose Types include "deb", with Types rewritten to deb-src.
		awk '
			function flush() {
				if (n > 0 && keep && !disabled) { for (i = 1; i <= n; i++) print buf[i]; print "" }
				n = 0; keep = 0; disabled = 0
			}
			/^[[:space:]]*$/ { flush(); next }
			/^[[:space:]]*#/ { next }
			/^Enabled:[[:space:]]*no/ { disabled = 1 }
			/^Types:/ {
				if ($0 ~ /[[:space:]]deb([[:space:]]|$)/) keep = 1
				buf[++n] = "Types: deb-src"; next
			}
			{ buf[++n] = $0 }
			END { flush() }
		' "$f" >>"$tmp"
	done
	local legacy=()
	[[ -f /etc/apt/sources.list ]] && legacy+=(/etc/apt/sources.list)
	for f in /etc/apt/sources.list.d/*.list; do [[ -f "$f" ]] && legacy+=("$f"); done
	if (( ${#legacy[@]} > 0 )); then
		# one-line format: "deb [opts] URI suite components" -> deb822 stanzas
		awk '
			$1 != "deb" { next }
			{
				i = 2; signed = ""
				if ($2 ~ /^\[/) {
					while (i <= NF) {
						if ($i ~ /^\[?signed-by=/) { signed = $i; sub(/^\[?signed-by=/, "", signed); sub(/\]$/, "", signed) }
						if ($i ~ /\]$/) { i++; break }
						i++
					}
				}
				uri = $i; suite = $(i + 1); comps = ""
				for (j = i + 2; j <= NF; j++) comps = comps (comps == "" ? "" : " ") $j
				print "Types: deb-src"; print "URIs: " uri; print "Suites: " suite; print "Components: " comps
				if (signed != "") print "Signed-By: " signed
				print ""
			}
		' "${legacy[@]}" >>"$tmp"
	fi
	if [[ ! -s "$tmp" ]]; then
		rm -f "$tmp"
		echo "could not derive deb-src entries from the apt sources on this machine" >&2
		exit 1
	fi
	install -m 0644 "$tmp" "$SRC_LIST"
	rm -f "$tmp"
	log "wrote deb-src entries derived from the apt sources to $SRC_LIST"
}

SRC_DIR=$(find "$CACHE/src" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' 2>/dev/null | head -n1 || true)
if [[ -z "$SRC_DIR" || ! -f "$SRC_DIR/.etcd-harden-extracted" ]]; then
	[[ -n "$SRC_DIR" ]] && rm -rf "$SRC_DIR"
	if ! apt-cache showsrc kubernetes >/dev/null 2>&1 || ! apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package:'; then
		have_deb_src || derive_deb_src
		log "apt-get update (source indexes)"
		apt-get update -q </dev/null
	fi
	log "downloading and unpacking Debian's kubernetes source package (~35 MB download, ~1 GB unpacked)"
	(cd "$CACHE/src" && apt-get source -q kubernetes </dev/null)
	SRC_DIR=$(find "$CACHE/src" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)
	[[ -n "$SRC_DIR" ]] || { echo "apt-get source kubernetes produced no source tree" >&2; exit 1; }
	touch "$SRC_DIR/.etcd-harden-extracted"
	rm -f "$CACHE"/src/*.tar.* "$CACHE"/src/*.dsc
	log "source tree at $SRC_DIR"
else
	log "reusing source tree $SRC_DIR"
fi

log "building kube-apiserver $KUBE_VERSION (make WHAT=cmd/kube-apiserver, CGO_ENABLED=0; ~4 min on 2 cores)"
GOPATH_DIR="$SRC_DIR/.go"
mkdir -p "$GOPATH_DIR/src/k8s.io"
ln -sfn "$SRC_DIR" "$GOPATH_DIR/src/k8s.io/kubernetes"
BUILD_START=$(date +%s)
(
	cd "$GOPATH_DIR/src/k8s.io/kubernetes"
	export GOPATH="$GOPATH_DIR" CGO_ENABLED=0 GOCACHE="$CACHE/go-build"
	export KUBE_GIT_VERSION="v$KUBE_VERSION" KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=debian
	# Progress: the build is quiet for minutes; print a heartbeat.
	( while sleep 30; do log "  ...still building ($(( $(date +%s) - BUILD_START ))s)"; done ) &
	hb=$!
	trap 'kill $hb 2>/dev/null || true' EXIT
	make WHAT=cmd/kube-apiserver </dev/null
)
BUILT=$(find "$SRC_DIR/_output" -type f -name kube-apiserver -perm -u+x 2>/dev/null | head -n1)
[[ -n "$BUILT" ]] || { echo "build finished but no kube-apiserver binary found under $SRC_DIR/_output" >&2; exit 1; }
install -m 0755 "$BUILT" "$APISERVER_BIN.tmp"
mv -f "$APISERVER_BIN.tmp" "$APISERVER_BIN"
log "built kube-apiserver in $(( $(date +%s) - BUILD_START ))s -> $APISERVER_BIN"
"$APISERVER_BIN" --version >&2 || true
if [[ "${ETCD_HARDEN_KEEP_SOURCE:-}" != 1 ]]; then
	log "removing the source tree and build outputs (about 2 GB; ETCD_HARDEN_KEEP_SOURCE=1 keeps them)"
	rm -rf "$CACHE/src" "$CACHE/go-build"
fi
log "done in $(( $(date +%s) - START ))s"

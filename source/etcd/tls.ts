/**
 * etcd transport security: the CIS-style audit of the etcd and kube-apiserver manifests (and
 * of the certificates they name), and the manifest patch that fixes what is missing. Pure:
 * facts in, checks and patches out.
 *
 * Check ids follow the CIS Kubernetes Benchmark v1.8.0 (as encoded in kube-bench's
 * cfg/cis-1.8/etcd.yaml and master.yaml): section 2 "Etcd Node Configuration" 2.1-2.7, and
 * the API server's 1.2.24 (--etcd-certfile/--etcd-keyfile), 1.2.27 (--etcd-cafile), 1.2.28
 * (--encryption-provider-config) and 1.2.29 (encryption providers). Checks the benchmark has
 * no number for use `etcd.*` / `apiserver.*` ids.
 */
import {posix} from 'node:path';
import type {Check} from '../engine/contract.js';
import {primaryProviderFor, ruleIndexFor} from '../kube/encryption-config.js';
import {hostPathFor, type HostPathMount, type ManifestPatch} from '../kube/manifest.js';
import type {ManifestFacts} from '../kube/types.js';
import {coversHost, daysLeft} from './certs.js';
import {etcdConnectionFromFlags, type EtcdConnection} from './connection.js';
import type {EtcdCertFacts, EtcdNodeFacts, EtcdProbe} from './types.js';
import {etcdUpgradeChecks} from './upgrade.js';

export type {EtcdAuthFacts, EtcdCertFacts, EtcdLiveFacts, EtcdProbe} from './types.js';

/** Days before expiry at which a certificate is reported (WARN). */
export const EXPIRY_WARN_DAYS = 30;

const truthy = (value: string | undefined): boolean => value !== undefined && /^(true|1)$/i.test(value.trim());

export function splitUrls(value: string | undefined): string[] {
	return (value ?? '')
		.split(',')
		.map(item => item.trim())
		.filter(Boolean);
}

/** The host of a URL ("[::1]" -> "::1"), or undefined when it does not parse. */
export function urlHost(url: string): string | undefined {
	try {
		return new URL(url).hostname.replace(/^\[|\]$/g, '');
	} catch {
		return undefined;
	}
}

export function isWildcardHost(host: string | undefined): boolean {
	return host === '0.0.0.0' || host === '::' || host === '';
}

/** A flag's file path as the node sees it (through the pod's hostPath mounts). */
export function nodePath(manifest: ManifestFacts, flag: string): string | undefined {
	const value = manifest.flags[flag];
	if (value === undefined || value === '') return undefined;
	return hostPathFor(manifest, value) ?? value;
}

function check(id: string, title: string, ok: boolean, actual: string, remediation: string, failStatus: 'fail' | 'warn' = 'fail'): Check {
	return ok ? {id, title, status: 'pass', actual} : {id, title, status: failStatus, actual, remediation};
}

const etcdFix = 'Run etcd-harden --only etcd-tls (or set it in /etc/kubernetes/manifests/etcd.yaml by hand).';
const apiserverFix = (flags: string) =>
	`Set ${flags} in /etc/kubernetes/manifests/kube-apiserver.yaml (kubeadm: the apiserver-etcd-client certificate and the etcd CA).`;

function manifestProblem(m: ManifestFacts, id: string, title: string): Check | undefined {
	if (m.exists && !m.error) return undefined;
	return {
		id,
		title,
		status: 'fail',
		actual: m.error ?? `${m.path} not found`,
		remediation: 'Run on a kubeadm control-plane node (stacked etcd), or restore the manifest.',
	};
}

/** CIS 2.1-2.7 and the URL checks, from the etcd manifest (and the CA certificates for 2.7). */
export function etcdFlagChecks(facts: EtcdNodeFacts): Check[] {
	const m = facts.etcd;
	const problem = manifestProblem(m, 'etcd.manifest', 'etcd static pod manifest is readable');
	if (problem) return [problem];
	const f = m.flags;
	const out: Check[] = [];
	const both = (a: string, b: string) => `${f[a] ? `--${a}=${f[a]}` : `no --${a}`}, ${f[b] ? `--${b}=${f[b]}` : `no --${b}`}`;
	out.push(check('2.1', 'etcd serves clients with a certificate (--cert-file, --key-file)', Boolean(f['cert-file'] && f['key-file']), both('cert-file', 'key-file'), etcdFix));
	out.push(check('2.2', 'etcd requires client certificates (--client-cert-auth=true)', truthy(f['client-cert-auth']), f['client-cert-auth'] === undefined ? 'not set (default false)' : `--client-cert-auth=${f['client-cert-auth']}`, etcdFix));
	out.push(check('2.3', 'etcd does not use self-signed auto TLS for clients (--auto-tls)', !truthy(f['auto-tls']), f['auto-tls'] === undefined ? 'not set' : `--auto-tls=${f['auto-tls']}`, etcdFix));
	out.push(check('2.4', 'etcd peers use a certificate (--peer-cert-file, --peer-key-file)', Boolean(f['peer-cert-file'] && f['peer-key-file']), both('peer-cert-file', 'peer-key-file'), etcdFix));
	out.push(check('2.5', 'etcd requires peer certificates (--peer-client-cert-auth=true)', truthy(f['peer-client-cert-auth']), f['peer-client-cert-auth'] === undefined ? 'not set (default false)' : `--peer-client-cert-auth=${f['peer-client-cert-auth']}`, etcdFix));
	out.push(check('2.6', 'etcd peers do not use self-signed auto TLS (--peer-auto-tls)', !truthy(f['peer-auto-tls']), f['peer-auto-tls'] === undefined ? 'not set' : `--peer-auto-tls=${f['peer-auto-tls']}`, etcdFix));
	out.push(uniqueCaCheck(facts));
	out.push(
		check(
			'etcd.peer-trusted-ca',
			'etcd verifies peer certificates against a CA (--peer-trusted-ca-file)',
			Boolean(f['peer-trusted-ca-file']),
			f['peer-trusted-ca-file'] ? `--peer-trusted-ca-file=${f['peer-trusted-ca-file']}` : 'not set',
			etcdFix,
		),
	);
	const clientUrls = [...splitUrls(f['listen-client-urls']), ...splitUrls(f['advertise-client-urls'])];
	const plainClient = clientUrls.filter(url => !url.startsWith('https://'));
	out.push(
		check(
			'etcd.client-urls-https',
			'etcd client URLs are https only (--listen-client-urls, --advertise-client-urls)',
			clientUrls.length > 0 && plainClient.length === 0,
			clientUrls.length === 0 ? 'no --listen-client-urls (etcd default http://localhost:2379)' : plainClient.length ? `not https: ${plainClient.join(', ')}` : clientUrls.join(', '),
			etcdFix,
		),
	);
	const peerUrls = [...splitUrls(f['listen-peer-urls']), ...splitUrls(f['initial-advertise-peer-urls'])];
	const plainPeer = peerUrls.filter(url => !url.startsWith('https://'));
	out.push(
		check(
			'etcd.peer-urls-https',
			'etcd peer URLs are https only (--listen-peer-urls, --initial-advertise-peer-urls)',
			peerUrls.length > 0 && plainPeer.length === 0,
			peerUrls.length === 0 ? 'no --listen-peer-urls (etcd default http://localhost:2380)' : plainPeer.length ? `not https: ${plainPeer.join(', ')}` : peerUrls.join(', '),
			'Move every member to https peer URLs one at a time (etcdctl member update, then the flags); the peer URL scheme is cluster state, so etcd-harden does not patch it.',
		),
	);
	const wildcard = splitUrls(f['listen-client-urls']).filter(url => isWildcardHost(urlHost(url)));
	out.push(
		check(
			'etcd.client-urls-scope',
			'etcd listens for clients only on loopback and the node address',
			wildcard.length === 0,
			wildcard.length ? `listens on every address: ${wildcard.join(', ')}` : splitUrls(f['listen-client-urls']).join(', ') || 'not set',
			'Run etcd-harden --only etcd-tls --set etcd-tls.restrictClientUrls=true.',
			'warn',
		),
	);
	return out;
}

/** CIS 2.7: a trusted CA for etcd that is not the Kubernetes CA. */
function uniqueCaCheck(facts: EtcdNodeFacts): Check {
	const f = facts.etcd.flags;
	const title = 'etcd trusts its own CA, distinct from the Kubernetes CA (--trusted-ca-file)';
	const trusted = f['trusted-ca-file'];
	if (!trusted) return {id: '2.7', title, status: 'fail', actual: '--trusted-ca-file not set', remediation: `Create a dedicated etcd CA (kubeadm init phase certs etcd-ca), then ${etcdFix}`};
	const kubeCaPath = nodePath(facts.apiserver, 'client-ca-file');
	const etcdCaPath = nodePath(facts.etcd, 'trusted-ca-file');
	const certs = facts.etcdCerts;
	const etcdCa = certs?.trustedCa;
	const kubeCa = certs?.kubernetesCa;
	const samePath = kubeCaPath !== undefined && kubeCaPath === etcdCaPath;
	const sameCert = etcdCa?.fingerprint256 !== undefined && etcdCa.fingerprint256 === kubeCa?.fingerprint256;
	if (samePath || sameCert) {
		return {
			id: '2.7',
			title,
			status: 'fail',
			actual: samePath ? `--trusted-ca-file is the apiserver's --client-ca-file (${kubeCaPath})` : `${etcdCaPath} is the same certificate as the Kubernetes CA ${kubeCaPath}`,
			remediation: 'Any certificate the Kubernetes CA signs could reach etcd: create a dedicated etcd CA and reissue the etcd certificates from it.',
		};
	}
	if (etcdCa?.error || etcdCa?.fingerprint256 === undefined || kubeCa?.fingerprint256 === undefined) {
		return {
			id: '2.7',
			title,
			status: 'warn',
			actual: `--trusted-ca-file=${trusted}; ${etcdCa?.error ?? kubeCa?.error ?? 'the CA certificates could not be compared'}`,
			remediation: `Check that ${etcdCaPath ?? trusted} is a dedicated etcd CA certificate and readable.`,
		};
	}
	return {id: '2.7', title, status: 'pass', actual: `${etcdCaPath} (${etcdCa.subjectCN ?? 'no CN'}) is not the Kubernetes CA (${kubeCa.subjectCN ?? kubeCaPath})`};
}

/** CIS 1.2.24, 1.2.27 and https --etcd-servers, from the apiserver manifest. */
export function apiserverEtcdChecks(facts: EtcdNodeFacts): Check[] {
	const m = facts.apiserver;
	const problem = manifestProblem(m, 'apiserver.manifest', 'kube-apiserver static pod manifest is readable');
	if (problem) return [problem];
	const f = m.flags;
	const servers = splitUrls(f['etcd-servers']);
	const plain = servers.filter(url => !url.startsWith('https://'));
	return [
		check(
			'1.2.24',
			'kube-apiserver authenticates to etcd with a client certificate (--etcd-certfile, --etcd-keyfile)',
			Boolean(f['etcd-certfile'] && f['etcd-keyfile']),
			`${f['etcd-certfile'] ? `--etcd-certfile=${f['etcd-certfile']}` : 'no --etcd-certfile'}, ${f['etcd-keyfile'] ? `--etcd-keyfile=${f['etcd-keyfile']}` : 'no --etcd-keyfile'}`,
			apiserverFix('--etcd-certfile and --etcd-keyfile'),
		),
		check('1.2.27', 'kube-apiserver verifies etcd against a CA (--etcd-cafile)', Boolean(f['etcd-cafile']), f['etcd-cafile'] ? `--etcd-cafile=${f['etcd-cafile']}` : 'not set', apiserverFix('--etcd-cafile')),
		check(
			'apiserver.etcd-servers-https',
			'kube-apiserver reaches etcd over https only (--etcd-servers)',
			servers.length > 0 && plain.length === 0,
			servers.length === 0 ? 'no --etcd-servers' : plain.length ? `not https: ${plain.join(', ')}` : servers.join(', '),
			apiserverFix('https:// URLs in --etcd-servers'),
		),
	];
}

/** CIS 1.2.28 and 1.2.29: encryption at rest is configured, with a strong first provider. */
export function encryptionChecks(facts: EtcdNodeFacts): Check[] {
	const m = facts.apiserver;
	if (!m.exists || m.error) return [];
	const flag = m.flags['encryption-provider-config'];
	const enc = facts.encryption;
	const fix = 'Run etcd-harden (stages encryption-config, apiserver-manifest, reencrypt).';
	const out: Check[] = [];
	const configOk = flag !== undefined && enc.exists && enc.errors.length === 0 && enc.config !== undefined;
	out.push(
		check(
			'1.2.28',
			'kube-apiserver encrypts at rest (--encryption-provider-config names a valid config)',
			configOk,
			flag === undefined ? 'not set' : !enc.exists ? `--encryption-provider-config=${flag}, but ${enc.path} does not exist` : enc.errors.length ? enc.errors[0]! : `--encryption-provider-config=${flag}`,
			fix,
		),
	);
	if (!configOk || !enc.config) return out;
	const index = ruleIndexFor(enc.config, 'secrets');
	const providers = index === -1 ? [] : enc.config.resources[index]!.providers;
	const primary = primaryProviderFor(enc.config, 'secrets');
	const title = 'Secrets are encrypted by a strong first provider (not identity, aescbc or aesgcm)';
	if (providers.length === 0 || providers.every(p => p.type === 'identity')) {
		out.push({id: '1.2.29', title, status: 'fail', actual: 'the config has only identity for secrets: they are stored in plaintext', remediation: fix});
	} else if (primary.type === 'identity') {
		out.push({id: '1.2.29', title, status: 'fail', actual: 'identity is the first provider for secrets: new writes are stored in plaintext', remediation: fix});
	} else if (primary.type === 'aescbc' || primary.type === 'aesgcm') {
		out.push({
			id: '1.2.29',
			title,
			status: 'warn',
			actual: `first provider for secrets is ${primary.type} (${primary.type === 'aescbc' ? 'padding oracle' : 'needs rotation every 200,000 writes'})`,
			remediation: 'Rotate to secretbox or KMS v2: run etcd-harden --set encryption-config.provider=secretbox.',
		});
	} else {
		out.push({id: '1.2.29', title, status: 'pass', actual: `first provider for secrets is ${primary.type}`});
	}
	return out;
}

/** Where etcd is reached: listen URL hosts, wildcards replaced by loopback and advertised hosts. */
export function clientHosts(etcd: ManifestFacts): string[] {
	const hosts = new Set<string>();
	for (const url of splitUrls(etcd.flags['listen-client-urls'])) {
		const host = urlHost(url);
		if (host === undefined) continue;
		if (isWildcardHost(host)) hosts.add('127.0.0.1');
		else hosts.add(host);
	}
	for (const url of splitUrls(etcd.flags['advertise-client-urls'])) {
		const host = urlHost(url);
		if (host !== undefined && !isWildcardHost(host)) hosts.add(host);
	}
	return [...hosts];
}

export function peerHosts(etcd: ManifestFacts): string[] {
	const hosts = new Set<string>();
	for (const url of [...splitUrls(etcd.flags['listen-peer-urls']), ...splitUrls(etcd.flags['initial-advertise-peer-urls'])]) {
		const host = urlHost(url);
		if (host !== undefined && !isWildcardHost(host)) hosts.add(host);
	}
	return [...hosts];
}

type CertKey = Exclude<keyof EtcdCertFacts, 'checkedAt'>;
type CertRole = {key: CertKey; label: string; usage: Array<'serverAuth' | 'clientAuth'>; hosts?: string[]; issuer?: {ca: CertKey; label: string}};

/** Expiry, names and key usage of every certificate the manifests name. */
export function certificateChecks(facts: EtcdNodeFacts, now: Date): Check[] {
	const certs = facts.etcdCerts;
	if (!certs) return [];
	const roles: CertRole[] = [
		{key: 'server', label: 'etcd serving certificate (--cert-file)', usage: ['serverAuth'], hosts: clientHosts(facts.etcd), issuer: {ca: 'apiserverEtcdCa', label: "kube-apiserver's --etcd-cafile"}},
		{key: 'peer', label: 'etcd peer certificate (--peer-cert-file)', usage: ['serverAuth', 'clientAuth'], hosts: peerHosts(facts.etcd), issuer: {ca: 'peerTrustedCa', label: '--peer-trusted-ca-file'}},
		{key: 'apiserverClient', label: "kube-apiserver's etcd client certificate (--etcd-certfile)", usage: ['clientAuth'], issuer: {ca: 'trustedCa', label: "etcd's --trusted-ca-file"}},
		{key: 'healthcheckClient', label: 'etcd health-check client certificate', usage: ['clientAuth'], issuer: {ca: 'trustedCa', label: "etcd's --trusted-ca-file"}},
		{key: 'trustedCa', label: 'etcd CA certificate (--trusted-ca-file)', usage: []},
	];
	const out: Check[] = [];
	for (const role of roles) {
		const info = certs[role.key];
		if (!info || typeof info === 'string') continue;
		const base = `etcd.cert.${role.key}`;
		if (info.error) {
			out.push({id: `${base}.readable`, title: `${role.label} is readable`, status: 'fail', actual: info.error, remediation: 'Restore the certificate (kubeadm init phase certs etcd-*), or fix the flag that names it.'});
			continue;
		}
		const days = daysLeft(info, now);
		const expiryOk = days !== undefined && days >= EXPIRY_WARN_DAYS;
		out.push({
			id: `${base}.expiry`,
			title: `${role.label} is not near expiry`,
			status: expiryOk ? 'pass' : days !== undefined && days >= 0 ? 'warn' : 'fail',
			actual: `${info.path}: expires ${info.notAfter} (${days === undefined ? '?' : days < 0 ? `expired ${-days} days ago` : `${days} days left`})`,
			...(expiryOk ? {} : {remediation: 'Renew it: kubeadm certs renew (etcd-server, etcd-peer, apiserver-etcd-client, etcd-healthcheck-client), then restart the static pods.'}),
		});
		if (role.hosts !== undefined) {
			const missing = role.hosts.filter(host => !coversHost(info, host));
			out.push(
				check(
					`${base}.sans`,
					`${role.label} names every address it is reached at`,
					missing.length === 0,
					missing.length ? `${info.path} lacks ${missing.join(', ')} (has ${[...(info.dnsNames ?? []), ...(info.ips ?? [])].join(', ') || 'no SANs'})` : `covers ${role.hosts.join(', ') || '(no addresses)'}`,
					'Reissue it with the missing names (kubeadm: etcd.local.serverCertSANs / peerCertSANs, then kubeadm init phase certs etcd-server / etcd-peer).',
				),
			);
		}
		if (role.usage.length > 0) {
			const have = info.extendedKeyUsage ?? [];
			// No extendedKeyUsage extension at all means any usage (RFC 5280).
			const missing = have.length === 0 ? [] : role.usage.filter(usage => !have.includes(usage));
			out.push(
				check(
					`${base}.key-usage`,
					`${role.label} allows ${role.usage.join(' and ')}`,
					missing.length === 0,
					have.length ? `extendedKeyUsage: ${have.join(', ')}` : 'no extendedKeyUsage (any usage)',
					`Reissue it with extendedKeyUsage ${role.usage.join(',')}.`,
				),
			);
		}
		if (role.issuer) {
			const ca = certs[role.issuer.ca];
			if (ca && typeof ca !== 'string' && !ca.error) {
				const ok = info.verifiedBy !== undefined && info.verifiedBy === ca.fingerprint256;
				out.push(
					check(
						`${base}.issuer`,
						`${role.label} is signed by ${role.issuer.label}`,
						ok,
						ok ? `issued by ${info.issuerCN ?? '?'}` : `${info.path} (issuer ${info.issuerCN ?? '?'}) does not verify against ${ca.path}`,
						'Reissue it from the etcd CA; otherwise etcd or kube-apiserver refuses the connection.',
					),
				);
			}
		}
	}
	return out;
}

/** Real connections to the running etcd (only with live facts). */
export function connectionChecks(facts: EtcdNodeFacts): Check[] {
	const live = facts.etcdLive;
	if (!live) return [];
	if (live.problem && live.probes.length === 0) {
		return [{id: 'etcd.conn', title: 'etcd answers for the connection tests', status: 'fail', actual: live.problem, remediation: 'Check that etcd runs and that etcdctl and curl are installed.'}];
	}
	const titles: Record<EtcdProbe['id'], string> = {
		plaintext: 'plaintext connections to the client port are refused',
		'no-client-cert': 'TLS connections without a client certificate are refused',
		'apiserver-cert': "kube-apiserver's etcd client certificate is accepted",
		'peer-cert': 'the peer port demands a certificate',
	};
	const fixes: Record<EtcdProbe['id'], string> = {
		plaintext: 'Serve clients over https only: run etcd-harden --only etcd-tls.',
		'no-client-cert': 'Set --client-cert-auth=true: run etcd-harden --only etcd-tls.',
		'apiserver-cert': "Check kube-apiserver's --etcd-certfile/--etcd-keyfile/--etcd-cafile and that etcd trusts their CA; see etcd's log.",
		'peer-cert': 'Set --peer-client-cert-auth=true with peer certificates: run etcd-harden --only etcd-tls.',
	};
	return live.probes.map(probe =>
		check(`etcd.conn.${probe.id}`, titles[probe.id], probe.secure, `${probe.url}: ${probe.detail}`, fixes[probe.id]),
	);
}

/** The time certificates are judged at: when discovery read them. */
export function auditTime(facts: EtcdNodeFacts): Date {
	const at = facts.etcdCerts?.checkedAt;
	return at ? new Date(at) : new Date(0);
}

/** Everything `status` reports for etcd transport security. */
export function tlsAudit(facts: EtcdNodeFacts, now: Date = auditTime(facts)): Check[] {
	return [...etcdFlagChecks(facts), ...apiserverEtcdChecks(facts), ...encryptionChecks(facts), ...certificateChecks(facts, now), ...connectionChecks(facts), ...etcdUpgradeChecks(facts)];
}

// ---- the fix -------------------------------------------------------------------------

export type TlsFixOptions = {
	/** Restrict --listen-client-urls to loopback and the node address. */
	restrictClientUrls: boolean;
};

export type TlsFix = {
	patch: ManifestPatch;
	/** One line per flag changed, for the summary and the preview. */
	changes: string[];
	/** Findings the fix does not change (reported as notes). */
	notes: string[];
	/** Reasons the fix cannot be applied (InputError). */
	problems: string[];
};

/** The node's address for etcd clients: from --advertise-client-urls (or kubeadm's annotation). */
export function nodeAddress(etcd: ManifestFacts): string | undefined {
	const urls = [...splitUrls(etcd.flags['advertise-client-urls']), ...splitUrls(etcd.annotations['kubeadm.kubernetes.io/etcd.advertise-client-urls'])];
	for (const url of urls) {
		const host = urlHost(url);
		if (host && !isWildcardHost(host) && host !== '127.0.0.1' && host !== 'localhost' && host !== '::1') return host;
	}
	return undefined;
}

function portOf(url: string, fallback: string): string {
	try {
		return new URL(url).port || fallback;
	} catch {
		return fallback;
	}
}

const bracket = (host: string) => (host.includes(':') ? `[${host}]` : host);

/** The flags (and mount) that bring the etcd manifest to CIS 2.1-2.6 and https client URLs. */
export function planTlsFix(facts: EtcdNodeFacts, options: TlsFixOptions): TlsFix {
	const m = facts.etcd;
	const f = m.flags;
	const flags: Record<string, string> = {};
	const changes: string[] = [];
	const notes: string[] = [];
	const problems: string[] = [];
	const pkiEtcd = posix.join(facts.pki.dir, 'etcd');
	const exists = (path: string) => facts.pki.files[path]?.exists === true;
	const set = (name: string, value: string, why: string) => {
		if (f[name] === value) return;
		flags[name] = value;
		changes.push(`--${name}=${value} (${why})`);
	};
	const needFile = (flag: string, file: string, why: string) => {
		if (f[flag]) return;
		const path = posix.join(pkiEtcd, file);
		if (!exists(path)) {
			problems.push(`--${flag} is not set and ${path} does not exist. Fix: create the etcd certificates first (kubeadm init phase certs etcd-${file.startsWith('peer') ? 'peer' : file.startsWith('ca') ? 'ca' : 'server'}), then rerun.`);
			return;
		}
		set(flag, path, why);
	};
	needFile('cert-file', 'server.crt', 'CIS 2.1');
	needFile('key-file', 'server.key', 'CIS 2.1');
	needFile('trusted-ca-file', 'ca.crt', 'CA for client certificates, CIS 2.7');
	if (!truthy(f['client-cert-auth'])) set('client-cert-auth', 'true', 'CIS 2.2');
	if (truthy(f['auto-tls'])) set('auto-tls', 'false', 'CIS 2.3');
	needFile('peer-cert-file', 'peer.crt', 'CIS 2.4');
	needFile('peer-key-file', 'peer.key', 'CIS 2.4');
	needFile('peer-trusted-ca-file', 'ca.crt', 'CA for peer certificates');
	if (!truthy(f['peer-client-cert-auth'])) set('peer-client-cert-auth', 'true', 'CIS 2.5');
	if (truthy(f['peer-auto-tls'])) set('peer-auto-tls', 'false', 'CIS 2.6');

	const toHttps = (url: string) => url.replace(/^(http|unix|unixs):\/\//, 'https://');
	const listen = splitUrls(f['listen-client-urls']);
	let newListen = listen.map(toHttps);
	if (options.restrictClientUrls) {
		const node = nodeAddress(m);
		const port = portOf(listen[0] ?? 'https://127.0.0.1:2379', '2379');
		newListen = [`https://127.0.0.1:${port}`, ...(node ? [`https://${bracket(node)}:${port}`] : [])];
		if (!node) notes.push('No node address in --advertise-client-urls: etcd will listen on loopback only.');
	}
	if (newListen.length > 0 && newListen.join(',') !== listen.join(',')) set('listen-client-urls', newListen.join(','), options.restrictClientUrls ? 'loopback and the node address only' : 'https only');
	const advertise = splitUrls(f['advertise-client-urls']);
	const newAdvertise = advertise.map(toHttps);
	if (newAdvertise.join(',') !== advertise.join(',')) set('advertise-client-urls', newAdvertise.join(','), 'https only');
	if (listen.length === 0) problems.push('--listen-client-urls is not set (etcd then serves plain http on localhost). Fix: set --listen-client-urls=https://127.0.0.1:2379,https://<node address>:2379 by hand, then rerun.');
	if ([...splitUrls(f['listen-peer-urls']), ...splitUrls(f['initial-advertise-peer-urls'])].some(url => !url.startsWith('https://'))) {
		notes.push('The peer URLs are not https: they are cluster state (etcdctl member update), so they are reported, not patched.');
	}

	// Every URL the apiserver dials on this node must stay served, over https, with a certificate.
	const apiserver = facts.apiserver.flags;
	const served = new Set((flags['listen-client-urls'] ? splitUrls(flags['listen-client-urls']) : listen).map(url => `${urlHost(url)}:${portOf(url, '2379')}`));
	const wildcard = [...served].some(entry => isWildcardHost(entry.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')));
	for (const url of splitUrls(apiserver['etcd-servers'])) {
		if (!url.startsWith('https://')) problems.push(`kube-apiserver dials etcd at ${url} without TLS. Fix: use https:// in --etcd-servers (CIS 1.2.24/1.2.27), then rerun.`);
		const host = urlHost(url);
		const local = host === '127.0.0.1' || host === 'localhost' || host === nodeAddress(m);
		if (local && !wildcard && !served.has(`${host === 'localhost' ? '127.0.0.1' : host}:${portOf(url, '2379')}`) && !served.has(`${host}:${portOf(url, '2379')}`)) {
			problems.push(`kube-apiserver dials etcd at ${url}, which etcd would no longer listen on. Fix: keep it in --listen-client-urls (answer etcd-tls.restrictClientUrls=false).`);
		}
	}
	if (flags['client-cert-auth'] && !(apiserver['etcd-certfile'] && apiserver['etcd-keyfile'])) {
		problems.push('kube-apiserver has no --etcd-certfile/--etcd-keyfile: with --client-cert-auth=true etcd would refuse it. Fix: give kube-apiserver its etcd client certificate first (CIS 1.2.24), then rerun.');
	}

	// The certificates must be visible inside the etcd pod.
	const mounts: HostPathMount[] = [];
	const paths = ['cert-file', 'key-file', 'trusted-ca-file', 'peer-cert-file', 'peer-key-file', 'peer-trusted-ca-file'].map(flag => flags[flag]).filter((p): p is string => p !== undefined);
	if (paths.some(path => hostPathFor(m, path) === undefined)) {
		mounts.push({name: 'etcd-certs', hostPath: pkiEtcd, mountPath: pkiEtcd, type: 'DirectoryOrCreate'});
		changes.push(`hostPath mount of ${pkiEtcd} (the certificates)`);
	}
	return {patch: {flags, ...(mounts.length ? {mounts} : {})}, changes, notes, problems};
}

/** The health-check client connection (kubeadm's healthcheck-client certificate). */
export function healthcheckConnection(facts: EtcdNodeFacts): EtcdConnection | undefined {
	let endpoints: string[];
	try {
		endpoints = etcdConnectionFromFlags(facts.apiserver.flags).endpoints;
	} catch {
		endpoints = ['https://127.0.0.1:2379'];
	}
	const dir = posix.join(facts.pki.dir, 'etcd');
	const cert = posix.join(dir, 'healthcheck-client.crt');
	const key = posix.join(dir, 'healthcheck-client.key');
	if (facts.pki.files[cert]?.exists !== true || facts.pki.files[key]?.exists !== true) return undefined;
	const cacert = nodePath(facts.etcd, 'trusted-ca-file') ?? posix.join(dir, 'ca.crt');
	return {endpoints, cacert, cert, key};
}

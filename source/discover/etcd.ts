/**
 * etcd discovery for the transport-security and auth stages.
 *
 * - discoverEtcdCerts (files only, also under --root): parse the certificates the etcd and
 *   kube-apiserver manifests name (expiry, SANs, key usage, issuer).
 * - discoverEtcdLive (etcd-harden on the node itself): real connection tests against the
 *   running etcd (plaintext, TLS without a client certificate, the apiserver's certificate,
 *   the peer port), its health with the health-check client certificate, and whether its
 *   own authentication is on (and which users and roles exist). Read-only: every command
 *   is marked readOnly, so --dry-run runs it too.
 */
import {posix} from 'node:path';
import type {Host} from '../host/types.js';
import {ROOT_PASSWORD_FILE} from '../etcd/auth.js';
import {parseCertificate, type CertInfo} from '../etcd/certs.js';
import {etcdConnectionFromFlags, type EtcdConnection} from '../etcd/connection.js';
import {runEtcdctl} from '../etcd/etcdctl.js';
import {OWN_PROBE_USER, ownProbeCurlOptions} from '../etcd/own-probes.js';
import {healthcheckConnection, isWildcardHost, nodePath, splitUrls, type EtcdAuthFacts, type EtcdCertFacts, type EtcdLiveFacts, type EtcdProbe} from '../etcd/tls.js';
import type {ReadHost} from '../host/types.js';
import type {Facts} from '../stages/facts.js';

async function readOrUndefined(host: ReadHost, path: string | undefined): Promise<string | undefined> {
	if (path === undefined) return undefined;
	try {
		return await host.readText(path);
	} catch {
		return undefined;
	}
}

/** Add `etcdCerts` to file facts. Never throws for a missing or unreadable certificate. */
export async function discoverEtcdCerts(host: ReadHost, facts: Facts): Promise<Facts> {
	if (!facts.etcd.exists && !facts.apiserver.exists) return facts;
	const etcdPath = (flag: string) => (facts.etcd.exists ? nodePath(facts.etcd, flag) : undefined);
	const apiPath = (flag: string) => (facts.apiserver.exists ? nodePath(facts.apiserver, flag) : undefined);
	const paths = {
		server: etcdPath('cert-file'),
		peer: etcdPath('peer-cert-file'),
		trustedCa: etcdPath('trusted-ca-file'),
		peerTrustedCa: etcdPath('peer-trusted-ca-file'),
		apiserverClient: apiPath('etcd-certfile'),
		apiserverEtcdCa: apiPath('etcd-cafile'),
		healthcheckClient: posix.join(facts.pki.dir, 'etcd', 'healthcheck-client.crt'),
		kubernetesCa: apiPath('client-ca-file'),
	};
	type Key = keyof typeof paths;
	const text: Partial<Record<Key, string | undefined>> = {};
	for (const [key, path] of Object.entries(paths)) text[key as Key] = await readOrUndefined(host, path);
	const certs: EtcdCertFacts = {checkedAt: new Date().toISOString()};
	const parse = (key: Key, ca?: Key): CertInfo | undefined => {
		const path = paths[key];
		if (path === undefined) return undefined;
		// The health-check client is kubeadm's convention: report it only when it exists.
		if (key === 'healthcheckClient' && text[key] === undefined) return undefined;
		return parseCertificate(path, text[key], ca ? text[ca] : undefined);
	};
	const assign = (key: Key, ca?: Key) => {
		const info = parse(key, ca);
		if (info) certs[key] = info;
	};
	assign('trustedCa');
	assign('peerTrustedCa');
	assign('apiserverEtcdCa');
	assign('kubernetesCa');
	assign('server', 'apiserverEtcdCa');
	assign('peer', 'peerTrustedCa');
	assign('apiserverClient', 'trustedCa');
	assign('healthcheckClient', 'trustedCa');
	return {...facts, etcdCerts: certs};
}


const CURL_TIMEOUT_SECONDS = '3';

/** HTTP status of a GET with curl (no client certificate, server certificate not verified). */
async function curlStatus(host: Host, url: string, signal?: AbortSignal): Promise<{accepted: boolean; detail: string}> {
	// HTTP/1.1: etcd's listeners hand HTTP/2 to gRPC, which answers no plain GET.
	const base = ['curl', '-s', '--http1.1', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', CURL_TIMEOUT_SECONDS];
	if (url.startsWith('https://')) base.push('-k');
	// From loopback and a privileged source port, so the monitor knows the refusal is ours
	// (etcd/own-probes.ts). curl exits 45 when it cannot bind one (not root, every port of the
	// range busy): then the probe runs unmarked, as before.
	const marked = [...base, ...ownProbeCurlOptions(new URL(url).hostname), url];
	let result = await host.run(marked, {readOnly: true, timeoutMs: 10_000, ...(signal ? {signal} : {})});
	if (result.exitCode === 45) result = await host.run([...base, url], {readOnly: true, timeoutMs: 10_000, ...(signal ? {signal} : {})});
	const code = result.stdout.trim();
	if (result.exitCode === 0 && code === '200') return {accepted: true, detail: 'answered HTTP 200'};
	if (result.exitCode === 0) return {accepted: false, detail: `answered HTTP ${code}, not served`};
	const reasons: Record<number, string> = {7: 'connection refused', 28: 'timed out', 35: 'TLS handshake refused', 56: 'connection closed by the server (TLS handshake refused)', 52: 'empty reply'};
	return {accepted: false, detail: `curl exit ${result.exitCode}${reasons[result.exitCode] ? `: ${reasons[result.exitCode]}` : ''}`};
}

function probeTarget(url: string, scheme: 'http' | 'https'): string | undefined {
	try {
		const parsed = new URL(url);
		const hostname = isWildcardHost(parsed.hostname.replace(/^\[|\]$/g, '')) ? '127.0.0.1' : parsed.hostname;
		return `${scheme}://${hostname}:${parsed.port || '2379'}/version`;
	} catch {
		return undefined;
	}
}

/** The connection tests: plaintext, TLS without a client certificate, the apiserver's certificate, the peer port. */
export async function probeEtcd(host: Host, facts: Facts, signal?: AbortSignal): Promise<EtcdProbe[]> {
	const flags = facts.etcd.flags;
	const jobs: Array<Promise<EtcdProbe>> = [];
	const seen = new Set<string>();
	for (const url of splitUrls(flags['listen-client-urls'])) {
		for (const [id, scheme] of [['plaintext', 'http'], ['no-client-cert', 'https']] as const) {
			if (id === 'no-client-cert' && !url.startsWith('https://')) continue;
			const target = probeTarget(url, scheme);
			if (!target || seen.has(target)) continue;
			seen.add(target);
			jobs.push(curlStatus(host, target, signal).then(result => ({id, url: target, secure: !result.accepted, detail: result.detail})));
		}
	}
	for (const url of splitUrls(flags['listen-peer-urls'])) {
		const target = probeTarget(url, url.startsWith('https://') ? 'https' : 'http');
		if (!target || seen.has(target)) continue;
		seen.add(target);
		jobs.push(curlStatus(host, target, signal).then(result => ({id: 'peer-cert' as const, url: target, secure: !result.accepted, detail: result.detail})));
	}
	let apiserver: EtcdConnection | undefined;
	try {
		apiserver = etcdConnectionFromFlags(facts.apiserver.flags);
	} catch {
		apiserver = undefined;
	}
	if (apiserver) {
		const connection = apiserver;
		jobs.push(
			runEtcdctl(host, connection, ['endpoint', 'health'], {readOnly: true, commandTimeout: '5s', timeoutMs: 20_000, ...(signal ? {signal} : {})}).then(result => ({
				id: 'apiserver-cert' as const,
				url: connection.endpoints.join(','),
				secure: result.exitCode === 0,
				detail: result.exitCode === 0 ? `endpoint health with ${connection.cert ?? 'no certificate'}: healthy` : `endpoint health with ${connection.cert ?? 'no certificate'} failed: ${lastLine(result.stderr || result.stdout)}`,
			})),
		);
	}
	return Promise.all(jobs);
}

function lastLine(text: string): string {
	const lines = text
		.trim()
		.split('\n')
		.map(line => line.trim())
		.filter(Boolean);
	const error = [...lines].reverse().find(line => /^Error:|unhealthy|failed/i.test(line));
	return (error ?? lines.at(-1) ?? 'no output').slice(0, 300);
}

/**
 * Whether etcd's authentication is on. etcdctl >= 3.5 answers `auth status` directly
 * ("Authentication Status: true|false"). etcdctl 3.4 has no such command; there it is told without
 * credentials: a login with a user that does not exist is answered "authentication is not
 * enabled" when it is off, and "authentication failed" when it is on. The login probe is used
 * only where `auth status` is missing, since every probe is an authentication failure in etcd's
 * log, the very signal an operator watches for attacks.
 */
export async function probeAuth(host: Host, connection: EtcdConnection, signal?: AbortSignal): Promise<EtcdAuthFacts> {
	const status = await runEtcdctl(host, connection, ['auth', 'status'], {readOnly: true, commandTimeout: '5s', timeoutMs: 20_000, ...(signal ? {signal} : {})});
	const stated = status.exitCode === 0 ? /^Authentication Status:\s*(true|false)\s*$/m.exec(status.stdout)?.[1] : undefined;
	let enabled: boolean | undefined;
	let text = '';
	if (stated !== undefined) {
		enabled = stated === 'true';
	} else {
		const login = await runEtcdctl(host, connection, [`--user=${OWN_PROBE_USER}`, '--password=probe', 'get', `/${OWN_PROBE_USER}`, '--keys-only'], {
			readOnly: true,
			commandTimeout: '5s',
			timeoutMs: 20_000,
			...(signal ? {signal} : {}),
		});
		text = `${login.stderr}\n${login.stdout}`;
		if (/authentication is not enabled/.test(text)) enabled = false;
		else if (/authentication failed|invalid user ID or password/.test(text)) enabled = true;
		else if (login.exitCode === 0) enabled = false;
	}
	const facts: EtcdAuthFacts = {};
	if (enabled !== undefined) facts.enabled = enabled;
	else facts.problem = `cannot tell whether etcd authentication is on: ${lastLine(text)}`;
	const list = await runEtcdctl(host, connection, ['user', 'list'], {readOnly: true, commandTimeout: '5s', timeoutMs: 20_000, ...(signal ? {signal} : {})});
	if (list.exitCode !== 0) {
		facts.problem ??= `cannot list etcd users with ${connection.cert ?? 'no certificate'}: ${lastLine(list.stderr)}`;
		return facts;
	}
	const users: Record<string, string[]> = {};
	const names = list.stdout
		.split('\n')
		.map(line => line.trim())
		.filter(Boolean)
		.slice(0, 200);
	await Promise.all(
		names.map(async name => {
			const user = await runEtcdctl(host, connection, ['user', 'get', name], {readOnly: true, commandTimeout: '5s', timeoutMs: 20_000, ...(signal ? {signal} : {})});
			const roles = /^Roles:(.*)$/m.exec(user.stdout)?.[1]?.trim();
			users[name] = roles ? roles.split(/\s+/).filter(Boolean) : [];
		}),
	);
	facts.users = Object.fromEntries(Object.entries(users).sort(([a], [b]) => a.localeCompare(b)));
	const roles = await runEtcdctl(host, connection, ['role', 'list'], {readOnly: true, commandTimeout: '5s', timeoutMs: 20_000, ...(signal ? {signal} : {})});
	if (roles.exitCode === 0) {
		facts.roles = roles.stdout
			.split('\n')
			.map(line => line.trim())
			.filter(Boolean);
	}
	return facts;
}

/** Add `etcdLive` to the facts: connection tests, health, auth. Never throws. */
export async function discoverEtcdLive(host: Host, facts: Facts): Promise<Facts> {
	if (!facts.etcd.exists || facts.etcd.error) return facts;
	const live: EtcdLiveFacts = {probes: [], healthy: false, auth: {}};
	try {
		live.probes = await probeEtcd(host, facts);
		const health = healthcheckConnection(facts);
		if (health) {
			const result = await runEtcdctl(host, health, ['endpoint', 'health'], {readOnly: true, commandTimeout: '5s', timeoutMs: 20_000});
			live.healthy = result.exitCode === 0;
			if (!live.healthy) live.problem = `etcd is not healthy with the health-check client certificate: ${lastLine(result.stderr || result.stdout)}`;
		} else {
			live.healthy = live.probes.some(probe => probe.id === 'apiserver-cert' && probe.secure);
		}
		let connection: EtcdConnection | undefined;
		try {
			connection = etcdConnectionFromFlags(facts.apiserver.flags);
		} catch (error) {
			live.auth = {problem: (error as Error).message};
		}
		if (connection) live.auth = await probeAuth(host, connection);
		const stat = await host.stat(ROOT_PASSWORD_FILE).catch(() => undefined);
		live.auth.rootPasswordFile = stat?.isFile ? {path: ROOT_PASSWORD_FILE, exists: true, mode: stat.mode} : {path: ROOT_PASSWORD_FILE, exists: false};
	} catch (error) {
		live.problem = `cannot test etcd connections: ${(error as Error).message.split('\n')[0]}`;
	}
	return {...facts, etcdLive: live};
}

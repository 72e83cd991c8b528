/**
 * How etcd's log tells etcd-harden's own probes from someone else's attempts.
 *
 * Every discovery (status, harden, rotate, the monitor's own run) tests etcd's listeners the
 * way an attacker would: plaintext, TLS without a client certificate, and on etcd 3.4 a login
 * as a user that does not exist (its etcdctl has no `auth status`). etcd logs each refusal, and
 * the monitor watches exactly those lines, so without a mark every run of the tool raised the
 * authentication alert itself.
 *
 * The mark: the connection probes are made from a loopback address and a source port in
 * OWN_PROBE_PORTS. Ports below 1024 can be bound only by root (CAP_NET_BIND_SERVICE), and a
 * loopback source only from this node: a refusal from 127.0.0.1:900-1023 is a root process on
 * this node, which could read etcd's keys anyway. A remote host's root can use a low port too,
 * but not a loopback source address, so nothing from outside is ever left out. The login probe
 * uses OWN_PROBE_USER, a user that never exists: a failed login as it gives nobody anything.
 */

/** The source ports of the connection probes (curl --local-port), all privileged. */
export const OWN_PROBE_PORTS = {first: 900, last: 1023} as const;

/** The user name of the etcd 3.4 login probe (see discover/etcd.ts probeAuth). */
export const OWN_PROBE_USER = 'etcd-harden-auth-probe';

/** The curl options that bind a probe to a loopback source and a port in OWN_PROBE_PORTS. */
export function ownProbeCurlOptions(targetHost: string): string[] {
	const ipv6 = targetHost.includes(':') || targetHost.startsWith('[');
	return ['--interface', ipv6 ? '::1' : '127.0.0.1', '--local-port', `${OWN_PROBE_PORTS.first}-${OWN_PROBE_PORTS.last}`];
}

/** `127.0.0.1:1005`, `[::1]:1005`: a loopback address with a port in OWN_PROBE_PORTS. */
export function isOwnProbeClient(client: string | undefined): boolean {
	if (client === undefined) return false;
	const match = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(client.trim());
	if (!match) return false;
	const port = Number(match[3]);
	return isLoopback(match[1] ?? match[2]!) && port >= OWN_PROBE_PORTS.first && port <= OWN_PROBE_PORTS.last;
}

function isLoopback(address: string): boolean {
	if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(address)) return true;
	const lower = address.toLowerCase();
	return lower === '::1' || lower === '0:0:0:0:0:0:0:1' || /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(lower);
}

/**
 * Whether an auth event in etcd's log is etcd-harden's own probe: a TLS refusal from a probe
 * client, or a failed login as OWN_PROBE_USER (from a probe client or a loopback address, or
 * with no address logged, as etcd 3.4 logs logins).
 */
export function isOwnProbe(event: {kind: string; client?: string; user?: string}): boolean {
	if (event.kind === 'tls-rejected') return isOwnProbeClient(event.client);
	if ((event.kind === 'unknown-user' || event.kind === 'bad-password') && event.user === OWN_PROBE_USER) {
		if (event.client === undefined) return true;
		const host = /^(?:\[([^\]]+)\]|([^:]+)):\d+$/.exec(event.client.trim());
		return host !== null && isLoopback(host[1] ?? host[2]!);
	}
	return false;
}

/**
 * How to reach etcd as the kube-apiserver does: its `--etcd-servers` and client TLS files.
 * Paths are node paths (`/etc/kubernetes/pki/...`); the host resolves them under its root.
 */

export type EtcdConnection = {
	endpoints: string[];
	/** Node path of the CA bundle that signed etcd's serving certificate. */
	cacert?: string;
	/** Node path of the client certificate (the apiserver's `apiserver-etcd-client.crt`). */
	cert?: string;
	/** Node path of the client key. */
	key?: string;
};

export class EtcdConnectionError extends Error {
	override name = 'EtcdConnectionError';
}

/** The apiserver's default for `--etcd-prefix`. */
export const DEFAULT_ETCD_PREFIX = '/registry';

/** A flag from a manifest's parsed flags, accepting `name` and `--name` keys. */
function flag(flags: Record<string, string>, name: string): string | undefined {
	const value = flags[name] ?? flags[`--${name}`];
	return value === undefined || value === '' ? undefined : value;
}

/**
 * Derive the etcd connection from the kube-apiserver's flags (`ManifestFacts.flags`):
 * `--etcd-servers` (comma-separated URLs), `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`.
 * Throws naming the missing flag when there is no `--etcd-servers`, or when only one of
 * the certificate and key is given (etcdctl needs both for client authentication).
 */
export function etcdConnectionFromFlags(apiserverFlags: Record<string, string>): EtcdConnection {
	const servers = flag(apiserverFlags, 'etcd-servers');
	if (servers === undefined) {
		throw new EtcdConnectionError('the kube-apiserver manifest has no --etcd-servers flag, so the etcd endpoints are unknown');
	}
	const endpoints = servers
		.split(',')
		.map(server => server.trim())
		.filter(server => server !== '');
	if (endpoints.length === 0) throw new EtcdConnectionError('the kube-apiserver flag --etcd-servers is empty');
	const cacert = flag(apiserverFlags, 'etcd-cafile');
	const cert = flag(apiserverFlags, 'etcd-certfile');
	const key = flag(apiserverFlags, 'etcd-keyfile');
	if ((cert === undefined) !== (key === undefined)) {
		throw new EtcdConnectionError(
			`the kube-apiserver sets ${cert === undefined ? '--etcd-keyfile without --etcd-certfile' : '--etcd-certfile without --etcd-keyfile'}; etcd client authentication needs both`,
		);
	}
	const connection: EtcdConnection = {endpoints};
	if (cacert !== undefined) connection.cacert = cacert;
	if (cert !== undefined) connection.cert = cert;
	if (key !== undefined) connection.key = key;
	return connection;
}

/** The apiserver's `--etcd-prefix` (default `/registry`), without a trailing slash. */
export function etcdPrefixFromFlags(apiserverFlags: Record<string, string>): string {
	return normalizeEtcdPrefix(flag(apiserverFlags, 'etcd-prefix') ?? DEFAULT_ETCD_PREFIX);
}

/**
 * The apiserver joins the prefix and the resource path with Go's `path.Join`, so a trailing
 * slash does not matter and `/` means keys like `/secrets/...`. Returned without a trailing
 * slash ('' for `/`).
 */
export function normalizeEtcdPrefix(prefix: string): string {
	return prefix.replace(/\/+$/, '');
}

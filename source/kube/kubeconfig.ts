/**
 * Kubeconfig (admin.conf) parsing: the server URL and the credentials of the current
 * context. Credentials are embedded (`*-data`, base64) or node paths of PEM files; relative
 * paths are relative to the kubeconfig's directory, as kubectl resolves them.
 *
 * `parseKubeconfig` is pure; `loadKubeconfig` reads the file (and any referenced PEM files)
 * through the host and returns an `ApiConnection` with inline PEM text.
 */
import * as path from 'node:path';
import {parseYaml} from './yaml-edit.js';
import type {Host} from '../host/types.js';

/** A credential: inline PEM text, or the node path of a PEM file. */
export type PemSource = {data: string} | {file: string};

export type Kubeconfig = {
	/** Name of the context used. */
	context: string;
	cluster: string;
	user: string;
	server: string;
	ca?: PemSource;
	cert?: PemSource;
	key?: PemSource;
	/** Bearer token (inline or from tokenFile). */
	token?: PemSource;
	insecureSkipTlsVerify: boolean;
};

/** What the API client needs: a server and inline PEM credentials (never logged). */
export type ApiConnection = {
	server: string;
	ca?: string;
	cert?: string;
	key?: string;
	token?: string;
};

/** A kubeconfig that cannot be used; the message names the file, the problem and the fix. */
export class KubeconfigError extends Error {
	override name = 'KubeconfigError';
}

type Named = {name?: unknown; [key: string]: unknown};

function record(value: unknown): Record<string, unknown> {
	return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function named(list: unknown, name: string, kind: string, file: string): Record<string, unknown> {
	const entries = Array.isArray(list) ? (list as Named[]) : [];
	const entry = entries.find(item => record(item)['name'] === name);
	if (entry === undefined) {
		const known = entries.map(item => JSON.stringify(record(item)['name'])).join(', ') || 'none';
		throw new KubeconfigError(`${file}: ${kind} "${name}" is not defined (defined: ${known}). Fix the kubeconfig or regenerate it with \`kubeadm init phase kubeconfig admin\`.`);
	}
	return record(record(entry)[kind]);
}

function decodeBase64(value: unknown, field: string, file: string): string {
	if (typeof value !== 'string' || !/^[A-Za-z0-9+/=\s]+$/.test(value)) {
		throw new KubeconfigError(`${file}: ${field} is not base64. Fix the kubeconfig or regenerate it with \`kubeadm init phase kubeconfig admin\`.`);
	}
	return Buffer.from(value.replace(/\s+/g, ''), 'base64').toString('utf8');
}

function source(
	object: Record<string, unknown>,
	dataField: string,
	fileField: string,
	file: string,
	dataIsBase64 = true,
): PemSource | undefined {
	const data = object[dataField];
	if (data !== undefined && data !== null && data !== '') {
		return {data: dataIsBase64 ? decodeBase64(data, dataField, file) : String(data)};
	}
	const reference = object[fileField];
	if (typeof reference === 'string' && reference !== '') {
		return {file: path.posix.isAbsolute(reference) ? reference : path.posix.join(path.posix.dirname(file), reference)};
	}
	return undefined;
}

/**
 * Parse a kubeconfig's text. `file` is its node path (for messages and relative paths);
 * `context` overrides current-context.
 */
export function parseKubeconfig(text: string, file: string, context?: string): Kubeconfig {
	// parseYaml describes problems without quoting the file (a kubeconfig holds client keys)
	// and bounds aliases.
	const parsed = parseYaml(text);
	if (!parsed.doc) {
		const where = parsed.problem.line ? ` at line ${parsed.problem.line}` : '';
		throw new KubeconfigError(`${file}: not valid YAML${where} (${parsed.problem.message}). Fix the kubeconfig or regenerate it with \`kubeadm init phase kubeconfig admin\`.`);
	}
	const document: unknown = parsed.doc.toJS();
	const config = record(document);
	const contextName = context ?? config['current-context'];
	if (typeof contextName !== 'string' || contextName === '') {
		throw new KubeconfigError(`${file}: no current-context. Set one with \`kubectl config use-context\`.`);
	}
	const ctx = named(config['contexts'], contextName, 'context', file);
	const clusterName = ctx['cluster'];
	const userName = ctx['user'];
	if (typeof clusterName !== 'string') throw new KubeconfigError(`${file}: context "${contextName}" names no cluster.`);
	const cluster = named(config['clusters'], clusterName, 'cluster', file);
	const user = typeof userName === 'string' && userName !== '' ? named(config['users'], userName, 'user', file) : {};
	const server = cluster['server'];
	if (typeof server !== 'string' || !/^https?:\/\//.test(server)) {
		throw new KubeconfigError(`${file}: cluster "${clusterName}" has no https server URL (found ${JSON.stringify(server)}).`);
	}
	return {
		context: contextName,
		cluster: clusterName,
		user: typeof userName === 'string' ? userName : '',
		server: server.replace(/\/+$/, ''),
		ca: source(cluster, 'certificate-authority-data', 'certificate-authority', file),
		cert: source(user, 'client-certificate-data', 'client-certificate', file),
		key: source(user, 'client-key-data', 'client-key', file),
		token: source(user, 'token', 'tokenFile', file, false),
		insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true,
	};
}

async function readSource(host: Host, value: PemSource | undefined, what: string, kubeconfigPath: string): Promise<string | undefined> {
	if (value === undefined) return undefined;
	if ('data' in value) return value.data;
	const text = await host.readText(value.file);
	if (text === undefined) throw new KubeconfigError(`${kubeconfigPath}: the ${what} file ${value.file} does not exist.`);
	return text;
}

/**
 * Read a kubeconfig through the host and return the connection with inline credentials.
 * `server` overrides the kubeconfig's server (e.g. the local apiserver behind a load balancer).
 */
export async function loadKubeconfig(host: Host, file: string, options: {context?: string; server?: string} = {}): Promise<ApiConnection> {
	const text = await host.readText(file);
	if (text === undefined) throw new KubeconfigError(`${file} does not exist. Is this a kubeadm control-plane node? Pass the admin kubeconfig's path.`);
	const config = parseKubeconfig(text, file, options.context);
	if (config.insecureSkipTlsVerify) {
		throw new KubeconfigError(`${file}: insecure-skip-tls-verify is set; etcd-harden only talks to an apiserver it can verify. Use a kubeconfig with the cluster CA.`);
	}
	const [ca, cert, key, token] = await Promise.all([
		readSource(host, config.ca, 'certificate-authority', file),
		readSource(host, config.cert, 'client-certificate', file),
		readSource(host, config.key, 'client-key', file),
		readSource(host, config.token, 'token', file),
	]);
	if ((cert === undefined) !== (key === undefined)) {
		throw new KubeconfigError(`${file}: user "${config.user}" has a client certificate without a key (or a key without a certificate).`);
	}
	return {server: (options.server ?? config.server).replace(/\/+$/, ''), ca, cert, key, token: token?.trim()};
}

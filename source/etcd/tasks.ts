/**
 * Tasks of the etcd-tls and etcd-auth stages. Params are plain data (node paths, names,
 * URLs); passwords are never in params: they are read from the 0600 file the stage writes,
 * passed to etcdctl on stdin or as secret args, and never logged.
 *
 * etcd-restart-gate: the static pod gate (kube/static-pod-gate.ts) for etcd: a new etcd
 *   process, endpoint health with the health-check client, and kube-apiserver's /readyz.
 * etcd-client-cert: a client certificate signed by the etcd CA (key made here, written
 *   0600; openssl signs). Undo removes both.
 * etcd-auth-users: root (password from passwordFile, on stdin), the root role, a
 *   password-less user per certificate CN with the root role, and the read-only monitoring
 *   role and user. Undo deletes what this run created.
 * etcd-auth-enable: `auth enable`, then waits until etcd is healthy with the health-check
 *   certificate, kube-apiserver's certificate can read its prefix and /readyz passes; else
 *   throws. Undo: `auth disable` with the apiserver's certificate (root role), falling back
 *   to the root password.
 */
import {generateKeyPairSync} from 'node:crypto';
import {posix} from 'node:path';
import {defineTask, type TaskContext} from '../engine/contract.js';
import type {Arg, Host} from '../host/types.js';
import {KubeApi} from '../kube/api.js';
import {ETCD_MANIFEST} from '../kube/defaults.js';
import {loadKubeconfig} from '../kube/kubeconfig.js';
import {checkReady} from '../kube/restart-gate.js';
import {defineStaticPodGate, type GateBase} from '../kube/static-pod-gate.js';
import type {EtcdConnection} from './connection.js';
import {runEtcdctl} from './etcdctl.js';
import {etcdHealthy, readEtcdStartTime, waitForEtcd} from './tls-gate.js';

/** A quick API client (no retries) when the task names a kubeconfig. */
async function apiFrom(host: Host, params: {kubeconfig?: string}): Promise<KubeApi | undefined> {
	const kubeconfig = params.kubeconfig;
	if (kubeconfig === undefined) return undefined;
	return new KubeApi(host, await loadKubeconfig(host, kubeconfig), {retries: 0, timeoutMs: 10_000});
}

function lastLines(text: string, count = 3): string {
	return text.trim().split('\n').filter(Boolean).slice(-count).join('\n');
}

// ---- etcd-restart-gate ----

export type EtcdGateParams = GateBase & {
	/** etcd's metrics URL (its start time), when it serves one. */
	metricsUrl?: string;
	/** The health-check client. */
	health: EtcdConnection;
	/** kube-apiserver must pass /readyz too. */
	kubeconfig?: string;
};

export const etcdRestartGate = defineStaticPodGate<EtcdGateParams>('etcd-restart-gate', {
	component: 'etcd',
	defaultManifest: ETCD_MANIFEST,
	recordFile: 'etcd-gate.json',
	waiting: {
		after: 'etcd to restart, pass endpoint health and kube-apiserver /readyz',
		restored: 'etcd and kube-apiserver with the restored manifest',
	},
	ready: 'etcd restarted and is healthy; kube-apiserver is ready',
	async readStart(params, context) {
		return readEtcdStartTime(context.host, params.metricsUrl, params.health, context.signal);
	},
	async waitReady(params, context, wait) {
		const api = await apiFrom(context.host, params);
		return waitForEtcd(context.host, {
			metricsUrl: params.metricsUrl,
			health: params.health,
			timeoutMs: wait.timeoutMs,
			pollMs: wait.pollMs,
			...(params.logPaths?.length ? {logPaths: params.logPaths} : {}),
			signal: wait.signal,
			onStatus: wait.onStatus,
			...(api ? {api} : {}),
			...(wait.before === undefined ? {} : {before: wait.before}),
			...(wait.notBefore === undefined ? {} : {notBefore: wait.notBefore}),
			...(wait.acceptUnchanged ? {acceptUnchanged: true} : {manifestPath: params.manifestPath ?? ETCD_MANIFEST}),
		});
	},
});

// ---- etcd-client-cert ----

/** openssl req configuration for a client leaf certificate (no secrets). */
const CLIENT_CERT_CONFIG = ['[req]', 'distinguished_name = dn', '[dn]', '[leaf]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature,keyEncipherment', 'extendedKeyUsage = clientAuth', ''].join('\n');

export type ClientCertParams = {cn: string; caCert: string; caKey: string; cert: string; key: string; days?: number};

export const etcdClientCertTask = defineTask<ClientCertParams>('etcd-client-cert', {
	async run(params, context) {
		const {cn, caCert, caKey, cert, key} = params;
		const {privateKey} = generateKeyPairSync('rsa', {modulusLength: 2048});
		await context.host.writeFileAtomic(key, privateKey.export({type: 'pkcs8', format: 'pem'}) as string, 0o600);
		const days = String(params.days ?? 365);
		// The request's configuration (no secrets) sits beside the run's journal while openssl reads it.
		const config = context.runDir ? `${context.runDir.dir}/etcd-client-cert.cnf` : `${posix.dirname(cert)}/.etcd-harden-client-cert.cnf`;
		await context.host.writeFileAtomic(config, CLIENT_CERT_CONFIG, 0o600);
		const argv: Arg[] = ['openssl', 'req', '-x509', '-new', '-key', {path: key}, '-subj', `/CN=${cn}`, '-CA', {path: caCert}, '-CAkey', {path: caKey}, '-days', days, '-config', {path: config}, '-extensions', 'leaf', '-out', {path: cert}];
		const result = await context.host.run(argv, {timeoutMs: 60_000, signal: context.signal});
		await context.host.remove(config);
		if (result.exitCode !== 0) throw new Error(`openssl could not sign the ${cn} certificate: ${lastLines(result.stderr)}`);
		context.log({level: 'success', text: `wrote ${cert} (CN ${cn}, signed by ${caCert}) and its key ${key} (0600)`});
	},
	async undo(params, context) {
		for (const path of [params.cert, params.key]) await context.host.remove(path);
	},
});

// ---- etcd-auth-users ----

type Created = {users: string[]; roles: string[]};

const createdFile = (context: TaskContext) => (context.runDir ? `${context.runDir.dir}/etcd-auth-created.json` : undefined);

async function readPassword(host: Host, path: string | undefined): Promise<string | undefined> {
	if (!path) return undefined;
	const text = await host.readText(path).catch(() => undefined);
	const password = text?.trim();
	return password ? password : undefined;
}

/** etcdctl as the root user (password as a secret argument), or with the certificate alone. */
function asRoot(password: string | undefined): Arg[] {
	return password === undefined ? [] : ['--user=root', {secret: `--password=${password}`}];
}

async function etcdctl(context: TaskContext, conn: EtcdConnection, args: Arg[], options: {input?: string; readOnly?: boolean} = {}) {
	return runEtcdctl(context.host, conn, args, {readOnly: options.readOnly ?? false, commandTimeout: '10s', timeoutMs: 30_000, signal: context.signal, ...(options.input === undefined ? {} : {input: options.input})});
}

async function mustEtcdctl(context: TaskContext, conn: EtcdConnection, args: Arg[], what: string, input?: string): Promise<string> {
	const result = await etcdctl(context, conn, args, input === undefined ? {} : {input});
	if (result.exitCode !== 0) throw new Error(`${what} failed (${result.command}): ${lastLines(result.stderr || result.stdout)}`);
	return result.stdout;
}

async function listNames(context: TaskContext, conn: EtcdConnection, kind: 'user' | 'role', root: Arg[]): Promise<Set<string>> {
	const out = await mustEtcdctl(context, conn, [...root, kind, 'list'], `etcdctl ${kind} list`);
	return new Set(out.split('\n').map(line => line.trim()).filter(Boolean));
}

async function rolesOf(context: TaskContext, conn: EtcdConnection, user: string, root: Arg[]): Promise<string[]> {
	const out = await mustEtcdctl(context, conn, [...root, 'user', 'get', user], `etcdctl user get ${user}`);
	return (/^Roles:(.*)$/m.exec(out)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
}

export type AuthUsersParams = {
	connection: EtcdConnection;
	passwordFile: string;
	/** Certificate CNs that get a password-less user with the root role. */
	users: string[];
	monitoring?: {user: string; role: string; prefix: string};
};

export const etcdAuthUsersTask = defineTask<AuthUsersParams>('etcd-auth-users', {
	async run(params, context) {
		const conn = params.connection;
		const password = await readPassword(context.host, params.passwordFile);
		// The certificate's CN is enough: before auth is on anyone may, after it has the root role.
		const root: Arg[] = [];
		const created: Created = {users: [], roles: []};
		const record = async () => {
			const file = createdFile(context);
			if (file) await context.host.writeFileAtomic(file, `${JSON.stringify(created)}\n`, 0o600);
		};
		const users = await listNames(context, conn, 'user', root);
		const roles = await listNames(context, conn, 'role', root);
		const addRole = async (role: string) => {
			if (roles.has(role)) return;
			await mustEtcdctl(context, conn, [...root, 'role', 'add', role], `etcdctl role add ${role}`);
			roles.add(role);
			created.roles.push(role);
			await record();
		};
		const addUser = async (user: string, userPassword?: string) => {
			if (users.has(user)) return;
			if (userPassword === undefined) {
				await mustEtcdctl(context, conn, [...root, 'user', 'add', user, '--no-password'], `etcdctl user add ${user}`);
			} else {
				// The password goes on stdin: never in argv, never in a log.
				await mustEtcdctl(context, conn, [...root, 'user', 'add', user, '--interactive=false'], `etcdctl user add ${user}`, `${userPassword}\n`);
			}
			users.add(user);
			created.users.push(user);
			await record();
			context.log({level: 'success', text: `created etcd user ${user}${userPassword === undefined ? ' (certificate CN, no password)' : ''}`});
		};
		const grant = async (user: string, role: string) => {
			if ((await rolesOf(context, conn, user, root)).includes(role)) return;
			await mustEtcdctl(context, conn, [...root, 'user', 'grant-role', user, role], `etcdctl user grant-role ${user} ${role}`);
		};
		await addRole('root');
		if (!users.has('root')) {
			if (password === undefined) throw new Error(`no root password in ${params.passwordFile}: cannot create the root user`);
			await addUser('root', password);
		}
		await grant('root', 'root');
		for (const user of params.users) {
			await addUser(user);
			await grant(user, 'root');
		}
		const monitoring = params.monitoring;
		if (monitoring) {
			await addRole(monitoring.role);
			await mustEtcdctl(context, conn, [...root, 'role', 'grant-permission', monitoring.role, 'read', monitoring.prefix, '--prefix=true'], `etcdctl role grant-permission ${monitoring.role}`);
			await addUser(monitoring.user);
			await grant(monitoring.user, monitoring.role);
			context.log({level: 'success', text: `${monitoring.user} may read ${monitoring.prefix}* and nothing else (role ${monitoring.role})`});
		}
	},
	async undo(params, context) {
		const file = createdFile(context);
		const text = file ? await context.host.readText(file) : undefined;
		if (!text) return;
		const created = JSON.parse(text) as Created;
		const conn = params.connection;
		const root: Arg[] = [];
		const problems: string[] = [];
		for (const user of [...created.users].reverse()) {
			const result = await etcdctl(context, conn, [...root, 'user', 'delete', user]);
			if (result.exitCode !== 0) problems.push(`user delete ${user}: ${lastLines(result.stderr)}`);
		}
		for (const role of [...created.roles].reverse()) {
			const result = await etcdctl(context, conn, [...root, 'role', 'delete', role]);
			if (result.exitCode !== 0) problems.push(`role delete ${role}: ${lastLines(result.stderr)}`);
		}
		if (problems.length) throw new Error(`could not remove the etcd users/roles this run created: ${problems.join('; ')}`);
		context.log({level: 'info', text: `removed the etcd users (${created.users.join(', ') || 'none'}) and roles (${created.roles.join(', ') || 'none'}) this run created`});
	},
});

// ---- etcd-auth-enable ----

export type AuthEnableParams = {
	/** kube-apiserver's etcd client (root role once users are made). */
	connection: EtcdConnection;
	health: EtcdConnection;
	passwordFile: string;
	kubeconfig?: string;
	timeoutSeconds?: number;
	pollMs?: number;
	/** The prefix kube-apiserver's certificate must still read (default /registry/). */
	checkPrefix?: string;
};

async function disableAuth(context: TaskContext, params: AuthEnableParams): Promise<string> {
	const conn = params.connection;
	// The apiserver's certificate has the root role: it can disable auth without a password.
	const byCert = await etcdctl(context, conn, ['auth', 'disable']);
	if (byCert.exitCode === 0) return 'with the kube-apiserver etcd client certificate (root role)';
	const password = await readPassword(context.host, params.passwordFile);
	if (password === undefined) throw new Error(`auth disable failed and there is no root password file: ${lastLines(byCert.stderr)}`);
	const byPassword = await etcdctl(context, conn, [...asRoot(password), 'auth', 'disable']);
	if (byPassword.exitCode !== 0) throw new Error(`auth disable failed with the certificate (${lastLines(byCert.stderr, 1)}) and as root (${lastLines(byPassword.stderr, 1)})`);
	return 'as root';
}

export const etcdAuthEnableTask = defineTask<AuthEnableParams>('etcd-auth-enable', {
	async run(params, context) {
		const {connection: conn, health} = params;
		const timeoutSeconds = params.timeoutSeconds ?? 60;
		const pollMs = params.pollMs ?? 1000;
		const prefix = params.checkPrefix ?? '/registry/';
		await mustEtcdctl(context, conn, ['auth', 'enable'], 'etcdctl auth enable');
		context.log({level: 'info', text: 'etcd authentication enabled; checking that etcd and kube-apiserver still work'});
		const api = await apiFrom(context.host, params);
		const started = context.host.now().getTime();
		let last = '';
		while (true) {
			const healthy = await etcdHealthy(context.host, health, context.signal);
			const read = await etcdctl(context, conn, ['get', prefix, '--prefix', '--keys-only', '--limit=1'], {readOnly: true});
			const ready = api ? await checkReady(api, context.signal) : {ready: true, detail: 'not checked'};
			if (healthy.healthy && read.exitCode === 0 && ready.ready) {
				context.log({level: 'success', text: `with auth on: etcd health passes, kube-apiserver's certificate reads ${prefix}, /readyz ok`});
				return;
			}
			last = [
				healthy.healthy ? undefined : `etcd health with the health-check certificate: ${healthy.detail}`,
				read.exitCode === 0 ? undefined : `kube-apiserver's certificate cannot read ${prefix}: ${lastLines(read.stderr, 1)}`,
				ready.ready ? undefined : `kube-apiserver /readyz: ${ready.detail}`,
			]
				.filter(Boolean)
				.join('; ');
			context.progress({label: `checking etcd and kube-apiserver with auth on (${last.slice(0, 80)})`, done: Math.round((context.host.now().getTime() - started) / 1000), total: timeoutSeconds});
			if (context.host.now().getTime() - started >= timeoutSeconds * 1000) break;
			await context.host.sleep(pollMs, context.signal);
		}
		throw new Error(`with etcd auth enabled, the control plane did not work within ${timeoutSeconds} s: ${last}`);
	},
	async undo(params, context) {
		const how = await disableAuth(context, params);
		context.log({level: 'warn', text: `etcd authentication disabled again (${how}).`});
		const healthy = await etcdHealthy(context.host, params.health, context.signal);
		if (!healthy.healthy) context.log({level: 'warn', text: `etcd health after auth disable: ${healthy.detail}`});
	},
});

/**
 * etcd's own RBAC authentication, planned safely: who connects (the CN of every client
 * certificate etcd sees: kube-apiserver's --etcd-certfile, kubeadm's health-check client),
 * which users and roles must exist before `auth enable`, and the checks that show it. Pure.
 *
 * With --client-cert-auth=true etcd takes a client certificate's CN as the user name, so a
 * certificate whose CN has no user is refused once auth is on: enabling auth without a user
 * for kube-apiserver's CN takes the whole control plane down. Planning refuses that case.
 */
import {STATE_DIR, type Check} from '../engine/contract.js';
import type {EtcdAuthFacts, EtcdNodeFacts} from './types.js';

export const ROOT_PASSWORD_FILE = `${STATE_DIR}/etcd-root-password`;
export const DEFAULT_MONITOR_USER = 'etcd-monitor';

/** A client that connects to etcd with a certificate. */
export type EtcdClient = {cn: string; source: string; certPath: string};

/** The certificate CNs that connect to etcd on this node (deduplicated, in a stable order). */
export function connectingClients(facts: EtcdNodeFacts): EtcdClient[] {
	const certs = facts.etcdCerts ?? {};
	const out: EtcdClient[] = [];
	const add = (info: {subjectCN?: string; path: string} | undefined, source: string) => {
		if (!info?.subjectCN || out.some(client => client.cn === info.subjectCN)) return;
		out.push({cn: info.subjectCN, source, certPath: info.path});
	};
	add(certs.apiserverClient, "kube-apiserver's --etcd-certfile");
	add(certs.healthcheckClient, 'the etcd health-check client');
	return out;
}

/** A user name etcd accepts and etcdctl passes safely as one argument. */
export function userNameProblem(name: string): string | undefined {
	if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/.test(name)) return `"${name}" is not a usable etcd user name (letters, digits, . _ @ - only)`;
	if (name === 'root') return '"root" is the administrator user, created separately';
	return undefined;
}

export function prefixProblem(prefix: string): string | undefined {
	if (!prefix.startsWith('/')) return `the prefix "${prefix}" must start with /`;
	if (/\s/.test(prefix)) return `the prefix "${prefix}" must not contain spaces`;
	return undefined;
}

export type AuthRequest = {
	/** Users to create for certificate CNs (each gets the root role). */
	users: string[];
	monitoring?: {user: string; role: string; prefix: string};
};

/**
 * Refuse before anything changes: every connecting CN needs a user (existing or planned),
 * otherwise `auth enable` would lock that client out. The message names each CN.
 */
export function missingUsers(clients: readonly EtcdClient[], request: AuthRequest, auth: EtcdAuthFacts): EtcdClient[] {
	// An existing user counts only with a role: a user without roles is refused everything.
	const existing = new Set(Object.entries(auth.users ?? {}).filter(([, roles]) => roles.length > 0).map(([name]) => name));
	const planned = new Set(request.users);
	return clients.filter(client => !existing.has(client.cn) && !planned.has(client.cn));
}

/** The read-only monitoring role name for a user. */
export function monitorRole(user: string): string {
	return `${user}-readonly`;
}

/** Checks on the running etcd's auth state (live facts), for status and verify. */
export function authChecks(facts: EtcdNodeFacts, request: AuthRequest | undefined, strict: boolean): Check[] {
	const live = facts.etcdLive;
	if (!live) {
		return [
			{
				id: 'etcd.auth.enabled',
				title: 'etcd authentication (RBAC) is enabled',
				status: 'warn',
				actual: 'not checked: no running etcd was probed (etcd-harden runs with --root)',
				remediation: 'Run etcd-harden status on the control-plane node itself.',
			},
		];
	}
	const auth = live.auth;
	const out: Check[] = [];
	const enabledOk = auth.enabled === true;
	out.push({
		id: 'etcd.auth.enabled',
		title: 'etcd authentication (RBAC) is enabled',
		status: enabledOk ? 'pass' : strict ? 'fail' : 'warn',
		actual: auth.enabled === undefined ? (auth.problem ?? 'unknown') : auth.enabled ? 'enabled' : 'disabled: any client with a certificate from the etcd CA has full access',
		...(enabledOk ? {} : {remediation: 'Run etcd-harden --only etcd-auth.'}),
	});
	const users = auth.users;
	const clients = connectingClients(facts);
	if (users !== undefined && (auth.enabled || strict)) {
		const lacking = clients.filter(client => !(users[client.cn] ?? []).includes('root'));
		out.push({
			id: 'etcd.auth.client-users',
			title: 'every client certificate CN that connects has an etcd user with the root role',
			status: lacking.length === 0 ? 'pass' : 'fail',
			actual: lacking.length ? `no root-role user for ${lacking.map(c => `${c.cn} (${c.source})`).join(', ')}` : clients.map(c => c.cn).join(', ') || 'no client certificates found',
			...(lacking.length ? {remediation: `Create the users (etcdctl user add <CN> --no-password; user grant-role <CN> root) or run etcd-harden --only etcd-auth.`} : {}),
		});
		const rootOk = (users['root'] ?? []).includes('root');
		out.push({
			id: 'etcd.auth.root',
			title: 'the root user exists with the root role',
			status: rootOk ? 'pass' : 'fail',
			actual: users['root'] ? `roles: ${users['root'].join(', ') || 'none'}` : 'no root user',
			...(rootOk ? {} : {remediation: 'Run etcd-harden --only etcd-auth.'}),
		});
	} else if (auth.enabled && users === undefined) {
		out.push({id: 'etcd.auth.client-users', title: 'every client certificate CN that connects has an etcd user with the root role', status: 'warn', actual: auth.problem ?? 'users could not be listed', remediation: "Check that kube-apiserver's etcd client certificate has the root role."});
	}
	if (request?.monitoring && users !== undefined) {
		const {user, role} = request.monitoring;
		const ok = (users[user] ?? []).includes(role);
		out.push({
			id: 'etcd.auth.monitoring',
			title: `the monitoring user ${user} has the read-only role ${role}`,
			status: ok ? 'pass' : 'fail',
			actual: users[user] ? `roles: ${users[user].join(', ') || 'none'}` : 'no such user',
			...(ok ? {} : {remediation: 'Run etcd-harden --only etcd-auth with monitoring=true.'}),
		});
	}
	if (strict) {
		out.push({
			id: 'etcd.auth.health',
			title: 'etcd passes its health check with the health-check client certificate',
			status: live.healthy ? 'pass' : 'fail',
			actual: live.healthy ? 'healthy' : (live.problem ?? 'unhealthy'),
			...(live.healthy ? {} : {remediation: 'Create a user for the health-check client CN, or disable auth: etcdctl auth disable (as root).'}),
		});
		const apiserver = live.probes.find(probe => probe.id === 'apiserver-cert');
		if (apiserver) {
			out.push({
				id: 'etcd.auth.apiserver',
				title: "kube-apiserver's etcd client certificate is accepted",
				status: apiserver.secure ? 'pass' : 'fail',
				actual: apiserver.detail,
				...(apiserver.secure ? {} : {remediation: "Create a root-role user named after kube-apiserver's etcd client certificate CN."}),
			});
		}
		if (facts.cluster) {
			out.push({
				id: 'etcd.auth.apiserver-ready',
				title: 'kube-apiserver is ready (/readyz)',
				status: facts.cluster.ready ? 'pass' : 'fail',
				actual: facts.cluster.ready ? 'ready' : (facts.cluster.problem ?? 'not ready'),
				...(facts.cluster.ready ? {} : {remediation: 'Disable etcd auth (etcdctl auth disable as root) and check the apiserver log.'}),
			});
		}
	}
	return out;
}

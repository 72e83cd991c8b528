/**
 * Stage etcd-auth: turn on etcd's own RBAC authentication without breaking kube-apiserver.
 * Creates `root` (a generated password, stored 0600 and never printed), a password-less user
 * with the root role for every client certificate CN that connects (kube-apiserver's, the
 * health-check client's), optionally a read-only role and user (with its own client
 * certificate) for monitoring on a prefix, then `auth enable`; verifies kube-apiserver stays
 * ready and etcd's health check passes, else disables auth again and removes what it created.
 * Refuses before changing anything when a connecting CN would have no user. Needs the live
 * etcd (etcd-harden on the node itself).
 */
import type {NodeStage} from './facts.js';
import {etcdAuthEnableTask, etcdAuthUsersTask, etcdClientCertTask} from '../etcd/tasks.js';
import {posix} from 'node:path';
import {InputError, type Change, type Check, type Question, type PlanContext, type Stage, type StageAnswers, type StagePlan} from '../engine/contract.js';
import {authChecks, connectingClients, DEFAULT_MONITOR_USER, missingUsers, monitorRole, prefixProblem, ROOT_PASSWORD_FILE, userNameProblem, type AuthRequest} from '../etcd/auth.js';
import {etcdConnectionFromFlags, etcdPrefixFromFlags} from '../etcd/connection.js';
import {nodePath} from '../etcd/tls.js';
import {healthcheckConnection} from '../etcd/tls.js';
import type {Facts} from './facts.js';

export const etcdAuthStageId = 'etcd-auth';

const list = (value: unknown): string[] => (Array.isArray(value) ? value.map(String) : typeof value === 'string' ? value.split(',').map(item => item.trim()).filter(Boolean) : []);

/** The users and monitoring setup the answers ask for. */
export function authRequest(facts: Facts, answers: StageAnswers): AuthRequest {
	const users = answers['users'] === undefined ? connectingClients(facts).map(client => client.cn) : list(answers['users']);
	if (answers['monitoring'] !== true) return {users};
	const user = typeof answers['monitoringUser'] === 'string' && answers['monitoringUser'] ? answers['monitoringUser'] : DEFAULT_MONITOR_USER;
	const prefix = typeof answers['monitoringPrefix'] === 'string' ? answers['monitoringPrefix'] : '';
	return {users, monitoring: {user, role: monitorRole(user), prefix}};
}

function plan(facts: Facts, answers: StageAnswers, context: PlanContext): StagePlan {
	const live = facts.etcdLive;
	const cluster = facts.cluster;
	if (!live || !cluster) {
		return {changes: [], leftOut: 'no running etcd was probed (etcd-harden runs with --root): enabling etcd authentication needs the live etcd and kube-apiserver.'};
	}
	if (!cluster.reachable) throw new InputError(cluster.problem ?? `kube-apiserver at ${cluster.server} does not answer.`);
	const flags = facts.etcd.flags;
	if (!/^true$/i.test(flags['client-cert-auth'] ?? '')) {
		throw new InputError(
			`etcd does not require client certificates (--client-cert-auth is ${flags['client-cert-auth'] ?? 'not set'}): etcd takes the user from the certificate CN only then. Fix: run the etcd-tls stage first (etcd-harden --only etcd-tls,etcd-auth).`,
		);
	}
	const auth = live.auth;
	if (auth.enabled === undefined) throw new InputError(`etcd-auth: ${auth.problem ?? 'cannot tell whether etcd authentication is on'}`);
	if (auth.users === undefined) throw new InputError(`etcd-auth: cannot list etcd's users (${auth.problem ?? 'unknown reason'}).`);
	const clients = connectingClients(facts);
	if (clients.length === 0) {
		throw new InputError("etcd-auth: no client certificate found (kube-apiserver's --etcd-certfile, the health-check client): without them there is no safe user to create. Fix the certificates first.");
	}
	const request = authRequest(facts, answers);
	const missing = missingUsers(clients, request, auth);
	if (missing.length > 0) {
		const wanted = [...new Set([...request.users, ...missing.map(client => client.cn)])].join(',');
		throw new InputError(
			`auth enable would lock out ${missing.map(client => `CN "${client.cn}" (${client.source}, ${client.certPath})`).join(' and ')}: it connects to etcd but would have no etcd user. ` +
				`Nothing was changed. Fix: include it in etcd-auth.users (--set etcd-auth.users=${wanted}).`,
		);
	}
	let connection;
	try {
		connection = etcdConnectionFromFlags(facts.apiserver.flags);
	} catch (error) {
		throw new InputError(`etcd-auth: ${(error as Error).message}`);
	}
	if (!connection.cert) throw new InputError("etcd-auth: kube-apiserver has no --etcd-certfile: it would have no etcd user once auth is on. Fix: CIS 1.2.24 first.");
	const health = healthcheckConnection(facts);
	if (!health) throw new InputError(`etcd-auth: ${facts.pki.dir}/etcd/healthcheck-client.crt and .key are needed to verify etcd after auth enable.`);

	const users = auth.users;
	const notes: string[] = [];
	const warnings: string[] = [];
	const changes: Change[] = [];
	const passwordFile = auth.rootPasswordFile ?? {path: ROOT_PASSWORD_FILE, exists: false};
	const rootExists = users['root'] !== undefined;
	if (!rootExists && !passwordFile.exists) {
		const password = context.randomBytes(24).toString('base64url');
		changes.push({kind: 'write-file', path: passwordFile.path, content: `${password}\n`, mode: 0o600, summary: `Store the generated etcd root password in ${passwordFile.path} (0600; never printed)`, secrets: [password]});
		notes.push(`The root password is never printed: read ${passwordFile.path} as root when you need it (etcdctl --user root --password "$(cat ${passwordFile.path})").`);
	} else if (rootExists && !passwordFile.exists) {
		warnings.push(`etcd already has a root user whose password etcd-harden does not hold; if auth enable fails it is disabled again with kube-apiserver's certificate (root role).`);
	}

	const needsUser = request.users.filter(user => !(users[user] ?? []).includes('root'));
	const monitoring = request.monitoring;
	const monitoringNeeded = monitoring !== undefined && !(users[monitoring.user] ?? []).includes(monitoring.role);
	if (!rootExists || !(users['root'] ?? []).includes('root') || needsUser.length > 0 || monitoringNeeded) {
		changes.push(
			etcdAuthUsersTask.change(
				{connection, passwordFile: passwordFile.path, users: request.users, ...(monitoring ? {monitoring} : {})},
				`Create etcd users: root (password), ${request.users.join(', ')} (certificate CN, root role)${monitoring ? `, ${monitoring.user} (read-only on ${monitoring.prefix})` : ''}`,
				[
				'etcdctl role add root; user add root --interactive=false (password on stdin); user grant-role root root',
				...request.users.map(user => `etcdctl user add ${user} --no-password; user grant-role ${user} root`),
				...(monitoring ? [`etcdctl role add ${monitoring.role}; role grant-permission ${monitoring.role} read ${monitoring.prefix} --prefix=true; user add ${monitoring.user} --no-password; user grant-role ${monitoring.user} ${monitoring.role}`] : []),
				'undone: the users and roles this run created are deleted',
				],
			),
		);
	}
	if (monitoring) {
		const dir = posix.join(facts.pki.dir, 'etcd');
		const cert = posix.join(dir, `${monitoring.user}.crt`);
		const key = posix.join(dir, `${monitoring.user}.key`);
		const caCert = nodePath(facts.etcd, 'trusted-ca-file') ?? posix.join(dir, 'ca.crt');
		const caKey = caCert.replace(/\.crt$/, '.key');
		if (facts.pki.files[cert]?.exists !== true) {
			if (facts.pki.files[caKey]?.exists !== true) throw new InputError(`etcd-auth: ${caKey} (the etcd CA key) is needed to issue the ${monitoring.user} client certificate.`);
			changes.push(
				etcdClientCertTask.change({cn: monitoring.user, caCert, caKey, cert, key}, `Issue a client certificate for ${monitoring.user}: ${cert} and ${key} (0600), signed by ${caCert}`),
			);
		}
		notes.push(`The monitoring job connects with the certificate ${cert}, its key ${key} and the etcd CA; it may read ${monitoring.prefix}* and nothing else.`);
	}
	if (!auth.enabled) {
		changes.push(
			etcdAuthEnableTask.change(
				{connection, health, passwordFile: passwordFile.path, kubeconfig: cluster.kubeconfig, timeoutSeconds: Math.min(context.settings?.gateTimeoutSeconds ?? 60, 120), checkPrefix: `${etcdPrefixFromFlags(facts.apiserver.flags)}/`},
				'etcdctl auth enable, then check etcd health, that kube-apiserver\'s certificate reads its prefix, and /readyz',
				['if a check fails: etcdctl auth disable (kube-apiserver\'s certificate has the root role; the root password otherwise), and the users this run created are removed'],
			),
		);
	}
	if (changes.length === 0) notes.push('etcd authentication is already on with a user for every connecting certificate CN.');
	return {changes, notes, warnings};
}

function statusChecks(facts: Facts): Check[] {
	const checks = authChecks(facts, undefined, false);
	const file = facts.etcdLive?.auth.rootPasswordFile;
	if (file?.exists) {
		const ok = ((file.mode ?? 0) & 0o077) === 0;
		checks.push({
			id: 'etcd.auth.root-password-file',
			title: 'the etcd root password file is private (0600)',
			status: ok ? 'pass' : 'fail',
			actual: `${file.path}: mode 0${(file.mode ?? 0).toString(8)}`,
			...(ok ? {} : {remediation: `chmod 600 ${file.path}`}),
		});
	}
	return checks;
}

export const etcdAuthStage: NodeStage = {
	// Its users are the client certificates' CNs: without client-cert-auth they prove nothing.
	dependsOn: ['etcd-tls'],
	id: etcdAuthStageId,
	title: 'etcd authentication',
	explain:
		"Turns on etcd's own RBAC authentication: a root user (generated password, stored 0600, never printed), a user with the root role " +
		"for every client certificate CN that connects (kube-apiserver's, the health-check client's), optionally a read-only monitoring " +
		'user on a prefix, then auth enable. kube-apiserver must stay ready and etcd healthy, or auth is disabled again.',
	questions: facts => {
		// Without the live etcd the stage plans nothing: nothing to ask.
		if (!facts.etcdLive || !facts.cluster) return [];
		const clients = connectingClients(facts);
		return [
			...(clients.length === 0 ? [] : [{
				id: 'users',
				kind: 'multiselect',
				message: 'etcd users to create for client certificate CNs (each gets the root role)',
				help: 'Every CN that connects needs a user before auth enable, or etcd refuses it. Add the CN of any other client (a backup job) too.',
				choices: clients.map(client => ({value: client.cn, label: client.cn, hint: client.source})),
				default: clients.map(client => client.cn),
				validate: (value: unknown) => (Array.isArray(value) ? value.map(userNameProblem).find(Boolean) : 'expected a list'),
			} satisfies Question]),
			{id: 'monitoring', kind: 'confirm', message: 'Also create a read-only user for monitoring?', default: false},
			{
				id: 'monitoringUser',
				kind: 'text',
				message: 'Monitoring user name (also its certificate CN)',
				default: DEFAULT_MONITOR_USER,
				when: answers => answers['monitoring'] === true,
				validate: value => (typeof value === 'string' ? userNameProblem(value) : 'expected text'),
			},
			{
				id: 'monitoringPrefix',
				kind: 'text',
				message: 'Key prefix the monitoring user may read (e.g. /monitoring/)',
				when: answers => answers['monitoring'] === true,
				validate: value => (typeof value === 'string' ? prefixProblem(value) : 'expected text'),
			},
		];
	},
	plan,
	verify: (facts, answers) => authChecks(facts, authRequest(facts, answers), facts.etcdLive !== undefined),
	status: statusChecks,
};

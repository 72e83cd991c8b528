// etcd-auth planning as pure logic: who connects, refusal naming a CN without a user, the
// changes (password file, users, monitoring certificate, auth enable), nothing secret shown.
import {describe, expect, it} from 'vitest';
import {InputError, type StagePlan} from '../../source/engine/contract.js';
import {authChecks, connectingClients, missingUsers, monitorRole, prefixProblem, userNameProblem} from '../../source/etcd/auth.js';
import type {EtcdAuthFacts} from '../../source/etcd/tls.js';
import {etcdAuthStage} from '../../source/stages/etcd-auth.js';
import type {Facts} from '../../source/stages/facts.js';
import {countingBytes} from './helpers/memory-host.js';

const PKI = '/etc/kubernetes/pki';
const API_CN = 'kube-apiserver-etcd-client';
const HC_CN = 'kube-etcd-healthcheck-client';

function facts(auth: EtcdAuthFacts, options: {clientCertAuth?: string; monitorCert?: boolean} = {}): Facts {
	const files: Record<string, {exists: boolean}> = {};
	for (const name of ['etcd/ca.crt', 'etcd/ca.key', 'etcd/healthcheck-client.crt', 'etcd/healthcheck-client.key', 'apiserver-etcd-client.crt', 'apiserver-etcd-client.key']) files[`${PKI}/${name}`] = {exists: true};
	if (options.monitorCert) files[`${PKI}/etcd/etcd-monitor.crt`] = {exists: true};
	const manifest = (flags: Record<string, string>) => ({path: '/m.yaml', exists: true, command: [], flags, volumes: [], volumeMounts: [], annotations: {}});
	return {
		root: '/',
		isRoot: true,
		apiserver: manifest({'etcd-servers': 'https://127.0.0.1:2379', 'etcd-cafile': `${PKI}/etcd/ca.crt`, 'etcd-certfile': `${PKI}/apiserver-etcd-client.crt`, 'etcd-keyfile': `${PKI}/apiserver-etcd-client.key`}),
		etcd: manifest({'client-cert-auth': options.clientCertAuth ?? 'true', 'trusted-ca-file': `${PKI}/etcd/ca.crt`}),
		encryption: {path: '/e.yaml', exists: false, errors: [], mountedInPod: false},
		pki: {dir: PKI, files},
		cluster: {kubeconfig: '/etc/kubernetes/admin.conf', reachable: true, ready: true},
		etcdCerts: {
			apiserverClient: {path: `${PKI}/apiserver-etcd-client.crt`, subjectCN: API_CN},
			healthcheckClient: {path: `${PKI}/etcd/healthcheck-client.crt`, subjectCN: HC_CN},
		},
		etcdLive: {probes: [{id: 'apiserver-cert', url: 'https://127.0.0.1:2379', secure: true, detail: 'healthy'}], healthy: true, auth},
	};
}

const context = () => ({randomBytes: countingBytes().randomBytes, now: new Date(0)});
const off: EtcdAuthFacts = {enabled: false, users: {}, rootPasswordFile: {path: '/var/lib/etcd-harden/etcd-root-password', exists: false}};

function kinds(plan: StagePlan): string[] {
	return plan.changes.map(change => (change.kind === 'task' ? change.task : `${change.kind}:${change.path}`));
}

describe('who connects', () => {
	it('the apiserver and health-check CNs, deduplicated', () => {
		expect(connectingClients(facts(off)).map(client => client.cn)).toEqual([API_CN, HC_CN]);
	});

	it('a CN counts as covered when planned, or existing with a role (a roleless user is refused everything)', () => {
		const clients = connectingClients(facts(off));
		expect(missingUsers(clients, {users: [HC_CN]}, {users: {}}).map(c => c.cn)).toEqual([API_CN]);
		expect(missingUsers(clients, {users: [HC_CN]}, {users: {[API_CN]: []}}).map(c => c.cn)).toEqual([API_CN]);
		expect(missingUsers(clients, {users: [HC_CN]}, {users: {[API_CN]: ['reader']}})).toEqual([]);
	});

	it('validates user names and prefixes', () => {
		expect(userNameProblem('etcd-monitor')).toBeUndefined();
		expect(userNameProblem('root')).toMatch(/administrator/);
		expect(userNameProblem('a b')).toMatch(/not a usable/);
		expect(prefixProblem('monitoring/')).toMatch(/must start with \//);
		expect(monitorRole('m')).toBe('m-readonly');
	});
});

describe('planning', () => {
	it('refuses before anything changes when a connecting CN has no user, naming the CN and the answer to give', () => {
		const plan = () => etcdAuthStage.plan(facts(off), {users: [HC_CN]}, context());
		expect(plan).toThrow(InputError);
		expect(plan).toThrow(`auth enable would lock out CN "${API_CN}" (kube-apiserver's --etcd-certfile, ${PKI}/apiserver-etcd-client.crt)`);
		expect(plan).toThrow(`--set etcd-auth.users=${HC_CN},${API_CN}`);
	});

	it('refuses while etcd does not require client certificates (the CN is the user only then)', () => {
		expect(() => etcdAuthStage.plan(facts(off, {clientCertAuth: 'false'}), {}, context())).toThrow(/run the etcd-tls stage first/);
	});

	it('plans the password file (0600, redacted), the users, the monitoring certificate, then auth enable; nothing secret is shown', () => {
		const plan = etcdAuthStage.plan(facts(off), {monitoring: true, monitoringUser: 'etcd-monitor', monitoringPrefix: '/monitoring/'}, context());
		expect(kinds(plan)).toEqual(['write-file:/var/lib/etcd-harden/etcd-root-password', 'etcd-auth-users', 'etcd-client-cert', 'etcd-auth-enable']);
		const write = plan.changes[0]!;
		if (write.kind !== 'write-file') throw new Error('expected a write');
		expect(write.mode).toBe(0o600);
		const password = write.content.trim();
		expect(password).toHaveLength(32);
		expect(write.secrets).toEqual([password]);
		const users = plan.changes[1]!;
		expect(users.kind === 'task' && users.params).toMatchObject({users: [API_CN, HC_CN], monitoring: {user: 'etcd-monitor', role: 'etcd-monitor-readonly', prefix: '/monitoring/'}, passwordFile: '/var/lib/etcd-harden/etcd-root-password'});
		const shown = JSON.stringify({notes: plan.notes, warnings: plan.warnings, changes: plan.changes.map(change => (change.kind === 'task' ? {summary: change.summary, detail: change.detail, params: change.params} : change.summary))});
		expect(shown).not.toContain(password);
		const enable = plan.changes[3]!;
		expect(enable.kind === 'task' && enable.params['checkPrefix']).toBe('/registry/');
	});

	it('with auth on, every CN a root-role user and the certificate in place: nothing to do', () => {
		const on: EtcdAuthFacts = {enabled: true, users: {root: ['root'], [API_CN]: ['root'], [HC_CN]: ['root'], 'etcd-monitor': ['etcd-monitor-readonly']}, rootPasswordFile: {path: '/var/lib/etcd-harden/etcd-root-password', exists: true, mode: 0o600}};
		const answers = {monitoring: true, monitoringUser: 'etcd-monitor', monitoringPrefix: '/monitoring/'};
		const plan = etcdAuthStage.plan(facts(on, {monitorCert: true}), answers, context());
		expect(plan.changes).toEqual([]);
		expect(etcdAuthStage.verify(facts(on, {monitorCert: true}), answers).filter(check => check.status !== 'pass')).toEqual([]);
	});

	it('under --root (no live etcd) nothing is asked or planned, and status warns', () => {
		const fileOnly: Facts = {...facts(off), etcdLive: undefined, cluster: undefined};
		expect(etcdAuthStage.questions(fileOnly, {})).toEqual([]);
		expect(etcdAuthStage.plan(fileOnly, {}, context()).changes).toEqual([]);
		expect(etcdAuthStage.status(fileOnly)).toMatchObject([{id: 'etcd.auth.enabled', status: 'warn'}]);
	});
});

describe('checks', () => {
	it('auth off warns in status and fails verification; a CN without a root-role user fails', () => {
		expect(authChecks(facts(off), undefined, false).find(check => check.id === 'etcd.auth.enabled')?.status).toBe('warn');
		expect(authChecks(facts(off), undefined, true).find(check => check.id === 'etcd.auth.enabled')?.status).toBe('fail');
		const partial = authChecks(facts({enabled: true, users: {root: ['root'], [API_CN]: ['root']}}), undefined, false);
		expect(partial.find(check => check.id === 'etcd.auth.client-users')).toMatchObject({status: 'fail', actual: `no root-role user for ${HC_CN} (the etcd health-check client)`});
	});

	it('status reports a root password file that others can read', () => {
		const loose = facts({enabled: true, users: {root: ['root'], [API_CN]: ['root'], [HC_CN]: ['root']}, rootPasswordFile: {path: '/p', exists: true, mode: 0o644}});
		expect(etcdAuthStage.status(loose).find(check => check.id === 'etcd.auth.root-password-file')).toMatchObject({status: 'fail', remediation: 'chmod 600 /p'});
	});
});

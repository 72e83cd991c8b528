// The monitor and the RBAC audit on one real testbed (etcd 3.4 + kube-apiserver 1.20.2):
// auth failures from etcd's own log (a certificate whose CN has no etcd user, a wrong password,
// a certificate from another CA), a value corrupted in etcd under a k8s:enc: prefix showing as
// a decryption error in kube-apiserver's metrics, 500 secret lists raising the read rate above
// its threshold, the textfile passing promtool, and the RBAC audit agreeing with the
// apiserver's own authorizer (SubjectAccessReviews, and kubectl auth can-i on a sample) for every subject of a dozen seeded
// roles and bindings, an aggregated ClusterRole and a wildcard rule among them.
import {spawnSync} from 'node:child_process';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {startTestbed, type Testbed} from '../testbed/index.js';
import {canReadSecrets, identityOf, type Binding, type RbacObjects, type Role, type Subject} from '../../source/kube/rbac.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(REPO, 'dist', 'cli.js');
const PKI = '/etc/kubernetes/pki';

type Run = {exitCode: number; stdout: string; stderr: string};
type Signal = {id: string; status: string; value: string; details?: string[]; source: string};
type Report = {alert: boolean; signals: Signal[]; authEvents: Array<{kind: string; client?: string; user?: string; count: number}>; secretReadRates?: Record<string, number>; secretReadThreshold: number};

async function cli(tb: Testbed, args: string[]): Promise<Run> {
	const result = await tb.exec([process.execPath, CLI, ...args], {reject: false, stdin: 'ignore', env: {CI: 'true'}});
	return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

async function monitorOnce(tb: Testbed, extra: string[] = []): Promise<Report> {
	const run = await cli(tb, ['monitor', '--once', '--json', ...extra]);
	expect([0, 1], run.stderr.slice(-2000)).toContain(run.exitCode);
	const report = JSON.parse(run.stdout) as Report;
	expect(run.exitCode).toBe(report.alert ? 1 : 0);
	return report;
}

const signal = (report: Report, id: string): Signal => report.signals.find(candidate => candidate.id === id)!;

async function etcdctlAs(tb: Testbed, cert: string, args: string[], ca = `${PKI}/etcd/ca.crt`): Promise<Run> {
	const result = await tb.exec(['etcdctl', '--endpoints=https://127.0.0.1:2379', `--cacert=${ca}`, `--cert=${PKI}/${cert}.crt`, `--key=${PKI}/${cert}.key`, '--command-timeout=5s', ...args], {
		reject: false,
		stdin: 'ignore',
		env: {ETCDCTL_API: '3'},
	});
	return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

let tb: Testbed;

beforeAll(async () => {
	tb = await startTestbed({secrets: 10, configMaps: 2, namespaces: 1});
	const encryption = await cli(tb, ['--yes', '--plain', '--only', 'encryption-config,apiserver-manifest,reencrypt', '--set', 'encryption-config.recovery=stored-elsewhere', '--set', 'encryption-config.storedElsewhere=true']);
	expect(encryption.exitCode, encryption.stderr.slice(-3000)).toBe(0);
	const auth = await cli(tb, ['--yes', '--plain', '--only', 'etcd-auth', '--set', 'etcd-auth.users=kube-etcd-healthcheck-client,kube-apiserver-etcd-client']);
	expect(auth.exitCode, auth.stderr.slice(-3000)).toBe(0);
});

afterAll(async () => {
	await tb?.stop();
});

describe('etcd-harden monitor on the real testbed', () => {
	it('a quiet baseline: nothing alerts but the read rate, which is known from the second sample on', async () => {
		const first = await monitorOnce(tb);
		// The two runs above probed etcd's listeners (plaintext, TLS without a certificate; on etcd
		// 3.4 a login as a user that never exists): etcd logged each refusal, and they are left out
		// (before, every one of them was an alert, from 127.0.0.1 and the node's address). What may
		// remain is etcd 3.4 logging a connection from the node's own address that closed before
		// its TLS handshake ("EOF"), which is not one of the tool's probes.
		expect(signal(first, 'etcd-auth').value).toMatch(/\(\d+ refusals? of etcd-harden's own probes left out\)$/);
		const fromLoopback = first.authEvents.filter(event => event.kind === 'tls-rejected' && /^127\./.test(event.client ?? ''));
		expect(fromLoopback, JSON.stringify(first.authEvents)).toEqual([]);
		expect(signal(first, 'decryption-errors').status).toBe('ok');
		expect(signal(first, 'secret-reads').value).toMatch(/first sample taken|secret reads\/s/);
		expect(signal(first, 'cert-expiry').status).toBe('ok');
		// No firewall stage ran here: the signal says so instead of claiming all is well.
		expect(signal(first, 'unexpected-clients')).toMatchObject({status: 'unknown'});
	});

	it("auth failures from etcd's log: a CN without an etcd user, a wrong password, a certificate from another CA", async () => {
		// The peer certificate's CN (the node name) has no etcd user; auth is on.
		expect((await etcdctlAs(tb, 'etcd/peer', ['get', '/registry/namespaces/default'])).exitCode).not.toBe(0);
		expect((await etcdctlAs(tb, 'etcd/healthcheck-client', ['--user', 'root:wrong-password', 'get', '/registry/namespaces/default'])).exitCode).not.toBe(0);
		// The apiserver's serving certificate is signed by the Kubernetes CA, not etcd's.
		expect((await etcdctlAs(tb, 'apiserver', ['get', '/registry/namespaces/default'])).exitCode).not.toBe(0);
		const report = await monitorOnce(tb);
		const auth = signal(report, 'etcd-auth');
		expect(auth.status).toBe('alert');
		const kinds = report.authEvents.map(event => `${event.kind} ${event.user ?? ''} ${event.client ?? ''}`.trim());
		expect(kinds.some(text => /^no-user-for-cert cp-1/.test(text)), kinds.join('\n')).toBe(true);
		expect(kinds.some(text => /^bad-password root/.test(text)), kinds.join('\n')).toBe(true);
		expect(report.authEvents.find(event => event.kind === 'tls-rejected')?.client, kinds.join('\n')).toMatch(/^127\.0\.0\.1:\d+$/);
		// Ours are marked by a privileged source port: an ordinary loopback client is still counted.
		expect(Number(/:(\d+)$/.exec(report.authEvents.find(event => event.kind === 'tls-rejected')!.client!)![1])).toBeGreaterThan(1023);
		// A second run reads only what etcd logged since: the same failures are not counted twice.
		const again = await monitorOnce(tb);
		expect(signal(again, 'etcd-auth').status).toBe('ok');
	});

	it('500 secret lists raise the read rate above its threshold', async () => {
		expect(await tb.isReady(), (await tb.podLog('kube-apiserver')).slice(-4000)).toBe(true);
		await monitorOnce(tb); // the previous sample the rate is measured from
		// One process, one kept-alive connection, 500 LIST requests one after another.
		const script = `
			const https = require('node:https'); const fs = require('node:fs');
			const agent = new https.Agent({keepAlive: true, maxSockets: 1, ca: fs.readFileSync('${PKI}/ca.crt'), cert: fs.readFileSync('${PKI}/apiserver-kubelet-client.crt'), key: fs.readFileSync('${PKI}/apiserver-kubelet-client.key')});
			const get = () => new Promise((resolve, reject) => https.get({host: '127.0.0.1', port: 6443, path: '/api/v1/namespaces/seed-0/secrets?limit=5', agent}, res => { res.resume(); res.on('end', () => resolve(res.statusCode)); }).on('error', reject));
			(async () => { let ok = 0; for (let i = 0; i < 500; i++) if ((await get()) === 200) ok++; console.log(ok); agent.destroy(); })();`;
		const lists = await tb.exec([process.execPath, '-e', script], {reject: false});
		expect(String(lists.stdout).trim(), String(lists.stderr)).toBe('500');
		const report = await monitorOnce(tb);
		const reads = signal(report, 'secret-reads');
		expect(reads.status, JSON.stringify(reads)).toBe('alert');
		expect(report.secretReadRates!['LIST']).toBeGreaterThan(report.secretReadThreshold);
	});

	it('the textfile passes promtool check metrics and carries the alerts', async () => {
		const run = await cli(tb, ['monitor', '--textfile', '/var/lib/node-exporter']);
		expect(run.exitCode, run.stderr).toBe(0);
		const text = await tb.readFile('/var/lib/node-exporter/etcd-harden.prom', 'utf8');
		const check = spawnSync('promtool', ['check', 'metrics'], {input: text, encoding: 'utf8'});
		expect(check.error).toBeUndefined();
		expect(`${check.stdout}${check.stderr}`).toBe('');
		expect(check.status).toBe(0);
		expect(text).toMatch(/^etcd_harden_apiserver_decryption_errors \d+$/m);
		expect(text).toMatch(/^etcd_harden_secret_requests_total\{verb="LIST"\} [1-9]\d{2,}$/m);
		expect(text).toMatch(/^etcd_harden_etcd_auth_failures_total\{client="",kind="no-user-for-cert",user="cp-1"\} [1-9]/m);
		expect(text).toMatch(/^etcd_harden_certificate_expiry_timestamp_seconds\{certificate="etcd serving certificate",path="\/etc\/kubernetes\/pki\/etcd\/server.crt"\} \d+/m);
	});
	it("a value corrupted in etcd under a k8s:enc: prefix shows as a decryption error in kube-apiserver's metrics", async () => {
		const config = await tb.readFile('/etc/kubernetes/enc/encryption-config.yaml', 'utf8');
		const provider = /-\s*(secretbox|aesgcm|aescbc):\s*\n\s*keys:\s*\n\s*-\s*name:\s*(\S+)/.exec(config);
		expect(provider, config.replace(/secret: .*/g, 'secret: <redacted>')).not.toBeNull();
		const prefix = `k8s:enc:${provider![1]}:v1:${provider![2]}:`;
		const put = await tb.exec(['sh', '-c', `printf '%s' "$1" | ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=${PKI}/etcd/ca.crt --cert=${PKI}/etcd/healthcheck-client.crt --key=${PKI}/etcd/healthcheck-client.key put /registry/secrets/default/corrupted`, 'sh', `${prefix}${'garbage-not-a-sealed-box'.repeat(4)}`], {reject: false});
		expect(put.exitCode, String(put.stderr)).toBe(0);
		const read = await tb.kubectl(['get', 'secret', 'corrupted', '-n', 'default'], {reject: false});
		expect(read.exitCode).not.toBe(0);
		const report = await monitorOnce(tb);
		const decrypt = signal(report, 'decryption-errors');
		expect(decrypt.status).toBe('alert');
		expect(decrypt.value).toMatch(/failed to decrypt \(apiserver_storage_transformation_operations_total/);
		expect(decrypt.details!.join('\n')).toContain(`prefix k8s:enc:${provider![1]}:v1:`);
		const starts = await tb.podStarts('kube-apiserver');
		// The poisoned value goes again, so the apiserver's secret cache can relist.
		const del = await etcdctlAs(tb, 'etcd/healthcheck-client', ['del', '/registry/secrets/default/corrupted']);
		expect(del.exitCode, del.stderr).toBe(0);
		await tb.waitForReady(120_000);
		if ((await tb.podStarts('kube-apiserver')) !== starts) process.stderr.write(`kube-apiserver restarted after the corrupted read:\n${(await tb.podLog('kube-apiserver')).slice(-3000)}\n`);
	});
});

// A dozen roles and bindings: an aggregated ClusterRole (its rules written as
// kube-controller-manager's aggregation controller would, since the testbed runs none), a
// wildcard rule, resourceNames, a Role in a namespace, groups and service accounts.
const SEED = `
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: audit-secret-list, labels: {audit.example.com/aggregate-to-reader: "true"}}
rules: [{apiGroups: [""], resources: [secrets], verbs: [list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: audit-secret-watch, labels: {audit.example.com/aggregate-to-reader: "true"}}
rules: [{apiGroups: [""], resources: [secrets], verbs: [watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: audit-reader}
aggregationRule: {clusterRoleSelectors: [{matchLabels: {audit.example.com/aggregate-to-reader: "true"}}]}
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: audit-wildcard}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: audit-named}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, list], resourceNames: [only-this-one]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: audit-pods}
rules: [{apiGroups: [""], resources: [pods, configmaps], verbs: ["*"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: audit-team-secrets, namespace: team-a}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: audit-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: audit-reader}
subjects: [{kind: ServiceAccount, name: backup, namespace: team-a}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: audit-wildcard}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: audit-wildcard}
subjects: [{kind: Group, name: auditors, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: audit-ops-admin}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: User, name: ops, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: audit-named}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: audit-named}
subjects: [{kind: User, name: narrow, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: audit-team, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: audit-team-secrets}
subjects: [{kind: ServiceAccount, name: app, namespace: team-a}, {kind: User, name: dev, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: audit-everyone, namespace: team-b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: audit-reader}
subjects: [{kind: Group, name: system:authenticated, apiGroup: rbac.authorization.k8s.io}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: audit-pods, namespace: team-b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: audit-pods}
subjects: [{kind: User, name: dev, apiGroup: rbac.authorization.k8s.io}]
`;

type RawList = {items: Array<{metadata: {name: string; namespace?: string; labels?: Record<string, string>}; rules?: Role['rules'] | null; aggregationRule?: Role['aggregationRule']; roleRef?: Binding['roleRef']; subjects?: Subject[] | null}>};

async function readRbac(): Promise<RbacObjects> {
	const get = async (resource: string): Promise<RawList> => JSON.parse(String((await tb.kubectl(['get', resource, '-A', '-o', 'json'])).stdout)) as RawList;
	const role = (kind: Role['kind']) => (item: RawList['items'][number]): Role => ({kind, name: item.metadata.name, namespace: item.metadata.namespace, labels: item.metadata.labels, rules: item.rules ?? [], aggregationRule: item.aggregationRule});
	const binding = (kind: Binding['kind']) => (item: RawList['items'][number]): Binding => ({kind, name: item.metadata.name, namespace: item.metadata.namespace, roleRef: item.roleRef!, subjects: item.subjects ?? []});
	return {
		roles: (await get('roles')).items.map(role('Role')),
		clusterRoles: (await get('clusterroles')).items.map(role('ClusterRole')),
		roleBindings: (await get('rolebindings')).items.map(binding('RoleBinding')),
		clusterRoleBindings: (await get('clusterrolebindings')).items.map(binding('ClusterRoleBinding')),
	};
}

type Question = {subject: Subject; verb: 'get' | 'list' | 'watch'; namespace?: string};

/** The apiserver's own authorizer: one SubjectAccessReview per question, all created by one kubectl call. */
async function authorizer(questions: readonly Question[]): Promise<boolean[]> {
	const items = questions.map(({subject, verb, namespace}) => {
		const identity = identityOf(subject);
		return {
			apiVersion: 'authorization.k8s.io/v1',
			kind: 'SubjectAccessReview',
			spec: {user: identity.user, groups: identity.groups, resourceAttributes: {verb, resource: 'secrets', ...(namespace === undefined ? {} : {namespace})}},
		};
	});
	// kubectl prints each created review on its own: one line of status.allowed per question, in order.
	const result = await tb.kubectl(['create', '-f', '-', '-o', 'jsonpath={.status.allowed}{"\\n"}'], {input: JSON.stringify({apiVersion: 'v1', kind: 'List', items}), reject: false});
	expect(result.exitCode, String(result.stderr)).toBe(0);
	const answers = String(result.stdout).trim().split('\n');
	expect(answers).toHaveLength(questions.length);
	for (const answer of answers) expect(['true', 'false']).toContain(answer);
	return answers.map(answer => answer === 'true');
}

async function canI(verb: string, subject: Subject, namespace: string | undefined): Promise<boolean> {
	const identity = identityOf(subject);
	const as = subject.kind === 'Group' ? ['--as', identity.user, '--as-group', subject.name] : ['--as', identity.user];
	const result = await tb.kubectl(['auth', 'can-i', verb, 'secrets', ...as, ...(namespace === undefined ? ['-A'] : ['-n', namespace])], {reject: false});
	const answer = String(result.stdout).trim();
	expect(['yes', 'no'], String(result.stderr)).toContain(answer);
	return answer === 'yes';
}

describe('who can read Secrets: the RBAC audit against the apiserver\'s authorizer', () => {
	it('agrees with the authorizer (SubjectAccessReview) for every subject of every binding, for get, list and watch, cluster-wide and per namespace', async () => {
		const apply = await tb.kubectl(['apply', '-f', '-'], {input: SEED, reject: false});
		expect(apply.exitCode, String(apply.stderr)).toBe(0);
		// What kube-controller-manager's clusterrole-aggregation controller would write (the testbed runs none).
		const aggregated = await tb.kubectl(['patch', 'clusterrole', 'audit-reader', '--type=merge', '-p', JSON.stringify({rules: [{apiGroups: [''], resources: ['secrets'], verbs: ['list']}, {apiGroups: [''], resources: ['secrets'], verbs: ['watch']}]})], {reject: false});
		expect(aggregated.exitCode, String(aggregated.stderr)).toBe(0);

		const objects = await readRbac();
		const subjects = new Map<string, Subject>();
		for (const binding of [...objects.clusterRoleBindings, ...objects.roleBindings]) {
			for (const subject of binding.subjects) {
				const full = subject.kind === 'ServiceAccount' ? {...subject, namespace: subject.namespace ?? binding.namespace} : {kind: subject.kind, name: subject.name};
				subjects.set(JSON.stringify(full), full);
			}
		}
		// Plus someone with no binding at all (system:authenticated reaches them in team-b).
		subjects.set('nobody', {kind: 'User', name: 'nobody-in-particular'});
		expect(subjects.size).toBeGreaterThanOrEqual(12);
		const questions: Question[] = [];
		for (const subject of subjects.values()) {
			if (subject.kind === 'Group' && subject.name.startsWith('system:') && subject.name !== 'system:masters' && subject.name !== 'system:authenticated') continue;
			for (const verb of ['get', 'list', 'watch'] as const) for (const namespace of [undefined, 'team-a', 'team-b', 'default']) questions.push({subject, verb, ...(namespace ? {namespace} : {})});
		}
		const answers = await authorizer(questions);
		const mismatches = questions
			.map((question, index) => ({question, ours: canReadSecrets(objects, identityOf(question.subject), question.verb, question.namespace), theirs: answers[index]}))
			.filter(entry => entry.ours !== entry.theirs)
			.map(({question, ours, theirs}) => `${question.subject.kind} ${question.subject.name} ${question.verb} ${question.namespace ?? '-A'}: audit ${ours}, authorizer ${theirs}`);
		expect(mismatches).toEqual([]);
		const checked = questions.length;
		// kubectl auth can-i (impersonation) agrees on a sample: a service account, a group, a user.
		for (const [index, subject] of [{kind: 'ServiceAccount', name: 'backup', namespace: 'team-a'}, {kind: 'Group', name: 'auditors'}, {kind: 'User', name: 'dev'}].entries() as IterableIterator<[number, Subject]>) {
			const namespace = index === 2 ? 'team-a' : undefined;
			for (const verb of ['get', 'list'] as const) expect(await canI(verb, subject, namespace), `${subject.name} ${verb}`).toBe(canReadSecrets(objects, identityOf(subject), verb, namespace));
		}
		expect(checked).toBeGreaterThan(100);
	});

	it('status lists the readers with their paths (aggregation resolved), fails 5.1.2 for a broad group, and writes a proposal it never applies', async () => {
		const before = String((await tb.kubectl(['get', 'clusterroles,clusterrolebindings,rolebindings', '-A', '-o', 'name'])).stdout);
		const run = await cli(tb, ['status', '--only', 'rbac', '--json', '--rbac-proposal', '/tmp/rbac-proposal.yaml']);
		expect(run.exitCode, run.stderr).toBe(1);
		const rows = JSON.parse(run.stdout) as Array<{id: string; status: string; actual: string}>;
		expect(rows.map(row => [row.id, row.status])).toEqual([
			['5.1.1', 'WARN'],
			['5.1.2', 'FAIL'],
			['5.1.3', 'WARN'],
		]);
		const secrets = rows[1]!.actual;
		expect(secrets).toContain('ServiceAccount team-a/backup can list secrets in all namespaces: ClusterRoleBinding audit-reader -> ClusterRole audit-reader (aggregated from ClusterRole audit-secret-list)');
		expect(secrets).toContain('Group system:authenticated can list secrets in namespace team-b');
		expect(secrets).toContain('Group auditors can get secrets in all namespaces');
		expect(secrets).toContain('User dev can get/watch secrets in namespace team-a');
		expect(secrets).not.toContain('User narrow');
		expect(rows[0]!.actual).toContain('User ops (ClusterRoleBinding audit-ops-admin)');
		expect(rows[2]!.actual).toContain('ClusterRole audit-wildcard');
		const proposal = await tb.readFile('/tmp/rbac-proposal.yaml', 'utf8');
		expect(proposal).toContain('NOT APPLIED');
		const dry = await tb.kubectl(['apply', '--dry-run=server', '-f', '-'], {input: proposal.replaceAll('namespace: NAMESPACE', 'namespace: team-a'), reject: false});
		expect(dry.exitCode, String(dry.stderr)).toBe(0);
		expect(String((await tb.kubectl(['get', 'clusterroles,clusterrolebindings,rolebindings', '-A', '-o', 'name'])).stdout)).toBe(before);
	});
});

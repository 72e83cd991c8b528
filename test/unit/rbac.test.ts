// The RBAC audit's pure resolution: wildcards, resourceNames, aggregated ClusterRoles,
// service account subjects and groups, the CIS 5.1.x checks and the proposal.
import {parseAllDocuments} from 'yaml';
import {describe, expect, test} from 'vitest';
import {canReadSecrets, effectiveRules, identityOf, rbacChecks, rbacFindings, rbacProposal, ruleGrants, type RbacObjects} from '../../source/kube/rbac.js';

const objects: RbacObjects = {
	clusterRoles: [
		{kind: 'ClusterRole', name: 'cluster-admin', rules: [{apiGroups: ['*'], resources: ['*'], verbs: ['*']}]},
		{kind: 'ClusterRole', name: 'secret-lister', labels: {'example.com/aggregate-to-reader': 'true'}, rules: [{apiGroups: [''], resources: ['secrets'], verbs: ['list']}]},
		{kind: 'ClusterRole', name: 'reader', aggregationRule: {clusterRoleSelectors: [{matchLabels: {'example.com/aggregate-to-reader': 'true'}}]}, rules: []},
		{kind: 'ClusterRole', name: 'everything', rules: [{apiGroups: ['*'], resources: ['*'], verbs: ['get']}]},
		{kind: 'ClusterRole', name: 'named-only', rules: [{apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list'], resourceNames: ['one']}]},
		{kind: 'ClusterRole', name: 'pods', rules: [{apiGroups: [''], resources: ['pods', 'secrets/status'], verbs: ['*']}]},
	],
	roles: [{kind: 'Role', name: 'watch-secrets', namespace: 'team-a', rules: [{apiGroups: [''], resources: ['secrets'], verbs: ['watch', 'get']}]}],
	clusterRoleBindings: [
		{kind: 'ClusterRoleBinding', name: 'cluster-admin', roleRef: {kind: 'ClusterRole', name: 'cluster-admin'}, subjects: [{kind: 'Group', name: 'system:masters'}]},
		{kind: 'ClusterRoleBinding', name: 'ops-admin', roleRef: {kind: 'ClusterRole', name: 'cluster-admin'}, subjects: [{kind: 'User', name: 'ops'}]},
		{kind: 'ClusterRoleBinding', name: 'reader', roleRef: {kind: 'ClusterRole', name: 'reader'}, subjects: [{kind: 'ServiceAccount', name: 'backup', namespace: 'tools'}]},
		{kind: 'ClusterRoleBinding', name: 'get-all', roleRef: {kind: 'ClusterRole', name: 'everything'}, subjects: [{kind: 'Group', name: 'auditors'}]},
		{kind: 'ClusterRoleBinding', name: 'named', roleRef: {kind: 'ClusterRole', name: 'named-only'}, subjects: [{kind: 'User', name: 'narrow'}]},
	],
	roleBindings: [
		{kind: 'RoleBinding', name: 'watchers', namespace: 'team-a', roleRef: {kind: 'Role', name: 'watch-secrets'}, subjects: [{kind: 'ServiceAccount', name: 'app'}]},
		{kind: 'RoleBinding', name: 'everyone', namespace: 'team-b', roleRef: {kind: 'ClusterRole', name: 'reader'}, subjects: [{kind: 'Group', name: 'system:authenticated'}]},
	],
};

describe('RBAC resolution', () => {
	test('rule matching: wildcards, core group, subresources and resourceNames', () => {
		expect(ruleGrants({apiGroups: ['*'], resources: ['*'], verbs: ['*']}, 'list')).toBe(true);
		expect(ruleGrants({apiGroups: ['apps'], resources: ['*'], verbs: ['*']}, 'list')).toBe(false);
		expect(ruleGrants({apiGroups: [''], resources: ['secrets/status'], verbs: ['*']}, 'get')).toBe(false);
		expect(ruleGrants({apiGroups: [''], resources: ['secrets'], verbs: ['get'], resourceNames: ['x']}, 'get')).toBe(false);
		expect(ruleGrants({nonResourceURLs: ['/metrics'], verbs: ['get']}, 'get')).toBe(false);
	});

	test('an aggregated ClusterRole has the rules of the roles its selectors match, with where they came from', () => {
		const reader = objects.clusterRoles.find(role => role.name === 'reader')!;
		expect(effectiveRules(reader, objects.clusterRoles)).toEqual([{rule: {apiGroups: [''], resources: ['secrets'], verbs: ['list']}, via: 'ClusterRole secret-lister'}]);
		// matchExpressions, and a cycle between two aggregated roles, terminate.
		const a = {kind: 'ClusterRole' as const, name: 'a', labels: {x: '1'}, rules: [], aggregationRule: {clusterRoleSelectors: [{matchExpressions: [{key: 'y', operator: 'Exists'}]}]}};
		const b = {kind: 'ClusterRole' as const, name: 'b', labels: {y: '1'}, rules: [{apiGroups: [''], resources: ['secrets'], verbs: ['get']}], aggregationRule: {clusterRoleSelectors: [{matchExpressions: [{key: 'x', operator: 'In', values: ['1']}]}]}};
		expect(effectiveRules(a, [a, b]).map(rule => rule.via)).toEqual(['ClusterRole b']);
	});

	test('what the authorizer answers, per identity, verb and namespace', () => {
		const ops = identityOf({kind: 'User', name: 'ops'});
		const backup = identityOf({kind: 'ServiceAccount', name: 'backup', namespace: 'tools'});
		const app = identityOf({kind: 'ServiceAccount', name: 'app', namespace: 'team-a'});
		const anyone = identityOf({kind: 'User', name: 'random'});
		const auditor = identityOf({kind: 'Group', name: 'auditors'});
		expect(canReadSecrets(objects, ops, 'list')).toBe(true);
		expect(canReadSecrets(objects, backup, 'list')).toBe(true);
		expect(canReadSecrets(objects, backup, 'get')).toBe(false);
		expect(canReadSecrets(objects, app, 'watch', 'team-a')).toBe(true);
		expect(canReadSecrets(objects, app, 'watch', 'team-b')).toBe(false); // team-b's reader grants list only
		expect(canReadSecrets(objects, app, 'list', 'team-b')).toBe(true);
		expect(canReadSecrets(objects, app, 'list')).toBe(false);
		expect(canReadSecrets(objects, anyone, 'list', 'team-b')).toBe(true);
		expect(canReadSecrets(objects, anyone, 'list', 'team-c')).toBe(false);
		expect(canReadSecrets(objects, auditor, 'get')).toBe(true);
		expect(canReadSecrets(objects, identityOf({kind: 'User', name: 'narrow'}), 'get')).toBe(false);
	});

	test('findings name the path binding -> role -> rule and mark the cluster\'s own grants', () => {
		const findings = rbacFindings(objects);
		expect(findings.find(finding => finding.subject === 'ServiceAccount tools/backup')).toMatchObject({
			scope: 'all namespaces',
			verbs: ['list'],
			path: 'ClusterRoleBinding reader -> ClusterRole reader (aggregated from ClusterRole secret-lister) -> rule {apiGroups: [""], resources: [secrets], verbs: [list]}',
			system: false,
		});
		expect(findings.find(finding => finding.subject === 'Group system:masters')!.system).toBe(true);
		expect(findings.find(finding => finding.subject === 'ServiceAccount team-a/app')).toMatchObject({scope: 'namespace team-a', verbs: ['get', 'watch']});
	});

	test('CIS 5.1.1-5.1.3: extra cluster-admins warn, a broad group reading secrets fails, wildcards warn', () => {
		const checks = rbacChecks(objects, '/tmp/proposal.yaml');
		expect(checks.map(check => [check.id, check.status])).toEqual([
			['5.1.1', 'warn'],
			['5.1.2', 'fail'],
			['5.1.3', 'warn'],
		]);
		expect(checks[0]!.actual).toContain('User ops (ClusterRoleBinding ops-admin)');
		expect(checks[1]!.actual).toContain('Group system:authenticated can list secrets in namespace team-b');
		expect(checks[1]!.remediation).toContain('/tmp/proposal.yaml');
		expect(checks[2]!.actual).toBe('wildcards in: ClusterRole everything, ClusterRole pods');
		const clean: RbacObjects = {...objects, clusterRoleBindings: objects.clusterRoleBindings.slice(0, 1), roleBindings: [], clusterRoles: objects.clusterRoles.slice(0, 3), roles: []};
		expect(rbacChecks(clean).map(check => check.status)).toEqual(['pass', 'pass', 'pass']);
	});

	test('the proposal is valid YAML: a get-only ClusterRole and a binding per reader, with the grant it replaces', () => {
		const documents = parseAllDocuments(rbacProposal(objects)).map(document => document.toJS() as {kind: string; metadata: {name: string; namespace?: string}; rules?: unknown; subjects?: Array<{name: string}>});
		expect(documents[0]).toMatchObject({kind: 'ClusterRole', metadata: {name: 'etcd-harden:secret-reader'}, rules: [{apiGroups: [''], resources: ['secrets'], verbs: ['get']}]});
		const backup = documents.find(document => document.subjects?.[0]?.name === 'backup')!;
		expect(backup).toMatchObject({kind: 'RoleBinding', metadata: {namespace: 'tools'}});
		const ops = documents.find(document => document.subjects?.[0]?.name === 'ops')!;
		expect(ops.metadata.namespace).toBe('NAMESPACE');
		expect(documents.some(document => document.subjects?.[0]?.name === 'system:masters')).toBe(false);
		expect(rbacProposal(objects)).toContain('# replaces: ClusterRoleBinding reader -> ClusterRole reader (aggregated from ClusterRole secret-lister)');
	});
});

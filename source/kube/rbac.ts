/**
 * Who can read Secrets through Kubernetes RBAC: the authorizer's rules evaluated over the
 * cluster's Roles, ClusterRoles and bindings (aggregated ClusterRoles resolved from their
 * selectors, wildcards honoured), the paths that grant access (binding -> role -> rule), the
 * CIS Kubernetes Benchmark's RBAC checks 5.1.1-5.1.3, and a least-privilege proposal. Pure:
 * objects in, findings out. Reading them through the API is discovery's (source/discover/rbac.ts).
 * Nothing here changes RBAC.
 */
import {stringify} from 'yaml';
import type {Check} from '../engine/contract.js';

export type PolicyRule = {apiGroups?: string[]; resources?: string[]; verbs: string[]; resourceNames?: string[]; nonResourceURLs?: string[]};
export type LabelSelector = {matchLabels?: Record<string, string>; matchExpressions?: Array<{key: string; operator: string; values?: string[]}>};
export type Role = {kind: 'Role' | 'ClusterRole'; name: string; namespace?: string; labels?: Record<string, string>; rules: PolicyRule[]; aggregationRule?: {clusterRoleSelectors?: LabelSelector[]}};
export type Subject = {kind: 'User' | 'Group' | 'ServiceAccount'; name: string; namespace?: string};
export type Binding = {kind: 'RoleBinding' | 'ClusterRoleBinding'; name: string; namespace?: string; roleRef: {kind: 'Role' | 'ClusterRole'; name: string}; subjects: Subject[]};
export type RbacObjects = {roles: Role[]; clusterRoles: Role[]; roleBindings: Binding[]; clusterRoleBindings: Binding[]};

/** Who is asking: a user name and its groups, as the authenticator would give them. */
export type Identity = {user: string; groups: string[]};

export const SECRET_READ_VERBS = ['get', 'list', 'watch'] as const;
export type ReadVerb = (typeof SECRET_READ_VERBS)[number];

/** The identity a subject authenticates as (service accounts get their groups; everyone is system:authenticated). */
export function identityOf(subject: Subject): Identity {
	if (subject.kind === 'ServiceAccount') {
		const namespace = subject.namespace ?? 'default';
		return {user: `system:serviceaccount:${namespace}:${subject.name}`, groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`, 'system:authenticated']};
	}
	if (subject.kind === 'Group') return {user: `etcd-harden:member-of:${subject.name}`, groups: [subject.name, 'system:authenticated']};
	return {user: subject.name, groups: ['system:authenticated']};
}

export function subjectText(subject: Subject): string {
	return subject.kind === 'ServiceAccount' ? `ServiceAccount ${subject.namespace ?? 'default'}/${subject.name}` : `${subject.kind} ${subject.name}`;
}

function selectorMatches(selector: LabelSelector, labels: Record<string, string>): boolean {
	for (const [key, value] of Object.entries(selector.matchLabels ?? {})) if (labels[key] !== value) return false;
	for (const expression of selector.matchExpressions ?? []) {
		const has = Object.hasOwn(labels, expression.key);
		const value = labels[expression.key];
		switch (expression.operator) {
			case 'In':
				if (!has || !(expression.values ?? []).includes(value!)) return false;
				break;
			case 'NotIn':
				if (has && (expression.values ?? []).includes(value!)) return false;
				break;
			case 'Exists':
				if (!has) return false;
				break;
			case 'DoesNotExist':
				if (has) return false;
				break;
			default:
				return false;
		}
	}
	// An empty selector selects nothing in an aggregation rule.
	return Object.keys(selector.matchLabels ?? {}).length + (selector.matchExpressions ?? []).length > 0;
}

export type ResolvedRule = {rule: PolicyRule; via?: string};

/**
 * A ClusterRole's effective rules: its own, plus (for an aggregated one) the rules of every
 * ClusterRole its selectors match, recursively, as kube-controller-manager's
 * clusterrole-aggregation controller writes them. `via` names the role a rule came from.
 */
export function effectiveRules(role: Role, clusterRoles: readonly Role[], seen = new Set<string>()): ResolvedRule[] {
	const own = role.rules.map(rule => ({rule}));
	const selectors = role.aggregationRule?.clusterRoleSelectors;
	if (!selectors || selectors.length === 0) return own;
	seen.add(role.name);
	const aggregated: ResolvedRule[] = [];
	for (const other of clusterRoles) {
		if (other.name === role.name || seen.has(other.name)) continue;
		if (!selectors.some(selector => selectorMatches(selector, other.labels ?? {}))) continue;
		for (const resolved of effectiveRules(other, clusterRoles, new Set(seen))) aggregated.push({rule: resolved.rule, via: resolved.via ?? `ClusterRole ${other.name}`});
	}
	return [...own, ...aggregated];
}

/** Whether a rule grants `verb` on the whole secrets collection (not only named secrets). */
export function ruleGrants(rule: PolicyRule, verb: string, resource = 'secrets', group = ''): boolean {
	if (rule.nonResourceURLs && !rule.resources) return false;
	if (!rule.verbs.includes('*') && !rule.verbs.includes(verb)) return false;
	const groups = rule.apiGroups ?? [];
	if (!groups.includes('*') && !groups.includes(group)) return false;
	const resources = rule.resources ?? [];
	if (!resources.includes('*') && !resources.includes(resource)) return false;
	return (rule.resourceNames ?? []).length === 0;
}

function subjectMatches(subject: Subject, identity: Identity, bindingNamespace: string | undefined): boolean {
	switch (subject.kind) {
		case 'User':
			return subject.name === identity.user;
		case 'Group':
			return identity.groups.includes(subject.name);
		case 'ServiceAccount':
			return identity.user === `system:serviceaccount:${subject.namespace ?? bindingNamespace ?? 'default'}:${subject.name}`;
	}
}

function roleFor(objects: RbacObjects, binding: Binding): Role | undefined {
	if (binding.roleRef.kind === 'ClusterRole') return objects.clusterRoles.find(role => role.name === binding.roleRef.name);
	return objects.roles.find(role => role.name === binding.roleRef.name && role.namespace === binding.namespace);
}

export type Grant = {
	subject: Subject;
	/** Undefined: every namespace (a ClusterRoleBinding). */
	namespace?: string;
	verbs: ReadVerb[];
	/** binding -> role (-> aggregated from) -> rule */
	path: string;
	binding: Binding;
	role: Role;
};

function ruleText(rule: PolicyRule): string {
	const list = (values: string[] | undefined) => `[${(values ?? []).map(value => (value === '' ? '""' : value)).join(', ')}]`;
	return `rule {apiGroups: ${list(rule.apiGroups)}, resources: ${list(rule.resources)}, verbs: ${list(rule.verbs)}}`;
}

/** Every (binding subject, rule) that lets someone get, list or watch Secrets, with its path. */
export function secretGrants(objects: RbacObjects): Grant[] {
	const grants: Grant[] = [];
	for (const binding of [...objects.clusterRoleBindings, ...objects.roleBindings]) {
		const role = roleFor(objects, binding);
		if (!role) continue;
		const rules: ResolvedRule[] = role.kind === 'ClusterRole' ? effectiveRules(role, objects.clusterRoles) : role.rules.map(rule => ({rule}));
		for (const {rule, via} of rules) {
			const verbs = SECRET_READ_VERBS.filter(verb => ruleGrants(rule, verb));
			if (verbs.length === 0) continue;
			const where = binding.namespace ? `${binding.kind} ${binding.namespace}/${binding.name}` : `${binding.kind} ${binding.name}`;
			const path = `${where} -> ${role.kind} ${role.namespace ? `${role.namespace}/` : ''}${role.name}${via ? ` (aggregated from ${via})` : ''} -> ${ruleText(rule)}`;
			for (const subject of binding.subjects) {
				grants.push({subject: subject.kind === 'ServiceAccount' && !subject.namespace ? {...subject, namespace: binding.namespace ?? 'default'} : subject, ...(binding.kind === 'RoleBinding' ? {namespace: binding.namespace} : {}), verbs, path, binding, role});
			}
		}
	}
	return grants;
}

/**
 * What the RBAC authorizer answers for "can IDENTITY VERB secrets" in a namespace, or across
 * all namespaces when `namespace` is undefined (kubectl auth can-i VERB secrets -A).
 */
export function canReadSecrets(objects: RbacObjects, identity: Identity, verb: ReadVerb, namespace?: string): boolean {
	for (const grant of secretGrants(objects)) {
		if (!grant.verbs.includes(verb)) continue;
		if (!subjectMatches(grant.subject, identity, grant.binding.namespace)) continue;
		if (grant.namespace === undefined || grant.namespace === namespace) return true;
	}
	return false;
}

/** Subjects and bindings the cluster itself sets up (kubeadm, the apiserver's bootstrap policy). */
export function isSystemGrant(grant: Pick<Grant, 'subject' | 'binding'>): boolean {
	if (grant.subject.kind === 'Group' && grant.subject.name === 'system:masters') return true;
	if (/^(system:|kubeadm:)/.test(grant.binding.name) && (grant.subject.kind !== 'Group' || !BROAD_GROUPS.includes(grant.subject.name))) return true;
	return false;
}

/** Groups every user, every service account or anyone at all belongs to. */
export const BROAD_GROUPS = ['system:authenticated', 'system:unauthenticated', 'system:serviceaccounts'];

export type RbacFinding = {subject: string; scope: string; verbs: ReadVerb[]; path: string; system: boolean; risk: string};

function riskOf(grant: Grant): string {
	if (grant.subject.kind === 'Group' && (BROAD_GROUPS.includes(grant.subject.name) || grant.subject.name.startsWith('system:serviceaccounts:'))) {
		return `every member of ${grant.subject.name} can read ${grant.namespace ? `the Secrets of ${grant.namespace}` : 'every Secret'}: one leaked token or one compromised pod is enough`;
	}
	if (grant.verbs.includes('list') || grant.verbs.includes('watch')) {
		return `list/watch return the data of every Secret in ${grant.namespace ?? 'every namespace'}, service account tokens and TLS keys included${grant.subject.kind === 'ServiceAccount' ? `; any pod running as this service account can do the same` : ''}`;
	}
	return `can read any Secret by name in ${grant.namespace ?? 'every namespace'}`;
}

export function rbacFindings(objects: RbacObjects): RbacFinding[] {
	return secretGrants(objects).map(grant => ({
		subject: subjectText(grant.subject),
		scope: grant.namespace === undefined ? 'all namespaces' : `namespace ${grant.namespace}`,
		verbs: grant.verbs,
		path: grant.path,
		system: isSystemGrant(grant),
		risk: riskOf(grant),
	}));
}

const CIS_TITLES = {
	'5.1.1': 'Ensure that the cluster-admin role is only used where required',
	'5.1.2': 'Minimize access to secrets',
	'5.1.3': 'Minimize wildcard use in Roles and ClusterRoles',
} as const;

/** CIS Kubernetes Benchmark 5.1.1-5.1.3 (kube-bench's ids) over the cluster's RBAC objects. */
export function rbacChecks(objects: RbacObjects, proposalFile?: string): Check[] {
	const adminBindings = [...objects.clusterRoleBindings, ...objects.roleBindings].filter(binding => binding.roleRef.kind === 'ClusterRole' && binding.roleRef.name === 'cluster-admin');
	const adminSubjects = adminBindings.flatMap(binding =>
		binding.subjects
			.filter(subject => !(subject.kind === 'Group' && subject.name === 'system:masters') && !(subject.kind === 'Group' && subject.name === 'kubeadm:cluster-admins'))
			.map(subject => `${subjectText(subject)} (${binding.kind} ${binding.namespace ? `${binding.namespace}/` : ''}${binding.name})`),
	);
	const check511: Check = adminSubjects.length === 0
		? {id: '5.1.1', title: CIS_TITLES['5.1.1'], status: 'pass', actual: 'cluster-admin is bound only to group system:masters (and kubeadm:cluster-admins)'}
		: {id: '5.1.1', title: CIS_TITLES['5.1.1'], status: 'warn', actual: `cluster-admin is also bound to: ${adminSubjects.join('; ')}`, remediation: 'Bind each of these to a role with only the permissions it needs, then delete its cluster-admin binding (kubectl delete clusterrolebinding NAME).'};

	const findings = rbacFindings(objects).filter(finding => !finding.system);
	const broad = findings.filter(finding => BROAD_GROUPS.some(group => finding.subject === `Group ${group}`) || finding.subject.startsWith('Group system:serviceaccounts:'));
	const lines = findings.map(finding => `${finding.subject} can ${finding.verbs.join('/')} secrets in ${finding.scope}: ${finding.path}. Risk: ${finding.risk}`);
	const review = proposalFile ? ` A least-privilege proposal is in ${proposalFile} for review (nothing was applied).` : ' Run etcd-harden status --rbac-proposal FILE for a least-privilege proposal to review.';
	const check512: Check = findings.length === 0
		? {id: '5.1.2', title: CIS_TITLES['5.1.2'], status: 'pass', actual: 'only the cluster\'s own components (system:masters, system: and kubeadm: bindings) can get, list or watch Secrets'}
		: {id: '5.1.2', title: CIS_TITLES['5.1.2'], status: broad.length > 0 ? 'fail' : 'warn', actual: lines.join('\n'), remediation: `Grant get on the named Secrets a workload needs, in its own namespace, instead of list/watch or cluster-wide access.${review}`};

	const wildcardRoles = [...objects.clusterRoles, ...objects.roles]
		.filter(role => !/^(system:|kubeadm:)/.test(role.name) && !['cluster-admin', 'admin', 'edit', 'view'].includes(role.name))
		.filter(role => !role.aggregationRule)
		.filter(role => role.rules.some(rule => [...(rule.verbs ?? []), ...(rule.resources ?? []), ...(rule.apiGroups ?? [])].includes('*')))
		.map(role => `${role.kind} ${role.namespace ? `${role.namespace}/` : ''}${role.name}`);
	const check513: Check = wildcardRoles.length === 0
		? {id: '5.1.3', title: CIS_TITLES['5.1.3'], status: 'pass', actual: 'no wildcard (*) in the verbs, resources or apiGroups of any Role or ClusterRole outside the built-in ones'}
		: {id: '5.1.3', title: CIS_TITLES['5.1.3'], status: 'warn', actual: `wildcards in: ${wildcardRoles.join(', ')}`, remediation: 'Replace "*" with the verbs, resources and API groups each role needs: a wildcard also grants whatever is added to the API later, Secrets included.'};
	return [check511, check512, check513];
}

/**
 * A least-privilege proposal for review: one ClusterRole that may only `get` Secrets (like the
 * seed's etcd-reader, without list), and a RoleBinding per non-system subject in each namespace
 * where it reads Secrets today (cluster-wide readers get one per namespace they are found
 * to need, or a ClusterRoleBinding flagged for review). Comments name the grant it replaces.
 */
export function rbacProposal(objects: RbacObjects): string {
	const grants = secretGrants(objects).filter(grant => !isSystemGrant(grant));
	const documents: string[] = [];
	const header = [
		'# Least-privilege proposal written by etcd-harden status (CIS 5.1.2). NOT APPLIED.',
		'# Review it, apply what fits (kubectl apply -f FILE), then remove the grants each binding',
		'# below replaces (named in its comment). A workload that lists Secrets to find one should',
		'# be given the name instead; resourceNames can narrow the role further.',
	];
	documents.push(
		stringify({
			apiVersion: 'rbac.authorization.k8s.io/v1',
			kind: 'ClusterRole',
			metadata: {name: 'etcd-harden:secret-reader', labels: {'app.kubernetes.io/managed-by': 'etcd-harden'}},
			rules: [{apiGroups: [''], resources: ['secrets'], verbs: ['get']}],
		}),
	);
	const seen = new Set<string>();
	for (const grant of grants) {
		const key = `${subjectText(grant.subject)}|${grant.namespace ?? '*'}`;
		if (seen.has(key)) continue;
		seen.add(key);
		const name = `etcd-harden:secret-reader:${grant.subject.kind.toLowerCase()}:${grant.subject.name}`.slice(0, 253);
		const subject = grant.subject.kind === 'ServiceAccount' ? {kind: 'ServiceAccount', name: grant.subject.name, namespace: grant.subject.namespace} : {kind: grant.subject.kind, name: grant.subject.name, apiGroup: 'rbac.authorization.k8s.io'};
		const comment = `# replaces: ${grant.path}\n# risk today: ${riskOf(grant)}\n`;
		if (grant.namespace !== undefined) {
			documents.push(comment + stringify({apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: {name, namespace: grant.namespace}, roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'etcd-harden:secret-reader'}, subjects: [subject]}));
			continue;
		}
		if (grant.subject.kind === 'ServiceAccount') {
			// A service account is a workload: its own namespace is where it needs its Secrets.
			documents.push(comment + stringify({apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: {name, namespace: grant.subject.namespace ?? 'default'}, roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'etcd-harden:secret-reader'}, subjects: [subject]}));
			continue;
		}
		documents.push(`${comment}# ${subjectText(grant.subject)} reads Secrets in every namespace today: bind it only where it needs them
# (replace NAMESPACE; kubectl refuses the placeholder, so nothing applies unreviewed):
${stringify({apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', metadata: {name, namespace: 'NAMESPACE'}, roleRef: {apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'etcd-harden:secret-reader'}, subjects: [subject]})}`);
	}
	return `${header.join('\n')}\n${documents.map(document => `---\n${document}`).join('')}`;
}

/**
 * The cluster's RBAC objects (Roles, ClusterRoles, RoleBindings, ClusterRoleBindings), read
 * through the API (GET, paginated; also under --dry-run), as plain data for source/kube/rbac.ts.
 */
import type {Host} from '../host/types.js';
import {KubeApi} from '../kube/api.js';
import {loadKubeconfig} from '../kube/kubeconfig.js';
import type {Binding, PolicyRule, RbacObjects, Role, Subject} from '../kube/rbac.js';

const BASE = '/apis/rbac.authorization.k8s.io/v1';

type Raw = {metadata: {name: string; namespace?: string; labels?: Record<string, string>}; rules?: PolicyRule[] | null; aggregationRule?: Role['aggregationRule']; roleRef?: Binding['roleRef']; subjects?: Subject[] | null};

async function listAll(api: KubeApi, resource: string): Promise<Raw[]> {
	const items: Raw[] = [];
	let token: string | undefined;
	do {
		const page = await api.list<Raw>(`${BASE}/${resource}`, {limit: 500, continue: token});
		items.push(...page.items);
		token = page.continue;
	} while (token);
	return items;
}

function role(kind: Role['kind'], raw: Raw): Role {
	return {
		kind,
		name: raw.metadata.name,
		...(raw.metadata.namespace ? {namespace: raw.metadata.namespace} : {}),
		...(raw.metadata.labels ? {labels: raw.metadata.labels} : {}),
		rules: raw.rules ?? [],
		...(raw.aggregationRule ? {aggregationRule: raw.aggregationRule} : {}),
	};
}

function binding(kind: Binding['kind'], raw: Raw): Binding {
	return {kind, name: raw.metadata.name, ...(raw.metadata.namespace ? {namespace: raw.metadata.namespace} : {}), roleRef: raw.roleRef!, subjects: raw.subjects ?? []};
}

export type RbacDiscovery = {objects?: RbacObjects; problem?: string};

export async function discoverRbac(host: Host, kubeconfig: string): Promise<RbacDiscovery> {
	try {
		const api = new KubeApi(host, await loadKubeconfig(host, kubeconfig), {retries: 1, timeoutMs: 20_000});
		const [roles, clusterRoles, roleBindings, clusterRoleBindings] = await Promise.all(['roles', 'clusterroles', 'rolebindings', 'clusterrolebindings'].map(resource => listAll(api, resource)));
		return {
			objects: {
				roles: roles!.map(raw => role('Role', raw)),
				clusterRoles: clusterRoles!.map(raw => role('ClusterRole', raw)),
				roleBindings: roleBindings!.map(raw => binding('RoleBinding', raw)),
				clusterRoleBindings: clusterRoleBindings!.map(raw => binding('ClusterRoleBinding', raw)),
			},
		};
	} catch (error) {
		return {problem: `cannot read RBAC objects with ${kubeconfig}: ${(error as Error).message.split('\n')[0]}`};
	}
}

/**
 * `status`: every hardening stage's read-only findings, the rotation reports, and (on the
 * node itself) who can read Secrets through Kubernetes RBAC (CIS 5.1.1-5.1.3), with the
 * Kubernetes version the report is numbered for (`--format kube-bench`). With a proposal
 * path, the least-privilege RBAC proposal is written there for review; RBAC is never changed.
 */
import {InputError} from '../engine/contract.js';
import type {Host} from '../host/types.js';
import {discoverRbac} from '../discover/rbac.js';
import {ADMIN_KUBECONFIG} from '../kube/defaults.js';
import {kubeBenchReport, type KubeBenchReport} from '../kube/kube-bench.js';
import {rbacChecks, rbacFindings, rbacProposal, type RbacFinding} from '../kube/rbac.js';
import {rotationStatus} from '../stages/rotate.js';
import {hardenStages, type StatusRow} from './harden.js';
import {nodeDiscovery, type NodeTarget} from './node.js';
import {selectStages, type StagePick} from './select.js';

export const RBAC_STATUS_ID = 'rbac';

export type StatusReport = {
	rows: StatusRow[];
	/** The Kubernetes version the node runs (the apiserver's /version, else its image tag). */
	kubernetesVersion?: string;
	/** Every subject that can get, list or watch Secrets (live only). */
	secretReaders?: RbacFinding[];
	/** Where the RBAC proposal was written. */
	proposal?: string;
};

export type StatusOptions = {
	/** Node path (or the operator's path; the CLI resolves it) for the least-privilege proposal. */
	rbacProposal?: string;
};

export async function statusReport(host: Host, pick: StagePick, target: NodeTarget, options: StatusOptions = {}): Promise<StatusReport> {
	const wantRbac = pick.only ? pick.only.includes(RBAC_STATUS_ID) : !(pick.skip ?? []).includes(RBAC_STATUS_ID);
	const stagePick: StagePick = {
		...(pick.only ? {only: pick.only.filter(id => id !== RBAC_STATUS_ID)} : {}),
		...(pick.skip ? {skip: pick.skip.filter(id => id !== RBAC_STATUS_ID)} : {}),
	};
	const onlyRbac = pick.only !== undefined && stagePick.only!.length === 0;
	const {selected} = selectStages(hardenStages, stagePick);
	const facts = await nodeDiscovery(target, true)(host);
	const rows: StatusRow[] = onlyRbac
		? []
		: [...selected.flatMap(stage => stage.status(facts).map(check => ({stage: stage.id, ...check}))), ...rotationStatus(facts).map(check => ({stage: 'rotation', ...check}))];
	const report: StatusReport = {rows, ...(facts.apiserver.version ? {kubernetesVersion: facts.apiserver.version} : {})};
	if (!wantRbac) return report;
	if (target.root !== undefined) {
		if (options.rbacProposal) throw new InputError('--rbac-proposal needs the live cluster: run etcd-harden status on the control-plane node itself (without --root).');
		rows.push({stage: RBAC_STATUS_ID, id: '5.1.2', title: 'Minimize access to secrets', status: 'warn', actual: 'not checked (no live cluster with --root)', remediation: 'Run etcd-harden status on the control-plane node itself (without --root).'});
		return report;
	}
	const rbac = await discoverRbac(host, facts.cluster?.kubeconfig ?? target.kubeconfig ?? ADMIN_KUBECONFIG);
	if (!rbac.objects) {
		rows.push({stage: RBAC_STATUS_ID, id: '5.1.2', title: 'Minimize access to secrets', status: 'warn', actual: `not checked: ${rbac.problem}`, remediation: 'Check the admin kubeconfig (--kubeconfig) and that kube-apiserver answers.'});
		return report;
	}
	if (options.rbacProposal) {
		await host.writeFileAtomic(options.rbacProposal, rbacProposal(rbac.objects), 0o600);
		report.proposal = options.rbacProposal;
	}
	rows.push(...rbacChecks(rbac.objects, report.proposal).map(check => ({stage: RBAC_STATUS_ID, ...check})));
	report.secretReaders = rbacFindings(rbac.objects);
	return report;
}

export function kubeBenchJson(report: StatusReport): KubeBenchReport {
	return kubeBenchReport(report.rows, report.kubernetesVersion);
}

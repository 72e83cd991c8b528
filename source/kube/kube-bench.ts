/**
 * `status --format kube-bench`: the findings in kube-bench's own JSON schema (its
 * OverallControls: Controls[].tests[].results[] and Totals), numbered by the CIS Kubernetes
 * Benchmark version kube-bench picks for the detected Kubernetes version, so the findings drop
 * into dashboards and pipelines built for kube-bench. Pure: checks in, the report out.
 *
 * Facts from kube-bench's cfg/config.yaml (version_mapping) and cfg/<benchmark>/*.yaml (ids),
 * read, not copied: the apiserver's etcd and encryption checks moved down by one from cis-1.9 on.
 */
import type {Check} from '../engine/contract.js';

/** What our checks are about, independent of numbering. */
type Concept = 'etcdCertfile' | 'etcdCafile' | 'encryptionConfig' | 'encryptionProviders';

/** Our check ids (see the etcd-tls and encryption-config stages) and what they mean. */
const CONCEPT_OF: Record<string, Concept> = {
	'1.2.24': 'etcdCertfile',
	'1.2.27': 'etcdCafile',
	'1.2.28': 'encryptionConfig',
	'secrets-provider': 'encryptionProviders',
};

const NUMBERING: Record<string, Record<Concept, string>> = {
	'cis-1.6': {etcdCertfile: '1.2.29', etcdCafile: '1.2.32', encryptionConfig: '1.2.33', encryptionProviders: '1.2.34'},
	'cis-1.20': {etcdCertfile: '1.2.28', etcdCafile: '1.2.31', encryptionConfig: '1.2.32', encryptionProviders: '1.2.33'},
	'cis-1.23': {etcdCertfile: '1.2.26', etcdCafile: '1.2.29', encryptionConfig: '1.2.30', encryptionProviders: '1.2.31'},
	'cis-1.24': {etcdCertfile: '1.2.25', etcdCafile: '1.2.28', encryptionConfig: '1.2.29', encryptionProviders: '1.2.30'},
	'cis-1.7': {etcdCertfile: '1.2.25', etcdCafile: '1.2.28', encryptionConfig: '1.2.29', encryptionProviders: '1.2.30'},
	'cis-1.8': {etcdCertfile: '1.2.24', etcdCafile: '1.2.27', encryptionConfig: '1.2.28', encryptionProviders: '1.2.29'},
	'cis-1.9': {etcdCertfile: '1.2.23', etcdCafile: '1.2.26', encryptionConfig: '1.2.27', encryptionProviders: '1.2.28'},
	'cis-1.10': {etcdCertfile: '1.2.23', etcdCafile: '1.2.26', encryptionConfig: '1.2.27', encryptionProviders: '1.2.28'},
	'cis-1.11': {etcdCertfile: '1.2.23', etcdCafile: '1.2.26', encryptionConfig: '1.2.27', encryptionProviders: '1.2.28'},
	'cis-1.12': {etcdCertfile: '1.2.23', etcdCafile: '1.2.26', encryptionConfig: '1.2.27', encryptionProviders: '1.2.28'},
};

const TEXT: Record<Concept, string> = {
	etcdCertfile: 'Ensure that the --etcd-certfile and --etcd-keyfile arguments are set as appropriate (Automated)',
	etcdCafile: 'Ensure that the --etcd-cafile argument is set as appropriate (Automated)',
	encryptionConfig: 'Ensure that the --encryption-provider-config argument is set as appropriate (Manual)',
	encryptionProviders: 'Ensure that encryption providers are appropriately configured (Manual)',
};

/** kube-bench's version_mapping: Kubernetes minor version -> benchmark. */
export function benchmarkFor(kubernetesVersion: string | undefined): string {
	const match = /^v?(\d+)\.(\d+)/.exec(kubernetesVersion ?? '');
	if (!match || match[1] !== '1') return 'cis-1.12';
	const minor = Number(match[2]);
	if (minor <= 18) return 'cis-1.6';
	if (minor <= 21) return 'cis-1.20';
	if (minor <= 23) return 'cis-1.23';
	if (minor === 24) return 'cis-1.24';
	if (minor === 25) return 'cis-1.7';
	if (minor === 26) return 'cis-1.8';
	if (minor === 27) return 'cis-1.9';
	if (minor === 28) return 'cis-1.10';
	if (minor <= 31) return 'cis-1.11';
	return 'cis-1.12';
}

/** The id of one of our checks in this benchmark (our own ids for checks outside CIS). */
export function benchmarkId(checkId: string, benchmark: string): string {
	const concept = CONCEPT_OF[checkId];
	return concept ? NUMBERING[benchmark]![concept] : checkId;
}

export type KubeBenchState = 'PASS' | 'FAIL' | 'WARN' | 'INFO';

export type KubeBenchResult = {
	test_number: string;
	test_desc: string;
	audit: string;
	AuditEnv: string;
	AuditConfig: string;
	type: string;
	remediation: string;
	test_info: string[];
	status: KubeBenchState;
	actual_value: string;
	scored: boolean;
	IsMultiple: boolean;
	expected_result: string;
	reason?: string;
};
export type KubeBenchGroup = {section: string; type: string; pass: number; fail: number; warn: number; info: number; desc: string; results: KubeBenchResult[]};
export type KubeBenchSummary = {total_pass: number; total_fail: number; total_warn: number; total_info: number};
export type KubeBenchControls = {id: string; version: string; detected_version?: string; text: string; node_type: string; tests: KubeBenchGroup[]} & KubeBenchSummary;
export type KubeBenchReport = {Controls: KubeBenchControls[]; Totals: KubeBenchSummary};

/** One casing everywhere: the CIS benchmark's and kube-bench's. */
export function stateOf(status: Check['status']): KubeBenchState {
	return status === 'pass' ? 'PASS' : status === 'fail' ? 'FAIL' : 'WARN';
}

type Section = {control: string; controlText: string; nodeType: string; section: string; desc: string};

function sectionOf(id: string): Section | undefined {
	if (/^1\.2\.\d+$/.test(id)) return {control: '1', controlText: 'Control Plane Security Configuration', nodeType: 'master', section: '1.2', desc: 'API Server'};
	if (/^2\.\d+$/.test(id)) return {control: '2', controlText: 'Etcd Node Configuration', nodeType: 'etcd', section: '2', desc: 'Etcd Node Configuration'};
	if (/^5\.1\.\d+$/.test(id)) return {control: '5', controlText: 'Kubernetes Policies', nodeType: 'policies', section: '5.1', desc: 'RBAC and Service Accounts'};
	return undefined;
}

const OWN: Section = {control: 'etcd-harden', controlText: "etcd-harden's checks beyond the CIS benchmark", nodeType: 'etcd-harden', section: 'etcd-harden', desc: 'etcd and secrets at rest'};

function compareIds(a: string, b: string): number {
	const pa = a.split('.').map(Number);
	const pb = b.split('.').map(Number);
	for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
		const d = (pa[i] ?? -1) - (pb[i] ?? -1);
		if (d !== 0 && !Number.isNaN(d)) return d;
	}
	return a.localeCompare(b);
}

const summary = (results: readonly KubeBenchResult[]): KubeBenchSummary => ({
	total_pass: results.filter(result => result.status === 'PASS').length,
	total_fail: results.filter(result => result.status === 'FAIL').length,
	total_warn: results.filter(result => result.status === 'WARN').length,
	total_info: results.filter(result => result.status === 'INFO').length,
});

export type StatusCheck = Check & {stage: string};

/**
 * The report: CIS checks in their benchmark's controls and sections (numbered for
 * `kubernetesVersion`), every other check of ours in a control of its own so nothing is lost.
 */
export function kubeBenchReport(checks: readonly StatusCheck[], kubernetesVersion: string | undefined): KubeBenchReport {
	const benchmark = benchmarkFor(kubernetesVersion);
	const controls = new Map<string, {meta: Section; groups: Map<string, KubeBenchResult[]>}>();
	for (const check of checks) {
		const concept = CONCEPT_OF[check.id];
		const id = benchmarkId(check.id, benchmark);
		const cis = concept !== undefined || sectionOf(check.id) !== undefined;
		const meta = cis ? sectionOf(id)! : OWN;
		const entry = controls.get(meta.control) ?? {meta, groups: new Map<string, KubeBenchResult[]>()};
		controls.set(meta.control, entry);
		const results = entry.groups.get(meta.section) ?? [];
		entry.groups.set(meta.section, results);
		const status = stateOf(check.status);
		results.push({
			test_number: cis ? id : `${check.stage}.${check.id}`,
			test_desc: concept ? TEXT[concept] : check.title,
			audit: `etcd-harden status --only ${check.stage}`,
			AuditEnv: '',
			AuditConfig: '',
			type: '',
			remediation: check.remediation ?? '',
			test_info: [check.title],
			status,
			actual_value: check.actual ?? '',
			scored: cis,
			IsMultiple: false,
			expected_result: '',
			...(status === 'PASS' ? {} : {reason: check.actual ?? ''}),
		});
	}
	const order = ['1', '2', '5', 'etcd-harden'];
	const out: KubeBenchControls[] = [...controls.values()]
		.sort((a, b) => order.indexOf(a.meta.control) - order.indexOf(b.meta.control))
		.map(({meta, groups}) => {
			const tests: KubeBenchGroup[] = [...groups.entries()].map(([section, results]) => {
				results.sort((a, b) => compareIds(a.test_number, b.test_number));
				const totals = summary(results);
				return {section, type: '', pass: totals.total_pass, fail: totals.total_fail, warn: totals.total_warn, info: totals.total_info, desc: meta.section === section ? meta.desc : section, results};
			});
			const totals = summary(tests.flatMap(group => group.results));
			return {id: meta.control, version: benchmark, ...(kubernetesVersion ? {detected_version: kubernetesVersion.replace(/^v/, '').split('.').slice(0, 2).join('.')} : {}), text: meta.controlText, node_type: meta.nodeType, tests, ...totals};
		});
	return {Controls: out, Totals: summary(out.flatMap(control => control.tests.flatMap(group => group.results)))};
}

/**
 * Stage etcd-tls: nobody talks to etcd without a valid certificate. Audits the etcd and
 * kube-apiserver manifests (CIS Kubernetes Benchmark v1.8.0 section 2 and 1.2.24/1.2.27-29)
 * and the certificates they name; patches the etcd manifest flags that are missing
 * (comments and order preserved), restarts etcd through the etcd restart gate (etcd healthy
 * with the health-check certificate, kube-apiserver ready again) and is undone on failure.
 * Verification adds real connections: plaintext and certificate-less connections refused,
 * the apiserver's certificate accepted, the peer port demanding a certificate.
 */
import type {NodeStage} from './facts.js';
import {etcdRestartGate} from '../etcd/tasks.js';
import {GATE_TIMEOUT_SECONDS} from '../kube/defaults.js';
import {InputError, type Check, type PlanContext, type Stage, type StageAnswers, type StagePlan} from '../engine/contract.js';
import {DEFAULT_ETCD_LOGS} from '../etcd/tls-gate.js';
import {apiserverEtcdChecks, connectionChecks, etcdFlagChecks, isWildcardHost, planTlsFix, splitUrls, tlsAudit, urlHost} from '../etcd/tls.js';
import {ManifestError, patchManifest} from '../kube/manifest.js';
import {healthcheckConnection} from '../etcd/tls.js';
import {ETCD_CONTAINER} from '../kube/defaults.js';
import type {Facts} from './facts.js';

export const etcdTlsStageId = 'etcd-tls';

function usableManifest(facts: Facts): string {
	const m = facts.etcd;
	if (!m.exists) {
		throw new InputError(`${m.path}: not found. etcd-tls hardens a stacked etcd (kubeadm's static pod); for an external etcd set its flags where it runs.`);
	}
	if (m.error) throw new InputError(m.error);
	if (m.text === undefined) throw new InputError(`${m.path}: could not be read. Fix: run etcd-harden as root.`);
	return m.text;
}

/** etcd's metrics URL for the restart gate: --listen-metrics-urls (http), else undefined. */
export function metricsUrl(facts: Facts): string | undefined {
	for (const url of splitUrls(facts.etcd.flags['listen-metrics-urls'])) {
		if (!url.startsWith('http://')) continue;
		const host = urlHost(url);
		try {
			const parsed = new URL(url);
			const hostname = host === undefined || isWildcardHost(host) ? '127.0.0.1' : parsed.hostname;
			return `http://${hostname}:${parsed.port || '2381'}/metrics`;
		} catch {
			continue;
		}
	}
	return undefined;
}

function plan(facts: Facts, answers: StageAnswers, context: PlanContext): StagePlan {
	const text = usableManifest(facts);
	const fix = planTlsFix(facts, {restrictClientUrls: answers['restrictClientUrls'] === true});
	if (fix.problems.length > 0) throw new InputError(fix.problems.join('\n'));
	let patched: string;
	try {
		patched = patchManifest(text, facts.etcd.path, ETCD_CONTAINER, fix.patch);
	} catch (error) {
		if (error instanceof ManifestError) throw new InputError(error.message);
		throw error;
	}
	const notes = [...fix.notes];
	if (patched === text) {
		notes.push(`${facts.etcd.path} already has every transport-security flag.`);
		return {changes: [], notes};
	}
	notes.push('The kubelet restarts etcd when its manifest changes: kube-apiserver loses etcd for a few seconds.');
	const write = {
		kind: 'write-file' as const,
		path: facts.etcd.path,
		content: patched,
		mode: facts.etcd.mode ?? 0o600,
		summary: `Harden etcd's transport security: ${fix.changes.join('; ')}`,
	};
	const cluster = facts.cluster;
	if (!cluster) return {changes: [write], notes};
	if (!cluster.reachable) throw new InputError(cluster.problem ?? `kube-apiserver at ${cluster.server} does not answer.`);
	const health = healthcheckConnection(facts);
	if (!health) {
		throw new InputError(`${facts.pki.dir}/etcd/healthcheck-client.crt and .key are needed to check etcd's health after the restart. Fix: kubeadm init phase certs etcd-healthcheck-client, then rerun.`);
	}
	const timeoutSeconds = context.settings?.gateTimeoutSeconds ?? GATE_TIMEOUT_SECONDS;
	const gate = {
		manifestPath: facts.etcd.path,
		health,
		kubeconfig: cluster.kubeconfig,
		timeoutSeconds,
		logPaths: DEFAULT_ETCD_LOGS,
		...(metricsUrl(facts) ? {metricsUrl: metricsUrl(facts)} : {}),
	};
	return {
		notes,
		changes: etcdRestartGate.bracket(gate, [write], {
			before: 'Record the running etcd (restored and awaited again if this stage is undone)',
			after: 'Wait until etcd has restarted, passes endpoint health with the health-check certificate, and kube-apiserver passes /readyz',
			detail: `timeout ${timeoutSeconds} s; on failure the manifest is restored byte for byte and etcd and kube-apiserver are awaited again`,
		}),
	};
}

/**
 * What the fix is responsible for: the flags, and real connections when etcd runs.
 * Certificate findings (expiry, names, usage) are status findings: the fix does not reissue
 * certificates, so they do not fail it.
 */
function verify(facts: Facts): Check[] {
	return [...etcdFlagChecks(facts), ...apiserverEtcdChecks(facts), ...connectionChecks(facts)];
}

export const etcdTlsStage: NodeStage = {
	dependsOn: [],
	preflight: facts => (facts.etcd.error ? [facts.etcd.error] : []),
	id: etcdTlsStageId,
	title: 'etcd transport security',
	explain:
		'Checks that nobody can talk to etcd without a valid certificate (CIS Kubernetes Benchmark 2.1-2.7 and the apiserver\'s etcd and ' +
		'encryption flags, certificate expiry, names and key usage), and sets the etcd flags that are missing: certificates for clients ' +
		'and peers, client and peer certificate authentication, no self-signed auto TLS, https-only client URLs. etcd restarts; the stage ' +
		'waits until it is healthy and kube-apiserver is ready, and restores the manifest otherwise.',
	questions: () => [
		{
			id: 'restrictClientUrls',
			kind: 'confirm',
			message: 'Restrict etcd to listen for clients on loopback and the node address only?',
			help: 'Sets --listen-client-urls to https://127.0.0.1:2379 and https://<node address>:2379 (from --advertise-client-urls). Other members and kube-apiservers must reach etcd at the node address.',
			default: false,
		},
	],
	plan,
	verify,
	status: facts => tlsAudit(facts),
};

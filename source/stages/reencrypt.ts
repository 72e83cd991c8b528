/**
 * Stage reencrypt: rewrite, through the API, every object of the configured resources that
 * etcd does not yet hold under the config's primary key, then prove it at rest: a raw scan of
 * etcd classifies every value, and a sample decrypts with the configured key into a
 * Kubernetes object. Needs the live control plane (etcd-harden on the node itself).
 */
import type {NodeStage} from './facts.js';
import {reencryptTask} from '../kube/tasks.js';
import {REENCRYPT_DEFAULTS} from '../kube/reencrypt.js';
import {InputError, type Check, type Question, type Stage, type StageAnswers, type StagePlan} from '../engine/contract.js';
import {scannedResources} from '../kube/encryption-config.js';
import type {AtRestResource, Facts} from './facts.js';
import {historyChecks} from './history-checks.js';

export const reencryptStageId = 'reencrypt';

function positiveInteger(name: string, max: number) {
	return (value: unknown): string | undefined => {
		const number = Number(value);
		if (typeof value !== 'string' || !Number.isInteger(number) || number < 1 || number > max) {
			return `${name} must be a whole number from 1 to ${max}, got ${JSON.stringify(value)}`;
		}
		return undefined;
	};
}

/** "auto" (or empty): adaptive; otherwise a pinned number of writes in flight. */
function concurrencyProblem(value: unknown): string | undefined {
	if (value === 'auto' || value === '') return undefined;
	const problem = positiveInteger('concurrency', REENCRYPT_DEFAULTS.maxConcurrency)(value);
	return problem === undefined ? undefined : `${problem} (or "auto": adaptive, the default)`;
}

function rateProblem(value: unknown): string | undefined {
	if (value === '0' || value === '') return undefined;
	return positiveInteger('rate', 100_000)(value);
}

function counts(resource: AtRestResource): string {
	const parts = Object.entries(resource.byKey).map(([key, count]) => `${count} ${key}`);
	return `${resource.total} ${resource.resource}: ${parts.join(', ') || 'none stored'}`;
}

function plan(facts: Facts, answers: StageAnswers): StagePlan {
	const cluster = facts.cluster;
	if (!cluster || !facts.atRest) {
		return {
			changes: [],
			leftOut: 'no running control plane was probed (etcd-harden runs with --root): re-encryption and at-rest verification need the live apiserver and etcd.',
		};
	}
	if (!cluster.reachable) throw new InputError(cluster.problem ?? `kube-apiserver at ${cluster.server} does not answer.`);
	if (facts.atRest.problem) throw new InputError(facts.atRest.problem);
	if (!facts.encryption.config) {
		return {changes: [], notes: ['No encryption config: nothing to re-encrypt to.']};
	}
	const stale = facts.atRest.resources.filter(resource => resource.notOnPrimary > 0);
	const notes = facts.atRest.resources.map(counts);
	if (stale.length === 0) {
		notes.push('Every object is already stored with the primary key: nothing to rewrite.');
		return {changes: [], notes};
	}
	const answer = String(answers['concurrency'] ?? REENCRYPT_DEFAULTS.concurrency);
	const concurrency = answer === 'auto' || answer === '' ? undefined : Number(answer);
	const inFlight =
		concurrency === undefined
			? `adaptive writes in flight (from ${REENCRYPT_DEFAULTS.initialConcurrency}, up while throughput grows, down on rising latency, 429 with Retry-After or 5xx)`
			: `${concurrency} in flight`;
	const rate = Number(answers['rate'] ?? '0');
	const resources = scannedResources(facts.encryption.config);
	const total = stale.reduce((sum, resource) => sum + resource.notOnPrimary, 0);
	return {
		notes,
		changes: [
			reencryptTask.change(
				{
					kubeconfig: cluster.kubeconfig,
					resources,
					scanConfigPath: facts.encryption.path,
					...(concurrency === undefined ? {} : {concurrency}),
					...(rate > 0 ? {rate} : {}),
				},
				`Rewrite ${total} object(s) not yet on the primary key through the API`,
				[
					...stale.map(resource => `${resource.notOnPrimary} ${resource.resource} not on ${resource.primary ?? 'the primary'} (of ${resource.total})`),
					`each object PUT back as listed (pages of ${REENCRYPT_DEFAULTS.pageSize}), ${inFlight}${rate > 0 ? `, at most ${rate}/s` : ''}, guarded by its resourceVersion: a concurrent update makes it a conflict that re-reads the latest version, so none is lost`,
					'the objects are found again by a raw etcd scan when the rewrite starts, so a rerun after an interruption rewrites only what is left',
				],
			),
		],
	};
}

function atRestChecks(facts: Facts, whenMissing: 'pass' | 'warn'): Check[] {
	if (!facts.atRest) {
		return whenMissing === 'pass'
			? []
			: [{id: 'at-rest', title: 'Secrets at rest are verified in etcd', status: 'warn', actual: 'not scanned (no live control plane)', remediation: 'Run etcd-harden status on the control-plane node itself (without --root).'}];
	}
	if (facts.atRest.problem) {
		return [{id: 'at-rest', title: 'Raw etcd values can be scanned', status: 'fail', actual: facts.atRest.problem, remediation: 'Fix etcd access (etcdctl and the apiserver etcd client certificate), then rerun.'}];
	}
	const checks: Check[] = [];
	for (const resource of facts.atRest.resources) {
		const stale = resource.notOnPrimary + resource.unknown + resource.keyNotInConfig;
		checks.push({
			id: `at-rest.${resource.resource}`,
			title: `Every stored ${resource.resource} value is on the primary key${resource.primary ? ` (${resource.primary})` : ''}`,
			status: resource.clean ? 'pass' : 'fail',
			actual: counts(resource),
			...(resource.clean
				? {}
				: {
						remediation:
							stale > 0 || resource.plaintext > 0
								? `Run etcd-harden --only ${reencryptStageId} to rewrite the ${stale || resource.plaintext} object(s) not on the primary key.`
								: 'Values fail to decrypt with the configured key: restore the key the data was written with (see the run backups) before anything else.',
					}),
		});
		if (resource.decrypt) {
			const failed = resource.decrypt.failed;
			checks.push({
				id: `decrypt.${resource.resource}`,
				title: `A sample of ${resource.resource} decrypts with the configured keys into Kubernetes objects`,
				status: failed === 0 ? 'pass' : 'fail',
				actual: failed === 0 ? `${resource.decrypt.checked} checked` : `${failed} of ${resource.decrypt.checked} failed, e.g. ${resource.decrypt.failures[0]?.key}: ${resource.decrypt.failures[0]?.reason}`,
				...(failed === 0 ? {} : {remediation: 'The config lacks the key these values were written with: restore it from the recovery copy or run backup.'}),
			});
		}
	}
	return checks;
}

export const reencryptStage: NodeStage = {
	// Rewriting encrypts only once the apiserver runs with the config.
	dependsOn: ['encryption-config', 'apiserver-manifest'],
	id: reencryptStageId,
	title: 'Re-encrypt existing objects',
	explain:
		'The apiserver encrypts objects only when they are written, so everything stored before the config took effect is still ' +
		'in plaintext (or under an older key). This stage rewrites exactly those objects through the API, then scans etcd raw ' +
		'and decrypts a sample to prove every value is on the primary key.',
	// Asked only where there is a live control plane to rewrite objects on (the ids stay
	// known, so --concurrency is accepted with --root too).
	questions: facts => reencryptQuestions.map(question => ({...question, when: () => Boolean(facts.cluster && facts.atRest)})),
	plan,
	// The rewritten objects' old values stay in old revisions until purge-history (the next
	// stage of harden, rotate and disable) compacts and defragments: reported, not failed, here.
	verify: facts => [...atRestChecks(facts, 'pass'), ...historyChecks(facts, 'verify').filter(check => check.id === 'history.db').map(check => (check.status === 'fail' ? {...check, status: 'warn' as const, actual: `${check.actual} (until purge-history runs)`} : check))],
	status: facts => atRestChecks(facts, 'warn'),
};

const reencryptQuestions: Question[] = [
		{
			id: 'concurrency',
			kind: 'text',
			message: 'Writes in flight',
			default: REENCRYPT_DEFAULTS.concurrency,
			help: '"auto" finds the apiserver\'s ceiling and backs off when it is busy; a number pins it.',
			validate: concurrencyProblem,
		},
		{id: 'rate', kind: 'text', message: 'At most this many objects per second (0: no limit)', default: '0', validate: rateProblem},
];

/**
 * `etcd-harden disable`: identity first (new writes in plaintext, every key still reads) ->
 * reencrypt (everything rewritten in plaintext) -> remove the keys, only once a raw etcd scan
 * finds no k8s:enc: value left and every control plane runs the identity-first config.
 */
import type {NodeStage} from './facts.js';
import {keysUnusedTask} from '../kube/rotation-tasks.js';
import {configDigest} from '../kube/encryption-config.js';
import {allKeyNames, disableState, identityFirst, removeKeys} from '../kube/rotation.js';
import type {PlanContext, Stage, StageAnswers, StagePlan} from '../engine/contract.js';
import {bundleChange, bundleQuestions, finishing, inFlight, nodeOf, publishOnly, readBundle, requireConfig, runsConfigChecks, switchConfig, waitChange, waitQuestion, waitSeconds} from './rotate-common.js';
import type {Facts} from './facts.js';

export const disableIdentityId = 'disable-identity-first';
export const disableRemoveId = 'disable-remove-keys';

function identityPlan(facts: Facts, answers: StageAnswers, context: PlanContext): StagePlan {
	const {text, config} = requireConfig(facts, 'disable');
	if (inFlight(facts)) return finishing(facts, context);
	const state = disableState(config);
	if (state !== 'enabled') {
		const own = facts.rotation?.entries[nodeOf(facts)];
		const notes = [state === 'disabled' ? 'No local key is configured: encryption is already disabled.' : 'identity is already first: new writes are stored in plaintext.'];
		return {changes: facts.cluster && own?.configSha256 !== configDigest(text) ? publishOnly(facts, state === 'disabled' ? 'disable-remove' : 'disable-identity') : [], notes};
	}
	const next = identityFirst(text, config);
	return {
		changes: switchConfig(facts, context, {
			text: next,
			summary: `Put identity first in ${facts.encryption.path}: new writes are stored in plaintext; every key stays for reading`,
			phase: 'disable-identity',
			bundle: bundleChange(readBundle(answers, context, disableIdentityId), next),
		}),
		warnings: ['Disabling encryption at rest: every object of the configured resources will be stored in etcd in plaintext.'],
	};
}

function removePlan(facts: Facts, answers: StageAnswers, context: PlanContext): StagePlan {
	const {text, config} = requireConfig(facts, 'disable');
	if (inFlight(facts)) return finishing(facts, context);
	const state = disableState(config);
	if (state !== 'identity-first') return {changes: [], notes: [state === 'disabled' ? 'No key left to remove.' : 'identity is not first yet: nothing to remove.']};
	const names = allKeyNames(config);
	const next = removeKeys(text, config, names, {allRules: true});
	return {
		changes: [
			...waitChange(facts, 'disable-identity', waitSeconds(answers)),
			...(facts.cluster
				? [
						keysUnusedTask.change(
							{configPath: facts.encryption.path, manifestPath: facts.apiserver.path, anyEncrypted: true, action: 'remove the encryption keys'},
							'Scan etcd raw: refuse unless no k8s:enc: value remains',
						),
					]
				: []),
			...switchConfig(facts, context, {
				text: next,
				summary: `Remove the keys ${names.join(', ')} from ${facts.encryption.path} (identity only)`,
				phase: 'disable-remove',
				bundle: bundleChange(readBundle(answers, context, disableIdentityId), next),
			}),
		],
		notes: ['The keys are removed only if a raw etcd scan, when this stage runs, finds no encrypted value left.'],
	};
}

export const disableIdentityStage: NodeStage = {
	id: disableIdentityId,
	title: 'Disable: identity first',
	explain: 'Moves identity first in the encryption config: new writes are stored in plaintext while every key still decrypts what is encrypted. kube-apiserver restarts with the restart gate.',
	questions: () => bundleQuestions(false).map(question => (question.id === 'bundle' ? {...question, default: 'none', choices: question.choices?.filter(choice => choice.value !== 'same')} : question)),
	plan: identityPlan,
	verify: facts => runsConfigChecks(facts),
	status: () => [],
};

export const disableRemoveStage: NodeStage = {
	id: disableRemoveId,
	title: 'Disable: remove the keys',
	explain: 'Waits until every control plane runs the identity-first config, scans etcd raw, and removes the keys only when no encrypted value remains.',
	questions: () => [...bundleQuestions(false), waitQuestion()],
	plan: removePlan,
	verify: facts => runsConfigChecks(facts),
	status: () => [],
};

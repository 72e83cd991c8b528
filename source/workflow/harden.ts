/** `etcd-harden [harden]` and `status`: every hardening stage, in run order. */
import type {Answers, Check, RunSettings} from '../engine/contract.js';
import type {Host} from '../host/types.js';
import {apiserverManifestStage} from '../stages/apiserver-manifest.js';
import {backupStage} from '../stages/backup.js';
import {encryptionConfigStage} from '../stages/encryption-config.js';
import {etcdAuthStage} from '../stages/etcd-auth.js';
import {etcdTlsStage} from '../stages/etcd-tls.js';
import type {NodeStage} from '../stages/facts.js';
import {firewallStage} from '../stages/firewall.js';
import {purgeHistoryStage} from '../stages/purge-history.js';
import {reencryptStage} from '../stages/reencrypt.js';
import {safetyBackupStage} from '../stages/safety-backup.js';
import {rotationStatus} from '../stages/rotate.js';
import {nodeDiscovery, type NodeTarget} from './node.js';
import {selectStages, type StagePick} from './select.js';
import type {Workflow} from './workflow.js';

export const hardenStages: readonly NodeStage[] = [safetyBackupStage('harden'), encryptionConfigStage, apiserverManifestStage, reencryptStage, purgeHistoryStage, etcdTlsStage, etcdAuthStage, firewallStage];

/** Stage ids an answers file may name in a run of these stages: theirs, every harden stage's and backup's. */
export function answerableStages(selected: readonly NodeStage[]): string[] {
	return [...new Set([...hardenStages, backupStage, ...selected].map(stage => stage.id))];
}

export function hardenWorkflow(pick: StagePick, target: NodeTarget, settings: RunSettings): Workflow {
	const {selected, skipped} = selectStages(hardenStages, pick);
	return {
		command: 'harden',
		stages: selected,
		skipped,
		discover: nodeDiscovery(target, false),
		knownStages: answerableStages(selected),
		answers: async (given: Answers) => given,
		settings,
	};
}

export type StatusRow = Check & {stage: string};

/** `status`: every selected stage's read-only findings, and the rotation reports. */
export async function statusRows(host: Host, pick: StagePick, target: NodeTarget): Promise<StatusRow[]> {
	const {selected} = selectStages(hardenStages, pick);
	const facts = await nodeDiscovery(target, true)(host);
	return [
		...selected.flatMap(stage => stage.status(facts).map(check => ({stage: stage.id, ...check}))),
		...rotationStatus(facts).map(check => ({stage: 'rotation', ...check})),
	];
}

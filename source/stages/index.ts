/**
 * Every stage, in run order. Discovery (./discover.ts) is not a stage: it is the fact
 * source every stage plans from.
 */
import type {Stage} from '../engine/types.js';
import {apiserverManifestStage} from './apiserver-manifest.js';
import {encryptionConfigStage} from './encryption-config.js';
import {reencryptStage} from './reencrypt.js';
import {etcdTlsStage} from './etcd-tls.js';
import {etcdAuthStage} from './etcd-auth.js';
import {firewallStage} from './firewall.js';

export const stages: Stage[] = [encryptionConfigStage, apiserverManifestStage, reencryptStage, etcdTlsStage, etcdAuthStage, firewallStage];

/** Stage ids in run order. */
export const stageIds: readonly string[] = stages.map(stage => stage.id);

/** The stage with this id, or undefined. */
export function stageById(id: string): Stage | undefined {
	return stages.find(stage => stage.id === id);
}

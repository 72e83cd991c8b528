/**
 * Pre-upgrade findings for etcd 3.6 (pure, from the etcd manifest's flags).
 *
 * etcd 3.6 no longer serves the v2 API and no longer keeps the v2 store: the upgrade guide
 * (etcd.io, "Upgrade etcd from v3.5 to v3.6", section "V2 Store") says a member started with
 * --enable-v2 (or ETCD_ENABLE_V2=true) must first be checked with `etcdutl check v2store` and any
 * custom v2 data migrated, and the flag removed, before it is upgraded. --experimental-enable-v2v3
 * (the v2 emulation on v3, deprecated in 3.5) goes with it. kubeadm never sets either flag, so a
 * node that has one was changed by hand, and its v2 data would be lost in the upgrade.
 *
 * etcd 3.6 also renames most --experimental-* flags (its 3.5 -> 3.6 upgrade and 3.6 -> 3.5 downgrade
 * guides list each pair): some lose the prefix, some become --feature-gates entries; the old
 * spellings are deprecated there. kubeadm's own two (--experimental-initial-corrupt-check,
 * --experimental-watch-progress-notify-interval) are rewritten by `kubeadm upgrade`, as kubeadm 1.34
 * writes the new forms; any other one was added by the operator and stays as written.
 */
import type {Check} from '../engine/contract.js';
import type {EtcdNodeFacts} from './types.js';

function isTrue(value: string | undefined): boolean {
	// A bare boolean flag (--enable-v2) is parsed with an empty value.
	return value !== undefined && (value === '' || value.toLowerCase() === 'true');
}

/** 3.5 flag (without --) -> what etcd 3.6 calls it. */
export const renamedIn36: Readonly<Record<string, string>> = {
	'experimental-bootstrap-defrag-threshold-megabytes': '--bootstrap-defrag-threshold-megabytes',
	'experimental-compaction-batch-limit': '--compaction-batch-limit',
	'experimental-compact-hash-check-time': '--compact-hash-check-time',
	'experimental-compaction-sleep-interval': '--compaction-sleep-interval',
	'experimental-corrupt-check-time': '--corrupt-check-time',
	'experimental-enable-distributed-tracing': '--enable-distributed-tracing',
	'experimental-distributed-tracing-address': '--distributed-tracing-address',
	'experimental-distributed-tracing-instance-id': '--distributed-tracing-instance-id',
	'experimental-distributed-tracing-sampling-rate': '--distributed-tracing-sampling-rate',
	'experimental-distributed-tracing-service-name': '--distributed-tracing-service-name',
	'experimental-downgrade-check-time': '--downgrade-check-time',
	'experimental-max-learners': '--max-learners',
	'experimental-memory-mlock': '--memory-mlock',
	'experimental-peer-skip-client-san-verification': '--peer-skip-client-san-verification',
	'experimental-snapshot-catchup-entries': '--snapshot-catchup-entries',
	'experimental-warning-apply-duration': '--warning-apply-duration',
	'experimental-warning-unary-request-duration': '--warning-unary-request-duration',
	'experimental-watch-progress-notify-interval': '--watch-progress-notify-interval',
	'experimental-compact-hash-check-enabled': '--feature-gates=CompactHashCheck=true',
	'experimental-initial-corrupt-check': '--feature-gates=InitialCorruptCheck=true',
	'experimental-enable-initial-corrupt-check': '--feature-gates=InitialCorruptCheck=true',
	'experimental-enable-lease-checkpoint': '--feature-gates=LeaseCheckpoint=true',
	'experimental-enable-lease-checkpoint-persist': '--feature-gates=LeaseCheckpointPersist=true',
	'experimental-stop-grpc-service-on-defrag': '--feature-gates=StopGRPCServiceOnDefrag=true',
	'experimental-txn-mode-write-with-shared-buffer': '--feature-gates=TxnModeWriteWithSharedBuffer=<value>',
};
const KUBEADM_WRITES = new Set(['experimental-initial-corrupt-check', 'experimental-watch-progress-notify-interval']);

function experimentalFlagsCheck(flags: Record<string, string>, manifest: string): Check {
	const title = 'etcd uses no --experimental-* flag that etcd 3.6 renames, beyond the ones kubeadm rewrites (pre-upgrade check)';
	const renamed = Object.keys(flags).filter(flag => Object.hasOwn(renamedIn36, flag));
	const own = renamed.filter(flag => !KUBEADM_WRITES.has(flag));
	const pairs = (list: string[]) => list.map(flag => `--${flag} -> ${renamedIn36[flag]}`).join(', ');
	if (own.length === 0) {
		return {
			id: 'etcd.experimental-flags',
			title,
			status: 'pass',
			actual: renamed.length === 0 ? 'none' : `only kubeadm's own (${pairs(renamed)}), which kubeadm upgrade rewrites`,
		};
	}
	return {
		id: 'etcd.experimental-flags',
		title,
		status: 'warn',
		actual: `${pairs(own)} in ${manifest}: deprecated spellings in etcd 3.6, and kubeadm upgrade does not rewrite flags it did not write`,
		remediation: `When etcd is upgraded to 3.6, change them to the new form (in the kubeadm ClusterConfiguration's etcd.local.extraArgs as well, if they came from there).`,
	};
}

export function etcdUpgradeChecks(facts: EtcdNodeFacts): Check[] {
	const m = facts.etcd;
	if (!m.exists || m.error) return [];
	const experimental = experimentalFlagsCheck(m.flags, m.path);
	const title = 'etcd keeps no v2 store (etcd 3.6 removes it: pre-upgrade check)';
	const found: string[] = [];
	if (isTrue(m.flags['enable-v2'])) found.push(`--enable-v2=${m.flags['enable-v2'] || 'true'}`);
	if (m.flags['experimental-enable-v2v3'] !== undefined) found.push(`--experimental-enable-v2v3=${m.flags['experimental-enable-v2v3']}`);
	if (found.length === 0) return [{id: 'etcd.v2-store', title, status: 'pass', actual: 'the v2 API is off (no --enable-v2, no --experimental-enable-v2v3)'}, experimental];
	return [
		{
			id: 'etcd.v2-store',
			title,
			status: 'warn',
			actual: `${found.join(', ')} in ${m.path}: etcd serves the v2 API and keeps a v2 store, which etcd 3.6 no longer has`,
			remediation:
				'Before upgrading etcd to 3.6: run "etcdutl check v2store" on a copy of the data directory, migrate any custom v2 data to v3, ' +
				`then remove ${found.map(flag => flag.split('=')[0]).join(' and ')} from ${m.path}.`,
		},
		experimental,
	];
}

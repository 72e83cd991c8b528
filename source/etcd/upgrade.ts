/**
 * Pre-upgrade findings for etcd 3.6 (pure, from the etcd manifest's flags).
 *
 * etcd 3.6 no longer serves the v2 API and no longer keeps the v2 store: the upgrade guide
 * (etcd.io, "Upgrade etcd from v3.5 to v3.6", section "V2 Store") says a member started with
 * --enable-v2 (or ETCD_ENABLE_V2=true) must first be checked with `etcdutl check v2store` and any
 * custom v2 data migrated, and the flag removed, before it is upgraded. --experimental-enable-v2v3
 * (the v2 emulation on v3, deprecated in 3.5) goes with it. kubeadm never sets either flag, so a
 * node that has one was changed by hand, and its v2 data would be lost in the upgrade.
 */
import type {Check} from '../engine/contract.js';
import type {EtcdNodeFacts} from './types.js';

function isTrue(value: string | undefined): boolean {
	// A bare boolean flag (--enable-v2) is parsed with an empty value.
	return value !== undefined && (value === '' || value.toLowerCase() === 'true');
}

export function etcdUpgradeChecks(facts: EtcdNodeFacts): Check[] {
	const m = facts.etcd;
	if (!m.exists || m.error) return [];
	const title = 'etcd keeps no v2 store (etcd 3.6 removes it: pre-upgrade check)';
	const found: string[] = [];
	if (isTrue(m.flags['enable-v2'])) found.push(`--enable-v2=${m.flags['enable-v2'] || 'true'}`);
	if (m.flags['experimental-enable-v2v3'] !== undefined) found.push(`--experimental-enable-v2v3=${m.flags['experimental-enable-v2v3']}`);
	if (found.length === 0) return [{id: 'etcd.v2-store', title, status: 'pass', actual: 'the v2 API is off (no --enable-v2, no --experimental-enable-v2v3)'}];
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
	];
}

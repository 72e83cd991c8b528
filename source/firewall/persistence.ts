/**
 * Persistence: where the distribution loads firewall rules at boot, and the file writes that
 * put ours there (pure; the engine writes them with backups). netfilter-persistent (Debian's
 * iptables-persistent) restores /etc/iptables/rules.v4 and rules.v6; the nftables service
 * loads /etc/nftables.conf, which gets one include line for our file.
 */
import type {WriteFileChange} from '../engine/contract.js';
import type {Family} from './address.js';
import {mergeRulesFile} from './iptables.js';
import {withInclude} from './nft.js';
import {firewallTemplates} from './templates.generated.js';
import type {BackendId, PersistenceFacts} from './types.js';

export const RULES_V4 = '/etc/iptables/rules.v4';
export const RULES_V6 = '/etc/iptables/rules.v6';
export const NFTABLES_CONF = '/etc/nftables.conf';
export const NFT_FILE = '/etc/nftables.d/etcd-harden.nft';
export const NETFILTER_PERSISTENT_PATHS = ['/usr/sbin/netfilter-persistent', '/sbin/netfilter-persistent'] as const;
export const NFTABLES_SERVICE_PATHS = [
	'/lib/systemd/system/nftables.service',
	'/usr/lib/systemd/system/nftables.service',
	'/etc/systemd/system/nftables.service',
] as const;

export type PersistencePlan = {changes: WriteFileChange[]; notes: string[]; warnings: string[]};

export type DesiredRules =
	| {backend: 'iptables'; chain4: string[]; chain6?: string[]}
	| {backend: 'nftables'; table: string};

export function nftFileContent(table: string): string {
	return firewallTemplates['etcd-harden.nft'].replace('{{TABLE}}\n', table.replace(/\n*$/, '\n'));
}

export function planPersistence(facts: PersistenceFacts, desired: DesiredRules): PersistencePlan {
	const plan: PersistencePlan = {changes: [], notes: [], warnings: []};
	if (desired.backend === 'iptables') {
		if (!facts.netfilterPersistent) {
			plan.warnings.push(
				'netfilter-persistent is not installed, so these rules will NOT survive a reboot. Install it (Debian/Ubuntu: apt install iptables-persistent) and rerun etcd-harden --only firewall to write /etc/iptables/rules.v4 and rules.v6.',
			);
			return plan;
		}
		const families: Array<[Family, string, string | undefined, string[] | undefined]> = [
			[4, RULES_V4, facts.rulesV4, desired.chain4],
			[6, RULES_V6, facts.rulesV6, desired.chain6],
		];
		for (const [family, path, existing, chain] of families) {
			if (!chain) continue;
			const content = mergeRulesFile(existing, chain, firewallTemplates['iptables-rules.txt']);
			if (content === existing) continue;
			plan.changes.push({
				kind: 'write-file',
				path,
				content,
				mode: 0o640,
				summary: `Persist chain ETCD-HARDEN (IPv${family}) in ${path} for netfilter-persistent`,
			});
		}
		if (plan.changes.length === 0) plan.notes.push(`${RULES_V4} and ${RULES_V6} already hold these rules (netfilter-persistent loads them at boot).`);
		return plan;
	}
	if (!facts.nftablesService) {
		plan.warnings.push(
			'The nftables service is not installed, so this table will NOT survive a reboot. Install and enable it (apt install nftables; systemctl enable nftables) and rerun etcd-harden --only firewall to write the include.',
		);
		return plan;
	}
	const content = nftFileContent(desired.table);
	if (facts.nftFile !== content) {
		plan.changes.push({kind: 'write-file', path: NFT_FILE, content, mode: 0o644, summary: `Persist table inet etcd_harden in ${NFT_FILE}`});
	}
	const conf = withInclude(facts.nftablesConf ?? '#!/usr/sbin/nft -f\n', NFT_FILE);
	if (conf !== facts.nftablesConf) {
		plan.changes.push({kind: 'write-file', path: NFTABLES_CONF, content: conf, mode: 0o755, summary: `Include ${NFT_FILE} from ${NFTABLES_CONF} (loaded by the nftables service at boot)`});
	}
	if (plan.changes.length === 0) plan.notes.push(`${NFTABLES_CONF} already includes ${NFT_FILE} with these rules.`);
	else plan.notes.push(`The nftables service loads ${NFTABLES_CONF} at boot; check that it is enabled (systemctl is-enabled nftables).`);
	return plan;
}

export type {BackendId};

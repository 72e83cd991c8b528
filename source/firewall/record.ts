/**
 * The record of the rules etcd-harden applied (written by the firewall stage as a file change,
 * so it is backed up and undone with the stage). `status` compares the live rules with it, so
 * a flush (a firewalld reload, a reboot without persistence) shows as incomplete rules.
 */
import {STATE_DIR} from '../engine/contract.js';
import type {IptablesVariant} from './types.js';

export const RECORD_PATH = `${STATE_DIR}/firewall.json`;

export type FirewallRecord =
	| {backend: 'iptables'; variant: IptablesVariant; chain4: string[]; chain6?: string[]}
	| {backend: 'nftables'; table: string};

export function recordContent(record: FirewallRecord): string {
	return `${JSON.stringify(record, null, 2)}\n`;
}

/** The record, or undefined when the text is not one. */
export function parseRecord(text: string): FirewallRecord | undefined {
	try {
		const data = JSON.parse(text) as Partial<FirewallRecord> & Record<string, unknown>;
		if (data.backend === 'nftables' && typeof data['table'] === 'string') return {backend: 'nftables', table: data['table']};
		const strings = (value: unknown): value is string[] => Array.isArray(value) && value.every(item => typeof item === 'string');
		if (data.backend === 'iptables' && strings(data['chain4']) && (data['variant'] === 'legacy' || data['variant'] === 'nft')) {
			return {backend: 'iptables', variant: data['variant'], chain4: data['chain4'], ...(strings(data['chain6']) ? {chain6: data['chain6']} : {})};
		}
	} catch {
		// not JSON
	}
	return undefined;
}

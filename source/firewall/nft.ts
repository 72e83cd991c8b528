/**
 * The native nftables backend: table `inet etcd_harden` (IPv4 and IPv6 in one), whose input
 * hook chain jumps to chain `etcd` for tcp ports 2379 and 2380. Rendered exactly as
 * `nft list table inet etcd_harden` prints it, so a rerun compares equal. An accept in our
 * table only ends our chain: other tables' rules still apply, so the table only restricts.
 * Applying replaces the whole table in one `nft -f` transaction.
 */
import {formatNft} from './address.js';
import type {AllowList, AllowRule} from './model.js';
import {LOG_PREFIX} from './iptables.js';

export const FAMILY = 'inet';
export const TABLE = 'etcd_harden';
export const TABLE_REF = `${FAMILY} ${TABLE}`;

function ruleLine(rule: AllowRule): string {
	if (rule.iface) return `iifname "${rule.iface}" accept comment "${rule.tag}"`;
	const source = rule.source!;
	const match = `${source.family === 4 ? 'ip' : 'ip6'} saddr ${formatNft(source)}`;
	const port = rule.port === 'both' ? '' : ` tcp dport ${rule.port}`;
	return `${match}${port} accept comment "${rule.tag}"`;
}

/** The table as `nft list table inet etcd_harden` prints it (tabs, one blank line between chains). */
export function renderTable(list: Pick<AllowList, 'rules' | 'log'>): string {
	const rules = list.rules.map(ruleLine);
	if (list.log) rules.push(`limit rate 5/minute burst 10 packets log prefix "${LOG_PREFIX}"`);
	rules.push('drop');
	return [
		`table ${TABLE_REF} {`,
		'\tchain input {',
		'\t\ttype filter hook input priority filter - 10; policy accept;',
		'\t\ttcp dport { 2379, 2380 } jump etcd comment "etcd-harden"',
		'\t}',
		'',
		'\tchain etcd {',
		...rules.map(rule => `\t\t${rule}`),
		'\t}',
		'}',
		'',
	].join('\n');
}

/** Lines without indentation, blank lines and trailing spaces: equal for equal tables. */
export function normalizeTable(text: string | undefined): string[] {
	return (text ?? '')
		.split('\n')
		.map(line => line.trim().replace(/\s+/g, ' '))
		.filter(line => line !== '');
}

export function sameTable(a: string | undefined, b: string | undefined): boolean {
	if (a === undefined || b === undefined) return a === b;
	return normalizeTable(a).join('\n') === normalizeTable(b).join('\n');
}

/** `nft -f -` input that replaces the table atomically (creating it first so delete never fails). */
export function replaceScript(table: string): string {
	return `table ${TABLE_REF}\ndelete table ${TABLE_REF}\n${table.replace(/\n*$/, '\n')}`;
}

/** `nft -f -` input that brings the table back to `before` (undefined: no table). */
export function revertScript(before: string | undefined): string {
	return before === undefined ? `table ${TABLE_REF}\ndelete table ${TABLE_REF}\n` : replaceScript(before);
}

/** Lines of the live table that the desired one lacks, and the other way round. */
export function compareTable(live: string | undefined, desired: string): {inPlace: boolean; missing: string[]; extra: string[]} {
	const have = normalizeTable(live);
	const want = normalizeTable(desired);
	return {
		inPlace: live !== undefined && sameTable(live, desired),
		missing: want.filter(line => !have.includes(line)),
		extra: have.filter(line => !want.includes(line)),
	};
}

/** The include line for /etc/nftables.conf. */
export function includeLine(path: string): string {
	return `include "${path}"`;
}

/** /etc/nftables.conf with our include appended once (unchanged when it is already there). */
export function withInclude(conf: string, path: string): string {
	const line = includeLine(path);
	if (conf.split('\n').some(existing => existing.trim() === line)) return conf;
	return `${conf.replace(/\n*$/, '\n')}\n# etcd-harden: etcd's ports 2379/2380 (table ${TABLE_REF})\n${line}\n`;
}

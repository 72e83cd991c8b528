/**
 * The iptables backend (legacy and nf_tables variants, IPv4 and IPv6): the ETCD-HARDEN chain
 * in the filter table, jumped to from INPUT for tcp ports 2379 and 2380. Pure text: rules are
 * rendered exactly as `iptables-save` prints them, so a rerun compares equal and changes
 * nothing; scripts are `iptables-restore --noflush` input (one atomic commit per family).
 */
import {formatCidr, type Family} from './address.js';
import {rulesFor, type AllowList, type AllowRule} from './model.js';
import type {ChainState, IptablesCommands, IptablesVariant} from './types.js';

export const CHAIN = 'ETCD-HARDEN';
export const JUMP_SPEC = `-p tcp -m multiport --dports 2379,2380 -m comment --comment etcd-harden -j ${CHAIN}`;
export const JUMP_LINE = `-A INPUT ${JUMP_SPEC}`;
export const LOG_PREFIX = 'etcd-harden drop: ';

function ruleLine(rule: AllowRule): string[] {
	const ports = rule.port === 'both' ? [] : [rule.port];
	if (rule.iface) {
		// The chain only sees ports 2379/2380, so loopback needs no port match.
		return [`-A ${CHAIN} -i ${rule.iface} -m comment --comment ${rule.tag} -j RETURN`];
	}
	const source = formatCidr(rule.source!);
	if (ports.length === 0) return [`-A ${CHAIN} -s ${source} -m comment --comment ${rule.tag} -j RETURN`];
	return ports.map(port => `-A ${CHAIN} -s ${source} -p tcp -m tcp --dport ${port} -m comment --comment ${rule.tag} -j RETURN`);
}

/**
 * The chain's rules for one family, as iptables-save prints them. Allowed traffic RETURNs to
 * INPUT (the node's own rules still apply after ours); everything else is dropped.
 */
export function renderChain(list: Pick<AllowList, 'rules' | 'log'>, family: Family): string[] {
	const lines = rulesFor(list, family).flatMap(ruleLine);
	if (list.log) lines.push(`-A ${CHAIN} -m limit --limit 5/min --limit-burst 10 -j LOG --log-prefix "${LOG_PREFIX}"`);
	lines.push(`-A ${CHAIN} -j DROP`);
	return lines;
}

/** Split a save/restore line into words, honouring double quotes (as iptables-save writes them). */
export function tokenize(line: string): string[] {
	const tokens: string[] = [];
	let current = '';
	let inQuotes = false;
	let has = false;
	for (let i = 0; i < line.length; i++) {
		const char = line[i]!;
		if (inQuotes) {
			if (char === '\\' && i + 1 < line.length) {
				current += line[++i];
			} else if (char === '"') {
				inQuotes = false;
			} else {
				current += char;
			}
		} else if (char === '"') {
			inQuotes = true;
			has = true;
		} else if (/\s/.test(char)) {
			if (has || current !== '') tokens.push(current);
			current = '';
			has = false;
		} else {
			current += char;
			has = true;
		}
	}
	if (has || current !== '') tokens.push(current);
	return tokens;
}

/** A rule's words, quoting removed: equal for `--comment "x"` and `--comment x`. */
export function normalizeRule(line: string): string {
	return tokenize(line).join('\u0000');
}

export function isJump(line: string): boolean {
	const words = tokenize(line);
	return words[0] === '-A' && words[1] === 'INPUT' && words.at(-2) === '-j' && words.at(-1) === CHAIN;
}

/** Our part of `iptables-save -t filter` output (or of a whole rules.v4 file). */
export function parseSave(text: string): Omit<ChainState, 'available'> & {otherChains: string[]; otherRules: number} {
	const state = {tablePresent: false, chainExists: false, rules: [] as string[], input: [] as string[], otherChains: [] as string[], otherRules: 0};
	let inFilter = false;
	for (const raw of text.split('\n')) {
		const line = raw.trim();
		if (line.startsWith('*')) {
			inFilter = line === '*filter';
			if (inFilter) state.tablePresent = true;
			continue;
		}
		if (!inFilter || line === '' || line.startsWith('#')) continue;
		if (line === 'COMMIT') {
			inFilter = false;
			continue;
		}
		if (line.startsWith(':')) {
			const name = line.slice(1).split(/\s+/)[0] ?? '';
			if (name === CHAIN) state.chainExists = true;
			else if (!['INPUT', 'FORWARD', 'OUTPUT'].includes(name)) state.otherChains.push(name);
			continue;
		}
		const words = tokenize(line);
		if (words[0] !== '-A') continue;
		if (words[1] === CHAIN) state.rules.push(line);
		else if (words[1] === 'INPUT') {
			state.input.push(line);
			if (!isJump(line)) state.otherRules++;
		} else state.otherRules++;
	}
	return state;
}

export type ChainComparison = {
	/** The chain holds exactly the desired rules and exactly one jump leads to it. */
	inPlace: boolean;
	/** Desired rules that are not in the chain. */
	missing: string[];
	/** Rules in the chain that are not desired. */
	extra: string[];
	jumps: number;
	/** The desired rules are all there, in order, but something else differs. */
	orderOnly: boolean;
};

export function compareChain(state: Pick<ChainState, 'rules' | 'input'>, desired: readonly string[]): ChainComparison {
	const have = state.rules.map(normalizeRule);
	const want = desired.map(normalizeRule);
	const missing = desired.filter((_, i) => !have.includes(want[i]!));
	const extra = state.rules.filter((_, i) => !want.includes(have[i]!));
	const jumps = state.input.filter(isJump).length;
	const same = have.length === want.length && have.every((word, i) => word === want[i]);
	return {inPlace: same && jumps === 1, missing, extra, jumps, orderOnly: !same && missing.length === 0 && extra.length === 0};
}

/**
 * `iptables-restore --noflush` input that makes the chain exactly `desired` (declaring a chain
 * under --noflush flushes it) and adds the jump as INPUT's first rule when it is missing, or
 * removes duplicates. One commit: the chain never exists half-written.
 */
export function applyScript(state: Pick<ChainState, 'input'>, desired: readonly string[]): string {
	const jumps = state.input.filter(isJump);
	const lines = ['*filter', `:${CHAIN} - [0:0]`, ...desired];
	if (jumps.length === 0) lines.push(`-I INPUT 1 ${JUMP_SPEC}`);
	for (const extra of jumps.slice(1)) lines.push(extra.replace(/^-A /, '-D '));
	lines.push('COMMIT', '');
	return lines.join('\n');
}

export type RevertSteps = {
	/** `iptables-restore --noflush` input, or undefined when nothing needs restoring. */
	script?: string;
	/** Then delete the (flushed, unreferenced) chain: it did not exist before. */
	deleteChain: boolean;
	/** Then delete the whole (now empty) filter table (nf_tables variant, no table before). */
	deleteTable: boolean;
};

/**
 * Steps from `current` back to `before` for our chain and its jumps only (other rules, e.g.
 * kube-proxy's, are left as they are now). Jumps go back to their earlier INPUT positions.
 */
export function revertSteps(
	current: ReturnType<typeof parseSave>,
	before: ReturnType<typeof parseSave>,
	variant: IptablesVariant,
): RevertSteps {
	const same =
		current.chainExists === before.chainExists &&
		current.rules.map(normalizeRule).join('\n') === before.rules.map(normalizeRule).join('\n') &&
		current.input.map(normalizeRule).join('\n') === before.input.map(normalizeRule).join('\n');
	const deleteTable =
		variant === 'nft' && !before.tablePresent && current.tablePresent && current.otherRules === 0 && current.otherChains.length === 0;
	if (same) return {deleteChain: false, deleteTable};
	const lines = ['*filter'];
	if (current.chainExists || before.chainExists) lines.push(`:${CHAIN} - [0:0]`);
	if (before.chainExists) lines.push(...before.rules);
	for (const jump of current.input.filter(isJump)) lines.push(jump.replace(/^-A /, '-D '));
	before.input.forEach((line, index) => {
		if (isJump(line)) lines.push(`-I INPUT ${index + 1} ${line.replace(/^-A INPUT /, '')}`);
	});
	lines.push('COMMIT', '');
	return {script: lines.join('\n'), deleteChain: current.chainExists && !before.chainExists, deleteTable};
}

/** Whether two save states agree on everything etcd-harden touches. */
export function sameOwnState(a: ReturnType<typeof parseSave>, b: ReturnType<typeof parseSave>): boolean {
	return (
		a.chainExists === b.chainExists &&
		a.rules.map(normalizeRule).join('\n') === b.rules.map(normalizeRule).join('\n') &&
		a.input.map(normalizeRule).join('\n') === b.input.map(normalizeRule).join('\n')
	);
}

/** Command names of a variant, e.g. iptables-nft-save, ip6tables-legacy-restore. */
export function variantCommands(variant: IptablesVariant, family: Family): IptablesCommands {
	const base = family === 4 ? 'iptables' : 'ip6tables';
	return {save: `${base}-${variant}-save`, restore: `${base}-${variant}-restore`};
}

/** The plain command of a save command: iptables-nft-save -> iptables-nft. */
export function plainCommand(commands: IptablesCommands): string {
	return commands.save.replace(/-save$/, '');
}

/**
 * Merge the chain into a netfilter-persistent rules file (rules.v4 / rules.v6): our old lines
 * are removed, the chain declared, the jump made INPUT's first rule, the rules added before
 * the filter table's COMMIT. Without a filter table, one is appended from the template.
 */
export function mergeRulesFile(existing: string | undefined, desired: readonly string[], template: string): string {
	const ours = (line: string): boolean => {
		const trimmed = line.trim();
		if (trimmed.startsWith(`:${CHAIN} `)) return true;
		const words = tokenize(trimmed);
		return words[0] === '-A' && (words[1] === CHAIN || isJump(trimmed));
	};
	const fresh = (): string => template.replace('{{JUMP}}', JUMP_LINE).replace('{{RULES}}', desired.join('\n'));
	if (existing === undefined || existing.trim() === '') return fresh();
	const lines = existing.split('\n');
	const start = lines.findIndex(line => line.trim() === '*filter');
	if (start < 0) return `${existing.replace(/\n*$/, '\n')}${fresh().replace(/^(#[^\n]*\n)*/, '')}`;
	let end = lines.findIndex((line, index) => index > start && line.trim() === 'COMMIT');
	if (end < 0) end = lines.length;
	const section = lines.slice(start + 1, end).filter(line => !ours(line));
	const lastDeclaration = section.reduce((last, line, index) => (line.trim().startsWith(':') ? index : last), -1);
	const declarations = section.slice(0, lastDeclaration + 1);
	const rest = section.slice(lastDeclaration + 1);
	const firstInput = rest.findIndex(line => line.trim().startsWith('-A INPUT'));
	const insertAt = firstInput < 0 ? 0 : firstInput;
	const body = [...rest.slice(0, insertAt), JUMP_LINE, ...rest.slice(insertAt), ...desired];
	const merged = [...lines.slice(0, start + 1), ...declarations, `:${CHAIN} - [0:0]`, ...body, ...lines.slice(end)];
	return merged.join('\n');
}

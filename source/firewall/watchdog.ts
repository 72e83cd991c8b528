/**
 * The firewall watchdog (pure rendering; the firewall-apply task starts it). The task's own
 * revert runs inside the tool's process, so it is lost when that process dies while the
 * confirmation is pending (a dropped ssh session, SIGKILL, the OOM killer). The watchdog is a
 * detached POSIX sh process (templates/firewall/watchdog.sh) that restores the saved state at
 * the deadline unless it was stopped. It is sh, not a second Node process, so it works when
 * Node itself is the problem (out of memory, a broken install) and needs nothing but the
 * firewall tools themselves.
 *
 * It restores only what etcd-harden owns, exactly as the in-process revert does, and is
 * idempotent: the chain is declared (flushed) and refilled, and the INPUT jumps that exist at
 * that moment are deleted and the earlier ones inserted at their earlier positions, in one
 * iptables-restore commit per family; nftables gets the saved table back in one `nft -f`
 * transaction. Running it on a state that is already restored changes nothing.
 */
import {shellQuote} from '../host/types.js';
import {CHAIN, isJump, parseSave, plainCommand} from './iptables.js';
import {revertScript, TABLE_REF} from './nft.js';
import {firewallTemplates} from './templates.generated.js';
import type {IptablesCommands, IptablesVariant} from './types.js';

type Parsed = ReturnType<typeof parseSave>;

/** What the watchdog restores: the state kept before applying. */
export type WatchdogState =
	| {backend: 'iptables'; variant: IptablesVariant; families: Array<{family: 4 | 6; commands: IptablesCommands; before: Parsed}>}
	| {backend: 'nftables'; table?: string | undefined};

/** Files in the run directory. */
export const WATCHDOG_FILES = {
	confirmed: 'firewall-confirmed',
	stop: 'firewall-watchdog.stop',
	deadline: 'firewall-watchdog.deadline',
	pid: 'firewall-watchdog.pid',
	reverted: 'firewall-watchdog-reverted',
} as const;

/** Seconds the watchdog waits beyond the confirmation timeout (the in-process revert is first). */
export const WATCHDOG_GRACE_SECONDS = 10;

export type WatchdogPlan = {
	/** Revert input files to write into the run directory first (name -> content). */
	files: Record<string, string>;
	/** The sh script (argv: sh -c SCRIPT etcd-harden-watchdog RUN_DIR CAP). */
	script: string;
};

/** iptables-restore input: our chain as it was, then (after the live jumps' deletions) the earlier jumps. */
function iptablesFiles(before: Parsed): {head: string; tail: string} {
	const head = ['*filter', `:${CHAIN} - [0:0]`, ...before.rules, ''].join('\n');
	const inserts: string[] = [];
	before.input.forEach((line, index) => {
		if (isJump(line)) inserts.push(`-I INPUT ${index + 1} ${line.replace(/^-A INPUT /, '')}`);
	});
	return {head, tail: [...inserts, 'COMMIT', ''].join('\n')};
}

/** The revert commands (sh) for one state; `$dir` is the run directory. */
export function revertLines(state: WatchdogState): {files: Record<string, string>; lines: string[]} {
	const files: Record<string, string> = {};
	const lines: string[] = [];
	if (state.backend === 'nftables') {
		files['firewall-revert.nft'] = revertScript(state.table);
		lines.push(`# table ${TABLE_REF} as it was (${state.table === undefined ? 'absent' : 'saved'}), one transaction`);
		lines.push(`nft -f "$dir/firewall-revert.nft" >/dev/null 2>&1; step ${shellQuote(`table ${TABLE_REF} restored`)} $?`);
		return {files, lines};
	}
	const jumps = `grep -E '^-A INPUT .*-j ${CHAIN} *$' | sed 's/^-A /-D /'`;
	for (const {family, commands, before} of state.families) {
		const save = shellQuote(commands.save);
		const restore = shellQuote(commands.restore);
		const plain = shellQuote(plainCommand(commands));
		const what = (text: string): string => shellQuote(`IPv${family} ${text}`);
		lines.push(`# IPv${family}: chain ${CHAIN} and its INPUT jumps as they were`);
		if (before.chainExists) {
			const {head, tail} = iptablesFiles(before);
			files[`firewall-revert-v${family}.head`] = head;
			files[`firewall-revert-v${family}.tail`] = tail;
			lines.push(
				`{ cat "$dir/firewall-revert-v${family}.head"; ${save} -t filter 2>/dev/null | ${jumps}; cat "$dir/firewall-revert-v${family}.tail"; } | ${restore} --noflush >/dev/null 2>&1; step ${what(`chain ${CHAIN} restored`)} $?`,
			);
			continue;
		}
		// It did not exist: drop the jumps (one commit), then the chain.
		lines.push(`jumps=$(${save} -t filter 2>/dev/null | ${jumps})`);
		lines.push(`if [ -n "$jumps" ]; then printf '*filter\\n%s\\nCOMMIT\\n' "$jumps" | ${restore} --noflush >/dev/null 2>&1; step ${what('jumps removed')} $?; fi`);
		lines.push(`if ${save} -t filter 2>/dev/null | grep -q '^:${CHAIN} '; then ${plain} -t filter -F ${CHAIN} 2>/dev/null; ${plain} -t filter -X ${CHAIN} >/dev/null 2>&1; step ${what(`chain ${CHAIN} removed`)} $?; fi`);
		if (state.variant === 'nft' && !before.tablePresent) {
			// iptables-nft made the filter table for us; remove it again when it holds nothing else.
			const table = family === 4 ? 'ip' : 'ip6';
			lines.push(
				`if ${save} -t filter 2>/dev/null | grep -q '^\\*filter' && ! ${save} -t filter 2>/dev/null | grep -v -e '^:INPUT ' -e '^:FORWARD ' -e '^:OUTPUT ' | grep -q -e '^-A ' -e '^:'; then nft delete table ${table} filter >/dev/null 2>&1; step ${what('empty filter table removed')} $?; fi`,
			);
		}
	}
	return {files, lines};
}

export function watchdogPlan(state: WatchdogState): WatchdogPlan {
	const {files, lines} = revertLines(state);
	const script = firewallTemplates['watchdog.sh'].replace('{{REVERT}}', () => lines.join('\n'));
	return {files, script};
}

/** The watchdog's argv (`sh -c`), run detached. `dir` is the run directory on this machine. */
export function watchdogArgv(plan: WatchdogPlan, dir: string, capSeconds: number): string[] {
	return ['sh', '-c', plan.script, 'etcd-harden-watchdog', dir, String(Math.max(1, Math.ceil(capSeconds)))];
}

/** The report the watchdog wrote, when it restored (or tried to). */
export function parseReverted(text: string): {time?: string; ok: boolean; lines: string[]} {
	const lines = text.split('\n').filter(line => line.trim() !== '');
	const time = lines.find(line => line.startsWith('time: '))?.slice('time: '.length);
	return {...(time ? {time} : {}), ok: lines.includes('result: restored'), lines};
}

/**
 * Dropped connections to etcd's ports, from the firewall stage's own rules: the DROP rule's
 * packet counter in chain ETCD-HARDEN (`iptables-save -c`), and, with the stage's log=true,
 * the kernel's log lines (prefix "etcd-harden drop: ") that name each source address.
 * Pure: command output in, counts out.
 */

/** The DROP rule's counters in `iptables-save -c -t filter` output; undefined without the chain. */
export function dropCounter(save: string, chain: string): {packets: number; bytes: number} | undefined {
	let found: {packets: number; bytes: number} | undefined;
	for (const line of save.split('\n')) {
		const match = /^\[(\d+):(\d+)\] -A (\S+) (.*)$/.exec(line.trim());
		if (!match || match[3] !== chain) continue;
		if (!/(^|\s)-j DROP$/.test(match[4]!)) continue;
		found = {packets: (found?.packets ?? 0) + Number(match[1]), bytes: (found?.bytes ?? 0) + Number(match[2])};
	}
	return found;
}

export type LoggedDrop = {source: string; port?: number; count: number};

/** The `[seconds.micros]` stamp dmesg prints before a kernel log line. */
function stampOf(line: string): number | undefined {
	const match = /^\[\s*(\d+\.\d+)\]/.exec(line);
	return match ? Number(match[1]) : undefined;
}

/**
 * Kernel log lines with the prefix, counted by source address and destination port; only
 * lines stamped after `after` (the last stamp of the previous read), and the last stamp seen.
 */
export function loggedDrops(kernelLog: string, prefix: string, after?: number): {drops: LoggedDrop[]; lastStamp?: number} {
	const counts = new Map<string, LoggedDrop>();
	let lastStamp: number | undefined;
	for (const line of kernelLog.split('\n')) {
		const stamp = stampOf(line);
		if (stamp !== undefined) lastStamp = stamp;
		if (after !== undefined && stamp !== undefined && stamp <= after) continue;
		if (!line.includes(prefix.trim())) continue;
		const source = /\bSRC=(\S+)/.exec(line)?.[1];
		if (!source) continue;
		const port = /\bDPT=(\d+)/.exec(line)?.[1];
		const key = `${source} ${port ?? ''}`;
		const entry = counts.get(key) ?? {source, ...(port ? {port: Number(port)} : {}), count: 0};
		entry.count++;
		counts.set(key, entry);
	}
	const drops = [...counts.values()].sort((a, b) => b.count - a.count || a.source.localeCompare(b.source));
	return {drops, ...(lastStamp === undefined ? {} : {lastStamp})};
}

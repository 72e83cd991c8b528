/**
 * etcd's log, read for the signs of someone trying to get in: rejected client certificates,
 * failed logins, requests by a certificate whose CN has no etcd user, permission denied.
 * Understands etcd 3.4's default text logger (capnslog), the zap JSON logger (3.5's default),
 * and the CRI log format kubelet writes under /var/log/pods (`<time> stderr F <line>`).
 * Pure: lines in, events out.
 */

export type AuthEventKind = 'tls-rejected' | 'bad-password' | 'unknown-user' | 'no-user-for-cert' | 'permission-denied';

export type AuthEvent = {
	kind: AuthEventKind;
	/** The log line's time as written (ISO or etcd's own), when it has one. */
	time?: string;
	/** ip:port of the client, when etcd logged it. */
	client?: string;
	/** The etcd user name (for a certificate: its CN), when etcd logged it. */
	user?: string;
	/** The log line's message, trimmed. */
	message: string;
};

/** What each kind means, and what to do about it. */
export const AUTH_EVENT_ADVICE: Record<AuthEventKind, string> = {
	'tls-rejected': 'A client offered no certificate or one not signed by etcd\'s CA: find the process at that address; only the apiserver and etcd members should connect.',
	'bad-password': 'A login with a wrong password: someone is guessing, or a client has a stale password (etcd-harden root-password shows the current root password).',
	'unknown-user': 'A login as a user etcd does not know: someone is guessing user names.',
	'no-user-for-cert': 'A client with a valid certificate whose CN has no etcd user was refused: a certificate from etcd\'s CA is in hands that should not have it, or a new client needs a user (etcd-harden --only etcd-auth).',
	'permission-denied': 'A user asked for keys outside its role: check which client and role.',
};

type Parsed = {time?: string; message: string; fields: Record<string, unknown>};

/** Strip the CRI prefix (`2024-01-01T00:00:00.000Z stderr F `) and split JSON (zap) from text (capnslog). */
function parseLine(raw: string): Parsed | undefined {
	let line = raw.trimEnd();
	let time: string | undefined;
	const cri = /^(\d{4}-\d\d-\d\dT\S+) (?:stdout|stderr) [FP] (.*)$/.exec(line);
	if (cri) {
		time = cri[1];
		line = cri[2]!;
	}
	if (line.trim() === '') return undefined;
	const brace = line.indexOf('{');
	if (brace >= 0 && line.trimEnd().endsWith('}')) {
		try {
			const fields = JSON.parse(line.slice(brace)) as Record<string, unknown>;
			if (typeof fields === 'object' && fields !== null && typeof fields['msg'] === 'string') {
				return {time: typeof fields['ts'] === 'string' ? fields['ts'] : time, message: fields['msg'] as string, fields};
			}
		} catch {
			// not JSON: text
		}
	}
	const capnslog = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) [A-Z] \| (.*)$/.exec(line);
	if (capnslog) return {time: time ?? capnslog[1], message: capnslog[2]!, fields: {}};
	return {time, message: line.trim(), fields: {}};
}

const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);

function classify(parsed: Parsed): AuthEvent | undefined {
	const {message, fields, time} = parsed;
	const base = {...(time ? {time} : {}), message: message.slice(0, 500)};
	const userField = text(fields['user-name']) ?? text(fields['username']) ?? text(fields['user']);
	const remote = text(fields['remote-addr']) ?? text(fields['remote']) ?? text(fields['peer-address']);
	const withUser = (user: string | undefined) => (user ? {user} : {});
	const withClient = (client: string | undefined) => (client ? {client} : {});

	let match = /rejected connection from "([^"]+)"/.exec(message);
	if (match || /^rejected connection/.test(message)) return {kind: 'tls-rejected', ...base, ...withClient(match?.[1] ?? remote)};
	if (/client certificate authentication failed|tls: bad certificate|certificate signed by unknown authority/.test(message) && remote) {
		return {kind: 'tls-rejected', ...base, ...withClient(remote)};
	}
	match = /invalid password for user "?([^"\s]+)"?/.exec(message);
	if (match || /^invalid password$|authentication failed, invalid password/.test(message)) return {kind: 'bad-password', ...base, ...withUser(match?.[1] ?? userField), ...withClient(remote)};
	match = /invalid user name "?([^"\s]+)"? for permission check/.exec(message);
	if (match || /cannot find a user for permission check/.test(message)) return {kind: 'no-user-for-cert', ...base, ...withUser(match?.[1] ?? userField), ...withClient(remote)};
	match = /authentication failed, user "?([^"\s]+)"? (?:does not|doesn't) exist/i.exec(message);
	if (match || /^user (?:name )?not found$|failed to authenticate: user not found/i.test(message)) return {kind: 'unknown-user', ...base, ...withUser(match?.[1] ?? userField), ...withClient(remote)};
	if (/permission denied/i.test(message) && !/^(?:published|ready|serving)/.test(message)) return {kind: 'permission-denied', ...base, ...withUser(userField), ...withClient(remote)};
	return undefined;
}

/** Every auth event in a chunk of etcd's log, in order. */
export function parseEtcdLog(log: string): AuthEvent[] {
	const events: AuthEvent[] = [];
	for (const raw of log.split('\n')) {
		const parsed = parseLine(raw);
		if (!parsed) continue;
		const event = classify(parsed);
		if (event) events.push(event);
	}
	return events;
}

export type AuthEventSummary = {kind: AuthEventKind; client?: string; user?: string; count: number; last?: string};

/** Events grouped by kind, client and user: what the dashboard and the textfile show. */
export function summarizeEvents(events: readonly AuthEvent[]): AuthEventSummary[] {
	const groups = new Map<string, AuthEventSummary>();
	for (const event of events) {
		const key = `${event.kind}\u0000${event.client ?? ''}\u0000${event.user ?? ''}`;
		const group = groups.get(key) ?? {kind: event.kind, ...(event.client ? {client: event.client} : {}), ...(event.user ? {user: event.user} : {}), count: 0};
		group.count++;
		if (event.time) group.last = event.time;
		groups.set(key, group);
	}
	return [...groups.values()].sort((a, b) => b.count - a.count || a.kind.localeCompare(b.kind));
}

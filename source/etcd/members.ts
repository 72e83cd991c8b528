/**
 * The members of the etcd cluster, which one leads, their db sizes and the cluster's alarms,
 * through etcdctl (read-only commands, so they run under --dry-run too).
 *
 * etcdctl's JSON prints member and cluster IDs as unsigned 64-bit integers, which JSON.parse
 * would round: they are quoted before parsing and shown in hex, as etcdctl's tables do.
 */
import type {Host} from '../host/types.js';
import type {EtcdConnection} from './connection.js';
import {runEtcdctl} from './etcdctl.js';
import type {EtcdMember} from './types.js';

/** Quote the 64-bit integers of etcdctl's JSON so they survive JSON.parse. */
export function quoteIds(text: string): string {
	return text.replace(/"(ID|member_id|cluster_id|leader)":(\d+)/g, '"$1":"$2"');
}

const hex = (decimal: string | number | undefined): string => (decimal === undefined ? '' : BigInt(decimal).toString(16));

type MemberListJson = {members?: Array<{ID?: string; name?: string; clientURLs?: string[]}>};
type StatusJson = Array<{Endpoint?: string; Status?: {header?: {member_id?: string; revision?: number | string}; leader?: string; dbSize?: number; dbSizeInUse?: number}}>;

export type EndpointStatus = {endpoint: string; memberId: string; leaderId: string; dbSize: number; dbSizeInUse?: number; revision: number};

export function parseMemberList(text: string): Array<{id: string; name: string; endpoint?: string}> {
	const parsed = JSON.parse(quoteIds(text)) as MemberListJson;
	return (parsed.members ?? []).map(member => ({
		id: hex(member.ID),
		name: member.name ?? '',
		...(member.clientURLs?.[0] ? {endpoint: member.clientURLs[0]} : {}),
	}));
}

export function parseEndpointStatus(text: string): EndpointStatus[] {
	const parsed = JSON.parse(quoteIds(text)) as StatusJson;
	return parsed.map(entry => ({
		endpoint: entry.Endpoint ?? '',
		memberId: hex(entry.Status?.header?.member_id),
		leaderId: hex(entry.Status?.leader),
		dbSize: Number(entry.Status?.dbSize ?? 0),
		...(entry.Status?.dbSizeInUse === undefined ? {} : {dbSizeInUse: Number(entry.Status.dbSizeInUse)}),
		revision: Number(entry.Status?.header?.revision ?? 0),
	}));
}

function lastLine(text: string): string {
	return text.trim().split('\n').filter(Boolean).at(-1)?.slice(0, 300) ?? 'no output';
}

type Query = {signal?: AbortSignal; timeoutMs?: number};

/** `endpoint status` of one member; throws with etcdctl's last line when it does not answer. */
export async function endpointStatus(host: Host, connection: EtcdConnection, endpoint: string, query: Query = {}): Promise<EndpointStatus> {
	const result = await runEtcdctl(host, {...connection, endpoints: [endpoint]}, ['endpoint', 'status', '-w', 'json'], {
		readOnly: true,
		commandTimeout: '5s',
		timeoutMs: query.timeoutMs ?? 20_000,
		...(query.signal ? {signal: query.signal} : {}),
	});
	if (result.exitCode !== 0) throw new Error(lastLine(result.stderr || result.stdout));
	const status = parseEndpointStatus(result.stdout)[0];
	if (!status) throw new Error('endpoint status printed nothing');
	return status;
}

/** `endpoint health` of one member. */
export async function memberHealthy(host: Host, connection: EtcdConnection, endpoint: string, query: Query = {}): Promise<{healthy: boolean; detail: string}> {
	const result = await runEtcdctl(host, {...connection, endpoints: [endpoint]}, ['endpoint', 'health'], {
		readOnly: true,
		commandTimeout: '5s',
		timeoutMs: query.timeoutMs ?? 20_000,
		...(query.signal ? {signal: query.signal} : {}),
	});
	return {healthy: result.exitCode === 0, detail: result.exitCode === 0 ? 'healthy' : lastLine(result.stderr || result.stdout)};
}

/** Active alarms (`NOSPACE`, `CORRUPT`), one per member that raised it. */
export async function alarms(host: Host, connection: EtcdConnection, query: Query = {}): Promise<string[]> {
	const result = await runEtcdctl(host, connection, ['alarm', 'list'], {readOnly: true, commandTimeout: '5s', timeoutMs: query.timeoutMs ?? 20_000, ...(query.signal ? {signal: query.signal} : {})});
	if (result.exitCode !== 0) throw new Error(`etcdctl alarm list failed: ${lastLine(result.stderr || result.stdout)}`);
	return [...result.stdout.matchAll(/alarm:\s*(\w+)/g)].map(match => match[1]!);
}

/** Every member with its role and db size; a member that does not answer carries its problem. */
export async function listMembers(host: Host, connection: EtcdConnection, query: Query = {}): Promise<{members: EtcdMember[]; revision?: number}> {
	const list = await runEtcdctl(host, connection, ['member', 'list', '-w', 'json'], {readOnly: true, commandTimeout: '5s', timeoutMs: query.timeoutMs ?? 20_000, ...(query.signal ? {signal: query.signal} : {})});
	if (list.exitCode !== 0) throw new Error(`etcdctl member list failed: ${lastLine(list.stderr || list.stdout)}`);
	const listed = parseMemberList(list.stdout);
	const statuses = await Promise.all(
		listed.map(async member => {
			if (member.endpoint === undefined) return {member, problem: 'the member advertises no client URL (not started yet?)'};
			try {
				return {member, status: await endpointStatus(host, connection, member.endpoint, query)};
			} catch (error) {
				return {member, problem: (error as Error).message};
			}
		}),
	);
	const leaderId = statuses.find(entry => entry.status)?.status?.leaderId;
	const revision = Math.max(0, ...statuses.map(entry => entry.status?.revision ?? 0));
	const members: EtcdMember[] = statuses.map(({member, status, problem}) => ({
		id: member.id,
		name: member.name,
		endpoint: member.endpoint ?? '',
		leader: member.id === leaderId,
		...(status ? {dbSize: status.dbSize, ...(status.dbSizeInUse === undefined ? {} : {dbSizeInUse: status.dbSizeInUse})} : {}),
		...(problem ? {problem} : {}),
	}));
	return {members, ...(revision > 0 ? {revision} : {})};
}

/** Followers first (in member-list order), the leader last: the order to defragment in. */
export function defragOrder(members: readonly EtcdMember[]): EtcdMember[] {
	return [...members.filter(member => !member.leader), ...members.filter(member => member.leader)];
}

/**
 * How long a defrag keeps a member from answering, estimated from its db size: bbolt copies
 * every live page into a new file. Measured in the order of 100 MB/s on ordinary disks (etcd's
 * docs warn of seconds to minutes for large files); this assumes 50 MB/s plus a second, so the
 * estimate errs long.
 */
export function defragSeconds(dbSize: number | undefined): number {
	return Math.ceil((dbSize ?? 0) / 50e6) + 1;
}

export function megabytes(bytes: number | undefined): string {
	return bytes === undefined ? 'size unknown' : `${(bytes / 1e6).toFixed(1)} MB`;
}

// What the tool does differently on etcd 3.4 and 3.5, from the programs' answers (recorded from
// Debian's etcdctl 3.4.23 and trixie's etcdctl/etcdutl 3.5.16): auth state from `auth status`
// where it exists, else the failed-login probe; offline snapshot commands by etcdutl where it runs.
// The live behaviour on both releases is in the e2e projects e2e (3.4) and e2e-etcd35.
import {describe, expect, it} from 'vitest';
import {snapshotRestore, snapshotStatus, snapshotTool} from '../../source/backup/etcd.js';
import {probeAuth} from '../../source/discover/etcd.js';
import type {Arg, Host, RunOptions, RunResult} from '../../source/host/types.js';

const ok = (stdout: string): RunResult => ({exitCode: 0, stdout, stderr: '', timedOut: false});
const fail = (stderr: string, exitCode = 1): RunResult => ({exitCode, stdout: '', stderr, timedOut: false});

/** A host that answers commands like one etcd release's programs do. */
function releaseHost(release: '3.4' | '3.5', authEnabled: boolean): Host & {calls: string[][]} {
	const calls: string[][] = [];
	const host = {
		root: '/',
		dryRun: false,
		calls,
		async run(argv: Arg[], _options?: RunOptions): Promise<RunResult> {
			const flat = argv.map(arg => (typeof arg === 'string' ? arg : 'path' in arg ? arg.path : '<secret>'));
			calls.push(flat);
			const [program] = flat;
			// The subcommand: the words after the flags and their values.
			const at = (word: string) => flat.indexOf(word);
			const has = (a: string, b: string) => at(a) !== -1 && flat[at(a) + 1] === b;
			if (program === 'etcdutl' && release === '3.4') return fail('spawn etcdutl ENOENT', 1);
			if (program === 'etcdutl' && flat[1] === 'version') return ok('etcdutl version: 3.5.16\nAPI version: 3.5\n');
			if (has('auth', 'status')) {
				// 3.4's etcdctl has no such subcommand: it prints the "auth" group's help and exits 0.
				if (release === '3.4') return ok('NAME:\n\tauth - Enable or disable authentication\n\nUSAGE:\n\tetcdctl auth <enable or disable>\n');
				return ok(`Authentication Status: ${authEnabled}\nAuthRevision: 1\n`);
			}
			if (flat.some(word => word.startsWith('--user='))) {
				return authEnabled ? fail('{"level":"warn"} Error: etcdserver: authentication failed, invalid user ID or password\n') : fail('Error: etcdserver: authentication is not enabled\n');
			}
			if (has('user', 'list')) return ok('root\n');
			if (has('user', 'get')) return ok('User: root\nRoles: root\n');
			if (has('role', 'list')) return ok('root\n');
			if (has('snapshot', 'status')) return ok('{"hash":54621980,"revision":2,"totalKey":7,"totalSize":20480}\n');
			if (has('snapshot', 'restore')) return ok('');
			return fail(`unexpected command: ${flat.join(' ')}`);
		},
	};
	return host as unknown as Host & {calls: string[][]};
}

const connection = {endpoints: ['https://127.0.0.1:2379'], cacert: '/ca', cert: '/c', key: '/k'};
const loginProbes = (calls: string[][]) => calls.filter(call => call.some(word => word.startsWith('--user='))).length;

describe.each([true, false])('etcd auth enabled=%s', enabled => {
	it('3.5: read from etcdctl auth status, with no failed login in etcd\'s log', async () => {
		const host = releaseHost('3.5', enabled);
		const facts = await probeAuth(host, connection);
		expect(facts.enabled).toBe(enabled);
		expect(facts.problem).toBeUndefined();
		expect(loginProbes(host.calls)).toBe(0);
	});

	it('3.4: auth status only prints help, so the login probe tells', async () => {
		const host = releaseHost('3.4', enabled);
		const facts = await probeAuth(host, connection);
		expect(facts.enabled).toBe(enabled);
		expect(loginProbes(host.calls)).toBe(1);
	});
});

describe('offline snapshot commands', () => {
	it('3.5: etcdutl for status and restore', async () => {
		const host = releaseHost('3.5', false);
		const tool = await snapshotTool(host);
		expect(tool).toBe('etcdutl');
		expect(await snapshotStatus(host, '/s.db', undefined, tool)).toEqual({hash: 54621980, revision: 2, totalKey: 7, totalSize: 20480});
		await snapshotRestore(host, '/s.db', {dataDir: '/d', name: 'x', peerUrl: 'http://127.0.0.1:2390', tool});
		expect(host.calls.filter(call => call[1] === 'snapshot').map(call => `${call[0]} ${call[2]}`)).toEqual(['etcdutl status', 'etcdutl restore']);
	});

	it('3.4: etcdctl, since there is no etcdutl', async () => {
		const host = releaseHost('3.4', false);
		const tool = await snapshotTool(host);
		expect(tool).toBe('etcdctl');
		await snapshotStatus(host, '/s.db', undefined, tool);
		await snapshotRestore(host, '/s.db', {dataDir: '/d', name: 'x', peerUrl: 'http://127.0.0.1:2390', tool});
		expect(host.calls.filter(call => call[1] === 'snapshot').map(call => `${call[0]} ${call[2]}`)).toEqual(['etcdctl status', 'etcdctl restore']);
	});
});

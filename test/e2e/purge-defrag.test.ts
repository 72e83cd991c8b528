/**
 * purge-history's defrag on a real two-member etcd cluster (the firewall test's network
 * namespaces, firewall-net.ts; mutual TLS), the tool running in the control plane's namespace:
 * followers first, the leader last, each healthy before the next; and a member killed during its
 * defrag stops the run with a clear message, the leader untouched, the cluster healthy again.
 * There is no kube-apiserver in these namespaces: the stage says /readyz is not checked.
 */
import {mkdir, readFile, writeFile} from 'node:fs/promises';
import path from 'node:path';
import {execa} from 'execa';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {hosts, startNet, type Net} from './firewall-net.js';

const repo = path.resolve(import.meta.dirname, '../..');
const CONFIG = '/etc/kubernetes/enc/encryption-config.yaml';

let net: Net;
let client: string[];

async function etcdctl(args: string[], input?: string): Promise<string> {
	const result = await net.exec('cp', ['etcdctl', `--endpoints=https://${hosts.cp.v4}:2379`, ...client, '--command-timeout=30s', ...args], input === undefined ? {} : {input});
	if (result.exitCode !== 0) throw new Error(`etcdctl ${args.join(' ')}: ${result.stderr}`);
	return result.stdout;
}

/** The member that leads now, by name. */
async function leaderName(): Promise<string> {
	const members = JSON.parse((await etcdctl(['member', 'list', '-w', 'json'])).replace(/"ID":(\d+)/g, '"ID":"$1"')) as {members: Array<{ID: string; name: string}>};
	const status = JSON.parse((await etcdctl(['endpoint', 'status', '-w', 'json'])).replace(/"leader":(\d+)/g, '"leader":"$1"')) as Array<{Status: {leader: string}}>;
	return members.members.find(member => member.ID === status[0]!.Status.leader)!.name;
}

/**
 * History to purge: a Secret's plaintext protobuf revision under a current encrypted value, and
 * `megabytes` of live filler so each defrag has real work (it copies every live page).
 */
async function seedHistory(name: string, megabytes: number): Promise<void> {
	await etcdctl(['put', `/registry/secrets/default/${name}`], `k8s\0\n\x0c\n\x02v1\x12\x06Secret\x12\x10plaintext-${name}`);
	await etcdctl(['put', `/registry/secrets/default/${name}`], `k8s:enc:secretbox:v1:key1:${'x'.repeat(64)}`);
	const filler = 'f'.repeat(1_000_000);
	for (let i = 0; i < megabytes; i++) await etcdctl(['put', `/filler/${name}/${i}`], filler);
}

beforeAll(async () => {
	net = await startNet();
	client = ['--cacert', path.join(net.pki, 'etcd/ca.crt'), '--cert', path.join(net.pki, 'apiserver-etcd-client.crt'), '--key', path.join(net.pki, 'apiserver-etcd-client.key')];
	// The control plane encrypts secrets (the apiserver manifest names the config), and its etcd
	// manifest names the member's real data directory.
	await mkdir(path.dirname(net.upper(CONFIG)), {recursive: true});
	await writeFile(
		net.upper(CONFIG),
		`apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: key1\n        secret: ${Buffer.alloc(32, 7).toString('base64')}\n  - identity: {}\n`,
		{mode: 0o600},
	);
	const apiserver = net.upper('/etc/kubernetes/manifests/kube-apiserver.yaml');
	await writeFile(apiserver, (await readFile(apiserver, 'utf8')).replace('    - kube-apiserver\n', `    - kube-apiserver\n    - --encryption-provider-config=${CONFIG}\n`));
	const etcdManifest = net.upper('/etc/kubernetes/manifests/etcd.yaml');
	await writeFile(etcdManifest, (await readFile(etcdManifest, 'utf8')).replace('--data-dir=/var/lib/etcd', `--data-dir=${path.join(net.dir, 'data-cp')}`));
}, 180_000);

afterAll(async () => {
	await net?.stop();
});

describe('purge-history on a two-member etcd cluster', () => {
	it('defragments the follower first and the leader last, each healthy before the next', async () => {
		await seedHistory('one', 30);
		const leader = await leaderName();
		const follower = leader === 'cp' ? 'peer' : 'cp';
		const run = await net.tool(['--yes', '--plain', '--only', 'purge-history', '--compaction-grace', '0']);
		expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(0);
		// No kube-apiserver here: /readyz is not part of the gates (the preview says so).
		expect(run.stderr).not.toContain('kube-apiserver ready');
		const done = (name: string) => new RegExp(`member ${name} \\(https://\\S+, (follower|leader)\\): defragmented in [\\d.]+ s; db ([\\d.]+) MB -> ([\\d.]+) MB; healthy, no NOSPACE alarm`);
		const followerLine = done(follower).exec(run.stderr);
		const leaderLine = done(leader).exec(run.stderr);
		expect(followerLine?.[1], run.stderr).toBe('follower');
		expect(leaderLine?.[1], run.stderr).toBe('leader');
		expect(followerLine!.index).toBeLessThan(leaderLine!.index);
		// The leader's before-gate ran after the follower was done and healthy.
		expect(run.stderr.indexOf(`defragmenting member ${leader}`)).toBeGreaterThan(followerLine!.index);
		expect(run.stdout).toContain('Purge plaintext history: applied and verified.');
		expect(await net.etcdHealthy()).toBe(true);
		// This member's data file no longer has the plaintext revision.
		const db = await readFile(path.join(net.dir, 'data-cp/member/snap/db'));
		expect(db.includes('plaintext-one')).toBe(false);
	});

	it('a member killed during its defrag stops the run with a clear message; the leader is not defragmented; the cluster is healthy again', async () => {
		await seedHistory('two', 80);
		// The crash lands while the follower is defragmenting: its etcd is killed in the tick its log
		// says the defrag started (etcd 3.4: "starting to defragment the storage backend"), whichever
		// member the tool finds to be the follower; the kubelet's restart comes 3 s later. Killing it
		// before the request instead is no crash of the defrag: etcdctl waits for the member and the
		// defrag succeeds once it is back (seen in CI).
		const started = /starting to defragment the storage backend/;
		const crashes = {cp: await net.crashOnLog('cp', started), peer: await net.crashOnLog('peer', started)};
		let follower: 'cp' | 'peer' | undefined;
		let crashLog: Promise<string> | undefined;
		const argv = net.toolArgv(['node', path.join(repo, 'dist/cli.js'), '--yes', '--plain', '--only', 'purge-history', '--timeout', '60', '--compaction-grace', '0']);
		const tool = execa(argv[0]!, argv.slice(1), {reject: false, stdin: 'ignore'});
		let stderr = '';
		tool.stderr?.on('data', (chunk: Buffer) => {
			stderr += chunk.toString();
			const announced = /defragmenting member (cp|peer) \(\S+, follower\)/.exec(stderr);
			if (!follower && announced) {
				follower = announced[1] as 'cp' | 'peer';
				crashes[follower === 'cp' ? 'peer' : 'cp'].disarm();
				crashLog = crashes[follower].crashed;
				void crashLog.then(() => setTimeout(() => net.startMember(follower!), 3000));
			}
		});
		const result = await tool;
		crashes.cp.disarm();
		crashes.peer.disarm();
		expect(follower, stderr).toBeDefined();
		// Killed mid-defrag, not after it (and killed at all: a log that never said so settles as '').
		const crashed = await Promise.race([crashLog!, new Promise<string>(resolve => setTimeout(() => resolve(''), 10_000))]);
		expect(crashed, stderr).toMatch(started);
		expect(crashed).not.toMatch(/finished defragmenting/);
		const leader = follower === 'cp' ? 'peer' : 'cp';
		expect(result.exitCode, `${result.stdout}\n${stderr}`).not.toBe(0);
		expect(stderr).toMatch(new RegExp(`member ${follower} \\(https://\\S+, follower\\): (etcdctl defrag failed after [\\d.]+ s|it was not healthy right after its defrag).*It is healthy again after \\d+ s\\. The run stops here: no further member was defragmented\\.`, 's'));
		expect(stderr).not.toContain(`defragmenting member ${leader} `);
		expect(stderr).not.toMatch(new RegExp(`member ${leader} \\(\\S+, leader\\): defragmented`));
		expect(String(result.stdout)).toMatch(/Purge plaintext history: failed/);
		expect(await net.etcdHealthy()).toBe(true);
	});
});

// `etcd-harden undo` and the receipt, in process over copies of demo/ (--root): the undo
// restores byte for byte through the engine, refuses a file changed since unless --force,
// keeps the key it must not delete, and explains instead of taking a key away from a live
// apiserver. Also: a config that leaves Secrets unencrypted needs its own confirmation, and the
// wizard's verification and `status` then report the same FAIL.
import {createHash} from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {afterEach, describe, expect, test} from 'vitest';
import {cleanup, configFile, demoCopy, manifest, recovery, run} from './cli-harness.js';
import {RECEIPT_FILE, RUNS_DIR} from '../../source/engine/contract.js';
import type {Facts} from '../../source/stages/facts.js';
import {undoStage, type UndoRunFacts} from '../../source/workflow/undo.js';

afterEach(cleanup);

/**
 * Run ids are the second a run starts in (source/engine/run-dir.ts): two runs within one
 * second would share a run directory, so the next run starts in the next second.
 */
async function nextSecond(): Promise<void> {
	await new Promise(resolve => setTimeout(resolve, 1000 - (Date.now() % 1000) + 20));
}

const read = (root: string, file: string) => fs.readFile(path.join(root, file));
const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('etcd-harden undo', () => {
	test('restores every file the last run changed, byte for byte, keeps the created key and says so; the receipt says how', async () => {
		const root = await demoCopy();
		const before = await read(root, manifest);
		const hardened = await run(['--root', root, '--yes', ...recovery]);
		expect(hardened.code).toBe(0);
		const runId = /run (\d{4}-\d\d-\d\dT\d{6}Z): /.exec(hardened.stdout)?.[1];
		expect(runId).toBeDefined();
		// The receipt: the run directory as on disk, the backup, the undo command, the next step.
		expect(hardened.stdout).toContain(`run ${runId}: ${root}${RUNS_DIR}/${runId}`);
		expect(hardened.stdout).toContain(`${root}/${manifest}  (before: ${root}${RUNS_DIR}/${runId}/backup/${manifest})`);
		expect(hardened.stdout).toContain(`${root}/${configFile}  (new, holds key material)`);
		expect(hardened.stdout).toContain(`undo: etcd-harden undo ${runId} --root ${root}`);
		expect(hardened.stdout).toContain(`next: Check the node: etcd-harden status --root ${root}`);
		expect((await read(root, manifest)).equals(before)).toBe(false);

		await nextSecond();
		const undone = await run(['undo', '--root', root, '--yes']);
		expect(undone.code).toBe(0);
		expect(sha(await read(root, manifest))).toBe(sha(before));
		// The key is never deleted: objects may be encrypted with it. The plan says so.
		expect(await fs.stat(path.join(root, configFile))).toBeTruthy();
		expect(undone.stderr).toContain(`/${configFile} was created by run ${runId} and holds the encryption key: it is kept, never deleted`);
		expect(undone.stdout).toContain(`this run undid run ${runId}`);
		// The undo is a run of its own, with a receipt naming the run it undid.
		const runs = (await fs.readdir(path.join(root, RUNS_DIR))).sort();
		expect(runs).toHaveLength(2);
		const record = JSON.parse(await fs.readFile(path.join(root, RUNS_DIR, runs[1]!, RECEIPT_FILE), 'utf8')) as {undoes: string; command: string};
		expect(record).toMatchObject({command: 'undo', undoes: runId});

		// A second undo finds nothing left to restore.
		await nextSecond();
		const again = await run(['undo', runId!, '--root', root, '--yes']);
		expect(again.code).toBe(0);
		expect(again.stdout).toContain('nothing was changed');
	});

	test('refuses when a file changed since the run, naming it; --force restores the run\'s copy anyway', async () => {
		const root = await demoCopy();
		const before = await read(root, manifest);
		expect((await run(['--root', root, '--yes', ...recovery])).code).toBe(0);
		await fs.appendFile(path.join(root, manifest), '# edited by hand\n');
		const edited = await read(root, manifest);
		const refused = await run(['undo', '--root', root, '--yes']);
		expect(refused.code).toBe(2);
		expect(refused.stdout).toMatch(/kube-apiserver\.yaml changed since \(its sha256 is not what the run wrote\).*--force/);
		expect((await read(root, manifest)).equals(edited)).toBe(true);
		await nextSecond();
		const forced = await run(['undo', '--root', root, '--yes', '--force']);
		expect(forced.code).toBe(0);
		expect(sha(await read(root, manifest))).toBe(sha(before));
	});

	test('an unknown run id is refused with the runs there are', async () => {
		const root = await demoCopy();
		const refused = await run(['undo', '2020-01-01T000000Z', '--root', root, '--yes']);
		expect(refused.code).toBe(2);
		expect(refused.stderr).toContain('undo 2020-01-01T000000Z: no such run');
	});

	test('on a live node, a restore that takes the encryption flag from kube-apiserver is refused with an explanation', () => {
		const apiserverPath = '/etc/kubernetes/manifests/kube-apiserver.yaml';
		const undoRun: UndoRunFacts = {
			id: 'R',
			dir: `${RUNS_DIR}/R`,
			receipt: {id: 'R', command: 'harden', files: [], keep: []},
			force: false,
			files: [
				{
					path: apiserverPath,
					stage: 'apiserver-manifest',
					created: false,
					backup: `${RUNS_DIR}/R/backup${apiserverPath}`,
					sha256: createHash('sha256').update('--encryption-provider-config=/x\n').digest('hex'),
					mode: 0o600,
					current: '--encryption-provider-config=/x\n',
					before: 'no flag\n',
				},
			],
		};
		const facts = {apiserver: {path: apiserverPath}, etcd: {path: '/etc/kubernetes/manifests/etcd.yaml'}, cluster: {reachable: true, kubeconfig: '/etc/kubernetes/admin.conf'}, undoRun} as unknown as Facts;
		expect(() => undoStage.plan(facts, {}, {randomBytes: () => Buffer.alloc(0), now: new Date()})).toThrow(/never removed this way: run "etcd-harden disable" instead/);
	});
});

describe('a config that leaves Secrets unencrypted', () => {
	test('--yes needs the explicit confirmation; with it, verification and status report the same FAIL', async () => {
		const root = await demoCopy();
		const refused = await run(['--root', root, '--yes', ...recovery, '--set', 'encryption-config.resources=configmaps']);
		expect(refused.code).toBe(2);
		expect(refused.stdout).toContain('"encryption-config.secretsUnencrypted" (true or false): Secrets are not among these resources');

		const confirmed = await run(['--root', root, '--yes', '--json', ...recovery, '--set', 'encryption-config.resources=configmaps', '--set', 'encryption-config.secretsUnencrypted=true']);
		// Not "applied and verified": the stage's verification fails on the fact status fails on.
		expect(confirmed.code).toBe(1);
		const result = JSON.parse(confirmed.stdout) as {stages: Array<{id: string; checks: Array<{id: string; status: string; actual?: string}>}>};
		const verified = result.stages.find(s => s.id === 'encryption-config')!.checks.find(c => c.id === 'secrets-provider');
		expect(verified?.status).toBe('FAIL');
		const status = await run(['status', '--root', root, '--json']);
		const rows = JSON.parse(status.stdout) as Array<{stage: string; id: string; status: string; actual?: string}>;
		const reported = rows.find(row => row.stage === 'encryption-config' && row.id === 'secrets-provider');
		expect(reported).toMatchObject({status: verified!.status, actual: verified!.actual});
	});
});

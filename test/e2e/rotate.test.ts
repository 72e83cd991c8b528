// Key rotation on a live control plane (real etcd 3.4, real kube-apiserver 1.20.2, the built
// CLI in the testbed's namespaces): three rotations under a reader loop, SIGKILL at the stage
// boundaries and mid re-encryption, and prune refusing while an object uses the old key.
import {afterEach, describe, expect, it} from 'vitest';
import {startTestbed, type Testbed} from '../testbed/index.js';
import {cli, CLI, CONFIG, configProviders, ENABLE, journalEvents, NO_GRACE, ROTATE, secretCounts, show, sleep, startReader} from './rotate-helpers.js';

// The figure for the three rotations under a reader loop; the SIGKILL walk uses fewer.
const ROTATION_SECRETS = 3000;
const SECRETS = 1500;

let tb: Testbed | undefined;
afterEach(async () => {
	await tb?.stop();
	tb = undefined;
});

describe('etcd-harden rotate on one control plane', () => {
	it('three rotations under a reader loop: zero read errors, every secret on the newest key, old keys pruned', async () => {
		tb = await startTestbed({secrets: ROTATION_SECRETS, configMaps: 5, namespaces: 3});
		const enable = await cli(tb, ENABLE);
		expect(enable.exitCode, show(enable)).toBe(0);
		expect(await secretCounts(tb)).toEqual({'secretbox:key1': expect.any(Number)});

		const reader = startReader(tb, ROTATION_SECRETS);
		try {
			for (const [index, key] of ['key2', 'key3', 'key4'].entries()) {
				reader.mark(`rotation ${index + 1} start`);
				const run = await cli(tb, ROTATE);
				expect(run.exitCode, show(run)).toBe(0);
				for (const stage of ['Rotate: prepare the new key', 'Rotate: promote the new key', 'Re-encrypt existing objects', 'Rotate: prune the old keys']) {
					expect(run.stdout).toContain(`${stage}: applied and verified.`);
				}
				expect(await configProviders(tb)).toEqual([`secretbox:${key}`, 'identity']);
				const counts = await secretCounts(tb);
				expect(Object.keys(counts)).toEqual([`secretbox:${key}`]);
				expect(counts[`secretbox:${key}`]).toBeGreaterThanOrEqual(ROTATION_SECRETS);
				// Never key material in what the tool prints.
				const secret = /secret: (\S+)/.exec(await tb.readFile(CONFIG, 'utf8'))![1]!;
				expect(`${run.stdout}${run.stderr}`).not.toContain(secret);
				reader.mark(`rotation ${index + 1} done`);
			}
		} finally {
			await reader.stop();
		}
		const {state} = reader;
		expect(state.errors).toEqual([]);
		// The reader read everything during every rotation (between its start and done marks).
		for (let i = 0; i + 1 < state.marks.length; i += 2) expect(state.marks[i + 1]!.reads, JSON.stringify(state.marks)).toBeGreaterThan(state.marks[i]!.reads);

		// The status ConfigMap carries names and hashes only.
		const cm = await tb.kubectl(['-n', 'kube-system', 'get', 'configmap', 'etcd-harden-status', '-o', 'json']);
		const data = (JSON.parse(String(cm.stdout)) as {data: Record<string, string>}).data;
		expect(Object.keys(data)).toEqual(['cp-1']);
		expect(JSON.parse(data['cp-1']!)).toMatchObject({phase: 'prune', state: 'done'});
		expect(String(cm.stdout)).not.toMatch(/secret:/);

		// status: the step, the keys with their object counts, every control plane's report.
		const status = await cli(tb, ['status', '--json']);
		const rows = JSON.parse(status.stdout) as Array<{stage: string; id: string; actual?: string; status: string}>;
		const rotation = rows.filter(row => row.stage === 'rotation');
		expect(rotation.find(row => row.id === 'rotation.step')).toMatchObject({status: 'PASS', actual: 'stable: key4 only'});
		expect(rotation.find(row => row.id === 'rotation.key.secrets.secretbox:key4')?.actual).toMatch(/^\d+ object\(s\) use it$/);
		expect(rotation.find(row => row.id === 'rotation.node.cp-1')).toMatchObject({status: 'PASS'});
	});

	it('SIGKILL at each stage boundary, mid re-encryption and between a config write and its restart: reruns finish ONE rotation', async () => {
		tb = await startTestbed({secrets: SECRETS, configMaps: 5, namespaces: 3});
		const testbed = tb;
		expect((await cli(testbed, ENABLE)).exitCode).toBe(0);

		/** Start a rotate run and SIGKILL it as soon as `until` holds; returns the exit code. */
		async function killWhen(until: () => Promise<boolean>, extra: string[] = []): Promise<number> {
			const run = testbed.exec([process.execPath, CLI, ...ROTATE, ...NO_GRACE, ...extra], {
				reject: false,
				stdin: 'ignore',
				env: {CI: 'true'},
			});
			let hit = false;
			for (let i = 0; i < 3000 && !hit; i++) {
				if (await until()) hit = true;
				else await sleep(50);
			}
			expect(hit).toBe(true);
			await testbed.exec(['pkill', '-KILL', '-f', 'dist/cli.js'], {reject: false});
			const result = await run;
			return result.exitCode ?? -1;
		}
		const done = (stage: string) => async () => (await journalEvents(testbed)).some(event => event.stage === stage && event.event === 'stage-done');
		const wrote = (stage: string, path: string) => async () => (await journalEvents(testbed)).some(event => event.stage === stage && event.event === 'write' && event.path === path);

		// 1. at the prepare -> promote boundary
		expect(await killWhen(done('rotate-prepare'))).not.toBe(0);
		// 2. at the promote -> reencrypt boundary
		expect(await killWhen(done('rotate-promote'))).not.toBe(0);
		expect(await configProviders(testbed)).toEqual(['secretbox:key2', 'secretbox:key1', 'identity']);
		// 3. in the middle of re-encryption (throttled so the kill lands there)
		expect(
			await killWhen(async () => ((await secretCounts(testbed))['secretbox:key2'] ?? 0) >= 300, ['--rate', '100']),
		).not.toBe(0);
		const midway = await secretCounts(testbed);
		expect(midway['secretbox:key1'] ?? 0).toBeGreaterThan(0);
		// 4. after prune wrote the config, before the apiserver was restarted with it
		expect(await killWhen(wrote('rotate-prune', CONFIG))).not.toBe(0);

		// The kill may land while kube-apiserver restarts; a run then stops before changing
		// anything (exit 2, "does not answer"), so the operator reruns once it is ready.
		await testbed.waitForReady();
		const rerun = await cli(testbed, [...ROTATE, ...NO_GRACE]);
		expect(rerun.exitCode, show(rerun)).toBe(0);
		// Exactly one rotation happened: key2 is the only key, every secret is on it.
		expect(await configProviders(testbed)).toEqual(['secretbox:key2', 'identity']);
		expect(Object.keys(await secretCounts(testbed))).toEqual(['secretbox:key2']);
		const again = await cli(testbed, ['status', '--json']);
		const step = (JSON.parse(again.stdout) as Array<{id: string; actual?: string}>).find(row => row.id === 'rotation.step');
		expect(step?.actual).toBe('stable: key2 only');
	});

	it('prune refuses while objects still use the old key, saying how many; the config keeps it; a full rerun completes', async () => {
		tb = await startTestbed({secrets: 200, configMaps: 5, namespaces: 2});
		expect((await cli(tb, ENABLE)).exitCode).toBe(0);
		const before = await secretCounts(tb);
		const onKey1 = before['secretbox:key1']!;

		// purge-history is skipped too: its raw-scan gate would stop the run before prune otherwise.
		const skip = await cli(tb, [...ROTATE, '--skip', 'reencrypt,purge-history']);
		expect(skip.exitCode, show(skip)).toBe(3);
		expect(skip.stderr).toContain(`refusing to remove secretbox:key1: ${onKey1} object(s) in etcd still use secretbox:key1 (${onKey1} secrets on secretbox:key1)`);
		expect(skip.stdout).toContain('Rotate: promote the new key: applied and verified.');
		expect(skip.stdout).toMatch(/Rotate: prune the old keys: failed/);
		expect(await configProviders(tb)).toEqual(['secretbox:key2', 'secretbox:key1', 'identity']);
		expect(await secretCounts(tb)).toEqual(before);

		const full = await cli(tb, [...ROTATE, ...NO_GRACE]);
		expect(full.exitCode, show(full)).toBe(0);
		expect(await configProviders(tb)).toEqual(['secretbox:key2', 'identity']);
		expect(Object.keys(await secretCounts(tb))).toEqual(['secretbox:key2']);
	});
});

// etcd-harden disable on a live control plane, then enabling again, while a reader loop
// reads every secret through the API.
import {afterEach, describe, expect, it} from 'vitest';
import {startTestbed, type Testbed} from '../testbed/index.js';
import {cli, configProviders, ENABLE, secretCounts, show, startReader} from './rotate-helpers.js';

const SECRETS = 1000;

let tb: Testbed | undefined;
afterEach(async () => {
	await tb?.stop();
	tb = undefined;
});

describe('etcd-harden disable', () => {
	it('disable then enable again: every secret readable throughout, plaintext in between, every secret on the fresh key at the end', async () => {
		tb = await startTestbed({secrets: SECRETS, configMaps: 5, namespaces: 3});
		expect((await cli(tb, ENABLE)).exitCode).toBe(0);
		const reader = startReader(tb, SECRETS);
		try {
			reader.mark('disable start');
			const disable = await cli(tb, ['disable', '--yes', '--plain']);
			expect(disable.exitCode, show(disable)).toBe(0);
			for (const stage of ['Disable: identity first', 'Re-encrypt existing objects', 'Disable: remove the keys']) expect(disable.stdout).toContain(`${stage}: applied and verified.`);
			reader.mark('disable done');
			expect(await configProviders(tb)).toEqual(['identity']);
			expect(Object.keys(await secretCounts(tb))).toEqual(['plaintext']);

			// A second disable changes nothing.
			const again = await cli(tb, ['disable', '--yes', '--plain']);
			expect(again.exitCode, show(again)).toBe(0);
			expect(again.stderr).not.toMatch(/Run directory/);

			reader.mark('enable start');
			const enable = await cli(tb, [...ENABLE, '--set', 'encryption-config.primary=true']);
			expect(enable.exitCode, show(enable)).toBe(0);
			reader.mark('enable done');
		} finally {
			await reader.stop();
		}
		expect(reader.state.errors).toEqual([]);
		const marks = reader.state.marks;
		for (let i = 0; i + 1 < marks.length; i += 2) expect(marks[i + 1]!.reads, JSON.stringify(marks)).toBeGreaterThan(marks[i]!.reads);
		// key1 was removed by disable, so enabling again adds a fresh key with the first free name.
		const providers = await configProviders(tb);
		expect(providers[0]).toMatch(/^secretbox:key\d+$/);
		expect(providers.at(-1)).toBe('identity');
		expect(Object.keys(await secretCounts(tb))).toEqual([providers[0]]);
	});

	it('refuses to remove the keys while a value is still encrypted (re-encryption skipped); the keys stay', async () => {
		tb = await startTestbed({secrets: 100, configMaps: 5, namespaces: 2});
		expect((await cli(tb, ENABLE)).exitCode).toBe(0);
		const run = await cli(tb, ['disable', '--yes', '--plain', '--skip', 'reencrypt', '--set', 'disable-remove-keys.waitSeconds=3']);
		expect(run.exitCode, show(run)).toBe(3);
		expect(run.stderr).toMatch(/refusing to remove the encryption keys: \d+ object\(s\) in etcd still use encryption/);
		expect(await configProviders(tb)).toEqual(['identity', 'secretbox:key1']);
		const finish = await cli(tb, ['disable', '--yes', '--plain', '--compaction-grace', '0']);
		expect(finish.exitCode, show(finish)).toBe(0);
		expect(await configProviders(tb)).toEqual(['identity']);
		expect(Object.keys(await secretCounts(tb))).toEqual(['plaintext']);
	});
});

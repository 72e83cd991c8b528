// `status --format kube-bench`: kube-bench's JSON schema (check/controls.go and check/check.go:
// OverallControls{Controls, Totals}, Controls, Group, Check with their JSON names) and ids by
// the CIS benchmark kube-bench picks for the Kubernetes version, on demo manifests of 1.26,
// 1.27 and 1.30, through the real command line (in process, on a copy of demo/ with --root).
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {afterEach, describe, expect, test} from 'vitest';
import {cleanup, demoCopy, run} from './cli-harness.js';
import {benchmarkFor, kubeBenchReport} from '../../source/kube/kube-bench.js';

afterEach(cleanup);

async function demoAt(version: string): Promise<string> {
	const root = await demoCopy();
	const manifest = path.join(root, 'etc/kubernetes/manifests/kube-apiserver.yaml');
	await fs.writeFile(manifest, (await fs.readFile(manifest, 'utf8')).replace(/kube-apiserver:v[\d.]+/, `kube-apiserver:v${version}`));
	return root;
}

// kube-bench's JSON field names, in its structs' order.
const CONTROLS_FIELDS = ['id', 'version', 'detected_version', 'text', 'node_type', 'tests', 'total_pass', 'total_fail', 'total_warn', 'total_info'];
const GROUP_FIELDS = ['section', 'type', 'pass', 'fail', 'warn', 'info', 'desc', 'results'];
const CHECK_FIELDS = ['test_number', 'test_desc', 'audit', 'AuditEnv', 'AuditConfig', 'type', 'remediation', 'test_info', 'status', 'actual_value', 'scored', 'IsMultiple', 'expected_result'];
const TOTALS_FIELDS = ['total_pass', 'total_fail', 'total_warn', 'total_info'];

type Json = Record<string, unknown>;

function validate(report: Json): Array<Json & {test_number: string; test_desc: string; status: string}> {
	expect(Object.keys(report)).toEqual(['Controls', 'Totals']);
	expect(Object.keys(report['Totals'] as Json)).toEqual(TOTALS_FIELDS);
	const all: Array<Json & {test_number: string; test_desc: string; status: string}> = [];
	for (const control of report['Controls'] as Json[]) {
		expect(Object.keys(control)).toEqual(CONTROLS_FIELDS);
		for (const group of control['tests'] as Json[]) {
			expect(Object.keys(group)).toEqual(GROUP_FIELDS);
			const results = group['results'] as Json[];
			for (const result of results) {
				expect(Object.keys(result).filter(key => key !== 'reason')).toEqual(CHECK_FIELDS);
				expect(['PASS', 'FAIL', 'WARN', 'INFO']).toContain(result['status']);
				expect(typeof result['scored']).toBe('boolean');
				expect(Array.isArray(result['test_info'])).toBe(true);
				all.push(result as Json & {test_number: string; test_desc: string; status: string});
			}
			for (const [key, state] of [['pass', 'PASS'], ['fail', 'FAIL'], ['warn', 'WARN'], ['info', 'INFO']] as const) {
				expect(group[key]).toBe(results.filter(result => result['status'] === state).length);
			}
		}
	}
	const totals = report['Totals'] as Json;
	expect(totals['total_fail']).toBe(all.filter(result => result.status === 'FAIL').length);
	expect(totals['total_pass']).toBe(all.filter(result => result.status === 'PASS').length);
	return all;
}

describe('status --format kube-bench', () => {
	test.each([
		['1.26.3', 'cis-1.8', {certfile: '1.2.24', cafile: '1.2.27', config: '1.2.28'}],
		['1.27.1', 'cis-1.9', {certfile: '1.2.23', cafile: '1.2.26', config: '1.2.27'}],
		['1.30.0', 'cis-1.11', {certfile: '1.2.23', cafile: '1.2.26', config: '1.2.27'}],
	])('Kubernetes %s: %s numbering, in kube-bench\'s structure', async (version, benchmark, ids) => {
		const root = await demoAt(version);
		const result = await run(['status', '--root', root, '--format', 'kube-bench']);
		expect(result.code, result.stderr).toBe(1); // the demo tree has no encryption yet
		const report = JSON.parse(result.stdout) as Json;
		const results = validate(report);
		const controls = report['Controls'] as Json[];
		expect(controls.map(control => [control['id'], control['version'], control['detected_version'], control['node_type']]).slice(0, 2)).toEqual([
			['1', benchmark, version.split('.').slice(0, 2).join('.'), 'master'],
			['2', benchmark, version.split('.').slice(0, 2).join('.'), 'etcd'],
		]);
		const byDesc = (pattern: RegExp) => results.find(entry => pattern.test(entry.test_desc));
		expect(byDesc(/--etcd-certfile and --etcd-keyfile/)!.test_number).toBe(ids.certfile);
		expect(byDesc(/--etcd-cafile/)!.test_number).toBe(ids.cafile);
		expect(byDesc(/--encryption-provider-config/)).toMatchObject({test_number: ids.config, status: 'FAIL', scored: true});
		expect(results.filter(entry => /^2\.[1-7]$/.test(entry.test_number)).map(entry => entry.test_number)).toEqual(['2.1', '2.2', '2.3', '2.4', '2.5', '2.6', '2.7']);
		// Our own checks keep their place in a control of their own, unscored.
		expect(results.find(entry => entry.test_number === 'encryption-config.encryption-enabled')).toMatchObject({scored: false, status: 'FAIL'});
		expect(results.find(entry => entry.test_number === '5.1.2')).toMatchObject({status: 'WARN'});
	});

	test('one casing of PASS/FAIL/WARN in text, --json and kube-bench output', async () => {
		const root = await demoAt('1.28.2');
		const text = await run(['status', '--root', root]);
		const json = await run(['status', '--root', root, '--json']);
		const bench = await run(['status', '--root', root, '--format', 'kube-bench']);
		expect(text.stdout).toMatch(/^ {2}(PASS|FAIL|WARN) /m);
		expect(text.stdout).not.toMatch(/\b(Pass|Fail|Warn|pass|fail|warn)\b {1,2}\S/);
		expect(new Set((JSON.parse(json.stdout) as Array<{status: string}>).map(row => row.status))).toEqual(new Set(['PASS', 'FAIL', 'WARN']));
		expect(validate(JSON.parse(bench.stdout) as Json).every(result => ['PASS', 'FAIL', 'WARN'].includes(result.status))).toBe(true);
	});

	test("kube-bench's version mapping", () => {
		expect(['1.20.2', '1.23.0', '1.24.1', '1.25.0', '1.26.0', '1.27.0', '1.28.0', '1.29.0', '1.31.0', '1.32.0', undefined].map(benchmarkFor)).toEqual([
			'cis-1.20', 'cis-1.23', 'cis-1.24', 'cis-1.7', 'cis-1.8', 'cis-1.9', 'cis-1.10', 'cis-1.11', 'cis-1.11', 'cis-1.12', 'cis-1.12',
		]);
		const report = kubeBenchReport([{stage: 'encryption-config', id: 'secrets-provider', title: 'x', status: 'pass'}], '1.26.0');
		expect(report.Controls[0]!.tests[0]!.results[0]).toMatchObject({test_number: '1.2.29', test_desc: 'Ensure that encryption providers are appropriately configured (Manual)', status: 'PASS'});
	});

	test('bad --format and report flags on the wrong command are refused with the fix', async () => {
		const root = await demoAt('1.28.2');
		for (const [argv, message] of [
			[['status', '--root', root, '--format', 'xml'], /--format xml: use text, json or kube-bench/],
			[['status', '--root', root, '--format', 'kube-bench', '--json'], /--json and --format kube-bench ask for two formats/],
			[['harden', '--root', root, '--format', 'json'], /--format belongs to the status command/],
			[['status', '--root', root, '--once'], /--once belongs to the monitor command/],
			[['monitor', '--root', root, '--interval', '0'], /--interval 0: give whole seconds from 1 to 3600/],
			[['status', '--root', root, '--rbac-proposal', path.join(root, 'p.yaml')], /--rbac-proposal needs the live cluster/],
		] as const) {
			const result = await run([...argv]);
			expect(result.stderr).toMatch(message);
			expect(result.code).toBe(2);
		}
	});
});

// What the single executable relies on, as pure logic: the embedded demo tree is demo/ byte for
// byte, and the backup service runs the executable itself (not node + a script) when that is how
// the tool was started. The executable itself is built and run in test/e2e/executable.test.ts.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {fileURLToPath} from 'node:url';
import {afterEach, describe, expect, test} from 'vitest';
import {demoTree} from '../../source/host/demo-tree.generated.js';
import {prepareDemoTree} from '../../source/host/demo.js';
import {presetBackupProgram} from '../../source/workflow/backup.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

async function filesUnder(directory: string, prefix = ''): Promise<string[]> {
	const out: string[] = [];
	for (const entry of await fs.readdir(directory, {withFileTypes: true})) {
		const relative = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
		if (entry.isDirectory()) out.push(...(await filesUnder(path.join(directory, entry.name), relative)));
		else out.push(relative);
	}
	return out.sort();
}

describe('the embedded demo tree', () => {
	const made: string[] = [];
	afterEach(async () => {
		for (const dir of made.splice(0)) await fs.rm(dir, {recursive: true, force: true});
	});

	test('source/host/demo-tree.generated.ts matches demo/ (run node scripts/generate-demo-tree.mjs after editing demo/)', async () => {
		const files = await filesUnder(path.join(repo, 'demo'));
		expect(Object.keys(demoTree).sort()).toEqual(files);
		for (const file of files) expect(demoTree[file], file).toBe(await fs.readFile(path.join(repo, 'demo', file), 'utf8'));
	});

	test('prepareDemoTree writes the tree without reading demo/ at run time', async () => {
		const root = await prepareDemoTree();
		made.push(root);
		expect(await filesUnder(root)).toEqual(Object.keys(demoTree).sort());
		const manifest = 'etc/kubernetes/manifests/kube-apiserver.yaml';
		expect(await fs.readFile(path.join(root, manifest), 'utf8')).toBe(demoTree[manifest]);
	});
});

describe('the backup service program', () => {
	test('the single executable names itself by its absolute path, whatever argv[1] says', () => {
		const answers = presetBackupProgram({}, {argv1: 'etcd-harden', execPath: '/usr/local/bin/etcd-harden', singleExecutable: true});
		expect(answers['backup']?.['program']).toBe('/usr/local/bin/etcd-harden');
	});

	test('the bundled script runs as node + the absolute script path', () => {
		const answers = presetBackupProgram({}, {argv1: 'dist/cli.js', execPath: '/usr/bin/node'});
		expect(answers['backup']?.['program']).toBe(`/usr/bin/node ${path.resolve('dist/cli.js')}`);
	});

	test('an explicit --set backup.program wins in both cases', () => {
		for (const singleExecutable of [true, false]) {
			const answers = presetBackupProgram({backup: {program: '/opt/eh'}}, {argv1: 'x.js', execPath: '/usr/bin/node', singleExecutable});
			expect(answers['backup']?.['program']).toBe('/opt/eh');
		}
	});
});

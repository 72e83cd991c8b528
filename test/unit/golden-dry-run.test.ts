// Behaviour pinned across refactors: the dry-run of the wizard and `status` on a copy of demo/
// produce exactly the output recorded in test/unit/golden/ (digests of freshly generated keys
// and the temporary root are normalised). A change to these files must be deliberate:
// regenerate them with UPDATE_GOLDEN=1 and review the diff.
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import {PassThrough} from 'node:stream';
import {fileURLToPath} from 'node:url';
import {afterEach, expect, test} from 'vitest';
import {main} from '../../source/cli/main.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const goldenDir = path.join(repo, 'test/unit/golden');
const recovery = ['--set', 'encryption-config.recovery=stored-elsewhere', '--set', 'encryption-config.storedElsewhere=true'];

const roots: string[] = [];
afterEach(async () => {
	for (const root of roots.splice(0)) await fs.rm(root, {recursive: true, force: true});
});

async function runCli(argv: (root: string) => string[]): Promise<string> {
	const root = await fs.mkdtemp(path.join(os.tmpdir(), 'golden-'));
	roots.push(root);
	await fs.cp(path.join(repo, 'demo'), root, {recursive: true});
	const stdout = new PassThrough();
	const stderr = new PassThrough();
	let out = '';
	let err = '';
	stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
	stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
	const code = await main(argv(root), {
		stdin: new PassThrough() as unknown as NodeJS.ReadStream,
		stdout: stdout as unknown as NodeJS.WriteStream,
		stderr: stderr as unknown as NodeJS.WriteStream,
		isRoot: true,
		handleSignals: false,
	});
	// The demo's certificates (scripts/make-demo-pki.sh) expire in 100 years: the days left change daily.
	const normalise = (text: string) =>
		text
			.replaceAll(root, '<root>')
			.replace(/\b[0-9a-f]{64}\b/g, '<sha256>')
			.replace(/expires \d{4}-\d\d-\d\dT[\d:.]+Z \(\d+ days left\)/g, 'expires <date> (<days> days left)');
	return `exit ${code}\n--- stdout\n${normalise(out)}--- stderr\n${normalise(err)}`;
}

async function expectGolden(name: string, actual: string): Promise<void> {
	const file = path.join(goldenDir, name);
	if (process.env['UPDATE_GOLDEN'] === '1') await fs.writeFile(file, actual);
	expect(actual).toBe(await fs.readFile(file, 'utf8'));
}

test('harden --dry-run --yes on the demo tree prints the recorded plan', async () => {
	await expectGolden('harden-dry-run.txt', await runCli(root => ['harden', '--root', root, '--dry-run', '--yes', ...recovery]));
});

test('harden --dry-run --yes --json on the demo tree prints the recorded plan', async () => {
	await expectGolden('harden-dry-run.json.txt', await runCli(root => ['harden', '--root', root, '--dry-run', '--yes', '--json', ...recovery]));
});

test('status on the demo tree prints the recorded findings', async () => {
	await expectGolden('status.txt', await runCli(root => ['status', '--root', root]));
});

test('status --json on the demo tree prints the recorded findings', async () => {
	await expectGolden('status.json.txt', await runCli(root => ['status', '--root', root, '--json']));
});

test('a bad answer is refused with the recorded message', async () => {
	await expectGolden('harden-bad-answer.txt', await runCli(root => ['harden', '--root', root, '--dry-run', '--yes', '--set', 'encryption-config.provider=rot13']));
});

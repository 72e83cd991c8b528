// Shared by the engine tests: a temporary root with one existing file, and small stages
// written for the test (what is tested is the engine, not a real stage).
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type {Stage} from '../../../source/engine/contract.js';
import type {Host} from '../../../source/host/types.js';
import type {Facts} from '../../../source/stages/facts.js';

/** A fresh root holding etc/existing.txt ("original\n", 0644). */
export async function engineRoot(prefix: string): Promise<string> {
	const root = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
	await fs.mkdir(path.join(root, 'etc'), {recursive: true});
	await fs.writeFile(path.join(root, 'etc/existing.txt'), 'original\n', {mode: 0o644});
	return root;
}

export const noFacts = async (_host: Host): Promise<Facts> => ({}) as Facts;

/** A stage that writes `content` to `file` (0600) and verifies as passed. */
export function writeStage(id: string, file: string, content: string, extra: Partial<Stage> = {}): Stage {
	return {
		id,
		title: `Stage ${id}`,
		explain: 'test stage',
		questions: () => [],
		plan: () => ({changes: [{kind: 'write-file', path: file, content, mode: 0o600, summary: `write ${file}`}]}),
		verify: () => [{id: `${id}.ok`, title: 'ok', status: 'pass'}],
		status: () => [],
		...extra,
	};
}

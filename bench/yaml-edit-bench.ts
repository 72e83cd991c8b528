// Patching a static pod manifest as it grows (issue 13, class 8): patchManifest (Myers
// alignment, jsdiff) against two baselines measured in the same run: parsing the same text
// once (yaml parseDocument, the floor), and the O(N*M) longest-common-subsequence table
// editYaml used before, aligning the same line lists. Run: npx tsx bench/yaml-edit-bench.ts
import {readFileSync} from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {parseDocument} from 'yaml';
import {patchManifest} from '../source/kube/manifest.js';
import {MAX_YAML_BYTES} from '../source/kube/yaml-edit.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const demo = readFileSync(path.join(REPO, 'demo/etc/kubernetes/manifests/kube-apiserver.yaml'), 'utf8');
const patch = {
	flags: {'encryption-provider-config': '/etc/kubernetes/enc/encryption-config.yaml'},
	mounts: [{name: 'etcd-harden-encryption', hostPath: '/etc/kubernetes/enc', mountPath: '/etc/kubernetes/enc', type: 'DirectoryOrCreate', readOnly: true}],
	annotations: {'etcd-harden.io/encryption-config-sha256': 'abc'},
};

/** The demo manifest with `extra` more flags (a realistic way for one to grow). */
function manifestWith(extra: number): string {
	const flags = Array.from({length: extra}, (_, i) => `    - --extra-flag-${i}=value-${i}-${'x'.repeat(20)}`).join('\n');
	return demo.replace('    - --allow-privileged=true\n', `    - --allow-privileged=true\n${flags}\n`);
}

/** The former alignment: a full (n+1)*(m+1) table. */
function lcsTable(a: string[], b: string[]): number {
	const table: Uint32Array[] = [];
	for (let i = 0; i <= a.length; i++) table.push(new Uint32Array(b.length + 1));
	for (let i = a.length - 1; i >= 0; i--) {
		for (let j = b.length - 1; j >= 0; j--) table[i]![j] = a[i] === b[j] ? table[i + 1]![j + 1]! + 1 : Math.max(table[i + 1]![j]!, table[i]![j + 1]!);
	}
	return table[0]![0]!;
}

function time(fn: () => unknown): number {
	const start = process.hrtime.bigint();
	fn();
	return Number(process.hrtime.bigint() - start) / 1e6;
}

console.log('lines   bytes    parse ms   patchManifest ms   old LCS table ms (x3 alignments in editYaml)');
for (const extra of [0, 500, 2000, 4200, 5000]) {
	const text = manifestWith(extra);
	if (text.length > MAX_YAML_BYTES) {
		console.log(`${String(text.split('\n').length).padEnd(7)} ${String(text.length).padEnd(8)} refused by discovery (over ${MAX_YAML_BYTES / 1024} KiB)`);
		continue;
	}
	const parse = time(() => parseDocument(text));
	const patched = time(() => patchManifest(text, '/m.yaml', 'kube-apiserver', patch));
	const lines = text.split('\n');
	const printed = parseDocument(text).toString({indent: 2, indentSeq: false, lineWidth: 0}).split('\n');
	const old = time(() => lcsTable(lines, printed));
	console.log(`${String(lines.length).padEnd(7)} ${String(text.length).padEnd(8)} ${parse.toFixed(1).padStart(8)}   ${patched.toFixed(1).padStart(16)}   ${old.toFixed(1).padStart(16)}`);
}

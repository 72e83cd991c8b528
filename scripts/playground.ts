// The playground: a real control plane in private namespaces, and the etcd-harden wizard run inside
// them for real (node dist/cli.js, stdio inherited). Started by scripts/playground.sh.
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {execa} from 'execa';
import {seededSecret, startTestbed, type Testbed} from '../test/testbed/index.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const secrets = Number(process.env['PLAYGROUND_SECRETS'] ?? 3000);
const say = (line = '') => process.stderr.write(`${line}\n`);

let tb: Testbed | undefined;
let stopping: Promise<void> | undefined;
const cleanup = (code: number) => {
	stopping ??= (async () => {
		if (tb) {
			say('Stopping the playground control plane...');
			await tb.stop().catch((error: unknown) => say(`cleanup problem: ${String(error)}`));
			say('Stopped; nothing left behind.');
		}
		process.exit(code);
	})();
	return stopping;
};
// Ctrl-C belongs to the wizard while it runs (it gets the SIGINT too and decides what to do);
// this process waits for it to exit and then cleans up.
process.on('SIGINT', () => {
	if (!tb) void cleanup(130);
});
process.on('SIGTERM', () => void cleanup(143));
process.on('SIGHUP', () => void cleanup(129));

say(`Starting a real control plane (etcd 3.4 + kube-apiserver 1.20.2, ${secrets} secrets) in private namespaces...`);
try {
	tb = await startTestbed({secrets, log: (line) => say(`  ${line}`)});
} catch (error) {
	say(error instanceof Error ? error.message : String(error));
	await cleanup(1);
}
const bed = tb!;
say();
say(`Control plane ready in ${(bed.timings['total']! / 1000).toFixed(1)} s: node ${bed.nodeName} (${bed.nodeIp}), apiserver ${bed.apiserverUrl}`);
say(`Inside the playground /etc/kubernetes, /var/lib/etcd and /var/lib/etcd-harden are temporary (${bed.dir}).`);
say(`Pod logs: ${path.join(bed.dir, 'log')}/{kube-apiserver,etcd,kubelet}.log`);
say();

const env = {KUBECONFIG: bed.kubeconfig, ETCDCTL_API: '3'};
const run = async (argv: string[]): Promise<number> => {
	// pidNamespace: false -> nsenter execs the command itself, so it owns the terminal and its signals.
	const [cmd, ...args] = bed.nsenterArgv(argv, {cwd: repo, pidNamespace: false});
	const r = await execa(cmd!, args, {stdio: 'inherit', reject: false, env});
	return r.exitCode ?? (r.signal ? 128 : 1);
};

const code = await run([process.execPath, path.join(repo, 'dist', 'cli.js'), ...process.argv.slice(2)]);
say();
say(`etcd-harden exited with code ${code}.`);
const sample = seededSecret(0, 3);
const raw = await bed.etcdctl(['get', `/registry/secrets/${sample.namespace}/${sample.name}`, '--print-value-only'], {encoding: 'buffer', reject: false});
const bytes = Buffer.from(raw.stdout as unknown as Uint8Array);
const prefix = bytes.subarray(0, 40).toString('latin1').replace(/[^\x20-\x7e]/g, '.');
say(`Raw etcd value of ${sample.namespace}/${sample.name} starts with: ${prefix}`);
say(bytes.subarray(0, 8).toString('latin1').startsWith('k8s:enc:') ? '  -> encrypted at rest' : '  -> plaintext (not encrypted at rest)');
if (process.env['PLAYGROUND_SHELL'] === '1') {
	say('A shell inside the playground (kubectl, etcdctl and the real paths work); exit to clean up.');
	await run(['/bin/bash', '-i']);
}
await cleanup(code);

// A second control-plane "node" inside a running testbed, for HA tests: its own kubelet
// stand-in in a nested mount namespace where /etc/kubernetes and /var/lib/etcd-harden are
// node 2's own directories, running a second kube-apiserver on another port against the same
// etcd. Tools run "on node 2" with exec(), so they see node 2's files at the real default
// paths. See README.md ("A second control plane").
import {readdir, readFile, readlink} from 'node:fs/promises';
import path from 'node:path';
import type {ResultPromise} from 'execa';
import type {ExecOptions, Testbed} from './index.js';
import type {KubeletConfig} from './kubelet.js';
import {POD_BINARIES, REPO_ROOT} from './paths.js';

export interface SecondApiserver {
	readonly nodeName: string;
	readonly port: number;
	/** Where node 2's files live, seen from node 1 (and from the test through tb.readFile). */
	readonly dir: string;
	/**
	 * PID (in the testbed's PID namespace) of the node's kubelet stand-in: its mount namespace
	 * is the node's (nsenter -t PID -m, Ansible's community.docker.nsenter connection);
	 * SIGSTOP to it stops the node restarting its pods (a node that fails its restart gate).
	 */
	readonly pid: number;
	/** Run a command on node 2: inside the testbed, in node 2's mount namespace. */
	exec<O extends ExecOptions = {}>(argv: string[], opts?: O): ResultPromise<O>;
	/** GET /readyz of node 2's apiserver returns 200. */
	isReady(): Promise<boolean>;
	/**
	 * Stop the node's kubelet stand-in (SIGSTOP): its running pods go on, but a manifest change
	 * restarts nothing, so a restart gate on this node times out. `resume()` continues it and
	 * the nsenter that launched it (nsenter stops itself when its child stops).
	 */
	pause(): Promise<void>;
	resume(): Promise<void>;
	/** How many times node 2's kubelet has started its apiserver. */
	starts(): Promise<number>;
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/**
 * Start node 2 from node 1's current files: PKI, encryption config directory and the
 * kube-apiserver manifest (port 6443 -> `port`), an admin.conf for `port`, and a Node
 * object `nodeName` with the control-plane role. Resolves when its apiserver passes /readyz.
 */
export async function startSecondApiserver(tb: Testbed, opts: {nodeName?: string; port?: number; readyTimeoutMs?: number} = {}): Promise<SecondApiserver> {
	const nodeName = opts.nodeName ?? 'cp-2';
	const port = opts.port ?? 6444;
	const dir = `/var/lib/testbed/${nodeName}`;
	const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
	await tb.exec(
		[
			'/bin/sh',
			'-c',
			[
				'set -e',
				`mkdir -p ${dir}/kubernetes/manifests ${dir}/etcd-harden ${dir}/state ${dir}/log ${dir}/stage`,
				`cp -a /etc/kubernetes/pki ${dir}/kubernetes/pki`,
				`if [ -d /etc/kubernetes/enc ]; then cp -a /etc/kubernetes/enc ${dir}/kubernetes/enc; fi`,
				`sed 's#:6443$#:${port}#' /etc/kubernetes/admin.conf > ${dir}/kubernetes/admin.conf`,
				`chmod 600 ${dir}/kubernetes/admin.conf`,
			].join('\n'),
		],
		{stdin: 'ignore'},
	);
	const manifest = (await tb.readFile('/etc/kubernetes/manifests/kube-apiserver.yaml', 'utf8'))
		.replace('--secure-port=6443', `--secure-port=${port}`)
		.replaceAll('port: 6443', `port: ${port}`)
		.replace(/(advertise-address\.endpoint: [\d.]+):6443/, `$1:${port}`);
	await tb.writeFile(`${dir}/kubernetes/manifests/kube-apiserver.yaml`, manifest, {mode: 0o600});

	const config: KubeletConfig = {
		manifestDir: '/etc/kubernetes/manifests',
		logDir: `${dir}/log`,
		stateDir: `${dir}/state`,
		stageDir: `${dir}/stage`,
		binaries: POD_BINARIES,
		hiddenRoots: ['/etc/kubernetes', '/var/lib/etcd', '/var/lib/etcd-harden'],
		nodeName,
		initialBackoffMs: 1000,
		maxBackoffMs: 8000,
	};
	const launch = [
		'set -e',
		`mount --bind ${q(`${dir}/kubernetes`)} /etc/kubernetes`,
		`mount --bind ${q(`${dir}/etcd-harden`)} /var/lib/etcd-harden`,
		`echo $$ > ${q(`${dir}/pid`)}`,
		`exec ${q(process.execPath)} --import tsx ${q(path.join(REPO_ROOT, 'test', 'testbed', 'kubelet.ts'))} ${q(JSON.stringify(config))} >> ${q(`${dir}/log/kubelet.log`)} 2>&1`,
	].join('\n');
	const kubelet = tb.exec(['unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', launch], {cwd: REPO_ROOT, stdin: 'ignore', reject: false});
	void kubelet.catch(() => {});

	let pid = '';
	for (let i = 0; i < 200 && !pid; i++) {
		pid = (await tb.readFile(`${dir}/pid`, 'utf8').catch(() => '')).trim();
		if (!pid) await sleep(50);
	}
	if (!pid) throw new Error(`node ${nodeName}: its kubelet did not start`);
	const exec = <O extends ExecOptions = {}>(argv: string[], o?: O): ResultPromise<O> => tb.exec(['nsenter', '-t', pid, '-m', '--', ...argv], o);
	const isReady = async (): Promise<boolean> => {
		const result = await tb.exec(
			['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', '--cacert', '/etc/kubernetes/pki/ca.crt', `https://127.0.0.1:${port}/readyz`],
			{reject: false, stdin: 'ignore'},
		);
		return result.stdout === '200';
	};
	const deadline = Date.now() + (opts.readyTimeoutMs ?? 120_000);
	while (!(await isReady())) {
		if (Date.now() > deadline) throw new Error(`node ${nodeName}: kube-apiserver on port ${port} not ready:\n${(await tb.readFile(`${dir}/log/kube-apiserver.log`, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n')}`);
		await sleep(250);
	}
	/** The host PIDs of the kubelet stand-in and of its parent (the nsenter of tb.exec, outside the testbed's PID namespace). */
	const hostPids = async (): Promise<{self: number; parent: number}> => {
		for (const entry of await readdir('/proc')) {
			if (!/^\d+$/.test(entry)) continue;
			const status = await readFile(`/proc/${entry}/status`, 'utf8').catch(() => '');
			const nspid = /^NSpid:\s+(.+)$/m.exec(status)?.[1]?.trim().split(/\s+/);
			if (!nspid || nspid.length < 2 || nspid.at(-1) !== pid) continue;
			if ((await readlink(`/proc/${entry}/ns/pid`).catch(() => '')) !== tb.namespaces.pid) continue;
			return {self: Number(entry), parent: Number(/^PPid:\s+(\d+)$/m.exec(status)?.[1] ?? 0)};
		}
		throw new Error(`node ${nodeName}: its kubelet (pid ${pid} in the testbed) is not running`);
	};
	const node = {
		apiVersion: 'v1',
		kind: 'Node',
		metadata: {name: nodeName, labels: {'node-role.kubernetes.io/control-plane': '', 'node-role.kubernetes.io/master': '', 'kubernetes.io/hostname': nodeName}},
	};
	await tb.kubectl(['apply', '-f', '-'], {input: JSON.stringify(node)});
	return {
		nodeName,
		port,
		dir,
		pid: Number(pid),
		exec,
		isReady,
		pause: async () => {
			process.kill((await hostPids()).self, 'SIGSTOP');
		},
		resume: async () => {
			const {self, parent} = await hostPids();
			if (parent > 1) process.kill(parent, 'SIGCONT');
			process.kill(self, 'SIGCONT');
		},
		starts: async () => {
			const text = await tb.readFile(`${dir}/state/kube-apiserver.json`, 'utf8').catch(() => '');
			return text ? (JSON.parse(text) as {starts: number}).starts : 0;
		},
	};
}

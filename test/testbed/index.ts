// A real kubeadm-shaped control plane (etcd + kube-apiserver 1.20.2) in private mount, network and
// PID namespaces, for e2e tests, benchmarks and the playground. See README.md in this directory.
import {existsSync} from 'node:fs';
import {mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, writeFile} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import {execa, type Options as ExecaOptions, type ResultPromise, type Result} from 'execa';
import {assertProvisioned, defaultEtcdVersion, ETCD35_BIN_DIR, ETCD_BIN, KUBE_APISERVER_BIN, POD_BINARIES, REPO_ROOT, type EtcdVersion} from './paths.js';
import {generatePki} from './pki.js';
import {adminKubeconfig, clusterConfiguration, clusterStatus, etcdManifest, kubeApiserverManifest} from './manifests.js';
import type {KubeletConfig, PodState} from './kubelet.js';
import type {SeedRequest} from './seed.js';
import {seededConfigMap, seededSecret, seedNamespaces} from './seed-data.js';

export {storedValueCounts} from './raw-values.js';
export {seededConfigMap, seededSecret, seedNamespaces, seedNamespace} from './seed-data.js';
export type {SeededObject, SeedCounts} from './seed-data.js';
export type {PodState} from './kubelet.js';
export {missingComponents, assertProvisioned, TestbedNotProvisionedError, KUBE_APISERVER_BIN, ETCD_BIN, PROVISION_SCRIPT, ETCD_VERSIONS, defaultEtcdVersion, type EtcdVersion} from './paths.js';
export {etcdManifest, kubeApiserverManifest, clusterConfiguration} from './manifests.js';

export interface TestbedOptions {
	/** Secrets to seed (default 3000). */
	secrets?: number;
	/** ConfigMaps to seed (default 300). */
	configMaps?: number;
	/** Namespaces the seeded objects are spread across (default 3: seed-0, seed-1, seed-2). */
	namespaces?: number;
	/** Node name (default "cp-1"). */
	nodeName?: string;
	/** The node's address inside the network namespace, on a dummy eth0 (default 10.0.0.10). */
	nodeIp?: string;
	/** How long to wait for the apiserver to become ready (default 120 s). */
	readyTimeoutMs?: number;
	/** Progress lines; default: printed to stderr when TESTBED_LOG=1. */
	log?: (line: string) => void;
	/** Kubelet stand-in crash back-off (defaults 1000 / 8000 ms). */
	backoff?: {initialMs?: number; maxMs?: number};
	/**
	 * The etcd release (default: ETCD_HARDEN_TEST_ETCD, else 3.4). 3.5 bind-mounts the cached
	 * trixie binaries over /usr/bin/etcd and /usr/bin/etcdctl inside the testbed, and puts all three
	 * (etcd, etcdctl, etcdutl) on /usr/local/sbin, first on PATH: the pod and the tool both get 3.5.
	 */
	etcdVersion?: EtcdVersion;
}

export interface EtcdConnection {
	endpoints: string[];
	/** Paths inside the namespace. */
	cacert: string;
	cert: string;
	key: string;
}

/** execa options; `cwd` is a directory inside the namespace (default /). */
export type ExecOptions = ExecaOptions;

export interface StopReport {
	leftoverProcesses: number[];
	leftoverMounts: string[];
	dirRemoved: boolean;
}

export interface Testbed {
	/** Host temp directory holding everything (removed by stop()). */
	readonly dir: string;
	/** Host PID of the namespace holder (PID 1 of the testbed's PID namespace). */
	readonly pid: number;
	/** Namespace identities (e.g. "net:[4026532...]") for leak checks. */
	readonly namespaces: {mnt: string; net: string; pid: string};
	readonly nodeName: string;
	readonly nodeIp: string;
	/** admin.conf path inside the namespace: /etc/kubernetes/admin.conf. */
	readonly kubeconfig: string;
	readonly apiserverUrl: string;
	readonly etcd: EtcdConnection;
	/** The etcd release this testbed runs (see TestbedOptions.etcdVersion). */
	readonly etcdVersion: EtcdVersion;
	readonly seeded: {secrets: number; configMaps: number; namespaces: string[]};
	/** Durations (ms) of the start phases. */
	readonly timings: Record<string, number>;
	/** Host-side path of a path inside the namespace (/proc/<pid>/root/...). */
	hostPath(p: string): string;
	/**
	 * The nsenter argv that runs `argv` inside the namespaces. With pidNamespace: false (default true)
	 * nsenter execs the command directly (no intermediate process), so signals and exit status are
	 * the command's own; the process then stays in the host PID namespace.
	 */
	nsenterArgv(argv: string[], opts?: {cwd?: string; pidNamespace?: boolean}): string[];
	/** Run a command inside the namespaces (execa; rejects on non-zero exit unless reject: false). */
	exec<O extends ExecOptions = {}>(argv: string[], opts?: O): ResultPromise<O>;
	kubectl<O extends ExecOptions = {}>(args: string[], opts?: O): ResultPromise<O>;
	etcdctl<O extends ExecOptions = {}>(args: string[], opts?: O): ResultPromise<O>;
	readFile(p: string): Promise<Buffer>;
	readFile(p: string, encoding: BufferEncoding): Promise<string>;
	/** Write a file inside the namespace; atomic (dot-file + rename) unless atomic: false. */
	writeFile(p: string, data: string | Uint8Array, opts?: {mode?: number; atomic?: boolean}): Promise<void>;
	/** The pod's log (all starts, with the kubelet stand-in's own lines); '' before the first start. */
	podLog(name: string): Promise<string>;
	/** How many times the kubelet stand-in has started the pod's process (0 if never). */
	podStarts(name: string): Promise<number>;
	podState(name: string): Promise<PodState | undefined>;
	/** Wait until the pod has been started at least `starts` times. */
	waitForPodStarts(name: string, starts: number, timeoutMs?: number): Promise<PodState>;
	/** GET /readyz of the apiserver returns 200. */
	isReady(): Promise<boolean>;
	waitForReady(timeoutMs?: number): Promise<void>;
	/** Kill everything in the namespaces, remove the temp dir, verify nothing is left (throws if so). */
	stop(): Promise<StopReport>;
}

const STATE_DIR = '/var/lib/testbed/pods';
const LOG_DIR = '/var/log/testbed';
const PKI = '/etc/kubernetes/pki';
const TMP_PREFIX = 'etcd-harden-testbed-';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function defaultLog(line: string): void {
	if (process.env['TESTBED_LOG'] === '1') process.stderr.write(`[testbed] ${line}\n`);
}

/** Remove temp dirs of testbeds whose holder process is gone (a crashed test run). */
async function removeStale(): Promise<void> {
	const tmp = os.tmpdir();
	for (const entry of await readdir(tmp).catch(() => [] as string[])) {
		if (!entry.startsWith(TMP_PREFIX)) continue;
		const dir = path.join(tmp, entry);
		try {
			const info = JSON.parse(await readFile(path.join(dir, 'holder.json'), 'utf8')) as {unsharePid: number};
			if (existsSync(`/proc/${info.unsharePid}`)) continue;
		} catch {
			// no holder.json: a start that died before the holder existed
		}
		await rm(dir, {recursive: true, force: true}).catch(() => {});
	}
}

async function childPidOf(pid: number, timeoutMs: number): Promise<number> {
	const deadline = Date.now() + timeoutMs;
	while (Date.now() < deadline) {
		const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
		const first = children.trim().split(/\s+/)[0];
		if (first) return Number(first);
		await sleep(10);
	}
	throw new Error(`process ${pid} did not start its child`);
}

/** Host PIDs of every process in the given network namespace. */
async function processesInNetns(netns: string): Promise<number[]> {
	const pids: number[] = [];
	for (const entry of await readdir('/proc')) {
		if (!/^\d+$/.test(entry)) continue;
		const ns = await readlink(`/proc/${entry}/ns/net`).catch(() => '');
		if (ns === netns) pids.push(Number(entry));
	}
	return pids;
}

/** PATH with /usr/local/sbin first (where a 3.5 testbed puts etcd, etcdctl and etcdutl). */
function pathWithLocalSbin(): string {
	const dirs = (process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').filter(dir => dir !== '/usr/local/sbin');
	return ['/usr/local/sbin', ...dirs].join(':');
}

export async function startTestbed(opts: TestbedOptions = {}): Promise<Testbed> {
	const etcdVersion = opts.etcdVersion ?? defaultEtcdVersion();
	assertProvisioned(etcdVersion);
	const log = opts.log ?? defaultLog;
	const nodeName = opts.nodeName ?? 'cp-1';
	const nodeIp = opts.nodeIp ?? '10.0.0.10';
	const counts = {secrets: opts.secrets ?? 3000, configMaps: opts.configMaps ?? 300, namespaces: opts.namespaces ?? 3};
	const timings: Record<string, number> = {};
	const t0 = Date.now();
	let mark = t0;
	const phase = (name: string) => {
		const now = Date.now();
		timings[name] = now - mark;
		mark = now;
		log(`${name}: ${timings[name]} ms`);
	};

	await removeStale();
	const dir = await mkdtemp(path.join(os.tmpdir(), TMP_PREFIX));
	const d = (...p: string[]) => path.join(dir, ...p);
	const binds: Array<[string, string]> = [
		[d('etc-kubernetes'), '/etc/kubernetes'],
		[d('var-lib-etcd-harden'), '/var/lib/etcd-harden'],
		[d('var-lib-etcd'), '/var/lib/etcd'],
		[d('log'), LOG_DIR],
		[d('state'), '/var/lib/testbed'],
	];
	const overlays = ['/etc', '/var/lib', '/var/log'];
	for (const [src] of binds) await mkdir(src, {recursive: true, mode: 0o755});
	for (const o of overlays) {
		await mkdir(d('overlay', o.slice(1).replaceAll('/', '-'), 'upper'), {recursive: true});
		await mkdir(d('overlay', o.slice(1).replaceAll('/', '-'), 'work'), {recursive: true});
	}
	await mkdir(d('etc-kubernetes', 'manifests'), {recursive: true});
	await mkdir(d('var-lib-etcd'), {recursive: true, mode: 0o700});

	// The holder: PID 1 of a new PID namespace, in new mount and network namespaces. It exits when its
	// stdin closes (stop(), or this process dying for any reason), and the kernel then kills every
	// process in the PID namespace; the mount namespace and its mounts go with the last of them.
	const holder = execa(
		'unshare',
		['--mount', '--net', '--pid', '--fork', '--kill-child', '--mount-proc', '--propagation', 'private', '--', '/bin/sh', '-c', 'read _ignored; exit 0'],
		{stdin: 'pipe', stdout: 'ignore', stderr: 'pipe', reject: false},
	);
	const unsharePid = holder.pid!;
	let holderPid = 0;
	let kubelet: ResultPromise | undefined;
	let stopped: Promise<StopReport> | undefined;
	let nsIds = {mnt: '', net: '', pid: ''};

	const nsenterArgv = (argv: string[], o: {cwd?: string; pidNamespace?: boolean} = {}) => [
		'nsenter',
		'-t',
		String(holderPid),
		'-m',
		'-n',
		...(o.pidNamespace === false ? [] : ['-p']),
		`--wd=${o.cwd ?? '/'}`,
		'--',
		...argv,
	];
	const exec = <O extends ExecOptions = {}>(argv: string[], o?: O): ResultPromise<O> => {
		const {cwd, ...rest} = (o ?? {}) as ExecOptions;
		const [cmd, ...args] = nsenterArgv(argv, {cwd: typeof cwd === 'string' ? cwd : '/'});
		const env = {PATH: pathWithLocalSbin(), ...(rest.env ?? {})};
		return execa(cmd!, args, {...rest, env, cwd: '/'}) as unknown as ResultPromise<O>;
	};
	const hostPath = (p: string) => `/proc/${holderPid}/root${path.posix.resolve('/', p)}`;

	const stop = (): Promise<StopReport> => {
		stopped ??= (async () => {
			holder.stdin?.end();
			const killer = setTimeout(() => holder.kill('SIGKILL'), 5000);
			await holder;
			clearTimeout(killer);
			await kubelet?.catch(() => {});
			let leftoverProcesses: number[] = [];
			for (let i = 0; i < 100; i++) {
				leftoverProcesses = nsIds.net ? await processesInNetns(nsIds.net) : [];
				if (leftoverProcesses.length === 0) break;
				await sleep(50);
			}
			const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
			const leftoverMounts = mountinfo.split('\n').filter((l) => l.includes(dir));
			for (let i = 0; i < 20; i++) {
				await rm(dir, {recursive: true, force: true}).catch(() => {});
				if (!existsSync(dir)) break;
				await sleep(100);
			}
			const report = {leftoverProcesses, leftoverMounts, dirRemoved: !existsSync(dir)};
			log(`stopped: ${JSON.stringify(report)}`);
			if (report.leftoverProcesses.length || report.leftoverMounts.length || !report.dirRemoved) {
				throw new Error(`testbed stop left things behind: ${JSON.stringify(report)}`);
			}
			return report;
		})();
		return stopped;
	};

	try {
		holderPid = await childPidOf(unsharePid, 5000);
		await writeFile(d('holder.json'), JSON.stringify({unsharePid, holderPid}) + '\n');
		// Wait until the holder is in its own namespaces (unshare sets them up before forking).
		for (const ns of ['mnt', 'net', 'pid'] as const) nsIds[ns] = await readlink(`/proc/${holderPid}/ns/${ns}`);
		const selfNet = await readlink('/proc/self/ns/net');
		if (nsIds.net === selfNet) throw new Error('holder is not in a new network namespace');

		const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
		const setup = ['set -e', 'ip link set lo up'];
		if (nodeIp !== '127.0.0.1') {
			// The node's "primary interface": a dummy device, or a veth pair where that module is missing.
			setup.push(
				'ip link add eth0 type dummy 2>/dev/null || { ip link add eth0 type veth peer name eth0-peer && ip link set eth0-peer up; }',
				`ip addr add ${nodeIp}/24 dev eth0`,
				'ip link set eth0 up',
			);
		}
		for (const o of overlays) {
			const od = d('overlay', o.slice(1).replaceAll('/', '-'));
			setup.push(`mount -t overlay testbed-overlay -o ${q(`lowerdir=${o},upperdir=${od}/upper,workdir=${od}/work`)} ${q(o)}`);
		}
		for (const [src, target] of binds) setup.push(`mkdir -p ${q(target)}`, `mount --bind ${q(src)} ${q(target)}`);
		if (etcdVersion === '3.5') {
			setup.push(`mount --bind ${q(ETCD35_BIN_DIR)} /usr/local/sbin`);
			for (const name of ['etcd', 'etcdctl']) setup.push(`mount --bind ${q(path.join(ETCD35_BIN_DIR, name))} ${q(`/usr/bin/${name}`)}`);
		}
		setup.push(`mkdir -p /var/lib/testbed/stage ${STATE_DIR}`);
		// Where a real kubelet keeps pod logs, so the tool's restart gate finds the apiserver's
		// log with its production default (/var/log/pods/<ns>_<pod>_<uid>/<container>/N.log).
		for (const pod of ['kube-apiserver', 'etcd']) {
			const dir = `/var/log/pods/kube-system_${pod}-${nodeName}_testbed/${pod}`;
			setup.push(`mkdir -p ${q(dir)}`, `ln -sfn ${q(`${LOG_DIR}/${pod}.log`)} ${q(`${dir}/0.log`)}`);
		}
		// A private /tmp, so nothing run inside leaves temp files on the host.
		// A checkout under /tmp (a CI clone, say) would vanish under that tmpfs, and with it the
		// kubelet stand-in and the tool: keep it visible at its own path.
		const repoUnderTmp = REPO_ROOT === '/tmp' || REPO_ROOT.startsWith('/tmp/');
		if (repoUnderTmp) setup.push('mkdir -p /var/lib/testbed/repo', `mount --bind ${q(REPO_ROOT)} /var/lib/testbed/repo`);
		setup.push('mount -t tmpfs -o mode=1777 testbed-tmp /tmp');
		if (repoUnderTmp) setup.push(`mkdir -p ${q(REPO_ROOT)}`, `mount --bind /var/lib/testbed/repo ${q(REPO_ROOT)}`);
		await exec(['/bin/sh', '-c', setup.join('\n')], {stdin: 'ignore'});
		// The release asked for is the one the pod and the tool get, or the testbed does not start.
		const versions = await exec(['/bin/sh', '-c', 'etcd --version; /usr/bin/etcd --version; etcdctl version'], {stdin: 'ignore', reject: false});
		const seen = [...String(versions.stdout).matchAll(/(?:etcd Version|etcdctl version): (\d+\.\d+)\./g)].map(m => m[1]);
		if (seen.length !== 3 || seen.some(v => v !== etcdVersion)) {
			throw new Error(`testbed asked for etcd ${etcdVersion} but runs ${seen.join(', ') || 'no etcd'}:\n${versions.stdout}${versions.stderr}`);
		}
		phase('namespaces');

		const creds = await generatePki(d('etc-kubernetes', 'pki'), {nodeName, nodeIp});
		const apiserverUrl = `https://${nodeIp}:6443`;
		await writeFile(d('etc-kubernetes', 'admin.conf'), adminKubeconfig(apiserverUrl, creds), {mode: 0o600});
		phase('pki');

		await writeFile(d('etc-kubernetes', 'manifests', 'etcd.yaml'), etcdManifest({nodeName, nodeIp}), {mode: 0o600});
		await writeFile(d('etc-kubernetes', 'manifests', 'kube-apiserver.yaml'), kubeApiserverManifest({nodeName, nodeIp}), {mode: 0o600});
		const kubeletConfig: KubeletConfig = {
			manifestDir: '/etc/kubernetes/manifests',
			logDir: LOG_DIR,
			stateDir: STATE_DIR,
			stageDir: '/var/lib/testbed/stage',
			binaries: POD_BINARIES,
			hiddenRoots: ['/etc/kubernetes', '/var/lib/etcd', '/var/lib/etcd-harden'],
			nodeName,
			initialBackoffMs: opts.backoff?.initialMs ?? 1000,
			maxBackoffMs: opts.backoff?.maxMs ?? 8000,
		};
		const kubeletLog = {file: d('log', 'kubelet.log'), append: true} as const;
		kubelet = exec([process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'test', 'testbed', 'kubelet.ts'), JSON.stringify(kubeletConfig)], {
			cwd: REPO_ROOT,
			stdin: 'ignore',
			stdout: kubeletLog,
			stderr: kubeletLog,
			reject: false,
		});
		void kubelet.catch(() => {});

		const etcd: EtcdConnection = {
			endpoints: ['https://127.0.0.1:2379'],
			cacert: `${PKI}/etcd/ca.crt`,
			cert: `${PKI}/etcd/healthcheck-client.crt`,
			key: `${PKI}/etcd/healthcheck-client.key`,
		};

		const isReady = async (): Promise<boolean> => {
			const r = await exec(
				['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', '--cacert', `${PKI}/ca.crt`, `https://127.0.0.1:6443/readyz`],
				{reject: false, stdin: 'ignore'},
			);
			return r.stdout === '200';
		};
		const waitForReady = async (timeoutMs = 120_000): Promise<void> => {
			const deadline = Date.now() + timeoutMs;
			while (Date.now() < deadline) {
				if (await isReady()) return;
				await sleep(250);
			}
			const tail = async (name: string) => (await readFile(d('log', `${name}.log`), 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
			throw new Error(
				`kube-apiserver not ready after ${timeoutMs} ms.\n--- kube-apiserver.log ---\n${await tail('kube-apiserver')}\n--- etcd.log ---\n${await tail('etcd')}\n--- kubelet.log ---\n${await tail('kubelet')}`,
			);
		};
		await waitForReady(opts.readyTimeoutMs ?? 120_000);
		phase('control plane ready');

		const seedRequest: SeedRequest = {
			kubeconfig: '/etc/kubernetes/admin.conf',
			...counts,
			kubeadmConfig: {ClusterConfiguration: clusterConfiguration(), ClusterStatus: clusterStatus({nodeName, nodeIp})},
			nodeName,
			nodeIp,
		};
		await exec([process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'test', 'testbed', 'seed.ts'), JSON.stringify(seedRequest)], {
			cwd: REPO_ROOT,
			stdin: 'ignore',
		});
		phase(`seeded ${counts.secrets} secrets, ${counts.configMaps} configmaps`);
		timings['total'] = Date.now() - t0;
		log(`testbed ready in ${timings['total']} ms (dir ${dir}, holder pid ${holderPid})`);

		const podState = async (name: string): Promise<PodState | undefined> => {
			const text = await readFile(d('state', 'pods', `${name}.json`), 'utf8').catch(() => undefined);
			return text ? (JSON.parse(text) as PodState) : undefined;
		};

		const testbed: Testbed = {
			dir,
			pid: holderPid,
			namespaces: nsIds,
			nodeName,
			nodeIp,
			kubeconfig: '/etc/kubernetes/admin.conf',
			apiserverUrl,
			etcd,
			etcdVersion,
			seeded: {secrets: counts.secrets, configMaps: counts.configMaps, namespaces: seedNamespaces(counts.namespaces)},
			timings,
			hostPath,
			nsenterArgv,
			exec,
			kubectl: (args, o) => exec(['kubectl', '--kubeconfig', '/etc/kubernetes/admin.conf', ...args], o),
			etcdctl: <O extends ExecOptions = {}>(args: string[], o?: O) =>
				exec(['etcdctl', `--endpoints=${etcd.endpoints.join(',')}`, `--cacert=${etcd.cacert}`, `--cert=${etcd.cert}`, `--key=${etcd.key}`, ...args], {
					...o,
					env: {ETCDCTL_API: '3', ...(o?.env ?? {})},
				}) as unknown as ResultPromise<O>,
			readFile: ((p: string, encoding?: BufferEncoding) => readFile(hostPath(p), encoding as BufferEncoding)) as Testbed['readFile'],
			writeFile: async (p, data, o = {}) => {
				const target = hostPath(p);
				if (o.atomic === false) {
					await writeFile(target, data, o.mode === undefined ? {} : {mode: o.mode});
					return;
				}
				const tmp = path.join(path.dirname(target), `.${path.basename(target)}.testbed-tmp`);
				await writeFile(tmp, data, {mode: o.mode ?? 0o600});
				await rename(tmp, target);
			},
			podLog: async (name) => readFile(d('log', `${name}.log`), 'utf8').catch(() => ''),
			podStarts: async (name) => (await podState(name))?.starts ?? 0,
			podState,
			waitForPodStarts: async (name, starts, timeoutMs = 30_000) => {
				const deadline = Date.now() + timeoutMs;
				while (Date.now() < deadline) {
					const s = await podState(name);
					if (s && s.starts >= starts) return s;
					await sleep(100);
				}
				throw new Error(`pod ${name} did not reach ${starts} starts within ${timeoutMs} ms (now ${(await podState(name))?.starts ?? 0})`);
			},
			isReady,
			waitForReady,
			stop,
		};
		return testbed;
	} catch (error) {
		await stop().catch(() => {});
		throw error;
	}
}

export type {Result as ExecResult};

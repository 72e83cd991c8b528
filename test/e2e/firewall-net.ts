/**
 * Three hosts for the firewall tests, each its own network namespace (`ip netns add`), joined
 * by veth pairs to a bridge in a fourth "switch" namespace:
 *   cp       10.77.0.1 / fd77::1  the control plane: etcd member "cp" with TLS, the tool runs here
 *   peer     10.77.0.2 / fd77::2  etcd member "peer" (an allowed peer)
 *   outsider 10.77.0.3 / fd77::3  no business with etcd
 * The two members form one real etcd cluster (Debian's /usr/bin/etcd, mutual TLS on client and
 * peer ports). The tool runs in cp with private overlays on /etc and /var/lib, so it uses its
 * real default paths (/etc/kubernetes, /var/lib/etcd-harden, /etc/nftables.conf) without
 * touching the machine's. Nothing here touches the host's own network or firewall.
 */
import {spawn, type ChildProcess} from 'node:child_process';
import {mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {execa} from 'execa';
import {defaultEtcdVersion, ETCD35_BIN_DIR} from '../testbed/paths.js';
import {generatePki} from '../testbed/pki.js';
import {etcdManifest, kubeApiserverManifest} from '../testbed/manifests.js';

export const hosts = {
	cp: {v4: '10.77.0.1', v6: 'fd77::1'},
	peer: {v4: '10.77.0.2', v6: 'fd77::2'},
	outsider: {v4: '10.77.0.3', v6: 'fd77::3'},
} as const;
export type HostName = keyof typeof hosts;

export type Net = {
	dir: string;
	ns: Record<HostName | 'sw', string>;
	pki: string;
	/** Run a command in a host's namespace (no shell). */
	exec(host: HostName, argv: string[], options?: {input?: string}): Promise<{exitCode: number; stdout: string; stderr: string}>;
	/** A full TLS handshake (client certificate, server verified against the etcd CA) from `from` to addr:port. */
	tls(from: HostName, address: string, port: number): Promise<boolean>;
	/** node dist/cli.js ARGS in cp, with /etc and /var/lib overlaid. */
	tool(args: string[]): Promise<{exitCode: number; stdout: string; stderr: string}>;
	/** The argv of `tool` (to run it in a terminal). */
	toolArgv(args: string[]): string[];
	/** A file the tool wrote under /etc or /var/lib (the overlay's upper dir), or undefined. */
	upper(nodePath: string): string;
	/** `etcdctl endpoint health` for both members, from cp. */
	etcdHealthy(): Promise<boolean>;
	/** SIGKILL a member's etcd and wait until it has exited (a crash). */
	killMember(member: 'cp' | 'peer'): Promise<void>;
	/** Start a member's etcd again on its data directory (what the kubelet does after a crash). */
	startMember(member: 'cp' | 'peer'): void;
	/**
	 * Arm a crash at an exact point of the member's work: its etcd is SIGKILLed in the same tick
	 * its log shows a line matching `pattern` (its pid looked up now, nothing async in between).
	 * `crashed` resolves with what it logged since arming (up to the kill) once it has exited;
	 * `disarm` cancels.
	 */
	crashOnLog(member: 'cp' | 'peer', pattern: RegExp): Promise<{crashed: Promise<string>; disarm(): void}>;
	stop(): Promise<void>;
};

const repo = path.resolve(import.meta.dirname, '../..');

async function sh(argv: string[], input?: string): Promise<{exitCode: number; stdout: string; stderr: string}> {
	const result = await execa(argv[0]!, argv.slice(1), {reject: false, input, stdin: input === undefined ? 'ignore' : 'pipe'});
	return {exitCode: result.exitCode ?? 1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

async function must(argv: string[]): Promise<string> {
	const result = await sh(argv);
	if (result.exitCode !== 0) throw new Error(`${argv.join(' ')} exited ${result.exitCode}: ${result.stderr}`);
	return result.stdout;
}

/** A certificate for both members (server and peer), signed by the testbed PKI's etcd CA. */
async function memberCert(pki: string): Promise<void> {
	const ips = [hosts.cp.v4, hosts.peer.v4, hosts.cp.v6, hosts.peer.v6, '127.0.0.1', '::1'];
	const cnf = path.join(pki, '.member.cnf');
	await writeFile(
		cnf,
		`[req]\ndistinguished_name = dn\n[dn]\n[leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = DNS:localhost,${ips.map(ip => `IP:${ip}`).join(',')}\n`,
	);
	await must([
		'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(pki, 'etcd/member.key'), '-out', path.join(pki, 'etcd/member.crt'),
		'-subj', '/CN=etcd-member', '-config', cnf, '-days', '30', '-CA', path.join(pki, 'etcd/ca.crt'), '-CAkey', path.join(pki, 'etcd/ca.key'), '-extensions', 'leaf',
	]);
	await rm(cnf);
}

// The etcd release under test (ETCD_HARDEN_TEST_ETCD, see test/testbed/paths.ts): 3.5 runs the
// cached trixie binaries, and the tool finds them first on PATH.
const ETCD_VERSION = defaultEtcdVersion();
const etcdBinary = (name: 'etcd' | 'etcdctl') => (ETCD_VERSION === '3.5' ? path.join(ETCD35_BIN_DIR, name) : name);
const toolPath = () => (ETCD_VERSION === '3.5' ? [`PATH=${ETCD35_BIN_DIR}:${process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`] : []);

function etcdArgs(name: 'cp' | 'peer', pki: string, dataDir: string): string[] {
	const {v4, v6} = hosts[name];
	const cert = path.join(pki, 'etcd/member.crt');
	const key = path.join(pki, 'etcd/member.key');
	const ca = path.join(pki, 'etcd/ca.crt');
	return [
		etcdBinary('etcd'),
		`--name=${name}`,
		`--data-dir=${dataDir}`,
		`--listen-client-urls=https://127.0.0.1:2379,https://${v4}:2379,https://[${v6}]:2379`,
		`--advertise-client-urls=https://${v4}:2379`,
		`--listen-peer-urls=https://${v4}:2380,https://[${v6}]:2380`,
		`--initial-advertise-peer-urls=https://${v4}:2380`,
		`--initial-cluster=cp=https://${hosts.cp.v4}:2380,peer=https://${hosts.peer.v4}:2380`,
		'--initial-cluster-state=new',
		'--initial-cluster-token=etcd-harden-firewall-test',
		`--cert-file=${cert}`,
		`--key-file=${key}`,
		'--client-cert-auth=true',
		`--trusted-ca-file=${ca}`,
		`--peer-cert-file=${cert}`,
		`--peer-key-file=${key}`,
		'--peer-client-cert-auth=true',
		`--peer-trusted-ca-file=${ca}`,
		'--listen-metrics-urls=http://127.0.0.1:2381',
	];
}

export async function startNet(): Promise<Net> {
	const id = Math.random().toString(36).slice(2, 7);
	const ns = {sw: `ehfw-${id}-sw`, cp: `ehfw-${id}-cp`, peer: `ehfw-${id}-peer`, outsider: `ehfw-${id}-out`};
	const dir = await mkdtemp(path.join(tmpdir(), 'etcd-harden-fw-'));
	const processes: ChildProcess[] = [];
	const created: string[] = [];
	const stop = async (): Promise<void> => {
		for (const child of processes) {
			if (child.exitCode === null && child.signalCode === null) {
				const exited = new Promise<void>(resolve => child.once('exit', () => resolve()));
				child.kill('SIGKILL');
				await exited;
			}
		}
		for (const name of created.reverse()) await sh(['ip', 'netns', 'del', name]);
		await rm(dir, {recursive: true, force: true});
	};
	try {
		for (const name of [ns.sw, ns.cp, ns.peer, ns.outsider]) {
			await must(['ip', 'netns', 'add', name]);
			created.push(name);
			await must(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
		}
		await must(['ip', '-n', ns.sw, 'link', 'add', 'br0', 'type', 'bridge']);
		await must(['ip', '-n', ns.sw, 'link', 'set', 'br0', 'up']);
		for (const host of ['cp', 'peer', 'outsider'] as const) {
			const port = `sw-${host.slice(0, 4)}`;
			await must(['ip', '-n', ns.sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns[host]]);
			await must(['ip', '-n', ns.sw, 'link', 'set', port, 'master', 'br0', 'up']);
			await must(['ip', '-n', ns[host], 'addr', 'add', `${hosts[host].v4}/24`, 'dev', 'eth0']);
			await must(['ip', '-n', ns[host], 'addr', 'add', `${hosts[host].v6}/64`, 'dev', 'eth0', 'nodad']);
			await must(['ip', '-n', ns[host], 'link', 'set', 'eth0', 'up']);
		}

		// The control plane's files: kubeadm PKI, manifests (the apiserver's etcd flags are
		// what the tool connects with), in the upper dir of the /etc overlay.
		const etcUpper = path.join(dir, 'etc/upper');
		const pki = path.join(etcUpper, 'kubernetes/pki');
		for (const sub of ['etc/upper/kubernetes/manifests', 'etc/work', 'varlib/upper', 'varlib/work', 'data-cp', 'data-peer']) {
			await mkdir(path.join(dir, sub), {recursive: true});
		}
		await generatePki(pki, {nodeName: 'cp', nodeIp: hosts.cp.v4});
		await memberCert(pki);
		const identity = {nodeName: 'cp', nodeIp: hosts.cp.v4};
		await writeFile(path.join(etcUpper, 'kubernetes/manifests/etcd.yaml'), etcdManifest(identity));
		await writeFile(path.join(etcUpper, 'kubernetes/manifests/kube-apiserver.yaml'), kubeApiserverManifest(identity));

		const members: Partial<Record<'cp' | 'peer', ChildProcess>> = {};
		/** Per member: called with every chunk of its log (crashOnLog's triggers). */
		const watchers: Record<'cp' | 'peer', Set<(chunk: string) => void>> = {cp: new Set(), peer: new Set()};
		const startMember = (member: 'cp' | 'peer'): void => {
			const child = spawn('ip', ['netns', 'exec', ns[member], ...etcdArgs(member, pki, path.join(dir, `data-${member}`))], {stdio: ['ignore', 'ignore', 'pipe']});
			members[member] = child;
			let log = '';
			child.stderr?.on('data', (chunk: Buffer) => {
				log = (log + chunk.toString()).slice(-4000);
				for (const watch of watchers[member]) watch(chunk.toString());
			});
			child.once('exit', code => {
				if (code !== null && code !== 0 && process.env['FIREWALL_TEST_LOG']) process.stderr.write(`etcd ${member} exited ${code}: ${log}\n`);
			});
			processes.push(child);
		};
		for (const member of ['cp', 'peer'] as const) startMember(member);

		// `ip netns exec` may wait for etcd as its child: signals go to etcd itself, found in the namespace.
		const etcdPids = async (member: 'cp' | 'peer'): Promise<number[]> => {
			const pids: number[] = [];
			for (const pid of (await sh(['ip', 'netns', 'pids', ns[member]])).stdout.split(/\s+/).filter(Boolean)) {
				const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
				if (comm.trim() === 'etcd') pids.push(Number(pid));
			}
			return pids;
		};
		const exec: Net['exec'] = (host, argv, options = {}) => sh(['ip', 'netns', 'exec', ns[host], ...argv], options.input);
		const client = ['--cacert', path.join(pki, 'etcd/ca.crt'), '--cert', path.join(pki, 'apiserver-etcd-client.crt'), '--key', path.join(pki, 'apiserver-etcd-client.key')];
		const etcdHealthy = async (): Promise<boolean> => {
			const result = await exec('cp', [etcdBinary('etcdctl'), `--endpoints=https://${hosts.cp.v4}:2379,https://${hosts.peer.v4}:2379`, ...client, '--command-timeout=5s', 'endpoint', 'health']);
			return result.exitCode === 0;
		};
		// Both members up and the cluster formed (a linearizable read needs both of two).
		let healthy = false;
		for (let attempt = 0; attempt < 60 && !healthy; attempt++) {
			healthy = await etcdHealthy();
			if (!healthy) await new Promise(resolve => setTimeout(resolve, 500));
		}
		if (!healthy) throw new Error('the two-member etcd cluster did not become healthy');

		const net: Net = {
			dir,
			ns,
			pki,
			exec,
			etcdHealthy,
			startMember,
			async killMember(member) {
				const child = members[member];
				if (!child || child.exitCode !== null || child.signalCode !== null) return;
				const exited = new Promise<void>(resolve => child.once('exit', () => resolve()));
				for (const pid of await etcdPids(member)) process.kill(pid, 'SIGKILL');
				await exited;
			},
			async crashOnLog(member, pattern) {
				const child = members[member];
				if (!child || child.exitCode !== null || child.signalCode !== null) throw new Error(`etcd ${member} is not running`);
				const pids = await etcdPids(member);
				if (pids.length === 0) throw new Error(`no etcd process in ${ns[member]}`);
				const exited = new Promise<void>(resolve => child.once('exit', () => resolve()));
				let resolveCrash!: (log: string) => void;
				const crashed = new Promise<string>(resolve => {
					resolveCrash = resolve;
				});
				// Only what the member logs from now on (an earlier run's line must not fire it).
				let log = '';
				const watch = (chunk: string): void => {
					log += chunk;
					const line = pattern.exec(log);
					if (!line) return;
					watchers[member].delete(watch);
					for (const pid of pids) process.kill(pid, 'SIGKILL');
					void exited.then(() => resolveCrash(log));
				};
				watchers[member].add(watch);
				return {crashed, disarm: () => watchers[member].delete(watch)};
			},
			async tls(from, address, port) {
				const host = address.includes(':') ? `[${address}]` : address;
				const result = await exec(from, [
					'timeout', '4', 'openssl', 's_client', '-connect', `${host}:${port}`, '-brief', '-verify_return_error',
					'-CAfile', path.join(pki, 'etcd/ca.crt'), '-cert', path.join(pki, 'etcd/member.crt'), '-key', path.join(pki, 'etcd/member.key'),
				], {input: ''});
				return result.exitCode === 0 && /Verification: OK/.test(result.stdout + result.stderr);
			},
			toolArgv(args) {
				const overlay = (name: string, target: string) =>
					`mount -t overlay fwtest -o lowerdir=${target},upperdir=${dir}/${name}/upper,workdir=${dir}/${name}/work ${target}`;
				const script = `${overlay('etc', '/etc')} && ${overlay('varlib', '/var/lib')} && exec "$@"`;
				return ['ip', 'netns', 'exec', ns.cp, 'unshare', '--mount', '--propagation', 'private', 'env', ...toolPath(), 'sh', '-c', script, 'sh', ...args];
			},
			async tool(args) {
				return sh(net.toolArgv(['node', path.join(repo, 'dist/cli.js'), ...args]));
			},
			upper(nodePath) {
				if (nodePath.startsWith('/etc/')) return path.join(dir, 'etc/upper', nodePath.slice('/etc/'.length));
				if (nodePath.startsWith('/var/lib/')) return path.join(dir, 'varlib/upper', nodePath.slice('/var/lib/'.length));
				throw new Error(`not under an overlay: ${nodePath}`);
			},
			stop,
		};
		return net;
	} catch (error) {
		await stop();
		throw error;
	}
}

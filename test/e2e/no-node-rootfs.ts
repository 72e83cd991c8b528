// A Debian root filesystem with no Node.js in it, for running the single executable the way an
// operator's control-plane node would: `debootstrap --variant=minbase` of this machine's own release,
// from the mirror its apt sources name (nothing hard-coded), cached under the same directory as
// the kube-apiserver build so later runs reuse it. Commands run in a private mount and PID
// namespace, chrooted into a throwaway overlay over the cached tree: the cache never changes.
import {execa} from 'execa';
import {existsSync} from 'node:fs';
import {mkdir, readdir, readFile, rename, rm} from 'node:fs/promises';
import path from 'node:path';
import {CACHE_DIR} from '../testbed/paths.js';

export type Mirror = {uri: string; suite: string; keyring?: string};

/** The release's main archive from the machine's apt sources (deb822 or one-line format). */
export async function mirrorFromAptSources(): Promise<Mirror> {
	const osRelease = await readFile('/etc/os-release', 'utf8');
	const suite = /^VERSION_CODENAME=(.+)$/m.exec(osRelease)?.[1]?.replace(/"/g, '').trim();
	if (!suite) throw new Error('/etc/os-release names no VERSION_CODENAME: cannot pick a suite for debootstrap');
	const files: string[] = [];
	const dir = '/etc/apt/sources.list.d';
	for (const name of existsSync(dir) ? (await readdir(dir)).sort() : []) files.push(path.join(dir, name));
	if (existsSync('/etc/apt/sources.list')) files.push('/etc/apt/sources.list');
	for (const file of files) {
		const text = await readFile(file, 'utf8');
		if (file.endsWith('.sources')) {
			for (const stanza of text.split(/\n\s*\n/)) {
				const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, 'mi').exec(stanza)?.[1]?.trim();
				if (/^Enabled:\s*no/mi.test(stanza)) continue;
				if (!(field('Types') ?? '').split(/\s+/).includes('deb')) continue;
				if (!(field('Suites') ?? '').split(/\s+/).includes(suite)) continue;
				const uri = field('URIs')?.split(/\s+/)[0];
				if (uri) return {uri, suite, ...(field('Signed-By') ? {keyring: field('Signed-By')!} : {})};
			}
		} else if (file.endsWith('.list')) {
			for (const line of text.split('\n')) {
				const words = line.trim().split(/\s+/);
				if (words[0] !== 'deb') continue;
				let i = 1;
				let keyring: string | undefined;
				if (words[1]?.startsWith('[')) {
					for (; i < words.length; i++) {
						const m = /signed-by=([^\]\s]+)/.exec(words[i]!);
						if (m) keyring = m[1];
						if (words[i]!.endsWith(']')) break;
					}
					i++;
				}
				if (words[i + 1] === suite && words[i]) return {uri: words[i]!, suite, ...(keyring ? {keyring} : {})};
			}
		}
	}
	throw new Error(`no apt source on this machine names the suite ${suite}: cannot derive a debootstrap mirror`);
}

export const ROOTFS_DIR = path.join(CACHE_DIR, 'rootfs');

/** The cached minbase tree (made on first use, a few minutes). */
export async function noNodeRootfs(log: (line: string) => void = () => {}): Promise<string> {
	const mirror = await mirrorFromAptSources();
	const target = path.join(ROOTFS_DIR, `${mirror.suite}-minbase`);
	if (existsSync(path.join(target, '.etcd-harden-complete'))) return target;
	const partial = `${target}.partial`;
	await rm(partial, {recursive: true, force: true});
	await mkdir(ROOTFS_DIR, {recursive: true});
	log(`debootstrap --variant=minbase ${mirror.suite} from the apt sources' mirror into ${partial}`);
	const keyring = mirror.keyring && existsSync(mirror.keyring) ? [`--keyring=${mirror.keyring}`] : [];
	await execa('debootstrap', ['--variant=minbase', ...keyring, mirror.suite, partial, mirror.uri], {stdin: 'ignore', all: true});
	await execa('touch', [path.join(partial, '.etcd-harden-complete')]);
	await rm(target, {recursive: true, force: true});
	await rename(partial, target);
	return target;
}

export type RootfsRun = {exitCode: number; stdout: string; stderr: string};

/**
 * Run `argv` chrooted into a fresh overlay over `rootfs`, with `program` copied to
 * /usr/local/bin/etcd-harden and `copies` (host path -> path in the tree) copied in first.
 * The environment is empty but for PATH, HOME and TERM: nothing from this machine's node leaks in.
 */
export async function runInRootfs(rootfs: string, program: string, argv: string[], copies: Record<string, string> = {}): Promise<RootfsRun> {
	const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
	const copy = Object.entries(copies).map(([from, to]) => `mkdir -p "$M"${q(path.posix.dirname(to))} && cp -a ${q(from)} "$M"${q(to)}`);
	const script = [
		'set -e',
		// /mnt, covered by a tmpfs in this private mount namespace: nothing is left on the host.
		'W=/mnt',
		'mount -t tmpfs rootfs-work "$W"',
		'mkdir "$W/upper" "$W/work" "$W/merged"',
		'M="$W/merged"',
		`mount -t overlay rootfs-overlay -o ${q(`lowerdir=${rootfs}`)},upperdir="$W/upper",workdir="$W/work" "$M"`,
		'mount -t proc proc "$M/proc"',
		'mount --rbind /dev "$M/dev"',
		'mount -t tmpfs -o mode=1777 rootfs-tmp "$M/tmp"',
		`install -m 0755 ${q(program)} "$M/usr/local/bin/etcd-harden"`,
		...copy,
		`exec chroot "$M" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb CI=true "$@"`,
	].join('\n');
	const result = await execa('unshare', ['--mount', '--pid', '--fork', '--propagation', 'private', '--', 'sh', '-c', script, 'rootfs', ...argv], {reject: false, stdin: 'ignore'});
	return {exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr)};
}

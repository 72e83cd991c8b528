/**
 * Static pod manifests (kubeadm layout): read the facts a stage needs, and patch the text
 * with the yaml Document API so comments, key order and every untouched line stay exactly
 * as they were. Pure: text in, text out.
 */
import {isMap, isScalar, isSeq, type Document, type YAMLMap, type YAMLSeq} from 'yaml';
import {InputError} from '../engine/contract.js';
import type {ManifestFacts, Volume, VolumeMount} from './types.js';
import {editYaml, parseYaml} from './yaml-edit.js';

/** What `inspectManifest` reads from a manifest (the text-derived part of ManifestFacts). */
export type ManifestInfo = Pick<
	ManifestFacts,
	'image' | 'version' | 'command' | 'flags' | 'volumes' | 'volumeMounts' | 'annotations'
>;

export type HostPathMount = {
	/** Volume name; also used for the volumeMount. */
	name: string;
	hostPath: string;
	mountPath: string;
	type?: string;
	readOnly?: boolean;
};

export type ManifestPatch = {
	/** Flag name without dashes -> value; rendered as `--name=value`. */
	flags?: Record<string, string>;
	mounts?: HostPathMount[];
	annotations?: Record<string, string>;
};

/** A manifest that cannot be used; the message names the file, the problem and the fix. */
export class ManifestError extends InputError {
	override name = 'ManifestError';
}

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

const restoreHint = (containerName: string) =>
	containerName === 'kube-apiserver'
		? 'Fix: restore the manifest from a backup, or regenerate it with `kubeadm init phase control-plane apiserver`.'
		: containerName === 'etcd'
			? 'Fix: restore the manifest from a backup, or regenerate it with `kubeadm init phase etcd local`.'
			: 'Fix: restore the manifest from a backup.';

/**
 * Parse a static pod manifest and read the container named `containerName`.
 * Throws ManifestError naming `path`, the problem and the fix.
 */
export function inspectManifest(text: string, path: string, containerName: string): ManifestInfo {
	const {doc, container} = locate(text, path, containerName);
	const js = doc.toJS() as Record<string, unknown>;
	const spec = asRecord(js['spec']);
	const metadata = asRecord(js['metadata']);
	const c = asRecord(container.toJS(doc));

	const command = [...stringList(c['command']), ...stringList(c['args'])];
	const image = typeof c['image'] === 'string' ? c['image'] : undefined;
	const volumes: Volume[] = [];
	for (const v of asArray(spec['volumes'])) {
		const volume = asRecord(v);
		if (typeof volume['name'] !== 'string') continue;
		const hostPath = asRecord(volume['hostPath']);
		volumes.push(
			stripUndefined({
				name: volume['name'],
				hostPath: typeof hostPath['path'] === 'string' ? hostPath['path'] : undefined,
				type: typeof hostPath['type'] === 'string' ? hostPath['type'] : undefined,
			}),
		);
	}
	const volumeMounts: VolumeMount[] = [];
	for (const m of asArray(c['volumeMounts'])) {
		const mount = asRecord(m);
		if (typeof mount['name'] !== 'string' || typeof mount['mountPath'] !== 'string') continue;
		volumeMounts.push(
			stripUndefined({
				name: mount['name'],
				mountPath: mount['mountPath'],
				readOnly: typeof mount['readOnly'] === 'boolean' ? mount['readOnly'] : undefined,
			}),
		);
	}
	const annotations: Record<string, string> = {};
	for (const [key, value] of Object.entries(asRecord(metadata['annotations']))) {
		annotations[key] = typeof value === 'string' ? value : JSON.stringify(value);
	}
	// Paths and flag values reach the file system and other programs: a control character in
	// one (a NUL written as "\0", a newline) is a broken manifest, not a path to look up.
	// Names in the message are shown with every control character as "?".
	const printable = (text: string) => text.replace(new RegExp(CONTROL_CHARACTERS.source, 'g'), '?');
	const values: Array<[string, string]> = [
		...command.map((arg, i): [string, string] => [i === 0 ? 'the command' : `argument ${JSON.stringify(printable(arg.split('=')[0]!))}`, arg]),
		...volumes.flatMap((v): Array<[string, string]> => (v.hostPath === undefined ? [] : [[`volume ${printable(v.name)}'s hostPath`, v.hostPath]])),
		...volumeMounts.map((m): [string, string] => [`volumeMount ${printable(m.name)}'s mountPath`, m.mountPath]),
	];
	const bad = values.find(([, value]) => CONTROL_CHARACTERS.test(value));
	if (bad) {
		const code = bad[1].match(CONTROL_CHARACTERS)![0].charCodeAt(0);
		throw new ManifestError(`${path}: ${bad[0]} holds a control character (U+${code.toString(16).toUpperCase().padStart(4, '0')}), which no path or flag value may hold. ${restoreHint(containerName)}`);
	}
	return stripUndefined({
		image,
		version: image ? versionFromImage(image) : undefined,
		command,
		flags: parseFlags(command),
		volumes,
		volumeMounts,
		annotations,
	});
}

/**
 * Patch a manifest: set flags (replacing an existing `--flag=...` in place, else appending
 * where the other flags are), add hostPath volumes and their volumeMounts (updating ours
 * when the path changed; skipping when an existing mount already shows the directory at the
 * same path), set pod annotations. Patching an already-patched manifest returns `text`.
 */
export function patchManifest(text: string, path: string, containerName: string, patch: ManifestPatch): string {
	inspectManifest(text, path, containerName); // validate first, as every reader does, with a good message
	try {
		return editYaml(text, doc => {
			const {container} = locateIn(doc, path, containerName);
			for (const [name, value] of Object.entries(patch.flags ?? {})) setFlag(doc, container, name, value);
			for (const mount of patch.mounts ?? []) ensureHostPathMount(doc, container, mount);
			for (const [key, value] of Object.entries(patch.annotations ?? {})) setAnnotation(doc, key, value);
		});
	} catch (error) {
		if (error instanceof ManifestError && !error.message.startsWith(`${path}:`)) throw new ManifestError(`${path}: ${error.message}`);
		throw error;
	}
}

/**
 * The flags of a command line as kube-apiserver (pflag) and etcd (Go's flag package) read
 * them: `--name=value`, `--name value` (the next item, when it does not start with "-"),
 * `-name=value` and `-name value`, a bare `--name` as "true"; the last occurrence wins.
 * Parsing stops at `--`.
 */
export function parseFlags(command: readonly string[]): Record<string, string> {
	const flags: Record<string, string> = {};
	for (const flag of flagOccurrences(command)) flags[flag.name] = flag.value;
	return flags;
}

type FlagOccurrence = {name: string; value: string; index: number; valueIndex?: number};

/** Every flag on a command line, in order; `valueIndex` when the value is the next item. */
function flagOccurrences(command: readonly string[]): FlagOccurrence[] {
	const found: FlagOccurrence[] = [];
	for (let index = 0; index < command.length; index++) {
		const arg = command[index]!;
		if (arg === '--') break;
		const match = /^--?([A-Za-z0-9][\w.-]*)(=(.*))?$/s.exec(arg);
		if (!match) continue;
		const name = match[1]!;
		if (match[2] !== undefined) {
			found.push({name, value: match[3]!, index});
			continue;
		}
		const next = command[index + 1];
		if (next !== undefined && !next.startsWith('-')) {
			found.push({name, value: next, index, valueIndex: index + 1});
			index++;
		} else found.push({name, value: 'true', index});
	}
	return found;
}
/**
 * The version in an image reference's tag, without a leading "v":
 * `host:5000/kube-apiserver:v1.28.2` -> "1.28.2", `etcd:3.5.9-0` -> "3.5.9-0".
 * Undefined for an untagged or digest-only reference.
 */
export function versionFromImage(image: string): string | undefined {
	const withoutDigest = image.split('@')[0]!;
	const lastSlash = withoutDigest.lastIndexOf('/');
	const nameAndTag = withoutDigest.slice(lastSlash + 1);
	const colon = nameAndTag.lastIndexOf(':');
	if (colon === -1) return undefined;
	const tag = nameAndTag.slice(colon + 1).replace(/^v/, '');
	return /^\d+\.\d+/.test(tag) ? tag : undefined;
}

/** Compare the numeric major.minor.patch prefix of two versions (-1, 0, 1). */
export function compareVersions(a: string, b: string): number {
	const pa = numericParts(a);
	const pb = numericParts(b);
	for (let i = 0; i < 3; i++) {
		const d = (pa[i] ?? 0) - (pb[i] ?? 0);
		if (d !== 0) return d < 0 ? -1 : 1;
	}
	return 0;
}

/** True when `version` is known and at least `minimum`. */
export function versionAtLeast(version: string | undefined, minimum: string): boolean {
	return version !== undefined && compareVersions(version, minimum) >= 0;
}

function numericParts(version: string): number[] {
	const match = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?/.exec(version);
	if (!match) return [];
	return [match[1], match[2], match[3]].map(part => (part === undefined ? 0 : Number(part)));
}

/** POSIX: `child` equals `parent` or lies beneath it. */
export function isUnder(child: string, parent: string): boolean {
	const p = parent.length > 1 ? parent.replace(/\/+$/, '') : parent;
	return child === p || child.startsWith(p === '/' ? '/' : `${p}/`);
}

/**
 * Where a host path is visible inside the pod: the container path, through the hostPath
 * volume and volumeMount that cover it (the deepest mount wins), or undefined.
 */
export function containerPathFor(facts: Pick<ManifestFacts, 'volumes' | 'volumeMounts'>, hostPath: string): string | undefined {
	let best: {mountPath: string; length: number; path: string} | undefined;
	for (const mount of facts.volumeMounts) {
		const volume = facts.volumes.find(v => v.name === mount.name);
		if (!volume?.hostPath || !isUnder(hostPath, volume.hostPath)) continue;
		const rest = hostPath.slice(volume.hostPath.replace(/\/+$/, '').length);
		const path = mount.mountPath.replace(/\/+$/, '') + rest;
		if (!best || mount.mountPath.length > best.length) best = {mountPath: mount.mountPath, length: mount.mountPath.length, path};
	}
	return best?.path;
}

/** The host path behind a container path, through the mounts (deepest mount wins). */
export function hostPathFor(facts: Pick<ManifestFacts, 'volumes' | 'volumeMounts'>, containerPath: string): string | undefined {
	let best: {length: number; path: string} | undefined;
	for (const mount of facts.volumeMounts) {
		const volume = facts.volumes.find(v => v.name === mount.name);
		if (!volume?.hostPath || !isUnder(containerPath, mount.mountPath)) continue;
		const rest = containerPath.slice(mount.mountPath.replace(/\/+$/, '').length);
		const path = volume.hostPath.replace(/\/+$/, '') + rest;
		if (!best || mount.mountPath.length > best.length) best = {length: mount.mountPath.length, path};
	}
	return best?.path;
}

// --- Document edits -------------------------------------------------------------------

function locate(text: string, path: string, containerName: string): {doc: Document.Parsed; container: YAMLMap} {
	const parsed = parseYaml(text);
	if (!parsed.doc) {
		const where = parsed.problem.line ? ` at line ${parsed.problem.line}` : '';
		throw new ManifestError(`${path}: not valid YAML${where} (${parsed.problem.message}). ${restoreHint(containerName)}`);
	}
	return locateIn(parsed.doc, path, containerName);
}

function locateIn<D extends Document>(doc: D, path: string, containerName: string): {doc: D; container: YAMLMap} {
	if (!isMap(doc.contents)) {
		throw new ManifestError(`${path}: not a Kubernetes Pod manifest (the document is not a mapping). ${restoreHint(containerName)}`);
	}
	const kind = doc.get('kind');
	if (kind !== 'Pod') {
		throw new ManifestError(
			`${path}: kind is ${kind === undefined ? 'missing' : JSON.stringify(kind)}, expected Pod. ${restoreHint(containerName)}`,
		);
	}
	const containers = doc.getIn(['spec', 'containers']);
	if (!isSeq(containers)) {
		throw new ManifestError(`${path}: spec.containers is missing or not a list. ${restoreHint(containerName)}`);
	}
	for (const item of containers.items) {
		if (isMap(item) && item.get('name') === containerName) {
			checkCommandShape(item, path, containerName);
			return {doc, container: item};
		}
	}
	throw new ManifestError(`${path}: no container named ${containerName} in spec.containers. ${restoreHint(containerName)}`);
}

const shells = /^(\/usr)?(\/bin\/)?(sh|bash|dash|ash|zsh|busybox)$/;

/**
 * Refuse a command line etcd-harden cannot read and patch like the component does: command
 * or args that are not lists of text (a command written as one string is not split by the
 * kubelet, and a patch could only replace it), a shell running a script (`sh -c "..."`),
 * or no command at all (the image's entrypoint, which etcd-harden cannot see).
 */
function checkCommandShape(container: YAMLMap, path: string, containerName: string): void {
	const fix = `Write ${containerName}'s command as a list, one flag per item, as kubeadm does. ${restoreHint(containerName)}`;
	let lists = 0;
	for (const key of ['command', 'args']) {
		const node: unknown = container.get(key, true);
		if (node === undefined || node === null || (isScalar(node) && node.value === null)) continue;
		if (!isSeq(node)) throw new ManifestError(`${path}: ${containerName}'s ${key} is ${isScalar(node) ? 'one string' : 'not a list'}, so its flags cannot be read or patched safely. ${fix}`);
		for (const item of node.items) {
			if (!isScalar(item) || item.value === null || typeof item.value === 'object') {
				throw new ManifestError(`${path}: ${containerName}'s ${key} holds an item that is not text. ${fix}`);
			}
		}
		lists++;
	}
	if (lists === 0) throw new ManifestError(`${path}: ${containerName} has neither command nor args, so etcd-harden cannot see how it starts. ${fix}`);
	const command = container.get('command', true);
	const first = isSeq(command) && isScalar(command.items[0]) ? String(command.items[0].value) : undefined;
	const items = [...(isSeq(command) ? command.items : []), ...((): unknown[] => {
		const args = container.get('args', true);
		return isSeq(args) ? args.items : [];
	})()].map(item => String((item as {value?: unknown}).value));
	if (first !== undefined && shells.test(first) && items.includes('-c')) {
		throw new ManifestError(`${path}: ${containerName} starts through a shell (${first} -c), so its flags are inside a script etcd-harden cannot patch safely. ${fix}`);
	}
}

/**
 * Set a flag in the container's command/args. Every occurrence is set, in the form it is
 * written (`--name=value` in place, or the value item after `--name`); a missing flag is
 * appended as `--name=value` after the other flags (args when they hold the flags), and
 * before a `--` that ends the flags (what follows it is positional, as pflag reads it).
 * command and args are read as the one command line the kubelet runs.
 */
export function setFlag(doc: Document, container: YAMLMap, name: string, value: string): void {
	const rendered = `--${name}=${value}`;
	const lists: Array<{list: YAMLSeq; items: string[]}> = [];
	for (const key of ['command', 'args']) {
		const list: unknown = container.get(key, true);
		if (isSeq(list)) lists.push({list, items: list.items.map(item => (isScalar(item) ? String(item.value) : ''))});
	}
	// Item i of the whole command line -> its list and index there.
	const where = lists.flatMap(({list, items}) => items.map((_, index) => ({list, index})));
	const line = lists.flatMap(({items}) => items);
	let found = false;
	for (const flag of flagOccurrences(line)) {
		if (flag.name !== name) continue;
		found = true;
		const at = where[flag.valueIndex ?? flag.index]!;
		const node = at.list.items[at.index];
		const want = flag.valueIndex !== undefined ? value : `${line[flag.index]!.startsWith('--') ? '--' : '-'}${name}=${value}`;
		if (isScalar(node) && node.value !== want) node.value = want;
	}
	if (found) return;
	const end = line.indexOf('--');
	if (end !== -1) {
		const at = where[end]!;
		at.list.items.splice(at.index, 0, doc.createNode(rendered));
		return;
	}
	const args = container.get('args', true);
	const command = container.get('command', true);
	const target =
		isSeq(args) && args.items.some(i => isScalar(i) && String(i.value).startsWith('-'))
			? args
			: isSeq(command)
				? command
				: isSeq(args)
					? args
					: undefined;
	if (!target) throw new ManifestError(`internal: no command or args list to add --${name} to`);
	target.add(doc.createNode(rendered));
}

/**
 * Make `mount.hostPath` visible at `mount.mountPath` in the container. Idempotent:
 * - a volume with our name is updated in place (path or type changed),
 * - an existing mount that already shows hostPath at mountPath is kept, nothing added.
 */
export function ensureHostPathMount(doc: Document, container: YAMLMap, mount: HostPathMount): void {
	const spec = doc.get('spec', true) as YAMLMap;
	let volumes = spec.get('volumes', true);
	if (!isSeq(volumes)) {
		spec.set('volumes', doc.createNode([]));
		volumes = spec.get('volumes', true);
	}
	let mounts = container.get('volumeMounts', true);
	if (!isSeq(mounts)) {
		container.set('volumeMounts', doc.createNode([]));
		mounts = container.get('volumeMounts', true);
	}
	const volumeSeq = volumes as unknown as YAMLSeq;
	const mountSeq = mounts as unknown as YAMLSeq;

	const ours = volumeSeq.items.find(v => isMap(v) && v.get('name') === mount.name) as YAMLMap | undefined;
	if (ours && ours.items.some(pair => isScalar(pair.key) && !['name', 'hostPath'].includes(String(pair.key.value)))) {
		throw new ManifestError(`spec.volumes: a volume named ${mount.name} exists and is not a hostPath volume; rename it, or remove it, so etcd-harden can add its own.`);
	}
	// Another volume already mounted at the path (an emptyDir, another directory): a second
	// mount there is rejected by the kubelet, and the first would hide the config.
	for (const item of mountSeq.items) {
		if (!isMap(item) || item.get('name') === mount.name) continue;
		const at = String(item.get('mountPath') ?? '').replace(/\/+$/, '');
		if (at !== mount.mountPath.replace(/\/+$/, '')) continue;
		const facts = inspectDoc(doc, container);
		if (containerPathFor(facts, mount.hostPath) === mount.mountPath) break; // it shows our directory already
		throw new ManifestError(
			`volumeMounts: ${mount.mountPath} is already mounted from volume ${String(item.get('name'))}, which is not ${mount.hostPath}; ` +
				`a second mount at the same path would be rejected. Remove that mount, or choose a config directory that is not ${mount.mountPath}.`,
		);
	}
	if (!ours) {
		// Already visible through another volume at the same path? Then add nothing: a second
		// mount at the same mountPath would be rejected by the kubelet.
		const facts = inspectDoc(doc, container);
		if (containerPathFor(facts, mount.hostPath) === mount.mountPath) return;
		const hostPath: Record<string, string> = {path: mount.hostPath};
		if (mount.type) hostPath['type'] = mount.type;
		volumeSeq.add(doc.createNode({hostPath, name: mount.name}));
	} else {
		const hostPathNode = ours.get('hostPath', true);
		if (isMap(hostPathNode)) {
			if (hostPathNode.get('path') !== mount.hostPath) hostPathNode.set('path', mount.hostPath);
			if (mount.type && hostPathNode.get('type') !== mount.type) hostPathNode.set('type', mount.type);
		} else {
			const hostPath: Record<string, string> = {path: mount.hostPath};
			if (mount.type) hostPath['type'] = mount.type;
			ours.set('hostPath', doc.createNode(hostPath));
		}
	}

	const ourMount = mountSeq.items.find(m => isMap(m) && m.get('name') === mount.name) as YAMLMap | undefined;
	if (!ourMount) {
		const node: Record<string, unknown> = {mountPath: mount.mountPath, name: mount.name};
		if (mount.readOnly) node['readOnly'] = true;
		mountSeq.add(doc.createNode(node));
	} else {
		if (ourMount.get('mountPath') !== mount.mountPath) ourMount.set('mountPath', mount.mountPath);
		if (mount.readOnly && ourMount.get('readOnly') !== true) ourMount.set('readOnly', true);
	}
}

/** Set `metadata.annotations[key] = value`, creating the annotations map when missing. */
export function setAnnotation(doc: Document, key: string, value: string): void {
	const current = doc.getIn(['metadata', 'annotations', key]);
	if (current === value) return;
	const annotations = doc.getIn(['metadata', 'annotations'], true);
	if (isMap(annotations)) annotations.set(key, value);
	else doc.setIn(['metadata', 'annotations'], doc.createNode({[key]: value}));
}

function inspectDoc(doc: Document, container: YAMLMap): Pick<ManifestFacts, 'volumes' | 'volumeMounts'> {
	const spec = asRecord((doc.toJS() as Record<string, unknown>)['spec']);
	const c = asRecord(container.toJS(doc));
	const volumes: Volume[] = asArray(spec['volumes']).flatMap(v => {
		const volume = asRecord(v);
		const hostPath = asRecord(volume['hostPath']);
		return typeof volume['name'] === 'string'
			? [stripUndefined({name: volume['name'], hostPath: typeof hostPath['path'] === 'string' ? hostPath['path'] : undefined})]
			: [];
	});
	const volumeMounts: VolumeMount[] = asArray(c['volumeMounts']).flatMap(m => {
		const mount = asRecord(m);
		return typeof mount['name'] === 'string' && typeof mount['mountPath'] === 'string'
			? [stripUndefined({name: mount['name'], mountPath: mount['mountPath'], readOnly: mount['readOnly'] === true ? true : undefined})]
			: [];
	});
	return {volumes, volumeMounts};
}

// --- small helpers --------------------------------------------------------------------

function asRecord(value: unknown): Record<string, unknown> {
	return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function asArray(value: unknown): unknown[] {
	return Array.isArray(value) ? value : [];
}

function stringList(value: unknown): string[] {
	return asArray(value).map(item => (typeof item === 'string' ? item : String(item)));
}

/** Drop undefined properties so facts print as clean JSON and compare with toEqual. */
export function stripUndefined<T extends Record<string, unknown>>(value: T): T {
	for (const key of Object.keys(value)) if (value[key] === undefined) delete value[key];
	return value;
}

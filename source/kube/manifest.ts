/**
 * Static pod manifests (kubeadm layout): read the facts a stage needs, and patch the text
 * with the yaml Document API so comments, key order and every untouched line stay exactly
 * as they were. Pure: text in, text out.
 */
import {isMap, isScalar, isSeq, type Document, type YAMLMap, type YAMLSeq} from 'yaml';
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
export class ManifestError extends Error {
	override name = 'ManifestError';
}

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
	locate(text, path, containerName); // validate first, with a good message
	return editYaml(text, doc => {
		const {container} = locateIn(doc, path, containerName);
		for (const [name, value] of Object.entries(patch.flags ?? {})) setFlag(doc, container, name, value);
		for (const mount of patch.mounts ?? []) ensureHostPathMount(doc, container, mount);
		for (const [key, value] of Object.entries(patch.annotations ?? {})) setAnnotation(doc, key, value);
	});
}

/** `--name=value` pairs (last occurrence wins); a bare `--name` maps to "true". */
export function parseFlags(command: readonly string[]): Record<string, string> {
	const flags: Record<string, string> = {};
	for (const arg of command) {
		if (!arg.startsWith('--')) continue;
		const eq = arg.indexOf('=');
		if (eq === -1) flags[arg.slice(2)] = 'true';
		else flags[arg.slice(2, eq)] = arg.slice(eq + 1);
	}
	return flags;
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
		if (isMap(item) && item.get('name') === containerName) return {doc, container: item};
	}
	throw new ManifestError(`${path}: no container named ${containerName} in spec.containers. ${restoreHint(containerName)}`);
}

/** Set `--name=value` in the container's command/args: replace in place, else append. */
export function setFlag(doc: Document, container: YAMLMap, name: string, value: string): void {
	const rendered = `--${name}=${value}`;
	const lists: YAMLSeq[] = [];
	for (const key of ['command', 'args']) {
		const node: unknown = container.get(key, true);
		if (isSeq(node)) lists.push(node);
	}
	let found = false;
	for (const list of lists) {
		for (const item of list.items) {
			if (!isScalar(item) || typeof item.value !== 'string') continue;
			if (item.value === `--${name}` || item.value.startsWith(`--${name}=`)) {
				if (item.value !== rendered) item.value = rendered;
				found = true;
			}
		}
	}
	if (found) return;
	const args = container.get('args', true);
	const command = container.get('command', true);
	const target =
		isSeq(args) && args.items.some(i => isScalar(i) && String(i.value).startsWith('--'))
			? args
			: isSeq(command)
				? command
				: undefined;
	if (target) target.add(doc.createNode(rendered));
	else container.set('command', doc.createNode([rendered]));
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

/**
 * `etcd-harden --version`: the version, the commit it was built from and the runtime that runs
 * it. The build (scripts/bundle.mjs, scripts/build-exe.mjs) defines ETCD_HARDEN_BUILD; running
 * from the sources (tests, tsx) falls back to package.json and says the commit is unknown.
 */
import * as path from 'node:path';
import {packageDirectory} from '../host/demo.js';
import {RealHost} from '../host/real.js';

declare const ETCD_HARDEN_BUILD: {version: string; commit: string} | undefined;

export type BuildInfo = {version: string; commit: string; runtime: string};

/** Whether this process is a Node single executable application (node:sea exists from Node 20.12). */
export async function isSingleExecutable(): Promise<boolean> {
	try {
		const sea = (await import('node:sea')) as {isSea?: () => boolean};
		return sea.isSea?.() === true;
	} catch {
		return false;
	}
}

export async function buildInfo(): Promise<BuildInfo> {
	let version: string;
	let commit: string;
	if (typeof ETCD_HARDEN_BUILD !== 'undefined' && ETCD_HARDEN_BUILD !== undefined) {
		({version, commit} = ETCD_HARDEN_BUILD);
	} else {
		const manifest = JSON.parse((await new RealHost('/').readText(path.join(await packageDirectory(), 'package.json'))) ?? '{}') as {version?: string};
		version = manifest.version ?? 'unknown';
		commit = 'unknown (running from the sources)';
	}
	const runtime = (await isSingleExecutable())
		? `Node.js ${process.version} embedded (single executable, ${process.platform}-${process.arch})`
		: `Node.js ${process.version} at ${process.execPath}`;
	return {version, commit, runtime};
}

export function versionText(info: BuildInfo): string {
	return `etcd-harden ${info.version}\ncommit: ${info.commit}\nruntime: ${info.runtime}\n`;
}

// Runs the program script (dist/program.js, or the executable's embedded copy) with the V8 code
// cache that `npm run build` made for it. Bundled into dist/cli.js (scripts/cli-entry.cjs) and into
// the single executable's main (scripts/sea-main.cjs); not imported at run time from scripts/.
//
// The program is the whole CLI bundled as one script: an async function (so its modules keep
// their top-level awaits) taking `require` (node builtins only) and the URL that stands for
// import.meta.url. V8 compiles it from the code cache instead of parsing it: the cache holds the
// bytecode of every function the wizard ran up to its first frame (and the way out of it), so
// those are neither parsed nor compiled again (bench/startup prints what that saves).
//
// The cache is only ever a shortcut. It is used when its header names this node, this V8 and this
// architecture, and the sha256 of the program and of the cache's own bytes match: V8 itself
// checks its version and flags but, in release builds, neither the payload's checksum nor more of
// the source than its length. Whatever is wrong with it (missing, stale, corrupt, rejected by V8),
// V8 compiles the program from its source, which only costs time.
import {isAscii} from 'node:buffer';
import {createHash} from 'node:crypto';
import {setFlagsFromString} from 'node:v8';
import vm from 'node:vm';

/**
 * The young generation stays at its first size (two 1 MiB semi-spaces) instead of growing to
 * 2 x 16 MiB. A long run (a re-encryption of 200,000 objects, a raw scan of etcd) allocates fast
 * and V8 grows the young generation to its maximum, then keeps it: 30 MB of RSS that buys
 * nothing here, as what survives a scavenge (requests in flight) is small. Set before the program
 * is compiled: V8's flags are part of the code cache's check, and the cache is made through this
 * same function (ETCD_HARDEN_CODE_CACHE_OUT), so it is made and used under the same flags. Only
 * --semi-space-growth-factor acts at run time; --max-semi-space-size is read once, at start-up.
 */
export const RUNTIME_V8_FLAGS = ['--semi-space-growth-factor=1'];

const FORMAT = 'etcd-harden-v8-code-cache/1';

/** What the cache must have been made by: the cache is V8's, for this node on this machine type. */
function runtime() {
	return {node: process.version, v8: process.versions.v8, arch: process.arch};
}

const sha256 = bytes => createHash('sha256').update(bytes).digest('hex');

/** The cache file's bytes: one JSON header line, then V8's cached data. */
export function encodeCache(source, cachedData) {
	const header = {format: FORMAT, ...runtime(), program: sha256(source), data: sha256(cachedData), size: cachedData.length};
	return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), cachedData]);
}

/**
 * V8's cached data for `source` out of a cache file's bytes, or why there is none: 'absent',
 * 'stale' (another program, node, V8 or architecture) or 'corrupt'.
 */
export function decodeCache(source, file) {
	if (file === undefined) return {reason: 'absent'};
	const newline = file.indexOf(10);
	let header;
	try {
		if (newline < 0 || newline > 4096) throw new Error('no header');
		header = JSON.parse(file.subarray(0, newline).toString('utf8'));
	} catch {
		return {reason: 'corrupt'};
	}
	const want = runtime();
	if (header?.format !== FORMAT || header.node !== want.node || header.v8 !== want.v8 || header.arch !== want.arch) return {reason: 'stale'};
	const data = file.subarray(newline + 1);
	if (data.length !== header.size || sha256(data) !== header.data) return {reason: 'corrupt'};
	if (sha256(source) !== header.program) return {reason: 'stale'};
	return {data};
}

/**
 * Compile and start the program. `source` is the program's bytes, `cacheFile` the cache file's
 * bytes (undefined when there is none). Returns the program's promise (it settles when the CLI's
 * entry has finished) and how the cache was used: 'used', 'rejected' (by V8), or decodeCache's reason.
 * With ETCD_HARDEN_CODE_CACHE_OUT=FILE set (only `npm run build` sets it), the cache for this run
 * is written to FILE when the process exits.
 */
export function startProgram({source, cacheFile, filename, require, url}) {
	for (const flag of RUNTIME_V8_FLAGS) setFlagsFromString(flag);
	const decoded = decodeCache(source, cacheFile);
	// An ASCII program (the build makes it one) is copied into a one-byte string, not decoded
	// as UTF-8 into a two-byte one: ~10 ms less for 2.5 MB.
	const text = isAscii(source) ? source.toString('latin1') : source.toString('utf8');
	const script = new vm.Script(text, {filename, ...(decoded.data ? {cachedData: decoded.data} : {})});
	const cache = decoded.data ? (script.cachedDataRejected ? 'rejected' : 'used') : decoded.reason;
	if (process.env.ETCD_HARDEN_TRACE_CODE_CACHE === '1') process.stderr.write(`etcd-harden: code cache ${cache}\n`);
	const output = process.env.ETCD_HARDEN_CODE_CACHE_OUT;
	if (output) {
		process.on('exit', () => {
			// Loaded lazily: only the build writes a cache.
			require('node:fs').writeFileSync(output, encodeCache(source, script.createCachedData()));
		});
	}
	const program = script.runInThisContext();
	return {cache, done: program(require, url)};
}

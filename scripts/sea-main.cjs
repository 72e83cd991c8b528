'use strict';
// The single executable's CommonJS main (scripts/build-exe.mjs). It unpacks the embedded program
// (ES modules split like dist/, SEA assets) once per build into a private directory named by the
// program's sha256, checks that digest on every start, and imports the entry from there.
//   root:    /var/lib/etcd-harden/exe-<sha256>/ (etcd-harden's own state directory, 0700)
//   others:  <tmpdir>/etcd-harden-<uid>/exe-<sha256>/ (0700), or a fresh private directory
//            removed at exit when that one is not exclusively ours
// A directory is used only when it is owned by this user and writable by nobody else.
const sea = require('node:sea');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const {pathToFileURL} = require('node:url');
const vm = require('node:vm');

const program = JSON.parse(sea.getAsset('program.json', 'utf8'));
const uid = process.geteuid();

function privateDir(dir) {
	try {
		const stat = fs.lstatSync(dir);
		return stat.isDirectory() && stat.uid === uid && (stat.mode & 0o077) === 0;
	} catch {
		return false;
	}
}

function digest(dir) {
	const hash = crypto.createHash('sha256');
	for (const file of program.files) hash.update(file).update('\0').update(fs.readFileSync(path.join(dir, file))).update('\0');
	return hash.digest('hex');
}

function unpackInto(dir) {
	for (const file of program.files) {
		const target = path.join(dir, file);
		fs.mkdirSync(path.dirname(target), {recursive: true, mode: 0o700});
		fs.writeFileSync(target, new Uint8Array(sea.getAsset(`program/${file}`)), {mode: 0o600});
	}
}

/** The unpacked program under `parent` (made 0700 when missing), or undefined when unusable. */
function unpackUnder(parent) {
	try {
		fs.mkdirSync(parent, {recursive: true, mode: 0o700});
		if (!privateDir(parent)) return undefined;
		const dir = path.join(parent, `exe-${program.sha256}`);
		if (privateDir(dir)) {
			try {
				if (digest(dir) === program.sha256) return dir;
			} catch {
				// incomplete or damaged: unpack again
			}
			fs.rmSync(dir, {recursive: true, force: true});
		}
		const staging = fs.mkdtempSync(path.join(parent, '.exe-'));
		unpackInto(staging);
		try {
			fs.renameSync(staging, dir);
		} catch (error) {
			// Another start unpacked the same build first: use that one if it is whole.
			fs.rmSync(staging, {recursive: true, force: true});
			if (!(privateDir(dir) && digest(dir) === program.sha256)) throw error;
		}
		return dir;
	} catch {
		return undefined;
	}
}

function programDir() {
	if (uid === 0) {
		const dir = unpackUnder('/var/lib/etcd-harden');
		if (dir) return dir;
	}
	const dir = unpackUnder(path.join(os.tmpdir(), `etcd-harden-${uid}`));
	if (dir) return dir;
	// Nothing exclusively ours to reuse: a fresh private directory for this run only.
	const once = fs.mkdtempSync(path.join(os.tmpdir(), 'etcd-harden-exe-'));
	process.on('exit', () => fs.rmSync(once, {recursive: true, force: true}));
	unpackInto(once);
	return once;
}

// The main-context loader is marked experimental in Node 20 and says so on stderr; that notice is
// for developers, not for an operator running the tool. Only that one warning is dropped.
const emitWarning = process.emitWarning;
process.emitWarning = function (warning, ...rest) {
	if (String((warning && warning.message) || warning).includes('USE_MAIN_CONTEXT_DEFAULT_LOADER')) return;
	return emitWarning.call(process, warning, ...rest);
};

let entry;
try {
	entry = pathToFileURL(path.join(programDir(), program.entry)).href;
} catch (error) {
	process.stderr.write(`etcd-harden: cannot unpack the program (${(error && error.message) || error}): make /var/lib/etcd-harden (root) or the temporary directory (TMPDIR) writable.\n`);
	process.exit(70);
}
const load = new vm.Script('(url) => import(url)', {filename: 'etcd-harden-loader', importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER}).runInThisContext();
load(entry).catch(error => {
	process.stderr.write(`etcd-harden: internal error: ${(error && error.stack) || error}\n`);
	process.exitCode = 70;
});

// The version and commit the builds (bundle.mjs, build-exe.mjs) write into the program, so
// `etcd-harden --version` names exactly what was built. Not a git checkout: commit "unknown".
import {execFileSync} from 'node:child_process';
import {readFileSync} from 'node:fs';
import path from 'node:path';

export function buildInfo(repo) {
	const {version} = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8'));
	let commit = 'unknown (not built from a git checkout)';
	try {
		const git = args => execFileSync('git', ['-C', repo, ...args], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim();
		commit = git(['rev-parse', '--short=12', 'HEAD']);
		// Tracked files changed since that commit: say so, the build is not that commit.
		if (git(['status', '--porcelain', '--untracked-files=no']) !== '') commit += '-dirty';
	} catch {
		// keep "unknown"
	}
	return {version, commit};
}

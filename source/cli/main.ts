import * as path from 'node:path';
import {createEngine} from '../engine/engine.js';
import type {EngineState} from '../engine/state.js';
import {exitCodes, InputError, type Answers, type Check, type Facts, type Stage} from '../engine/types.js';
import {prepareDemoTree, packageDirectory} from '../host/demo.js';
import {RealHost} from '../host/real.js';
import {RecordingHost} from '../host/recording.js';
import type {Host} from '../host/types.js';
import {discover, verifyDiscoveryOptions} from '../stages/discover.js';
import {discoverLive} from '../stages/discover-live.js';
import {stages as allStages} from '../stages/index.js';
import {tasks} from '../engine/tasks.js';
import {backupStage} from '../stages/backup.js';
import {presetBackupProgram, restoreCheckCommand} from '../backup/cli.js';
import {rotateCommandStages, rotationAnswers, rotationFactsFor, rotationStatusRows} from './rotate.js';
import {isCi} from './ci.js';
import {ROOT_PASSWORD_FILE} from '../etcd/auth.js';
import {helpText, mergeAnswers, parseAnswersFile, parseCli, type CliOptions} from './args.js';

export type Io = {
	stdin: NodeJS.ReadStream;
	stdout: NodeJS.WriteStream;
	stderr: NodeJS.WriteStream;
	/** Effective uid is 0 (injectable for tests). */
	isRoot: boolean;
	/** Install SIGINT/SIGTERM/SIGHUP handlers (off in in-process tests). */
	handleSignals: boolean;
};

function defaultIo(): Io {
	return {
		stdin: process.stdin,
		stdout: process.stdout,
		stderr: process.stderr,
		isRoot: process.geteuid?.() === 0,
		handleSignals: true,
	};
}

export async function main(argv: string[], partialIo: Partial<Io> = {}): Promise<number> {
	const io = {...defaultIo(), ...partialIo};
	try {
		return await run(argv, io);
	} catch (error) {
		if (error instanceof InputError) {
			io.stderr.write(`etcd-harden: ${error.message}\n`);
			return exitCodes.badInput;
		}
		throw error;
	}
}

async function run(argv: string[], io: Io): Promise<number> {
	const options = parseCli(argv);
	if (options.help) {
		io.stdout.write(helpText);
		return exitCodes.ok;
	}
	if (options.version) {
		const {readFile} = await import('node:fs/promises');
		const manifest = JSON.parse(await readFile(path.join(await packageDirectory(), 'package.json'), 'utf8')) as {version: string};
		io.stdout.write(`${manifest.version}\n`);
		return exitCodes.ok;
	}

	if (options.command === 'restore-check') return restoreCheckCommand(options, io);

	let root = options.root;
	if (options.command === 'demo') {
		if (root !== undefined) throw new InputError('demo makes its own copied tree: drop --root, or run "etcd-harden harden --root DIR".');
		root = await prepareDemoTree();
		io.stderr.write(`Demo: a kubeadm-like tree was copied to ${root}; the wizard works on that copy only.\n`);
	}
	if (root === undefined && !io.isRoot) {
		throw new InputError(
			'etcd-harden reads and changes root-owned files under /etc/kubernetes: run it as root (sudo etcd-harden), ' +
				'or pass --root DIR to work on a copied tree, or try "etcd-harden demo".',
		);
	}
	const realHost = new RealHost(root ?? '/');
	if (root !== undefined) {
		const stat = await new RealHost('/').stat(path.resolve(root));
		if (!stat?.isDirectory) throw new InputError(`--root ${root}: no such directory. Pass an existing directory.`);
	}
	const host: Host = options.dryRun ? new RecordingHost(realHost) : realHost;
	if (options.command === 'root-password') return showRootPassword(host, io);
	const rotating = options.command === 'rotate' || options.command === 'disable';
	const {selected, skipped} =
		options.command === 'backup' ? {selected: [backupStage], skipped: []} : rotating ? await rotateCommandStages(options) : selectStages(options);

	if (options.command === 'status') return status(host, selected, options, io, root);

	let answers = options.set;
	if (options.answersFile !== undefined) {
		const file = path.resolve(options.answersFile);
		const text = await new RealHost('/').readText(file);
		if (text === undefined) throw new InputError(`--answers ${options.answersFile}: no such file.`);
		answers = mergeAnswers(parseAnswersFile(options.answersFile, text), options.set);
	}
	if (options.command === 'backup') presetBackupProgram(answers);
	if (rotating) answers = await rotationAnswers(options, answers);
	const knownStages = new Set([...allStages, backupStage, ...selected].map(stage => stage.id));
	for (const stage of Object.keys(answers)) {
		if (!knownStages.has(stage)) throw new InputError(`answers name an unknown stage "${stage}": known stages are ${[...knownStages].join(', ')}.`);
	}

	const interactive = !options.yes;
	if (interactive && !io.stdin.isTTY) {
		throw new InputError('standard input is not a terminal, so the wizard cannot ask questions: pass --yes (with --answers FILE or --set STAGE.Q=VALUE) for a non-interactive run.');
	}

	const engine = createEngine({
		command: options.command === 'backup' || rotating ? (options.command as 'backup' | 'rotate' | 'disable') : 'harden',
		host,
		stages: selected,
		skipped,
		answers,
		interactive,
		settings: options.timeout === undefined ? {} : {gateTimeoutSeconds: options.timeout},
		// A backup needs the file facts only (etcd endpoints, the config), not a scan of etcd.
		discover: (nodeHost, runAnswers) => (options.command === 'backup' ? discover(nodeHost) : discoverNode(nodeHost, options, root, runAnswers)),
		tasks,
	});

	const onSignal = (): void => engine.abort();
	let hungUp = false;
	const onHangup = (): void => {
		// The terminal is gone (a dropped ssh session): writing to it can only fail now, and
		// that must not stop the undo (above all of an unconfirmed firewall).
		hungUp = true;
		for (const stream of [io.stdout, io.stderr, io.stdin]) stream.on('error', () => undefined);
		engine.abort();
	};
	// A vanished terminal also surfaces as EIO from the prompt library's readline (raw mode on a
	// closed tty), possibly before SIGHUP arrives: treat it as the hangup. Anything else keeps
	// Node's default (the error is rethrown without this handler).
	const onUncaught = (error: Error): void => {
		if ((error as NodeJS.ErrnoException).code === 'EIO') {
			if (!hungUp) onHangup();
			return;
		}
		process.off('uncaughtException', onUncaught);
		process.nextTick(() => {
			throw error;
		});
	};
	// Stops the frontend (and gives the terminal back) if the engine throws without a result.
	const frontendStop = new AbortController();
	if (io.handleSignals) {
		process.on('SIGINT', onSignal);
		process.on('SIGTERM', onSignal);
		process.on('SIGHUP', onHangup);
		process.on('uncaughtException', onUncaught);
	}
	try {
		// Ink only draws the final frame when CI is set, so CI gets the plain frontend.
		const useInk = interactive && !options.plain && Boolean(io.stderr.isTTY) && !isCi(process.env);
		let frontend: Promise<void>;
		if (useInk) {
			const {runInk} = await import('../ui/index.js');
			frontend = runInk(engine, {stdin: io.stdin, stdout: io.stderr, stderr: io.stderr, signal: frontendStop.signal});
		} else {
			const {runPlain} = await import('../plain/index.js');
			frontend = runPlain(engine, {input: io.stdin, output: io.stderr});
		}
		// A frontend that fails (its terminal gone) stops the run safely instead of the process.
		let frontendError: unknown;
		const frontendDone = frontend.catch((error: unknown) => {
			frontendError = error;
			engine.abort();
		});
		const exitCode = await engine.run();
		await frontendDone;
		if (frontendError !== undefined && !hungUp) throw frontendError;
		printResult(engine.getState(), options, io, root);
		return exitCode;
	} finally {
		frontendStop.abort();
		if (io.handleSignals) {
			process.off('SIGINT', onSignal);
			process.off('SIGTERM', onSignal);
			process.off('SIGHUP', onHangup);
			process.off('uncaughtException', onUncaught);
		}
	}
}

/**
 * File facts, plus the live control plane (apiserver, kubeadm-config, raw etcd values) when
 * etcd-harden runs on the node itself; with --root there is no live cluster to ask.
 */
async function discoverNode(host: Host, options: CliOptions, root: string | undefined, runAnswers?: Answers): Promise<Facts> {
	const facts = await discover(host, runAnswers ? verifyDiscoveryOptions(runAnswers) : {});
	if (root !== undefined) return facts;
	return rotationFactsFor(host, options, await discoverLive(host, facts, {kubeconfig: options.kubeconfig, deep: options.deep}));
}

/** etcd's root password, on stdout only because the operator asked for it. */
async function showRootPassword(host: Host, io: Io): Promise<number> {
	const text = await host.readText(ROOT_PASSWORD_FILE);
	if (text === undefined) {
		throw new InputError(`${ROOT_PASSWORD_FILE} does not exist: etcd's root user is made by the etcd-auth stage (etcd-harden --only etcd-auth).`);
	}
	io.stdout.write(`${text.trim()}\n`);
	return exitCodes.ok;
}

function selectStages(options: CliOptions): {selected: Stage[]; skipped: Stage[]} {
	const ids = allStages.map(stage => stage.id);
	for (const id of [...(options.only ?? []), ...(options.skip ?? [])]) {
		if (!ids.includes(id)) throw new InputError(`unknown stage "${id}": known stages are ${ids.join(', ')}.`);
	}
	const wanted = (stage: Stage): boolean =>
		options.only ? options.only.includes(stage.id) : !(options.skip ?? []).includes(stage.id);
	return {selected: allStages.filter(wanted), skipped: allStages.filter(stage => !wanted(stage))};
}

type StatusRow = Check & {stage: string};

async function status(host: Host, stages: Stage[], options: CliOptions, io: Io, root: string | undefined): Promise<number> {
	const facts = await discoverNode(host, options, root);
	const rows: StatusRow[] = [...stages.flatMap(stage => stage.status(facts).map(check => ({stage: stage.id, ...check}))), ...rotationStatusRows(facts)];
	const failed = rows.some(row => row.status === 'fail');
	if (options.json) {
		// For monitoring jobs: PASS/FAIL/WARN, as the CIS benchmark and the text output write them.
		const json = rows.map(row => ({...row, status: row.status.toUpperCase()}));
		io.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
	} else {
		let previous: string | undefined;
		for (const row of rows) {
			if (row.stage !== previous) io.stdout.write(`${previous === undefined ? '' : '\n'}${row.stage}\n`);
			previous = row.stage;
			io.stdout.write(`  ${row.status.toUpperCase().padEnd(4)}  ${row.id}  ${row.title}${row.actual ? ` (${row.actual})` : ''}\n`);
			if (row.status !== 'pass' && row.remediation) io.stdout.write(`        fix: ${row.remediation}\n`);
		}
		const counts = ['pass', 'warn', 'fail'].map(kind => `${rows.filter(row => row.status === kind).length} ${kind}`);
		io.stdout.write(`\n${counts.join(', ')}\n`);
	}
	return failed ? exitCodes.failed : exitCodes.ok;
}

function printResult(state: EngineState, options: CliOptions, io: Io, root: string | undefined): void {
	const result = state.result;
	if (!result) return;
	if (options.json) {
		const data = {
			command: state.command,
			dryRun: state.dryRun,
			root: root ?? '/',
			exitCode: result.exitCode,
			stages: state.stages.map(stage => ({
				id: stage.id,
				phase: stage.phase,
				checks: stage.checks,
				error: stage.error,
				warnings: stage.warnings,
				changes: stage.preview ?? [],
			})),
			summary: result.summary,
		};
		io.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
		return;
	}
	for (const line of result.summary) io.stdout.write(`${line}\n`);
	if (options.command === 'demo') io.stdout.write(`The demo tree is at ${root}; remove it with: rm -rf ${root}\n`);
}

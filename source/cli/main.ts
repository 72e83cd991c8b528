/**
 * The command line: parse, pick the command's workflow (source/workflow/), run it through the
 * engine with one frontend (Ink, plain, or none for --yes), print the result, return the exit
 * code. The parsed options stop here: workflows get the few typed values they need.
 */
import * as path from 'node:path';
import {createEngine, type Engine} from '../engine/engine.js';
import type {EngineState} from '../engine/state.js';
import {exitCodes, InputError, STATE_DIR, type Answers, type RunSettings} from '../engine/contract.js';
import {MANIFESTS_DIR} from '../kube/defaults.js';
import {defaultConfigPath} from '../kube/encryption-config.js';
import {recoveryDir} from '../stages/encryption-config.js';
import {describeError} from '../engine/errors.js';
import {prepareDemoTree, removeDemoTree} from '../host/demo.js';
import {governHeap, traceMemory} from '../host/memory.js';
import {RealHost} from '../host/real.js';
import {RecordingHost} from '../host/recording.js';
import type {Host} from '../host/types.js';
import {ROOT_PASSWORD_FILE} from '../etcd/auth.js';
import {backupWorkflow} from '../workflow/backup.js';
import {hardenWorkflow} from '../workflow/harden.js';
import type {NodeTarget} from '../workflow/node.js';
import {rotateWorkflow} from '../workflow/rotate.js';
import {undoWorkflow} from '../workflow/undo.js';
import {tasks} from '../workflow/tasks.js';
import type {Workflow} from '../workflow/workflow.js';
import {checkLines, colorOn, isCi, nextSteps, onDisk, paint, receiptLines, undoCommand} from '../ui/format.js';
import {demoHelpText, helpText, mergeAnswers, parseAnswersFile, parseCli, type CliOptions} from './args.js';
import {restoreCheckCommand} from './restore-check.js';
import {monitorCommand} from './monitor.js';
import {fleetCommand} from './fleet.js';
import {kubeBenchJson, statusReport} from '../workflow/status.js';
import {buildInfo, isSingleExecutable, versionText} from './version.js';

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
			io.stderr.write(`etcd-harden: ${oneLine(error.message)}\n`);
			return exitCodes.badInput;
		}
		// Anything else is unexpected: one line naming the file or what failed, never a stack
		// trace (a run that had started journals its trace in its run directory).
		io.stderr.write(`etcd-harden: stopped: ${describeError(error, shownPath(argv))}. Nothing more was changed.\n`);
		return exitCodes.aborted;
	}
}

/** Bad input reads as one line: a multi-line message is folded onto it. */
function oneLine(message: string): string {
	return message.split('\n').map(line => line.trim()).filter(Boolean).join(' ');
}

/** Machine paths under --root as the node paths the operator knows. */
function shownPath(argv: string[]): (file: string) => string {
	const index = argv.findIndex(arg => arg === '--root' || arg.startsWith('--root='));
	const value = index === -1 ? undefined : argv[index]!.includes('=') ? argv[index]!.slice('--root='.length) : argv[index + 1];
	if (value === undefined || value === '') return file => file;
	const root = path.resolve(value);
	return file => (file.startsWith(`${root}/`) ? `${file.slice(root.length)} (under --root ${value})` : file);
}

/** Commands that run the engine through a frontend (the others print and exit). */
const WIZARD_COMMANDS = new Set<string>(['harden', 'demo', 'rotate', 'disable', 'backup', 'undo']);

async function run(argv: string[], io: Io): Promise<number> {
	const options = parseCli(argv);
	if (options.help) {
		io.stdout.write(options.command === 'demo' ? demoHelpText : helpText);
		return exitCodes.ok;
	}
	if (options.version) {
		io.stdout.write(versionText(await buildInfo()));
		return exitCodes.ok;
	}
	// The wizard's frontend (Ink, React, yoga) is the larger part of the start-up: when the run
	// will draw it, start loading it now, so that it loads while the command reads the node.
	if (!options.yes && !options.plain && io.stdin.isTTY && io.stderr.isTTY && !isCi(process.env) && WIZARD_COMMANDS.has(options.command)) {
		import('../ui/index.js').catch(() => undefined); // loaded (or failed) again where it is used
	}
	await checkOperatorFiles(options);
	if (options.command === 'restore-check') return restoreCheckCommand({dryRun: options.dryRun, root: options.root, json: options.json, backup: options.backup}, io);
	if (options.command === 'fleet') return fleetCommand(options, io);

	const {host, root} = await nodeHost(options, io);
	// Long runs (re-encryption, scans, monitor) keep their heap near what is live (host/memory.ts).
	const stopGoverning = governHeap(undefined, undefined, traceMemoryTo(io));
	try {
		return await runOn(host, root, options, io);
	} catch (error) {
		// A demo refused before its wizard started leaves no copy behind.
		if (options.command === 'demo' && root !== undefined && error instanceof InputError) {
			await removeDemoTree(root);
			io.stderr.write(`Demo: the copy at ${root} was removed.\n`);
		}
		throw error;
	} finally {
		stopGoverning();
	}
}

async function runOn(host: Host, root: string | undefined, options: CliOptions, io: Io): Promise<number> {
	if (options.command === 'root-password') return showRootPassword(host, io);
	if (options.command === 'monitor') return monitorCommand(host, options, io);
	const target: NodeTarget = {root, kubeconfig: options.kubeconfig, deep: options.deep, nodeName: options.nodeName};
	if (options.command === 'status') return status(host, options, target, io);

	const workflow = options.command === 'undo' ? await undoWorkflow(host, {runId: options.runId, force: options.force}, target, workflowSettings(options)) : await workflowFor(options, target);
	const answers = await workflow.answers(await operatorAnswers(options));
	const known = new Set(workflow.knownStages);
	for (const stage of Object.keys(answers)) {
		if (!known.has(stage)) throw new InputError(`answers name an unknown stage "${stage}": known stages are ${[...known].join(', ')}.`);
	}
	const interactive = !options.yes;
	if (interactive && !io.stdin.isTTY) {
		throw new InputError('standard input is not a terminal, so the wizard cannot ask questions: pass --yes (with --answers FILE or --set STAGE.Q=VALUE) for a non-interactive run.');
	}
	const engine = createEngine({
		command: workflow.command,
		host,
		stages: workflow.stages,
		skipped: workflow.skipped,
		answers,
		interactive,
		settings: workflow.settings,
		discover: workflow.discover,
		tasks,
		// Where the tool's atomic writes land even when this run plans none there.
		sweepDirs: [MANIFESTS_DIR, path.posix.dirname(defaultConfigPath), STATE_DIR, recoveryDir],
		...(workflow.undoes === undefined ? {} : {undoes: workflow.undoes}),
	});
	// ETCD_HARDEN_TRACE_MEMORY=1: where a run's memory grows, by stage and phase (host/memory.ts).
	const trace = traceMemoryTo(io);
	const stopTracing = trace ? traceMemory(() => phaseOf(engine.getState()), trace) : undefined;
	let exitCode: number;
	try {
		exitCode = await runWithFrontend(engine, {interactive, plain: options.plain, root}, io);
	} finally {
		stopTracing?.();
	}
	printResult(engine.getState(), options, io, root);
	return exitCode;
}

/** Where the memory trace and the governor's collections go: stderr with ETCD_HARDEN_TRACE_MEMORY=1, else nowhere. */
function traceMemoryTo(io: Io): ((line: string) => void) | undefined {
	return process.env['ETCD_HARDEN_TRACE_MEMORY'] ? line => io.stderr.write(line) : undefined;
}

/** The current stage and its phase, for the memory trace. */
function phaseOf(state: EngineState): string {
	const stage = state.stages[state.current];
	return stage === undefined ? 'starting' : `${stage.id}:${stage.phase}${state.progress?.label ? ` (${state.progress.label.slice(0, 60)})` : ''}`;
}

/**
 * The operator's own files named by flags (never under --root): a directory, or a file that
 * cannot be read, is bad input naming the flag, before anything else runs. A missing file is
 * left to the command, which says what it needed it for.
 */
async function checkOperatorFiles(options: CliOptions): Promise<void> {
	const files: Array<[string, string | undefined]> = [
		['--answers', options.answersFile],
		['--bundle', options.bundle],
		['--bundle-key', options.bundleKey],
		['--passphrase-file', options.backup.passphraseFile],
		['--identity', options.backup.identity],
		['--kubeconfig', options.root === undefined ? options.kubeconfig : undefined],
	];
	const host = new RealHost('/');
	for (const [flag, value] of files) {
		if (value === undefined) continue;
		const file = path.resolve(value);
		try {
			const stat = await host.stat(file);
			if (stat === undefined) continue;
			if (stat.isDirectory) throw new InputError(`${flag} ${value}: is a directory. Pass the file itself.`);
			if (stat.size > 16 * 1024 * 1024) throw new InputError(`${flag} ${value}: ${stat.size} bytes is far larger than such a file. Pass the right file.`);
			await host.readFile(file);
		} catch (error) {
			if (error instanceof InputError) throw error;
			throw new InputError(`${flag} ${value}: ${describeError(error, () => '').replace(/^: /, '')}. Pass a readable file.`);
		}
	}
}

/** The host the run works on: the node, a --root tree or the demo's copy; recording under --dry-run. */
async function nodeHost(options: CliOptions, io: Io): Promise<{host: Host; root?: string}> {
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
	return {host: options.dryRun ? new RecordingHost(realHost) : realHost, root};
}

function workflowSettings(options: CliOptions): RunSettings {
	return {
		...(options.timeout === undefined ? {} : {gateTimeoutSeconds: options.timeout}),
		...(options.compactionGrace === undefined ? {} : {compactionGraceSeconds: options.compactionGrace}),
	};
}

/** The command's workflow, from the few values of the command line it needs. */
async function workflowFor(options: CliOptions, target: NodeTarget): Promise<Workflow> {
	const settings = workflowSettings(options);
	const pick = {only: options.only, skip: options.skip};
	switch (options.command) {
		case 'backup':
			return backupWorkflow(settings, {argv1: process.argv[1], execPath: process.execPath, singleExecutable: await isSingleExecutable()});
		case 'rotate':
		case 'disable':
			// --bundle and --bundle-key name the operator's files, not files under --root.
			return rotateWorkflow(new RealHost('/'), {command: options.command, ...pick, bundle: options.bundle, bundleKey: options.bundleKey}, target, settings);
		default:
			return hardenWorkflow(pick, target, settings);
	}
}

/** --answers FILE (the operator's path, not under --root), overridden by --set. */
async function operatorAnswers(options: CliOptions): Promise<Answers> {
	if (options.answersFile === undefined) return options.set;
	let text: string | undefined;
	try {
		const file = path.resolve(options.answersFile);
		const stat = await new RealHost('/').stat(file);
		if (stat?.isDirectory) throw new InputError(`--answers ${options.answersFile}: is a directory. Pass the answers file (YAML) itself.`);
		if (stat && stat.size > 1024 * 1024) throw new InputError(`--answers ${options.answersFile}: ${stat.size} bytes is not an answers file (a few lines of YAML). Pass the right file.`);
		text = await new RealHost('/').readText(file);
	} catch (error) {
		if (error instanceof InputError) throw error;
		throw new InputError(`--answers ${options.answersFile}: ${describeError(error, () => 'cannot be read').replace(/^cannot be read: /, '')}. Pass a readable answers file.`);
	}
	if (text === undefined) throw new InputError(`--answers ${options.answersFile}: no such file.`);
	return mergeAnswers(parseAnswersFile(options.answersFile, text), options.set);
}

/**
 * Run the engine with the frontend picked once: Ink on an interactive terminal (not under CI,
 * where Ink only draws the final frame), line mode otherwise. Signals abort the run safely
 * (the current stage is undone). Resolves with the engine's exit code.
 */
async function runWithFrontend(engine: Engine, mode: {interactive: boolean; plain: boolean; root?: string}, io: Io): Promise<number> {
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
		const useInk = mode.interactive && !mode.plain && Boolean(io.stderr.isTTY) && !isCi(process.env);
		let frontend: Promise<void>;
		if (useInk) {
			const {runInk} = await import('../ui/index.js');
			frontend = runInk(engine, {stdin: io.stdin, stdout: io.stderr, stderr: io.stderr, signal: frontendStop.signal, root: mode.root});
		} else {
			const {runPlain} = await import('../plain/index.js');
			frontend = runPlain(engine, {input: io.stdin, output: io.stderr, root: mode.root});
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

/** etcd's root password, on stdout only because the operator asked for it. */
async function showRootPassword(host: Host, io: Io): Promise<number> {
	const text = await host.readText(ROOT_PASSWORD_FILE);
	if (text === undefined) {
		throw new InputError(`${ROOT_PASSWORD_FILE} does not exist: etcd's root user is made by the etcd-auth stage (etcd-harden --only etcd-auth).`);
	}
	io.stdout.write(`${text.trim()}\n`);
	return exitCodes.ok;
}

async function status(host: Host, options: CliOptions, target: NodeTarget, io: Io): Promise<number> {
	const report = await statusReport(host, {only: options.only, skip: options.skip}, target, {rbacProposal: options.status.rbacProposal && path.resolve(options.status.rbacProposal)});
	const rows = report.rows;
	const failed = rows.some(row => row.status === 'fail');
	if (report.proposal) io.stderr.write(`wrote a least-privilege RBAC proposal to ${report.proposal} for review (nothing was applied)\n`);
	// --failed: only the problems (FAIL and WARN); the counts still cover every finding.
	const shown = options.failed ? rows.filter(row => row.status !== 'pass') : rows;
	if (options.status.format === 'kube-bench') {
		io.stdout.write(`${JSON.stringify(kubeBenchJson(report), null, 2)}\n`);
	} else if (options.status.format === 'json') {
		// For monitoring jobs: PASS/FAIL/WARN, as the CIS benchmark and the text output write them.
		const json = shown.map(row => ({...row, status: row.status.toUpperCase()}));
		io.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
	} else {
		const color = colorOn(io.stdout, process.env);
		let previous: string | undefined;
		for (const row of shown) {
			if (row.stage !== previous) io.stdout.write(`${previous === undefined ? '' : '\n'}${paint({text: row.stage, tone: 'active'}, color)}\n`);
			previous = row.stage;
			for (const line of checkLines(row, {withId: true})) io.stdout.write(`  ${paint(line, color)}\n`);
		}
		if (options.failed && shown.length === 0) io.stdout.write('No problems found.\n');
		const counts = ['pass', 'warn', 'fail'].map(kind => `${rows.filter(row => row.status === kind).length} ${kind}`);
		io.stdout.write(`\n${counts.join(', ')}\n`);
	}
	return failed ? exitCodes.failed : exitCodes.ok;
}

/** The receipt as data: run id and directory (also as on disk), files with backups, recovery copies, skips. */
function runJson(receipt: NonNullable<NonNullable<EngineState['result']>['receipt']>, root: string | undefined) {
	return {
		runId: receipt.runId ?? null,
		runDir: receipt.runDir ?? null,
		runDirOnDisk: receipt.runDir === undefined ? null : onDisk(receipt.runDir, root),
		...(receipt.undoes === undefined ? {} : {undoes: receipt.undoes}),
		files: receipt.files.map(file => ({...file, onDisk: onDisk(file.path, root), ...(file.backup ? {backupOnDisk: onDisk(file.backup, root)} : {})})),
		work: receipt.work,
		recovery: receipt.keep.map(keep => ({...keep, onDisk: onDisk(keep.path, root)})),
		skipped: receipt.skipped,
		undo: receipt.runId === undefined ? null : undoCommand(receipt.runId, root),
	};
}

function printResult(state: EngineState, options: CliOptions, io: Io, root: string | undefined): void {
	const result = state.result;
	if (!result) return;
	const receipt = result.receipt ?? {files: [], work: [], keep: [], skipped: []};
	const context = {command: state.command, dryRun: state.dryRun, exitCode: result.exitCode, root};
	if (options.json) {
		const data = {
			command: state.command,
			dryRun: state.dryRun,
			root: root ?? '/',
			exitCode: result.exitCode,
			...runJson(receipt, root),
			stages: state.stages.map(stage => ({
				id: stage.id,
				phase: stage.phase,
				// One casing of check status in every JSON: PASS/FAIL/WARN, as status --json writes them.
				checks: stage.checks.map(check => ({...check, status: check.status.toUpperCase()})),
				error: stage.error,
				warnings: stage.warnings,
				...(stage.skip ? {skip: stage.skip} : {}),
				changes: stage.preview ?? [],
			})),
			summary: result.summary,
			next: nextSteps(receipt, context),
		};
		io.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
		return;
	}
	for (const line of result.summary) io.stdout.write(`${line}\n`);
	const color = colorOn(io.stdout, process.env);
	io.stdout.write('\n');
	for (const line of receiptLines(receipt, context)) io.stdout.write(`${paint(line, color)}\n`);
	if (options.command === 'demo') io.stdout.write(`The demo tree is at ${root}; remove it with: rm -rf ${root}\n`);
}

/**
 * The restart gate of a static pod (kube-apiserver, etcd): one bracket that stages plan
 * around a manifest write, one executor for every component.
 *
 *   [gate 'before', ...writes, gate 'after']
 *
 * 'before' records the running process's start time in the run directory (its undo runs
 * LAST when the stage is undone, after the engine restored the stage's files, and waits
 * until the component is ready on them); 'after' waits for a process started after the
 * change that passes its readiness check, or throws (with the log's last lines), which
 * undoes the stage. A record file that cannot be read (torn by a kill) counts as no record:
 * the restart is then judged by the manifest's modification time, and a warning says so.
 */
import {defineTask, type Change, type TaskContext, type TaskDefinition} from '../engine/contract.js';
import {GATE_POLL_MS, GATE_TIMEOUT_SECONDS} from './defaults.js';

export type GateBase = {
	/** Node path of the static pod manifest the writes change (default: the component's kubeadm path). */
	manifestPath?: string;
	/** Default GATE_TIMEOUT_SECONDS. */
	timeoutSeconds?: number;
	pollMs?: number;
	/** Node paths / patterns of the component's log. */
	logPaths?: string[];
};

export type GatePhase = 'before' | 'after';

/** What one component's gate needs to know: how to read its start time and wait for it. */
export type GateProbe<P extends GateBase> = {
	/** Shown in messages: "kube-apiserver", "etcd". */
	component: string;
	/** The manifest when the params name none. */
	defaultManifest: string;
	/** File name in the run directory that keeps the start times read before the change. */
	recordFile: string;
	readStart(params: P, context: TaskContext): Promise<number | undefined>;
	/**
	 * Wait until ready. `restored` is set when undoing (accept the earlier process when it is
	 * still the one running; `notBefore` is the restored manifest's time).
	 */
	waitReady(params: P, context: TaskContext, wait: GateWait): Promise<{seconds: number; restarted: boolean}>;
	/** What 'after' waits for, and what the undo waits for, for the progress line. */
	waiting: {after: string; restored: string};
	/** The log line when 'after' passed (default "<component> restarted and is ready"). */
	ready?: string;
};

export type GateWait = {
	before?: number;
	notBefore?: number;
	acceptUnchanged: boolean;
	timeoutMs: number;
	pollMs: number;
	signal: AbortSignal;
	onStatus(status: {state: string; elapsedSeconds: number; detail?: string}): void;
};

type GateRecord = Record<string, {before?: number}>;

async function readRecord(context: TaskContext, file: string | undefined, component: string): Promise<GateRecord> {
	const text = file ? await context.host.readText(file) : undefined;
	if (!text) return {};
	try {
		const parsed: unknown = JSON.parse(text);
		if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as GateRecord;
	} catch {
		// fall through: torn by a kill
	}
	context.log({level: 'warn', text: `${file} could not be read (interrupted write?): ${component}'s restart is judged by the manifest time.`});
	return {};
}

export type StaticPodGate<P extends GateBase> = TaskDefinition<P & {phase: GatePhase}> & {
	/** The bracket around a stage's manifest writes. */
	bracket(params: P, writes: Change[], text: {before: string; after: string; detail: string}): Change[];
};

export function defineStaticPodGate<P extends GateBase>(name: string, probe: GateProbe<P>): StaticPodGate<P> {
	const recordPath = (context: TaskContext) => (context.runDir ? `${context.runDir.dir}/${probe.recordFile}` : undefined);
	const manifestOf = (params: P) => params.manifestPath ?? probe.defaultManifest;
	const wait = (params: P, context: TaskContext, label: string, extra: Pick<GateWait, 'before' | 'notBefore' | 'acceptUnchanged'>): GateWait => ({
		...extra,
		timeoutMs: (params.timeoutSeconds ?? GATE_TIMEOUT_SECONDS) * 1000,
		pollMs: params.pollMs ?? GATE_POLL_MS,
		signal: context.signal,
		onStatus: status =>
			context.progress({
				label: `${label} (${status.state.replaceAll('-', ' ')}${status.detail ? `: ${status.detail.slice(0, 80)}` : ''})`,
				done: Math.round(status.elapsedSeconds),
				total: params.timeoutSeconds ?? GATE_TIMEOUT_SECONDS,
			}),
	});
	const definition = defineTask<P & {phase: GatePhase}>(name, {
		async run(params, context) {
			const file = recordPath(context);
			if (params.phase === 'before') {
				const before = await probe.readStart(params, context);
				if (file) {
					const record = await readRecord(context, file, probe.component);
					record[manifestOf(params)] = before === undefined ? {} : {before};
					await context.host.writeFileAtomic(file, `${JSON.stringify(record)}\n`, 0o600);
				}
				if (before === undefined) context.log({level: 'warn', text: `${probe.component}'s start time could not be read before the change; its restart is judged by the manifest time.`});
				return;
			}
			const before = (await readRecord(context, file, probe.component))[manifestOf(params)]?.before;
			const result = await probe.waitReady(params, context, wait(params, context, `waiting for ${probe.waiting.after}`, {before, acceptUnchanged: false}));
			context.log({level: 'success', text: `${probe.ready ?? `${probe.component} restarted and is ready`} (${result.seconds.toFixed(1)} s).`});
		},
		async undo(params, context) {
			// Only the 'before' mark waits: the engine undoes in reverse order, so it runs after
			// every file of the stage has been restored.
			if (params.phase !== 'before') return;
			const before = (await readRecord(context, recordPath(context), probe.component))[manifestOf(params)]?.before;
			const stat = await context.host.stat(manifestOf(params));
			const result = await probe.waitReady(
				params,
				context,
				wait(params, context, `waiting for ${probe.waiting.restored}`, {before, notBefore: stat ? stat.mtimeMs / 1000 - 1 : undefined, acceptUnchanged: true}),
			);
			context.log({
				level: 'info',
				text: result.restarted
					? `${probe.component} restarted with the restored files and is ready (${result.seconds.toFixed(1)} s).`
					: `${probe.component} is ready; it never left the earlier process.`,
			});
		},
	});
	return {
		...definition,
		bracket: (params, writes, text) => [
			definition.change({...params, phase: 'before'}, text.before),
			...writes,
			definition.change({...params, phase: 'after'}, text.after, [text.detail]),
		],
	};
}

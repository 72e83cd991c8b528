/**
 * `etcd-harden undo [RUN_ID]`: take back what one run changed, through the same engine as
 * every stage (preview, confirm, the restart gate, a run directory of its own, a receipt).
 *
 * The run's receipt.json (written by the engine at the end of every run that changed
 * something) names each file it wrote, the sha256 of what it wrote and where the file's
 * earlier content is kept. The undo stage plans one write-file change per file, restoring
 * that earlier content byte for byte, bracketed by the kube-apiserver or etcd restart gate
 * when a static pod manifest is among them (on the node itself). It refuses, before
 * anything is written:
 * - when a file changed since the run (its sha256 is no longer what the run wrote), unless
 *   --force: someone else's change would be lost;
 * - when the restore would take a key away from kube-apiserver on a live node (a manifest
 *   without --encryption-provider-config, a config without a key the run added): objects
 *   written since may be encrypted with it. `etcd-harden disable` is the safe way back.
 * Files the run created are never deleted: a created encryption config holds the key, and
 * the plan's notes say what to remove by hand once nothing uses it.
 */
import {createHash} from 'node:crypto';
import {InputError, RECEIPT_FILE, RUNS_DIR, type Change, type RunReceiptFile, type RunSettings, type StagePlan} from '../engine/contract.js';
import type {Host} from '../host/types.js';
import {secretsInText} from '../kube/encryption-config.js';
import {apiserverRestartGate} from '../kube/tasks.js';
import {DEFAULT_APISERVER_LOGS} from '../kube/restart-gate.js';
import {GATE_TIMEOUT_SECONDS} from '../kube/defaults.js';
import {etcdRestartGate} from '../etcd/tasks.js';
import {DEFAULT_ETCD_LOGS} from '../etcd/tls-gate.js';
import {healthcheckConnection} from '../etcd/tls.js';
import {metricsUrl} from '../stages/etcd-tls.js';
import type {Facts, NodeStage} from '../stages/facts.js';
import {nodeDiscovery, type NodeTarget} from './node.js';
import type {Workflow} from './workflow.js';

export const undoStageId = 'undo-run';

/** One file of the run being undone, as it is now. */
type UndoFile = RunReceiptFile['files'][number] & {
	/** Current content (undefined: the file is gone). */
	current?: string;
	currentMode?: number;
	/** The content before the run, from the run directory. */
	before?: string;
};

export type UndoRunFacts = {
	id: string;
	dir: string;
	receipt: RunReceiptFile;
	files: UndoFile[];
	force: boolean;
};

type UndoFacts = Facts & {undoRun?: UndoRunFacts};

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** The run to undo: the one named, or the newest run that changed files and was not itself an undo. */
async function findRun(host: Host, runId: string | undefined): Promise<{id: string; receipt: RunReceiptFile}> {
	const ids = ((await host.listDir(RUNS_DIR)) ?? []).sort().reverse();
	if (runId !== undefined) {
		if (!/^[\w.-]+$/.test(runId) || !ids.includes(runId)) {
			throw new InputError(`undo ${runId}: no such run in ${RUNS_DIR}${ids.length > 0 ? `; the newest are ${ids.slice(0, 5).join(', ')}` : ' (no runs recorded)'}.`);
		}
		const receipt = await readReceipt(host, runId);
		if (!receipt) {
			throw new InputError(
				`undo ${runId}: ${RUNS_DIR}/${runId}/${RECEIPT_FILE} is missing (the run changed nothing, or was made by an etcd-harden without receipts). Its backups, if any, are in ${RUNS_DIR}/${runId}/backup/.`,
			);
		}
		return {id: runId, receipt};
	}
	for (const id of ids) {
		const receipt = await readReceipt(host, id);
		if (receipt && receipt.command !== 'undo' && receipt.files.length > 0) return {id, receipt};
	}
	throw new InputError(`undo: no run with a receipt in ${RUNS_DIR}: there is nothing to undo.`);
}

async function readReceipt(host: Host, id: string): Promise<RunReceiptFile | undefined> {
	const text = await host.readText(`${RUNS_DIR}/${id}/${RECEIPT_FILE}`);
	if (text === undefined) return undefined;
	try {
		const data = JSON.parse(text) as RunReceiptFile;
		if (typeof data.id === 'string' && Array.isArray(data.files)) return data;
	} catch {
		// fall through
	}
	throw new InputError(`${RUNS_DIR}/${id}/${RECEIPT_FILE} is not a receipt etcd-harden wrote (not valid JSON): restore from ${RUNS_DIR}/${id}/backup/ by hand.`);
}

export async function readUndoRun(host: Host, runId: string | undefined, force: boolean): Promise<UndoRunFacts> {
	const {id, receipt} = await findRun(host, runId);
	const files: UndoFile[] = [];
	for (const file of receipt.files) {
		const current = await host.readText(file.path);
		const stat = current === undefined ? undefined : await host.stat(file.path);
		const before = file.backup === undefined ? undefined : await host.readText(file.backup);
		files.push({...file, ...(current === undefined ? {} : {current}), ...(stat ? {currentMode: stat.mode & 0o7777} : {}), ...(before === undefined ? {} : {before})});
	}
	return {id, dir: `${RUNS_DIR}/${id}`, receipt, files, force};
}

function runOf(facts: Facts): UndoRunFacts {
	const run = (facts as UndoFacts).undoRun;
	if (!run) throw new Error('internal: the undo stage needs the run (workflow/undo.ts discovery)');
	return run;
}

/** Why restoring `file` would take a key away from a live kube-apiserver, or nothing. */
function keyLoss(file: UndoFile, facts: Facts): string | undefined {
	if (!facts.cluster || file.before === undefined || file.current === undefined) return undefined;
	if (file.path === facts.apiserver.path && /--encryption-provider-config[=\s]/.test(file.current) && !/--encryption-provider-config[=\s]/.test(file.before)) {
		return `${file.path}: restoring it takes --encryption-provider-config away from kube-apiserver, and every Secret written since it took effect is encrypted with the key`;
	}
	if (file.keyMaterial) {
		const kept = new Set(secretsInText(file.before));
		if (secretsInText(file.current).some(secret => !kept.has(secret))) {
			return `${file.path}: restoring it removes a key the run added, and objects written since may be encrypted with it`;
		}
	}
	return undefined;
}

function plan(facts: Facts, _answers: unknown, context: {settings?: Readonly<RunSettings>}): StagePlan {
	const run = runOf(facts);
	const notes: string[] = [`Undoing run ${run.id} (${run.receipt.command}): its files come back byte for byte from ${run.dir}/backup/.`];
	const warnings: string[] = [];
	const changed: string[] = [];
	const losses: string[] = [];
	const writes: Change[] = [];
	for (const file of run.files) {
		if (file.created) {
			notes.push(
				file.keyMaterial
					? `${file.path} was created by run ${run.id} and holds the encryption key: it is kept, never deleted (objects may be encrypted with it). Remove it by hand only once kube-apiserver no longer names it and \`etcd-harden status\` shows no object on its keys.`
					: `${file.path} was created by run ${run.id}: it is kept; remove it by hand if nothing uses it (rm ${file.path}).`,
			);
			continue;
		}
		if (file.before === undefined) {
			throw new InputError(`undo ${run.id}: the copy of ${file.path} from before the run (${file.backup ?? 'none recorded'}) is missing, so it cannot be restored.`);
		}
		if (file.current !== undefined && sha256(file.current) === sha256(file.before)) {
			notes.push(`${file.path} is already as it was before run ${run.id}.`);
			continue;
		}
		if (file.current === undefined || sha256(file.current) !== file.sha256) {
			const what = file.current === undefined ? 'is gone' : 'changed since (its sha256 is not what the run wrote)';
			if (!run.force) changed.push(`${file.path} ${what}`);
			else warnings.push(`${file.path} ${what}: --force restores the run's backup over it.`);
		}
		const loss = keyLoss(file, facts);
		if (loss) losses.push(loss);
		writes.push({
			kind: 'write-file',
			path: file.path,
			content: file.before,
			mode: file.currentMode ?? file.mode,
			summary: `Restore ${file.path} as it was before run ${run.id}`,
			secrets: file.keyMaterial ? secretsInText(`${file.before}\n${file.current ?? ''}`) : [],
		});
	}
	if (losses.length > 0) {
		throw new InputError(
			`undo ${run.id} would take a key away from kube-apiserver: ${losses.join('; ')}. A key objects may be encrypted with is never removed this way: ` +
				'run "etcd-harden disable" instead (it rewrites every object in plaintext first, then removes the keys once no encrypted value remains).',
		);
	}
	if (changed.length > 0) {
		throw new InputError(
			`undo ${run.id}: ${changed.join('; ')}. Restoring would overwrite that change: look at the file(s), then rerun with --force to restore the run's copies anyway.`,
		);
	}
	return {changes: gated(writes, facts, context.settings?.gateTimeoutSeconds ?? GATE_TIMEOUT_SECONDS), notes, warnings};
}

/** The restart gate around a restored static pod manifest, on the node itself (as the stages that wrote it had). */
function gated(writes: Change[], facts: Facts, timeoutSeconds: number): Change[] {
	const cluster = facts.cluster;
	if (!cluster || !cluster.reachable) return writes;
	const out: Change[] = [];
	for (const write of writes) {
		if (write.kind === 'write-file' && write.path === facts.apiserver.path) {
			out.push(
				...apiserverRestartGate.bracket({kubeconfig: cluster.kubeconfig, manifestPath: write.path, timeoutSeconds, logPaths: DEFAULT_APISERVER_LOGS}, [write], {
					before: 'Record the running kube-apiserver (awaited again if this undo is itself undone)',
					after: 'Wait until kube-apiserver has restarted with the restored manifest and passes /readyz',
					detail: `timeout ${timeoutSeconds} s; on failure the manifest as it is now is put back and the apiserver awaited again`,
				}),
			);
			continue;
		}
		const health = healthcheckConnection(facts);
		if (write.kind === 'write-file' && write.path === facts.etcd.path && health) {
			const url = metricsUrl(facts);
			out.push(
				...etcdRestartGate.bracket({manifestPath: write.path, health, kubeconfig: cluster.kubeconfig, timeoutSeconds, logPaths: DEFAULT_ETCD_LOGS, ...(url ? {metricsUrl: url} : {})}, [write], {
					before: 'Record the running etcd (awaited again if this undo is itself undone)',
					after: 'Wait until etcd has restarted with the restored manifest and is healthy, and kube-apiserver passes /readyz',
					detail: `timeout ${timeoutSeconds} s; on failure the manifest as it is now is put back`,
				}),
			);
			continue;
		}
		out.push(write);
	}
	return out;
}

/** After the restore: every restored file holds exactly its content from before the run. */
function verify(facts: Facts): ReturnType<NodeStage['verify']> {
	const run = runOf(facts);
	return run.files
		.filter(file => !file.created && file.before !== undefined)
		.map(file => {
			const ok = file.current !== undefined && sha256(file.current) === sha256(file.before!);
			return {
				id: `restored:${file.path}`,
				title: `${file.path} is as it was before run ${run.id}`,
				status: ok ? ('pass' as const) : ('fail' as const),
				actual: ok ? `sha256 ${sha256(file.before!).slice(0, 12)}…` : 'content differs from the run\'s copy',
				...(ok ? {} : {remediation: `Compare with ${file.backup}; rerun etcd-harden undo ${run.id}.`}),
			};
		});
}

export const undoStage: NodeStage = {
	id: undoStageId,
	title: 'Undo a run',
	explain:
		'Restores every file the run changed from the copies in its run directory, byte for byte, previewed as a diff. ' +
		'Static pod manifests are awaited like any change (kube-apiserver /readyz, etcd health). Keys are never deleted.',
	dependsOn: [],
	questions: () => [],
	plan: (facts, answers, context) => plan(facts, answers, context),
	verify: facts => verify(facts),
	status: () => [],
};

export type UndoOptions = {runId?: string; force: boolean};

export async function undoWorkflow(host: Host, options: UndoOptions, target: NodeTarget, settings: RunSettings): Promise<Workflow> {
	const node = nodeDiscovery(target, false);
	// Fixed once found: after the restore, the newest run is this undo itself.
	const {id} = await findRun(host, options.runId);
	return {
		command: 'undo',
		stages: [undoStage],
		skipped: [],
		discover: async (discoverHost, answers, purpose) => ({...(await node(discoverHost, answers, purpose)), undoRun: await readUndoRun(discoverHost, id, options.force)}) as UndoFacts,
		knownStages: [undoStageId],
		answers: async given => given,
		settings,
		undoes: id,
	};
}

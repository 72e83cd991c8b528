// Runs inside the testbed's namespaces (tb.exec + tsx), where the apiserver and etcd are
// reachable and /etc/kubernetes is the testbed's. It drives the real task executors with
// a RealHost on "/" and prints one JSON result line on stdout.
//
//   task:   run or undo a registered task executor (as the engine would)
//   writer: update secrets in a loop until a stop file appears; report the last values written
//   wire:   what KubeApi's re-encryption list and errors look like on the real apiserver (protobuf
//           for built-in types, typed errors from protobuf Status)
import {RealHost} from '../../source/host/real.js';
import {governHeap} from '../../source/host/memory.js';
import {RunDir} from '../../source/engine/run-dir.js';
import {tasks} from '../../source/workflow/tasks.js';
import type {LogLine, Progress} from '../../source/engine/state.js';
import {KubeApi, type RewriteItem} from '../../source/kube/api.js';
import {loadKubeconfig} from '../../source/kube/kubeconfig.js';

type TaskCommand = {op: 'task'; task: string; action?: 'run' | 'undo'; params: Record<string, unknown>; runId: string; pidFile?: string};
type WriterCommand = {op: 'writer'; secrets: Array<{namespace: string; name: string}>; stopFile: string; workers?: number};
type WireCommand = {op: 'wire'; secretsPath: string};
type Command = TaskCommand | WriterCommand | WireCommand;

const command = JSON.parse(process.argv[2] ?? '{}') as Command;
const host = new RealHost('/');

function emit(value: unknown): void {
	process.stdout.write(`${JSON.stringify(value)}\n`);
}

async function runTask(cmd: TaskCommand): Promise<void> {
	if (cmd.pidFile) await host.writeFileAtomic(cmd.pidFile, `${process.pid}\n`, 0o600);
	const executor = tasks.get(cmd.task);
	if (!executor) throw new Error(`no task ${cmd.task}`);
	// The run id is a timestamp: several driver calls share one run directory.
	const runDir = new RunDir(host, new Date(cmd.runId));
	// The count and the last one only: a list of every update grew with the object count and
	// showed in the peak RSS this driver reports.
	let progressCount = 0;
	let lastProgress: Omit<Progress, 'stageId'> | undefined;
	// As the CLI does (cli/main.ts): the heap kept near what is live.
	governHeap();
	const logs: LogLine[] = [];
	const controller = new AbortController();
	process.on('SIGTERM', () => controller.abort());
	const context = {
		host,
		signal: controller.signal,
		runDir,
		progress: (p: Omit<Progress, 'stageId'>) => {
			progressCount++;
			lastProgress = p;
		},
		log: (line: LogLine) => logs.push(line),
	};
	const started = Date.now();
	const rssBefore = process.memoryUsage().rss;
	try {
		if ((cmd.action ?? 'run') === 'undo') await executor.undo?.(cmd.params, context);
		else await executor.run(cmd.params, context);
		emit({ok: true, seconds: (Date.now() - started) / 1000, logs, progressCount, lastProgress, rssBeforeMB: rssBefore / 2 ** 20, maxRssMB: process.resourceUsage().maxRSS / 1024, runDir: runDir.dir});
	} catch (error) {
		emit({ok: false, error: error instanceof Error ? error.message : String(error), name: error instanceof Error ? error.name : undefined, logs, progressCount, lastProgress, runDir: runDir.dir});
	}
}

async function runWriter(cmd: WriterCommand): Promise<void> {
	const api = new KubeApi(host, await loadKubeconfig(host, '/etc/kubernetes/admin.conf'));
	const last: Record<string, string> = {};
	let writes = 0;
	let iteration = 0;
	const stopped = async () => (await host.stat(cmd.stopFile)) !== undefined;
	const workers = cmd.workers ?? 4;
	const slices = Array.from({length: workers}, (_, w) => cmd.secrets.filter((_, i) => i % workers === w));
	let stop = false;
	const poller = (async () => {
		while (!(stop = await stopped())) await host.sleep(100);
	})();
	await Promise.all(
		slices.map(async slice => {
			while (!stop) {
				for (const secret of slice) {
					if (stop) break;
					const value = `writer-${iteration++}`;
					await api.patch(`/api/v1/namespaces/${secret.namespace}/secrets/${secret.name}`, {data: {password: Buffer.from(value).toString('base64')}});
					last[`${secret.namespace}/${secret.name}`] = value;
					writes++;
				}
			}
		}),
	);
	await poller;
	emit({ok: true, writes, last});
}

async function runWire(cmd: WireCommand): Promise<void> {
	const api = new KubeApi(host, await loadKubeconfig(host, '/etc/kubernetes/admin.conf'));
	const names = (items: Array<{namespace?: string; name: string}>) => items.map(item => `${item.namespace ?? ''}/${item.name}`);
	const secrets = await api.listForRewrite(cmd.secretsPath, {limit: 50});
	const json = await api.list(cmd.secretsPath, {limit: 50});
	// Every item written back as listed (no conflict: nothing else writes them).
	let written = 0;
	const put = (collection: string, item: RewriteItem) =>
		api.request('PUT', `${collection.replace(/\/([^/]+)$/, `/namespaces/${item.namespace}/$1`)}/${item.name}`, {body: item.body, contentType: item.contentType, accept: item.contentType});
	for (const item of secrets.items.slice(0, 5)) {
		await put(cmd.secretsPath, item);
		written++;
	}
	// Another client changes the first one; its listed bytes are then stale: a typed conflict read from a protobuf Status.
	const stale = secrets.items[0]!;
	await api.patch(`/api/v1/namespaces/${stale.namespace}/secrets/${stale.name}`, {metadata: {labels: {'etcd-harden-test': 'changed'}}});
	const caught = async (run: () => Promise<unknown>) => {
		try {
			await run();
			return undefined;
		} catch (error) {
			const typed = error as {name: string; status: number; reason?: string; message: string};
			return {name: typed.name, status: typed.status, reason: typed.reason, message: typed.message};
		}
	};
	const conflict = await caught(() => api.request('PUT', `/api/v1/namespaces/${stale.namespace}/secrets/${stale.name}`, {body: stale.body, contentType: stale.contentType, accept: stale.contentType}));
	const missing = await caught(() => api.request('GET', '/api/v1/namespaces/default/secrets/no-such-secret', {accept: 'application/vnd.kubernetes.protobuf'}));
	emit({
		ok: true,
		secrets: {contentTypes: [...new Set(secrets.items.map(item => item.contentType))], names: names(secrets.items), jsonNames: names(json.items.map(item => item.metadata)), continue: Boolean(secrets.continue), jsonContinue: Boolean(json.continue)},
		written,
		conflict,
		missing,
	});
}

try {
	if (command.op === 'task') await runTask(command);
	else if (command.op === 'wire') await runWire(command);
	else if (command.op === 'writer') await runWriter(command);
	else throw new Error('unknown op');
} catch (error) {
	emit({ok: false, error: error instanceof Error ? error.stack : String(error)});
}

/**
 * `etcd-harden fleet rotate|enable|disable|status|export`: the fleet workflow (source/workflow/fleet.ts)
 * with Ansible from source/host/ansible.ts, on the operator's workstation. Progress: the Ink
 * table on a terminal, one line per cell change in line mode (stderr); the result table (or
 * --json) on stdout. Exit 0 done, 1 a node's status fails, 2 bad input, 3 the play stopped.
 */
import {exitCodes, InputError} from '../engine/contract.js';
import {removePlayDir, runAnsible, writePlayDir} from '../host/ansible.js';
import {RealHost} from '../host/real.js';
import {runFleet, type FleetRequest} from '../workflow/fleet.js';
import type {FleetView} from '../fleet/events.js';
import {colorOn, isCi, paint} from '../ui/format.js';
import {fleetCellLine, fleetHeader, fleetTableLines} from '../ui/fleet-format.js';
import type {CliOptions} from './args.js';
import {isSingleExecutable} from './version.js';

type Io = {stdin: NodeJS.ReadStream; stdout: NodeJS.WriteStream; stderr: NodeJS.WriteStream; handleSignals: boolean};

export async function fleetCommand(options: CliOptions, io: Io): Promise<number> {
	const fleet = options.fleet;
	if (!fleet) throw new InputError('fleet needs an operation: rotate, enable, disable, status or export.');
	const request: FleetRequest = {
		operation: fleet.operation,
		nodes: fleet.nodes,
		dryRun: options.dryRun,
		...(fleet.inventory === undefined ? {} : {inventory: fleet.inventory}),
		...(fleet.limit === undefined ? {} : {limit: fleet.limit}),
		...(fleet.executable === undefined ? {} : {executable: fleet.executable}),
		...(options.bundleKey === undefined ? {} : {bundleKey: options.bundleKey}),
		...(options.backup.output === undefined ? {} : {output: options.backup.output}),
		...(options.timeout === undefined ? {} : {timeout: options.timeout}),
		...(options.kubeconfig === undefined ? {} : {kubeconfig: options.kubeconfig}),
	};
	const abort = new AbortController();
	const onSignal = (): void => abort.abort();
	if (io.handleSignals) {
		process.on('SIGINT', onSignal);
		process.on('SIGTERM', onSignal);
	}
	const color = colorOn(io.stdout, process.env);
	const progressColor = colorOn(io.stderr, process.env);
	const useInk = !options.json && !options.plain && Boolean(io.stderr.isTTY) && !isCi(process.env) && fleet.operation !== 'export';
	let latest: FleetView | undefined;
	const listeners = new Set<() => void>();
	let printedHeader = false;
	const onView = (view: FleetView): void => {
		const previous = latest;
		latest = view;
		if (useInk) {
			for (const listener of listeners) listener();
			return;
		}
		if (options.json) return;
		if (!printedHeader) {
			io.stderr.write(`${paint({text: fleetHeader(view), tone: 'active'}, progressColor)}\n`);
			printedHeader = true;
		}
		for (const node of view.nodes) {
			for (const step of view.steps) {
				const cell = view.cells[node]?.[step.id];
				const before = previous?.cells[node]?.[step.id];
				if (cell && previous && (cell.state !== before?.state || cell.detail !== before?.detail) && cell.state !== 'pending') {
					io.stderr.write(`${paint(fleetCellLine(node, step.id, cell), progressColor)}\n`);
				}
			}
		}
	};
	try {
		const context = {
			files: new RealHost('/'),
			ansible: {writePlayDir, removePlayDir, run: runAnsible},
			...((await isSingleExecutable()) ? {singleExecutable: process.execPath} : {}),
			signal: abort.signal,
		};
		const running = runFleet(request, context, onView);
		if (useInk) {
			// The table appears once the inventory is read (the first view).
			const {runFleetInk} = await import('../ui/fleet.js');
			const first = new Promise<void>(resolve => {
				const check = (): void => (latest ? resolve() : undefined);
				listeners.add(check);
				void running.finally(resolve);
			});
			await first;
			if (latest) {
				await runFleetInk({current: () => latest!, subscribe: listener => (listeners.add(listener), () => listeners.delete(listener))}, running.catch(() => undefined), {stdout: io.stderr, stdin: io.stdin});
			}
		}
		const result = await running;
		if (fleet.operation === 'export') {
			const lines = [`Wrote the fleet play to ${result.exportedTo}: ${result.files!.join(', ')}.`];
			lines.push(`Run it with Ansible from there: ansible-playbook -i INVENTORY rotate.yml (or enable.yml, disable.yml, status.yml), then ansible-playbook -i INVENTORY cleanup.yml in any case.`);
			lines.push('Fill in etcd-harden-vars.yml first: the bundle key file, and the executable to copy (empty: etcd-harden installed on every node).');
			if (options.json) io.stdout.write(`${JSON.stringify({operation: 'export', directory: result.exportedTo, files: result.files}, null, 2)}\n`);
			else io.stdout.write(`${lines.join('\n')}\n`);
			return exitCodes.ok;
		}
		if (options.json) {
			const view = result.view;
			io.stdout.write(
				`${JSON.stringify(
					{
						operation: view.operation,
						dryRun: view.dryRun,
						exitCode: result.exitCode,
						nodes: view.nodes,
						steps: view.steps,
						cells: view.cells,
						failure: view.failure ?? null,
						outputs: view.outputs,
						...(view.dryRun ? {playbook: result.playbook} : {}),
					},
					null,
					2,
				)}\n`,
			);
			return result.exitCode;
		}
		if (options.dryRun) {
			io.stdout.write(`# The play (${result.view.operation}.yml, rendered from templates/ansible/):\n${result.playbook}\n`);
			for (const node of result.view.nodes) {
				for (const [step, output] of Object.entries(result.view.outputs[node] ?? {})) {
					for (const line of planLines(output)) io.stdout.write(`${node} ${step}: ${line}\n`);
				}
			}
		}
		for (const line of fleetTableLines(result.view)) io.stdout.write(`${paint(line, color)}\n`);
		if (result.view.operation === 'status') {
			for (const node of result.view.nodes) {
				const rows = result.view.outputs[node]?.['status'];
				if (!Array.isArray(rows)) continue;
				const counts = ['PASS', 'WARN', 'FAIL'].map(kind => `${rows.filter((row: {status?: string}) => row.status === kind).length} ${kind.toLowerCase()}`);
				io.stdout.write(`${node}: ${counts.join(', ')}\n`);
				for (const row of rows as Array<{status?: string; id?: string; title?: string; actual?: string}>) {
					if (row.status !== 'PASS') io.stdout.write(`  ${row.status} ${row.id}: ${row.title}${row.actual ? ` (${row.actual})` : ''}\n`);
				}
			}
		}
		return result.exitCode;
	} finally {
		if (io.handleSignals) {
			process.off('SIGINT', onSignal);
			process.off('SIGTERM', onSignal);
		}
	}
}

/** A node's --dry-run result (the tool's --json) as its planned changes, one line each. */
function planLines(output: unknown): string[] {
	if (typeof output !== 'object' || output === null || !Array.isArray((output as {stages?: unknown}).stages)) return [];
	const lines: string[] = [];
	for (const stage of (output as {stages: Array<{id: string; changes?: Array<{summary?: string}>; error?: string}>}).stages) {
		if (stage.error) lines.push(`${stage.id}: ${stage.error.split('\n')[0]}`);
		for (const change of stage.changes ?? []) if (change.summary) lines.push(`${stage.id}: ${change.summary}`);
		if ((stage.changes ?? []).length === 0 && !stage.error) lines.push(`${stage.id}: nothing to change`);
	}
	return lines;
}

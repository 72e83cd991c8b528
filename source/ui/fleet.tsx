/**
 * etcd-harden fleet on a terminal: the table of steps by node, redrawn as the play reports
 * each task (source/ui/fleet-format.ts makes the rows; this only draws them).
 */
import React, {useEffect, useState} from 'react';
import {Box, render, Text} from 'ink';
import {fleetHeader, fleetOutcome, fleetRows, type FleetTableView} from './fleet-format.js';

const inkColor: Record<string, string | undefined> = {active: 'cyan', success: 'green', warn: 'yellow', error: 'red', meta: 'blue'};

export type FleetFeed = {current(): FleetTableView; subscribe(listener: () => void): () => void};

export function FleetTable({feed}: {feed: FleetFeed}): React.JSX.Element {
	const [view, setView] = useState(feed.current());
	useEffect(() => feed.subscribe(() => setView(feed.current())), [feed]);
	const rows = fleetRows(view);
	const widths = [Math.max(4, ...view.steps.map(step => step.id.length)) + 2, ...view.nodes.map((node, index) => Math.max(node.length, ...rows.map(row => row[index + 1]!.text.length)) + 2)];
	return (
		<Box flexDirection="column">
			<Text color="cyan">{fleetHeader(view)}</Text>
			<Box>
				{['step', ...view.nodes].map((text, index) => (
					<Box key={text} width={widths[index]}>
						<Text bold>{text}</Text>
					</Box>
				))}
			</Box>
			{rows.map((row, rowIndex) => (
				<Box key={view.steps[rowIndex]!.id}>
					{row.map((cell, index) => (
						<Box key={index} width={widths[index]}>
							<Text color={inkColor[cell.tone]} dimColor={cell.tone === 'muted'}>
								{cell.text}
							</Text>
						</Box>
					))}
				</Box>
			))}
			{fleetOutcome(view).map(line => (
				<Text key={line.text} color={inkColor[line.tone]} dimColor={line.tone === 'muted'}>
					{line.text}
				</Text>
			))}
		</Box>
	);
}

/** Draw the table until `done` settles. */
export async function runFleetInk(feed: FleetFeed, done: Promise<unknown>, io: {stdout: NodeJS.WriteStream; stdin: NodeJS.ReadStream}): Promise<void> {
	const instance = render(<FleetTable feed={feed} />, {stdout: io.stdout, stdin: io.stdin, exitOnCtrlC: false, patchConsole: false});
	try {
		await done;
		// One last frame with the final state.
		await new Promise(resolve => setTimeout(resolve, 50));
	} finally {
		instance.unmount();
		await instance.waitUntilExit();
	}
}

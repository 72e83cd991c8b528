/**
 * A workflow: what one command runs — its stages in order (after --only/--skip), how it
 * reads the node, and the answers it fills in from its own flags. The CLI builds one from
 * the parsed command line and hands it to the engine; nothing below the workflow sees the
 * command line.
 */
import type {Answers, EngineCommand, RunSettings} from '../engine/contract.js';
import type {NodeStage} from '../stages/facts.js';
import type {Discovery} from './node.js';

export type Workflow = {
	command: EngineCommand;
	stages: NodeStage[];
	/** Left out by --only/--skip: shown as skipped. */
	skipped: NodeStage[];
	discover: Discovery;
	/** Stage ids an answers file may name (the command's stages and the harden stages). */
	knownStages: string[];
	/** Answers the workflow derives from its flags, merged under the operator's own. */
	answers(given: Answers): Promise<Answers>;
	settings: RunSettings;
	/** undo: the run this one takes back (recorded in the receipt). */
	undoes?: string;
};

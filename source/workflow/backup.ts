/** `etcd-harden backup`: the backup stage alone, on the node's files. */
import * as path from 'node:path';
import type {Answers, RunSettings} from '../engine/contract.js';
import {backupStage} from '../stages/backup.js';
import {answerableStages} from './harden.js';
import {fileDiscovery} from './node.js';
import type {Workflow} from './workflow.js';

/**
 * The service's ExecStart needs the command that runs this very etcd-harden: node and the CLI
 * script, unless --set backup.program=... says otherwise.
 */
export function presetBackupProgram(answers: Answers, argv1: string | undefined, execPath: string): Answers {
	if (!argv1) return answers;
	const stage = {...answers['backup']};
	stage['program'] ??= /\.[cm]?js$/.test(argv1) ? `${execPath} ${path.resolve(argv1)}` : path.resolve(argv1);
	return {...answers, backup: stage};
}

export function backupWorkflow(settings: RunSettings, program: {argv1: string | undefined; execPath: string}): Workflow {
	return {
		command: 'backup',
		stages: [backupStage],
		skipped: [],
		discover: fileDiscovery,
		knownStages: answerableStages([backupStage]),
		answers: async given => presetBackupProgram(given, program.argv1, program.execPath),
		settings,
	};
}

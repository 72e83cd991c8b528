/** `etcd-harden backup`: the backup stage alone, on the node's files. */
import * as path from 'node:path';
import type {Answers, RunSettings} from '../engine/contract.js';
import {backupStage} from '../stages/backup.js';
import {answerableStages} from './harden.js';
import {fileDiscovery} from './node.js';
import type {Workflow} from './workflow.js';

/** How this etcd-harden was started: the script node runs, or the single executable itself. */
export type ProgramLaunch = {argv1: string | undefined; execPath: string; singleExecutable?: boolean};

/**
 * The service's ExecStart needs the command that runs this very etcd-harden: the single
 * executable's own absolute path (process.execPath: argv[1] there is whatever the shell was given,
 * for example a bare name found on PATH), or node and the CLI script, unless
 * --set backup.program=... says otherwise.
 */
export function presetBackupProgram(answers: Answers, launch: ProgramLaunch): Answers {
	const {argv1, execPath} = launch;
	const stage = {...answers['backup']};
	if (launch.singleExecutable) {
		stage['program'] ??= execPath;
		return {...answers, backup: stage};
	}
	if (!argv1) return answers;
	stage['program'] ??= /\.[cm]?js$/.test(argv1) ? `${execPath} ${path.resolve(argv1)}` : path.resolve(argv1);
	return {...answers, backup: stage};
}

export function backupWorkflow(settings: RunSettings, program: ProgramLaunch): Workflow {
	return {
		command: 'backup',
		stages: [backupStage],
		skipped: [],
		discover: fileDiscovery,
		knownStages: answerableStages([backupStage]),
		answers: async given => presetBackupProgram(given, program),
		settings,
	};
}

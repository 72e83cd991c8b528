/**
 * The systemd service and timer for scheduled backups, rendered from templates/backup/ (pure).
 */
import {backupTemplates} from './templates.generated.js';

export const SERVICE_NAME = 'etcd-harden-backup.service';
export const TIMER_NAME = 'etcd-harden-backup.timer';
export const UNIT_DIR = '/etc/systemd/system';

export const schedules = {
	hourly: {onCalendar: 'hourly', randomizedDelay: '5min'},
	daily: {onCalendar: '*-*-* 02:00:00', randomizedDelay: '30min'},
	weekly: {onCalendar: 'Sun *-*-* 02:00:00', randomizedDelay: '1h'},
} as const;
export type Schedule = keyof typeof schedules;

export function isSchedule(value: unknown): value is Schedule {
	return typeof value === 'string' && Object.hasOwn(schedules, value);
}

/**
 * One word of an ExecStart= line: double-quoted when it holds anything but safe characters, with
 * systemd's specifiers (`%`) and variable expansion (`$`) escaped.
 */
export function systemdWord(word: string): string {
	const escaped = word.replaceAll('%', '%%').replaceAll('$', '$$$$');
	if (/^[\w@+=:,./-]+$/.test(escaped)) return escaped;
	return `"${escaped.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

export type UnitOptions = {
	/** argv of etcd-harden itself, e.g. ['/usr/local/bin/etcd-harden'] or [node, cli.js]. */
	program: string[];
	output: string;
	recipients?: string[];
	passphraseFile?: string;
	keep: number;
	schedule: Schedule;
};

/** The backup command the service runs (the same flags as an interactive backup). */
export function backupArgv(options: UnitOptions): string[] {
	const argv = [...options.program, 'backup', '--yes', '--plain', '--output', options.output, '--keep', String(options.keep)];
	for (const recipient of options.recipients ?? []) argv.push('--recipient', recipient);
	if (options.passphraseFile) argv.push('--passphrase-file', options.passphraseFile);
	return argv;
}

function fill(template: string, values: Record<string, string>): string {
	return template.replace(/\{\{(\w+)\}\}/g, (_, name: string) => {
		const value = values[name];
		if (value === undefined) throw new Error(`internal: template value ${name} missing`);
		return value;
	});
}

export function renderUnits(options: UnitOptions): {service: string; timer: string} {
	if (options.program.length === 0 || !options.program[0]!.startsWith('/')) {
		throw new Error('internal: the program for ExecStart must start with an absolute path');
	}
	const schedule = schedules[options.schedule];
	return {
		service: fill(backupTemplates['etcd-harden-backup.service'], {execStart: backupArgv(options).map(systemdWord).join(' ')}),
		timer: fill(backupTemplates['etcd-harden-backup.timer'], {
			schedule: options.schedule,
			keep: options.keep === 0 ? 'all backups' : `${options.keep} backups`,
			onCalendar: schedule.onCalendar,
			randomizedDelay: schedule.randomizedDelay,
		}),
	};
}

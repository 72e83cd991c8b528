// The pure formatting both frontends share.
import {describe, expect, it} from 'vitest';
import {
	checkLines,
	diffLineTone,
	formatDuration,
	formatRate,
	isCi,
	previewLines,
	progressLine,
	stageTally,
	yesNoHint,
} from '../../source/ui/format.js';
import {stage} from './fake-engine.js';

describe('format', () => {
	it('durations and rates', () => {
		expect(formatDuration(0)).toBe('0s');
		expect(formatDuration(59.6)).toBe('1m00s');
		expect(formatDuration(65)).toBe('1m05s');
		expect(formatDuration(3700)).toBe('1h01m');
		expect(formatRate(1234.4)).toBe('1234/s');
		expect(formatRate(2.25)).toBe('2.3/s');
	});

	it('progress lines leave out what the engine did not give', () => {
		expect(progressLine({stageId: 's', label: 'Waiting for /readyz'})).toBe('Waiting for /readyz');
		expect(progressLine({stageId: 's', label: 'Scanning', done: 12})).toBe('Scanning  12 done');
		expect(progressLine({stageId: 's', label: 'Re-encrypting', done: 0, total: 0})).toBe(
			'Re-encrypting  [....................] 0/0 100%',
		);
		expect(progressLine({stageId: 's', label: 'R', done: 150, total: 100, rate: 5, etaSeconds: 0}, 4)).toBe(
			'R  [####] 150/100 100%  5/s  ETA 0s',
		);
	});

	it('check lines: status, actual, and a fix only for fail and warn', () => {
		expect(checkLines({id: 'a', title: 'T', status: 'pass', remediation: 'never shown'})).toEqual([{text: 'PASS  T', tone: 'success'}]);
		expect(checkLines({id: 'a', title: 'T', status: 'warn', actual: 'x', remediation: 'do y'})).toEqual([
			{text: 'WARN  T: x', tone: 'warn'},
			{text: '      fix: do y', tone: 'plain'},
		]);
	});

	it('diff colouring and preview bodies', () => {
		expect(['+++ b', '--- a', '@@ -1 +1 @@', '+x', '-y', ' z'].map(diffLineTone)).toEqual(['meta', 'meta', 'hunk', 'add', 'remove', 'plain']);
		expect(previewLines({kind: 'run', summary: 'reload', body: 'iptables -A X\n'})).toEqual([
			{text: 'run: reload', tone: 'active'},
			{text: '  $ iptables -A X', tone: 'plain'},
		]);
		expect(previewLines({kind: 'task', summary: 'wait', body: ''})).toHaveLength(1);
	});

	it('tally, yes/no hints and CI detection', () => {
		expect(stageTally([stage('a', 'done'), stage('b', 'done'), stage('c', 'skipped')])).toBe('3 stages: 2 done, 1 skipped');
		expect(yesNoHint(true)).toBe('(Y/n)');
		expect(yesNoHint(undefined)).toBe('(y/n)');
		expect(isCi({CI: 'true'})).toBe(true);
		expect(isCi({CI: 'false'})).toBe(false);
		expect(isCi({CI: '0', CONTINUOUS_INTEGRATION: '1'})).toBe(true);
		expect(isCi({})).toBe(false);
	});
});

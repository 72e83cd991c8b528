/**
 * The Prometheus text exposition format (version 0.0.4), both ways: parsing what
 * kube-apiserver and etcd serve on /metrics, and writing the node_exporter textfile the
 * monitor command leaves for Prometheus. Pure: text in, samples out.
 *
 * No npm parser is used: the one maintained-looking package (parse-prometheus-text-format)
 * has had no release since 2019, and the subset needed here (samples with labels, HELP and
 * TYPE, escapes) is small and covered by unit tests.
 */

export type Labels = Record<string, string>;
export type Sample = {name: string; labels: Labels; value: number};
export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export class ExpositionError extends Error {
	override name = 'ExpositionError';
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

function parseValue(text: string, line: number): number {
	switch (text) {
		case '+Inf':
			return Number.POSITIVE_INFINITY;
		case '-Inf':
			return Number.NEGATIVE_INFINITY;
		case 'NaN':
			return Number.NaN;
		default: {
			const value = Number(text);
			if (text === '' || Number.isNaN(value)) throw new ExpositionError(`line ${line}: "${text}" is not a sample value`);
			return value;
		}
	}
}

/** `{a="x",b="y\"z"}` starting at `start` (the brace): the labels and the index after `}`. */
function parseLabels(text: string, start: number, line: number): {labels: Labels; end: number} {
	const labels: Labels = {};
	let i = start + 1;
	const skipSpace = (): void => {
		while (text[i] === ' ' || text[i] === '\t') i++;
	};
	for (;;) {
		skipSpace();
		if (text[i] === '}') return {labels, end: i + 1};
		const name = LABEL_NAME.exec(text.slice(i));
		if (!name) throw new ExpositionError(`line ${line}: bad label name at column ${i + 1}`);
		i += name[0].length;
		skipSpace();
		if (text[i] !== '=') throw new ExpositionError(`line ${line}: expected = after label ${name[0]}`);
		i++;
		skipSpace();
		if (text[i] !== '"') throw new ExpositionError(`line ${line}: label ${name[0]} has no quoted value`);
		i++;
		let value = '';
		for (;;) {
			const char = text[i];
			if (char === undefined) throw new ExpositionError(`line ${line}: unterminated value of label ${name[0]}`);
			i++;
			if (char === '"') break;
			if (char === '\\') {
				const next = text[i++];
				value += next === 'n' ? '\n' : next === '\\' ? '\\' : next === '"' ? '"' : `\\${next ?? ''}`;
			} else {
				value += char;
			}
		}
		labels[name[0]] = value;
		skipSpace();
		if (text[i] === ',') i++;
		else if (text[i] !== '}') throw new ExpositionError(`line ${line}: expected , or } after label ${name[0]}`);
	}
}

/** Every sample of an exposition; comments, HELP and TYPE lines are skipped. Throws ExpositionError on a malformed line. */
export function parseExposition(text: string): Sample[] {
	const samples: Sample[] = [];
	const lines = text.split('\n');
	for (let index = 0; index < lines.length; index++) {
		const line = lines[index]!.trim();
		if (line === '' || line.startsWith('#')) continue;
		const name = NAME.exec(line);
		if (!name) throw new ExpositionError(`line ${index + 1}: no metric name`);
		let rest = name[0].length;
		let labels: Labels = {};
		if (line[rest] === '{') {
			const parsed = parseLabels(line, rest, index + 1);
			labels = parsed.labels;
			rest = parsed.end;
		}
		const fields = line.slice(rest).trim().split(/\s+/);
		if (fields.length < 1 || fields.length > 2) throw new ExpositionError(`line ${index + 1}: expected a value and an optional timestamp`);
		samples.push({name: name[0], labels, value: parseValue(fields[0]!, index + 1)});
	}
	return samples;
}

/** Sum of the samples of one metric whose labels match every given label (a value or a predicate). */
export function sumOf(samples: readonly Sample[], name: string, match: Record<string, string | ((value: string) => boolean)> = {}): number {
	let total = 0;
	for (const sample of samples) {
		if (sample.name !== name) continue;
		if (Object.entries(match).every(([label, want]) => (typeof want === 'string' ? sample.labels[label] === want : want(sample.labels[label] ?? '')))) total += sample.value;
	}
	return total;
}

/** Whether the exposition has any sample of this metric (absent metrics are "unknown", not zero). */
export function hasMetric(samples: readonly Sample[], name: string): boolean {
	return samples.some(sample => sample.name === name);
}

function escapeLabel(value: string): string {
	return value.replaceAll('\\', '\\\\').replaceAll('\n', '\\n').replaceAll('"', '\\"');
}

function formatValue(value: number): string {
	if (Number.isNaN(value)) return 'NaN';
	if (value === Number.POSITIVE_INFINITY) return '+Inf';
	if (value === Number.NEGATIVE_INFINITY) return '-Inf';
	return String(value);
}

export type MetricFamily = {name: string; help: string; type: MetricType; samples: Array<{labels?: Labels; value: number}>};

/** Render metric families in the text format (HELP, TYPE, then the samples; sorted labels). */
export function renderExposition(families: readonly MetricFamily[]): string {
	const lines: string[] = [];
	for (const family of families) {
		if (!NAME.test(family.name) || NAME.exec(family.name)![0] !== family.name) throw new ExpositionError(`"${family.name}" is not a metric name`);
		lines.push(`# HELP ${family.name} ${family.help.replaceAll('\\', '\\\\').replaceAll('\n', '\\n')}`);
		lines.push(`# TYPE ${family.name} ${family.type}`);
		for (const sample of family.samples) {
			const entries = Object.entries(sample.labels ?? {}).sort(([a], [b]) => a.localeCompare(b));
			const labels = entries.length === 0 ? '' : `{${entries.map(([key, value]) => `${key}="${escapeLabel(value)}"`).join(',')}}`;
			lines.push(`${family.name}${labels} ${formatValue(sample.value)}`);
		}
	}
	return `${lines.join('\n')}\n`;
}

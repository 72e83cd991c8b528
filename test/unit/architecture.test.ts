// The architecture, checked on the import graph of source/ (read with the TypeScript
// compiler's own pre-processor, type-only imports included):
//   cli -> workflow -> engine -> stages -> domains -> host, one direction, no circle;
//   domains (kube, etcd, firewall, backup, crypto) know the engine only by its contract;
//   stages plan from facts and never reach the machine; the frontends only render.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {fileURLToPath} from 'node:url';
import ts from 'typescript';
import {describe, expect, test} from 'vitest';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const sourceDir = path.join(repo, 'source');

type Edge = {from: string; to: string; typeOnly: boolean; names?: string[]};

function sourceFiles(dir: string): string[] {
	return fs.readdirSync(dir, {withFileTypes: true}).flatMap(entry => {
		const full = path.join(dir, entry.name);
		if (entry.isDirectory()) return sourceFiles(full);
		return /\.tsx?$/.test(entry.name) ? [full] : [];
	});
}

/** Every import and re-export of every file, resolved to a path relative to source/ (packages keep their name). */
function importGraph(): Edge[] {
	const edges: Edge[] = [];
	for (const file of sourceFiles(sourceDir)) {
		const text = fs.readFileSync(file, 'utf8');
		const info = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, file.endsWith('x') ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
		const from = path.relative(sourceDir, file);
		const visit = (node: ts.Node): void => {
			let specifier: ts.Expression | undefined;
			let typeOnly = false;
			let names: string[] | undefined;
			if (ts.isImportDeclaration(node)) {
				specifier = node.moduleSpecifier;
				typeOnly = Boolean(node.importClause?.isTypeOnly);
				const bindings = node.importClause?.namedBindings;
				if (bindings && ts.isNamedImports(bindings) && !node.importClause?.name) names = bindings.elements.map(element => (element.propertyName ?? element.name).text);
			} else if (ts.isExportDeclaration(node) && node.moduleSpecifier) {
				specifier = node.moduleSpecifier;
				typeOnly = node.isTypeOnly;
			} else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
				edges.push({from, to: resolve(file, node.argument.literal.text), typeOnly: true});
			} else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
				edges.push({from, to: resolve(file, node.arguments[0].text), typeOnly: false});
			}
			if (specifier && ts.isStringLiteral(specifier)) edges.push({from, to: resolve(file, specifier.text), typeOnly, ...(names ? {names} : {})});
			ts.forEachChild(node, visit);
		};
		visit(info);
	}
	return edges;
}

function resolve(file: string, specifier: string): string {
	if (!specifier.startsWith('.')) return specifier;
	const target = path.resolve(path.dirname(file), specifier).replace(/\.js$/, '');
	for (const candidate of [`${target}.ts`, `${target}.tsx`]) {
		if (fs.existsSync(candidate)) return path.relative(sourceDir, candidate);
	}
	return path.relative(sourceDir, target);
}

const folder = (file: string): string => (file.includes('/') ? file.split('/')[0]! : '.');
const domains = ['kube', 'etcd', 'firewall', 'backup', 'crypto', 'monitor', 'fleet'];
const graph = importGraph();
const internal = graph.filter(edge => !edge.to.startsWith('node:') && edge.to.includes('.ts'));
const violations = (rule: (edge: Edge) => boolean) => internal.filter(rule).map(edge => `${edge.from} -> ${edge.to}`);

describe('architecture (the import graph of source/)', () => {
	test('the graph is read: every layer is there', () => {
		const folders = new Set(internal.map(edge => folder(edge.from)));
		for (const name of ['cli', 'workflow', 'engine', 'discover', 'stages', 'host', 'ui', 'plain', ...domains]) expect(folders).toContain(name);
		expect(internal.length).toBeGreaterThan(200);
	});

	test('no import circle', () => {
		const next = new Map<string, string[]>();
		for (const edge of internal) next.set(edge.from, [...(next.get(edge.from) ?? []), edge.to]);
		const circles: string[] = [];
		const state = new Map<string, 'open' | 'done'>();
		const stack: string[] = [];
		const walk = (file: string): void => {
			state.set(file, 'open');
			stack.push(file);
			for (const to of next.get(file) ?? []) {
				if (state.get(to) === 'open') circles.push([...stack.slice(stack.indexOf(to)), to].join(' -> '));
				else if (!state.has(to)) walk(to);
			}
			stack.pop();
			state.set(file, 'done');
		};
		for (const file of next.keys()) if (!state.has(file)) walk(file);
		expect(circles).toEqual([]);
	});

	test('domains import from the engine only its contract, and nothing above them', () => {
		expect(
			violations(
				edge =>
					domains.includes(folder(edge.from)) &&
					((folder(edge.to) === 'engine' && edge.to !== 'engine/contract.ts') || ['stages', 'discover', 'workflow', 'cli', 'ui', 'plain'].includes(folder(edge.to))),
			),
		).toEqual([]);
	});

	test('the engine knows no stage, domain, workflow or frontend', () => {
		expect(violations(edge => folder(edge.from) === 'engine' && !['engine', 'host'].includes(folder(edge.to)))).toEqual([]);
	});

	test('stages plan from facts: no host implementation, no discovery, nothing above them', () => {
		expect(
			violations(
				edge =>
					folder(edge.from) === 'stages' &&
					((folder(edge.to) === 'host' && !(edge.to === 'host/types.ts' && edge.typeOnly)) ||
						['discover', 'workflow', 'cli', 'ui', 'plain'].includes(folder(edge.to)) ||
						(folder(edge.to) === 'engine' && edge.to !== 'engine/contract.ts')),
			),
		).toEqual([]);
	});

	test('discovery reads through the host interface and knows no stage logic or command', () => {
		expect(
			violations(
				edge =>
					folder(edge.from) === 'discover' &&
					((folder(edge.to) === 'stages' && !(edge.to === 'stages/facts.ts' && edge.typeOnly)) ||
						['workflow', 'cli', 'ui', 'plain'].includes(folder(edge.to)) ||
						(folder(edge.to) === 'host' && edge.to !== 'host/types.ts')),
			),
		).toEqual([]);
	});

	test('only the CLI picks a host implementation (the engine overlays planning on a RecordingHost)', () => {
		expect(
			violations(
				edge =>
					['host/real.ts', 'host/demo.ts', 'host/recording.ts'].includes(edge.to) &&
					!['cli', 'host'].includes(folder(edge.from)) &&
					!(edge.from === 'engine/engine.ts' && edge.to === 'host/recording.ts'),
			),
		).toEqual([]);
	});

	test('the frontends render engine state only: no host, no domain, no stage', () => {
		expect(
			violations(
				edge =>
					['ui', 'plain'].includes(folder(edge.from)) &&
					(['host', 'stages', 'discover', 'workflow', 'cli', ...domains].includes(folder(edge.to)) || (folder(edge.to) === 'engine' && !['engine/contract.ts', 'engine/state.ts'].includes(edge.to))),
			),
		).toEqual([]);
	});

	test('only ui/ imports ink or react', () => {
		expect(graph.filter(edge => /^(ink|react|ink-[\w-]+)(\/|$)/.test(edge.to) && folder(edge.from) !== 'ui').map(edge => `${edge.from} -> ${edge.to}`)).toEqual([]);
	});

	test('only host/ has side effects: nothing else imports fs, child processes, the network, V8 flags or execa', () => {
		const effects = /^(node:)?(fs|fs\/promises|child_process|net|tls|http|https|http2|dgram|v8|vm)$|^execa$/;
		// Address parsing from node:net (isIP and friends) opens nothing.
		const pure = (edge: Edge) => /^(node:)?net$/.test(edge.to) && edge.names !== undefined && edge.names.every(name => /^isIP(v4|v6)?$/.test(name));
		expect(
			graph
				.filter(edge => effects.test(edge.to) && folder(edge.from) !== 'host' && !edge.typeOnly && !pure(edge))
				.map(edge => `${edge.from} -> ${edge.to}`),
		).toEqual([]);
	});
});

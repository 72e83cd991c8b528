#!/usr/bin/env node
// Embeds the files of templates/ into source/kube/templates.generated.ts, so the stages
// (pure, no file access) get template text as a constant that tsc compiles into dist/.
// Run after editing a template: `node templates/generate.mjs`. A unit test fails when the
// generated module and the files differ.
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {embedTemplates} from '../scripts/embed-templates.mjs';

const here = dirname(fileURLToPath(import.meta.url));
embedTemplates({
	dir: here,
	include: name => name.endsWith('.yaml'),
	out: join(here, '..', 'source', 'kube', 'templates.generated.ts'),
	generator: 'templates/generate.mjs',
	from: 'templates/*.yaml',
	constName: 'templates',
	typeName: 'TemplateName',
});

#!/usr/bin/env node
// Embeds the monitoring templates (templates/monitoring/*.yaml) into
// source/monitor/templates.generated.ts, so the monitor (pure, no file access) gets their text
// as constants that tsc compiles into dist/. Run after editing a template:
// `node templates/monitoring/generate.mjs`. A unit test fails when the module and the files differ.
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {embedTemplates} from '../../scripts/embed-templates.mjs';

const here = dirname(fileURLToPath(import.meta.url));
embedTemplates({
	dir: here,
	include: name => name.endsWith('.yaml'),
	out: join(here, '..', '..', 'source', 'monitor', 'templates.generated.ts'),
	generator: 'templates/monitoring/generate.mjs',
	from: 'templates/monitoring/*.yaml',
	constName: 'monitoringTemplates',
});

#!/usr/bin/env node
// Embeds the firewall templates (templates/firewall/*, except this script) into
// source/firewall/templates.generated.ts, so the firewall stage (pure, no file access) gets
// their text as constants that tsc compiles into dist/. Run after editing a template:
// `node templates/firewall/generate.mjs`. A unit test fails when the module and the files differ.
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {embedTemplates} from '../../scripts/embed-templates.mjs';

const here = dirname(fileURLToPath(import.meta.url));
embedTemplates({
	dir: here,
	include: name => !name.endsWith('.mjs'),
	out: join(here, '..', '..', 'source', 'firewall', 'templates.generated.ts'),
	generator: 'templates/firewall/generate.mjs',
	from: 'templates/firewall/*',
	constName: 'firewallTemplates',
	typeName: 'FirewallTemplateName',
});

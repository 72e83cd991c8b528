#!/usr/bin/env node
// Embeds templates/backup/*.service and *.timer into source/backup/templates.generated.ts, so the
// backup stage (pure, no file access) gets the unit text as constants compiled into dist/.
// Run after editing a template: `node templates/backup/generate.mjs`. A unit test fails when the
// generated module and the files differ.
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {embedTemplates} from '../../scripts/embed-templates.mjs';

const here = dirname(fileURLToPath(import.meta.url));
embedTemplates({
	dir: here,
	include: name => name.endsWith('.service') || name.endsWith('.timer'),
	out: join(here, '..', '..', 'source', 'backup', 'templates.generated.ts'),
	generator: 'templates/backup/generate.mjs',
	from: 'templates/backup/*.{service,timer}',
	constName: 'backupTemplates',
	typeName: 'BackupTemplateName',
});

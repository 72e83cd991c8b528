#!/usr/bin/env node
// Embeds templates/ansible/ (the fleet playbook, its task files, the callback and filter
// plugins, ansible.cfg) into source/fleet/templates.generated.ts, so rendering (pure, no file
// access) gets the text as constants compiled into dist/ and the single executable.
// Run after editing a template: `node templates/ansible/generate.mjs`. A unit test fails when
// the generated module and the files differ.
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {embedTemplates} from '../../scripts/embed-templates.mjs';

const here = dirname(fileURLToPath(import.meta.url));
embedTemplates({
	dir: here,
	include: name => /\.(yml|py|cfg)$/.test(name),
	recursive: true,
	out: join(here, '..', '..', 'source', 'fleet', 'templates.generated.ts'),
	generator: 'templates/ansible/generate.mjs',
	from: 'templates/ansible/',
	constName: 'ansibleTemplates',
	typeName: 'AnsibleTemplateName',
});

import {fileURLToPath} from 'node:url';
import {describe, expect, it} from 'vitest';
import {InputError, type Answers, type PlanContext, type StagePlan, type WriteFileChange} from '../../source/engine/contract.js';
import {configDigest, parseEncryptionConfig} from '../../source/kube/encryption-config.js';
import {inspectManifest} from '../../source/kube/manifest.js';
import {apiserverManifestStage, digestAnnotation, reloadFlag} from '../../source/stages/apiserver-manifest.js';
import {discover, verifyDiscoveryOptions} from '../../source/discover/files.js';
import {encryptionConfigStage} from '../../source/stages/encryption-config.js';
import type {Facts} from '../../source/stages/facts.js';
import {hardenStages as stages} from '../../source/workflow/harden.js';

const stageIds = stages.map(stage => stage.id);
import {countingBytes, MemoryHost} from './helpers/memory-host.js';

const demoDir = fileURLToPath(new URL('../../demo/', import.meta.url));
const manifestPath = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const defaultPath = '/etc/kubernetes/enc/encryption-config.yaml';

async function apply(host: MemoryHost, plan: StagePlan): Promise<void> {
	for (const change of plan.changes) if (change.kind === 'write-file') await host.writeFileAtomic(change.path, change.content, change.mode);
}

function writes(plan: StagePlan): WriteFileChange[] {
	return plan.changes.filter((c): c is WriteFileChange => c.kind === 'write-file');
}

/** Plan both stages as the engine does: each sees the answers and the earlier plans. */
async function planRun(host: MemoryHost, given: Answers = {}, random = countingBytes()) {
	// The recovery-copy choice is required for a new key; these tests are about the config.
	const answers: Answers = {...given, 'encryption-config': {recovery: 'stored-elsewhere', storedElsewhere: true, ...given['encryption-config']}};
	const facts = await discover(host);
	const context: PlanContext = {randomBytes: random.randomBytes, now: new Date(0), answers};
	const encPlan = encryptionConfigStage.plan(facts, answers['encryption-config'] ?? {}, context);
	const manifestPlan = apiserverManifestStage.plan(facts, answers['apiserver-manifest'] ?? {}, {...context, planned: {'encryption-config': encPlan}});
	return {facts, encPlan, manifestPlan, random};
}

function setVersion(host: MemoryHost, version: string): void {
	host.put(manifestPath, host.text(manifestPath)!.replace(/image: kube-apiserver:v[\d.]+/, `image: kube-apiserver:v${version}`), 0o600);
}

/** Text the operator sees (summaries, notes, warnings): must never contain a key. */
function visible(plan: StagePlan): string {
	return JSON.stringify({notes: plan.notes, warnings: plan.warnings, summaries: plan.changes.map(c => c.summary)});
}

describe('recovery copy of a new key', () => {
	const context = () => ({randomBytes: countingBytes().randomBytes, now: new Date(0)});
	it('is required: without an answer planning fails naming the answers to give', async () => {
		const facts = await discover(MemoryHost.fromDir(demoDir));
		expect(() => encryptionConfigStage.plan(facts, {}, context())).toThrow(/encryption-config\.recovery: a new key needs a recovery copy/);
	});
	it('with a recipient, the age-encrypted copy is written before the config, its content kept out of the summary', async () => {
		const facts = await discover(MemoryHost.fromDir(demoDir));
		const recipient = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';
		const plan = encryptionConfigStage.plan(facts, {recovery: 'age-recipient', recipient}, context());
		expect(plan.changes.map(change => change.kind)).toEqual(['task', 'write-file']);
		const task = plan.changes[0]!;
		expect(task.kind === 'task' && task.task).toBe('sealed-copy');
		const config = plan.changes[1]!;
		expect(task.kind === 'task' && config.kind === 'write-file' && task.params['secretContent']).toBe(config.kind === 'write-file' && config.content);
		expect(task.summary).toContain(recipient);
		expect(task.summary).not.toMatch(/secret:/);
	});
	it('is not asked when no key is generated, and a bad recipient is refused', async () => {
		const facts = await discover(MemoryHost.fromDir(demoDir));
		const questions = encryptionConfigStage.questions(facts, {});
		const recipientQuestion = questions.find(q => q.id === 'recipient')!;
		expect(recipientQuestion.validate?.('age1nope', {})).toMatch(/not an age X25519 recipient/);
		expect(questions.find(q => q.id === 'recovery')!.when?.({})).toBe(true);
	});
});

describe('stage list', () => {
	it('runs encryption-config, then apiserver-manifest', () => {
		expect(stageIds.slice(0, 7)).toEqual(['safety-backup', 'encryption-config', 'apiserver-manifest', 'reencrypt', 'purge-history', 'etcd-tls', 'etcd-auth']);
		expect(stages.map(s => s.id)).toEqual([...stageIds]);
	});
});

describe('first run on the demo tree', () => {
	it('plans a new 0600 config with a fresh key, and the manifest patch that mounts and hashes it', async () => {
		const host = MemoryHost.fromDir(demoDir);
		const {encPlan, manifestPlan, random} = await planRun(host);
		expect(random.calls).toBe(1);
		const [config] = writes(encPlan);
		expect(config).toMatchObject({path: defaultPath, mode: 0o600});
		const key = Buffer.alloc(32, 1).toString('base64');
		expect(config!.secrets).toContain(key);
		expect(visible(encPlan)).not.toContain(key);
		const parsed = parseEncryptionConfig(config!.content, defaultPath);
		expect(parsed.errors).toEqual([]);
		expect(parsed.config!.resources).toEqual([{resources: ['secrets'], providers: [{type: 'secretbox', keys: [{name: 'key1', secret: key}]}, {type: 'identity'}]}]);

		const [manifest] = writes(manifestPlan);
		expect(manifest).toMatchObject({path: manifestPath, mode: 0o644});
		const info = inspectManifest(manifest!.content, manifestPath, 'kube-apiserver');
		expect(info.flags['encryption-provider-config']).toBe(defaultPath);
		expect(info.flags[reloadFlag]).toBe('true');
		expect(info.annotations[digestAnnotation]).toBe(configDigest(config!.content));
		expect(info.volumes).toContainEqual({name: 'etcd-harden-encryption', hostPath: '/etc/kubernetes/enc', type: 'DirectoryOrCreate'});
		expect(info.volumeMounts).toContainEqual({name: 'etcd-harden-encryption', mountPath: '/etc/kubernetes/enc', readOnly: true});
		expect(manifestPlan.changes).toHaveLength(1);
		expect(JSON.stringify(manifestPlan)).not.toContain(key);
	});

	it('verifies after apply, and a second run with the same answers plans nothing and makes no key', async () => {
		const host = MemoryHost.fromDir(demoDir);
		const first = await planRun(host);
		await apply(host, first.encPlan);
		expect(encryptionConfigStage.verify(await discover(host), {}).every(c => c.status === 'pass')).toBe(true);
		await apply(host, first.manifestPlan);
		const after = await discover(host);
		expect(after.encryption).toMatchObject({flagPath: defaultPath, mountedInPod: true, mode: 0o600});
		// reencrypt needs a live control plane (facts.cluster/atRest); the e2e tier covers it.
		for (const stage of [encryptionConfigStage, apiserverManifestStage]) {
			const checks = stage.verify(after, {});
			expect(checks.filter(c => c.status !== 'pass')).toEqual([]);
			expect(checks.length).toBeGreaterThan(0);
		}
		for (const stage of [encryptionConfigStage, apiserverManifestStage]) expect(stage.status(after).filter(c => c.status !== 'pass')).toEqual([]);

		const manifestBefore = host.text(manifestPath);
		const second = await planRun(host);
		expect(second.encPlan.changes).toEqual([]);
		expect(second.manifestPlan.changes).toEqual([]);
		expect(second.random.calls).toBe(0);
		expect(host.text(manifestPath)).toBe(manifestBefore);
		// the question about making a key primary only appears once a config exists
		expect(encryptionConfigStage.questions(after, {}).find(q => q.id === 'primary')!.when?.({})).toBe(true);
	});

	it('works without context.planned once the config is on the node (e.g. --only apiserver-manifest)', async () => {
		const host = MemoryHost.fromDir(demoDir);
		const first = await planRun(host);
		await apply(host, first.encPlan);
		const facts = await discover(host);
		const plan = apiserverManifestStage.plan(facts, {}, {randomBytes: countingBytes().randomBytes, now: new Date(0)});
		expect(writes(plan)[0]!.content).toBe(writes(first.manifestPlan)[0]!.content);
	});

	it('reports what status finds on an unhardened node', async () => {
		const facts = await discover(MemoryHost.fromDir(demoDir));
		expect(encryptionConfigStage.status(facts)).toEqual([expect.objectContaining({id: 'encryption-enabled', status: 'fail', remediation: expect.stringContaining('etcd-harden')})]);
		expect(apiserverManifestStage.status(facts)).toEqual([expect.objectContaining({id: 'flag', status: 'fail'})]);
	});
});

describe('versions', () => {
	it('adds automatic reload only from 1.26', async () => {
		for (const [version, expected] of [['1.25.16', undefined], ['1.26.0', 'true'], ['1.20.2', undefined]] as const) {
			const host = MemoryHost.fromDir(demoDir);
			setVersion(host, version);
			const {manifestPlan} = await planRun(host);
			const info = inspectManifest(writes(manifestPlan)[0]!.content, manifestPath, 'kube-apiserver');
			expect(info.flags[reloadFlag]).toBe(expected);
			if (!expected) expect(manifestPlan.notes?.join('\n')).toContain(`has no --${reloadFlag}`);
		}
	});

	it('refuses wildcard resources before 1.27', async () => {
		const host = MemoryHost.fromDir(demoDir);
		setVersion(host, '1.26.3');
		await expect(planRun(host, {'encryption-config': {resources: ['*.*']}})).rejects.toThrow(/wildcard resources need kube-apiserver 1\.27/);
		setVersion(host, '1.27.0');
		const {encPlan} = await planRun(host, {'encryption-config': {resources: ['*.*']}});
		expect(parseEncryptionConfig(writes(encPlan)[0]!.content, defaultPath).config!.resources[0]!.resources).toEqual(['*.*']);
	});
});

describe('answers', () => {
	it('takes provider, resources (with a custom list) and a custom path', async () => {
		const host = MemoryHost.fromDir(demoDir);
		const answers: Answers = {
			'encryption-config': {provider: 'aesgcm', resources: ['secrets', 'configmaps', 'custom'], customResources: 'leases.coordination.k8s.io', path: '/etc/kubernetes/encryption/config.yaml'},
		};
		const {encPlan, manifestPlan} = await planRun(host, answers);
		expect(encPlan.warnings).toEqual([expect.stringContaining('must be rotated every 200,000 writes')]);
		const [config] = writes(encPlan);
		expect(config!.path).toBe('/etc/kubernetes/encryption/config.yaml');
		expect(parseEncryptionConfig(config!.content, config!.path).config!.resources[0]).toMatchObject({
			resources: ['secrets', 'configmaps', 'leases.coordination.k8s.io'],
			providers: [{type: 'aesgcm'}, {type: 'identity'}],
		});
		const info = inspectManifest(writes(manifestPlan)[0]!.content, manifestPath, 'kube-apiserver');
		expect(info.flags['encryption-provider-config']).toBe('/etc/kubernetes/encryption/config.yaml');
		expect(info.volumeMounts).toContainEqual({name: 'etcd-harden-encryption', mountPath: '/etc/kubernetes/encryption', readOnly: true});

		// verification right after writing the config (before the manifest names it)
		await apply(host, encPlan);
		const verifyFacts = await discover(host, verifyDiscoveryOptions(answers));
		const verified = encryptionConfigStage.verify(verifyFacts, answers['encryption-config']!);
		expect(verified.filter(c => c.status === 'fail')).toEqual([]);
		// aesgcm: the same WARN `status` gives for the same fact (the two never disagree).
		expect(verified.find(c => c.id === 'secrets-provider')).toEqual(encryptionConfigStage.status(verifyFacts).find(c => c.id === 'secrets-provider'));
		expect(verified.find(c => c.id === 'secrets-provider')?.status).toBe('warn');
		expect(encryptionConfigStage.verify(await discover(host), answers['encryption-config']!)[0]).toMatchObject({id: 'config-read', status: 'fail'});
		// after apply, the flag points at the custom path and a rerun changes nothing
		await apply(host, manifestPlan);
		const second = await planRun(host, answers);
		expect(second.encPlan.changes).toEqual([]);
		expect(second.manifestPlan.changes).toEqual([]);
	});

	it('warns for aescbc', async () => {
		const {encPlan} = await planRun(MemoryHost.fromDir(demoDir), {'encryption-config': {provider: 'aescbc'}});
		expect(encPlan.warnings).toEqual(['aescbc is weak: padding oracle; use only for compatibility.']);
	});

	it('rejects bad answers naming the answer and the fix', async () => {
		const host = MemoryHost.fromDir(demoDir);
		const bad = async (answers: Record<string, unknown>) => planRun(host, {'encryption-config': answers as never});
		await expect(bad({provider: 'rot13'})).rejects.toThrow(InputError);
		await expect(bad({provider: 'rot13'})).rejects.toThrow('encryption-config.provider: "rot13" is not a provider; use one of secretbox, aesgcm, aescbc, kms.');
		await expect(bad({path: 'enc.yaml'})).rejects.toThrow(/encryption-config\.path: "enc\.yaml" is not an absolute path/);
		await expect(bad({path: '/etc/kubernetes/manifests/enc.yaml'})).rejects.toThrow(/kubelet runs every file as a static pod/);
		await expect(bad({resources: []})).rejects.toThrow(/choose at least one resource/);
		await expect(bad({resources: ['Secrets']})).rejects.toThrow(/lower case/);
		const facts = await discover(host);
		const pathQuestion = encryptionConfigStage.questions(facts, {}).find(q => q.id === 'path')!;
		expect(pathQuestion.default).toBe(defaultPath);
		expect(pathQuestion.validate?.('relative', {})).toMatch(/not an absolute path/);
		expect(pathQuestion.validate?.('/etc/enc/x.yaml', {})).toBeUndefined();
		const custom = encryptionConfigStage.questions(facts, {}).find(q => q.id === 'customResources')!;
		expect(custom.when?.({resources: ['secrets']})).toBe(false);
		expect(custom.when?.({resources: ['custom']})).toBe(true);
		// primary is only asked when a config already exists
		expect(encryptionConfigStage.questions(facts, {}).find(q => q.id === 'primary')!.when?.({})).toBe(false);
	});
});

describe('an existing config', () => {
	const key16 = Buffer.alloc(16, 4).toString('base64');
	const legacy = `# ours, from 2021
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: ${key16}
      - identity: {}
`;

	async function legacyHost(mode = 0o600): Promise<MemoryHost> {
		const host = MemoryHost.fromDir(demoDir);
		// a node already pointing at an aescbc config
		const first = await planRun(host, {'encryption-config': {provider: 'aescbc'}});
		await apply(host, first.manifestPlan);
		host.put(defaultPath, legacy, mode);
		return host;
	}

	it('is merged, never replaced: new key second unless asked to be primary', async () => {
		const host = await legacyHost();
		const facts = await discover(host);
		expect(encryptionConfigStage.status(facts).find(c => c.id === 'secrets-provider')).toMatchObject({status: 'warn', actual: expect.stringContaining('padding oracle')});
		const primaryQuestion = encryptionConfigStage.questions(facts, {}).find(q => q.id === 'primary')!;
		expect(primaryQuestion.default).toBe(false);

		const {encPlan, manifestPlan} = await planRun(host, {'encryption-config': {primary: false}});
		const [config] = writes(encPlan);
		expect(config!.content.startsWith('# ours, from 2021\n')).toBe(true);
		expect(config!.secrets).toEqual(expect.arrayContaining([key16, Buffer.alloc(32, 1).toString('base64')]));
		expect(visible(encPlan)).not.toContain(key16);
		const merged = parseEncryptionConfig(config!.content, defaultPath).config!;
		expect(merged.resources[0]!.providers.map(p => p.type)).toEqual(['aescbc', 'secretbox', 'identity']);
		expect(merged.resources[0]!.providers[1]).toMatchObject({keys: [{name: 'key2'}]});
		// the manifest picks up the new digest
		expect(inspectManifest(writes(manifestPlan)[0]!.content, manifestPath, 'kube-apiserver').annotations[digestAnnotation]).toBe(configDigest(config!.content));

		await apply(host, encPlan);
		await apply(host, manifestPlan);
		const rerun = await planRun(host, {'encryption-config': {primary: false}});
		expect(rerun.encPlan.changes).toEqual([]);
		expect(rerun.random.calls).toBe(0);
		expect(encryptionConfigStage.verify(await discover(host), {primary: false}).every(c => c.status === 'pass')).toBe(true);

		const promote = await planRun(host, {'encryption-config': {primary: true}});
		expect(promote.random.calls).toBe(0);
		expect(parseEncryptionConfig(writes(promote.encPlan)[0]!.content, defaultPath).config!.resources[0]!.providers.map(p => p.type)).toEqual([
			'secretbox',
			'aescbc',
			'identity',
		]);
	});

	it('only fixes the mode when the content already satisfies the answers', async () => {
		const host = await legacyHost(0o644);
		const facts = await discover(host);
		expect(encryptionConfigStage.status(facts).find(c => c.id === 'config-mode')).toMatchObject({status: 'fail', remediation: expect.stringContaining('chmod 600')});
		const {encPlan, random} = await planRun(host, {'encryption-config': {provider: 'aescbc'}});
		expect(random.calls).toBe(0);
		expect(writes(encPlan)).toEqual([expect.objectContaining({content: legacy, mode: 0o600, summary: expect.stringContaining('Set mode 0600')})]);
	});

	it('refuses an invalid config with the discovery message, for both stages', async () => {
		const host = await legacyHost();
		host.put(defaultPath, legacy.replace(key16, 'AAAA'));
		await expect(planRun(host)).rejects.toThrow(/encryption-config\.yaml: .*decodes to 3 bytes .*Fix: restore the file/);
		const facts = await discover(host);
		expect(() => apiserverManifestStage.plan(facts, {}, {randomBytes: countingBytes().randomBytes, now: new Date(0)})).toThrow(InputError);
		expect(encryptionConfigStage.status(facts).find(c => c.id === 'config-valid')).toMatchObject({status: 'fail'});
	});

	it('warns when the flag names a config that is gone', async () => {
		const host = await legacyHost();
		host.files.delete(defaultPath);
		const {encPlan} = await planRun(host);
		expect(encPlan.warnings?.join('\n')).toContain('does not exist: objects encrypted with its keys cannot be read');
		expect(encryptionConfigStage.status(await discover(host)).find(c => c.id === 'config-valid')).toMatchObject({status: 'fail'});
	});
});

describe('apiserver-manifest bad input', () => {
	const context: PlanContext = {randomBytes: countingBytes().randomBytes, now: new Date(0)};

	it('names the missing manifest', async () => {
		const facts = await discover(new MemoryHost());
		expect(() => apiserverManifestStage.plan(facts, {}, context)).toThrow(`${manifestPath}: not found.`);
	});

	it('passes on a broken manifest message', async () => {
		const host = MemoryHost.fromDir(demoDir);
		host.put(manifestPath, 'kind: Pod\nspec:\n  containers: []\n');
		const facts: Facts = await discover(host);
		expect(() => apiserverManifestStage.plan(facts, {}, context)).toThrow(/no container named kube-apiserver/);
	});

	it('says to run encryption-config when there is no config to point at', async () => {
		const facts = await discover(MemoryHost.fromDir(demoDir));
		expect(() => apiserverManifestStage.plan(facts, {}, context)).toThrow(/no encryption config to point kube-apiserver at .*drop --skip encryption-config/);
	});
});

// KMS v2 as the provider: configuration only (the plugin holds the key), refused below
// kube-apiserver 1.29, merged like any provider, no key generated and no recovery copy asked.
import {fileURLToPath} from 'node:url';
import {describe, expect, it} from 'vitest';
import {InputError, type StageAnswers} from '../../source/engine/contract.js';
import {parseEncryptionConfig} from '../../source/kube/encryption-config.js';
import {discover} from '../../source/discover/files.js';
import {encryptionConfigStage} from '../../source/stages/encryption-config.js';
import {countingBytes, MemoryHost} from './helpers/memory-host.js';

const demoDir = fileURLToPath(new URL('../../demo/', import.meta.url));
const manifestPath = '/etc/kubernetes/manifests/kube-apiserver.yaml';

function hostAt(version: string): MemoryHost {
	const host = MemoryHost.fromDir(demoDir);
	host.put(manifestPath, host.text(manifestPath)!.replace(/image: kube-apiserver:v[\d.]+/, `image: kube-apiserver:v${version}`), 0o600);
	return host;
}

const kmsAnswers: StageAnswers = {provider: 'kms', kmsName: 'vault', kmsEndpoint: 'unix:///var/run/kms/vault.sock', kmsTimeout: '5s'};

describe('KMS v2 provider', () => {
	it('is refused below kube-apiserver 1.29, naming the version and the way out', async () => {
		const facts = await discover(hostAt('1.28.2'));
		expect(() => encryptionConfigStage.plan(facts, kmsAnswers, {randomBytes: countingBytes().randomBytes, now: new Date(0)})).toThrow(InputError);
		expect(() => encryptionConfigStage.plan(facts, kmsAnswers, {randomBytes: countingBytes().randomBytes, now: new Date(0)})).toThrow(
			/KMS v2 needs kube-apiserver 1\.29 or newer \(this node runs 1\.28\.2\)/,
		);
		const provider = encryptionConfigStage.questions(facts, {}).find(q => q.id === 'provider')!;
		expect(provider.validate?.('kms', {})).toMatch(/1\.29/);
	});

	it('from 1.29 writes a kms v2 provider first and identity last, with no key and no recovery question', async () => {
		const facts = await discover(hostAt('1.29.3'));
		const random = countingBytes();
		const plan = encryptionConfigStage.plan(facts, kmsAnswers, {randomBytes: random.randomBytes, now: new Date(0)});
		expect(random.calls).toBe(0);
		expect(plan.changes.map(change => change.kind)).toEqual(['write-file']);
		const change = plan.changes[0]!;
		if (change.kind !== 'write-file') throw new Error('expected a file');
		const {config, errors} = parseEncryptionConfig(change.content, change.path);
		expect(errors).toEqual([]);
		expect(config!.resources[0]!.providers).toEqual([
			{type: 'kms', apiVersion: 'v2', name: 'vault', endpoint: 'unix:///var/run/kms/vault.sock', timeout: '5s'},
			{type: 'identity'},
		]);
		expect(plan.warnings?.join(' ')).toContain('plugin must already be running');
		const asked = encryptionConfigStage.questions(facts, kmsAnswers).filter(q => q.when?.(kmsAnswers) ?? true).map(q => q.id);
		expect(asked).toContain('kmsEndpoint');
		expect(asked).not.toContain('recovery');
	});

	it('rejects a bad socket and a bad plugin name', async () => {
		const facts = await discover(hostAt('1.30.0'));
		const context = {randomBytes: countingBytes().randomBytes, now: new Date(0)};
		expect(() => encryptionConfigStage.plan(facts, {...kmsAnswers, kmsEndpoint: '/var/run/kms.sock'}, context)).toThrow(/unix:\/\/\/path\/to\/kms\.sock/);
		expect(() => encryptionConfigStage.plan(facts, {...kmsAnswers, kmsName: 'a:b'}, context)).toThrow(/kmsName/);
	});
});

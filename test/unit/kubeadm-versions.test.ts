// The manifests kubeadm 1.29-1.34 writes (test/unit/fixtures/kubeadm/<minor>/, sources in its
// README.md), run through discovery, planning, the CIS checks and the kubeadm-config patch, so
// every version-dependent branch is exercised on the shapes those releases really produce:
// automatic reload (1.26+), wildcard resources (1.27+), KMS v2 (1.29+), kubeadm's v1beta4
// ClusterConfiguration with extraArgs as a list (1.31+), and etcd 3.6's renamed flags (1.34).
import {readFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';
import {describe, expect, it} from 'vitest';
import type {Answers, PlanContext, StagePlan, WriteFileChange} from '../../source/engine/contract.js';
import {discover} from '../../source/discover/files.js';
import {etcdFlagChecks, tlsAudit} from '../../source/etcd/tls.js';
import {parseEncryptionConfig} from '../../source/kube/encryption-config.js';
import {encryptionConfigVolume, patchClusterConfiguration, readApiServerSettings} from '../../source/kube/kubeadm-config.js';
import {inspectManifest} from '../../source/kube/manifest.js';
import {apiserverManifestStage, reloadFlag} from '../../source/stages/apiserver-manifest.js';
import {encryptionConfigStage} from '../../source/stages/encryption-config.js';
import {countingBytes, MemoryHost} from './helpers/memory-host.js';

const MANIFEST = '/etc/kubernetes/manifests/kube-apiserver.yaml';
const CONFIG = '/etc/kubernetes/enc/encryption-config.yaml';

// What each release wrote, as in the fixtures' README: kube-apiserver image tag, etcd image tag,
// the ClusterConfiguration apiVersion kubeadm stores in the kubeadm-config ConfigMap.
const releases = [
	{minor: '1.29', kube: '1.29.0', etcd: '3.5.10-0', api: 'v1beta3'},
	{minor: '1.30', kube: '1.30.0', etcd: '3.5.12-0', api: 'v1beta3'},
	{minor: '1.31', kube: '1.31.0', etcd: '3.5.15-0', api: 'v1beta4'},
	{minor: '1.32', kube: '1.32.0', etcd: '3.5.16-0', api: 'v1beta4'},
	{minor: '1.33', kube: '1.33.0', etcd: '3.5.21-0', api: 'v1beta4'},
	{minor: '1.34', kube: '1.34.0', etcd: '3.6.4-0', api: 'v1beta4'},
] as const;

const fixture = (minor: string, file = '') => fileURLToPath(new URL(`./fixtures/kubeadm/${minor}/${file}`, import.meta.url));

function nodeHost(minor: string): MemoryHost {
	const host = MemoryHost.fromDir(fixture(minor));
	// The ClusterConfiguration is read through the API on a node, not from a file under /.
	host.files.delete('/kubeadm-config.ClusterConfiguration.yaml');
	return host;
}

function writes(plan: StagePlan): WriteFileChange[] {
	return plan.changes.filter((c): c is WriteFileChange => c.kind === 'write-file');
}

async function planBoth(host: MemoryHost, encryption: Answers[string] = {}) {
	const answers: Answers = {'encryption-config': {recovery: 'stored-elsewhere', storedElsewhere: true, ...encryption}};
	const facts = await discover(host);
	const context: PlanContext = {randomBytes: countingBytes().randomBytes, now: new Date(0), answers};
	const encPlan = encryptionConfigStage.plan(facts, answers['encryption-config'] ?? {}, context);
	const manifestPlan = apiserverManifestStage.plan(facts, {}, {...context, planned: {'encryption-config': encPlan}});
	return {facts, encPlan, manifestPlan};
}

describe.each(releases)('kubeadm $kube (etcd $etcd, $api)', release => {
	it('discovery reads the versions from the images kubeadm writes', async () => {
		const facts = await discover(nodeHost(release.minor));
		expect(facts.apiserver.version).toBe(release.kube);
		expect(facts.etcd.version).toBe(release.etcd);
		expect(facts.apiserver.flags['etcd-servers']).toBe('https://127.0.0.1:2379');
	});

	it('the etcd CIS flag checks 2.1-2.6 pass on kubeadm defaults, and no v2 store is reported', async () => {
		const facts = await discover(nodeHost(release.minor));
		const checks = etcdFlagChecks(facts);
		for (const id of ['2.1', '2.2', '2.3', '2.4', '2.5', '2.6']) expect(checks.find(check => check.id === id)?.status, id).toBe('pass');
		expect(tlsAudit(facts).find(check => check.id === 'etcd.v2-store')?.status).toBe('pass');
	});

	it('plans secretbox with automatic reload (1.26+) and the wildcard *.* (1.27+); status then passes 1.2.28', async () => {
		const host = nodeHost(release.minor);
		const {encPlan, manifestPlan} = await planBoth(host, {resources: ['*.*']});
		const config = parseEncryptionConfig(writes(encPlan)[0]!.content, CONFIG).config!;
		expect(config.resources[0]!.resources).toEqual(['*.*']);
		const manifest = writes(manifestPlan).find(change => change.path === MANIFEST)!;
		const info = inspectManifest(manifest.content, MANIFEST, 'kube-apiserver');
		expect(info.flags[reloadFlag]).toBe('true');
		expect(info.flags['encryption-provider-config']).toBe(CONFIG);
		// The patched manifest keeps kubeadm's probes, priority and seccomp profile.
		expect(manifest.content).toContain('path: /readyz');
		expect(manifest.content).toContain('priorityClassName: system-node-critical');
		expect(manifest.content).toContain('type: RuntimeDefault');
		for (const change of [...writes(encPlan), ...writes(manifestPlan)]) await host.writeFileAtomic(change.path, change.content, change.mode);
		const after = await discover(host);
		const at = tlsAudit(after).find(check => check.id === '1.2.28');
		expect(at?.status).toBe('pass');
	});

	it('accepts a KMS v2 plugin (1.29+)', async () => {
		const {encPlan} = await planBoth(nodeHost(release.minor), {provider: 'kms', kmsName: 'vault', kmsEndpoint: 'unix:///var/run/kms/vault.sock', kmsTimeout: '5s'});
		const provider = parseEncryptionConfig(writes(encPlan)[0]!.content, CONFIG).config!.resources[0]!.providers[0]!;
		expect(provider).toMatchObject({type: 'kms', apiVersion: 'v2', name: 'vault'});
	});

	it(`persists the flag and the volume in the ${release.api} ClusterConfiguration in its own form`, () => {
		const text = readFileSync(fixture(release.minor, 'kubeadm-config.ClusterConfiguration.yaml'), 'utf8');
		const patched = patchClusterConfiguration(text, {
			extraArgs: {'encryption-provider-config': CONFIG, [reloadFlag]: 'true'},
			extraVolumes: [encryptionConfigVolume('etcd-harden-encryption', '/etc/kubernetes/enc')],
		});
		expect(patched).toContain(`apiVersion: kubeadm.k8s.io/${release.api}`);
		if (release.api === 'v1beta4') {
			expect(patched).toMatch(/extraArgs:\n\s+- name: \S+\n\s+value: /);
			expect(patched).toContain('- name: encryption-provider-config');
		} else {
			expect(patched).toContain(`encryption-provider-config: ${CONFIG}`);
		}
		const settings = readApiServerSettings(patched);
		expect(settings.extraArgs).toMatchObject({'encryption-provider-config': CONFIG, [reloadFlag]: 'true'});
		expect(settings.extraVolumes.map(volume => volume.hostPath)).toContain('/etc/kubernetes/enc');
		// Everything kubeadm wrote is still there, unchanged.
		for (const line of text.split('\n').filter(l => /^[a-zA-Z]/.test(l) && !l.startsWith('apiServer'))) expect(patched).toContain(line);
		// Patching twice changes nothing more.
		expect(patchClusterConfiguration(patched, {extraArgs: {'encryption-provider-config': CONFIG, [reloadFlag]: 'true'}, extraVolumes: [encryptionConfigVolume('etcd-harden-encryption', '/etc/kubernetes/enc')]})).toBe(patched);
	});
});

describe('version-specific shapes', () => {
	it("1.32's operator extraArgs (a v1beta4 list) are kept beside the new flag", () => {
		const text = readFileSync(fixture('1.32', 'kubeadm-config.ClusterConfiguration.yaml'), 'utf8');
		const patched = patchClusterConfiguration(text, {extraArgs: {'encryption-provider-config': CONFIG}, extraVolumes: []});
		expect(readApiServerSettings(patched).extraArgs).toEqual({'audit-log-path': '/var/log/kubernetes/audit.log', 'audit-log-maxage': '30', 'encryption-provider-config': CONFIG});
	});

	it("1.34's etcd 3.6 flags (feature gate, --watch-progress-notify-interval) and 1.33's --experimental-* both parse", async () => {
		const f34 = (await discover(nodeHost('1.34'))).etcd.flags;
		expect(f34['feature-gates']).toBe('InitialCorruptCheck=true');
		expect(f34['watch-progress-notify-interval']).toBe('5s');
		expect(Object.keys(f34).filter(flag => flag.startsWith('experimental-'))).toEqual([]);
		const f33 = (await discover(nodeHost('1.33'))).etcd.flags;
		expect(f33['experimental-initial-corrupt-check']).toBe('true');
		expect(f33['experimental-watch-progress-notify-interval']).toBe('5s');
	});

	it("kubeadm's own --experimental-* flags pass (kubeadm upgrade rewrites them); an operator's own one warns with its 3.6 name", async () => {
		for (const minor of ['1.33', '1.34']) {
			expect(tlsAudit(await discover(nodeHost(minor))).find(c => c.id === 'etcd.experimental-flags')?.status, minor).toBe('pass');
		}
		const host = nodeHost('1.33');
		const etcd = '/etc/kubernetes/manifests/etcd.yaml';
		host.put(etcd, host.text(etcd)!.replace('    - --snapshot-count=10000\n', '    - --experimental-compact-hash-check-enabled=true\n    - --snapshot-count=10000\n'));
		const check = tlsAudit(await discover(host)).find(c => c.id === 'etcd.experimental-flags');
		expect(check).toMatchObject({status: 'warn', actual: expect.stringContaining('--experimental-compact-hash-check-enabled -> --feature-gates=CompactHashCheck=true')});
		expect(check?.actual).not.toContain('watch-progress');
	});

	it('--enable-v2 on a 1.33 etcd is a pre-upgrade warning naming etcdutl check v2store', async () => {
		const host = nodeHost('1.33');
		const etcd = '/etc/kubernetes/manifests/etcd.yaml';
		host.put(etcd, host.text(etcd)!.replace('    - --snapshot-count=10000\n', '    - --enable-v2=true\n    - --snapshot-count=10000\n'));
		const check = tlsAudit(await discover(host)).find(c => c.id === 'etcd.v2-store');
		expect(check).toMatchObject({status: 'warn', actual: expect.stringContaining('--enable-v2=true'), remediation: expect.stringContaining('etcdutl check v2store')});
	});
});

// Key rotation and disable as pure config edits and state readings (source/kube/rotation.ts),
// the control-plane comparison (rotation-status.ts), and the rotate stages' plans.
import {describe, expect, it} from 'vitest';
import {configDigest, parseEncryptionConfig} from '../../source/kube/encryption-config.js';
import {addPendingKey, addReadOnlyKey, disableState, enableState, identityFirst, promoteKey, removeKeys, rotationKeyName, rotationState, allKeyNames} from '../../source/kube/rotation.js';
import {mismatches, parseEntries} from '../../source/kube/rotation-status.js';
import {rotatePrepareStage, rotatePromoteStage, rotatePruneStage, rotationStatus} from '../../source/stages/rotate.js';
import {digestAnnotation} from '../../source/stages/apiserver-manifest.js';
import type {Facts} from '../../source/stages/facts.js';
import {InputError, type PlanContext, type WriteFileChange} from '../../source/engine/contract.js';

const K1 = 'MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=';
const K2 = 'YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWY=';

const base = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
# kept: a comment
resources:
  - resources:
      - secrets
    providers:
      - secretbox:
          keys:
            - name: key1
              secret: ${K1}
      - identity: {}
`;

function parse(text: string) {
	const {config, errors} = parseEncryptionConfig(text, '/enc.yaml');
	expect(errors).toEqual([]);
	return config!;
}

describe('rotation config edits', () => {
	it('walks stable -> prepared -> promoted -> stable, keeping comments and never reusing a key name', () => {
		const c0 = parse(base);
		expect(rotationState(c0)).toEqual({kind: 'stable', primary: 'key1'});
		expect(rotationKeyName(c0)).toBe('key2');

		const t1 = addPendingKey(base, c0, 'key2', K2);
		const c1 = parse(t1);
		expect(t1).toContain('# kept: a comment');
		expect(c1.resources[0]!.providers[0]).toEqual({type: 'secretbox', keys: [{name: 'key1', secret: K1}, {name: 'key2', secret: K2}]});
		expect(rotationState(c1)).toEqual({kind: 'prepared', primary: 'key1', pending: 'key2'});

		const t2 = promoteKey(t1, c1, 'key2');
		const c2 = parse(t2);
		expect(c2.resources[0]!.providers[0]).toEqual({type: 'secretbox', keys: [{name: 'key2', secret: K2}, {name: 'key1', secret: K1}]});
		expect(rotationState(c2)).toEqual({kind: 'promoted', primary: 'key2', old: ['key1']});

		const t3 = removeKeys(t2, c2, ['key1']);
		const c3 = parse(t3);
		expect(c3.resources[0]!.providers).toEqual([{type: 'secretbox', keys: [{name: 'key2', secret: K2}]}, {type: 'identity'}]);
		expect(rotationState(c3)).toEqual({kind: 'stable', primary: 'key2'});
		// key1 was pruned: the next rotation takes key3, so "newer than the primary" stays true.
		expect(rotationKeyName(c3)).toBe('key3');
	});

	it('promotes a key from another provider further down and prunes the emptied provider', () => {
		const text = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: ${K1}
      - secretbox:
          keys:
            - name: key2
              secret: ${K2}
      - identity: {}
`;
		const c = parse(text);
		expect(rotationState(c)).toEqual({kind: 'prepared', primary: 'key1', pending: 'key2'});
		const promoted = parse(promoteKey(text, c, 'key2'));
		expect(promoted.resources[0]!.providers.map(p => p.type)).toEqual(['secretbox', 'aescbc', 'identity']);
		const pruned = parse(removeKeys(promoteKey(text, c, 'key2'), promoted, ['key1']));
		expect(pruned.resources[0]!.providers.map(p => p.type)).toEqual(['secretbox', 'identity']);
	});

	it('never removes a primary key when pruning', () => {
		const c = parse(base);
		expect(parse(removeKeys(base, c, ['key1'])).resources[0]!.providers[0]).toEqual({type: 'secretbox', keys: [{name: 'key1', secret: K1}]});
	});

	it('disable: identity first keeps every key, then all keys go', () => {
		const c0 = parse(base);
		expect(disableState(c0)).toBe('enabled');
		const t1 = identityFirst(base, c0);
		const c1 = parse(t1);
		expect(c1.resources[0]!.providers.map(p => p.type)).toEqual(['identity', 'secretbox']);
		expect(disableState(c1)).toBe('identity-first');
		expect(rotationState(c1)).toEqual({kind: 'none'});
		const c2 = parse(removeKeys(t1, c1, allKeyNames(c1), {allRules: true}));
		expect(c2.resources[0]!.providers).toEqual([{type: 'identity'}]);
		expect(disableState(c2)).toBe('disabled');
	});
});

describe('enable as a rotation whose primary is identity', () => {
	const plaintext = `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
# left by disable
resources:
  - resources: [secrets]
    providers:
      - identity: {}
  - resources: [configmaps]
    providers:
      - aescbc:
          keys:
            - name: key4
              secret: ${K1}
      - identity: {}
`;
	it('adds the key after identity only where a rule holds nothing but identity, then promote moves it first', () => {
		const identityOnly = parse(`apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n`);
		expect(enableState(identityOnly)).toEqual({kind: 'plaintext', rules: [0]});
		expect(enableState(undefined)).toEqual({kind: 'plaintext', rules: []});
		// A rule that already encrypts: that is a rotation, not an enable.
		expect(enableState(parse(plaintext))).toEqual({kind: 'encrypting'});

		const text = `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n# kept\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n  - resources: [events]\n    providers:\n      - kms:\n          apiVersion: v2\n          name: vault\n          endpoint: unix:///run/kms.sock\n      - identity: {}\n`;
		const c0 = parse(text);
		const t1 = addReadOnlyKey(text, c0, 'secretbox', 'key1', K2);
		const c1 = parse(t1);
		expect(t1).toContain('# kept');
		expect(c1.resources[0]!.providers).toEqual([{type: 'identity'}, {type: 'secretbox', keys: [{name: 'key1', secret: K2}]}]);
		expect(c1.resources[1]!.providers.map(p => p.type)).toEqual(['kms', 'identity']);
		expect(enableState(c1)).toEqual({kind: 'prepared', pending: 'key1'});
		expect(rotationState(c1)).toEqual({kind: 'none'});

		const c2 = parse(promoteKey(t1, c1, 'key1'));
		expect(c2.resources[0]!.providers).toEqual([{type: 'secretbox', keys: [{name: 'key1', secret: K2}]}, {type: 'identity'}]);
		expect(rotationState(c2)).toEqual({kind: 'stable', primary: 'key1'});
	});

	it('a config with only KMS first has nothing to turn on', () => {
		const kms = parse(`apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms:\n          apiVersion: v2\n          name: vault\n          endpoint: unix:///run/kms.sock\n`);
		expect(enableState(kms)).toEqual({kind: 'none'});
	});
});

describe('control-plane reports', () => {
	it('names the nodes that have not reported or run another config, and ignores damaged entries', () => {
		const entries = parseEntries({
			'cp-1': JSON.stringify({phase: 'prepare', state: 'done', configSha256: 'a'.repeat(64), time: 't'}),
			'cp-2': JSON.stringify({phase: 'bundle', state: 'done', configSha256: 'b'.repeat(64), time: 't'}),
			'cp-4': 'not json',
		});
		expect(Object.keys(entries)).toEqual(['cp-1', 'cp-2']);
		const bad = mismatches(['cp-1', 'cp-2', 'cp-3', 'cp-4'], entries, 'a'.repeat(64));
		expect(bad.map(item => item.node)).toEqual(['cp-2', 'cp-3', 'cp-4']);
		expect(bad[0]!.reason).toContain('bbbbbbbbbbbb');
		expect(bad[1]!.reason).toBe('has not reported');
	});
});

function facts(configText: string, annotation = configDigest(configText), entries: Record<string, unknown> = {}): Facts {
	const manifest = `apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
  annotations:
    ${digestAnnotation}: ${annotation}
spec:
  containers:
  - name: kube-apiserver
    image: k8s.gcr.io/kube-apiserver:v1.20.2
    command:
    - kube-apiserver
    - --encryption-provider-config=/etc/kubernetes/enc/encryption-config.yaml
    volumeMounts:
    - mountPath: /etc/kubernetes/enc
      name: etcd-harden-encryption
      readOnly: true
  volumes:
  - hostPath:
      path: /etc/kubernetes/enc
      type: DirectoryOrCreate
    name: etcd-harden-encryption
`;
	return {
		root: '/',
		isRoot: true,
		apiserver: {
			path: '/etc/kubernetes/manifests/kube-apiserver.yaml',
			exists: true,
			text: manifest,
			mode: 0o600,
			version: '1.20.2',
			command: [],
			flags: {'encryption-provider-config': '/etc/kubernetes/enc/encryption-config.yaml'},
			volumes: [],
			volumeMounts: [],
			annotations: {[digestAnnotation]: annotation},
		},
		etcd: {path: '/etc/kubernetes/manifests/etcd.yaml', exists: false, command: [], flags: {}, volumes: [], volumeMounts: [], annotations: {}},
		encryption: {flagPath: '/etc/kubernetes/enc/encryption-config.yaml', path: '/etc/kubernetes/enc/encryption-config.yaml', exists: true, mode: 0o600, text: configText, config: parse(configText), errors: [], mountedInPod: true},
		pki: {dir: '/etc/kubernetes/pki', files: {}},
		cluster: {kubeconfig: '/etc/kubernetes/admin.conf', reachable: true, ready: true},
		rotation: {node: 'cp-1', entries: parseEntries(Object.fromEntries(Object.entries(entries).map(([k, v]) => [k, JSON.stringify(v)]))), controlPlanes: ['cp-1']},
	};
}

const context: PlanContext = {randomBytes: size => Buffer.alloc(size, 7), now: new Date(0), answers: {'rotate-prepare': {bundle: 'stored-elsewhere', storedElsewhere: true}}};
const prepareAnswers = {bundle: 'stored-elsewhere', storedElsewhere: true};

describe('rotate stages plan from the node, not from a journal', () => {
	it('prepare adds key2 read-only inside the restart gate, with reports before and after; never prints the key', () => {
		const plan = rotatePrepareStage.plan(facts(base), prepareAnswers, context);
		const kinds = plan.changes.map(change => (change.kind === 'task' ? `${change.task}:${String(change.params['phase'] ?? '')}` : change.kind));
		expect(kinds).toEqual(['rotation-publish:prepare', 'apiserver-restart-gate:before', 'write-file', 'write-file', 'apiserver-restart-gate:after', 'rotation-publish:prepare']);
		const config = plan.changes[2] as WriteFileChange;
		expect(rotationState(parse(config.content))).toMatchObject({kind: 'prepared', pending: 'key2'});
		const secret = Buffer.alloc(32, 7).toString('base64');
		expect(config.secrets).toContain(secret);
		expect(JSON.stringify(plan.changes.filter(change => change.kind !== 'write-file'))).not.toContain(secret);
		expect((plan.changes[3] as WriteFileChange).content).toContain(configDigest(config.content));
	});

	it('a config written but not yet restarted with (killed run): only the restart is finished, no new key', () => {
		const plan = rotatePrepareStage.plan(facts(base, 'f'.repeat(64)), prepareAnswers, context);
		const writes = plan.changes.filter((change): change is WriteFileChange => change.kind === 'write-file');
		expect(writes.map(w => w.path)).toEqual(['/etc/kubernetes/manifests/kube-apiserver.yaml']);
		expect(writes[0]!.content).toContain(configDigest(base));
	});

	it('a prune interrupted after its restart is reported finished instead of starting a new rotation', () => {
		const plan = rotatePrepareStage.plan(facts(base, configDigest(base), {'cp-1': {phase: 'prune', state: 'started', configSha256: 'x', time: 't'}}), prepareAnswers, context);
		expect(plan.changes.map(change => (change.kind === 'task' ? change.task : change.kind))).toEqual(['rotation-publish']);
	});

	it('promote waits for every control plane first; prune waits and scans before writing', () => {
		const prepared = addPendingKey(base, parse(base), 'key2', K2);
		const promote = rotatePromoteStage.plan(facts(prepared), {bundle: 'same', waitSeconds: '5'}, context);
		expect(promote.changes[0]).toMatchObject({kind: 'task', task: 'wait-control-planes', params: {timeoutSeconds: 5, phase: 'prepare', node: 'cp-1'}});
		const promoted = promoteKey(prepared, parse(prepared), 'key2');
		const prune = rotatePruneStage.plan(facts(promoted), {bundle: 'same', waitSeconds: '5'}, context);
		expect(prune.changes.slice(0, 2).map(change => (change.kind === 'task' ? change.task : change.kind))).toEqual(['wait-control-planes', 'rotation-keys-unused']);
		expect(prune.changes[1]).toMatchObject({params: {labels: ['secretbox:key1']}});
		// Each stage is a no-op where its step is done.
		expect(rotatePromoteStage.plan(facts(promoted), {}, context).changes).toEqual([]);
		expect(rotatePruneStage.plan(facts(prepared), {}, context).changes).toEqual([]);
	});

	it('refuses to rotate a config with KMS first (no local key, no identity-only rule), naming the file', () => {
		const kms = `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - kms:\n          apiVersion: v2\n          name: vault\n          endpoint: unix:///run/kms.sock\n      - identity: {}\n`;
		expect(() => rotatePrepareStage.plan(facts(kms), prepareAnswers, context)).toThrow(/encryption-config.yaml encrypts nothing with a local key.*KMS/);
	});

	it('enable from identity: prepare adds key1 after identity inside the restart gate; promote waits for every control plane, then makes it primary', () => {
		const identityOnly = `apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - identity: {}\n`;
		const prepare = rotatePrepareStage.plan(facts(identityOnly), prepareAnswers, context);
		const kinds = prepare.changes.map(change => (change.kind === 'task' ? `${change.task}:${String(change.params['phase'] ?? '')}` : change.kind));
		expect(kinds).toEqual(['rotation-publish:prepare', 'apiserver-restart-gate:before', 'write-file', 'write-file', 'apiserver-restart-gate:after', 'rotation-publish:prepare']);
		const written = (prepare.changes[2] as WriteFileChange).content;
		expect(parse(written).resources[0]!.providers.map(p => p.type)).toEqual(['identity', 'secretbox']);
		expect(prepare.changes[2]!.summary).toMatch(/after identity.*does not encrypt yet/);
		// A rerun on the prepared node changes nothing (its report already names this config).
		const prepared = facts(written, configDigest(written), {'cp-1': {phase: 'prepare', state: 'done', configSha256: configDigest(written), time: 't'}});
		expect(rotatePrepareStage.plan(prepared, prepareAnswers, context).changes).toEqual([]);

		const promote = rotatePromoteStage.plan(prepared, {bundle: 'same', waitSeconds: '5'}, context);
		expect(promote.changes[0]).toMatchObject({kind: 'task', task: 'wait-control-planes', params: {phase: 'prepare'}});
		const promoted = promote.changes.find((change): change is WriteFileChange => change.kind === 'write-file' && change.path.endsWith('encryption-config.yaml'))!;
		expect(rotationState(parse(promoted.content))).toEqual({kind: 'stable', primary: 'key1'});
		// status names the half-way state (identity first, the key only reads) instead of "no local key".
		expect(rotationStatus(prepared).find(check => check.id === 'rotation.step')).toMatchObject({status: 'warn', actual: expect.stringMatching(/^identity first, key1 configured for reading: next: promote/)});
		// After promote there is no old key: prune has nothing to do.
		expect(rotatePruneStage.plan(facts(promoted.content), {}, context).changes).toEqual([]);
	});

	it('enable with no config at all: prepare writes [identity, key1] for secrets and points the manifest at it', () => {
		const none = facts(base);
		const manifest = none.apiserver.text!.replace(/\s+- --encryption-provider-config=\S+/, '').replace(/\n\s+annotations:\n\s+\S+: \S+/, '');
		const noConfig: Facts = {
			...none,
			apiserver: {...none.apiserver, text: manifest, flags: {}, annotations: {}},
			encryption: {path: '/etc/kubernetes/enc/encryption-config.yaml', exists: false, errors: [], mountedInPod: false},
		};
		const plan = rotatePrepareStage.plan(noConfig, prepareAnswers, context);
		// Nothing on disk to report before the write: the first report comes after the restart.
		const kinds = plan.changes.map(change => (change.kind === 'task' ? `${change.task}:${String(change.params['phase'] ?? '')}` : change.kind));
		expect(kinds).toEqual(['apiserver-restart-gate:before', 'write-file', 'write-file', 'apiserver-restart-gate:after', 'rotation-publish:prepare']);
		const writes = plan.changes.filter((change): change is WriteFileChange => change.kind === 'write-file');
		expect(writes.map(w => w.path)).toEqual(['/etc/kubernetes/enc/encryption-config.yaml', '/etc/kubernetes/manifests/kube-apiserver.yaml']);
		const config = parse(writes[0]!.content);
		expect(config.resources).toEqual([{resources: ['secrets'], providers: [{type: 'identity'}, {type: 'secretbox', keys: [{name: 'key1', secret: Buffer.alloc(32, 7).toString('base64')}]}]}]);
		expect(writes[1]!.content).toContain('--encryption-provider-config=/etc/kubernetes/enc/encryption-config.yaml');
		expect(writes[1]!.content).toContain(configDigest(writes[0]!.content));
		// Killed after the config write, before the manifest: the rerun only points the manifest at the file.
		const killed: Facts = {...noConfig, encryption: {...noConfig.encryption, exists: true, text: writes[0]!.content, config, mode: 0o600}};
		const resumed = rotatePrepareStage.plan(killed, prepareAnswers, context).changes.filter((change): change is WriteFileChange => change.kind === 'write-file');
		expect(resumed.map(w => w.path)).toEqual(['/etc/kubernetes/manifests/kube-apiserver.yaml']);
		expect(resumed[0]!.content).toContain('--encryption-provider-config=/etc/kubernetes/enc/encryption-config.yaml');
		// promote and prune wait for prepare.
		expect(rotatePromoteStage.plan(noConfig, {}, context).changes).toEqual([]);
		expect(rotatePruneStage.plan(noConfig, {}, context).changes).toEqual([]);
	});
});

import {describe, expect, it} from 'vitest';
import {
	KUBEADM_CONFIG_PATH,
	KubeadmConfigError,
	encryptionConfigVolume,
	patchClusterConfiguration,
	readApiServerSettings,
	updateClusterConfiguration,
} from '../../source/kube/kubeadm-config.js';
import {KubeApi} from '../../source/kube/api.js';
import {FakeHost, json, status} from './kube-fake.js';

const FLAG = {'encryption-provider-config': '/etc/kubernetes/enc/config.yaml'};
const VOLUME = encryptionConfigVolume('etcd-harden-encryption', '/etc/kubernetes/enc');
const patch = {extraArgs: FLAG, extraVolumes: [VOLUME]};

// kubeadm 1.20 as stored in the ConfigMap (v1beta2, map form).
const v1beta2 = `apiServer:
  extraArgs:
    authorization-mode: Node,RBAC
  timeoutForControlPlane: 4m0s
apiVersion: kubeadm.k8s.io/v1beta2
certificatesDir: /etc/kubernetes/pki
clusterName: kubernetes
controllerManager: {}
dns:
  type: CoreDNS
etcd:
  local:
    dataDir: /var/lib/etcd
imageRepository: k8s.gcr.io
kind: ClusterConfiguration
kubernetesVersion: v1.20.2
networking:
  dnsDomain: cluster.local
  serviceSubnet: 10.96.0.0/12
scheduler: {}
`;

const v1beta3 = `apiServer:
  timeoutForControlPlane: 4m0s
apiVersion: kubeadm.k8s.io/v1beta3
# kept
certificatesDir: /etc/kubernetes/pki
clusterName: kubernetes
kind: ClusterConfiguration
kubernetesVersion: v1.28.2
`;

const v1beta4 = `apiServer:
  extraArgs:
  - name: authorization-mode
    value: Node,RBAC
  extraVolumes:
  - name: audit
    hostPath: /var/log/audit
    mountPath: /var/log/audit
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: v1.31.0
`;

describe('ClusterConfiguration patch', () => {
	it('v1beta2: adds the flag to the extraArgs map and the volume; every other line unchanged', () => {
		const after = patchClusterConfiguration(v1beta2, patch);
		expect(after).toBe(
			v1beta2.replace(
				'    authorization-mode: Node,RBAC\n  timeoutForControlPlane: 4m0s\n',
				'    authorization-mode: Node,RBAC\n    encryption-provider-config: /etc/kubernetes/enc/config.yaml\n' +
					'  timeoutForControlPlane: 4m0s\n' +
					'  extraVolumes:\n  - name: etcd-harden-encryption\n    hostPath: /etc/kubernetes/enc\n    mountPath: /etc/kubernetes/enc\n    readOnly: true\n    pathType: DirectoryOrCreate\n',
			),
		);
		expect(readApiServerSettings(after)).toEqual({
			extraArgs: {'authorization-mode': 'Node,RBAC', ...FLAG},
			extraVolumes: [VOLUME],
		});
	});

	it('v1beta3: creates extraArgs as a map, keeps comments', () => {
		const after = patchClusterConfiguration(v1beta3, patch);
		expect(after).toContain('# kept\n');
		expect(after).toContain('  extraArgs:\n    encryption-provider-config: /etc/kubernetes/enc/config.yaml\n');
		expect(readApiServerSettings(after)).toEqual({extraArgs: FLAG, extraVolumes: [VOLUME]});
	});

	it('v1beta4: uses the list form and appends to existing lists', () => {
		const after = patchClusterConfiguration(v1beta4, patch);
		expect(after).toContain('  - name: encryption-provider-config\n    value: /etc/kubernetes/enc/config.yaml\n');
		const settings = readApiServerSettings(after);
		expect(settings.extraArgs).toEqual({'authorization-mode': 'Node,RBAC', ...FLAG});
		expect(settings.extraVolumes.map(volume => volume.name)).toEqual(['audit', 'etcd-harden-encryption']);
	});

	it('v1beta4: replaces an existing entry instead of duplicating it', () => {
		const changed = patchClusterConfiguration(v1beta4, {extraArgs: {'authorization-mode': 'Node,RBAC,ABAC'}});
		expect(changed.match(/authorization-mode/g)).toHaveLength(1);
		expect(readApiServerSettings(changed).extraArgs['authorization-mode']).toBe('Node,RBAC,ABAC');
	});

	it('is idempotent for every version', () => {
		for (const text of [v1beta2, v1beta3, v1beta4]) {
			const once = patchClusterConfiguration(text, patch);
			expect(once).not.toBe(text);
			expect(patchClusterConfiguration(once, patch)).toBe(once);
		}
	});

	it('updates a changed value and a changed volume in place', () => {
		const once = patchClusterConfiguration(v1beta2, patch);
		const moved = patchClusterConfiguration(once, {
			extraArgs: {'encryption-provider-config': '/etc/kubernetes/enc2/config.yaml'},
			extraVolumes: [encryptionConfigVolume('etcd-harden-encryption', '/etc/kubernetes/enc2')],
		});
		const settings = readApiServerSettings(moved);
		expect(settings.extraArgs['encryption-provider-config']).toBe('/etc/kubernetes/enc2/config.yaml');
		expect(settings.extraVolumes).toEqual([encryptionConfigVolume('etcd-harden-encryption', '/etc/kubernetes/enc2')]);
	});

	it('refuses text that is not a ClusterConfiguration', () => {
		expect(() => patchClusterConfiguration('kind: InitConfiguration\napiVersion: kubeadm.k8s.io/v1beta3\n', patch)).toThrow(KubeadmConfigError);
		expect(() => patchClusterConfiguration('a: [', patch)).toThrow(/not valid YAML/);
	});
});

describe('kubeadm-config ConfigMap update', () => {
	it('writes back with the resourceVersion and re-applies the edit after a 409', async () => {
		let resourceVersion = 10;
		let stored = v1beta2;
		let conflicts = 1;
		const puts: Array<{resourceVersion: string; text: string}> = [];
		const host = new FakeHost(request => {
			expect(new URL(request.url).pathname).toBe(KUBEADM_CONFIG_PATH);
			if ((request.method ?? 'GET') === 'GET') {
				return json(200, {metadata: {name: 'kubeadm-config', namespace: 'kube-system', resourceVersion: String(resourceVersion)}, data: {ClusterConfiguration: stored, ClusterStatus: 'x'}});
			}
			const body = JSON.parse(String(request.body)) as {metadata: {resourceVersion: string}; data: {ClusterConfiguration: string; ClusterStatus: string}};
			puts.push({resourceVersion: body.metadata.resourceVersion, text: body.data.ClusterConfiguration});
			expect(body.data.ClusterStatus).toBe('x');
			if (conflicts-- > 0) {
				resourceVersion++; // someone else wrote meanwhile
				return status(409, 'Conflict', 'the object has been modified');
			}
			if (body.metadata.resourceVersion !== String(resourceVersion)) return status(409, 'Conflict', 'stale');
			stored = body.data.ClusterConfiguration;
			resourceVersion++;
			return json(200, body);
		});
		const api = new KubeApi(host, {server: 'https://127.0.0.1:6443'});
		const update = await updateClusterConfiguration(api, text => patchClusterConfiguration(text, patch));
		expect(update.changed).toBe(true);
		expect(update.before).toBe(v1beta2);
		expect(puts.map(put => put.resourceVersion)).toEqual(['10', '11']);
		expect(stored).toBe(update.after);
		const again = await updateClusterConfiguration(api, text => patchClusterConfiguration(text, patch));
		expect(again.changed).toBe(false);
		expect(puts).toHaveLength(2);
	});
});

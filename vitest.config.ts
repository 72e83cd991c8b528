import {defineConfig} from 'vitest/config';

// The etcd-facing e2e files run against etcd 3.5 (what kubeadm installs since Kubernetes 1.22, the
// release users run); etcd 3.4 keeps a smoke subset: the files whose code paths differ on 3.4
// (auth read by the failed-login probe; snapshot status/restore by etcdctl, as 3.4 has no
// etcdutl). The full set on both would not fit CI's 60 cold minutes (see README, Testing).
const ETCD35_FILES = [
	'test/e2e/encryption-wizard.test.ts',
	'test/e2e/etcd-scan.test.ts',
	'test/e2e/rotate.test.ts',
	'test/e2e/etcd-tls.test.ts',
	'test/e2e/etcd-auth.test.ts',
	'test/e2e/backup.test.ts',
	'test/e2e/firewall.test.ts',
];
const ETCD34_SMOKE = ['test/e2e/etcd-auth.test.ts', 'test/e2e/backup.test.ts'];
const ETCD35_ONLY = ETCD35_FILES.filter(file => !ETCD34_SMOKE.includes(file));

// Three tiers, all run by `npm test`:
//  unit: pure logic (planning, YAML patching, crypto, validation); mocks allowed only here.
//  ui:   Ink components and frontends driven through ink-testing-library / a pty.
//  e2e:  real etcd, real kube-apiserver, real kubectl, iptables/nft in namespaces the tests create.
export default defineConfig({
	test: {
		reporters: ['default', './test/summary-reporter.ts'],
		projects: [
			{
				test: {
					name: 'unit',
					include: ['test/unit/**/*.test.{ts,tsx}'],
					environment: 'node',
					// Several unit files run the CLI in-process on temp trees; CI runs them beside e2e testbeds on 2 cores.
					testTimeout: 20_000,
				},
			},
			{
				test: {
					name: 'ui',
					include: ['test/ui/**/*.test.{ts,tsx}'],
					environment: 'node',
					testTimeout: 20_000,
				},
			},
			{
				test: {
					name: 'e2e',
					include: ['test/e2e/**/*.test.{ts,tsx}'],
					exclude: ETCD35_ONLY,
					environment: 'node',
					env: {ETCD_HARDEN_TEST_ETCD: '3.4'},
					// One control plane at a time on a 2-core machine.
					fileParallelism: false,
					testTimeout: 600_000,
					hookTimeout: 600_000,
				},
			},
			{
				test: {
					name: 'e2e-etcd35',
					include: ETCD35_FILES,
					environment: 'node',
					env: {ETCD_HARDEN_TEST_ETCD: '3.5'},
					fileParallelism: false,
					testTimeout: 600_000,
					hookTimeout: 600_000,
					// After every other project: never two testbeds at once.
					sequence: {groupOrder: 1},
				},
			},
		],
	},
});

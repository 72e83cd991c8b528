import {defineConfig} from 'vitest/config';

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
					environment: 'node',
					// One control plane at a time on a 2-core machine.
					fileParallelism: false,
					testTimeout: 600_000,
					hookTimeout: 600_000,
				},
			},
		],
	},
});

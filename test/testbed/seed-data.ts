// Deterministic names and values of the objects the testbed seeds, so tests can check them.

export interface SeedCounts {
	secrets: number;
	configMaps: number;
	namespaces: number;
}

export function seedNamespace(i: number, namespaces: number): string {
	return `seed-${i % namespaces}`;
}

export function seedNamespaces(namespaces: number): string[] {
	return Array.from({length: namespaces}, (_, i) => `seed-${i}`);
}

export interface SeededObject {
	namespace: string;
	name: string;
	/** Plain (not base64) values. */
	data: Record<string, string>;
}

export function seededSecret(i: number, namespaces: number): SeededObject {
	const n = String(i).padStart(5, '0');
	return {
		namespace: seedNamespace(i, namespaces),
		name: `secret-${n}`,
		data: {username: `user-${n}`, password: `s3cret-value-${n}`},
	};
}

export function seededConfigMap(i: number, namespaces: number): SeededObject {
	const n = String(i).padStart(5, '0');
	return {
		namespace: seedNamespace(i, namespaces),
		name: `config-${n}`,
		data: {setting: `config-value-${n}`},
	};
}

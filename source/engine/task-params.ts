/**
 * Reading a TaskChange's params (plain data planned by a stage). A wrong type is a bug in
 * the stage that planned it, so these throw "internal:" errors rather than input errors.
 */
export type Params = Record<string, unknown>;

export function paramString(params: Params, name: string): string | undefined {
	const value = params[name];
	if (value === undefined || value === null) return undefined;
	if (typeof value !== 'string') throw new Error(`internal: task param ${name} must be a string`);
	return value;
}

export function paramNumber(params: Params, name: string): number | undefined {
	const value = params[name];
	if (value === undefined || value === null) return undefined;
	if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`internal: task param ${name} must be a number`);
	return value;
}

export function paramStrings(params: Params, name: string): string[] | undefined {
	const value = params[name];
	if (value === undefined || value === null) return undefined;
	if (!Array.isArray(value) || value.some(item => typeof item !== 'string')) throw new Error(`internal: task param ${name} must be a list of strings`);
	return value as string[];
}

import {describe, expect, it} from 'vitest';
import {
	ConflictError,
	ConnectionError,
	GoneError,
	KubeApi,
	KubeApiError,
	NotFoundError,
	ServerError,
	TooManyRequestsError,
	parseRetryAfter,
	resourcePath,
	splitResourceName,
} from '../../source/kube/api.js';
import {FakeHost, json, status, text} from './kube-fake.js';

const connection = {server: 'https://10.0.0.10:6443', ca: 'CA-PEM', cert: 'CERT-PEM', key: 'KEY-PEM'};

describe('KubeApi typed errors and retries', () => {
	it.each([
		[404, 'NotFound', NotFoundError],
		[409, 'Conflict', ConflictError],
		[410, 'Expired', GoneError],
	] as const)('%i becomes %s without a retry', async (code, reason, type) => {
		const host = new FakeHost(() => status(code, reason, 'msg'));
		const api = new KubeApi(host, connection);
		const error = await api.get('/api/v1/namespaces/a/secrets/b').catch((caught: unknown) => caught);
		expect(error).toBeInstanceOf(type);
		expect((error as KubeApiError).reason).toBe(reason);
		expect((error as Error).message).toBe(`GET /api/v1/namespaces/a/secrets/b: ${code} ${reason}: msg`);
		expect(host.requests).toHaveLength(1);
	});

	it('honours Retry-After on 429, then succeeds', async () => {
		let calls = 0;
		const host = new FakeHost(() => (++calls < 3 ? status(429, 'TooManyRequests', 'slow down', {'retry-after': '3'}) : json(200, {metadata: {name: 'x'}})));
		const api = new KubeApi(host, connection);
		expect(await api.get('/api/v1/namespaces/a/secrets/x')).toEqual({metadata: {name: 'x'}});
		expect(host.sleeps).toEqual([3000, 3000]);
	});

	it('uses details.retryAfterSeconds when there is no header', async () => {
		let calls = 0;
		const host = new FakeHost(() =>
			++calls === 1 ? json(429, {kind: 'Status', reason: 'TooManyRequests', details: {retryAfterSeconds: 2}}) : json(200, {}),
		);
		await new KubeApi(host, connection).get('/x');
		expect(host.sleeps).toEqual([2000]);
	});

	it('gives up after the bounded retries with a typed error (429, 5xx)', async () => {
		const host = new FakeHost(() => status(429, 'TooManyRequests', 'busy', {'retry-after': '1'}));
		const error = await new KubeApi(host, connection, {retries: 2}).get('/x').catch((caught: unknown) => caught);
		expect(error).toBeInstanceOf(TooManyRequestsError);
		expect((error as KubeApiError).retryAfterSeconds).toBe(1);
		expect(host.requests).toHaveLength(3);

		const server = new FakeHost(() => text(503, 'etcd unavailable'));
		const failed = await new KubeApi(server, connection, {retries: 3, backoffMs: 100}).get('/x').catch((caught: unknown) => caught);
		expect(failed).toBeInstanceOf(ServerError);
		expect((failed as Error).message).toContain('503: etcd unavailable');
		expect(server.sleeps).toEqual([100, 200, 400]);
	});

	it('retries a refused connection (apiserver restarting), then raises ConnectionError', async () => {
		const host = new FakeHost(() => {
			throw Object.assign(new Error('connect ECONNREFUSED 10.0.0.10:6443'), {code: 'ECONNREFUSED'});
		});
		const error = await new KubeApi(host, connection, {retries: 1}).get('/readyz').catch((caught: unknown) => caught);
		expect(error).toBeInstanceOf(ConnectionError);
		expect(host.requests).toHaveLength(2);
	});

	it('does not retry other errors (TLS, 403)', async () => {
		const host = new FakeHost(() => {
			throw Object.assign(new Error('unable to verify the first certificate'), {code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'});
		});
		await expect(new KubeApi(host, connection).get('/x')).rejects.toThrow(/verify/);
		expect(host.requests).toHaveLength(1);
		const forbidden = new FakeHost(() => status(403, 'Forbidden', 'no'));
		await expect(new KubeApi(forbidden, connection).get('/x')).rejects.toThrow(KubeApiError);
		expect(forbidden.requests).toHaveLength(1);
	});

	it('sends inline credentials, JSON bodies and merge patches; paginates lists', async () => {
		const host = new FakeHost(request => {
			if ((request.method ?? 'GET') === 'GET') return json(200, {items: [{metadata: {name: 'a'}}], metadata: {continue: 'tok', remainingItemCount: 4}});
			return json(200, {ok: true});
		});
		const api = new KubeApi(host, {...connection, token: 'abc'});
		const page = await api.list('/api/v1/secrets', {limit: 1, continue: 'prev token', metadataOnly: true});
		expect(page).toMatchObject({items: [{metadata: {name: 'a'}}], continue: 'tok', remainingItemCount: 4});
		expect(host.requests[0]!.url).toBe('https://10.0.0.10:6443/api/v1/secrets?limit=1&continue=prev%20token');
		expect(host.requests[0]!).toMatchObject({ca: 'CA-PEM', cert: 'CERT-PEM', key: 'KEY-PEM'});
		expect(host.requests[0]!.headers?.['authorization']).toBe('Bearer abc');
		await api.patch('/p', {});
		expect(host.requests[1]).toMatchObject({method: 'PATCH', body: '{}', headers: {'content-type': 'application/merge-patch+json'}});
		await api.put('/p', {metadata: {name: 'p', resourceVersion: '5'}});
		expect(host.requests[2]).toMatchObject({method: 'PUT', headers: {'content-type': 'application/json'}});
		expect(JSON.parse(String(host.requests[2]!.body))).toEqual({metadata: {name: 'p', resourceVersion: '5'}});
	});

	it('resolves resources: well-known, and by discovery for group resources', async () => {
		const host = new FakeHost(request => {
			const path = new URL(request.url).pathname;
			if (path === '/apis/apps') return json(200, {preferredVersion: {groupVersion: 'apps/v1', version: 'v1'}});
			if (path === '/apis/apps/v1') return json(200, {resources: [{name: 'deployments', namespaced: true}, {name: 'deployments/status', namespaced: true}]});
			if (path === '/api/v1') return json(200, {resources: [{name: 'persistentvolumes', namespaced: false}]});
			return status(404, 'NotFound');
		});
		const api = new KubeApi(host, connection);
		expect(await api.resolveResource('secrets')).toEqual({group: '', version: 'v1', resource: 'secrets', namespaced: true});
		expect(host.requests).toHaveLength(0);
		const deployments = await api.resolveResource('deployments.apps');
		expect(deployments).toEqual({group: 'apps', version: 'v1', resource: 'deployments', namespaced: true});
		expect(resourcePath(deployments, 'ns', 'web')).toBe('/apis/apps/v1/namespaces/ns/deployments/web');
		const pv = await api.resolveResource('persistentvolumes');
		expect(resourcePath(pv, 'ignored', 'pv-1')).toBe('/api/v1/persistentvolumes/pv-1');
		expect(resourcePath(pv)).toBe('/api/v1/persistentvolumes');
		await expect(api.resolveResource('widgets.example.com')).rejects.toThrow(NotFoundError);
	});

	it('parses names and Retry-After', () => {
		expect(splitResourceName('secrets')).toEqual({resource: 'secrets', group: ''});
		expect(splitResourceName('ingresses.networking.k8s.io')).toEqual({resource: 'ingresses', group: 'networking.k8s.io'});
		const now = new Date('2030-01-01T00:00:00Z');
		expect(parseRetryAfter('7', now)).toBe(7);
		expect(parseRetryAfter('Tue, 01 Jan 2030 00:00:10 GMT', now)).toBe(10);
		expect(parseRetryAfter('soon', now)).toBeUndefined();
		expect(parseRetryAfter(undefined, now)).toBeUndefined();
	});
});

import {describe, expect, it} from 'vitest';
import {KubeApi} from '../../source/kube/api.js';
import {findResumableState, readState, ReencryptAborted, reencrypt, statePathIn, targetSetOf, type ReencryptProgress} from '../../source/kube/reencrypt.js';
import {FakeHost, FakeSecrets, status} from './kube-fake.js';

const connection = {server: 'https://127.0.0.1:6443', ca: 'CA', cert: 'CERT', key: 'KEY'};

function setup(count: number) {
	const fake = new FakeSecrets(FakeSecrets.keys(count));
	const host = new FakeHost(fake.handler);
	const api = new KubeApi(host, connection);
	return {fake, host, api};
}

function writes(fake: FakeSecrets): number[] {
	return [...fake.objects.values()].map(object => object.writes);
}

describe('reencrypt (all objects of a resource, scripted fake apiserver)', () => {
	it('rewrites every stale object exactly once through paginated metadata-only lists', async () => {
		const {fake, host, api} = setup(1234);
		const result = await reencrypt(api, {resources: ['secrets'], method: 'patch'});
		expect(result.rewritten).toBe(1234);
		expect(result.byResource).toEqual({secrets: 1234});
		expect(writes(fake).every(count => count === 1)).toBe(true);
		// One count request (limit 1), then pages of 500.
		expect(fake.listCalls.map(call => call.limit)).toEqual([1, 500, 500, 500]);
		const list = host.requests.find(request => request.url.includes('limit=500'))!;
		expect(list.headers?.['accept']).toContain('as=PartialObjectMetadataList');
		const patch = host.requests.find(request => request.method === 'PATCH')!;
		expect(patch.headers?.['content-type']).toBe('application/merge-patch+json');
		expect(patch.body).toBe('{}');
		// Credentials go inline to the host, never files.
		expect(patch.cert).toBe('CERT');
	});

	it('keeps at most `concurrency` writes in flight and uses them all', async () => {
		const {fake, api} = setup(600);
		fake.delayTicks = 5;
		await reencrypt(api, {resources: ['secrets'], concurrency: 16});
		// +1: the prefetched list page may be in flight beside 16 writes.
		expect(fake.maxInFlight).toBeLessThanOrEqual(17);
		expect(fake.maxInFlight).toBeGreaterThanOrEqual(16);

		const small = setup(100);
		small.fake.delayTicks = 5;
		await reencrypt(small.api, {resources: ['secrets'], concurrency: 3});
		expect(small.fake.maxInFlight).toBeLessThanOrEqual(4);
	});

	it('throttles to `rate` objects per second', async () => {
		const {host, api} = setup(50);
		const started = host.clock;
		await reencrypt(api, {resources: ['secrets'], rate: 10});
		// 50 objects at 10/s on the virtual clock: about 4.9 s of sleeps.
		expect((host.clock - started) / 1000).toBeGreaterThanOrEqual(4.8);
		expect((host.clock - started) / 1000).toBeLessThan(5.5);
	});

	it('restarts an expired list (410) after the last dispatched name: none skipped, none listed twice', async () => {
		const {fake, api} = setup(1600);
		// The token after the second page expires once.
		const secondPageEnd = [...fake.objects.keys()].sort()[999]!;
		fake.expireTokens.add(Buffer.from(secondPageEnd).toString('base64'));
		const result = await reencrypt(api, {resources: ['secrets']});
		expect(result.listRestarts).toBe(1);
		expect(result.rewritten).toBe(1600);
		expect(writes(fake).every(count => count === 1)).toBe(true);
		// 1 count + 2 pages + (410) + restart from the start: 4 pages.
		expect(fake.listCalls.filter(call => call.limit === 500 && call.continue === undefined)).toHaveLength(2);
	});

	it('counts an object deleted meanwhile (404) as done, and retries a 409', async () => {
		const {fake, api} = setup(20);
		const keys = [...fake.objects.keys()].sort();
		fake.beforeWrite = key => {
			if (key === keys[3]) fake.objects.delete(key);
		};
		fake.conflicts.set(keys[5]!, 2);
		const result = await reencrypt(api, {resources: ['secrets']});
		expect(result.notFound).toBe(1);
		expect(result.conflicts).toBe(2);
		expect(result.rewritten).toBe(19);
		expect(fake.objects.get(keys[5]!)!.writes).toBe(1);
	});

	it('PUT mode re-reads on 409, so a concurrent update is not lost', async () => {
		const {fake, api} = setup(10);
		const keys = [...fake.objects.keys()].sort();
		const target = keys[4]!;
		let raced = false;
		// Between our GET and our PUT, a writer updates the object: our PUT carries a stale resourceVersion.
		const original = fake.handler;
		fake.handler = async request => {
			const response = await original(request);
			if (!raced && (request.method ?? 'GET') === 'GET' && request.url.endsWith(target.split('/')[1]!)) {
				raced = true;
				fake.update(target, {v: 'writer'});
			}
			return response;
		};
		const host = new FakeHost(fake.handler);
		const result = await reencrypt(new KubeApi(host, connection), {resources: ['secrets'], method: 'put'});
		expect(raced).toBe(true);
		expect(result.conflicts).toBe(1);
		expect(fake.objects.get(target)!.data).toEqual({v: 'writer'});
	});

	it('reports progress with count, total, rate and ETA', async () => {
		const {api} = setup(300);
		const seen: ReencryptProgress[] = [];
		await reencrypt(api, {resources: ['secrets'], onProgress: progress => seen.push(progress), progressIntervalMs: 0});
		expect(seen.at(-1)).toMatchObject({resource: 'secrets', done: 300, total: 300});
		expect(seen.some(progress => progress.etaSeconds !== undefined && progress.rate > 0)).toBe(true);
		const dones = seen.map(progress => progress.done);
		expect([...dones].sort((a, b) => a - b)).toEqual(dones);
	});

	it('saves its position and a rerun continues after it', async () => {
		const {fake, host, api} = setup(1000);
		const runA = '/var/lib/etcd-harden/runs/20300101T000000Z';
		const controller = new AbortController();
		let count = 0;
		fake.beforeWrite = () => {
			if (++count === 700) controller.abort();
		};
		await expect(
			reencrypt(api, {resources: ['secrets'], statePath: statePathIn(runA), fingerprint: 'cfg-1', signal: controller.signal}),
		).rejects.toThrow();
		const saved = await readState(host, statePathIn(runA));
		expect(saved?.resources['secrets']?.finished).toBe(false);
		const after = saved!.resources['secrets']!.after!;
		expect(after).toBeDefined();
		// Everything at or before the saved position was written.
		for (const [key, object] of fake.objects) if (key <= after) expect(object.writes).toBe(1);

		const resumable = await findResumableState(host, {fingerprint: 'cfg-1', resources: ['secrets']});
		expect(resumable).toEqual(saved);
		expect(await findResumableState(host, {fingerprint: 'other-config', resources: ['secrets']})).toBeUndefined();

		fake.beforeWrite = undefined;
		const before = fake.listCalls.length;
		const result = await reencrypt(api, {resources: ['secrets'], resumeFrom: resumable, fingerprint: 'cfg-1'});
		expect(result.resumedSkipped).toBeGreaterThan(0);
		expect(result.rewritten).toBe(1000 - [...fake.objects.keys()].filter(key => key <= after).length);
		expect(writes(fake).every(writesOfObject => writesOfObject === 1)).toBe(true);
		expect(fake.listCalls.length).toBeGreaterThan(before);
	});

	it('a finished state is not resumed', async () => {
		const {host, api} = setup(10);
		const run = '/var/lib/etcd-harden/runs/20300101T000000Z';
		await reencrypt(api, {resources: ['secrets'], statePath: statePathIn(run), fingerprint: 'f'});
		expect((await readState(host, statePathIn(run)))?.resources['secrets']?.finished).toBe(true);
		expect(await findResumableState(host, {fingerprint: 'f', resources: ['secrets']})).toBeUndefined();
	});

	it('targeted mode rewrites exactly the given objects', async () => {
		const {fake, api} = setup(50);
		const keys = [...fake.objects.keys()].sort();
		const chosen = [keys[1]!, keys[17]!, keys[42]!];
		const result = await reencrypt(api, {
			resources: ['secrets'],
			method: 'patch',
			targets: chosen.map(key => ({resource: 'secrets', namespace: key.split('/')[0], name: key.split('/')[1]!})),
		});
		expect(result.rewritten).toBe(3);
		for (const [key, object] of fake.objects) expect(object.writes).toBe(chosen.includes(key) ? 1 : 0);
		expect(fake.listCalls).toHaveLength(0);
	});

	it('list-put: one full list, each object PUT back as listed (with its kind), no read per object', async () => {
		const {fake, host, api} = setup(1100);
		const result = await reencrypt(api, {resources: ['secrets'], method: 'list-put'});
		expect(result.rewritten).toBe(1100);
		expect(writes(fake).every(count => count === 1)).toBe(true);
		const perObjectReads = host.requests.filter(request => (request.method ?? 'GET') === 'GET' && request.url.includes('/namespaces/'));
		expect(perObjectReads).toHaveLength(0);
		const list = host.requests.find(request => request.url.includes('limit=500'))!;
		expect(list.headers?.['accept'] ?? '').not.toContain('PartialObjectMetadataList');
		const put = host.requests.find(request => request.method === 'PUT')!;
		expect(JSON.parse(String(put.body))).toMatchObject({kind: 'Secret', metadata: {resourceVersion: expect.any(String)}, data: {v: '0'}});
	});

	it('list-put: a write between the list and the PUT is a 409, re-read and kept (no lost update)', async () => {
		const {fake, api} = setup(40);
		const keys = [...fake.objects.keys()].sort();
		const target = keys[7]!;
		let raced = false;
		fake.beforeWrite = key => {
			if (key === target && !raced) {
				raced = true;
				fake.update(target, {v: 'writer'});
			}
		};
		const result = await reencrypt(api, {resources: ['secrets'], method: 'list-put'});
		expect(raced).toBe(true);
		expect(result.conflicts).toBe(1);
		expect(fake.objects.get(target)!.data).toEqual({v: 'writer'});
		expect(result.rewritten).toBe(40);
	});

	it('targeted list-put rewrites exactly the given objects and counts a deleted one as done', async () => {
		const {fake, api} = setup(60);
		const keys = [...fake.objects.keys()].sort();
		const chosen = [keys[2]!, keys[30]!, keys[59]!];
		fake.objects.delete(keys[30]!);
		const result = await reencrypt(api, {
			resources: ['secrets'],
			method: 'list-put',
			targets: chosen.map(key => ({resource: 'secrets', namespace: key.split('/')[0], name: key.split('/')[1]!})),
		});
		expect(result.rewritten).toBe(2);
		expect(result.notFound).toBe(1);
		for (const [key, object] of fake.objects) expect(object.writes).toBe(chosen.includes(key) ? 1 : 0);
	});

	it('a target set: a whole resource (no positions) is listed and rewritten; positions are rewritten by name in every method', async () => {
		const whole = setup(120);
		const all = await reencrypt(whole.api, {resources: ['secrets'], method: 'list-put', targets: new Map([['secrets', {count: 120}]])});
		expect(all.rewritten).toBe(120);
		expect(writes(whole.fake).every(count => count === 1)).toBe(true);

		for (const method of ['patch', 'list-put'] as const) {
			const {fake, api} = setup(40);
			const keys = [...fake.objects.keys()].sort();
			const chosen = [keys[0]!, keys[39]!];
			// The same target twice in an ObjectTarget[] is rewritten once.
			const listed = chosen.map(key => ({resource: 'secrets', namespace: key.split('/')[0], name: key.split('/')[1]!}));
			const fromArray = targetSetOf([...listed, listed[0]!]);
			expect(fromArray.get('secrets')?.count).toBe(2);
			const result = await reencrypt(api, {resources: ['secrets'], method, targets: fromArray});
			expect(result.rewritten).toBe(2);
			for (const [key, object] of fake.objects) expect(object.writes).toBe(chosen.includes(key) ? 1 : 0);
		}
	});

	it('an abort stops dispatching; writes carry no abort listener (lists do) and the ones sent finish', async () => {
		const {fake, host, api} = setup(400);
		const controller = new AbortController();
		let puts = 0;
		const fakeHandler = fake.handler;
		host.handler = request => {
			if (request.method === 'PUT' && ++puts === 50) controller.abort();
			return fakeHandler(request);
		};
		const error = await reencrypt(api, {resources: ['secrets'], concurrency: 8, signal: controller.signal}).catch((caught: unknown) => caught);
		expect(error).toBeInstanceOf(ReencryptAborted);
		const writes = host.requests.filter(request => request.method === 'PUT');
		expect(writes.every(request => request.signal === undefined)).toBe(true);
		expect(host.requests.filter(request => request.method === 'GET').every(request => request.signal === controller.signal)).toBe(true);
		// Stopped within the writes already in flight, and every write sent was answered (none cut off).
		expect(writes.length).toBeLessThanOrEqual(50 + 8);
		expect([...fake.objects.values()].filter(object => object.writes === 1).length).toBe(writes.length);
	});

	it('fails on an unexpected error and says which request', async () => {
		const {fake, host, api} = setup(30);
		const keys = [...fake.objects.keys()].sort();
		const original = fake.handler;
		fake.handler = async request => {
			if (request.url.endsWith(keys[10]!.split('/')[1]!)) return {status: 403, headers: {}, body: Buffer.from('{"kind":"Status","reason":"Forbidden","message":"nope"}')};
			return original(request);
		};
		host.handler = fake.handler;
		await expect(reencrypt(api, {resources: ['secrets']})).rejects.toThrow(/403 Forbidden: nope/);
	});
});

describe('reencrypt with adaptive concurrency (the default)', () => {
	it('starts low, reports the writes in flight, and honours a 429 Retry-After without losing or repeating a write', async () => {
		const {fake, host, api} = setup(300);
		const fakeHandler = fake.handler;
		let refused = 0;
		// Refuse the first writes beyond 2 in flight with 429 + Retry-After: 1 (the real
		// apiserver's max-inflight filter answers the same).
		let writesInFlight = 0;
		host.handler = async request => {
			const write = request.method === 'PUT';
			if (write && writesInFlight >= 2 && refused < 5) {
				refused++;
				return status(429, 'TooManyRequests', 'Too many requests, please try again later.', {'retry-after': '1'});
			}
			if (write) writesInFlight++;
			try {
				return await fakeHandler(request);
			} finally {
				if (write) writesInFlight--;
			}
		};
		const progress: ReencryptProgress[] = [];
		const result = await reencrypt(api, {resources: ['secrets'], onProgress: p => progress.push(p), progressIntervalMs: 0});
		expect(result.rewritten).toBe(300);
		expect(writes(fake).every(count => count === 1)).toBe(true);
		// Refused while 4 were allowed; once halved to 2 the server refuses no more.
		expect(refused).toBeGreaterThanOrEqual(1);
		expect(result.throttled).toBe(refused);
		expect(result.concurrency.adaptive).toBe(true);
		// Starts at 4 in flight; the first 429 halves it.
		expect(result.concurrency.highest).toBe(4);
		expect(result.concurrency.final).toBe(2);
		// Retry-After honoured: the request waited a second (virtual clock).
		expect(host.sleeps.filter(ms => ms === 1000).length).toBeGreaterThanOrEqual(1);
		expect(progress.some(p => p.adaptive && p.inFlight > 0 && p.limit === 2)).toBe(true);
		expect(progress.every(p => p.inFlight <= 4)).toBe(true);
	});

	it('--concurrency pins the limit (no adaptation) and the result says so', async () => {
		const {api} = setup(50);
		const result = await reencrypt(api, {resources: ['secrets'], concurrency: 7});
		expect(result.concurrency).toEqual({adaptive: false, final: 7, highest: 7});
	});
});

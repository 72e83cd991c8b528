import {readFileSync, readdirSync} from 'node:fs';
import path from 'node:path';
import {describe, expect, test} from 'vitest';
import {canonicalAddress, cidrContains, parseCidr, type Cidr} from '../../source/firewall/address.js';
import {buildAllowList, parseInitialCluster, refusals, type AllowFacts, type FirewallOptions} from '../../source/firewall/model.js';
import {applyScript, compareChain, JUMP_LINE, mergeRulesFile, parseSave, renderChain, revertSteps, tokenize} from '../../source/firewall/iptables.js';
import {compareTable, renderTable, replaceScript, withInclude} from '../../source/firewall/nft.js';
import {planPersistence} from '../../source/firewall/persistence.js';
import {firewallTemplates} from '../../source/firewall/templates.generated.js';
import type {FirewallFacts} from '../../source/firewall/types.js';
import {regressions} from '../../source/firewall/tasks.js';
import {firewallStage} from '../../source/stages/firewall.js';
import {InputError} from '../../source/engine/contract.js';
import type {Facts} from '../../source/stages/facts.js';

const noOptions: FirewallOptions = {clientCidrs: [], peerCidrs: [], exclude: [], log: false};

function cidr(text: string): Cidr {
	const parsed = parseCidr(text);
	if (typeof parsed === 'string') throw new Error(parsed);
	return parsed;
}

function firewallFacts(extra: Partial<FirewallFacts> = {}): FirewallFacts {
	const emptyChain = {available: true, tablePresent: true, chainExists: false, rules: [], input: []};
	return {
		addresses: [
			{iface: 'eth0', address: '10.0.0.10', family: 4, prefix: 24},
			{iface: 'eth0', address: 'fd00::10', family: 6, prefix: 64},
		],
		members: [
			{name: 'cp-1', id: '1', peerURLs: ['https://10.0.0.10:2380'], clientURLs: ['https://10.0.0.10:2379']},
			{name: 'cp-2', id: '2', peerURLs: ['https://10.0.0.11:2380'], clientURLs: ['https://10.0.0.11:2379']},
			{name: 'cp-3', id: '3', peerURLs: ['https://cp-3.internal:2380'], clientURLs: ['https://[fd00::12]:2379']},
		],
		controlPlane: [{name: 'cp-4', addresses: ['10.0.0.13']}],
		resolved: {'cp-3.internal': ['10.0.0.12']},
		persistence: {netfilterPersistent: false, nftablesService: false},
		iptables: {
			variant: 'nft',
			reason: 'test',
			v4: {save: 'iptables-nft-save', restore: 'iptables-nft-restore'},
			v6: {save: 'ip6tables-nft-save', restore: 'ip6tables-nft-restore'},
			state4: emptyChain,
			state6: emptyChain,
			ruleCount: 0,
		},
		nft: {otherTables: []},
		inUse: {backend: 'iptables', reason: 'test'},
		...extra,
	};
}

function allowFacts(firewall: FirewallFacts = firewallFacts()): AllowFacts {
	return {firewall, apiserverFlags: {'etcd-servers': 'https://127.0.0.1:2379'}, etcdFlags: {'initial-cluster': 'cp-1=https://10.0.0.10:2380'}};
}

function facts(firewall: FirewallFacts): Facts {
	const manifest = (flags: Record<string, string>) => ({path: '/x', exists: true, command: [], flags, volumes: [], volumeMounts: [], annotations: {}});
	return {
		root: '/',
		isRoot: true,
		apiserver: manifest({'etcd-servers': 'https://127.0.0.1:2379', 'etcd-cafile': '/ca', 'etcd-certfile': '/c', 'etcd-keyfile': '/k'}),
		etcd: manifest({}),
		encryption: {path: '/e', exists: false, errors: [], mountedInPod: false},
		pki: {dir: '/pki', files: {}},
		firewall,
	} as Facts;
}

describe('addresses', () => {
	test('CIDRs are validated and canonical', () => {
		expect(parseCidr('10.0.0.0/24')).toEqual({family: 4, address: '10.0.0.0', prefix: 24});
		expect(parseCidr('10.0.0.5/24')).toBe('"10.0.0.5/24" has host bits set; did you mean 10.0.0.0/24?');
		expect(parseCidr('FD00:0:0:0::1')).toEqual({family: 6, address: 'fd00::1', prefix: 128});
		expect(parseCidr('0.0.0.0/0')).toMatch(/every address/);
		expect(parseCidr('cp-1')).toMatch(/host names are not accepted/);
		expect(parseCidr('10.0.0.0/33')).toMatch(/0 to 32/);
		expect(canonicalAddress('2001:db8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1');
		expect(canonicalAddress('::ffff:10.0.0.1')).toBe('::ffff:a00:1');
		expect(cidrContains(cidr('fd00::/64'), 'fd00::12')).toBe(true);
		expect(cidrContains(cidr('10.0.0.0/24'), '10.0.1.1')).toBe(false);
	});

	test('--initial-cluster is parsed into members', () => {
		expect(parseInitialCluster('a=https://10.0.0.1:2380,b=https://10.0.0.2:2380,a=https://[fd00::1]:2380')).toEqual([
			{name: 'a', id: '', peerURLs: ['https://10.0.0.1:2380', 'https://[fd00::1]:2380'], clientURLs: []},
			{name: 'b', id: '', peerURLs: ['https://10.0.0.2:2380'], clientURLs: []},
		]);
	});
});

describe('allow list', () => {
	test('loopback, this node, members (resolved), control-plane Nodes and operator CIDRs, each with its origin', () => {
		const list = buildAllowList(allowFacts(), {...noOptions, clientCidrs: [cidr('192.168.5.0/24')], peerCidrs: [cidr('10.0.0.14')]});
		const rules = list.rules.map(rule => `${rule.port} ${rule.iface ?? `${rule.source!.address}/${rule.source!.prefix}`} ${rule.tag}: ${rule.origins.join(' | ')}`);
		expect(rules).toEqual([
			'both lo loopback: loopback (always allowed)',
			'2379 10.0.0.10/32 node: this node (eth0) | etcd member cp-1 (this node) client URL https://10.0.0.10:2379',
			'2379 10.0.0.11/32 member: etcd member cp-2 client URL https://10.0.0.11:2379',
			'2379 10.0.0.13/32 control-plane: control-plane Node cp-4',
			'2379 192.168.5.0/24 operator: operator (client-cidrs)',
			'2379 fd00::10/128 node: this node (eth0)',
			'2379 fd00::12/128 member: etcd member cp-3 client URL https://[fd00::12]:2379',
			'2380 10.0.0.10/32 member: etcd member cp-1 (this node) peer URL https://10.0.0.10:2380',
			'2380 10.0.0.11/32 member: etcd member cp-2 peer URL https://10.0.0.11:2380',
			'2380 10.0.0.12/32 member: etcd member cp-3 peer URL https://cp-3.internal:2380',
			'2380 10.0.0.14/32 operator: operator (peer-cidrs)',
		]);
		expect(refusals(list)).toEqual([]);
	});

	test('the order does not depend on the order discovery saw things in', () => {
		const facts = firewallFacts();
		const reversed = firewallFacts({members: [...facts.members!].reverse(), addresses: [...facts.addresses].reverse()});
		expect(renderChain(buildAllowList(allowFacts(reversed), noOptions), 4)).toEqual(renderChain(buildAllowList(allowFacts(facts), noOptions), 4));
		expect(renderTable(buildAllowList(allowFacts(reversed), noOptions))).toBe(renderTable(buildAllowList(allowFacts(facts), noOptions)));
	});

	test('excluding a member is refused, naming the member, the port and the fix', () => {
		const list = buildAllowList(allowFacts(), {...noOptions, exclude: [cidr('10.0.0.11')]});
		expect(refusals(list)).toEqual([
			'etcd member cp-2 (peer URL https://10.0.0.11:2380) would be blocked: no rule allows port 2380 from 10.0.0.11. Fix: remove 10.0.0.11 from exclude, or add it to peer-cidrs.',
			'etcd member cp-2 (client URL https://10.0.0.11:2379) would be blocked: no rule allows port 2379 from 10.0.0.11. Fix: remove 10.0.0.11 from exclude, or add it to client-cidrs.',
		]);
		// Excluding a non-member (a decommissioned control-plane Node) is fine.
		const fine = buildAllowList(allowFacts(), {...noOptions, exclude: [cidr('10.0.0.13')]});
		expect(refusals(fine)).toEqual([]);
		expect(fine.notes.join('\n')).toContain('Left out (exclude): 10.0.0.13/32 (control-plane Node cp-4)');
	});

	test('a plan without loopback is refused (the local apiserver connects over it)', () => {
		const list = buildAllowList(allowFacts(), noOptions);
		const withoutLoopback = {...list, rules: list.rules.filter(rule => rule.iface !== 'lo')};
		const refused = refusals(withoutLoopback);
		expect(refused).toContain('loopback to the client port would be blocked: no rule allows port 2379 on loopback. Fix: loopback is always allowed; this is a bug in etcd-harden.');
		expect(refused.some(line => line.startsWith("the local kube-apiserver's etcd connection (--etcd-servers https://127.0.0.1:2379) would be blocked"))).toBe(true);
	});

	test('a member host name that does not resolve is refused; the manifest is the fallback when etcd does not answer', () => {
		const unresolved = buildAllowList(allowFacts(firewallFacts({resolved: {}})), noOptions);
		expect(refusals(unresolved)).toEqual([
			'etcd member cp-3: peer URL https://cp-3.internal:2380 names the host "cp-3.internal", which does not resolve here. Add the member\'s address with peer-cidrs, or fix name resolution.',
		]);
		const offline = buildAllowList(allowFacts(firewallFacts({members: undefined, membersProblem: 'context deadline exceeded'})), noOptions);
		expect(offline.warnings.join('\n')).toContain("etcd did not answer (context deadline exceeded), so the peers come from the etcd manifest's --initial-cluster");
		expect(offline.rules.filter(rule => rule.tag === 'initial-cluster').map(rule => rule.origins[0])).toEqual([
			'etcd manifest --initial-cluster, member cp-1 (this node) peer URL https://10.0.0.10:2380',
		]);
	});
});

describe('iptables rendering', () => {
	const list = buildAllowList(allowFacts(), {...noOptions, log: true});
	const chain = renderChain(list, 4);

	test('the chain as iptables-save prints it, IPv6 separately', () => {
		expect(chain).toEqual([
			'-A ETCD-HARDEN -i lo -m comment --comment loopback -j RETURN',
			'-A ETCD-HARDEN -s 10.0.0.10/32 -p tcp -m tcp --dport 2379 -m comment --comment node -j RETURN',
			'-A ETCD-HARDEN -s 10.0.0.11/32 -p tcp -m tcp --dport 2379 -m comment --comment member -j RETURN',
			'-A ETCD-HARDEN -s 10.0.0.13/32 -p tcp -m tcp --dport 2379 -m comment --comment control-plane -j RETURN',
			'-A ETCD-HARDEN -s 10.0.0.10/32 -p tcp -m tcp --dport 2380 -m comment --comment member -j RETURN',
			'-A ETCD-HARDEN -s 10.0.0.11/32 -p tcp -m tcp --dport 2380 -m comment --comment member -j RETURN',
			'-A ETCD-HARDEN -s 10.0.0.12/32 -p tcp -m tcp --dport 2380 -m comment --comment member -j RETURN',
			'-A ETCD-HARDEN -m limit --limit 5/min --limit-burst 10 -j LOG --log-prefix "etcd-harden drop: "',
			'-A ETCD-HARDEN -j DROP',
		]);
		expect(renderChain(list, 6).filter(line => line.includes(' -s '))).toEqual([
			'-A ETCD-HARDEN -s fd00::10/128 -p tcp -m tcp --dport 2379 -m comment --comment node -j RETURN',
			'-A ETCD-HARDEN -s fd00::12/128 -p tcp -m tcp --dport 2379 -m comment --comment member -j RETURN',
		]);
	});

	test('idempotent: the saved chain compares equal (quoting aside), so nothing is planned twice', () => {
		const save = ['*filter', ':INPUT ACCEPT [0:0]', ':ETCD-HARDEN - [0:0]', '-A INPUT -p icmp -j ACCEPT', JUMP_LINE, ...chain.map(line => line.replace('--comment node', '--comment "node"')), 'COMMIT'].join('\n');
		const state = parseSave(save);
		expect(compareChain(state, chain)).toEqual({inPlace: true, missing: [], extra: [], jumps: 1, orderOnly: false});
		// Applying again keeps the one jump (no second -I INPUT).
		expect(applyScript(state, chain)).not.toContain('-I INPUT');
		// A flushed chain (a firewalld reload) is incomplete.
		const flushed = parseSave(['*filter', ':INPUT ACCEPT [0:0]', ':ETCD-HARDEN - [0:0]', JUMP_LINE, 'COMMIT'].join('\n'));
		expect(compareChain(flushed, chain).inPlace).toBe(false);
		expect(compareChain(flushed, chain).missing).toHaveLength(chain.length);
	});

	test('the apply script declares (flushes) the chain, adds the jump once, removes duplicates', () => {
		const none = parseSave('*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p icmp -j ACCEPT\nCOMMIT\n');
		expect(applyScript(none, ['-A ETCD-HARDEN -j DROP'])).toBe(
			`*filter\n:ETCD-HARDEN - [0:0]\n-A ETCD-HARDEN -j DROP\n-I INPUT 1 ${JUMP_LINE.replace('-A INPUT ', '')}\nCOMMIT\n`,
		);
		const twice = parseSave(`*filter\n:ETCD-HARDEN - [0:0]\n${JUMP_LINE}\n${JUMP_LINE}\nCOMMIT\n`);
		expect(applyScript(twice, [])).toContain(JUMP_LINE.replace('-A ', '-D '));
	});

	test('revert: our chain and jumps back exactly as they were, other rules untouched', () => {
		const before = parseSave(`*filter\n:INPUT ACCEPT [0:0]\n:ETCD-HARDEN - [0:0]\n-A INPUT -p icmp -j ACCEPT\n${JUMP_LINE}\n-A ETCD-HARDEN -j DROP\nCOMMIT\n`);
		const now = parseSave(`*filter\n:INPUT ACCEPT [0:0]\n:ETCD-HARDEN - [0:0]\n${JUMP_LINE}\n-A INPUT -p icmp -j ACCEPT\n-A ETCD-HARDEN -i lo -j RETURN\n-A ETCD-HARDEN -j DROP\nCOMMIT\n`);
		const steps = revertSteps(now, before, 'legacy');
		expect(steps).toEqual({
			script: `*filter\n:ETCD-HARDEN - [0:0]\n-A ETCD-HARDEN -j DROP\n${JUMP_LINE.replace('-A ', '-D ')}\n-I INPUT 2 ${JUMP_LINE.replace('-A INPUT ', '')}\nCOMMIT\n`,
			deleteChain: false,
			deleteTable: false,
		});
		const fresh = parseSave('*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n');
		expect(revertSteps(now, fresh, 'nft')).toMatchObject({deleteChain: true, deleteTable: false});
		// No filter table before and nothing but ours in it now: the nf_tables variant drops the table too.
		const onlyOurs = parseSave(`*filter\n:INPUT ACCEPT [0:0]\n:ETCD-HARDEN - [0:0]\n${JUMP_LINE}\n-A ETCD-HARDEN -j DROP\nCOMMIT\n`);
		expect(revertSteps(onlyOurs, parseSave(''), 'nft')).toMatchObject({deleteChain: true, deleteTable: true});
		expect(revertSteps(onlyOurs, parseSave(''), 'legacy')).toMatchObject({deleteChain: true, deleteTable: false});
		expect(revertSteps(now, parseSave(''), 'nft')).toMatchObject({deleteChain: true, deleteTable: false});
		expect(revertSteps(before, before, 'nft')).toEqual({deleteChain: false, deleteTable: false});
	});

	test('tokenize honours quotes', () => {
		expect(tokenize('-A X -m comment --comment "this node" -j LOG --log-prefix "a \\"b\\" "')).toEqual(['-A', 'X', '-m', 'comment', '--comment', 'this node', '-j', 'LOG', '--log-prefix', 'a "b" ']);
	});

	test('rules.v4 for netfilter-persistent: merged into the filter table, idempotent', () => {
		const existing = '*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n';
		const merged = mergeRulesFile(existing, chain, firewallTemplates['iptables-rules.txt']);
		expect(merged.split('\n').slice(3, 9)).toEqual(['*filter', ':INPUT DROP [0:0]', ':FORWARD ACCEPT [0:0]', ':ETCD-HARDEN - [0:0]', JUMP_LINE, '-A INPUT -i lo -j ACCEPT']);
		expect(merged).toContain(`${chain.at(-1)}\nCOMMIT\n`);
		expect(mergeRulesFile(merged, chain, firewallTemplates['iptables-rules.txt'])).toBe(merged);
		const fresh = mergeRulesFile(undefined, chain, firewallTemplates['iptables-rules.txt']);
		expect(fresh).toContain(`:ETCD-HARDEN - [0:0]\n${JUMP_LINE}\n${chain[0]}`);
		expect(parseSave(fresh).rules).toEqual(chain);
	});
});

describe('nftables rendering', () => {
	const list = buildAllowList(allowFacts(), noOptions);

	test('one inet table: a hook chain that jumps to chain etcd for 2379/2380', () => {
		const table = renderTable(list);
		expect(table.split('\n').slice(0, 8)).toEqual([
			'table inet etcd_harden {',
			'\tchain input {',
			'\t\ttype filter hook input priority filter - 10; policy accept;',
			'\t\ttcp dport { 2379, 2380 } jump etcd comment "etcd-harden"',
			'\t}',
			'',
			'\tchain etcd {',
			'\t\tiifname "lo" accept comment "loopback"',
		]);
		expect(table).toContain('\t\tip saddr 10.0.0.12 tcp dport 2380 accept comment "member"\n');
		expect(table).toContain('\t\tip6 saddr fd00::12 tcp dport 2379 accept comment "member"\n');
		expect(table.endsWith('\t\tdrop\n\t}\n}\n')).toBe(true);
		expect(replaceScript(table).startsWith('table inet etcd_harden\ndelete table inet etcd_harden\ntable inet etcd_harden {')).toBe(true);
		expect(compareTable(table.replaceAll('\t', '    '), table).inPlace).toBe(true);
		expect(compareTable(undefined, table).inPlace).toBe(false);
	});

	test('persistence: our file plus one include line in /etc/nftables.conf, once', () => {
		const conf = '#!/usr/sbin/nft -f\n\nflush ruleset\n';
		const once = withInclude(conf, '/etc/nftables.d/etcd-harden.nft');
		expect(once).toBe(`${conf}\n# etcd-harden: etcd's ports 2379/2380 (table inet etcd_harden)\ninclude "/etc/nftables.d/etcd-harden.nft"\n`);
		expect(withInclude(once, '/etc/nftables.d/etcd-harden.nft')).toBe(once);
		const table = renderTable(list);
		const plan = planPersistence({netfilterPersistent: false, nftablesService: true, nftablesConf: conf}, {backend: 'nftables', table});
		expect(plan.changes.map(change => change.path)).toEqual(['/etc/nftables.d/etcd-harden.nft', '/etc/nftables.conf']);
		expect(plan.changes[0]!.content).toContain(`delete table inet etcd_harden\n${table}`);
		const none = planPersistence({netfilterPersistent: false, nftablesService: false}, {backend: 'nftables', table});
		expect(none.changes).toEqual([]);
		expect(none.warnings.join('\n')).toMatch(/will NOT survive a reboot.*apt install nftables/);
	});
});

describe('health regressions', () => {
	test('only what was healthy before counts', () => {
		const before = {etcd: new Map([['https://a:2379', undefined], ['https://b:2379', 'down']]), apiserver: undefined};
		const after = {etcd: new Map([['https://a:2379', 'context deadline exceeded'], ['https://b:2379', 'down']]), apiserver: 'connection refused'};
		expect(regressions(before, after, true)).toEqual(['etcd https://a:2379 is unhealthy: context deadline exceeded', 'kube-apiserver is not ready: connection refused']);
		expect(regressions(before, before, true)).toEqual([]);
	});
});

describe('firewall stage', () => {
	test('without the live node (--root) it asks nothing and plans nothing', () => {
		const plain = {...facts(firewallFacts()), firewall: undefined};
		expect(firewallStage.questions(plain, {})).toEqual([]);
		expect(firewallStage.plan(plain, {}, {randomBytes: () => Buffer.alloc(0), now: new Date(0)}).changes).toEqual([]);
	});

	test('plans the apply task and the record; with the rules in place it plans nothing', () => {
		const firewall = firewallFacts();
		const context = {randomBytes: () => Buffer.alloc(0), now: new Date(0)};
		const plan = firewallStage.plan(facts(firewall), {backend: 'iptables'}, context);
		expect(plan.changes.map(change => change.kind === 'task' ? change.task : change.path)).toEqual(['firewall-apply', '/var/lib/etcd-harden/firewall.json']);
		const task = plan.changes[0]!;
		if (task.kind !== 'task') throw new Error('expected a task');
		expect(task.detail).toContain('iptables-nft-restore --noflush <<EOF');
		expect(task.params['confirmTimeoutSeconds']).toBe(30);
		expect(plan.warnings!.join('\n')).toContain('netfilter-persistent is not installed');
		// What the node looks like after applying: the chain, the jump, the record.
		const v4 = task.params['v4'] as {chain: string[]};
		const v6 = task.params['v6'] as {chain: string[]};
		const state = (rules: string[]) => ({available: true, tablePresent: true, chainExists: true, rules, input: [JUMP_LINE]});
		const record = plan.changes[1]!;
		if (record.kind !== 'write-file') throw new Error('expected a file');
		const applied = firewallFacts({iptables: {...firewall.iptables!, state4: state(v4.chain), state6: state(v6.chain)}, record: record.content});
		const again = firewallStage.plan(facts(applied), {backend: 'iptables'}, context);
		expect(again.changes).toEqual([]);
		expect(firewallStage.verify(facts(applied), {backend: 'iptables'}).map(check => check.status)).toEqual(['pass']);
		expect(firewallStage.status(facts(applied)).map(check => `${check.id} ${check.status}`)).toEqual(['rules pass', 'members pass']);
		// After a flush, status says so.
		const flushed = firewallFacts({iptables: {...firewall.iptables!, state4: state([]), state6: state([])}, record: record.content});
		const status = firewallStage.status(facts(flushed));
		expect(status[0]).toMatchObject({id: 'rules', status: 'fail'});
		expect(status[0]!.remediation).toMatch(/rerun etcd-harden --only firewall/);
	});

	test('a plan that would block a member is refused', () => {
		const context = {randomBytes: () => Buffer.alloc(0), now: new Date(0)};
		expect(() => firewallStage.plan(facts(firewallFacts()), {backend: 'nftables', exclude: '10.0.0.11'}, context)).toThrow(InputError);
		expect(() => firewallStage.plan(facts(firewallFacts()), {backend: 'nftables', exclude: '10.0.0.11'}, context)).toThrow(/refusing firewall rules that would cut off the cluster:\n {2}- etcd member cp-2/);
	});

	test('operator CIDRs are validated', () => {
		const question = firewallStage.questions(facts(firewallFacts()), {}).find(q => q.id === 'client-cidrs')!;
		expect(question.validate!('10.1.0.0/16, fd01::/48', {})).toBeUndefined();
		expect(question.validate!('10.1.0.1/16', {})).toBe('"10.1.0.1/16" has host bits set; did you mean 10.1.0.0/16?');
	});
});

describe('the watchdog in plans and status', () => {
	const context = {randomBytes: () => Buffer.alloc(0), now: new Date(0)};

	test('a watchdog that restored the rules is a warning in the next plan and in status', () => {
		const watchdog = {run: '2030-01-01T000000Z', state: 'reverted' as const, time: '2030-01-01T00:01:00Z'};
		const plan = firewallStage.plan(facts(firewallFacts({watchdog})), {backend: 'iptables'}, context);
		expect(plan.warnings).toContain('the firewall change of run 2030-01-01T000000Z was never confirmed and the tool was gone: its watchdog restored the earlier rules at 2030-01-01T00:01:00Z');
		expect(firewallStage.status!(facts(firewallFacts({watchdog})))).toContainEqual(expect.objectContaining({id: 'watchdog', status: 'warn'}));
		expect(firewallStage.status!(facts(firewallFacts({watchdog: {...watchdog, state: 'failed', detail: 'x'}})))).toContainEqual(expect.objectContaining({id: 'watchdog', status: 'fail'}));
		expect(firewallStage.status!(facts(firewallFacts())).map(check => check.id)).not.toContain('watchdog');
	});

	test('a watchdog that still waits refuses a new plan (it would restore over the new rules)', () => {
		const watchdog = {run: '2030-01-01T000000Z', state: 'pending' as const};
		expect(() => firewallStage.plan(facts(firewallFacts({watchdog})), {backend: 'iptables'}, context)).toThrow(InputError);
		expect(() => firewallStage.plan(facts(firewallFacts({watchdog})), {backend: 'iptables'}, context)).toThrow(/watchdog of run 2030-01-01T000000Z still waits/);
	});
});

test('templates.generated.ts matches templates/firewall/', () => {
	const dir = path.resolve(import.meta.dirname, '../../templates/firewall');
	const files = readdirSync(dir).filter(name => !name.endsWith('.mjs')).sort();
	expect(Object.keys(firewallTemplates).sort()).toEqual(files);
	for (const name of files) expect(firewallTemplates[name as keyof typeof firewallTemplates]).toBe(readFileSync(path.join(dir, name), 'utf8'));
});

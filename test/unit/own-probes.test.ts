// etcd-harden's own probes of etcd's listeners are told from anyone else's attempts by a loopback
// source and a privileged source port (or, for the etcd 3.4 login probe, a user that never
// exists): the monitor leaves them out, and nothing from another host or an unprivileged port.
import {describe, expect, it} from 'vitest';
import {isOwnProbe, isOwnProbeClient, OWN_PROBE_USER, ownProbeCurlOptions} from '../../source/etcd/own-probes.js';
import {parseEtcdLog} from '../../source/monitor/etcd-log.js';

describe('own probes', () => {
	it('a loopback source with a port in 900-1023 is ours; any other address or port is not', () => {
		for (const client of ['127.0.0.1:900', '127.0.0.1:1023', '127.5.6.7:950', '[::1]:1000', '[::ffff:127.0.0.1]:999']) expect(isOwnProbeClient(client), client).toBe(true);
		for (const client of ['127.0.0.1:899', '127.0.0.1:1024', '127.0.0.1:54321', '10.0.0.10:1000', '192.168.1.5:950', '[fe80::1]:1000', '[::2]:1000', '1270.0.0.1:1000', 'localhost:1000', '127.0.0.1', '', undefined]) {
			expect(isOwnProbeClient(client), String(client)).toBe(false);
		}
	});

	it('the curl options bind the family of the target', () => {
		expect(ownProbeCurlOptions('10.0.0.10')).toEqual(['--interface', '127.0.0.1', '--local-port', '900-1023']);
		expect(ownProbeCurlOptions('[fd00::10]')).toEqual(['--interface', '::1', '--local-port', '900-1023']);
	});

	it("classifies etcd's own log lines: our TLS probe and login probe are left out, an attacker's are kept", () => {
		const log = [
			// etcd 3.4 (capnslog): our probe, then someone on the node from an ordinary port, then a remote host from a low port.
			'2026-11-30 12:00:00.000000 I | embed: rejected connection from "127.0.0.1:1001" (error "tls: client didn\'t provide a certificate", ServerName "")',
			'2026-11-30 12:00:01.000000 I | embed: rejected connection from "127.0.0.1:40412" (error "tls: client didn\'t provide a certificate", ServerName "")',
			'2026-11-30 12:00:02.000000 I | embed: rejected connection from "10.0.0.99:1001" (error "tls: client didn\'t provide a certificate", ServerName "")',
			// etcd 3.5 (zap JSON)
			'{"level":"warn","ts":"2026-11-30T12:00:03Z","caller":"embed/config_logging.go:169","msg":"rejected connection","remote-addr":"[::1]:1010","server-name":"","error":"tls: client didn\'t provide a certificate"}',
			'{"level":"warn","ts":"2026-11-30T12:00:04Z","caller":"embed/config_logging.go:169","msg":"rejected connection","remote-addr":"[2001:db8::5]:1010","server-name":"","error":"tls: client didn\'t provide a certificate"}',
			`2026-11-30 12:00:05.000000 N | auth: authentication failed, user ${OWN_PROBE_USER} doesn't exist`,
			'2026-11-30 12:00:06.000000 N | auth: authentication failed, user admin doesn\'t exist',
		].join('\n');
		const events = parseEtcdLog(log);
		expect(events).toHaveLength(7);
		expect(events.map(event => isOwnProbe(event))).toEqual([true, false, false, true, false, true, false]);
		// A failed login as the probe user from another host is not ours.
		expect(isOwnProbe({kind: 'unknown-user', user: OWN_PROBE_USER, client: '10.0.0.99:5000'})).toBe(false);
	});
});

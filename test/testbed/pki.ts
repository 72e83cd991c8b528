// kubeadm-layout PKI made with openssl (RSA 2048, like kubeadm).
import {chmod, mkdir, readFile, rm, writeFile} from 'node:fs/promises';
import path from 'node:path';
import {execa} from 'execa';

export interface PkiOptions {
	nodeName: string;
	nodeIp: string;
	/** Service cluster IP of the `kubernetes` service (first IP of the service range). */
	serviceIp?: string;
}

interface CertSpec {
	/** Path without extension, relative to the pki dir: writes <base>.crt and <base>.key. */
	base: string;
	subject: string;
	/** Path of the signing CA (without extension), relative to the pki dir; omitted for a CA. */
	ca?: string;
	usage: Array<'serverAuth' | 'clientAuth'>;
	dns?: string[];
	ips?: string[];
}

const OPENSSL_CONFIG = `[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign
subjectKeyIdentifier = hash
`;

function leafSection(spec: CertSpec): string {
	const lines = [
		`[leaf]`,
		`basicConstraints = critical,CA:FALSE`,
		`keyUsage = critical,digitalSignature,keyEncipherment`,
		`extendedKeyUsage = ${spec.usage.join(',')}`,
		`authorityKeyIdentifier = keyid`,
	];
	const san = [...(spec.dns ?? []).map((d) => `DNS:${d}`), ...(spec.ips ?? []).map((i) => `IP:${i}`)];
	if (san.length > 0) lines.push(`subjectAltName = ${san.join(',')}`);
	return lines.join('\n') + '\n';
}

async function makeCert(pkiDir: string, spec: CertSpec): Promise<void> {
	const crt = path.join(pkiDir, `${spec.base}.crt`);
	const key = path.join(pkiDir, `${spec.base}.key`);
	const cnf = path.join(pkiDir, `.${spec.base.replaceAll('/', '_')}.cnf`);
	await mkdir(path.dirname(crt), {recursive: true});
	await writeFile(cnf, OPENSSL_CONFIG + (spec.ca ? leafSection(spec) : ''));
	const args = ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt];
	args.push('-subj', spec.subject, '-config', cnf);
	if (spec.ca) {
		const ca = path.join(pkiDir, spec.ca);
		args.push('-days', '365', '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-extensions', 'leaf');
	} else {
		args.push('-days', '3650', '-extensions', 'ca');
	}
	await execa('openssl', args, {stdin: 'ignore'});
	await rm(cnf);
	await chmod(key, 0o600);
	await chmod(crt, 0o644);
}

export interface AdminCredentials {
	caCrt: string;
	clientCrt: string;
	clientKey: string;
}

/**
 * Write the kubeadm PKI under `pkiDir` (the directory that becomes /etc/kubernetes/pki) and return
 * the admin client credentials (CN kubernetes-admin, O system:masters) for admin.conf.
 */
export async function generatePki(pkiDir: string, opts: PkiOptions): Promise<AdminCredentials> {
	const serviceIp = opts.serviceIp ?? '10.96.0.1';
	await mkdir(path.join(pkiDir, 'etcd'), {recursive: true});
	// CAs first (in parallel), then every leaf in parallel.
	await Promise.all([
		makeCert(pkiDir, {base: 'ca', subject: '/CN=kubernetes', usage: []}),
		makeCert(pkiDir, {base: 'front-proxy-ca', subject: '/CN=front-proxy-ca', usage: []}),
		makeCert(pkiDir, {base: 'etcd/ca', subject: '/CN=etcd-ca', usage: []}),
		(async () => {
			const key = path.join(pkiDir, 'sa.key');
			await execa('openssl', ['genrsa', '-out', key, '2048'], {stdin: 'ignore'});
			await execa('openssl', ['rsa', '-in', key, '-pubout', '-out', path.join(pkiDir, 'sa.pub')], {stdin: 'ignore'});
			await chmod(key, 0o600);
		})(),
	]);
	const etcdNames = {dns: [opts.nodeName, 'localhost'], ips: [opts.nodeIp, '127.0.0.1', '::1']};
	const adminDir = path.join(pkiDir, '.admin');
	await Promise.all([
		makeCert(pkiDir, {
			base: 'apiserver',
			subject: '/CN=kube-apiserver',
			ca: 'ca',
			usage: ['serverAuth'],
			dns: [
				opts.nodeName,
				'kubernetes',
				'kubernetes.default',
				'kubernetes.default.svc',
				'kubernetes.default.svc.cluster.local',
				'localhost',
			],
			ips: [serviceIp, opts.nodeIp, '127.0.0.1'],
		}),
		makeCert(pkiDir, {
			base: 'apiserver-kubelet-client',
			subject: '/O=system:masters/CN=kube-apiserver-kubelet-client',
			ca: 'ca',
			usage: ['clientAuth'],
		}),
		makeCert(pkiDir, {
			base: 'apiserver-etcd-client',
			subject: '/O=system:masters/CN=kube-apiserver-etcd-client',
			ca: 'etcd/ca',
			usage: ['clientAuth'],
		}),
		makeCert(pkiDir, {
			base: 'front-proxy-client',
			subject: '/CN=front-proxy-client',
			ca: 'front-proxy-ca',
			usage: ['clientAuth'],
		}),
		makeCert(pkiDir, {
			base: 'etcd/server',
			subject: `/CN=${opts.nodeName}`,
			ca: 'etcd/ca',
			usage: ['serverAuth', 'clientAuth'],
			...etcdNames,
		}),
		makeCert(pkiDir, {
			base: 'etcd/peer',
			subject: `/CN=${opts.nodeName}`,
			ca: 'etcd/ca',
			usage: ['serverAuth', 'clientAuth'],
			...etcdNames,
		}),
		makeCert(pkiDir, {
			base: 'etcd/healthcheck-client',
			subject: '/O=system:masters/CN=kube-etcd-healthcheck-client',
			ca: 'etcd/ca',
			usage: ['clientAuth'],
		}),
		// The admin certificate lives only inside admin.conf (as kubeadm does); made in a scratch dir.
		(async () => {
			await mkdir(adminDir, {recursive: true});
			await writeFile(path.join(adminDir, 'ca.crt'), await readFile(path.join(pkiDir, 'ca.crt')));
			await writeFile(path.join(adminDir, 'ca.key'), await readFile(path.join(pkiDir, 'ca.key')), {mode: 0o600});
			await makeCert(adminDir, {
				base: 'admin',
				subject: '/O=system:masters/CN=kubernetes-admin',
				ca: 'ca',
				usage: ['clientAuth'],
			});
		})(),
	]);
	const creds: AdminCredentials = {
		caCrt: await readFile(path.join(pkiDir, 'ca.crt'), 'utf8'),
		clientCrt: await readFile(path.join(adminDir, 'admin.crt'), 'utf8'),
		clientKey: await readFile(path.join(adminDir, 'admin.key'), 'utf8'),
	};
	await rm(adminDir, {recursive: true, force: true});
	return creds;
}

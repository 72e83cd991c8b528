/**
 * Certificate details for the etcd audit: parsed from PEM text (read through the host) with
 * node:crypto's X509Certificate. Pure: text in, plain data out (facts print as JSON).
 */
import {X509Certificate} from 'node:crypto';
import {isIP} from 'node:net';

/** What the audit needs to know about one certificate file. */
export type CertInfo = {
	/** Node path of the file. */
	path: string;
	/** Set when the file is missing or cannot be parsed (names the file and the problem). */
	error?: string;
	subjectCN?: string;
	issuerCN?: string;
	/** Subject and issuer are the same (a CA's self-signed certificate). */
	selfSigned?: boolean;
	isCA?: boolean;
	notBefore?: string;
	notAfter?: string;
	/** DNS names and IP addresses of the subjectAltName extension. */
	dnsNames?: string[];
	ips?: string[];
	/** Extended key usage: `serverAuth`, `clientAuth`, or the OID. */
	extendedKeyUsage?: string[];
	/** SHA-256 fingerprint (identifies a CA file regardless of its path). */
	fingerprint256?: string;
	/** The issuer's fingerprint when it was verified against a CA file given to the parser. */
	verifiedBy?: string;
};

const EKU_NAMES: Record<string, string> = {
	'1.3.6.1.5.5.7.3.1': 'serverAuth',
	'1.3.6.1.5.5.7.3.2': 'clientAuth',
};

/** `CN=...` from a distinguished name as node prints it (one attribute per line). */
export function commonName(dn: string): string | undefined {
	for (const line of dn.split('\n')) {
		const match = /^CN=(.*)$/.exec(line.trim());
		if (match) return match[1];
	}
	return undefined;
}

/** `DNS:a, IP Address:1.2.3.4` -> names and addresses. */
export function parseSubjectAltName(text: string | undefined): {dnsNames: string[]; ips: string[]} {
	const dnsNames: string[] = [];
	const ips: string[] = [];
	for (const part of (text ?? '').split(/,\s*/)) {
		const dns = /^DNS:(.+)$/.exec(part.trim());
		if (dns) dnsNames.push(dns[1]!);
		const ip = /^IP Address:(.+)$/.exec(part.trim());
		if (ip) ips.push(normalizeIp(ip[1]!));
	}
	return {dnsNames, ips};
}

/** Canonical text of an IP address (IPv6 compressed, lower case); other text unchanged. */
export function normalizeIp(address: string): string {
	const bare = address.replace(/^\[|\]$/g, '');
	if (isIP(bare) !== 6) return bare;
	try {
		return new URL(`http://[${bare}]/`).hostname.replace(/^\[|\]$/g, '');
	} catch {
		return bare.toLowerCase();
	}
}

/**
 * Parse the first certificate of a PEM text. `ca` (PEM of a CA) is checked as the issuer:
 * `verifiedBy` holds the CA's fingerprint when its key signed this certificate.
 */
export function parseCertificate(path: string, pem: string | undefined, ca?: string): CertInfo {
	if (pem === undefined) return {path, error: `${path} does not exist`};
	let cert: X509Certificate;
	try {
		cert = new X509Certificate(pem);
	} catch (error) {
		return {path, error: `${path} is not a PEM certificate (${(error as Error).message})`};
	}
	const {dnsNames, ips} = parseSubjectAltName(cert.subjectAltName);
	const info: CertInfo = {
		path,
		subjectCN: commonName(cert.subject),
		issuerCN: commonName(cert.issuer),
		selfSigned: cert.subject === cert.issuer,
		isCA: cert.ca,
		notBefore: new Date(cert.validFrom).toISOString(),
		notAfter: new Date(cert.validTo).toISOString(),
		dnsNames,
		ips,
		extendedKeyUsage: (cert.keyUsage ?? []).map(oid => EKU_NAMES[oid] ?? oid),
		fingerprint256: cert.fingerprint256,
	};
	if (ca !== undefined) {
		try {
			const issuer = new X509Certificate(ca);
			if (cert.checkIssued(issuer) && cert.verify(issuer.publicKey)) info.verifiedBy = issuer.fingerprint256;
		} catch {
			// An unreadable CA leaves verifiedBy unset: the audit reports it.
		}
	}
	return stripUndefined(info);
}

function stripUndefined<T extends Record<string, unknown>>(value: T): T {
	for (const key of Object.keys(value)) if (value[key] === undefined) delete value[key];
	return value;
}

/** Whole days from `now` until the certificate expires (negative when expired). */
export function daysLeft(info: CertInfo, now: Date): number | undefined {
	if (info.notAfter === undefined) return undefined;
	return Math.floor((Date.parse(info.notAfter) - now.getTime()) / 86_400_000);
}

/**
 * Does the certificate name `host` (a DNS name or an IP address)? Wildcards match one label.
 * A wildcard address (0.0.0.0, ::) is never covered: clients dial concrete addresses.
 */
export function coversHost(info: CertInfo, host: string): boolean {
	const bare = host.replace(/^\[|\]$/g, '');
	if (isIP(bare)) return (info.ips ?? []).includes(normalizeIp(bare));
	const name = bare.toLowerCase();
	return (info.dnsNames ?? []).some(dns => {
		const pattern = dns.toLowerCase();
		if (pattern.startsWith('*.')) return name.endsWith(pattern.slice(1)) && !name.slice(0, -pattern.length + 1).includes('.');
		return pattern === name;
	});
}

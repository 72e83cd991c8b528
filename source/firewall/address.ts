/**
 * IP addresses and CIDRs for firewall rules: parsing, validation (an operator's CIDR with host
 * bits set is refused, naming the network it probably meant), containment, and the canonical
 * text iptables-save and nft print (IPv6 compressed per RFC 5952, lowercase).
 */
import {isIPv4, isIPv6} from 'node:net';

export type Family = 4 | 6;

export type Cidr = {
	family: Family;
	/** Canonical network address (host bits zero). */
	address: string;
	prefix: number;
};

function v4ToBig(address: string): bigint {
	return address.split('.').reduce((value, part) => (value << 8n) | BigInt(Number(part)), 0n);
}

function bigToV4(value: bigint): string {
	return [24n, 16n, 8n, 0n].map(shift => String((value >> shift) & 0xffn)).join('.');
}

function v6ToBig(address: string): bigint {
	let text = address.toLowerCase();
	// An embedded IPv4 tail (::ffff:10.0.0.1) becomes two hex groups.
	const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
	if (v4?.[1]) {
		const value = v4ToBig(v4[1]);
		text = `${text.slice(0, -v4[1].length)}${(value >> 16n).toString(16)}:${(value & 0xffffn).toString(16)}`;
	}
	const [head = '', tail] = text.split('::');
	const headParts = head === '' ? [] : head.split(':');
	const tailParts = tail === undefined || tail === '' ? [] : tail.split(':');
	const missing = 8 - headParts.length - tailParts.length;
	const parts = [...headParts, ...Array<string>(tail === undefined ? 0 : missing).fill('0'), ...tailParts];
	return parts.reduce((value, part) => (value << 16n) | BigInt(parseInt(part, 16)), 0n);
}

function bigToV6(value: bigint): string {
	const groups = Array.from({length: 8}, (_, i) => Number((value >> BigInt((7 - i) * 16)) & 0xffffn));
	// RFC 5952: compress the first longest run of two or more zero groups.
	let bestStart = -1;
	let bestLength = 0;
	for (let i = 0; i < 8; ) {
		if (groups[i] !== 0) {
			i++;
			continue;
		}
		let j = i;
		while (j < 8 && groups[j] === 0) j++;
		if (j - i > bestLength && j - i >= 2) {
			bestStart = i;
			bestLength = j - i;
		}
		i = j;
	}
	const hex = groups.map(group => group.toString(16));
	if (bestStart < 0) return hex.join(':');
	const left = hex.slice(0, bestStart).join(':');
	const right = hex.slice(bestStart + bestLength).join(':');
	return `${left}::${right}`;
}

export function familyOf(address: string): Family | undefined {
	if (isIPv4(address)) return 4;
	if (isIPv6(address)) return 6;
	return undefined;
}

/** The canonical text of an address (IPv6 compressed, lowercase); undefined if not an address. */
export function canonicalAddress(address: string): string | undefined {
	const family = familyOf(address);
	if (family === 4) return bigToV4(v4ToBig(address));
	if (family === 6) return bigToV6(v6ToBig(address));
	return undefined;
}

function toBig(family: Family, address: string): bigint {
	return family === 4 ? v4ToBig(address) : v6ToBig(address);
}

function bits(family: Family): number {
	return family === 4 ? 32 : 128;
}

function mask(family: Family, prefix: number): bigint {
	const width = BigInt(bits(family));
	const all = (1n << width) - 1n;
	return (all << (width - BigInt(prefix))) & all;
}

/**
 * Parse "10.0.0.0/24", "fd00::/64" or a bare address (a /32 or /128). Returns the problem as
 * text (naming the fix) instead of throwing.
 */
export function parseCidr(text: string): Cidr | string {
	const trimmed = text.trim();
	const [address = '', prefixText, extra] = trimmed.split('/');
	if (extra !== undefined) return `"${text}" is not an address or CIDR (one "/" at most)`;
	const family = familyOf(address);
	if (family === undefined) return `"${text}" is not an IPv4 or IPv6 address or CIDR (e.g. 10.0.0.0/24 or fd00::/64); host names are not accepted`;
	const width = bits(family);
	let prefix = width;
	if (prefixText !== undefined) {
		if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > width) return `"${text}": the prefix length must be 0 to ${width}`;
		prefix = Number(prefixText);
	}
	if (prefix === 0) return `"${text}" would allow every address; list the networks that need etcd instead`;
	const value = toBig(family, address);
	const network = value & mask(family, prefix);
	const canonical = family === 4 ? bigToV4(network) : bigToV6(network);
	if (network !== value) return `"${text}" has host bits set; did you mean ${canonical}/${prefix}?`;
	return {family, address: canonical, prefix};
}

/** A single address as a CIDR (/32 or /128), canonical. */
export function hostCidr(address: string): Cidr | undefined {
	const family = familyOf(address);
	if (family === undefined) return undefined;
	return {family, address: canonicalAddress(address)!, prefix: bits(family)};
}

export function isHost(cidr: Cidr): boolean {
	return cidr.prefix === bits(cidr.family);
}

/** "10.0.0.1/32", "fd00::/64" (iptables-save form: always with the prefix). */
export function formatCidr(cidr: Cidr): string {
	return `${cidr.address}/${cidr.prefix}`;
}

/** nft form: a single host without the prefix. */
export function formatNft(cidr: Cidr): string {
	return isHost(cidr) ? cidr.address : formatCidr(cidr);
}

export function cidrContains(cidr: Cidr, address: string): boolean {
	const family = familyOf(address);
	if (family !== cidr.family) return false;
	const m = mask(family, cidr.prefix);
	return (toBig(family, address) & m) === (toBig(family, cidr.address) & m);
}

export function sameCidr(a: Cidr, b: Cidr): boolean {
	return a.family === b.family && a.prefix === b.prefix && a.address === b.address;
}

export function isLoopback(address: string): boolean {
	const family = familyOf(address);
	if (family === 4) return address.startsWith('127.');
	if (family === 6) return canonicalAddress(address) === '::1';
	return false;
}

/** The host of a URL ("https://[fd00::1]:2380" -> "fd00::1"), or undefined. */
export function urlHost(url: string): string | undefined {
	try {
		const host = new URL(url).hostname;
		return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
	} catch {
		return undefined;
	}
}

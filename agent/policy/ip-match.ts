import { isIPv4, isIPv6 } from 'node:net';
import { ipBytes } from '../core/ip';

/**
 * Addresses and CIDR blocks (`ipBlocks`, `source.ip`, `destination.ip`), IPv4 and IPv6. Blocks
 * come canonical from convert.ts; host bits are masked off, as Envoy's CidrRange does. IPv4 is
 * matched as 32-bit integers without allocating; an IPv4 block never matches an IPv6 address.
 */
export class IpMatcher {
  private readonly v4: { net: number; mask: number }[] = [];
  private readonly v6: { bytes: Buffer; length: number }[] = [];

  constructor(blocks: readonly string[]) {
    for (const block of blocks) {
      const slash = block.indexOf('/');
      const address = slash < 0 ? block : block.slice(0, slash);
      if (isIPv4(address)) {
        const length = slash < 0 ? 32 : Number(block.slice(slash + 1));
        const mask = length === 0 ? 0 : (~0 << (32 - length)) >>> 0;
        this.v4.push({ net: (parseV4(address) & mask) >>> 0, mask });
      } else if (isIPv6(address)) {
        const length = slash < 0 ? 128 : Number(block.slice(slash + 1));
        this.v6.push({ bytes: ipBytes(address), length });
      } else {
        throw new Error(`not an IP block: ${JSON.stringify(block)} (convert.ts validates these)`);
      }
    }
  }

  /** `ip` in canonical form (ConnectionFacts); undefined matches nothing. */
  matches(ip: string | undefined): boolean {
    if (ip === undefined) return false;
    if (ip.includes(':')) {
      if (this.v6.length === 0) return false;
      const bytes = ipBytes(ip);
      for (const block of this.v6) if (prefixEqual(bytes, block.bytes, block.length)) return true;
      return false;
    }
    const value = parseV4(ip);
    if (value < 0) return false;
    for (const block of this.v4) if (((value & block.mask) >>> 0) === block.net) return true;
    return false;
  }
}

/** Dotted quad to an unsigned 32-bit integer; -1 when it is not one. */
function parseV4(ip: string): number {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < ip.length; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      octet = octet * 10 + (c - 48);
      digits++;
      if (octet > 255) return -1;
    } else {
      return -1;
    }
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + octet;
}

function prefixEqual(a: Buffer, b: Buffer, length: number): boolean {
  const whole = length >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rest = length & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[whole]! & mask) === (b[whole]! & mask);
}

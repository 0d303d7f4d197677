import { isIPv6 } from 'node:net';

export type Family = 4 | 6;

/** Strips the IPv4-mapped prefix a dual-stack socket reports (`::ffff:10.0.0.1` → `10.0.0.1`). */
export function unmapIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip;
}

/**
 * The 32-bit value of a dotted quad as Node's isIPv4 accepts it (four decimal octets 0-255, no
 * leading zeros: text that is also the canonical form), or -1 for anything else. Read by hand: the
 * connection paths ask this of several addresses per connection, and isIPv4's regular expression,
 * then split and map into a Buffer, cost several µs per connection (docs/new-connections.md).
 */
export function ipv4Value(ip: string): number {
  const n = ip.length;
  if (n < 7 || n > 15) return -1;
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < n; i++) {
    const c = ip.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && octet === 0) return -1; // a leading zero
      octet = octet * 10 + (c - 48);
      if (octet > 255) return -1;
      digits++;
    } else {
      return -1;
    }
  }
  return dots === 3 && digits > 0 ? value * 256 + octet : -1;
}

/** Writes the address's network-order bytes (4 or 16) at `offset`. */
export function writeIpBytes(ip: string, buf: Buffer, offset: number): void {
  const v4 = ipv4Value(ip);
  if (v4 >= 0) buf.writeUInt32BE(v4, offset);
  else ipBytes(ip).copy(buf, offset);
}

export function familyOf(ip: string): Family {
  if (ipv4Value(ip) >= 0) return 4;
  if (isIPv6(ip)) return 6;
  throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
}

/** Network-order bytes: 4 for IPv4, 16 for IPv6. */
export function ipBytes(ip: string): Buffer {
  const v4 = ipv4Value(ip);
  if (v4 >= 0) {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v4, 0);
    return b;
  }
  if (!isIPv6(ip)) throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
  let text = ip.replace(/%.*$/, '');
  const v4tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4tail) {
    const b = ipBytes(v4tail[1]!);
    text = text.slice(0, -v4tail[1]!.length) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** Formats network-order bytes (4 or 16) back to text; IPv6 in Node's canonical compressed form. */
export function formatIp(bytes: Buffer, family: Family): string {
  if (family === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** One canonical text form per address, so `fd00:0::1` and `fd00::1` compare equal. */
export function canonicalIp(ip: string): string {
  if (ipv4Value(ip) >= 0) return ip;
  const plain = unmapIp(ip);
  const family = familyOf(plain);
  return formatIp(ipBytes(plain), family);
}

/**
 * `ip:port`, IPv6 in brackets. Built with join(), not a template: V8 keeps a template's result as a
 * tree of ConsStrings (32 bytes each, plus the pieces) until something reads it whole, and a
 * string held for a connection's life (a CONNECT's headers, which Node keeps on the stream) stays
 * that tree; join() makes one flat string. A heap snapshot of the source agent with 2,000 idle
 * tunnelled connections held 10.6 ConsStrings (339 bytes) per connection.
 */
export function formatAddr(ip: string, port: number): string {
  return familyOf(ip) === 6 ? ['[', ip, ']:', port].join('') : [ip, ':', port].join('');
}

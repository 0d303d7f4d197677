import { isIPv4, isIPv6 } from 'node:net';

/**
 * The canonical text of an IP address, or undefined when `text` is not one. IPv6 is compressed
 * and lower-cased (RFC 5952 via the WHATWG URL host serializer), so `fd00:0::1` and `FD00::1`
 * both become `fd00::1`. Zone ids (`fe80::1%eth0`) are not addresses a pod or Service has.
 */
export function canonicalIp(text: string): string | undefined {
  if (isIPv4(text)) return text;
  if (!isIPv6(text) || text.includes('%')) return undefined;
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

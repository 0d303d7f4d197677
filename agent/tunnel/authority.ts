import { isIPv6 } from 'node:net';
import { canonicalIp, formatAddr, ipv4Value } from '../core/ip';
import { err, ok, type Result } from '../core/result';

/** Where a tunnelled connection goes: the destination pod's address. */
export interface TunnelTarget {
  ip: string;
  port: number;
}

const V4 = /^([0-9.]+):([0-9]{1,5})$/;
const V6 = /^\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})$/;

/** A CONNECT `:authority` must be `<ip>:<port>`, IPv6 in brackets; no host names, no zones. */
export function parseAuthority(authority: string | undefined): Result<TunnelTarget, string> {
  if (authority === undefined) return err('CONNECT without :authority');
  const v4 = V4.exec(authority);
  const v6 = V6.exec(authority);
  const ip = v4 && ipv4Value(v4[1]!) >= 0 ? v4[1]! : v6 && isIPv6(v6[1]!) ? v6[1]! : undefined;
  const port = Number((v4 ?? v6)?.[2]);
  if (ip === undefined) return err(`:authority "${authority}" is not <ip>:<port> (IPv6 in brackets)`);
  if (!(port >= 1 && port <= 65535)) return err(`:authority "${authority}": port must be 1-65535`);
  return ok({ ip: canonicalIp(ip), port });
}

export function formatAuthority(target: TunnelTarget): string {
  return formatAddr(target.ip, target.port);
}

/** Minimal packet builders for BPF_PROG_TEST_RUN: Ethernet + IPv4/IPv6 + TCP/UDP. */
import { ipBytes } from '../../agent/core/ip';

export interface TcpFlags { syn?: boolean; ack?: boolean; fin?: boolean; rst?: boolean; psh?: boolean }

function eth(type: number): Buffer {
  const b = Buffer.alloc(14);
  b.set([2, 0, 0, 0, 0, 1], 0);
  b.set([2, 0, 0, 0, 0, 2], 6);
  b.writeUInt16BE(type, 12);
  return b;
}

export function tcpHeader(flags: TcpFlags, sport = 40000, dport = 8080): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(sport, 0);
  b.writeUInt16BE(dport, 2);
  b.writeUInt32BE(1, 4);
  b[12] = 5 << 4;
  b[13] = (flags.fin ? 1 : 0) | (flags.syn ? 2 : 0) | (flags.rst ? 4 : 0) | (flags.psh ? 8 : 0) | (flags.ack ? 16 : 0);
  b.writeUInt16BE(65535, 14);
  return b;
}

export function ipv4(proto: number, l4: Buffer, opts: { fragOffset?: number } = {}): Buffer {
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + l4.length, 2);
  ip.writeUInt16BE(opts.fragOffset ?? 0, 6);
  ip[8] = 64;
  ip[9] = proto;
  ipBytes('10.244.2.1').copy(ip, 12);
  ipBytes('10.244.1.1').copy(ip, 16);
  return Buffer.concat([eth(0x0800), ip, l4]);
}

export function ipv6(nextHeader: number, l4: Buffer): Buffer {
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(l4.length, 4);
  ip[6] = nextHeader;
  ip[7] = 64;
  ipBytes('fd00:244:2::1').copy(ip, 8);
  ipBytes('fd00:244:1::1').copy(ip, 24);
  return Buffer.concat([eth(0x86dd), ip, l4]);
}

export const tcp4 = (flags: TcpFlags, payload = Buffer.alloc(0)) => ipv4(6, Buffer.concat([tcpHeader(flags), payload]));
export const tcp6 = (flags: TcpFlags, payload = Buffer.alloc(0)) => ipv6(6, Buffer.concat([tcpHeader(flags), payload]));
export const udp4 = () => ipv4(17, Buffer.from([0x9c, 0x40, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]));

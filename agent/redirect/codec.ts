/**
 * Encoders and decoders for the kernel maps, from the layouts generated out of bpf/weft_maps.h.
 * Pure: bytes in, values out.
 */
import { weft_config, weft_flow, weft_orig, weft_pod } from '../core/bpf-layout.generated';
import { Family, familyOf, formatIp, ipBytes } from '../core/ip';

const AF_INET = 2;
const AF_INET6 = 10;

export interface NodeDatapathConfig {
  proxyIp4: string | null;
  proxyIp6: string | null;
  outboundPort: number;
  proxyCgroupId: bigint;
}

/** A captured connection as the client's socket sees it (client → node proxy). */
export interface Flow { family: Family; srcIp: string; srcPort: number; dstIp: string; dstPort: number }

/** What the kernel recorded when it steered a connect: the original destination and the pod's cgroup. */
export interface OrigDst { family: Family; ip: string; port: number; cgroupId: bigint }

const toAf = (family: Family) => (family === 4 ? AF_INET : AF_INET6);

function writeAddr(buf: Buffer, offset: number, ip: string): void {
  ipBytes(ip).copy(buf, offset);
}

export function encodeConfig(c: NodeDatapathConfig): Buffer {
  const b = Buffer.alloc(weft_config.size);
  const fl = weft_config.fields;
  if (c.proxyIp4) writeAddr(b, fl.proxy_ip4.offset, c.proxyIp4);
  if (c.proxyIp6) writeAddr(b, fl.proxy_ip6.offset, c.proxyIp6);
  b.writeUInt16LE(c.outboundPort, fl.outbound_port.offset);
  b.writeBigUInt64LE(c.proxyCgroupId, fl.proxy_cgroup_id.offset);
  return b;
}

export function decodeConfig(b: Buffer): NodeDatapathConfig {
  const fl = weft_config.fields;
  const v4 = b.subarray(fl.proxy_ip4.offset, fl.proxy_ip4.offset + 4);
  const v6 = b.subarray(fl.proxy_ip6.offset, fl.proxy_ip6.offset + 16);
  return {
    proxyIp4: v4.every((x) => x === 0) ? null : formatIp(v4, 4),
    proxyIp6: v6.every((x) => x === 0) ? null : formatIp(v6, 6),
    outboundPort: b.readUInt16LE(fl.outbound_port.offset),
    proxyCgroupId: b.readBigUInt64LE(fl.proxy_cgroup_id.offset),
  };
}

export function encodeCgroupKey(id: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(id);
  return b;
}

export function decodeCgroupKey(b: Buffer): bigint {
  return b.readBigUInt64LE(0);
}

export function encodePod(flags = 0): Buffer {
  const b = Buffer.alloc(weft_pod.size);
  b.writeUInt32LE(flags, weft_pod.fields.flags.offset);
  return b;
}

export function encodeFlow(flow: Flow): Buffer {
  const b = Buffer.alloc(weft_flow.size);
  const fl = weft_flow.fields;
  writeAddr(b, fl.saddr.offset, flow.srcIp);
  writeAddr(b, fl.daddr.offset, flow.dstIp);
  b.writeUInt16LE(flow.srcPort, fl.sport.offset);
  b.writeUInt16LE(flow.dstPort, fl.dport.offset);
  b.writeUInt8(toAf(flow.family), fl.family.offset);
  return b;
}

export function flowFromAddresses(srcIp: string, srcPort: number, dstIp: string, dstPort: number): Flow {
  return { family: familyOf(srcIp), srcIp, srcPort, dstIp, dstPort };
}

export function decodeOrig(b: Buffer): OrigDst {
  const fl = weft_orig.fields;
  const af = b.readUInt8(fl.family.offset);
  if (af !== AF_INET && af !== AF_INET6) throw new Error(`weft_orig: unknown address family ${af}`);
  const family: Family = af === AF_INET ? 4 : 6;
  const addr = b.subarray(fl.addr.offset, fl.addr.offset + (family === 4 ? 4 : 16));
  return {
    family,
    ip: formatIp(addr, family),
    port: b.readUInt16LE(fl.port.offset),
    cgroupId: b.readBigUInt64LE(fl.cgroup_id.offset),
  };
}

export const ORIG_SIZE = weft_orig.size;

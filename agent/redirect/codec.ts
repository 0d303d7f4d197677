/**
 * Encoders and decoders for the kernel maps, from the layouts generated out of bpf/weft_maps.h.
 * Pure: bytes in, values out.
 */
import { weft_capture, weft_capture_route, weft_config, weft_flow, weft_ip, weft_orig, weft_pod } from '../core/bpf-layout.generated';
import { Family, familyOf, formatIp, writeIpBytes } from '../core/ip';
import { CAPTURE, INBOUND_PLAINTEXT_PORT, type CaptureRoute } from './capture-routing';

const AF_INET = 2;
const AF_INET6 = 10;

export interface NodeDatapathConfig {
  proxyIp4: string | null;
  proxyIp6: string | null;
  outboundPort: number;
  proxyCgroupId: bigint;
  /** the transparent listener captured inbound SYNs go to; default INBOUND_PLAINTEXT_PORT (15006) */
  inboundPlaintextPort?: number;
  /** the fwmark captured packets get; default CAPTURE.mark */
  captureMark?: number;
  /** the ports captured connects are spread over (docs/capture-ports.md); absent: `outboundPort` alone */
  capturePorts?: CapturePorts;
}

/** `count` consecutive ports from `base`: no socket listens there; the sk_lookup program hands their SYNs to the outbound port's listeners. */
export interface CapturePorts { base: number; count: number }

/** A captured connection as the client's socket sees it (client → node proxy). */
export interface Flow { family: Family; srcIp: string; srcPort: number; dstIp: string; dstPort: number }

/** What the kernel recorded when it steered a connect: the original destination and the pod's cgroup. */
export interface OrigDst { family: Family; ip: string; port: number; cgroupId: bigint }

const toAf = (family: Family) => (family === 4 ? AF_INET : AF_INET6);

function writeAddr(buf: Buffer, offset: number, ip: string): void {
  writeIpBytes(ip, buf, offset);
}

export function encodeConfig(c: NodeDatapathConfig): Buffer {
  const b = Buffer.alloc(weft_config.size);
  const fl = weft_config.fields;
  if (c.proxyIp4) writeAddr(b, fl.proxy_ip4.offset, c.proxyIp4);
  if (c.proxyIp6) writeAddr(b, fl.proxy_ip6.offset, c.proxyIp6);
  b.writeUInt16LE(c.outboundPort, fl.outbound_port.offset);
  b.writeUInt16LE(c.inboundPlaintextPort ?? INBOUND_PLAINTEXT_PORT, fl.inbound_plaintext_port.offset);
  b.writeUInt32LE(c.captureMark ?? CAPTURE.mark, fl.capture_mark.offset);
  if (c.capturePorts) {
    b.writeUInt16LE(c.capturePorts.base, fl.capture_port_base.offset);
    b.writeUInt16LE(c.capturePorts.count, fl.capture_port_count.offset);
  }
  b.writeBigUInt64LE(c.proxyCgroupId, fl.proxy_cgroup_id.offset);
  return b;
}

export function decodeConfig(b: Buffer): NodeDatapathConfig {
  const fl = weft_config.fields;
  const v4 = b.subarray(fl.proxy_ip4.offset, fl.proxy_ip4.offset + 4);
  const v6 = b.subarray(fl.proxy_ip6.offset, fl.proxy_ip6.offset + 16);
  const count = b.readUInt16LE(fl.capture_port_count.offset);
  return {
    proxyIp4: v4.every((x) => x === 0) ? null : formatIp(v4, 4),
    proxyIp6: v6.every((x) => x === 0) ? null : formatIp(v6, 6),
    outboundPort: b.readUInt16LE(fl.outbound_port.offset),
    proxyCgroupId: b.readBigUInt64LE(fl.proxy_cgroup_id.offset),
    inboundPlaintextPort: b.readUInt16LE(fl.inbound_plaintext_port.offset),
    captureMark: b.readUInt32LE(fl.capture_mark.offset),
    ...(count > 0 ? { capturePorts: { base: b.readUInt16LE(fl.capture_port_base.offset), count } } : {}),
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

/** Key of weft_capture: one pod address (IPv4 in addr[0], IPv6 in all four words, network order). */
export function encodeIpKey(ip: string): Buffer {
  const b = Buffer.alloc(weft_ip.size);
  writeAddr(b, weft_ip.fields.addr.offset, ip);
  b.writeUInt8(toAf(familyOf(ip)), weft_ip.fields.family.offset);
  return b;
}

export function decodeIpKey(b: Buffer): string {
  const af = b.readUInt8(weft_ip.fields.family.offset);
  if (af !== AF_INET && af !== AF_INET6) throw new Error(`weft_ip: unknown address family ${af}`);
  const family: Family = af === AF_INET ? 4 : 6;
  const o = weft_ip.fields.addr.offset;
  return formatIp(b.subarray(o, o + (family === 4 ? 4 : 16)), family);
}

export const IP_KEY_SIZE = weft_ip.size;

export function encodeCapture(flags = 0): Buffer {
  const b = Buffer.alloc(weft_capture.size);
  b.writeUInt32LE(flags, weft_capture.fields.flags.offset);
  return b;
}

export function encodeCaptureRoute(r: CaptureRoute): Buffer {
  const b = Buffer.alloc(weft_capture_route.size);
  const fl = weft_capture_route.fields;
  b.writeBigUInt64LE(r.netnsIno, fl.netns_ino.offset);
  b.writeUInt32LE(r.mark, fl.mark.offset);
  b.writeUInt32LE(r.table, fl.table.offset);
  b.writeUInt32LE(r.priority, fl.priority.offset);
  return b;
}

/** null for an entry never written (all zero). */
export function decodeCaptureRoute(b: Buffer): CaptureRoute | null {
  const fl = weft_capture_route.fields;
  const r = { netnsIno: b.readBigUInt64LE(fl.netns_ino.offset), mark: b.readUInt32LE(fl.mark.offset),
    table: b.readUInt32LE(fl.table.offset), priority: b.readUInt32LE(fl.priority.offset) };
  return r.netnsIno === 0n ? null : r;
}

export const CAPTURE_ROUTE_SIZE = weft_capture_route.size;

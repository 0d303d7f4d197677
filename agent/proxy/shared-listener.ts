/**
 * Listeners a successor agent can share (docs/upgrade.md). Every port of the node proxy (15000,
 * 15001, 15006, 15008, 15020, 15021) is opened with SO_REUSEPORT, so during an upgrade the old and
 * the new agent listen at once and the kernel spreads new connections over both; the old one then
 * closes its listeners and drains what it holds. Node 20's `net` cannot set SO_REUSEPORT, so the
 * socket is made through libc (native/libc.ts), bound and listening there, and handed to Node by
 * file descriptor, as transparent-socket.ts does for IP_TRANSPARENT.
 *
 * loadMigrateProgram() loads bpf/weft_reuseport.o, an SK_REUSEPORT program of attach type
 * SELECT_OR_MIGRATE, attached to each group: new connections go to the newest agent's listener
 * (each listener is put in the node's pinned weft_listeners map under its port's slot), and the
 * connections queued in a closing listener (accepted by the kernel, not yet by the process, or
 * still in the handshake) are moved to it instead of being reset.
 */
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import * as bpf from '../../native/libbpf';
import * as libc from '../../native/libc';
import { familyOf, formatAddr, ipBytes } from '../core/ip';
import { explainSocketError, type SocketError } from '../core/socket-error';

export const MIGRATE_OBJECT = 'weft_reuseport.o';
const MIGRATE_PROGRAM = 'weft_reuseport_migrate';
const LISTENERS_MAP = 'weft_listeners';
const BACKLOG = 511;
/** bpf/weft_reuseport.c: ports with a slot in weft_listeners (two each: IPv4, IPv6) */
const PORT_BASE = 15000;
const PORT_SLOTS = 64;

/** The slot of weft_listeners a listener on `port` takes (IPv6 sockets the odd one), or undefined: not steered. Pure. */
export function listenerSlot(port: number, family: 4 | 6): number | undefined {
  if (!Number.isInteger(port) || port < PORT_BASE || port >= PORT_BASE + PORT_SLOTS) return undefined;
  return ((port - PORT_BASE) << 1) | (family === 6 ? 1 : 0);
}

export interface SharedListenSpec {
  /** '0.0.0.0', '::' or a single address */
  host: string;
  port: number;
  /** an IPv6 host serves IPv6 only (IPV6_V6ONLY), so '0.0.0.0' and '::' can hold the same port; default false (dual-stack) */
  ipv6Only?: boolean;
  /** IP(V6)_TRANSPARENT: the listener takes connections the kernel assigned to it for any address (inbound capture) */
  transparent?: boolean;
  backlog?: number;
  /** false: not put in weft_listeners (a capture-port anchor: the kernel picks another socket of its group); default true */
  steered?: boolean;
}

let migrate: { obj: bpf.ObjectHandle; fd: number; listeners: number | undefined } | undefined;

/**
 * Loads the migrate program from `bpfDir` once per process; every shared listener opened after
 * this attaches it to its group (replacing the predecessor's copy) and takes its port's slot in
 * the weft_listeners map pinned under `pinRoot` (the node's: every agent of the node shares it).
 * Without a pin root the map is this process's own. Idempotent.
 */
export function loadMigrateProgram(bpfDir: string, pinRoot: string | null = null): void {
  if (migrate) return;
  const path = join(bpfDir, MIGRATE_OBJECT);
  if (pinRoot !== null) mkdirSync(pinRoot, { recursive: true });
  const obj = bpf.openObject(path, pinRoot);
  try {
    bpf.loadObject(obj);
    const fd = bpf.programFds(obj).get(MIGRATE_PROGRAM);
    if (fd === undefined) throw new Error(`${path} has no program ${MIGRATE_PROGRAM}; rebuild (node scripts/build.mjs)`);
    migrate = { obj, fd, listeners: bpf.mapFds(obj).get(LISTENERS_MAP) };
  } catch (e) {
    bpf.closeObject(obj);
    throw new Error(`loading the listener migrate program failed: ${(e as Error).message}. Without it an agent upgrade resets connections queued in the old agent's listeners`, { cause: e });
  }
}

/** Whether listeners get the migrate program (for /redirect and the upgrade test). */
export function migrateProgramLoaded(): boolean {
  return migrate !== undefined;
}

const ADVICE: Readonly<Record<string, string>> = {
  EADDRINUSE: 'another socket holds this port without SO_REUSEPORT (an agent of an older version, or another program; `ss -tlnp` shows which)',
  EACCES: 'binding needs privileges the agent lacks',
  EPERM: 'IP_TRANSPARENT needs CAP_NET_ADMIN: run the agent as root or grant it NET_ADMIN',
  EADDRNOTAVAIL: 'the address is not on this host',
};

function explain(e: unknown, where: string): SocketError {
  return explainSocketError(e, where, ADVICE);
}

/** A listening TCP socket with SO_REUSEPORT (and the migrate program, when loaded); its fd. */
export function sharedListenerFd(spec: SharedListenSpec): number {
  const where = `listener on ${formatAddr(spec.host, spec.port)}`;
  const family = familyOf(spec.host);
  let fd: number;
  try {
    fd = libc.tcpSocket(family);
  } catch (e) {
    throw explain(e, where);
  }
  try {
    libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_REUSEADDR, 1, 'SO_REUSEADDR');
    libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_REUSEPORT, 1, 'SO_REUSEPORT');
    if (family === 6) libc.setsockoptInt(fd, libc.SOL_IPV6, libc.IPV6_V6ONLY, spec.ipv6Only ? 1 : 0, 'IPV6_V6ONLY');
    if (spec.transparent) {
      if (family === 4) libc.setsockoptInt(fd, libc.SOL_IP, libc.IP_TRANSPARENT, 1, 'IP_TRANSPARENT');
      else libc.setsockoptInt(fd, libc.SOL_IPV6, libc.IPV6_TRANSPARENT, 1, 'IPV6_TRANSPARENT');
    }
    libc.bind(fd, ipBytes(spec.host), spec.port, formatAddr(spec.host, spec.port));
    libc.listen(fd, spec.backlog ?? BACKLOG, formatAddr(spec.host, spec.port));
    // After bind the socket is in its port's group: attaching replaces the group's program.
    if (migrate) libc.setsockoptInt(fd, libc.SOL_SOCKET, libc.SO_ATTACH_REUSEPORT_EBPF, migrate.fd, 'SO_ATTACH_REUSEPORT_EBPF');
    // Newest wins: from now on new connections to this port come here (the kernel drops the entry when the socket closes).
    const slot = spec.steered === false ? undefined : listenerSlot(spec.port, family);
    if (migrate?.listeners !== undefined && slot !== undefined) {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(slot);
      const value = Buffer.alloc(8);
      value.writeBigUInt64LE(BigInt(fd));
      bpf.mapUpdate(migrate.listeners, key, value);
    }
    return fd;
  } catch (e) {
    libc.close(fd);
    throw explain(e, where);
  }
}

/** Makes `server` listen on a shared socket for `spec`; resolves to its fd, rejects with an error naming the address. */
export async function listenShared(server: net.Server, spec: SharedListenSpec): Promise<number> {
  const fd = sharedListenerFd(spec);
  await new Promise<void>((resolve, reject) => {
    const fail = (e: Error) => { libc.close(fd); reject(explain(e, `listener on ${formatAddr(spec.host, spec.port)}`)); };
    server.once('error', fail);
    server.listen({ fd, backlog: spec.backlog ?? BACKLOG }, () => { server.off('error', fail); resolve(); });
  });
  return fd;
}

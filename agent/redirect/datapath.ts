/**
 * The kernel side of one node's redirection: loads bpf/*.o with maps pinned under the node's pin
 * root, attaches the socket programs to the node's cgroup subtree as pinned bpf_links, and keeps
 * a pinned tcx link per STRICT pod interface (egress) and per inbound-capture interface (ingress).
 * Attaching is idempotent across agent restarts: a pinned link is adopted and its program replaced
 * in place (bpf_link_update), never attached twice.
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import * as bpf from '../../native/libbpf';
import { cgroupId } from './cgroup';
import { ensureBpffs, pinRootFor } from './bpffs';
import { CAPTURE_ROUTE_SIZE, decodeCaptureRoute } from './codec';
import { ownNetnsIno, removeCaptureRouting } from './capture-routing';

const BPF_TCX_INGRESS = 46;
const BPF_TCX_EGRESS = 47;
const BPF_SK_LOOKUP = 36;

/** Socket programs of weft_sock.o, each attached once to the node's cgroup subtree. */
export const SOCK_PROGRAMS = ['weft_connect4', 'weft_connect6', 'weft_sockops', 'weft_getsockopt',
  'weft_getpeername4', 'weft_getpeername6'] as const;
/** weft_sock.o's sk_lookup program (the capture ports), attached once to the agent's network namespace. */
export const LOOKUP_PROGRAM = 'weft_capture_lookup';
export const TC_PROGRAM = 'weft_strict_egress';
export const CAPTURE_PROGRAM = 'weft_capture_ingress';

/** One kind of per-interface tcx link: its program, direction and pin directory. */
interface TcxKind { program: string; attachType: number; dir: string; label: string }
const STRICT_TCX: TcxKind = { program: TC_PROGRAM, attachType: BPF_TCX_EGRESS, dir: 'tc', label: 'tcx egress' };
const CAPTURE_TCX: TcxKind = { program: CAPTURE_PROGRAM, attachType: BPF_TCX_INGRESS, dir: 'ingress', label: 'tcx ingress' };

export interface LinkInfo { id: number; progId: number; cgroupId: bigint; ifindex: number }

export function linkInfo(fd: number, subject: string): LinkInfo {
  const b = bpf.objInfo(fd, subject);
  // struct bpf_link_info: type, id, prog_id, then a union at offset 16 (cgroup: u64 id; tcx: u32 ifindex)
  return { id: b.readUInt32LE(4), progId: b.readUInt32LE(8), cgroupId: b.readBigUInt64LE(16), ifindex: b.readUInt32LE(16) };
}

function withFd<T>(path: string, fn: (fd: number) => T): T {
  const fd = bpf.objGet(path);
  try { return fn(fd); } finally { closeSync(fd); }
}

export class Datapath {
  readonly pinRoot: string;
  private readonly objects: bpf.ObjectHandle[] = [];
  private readonly progs = new Map<string, number>();
  private readonly maps = new Map<string, number>();
  /** `<dir>/<ifindex>` links this process has already switched to its freshly loaded program */
  private readonly refreshedTcx = new Set<string>();

  private constructor(readonly node: string, pinRoot: string) {
    this.pinRoot = pinRoot;
  }

  /** Loads the programs (reusing pinned maps) for `node`. `bpfDir` holds the compiled objects. */
  static load(node: string, bpfDir: string): Datapath {
    ensureBpffs();
    const dp = new Datapath(node, pinRootFor(node));
    mkdirSync(join(dp.pinRoot, 'links'), { recursive: true });
    mkdirSync(join(dp.pinRoot, STRICT_TCX.dir), { recursive: true });
    mkdirSync(join(dp.pinRoot, CAPTURE_TCX.dir), { recursive: true });
    try {
      for (const file of ['weft_sock.o', 'weft_tc.o', 'weft_ingress.o']) {
        const obj = bpf.openObject(join(bpfDir, file), dp.pinRoot);
        dp.objects.push(obj);
        try {
          bpf.loadObject(obj);
        } catch (e) {
          throw new Error(`loading ${file} failed: ${(e as Error).message}. If pinned maps of an older ` +
            `layout exist under ${dp.pinRoot}, run 'weft uninstall --node ${node}' first`);
        }
        for (const [k, v] of bpf.programFds(obj)) dp.progs.set(k, v);
        for (const [k, v] of bpf.mapFds(obj)) dp.maps.set(k, v);
      }
    } catch (e) {
      dp.close();
      throw e;
    }
    return dp;
  }

  mapFd(name: string): number {
    const fd = this.maps.get(name);
    if (fd === undefined) throw new Error(`map ${name} is not in the loaded objects`);
    return fd;
  }

  progFd(name: string): number {
    const fd = this.progs.get(name);
    if (fd === undefined) throw new Error(`program ${name} is not in the loaded objects`);
    return fd;
  }

  /**
   * Attaches every socket program to `cgroupPath` (the node's pod subtree). Pinned links that
   * already target this cgroup are adopted and switched to the freshly loaded program.
   * Returns how many links were adopted and how many created.
   */
  attachSockPrograms(cgroupPath: string): { adopted: number; created: number } {
    const target = cgroupId(cgroupPath);
    const sockObj = this.objects[0]!;
    let adopted = 0, created = 0;
    const cgFd = openSync(cgroupPath, 'r');
    try {
      for (const prog of SOCK_PROGRAMS) {
        const pin = join(this.pinRoot, 'links', prog);
        if (existsSync(pin)) {
          const kept = withFd(pin, (fd) => {
            if (linkInfo(fd, pin).cgroupId !== target) return false;
            bpf.linkUpdate(fd, this.progFd(prog), pin);
            return true;
          });
          if (kept) { adopted++; continue; }
          unlinkSync(pin); // attached elsewhere (another cgroup root): detach and attach anew
        }
        bpf.attachCgroupPinned(sockObj, prog, cgFd, pin);
        created++;
      }
    } finally {
      closeSync(cgFd);
    }
    return { adopted, created };
  }

  /**
   * Attaches the capture ports' sk_lookup program to this process's network namespace (the node's,
   * where the proxy listens) as a pinned link; a pinned link for this namespace is adopted and
   * switched to the freshly loaded program, one for another namespace replaced.
   */
  attachCaptureLookup(): 'adopted' | 'created' {
    const pin = join(this.pinRoot, 'links', LOOKUP_PROGRAM);
    const ino = Number(ownNetnsIno());
    if (existsSync(pin)) {
      // struct bpf_link_info's netns member: netns_ino (u32) where linkInfo() reads an ifindex
      const kept = withFd(pin, (fd) => {
        if (linkInfo(fd, pin).ifindex !== ino) return false;
        bpf.linkUpdate(fd, this.progFd(LOOKUP_PROGRAM), pin);
        return true;
      });
      if (kept) return 'adopted';
      unlinkSync(pin);
    }
    const netns = openSync('/proc/self/ns/net', 'r');
    try {
      const fd = bpf.linkCreate(this.progFd(LOOKUP_PROGRAM), netns, BPF_SK_LOOKUP, `${LOOKUP_PROGRAM} on this network namespace`);
      try { bpf.objPin(fd, pin); } finally { closeSync(fd); }
    } finally {
      closeSync(netns);
    }
    return 'created';
  }

  /**
   * Makes `fd` (a listener in the outbound port's reuseport group, not in weft_listeners) the anchor
   * the capture ports' SYNs of its family are handed to (bpf/weft_sock.c weft_capture_lookup).
   * Replaces a predecessor's; the kernel drops the entry when the socket closes.
   */
  setCaptureAnchor(family: 4 | 6, fd: number): void {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(family === 4 ? 0 : 1);
    const value = Buffer.alloc(8);
    value.writeBigUInt64LE(BigInt(fd));
    bpf.mapUpdate(this.mapFd('weft_capture_anchor'), key, value);
  }

  /** Makes the set of STRICT interfaces exactly `ifindexes`: one pinned tcx egress link each. */
  syncStrictInterfaces(ifindexes: Iterable<number>): { attached: number[]; detached: number[] } {
    return this.syncTcx(STRICT_TCX, ifindexes);
  }

  /** Makes the set of inbound-capture interfaces exactly `ifindexes`: one pinned tcx ingress link each. */
  syncCaptureInterfaces(ifindexes: Iterable<number>): { attached: number[]; detached: number[] } {
    return this.syncTcx(CAPTURE_TCX, ifindexes);
  }

  /**
   * One pinned link per interface, named by ifindex under `kind.dir`. A pinned link whose interface
   * is gone (the kernel detached it: its ifindex reads 0) is unpinned; one no longer wanted is
   * detached, then unpinned; a live wanted one is adopted and switched to this process's program once.
   */
  private syncTcx(kind: TcxKind, ifindexes: Iterable<number>): { attached: number[]; detached: number[] } {
    const want = new Set(ifindexes);
    const dir = join(this.pinRoot, kind.dir);
    const attached: number[] = [], detached: number[] = [];
    for (const name of readdirSync(dir)) {
      const ifindex = Number(name);
      const pin = join(dir, name);
      const key = `${kind.dir}/${ifindex}`;
      const live = withFd(pin, (fd) => linkInfo(fd, pin).ifindex === ifindex);
      if (live && want.has(ifindex)) {
        if (!this.refreshedTcx.has(key)) {
          withFd(pin, (fd) => bpf.linkUpdate(fd, this.progFd(kind.program), pin));
          this.refreshedTcx.add(key);
        }
        want.delete(ifindex);
        continue;
      }
      // Detached now, not when the kernel gets round to the unpinned link's last put: the same
      // program attached to the same interface meanwhile (a pod enrolled again at once) got EEXIST
      // (tcx-relink.test.ts). Unpinning detaches it too, later, so a failed detach is not fatal.
      if (live) {
        try { withFd(pin, (fd) => bpf.linkDetach(fd, pin)); } catch { /* detached by the unpin below */ }
      }
      unlinkSync(pin);
      this.refreshedTcx.delete(key);
      detached.push(ifindex);
    }
    for (const ifindex of want) {
      const pin = join(dir, String(ifindex));
      const fd = bpf.linkCreate(this.progFd(kind.program), ifindex, kind.attachType, `${kind.label} ifindex ${ifindex}`);
      try { bpf.objPin(fd, pin); } finally { closeSync(fd); }
      this.refreshedTcx.add(`${kind.dir}/${ifindex}`);
      attached.push(ifindex);
    }
    return { attached, detached };
  }

  /** Releases this process's handles; pinned state stays in the kernel (fail closed while away). */
  close(): void {
    for (const obj of this.objects.splice(0)) bpf.closeObject(obj);
    this.progs.clear();
    this.maps.clear();
  }
}

/**
 * Removes every pin Weft made for `node` (links detach, maps and programs go with the last
 * reference), and the inbound-capture rule and routes from the network namespace the pinned
 * weft_capture_route record names. Returns what was removed.
 */
export function uninstallNode(node: string): string[] {
  const root = pinRootFor(node);
  const removed: string[] = [];
  const routePin = join(root, 'weft_capture_route');
  if (existsSync(routePin)) {
    const record = withFd(routePin, (fd) => bpf.mapLookup(fd, Buffer.alloc(4), CAPTURE_ROUTE_SIZE));
    const route = record && decodeCaptureRoute(record);
    if (route) removed.push(...removeCaptureRouting(route));
  }
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, entry.name);
      if (entry.isDirectory()) walk(p); else { unlinkSync(p); removed.push(p); }
    }
    rmdirSync(dir);
  };
  walk(root);
  const parent = join(root, '..');
  if (existsSync(parent) && readdirSync(parent).length === 0) rmdirSync(parent);
  return removed;
}

/** Node names that have pinned state on this machine. */
export function installedNodes(): string[] {
  const dir = join(pinRootFor('x'), '..');
  return existsSync(dir) ? readdirSync(dir) : [];
}

/**
 * The kernel side of same-node splicing (bpf/weft_splice.c): loads the stream verdict program,
 * attaches it to the weft_splice_active sockhash, and enters and forgets the two sockets of a
 * spliced connection. Nothing is pinned: a spliced connection is made of this process's own
 * sockets and ends with it, so the maps and the program go when the process closes them (or
 * exits); no other agent, and no restart, ever finds them (docs/splice.md).
 */
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import * as bpf from '../../native/libbpf';
import * as libc from '../../native/libc';
import { weft_splice_config, weft_splice_counter, weft_splice_flow, weft_splice_listen, weft_splice_peer, weft_splice_tuple } from '../core/bpf-layout.generated';
import { familyOf, writeIpBytes } from '../core/ip';
import type { CapturePorts } from '../redirect/codec';

export const SPLICE_OBJECT = 'weft_splice.o';
export const SPLICE_PROGRAM = 'weft_splice_verdict';
const SOCKOPS_PROGRAM = 'weft_splice_sockops';
const MSG_PROGRAM = 'weft_splice_msg';
const BPF_CGROUP_SOCK_OPS = 3;
const BPF_SK_MSG_VERDICT = 7;
const AF_INET = 2;
const AF_INET6 = 10;

/**
 * A pod socket's own 4-tuple as the kernel keys it (struct weft_splice_tuple): its local end first.
 * For the client, that is the proxy's accepted socket seen from the other end; for the server, the
 * proxy's upstream socket seen from the other end.
 */
export function podTuple(localIp: string, localPort: number, remoteIp: string, remotePort: number): Buffer {
  const k = Buffer.alloc(weft_splice_tuple.size);
  writeIpBytes(localIp, k, weft_splice_tuple.fields.local.offset);
  writeIpBytes(remoteIp, k, weft_splice_tuple.fields.remote.offset);
  k.writeUInt16LE(localPort, weft_splice_tuple.fields.local_port.offset);
  k.writeUInt16LE(remotePort, weft_splice_tuple.fields.remote_port.offset);
  k.writeUInt32LE(familyOf(localIp) === 4 ? AF_INET : AF_INET6, weft_splice_tuple.fields.family.offset);
  return k;
}

function listenKey(ip: string, port: number): Buffer {
  const k = Buffer.alloc(weft_splice_listen.size);
  writeIpBytes(ip, k, weft_splice_listen.fields.addr.offset);
  k.writeUInt32LE(port, weft_splice_listen.fields.port.offset);
  k.writeUInt32LE(familyOf(ip) === 4 ? AF_INET : AF_INET6, weft_splice_listen.fields.family.offset);
  return k;
}

/** Where the pods' own sockets are found: the cgroup subtree of the capture, and the ports captured connections reach. */
export interface PodSockets {
  cgroupRoot: string;
  outboundPort: number;
  /** the proxy's other capture ports (docs/capture-ports.md) */
  capturePorts?: CapturePorts;
}

/** One socket of a spliced pair: its fd (for sockhash updates) and cookie (its key everywhere). */
export interface SpliceEnd { fd: number; cookie: bigint }

const cookieKey = (cookie: bigint): Buffer => {
  const k = Buffer.alloc(8);
  k.writeBigUInt64LE(cookie);
  return k;
};

export function encodePeer(peerCookie: bigint, bytes = 0n): Buffer {
  const v = Buffer.alloc(weft_splice_peer.size);
  v.writeBigUInt64LE(peerCookie, weft_splice_peer.fields.peer_cookie.offset);
  v.writeBigUInt64LE(bytes, weft_splice_peer.fields.bytes.offset);
  return v;
}

function encodeFlow(targetCookie: bigint): Buffer {
  const v = Buffer.alloc(weft_splice_flow.size);
  v.writeBigUInt64LE(targetCookie, weft_splice_flow.fields.target_cookie.offset);
  return v;
}

export function decodePeer(v: Buffer): { peerCookie: bigint; bytes: bigint } {
  return { peerCookie: v.readBigUInt64LE(weft_splice_peer.fields.peer_cookie.offset), bytes: v.readBigUInt64LE(weft_splice_peer.fields.bytes.offset) };
}

export class SpliceKernel {
  private closed = false;

  /** sockops link fd, when the pods' side is on */
  private link: number | undefined;
  private pods: PodSockets | undefined;
  private clientsEntered = false;
  /** bytes of spliced connections the kernel carried, exactly (noteMoved) */
  private movedTotal = 0n;
  /** connections the spin watchdog handed back to the relay (noteSpinHandover) */
  private handovers = 0;
  /** users of each announced pod address (weft_splice_expect) */
  private readonly expecting = new Map<string, number>();

  private constructor(
    private readonly obj: bpf.ObjectHandle,
    private readonly socks: number,
    private readonly active: number,
    private readonly peers: number,
    private readonly counterFd: number,
    private readonly fds: Map<string, number>,
  ) {}

  private map(name: string): number {
    const fd = this.fds.get(name);
    if (fd === undefined) throw new Error(`${SPLICE_OBJECT} has no map ${name}: rebuild (node scripts/build.mjs)`);
    return fd;
  }

  /**
   * Loads bpf/weft_splice.c's object from `bpfDir`; throws naming what to check. With `pods`, the
   * pods' own sockets are entered too (sockops on `pods.cgroupRoot`, the sk_msg verdict on them),
   * and spliceSockets() splices at their sendmsg() where it can (docs/splice.md); without, or when
   * that part fails to attach (logged by the caller through `onPodsError`), only at the proxy's sockets.
   */
  static load(bpfDir: string, pods?: PodSockets, onPodsError?: (e: Error) => void): SpliceKernel {
    const path = join(bpfDir, SPLICE_OBJECT);
    const obj = bpf.openObject(path, null);
    try {
      bpf.loadObject(obj);
      const maps = bpf.mapFds(obj);
      const prog = bpf.programFds(obj).get(SPLICE_PROGRAM);
      const fd = (name: string): number => {
        const v = maps.get(name);
        if (v === undefined) throw new Error(`${path} has no map ${name}: rebuild (node scripts/build.mjs)`);
        return v;
      };
      if (prog === undefined) throw new Error(`${path} has no program ${SPLICE_PROGRAM}: rebuild (node scripts/build.mjs)`);
      const k = new SpliceKernel(obj, fd('weft_splice_socks'), fd('weft_splice_active'), fd('weft_splice_peers'), fd('weft_splice_counters'), maps);
      bpf.progAttach(prog, k.active, bpf.BPF_SK_SKB_STREAM_VERDICT, `${SPLICE_PROGRAM} to weft_splice_active`);
      if (pods) {
        try {
          k.attachPods(pods, bpf.programFds(obj));
        } catch (e) {
          onPodsError?.(e as Error);
        }
      }
      return k;
    } catch (e) {
      bpf.closeObject(obj);
      throw new Error(`same-node splicing unavailable: loading ${path} failed (${(e as Error).message}); ` +
        'the kernel needs CONFIG_BPF_STREAM_PARSER and CONFIG_NET_SOCK_MSG. Same-node connections are relayed instead');
    }
  }

  /**
   * Splices `a` and `b`: bytes arriving on either leave through the other. Order matters: the
   * peer entries and both redirect targets exist before either socket gets the verdict program,
   * so no skb meets a missing target. Bytes already waiting in a socket's receive queue are
   * handled by the program at the next data_ready (splice.ts kicks it). On failure nothing stays.
   */
  add(a: SpliceEnd, b: SpliceEnd): void {
    try {
      bpf.mapUpdate(this.peers, cookieKey(a.cookie), encodePeer(b.cookie));
      bpf.mapUpdate(this.peers, cookieKey(b.cookie), encodePeer(a.cookie));
      bpf.mapUpdate(this.socks, cookieKey(a.cookie), cookieKey(BigInt(a.fd)));
      bpf.mapUpdate(this.socks, cookieKey(b.cookie), cookieKey(BigInt(b.fd)));
      bpf.mapUpdate(this.active, cookieKey(b.cookie), cookieKey(BigInt(b.fd)));
      bpf.mapUpdate(this.active, cookieKey(a.cookie), cookieKey(BigInt(a.fd)));
    } catch (e) {
      this.forget(a.cookie, b.cookie);
      throw e;
    }
  }

  private attachPods(pods: PodSockets, progs: Map<string, number>): void {
    const sockops = progs.get(SOCKOPS_PROGRAM), msg = progs.get(MSG_PROGRAM);
    if (sockops === undefined || msg === undefined) throw new Error(`${SPLICE_OBJECT} has no ${SOCKOPS_PROGRAM}/${MSG_PROGRAM}: rebuild (node scripts/build.mjs)`);
    this.pods = pods;
    this.writeConfig(true);
    bpf.progAttach(msg, this.map('weft_splice_pods'), BPF_SK_MSG_VERDICT, `${MSG_PROGRAM} to weft_splice_pods`);
    const cg = openSync(pods.cgroupRoot, 'r');
    try {
      this.link = bpf.linkCreate(sockops, cg, BPF_CGROUP_SOCK_OPS, `${SOCKOPS_PROGRAM} on ${pods.cgroupRoot}`);
    } finally {
      closeSync(cg);
    }
  }

  /** The pods' client sockets enter weft_splice_pods only while `on` (the sockops program reads the ports here). */
  private writeConfig(on: boolean): void {
    const pods = this.pods!;
    const config = Buffer.alloc(weft_splice_config.size);
    // outbound_port 0: the sockops program enters no client socket
    config.writeUInt32LE(on ? pods.outboundPort : 0, weft_splice_config.fields.outbound_port.offset);
    if (pods.capturePorts) {
      config.writeUInt16LE(pods.capturePorts.base, weft_splice_config.fields.capture_port_base.offset);
      config.writeUInt16LE(pods.capturePorts.count, weft_splice_config.fields.capture_port_count.offset);
    }
    bpf.mapUpdate(this.map('weft_splice_config'), Buffer.alloc(4), config);
    this.clientsEntered = on;
  }

  /**
   * Whether new client sockets of the pods are entered (ProxyConfig spec.sameNodeSplice): off, no
   * connection is spliced, so none pays for a psock and the sk_msg verdict on every sendmsg().
   * Sockets already entered stay until they close. No-op without the pods' side.
   */
  enterClients(on: boolean): void {
    if (!this.podSide || on === this.clientsEntered) return;
    this.writeConfig(on);
  }

  /** Whether new client sockets are entered now (enterClients). */
  get entersClients(): boolean {
    return this.podSide && this.clientsEntered;
  }

  /** Whether the pods' own sockets are entered (the sockops program is attached). */
  get podSide(): boolean {
    return this.link !== undefined && !this.closed;
  }

  /**
   * Announces that the proxy is connecting to `ip`:`port` for a connection it may splice: the pod
   * socket accepted there enters weft_splice_pods. Returns what withdraws it (call it once the
   * connect has settled: the pod's socket is established by then).
   */
  expect(ip: string, port: number): () => void {
    if (!this.podSide) return () => undefined;
    const id = `${ip}|${port}`;
    const n = this.expecting.get(id) ?? 0;
    if (n === 0) {
      // Failing only costs this connection the pods' side: it is then spliced at the proxy's sockets.
      try {
        bpf.mapUpdate(this.map('weft_splice_expect'), listenKey(ip, port), Buffer.alloc(4));
      } catch {
        return () => undefined;
      }
    }
    this.expecting.set(id, n + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (this.expecting.get(id) ?? 1) - 1;
      if (left > 0) return void this.expecting.set(id, left);
      this.expecting.delete(id);
      if (!this.closed) {
        try {
          bpf.mapDelete(this.map('weft_splice_expect'), listenKey(ip, port));
        } catch {
          // the entry stays: sockets accepted there later enter the sockhash and pass, costing nothing else
        }
      }
    };
  }

  /** Whether the pod socket with this tuple is in weft_splice_pods (entered by sockops, not closed since). */
  hasPodSocket(tuple: Buffer): boolean {
    return this.podSide && bpf.mapLookup(this.map('weft_splice_pods'), tuple, 8) !== null;
  }

  /**
   * Lets the two pod sockets send straight out of the proxy's sockets: the client's (`clientTuple`)
   * out of `up`, the server's out of `down`, once each has nothing older on its way through the
   * proxy. `relayed` is what the proxy has written on of each so far. On failure nothing stays.
   */
  addPods(down: SpliceEnd, up: SpliceEnd, clientTuple: Buffer, serverTuple: Buffer, relayed: { client: number; server: number }): void {
    try {
      this.setRelayed(clientTuple, relayed.client);
      this.setRelayed(serverTuple, relayed.server);
      bpf.mapUpdate(this.socks, cookieKey(down.cookie), cookieKey(BigInt(down.fd)));
      bpf.mapUpdate(this.socks, cookieKey(up.cookie), cookieKey(BigInt(up.fd)));
      bpf.mapUpdate(this.map('weft_splice_flows'), clientTuple, encodeFlow(up.cookie));
      bpf.mapUpdate(this.map('weft_splice_flows'), serverTuple, encodeFlow(down.cookie));
    } catch (e) {
      this.forgetPods(down.cookie, up.cookie, clientTuple, serverTuple);
      throw e;
    }
  }

  /**
   * What the verdict has counted for the pod socket `tuple` since its flow entry was made (addPods(),
   * armServer()): every redirect it decided, a message whose push found no room and was sent again
   * counted again (splice-decision.ts spinning()). 0 without an entry.
   */
  redirectedBy(tuple: Buffer): bigint {
    const v = bpf.mapLookup(this.map('weft_splice_flows'), tuple, weft_splice_flow.size);
    return v === null ? 0n : v.readBigUInt64LE(weft_splice_flow.fields.redirected.offset);
  }

  /**
   * Arms the server pod's socket `serverTuple` before it has sent a byte: its messages leave
   * straight out of the client's accepted socket `down` from its first sendmsg() (the verdict finds
   * no relayed count, which means none yet). A download then never crosses user space. Two map
   * updates; disarmServer() (or addPods() and forgetPods()) ends it. On failure nothing stays.
   */
  armServer(down: SpliceEnd, serverTuple: Buffer): void {
    bpf.mapUpdate(this.socks, cookieKey(down.cookie), cookieKey(BigInt(down.fd)));
    try {
      bpf.mapUpdate(this.map('weft_splice_flows'), serverTuple, encodeFlow(down.cookie));
    } catch (e) {
      try {
        bpf.mapDelete(this.socks, cookieKey(down.cookie));
      } catch {
        // closed meanwhile: it left the sockhash with it
      }
      throw e;
    }
  }

  /**
   * Ends armServer() for a server socket the proxy no longer splices at its sendmsg() (its socket
   * is out of weft_splice_pods, or closed): returns what the verdict redirected, which counts a
   * message twice when its redirect failed and the pod sent it again.
   */
  disarmServer(serverTuple: Buffer): bigint {
    if (this.closed) return 0n;
    const v = bpf.mapLookupAndDelete(this.map('weft_splice_flows'), serverTuple, weft_splice_flow.size);
    return v === null ? 0n : v.readBigUInt64LE(weft_splice_flow.fields.redirected.offset);
  }

  /** Takes pod sockets out of weft_splice_pods: their sendmsg() no longer runs the verdict. */
  dropPodSockets(...tuples: Buffer[]): void {
    if (this.closed) return;
    for (const t of tuples) {
      try {
        bpf.mapDelete(this.map('weft_splice_pods'), t);
      } catch {
        // gone already (closed), or never entered
      }
    }
  }

  /** What the proxy has written on of the pod socket `tuple`'s bytes, in all. */
  setRelayed(tuple: Buffer, bytes: number): void {
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(BigInt(bytes));
    bpf.mapUpdate(this.map('weft_splice_relayed'), tuple, v);
  }

  /**
   * Ends addPods(): the pod sockets send through TCP again (a message already past the verdict is
   * in the proxy socket's send queue). Returns the bytes the verdict redirected from each pod
   * socket. `open` false: the proxy's sockets have closed, and with them left the sockhash.
   */
  forgetPods(downCookie: bigint, upCookie: bigint, clientTuple: Buffer, serverTuple: Buffer, open = true): { client: bigint; server: bigint } {
    if (this.closed) return { client: 0n, server: 0n };
    const take = (t: Buffer): bigint => {
      const v = bpf.mapLookupAndDelete(this.map('weft_splice_flows'), t, weft_splice_flow.size);
      bpf.mapDelete(this.map('weft_splice_relayed'), t);
      return v === null ? 0n : v.readBigUInt64LE(weft_splice_flow.fields.redirected.offset);
    };
    const out = { client: take(clientTuple), server: take(serverTuple) };
    if (open) for (const c of [downCookie, upCookie]) bpf.mapDelete(this.socks, cookieKey(c));
    return out;
  }

  /** Bytes that arrived on the socket `cookie` and were sent out of its peer by the kernel. */
  redirected(cookie: bigint): bigint {
    const v = bpf.mapLookup(this.peers, cookieKey(cookie), weft_splice_peer.size);
    return v === null ? 0n : decodePeer(v).bytes;
  }

  /**
   * Unsplices the pair and returns what the kernel moved from each. A socket leaves both sockhashes
   * by itself when it closes (the kernel unlinks it), so `open` false skips those deletes: a
   * closed pair costs two map calls.
   */
  forget(a: bigint, b: bigint, open = true): { fromA: bigint; fromB: bigint } {
    if (this.closed) return { fromA: 0n, fromB: 0n };
    if (open) {
      for (const c of [a, b]) {
        bpf.mapDelete(this.active, cookieKey(c));
        bpf.mapDelete(this.socks, cookieKey(c));
      }
    }
    const take = (c: bigint): bigint => {
      const v = bpf.mapLookupAndDelete(this.peers, cookieKey(c), weft_splice_peer.size);
      return v === null ? 0n : decodePeer(v).bytes;
    };
    return { fromA: take(a), fromB: take(b) };
  }

  /**
   * Counts bytes of a closed spliced connection that the kernel carried (at the proxy's sockets
   * or at the pods' sendmsg()), as its access-log line counts them. The verdicts' own byte counters
   * are not that: a redirected message whose push found the proxy socket's send buffer full is
   * sent again by the pod, and counted again.
   */
  noteMoved(bytes: bigint): void {
    if (bytes > 0n) this.movedTotal += bytes;
  }

  /** Bytes spliced connections closed so far had carried by the kernel. */
  get moved(): bigint {
    return this.movedTotal;
  }

  /** Counts a connection whose pod spun on a full proxy socket and that the watchdog handed back to the relay. */
  noteSpinHandover(): void {
    this.handovers++;
  }

  /** Connections the spin watchdog has handed back to the relay so far. */
  get spinHandovers(): number {
    return this.handovers;
  }

  /** Spliced sockets right now (two per connection). */
  get sockets(): number {
    return bpf.mapKeys(this.socks, 8).length;
  }

  /** Why the verdict program did what it did, by reason. */
  counters(): Record<string, bigint> {
    const out: Record<string, bigint> = {};
    for (const [name, idx] of Object.entries(weft_splice_counter)) {
      if (name === 'WEFT_SPLICE_CTR_MAX') continue;
      const key = Buffer.alloc(4);
      key.writeUInt32LE(idx);
      const v = bpf.mapLookup(this.counterFd, key, 8);
      out[name.replace('WEFT_SPLICE_', '').toLowerCase()] = v ? v.readBigUInt64LE(0) : 0n;
    }
    return out;
  }

  /** Releases the programs, the sockops link and the maps (sockets still in them are unspliced by the kernel). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.link !== undefined) libc.close(this.link);
    bpf.closeObject(this.obj);
  }
}

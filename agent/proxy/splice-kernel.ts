/**
 * The kernel side of same-node splicing (bpf/weft_splice.c): loads the stream verdict program,
 * attaches it to the weft_splice_active sockhash, and enters and forgets the two sockets of a
 * spliced connection. Nothing is pinned: a spliced connection is made of this process's own
 * sockets and ends with it, so the maps and the program go when the process closes them (or
 * exits); no other agent, and no restart, ever finds them (docs/splice.md).
 */
import { join } from 'node:path';
import * as bpf from '../../native/libbpf';
import { weft_splice_counter, weft_splice_peer } from '../core/bpf-layout.generated';

export const SPLICE_OBJECT = 'weft_splice.o';
export const SPLICE_PROGRAM = 'weft_splice_verdict';

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

export function decodePeer(v: Buffer): { peerCookie: bigint; bytes: bigint } {
  return { peerCookie: v.readBigUInt64LE(weft_splice_peer.fields.peer_cookie.offset), bytes: v.readBigUInt64LE(weft_splice_peer.fields.bytes.offset) };
}

export class SpliceKernel {
  private closed = false;

  private constructor(
    private readonly obj: bpf.ObjectHandle,
    private readonly socks: number,
    private readonly active: number,
    private readonly peers: number,
    private readonly counterFd: number,
  ) {}

  /** Loads bpf/weft_splice.c's object from `bpfDir`; throws naming what to check. */
  static load(bpfDir: string): SpliceKernel {
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
      const k = new SpliceKernel(obj, fd('weft_splice_socks'), fd('weft_splice_active'), fd('weft_splice_peers'), fd('weft_splice_counters'));
      bpf.progAttach(prog, k.active, bpf.BPF_SK_SKB_STREAM_VERDICT, `${SPLICE_PROGRAM} to weft_splice_active`);
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

  /** Releases the program and maps (sockets still in them are unspliced by the kernel). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    bpf.closeObject(this.obj);
  }
}

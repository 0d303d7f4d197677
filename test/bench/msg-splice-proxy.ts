/**
 * The proxy of the sk_msg splicing prototype (msg-splice.ts, bpf/weft_msg_splice.c), run inside a
 * lab node. Both of its ports relay pod A's connections to pod B in user space; on the splice port
 * it also tells the kernel about each connection, after which the pods' own sendmsg() puts their
 * bytes straight out of the proxy's sockets once nothing older is still on its way through it.
 *   plain:  accept -> connect(pod B) -> relay
 *   splice: the same, plus the connection's entries in the weft_msg_* maps
 * The sockops program is attached to the two pods' cgroups (their sockets enter weft_msg_pod_socks
 * when established), the verdict to that sockhash. "stats" on stdin prints counters; SIGTERM ends.
 * A third port splices to pod B's echo port (the integrity check).
 * Usage: msg-splice-proxy.js <node ip> <pod B ip> <pod B port> <plain port> <splice port> <echo port> <pod B echo port> <cgroup dir>...
 */
import { openSync, closeSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as bpf from '../../native/libbpf';
import * as libc from '../../native/libc';
import { weft_msg_key, weft_msg_state } from '../../agent/core/bpf-layout.generated';

const BPF_CGROUP_SOCK_OPS = 3;
const BPF_SK_MSG_VERDICT = 7;

interface Kernel { fd(name: string): number; links: number[]; obj: bpf.ObjectHandle }

function load(cgroups: string[]): Kernel {
  const obj = bpf.openObject(join(__dirname, '..', '..', 'bpf', 'weft_msg_splice.o'), null);
  bpf.loadObject(obj);
  const maps = bpf.mapFds(obj);
  const progs = bpf.programFds(obj);
  const fd = (name: string): number => {
    const v = maps.get(name) ?? progs.get(name);
    if (v === undefined) throw new Error(`weft_msg_splice.o has no ${name}`);
    return v;
  };
  const links = cgroups.map((dir) => {
    const cg = openSync(dir, 'r');
    try {
      return bpf.linkCreate(fd('weft_msg_sockops'), cg, BPF_CGROUP_SOCK_OPS, `sockops on ${dir}`);
    } finally {
      closeSync(cg);
    }
  });
  bpf.progAttach(fd('weft_msg_verdict'), fd('weft_msg_pod_socks'), BPF_SK_MSG_VERDICT, 'sk_msg verdict on weft_msg_pod_socks');
  return { fd, links, obj };
}

/** A socket's own 4-tuple as the kernel keys it: addresses in network order, ports in host order. */
function keyOf(localIp: string, localPort: number, remoteIp: string, remotePort: number): Buffer {
  const k = Buffer.alloc(weft_msg_key.size);
  Buffer.from(localIp.split('.').map(Number)).copy(k, weft_msg_key.fields.local_ip4.offset);
  Buffer.from(remoteIp.split('.').map(Number)).copy(k, weft_msg_key.fields.remote_ip4.offset);
  k.writeUInt16LE(localPort, weft_msg_key.fields.local_port.offset);
  k.writeUInt16LE(remotePort, weft_msg_key.fields.remote_port.offset);
  return k;
}

const u64 = (v: bigint): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(v); return b; };
const fdOf = (s: net.Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;

/** One pod socket's entries: where its bytes leave, how many the proxy relayed, what the verdict did. */
class PodSide {
  relayed = 0;
  constructor(private readonly k: Kernel, readonly key: Buffer, target: bigint) {
    bpf.mapUpdate(k.fd('weft_msg_state'), key, Buffer.alloc(weft_msg_state.size));
    bpf.mapUpdate(k.fd('weft_msg_relayed'), key, u64(0n));
    bpf.mapUpdate(k.fd('weft_msg_flow'), key, u64(target));
  }

  wrote(n: number): void {
    this.relayed += n;
    bpf.mapUpdate(this.k.fd('weft_msg_relayed'), this.key, u64(BigInt(this.relayed)));
  }

  /** Bytes the kernel redirected; forgets the entries. */
  forget(): number {
    const v = bpf.mapLookup(this.k.fd('weft_msg_state'), this.key, weft_msg_state.size);
    for (const m of ['weft_msg_flow', 'weft_msg_relayed', 'weft_msg_state', 'weft_msg_base']) bpf.mapDelete(this.k.fd(m), this.key);
    return v ? Number(v.readBigUInt64LE(weft_msg_state.fields.redirected.offset)) : 0;
  }
}

/** Moves `from`'s bytes to `to` in user space, with backpressure and half-close; `side` learns each write. */
function pipeOne(from: net.Socket, to: net.Socket, side: PodSide | undefined): void {
  from.on('data', (c: Buffer) => {
    const n = c.length;
    if (!to.write(c, side && (() => side.wrote(n)))) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  });
  from.on('end', () => to.end());
}

function main(): void {
  const [nodeIp, podIp, podPortArg, plainArg, spliceArg, echoArg, podEchoArg, ...cgroups] = process.argv.slice(2);
  if (!nodeIp || !podIp || !podEchoArg || cgroups.length === 0) {
    throw new Error('usage: msg-splice-proxy <node ip> <pod ip> <pod port> <plain port> <splice port> <echo port> <pod echo port> <cgroup dir>...');
  }
  const k = load(cgroups);
  const stats = { plain: 0, splice: 0, notSpliced: 0, relayedBytes: 0, redirectedBytes: 0, errors: 0 };

  const carry = (down: net.Socket, splice: boolean, podPort = Number(podPortArg)): void => {
    const up = net.connect({ host: podIp, port: podPort, allowHalfOpen: true });
    up.setNoDelay(true);
    down.setNoDelay(true);
    let sides: [PodSide, PodSide] | undefined;
    let cookies: bigint[] = [];
    let closed = 0;
    const done = (): void => {
      if (++closed < 2) return;
      if (sides) {
        stats.relayedBytes += sides[0].relayed + sides[1].relayed;
        stats.redirectedBytes += sides[0].forget() + sides[1].forget();
        // a closed socket has already left the sockhash; this is for one that failed before
        for (const c of cookies) bpf.mapDelete(k.fd('weft_msg_proxy_socks'), u64(c));
      }
    };
    down.on('close', done);
    up.on('close', done);
    down.on('error', () => { stats.errors++; up.destroy(); });
    up.on('error', () => { stats.errors++; down.destroy(); });
    down.pause();
    up.once('connect', () => {
      // A socket no longer established (the client already closed: CLOSE_WAIT) cannot enter a
      // sockhash (EOPNOTSUPP): such a connection is relayed.
      if (splice) {
        try {
          const downCookie = libc.socketCookie(fdOf(down), 'accepted socket');
          const upCookie = libc.socketCookie(fdOf(up), 'upstream socket');
          cookies = [downCookie, upCookie];
          bpf.mapUpdate(k.fd('weft_msg_proxy_socks'), u64(downCookie), u64(BigInt(fdOf(down))));
          bpf.mapUpdate(k.fd('weft_msg_proxy_socks'), u64(upCookie), u64(BigInt(fdOf(up))));
          // pod A's socket is the accepted one seen from the other end; pod B's the upstream's
          const a = new PodSide(k, keyOf(down.remoteAddress!, down.remotePort!, down.localAddress!, down.localPort!), upCookie);
          const b = new PodSide(k, keyOf(up.remoteAddress!, up.remotePort!, up.localAddress!, up.localPort!), downCookie);
          sides = [a, b];
        } catch {
          stats.notSpliced++;
          for (const c of cookies) bpf.mapDelete(k.fd('weft_msg_proxy_socks'), u64(c));
          sides?.forEach((x) => x.forget());
          sides = undefined;
          cookies = [];
        }
      }
      pipeOne(down, up, sides?.[0]);
      pipeOne(up, down, sides?.[1]);
      down.resume();
    });
  };

  const servers = [
    net.createServer({ allowHalfOpen: true }, (s) => { stats.plain++; carry(s, false); }).listen(Number(plainArg), nodeIp),
    net.createServer({ allowHalfOpen: true }, (s) => { stats.splice++; carry(s, true); }).listen(Number(spliceArg), nodeIp),
    net.createServer({ allowHalfOpen: true }, (s) => { stats.splice++; carry(s, true, Number(podEchoArg)); }).listen(Number(echoArg), nodeIp),
  ];
  const counters = (): number[] => Array.from({ length: 6 }, (_, i) => {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(i);
    return Number(bpf.mapLookup(k.fd('weft_msg_counters'), key, 8)?.readBigUInt64LE(0) ?? 0n);
  });
  process.once('SIGTERM', () => {
    for (const s of servers) s.close();
    for (const l of k.links) libc.close(l);
    bpf.closeObject(k.obj);
    process.exit(0);
  });
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() !== 'stats') return;
    const [added, passed, waited, switched, redirected, failed] = counters();
    console.log(JSON.stringify({ ...stats, kernel: { added, passed, waited, switched, redirected, failed } }));
  });
  let listening = 0;
  for (const s of servers) s.once('listening', () => { if (++listening === servers.length) console.log(JSON.stringify({ ready: true })); });
}

if (require.main === module) main();

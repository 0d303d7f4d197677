/**
 * What the agent process holds, as ztunnel exports it (the ztunnel dashboard's "Resource Usage"
 * panel): `process_open_fds` and `process_max_fds` (ztunnel's names, Prometheus' process-collector
 * convention) and `istio_tcp_sockets_open`, the TCP sockets the process holds now (listeners,
 * connections accepted from pods and peers, connections it opened to pods, peers and the control
 * plane). Read from /proc at scrape; nothing runs between scrapes. The parsers are pure.
 *
 * Cost at scrape, measured with 2,000 sockets open (5,000 lines in the netns's TCP table: with
 * hostNetwork it lists the whole node's sockets): synchronously ~30 ms of event loop (15 ms of
 * readlinks, 14 ms for the kernel to write the table, 6-10 ms of parsing); all 2,000 readlinks queued
 * at once came back in bursts holding the loop 47-70 ms. So the reads go to libuv's threads, the
 * links in batches of 256, and the table is parsed in slices of 1,000 lines with the loop let go
 * between them: the longest stall measured was then 28-38 ms on this shared host (idle: 6-8 ms), and
 * the kernel's work on the table, which grows with every socket on the node, is off the loop.
 */
import { readdir, readFile, readlink } from 'node:fs/promises';
import { Gauge, type Registry } from './prom-classes';

/** The inode of each `socket:[N]` among fd link targets. Pure. */
export function socketInodes(links: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const l of links) {
    const m = /^socket:\[(\d+)\]$/.exec(l);
    if (m) out.add(m[1]!);
  }
  return out;
}

/** An entry line of /proc/net/tcp{,6}: `sl: local remote st tx:rx tr:when retrnsmt uid timeout inode ...` (the header does not match). */
const TCP_LINE = /^ *\d+: \S+ \S+ \S+ \S+ \S+ \S+ +\d+ +\d+ (\d+)/gm;

/** The inodes of the sockets listed in (a slice of whole lines of) /proc/net/tcp or tcp6, inode 0 (no socket) skipped. Pure. */
export function tcpInodes(text: string, into: Set<string> = new Set()): Set<string> {
  for (const m of text.matchAll(TCP_LINE)) if (m[1] !== '0') into.add(m[1]!);
  return into;
}

const BATCH = 256;
const SLICE_LINES = 1000;
const yieldLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The inodes of a TCP table's text, parsed in slices of SLICE_LINES lines with the event loop let go between them. */
async function tcpInodesSliced(text: string, into: Set<string>): Promise<void> {
  let start = 0;
  while (start < text.length) {
    let end = start;
    for (let i = 0; i < SLICE_LINES && end !== -1; i++) end = text.indexOf('\n', end + 1);
    const stop = end === -1 ? text.length : end + 1;
    tcpInodes(text.slice(start, stop), into);
    start = stop;
    if (start < text.length) await yieldLoop();
  }
}

/** The soft limit of open files from /proc/self/limits (`Max open files  <soft>  <hard>  files`): Infinity if unlimited, undefined if absent. Pure. */
export function maxOpenFiles(limits: string): number | undefined {
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits);
  return m ? (m[1] === 'unlimited' ? Infinity : Number(m[1])) : undefined;
}

/** The link targets of this process's open fds, BATCH at a time (an fd closed meanwhile is skipped). */
async function fdLinks(): Promise<string[]> {
  const fds = await readdir('/proc/self/fd');
  const out: string[] = [];
  for (let i = 0; i < fds.length; i += BATCH) {
    out.push(...await Promise.all(fds.slice(i, i + BATCH).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => ''))));
  }
  return out;
}

const readOr = (path: string): Promise<string> => readFile(path, 'utf8').catch(() => '');

/** TCP sockets this process holds now: its socket fds that /proc/self/net/tcp{,6} (its netns) lists. */
export async function openTcpSockets(): Promise<number> {
  const [links, tcp4, tcp6] = await Promise.all([fdLinks(), readOr('/proc/self/net/tcp'), readOr('/proc/self/net/tcp6')]);
  const mine = socketInodes(links);
  const tcp = new Set<string>();
  await tcpInodesSliced(tcp4, tcp);
  await tcpInodesSliced(tcp6, tcp);
  let n = 0;
  for (const inode of mine) if (tcp.has(inode)) n++;
  return n;
}

export function registerProcessResources(registry: Registry): void {
  const r = [registry];
  new Gauge({ name: 'process_open_fds', help: 'Number of open file descriptors', registers: r,
    // the fd that lists the directory is open while it is listed (as ztunnel, it is not counted)
    async collect() { this.set((await readdir('/proc/self/fd')).length - 1); } });
  new Gauge({ name: 'process_max_fds', help: 'Maximum number of open file descriptors (the soft limit)', registers: r,
    async collect() { const n = maxOpenFiles(await readOr('/proc/self/limits')); if (n !== undefined) this.set(n); } });
  new Gauge({ name: 'istio_tcp_sockets_open', help: 'TCP sockets the agent process holds now: listeners, connections from pods and peer agents, connections to pods, peers and the control plane', registers: r,
    async collect() { this.set(await openTcpSockets()); } });
}

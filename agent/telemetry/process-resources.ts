/**
 * What the agent process holds, as ztunnel exports it (the ztunnel dashboard's "Resource Usage"
 * panel): `process_open_fds` and `process_max_fds` (ztunnel's names, Prometheus' process-collector
 * convention) and `istio_tcp_sockets_open`, the TCP sockets the process holds now (listeners,
 * connections accepted from pods and peers, connections it opened to pods, peers and the control
 * plane). Read from /proc at scrape; nothing runs between scrapes. The parsers are pure.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
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

/** The inodes of the sockets listed in /proc/net/tcp or tcp6 (10th column), header skipped. Pure. */
export function tcpInodes(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length >= 10 && /^\d+$/.test(cols[9]!) && cols[9] !== '0') out.add(cols[9]!);
  }
  return out;
}

/** The soft limit of open files from /proc/self/limits (`Max open files  <soft>  <hard>  files`); undefined if unlimited or absent. Pure. */
export function maxOpenFiles(limits: string): number | undefined {
  const m = /^Max open files\s+(\d+)\s/m.exec(limits);
  return m ? Number(m[1]) : undefined;
}

/** The link targets of this process's open fds (an fd closed meanwhile is skipped). */
function fdLinks(): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try { out.push(readlinkSync(`/proc/self/fd/${fd}`)); } catch { /* closed since the listing */ }
  }
  return out;
}

const readOr = (path: string): string => { try { return readFileSync(path, 'utf8'); } catch { return ''; } };

/** TCP sockets this process holds now: its socket fds that /proc/self/net/tcp{,6} (its netns) lists. */
export function openTcpSockets(): number {
  const mine = socketInodes(fdLinks());
  let n = 0;
  const seen = new Set<string>();
  for (const file of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    for (const inode of tcpInodes(readOr(file))) if (mine.has(inode) && !seen.has(inode)) { seen.add(inode); n++; }
  }
  return n;
}

export function registerProcessResources(registry: Registry): void {
  const r = [registry];
  new Gauge({ name: 'process_open_fds', help: 'Number of open file descriptors', registers: r,
    // the fd that lists the directory is open while it is listed (as ztunnel, it is not counted)
    collect() { this.set(readdirSync('/proc/self/fd').length - 1); } });
  new Gauge({ name: 'process_max_fds', help: 'Maximum number of open file descriptors (the soft limit)', registers: r,
    collect() { const n = maxOpenFiles(readOr('/proc/self/limits')); if (n !== undefined) this.set(n); } });
  new Gauge({ name: 'istio_tcp_sockets_open', help: 'TCP sockets the agent process holds now: listeners, connections from pods and peer agents, connections to pods, peers and the control plane', registers: r,
    collect() { this.set(openTcpSockets()); } });
}

/**
 * `weft top [--admin HOST:PORT] [--interval S] [--once]`: the busiest pod pairs through this node's
 * proxy, as a table refreshed every S seconds, read from the admin port's `/live.json` (the live
 * page's feed). The table is a pure function of the feed; only topCommand() does I/O.
 */
import { err, ok, type Result } from '../core/result';
import type { LiveEdge, LiveFeed, LiveVertex } from '../telemetry/live-feed';

export interface TopOptions {
  admin: string;
  intervalMs: number;
  once: boolean;
  /** at most this many pairs */
  limit: number;
}

export const TOP_DEFAULTS = { intervalS: 2, limit: 20, denials: 5 } as const;

/** The flags as parseArgs gives them, checked. Pure. */
export function topOptions(f: { admin?: string; interval?: string; once?: boolean; limit?: string }, defaultAdmin: string): Result<TopOptions, string> {
  const admin = f.admin ?? defaultAdmin;
  if (!/^[^:\s]+:\d+$|^\[[0-9a-fA-F:.]+\]:\d+$/.test(admin)) return err(`--admin must be HOST:PORT (got ${JSON.stringify(admin)})`);
  const interval = f.interval === undefined ? TOP_DEFAULTS.intervalS : Number(f.interval);
  if (!(Number.isFinite(interval) && interval >= 0.2)) return err(`--interval must be a number of seconds, at least 0.2 (got ${JSON.stringify(f.interval)})`);
  const limit = f.limit === undefined ? TOP_DEFAULTS.limit : Number(f.limit);
  if (!(Number.isInteger(limit) && limit > 0)) return err(`--limit must be a positive whole number (got ${JSON.stringify(f.limit)})`);
  return ok({ admin, intervalMs: Math.round(interval * 1000), once: f.once === true, limit });
}

/** Busiest first: request rate, then byte rate, then requests since start. Pure. */
export function busiest(a: LiveEdge, b: LiveEdge): number {
  return (b.requests.perSecond - a.requests.perSecond) || (b.tcp.bytesPerSecond - a.tcp.bytesPerSecond)
    || (b.requests.total - a.requests.total) || (b.tcp.opened - a.tcp.opened) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function name(v: LiveVertex | undefined, id: string): string {
  if (!v) return id;
  return v.namespace !== undefined && v.kind !== 'external' ? `${v.namespace}/${v.name}` : v.name;
}

const MTLS = { mutual_tls: 'mTLS', none: 'PLAIN', mixed: 'MIXED' } as const;

function rate(r: number): string {
  return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
}

function bytes(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)}M` : n >= 1024 ? `${(n / 1024).toFixed(1)}k` : `${Math.round(n)}`;
}

function ms(x: number | null): string {
  return x === null ? '-' : x >= 100 ? `${x.toFixed(0)}ms` : `${x.toFixed(x >= 1 ? 1 : 2)}ms`;
}

function time(at: number): string {
  return new Date(at).toISOString().slice(11, 19);
}

/** The screen `weft top` prints for one feed. Pure. */
export function topTable(feed: LiveFeed, limit: number = TOP_DEFAULTS.limit): string {
  const byId = new Map(feed.vertices.map((v) => [v.id, v]));
  const edges = [...feed.edges].sort(busiest);
  const lines = [`weft top — node ${feed.node} — ${time(feed.at)} UTC — rates over the last ${feed.windowSeconds} s — ${edges.length} pair${edges.length === 1 ? '' : 's'}`, ''];
  const header = ['SOURCE', 'DESTINATION', 'MTLS', 'REQ/S', 'SUCCESS', 'P99', 'REQUESTS', 'DENIED', 'CONNS', 'BYTES/S'];
  const rows = edges.slice(0, limit).map((e) => [
    name(byId.get(e.source), e.source),
    name(byId.get(e.destination), e.destination),
    MTLS[e.mtls],
    rate(e.requests.perSecond),
    e.requests.successRate === null ? '-' : `${(e.requests.successRate * 100).toFixed(e.requests.successRate === 1 || e.requests.successRate === 0 ? 0 : 1)}%`,
    ms(e.requests.p99Ms),
    String(e.requests.total),
    String(e.requests.deniedTotal + e.tcp.deniedTotal),
    `${e.tcp.active}/${e.tcp.opened}`,
    bytes(e.tcp.bytesPerSecond),
  ]);
  if (rows.length === 0) lines.push('no traffic through this node\'s proxy yet');
  else {
    const cells = [header, ...rows];
    const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
    const numeric = new Set([3, 4, 5, 6, 7, 8, 9]);
    for (const r of cells) lines.push(r.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd());
    if (edges.length > limit) lines.push(`… and ${edges.length - limit} more`);
  }
  if (feed.denials.length > 0) {
    lines.push('', 'recent denials:');
    for (const d of feed.denials.slice(0, TOP_DEFAULTS.denials)) {
      lines.push(`  ${time(d.at)}  ${name(byId.get(d.source), d.source)} -> ${name(byId.get(d.destination), d.destination)}  `
        + `${d.kind === 'request' ? `request ${d.status ?? ''}`.trimEnd() : 'connection'}  ${d.policy ? `by ${d.policy}` : '(no ALLOW policy matched)'}`);
    }
  }
  return lines.join('\n') + '\n';
}

/** The feed from a running agent, or an error saying what to check. */
export async function fetchLiveFeed(admin: string): Promise<LiveFeed> {
  const res = await fetch(`http://${admin}/live.json`, { signal: AbortSignal.timeout(5000) }).catch((e: Error) => {
    throw new Error(`cannot reach the agent's admin API at ${admin} (${e.message}); is 'weft local' or 'weft agent' running on this host?`);
  });
  const body = await res.json().catch(() => undefined) as (LiveFeed & { error?: string }) | undefined;
  if (!res.ok || !body || !Array.isArray(body.edges)) {
    throw new Error(`the agent at ${admin} answered /live.json with ${res.status}${body?.error ? `: ${body.error}` : ''}; an agent older than the live view does not serve it`);
  }
  return body;
}

const CLEAR = '\x1b[H\x1b[2J';

/**
 * Prints the table once (`once`) or every interval until `signal` aborts (Ctrl-C). In the loop a
 * failed read is shown in place of the table and retried; with `once` it is the command's error.
 */
export async function topCommand(o: TopOptions, out: NodeJS.WriteStream = process.stdout, signal?: AbortSignal): Promise<number> {
  if (o.once) {
    out.write(topTable(await fetchLiveFeed(o.admin), o.limit));
    return 0;
  }
  const tty = out.isTTY === true;
  while (!signal?.aborted) {
    let screen: string;
    try {
      screen = topTable(await fetchLiveFeed(o.admin), o.limit);
    } catch (e) {
      screen = `weft top: ${(e as Error).message}\n(retrying every ${o.intervalMs / 1000} s; Ctrl-C to stop)\n`;
    }
    out.write(tty ? CLEAR + screen : screen + '\n');
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, o.intervalMs);
      signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }
  return 0;
}

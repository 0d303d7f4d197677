import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { serveJson } from '../../agent/node/http-endpoints';
import { fetchLiveFeed, topCommand, topOptions, topTable } from '../../agent/node/top-command';
import type { LiveEdge, LiveFeed } from '../../agent/telemetry/live-feed';

const CLI = join(__dirname, '..', '..', 'agent', 'cli.js');

/** Runs the CLI without blocking this process (the test's admin server answers it). */
function weft(args: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 }, (e, stdout, stderr) => {
      resolve({ status: e ? (typeof e.code === 'number' ? e.code : -1) : 0, stdout, stderr });
    });
  });
}

function edgeOf(source: string, destination: string, over: { perSecond?: number; total?: number; bytesPerSecond?: number; mtls?: LiveEdge['mtls']; p99Ms?: number | null; successRate?: number | null; denied?: number }): LiveEdge {
  return {
    id: `${source} > ${destination}`, source, destination, mtls: over.mtls ?? 'mutual_tls', protocol: 'http',
    requests: { reporter: 'destination', total: over.total ?? 0, perSecond: over.perSecond ?? 0, successRate: over.successRate ?? null, p99Ms: over.p99Ms ?? null, errors: 0, denied: 0, deniedTotal: over.denied ?? 0 },
    tcp: { reporter: 'destination', opened: 3, active: 1, perSecond: 0.05, bytesFromClient: 100, bytesToClient: 900, bytesPerSecond: over.bytesPerSecond ?? 0, deniedTotal: 0 },
    lastSeen: 0,
  };
}

const FEED: LiveFeed = {
  node: 'n2', at: Date.UTC(2025, 0, 1, 12, 30, 5), windowSeconds: 60,
  vertices: [
    { id: 'pod:shop/web', kind: 'pod', name: 'web', namespace: 'shop', node: 'n1' },
    { id: 'pod:shop/bot', kind: 'pod', name: 'bot', namespace: 'shop', node: 'n1' },
    { id: 'pod:shop/api', kind: 'pod', name: 'api', namespace: 'shop', node: 'n2' },
    { id: 'ip:192.0.2.7', kind: 'external', name: '192.0.2.7' },
  ],
  edges: [
    edgeOf('ip:192.0.2.7', 'pod:shop/api', { bytesPerSecond: 5000, mtls: 'none' }),
    edgeOf('pod:shop/web', 'pod:shop/api', { perSecond: 12.5, total: 750, successRate: 0.98, p99Ms: 4.2 }),
    edgeOf('pod:shop/bot', 'pod:shop/api', { perSecond: 0.5, total: 30, successRate: 0, p99Ms: 0.8, denied: 30 }),
  ],
  denials: [{ at: Date.UTC(2025, 0, 1, 12, 30, 4), source: 'pod:shop/bot', destination: 'pod:shop/api', kind: 'request', status: 403, policy: 'shop/deny-bot', reporter: 'destination' }],
};

describe('weft top', () => {
  it('lists the busiest pairs first: request rate, then bytes', () => {
    const text = topTable(FEED);
    const lines = text.split('\n');
    assert.match(lines[0]!, /^weft top — node n2 — 12:30:05 UTC — rates over the last 60 s — 3 pairs$/);
    const header = lines[2]!;
    assert.match(header, /^SOURCE\s+DESTINATION\s+MTLS\s+REQ\/S\s+SUCCESS\s+P99\s+REQUESTS\s+DENIED\s+CONNS\s+BYTES\/S$/);
    const rows = lines.slice(3, 6).map((l) => l.split(/\s{2,}/));
    assert.deepEqual(rows[0], ['shop/web', 'shop/api', 'mTLS', '12.5', '98.0%', '4.2ms', '750', '0', '1/3', '0']);
    assert.deepEqual(rows[1], ['shop/bot', 'shop/api', 'mTLS', '0.50', '0%', '0.80ms', '30', '30', '1/3', '0']);
    assert.deepEqual(rows[2], ['192.0.2.7', 'shop/api', 'PLAIN', '0.00', '-', '-', '0', '0', '1/3', '4.9k']);
    assert.ok(text.includes('recent denials:\n  12:30:04  shop/bot -> shop/api  request 403  by shop/deny-bot\n'), text);
  });

  it('says so when there is no traffic, and how many pairs the limit hid', () => {
    assert.match(topTable({ ...FEED, edges: [], denials: [] }), /no traffic through this node's proxy yet\n$/);
    const text = topTable(FEED, 1);
    assert.match(text, /shop\/web\s+shop\/api/);
    assert.doesNotMatch(text, /shop\/bot\s+shop\/api\s+mTLS/);
    assert.match(text, /… and 2 more/);
  });

  it('checks its flags, naming the one that is wrong', () => {
    const d = '127.0.0.1:15000';
    assert.deepEqual(topOptions({}, d), { ok: true, value: { admin: d, intervalMs: 2000, once: false, limit: 20 } });
    assert.deepEqual(topOptions({ admin: '[::1]:15000', interval: '0.5', once: true, limit: '5' }, d), { ok: true, value: { admin: '[::1]:15000', intervalMs: 500, once: true, limit: 5 } });
    assert.deepEqual(topOptions({ interval: '0' }, d), { ok: false, error: '--interval must be a number of seconds, at least 0.2 (got "0")' });
    assert.deepEqual(topOptions({ interval: 'fast' }, d), { ok: false, error: '--interval must be a number of seconds, at least 0.2 (got "fast")' });
    assert.deepEqual(topOptions({ admin: 'localhost' }, d), { ok: false, error: '--admin must be HOST:PORT (got "localhost")' });
    assert.deepEqual(topOptions({ limit: '0' }, d), { ok: false, error: '--limit must be a positive whole number (got "0")' });
  });

  it('reads the feed from the admin port, and says what to check when it cannot', async () => {
    let srv: http.Server | undefined;
    let admin = '';
    try {
      srv = await serveJson('127.0.0.1', 0, { '/live.json': () => FEED });
      admin = `127.0.0.1:${(srv.address() as AddressInfo).port}`;
      assert.deepEqual(await fetchLiveFeed(admin), FEED);
      const once = await weft(['top', '--once', '--admin', admin]);
      assert.equal(once.status, 0, once.stderr);
      assert.equal(once.stdout, topTable(FEED));
      const web = await weft(['status', '--web', '--admin', admin]);
      assert.equal(web.status, 0, web.stderr);
      assert.equal(web.stdout, `http://${admin}/live\n`);
    } finally {
      await new Promise((r) => (srv ? srv.close(r) : r(undefined)));
    }
    // nothing listens there any more
    await assert.rejects(fetchLiveFeed(admin), /cannot reach the agent's admin API at 127\.0\.0\.1:\d+ .*is 'weft local' or 'weft agent' running/);
  });

  it('refreshes until stopped: one screen per interval, a failed read shown in place and retried', async () => {
    let reads = 0;
    let srv: http.Server | undefined;
    try {
      srv = await serveJson('127.0.0.1', 0, { '/live.json': () => { reads++; if (reads === 2) throw new Error('state not there yet'); return FEED; } });
      const admin = `127.0.0.1:${(srv.address() as AddressInfo).port}`;
      const screens: string[] = [];
      const stop = new AbortController();
      const out = { isTTY: false, write: (s: string) => { screens.push(s); if (screens.length === 3) stop.abort(); return true; } } as unknown as NodeJS.WriteStream;
      const code = await topCommand({ admin, intervalMs: 200, once: false, limit: 20 }, out, stop.signal);
      assert.equal(code, 0);
      assert.equal(screens.length, 3, 'stopped after the third screen');
      assert.equal(screens[0], topTable(FEED) + '\n');
      assert.match(screens[1]!, /^weft top: the agent at 127\.0\.0\.1:\d+ answered \/live\.json with 503: state not there yet.*\n\(retrying every 0\.2 s; Ctrl-C to stop\)\n\n$/s);
      assert.equal(screens[2], topTable(FEED) + '\n');
    } finally {
      await new Promise((r) => (srv ? srv.close(r) : r(undefined)));
    }
  });

  it('an agent without the live view: the status and what it said', async () => {
    let srv: http.Server | undefined;
    try {
      srv = await serveJson('127.0.0.1', 0, { '/workloads': () => [] });
      const admin = `127.0.0.1:${(srv.address() as AddressInfo).port}`;
      await assert.rejects(fetchLiveFeed(admin), /answered \/live\.json with 404: GET \/live\.json is not served here; an agent older than the live view/);
      const r = await weft(['top', '--once', '--interval', '0', '--admin', admin]);
      assert.equal(r.status, 1);
      assert.match(r.stderr, /weft top: --interval must be a number of seconds, at least 0\.2 \(got "0"\)/);
    } finally {
      await new Promise((r) => (srv ? srv.close(r) : r(undefined)));
    }
  });
});

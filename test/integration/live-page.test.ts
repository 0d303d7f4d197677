/**
 * The live page end to end: two lab nodes with a control plane and an agent each, the metrics tests'
 * traffic mix (HTTP allowed and denied, gRPC, TCP, a same-node pair, a plaintext client), then
 * Debian's chromium, headless inside n2's netns, loads n2's admin page http://127.0.0.1:15000/live
 * over the DevTools protocol. Checked in the DOM: the test's pods, each edge with its mTLS state
 * (drawn solid or dashed), the denials with their policy, the numbers moving after more traffic,
 * and no console error, exception or failed load. `weft top --once` and `weft status --web` run in
 * n1's netns against n1's agent.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curl } from '../../agent/sandbox';
import { WEFT_CLI } from '../../agent/sandbox/weft-agent';
import { Browser, chromiumInstalled, type Page } from '../support/devtools-pipe';
import { driveTrafficMix, MIX, sleep, startMetricsMesh, type MetricsMesh } from '../support/metrics-mesh';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker() ?? (chromiumInstalled() ? null : 'SKIPPED: Debian\'s chromium is not installed (scripts/setup.sh installs it)');
if (blocker) process.stderr.write(`\n*** SKIPPING live page tests: ${blocker} ***\n\n`);

const PAGE = 'http://127.0.0.1:15000/live';
const WEB_API = 'pod:shop/web > pod:shop/api';
const BOT_API = 'pod:shop/bot > pod:shop/api';
const OUTSIDER_API = 'pod:legacy/outsider > pod:shop/api';

/** What the page shows, read from its DOM. */
interface Shown {
  updates: number;
  status: string;
  node: string;
  vertices: { id: string; name: string; sub: string; local: boolean }[];
  paths: { edge: string; mtls: string; dash: string; stroke: string; lock: boolean }[];
  rows: { edge: string; mtls: string; requests: number; connections: number; denied: number; cells: string[] }[];
  denials: { source: string; destination: string; policy: string; cells: string[] }[];
}

const READ_DOM = `(() => {
  const q = (s) => [...document.querySelectorAll(s)];
  return {
    updates: Number(document.body.dataset.updates || 0),
    status: document.getElementById('status').textContent,
    node: document.getElementById('node').textContent,
    vertices: q('g.vertex').map((g) => ({ id: g.dataset.vertex, name: g.querySelector('.name').textContent, sub: g.querySelector('.sub').textContent, local: g.classList.contains('local') })),
    paths: q('path.edge').map((p) => {
      const cs = getComputedStyle(p);
      const tag = document.querySelector('g.edge-tag[data-edge="' + CSS.escape(p.dataset.edge) + '"]');
      return { edge: p.dataset.edge, mtls: p.dataset.mtls, dash: cs.strokeDasharray, stroke: cs.stroke, lock: !!(tag && tag.querySelector('.lock')) };
    }),
    rows: q('tr.edge-row').map((r) => ({ edge: r.dataset.edge, mtls: r.dataset.mtls, requests: Number(r.dataset.requests), connections: Number(r.dataset.connections),
      denied: Number(r.dataset.denied), cells: [...r.cells].map((c) => c.textContent) })),
    denials: q('tr.denial-row').map((r) => ({ source: r.dataset.source, destination: r.dataset.destination, policy: r.dataset.policy, cells: [...r.cells].map((c) => c.textContent) })),
  };
})()`;

/** Reads the page until `ready` holds (bounded: 100 reads, 100 ms apart); returns the last read. */
async function shownWhen(page: Page, ready: (s: Shown) => boolean, what: string): Promise<Shown> {
  let s: Shown | undefined;
  for (let i = 0; i < 100; i++) {
    s = await page.evaluate<Shown>(READ_DOM);
    if (ready(s)) return s;
    await sleep(100);
  }
  assert.fail(`the page never showed ${what}; it shows:\n${JSON.stringify(s, null, 1)}`);
}

const row = (s: Shown, edge: string) => {
  const r = s.rows.find((x) => x.edge === edge);
  assert.ok(r, `row ${edge} in ${s.rows.map((x) => x.edge).join(', ')}`);
  return r;
};
const path = (s: Shown, edge: string) => {
  const p = s.paths.find((x) => x.edge === edge);
  assert.ok(p, `edge ${edge} drawn among ${s.paths.map((x) => x.edge).join(', ')}`);
  return p;
};

describe('the live page in headless chromium', { skip: blocker ?? false }, () => {
  let mesh: MetricsMesh;
  let browser: Browser | undefined;
  let page: Page;
  let first: Shown;

  before(async () => {
    if (blocker) return;
    mesh = await startMetricsMesh('lve');
    try {
      await driveTrafficMix(mesh);
      const profile = join(mesh.dir, 'chromium-profile');
      mkdirSync(profile);
      browser = await Browser.launch(mesh.n2, profile);
      page = await browser.open(PAGE);
    } catch (e) {
      browser?.close();
      await mesh.close();
      throw e;
    }
  });

  after(async () => {
    if (blocker) return;
    browser?.close();
    await mesh?.close();
  });

  test('shows the pods that talked through n2, grouped by node, and every edge with its mTLS state', async () => {
    // Connections end shortly after their clients exit; wait until the page shows all three edges with nothing open.
    first = await shownWhen(page, (s) => [WEB_API, BOT_API, OUTSIDER_API].every((e) => s.rows.some((r) => r.edge === e))
      && s.rows.every((r) => r.cells[9]!.startsWith('0 /')), 'three settled edges');
    process.stdout.write(`# live page on n2: ${JSON.stringify(first.rows.map((r) => [r.edge, r.mtls, r.requests, r.connections, r.denied]))}\n`);
    assert.equal(first.node, mesh.n2.name);
    assert.match(first.status, /^updated /);
    const ids = first.vertices.map((v) => v.id).sort();
    assert.deepEqual(ids, ['pod:legacy/outsider', 'pod:shop/api', 'pod:shop/bot', 'pod:shop/web']);
    const api = first.vertices.find((v) => v.id === 'pod:shop/api')!;
    assert.deepEqual([api.name, api.sub, api.local], ['api', 'shop', true]);
    assert.equal(first.vertices.find((v) => v.id === 'pod:shop/web')!.local, false, 'web runs on n1');

    for (const e of [WEB_API, BOT_API]) {
      assert.equal(row(first, e).mtls, 'mutual_tls', e);
      const p = path(first, e);
      assert.deepEqual([p.mtls, p.dash, p.lock], ['mutual_tls', 'none', true], `${e} drawn solid with a lock`);
      assert.equal(p.stroke, 'rgb(63, 185, 80)', `${e} drawn green`);
    }
    assert.equal(row(first, OUTSIDER_API).mtls, 'none');
    const plain = path(first, OUTSIDER_API);
    assert.deepEqual([plain.mtls, plain.lock], ['none', false]);
    assert.notEqual(plain.dash, 'none', 'plaintext drawn dashed');
    assert.equal(plain.stroke, 'rgb(248, 81, 73)', 'plaintext drawn red');
    assert.equal(row(first, OUTSIDER_API).cells[2], 'plaintext');
    assert.equal(row(first, WEB_API).cells[2], 'mTLS');

    // Counted by n2, the destination: the GETs and the three gRPC calls (Hello, Count, Fail) on web → api; one plaintext GET.
    assert.equal(row(first, WEB_API).requests, MIX.get + 3);
    assert.equal(row(first, OUTSIDER_API).requests, 1);
    assert.equal(row(first, BOT_API).requests, MIX.denied);
    assert.equal(row(first, BOT_API).denied, MIX.denied);
    assert.equal(row(first, BOT_API).cells[5], '0%', 'every bot request was denied');
    assert.equal(row(first, WEB_API).cells[5], '83.3%', 'gRPC Fail answers a non-OK status: 5 of 6 succeeded');
    // one connection per curl, one for the gRPC channel, one for the TCP echo
    assert.equal(row(first, WEB_API).connections, MIX.get + 2);
  });

  test('lists the denials with their deciding policy', () => {
    assert.equal(first.denials.length, MIX.denied);
    for (const d of first.denials) {
      assert.deepEqual([d.source, d.destination, d.policy], ['pod:shop/bot', 'pod:shop/api', 'shop/deny-bot']);
      assert.deepEqual(d.cells.slice(1), ['shop/bot', 'shop/api', 'request (403)', 'shop/deny-bot', 'destination']);
    }
  });

  test('updates when traffic changes: more requests and a new denial appear without a reload', async () => {
    const { web, bot, api } = mesh.pods;
    const before = row(first, WEB_API);
    const beforeUpdates = first.updates;
    const shotBefore = await page.screenshot();
    for (let i = 0; i < 4; i++) assert.equal((await curl(web, `http://${api.ip}:8080/more/${i}`)).status, 200);
    assert.equal((await curl(bot, `http://${api.ip}:8080/denied/again`)).status, 403);
    const later = await shownWhen(page, (s) => row(s, WEB_API).requests === before.requests + 4 && s.denials.length === MIX.denied + 1, '4 more web → api requests and a third denial');
    assert.ok(later.updates > beforeUpdates, 'the page polled again');
    assert.equal(row(later, BOT_API).denied, MIX.denied + 1);
    const shotAfter = await page.screenshot();
    assert.ok(shotBefore.length > 1000 && shotAfter.length > 1000, 'screenshots taken');
    assert.notDeepEqual(shotAfter, shotBefore, 'the drawing changed');
    const dir = process.env.WEFT_LIVE_SCREENSHOTS;
    if (dir) {
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'live-before.png'), shotBefore);
      writeFileSync(join(dir, 'live-after.png'), shotAfter);
    }
  });

  test('no console error, exception or failed load on the page (and the collector does hear one)', async () => {
    assert.deepEqual(browser!.problems, [], `problems: ${browser!.problems.join('\n')}`);
    if (browser!.warnings.length) process.stdout.write(`# warnings: ${browser!.warnings.join(' | ')}\n`);
    // The control: an error logged by another page is collected, so the empty list above means something.
    const probe = await browser!.open('about:blank');
    await probe.evaluate("console.error('live-page-probe'); 1");
    const heard: readonly string[] = browser!.problems; // the same array, filled as events arrive
    for (let i = 0; i < 50 && !heard.some((p) => p.includes('live-page-probe')); i++) await sleep(100);
    assert.deepEqual(heard, ['console.error: live-page-probe']);
  });

  test('weft top --once and weft status --web read n1\'s agent from its netns', async () => {
    const top = await mesh.n1.exec(process.execPath, [WEFT_CLI, 'top', '--once'], { timeoutMs: 15_000 });
    assert.equal(top.code, 0, top.stderr);
    process.stdout.write(`# weft top on n1:\n${top.stdout.replace(/^/gm, '#   ')}\n`);
    assert.ok(top.stdout.startsWith(`weft top — node ${mesh.n1.name} — `), top.stdout);
    // the same-node pair, counted by n1 as the destination
    assert.match(top.stdout, new RegExp(`^shop/web\\s+shop/api1\\s+mTLS\\s+\\S+\\s+100%\\s+\\S+ms\\s+${MIX.local}\\s+0\\s`, 'm'));
    // the tunnel to n2: n1 is its source and sees bytes, not requests
    assert.match(top.stdout, /^shop\/web\s+shop\/api\s+mTLS\s+0\.00\s+-\s+-\s+0\s+0\s/m);
    assert.match(top.stdout, /^shop\/bot\s+shop\/api\s+mTLS\s/m);
    const web = await mesh.n1.exec(process.execPath, [WEFT_CLI, 'status', '--web'], { timeoutMs: 15_000 });
    assert.equal(web.code, 0, web.stderr);
    assert.equal(web.stdout, `${PAGE}\n`);
  });
});

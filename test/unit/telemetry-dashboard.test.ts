/**
 * Weft's Grafana dashboard (daemonset/monitoring/weft-dashboard.json) read without Grafana: every
 * query names only metrics the agent exports (checked against a registry holding every collector the
 * agent registers, not a list copied by hand), every variable it uses is defined, every panel reads
 * the dashboard's data source, and panels do not overlap. That the queries evaluate and show data is
 * test/integration/weft-dashboard.test.ts, through a real Prometheus.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { registerHealth } from '../../agent/telemetry/health';
import { MeshMetrics } from '../../agent/telemetry/metrics';
import { registerNodeState } from '../../agent/telemetry/node-state';
import { registerServiceMetrics } from '../../agent/telemetry/service-metrics';

const FILE = join(__dirname, '..', '..', '..', 'daemonset', 'monitoring', 'weft-dashboard.json');

interface Target { expr: string; refId: string; datasource?: { uid: string } }
interface Panel { id: number; type: string; title: string; gridPos: { x: number; y: number; w: number; h: number }; datasource?: { uid: string }; targets?: Target[] }
interface Dashboard { uid: string; title: string; panels: Panel[]; templating: { list: Array<{ name: string; type: string; query: string }> } }

const dashboard = JSON.parse(readFileSync(FILE, 'utf8')) as Dashboard;
const panels = dashboard.panels.filter((p) => p.type !== 'row');
const targets = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, ...t })));
const BUILTIN = new Set(['__rate_interval', '__interval', '__range', 'interval']);

/** Every metric name an agent exports (a histogram's as its _bucket, _sum and _count series), read from the # TYPE lines /metrics serves. */
async function exported(): Promise<Set<string>> {
  const m = new MeshMetrics().subscribe();
  const stop = registerHealth(m.registry, { connections: () => 0, certificates: () => [], version: 'test' });
  registerServiceMetrics(m.registry, () => []);
  registerNodeState(m.registry, { controlPlane: { connected: () => true, lastVersion: () => 1 }, redirectCounters: () => ({}) });
  const text = await m.registry.metrics();
  stop();
  m.unsubscribe();
  const names = new Set<string>();
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name! + s);
    else names.add(name!);
  }
  return names;
}

describe('Weft dashboard JSON', () => {
  it('has a stable uid and title and a panel for every area issue 9 lists', () => {
    assert.equal(dashboard.uid, 'weft-mesh');
    assert.equal(dashboard.title, 'Weft Mesh');
    const rows = dashboard.panels.filter((p) => p.type === 'row').map((p) => p.title);
    for (const area of ['Traffic between workloads', 'Success rate', 'Latency', 'mTLS coverage', 'Authorization denials', 'Service traffic', 'Agent health']) {
      assert.ok(rows.some((r) => r.startsWith(area)), `a row for ${area}: ${rows.join(', ')}`);
    }
  });

  it('every query names only metrics the agent exports', async () => {
    const known = await exported();
    const unknown: string[] = [];
    for (const t of [...targets.map((x) => ({ where: `${x.panel} [${x.refId}]`, expr: x.expr })), ...dashboard.templating.list.filter((v) => v.type === 'query').map((v) => ({ where: `$${v.name}`, expr: v.query }))]) {
      for (const [name] of t.expr.matchAll(/\b(?:istio|weft)_[a-z0-9_]+/g)) if (!known.has(name)) unknown.push(`${t.where}: ${name}`);
    }
    assert.deepEqual(unknown, []);
  });

  it('every variable used is defined; every panel and query reads the ${datasource} variable; refIds unique per panel', () => {
    const defined = new Set(dashboard.templating.list.map((v) => v.name));
    assert.ok(defined.has('datasource') && defined.has('namespace') && defined.has('workload') && defined.has('qrep'));
    for (const t of targets) {
      for (const [, name] of t.expr.matchAll(/\$([a-zA-Z_]+)/g)) assert.ok(BUILTIN.has(name!) || defined.has(name!), `${t.panel}: $${name} is not defined`);
      assert.equal(t.datasource?.uid, '${datasource}', `${t.panel} [${t.refId}]`);
    }
    for (const p of panels) {
      assert.equal(p.datasource?.uid, '${datasource}', p.title);
      const refs = (p.targets ?? []).map((t) => t.refId);
      assert.equal(new Set(refs).size, refs.length, `${p.title}: refIds ${refs}`);
      assert.ok(refs.length > 0, `${p.title} has a query`);
    }
  });

  it('panel ids are unique and panels do not overlap on the 24-column grid', () => {
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length);
    const all = dashboard.panels;
    for (const [i, a] of all.entries()) {
      assert.ok(a.gridPos.x + a.gridPos.w <= 24, `${a.title} fits the grid`);
      for (const b of all.slice(i + 1)) {
        const overlap = a.gridPos.x < b.gridPos.x + b.gridPos.w && b.gridPos.x < a.gridPos.x + a.gridPos.w
          && a.gridPos.y < b.gridPos.y + b.gridPos.h && b.gridPos.y < a.gridPos.y + a.gridPos.h;
        assert.ok(!overlap, `${a.title} and ${b.title} overlap`);
      }
    }
  });
});

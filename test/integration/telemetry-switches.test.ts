/**
 * ProxyConfig spec.accessLog and spec.telemetry applied to running agents, without restart: two
 * lab nodes, `weft controlplane` following a file and an agent per node (metrics-mesh.ts). The file
 * is rewritten with a ProxyConfig; the agents' /metrics (weft_telemetry_metrics_enabled) says when
 * the new snapshot is in force, then the traffic's access-log lines and series are checked.
 *   1. sampling 0 + metrics off: successful requests leave no line, a denial and a failed
 *      connection still do; /metrics has no Istio request series and still has the agent's health.
 *   2. back to the defaults: requests are counted again (from zero) and logged again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { curl, type LabNode } from '../../agent/sandbox';
import { ID, scrapeNode, sleep, startMetricsMesh, type MetricsMesh, type Sample } from '../support/metrics-mesh';
import { kernelTestBlocker } from '../support/requirements';

const blocker = kernelTestBlocker();
if (blocker) process.stderr.write(`\n*** SKIPPING telemetry switch tests: ${blocker} ***\n\n`);

const sum = (samples: Sample[], name: string, match: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);

describe('telemetry switches from ProxyConfig, live', { skip: blocker ?? false }, () => {
  let mesh: MetricsMesh;
  let configPath: string;
  let baseConfig: string;

  /** Rewrites the watched config with `proxyConfig` spec (undefined: none) and waits (bounded) until both agents show `metricsOn`. */
  const applyProxyConfig = async (spec: object | undefined, metricsOn: boolean) => {
    const doc = spec === undefined ? '' : `---\n${JSON.stringify({ apiVersion: 'config.weft.dev/v1', kind: 'ProxyConfig', metadata: { name: 'default' }, spec })}\n`;
    writeFileSync(configPath, baseConfig + doc);
    for (const node of [mesh.n1, mesh.n2] as LabNode[]) {
      let last: Sample[] = [];
      for (let i = 0; i < 100; i++) {
        last = await scrapeNode(node);
        if (sum(last, 'weft_telemetry_metrics_enabled') === (metricsOn ? 1 : 0)) break;
        await sleep(100);
      }
      assert.equal(sum(last, 'weft_telemetry_metrics_enabled'), metricsOn ? 1 : 0, `${node.name}: the new ProxyConfig was not applied within 10 s:\n${mesh.agents[0].stderr().slice(-1500)}`);
    }
  };
  const n2Lines = (pred: (l: Record<string, unknown>) => boolean) => mesh.agents[1].accessLog.filter(pred);
  const pathStarts = (prefix: string) => (l: Record<string, unknown>) => typeof l.path === 'string' && l.path.startsWith(prefix);

  before(async () => {
    if (blocker) return;
    mesh = await startMetricsMesh('tlm');
    configPath = join(mesh.dir, 'mesh.yaml');
    baseConfig = readFileSync(configPath, 'utf8');
    if (!baseConfig.endsWith('\n')) baseConfig += '\n';
  });

  after(async () => {
    if (blocker) return;
    await mesh?.close();
  });

  test('defaults: every request logged and counted', async () => {
    const { web, api } = mesh.pods;
    assert.equal((await curl(web, `http://${api.ip}:8080/before/0`)).status, 200);
    await mesh.agents[1].waitForLog(pathStarts('/before/'));
    const s = await scrapeNode(mesh.n2);
    assert.equal(sum(s, 'weft_telemetry_metrics_enabled'), 1);
    assert.equal(sum(s, 'istio_requests_total', { reporter: 'destination', source_principal: ID('web'), response_code: '200' }), 1);
  });

  test('samplingPercent 0 and metrics off: successes leave no line, a denial and a failed connection do; no Istio series, health stays', async () => {
    await applyProxyConfig({ accessLog: { samplingPercent: 0 }, telemetry: { metrics: false } }, false);
    const { web, bot, api } = mesh.pods;
    const linesBefore = mesh.agents[1].accessLog.length;
    for (let i = 0; i < 3; i++) assert.equal((await curl(web, `http://${api.ip}:8080/quiet/${i}`)).status, 200);
    // Nothing listens on 8081 in the api pod: the destination proxy's connect fails (an error line).
    await curl(web, `http://${api.ip}:8081/refused`, { timeoutMs: 3_000 });
    assert.equal((await curl(bot, `http://${api.ip}:8080/denied/0`)).status, 403);
    const denied = await mesh.agents[1].waitForLog((l) => l.path === '/denied/0');
    assert.equal(denied.decision, 'deny');
    assert.equal(denied.status, 403);
    const failed = await mesh.agents[1].waitForLog((l) => typeof l['dst.addr'] === 'string' && (l['dst.addr'] as string).endsWith(':8081'));
    assert.ok(failed.error !== undefined || (typeof failed.status === 'number' && failed.status >= 500), `the failed connection's line: ${JSON.stringify(failed)}`);
    // The denial was the last exchange: a success line written before it would be there by now.
    assert.deepEqual(n2Lines(pathStarts('/quiet/')), [], 'no line for a successful request at samplingPercent 0');
    const after = mesh.agents[1].accessLog.slice(linesBefore);
    assert.ok(after.every((l) => l.decision === 'deny' || l.error !== undefined || (typeof l.status === 'number' && (l.status >= 400 || l.status === 0))),
      `only failures and denials were logged:\n${after.map((l) => JSON.stringify(l)).join('\n')}`);

    for (const node of [mesh.n1, mesh.n2]) {
      const s = await scrapeNode(node);
      assert.equal(s.filter((x) => x.name.startsWith('istio_requests_total') || /^istio_tcp_(sent|received|connections)_/.test(x.name)).length, 0, `${node.name}: no Istio traffic series while metrics are off (istio_tcp_sockets_open is the agent's own health, as ztunnel's)`);
      assert.equal(sum(s, 'istio_build', { component: 'weft' }), 1, `${node.name}: the agent's health is still served`);
      assert.ok(sum(s, 'weft_agent_memory_bytes', { kind: 'rss' }) > 0);
    }
  });

  test('back to the defaults without restart: requests counted from zero and logged again', async () => {
    const pid = mesh.agents[1].process.pid;
    await applyProxyConfig(undefined, true);
    const { web, api } = mesh.pods;
    for (let i = 0; i < 2; i++) assert.equal((await curl(web, `http://${api.ip}:8080/again/${i}`)).status, 200);
    await mesh.agents[1].waitForLog((l) => l.path === '/again/1');
    assert.equal(n2Lines(pathStarts('/again/')).length, 2);
    // Counted once the request ends; a scrape can come a moment before (bounded retry).
    let s: Sample[] = [];
    for (let i = 0; i < 50; i++) {
      s = await scrapeNode(mesh.n2);
      if (sum(s, 'istio_requests_total', { reporter: 'destination', source_principal: ID('web'), response_code: '200' }) >= 2) break;
      await sleep(100);
    }
    assert.equal(sum(s, 'istio_requests_total', { reporter: 'destination', source_principal: ID('web'), response_code: '200' }), 2,
      'the two requests since metrics came back; the ones made while off and before are not counted');
    assert.equal(mesh.agents[1].process.pid, pid);
    assert.equal(mesh.agents[1].process.exitCode, null, 'the same agent process');
  });
});

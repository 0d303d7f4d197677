// The access log's level and sampling (telemetry/access-log-policy.ts), the gate on a real access
// logger writing to a file (core/log.ts), ProxyConfig spec.accessLog / spec.telemetry conversion
// errors by field, and the metrics switch on a real MeshMetrics fed through diagnostics_channel.
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../agent/config/parse';
import type { AccessLogConfig } from '../../agent/config/proxy-config';
import { accessLogger, wantsLine } from '../../agent/core/log';
import { accessLogGate, DEFAULT_ACCESS_LOG, lineKind, logsLine } from '../../agent/telemetry/access-log-policy';
import { connectionClosed, requestCompleted, telemetryWanted, type ConnectionEnds } from '../../agent/telemetry/events';
import { LiveView } from '../../agent/telemetry/live-view';
import { MeshMetrics } from '../../agent/telemetry/metrics';
import { MetricsSwitch } from '../../agent/telemetry/metrics-switch';

const cfg = (c: Partial<AccessLogConfig>): AccessLogConfig => ({ ...DEFAULT_ACCESS_LOG, ...c });
const never = (): number => { throw new Error('the draw was asked for where the level alone decides'); };

test('lineKind: denials by decision or the DENY flag; errors by status >= 400, no response, a flag or an error; the rest succeed', () => {
  assert.equal(lineKind({ decision: 'deny' }), 'denial');
  assert.equal(lineKind({ decision: 'allow', status: 403, flags: 'DENY' }), 'denial');
  assert.equal(lineKind({ decision: 'allow', status: 503, flags: 'UF' }), 'error');
  assert.equal(lineKind({ decision: 'allow', status: 404 }), 'error');
  assert.equal(lineKind({ decision: 'allow', status: 0 }), 'error', 'no response sent');
  assert.equal(lineKind({ decision: 'allow', status: 200, flags: 'URX' }), 'error');
  assert.equal(lineKind({ decision: 'allow', error: 'connect ECONNREFUSED' }), 'error');
  assert.equal(lineKind({ decision: 'allow', status: 399, flags: '-' }), 'success');
  assert.equal(lineKind({ decision: 'allow', status: 101 }), 'success');
  assert.equal(lineKind({ decision: 'allow', error: '' }), 'success', 'an empty error is none');
  assert.equal(lineKind({ decision: 'allow' }), 'success', 'a TCP connection that ended well');
});

test('logsLine: each level keeps its kinds; disabled keeps nothing', () => {
  const table: Array<[AccessLogConfig['level'], boolean, boolean, boolean]> = [
    ['all', true, true, true],
    ['errors', false, true, true],
    ['denials', false, false, true],
  ];
  for (const [level, success, error, denial] of table) {
    const c = cfg({ level });
    assert.equal(logsLine(c, 'success', () => 0), success, `${level} success`);
    assert.equal(logsLine(c, 'error', never), error, `${level} error`);
    assert.equal(logsLine(c, 'denial', never), denial, `${level} denial`);
    for (const kind of ['success', 'error', 'denial'] as const) assert.equal(logsLine(cfg({ level, enabled: false }), kind, never), false, `${level} ${kind} disabled`);
  }
});

test('logsLine: sampling thins successes only, by the draw; 0 and 100 need no draw', () => {
  assert.equal(logsLine(cfg({ samplingPercent: 100 }), 'success', never), true);
  assert.equal(logsLine(cfg({ samplingPercent: 0 }), 'success', never), false);
  assert.equal(logsLine(cfg({ samplingPercent: 0 }), 'error', never), true, 'errors are never sampled away');
  assert.equal(logsLine(cfg({ samplingPercent: 0 }), 'denial', never), true, 'denials are never sampled away');
  assert.equal(logsLine(cfg({ samplingPercent: 25 }), 'success', () => 24.999), true);
  assert.equal(logsLine(cfg({ samplingPercent: 25 }), 'success', () => 25), false);
  // The default draw keeps about the asked share (10,000 draws at 30 %: 3,000 ± ~4.5 sigma).
  const gate = accessLogGate(() => cfg({ samplingPercent: 30 }));
  let kept = 0;
  for (let i = 0; i < 10_000; i++) if (gate({ decision: 'allow', status: 200 })) kept++;
  assert.ok(kept > 2_800 && kept < 3_200, `kept ${kept} of 10000 at 30 %`);
});

test('a gated access logger: dropped lines never reach the file, child loggers follow the gate in force at each line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-access-gate-'));
  const path = join(dir, 'access.log');
  const fd = openSync(path, 'w');
  try {
    let config = cfg({ samplingPercent: 0 });
    const log = accessLogger(fd, { maxDelayMs: 1_000 }, accessLogGate(() => config));
    const conn = log.child({ 'src.addr': '10.0.0.1:4711' });
    const write = (status: number, decision: 'allow' | 'deny', path: string) => {
      if (wantsLine(conn, { decision, status })) conn.info({ path, status }, 'request complete');
    };
    write(200, 'allow', '/ok-sampled-away');
    write(503, 'allow', '/error');
    write(403, 'deny', '/denied');
    config = cfg({ level: 'denials' });
    write(503, 'allow', '/error-below-level');
    write(403, 'deny', '/denied-2');
    config = DEFAULT_ACCESS_LOG;
    write(200, 'allow', '/ok');
    assert.equal(wantsLine(accessLogger(fd, {}), { decision: 'allow' }), true, 'no gate: every line');
    log.flush();
    const paths = readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { path: string }).path);
    assert.deepEqual(paths, ['/error', '/denied', '/denied-2', '/ok']);
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
});

const proxyConfig = (spec: string) => parseConfig(`apiVersion: config.weft.dev/v1\nkind: ProxyConfig\nmetadata: { name: default }\nspec: ${spec}\n`, 'p.yaml');

test('ProxyConfig spec.accessLog and spec.telemetry: values by name, defaults for what is absent', () => {
  const ok = proxyConfig('{ accessLog: { level: errors, samplingPercent: 12.5 }, telemetry: { metrics: false } }');
  assert.ok(ok.ok, JSON.stringify(!ok.ok && ok.error));
  assert.deepEqual(ok.value.proxyConfig?.accessLog, { enabled: true, level: 'errors', samplingPercent: 12.5 });
  assert.deepEqual(ok.value.proxyConfig?.telemetry, { metrics: false });
  const off = proxyConfig('{ accessLog: { enabled: false }, telemetry: {} }');
  assert.ok(off.ok);
  assert.deepEqual(off.value.proxyConfig?.accessLog, { enabled: false, level: 'all', samplingPercent: 100 });
  assert.deepEqual(off.value.proxyConfig?.telemetry, { metrics: true });
  const none = proxyConfig('{}');
  assert.ok(none.ok);
  assert.equal(none.value.proxyConfig?.accessLog, undefined, 'absent: DEFAULT_ACCESS_LOG applies');
});

test('ProxyConfig spec.accessLog and spec.telemetry: unknown and bad fields are refused by field', () => {
  const bad = proxyConfig('{ accessLog: { enabled: "yes", level: warn, samplingPercent: 150, sampling: 5 }, telemetry: { metrics: 1, logs: false } }');
  assert.ok(!bad.ok);
  const fields = bad.error.map((e) => `${e.field}: ${e.message}`);
  const has = (re: RegExp) => assert.ok(fields.some((f) => re.test(f)), `${re}\n${fields.join('\n')}`);
  has(/^spec\.accessLog\.enabled: must be true or false/);
  has(/^spec\.accessLog\.level: must be one of all, errors, denials, got "warn"/);
  has(/^spec\.accessLog\.samplingPercent: must be a number from 0 to 100/);
  has(/^spec\.accessLog\.sampling: unknown field/);
  has(/^spec\.telemetry\.metrics: must be true or false/);
  has(/^spec\.telemetry\.logs: unknown field/);
  const notMapping = proxyConfig('{ accessLog: all }');
  assert.ok(!notMapping.ok);
  assert.ok(notMapping.error.some((e) => e.field === 'spec.accessLog' && /mapping/.test(e.message)), JSON.stringify(notMapping.error));
});

const ends: ConnectionEnds = { direction: 'inbound', srcIp: '10.1.0.5', srcPort: 40000, dstIp: '10.1.0.7', dstPort: 8080 };
const request = () => requestCompleted.publish({ reporter: 'destination', security: 'none', ends, protocol: 'http', status: 200, requestBytes: 0, responseBytes: 2, durationMs: 1, flags: '-' });
const requestsTotal = (text: string) => [...text.matchAll(/^istio_requests_total\{.*\} (\d+)$/gm)].reduce((s, m) => s + Number(m[1]), 0);

test('MetricsSwitch: off stops listening and leaves only what is not a mesh series, with a gauge saying so; on counts again from zero', async () => {
  const metrics = new MeshMetrics();
  const live = new LiveView({ node: 'n1' });
  const sw = new MetricsSwitch(metrics.registry, [metrics, live]);
  try {
    sw.start();
    assert.equal(telemetryWanted(), true);
    request();
    request();
    let text = await metrics.registry.metrics();
    assert.equal(requestsTotal(text), 2);
    assert.match(text, /^weft_telemetry_metrics_enabled 1$/m);

    assert.equal(sw.set(false), true);
    assert.equal(sw.set(false), false, 'applying the same switch again changes nothing');
    assert.equal(telemetryWanted(), false, 'no listener left: the proxy builds no event');
    assert.equal(connectionClosed.hasSubscribers, false);
    request();
    text = await metrics.registry.metrics();
    assert.doesNotMatch(text, /^istio_requests_total/m, 'no frozen Istio series while off');
    assert.doesNotMatch(text, /^# HELP istio_tcp/m);
    assert.match(text, /^# HELP weft_telemetry_metrics_enabled .*spec\.telemetry\.metrics/m);
    assert.match(text, /^weft_telemetry_metrics_enabled 0$/m);

    assert.equal(sw.set(true), true);
    assert.equal(telemetryWanted(), true);
    request();
    text = await metrics.registry.metrics();
    assert.equal(requestsTotal(text), 1, 'counting again from zero, the request made while off not counted');
    assert.match(text, /^weft_telemetry_metrics_enabled 1$/m);
    assert.match(text, /^# TYPE istio_tcp_connections_opened_total counter$/m, 'every mesh series is back');
  } finally {
    sw.stop();
  }
  assert.equal(telemetryWanted(), false);
});

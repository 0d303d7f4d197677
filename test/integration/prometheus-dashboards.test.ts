/**
 * Istio's own Grafana dashboards on Weft's metrics, through a real Prometheus (Debian's package):
 * the metrics tests' two-node mesh and traffic mix, a Prometheus started inside node n1's netns
 * scraping both agents' :15020 every second, then every PromQL expression of the workload, service
 * and mesh dashboards (../shared/reference/istio-telemetry/istio-dashboard-queries.json) evaluated
 * through Prometheus's HTTP API with the dashboard variables filled in as Grafana would for the
 * test's workloads. Every expression must evaluate without error and every panel must show data
 * for at least one of the test's workloads/services/reporters, except the known exceptions below.
 *
 * The ztunnel dashboard's entries are skipped: they read ztunnel's own process metrics
 * (istio_xds_*, istio_dns_*, CPU/memory by container), which Weft's agent does not emit.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killGroup } from '../../agent/sandbox/run';
import { kernelTestBlocker } from '../support/requirements';
import { RAW_CLIENT } from '../support/mesh-apps';
import { driveTrafficMix, ECHO, scrapeSettled, SHOP, sleep, startMetricsMesh, SVC, type MetricsMesh } from '../support/metrics-mesh';

const blocker = kernelTestBlocker() ?? (existsSync('/usr/bin/prometheus') ? undefined : '/usr/bin/prometheus missing (scripts/setup.sh installs Debian\'s prometheus)');
if (blocker) process.stderr.write(`\n*** SKIPPING Prometheus dashboard tests: ${blocker} ***\n\n`);

const REFERENCE = join(__dirname, '..', '..', '..', '..', 'shared', 'reference', 'istio-telemetry', 'istio-dashboard-queries.json');
const PROM_ADDR = '127.0.0.1:9090'; // n1's netns loopback: no collision with a system Prometheus or another lab
const RATE_INTERVAL = '30s'; // Grafana's $__rate_interval for a 1 s scrape interval and a short time range

interface Variable { name: string; include_all?: boolean; multi?: boolean; regex?: string; custom_values?: string }
interface Entry {
  dashboard: string; kind: string; row: string | null; panel_title: string; ref_id: string | null;
  expr: string | null; promql_parsed?: string; variable?: Variable;
}
interface QueryResult { status: string; error?: string; data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } }

/**
 * Panels that cannot show data on Weft's metrics with this traffic mix, each with why (also in
 * docs/metrics.md). The test fails if one of them starts showing data, so the list stays true.
 */
const KNOWN_NO_DATA: Array<{ dashboard: string; panels: string[]; match: RegExp; why: string }> = [
  {
    dashboard: 'Istio Workload Dashboard',
    panels: ['Outgoing Requests By Destination And Response Code', 'Outgoing Success Rate (non-5xx responses) By Destination',
      'Outgoing Request Duration By Destination', 'Outgoing Request Size By Destination', 'Response Size By Destination'],
    // the plaintext (non-mTLS) variants of the outbound HTTP panels, on the source reporter
    match: /reporter="source".*(connection_security_policy!="mutual_tls"|destination_principal!~"spiffe\.\*")|(connection_security_policy!="mutual_tls"|destination_principal!~"spiffe\.\*").*reporter="source"/,
    why: 'a meshed client calling a destination outside the mesh is passed through as TCP without parsing HTTP (as ztunnel does), so there are '
      + 'no source-reporter request metrics for plaintext: its bytes show in the outbound non-mTLS TCP panels',
  },
];

/** Grafana's regex escaping of one value of a multi-value/All variable (then written inside a PromQL string). */
const escapeValue = (v: string) => v.replace(/[\\^$*+?.()|[\]{}]/g, '\\\\$&');
/** Grafana's rendering of a multi-value or All selection in a Prometheus query. */
const multi = (values: string[]) => values.length === 1 ? escapeValue(values[0]!) : `(${values.map(escapeValue).join('|')})`;

function fill(expr: string, vars: Record<string, string>): string {
  return expr.replace(/\$(__rate_interval|__interval|__range|interval|[a-z]+)\b/g, (_whole, name: string) => {
    if (name === '__rate_interval' || name === '__interval' || name === 'interval' || name === '__range') return RATE_INTERVAL;
    const v = vars[name];
    if (v === undefined) throw new Error(`dashboard variable $${name} not filled in: ${expr}`);
    return v;
  });
}

/** A dashboard variable's values from its query's result, as Grafana extracts them (its regex over each series' text). */
function variableValues(v: Variable, r: QueryResult): string[] {
  const re = new RegExp(v.regex!.replace(/^\/(.*)\/$/, '$1'));
  const out = new Set<string>();
  for (const s of r.data?.result ?? []) {
    const text = `{${Object.entries(s.metric).map(([k, x]) => `${k}="${x}"`).join(', ')}} ${s.value[1]} ${s.value[0]}`;
    const m = re.exec(text);
    if (m?.[1] !== undefined) out.add(m[1]);
  }
  return [...out].sort();
}

interface View { label: string; chosen: Record<string, string>; qrep: string }

describe('Istio dashboards through a real Prometheus', { skip: blocker ?? false }, () => {
  let mesh: MetricsMesh | undefined;
  let prom: ChildProcess | undefined;
  let promDir: string | undefined;
  let promLog = '';
  const entries: Entry[] = (JSON.parse(readFileSync(REFERENCE, 'utf8')) as Entry[]).filter((e) => e.dashboard !== 'Istio Ztunnel Dashboard');

  /** Evaluates `exprs` at one instant through Prometheus's /api/v1/query, from inside n1's netns (one process for the batch). */
  const query = async (exprs: string[]): Promise<QueryResult[]> => {
    const script = String.raw`
      const [addr, t, list] = process.argv.slice(1);
      (async () => {
        const out = [];
        for (const q of JSON.parse(list)) {
          try {
            const r = await fetch('http://' + addr + '/api/v1/query', { method: 'POST', body: new URLSearchParams({ query: q, time: t }), signal: AbortSignal.timeout(5000) });
            out.push(await r.json());
          } catch (e) { out.push({ status: 'error', error: String(e) }); }
        }
        process.stdout.write(JSON.stringify(out));
      })();`;
    const r = await mesh!.n1.exec(process.execPath, ['-e', script, PROM_ADDR, String(Date.now() / 1000), JSON.stringify(exprs)], { timeoutMs: 30_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as QueryResult[];
  };

  const promGet = async (path: string): Promise<{ code: number; body: string }> => {
    const r = await mesh!.n1.exec('curl', ['-sS', '--max-time', '3', `http://${PROM_ADDR}${path}`], { timeoutMs: 5000 });
    return { code: r.code ?? -1, body: r.stdout + r.stderr };
  };

  /** Each target's last scrape time (ms) and health. */
  const targets = async (): Promise<Array<{ url: string; lastScrape: number; health: string; lastError: string }>> => {
    const r = await promGet('/api/v1/targets');
    assert.equal(r.code, 0, r.body);
    return (JSON.parse(r.body).data.activeTargets as Array<{ scrapeUrl: string; lastScrape: string; health: string; lastError: string }>)
      .map((t) => ({ url: t.scrapeUrl, lastScrape: Date.parse(t.lastScrape), health: t.health, lastError: t.lastError }));
  };

  /** Waits (bounded) until every target was scraped successfully after `since` (ms); returns the earliest such scrape. */
  const scrapedAfter = async (since: number): Promise<number> => {
    let last: Awaited<ReturnType<typeof targets>> = [];
    for (let i = 0; i < 60; i++) {
      last = await targets();
      if (last.length === 2 && last.every((t) => t.health === 'up' && t.lastScrape > since)) return Math.min(...last.map((t) => t.lastScrape));
      await sleep(200);
    }
    throw new Error(`Prometheus did not scrape both agents after ${new Date(since).toISOString()} within 12 s: ${JSON.stringify(last)}\n${promLog.slice(-2000)}`);
  };

  before(async () => {
    if (blocker) return;
    mesh = await startMetricsMesh('prom');
    const { n1, n2 } = mesh;
    promDir = mkdtempSync(join(tmpdir(), 'weft-prom-'));
    const config = join(promDir, 'prometheus.yml');
    writeFileSync(config, [
      'global:', '  scrape_interval: 1s', '  scrape_timeout: 900ms', '  evaluation_interval: 1s',
      'scrape_configs:', '  - job_name: weft-agent', '    metrics_path: /stats/prometheus',
      '    static_configs:', `      - targets: ['${n1.ip}:15020', '${n2.ip}:15020']`, ''].join('\n'));
    prom = n1.spawn('/usr/bin/prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${join(promDir, 'data')}`,
      `--web.listen-address=${PROM_ADDR}`, '--log.level=warn', '--storage.tsdb.retention.time=1h']);
    prom.stdout?.setEncoding('utf8').on('data', (d: string) => { promLog += d; });
    prom.stderr?.setEncoding('utf8').on('data', (d: string) => { promLog += d; });
    let ready = false;
    for (let i = 0; i < 50 && !ready && prom.exitCode === null; i++) {
      ready = (await promGet('/-/ready')).body.includes('Ready');
      if (!ready) await sleep(200);
    }
    assert.ok(ready, `Prometheus in ${n1.name}'s netns not ready on ${PROM_ADDR} after 10 s (exit ${prom.exitCode}):\n${promLog.slice(-2000)}`);

    await driveTrafficMix(mesh);
    // Plus a meshed client calling a pod outside the mesh (passthrough: source reporter, TCP, none),
    // which the outbound non-mTLS TCP panels show.
    const { web, outsider } = mesh.pods;
    await mesh.startApp(outsider);
    const echo = await web.exec(process.execPath, ['-e', RAW_CLIENT, outsider.ip, '7000', JSON.stringify(ECHO)], { timeoutMs: 8000 });
    assert.equal(JSON.parse(echo.stdout.trim()), ECHO, echo.stderr);
    await scrapeSettled([n1, n2]);
    // Two scrapes of both agents after the traffic has settled: rate() needs two samples.
    const first = await scrapedAfter(Date.now());
    await scrapedAfter(first);
  });

  after(async () => {
    if (prom) {
      killGroup(prom, 'SIGKILL');
      if (prom.exitCode === null && prom.signalCode === null) await new Promise((r) => prom!.once('exit', r));
    }
    if (promDir) rmSync(promDir, { recursive: true, force: true });
    await mesh?.close();
  });

  test('Prometheus scrapes both agents: up, with Istio request and TCP series from both reporters', async () => {
    const [up, reporters] = await query(['up{job="weft-agent"}', 'count by (reporter) (istio_tcp_connections_opened_total)']);
    assert.deepEqual(up!.data!.result.map((s) => s.value[1]), ['1', '1'], JSON.stringify(up));
    assert.deepEqual(reporters!.data!.result.map((s) => s.metric.reporter).sort(), ['destination', 'source']);
  });

  /**
   * Fills in a dashboard's variables for one view as Grafana would: custom variables from the view,
   * each query variable from its own query's result (evaluated in order), the view's choice for a
   * single-value variable (which must be among the values offered), All for the rest.
   */
  const resolveVariables = async (dashboard: string, view: View, problems: string[]): Promise<Record<string, string>> => {
    const vars: Record<string, string> = { qrep: view.qrep };
    for (const e of entries.filter((x) => x.dashboard === dashboard && x.kind === 'template_variable')) {
      const v = e.variable!;
      const [r] = await query([fill(e.promql_parsed ?? e.expr!, vars)]);
      if (r!.status !== 'success') { problems.push(`[variable $${v.name}] ${view.label}: ${r!.error}`); vars[v.name] = '.*'; continue; }
      const values = variableValues(v, r!);
      const chosen = view.chosen[v.name];
      if (chosen !== undefined) {
        if (!values.includes(chosen)) problems.push(`[variable $${v.name}] ${view.label}: offers ${JSON.stringify(values)}, not ${chosen}`);
        vars[v.name] = v.multi ? multi([chosen]) : chosen;
      } else {
        vars[v.name] = values.length === 0 ? '' : multi(values);
      }
    }
    return vars;
  };

  /**
   * Evaluates every panel query of `dashboard` in each view; returns the problems: expression errors
   * (in any view), and panels with no series in every view (unless a known exception).
   */
  const checkDashboard = async (dashboard: string, views: View[]): Promise<string[]> => {
    const problems: string[] = [];
    const panels = entries.filter((e) => e.dashboard === dashboard && e.kind === 'panel_target');
    assert.ok(panels.length > 0, `no panel entries for ${dashboard} in ${REFERENCE}`);
    const withData = new Set<Entry>();
    for (const view of views) {
      const vars = await resolveVariables(dashboard, view, problems);
      const results = await query(panels.map((p) => fill(p.expr!, vars)));
      panels.forEach((p, i) => {
        const r = results[i]!;
        if (r.status !== 'success') problems.push(`${p.row} / ${p.panel_title} [${p.ref_id}] ${view.label}: error ${r.error}`);
        else if (r.data!.result.length > 0) withData.add(p);
      });
    }
    for (const p of panels) {
      const known = KNOWN_NO_DATA.find((k) => k.dashboard === dashboard && k.panels.includes(p.panel_title) && k.match.test(p.expr!));
      const has = withData.has(p);
      if (!has && !known) problems.push(`${p.row} / ${p.panel_title} [${p.ref_id}]: no data in any view (${views.map((v) => v.label).join('; ')}): ${p.expr}`);
      if (has && known) problems.push(`${p.row} / ${p.panel_title} [${p.ref_id}]: listed as a known exception (${known.why}) but shows data now: drop it from KNOWN_NO_DATA`);
    }
    return problems;
  };

  const reporters = ['destination', 'source'];

  test('workload dashboard: every query evaluates, every panel shows data for web or api', async () => {
    const views = ['web', 'api'].flatMap((w) => reporters.map((q) => ({ label: `workload=${w} qrep=${q}`, chosen: { namespace: SHOP, workload: w }, qrep: q })));
    const problems = await checkDashboard('Istio Workload Dashboard', views);
    assert.deepEqual(problems, [], `${problems.length} problem(s):\n${problems.join('\n')}`);
  });

  test('service dashboard: every query evaluates, every panel shows data for api or echo', async () => {
    const views = ['api', 'echo'].flatMap((s) => reporters.map((q) => ({ label: `service=${SVC(s)} qrep=${q}`, chosen: { service: SVC(s) }, qrep: q })));
    const problems = await checkDashboard('Istio Service Dashboard', views);
    assert.deepEqual(problems, [], `${problems.length} problem(s):\n${problems.join('\n')}`);
  });

  test('mesh dashboard: every query evaluates and shows data', async () => {
    const problems = await checkDashboard('Istio Mesh Dashboard', [{ label: 'mesh', chosen: {}, qrep: 'destination' }]);
    assert.deepEqual(problems, [], `${problems.length} problem(s):\n${problems.join('\n')}`);
  });
});

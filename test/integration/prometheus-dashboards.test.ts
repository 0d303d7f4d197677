/**
 * Istio's own Grafana dashboards on Weft's metrics, through a real Prometheus (Debian's package):
 * the metrics tests' two-node mesh and traffic mix, a Prometheus started inside node n1's netns
 * scraping both agents' :15020 every second, then every PromQL expression of the workload, service
 * and mesh dashboards (../shared/reference/istio-telemetry/istio-dashboard-queries.json) evaluated
 * through Prometheus's HTTP API with the dashboard variables filled in as Grafana would for the
 * test's workloads. Every expression must evaluate without error and every panel must show data
 * for at least one of the test's workloads/services/reporters, except the known exceptions below.
 *
 * Prometheus scrapes through the opt-in ztunnel view (daemonset/monitoring/weft-agent-ztunnel-view.yaml):
 * its PodMonitor is translated into the scrape configuration the prometheus-operator would generate
 * (targets carrying the meta labels Kubernetes discovery gives the agent pods of daemonset/agent.yaml),
 * so a wrong selector, port or relabeling in the shipped file fails here. The view replaces
 * podmonitor.yaml, so the workload, service and mesh dashboards are checked through it too, and the
 * ztunnel dashboard's 15 queries as well: ztunnel's own series (xDS stream, workload manager, fds,
 * sockets) come from the agent under ztunnel's names.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { kernelTestBlocker } from '../support/requirements';
import { RAW_CLIENT } from '../support/mesh-apps';
import { driveTrafficMix, ECHO, NO_OVERLOAD_SHEDDING, scrapeSettled, SHOP, startMetricsMesh, SVC, type MetricsMesh } from '../support/metrics-mesh';
import { agentPodMeta, fill, multi, podMonitorJob, prometheusMissing, readManifests, startPrometheus, variableValues, type Prometheus, type Variable } from '../support/prometheus';

const blocker = kernelTestBlocker() ?? prometheusMissing();
if (blocker) process.stderr.write(`\n*** SKIPPING Prometheus dashboard tests: ${blocker} ***\n\n`);

const REFERENCE = join(__dirname, '..', '..', '..', '..', 'shared', 'reference', 'istio-telemetry', 'istio-dashboard-queries.json');
const DAEMONSET = join(__dirname, '..', '..', '..', 'daemonset');
const ZTUNNEL_VIEW = join(DAEMONSET, 'monitoring', 'weft-agent-ztunnel-view.yaml');
/** The `job` label the prometheus-operator gives the view's targets: `<namespace>/<PodMonitor name>`. */
const VIEW_JOB = 'weft-system/weft-agent-ztunnel-view';

interface Entry {
  dashboard: string; kind: string; row: string | null; panel_title: string; ref_id: string | null;
  expr: string | null; promql_parsed?: string; variable?: Variable;
}

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
  {
    dashboard: 'Istio Ztunnel Dashboard',
    panels: ['DNS Request'],
    match: /istio_dns_requests_total/,
    why: 'Weft does not proxy DNS, so there is no DNS request counter (ztunnel shows none either with DNS capture off); a counter of nothing would be invented',
  },
  {
    dashboard: 'Istio Ztunnel Dashboard',
    panels: ['Memory Usage', 'CPU Usage'],
    match: /container_(memory_working_set_bytes|cpu_usage_seconds_total)\{container="istio-proxy"/,
    why: 'container_* series come from the kubelet\'s cAdvisor, and the lab has no kubelet; the view\'s PrometheusRule that records the agent '
      + 'container\'s series under container="istio-proxy", pod="ztunnel-..." is checked with promtool on cAdvisor-shaped input (test/unit/ztunnel-view-rules.test.ts)',
  },
];

interface View { label: string; chosen: Record<string, string>; qrep: string }

describe('Istio dashboards through a real Prometheus', { skip: blocker ?? false }, () => {
  let mesh: MetricsMesh | undefined;
  let prom: Prometheus | undefined;
  const entries: Entry[] = JSON.parse(readFileSync(REFERENCE, 'utf8')) as Entry[];

  const query = (exprs: string[]) => prom!.query(exprs);

  before(async () => {
    if (blocker) return;
    mesh = await startMetricsMesh('obs9prom', { objects: [NO_OVERLOAD_SHEDDING] });
    const { n1, n2 } = mesh;
    const view = readManifests(ZTUNNEL_VIEW).find((o) => o.kind === 'PodMonitor');
    assert.ok(view, `${ZTUNNEL_VIEW} holds no PodMonitor`);
    prom = await startPrometheus(n1, [n1, n2], podMonitorJob(view, [n1, n2].map((n) => agentPodMeta(join(DAEMONSET, 'agent.yaml'), n))));

    await driveTrafficMix(mesh);
    // Plus a meshed client calling a pod outside the mesh (passthrough: source reporter, TCP, none),
    // which the outbound non-mTLS TCP panels show.
    const { web, outsider } = mesh.pods;
    await mesh.startApp(outsider);
    const echo = await web.exec(process.execPath, ['-e', RAW_CLIENT, outsider.ip, '7000', JSON.stringify(ECHO)], { timeoutMs: 8000 });
    assert.equal(JSON.parse(echo.stdout.trim()), ECHO, echo.stderr);
    await scrapeSettled([n1, n2]);
    // Two scrapes of both agents after the traffic has settled: rate() needs two samples.
    await prom.twoScrapesFromNow();
  });

  after(async () => {
    await prom?.stop();
    await mesh?.close();
  });

  test('Prometheus scrapes both agents: up, with Istio request and TCP series from both reporters', async () => {
    const [up, reporters] = await query([`up{job="${VIEW_JOB}"}`, 'count by (reporter) (istio_tcp_connections_opened_total)']);
    assert.deepEqual(up!.data!.result.map((s) => s.value[1]), ['1', '1'], JSON.stringify(up));
    assert.deepEqual(reporters!.data!.result.map((s) => s.metric.reporter).sort(), ['destination', 'source']);
  });

  test('the ztunnel view names each agent as the ztunnel dashboard looks for it: pod ztunnel-<agent pod>, app ztunnel, istio_build component ztunnel', async () => {
    const { n1, n2 } = mesh!;
    const [up, build, weftBuild, opened] = await query([`up{job="${VIEW_JOB}"}`, 'istio_build', 'istio_build{component="weft"}',
      'sum by (pod, app, node, namespace, container) (istio_tcp_connections_opened_total)']);
    const pods = [n1, n2].map((n) => `ztunnel-weft-agent-${n.name}`).sort();
    assert.deepEqual(up!.data!.result.map((s) => s.metric.pod).sort(), pods, JSON.stringify(up));
    for (const s of up!.data!.result) {
      assert.equal(s.metric.app, 'ztunnel');
      assert.equal(s.metric.namespace, 'weft-system');
      assert.equal(s.metric.container, 'agent');
      assert.equal(s.metric.pod, `ztunnel-weft-agent-${s.metric.node}`, 'the node label of podmonitor.yaml is kept');
    }
    assert.deepEqual(build!.data!.result.map((s) => s.metric.component), ['ztunnel', 'ztunnel']);
    assert.deepEqual(weftBuild!.data!.result, [], 'istio_build{component="weft"} is renamed, not copied');
    assert.deepEqual(opened!.data!.result.map((s) => s.metric.pod).sort(), pods, 'the mesh series carry the view\'s pod label');
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
      const values = variableValues(v.regex!, r!);
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

  test('ztunnel dashboard: all 15 queries evaluate, every panel but DNS and container CPU/memory shows data from the agents', async () => {
    assert.equal(entries.filter((e) => e.dashboard === 'Istio Ztunnel Dashboard' && e.kind === 'panel_target').length, 15);
    const problems = await checkDashboard('Istio Ztunnel Dashboard', [{ label: 'ztunnel', chosen: {}, qrep: 'destination' }]);
    assert.deepEqual(problems, [], `${problems.length} problem(s):\n${problems.join('\n')}`);
    // Each agent answers every agent-fed panel under its own pod (not one agent for both).
    const perPod = await query(['workload_manager_active_proxy_count', 'process_open_fds', 'istio_tcp_sockets_open', 'istio_xds_message_total']);
    // (istio_xds_message_total has a series per type URL: full states and deltas.)
    for (const r of perPod) assert.deepEqual([...new Set(r.data!.result.map((s) => s.metric.pod))].sort(), [mesh!.n1, mesh!.n2].map((n) => `ztunnel-weft-agent-${n.name}`).sort(), JSON.stringify(r));
  });
});

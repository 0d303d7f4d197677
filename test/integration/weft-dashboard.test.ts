/**
 * Weft's own Grafana dashboard (daemonset/monitoring/weft-dashboard.json) through a real Prometheus
 * (Debian's package): the metrics tests' two-node mesh and traffic mix (test/support/metrics-mesh.ts,
 * which has HTTP denied by policy shop/deny-bot) plus Service traffic through cluster IPs on node 1's
 * source proxy: an HTTPRoute retrying 503s on a Service with outlier detection (a request answered
 * 503 everywhere: one endpoint ejected, two retries made) and one on a Service whose TrafficPolicy
 * allows no retry (the retry overflows the circuit breaker). Prometheus scrapes both agents as the
 * shipped podmonitor.yaml says (translated into the prometheus-operator's scrape config); then
 *   - the new weft_* series hold what the traffic made (cross-checked with the backends' own counts
 *     and the admin API), and
 *   - every query of the dashboard, with its variables filled in as Grafana would for the test's
 *     namespace and workloads, evaluates without error and every panel shows data in some view.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { curl } from '../../agent/sandbox';
import { kernelTestBlocker } from '../support/requirements';
import { driveTrafficMix, MIX, NO_OVERLOAD_SHEDDING, scrapeSettled, SHOP, sleep, startMetricsMesh, type MetricsMesh } from '../support/metrics-mesh';
import { agentPodMeta, fill, multi, podMonitorJob, prometheusMissing, readManifests, startPrometheus, variableExpr, variableValues, type Prometheus, type QueryResult } from '../support/prometheus';
import { startBackend, type BackendHandle } from '../support/traffic-apps';

const blocker = kernelTestBlocker() ?? prometheusMissing();
if (blocker) process.stderr.write(`\n*** SKIPPING Weft dashboard test: ${blocker} ***\n\n`);

const DAEMONSET = join(__dirname, '..', '..', '..', 'daemonset');
const DASHBOARD = join(DAEMONSET, 'monitoring', 'weft-dashboard.json');
const VIPS = { flaky: '10.96.9.1', tight: '10.96.9.2' } as const;
const FQDN = (name: keyof typeof VIPS) => `${name}.${SHOP}.svc.cluster.local`;

const service = (name: keyof typeof VIPS) => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: SHOP },
  spec: { clusterIP: VIPS[name], selector: { app: 'flaky' }, ports: [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }] } });
const retryRoute = (name: keyof typeof VIPS) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: `${name}-retry`, namespace: SHOP },
  spec: { parentRefs: [{ group: '', kind: 'Service', name, port: 80 }], rules: [{ retry: { attempts: 2, codes: [503] }, backendRefs: [{ name, port: 80 }] }] } });
const trafficPolicy = (name: string, target: keyof typeof VIPS, spec: Record<string, unknown>) => ({ apiVersion: 'networking.weft.dev/v1', kind: 'TrafficPolicy',
  metadata: { name, namespace: SHOP }, spec: { targetRefs: [{ group: '', kind: 'Service', name: target }], ...spec } });

const OBJECTS = [
  service('flaky'), service('tight'), retryRoute('flaky'), retryRoute('tight'),
  // One 5xx ejects; at most half the endpoints (one of two); long enough to be ejected still when Prometheus scrapes.
  trafficPolicy('flaky-outlier', 'flaky', { outlierDetection: { consecutive5xxErrors: 1, interval: '1s', baseEjectionTime: '10m', maxEjectionPercent: 50 } }),
  // No retry may be in flight: the route's retry overflows the breaker (kind retry) and the 503 stands.
  trafficPolicy('tight-limits', 'tight', { connectionPool: { http: { maxRetries: 0 } } }),
];

interface Target { expr: string; refId: string }
interface Panel { type: string; title: string; targets?: Target[] }
interface TemplateVar { name: string; type: string; query: string; regex?: string; multi?: boolean; includeAll?: boolean; allValue?: string }
interface Dashboard { panels: Panel[]; templating: { list: TemplateVar[] } }

/**
 * Panels that cannot show data with this traffic mix, each with why. The test fails if one of them
 * starts showing data, so the list stays true. (Empty: the mix covers every panel.)
 */
const KNOWN_NO_DATA: Array<{ panel: string; why: string }> = [];

/** One way of looking at the dashboard: a choice per variable (undefined: All). */
interface View { label: string; namespace?: string; workload?: string; qrep: 'source' | 'destination' }

describe('Weft\'s own dashboard through a real Prometheus', { skip: blocker ?? false }, () => {
  let mesh: MetricsMesh | undefined;
  let prom: Prometheus | undefined;
  let dir: string | undefined;
  const backends: BackendHandle[] = [];
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;

  /** The source proxy's live state of a Service port on node 1 (what `weft status` shows). */
  const servicePort = async (name: keyof typeof VIPS): Promise<{ ejections: number; ejectedNow: number; overflows: Record<string, number> }> => {
    const r = await mesh!.n1.exec('curl', ['-sS', '--max-time', '5', 'http://127.0.0.1:15000/services']);
    assert.equal(r.code, 0, r.stderr);
    const st = (JSON.parse(r.stdout) as Array<{ servicePort: string; ejections: number; ejectedNow: number; overflows: Record<string, number> }>)
      .find((x) => x.servicePort === `${SHOP}/${name}:80`);
    assert.ok(st, `admin /services lists ${SHOP}/${name}:80: ${r.stdout}`);
    return st;
  };

  before(async () => {
    if (blocker) return;
    dir = mkdtempSync(join(tmpdir(), 'weft-dsh-'));
    mesh = await startMetricsMesh('obs9dsh', {
      objects: [...OBJECTS, NO_OVERLOAD_SHEDDING],
      pods: async (_n1, n2) => ({
        flaky1: await n2.pod('flaky1', { namespace: SHOP, serviceAccount: 'flaky', labels: { app: 'flaky' } }),
        flaky2: await n2.pod('flaky2', { namespace: SHOP, serviceAccount: 'flaky', labels: { app: 'flaky' } }),
      }),
    });
    const { n1, n2 } = mesh;
    for (const p of Object.values(mesh.extraPods)) backends.push(startBackend(p, 8080, join(dir, `${p.name}.ctl`)));
    await Promise.all(backends.map((b) => b.ready));
    // Scraped as the shipped PodMonitor says (translated into the prometheus-operator's scrape config).
    const podMonitor = readManifests(join(DAEMONSET, 'monitoring', 'podmonitor.yaml')).find((o) => o.kind === 'PodMonitor');
    assert.ok(podMonitor, 'daemonset/monitoring/podmonitor.yaml holds a PodMonitor');
    prom = await startPrometheus(n1, [n1, n2], podMonitorJob(podMonitor, [n1, n2].map((n) => agentPodMeta(join(DAEMONSET, 'agent.yaml'), n))));

    await driveTrafficMix(mesh);
    const { web } = mesh.pods;
    // Service traffic from web (node 1) through the cluster IPs.
    for (let i = 0; i < 3; i++) assert.equal((await curl(web, `http://${VIPS.flaky}/ok/${i}`)).status, 200);
    assert.equal((await curl(web, `http://${VIPS.flaky}/fail?status=503`)).status, 503, 'every try answered 503');
    assert.equal((await curl(web, `http://${VIPS.tight}/fail?status=503`)).status, 503);
    // The source proxy has counted the ejection and the overflow (it does so before answering, so no wait is needed; bounded anyway).
    for (let i = 0; i < 20 && (await servicePort('flaky')).ejections === 0; i++) await sleep(100);
    await scrapeSettled([n1, n2]);
    await prom.twoScrapesFromNow();
  });

  after(async () => {
    await prom?.stop();
    await mesh?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The single sample of an instant query (fails on none or several). */
  const single = async (expr: string): Promise<number> => {
    const [r] = await prom!.query([expr]);
    assert.equal(r!.status, 'success', `${expr}: ${r!.error}`);
    assert.equal(r!.data!.result.length, 1, `${expr}: ${JSON.stringify(r!.data!.result)}`);
    return Number(r!.data!.result[0]!.value[1]);
  };

  test('the weft_* series hold what the traffic made: retries, ejection, breaker overflow, denials by policy, agent state', async () => {
    // What the backends themselves saw: the failing request reached them three times (one try, two retries), the tight one once.
    const seen = (prefix: string) => backends.reduce((n, b) => n + b.seen(prefix).length, 0);
    assert.equal(seen('/fail'), 3 + 1, JSON.stringify(backends.map((b) => b.requests)));
    const flaky = `destination_service="${FQDN('flaky')}"`;
    const tight = `destination_service="${FQDN('tight')}"`;
    assert.equal(await single(`sum(weft_upstream_retries_total{${flaky}})`), 2);
    assert.equal(await single(`sum(weft_upstream_retries_total{${tight}})`), 0);
    assert.equal(await single(`sum(weft_outlier_ejections_total{${flaky}})`), 1);
    assert.equal(await single(`sum(weft_outlier_ejected_endpoints{${flaky}})`), 1);
    assert.equal(await single(`sum(weft_circuit_breaker_overflows_total{${tight}, kind="retry"})`), 1);
    assert.equal(await single(`sum(weft_circuit_breaker_overflows_total{${tight}, kind!="retry"})`), 0);
    // The same as the admin API says.
    const adminTight = await servicePort('tight');
    assert.equal(adminTight.overflows.retry, 1);
    assert.equal((await servicePort('flaky')).ejectedNow, 1);
    // Denials, by the policy that decided them: the mix's bot → api requests, at the destination proxy.
    assert.equal(await single(`sum(weft_authorization_denials_total{policy="${SHOP}/deny-bot", reporter="destination", source_workload="bot", destination_workload="api"})`), MIX.denied);
    assert.equal(await single('sum(weft_authorization_denials_total{policy!="shop/deny-bot"}) or vector(0)'), 0, 'no other denial');
    // Agent state: both connected, on the same config generation; the redirect programs counted IPv4 connects.
    const [connected, generation] = await prom!.query(['weft_agent_control_plane_connected', 'weft_agent_config_generation']);
    assert.deepEqual(connected!.data!.result.map((s) => s.value[1]), ['1', '1']);
    const generations = generation!.data!.result.map((s) => Number(s.value[1]));
    assert.equal(generations.length, 2);
    assert.ok(generations[0]! > 0 && generations[0] === generations[1], `generations ${generations}`);
    assert.ok(await single(`sum(weft_redirect_events_total{reason="redirect4", instance="${mesh!.n1.ip}:15020"})`) > 0);
    // Open connections per pod agree, on each node and in each direction, with the Istio TCP series of the same scrape:
    // opened minus closed (the source proxy keeps pooled connections to the Service endpoints open, so not all are 0).
    for (const node of [mesh!.n1.name, mesh!.n2.name]) {
      for (const [direction, reporter] of [['inbound', 'destination'], ['outbound', 'source']]) {
        const open = await single(`sum(weft_pod_open_connections{direction="${direction}", node="${node}"}) or vector(0)`);
        const tcp = await single(`(sum(istio_tcp_connections_opened_total{reporter="${reporter}", node="${node}"}) or vector(0)) - (sum(istio_tcp_connections_closed_total{reporter="${reporter}", node="${node}"}) or vector(0))`);
        assert.equal(open, tcp, `${node} ${direction}: per-pod gauge ${open}, Istio opened - closed ${tcp}`);
      }
    }
    assert.equal(await single(`count(weft_pod_open_connections{pod_namespace="${SHOP}", pod_name="web", direction="outbound", node="${mesh!.n1.name}"})`), 1);
    assert.equal(await single(`count(weft_pod_open_connections{pod_namespace="${SHOP}", pod_name="flaky1", direction="inbound", node="${mesh!.n2.name}"})`), 1);
  });

  /** Each query variable's values (its query evaluated, its regex applied) and the value Grafana renders for the view's choice. */
  const resolveVariables = async (view: View, problems: string[]): Promise<Record<string, string>> => {
    const vars: Record<string, string> = { qrep: view.qrep };
    for (const v of dashboard.templating.list) {
      if (v.type !== 'query') continue;
      const [r] = await prom!.query([fill(variableExpr(v.query), vars)]);
      if (r!.status !== 'success') { problems.push(`[variable $${v.name}] ${view.label}: ${r!.error}`); vars[v.name] = '.*'; continue; }
      const values = variableValues(v.regex!, r!);
      const chosen = v.name === 'namespace' ? view.namespace : v.name === 'workload' ? view.workload : undefined;
      if (chosen === undefined) {
        assert.ok(v.includeAll && v.allValue !== undefined, `$${v.name} offers All`);
        vars[v.name] = v.allValue!;
      } else {
        if (!values.includes(chosen)) problems.push(`[variable $${v.name}] ${view.label}: offers ${JSON.stringify(values)}, not ${chosen}`);
        vars[v.name] = v.multi ? multi([chosen]) : chosen;
      }
    }
    return vars;
  };

  test('every query of weft-dashboard.json evaluates and every panel shows data for the test\'s namespace and workloads', async (t) => {
    const panels = dashboard.panels.filter((p) => p.type !== 'row');
    const targets = panels.flatMap((p) => (p.targets ?? []).map((x) => ({ panel: p.title, ...x })));
    assert.ok(targets.length >= 30, `${targets.length} queries`);
    const views: View[] = [];
    for (const qrep of ['destination', 'source'] as const) {
      views.push({ label: `All qrep=${qrep}`, qrep });
      for (const workload of ['api', 'flaky']) views.push({ label: `namespace=${SHOP} workload=${workload} qrep=${qrep}`, namespace: SHOP, workload, qrep });
    }
    const problems: string[] = [];
    const withData = new Map<string, string[]>();
    for (const view of views) {
      const vars = await resolveVariables(view, problems);
      const results: QueryResult[] = await prom!.query(targets.map((x) => fill(x.expr, vars)));
      targets.forEach((x, i) => {
        const r = results[i]!;
        const id = `${x.panel} [${x.refId}]`;
        if (r.status !== 'success') problems.push(`${id} ${view.label}: error ${r.error}`);
        else if (r.data!.result.length > 0) withData.set(id, [...(withData.get(id) ?? []), view.label]);
      });
    }
    for (const x of targets) {
      const id = `${x.panel} [${x.refId}]`;
      const known = KNOWN_NO_DATA.find((k) => k.panel === x.panel);
      if (!withData.has(id) && !known) problems.push(`${id}: no data in any view: ${x.expr}`);
      if (withData.has(id) && known) problems.push(`${id}: listed as a known exception (${known.why}) but shows data now`);
    }
    t.diagnostic(`${targets.length} queries in ${panels.length} panels, ${views.length} views; with data in the namespace=${SHOP} views: `
      + `${[...withData.values()].filter((v) => v.some((l) => l.startsWith('namespace='))).length}`);
    assert.deepEqual(problems, [], `${problems.length} problem(s):\n${problems.join('\n')}`);
  });
});

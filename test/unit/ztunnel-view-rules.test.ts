/**
 * The ztunnel view's PrometheusRule (daemonset/monitoring/weft-agent-ztunnel-view.yaml), run by
 * `promtool test rules` (Debian's prometheus package) on input series shaped like the kubelet's
 * cAdvisor series: the agent container's memory and CPU are recorded again under
 * container="istio-proxy", pod="ztunnel-<agent pod>", and the ztunnel dashboard's own "Memory Usage"
 * and "CPU Usage" queries (read from istio-dashboard-queries.json, not copied) answer with them;
 * other containers, the pod-level cgroup and the pause container are not recorded. The lab has no
 * kubelet, so this is where the rule is checked (the Prometheus dashboard test lists those two panels
 * as known to have no data there).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';

const PROMTOOL = '/usr/bin/promtool';
const missing = existsSync(PROMTOOL) ? undefined : `${PROMTOOL} missing (scripts/setup.sh installs Debian's prometheus, which ships it)`;
if (missing) process.stderr.write(`\n*** SKIPPING ztunnel view rule tests: ${missing} ***\n\n`);

const VIEW = join(__dirname, '..', '..', '..', 'daemonset', 'monitoring', 'weft-agent-ztunnel-view.yaml');
const REFERENCE = join(__dirname, '..', '..', '..', '..', 'shared', 'reference', 'istio-telemetry', 'istio-dashboard-queries.json');

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const docs = parseAllDocuments(readFileSync(VIEW, 'utf8')).map((d) => d.toJS() as Obj);
const rule = docs.find((d) => d.kind === 'PrometheusRule');
const panels = (JSON.parse(readFileSync(REFERENCE, 'utf8')) as Array<{ dashboard: string; kind: string; panel_title: string; expr: string }>)
  .filter((e) => e.dashboard === 'Istio Ztunnel Dashboard' && e.kind === 'panel_target');
const dashboardExpr = (title: string) => {
  const e = panels.find((p) => p.panel_title === title);
  assert.ok(e, `the ztunnel dashboard has a panel ${title}`);
  return e.expr.replace(/\$__rate_interval/g, '5m');
};

/** Labels the kubelet's cAdvisor endpoint gives a container's series, as kube-prometheus-stack scrapes it. */
const cadvisor = (o: { namespace: string; pod: string; container: string; node: string }) => ({
  endpoint: 'https-metrics', instance: `${o.node}:10250`, job: 'kubelet', metrics_path: '/metrics/cadvisor', node: o.node, service: 'kubelet',
  namespace: o.namespace, pod: o.pod, container: o.container,
  id: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${o.pod.replace(/-/g, '_')}.slice${o.container ? `/cri-containerd-${o.container}.scope` : ''}`,
  ...(o.container && o.container !== 'POD' ? { image: `example.org/${o.container}:1`, name: `${o.container}-${o.node}` } : {}),
});
const series = (name: string, labels: Record<string, string>) => `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`;

const AGENTS = [{ pod: 'weft-agent-x7k2p', node: '10.0.0.11' }, { pod: 'weft-agent-q9z4m', node: '10.0.0.12' }];
const MIB = 1024 * 1024;

/** promtool's unit-test file for `rules`, with the input and the expected answers. */
function testFile(rulesFile: string): object {
  const input: Array<{ series: string; values: string }> = [];
  AGENTS.forEach((a, i) => {
    const agent = cadvisor({ namespace: 'weft-system', pod: a.pod, container: 'agent', node: a.node });
    input.push({ series: series('container_memory_working_set_bytes', agent), values: `${(50 + i) * MIB}+${MIB}x10` });
    input.push({ series: series('container_cpu_usage_seconds_total', agent), values: `0+${30 * (i + 1)}x10` }); // 0.5 and 1 CPU s per s
    // the pod's own cgroup (container="") and the pause container: not the agent's container
    for (const container of ['', 'POD']) {
      input.push({ series: series('container_memory_working_set_bytes', cadvisor({ namespace: 'weft-system', pod: a.pod, container, node: a.node })), values: `${900 * MIB}x10` });
      input.push({ series: series('container_cpu_usage_seconds_total', cadvisor({ namespace: 'weft-system', pod: a.pod, container, node: a.node })), values: '0+600x10' });
    }
  });
  // a container named agent elsewhere, and an application's container
  for (const c of [{ namespace: 'ci', pod: 'weft-agent-build-1', container: 'agent' }, { namespace: 'shop', pod: 'web-5d8f7', container: 'web' }]) {
    input.push({ series: series('container_memory_working_set_bytes', cadvisor({ ...c, node: '10.0.0.11' })), values: `${700 * MIB}x10` });
    input.push({ series: series('container_cpu_usage_seconds_total', cadvisor({ ...c, node: '10.0.0.11' })), values: '0+300x10' });
  }
  const at10 = (i: number) => (50 + i + 10) * MIB; // memory at 10m
  const recorded = AGENTS.map((a) => ({ ...cadvisor({ namespace: 'weft-system', pod: `ztunnel-${a.pod}`, container: 'istio-proxy', node: a.node }),
    // label_replace keeps every other label as cAdvisor wrote it (id, image, name name the agent's container)
    id: cadvisor({ namespace: 'weft-system', pod: a.pod, container: 'agent', node: a.node }).id,
    image: 'example.org/agent:1', name: `agent-${a.node}` }));
  return {
    rule_files: [rulesFile],
    evaluation_interval: '1m',
    tests: [{
      interval: '1m',
      input_series: input,
      promql_expr_test: [
        { expr: 'container_memory_working_set_bytes{container="istio-proxy"}', eval_time: '10m',
          exp_samples: recorded.map((l, i) => ({ labels: series('container_memory_working_set_bytes', l), value: at10(i) })) },
        { expr: dashboardExpr('Memory Usage'), eval_time: '10m',
          exp_samples: AGENTS.map((a, i) => ({ labels: `{pod="ztunnel-${a.pod}"}`, value: at10(i) })) },
        { expr: dashboardExpr('CPU Usage'), eval_time: '10m',
          exp_samples: AGENTS.map((a, i) => ({ labels: `{pod="ztunnel-${a.pod}"}`, value: (30 * (i + 1)) / 60 })) },
        // nothing else was recorded under the dashboard's names
        { expr: 'count(container_memory_working_set_bytes{container="istio-proxy"}) + count(container_cpu_usage_seconds_total{container="istio-proxy"})', eval_time: '10m',
          exp_samples: [{ labels: '{}', value: 4 }] },
      ],
    }],
  };
}

/** Runs promtool on `groups` (a PrometheusRule's spec.groups) with the test above; returns its exit code and output. */
function promtool(groups: unknown, dir: string): { code: number | null; out: string } {
  writeFileSync(join(dir, 'rules.yml'), JSON.stringify({ groups }, null, 1));
  writeFileSync(join(dir, 'test.yml'), JSON.stringify(testFile('rules.yml'), null, 1));
  const r = spawnSync(PROMTOOL, ['test', 'rules', 'test.yml'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: `${r.stdout}${r.stderr}${r.error ? String(r.error) : ''}` };
}

describe('ztunnel view: the PrometheusRule for the ztunnel dashboard\'s container panels', { skip: missing ?? false }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-promtool-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('the file holds a PodMonitor and a PrometheusRule of the monitoring.coreos.com/v1 API, in weft-system', () => {
    assert.deepEqual(docs.map((d) => `${d.apiVersion} ${d.kind} ${d.metadata.namespace}/${d.metadata.name}`), [
      'monitoring.coreos.com/v1 PodMonitor weft-system/weft-agent-ztunnel-view',
      'monitoring.coreos.com/v1 PrometheusRule weft-system/weft-agent-ztunnel-view',
    ]);
    assert.deepEqual(rule!.spec.groups.flatMap((g: Obj) => g.rules.map((r: Obj) => r.record)), ['container_memory_working_set_bytes', 'container_cpu_usage_seconds_total']);
  });

  test('promtool: the agent container\'s cAdvisor memory and CPU answer the ztunnel dashboard\'s own queries under pod ztunnel-<agent pod>, nothing else recorded', () => {
    const r = promtool(rule!.spec.groups, dir);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /SUCCESS/);
  });

  test('the check can fail: a rule selecting the wrong container records nothing and promtool says so', () => {
    const broken = JSON.parse(JSON.stringify(rule!.spec.groups).replace(/container=\\"agent\\"/g, 'container=\\"weft\\"'));
    assert.notDeepEqual(broken, rule!.spec.groups, 'the mutation changed the rules');
    const r = promtool(broken, dir);
    assert.notEqual(r.code, 0, r.out);
    assert.match(r.out, /FAILED/);
  });
});

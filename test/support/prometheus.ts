/**
 * A real Prometheus (Debian's package) for the dashboard tests: started inside a lab node's netns on
 * that netns's loopback (no collision with a system Prometheus or another lab), scraping the given
 * agents' :15020/stats/prometheus every second; queried through its HTTP API from inside the same
 * netns. Also Grafana's way of filling dashboard variables into a query, shared by the tests of
 * Istio's dashboards and of Weft's own.
 */
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { LabNode } from '../../agent/sandbox';
import { killGroup } from '../../agent/sandbox/run';

export const PROMETHEUS_BIN = '/usr/bin/prometheus';
/** Why the Prometheus tests cannot run here, or undefined. */
export const prometheusMissing = (): string | undefined =>
  existsSync(PROMETHEUS_BIN) ? undefined : `${PROMETHEUS_BIN} missing (scripts/setup.sh installs Debian's prometheus)`;

const PROM_ADDR = '127.0.0.1:9090'; // the node's netns loopback
/** Grafana's $__rate_interval (and $__interval, $__range) for a 1 s scrape interval and a short time range. */
export const RATE_INTERVAL = '30s';
export const JOB = 'weft-agent';

export interface QueryResult {
  status: string;
  error?: string;
  data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

export interface ScrapeTarget { url: string; lastScrape: number; health: string; lastError: string }

export interface Prometheus {
  /** Evaluates `exprs` at one instant (now), from inside the node's netns (one process for the batch). */
  query(exprs: string[]): Promise<QueryResult[]>;
  /** Each target's last scrape time (ms) and health. */
  targets(): Promise<ScrapeTarget[]>;
  /** Waits (bounded) until every target was scraped successfully after `since` (ms); returns the earliest such scrape. */
  scrapedAfter(since: number): Promise<number>;
  /** Two scrapes of every target from now on: rate() needs two samples after the traffic. */
  twoScrapesFromNow(): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One Prometheus `scrape_configs` entry (written as JSON, which is YAML). */
export interface ScrapeJob { job_name: string; [field: string]: unknown }

/**
 * Starts Prometheus in `node`'s netns scraping `scrapeNodes`' agents (metrics path as the agent
 * manifest's annotation says; or with `job`, that scrape configuration, e.g. podMonitorJob()'s) and
 * waits (bounded) until it is ready. On failure it is stopped before the error is thrown.
 */
export async function startPrometheus(node: LabNode, scrapeNodes: LabNode[], job?: ScrapeJob): Promise<Prometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-prom-'));
  const config = join(dir, 'prometheus.yml');
  const scrape: ScrapeJob = job ?? { job_name: JOB, metrics_path: '/stats/prometheus', static_configs: [{ targets: scrapeNodes.map((n) => `${n.ip}:15020`) }] };
  writeFileSync(config, JSON.stringify({ global: { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' }, scrape_configs: [scrape] }, null, 1));
  let log = '';
  let prom: ChildProcess | undefined;
  const stop = async () => {
    if (prom) {
      killGroup(prom, 'SIGKILL');
      if (prom.exitCode === null && prom.signalCode === null) await new Promise((r) => prom!.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const get = async (path: string): Promise<{ code: number; body: string }> => {
    const r = await node.exec('curl', ['-sS', '--max-time', '3', `http://${PROM_ADDR}${path}`], { timeoutMs: 5000 });
    return { code: r.code ?? -1, body: r.stdout + r.stderr };
  };

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
    const r = await node.exec(process.execPath, ['-e', script, PROM_ADDR, String(Date.now() / 1000), JSON.stringify(exprs)], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as QueryResult[];
  };

  const targets = async (): Promise<ScrapeTarget[]> => {
    const r = await get('/api/v1/targets');
    assert.equal(r.code, 0, r.body);
    return (JSON.parse(r.body).data.activeTargets as Array<{ scrapeUrl: string; lastScrape: string; health: string; lastError: string }>)
      .map((t) => ({ url: t.scrapeUrl, lastScrape: Date.parse(t.lastScrape), health: t.health, lastError: t.lastError }));
  };

  const scrapedAfter = async (since: number): Promise<number> => {
    let last: ScrapeTarget[] = [];
    for (let i = 0; i < 60; i++) {
      last = await targets();
      if (last.length === scrapeNodes.length && last.every((t) => t.health === 'up' && t.lastScrape > since)) return Math.min(...last.map((t) => t.lastScrape));
      await sleep(200);
    }
    throw new Error(`Prometheus did not scrape all ${scrapeNodes.length} agents after ${new Date(since).toISOString()} within 12 s: ${JSON.stringify(last)}\n${log.slice(-2000)}`);
  };

  try {
    prom = node.spawn(PROMETHEUS_BIN, [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=${PROM_ADDR}`, '--log.level=warn', '--storage.tsdb.retention.time=1h']);
    prom.stdout?.setEncoding('utf8').on('data', (d: string) => { log += d; });
    prom.stderr?.setEncoding('utf8').on('data', (d: string) => { log += d; });
    let ready = false;
    for (let i = 0; i < 50 && !ready && prom.exitCode === null; i++) {
      ready = (await get('/-/ready')).body.includes('Ready');
      if (!ready) await sleep(200);
    }
    assert.ok(ready, `Prometheus in ${node.name}'s netns not ready on ${PROM_ADDR} after 10 s (exit ${prom.exitCode}):\n${log.slice(-2000)}`);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    query, targets, scrapedAfter, stop,
    async twoScrapesFromNow() {
      const first = await scrapedAfter(Date.now());
      await scrapedAfter(first);
    },
  };
}

/** A dashboard template variable as the tests read it. */
export interface Variable { name: string; include_all?: boolean; multi?: boolean; regex?: string; custom_values?: string }

/** Grafana's regex escaping of one value of a multi-value/All variable (then written inside a PromQL string). */
export const escapeValue = (v: string) => v.replace(/[\\^$*+?.()|[\]{}]/g, '\\\\$&');
/** Grafana's rendering of a multi-value or All selection in a Prometheus query. */
export const multi = (values: string[]) => values.length === 1 ? escapeValue(values[0]!) : `(${values.map(escapeValue).join('|')})`;

/** `expr` with Grafana's built-in intervals and the dashboard variables `vars` filled in; an unfilled variable throws. */
export function fill(expr: string, vars: Record<string, string>): string {
  return expr.replace(/\$(__rate_interval|__interval|__range|interval|[a-z]+)\b/g, (_whole, name: string) => {
    if (name === '__rate_interval' || name === '__interval' || name === 'interval' || name === '__range') return RATE_INTERVAL;
    const v = vars[name];
    if (v === undefined) throw new Error(`dashboard variable $${name} not filled in: ${expr}`);
    return v;
  });
}

/** A dashboard variable's values from its query's result, as Grafana extracts them (its regex over each series' text). */
export function variableValues(regex: string, r: QueryResult): string[] {
  const re = new RegExp(regex.replace(/^\/(.*)\/$/, '$1'));
  const out = new Set<string>();
  for (const s of r.data?.result ?? []) {
    const text = `{${Object.entries(s.metric).map(([k, x]) => `${k}="${x}"`).join(', ')}} ${s.value[1]} ${s.value[0]}`;
    const m = re.exec(text);
    if (m?.[1] !== undefined) out.add(m[1]);
  }
  return [...out].sort();
}

/** Grafana's `query_result(expr)` variable query is the instant query `expr`. */
export const variableExpr = (query: string) => query.replace(/^query_result\(([\s\S]*)\)$/, '$1');

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The Kubernetes objects of a YAML file (every document); a document with errors throws naming the file. */
export function readManifests(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d, i) => {
    if (d.errors.length > 0) throw new Error(`${file} document ${i + 1}: ${d.errors.map(String).join('; ')}`);
    return d.toJS() as Obj;
  });
}

/** A relabeling as the prometheus-operator writes it into Prometheus' config (camelCase fields to snake_case, action lower-cased). */
export function relabelConfig(r: Obj): Obj {
  const out: Obj = {};
  const names: Record<string, string> = { sourceLabels: 'source_labels', separator: 'separator', targetLabel: 'target_label', regex: 'regex',
    modulus: 'modulus', replacement: 'replacement', action: 'action' };
  for (const [k, v] of Object.entries(r)) {
    const name = names[k];
    if (name === undefined) throw new Error(`relabeling field ${k} is not one the prometheus-operator knows: ${JSON.stringify(r)}`);
    out[name] = k === 'action' ? String(v).toLowerCase() : v;
  }
  return out;
}

const sanitize = (name: string) => name.replace(/[^a-zA-Z0-9_]/g, '_');

/**
 * The Kubernetes service-discovery meta labels Prometheus gives the target of an agent pod on
 * `node` (pod `weft-agent-<node>` of daemonset/agent.yaml's DaemonSet, its metrics port), for
 * podMonitorJob()'s static targets.
 */
export function agentPodMeta(daemonSetFile: string, node: LabNode): { address: string; labels: Record<string, string> } {
  const ds = readManifests(daemonSetFile).find((o) => o.kind === 'DaemonSet');
  assert.ok(ds, `${daemonSetFile} has no DaemonSet`);
  const tpl = ds.spec.template;
  const container = (tpl.spec.containers as Obj[])[0]!;
  const port = (container.ports as Obj[]).find((p) => p.containerPort === 15020);
  assert.ok(port, `${daemonSetFile}: the agent container has no port 15020`);
  const labels: Record<string, string> = {
    __meta_kubernetes_namespace: ds.metadata.namespace,
    __meta_kubernetes_pod_name: `${ds.metadata.name}-${node.name}`,
    __meta_kubernetes_pod_node_name: node.name,
    __meta_kubernetes_pod_container_name: container.name,
    __meta_kubernetes_pod_container_port_name: port.name,
    __meta_kubernetes_pod_container_port_number: String(port.containerPort),
  };
  for (const [k, v] of Object.entries(tpl.metadata.labels as Record<string, string>)) {
    labels[`__meta_kubernetes_pod_label_${sanitize(k)}`] = v;
    labels[`__meta_kubernetes_pod_labelpresent_${sanitize(k)}`] = 'true';
  }
  return { address: `${node.ip}:${port.containerPort}`, labels };
}

/**
 * The scrape configuration the prometheus-operator generates for a PodMonitor's first endpoint
 * (the part Weft's files use: selector and port kept by relabeling, the namespace/container/pod/
 * job/endpoint target labels, then the file's relabelings and metricRelabelings), with static
 * targets carrying the meta labels Kubernetes discovery would give them (agentPodMeta). A wrong
 * selector, port, relabeling or metric relabeling in the file shows in what Prometheus scrapes.
 * The scrape interval is the test's (1 s), not the file's.
 */
export function podMonitorJob(podMonitor: Obj, targets: Array<{ address: string; labels: Record<string, string> }>): ScrapeJob {
  assert.equal(podMonitor.kind, 'PodMonitor');
  const { name, namespace } = podMonitor.metadata as { name: string; namespace: string };
  const ep = (podMonitor.spec.podMetricsEndpoints as Obj[])[0]!;
  const keep = Object.entries(podMonitor.spec.selector.matchLabels as Record<string, string>).map(([k, v]) => ({ action: 'keep',
    source_labels: [`__meta_kubernetes_pod_label_${sanitize(k)}`, `__meta_kubernetes_pod_labelpresent_${sanitize(k)}`], regex: `(${v});true` }));
  return {
    job_name: `podMonitor/${namespace}/${name}/0`,
    honor_labels: ep.honorLabels ?? false,
    metrics_path: ep.path ?? '/metrics',
    static_configs: targets.map((t) => ({ targets: [t.address], labels: t.labels })),
    relabel_configs: [
      ...keep,
      { action: 'keep', source_labels: ['__meta_kubernetes_namespace'], regex: (podMonitor.spec.namespaceSelector?.matchNames as string[] ?? [namespace]).join('|') },
      { action: 'keep', source_labels: ['__meta_kubernetes_pod_container_port_name'], regex: ep.port },
      { source_labels: ['__meta_kubernetes_namespace'], target_label: 'namespace' },
      { source_labels: ['__meta_kubernetes_pod_container_name'], target_label: 'container' },
      { source_labels: ['__meta_kubernetes_pod_name'], target_label: 'pod' },
      { target_label: 'job', replacement: `${namespace}/${name}` },
      { target_label: 'endpoint', replacement: ep.port },
      ...((ep.relabelings ?? []) as Obj[]).map(relabelConfig),
    ],
    metric_relabel_configs: ((ep.metricRelabelings ?? []) as Obj[]).map(relabelConfig),
  };
}

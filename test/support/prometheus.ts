/**
 * A real Prometheus (Debian's package) for the dashboard tests: started inside a lab node's netns on
 * that netns's loopback (no collision with a system Prometheus or another lab), scraping the given
 * agents' :15020/stats/prometheus every second; queried through its HTTP API from inside the same
 * netns. Also Grafana's way of filling dashboard variables into a query, shared by the tests of
 * Istio's dashboards and of Weft's own.
 */
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

/**
 * Starts Prometheus in `node`'s netns scraping `scrapeNodes`' agents (metrics path as the agent
 * manifest's annotation says) and waits (bounded) until it is ready. On failure it is stopped
 * before the error is thrown.
 */
export async function startPrometheus(node: LabNode, scrapeNodes: LabNode[]): Promise<Prometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-prom-'));
  const config = join(dir, 'prometheus.yml');
  writeFileSync(config, [
    'global:', '  scrape_interval: 1s', '  scrape_timeout: 900ms', '  evaluation_interval: 1s',
    'scrape_configs:', `  - job_name: ${JOB}`, '    metrics_path: /stats/prometheus',
    '    static_configs:', `      - targets: [${scrapeNodes.map((n) => `'${n.ip}:15020'`).join(', ')}]`, ''].join('\n'));
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

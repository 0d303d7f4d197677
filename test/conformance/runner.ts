/**
 * Plays the conformance tests against a ConformanceLab: per test, apply its routes (and wait until
 * they are in force or refused), run each case from its client pod, decide it by the convergence
 * rule (convergence.ts) on upstream's checks and the stricter ones (judge.ts, weighted.ts), then
 * remove the routes. Tests whose features are not all claimed are skipped, not run.
 */
import type { GammaCase, GammaData, GammaTest, RequestCase, WeightedCase } from './cases';
import { KNOWN_EXCEPTIONS } from './claims';
import type { ClientAsk, ClientReply } from './client';
import { decide, UPSTREAM_RULE, type ConfigState, type ConvergenceRule } from './convergence';
import { judgeRequest, passesStrict, passesUpstream, type Judgement, type SentRequest } from './judge';
import type { ConformanceLab } from './mesh-lab';
import type { Observation } from './observation';
import { unclaimedFeatures, type CaseOutcome, type TestOutcome } from './report';
import { judgeBatch } from './weighted';

export interface RunOptions {
  /** ShortNames to run; empty = all */
  only: string[];
  rule: ConvergenceRule;
  /** per request */
  requestTimeoutMs: number;
  /** progress lines (stderr) */
  log: (line: string) => void;
}

export const DEFAULT_SETTLE_MS = 2_000;
export const defaultRunOptions = (): RunOptions => ({
  only: [],
  rule: { ...UPSTREAM_RULE, settleMs: DEFAULT_SETTLE_MS },
  requestTimeoutMs: 3_000,
  log: (l) => process.stderr.write(l + '\n'),
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function askOf(c: GammaCase, timeoutMs: number, count?: number): ClientAsk {
  const r = c.request;
  return { protocol: r.protocol, host: r.host, path: r.path, method: r.protocol === 'grpc' ? null : (r.method ?? 'GET'), headers: r.headers, timeoutMs, ...(count ? { count } : {}) };
}

function requestText(c: GammaCase): string {
  const r = c.request;
  const hdrs = Object.entries(r.headers).map(([k, v]) => `${k}: ${v}`).join(', ');
  return `${r.protocol === 'grpc' ? 'gRPC Echo' : r.method ?? 'GET'} ${r.url}${hdrs ? ` [${hdrs}]` : ''} from ${c.client.namespace}/${c.client.deployment}`;
}

export function seenText(o: Observation | undefined): string | undefined {
  if (!o) return undefined;
  if (!o.ok) return o.error;
  const parts = [`status ${o.status}`];
  if (o.grpcCode !== undefined && o.grpcCode !== 0) parts.push(`grpc ${o.grpcCode} ${o.grpcDetails ?? ''}`.trim());
  if (o.echo) parts.push(`from ${o.echo.namespace}/${o.echo.pod}`, `path ${o.echo.path}`, `host ${o.echo.host}`);
  else if (o.body !== undefined) parts.push(`body ${JSON.stringify(o.body.slice(0, 160))}`);
  const loc = o.headers.find(([k]) => k.toLowerCase() === 'location');
  if (loc) parts.push(`Location ${loc[1]}`);
  return parts.join(', ');
}

function sentOf(reply: ClientReply, c: GammaCase): SentRequest {
  return { scheme: c.request.protocol === 'grpc' ? 'http' : c.request.protocol, authority: reply.target?.authority ?? c.request.host, port: reply.target?.port ?? 80, path: c.request.path || '/' };
}

async function runRequestCase(lab: ConformanceLab, c: RequestCase, config: ConfigState, opts: RunOptions): Promise<CaseOutcome> {
  const client = await lab.client(c.client.namespace, c.client.deployment);
  const started = Date.now();
  const strictOutcomes: boolean[] = [];
  let upstreamRun = 0;
  let upstreamConverged = false;
  let lastFailure: Judgement | undefined;
  let lastSeen: string | undefined;
  for (;;) {
    const d = decide(opts.rule, started, Date.now(), strictOutcomes, config);
    if (d.verdict !== 'continue') {
      const base = { id: c.id, subtest: c.upstream_subtest, kind: c.kind, request: requestText(c), attempts: strictOutcomes.length, elapsedMs: Date.now() - started, lastSeen };
      if (d.verdict === 'pass') return { ...base, upstreamPassed: true, strictPassed: true, upstreamMismatches: [], strictMismatches: [] };
      return {
        ...base, upstreamPassed: upstreamConverged, strictPassed: false, reason: d.reason,
        upstreamMismatches: lastFailure?.upstream ?? [], strictMismatches: lastFailure?.strict ?? [],
      };
    }
    if (d.waitMs) await sleep(d.waitMs);
    const reply = await client.ask(askOf(c, opts.requestTimeoutMs));
    if (reply.error !== undefined) {
      // The host does not resolve: no amount of waiting changes that.
      return {
        id: c.id, subtest: c.upstream_subtest, kind: c.kind, request: requestText(c), attempts: strictOutcomes.length + 1, elapsedMs: Date.now() - started,
        upstreamPassed: false, strictPassed: false, reason: `client: ${reply.error}`, upstreamMismatches: [], strictMismatches: [],
      };
    }
    const o = reply.observations[0] ?? { ok: false as const, error: 'client returned no observation' };
    const j = judgeRequest(c.id, c.expect, o, sentOf(reply, c));
    upstreamRun = passesUpstream(j) ? upstreamRun + 1 : 0;
    if (upstreamRun >= opts.rule.consecutive) upstreamConverged = true;
    strictOutcomes.push(passesStrict(j));
    if (!passesStrict(j)) lastFailure = j;
    lastSeen = seenText(o);
  }
}

async function runWeightedCase(lab: ConformanceLab, c: WeightedCase, config: ConfigState, opts: RunOptions): Promise<CaseOutcome> {
  const client = await lab.client(c.client.namespace, c.client.deployment);
  const started = Date.now();
  const base = { id: c.id, subtest: c.upstream_subtest, kind: c.kind, request: `${requestText(c)} x${c.expect.requests_per_attempt}` };
  let last: ReturnType<typeof judgeBatch> | undefined;
  let lastSeen: string | undefined;
  let attempts = 0;
  let reason = `no batch of ${c.expect.requests_per_attempt} within the tolerance in ${c.expect.max_attempts} attempts`;
  while (attempts < c.expect.max_attempts) {
    attempts++;
    const reply = await client.ask(askOf(c, opts.requestTimeoutMs, c.expect.requests_per_attempt));
    if (reply.error !== undefined) { reason = `client: ${reply.error}`; break; }
    last = judgeBatch(c.expect, reply.observations);
    lastSeen = seenText(reply.observations.find((o) => !o.ok || o.status !== 200) ?? reply.observations[reply.observations.length - 1]);
    if (last.mismatches.length === 0) {
      return { ...base, attempts, elapsedMs: Date.now() - started, upstreamPassed: true, strictPassed: true, upstreamMismatches: [], strictMismatches: [], counts: last.counts, lastSeen };
    }
    if (config.state === 'refused') { reason = `the control plane refused the test's config, so its routes are not in force: ${config.why}`; break; }
    // A batch that could not even complete (no answer, an error status) is not statistical noise:
    // once the config has been in force for the settle window, more batches cannot change it.
    const incomplete = last.total < c.expect.requests_per_attempt || last.mismatches.some((m) => m.check.startsWith('request '));
    if (incomplete && opts.rule.settleMs !== null && config.state === 'in-force' && Date.now() >= Math.max(started, config.since) + opts.rule.settleMs) {
      reason = `batch ${attempts} did not complete (${last.mismatches[0]?.seen}) with the config in force; not retried (upstream retries ${c.expect.max_attempts} batches: --full-wait)`;
      break;
    }
  }
  return {
    ...base, attempts, elapsedMs: Date.now() - started, upstreamPassed: false, strictPassed: false, reason,
    upstreamMismatches: last?.mismatches ?? [], strictMismatches: [], ...(last ? { counts: last.counts } : {}), lastSeen,
  };
}

function skeleton(t: GammaTest): Omit<TestOutcome, 'status' | 'upstreamPassed' | 'strictPassed' | 'cases' | 'elapsedMs'> {
  return { name: t.name, level: t.level, features: t.features.map((f) => f.name), profiles: t.counted_in_profiles, provisional: t.provisional };
}

export async function runTest(lab: ConformanceLab, t: GammaTest, opts: RunOptions): Promise<TestOutcome> {
  const missing = unclaimedFeatures(t);
  if (missing.length) {
    return { ...skeleton(t), status: 'skipped', skipReason: `skipped by profile: features not claimed: ${missing.join(', ')}`, upstreamPassed: false, strictPassed: false, cases: [], elapsedMs: 0 };
  }
  const started = Date.now();
  const cases: CaseOutcome[] = [];
  let error: string | undefined;
  const config = await lab.apply([...t.routes, ...t.extra_objects]);
  opts.log(`${t.name}: config ${config.state === 'in-force' ? `in force after ${Date.now() - started} ms` : config.state === 'refused' ? `REFUSED: ${config.why}` : 'not confirmed in force within 30 s'}`);
  if (config.state === 'refused') error = `the control plane refused the routes: ${config.why}`;
  else if (config.state === 'pending') error = 'the config was not seen in force on every agent within 30 s';
  try {
    for (const c of t.cases) {
      const outcome = c.kind === 'request' ? await runRequestCase(lab, c, config, opts) : await runWeightedCase(lab, c, config, opts);
      cases.push(outcome);
      opts.log(`  ${outcome.strictPassed ? 'ok  ' : outcome.upstreamPassed ? 'STRICT' : 'FAIL'} ${c.id} (${outcome.attempts} attempts, ${outcome.elapsedMs} ms)${outcome.strictPassed ? '' : `: ${outcome.reason ?? ''}`}`);
    }
  } finally {
    const cleared = await lab.apply([]);
    if (cleared.state !== 'in-force') opts.log(`${t.name}: removing its routes: ${cleared.state === 'refused' ? cleared.why : 'not confirmed in force'}`);
  }
  const upstreamPassed = !error && cases.every((c) => c.upstreamPassed);
  const strictPassed = upstreamPassed && cases.every((c) => c.strictPassed);
  const known = KNOWN_EXCEPTIONS.find((k) => k.test === t.name)?.reason;
  return {
    ...skeleton(t), status: strictPassed ? 'passed' : 'failed', upstreamPassed, strictPassed, cases, elapsedMs: Date.now() - started,
    ...(error ? { error } : {}), ...(!strictPassed && known ? { knownException: known } : {}),
  };
}

/** Runs the selected tests in the file's order; the rest are reported as not selected. */
/** Checks a --test selection against the file: an unknown name is an error listing the known ones. */
export function checkSelection(data: GammaData, only: string[]): void {
  const unknown = only.filter((n) => !data.tests.some((t) => t.name === n));
  if (unknown.length) throw new Error(`--test ${unknown.join(', ')}: no such test (have ${data.tests.map((t) => t.name).join(', ')})`);
}

export async function runAll(lab: ConformanceLab, data: GammaData, opts: RunOptions): Promise<TestOutcome[]> {
  checkSelection(data, opts.only);
  const out: TestOutcome[] = [];
  for (const t of data.tests) {
    if (opts.only.length && !opts.only.includes(t.name)) {
      out.push({ ...skeleton(t), status: 'not-selected', upstreamPassed: false, strictPassed: false, cases: [], elapsedMs: 0 });
      continue;
    }
    out.push(await runTest(lab, t, opts));
  }
  return out;
}

/**
 * The conformance report, shaped like upstream's ConformanceReport (conformance/utils/suite/reports.go):
 * per test passed/failed/skipped (with each failing case, what it expected and what was seen), per
 * feature, and per profile (MESH-HTTP, MESH-GRPC) core and extended with the claimed features. Pure:
 * it turns outcomes into a report object and the report into text.
 */
import type { GammaTest, Level, Profile } from './cases';
import { CLAIMED_FEATURES, KNOWN_EXCEPTIONS } from './claims';
import type { Mismatch } from './judge';

export type CaseStatus = 'passed' | 'failed';

export interface CaseOutcome {
  id: string;
  subtest: string;
  kind: 'request' | 'weighted_distribution';
  /** what was asked: `GET http://echo/v2 from gateway-conformance-mesh/echo-v1` */
  request: string;
  /** passed upstream's checks (3 consecutive within the window; weighted: one batch) */
  upstreamPassed: boolean;
  /** passed upstream's checks and the stricter ones */
  strictPassed: boolean;
  attempts: number;
  elapsedMs: number;
  /** why it failed (the decision), when it did */
  reason?: string;
  /** mismatches of the last attempt that did not pass */
  upstreamMismatches: Mismatch[];
  strictMismatches: Mismatch[];
  /** what the last attempt saw, one line */
  lastSeen?: string;
  /** weighted cases: counts of the last batch */
  counts?: Record<string, number>;
}

export type TestStatus = 'passed' | 'failed' | 'skipped' | 'not-selected';

export interface TestOutcome {
  name: string;
  level: Level;
  features: string[];
  profiles: Partial<Record<Profile, Level>>;
  provisional: boolean;
  status: TestStatus;
  upstreamPassed: boolean;
  strictPassed: boolean;
  skipReason?: string;
  /** set when the test failed and is a known exception (claims.ts) */
  knownException?: string;
  /** a failure of the test as a whole (config refused, setup) */
  error?: string;
  cases: CaseOutcome[];
  elapsedMs: number;
}

export interface ProfileHalf {
  result: 'success' | 'partial' | 'failure';
  statistics: { Passed: number; Failed: number; Skipped: number };
  failedTests: string[];
  skippedTests: string[];
  supportedFeatures?: string[];
  unsupportedFeatures?: string[];
}

export interface ProfileReport {
  name: Profile;
  core: ProfileHalf;
  extended: ProfileHalf;
}

export interface FeatureReport {
  name: string;
  level: Level;
  claimed: boolean;
  passed: number;
  failed: number;
  skipped: number;
}

export interface ConformanceReport {
  apiVersion: 'gateway.networking.k8s.io/v1';
  kind: 'ConformanceReport';
  date: string;
  implementation: { organization: string; project: string; version: string };
  gatewayAPISource: string;
  mode: 'mesh';
  claimedFeatures: string[];
  knownExceptions: Array<{ test: string; reason: string }>;
  options: Record<string, unknown>;
  profiles: ProfileReport[];
  features: FeatureReport[];
  tests: TestOutcome[];
  totals: {
    tests: Record<TestStatus, number>;
    cases: { run: number; passedUpstream: number; passedStrict: number; failed: number };
    elapsedMs: number;
  };
  /** claimed tests that failed and are not known exceptions: what makes the run fail */
  unexpectedFailures: string[];
}

/** A test runs only when every feature it needs is claimed. */
export function unclaimedFeatures(test: Pick<GammaTest, 'features'>, claimed: ReadonlySet<string> = CLAIMED_FEATURES): string[] {
  return test.features.map((f) => f.name).filter((f) => !claimed.has(f));
}

const PROFILES: Profile[] = ['MESH-HTTP', 'MESH-GRPC'];

function half(tests: TestOutcome[]): ProfileHalf {
  const passed = tests.filter((t) => t.status === 'passed' || (t.status === 'failed' && t.knownException));
  const failed = tests.filter((t) => t.status === 'failed' && !t.knownException);
  const skipped = tests.filter((t) => t.status === 'skipped' || t.status === 'not-selected');
  return {
    result: failed.length > 0 ? 'failure' : skipped.length > 0 ? 'partial' : 'success',
    statistics: { Passed: passed.length, Failed: failed.length, Skipped: skipped.length },
    failedTests: failed.map((t) => t.name),
    skippedTests: skipped.map((t) => t.name),
  };
}

/** Upstream's per-profile accounting: a test counts in a profile as core or extended per `profiles`. */
export function profileReports(outcomes: TestOutcome[], allTests: Pick<GammaTest, 'features'>[], claimed: ReadonlySet<string> = CLAIMED_FEATURES): ProfileReport[] {
  // A profile's extended features: the Mesh* extended ones (MeshExtendedFeatures), as the mesh profiles define.
  const meshExtended = [...new Set(allTests.flatMap((t) => t.features).filter((f) => f.level === 'extended' && f.name.startsWith('Mesh')).map((f) => f.name))].sort();
  return PROFILES.map((name) => {
    const ext = half(outcomes.filter((t) => t.profiles[name] === 'extended'));
    ext.supportedFeatures = meshExtended.filter((f) => claimed.has(f));
    ext.unsupportedFeatures = meshExtended.filter((f) => !claimed.has(f));
    return { name, core: half(outcomes.filter((t) => t.profiles[name] === 'core')), extended: ext };
  });
}

export function featureReports(outcomes: TestOutcome[], allTests: Pick<GammaTest, 'features'>[], claimed: ReadonlySet<string> = CLAIMED_FEATURES): FeatureReport[] {
  const levels = new Map<string, Level>();
  for (const t of allTests) for (const f of t.features) levels.set(f.name, f.level);
  return [...levels.entries()]
    .sort(([a, la], [b, lb]) => (la === lb ? a.localeCompare(b) : la === 'core' ? -1 : 1))
    .map(([name, level]) => {
      const using = outcomes.filter((o) => o.features.includes(name));
      return {
        name, level, claimed: claimed.has(name),
        passed: using.filter((o) => o.status === 'passed').length,
        failed: using.filter((o) => o.status === 'failed').length,
        skipped: using.filter((o) => o.status === 'skipped' || o.status === 'not-selected').length,
      };
    });
}

export function buildReport(args: {
  outcomes: TestOutcome[];
  allTests: Pick<GammaTest, 'features'>[];
  version: string;
  source: string;
  options: Record<string, unknown>;
  elapsedMs: number;
  date?: Date;
}): ConformanceReport {
  const { outcomes } = args;
  const tests: Record<TestStatus, number> = { passed: 0, failed: 0, skipped: 0, 'not-selected': 0 };
  for (const o of outcomes) tests[o.status]++;
  const cases = outcomes.flatMap((o) => o.cases);
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'ConformanceReport',
    date: (args.date ?? new Date()).toISOString(),
    implementation: { organization: 'weft', project: 'weft', version: args.version },
    gatewayAPISource: args.source,
    mode: 'mesh',
    claimedFeatures: [...CLAIMED_FEATURES].sort(),
    knownExceptions: [...KNOWN_EXCEPTIONS],
    options: args.options,
    profiles: profileReports(outcomes, args.allTests),
    features: featureReports(outcomes, args.allTests),
    tests: outcomes,
    totals: {
      tests,
      cases: {
        run: cases.length,
        passedUpstream: cases.filter((c) => c.upstreamPassed).length,
        passedStrict: cases.filter((c) => c.strictPassed).length,
        failed: cases.filter((c) => !c.strictPassed).length,
      },
      elapsedMs: args.elapsedMs,
    },
    unexpectedFailures: outcomes.filter((o) => o.status === 'failed' && !o.knownException).map((o) => o.name),
  };
}

const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const verdict = (ok: boolean): string => (ok ? 'pass' : 'FAIL');

function caseLines(c: CaseOutcome): string[] {
  const head = `    ${c.strictPassed ? 'ok  ' : c.upstreamPassed ? 'STRICT' : 'FAIL'} ${c.id} ${JSON.stringify(c.subtest)}: ${c.request}`;
  if (c.strictPassed) return [head];
  const out = [head];
  if (c.reason) out.push(`         decided: ${c.reason}`);
  for (const m of c.upstreamMismatches) out.push(`         upstream check ${m.check}: expected ${m.expected}, got ${m.seen}`);
  for (const m of c.strictMismatches) out.push(`         stricter check ${m.check}: expected ${m.expected}, got ${m.seen}`);
  if (c.counts) out.push(`         last batch: ${JSON.stringify(c.counts)}`);
  if (c.lastSeen) out.push(`         last answer: ${c.lastSeen}`);
  return out;
}

/** The human report: tests, failing cases, features, profiles, totals. */
export function formatReport(r: ConformanceReport, opts: { verbose?: boolean } = {}): string {
  const lines: string[] = [];
  lines.push(`Gateway API mesh conformance (${r.gatewayAPISource}) against Weft ${r.implementation.version}`);
  lines.push('');
  lines.push('Tests (result = upstream checks and the stricter ones; "upstream" = upstream checks alone):');
  for (const t of r.tests) {
    const tag = t.status === 'passed' ? 'PASS' : t.status === 'failed' ? (t.knownException ? 'XFAIL' : 'FAIL') : t.status === 'skipped' ? 'SKIP' : '-';
    const passedCases = t.cases.filter((c) => c.strictPassed).length;
    const detail = t.status === 'skipped' ? t.skipReason ?? '' : t.status === 'not-selected' ? 'not selected (--test)'
      : `${passedCases}/${t.cases.length} cases  upstream ${verdict(t.upstreamPassed)}, strict ${verdict(t.strictPassed)}  ${secs(t.elapsedMs)}`;
    lines.push(`  ${pad(tag, 5)} ${pad(t.name, 44)} ${pad(t.level, 8)} ${detail}`);
    if (t.error) lines.push(`        error: ${t.error}`);
    if (t.knownException) lines.push(`        known exception: ${t.knownException}`);
    if (t.status === 'failed' || opts.verbose) for (const c of t.cases) if (opts.verbose || !c.strictPassed) lines.push(...caseLines(c));
  }
  lines.push('');
  lines.push('Features (tests passed / failed / skipped):');
  for (const f of r.features) lines.push(`  ${pad(f.name, 48)} ${pad(f.level, 8)} ${pad(f.claimed ? 'claimed' : 'not claimed', 12)} ${f.passed} / ${f.failed} / ${f.skipped}`);
  lines.push('');
  lines.push('Profiles:');
  for (const p of r.profiles) {
    for (const [which, h] of [['core', p.core], ['extended', p.extended]] as const) {
      const s = h.statistics;
      lines.push(`  ${pad(p.name, 10)} ${pad(which, 9)} ${pad(h.result, 8)} passed ${s.Passed}, failed ${s.Failed}, skipped ${s.Skipped}${h.failedTests.length ? `  failed: ${h.failedTests.join(', ')}` : ''}`);
    }
    if (p.extended.supportedFeatures) lines.push(`  ${pad('', 10)} extended features claimed: ${p.extended.supportedFeatures.join(', ') || 'none'}; not claimed: ${p.extended.unsupportedFeatures?.join(', ') || 'none'}`);
  }
  const others = r.tests.filter((t) => Object.keys(t.profiles).length === 0);
  if (others.length) lines.push(`  (in no mesh profile, run because their HTTPRoute extended features are claimed: ${others.map((t) => `${t.name} ${t.status}`).join(', ')})`);
  lines.push('');
  const tt = r.totals.tests;
  const c = r.totals.cases;
  lines.push(`Totals: ${r.tests.length} tests: ${tt.passed} passed, ${tt.failed} failed, ${tt.skipped} skipped${tt['not-selected'] ? `, ${tt['not-selected']} not selected` : ''}; `
    + `${c.run} cases run: ${c.passedStrict} passed (${c.passedUpstream} by upstream's checks alone), ${c.failed} failed; elapsed ${secs(r.totals.elapsedMs)}`);
  if (r.knownExceptions.length) lines.push(`Known exceptions: ${r.knownExceptions.map((k) => `${k.test} (${k.reason})`).join('; ')}`);
  lines.push(r.unexpectedFailures.length ? `RESULT: FAIL (${r.unexpectedFailures.join(', ')})` : 'RESULT: PASS');
  return lines.join('\n');
}

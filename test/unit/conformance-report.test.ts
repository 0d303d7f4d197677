// Profile and feature accounting of the conformance report, the claim rule, the convergence rule,
// and the case file itself (the cases the runner plays are the 23 tests / 87 cases upstream has).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadCases, type GammaTest } from '../conformance/cases';
import { CLAIMED_FEATURES, CORRECTIONS, KNOWN_EXCEPTIONS } from '../conformance/claims';
import { decide, UPSTREAM_RULE } from '../conformance/convergence';
import { refusal } from '../conformance/mesh-lab';
import { buildReport, formatReport, unclaimedFeatures, type TestOutcome } from '../conformance/report';

const data = loadCases();

function outcome(t: GammaTest, status: TestOutcome['status'], known?: string): TestOutcome {
  return {
    name: t.name, level: t.level, features: t.features.map((f) => f.name), profiles: t.counted_in_profiles, provisional: t.provisional,
    status, upstreamPassed: status === 'passed', strictPassed: status === 'passed', cases: [], elapsedMs: 0, ...(known ? { knownException: known } : {}),
  };
}
const byName = (n: string) => data.tests.find((t) => t.name === n)!;

describe('case file and claims', () => {
  test('the file holds upstream\'s 23 tests and 87 cases', () => {
    assert.equal(data.tests.length, 23);
    assert.equal(data.tests.reduce((n, t) => n + t.cases.length, 0), 87);
  });

  test('every feature any mesh test needs is claimed, so no test is skipped by profile', () => {
    for (const t of data.tests) assert.deepEqual(unclaimedFeatures(t), [], t.name);
    assert.equal(KNOWN_EXCEPTIONS.length, 0);
  });

  test('a test needing an unclaimed feature is reported as skipped-by-profile material', () => {
    const claimed = new Set([...CLAIMED_FEATURES].filter((f) => f !== 'HTTPRouteParentRefPort'));
    assert.deepEqual(unclaimedFeatures(byName('MeshPorts'), claimed), ['HTTPRouteParentRefPort']);
    assert.deepEqual(unclaimedFeatures(byName('MeshBasic'), claimed), []);
  });

  test('every correction names a real case whose upstream value it replaces', () => {
    for (const c of CORRECTIONS) {
      const kase = data.tests.flatMap((t) => t.cases).find((k) => k.id === c.case);
      assert.ok(kase && kase.kind === 'request', c.case);
      assert.equal(kase.expect[c.field], c.upstream);
    }
  });
});

describe('profiles and features', () => {
  test('all passing: MESH-HTTP and MESH-GRPC core and extended succeed, counts follow counted_in_profiles', () => {
    const r = buildReport({ outcomes: data.tests.map((t) => outcome(t, 'passed')), allTests: data.tests, version: 'x', source: 's', options: {}, elapsedMs: 1 });
    const http = r.profiles.find((p) => p.name === 'MESH-HTTP')!;
    const grpc = r.profiles.find((p) => p.name === 'MESH-GRPC')!;
    assert.deepEqual([http.core.result, http.core.statistics.Passed], ['success', 7]);
    assert.deepEqual([http.extended.result, http.extended.statistics.Passed], ['success', 7]);
    assert.deepEqual([grpc.core.result, grpc.core.statistics.Passed], ['success', 3]);
    assert.equal(grpc.extended.statistics.Passed, 0);
    assert.deepEqual(http.extended.unsupportedFeatures, []);
    assert.equal(r.unexpectedFailures.length, 0);
    assert.match(formatReport(r), /RESULT: PASS/);
  });

  test('one core failure makes both profiles that count MeshBasic fail, and the run fail', () => {
    const r = buildReport({ outcomes: data.tests.map((t) => outcome(t, t.name === 'MeshBasic' ? 'failed' : 'passed')), allTests: data.tests, version: 'x', source: 's', options: {}, elapsedMs: 1 });
    for (const p of r.profiles) {
      assert.equal(p.core.result, 'failure', p.name);
      assert.deepEqual(p.core.failedTests, ['MeshBasic']);
    }
    assert.deepEqual(r.unexpectedFailures, ['MeshBasic']);
    assert.match(formatReport(r), /RESULT: FAIL \(MeshBasic\)/);
    const mesh = r.features.find((f) => f.name === 'Mesh')!;
    assert.deepEqual([mesh.passed, mesh.failed], [22, 1]);
  });

  test('a failure of a test in no mesh profile still fails the run, but no profile', () => {
    const r = buildReport({ outcomes: data.tests.map((t) => outcome(t, t.name === 'MeshPorts' ? 'failed' : 'passed')), allTests: data.tests, version: 'x', source: 's', options: {}, elapsedMs: 1 });
    assert.ok(r.profiles.every((p) => p.core.result === 'success' && p.extended.result === 'success'));
    assert.deepEqual(r.unexpectedFailures, ['MeshPorts']);
  });

  test('skipped or unselected tests make a profile partial, not failed; a known exception does not fail the run', () => {
    const r = buildReport({
      outcomes: data.tests.map((t) => outcome(t, t.name === 'MeshHTTPRouteWeight' ? 'skipped' : t.name === 'MeshHTTPRouteMatching' ? 'failed' : 'passed', t.name === 'MeshHTTPRouteMatching' ? 'a reason' : undefined)),
      allTests: data.tests, version: 'x', source: 's', options: {}, elapsedMs: 1,
    });
    const http = r.profiles.find((p) => p.name === 'MESH-HTTP')!;
    assert.equal(http.core.result, 'partial');
    assert.deepEqual(r.unexpectedFailures, []);
  });
});

describe('convergence', () => {
  const rule = { ...UPSTREAM_RULE, settleMs: 2000 };
  test('3 consecutive passes pass; a failure resets the run', () => {
    assert.equal(decide(rule, 0, 10, [true, true, true], { state: 'in-force', since: 0 }).verdict, 'pass');
    assert.deepEqual(decide(rule, 0, 10, [true, true, false, true, true], { state: 'in-force', since: 0 }), { verdict: 'continue', waitMs: 0 });
    assert.deepEqual(decide(rule, 0, 10, [true, false], { state: 'in-force', since: 0 }), { verdict: 'continue', waitMs: 100 });
  });

  test('upstream timing: fails only at 30 s', () => {
    assert.equal(decide(UPSTREAM_RULE, 0, 29_999, [false], { state: 'in-force', since: 0 }).verdict, 'continue');
    const d = decide(UPSTREAM_RULE, 0, 30_000, [false], { state: 'in-force', since: 0 });
    assert.equal(d.verdict, 'fail');
  });

  test('settle window counts from the later of case start and config in force, never during a run of passes', () => {
    assert.equal(decide(rule, 1000, 2999, [false], { state: 'in-force', since: 0 }).verdict, 'continue');
    assert.equal(decide(rule, 1000, 3000, [false], { state: 'in-force', since: 0 }).verdict, 'fail');
    assert.equal(decide(rule, 1000, 3000, [false, true], { state: 'in-force', since: 0 }).verdict, 'continue');
    assert.equal(decide(rule, 0, 10_000, [false], { state: 'pending' }).verdict, 'continue', 'no early stop when the config is not known in force');
  });

  test('a refused config decides at the first failure but lets passes run', () => {
    const refused = { state: 'refused', why: 'bad' } as const;
    assert.deepEqual(decide(rule, 0, 0, [], refused), { verdict: 'continue', waitMs: 0 });
    assert.match((decide(rule, 0, 1, [false], refused) as { reason: string }).reason, /refused.*bad/);
    assert.equal(decide(rule, 0, 1, [true, true], refused).verdict, 'continue');
    assert.equal(decide(rule, 0, 1, [true, true, true], refused).verdict, 'pass');
  });

  test('the control plane\'s refusal line is read with its problems', () => {
    const line = JSON.stringify({ level: 40, config: '/x', problems: ['HTTPRoute ns/r: spec.rules[0]: bad'], msg: 'config edit not applied; the last good config stays in force' });
    assert.equal(refusal(`{"msg":"other"}\n${line}\n`), 'HTTPRoute ns/r: spec.rules[0]: bad');
    assert.equal(refusal('{"msg":"control plane listening"}\n'), undefined);
  });
});

// The conformance judge on made-up answers: upstream's compareRequest rules, the stricter checks
// (path seen, redirect target with its defaults, backend namespace), and the weighted-split rule.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { RequestExpect, WeightedExpect } from '../conformance/cases';
import { expectedRedirect, judgeRequest, judgeUpstream, passesStrict, passesUpstream, redirectTargetOf, type SentRequest } from '../conformance/judge';
import type { EchoSeen, Observation } from '../conformance/observation';
import { backendOfPod, judgeBatch } from '../conformance/weighted';

const NS = 'gateway-conformance-mesh';
const echo = (over: Partial<EchoSeen> = {}): EchoSeen => ({
  pod: 'echo-v1-7d9fbc5d6f-abc12', namespace: NS, protocol: 'http/1.1', method: 'GET', path: '/', host: 'echo', headers: [], ...over,
});
const answer = (over: { status?: number; headers?: Array<[string, string]>; echo?: EchoSeen | null } = {}): Observation => ({
  ok: true, status: over.status ?? 200, headers: over.headers ?? [], ...(over.echo === null ? {} : { echo: over.echo ?? echo() }),
});
const sent = (path = '/', authority = 'echo', port = 80): SentRequest => ({ scheme: 'http', authority, port, path });
const expectOf = (over: Partial<RequestExpect> = {}): RequestExpect => ({ status: 200, backend: 'echo-v1', ...over });

describe('upstream checks (compareRequest)', () => {
  test('a matching answer passes', () => {
    assert.deepEqual(judgeUpstream(expectOf(), answer()), []);
  });

  test('wrong status fails, and names what came back', () => {
    const m = judgeUpstream(expectOf({ status: 404, backend: null }), answer());
    assert.equal(m.length, 1);
    assert.equal(m[0]!.check, 'status');
    assert.match(m[0]!.seen, /200 from gateway-conformance-mesh\/echo-v1-/);
  });

  test('no answer at all fails with the client error', () => {
    const m = judgeUpstream(expectOf(), { ok: false, error: 'ECONNRESET' });
    assert.equal(m.length, 1);
    assert.match(m[0]!.seen, /ECONNRESET/);
  });

  test('backend is a name prefix; null means any pod', () => {
    assert.equal(judgeUpstream(expectOf({ backend: 'echo-v2' }), answer()).length, 1);
    assert.deepEqual(judgeUpstream(expectOf({ backend: 'echo-v' }), answer()), []);
    assert.deepEqual(judgeUpstream(expectOf({ backend: null }), answer({ echo: null })), []);
    assert.equal(judgeUpstream(expectOf({ backend: 'echo-v1' }), answer({ echo: null }))[0]!.check, 'backend');
  });

  test('request header names compare case-insensitively; values are all lines joined by ","', () => {
    const seen = echo({ headers: [['x-header-add', 'some-other-value'], ['X-Header-Add', 'add-appends-values'], ['Some-Other-Header', 'val']] });
    const want = { 'X-Header-Add': 'some-other-value,add-appends-values', 'some-other-header': 'val' };
    assert.deepEqual(judgeUpstream(expectOf({ request_headers_seen_by_backend: want }), answer({ echo: seen })), []);
  });

  test('a merged ", " value is not the same as two lines (upstream joins with "," only)', () => {
    const seen = echo({ headers: [['X-Header-Add', 'some-other-value, add-appends-values']] });
    const m = judgeUpstream(expectOf({ request_headers_seen_by_backend: { 'X-Header-Add': 'some-other-value,add-appends-values' } }), answer({ echo: seen }));
    assert.equal(m.length, 1);
    assert.equal(m[0]!.seen, 'some-other-value, add-appends-values');
  });

  test('a missing request header, and headers expected without an echo answer, fail', () => {
    assert.match(judgeUpstream(expectOf({ request_headers_seen_by_backend: { 'X-Header-Set': 'v' } }), answer())[0]!.seen, /absent/);
    assert.match(judgeUpstream(expectOf({ backend: null, request_headers_seen_by_backend: { a: 'b' } }), answer({ echo: null }))[0]!.seen, /no headers captured/);
  });

  test('absent request headers: any case of the name present fails', () => {
    const seen = echo({ headers: [['x-header-remove', 'original-val-remove']] });
    const m = judgeUpstream(expectOf({ absent_request_headers_seen_by_backend: ['X-Header-Remove'] }), answer({ echo: seen }));
    assert.equal(m.length, 1);
    assert.equal(m[0]!.check, 'absent request header X-Header-Remove');
  });

  test('response headers: the first value must equal; absent ones must not appear', () => {
    const headers: Array<[string, string]> = [['x-header-set', 'set'], ['X-Header-Set', 'other']];
    assert.deepEqual(judgeUpstream(expectOf({ response_headers: { 'X-Header-Set': 'set' } }), answer({ headers })), []);
    assert.equal(judgeUpstream(expectOf({ response_headers: { 'X-Header-Set': 'other' } }), answer({ headers })).length, 1);
    assert.equal(judgeUpstream(expectOf({ response_headers: { 'X-Header-Set': 'set' } }), answer()).length, 1);
    assert.equal(judgeUpstream(expectOf({ absent_response_headers: ['X-Header-Set'] }), answer({ headers })).length, 1);
    assert.deepEqual(judgeUpstream(expectOf({ absent_response_headers: ['X-Header-Set'] }), answer()), []);
  });
});

describe('stricter checks', () => {
  test('path seen by the backend, ignoring the query; reported apart from upstream', () => {
    const j = judgeRequest('MeshHTTPRouteRewritePath/0', expectOf({ path_seen_by_backend: '/one/two' }), answer({ echo: echo({ path: '/prefix/one/two' }) }), sent('/prefix/one/two'));
    assert.ok(passesUpstream(j));
    assert.ok(!passesStrict(j));
    assert.equal(j.strict[0]!.check, 'path seen by backend');
    const ok = judgeRequest('X/0', expectOf({ path_seen_by_backend: '/one' }), answer({ echo: echo({ path: '/one?a=b' }) }), sent());
    assert.ok(passesStrict(ok));
  });

  test('the NamedRule/1 correction: /unnamed is required, upstream\'s /named would fail', () => {
    const e = expectOf({ backend: 'echo-v2', path_seen_by_backend: '/named' });
    const v2 = (path: string) => answer({ echo: echo({ pod: 'echo-v2-7d9fbc5d6f-abc12', path }) });
    assert.ok(passesStrict(judgeRequest('MeshHTTPRouteNamedRule/1', e, v2('/unnamed'), sent('/unnamed'))));
    assert.ok(!passesStrict(judgeRequest('MeshHTTPRouteNamedRule/1', e, v2('/named'), sent('/unnamed'))));
  });

  test('backend namespace is checked for 2xx expectations', () => {
    const other = answer({ echo: echo({ namespace: 'gateway-conformance-mesh-consumer' }) });
    const j = judgeRequest('X/0', expectOf({ backend_namespace: NS }), other, sent());
    assert.ok(passesUpstream(j));
    assert.equal(j.strict[0]!.check, 'backend namespace');
    // a redirect has no backend: its declared namespace is not a check
    const r = judgeRequest('X/1', expectOf({ status: 302, backend: null, backend_namespace: NS }), answer({ status: 302, echo: null, headers: [['location', 'http://echo/x']] }), sent('/x'));
    assert.ok(passesStrict(r));
  });

  test('redirect defaults: empty fields are the request\'s own; a new scheme brings its well-known port', () => {
    assert.deepEqual(expectedRedirect({ host: 'example.org' }, sent('/hostname-redirect')), { scheme: 'http', host: 'example.org', port: '80', path: '/hostname-redirect' });
    assert.deepEqual(expectedRedirect({ port: '8083' }, sent('/port?x=1')), { scheme: 'http', host: 'echo', port: '8083', path: '/port' });
    assert.deepEqual(expectedRedirect({ scheme: 'https' }, sent('/scheme', 'echo:80')), { scheme: 'https', host: 'echo', port: '443', path: '/scheme' });
    assert.deepEqual(expectedRedirect({ path: '/p' }, sent('/q', 'echo-v1:8080', 8080)), { scheme: 'http', host: 'echo-v1', port: '8080', path: '/p' });
  });

  test('Location is read relative to the request, the default port made explicit', () => {
    assert.deepEqual(redirectTargetOf('https://example.org/x', sent()), { scheme: 'https', host: 'example.org', port: '443', path: '/x' });
    assert.deepEqual(redirectTargetOf('/y', sent('/a')), { scheme: 'http', host: 'echo', port: '80', path: '/y' });
    assert.deepEqual(redirectTargetOf('http://echo:8083/port', sent()), { scheme: 'http', host: 'echo', port: '8083', path: '/port' });
  });

  test('redirect cases: right target passes, each wrong field is named, missing Location fails', () => {
    const e = expectOf({ status: 302, backend: null, redirect: { port: '8083', host: 'example.org' } });
    const with302 = (loc?: string) => answer({ status: 302, echo: null, headers: loc ? [['Location', loc]] : [] });
    assert.ok(passesStrict(judgeRequest('R/1', e, with302('http://example.org:8083/port-and-host'), sent('/port-and-host'))));
    const bad = judgeRequest('R/1', e, with302('https://example.org/other'), sent('/port-and-host'));
    assert.ok(passesUpstream(bad), 'upstream checks only the status');
    assert.deepEqual(bad.strict.map((m) => m.check), ['redirect.scheme', 'redirect.port', 'redirect.path']);
    assert.match(judgeRequest('R/1', e, with302(), sent('/port-and-host')).strict[0]!.seen, /no Location/);
    // scheme redirect without a port: https on 443, written with or without the port
    const s = expectOf({ status: 302, backend: null, redirect: { scheme: 'https' } });
    assert.ok(passesStrict(judgeRequest('S/0', s, with302('https://echo/scheme'), sent('/scheme'))));
    assert.ok(passesStrict(judgeRequest('S/0', s, with302('https://echo:443/scheme'), sent('/scheme'))));
    assert.ok(!passesStrict(judgeRequest('S/0', s, with302('https://echo:80/scheme'), sent('/scheme'))));
  });
});

describe('weighted distribution (TestWeightedDistributionBatch)', () => {
  const W: WeightedExpect = { fractions: { 'echo-v1': 0.7, 'echo-v2': 0.3 }, tolerance: 0.05, requests_per_attempt: 500, max_attempts: 10, active_backends: 2, route_weights: { 'echo-v1': 70, 'echo-v2': 30 } };
  const batch = (v1: number, v2: number, extra: Observation[] = []): Observation[] => [
    ...Array.from({ length: v1 }, () => answer({ echo: echo({ pod: 'echo-v1-7d9fbc5d6f-abc12' }) })),
    ...Array.from({ length: v2 }, () => answer({ echo: echo({ pod: 'echo-v2-5c4b8f9d7c-xyz34' }) })),
    ...extra,
  ];

  test('backend name is the pod name minus its last two parts', () => {
    assert.equal(backendOfPod('echo-v1-7d9fbc5d6f-abc12'), 'echo-v1');
    assert.equal(backendOfPod('a-b-c-d'), 'a-b');
  });

  test('within ±0.05 passes, on both edges', () => {
    assert.deepEqual(judgeBatch(W, batch(350, 150)).mismatches, []);
    assert.deepEqual(judgeBatch(W, batch(375, 125)).mismatches, []);
    assert.deepEqual(judgeBatch(W, batch(325, 175)).mismatches, []);
  });

  test('just outside the tolerance fails, naming the share', () => {
    const m = judgeBatch(W, batch(376, 124)).mismatches;
    assert.deepEqual(m.map((x) => x.check), ['share of echo-v1', 'share of echo-v2']);
    assert.equal(m[0]!.seen, '0.752');
  });

  test('only one backend seen fails on the distinct count', () => {
    assert.ok(judgeBatch(W, batch(500, 0)).mismatches.some((m) => m.check === 'distinct backends'));
  });

  test('an unexpected pod, a failed request or a short batch fails the attempt', () => {
    const stranger = answer({ echo: echo({ pod: 'echo-v3-5c4b8f9d7c-xyz34' }) });
    assert.match(judgeBatch(W, batch(349, 150, [stranger])).mismatches[0]!.seen, /unexpected pod echo-v3/);
    assert.match(judgeBatch(W, batch(349, 150, [{ ok: false, error: 'ECONNRESET' }])).mismatches[0]!.seen, /ECONNRESET/);
    assert.equal(judgeBatch(W, batch(350, 149)).mismatches[0]!.check, 'requests');
  });

  test('a weight-0 backend that gets traffic fails', () => {
    const W0: WeightedExpect = { ...W, fractions: { 'echo-v1': 1, 'echo-v2': 0 }, active_backends: 1 };
    assert.ok(judgeBatch(W0, batch(499, 1)).mismatches.some((m) => m.check === 'share of echo-v2'));
    assert.deepEqual(judgeBatch(W0, batch(500, 0)).mismatches, []);
  });
});

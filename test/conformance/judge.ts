/**
 * Judging one response against a case, as upstream's mesh harness does (conformance/utils/echo/pod.go
 * compareRequest: status, backend prefix, request headers seen, absent request headers, response
 * headers, absent response headers) and, separately, the stricter checks Weft adds for what
 * upstream declares but never asserts: the path the backend saw, the redirect target, and the
 * backend's namespace. Pure: no sockets.
 */
import type { RedirectExpect, RequestExpect } from './cases';
import { correctionFor } from './claims';
import type { Observation } from './observation';

export interface Mismatch {
  /** which expectation: `status`, `backend`, `request_header X`, `redirect.port`, ... */
  check: string;
  expected: string;
  seen: string;
}

export interface Judgement {
  /** what upstream asserts; empty = passes upstream */
  upstream: Mismatch[];
  /** the stricter checks on top; empty (and upstream empty) = passes strictly */
  strict: Mismatch[];
}

/** The request as sent, for the checks whose expectations default to the request's own values. */
export interface SentRequest {
  scheme: string;
  /** Host header / :authority sent (may carry a port) */
  authority: string;
  /** the port the client connected to */
  port: number;
  /** request target (path and query) */
  path: string;
}

export const passesUpstream = (j: Judgement): boolean => j.upstream.length === 0;
export const passesStrict = (j: Judgement): boolean => j.upstream.length === 0 && j.strict.length === 0;

/** All values of a header (names compared case-insensitively), in arrival order. */
export function headerValues(lines: ReadonlyArray<readonly [string, string]>, name: string): string[] {
  const n = name.toLowerCase();
  return lines.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
}

const show = (lines: ReadonlyArray<readonly [string, string]>): string => lines.map(([k, v]) => `${k}: ${v}`).join('; ') || '(none)';

function describe(o: Observation): string {
  if (!o.ok) return `no answer (${o.error})`;
  if (o.echo) return `${o.status} from ${o.echo.namespace}/${o.echo.pod}`;
  return `${o.status} without an echo answer${o.body ? ` (body: ${JSON.stringify(o.body.slice(0, 120))})` : ''}`;
}

/** upstream compareRequest, every mismatch listed (upstream stops at the first). */
export function judgeUpstream(expect: RequestExpect, o: Observation): Mismatch[] {
  if (!o.ok) return [{ check: 'answer', expected: `status ${expect.status}`, seen: describe(o) }];
  const out: Mismatch[] = [];
  if (o.status !== expect.status) out.push({ check: 'status', expected: String(expect.status), seen: describe(o) });
  const seenReq: ReadonlyArray<readonly [string, string]> = o.echo?.headers ?? [];
  const wantReq = expect.request_headers_seen_by_backend ?? {};
  if (Object.keys(wantReq).length > 0 && !o.echo) {
    out.push({ check: 'request headers', expected: `${Object.keys(wantReq).length} headers seen by the backend`, seen: `no headers captured: ${describe(o)}` });
  } else {
    for (const [name, want] of Object.entries(wantReq)) {
      const values = headerValues(seenReq, name);
      if (values.length === 0) out.push({ check: `request header ${name}`, expected: want, seen: `absent; backend saw ${show(seenReq)}` });
      else if (values.join(',') !== want) out.push({ check: `request header ${name}`, expected: want, seen: values.join(',') });
    }
  }
  for (const [name, want] of Object.entries(expect.response_headers ?? {})) {
    const values = headerValues(o.headers, name);
    if (values.length === 0) out.push({ check: `response header ${name}`, expected: want, seen: `absent; response had ${show(o.headers)}` });
    else if (values[0] !== want) out.push({ check: `response header ${name}`, expected: want, seen: values[0]! });
  }
  for (const name of expect.absent_response_headers ?? []) {
    const values = headerValues(o.headers, name);
    if (values.length > 0) out.push({ check: `absent response header ${name}`, expected: 'absent', seen: values.join(',') });
  }
  for (const name of expect.absent_request_headers_seen_by_backend ?? []) {
    const values = headerValues(seenReq, name);
    if (values.length > 0) out.push({ check: `absent request header ${name}`, expected: 'absent', seen: values.join(',') });
  }
  if (expect.backend !== null && !(o.echo?.pod ?? '').startsWith(expect.backend)) {
    out.push({ check: 'backend', expected: `pod ${expect.backend}-*`, seen: describe(o) });
  }
  return out;
}

const WELL_KNOWN_PORT: Record<string, string> = { http: '80', https: '443' };

export interface RedirectTarget {
  scheme: string;
  host: string;
  port: string;
  path: string;
}

const hostnameOf = (authority: string): string => authority.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
const pathOnly = (target: string): string => target.split('?')[0] || '/';

/**
 * The Location a redirect must carry: fields the case leaves empty default to the request's own
 * (scheme, Host header's hostname, path); the port defaults to the scheme's well-known port when
 * the redirect changes the scheme, else to the port the request went to (the Gateway API's
 * RequestRedirect rules, with the Service port as the listener port).
 */
export function expectedRedirect(want: RedirectExpect, sent: SentRequest): RedirectTarget {
  const scheme = want.scheme ?? sent.scheme;
  const port = want.port ?? (want.scheme !== undefined ? (WELL_KNOWN_PORT[scheme] ?? String(sent.port)) : String(sent.port));
  return { scheme, host: want.host ?? hostnameOf(sent.authority), port, path: want.path ?? pathOnly(sent.path) };
}

/** A Location header read as upstream's client does (relative to the request), the port made explicit. */
export function redirectTargetOf(location: string, sent: SentRequest): RedirectTarget | string {
  let u: URL;
  try {
    u = new URL(location, `${sent.scheme}://${sent.authority}${sent.path}`);
  } catch {
    return `Location ${JSON.stringify(location)} is not a URL`;
  }
  const scheme = u.protocol.replace(/:$/, '');
  return { scheme, host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port || WELL_KNOWN_PORT[scheme] || '', path: u.pathname };
}

/** What upstream declares but does not assert: path seen, redirect target, backend namespace. */
export function judgeStrict(caseId: string, expect: RequestExpect, o: Observation, sent: SentRequest): Mismatch[] {
  if (!o.ok) return [];
  const out: Mismatch[] = [];
  if (expect.path_seen_by_backend !== undefined) {
    const want = correctionFor(caseId, 'path_seen_by_backend')?.corrected ?? expect.path_seen_by_backend;
    if (!o.echo) out.push({ check: 'path seen by backend', expected: want, seen: describe(o) });
    else if (pathOnly(o.echo.path) !== want) out.push({ check: 'path seen by backend', expected: want, seen: o.echo.path });
  }
  if (expect.redirect !== undefined) out.push(...judgeRedirect(expect.redirect, o, sent));
  if (expect.backend_namespace !== undefined && expect.status >= 200 && expect.status < 300) {
    const seen = o.echo?.namespace;
    if (seen !== expect.backend_namespace) out.push({ check: 'backend namespace', expected: expect.backend_namespace, seen: seen ?? describe(o) });
  }
  return out;
}

function judgeRedirect(want: RedirectExpect, o: Observation & { ok: true }, sent: SentRequest): Mismatch[] {
  const exp = expectedRedirect(want, sent);
  const location = headerValues(o.headers, 'location')[0];
  const expText = `${exp.scheme}://${exp.host}:${exp.port}${exp.path}`;
  if (location === undefined) return [{ check: 'redirect', expected: `Location ${expText}`, seen: `no Location header (${describe(o)})` }];
  const got = redirectTargetOf(location, sent);
  if (typeof got === 'string') return [{ check: 'redirect', expected: `Location ${expText}`, seen: got }];
  const out: Mismatch[] = [];
  for (const k of ['scheme', 'host', 'port', 'path'] as const) {
    const same = k === 'host' ? got[k].toLowerCase() === exp[k].toLowerCase() : got[k] === exp[k];
    if (!same) out.push({ check: `redirect.${k}`, expected: exp[k], seen: `${got[k] || '(none)'} (Location: ${location})` });
  }
  return out;
}

export function judgeRequest(caseId: string, expect: RequestExpect, o: Observation, sent: SentRequest): Judgement {
  return { upstream: judgeUpstream(expect, o), strict: judgeStrict(caseId, expect, o, sent) };
}

/** One-line summary of a judgement's mismatches, for reports. */
export function formatMismatches(ms: readonly Mismatch[]): string {
  return ms.map((m) => `${m.check}: expected ${m.expected}, got ${m.seen}`).join('; ');
}


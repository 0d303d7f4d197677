import { compileRegex } from './convert-common';
import type { GrpcRouteMatch, HttpRouteMatch, ValueMatch } from './route-info';
import type { RouteMatch } from './route-match';

/**
 * The routes in force for one client scope on one Service port, ordered by the Gateway API's
 * precedence, and the lookup the proxy runs per request. Built by RouteIndex (route-index.ts).
 *
 * HTTPRoute precedence (HTTPRouteRule docs), across every rule of every route in the table:
 *   1. Exact path, then PathPrefix by length (longest first), then RegularExpression (the spec
 *      leaves regex to implementations; Weft ranks it below every prefix, by pattern length, as
 *      Istio does);
 *   2. a method match; 3. more header matches; 4. more query-param matches;
 *   5. the older route (creationTimestamp), then `namespace/name` alphabetically;
 *   6. the rule's order in its route, then the match's order in its rule.
 * GRPCRoute precedence (GRPCRouteRule docs): longer service, longer method, more header matches,
 * then 5 and 6 as above.
 *
 * The lookup does not scan the table: exact paths are a hash lookup, prefixes are looked up once per
 * path segment (longest first), and a large bucket of rules that differ by an exact header value
 * is indexed by that header, so 1,000 routes on one Service cost about as much as ten.
 */

export interface RouteRequest {
  method: string;
  /** The request-target, query included (`/a/b?x=1`). */
  path: string;
  /** Node-style: lower-case names. */
  headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface RouteTable {
  readonly kind: 'http' | 'grpc';
  /** Number of (rule, match) entries. */
  readonly size: number;
  /**
   * The rule that takes the request, or undefined when routes are attached but none matches: the
   * proxy answers 404 (the Gateway API's answer for a request no rule matches).
   */
  match(req: RouteRequest): RouteMatch | undefined;
}

interface ValueTest {
  name: string;
  exact?: string;
  re?: RegExp;
}

interface Entry {
  /** Position in the table's precedence order. */
  order: number;
  result: RouteMatch;
  method: string | undefined;
  headers: ValueTest[];
  query: ValueTest[];
}

/** Precedence facts of one (route, rule, match), before the table orders them. */
export interface HttpCandidate {
  routeOrder: number;
  ruleIndex: number;
  matchIndex: number;
  match: HttpRouteMatch;
  result: RouteMatch;
}

export interface GrpcCandidate {
  routeOrder: number;
  ruleIndex: number;
  matchIndex: number;
  /** undefined: the rule has no matches (every request). */
  match: GrpcRouteMatch | undefined;
  result: RouteMatch;
}

const NONE: readonly Entry[] = [];
/** Buckets at least this big get a header index. */
const INDEX_AT = 8;

function valueTests(matches: readonly ValueMatch[]): ValueTest[] {
  return matches.map((m) => (m.type === 'Exact' ? { name: m.name, exact: m.value } : { name: m.name, re: compileRegex(m.value) }));
}

function headerValue(headers: RouteRequest['headers'], name: string): string | undefined {
  const v = headers[name];
  return v === undefined ? undefined : typeof v === 'string' ? v : v.join(', ');
}

function valueHolds(t: ValueTest, v: string | undefined): boolean {
  if (v === undefined) return false;
  return t.exact !== undefined ? v === t.exact : t.re!.test(v);
}

/** First value of each query parameter, percent-decoded ('+' is a space, as in forms). */
export function parseQuery(target: string, from: number): Map<string, string> {
  const out = new Map<string, string>();
  if (from < 0) return out;
  const hash = target.indexOf('#', from);
  const text = target.slice(from + 1, hash < 0 ? undefined : hash);
  for (const part of text.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = decode(eq < 0 ? part : part.slice(0, eq));
    if (!out.has(name)) out.set(name, eq < 0 ? '' : decode(part.slice(eq + 1)));
  }
  return out;
}

function decode(text: string): string {
  const plain = text.replace(/\+/g, ' ');
  if (!plain.includes('%')) return plain;
  try {
    return decodeURIComponent(plain);
  } catch {
    return plain;
  }
}

/** Entries sharing a path key, in precedence order, with an optional index on one exact header. */
class Bucket {
  private readonly entries: Entry[] = [];
  private header: string | undefined;
  private byValue = new Map<string, Entry[]>();
  private rest: Entry[] = [];

  add(e: Entry): void {
    this.entries.push(e);
  }

  seal(): void {
    this.entries.sort((a, b) => a.order - b.order);
    if (this.entries.length < INDEX_AT) return;
    const counts = new Map<string, number>();
    for (const e of this.entries) for (const h of e.headers) if (h.exact !== undefined) counts.set(h.name, (counts.get(h.name) ?? 0) + 1);
    let best: string | undefined;
    let bestCount = 0;
    for (const [name, n] of counts) if (n > bestCount) [best, bestCount] = [name, n];
    if (best === undefined || bestCount * 2 < this.entries.length) return;
    this.header = best;
    for (const e of this.entries) {
      const exact = e.headers.find((h) => h.name === best && h.exact !== undefined)?.exact;
      if (exact === undefined) this.rest.push(e);
      else {
        const list = this.byValue.get(exact);
        if (list === undefined) this.byValue.set(exact, [e]);
        else list.push(e);
      }
    }
  }

  find(req: RouteRequest, query: { value?: Map<string, string> }, q: number): Entry | undefined {
    if (this.header === undefined) return scan(this.entries, req, query, q);
    const v = headerValue(req.headers, this.header);
    const a = v === undefined ? NONE : (this.byValue.get(v) ?? NONE);
    const b = this.rest;
    // Merge the two (each in precedence order): the first entry that holds wins.
    let i = 0;
    let j = 0;
    while (i < a.length || j < b.length) {
      const e = j >= b.length || (i < a.length && a[i]!.order < b[j]!.order) ? a[i++]! : b[j++]!;
      if (holds(e, req, query, q)) return e;
    }
    return undefined;
  }
}

function scan(entries: readonly Entry[], req: RouteRequest, query: { value?: Map<string, string> }, q: number): Entry | undefined {
  for (const e of entries) if (holds(e, req, query, q)) return e;
  return undefined;
}

function holds(e: Entry, req: RouteRequest, query: { value?: Map<string, string> }, q: number): boolean {
  if (e.method !== undefined && e.method !== req.method) return false;
  for (const h of e.headers) if (!valueHolds(h, headerValue(req.headers, h.name))) return false;
  if (e.query.length > 0) {
    const params = (query.value ??= parseQuery(req.path, q));
    for (const t of e.query) if (!valueHolds(t, params.get(t.name))) return false;
  }
  return true;
}

/** `/abc/` and `/abc` are the same prefix; `/` is the empty key (matches every path). */
function prefixKey(value: string): string {
  let end = value.length;
  while (end > 0 && value.charCodeAt(end - 1) === 47 /* / */) end--;
  return value.slice(0, end);
}

export class HttpRouteTable implements RouteTable {
  readonly kind = 'http' as const;
  readonly size: number;
  private readonly exact = new Map<string, Bucket>();
  private readonly prefix = new Map<string, Bucket>();
  private readonly regex: { re: RegExp; entry: Entry }[] = [];

  constructor(candidates: readonly HttpCandidate[]) {
    this.size = candidates.length;
    const ranked = candidates.map((c) => ({ c, rank: rankOf(c.match) }));
    ranked.sort((x, y) => compareHttp(x.c, x.rank, y.c, y.rank));
    ranked.forEach(({ c }, order) => {
      const entry: Entry = { order, result: c.result, method: c.match.method, headers: valueTests(c.match.headers), query: valueTests(c.match.queryParams) };
      const { type, value } = c.match.path;
      if (type === 'RegularExpression') this.regex.push({ re: compileRegex(value), entry });
      else {
        const map = type === 'Exact' ? this.exact : this.prefix;
        const key = type === 'Exact' ? value : prefixKey(value);
        let bucket = map.get(key);
        if (bucket === undefined) map.set(key, (bucket = new Bucket()));
        bucket.add(entry);
      }
    });
    for (const b of this.exact.values()) b.seal();
    for (const b of this.prefix.values()) b.seal();
  }

  match(req: RouteRequest): RouteMatch | undefined {
    const target = req.path;
    const q = target.indexOf('?');
    let path = q < 0 ? target : target.slice(0, q);
    if (path === '') path = '/';
    const query: { value?: Map<string, string> } = {};
    if (this.exact.size > 0) {
      const e = this.exact.get(path)?.find(req, query, q);
      if (e !== undefined) return e.result;
    }
    if (this.prefix.size > 0) {
      // Longest prefix first: the path itself, then up to each '/' (segment-wise: `/v2` is not a prefix of `/v2x`).
      let key = prefixKey(path);
      for (;;) {
        const bucket = this.prefix.get(key);
        if (bucket !== undefined) {
          const e = bucket.find(req, query, q);
          if (e !== undefined) return e.result;
        }
        if (key === '') break;
        key = key.slice(0, key.lastIndexOf('/'));
      }
    }
    for (const { re, entry } of this.regex) {
      if (re.test(path) && holds(entry, req, query, q)) return entry.result;
    }
    return undefined;
  }
}

interface HttpRank {
  /** 3 Exact, 2 PathPrefix, 1 RegularExpression. */
  type: number;
  length: number;
}

function rankOf(m: HttpRouteMatch): HttpRank {
  const { type, value } = m.path;
  if (type === 'Exact') return { type: 3, length: value.length };
  if (type === 'PathPrefix') return { type: 2, length: prefixKey(value).length };
  return { type: 1, length: value.length };
}

function compareHttp(a: HttpCandidate, ra: HttpRank, b: HttpCandidate, rb: HttpRank): number {
  return rb.type - ra.type
    || rb.length - ra.length
    || (b.match.method !== undefined ? 1 : 0) - (a.match.method !== undefined ? 1 : 0)
    || b.match.headers.length - a.match.headers.length
    || b.match.queryParams.length - a.match.queryParams.length
    || a.routeOrder - b.routeOrder
    || a.ruleIndex - b.ruleIndex
    || a.matchIndex - b.matchIndex;
}

interface GrpcEntry {
  result: RouteMatch;
  service: ValueTest | undefined;
  method: ValueTest | undefined;
  headers: ValueTest[];
}

/** GRPCRoutes: requests are POST /package.Service/Method; the table is scanned in precedence order. */
export class GrpcRouteTable implements RouteTable {
  readonly kind = 'grpc' as const;
  readonly size: number;
  private readonly entries: GrpcEntry[];

  constructor(candidates: readonly GrpcCandidate[]) {
    this.size = candidates.length;
    const sorted = [...candidates].sort((a, b) => {
      const sa = a.match?.method?.service?.length ?? 0;
      const sb = b.match?.method?.service?.length ?? 0;
      const ma = a.match?.method?.method?.length ?? 0;
      const mb = b.match?.method?.method?.length ?? 0;
      return sb - sa || mb - ma || (b.match?.headers.length ?? 0) - (a.match?.headers.length ?? 0)
        || a.routeOrder - b.routeOrder || a.ruleIndex - b.ruleIndex || a.matchIndex - b.matchIndex;
    });
    this.entries = sorted.map((c) => {
      const m = c.match?.method;
      const test = (name: string, value: string | undefined): ValueTest | undefined =>
        value === undefined ? undefined : m!.type === 'Exact' ? { name, exact: value } : { name, re: compileRegex(value) };
      return { result: c.result, service: test('service', m?.service), method: test('method', m?.method), headers: valueTests(c.match?.headers ?? []) };
    });
  }

  match(req: RouteRequest): RouteMatch | undefined {
    const target = req.path;
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const slash = path.lastIndexOf('/');
    const service = slash > 0 ? path.slice(1, slash) : undefined;
    const method = slash > 0 ? path.slice(slash + 1) : undefined;
    for (const e of this.entries) {
      if (e.service !== undefined && !valueHolds(e.service, service)) continue;
      if (e.method !== undefined && !valueHolds(e.method, method)) continue;
      let ok = true;
      for (const h of e.headers) if (!valueHolds(h, headerValue(req.headers, h.name))) { ok = false; break; }
      if (ok) return e.result;
    }
    return undefined;
  }
}

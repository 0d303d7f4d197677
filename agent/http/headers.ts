import type { Result } from '../core/result';
import { err, ok } from '../core/result';

/**
 * Header rules of the proxy, pure and tested without sockets: which fields are hop-by-hop
 * (RFC 9110 7.6.1), which requests are refused before anything reaches the application, and what
 * a denied request's body costs.
 */

/** Fields that describe one hop and never travel past the proxy. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'http2-settings']);

/** A refusal: the status the proxy answers and why (for the access log). */
export interface Refusal { status: number; reason: string }

/** Adds the lower-case names a Connection field lists: those are hop-by-hop too. */
function addTokens(into: Set<string>, list: string): void {
  for (const t of list.split(',')) {
    const name = t.trim().toLowerCase();
    if (name) into.add(name);
  }
}

/**
 * The raw header list (`[name, value, name, value, ...]`, order and case as received) without the
 * hop-by-hop fields and the ones Connection names. `keep` lists hop-by-hop names that must pass
 * (an Upgrade handshake keeps `connection` and `upgrade`); `drop` removes more (e.g. `expect`, which
 * the proxy answers itself; `trailer` on a response that cannot carry trailers). Every request and
 * response head goes through it at each proxy: names are lowered once, and the Connection tokens
 * are collected only when a head has a Connection field (most have none).
 */
export function withoutHopByHop(raw: readonly string[], o: { keep?: readonly string[]; drop?: readonly string[] } = {}): string[] {
  const keep = o.keep;
  const drop = o.drop;
  const lower: string[] = new Array<string>(raw.length >> 1);
  let named: Set<string> | undefined;
  for (let i = 0, j = 0; i < raw.length; i += 2, j++) {
    const name = raw[i]!.toLowerCase();
    lower[j] = name;
    if (name === 'connection') addTokens(named ??= new Set<string>(), raw[i + 1]!);
  }
  const out: string[] = [];
  for (let i = 0, j = 0; i < raw.length; i += 2, j++) {
    const name = lower[j]!;
    if (drop !== undefined && drop.includes(name)) continue;
    if ((HOP_BY_HOP.has(name) || named?.has(name)) && !(keep !== undefined && keep.includes(name))) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** `[[name, value], ...]` from a flat raw list (the form addTrailers takes). */
export function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

function values(raw: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) out.push(raw[i + 1]!);
  return out;
}

/** What the HTTP/1 request head says about its body. */
export interface BodyFraming { chunked: boolean; contentLength?: number }

/**
 * Checks an HTTP/1 request head that Node's strict parser (llhttp) has accepted, for what it lets
 * through and a proxy must not: no Host (HTTP/1.0; the request upstream is HTTP/1.1), a second Host (RFC 9112 3.2: 400; the policy would judge one, the
 * application might use the other), a transfer coding other than `chunked` (501: the proxy could
 * not frame it), a body announced larger than maxRequestBodyBytes (413), more header fields than
 * maxHeaderPairs (431; Node would drop the extra ones silently).
 */
export function checkHttp1Request(raw: readonly string[], maxRequestBodyBytes: number | undefined, maxHeaderPairs = Infinity): Result<BodyFraming, Refusal> {
  if (raw.length / 2 > maxHeaderPairs) return err({ status: 431, reason: `more than ${maxHeaderPairs} header fields` });
  // One pass over the head (it runs for every request at each proxy): Host, Transfer-Encoding and Content-Length.
  let hosts = 0;
  let te: string[] | undefined;
  let cl: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    // Only names of these lengths can match: skips lowering every other field.
    if (name.length !== 4 && name.length !== 14 && name.length !== 17) continue;
    const lower = name.toLowerCase();
    if (lower === 'host') hosts++;
    else if (lower === 'content-length') (cl ??= []).push(raw[i + 1]!);
    else if (lower === 'transfer-encoding') (te ??= []).push(raw[i + 1]!);
  }
  if (hosts > 1) return err({ status: 400, reason: 'more than one Host header' });
  // Node requires Host of HTTP/1.1 only; the proxy speaks HTTP/1.1 upstream, where it is required (Envoy refuses such HTTP/1.0 requests too).
  if (hosts === 0) return err({ status: 400, reason: 'request without Host header' });
  if (te !== undefined) {
    const codings = te.join(',').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s);
    if (codings.length !== 1 || codings[0] !== 'chunked') return err({ status: 501, reason: `unsupported Transfer-Encoding "${te.join(', ')}"` });
    if (cl !== undefined) return err({ status: 400, reason: 'both Content-Length and Transfer-Encoding' });
  }
  if (cl !== undefined && cl.length > 1) return err({ status: 400, reason: 'more than one Content-Length header' });
  const framing: BodyFraming = { chunked: te !== undefined, ...(cl !== undefined ? { contentLength: Number(cl[0]!.trim()) } : {}) };
  if (framing.contentLength !== undefined && maxRequestBodyBytes !== undefined && framing.contentLength > maxRequestBodyBytes) {
    return err({ status: 413, reason: `Content-Length ${framing.contentLength} exceeds the limit of ${maxRequestBodyBytes} bytes` });
  }
  return ok(framing);
}

/**
 * Whether answering a request without reading its body must close the connection: the body must
 * otherwise be read and dropped before the next request, which is cheap only when it is announced
 * and small. With `Expect: 100-continue` the client may never send it, so the proxy cannot wait.
 */
export function refusalCloses(framing: BodyFraming, expectContinue: boolean, maxDrainBytes: number): boolean {
  if (framing.chunked) return true;
  const length = framing.contentLength ?? 0;
  if (length === 0) return false;
  return expectContinue || length > maxDrainBytes;
}

/** The Upgrade tokens of a request, lower case (`websocket`, `h2c`). */
export function upgradeProtocols(raw: readonly string[]): string[] {
  return values(raw, 'upgrade').join(',').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s);
}

/**
 * HTTP/2 header objects (Node's form: lower-case names, pseudo-headers included) without the
 * connection-specific fields RFC 9113 8.2.2 forbids (`te` survives only as `trailers`, which gRPC
 * needs).
 */
export function h2WithoutConnectionHeaders<T extends Record<string, unknown>>(headers: T): T {
  const out: Record<string | symbol, unknown> = {};
  for (const key of Reflect.ownKeys(headers)) {
    if (typeof key === 'string') {
      if (HOP_BY_HOP.has(key) && !(key === 'te' && String(headers[key]).trim().toLowerCase() === 'trailers')) continue;
    }
    out[key] = (headers as Record<string | symbol, unknown>)[key];
  }
  return out as T;
}

/**
 * An HTTP/2 request naming two hosts: a `host` field that differs from `:authority` (case aside).
 * RFC 9113 8.3.1 says to treat it as malformed, and the proxy must: policy judges `:authority`,
 * and an application that reads `host` would serve another host than the one judged. The reason
 * for a 400, else undefined. Pure.
 */
export function conflictingHost(headers: Readonly<Record<string, unknown>>): string | undefined {
  const authority = headers[':authority'], host = headers.host;
  if (authority === undefined || host === undefined) return undefined;
  if (Array.isArray(host)) return 'more than one host field';
  return String(host).toLowerCase() === String(authority).toLowerCase() ? undefined : `host field ${JSON.stringify(String(host).slice(0, 64))} differs from :authority ${JSON.stringify(String(authority).slice(0, 64))}`;
}

/** The status for a request the upstream could not take: 503 when no connection could be made, 502 otherwise (Envoy's choice). */
export function statusForUpstreamError(e: { code?: string } | undefined): number {
  const code = e?.code ?? '';
  return ['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOENT'].includes(code) ? 503 : 502;
}

/**
 * The names that occur more than once in a raw header list (name, value, name, value, ...), lower
 * case, with their values in order; undefined when none does. Node joins such fields into one
 * `a, b` value in its header objects; a proxy must send them on as they came. Pseudo-headers and
 * cookies (joined by their own rules) are left out. Pure.
 */
export function repeatedFields(raw: readonly string[]): Map<string, string[]> | undefined {
  let all: Map<string, string[]> | undefined;
  const seen = new Map<string, string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name.startsWith(':') || name === 'cookie' || name === 'set-cookie') continue;
    const prev = seen.get(name);
    if (prev === undefined) { seen.set(name, raw[i + 1]!); continue; }
    all ??= new Map();
    const list = all.get(name) ?? [prev];
    list.push(raw[i + 1]!);
    all.set(name, list);
  }
  return all;
}

import type { PathModifier } from './route-info';
import type { HeaderEdits, RouteBackend, RouteMatch } from './route-match';
import type { RouteRequest } from './route-table';

/**
 * The Gateway API's request and response filters as pure functions over plain values: what the
 * proxy must answer (a redirect) or send (path, host, header edits). RequestMirror is carried out
 * by the proxy from RouteMatch.mirrors / RouteBackend.mirrors.
 */

export interface EditRequest extends RouteRequest {
  /** The scheme the client used; captured mesh traffic is 'http' (the default). */
  scheme?: 'http' | 'https';
  /** The Service port the client called: in a mesh, the "listener port" of the redirect rules. */
  port: number;
}

export type RequestEdits =
  | { redirect: { status: number; location: string } }
  | {
    /** The request-target to send (query kept). */
    path: string;
    /** URLRewrite hostname: the Host / :authority to send; absent: unchanged. */
    host?: string;
    /** The rule's RequestHeaderModifier, then the backend's. Apply with applyHeaderEdits. */
    headers: HeaderEdits;
  };

/**
 * RequestRedirect (answered by the proxy), or URLRewrite and RequestHeaderModifier (sent on).
 * `backend`: the backend picked for the request, whose own RequestHeaderModifier applies after the rule's.
 */
export function requestEdits(match: RouteMatch, req: EditRequest, backend?: RouteBackend): RequestEdits {
  const q = req.path.indexOf('?');
  const path = q < 0 ? req.path : req.path.slice(0, q);
  const query = q < 0 ? '' : req.path.slice(q);
  const r = match.redirect;
  if (r !== undefined) {
    const scheme = r.scheme ?? req.scheme ?? 'http';
    // Gateway API: no port given → the scheme's well-known port if the scheme is set, else the listener (Service) port.
    const port = r.port ?? (r.scheme !== undefined ? wellKnownPort(r.scheme) : req.port);
    const newPath = r.path === undefined ? path : replacePath(path, r.path, match.matchedPrefix);
    const host = r.hostname ?? hostOf(req.headers);
    const portText = port === wellKnownPort(scheme) ? '' : `:${port}`;
    const location = host === undefined ? `${newPath}${query}` : `${scheme}://${bracket(host)}${portText}${newPath}${query}`;
    return { redirect: { status: r.statusCode, location } };
  }
  const w = match.rewrite;
  const headers = backend === undefined || backend.requestHeaders.length === 0 ? match.requestHeaders : [...match.requestHeaders, ...backend.requestHeaders];
  const out: RequestEdits = { path: w?.path === undefined ? req.path : `${replacePath(path, w.path, match.matchedPrefix)}${query}`, headers };
  if (w?.hostname !== undefined) out.host = w.hostname;
  return out;
}

/** The rule's ResponseHeaderModifier, then the backend's. */
export function responseEdits(match: RouteMatch, backend?: RouteBackend): HeaderEdits {
  if (backend === undefined || backend.responseHeaders.length === 0) return match.responseHeaders;
  return [...match.responseHeaders, ...backend.responseHeaders];
}

/**
 * Applies edits in place to a Node-style header object (lower-case names) and returns it: `set`
 * replaces every value, `add` appends one (a second header line, which the receiver reads as
 * `old,new`), `remove` deletes.
 */
export function applyHeaderEdits<H extends Record<string, string | string[] | undefined>>(headers: H, edits: HeaderEdits): H {
  const h = headers as Record<string, string | string[] | undefined>;
  for (const e of edits) {
    if (e.op === 'set') h[e.name] = e.value;
    else if (e.op === 'remove') delete h[e.name];
    else {
      const old = h[e.name];
      h[e.name] = old === undefined ? e.value : Array.isArray(old) ? [...old, e.value] : [old, e.value];
    }
  }
  return headers;
}

/**
 * ReplaceFullPath, or ReplacePrefixMatch with the Gateway API's segment-wise rules: the matched
 * prefix (trailing `/` ignored) is replaced, `/foo/bar` with prefix `/foo` and replacement `/xyz`
 * or `/xyz/` gives `/xyz/bar`, replacement `""` gives `/bar`, and an empty result is `/`.
 */
export function replacePath(path: string, modifier: PathModifier, matchedPrefix: string | undefined): string {
  if (modifier.type === 'ReplaceFullPath') return modifier.replaceFullPath;
  const prefix = stripTrailingSlashes(matchedPrefix ?? '/');
  const rest = path.startsWith(prefix) ? path.slice(prefix.length) : path;
  const out = stripTrailingSlashes(modifier.replacePrefixMatch) + rest;
  if (out === '') return '/';
  return out.startsWith('/') ? out : `/${out}`;
}

function stripTrailingSlashes(text: string): string {
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) === 47) end--;
  return text.slice(0, end);
}

function wellKnownPort(scheme: string): number {
  return scheme === 'https' ? 443 : 80;
}

/** The host the client asked for, without its port (`Host`, or HTTP/2's `:authority`). */
function hostOf(headers: RouteRequest['headers']): string | undefined {
  const raw = headers.host ?? headers[':authority'];
  const text = Array.isArray(raw) ? raw[0] : raw;
  if (text === undefined || text === '') return undefined;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    return end < 0 ? text : text.slice(1, end);
  }
  const colon = text.lastIndexOf(':');
  return colon < 0 ? text : text.slice(0, colon);
}

function bracket(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

import type { Result } from '../core/result';
import { err, ok } from '../core/result';

/**
 * Request-path normalization, before any policy, route or log sees the path and before the
 * application gets it: Istio's `meshConfig.pathNormalization` modes, with the behaviour of the
 * Envoy options they set (`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action`).
 * Without it, `DENY paths: ["/admin/*"]` is passed by `/./admin/x`, `/a/../admin/x`,
 * `/%61dmin/x` or `\admin\x`, which the application then serves as `/admin/x`.
 *
 * - `NONE`: the path as sent.
 * - `BASE` (the default, as Istio's): RFC 3986 section 6 as Envoy does it (Chromium's URL path
 *   canonicalizer): `.` and `..` segments removed (also written `%2e`), never above the root; `\`
 *   read as `/`; escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) decoded; other escapes
 *   kept as sent (their hex case too); characters that may not appear raw escaped (`%XX`, upper
 *   case); an escaped NUL (`%00`) or a raw one refuses the request.
 * - `MERGE_SLASHES`: BASE, then runs of `/` merged into one.
 * - `DECODE_AND_MERGE_SLASHES`: `%2F` and `%5C` (any case) decoded to `/` and `\` first, then
 *   MERGE_SLASHES.
 *
 * Only the path is touched, never the query. The request target's forms (RFC 9112 section 3.2):
 * origin form `/p?q` is normalized; absolute form `http://host/p?q` keeps scheme and authority
 * and has its path normalized, its origin form `/p?q` is what rules match, and the request's host
 * is the authority it names (a server must ignore Host then); `*` is kept for OPTIONS and the
 * authority form for CONNECT; anything else is refused.
 */
export type PathNormalization = 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES';

export const PATH_NORMALIZATIONS: readonly PathNormalization[] = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'];
export const DEFAULT_PATH_NORMALIZATION: PathNormalization = 'BASE';

export interface NormalizedTarget {
  /** the request target to forward: the input's form, its path normalized */
  target: string;
  /** what policy, routes and logs match: the origin form (`/p?q`) of an origin- or absolute-form target, else the target */
  path: string;
  /** absolute form only: the authority it names, which is the request's host */
  authority?: string;
}

/** Characters that may not appear raw in a path; escaped as Chromium's path canonicalizer escapes them (besides controls, DEL and bytes above 0x7F). */
const ESCAPED_ASCII = new Set([' ', '"', '#', '<', '>', '`', '{', '|', '}'].map((c) => c.charCodeAt(0)));
/** What a path needs no work for under BASE: no dot, backslash, escape, or character to escape. */
const NEEDS_WORK = /[.\\%\x00-\x20"#<>`{|}\x7f-\uffff]/;
const ABSOLUTE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s;
/** A host (name, IPv4, or IPv6 in brackets) and optional port: what may stand between `//` and the path (a `\\` there would be read as the path's start by a WHATWG URL parser). */
const AUTHORITY = /^(?:[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?$/;

/**
 * The request target `target` of a `method` request, normalized by `mode`; an error (the reason,
 * for a 400) when it cannot be. Pure.
 */
export function normalizeTarget(target: string, method: string, mode: PathNormalization): Result<NormalizedTarget, string> {
  if (target.charCodeAt(0) === 0x2f /* / */) {
    const path = normalizeOriginForm(target, mode);
    return path.ok ? ok({ target: path.value, path: path.value }) : path;
  }
  if (method === 'CONNECT') return ok({ target, path: target });
  if (target === '*') {
    return method === 'OPTIONS' ? ok({ target, path: target }) : err(`request target "*" is only for OPTIONS, not ${method}`);
  }
  const m = ABSOLUTE.exec(target);
  if (!m) return err(`request target must start with "/" (or be an absolute URL), got ${JSON.stringify(target.slice(0, 64))}`);
  const [, scheme, authority, rest] = m as unknown as [string, string, string, string];
  if (authority.includes('@')) return err('request target names a user (user@host): not allowed in an http URL');
  if (!AUTHORITY.test(authority)) return err(`request target's host ${JSON.stringify(authority.slice(0, 64))} is not a host[:port]`);
  const path = normalizeOriginForm(rest.startsWith('/') ? rest : `/${rest}`, mode);
  if (!path.ok) return path;
  return ok({ target: `${scheme}://${authority}${path.value}`, path: path.value, authority });
}

/** An origin-form target (`/p?q`): its path normalized, its query kept. */
function normalizeOriginForm(target: string, mode: PathNormalization): Result<string, string> {
  if (mode === 'NONE') return ok(target);
  const q = target.indexOf('?');
  let path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  if (mode === 'DECODE_AND_MERGE_SLASHES') path = path.replace(/%2f/gi, '/').replace(/%5c/gi, '\\');
  if (NEEDS_WORK.test(path)) {
    const base = canonicalPath(path);
    if (!base.ok) return base;
    path = base.value;
  }
  if (mode !== 'BASE' && path.includes('//')) path = path.replace(/\/{2,}/g, '/');
  return ok(path + query);
}

const enum Dot { NotADirectory, Current, Up }

/** `.` (1) or `%2e`/`%2E` (3) at `i`, else 0. */
function dotAt(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c === 0x2e) return 1;
  if (c === 0x25 && s.charCodeAt(i + 1) === 0x32 && (s.charCodeAt(i + 2) | 0x20) === 0x65) return 3;
  return 0;
}

function isSlash(c: number): boolean {
  return c === 0x2f || c === 0x5c;
}

/** What a dot that follows a slash is, given what comes after it; `consumed`: how many characters after the dot belong to it. */
function classifyAfterDot(s: string, afterDot: number): { kind: Dot; consumed: number } {
  if (afterDot === s.length) return { kind: Dot.Current, consumed: 0 };
  if (isSlash(s.charCodeAt(afterDot))) return { kind: Dot.Current, consumed: 1 };
  const second = dotAt(s, afterDot);
  if (second > 0) {
    const after = afterDot + second;
    if (after === s.length) return { kind: Dot.Up, consumed: second };
    if (isSlash(s.charCodeAt(after))) return { kind: Dot.Up, consumed: second + 1 };
  }
  return { kind: Dot.NotADirectory, consumed: 0 };
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  if (l >= 0x61 && l <= 0x66) return l - 0x61 + 10;
  return -1;
}

/** The byte an escape `%XY` at `i` stands for, or -1 when `i` does not start a valid escape. */
function escapeAt(s: string, i: number): number {
  const hi = hexValue(s.charCodeAt(i + 1)), lo = hexValue(s.charCodeAt(i + 2));
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/** RFC 3986's unreserved characters other than `.` (which dotAt handles): decoded when escaped. */
function unreserved(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d || b === 0x5f || b === 0x7e;
}

function escapeByte(b: number): string {
  return `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`;
}

/** One character that must not stay raw, escaped: a byte (a header string holds bytes as Latin-1) or, above 0xFF, its UTF-8. */
function escapeChar(ch: string): string {
  const c = ch.charCodeAt(0);
  if (c <= 0xff) return escapeByte(c);
  let out = '';
  for (const b of Buffer.from(ch, 'utf8')) out += escapeByte(b);
  return out;
}

/** Drops the output's last segment: it ends with `/`; back to the slash before it, never past the first. */
function upOneSegment(out: string): string {
  if (out.length <= 1) return out;
  const prev = out.lastIndexOf('/', out.length - 2);
  return out.slice(0, prev < 0 ? 1 : prev + 1);
}

/**
 * An escape just decoded after a `%` that began no valid escape (`lastInvalid`, an index into
 * `out`) may have made that `%` start one (`%%30%30` would read `%00` to whoever decodes it
 * again): then that `%` is written `%25`. `next` is the input character after the decoded escape,
 * which may complete the sequence.
 */
function guardNestedEscape(out: string, lastInvalid: number, next: number): string {
  const probe = lastInvalid === out.length - 2 ? (Number.isNaN(next) || next >= 0x80 ? undefined : out + String.fromCharCode(next)) : out;
  if (probe === undefined || escapeAt(probe, lastInvalid) < 0) return out;
  return `${out.slice(0, lastInvalid)}%25${out.slice(lastInvalid + 1)}`;
}

/** BASE: the path (starting with `/`, no query) canonicalized as Envoy's normalize_path does. */
export function canonicalPath(path: string): Result<string, string> {
  let out = '';
  let lastInvalid = -10;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    const dot = dotAt(path, i);
    if (dot > 0) {
      if (out.endsWith('/')) {
        const after = classifyAfterDot(path, i + dot);
        if (after.kind === Dot.NotADirectory) out += '.';
        else if (after.kind === Dot.Up) out = upOneSegment(out);
        i += dot + (after.kind === Dot.NotADirectory ? 0 : after.consumed) - 1;
      } else {
        out += '.';
        i += dot - 1;
      }
    } else if (c === 0x5c) {
      out += '/';
    } else if (c === 0x25) {
      const b = escapeAt(path, i);
      if (b < 0) {
        lastInvalid = out.length;
        out += '%';
      } else if (unreserved(b)) {
        out += String.fromCharCode(b);
        i += 2;
        if (lastInvalid >= out.length - 3) out = guardNestedEscape(out, lastInvalid, path.charCodeAt(i + 1));
      } else if (b === 0) {
        return err('request path holds an escaped NUL (%00)');
      } else {
        out += path.slice(i, i + 3);
        i += 2;
      }
    } else if (c === 0) {
      return err('request path holds a NUL');
    } else if (c < 0x20 || c === 0x7f || ESCAPED_ASCII.has(c)) {
      out += escapeByte(c);
    } else if (c >= 0x80) {
      // A surrogate pair is one character: escape it whole.
      const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < path.length;
      out += escapeChar(path.slice(i, pair ? i + 2 : i + 1));
      if (pair) i++;
    } else {
      out += path[i];
    }
  }
  return ok(out === '' ? '/' : out);
}

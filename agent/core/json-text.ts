/**
 * JSON text written piece by piece, for lines built without an object (the access log): a
 * "members" fragment is a run of `,"key":value` pairs, so fragments join by concatenation and a
 * line is `{` + its first member's text without the comma ... `}`. Keys are the caller's constants
 * and are written as they are (they must need no escaping); values go through jsonString() or
 * jsonNumber(). Pure.
 */

/** A character JSON.stringify would escape: controls, `"`, `\` and (lone) surrogates. */
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\ud800-\udfff]/;

/** A string as JSON text: quoted as it is when nothing in it needs escaping, else JSON.stringify. */
export function jsonString(s: string): string {
  return plain(s) ? `"${s}"` : JSON.stringify(s);
}

/** True when JSON writes `s` as it is (the short strings of a line are scanned in JS: faster than the regex there). */
function plain(s: string): boolean {
  const n = s.length;
  if (n > 64) return !NEEDS_ESCAPE.test(s);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c < 32 || c === 34 || c === 92 || (c >= 0xd800 && c <= 0xdfff)) return false;
  }
  return true;
}

/**
 * `s` as one flat string (V8 keeps a concatenation as a tree of its parts until something reads
 * it whole; converting it to a number flattens it in place, the trick of the flatstr package). For
 * text built once and copied into many lines, so each line copies one piece instead of walking the
 * tree. Returns `s`.
 */
export function flattened(s: string): string {
  Number(s);
  return s;
}

/** A number as JSON text (what JSON.stringify and pino write: NaN and the infinities become null). */
export function jsonNumber(n: number): string {
  return Number.isFinite(n) ? `${n}` : 'null';
}

/** The member `,"key":"value"`. */
export function strMember(key: string, value: string): string {
  return `,"${key}":${jsonString(value)}`;
}

/** The member `,"key":number`. */
export function numMember(key: string, value: number): string {
  return `,"${key}":${jsonNumber(value)}`;
}

/** The member `,"key":<any JSON value>` (JSON.stringify; for rare, structured values); '' for undefined. */
export function valueMember(key: string, value: unknown): string {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return '';
  if (typeof value === 'string') return strMember(key, value);
  if (typeof value === 'number') return numMember(key, value);
  return `,"${key}":${JSON.stringify(value) ?? 'null'}`;
}

/**
 * The members of an object's own enumerable fields, in their order, skipping undefined values as
 * pino does; keys are escaped here (this is the path for lines whose fields are not constants).
 */
export function membersOf(fields: Record<string, unknown>): string {
  let out = '';
  for (const key of Object.keys(fields)) {
    const m = valueMember(NEEDS_ESCAPE.test(key) ? JSON.stringify(key).slice(1, -1) : key, fields[key]);
    out += m;
  }
  return out;
}

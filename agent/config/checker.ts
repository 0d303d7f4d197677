import type { ConfigError } from './config-error';
import { isIP } from 'node:net';
import { canonicalIp } from '../core/ip';

export type Fields = Record<string, unknown>;

export function isMapping(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const RFC1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Field checks for one object. Every check records what is wrong and returns what it could read
 * (or undefined), so a whole stream is checked in one pass and every problem is reported.
 */
export class Checker {
  private failures = 0;

  constructor(
    readonly object: string,
    private readonly errors: ConfigError[],
  ) {}

  get failed(): boolean {
    return this.failures > 0;
  }

  fail(field: string, message: string): void {
    this.failures++;
    this.errors.push({ object: this.object, field, message });
  }

  /** Rejects keys outside `allowed`; a near miss (`nodename`) names the field that was meant. */
  allowOnly(value: Fields, field: string, allowed: ReadonlySet<string>): void {
    for (const key of Object.keys(value)) {
      if (allowed.has(key)) continue;
      const meant = nearestField(key, allowed);
      this.fail(join(field, key), meant ? `unknown field; did you mean "${meant}"?` : 'unknown field');
    }
  }

  mapping(value: unknown, field: string): Fields | undefined {
    if (isMapping(value)) return value;
    this.fail(field, 'must be a mapping');
    return undefined;
  }

  /** An absent optional mapping reads as empty. */
  optionalMapping(value: unknown, field: string): Fields {
    return value === undefined ? {} : (this.mapping(value, field) ?? {});
  }

  list(value: unknown, field: string): unknown[] | undefined {
    if (Array.isArray(value)) return value;
    this.fail(field, 'must be a list');
    return undefined;
  }

  string(value: unknown, field: string): string | undefined {
    if (typeof value === 'string' && value !== '') return value;
    this.fail(field, 'must be a non-empty string');
    return undefined;
  }

  optionalString(value: unknown, field: string): string | undefined {
    return value === undefined ? undefined : this.string(value, field);
  }

  /** A lowercase RFC 1123 label, as Kubernetes requires of namespace and many other names. */
  dnsLabel(value: unknown, field: string): string | undefined {
    const text = this.string(value, field);
    if (text === undefined) return undefined;
    if (text.length <= 63 && RFC1123_LABEL.test(text)) return text;
    this.fail(field, `"${text}" is not a lowercase RFC 1123 label (a-z, 0-9, '-', at most 63 characters)`);
    return undefined;
  }

  /** A lowercase RFC 1123 subdomain, as Kubernetes requires of object names. */
  dnsSubdomain(value: unknown, field: string): string | undefined {
    const text = this.string(value, field);
    if (text === undefined) return undefined;
    if (text.length <= 253 && text.split('.').every((part) => RFC1123_LABEL.test(part))) return text;
    this.fail(field, `"${text}" is not a lowercase RFC 1123 name (a-z, 0-9, '-', '.', at most 253 characters)`);
    return undefined;
  }

  /** Labels, annotations, selectors: string keys to string values; absent reads as empty. */
  stringMap(value: unknown, field: string): Record<string, string> {
    const map: Record<string, string> = {};
    if (value === undefined) return map;
    const fields = this.mapping(value, field);
    for (const [key, entry] of Object.entries(fields ?? {})) {
      if (typeof entry === 'string') map[key] = entry;
      else this.fail(join(field, key), 'must be a string (quote numbers and booleans)');
    }
    return map;
  }

  boolean(value: unknown, field: string): boolean | undefined {
    if (typeof value === 'boolean') return value;
    this.fail(field, 'must be true or false');
    return undefined;
  }

  port(value: unknown, field: string): number | undefined {
    if (Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 65535) return value as number;
    this.fail(field, 'must be a port number (an integer from 1 to 65535)');
    return undefined;
  }

  /** Returns the canonical form (core/ip.ts). Zone ids (`fe80::1%eth0`) are not addresses a pod or Service has. */
  ip(value: unknown, field: string): string | undefined {
    const text = this.string(value, field);
    if (text === undefined) return undefined;
    if (isIP(text) !== 0 && !text.includes('%')) return canonicalIp(text);
    this.fail(field, `"${text}" is not an IPv4 or IPv6 address`);
    return undefined;
  }

  oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[]): T | undefined {
    if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
    this.fail(field, `must be one of ${allowed.join(', ')}`);
    return undefined;
  }
}

/** The allowed field a misspelt key most likely meant: same letters in another case, or one or two edits away. */
function nearestField(key: string, allowed: ReadonlySet<string>): string | undefined {
  const lower = key.toLowerCase();
  const tolerance = lower.length >= 6 ? 2 : 1;
  let best: string | undefined;
  let bestDistance = tolerance + 1;
  for (const candidate of allowed) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

/** Levenshtein distance. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length];
}

/** `spec` + `nodeName` → `spec.nodeName`; keys that are not identifiers are bracketed. */
export function join(field: string, key: string | number): string {
  if (typeof key === 'number') return `${field}[${key}]`;
  const part = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? key : `[${key}]`;
  if (field === '') return part;
  return part.startsWith('[') ? `${field}${part}` : `${field}.${part}`;
}

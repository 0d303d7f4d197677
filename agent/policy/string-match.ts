/**
 * Istio's string match for AuthorizationPolicy values (pilot/pkg/security/authz/matcher):
 * `*` alone means present, `*abc` a suffix, `abc*` a prefix, anything else exact. An absent
 * value matches no pattern (so a `not*` field over an absent value holds).
 */
export class StringMatcher {
  private readonly exact = new Set<string>();
  private readonly prefixes: string[] = [];
  private readonly suffixes: string[] = [];
  private present = false;

  /** `caseless`: patterns are already lower-cased (convert.ts) and values are lower-cased before matching (hosts). */
  constructor(patterns: readonly string[], private readonly caseless = false) {
    for (const p of patterns) {
      if (p === '*') this.present = true;
      else if (p.startsWith('*')) this.suffixes.push(p.slice(1));
      else if (p.endsWith('*')) this.prefixes.push(p.slice(0, -1));
      else this.exact.add(p);
    }
  }

  matches(value: string | undefined): boolean {
    if (value === undefined) return false;
    if (this.present) return true;
    const v = this.caseless ? value.toLowerCase() : value;
    if (this.exact.has(v)) return true;
    for (const p of this.prefixes) if (v.startsWith(p)) return true;
    for (const s of this.suffixes) if (v.endsWith(s)) return true;
    return false;
  }
}

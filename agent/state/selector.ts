/** True when every `key: value` of the selector is among the labels. An empty selector matches everything. */
export function selectorMatches(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}

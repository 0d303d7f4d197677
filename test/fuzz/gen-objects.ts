/**
 * Structure-aware inputs for the config parsers: a valid object from the corpus with a few of its
 * fields replaced, removed, added or repeated at random, anywhere in the tree.
 */
import * as fc from 'fast-check';
import { parseAllDocuments } from 'yaml';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** The corpus's YAML documents as plain objects (Lists unwrapped). */
export function corpusObjects(seeds: readonly Buffer[]): Json[] {
  const out: Json[] = [];
  for (const seed of seeds) {
    for (const doc of parseAllDocuments(seed.toString('utf8'))) {
      if (doc.errors.length > 0) continue;
      const value = doc.toJS() as Json;
      if (value && typeof value === 'object' && !Array.isArray(value) && value.kind === 'List' && Array.isArray(value.items)) out.push(...value.items);
      else if (value !== null && value !== undefined) out.push(value);
    }
  }
  return out;
}

/** Values users get wrong: wrong types, edge numbers, empty and odd strings, lookalikes of valid values. */
export const oddValue: fc.Arbitrary<Json> = fc.oneof(
  fc.constantFrom<Json>(null, true, false, 0, -1, 1.5, 65536, 2 ** 31, 2 ** 53, -(2 ** 63), 1e308, '', ' ', '*', '**', '/', '0', '-1', 'NaN', 'Infinity',
    '10s', '1h2m3s4ms', '0ms', '99999h', '1.5s', '10.0.0.0/33', '::/0', 'fd00::1', '10.0.0.1', '256.1.1.1', 'a'.repeat(300), '(a+)+$', '[', '\\', '.*.*.*.*.*.*=',
    'ALLOW', 'DENY', 'AUDIT', 'CUSTOM', 'STRICT', 'PERMISSIVE', 'DISABLE', 'UNSET', 'PathPrefix', 'Exact', 'RegularExpression', 'RequestHeaderModifier', 'URLRewrite', 'RequestMirror',
    'Service', 'gateway.networking.k8s.io', 'spiffe://cluster.local/ns/a/sa/b', 'cluster.local/ns/*', 'request.headers[x]', 'source.ip', 'connection.sni', 'ROUND_ROBIN', 'LEAST_REQUEST', '5xx', 'gateway-error',
    [], {}, [null], [[]], [{}], { '': null }, { __proto__: 1 } as unknown as Json, { constructor: 'x' }),
  fc.integer(), fc.double(), fc.string({ maxLength: 20 }),
  fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }),
);

type Edit = (root: Json) => Json;

/** Every path into `value` (object keys and array indexes), the root first. */
function paths(value: Json, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  out.push(prefix);
  if (Array.isArray(value)) value.forEach((v, i) => paths(v, [...prefix, i], out));
  else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) paths(v, [...prefix, k], out);
  return out;
}

function clone(v: Json): Json {
  return v === undefined ? null : (JSON.parse(JSON.stringify(v)) as Json);
}

/** Applies `f` to the container at `path` (parent) and the key; the root is wrapped so it can be replaced. */
function at(root: Json, pick: number, skip: (path: Array<string | number>) => boolean, f: (parent: Json[] | { [k: string]: Json }, key: string | number) => void): Json {
  const box: { [k: string]: Json } = { root: clone(root) };
  const all = paths(box.root!).filter((p) => !skip(p));
  if (all.length === 0) return box.root!;
  const path = all[pick % all.length]!;
  let parent: Json[] | { [k: string]: Json } = box;
  let key: string | number = 'root';
  for (const step of path) {
    parent = (parent as Record<string | number, Json>)[key] as Json[] | { [k: string]: Json };
    key = step;
  }
  f(parent, key);
  return box.root ?? null;
}

/**
 * Edits: replace a value, delete a key, add an unknown key, repeat an array element, turn a value
 * into a list of itself. `skip` keeps parts of the tree out (the kube path's metadata, which the
 * API server has checked).
 */
export function edits(skip: (path: Array<string | number>) => boolean = () => false): fc.Arbitrary<Edit[]> {
  const edit: fc.Arbitrary<Edit> = fc.oneof(
    fc.tuple(fc.nat(), oddValue).map(([pick, v]): Edit => (root) => at(root, pick, skip, (p, k) => { (p as Record<string | number, Json>)[k] = v; })),
    fc.nat().map((pick): Edit => (root) => at(root, pick, skip, (p, k) => { if (Array.isArray(p)) p.splice(k as number, 1); else delete p[k as string]; })),
    fc.tuple(fc.nat(), fc.constantFrom('extra', 'nodename', 'specs', 'matchlabels', 'rule', '__proto__', 'constructor', ''), oddValue).map(([pick, name, v]): Edit => (root) =>
      at(root, pick, skip, (p, k) => { const child = (p as Record<string | number, Json>)[k]; if (child && typeof child === 'object' && !Array.isArray(child)) Object.defineProperty(child, name, { value: v, enumerable: true, writable: true, configurable: true }); })),
    fc.tuple(fc.nat(), fc.integer({ min: 1, max: 200 })).map(([pick, times]): Edit => (root) =>
      at(root, pick, skip, (p, k) => { const child = (p as Record<string | number, Json>)[k]; if (Array.isArray(child) && child.length > 0) for (let i = 0; i < times; i++) child.push(clone(child[0]!)); })),
    fc.nat().map((pick): Edit => (root) => at(root, pick, skip, (p, k) => { (p as Record<string | number, Json>)[k] = [(p as Record<string | number, Json>)[k]!]; })),
  );
  return fc.array(edit, { minLength: 1, maxLength: 6 });
}

/** A corpus object with random edits. */
export function editedObject(objects: readonly Json[], skip?: (path: Array<string | number>) => boolean): fc.Arbitrary<Json> {
  return fc.tuple(fc.nat({ max: objects.length - 1 }), edits(skip)).map(([i, es]) => es.reduce((o, e) => e(o), clone(objects[i]!)));
}

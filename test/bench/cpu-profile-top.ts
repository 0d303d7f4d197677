/**
 * The top self-time functions of a V8 CPU profile (`node --cpu-prof`), and self time per source
 * file: what docs/new-connections.md quotes. Usage: node dist/test/bench/cpu-profile-top.js FILE.cpuprofile [N] [PER_CONN_COUNT]
 * With PER_CONN_COUNT (connections the profiled process handled), times are also shown in µs per connection.
 * WEFT_PROFILE_INCLUSIVE=1 adds the total time under each function (its callees included, a
 * recursive frame counted once per sample): where a request's time goes, not only who spends it.
 */
import { readFileSync } from 'node:fs';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
interface Profile { nodes: Node[]; startTime: number; endTime: number; samples: number[]; timeDeltas: number[] }

export function selfTimes(p: Profile): { byFunction: Map<string, number>; byFile: Map<string, number>; totalUs: number } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const us = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) us.set(p.samples[i]!, (us.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i + 1] ?? 0));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let totalUs = 0;
  for (const [id, t] of us) {
    const n = byId.get(id)!;
    const file = n.callFrame.url.replace(/^.*\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:') || '(native)';
    const key = `${n.callFrame.functionName || '(anonymous)'} ${file}:${n.callFrame.lineNumber + 1}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + t);
    byFile.set(file, (byFile.get(file) ?? 0) + t);
    totalUs += t;
  }
  return { byFunction, byFile, totalUs };
}

/** Time under each function, its callees included; a function on a sample's stack twice counts once. */
export function inclusiveTimes(p: Profile): Map<string, number> {
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const keyOf = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(dist|node_modules)\//, '$1/') || '(native)'}:${n.callFrame.lineNumber + 1}`;
  const out = new Map<string, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const t = p.timeDeltas[i + 1] ?? 0;
    const seen = new Set<string>();
    for (let id: number | undefined = p.samples[i]; id !== undefined; id = parent.get(id)) {
      const k = keyOf(byId.get(id)!);
      if (!seen.has(k)) { seen.add(k); out.set(k, (out.get(k) ?? 0) + t); }
    }
  }
  return out;
}

if (require.main === module) {
  const [file, nArg, connArg] = process.argv.slice(2);
  if (!file) { console.error('usage: cpu-profile-top FILE.cpuprofile [N] [connections]'); process.exit(2); }
  const { byFunction, byFile, totalUs } = selfTimes(JSON.parse(readFileSync(file, 'utf8')) as Profile);
  const n = Number(nArg ?? 30);
  const conns = Number(connArg ?? 0);
  const fmt = (t: number) => `${(t / 1000).toFixed(0).padStart(7)} ms ${((100 * t) / totalUs).toFixed(1).padStart(5)} %${conns ? ` ${(t / conns).toFixed(1).padStart(7)} µs/conn` : ''}`;
  console.log(`total sampled ${(totalUs / 1000).toFixed(0)} ms`);
  console.log('## self time by function');
  for (const [k, t] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${fmt(t)}  ${k}`);
  console.log('## self time by file');
  for (const [k, t] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${fmt(t)}  ${k}`);
  if (process.env.WEFT_PROFILE_INCLUSIVE === '1') {
    console.log('## time under each function (callees included)');
    const incl = inclusiveTimes(JSON.parse(readFileSync(file, 'utf8')) as Profile);
    for (const [k, t] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${fmt(t)}  ${k}`);
  }
}

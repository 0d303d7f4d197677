/**
 * The V8 flags every Weft process starts with (agent/node-flags.ts) are accepted by this Node, and
 * do what they are there for: young-generation collections without parallel helper threads (on a
 * busy node the main thread waited for helpers that waited for a CPU: docs/tail-latency.md).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { test } from 'node:test';
import { WEFT_NODE_FLAGS } from '../../agent/node-flags';

/** Allocates with survivors, so that scavenges have enough to copy for V8 to split it across helpers. */
const SURVIVORS = 'let keep = []; for (let i = 0; i < 1e6; i++) { keep.push({ i, s: "x" + i }); if (keep.length > 20000) keep = keep.slice(10000); }';

/** Scavenges seen with --trace-gc-nvp, and how many of them had helper threads work (background.scavenge.parallel > 0). */
function scavenges(flags: string[]): { total: number; helped: number } {
  const r = spawnSync(process.execPath, [...flags, '--trace-gc-nvp', '-e', SURVIVORS], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `node ${flags.join(' ')} failed: ${r.stderr}`);
  const lines = r.stdout.split('\n').filter((l) => / gc=s /.test(l));
  const helped = lines.filter((l) => Number(/background\.scavenge\.parallel=([\d.]+)/.exec(l)?.[1] ?? 0) > 0).length;
  return { total: lines.length, helped };
}

test('node accepts every flag in WEFT_NODE_FLAGS (a misspelled V8 flag stops node with "bad option")', () => {
  const r = spawnSync(process.execPath, [...WEFT_NODE_FLAGS, '-e', '0'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `node ${WEFT_NODE_FLAGS.join(' ')}: ${r.stderr}`);
  assert.equal(r.stderr, '');
});

test('with WEFT_NODE_FLAGS the main thread scavenges alone: no helper thread works on a young-generation collection', () => {
  const weft = scavenges(WEFT_NODE_FLAGS);
  assert.ok(weft.total > 20, `expected many scavenges at a 1 MiB semi-space, saw ${weft.total}`);
  assert.equal(weft.helped, 0, `${weft.helped} of ${weft.total} scavenges had helper threads working`);
  if (availableParallelism() > 1) {
    // The same workload without the flag does use helpers here: the test sees the difference it guards.
    const parallel = scavenges(WEFT_NODE_FLAGS.filter((f) => f !== '--no-parallel-scavenge'));
    assert.ok(parallel.helped > 0, `without --no-parallel-scavenge, ${parallel.helped} of ${parallel.total} scavenges had helpers: the check cannot tell`);
  }
});

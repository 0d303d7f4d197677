/**
 * Every fuzz target (test/fuzz/targets.ts) for a fixed budget: the corpus replayed first, then
 * random and mutated inputs. A crash, an uncaught exception or a hang fails the target's test
 * with the reproducing input (base64, ready for test/fuzz/corpus/<target>/). WEFT_FUZZ_SECONDS
 * sets the per-target budget (default 4), WEFT_FUZZ_SEED a fixed seed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatReport, runTarget } from '../fuzz/run';
import { TARGET_NAMES } from '../fuzz/targets';

const seconds = Number(process.env.WEFT_FUZZ_SECONDS ?? 4);
const seed = process.env.WEFT_FUZZ_SEED === undefined ? undefined : Number(process.env.WEFT_FUZZ_SEED);

for (const name of TARGET_NAMES) {
  test(`fuzz ${name}: no crash, uncaught exception or hang in ${seconds} s of inputs`, async () => {
    const report = await runTarget(name, { timeMs: seconds * 1000, ...(seed === undefined ? {} : { seed }) });
    console.log(formatReport(report));
    assert.equal(report.failure, undefined, formatReport(report));
    assert.ok(report.runs > 0, `${name} ran no input`);
  });
}

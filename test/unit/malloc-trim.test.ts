import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mallocTrim } from '../../native/libc';

const rssMiB = (): number => Number(/^Rss:\s+(\d+)/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))![1]) / 1024;

test('mallocTrim gives memory malloc holds free back to the kernel', () => {
  // 48 MiB of malloc'd backing stores, each touched, with a live one allocated after them, so that
  // freeing them leaves the memory inside the heap (free() itself only trims the heap's top).
  let held: Buffer[] = [];
  for (let i = 0; i < 768; i++) held.push(Buffer.allocUnsafeSlow(64 * 1024).fill(i & 0xff));
  const pin = Buffer.allocUnsafeSlow(64 * 1024).fill(1);
  held = [];
  assert.equal(held.length, 0);
  // Node frees an ArrayBuffer's backing store when V8 collects it: collect until RSS stops falling.
  setFlagsFromString('--expose-gc');
  const collect = runInNewContext('gc') as () => void;
  collect();
  collect();
  const before = rssMiB();
  mallocTrim();
  const after = rssMiB();
  assert.ok(before - after >= 16, `RSS ${before.toFixed(1)} -> ${after.toFixed(1)} MiB: at least 16 of the 48 MiB freed into malloc should have gone back`);
  assert.equal(pin[0], 1);
});

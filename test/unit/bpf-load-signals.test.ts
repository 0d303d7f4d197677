/**
 * Loading BPF programs while signals arrive. The kernel's verifier gives up with EAGAIN when a
 * signal is pending and libbpf retries only five times, so an agent run under a CPU profiler
 * (SIGPROF every interval) failed to load weft_sock.o. loadObject holds signals off while the
 * verifier runs (native/libc.ts withSignalsHeld).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withSignalsHeld } from '../../native/libc';
import { kernelTestBlocker, skipLoudly } from '../support/requirements';

const SIGPROF = 27;
const SIGTERM = 15;
const SIGSEGV = 11;

/** The calling thread's blocked-signal mask, from /proc. */
function blockedMask(): bigint {
  return BigInt(`0x${/SigBlk:\s+([0-9a-f]+)/.exec(readFileSync('/proc/thread-self/status', 'utf8'))![1]}`);
}
const has = (mask: bigint, signo: number) => ((mask >> BigInt(signo - 1)) & 1n) === 1n;

describe('withSignalsHeld', () => {
  test('holds every signal but the fault signals while it runs, and restores the mask after, also when the function throws', () => {
    const before = blockedMask();
    assert.equal(has(before, SIGPROF), false, 'SIGPROF is not blocked to begin with');
    const inside = withSignalsHeld(() => blockedMask());
    assert.ok(has(inside, SIGPROF) && has(inside, SIGTERM), `SIGPROF and SIGTERM held inside (mask ${inside.toString(16)})`);
    assert.equal(has(inside, SIGSEGV), false, 'a fault signal is never held');
    assert.equal(blockedMask(), before, 'the mask is restored');
    assert.throws(() => withSignalsHeld(() => { throw new Error('boom'); }), /boom/);
    assert.equal(blockedMask(), before, 'restored after a throw');
  });
});

describe('loading weft_sock.o under a CPU profiler', () => {
  test('node --cpu-prof with a 50 µs interval: the programs load (they did not: EAGAIN from the verifier)', (t) => {
    const blocker = kernelTestBlocker();
    if (blocker) return skipLoudly(t, blocker);
    const dir = mkdtempSync(join(tmpdir(), 'weft-bpf-sigprof-'));
    try {
      const script = `
        const bpf = require(${JSON.stringify(join(__dirname, '../../native/libbpf'))});
        for (let i = 0; i < 3; i++) {
          const obj = bpf.openObject(${JSON.stringify(join(__dirname, '../../bpf/weft_sock.o'))}, null);
          try { bpf.loadObject(obj); } finally { bpf.closeObject(obj); }
        }
        console.log('loaded');`;
      const r = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-interval=50', `--cpu-prof-dir=${dir}`, '-e', script], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(r.status, 0, `the loader failed under SIGPROF:\n${r.stderr.slice(-2000)}`);
      assert.match(r.stdout, /loaded/);
      assert.equal(readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).length, 1, 'the profiler ran (it wrote its profile)');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

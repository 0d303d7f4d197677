/**
 * Preloaded into the benchmark's Weft agents (`node --require .../fixed-rate-probe.js`, only when
 * the fixed-rate benchmark runs with --probe; production code never loads it): records, with wall
 * clock times, every GC pause (PerformanceObserver 'gc') and every event-loop stall (a 1 ms
 * interval timer that fired more than STALL_MS late), so the bench can line them up with its
 * slowest requests. A stall is told apart by what the main thread did meanwhile, from its
 * /proc schedstat (ns on a CPU, ns waiting on a run queue): `loop-run` when it ran most of the
 * stall (work on the loop: JS, GC, syscalls), `loop-wait` when it mostly waited for a CPU that
 * other processes held (a shared machine). Neither (it was not running and not waiting to run), by
 * what else was seen:
 *   loop-poll     the loop's own idle time (libuv's time inside epoll_wait) covers most of it: the
 *                 thread slept in the poll past its timeout, the wake-up came late
 *   loop-held     it was never switched out (schedstat's timeslice count did not move): the CPU
 *                 it was on went to interrupts, softirqs or the hypervisor (steal), none of which
 *                 the scheduler counts as the thread's run time
 *   loop-fault    it was switched out, and a major page fault happened meanwhile (a page read
 *                 from disk)
 *   loop-blocked  it was switched out otherwise: blocked in a syscall outside the poll
 * Lines `<pid> <kind> <startMs> <durationMs>` are appended to $WEFT_TAIL_PROBE_DIR/probe-<pid>.txt
 * every 250 ms (a few lines: microseconds of work).
 */
import { appendFileSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { constants, performance, PerformanceObserver } from 'node:perf_hooks';

const STALL_MS = 2;
const TICK_MS = 1;
const FLUSH_MS = 250;

const dir = process.env.WEFT_TAIL_PROBE_DIR;
if (dir) {
  const file = join(dir, `probe-${process.pid}.txt`);
  const origin = performance.timeOrigin;
  let lines: string[] = [];
  const kinds: Record<number, string> = {
    [constants.NODE_PERFORMANCE_GC_MINOR]: 'gc-minor', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'gc-major',
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'gc-incremental', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'gc-weakcb',
  };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = kinds[(e.detail as { kind?: number } | undefined)?.kind ?? -1] ?? 'gc-other';
      lines.push(`${process.pid} ${kind} ${(origin + e.startTime).toFixed(3)} ${e.duration.toFixed(3)}`);
    }
  }).observe({ entryTypes: ['gc'] });
  // The main thread's own counters (the agent's JS runs there); read in place, no allocation.
  const sched = openSync('/proc/thread-self/schedstat', 'r');
  const buf = Buffer.alloc(128);
  const readSched = (): [run: number, wait: number, slices: number] => {
    const n = readSync(sched, buf, 0, buf.length, 0);
    const f = buf.toString('latin1', 0, n).split(' ');
    return [Number(f[0]) / 1e6, Number(f[1]) / 1e6, Number(f[2])];
  };
  let last = performance.now();
  let [lastRun, lastWait, lastSlices] = readSched();
  let lastIdle = performance.eventLoopUtilization().idle;
  let lastFaults = process.resourceUsage().majorPageFault;
  setInterval(() => {
    const now = performance.now();
    const [run, wait, slices] = readSched();
    const idle = performance.eventLoopUtilization().idle;
    const faults = process.resourceUsage().majorPageFault;
    const late = now - last - TICK_MS;
    // The loop was held from the moment the timer should have fired until now.
    if (late > STALL_MS) {
      const gap = now - last;
      const kind = run - lastRun >= gap / 2 ? 'loop-run' : wait - lastWait >= gap / 2 ? 'loop-wait'
        : idle - lastIdle >= gap / 2 ? 'loop-poll' : slices === lastSlices ? 'loop-held' : faults > lastFaults ? 'loop-fault' : 'loop-blocked';
      lines.push(`${process.pid} ${kind} ${(origin + last + TICK_MS).toFixed(3)} ${late.toFixed(3)}`);
    }
    last = now; lastRun = run; lastWait = wait; lastSlices = slices; lastIdle = idle; lastFaults = faults;
  }, TICK_MS).unref();
  const flush = (): void => {
    if (lines.length === 0) return;
    appendFileSync(file, lines.join('\n') + '\n');
    lines = [];
  };
  setInterval(flush, FLUSH_MS).unref();
  process.on('exit', flush);
}

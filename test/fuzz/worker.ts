/**
 * Runs one fuzz target inside a worker thread. Before each execution the input is copied into a
 * SharedArrayBuffer the parent reads, so when the worker hangs (a regex that backtracks forever,
 * a promise that never settles) or dies, the parent still knows which input did it.
 */
import * as fc from 'fast-check';
import { parentPort, workerData } from 'node:worker_threads';
import { loadCorpus } from './corpus';
import { inputsFor } from './mutate';
import { loadTarget } from './targets';

export interface WorkerJob {
  target: string;
  timeMs: number;
  maxRuns: number;
  seed: number;
  /** [0] executions so far, [1] current input length, then the input bytes (truncated to fit) */
  shared: SharedArrayBuffer;
}

export type WorkerMessage =
  | { kind: 'done'; runs: number; corpusRuns: number; ms: number }
  | { kind: 'failure'; error: string; input: string; counterexamplePath: string | null; runs: number; phase: 'corpus' | 'random' };

const job = workerData as WorkerJob;
const counters = new Int32Array(job.shared, 0, 2);
const window = new Uint8Array(job.shared, 8);
let current: Buffer = Buffer.alloc(0);

function noteInput(input: Buffer): void {
  current = input;
  counters[1] = input.length;
  window.set(input.subarray(0, window.length));
  Atomics.add(counters, 0, 1);
}

const stackOf = (e: unknown): string => (e instanceof Error ? e.stack ?? e.message : String(e));
const post = (m: WorkerMessage): void => parentPort!.postMessage(m);

process.on('uncaughtException', (e) => {
  post({ kind: 'failure', error: `uncaught exception: ${stackOf(e)}`, input: current.toString('base64'), counterexamplePath: null, runs: Atomics.load(counters, 0), phase: 'random' });
  process.exit(1);
});
process.on('unhandledRejection', (e) => {
  post({ kind: 'failure', error: `unhandled rejection: ${stackOf(e)}`, input: current.toString('base64'), counterexamplePath: null, runs: Atomics.load(counters, 0), phase: 'random' });
  process.exit(1);
});

async function main(): Promise<void> {
  const target = loadTarget(job.target);
  await target.setup?.();
  const started = Date.now();
  try {
    const seeds = loadCorpus(target.name);
    // Every corpus file first, as it is: inputs that once crashed stay fixed.
    for (const seed of seeds) {
      noteInput(seed);
      try {
        await target.run(seed);
      } catch (e) {
        return post({ kind: 'failure', error: stackOf(e), input: seed.toString('base64'), counterexamplePath: null, runs: Atomics.load(counters, 0), phase: 'corpus' });
      }
    }
    const corpusRuns = seeds.length;
    const arbitrary = inputsFor(seeds, target.generators ?? [], target.maxBytes ?? 1024);
    const remaining = Math.max(1, job.timeMs - (Date.now() - started));
    const params = { seed: job.seed, numRuns: job.maxRuns, interruptAfterTimeLimit: remaining, markInterruptAsFailure: false };
    const probe = target.run(Buffer.alloc(0));
    const isAsync = probe instanceof Promise;
    if (isAsync) await probe;
    const details = isAsync
      ? await fc.check(fc.asyncProperty(arbitrary, async (input) => { noteInput(input); await target.run(input); }), params)
      : fc.check(fc.property(arbitrary, (input) => { noteInput(input); target.run(input); }), params);
    if (details.failed) {
      const input = details.counterexample?.[0] ?? current;
      return post({ kind: 'failure', error: stackOf(details.errorInstance), input: input.toString('base64'), counterexamplePath: details.counterexamplePath, runs: details.numRuns, phase: 'random' });
    }
    post({ kind: 'done', runs: details.numRuns + corpusRuns, corpusRuns, ms: Date.now() - started });
  } finally {
    await target.teardown?.();
  }
}

main().then(() => process.exit(0), (e) => {
  post({ kind: 'failure', error: `the target's setup or teardown failed: ${stackOf(e)}`, input: '', counterexamplePath: null, runs: 0, phase: 'corpus' });
  process.exit(1);
});

/**
 * Runs fuzz targets, each in its own worker thread with a watchdog, for a fixed budget.
 *
 *   node dist/test/fuzz/run.js [--seconds N] [--seed N] [--save] [target ...]
 *
 * Without targets every one runs. `--save` keeps a failing input in test/fuzz/corpus/<target>/
 * (commit it: the corpus is replayed first on every run). The CI test is test/integration/fuzz.test.ts.
 */
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describeInput, saveToCorpus } from './corpus';
import { TARGET_NAMES } from './targets';
import type { WorkerJob, WorkerMessage } from './worker';

export interface FuzzOptions {
  /** random-phase budget per target, after the corpus replay */
  timeMs: number;
  /** at most this many random inputs (the time budget usually ends first) */
  maxRuns?: number;
  seed?: number;
  /** no execution finishing for this long is a hang (the input in flight is reported) */
  hangMs?: number;
}

export interface FuzzFailure {
  kind: 'crash' | 'hang' | 'worker-exit';
  error: string;
  input: Buffer;
  phase: 'corpus' | 'random';
}

export interface FuzzReport {
  target: string;
  seed: number;
  runs: number;
  ms: number;
  execsPerSecond: number;
  failure?: FuzzFailure;
}

const SHARED_INPUT_BYTES = 1 << 20;

export function runTarget(target: string, o: FuzzOptions): Promise<FuzzReport> {
  if (!TARGET_NAMES.includes(target)) throw new Error(`no fuzz target "${target}"; there are: ${TARGET_NAMES.join(', ')}`);
  const seed = o.seed ?? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0;
  const hangMs = o.hangMs ?? 10_000;
  const shared = new SharedArrayBuffer(8 + SHARED_INPUT_BYTES);
  const counters = new Int32Array(shared, 0, 2);
  const inFlight = (): Buffer => Buffer.from(new Uint8Array(shared, 8, Math.min(counters[1]!, SHARED_INPUT_BYTES)));
  const job: WorkerJob = { target, timeMs: o.timeMs, maxRuns: o.maxRuns ?? 100_000_000, seed, shared };
  const started = Date.now();
  return new Promise((resolve) => {
    const worker = new Worker(join(__dirname, 'worker.js'), { workerData: job, stdout: false, stderr: false });
    let settled = false;
    let lastCount = -1;
    let lastProgress = Date.now();
    const finish = (runs: number, failure?: FuzzFailure): void => {
      if (settled) return;
      settled = true;
      clearInterval(watchdog);
      const ms = Date.now() - started;
      resolve({ target, seed, runs, ms, execsPerSecond: Math.round(runs / (ms / 1000)), ...(failure ? { failure } : {}) });
      void worker.terminate();
    };
    const watchdog = setInterval(() => {
      const count = Atomics.load(counters, 0);
      if (count !== lastCount) { lastCount = count; lastProgress = Date.now(); return; }
      if (Date.now() - lastProgress < hangMs) return;
      finish(count, { kind: 'hang', error: `no execution finished for ${hangMs} ms (after ${count} inputs); the input in flight is below`, input: inFlight(), phase: 'random' });
    }, 250);
    worker.on('message', (m: WorkerMessage) => {
      if (m.kind === 'done') return finish(m.runs);
      finish(m.runs, { kind: 'crash', error: m.error + (m.counterexamplePath ? `\n(fast-check seed ${seed}, path ${m.counterexamplePath})` : ''), input: Buffer.from(m.input, 'base64'), phase: m.phase });
    });
    worker.on('error', (e) => finish(Atomics.load(counters, 0), { kind: 'crash', error: `worker error: ${e.stack ?? e.message}`, input: inFlight(), phase: 'random' }));
    worker.on('exit', (code) => finish(Atomics.load(counters, 0), { kind: 'worker-exit', error: `the worker exited (${code}) without a report`, input: inFlight(), phase: 'random' }));
  });
}

/** The report as a person reads it: the target, the numbers, and for a failure the error and the input. */
export function formatReport(r: FuzzReport): string {
  const line = `${r.target}: ${r.runs} inputs in ${(r.ms / 1000).toFixed(1)} s (${r.execsPerSecond}/s), seed ${r.seed}`;
  if (!r.failure) return `${line}: ok`;
  return `${line}: ${r.failure.kind.toUpperCase()} (${r.failure.phase})\n${r.failure.error}\ninput: ${describeInput(r.failure.input)}`;
}

async function main(argv: string[]): Promise<number> {
  let seconds = 10;
  let seed: number | undefined;
  let save = false;
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--seconds') seconds = Number(argv[++i]);
    else if (a === '--seed') seed = Number(argv[++i]);
    else if (a === '--save') save = true;
    else if (a.startsWith('--')) throw new Error(`unknown flag ${a}; use --seconds N, --seed N, --save`);
    else names.push(a);
  }
  if (!(seconds > 0)) throw new Error('--seconds must be a positive number');
  let failed = 0;
  for (const name of names.length > 0 ? names : TARGET_NAMES) {
    const report = await runTarget(name, { timeMs: seconds * 1000, ...(seed === undefined ? {} : { seed }) });
    console.log(formatReport(report));
    if (report.failure) {
      failed++;
      if (save && report.failure.input.length > 0) console.log(`kept in ${saveToCorpus(name, report.failure.input, report.failure.kind)}`);
    }
  }
  return failed === 0 ? 0 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e: Error) => { console.error(e.message); process.exit(2); });
}

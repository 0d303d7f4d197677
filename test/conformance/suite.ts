/**
 * One conformance run: load the cases, build the lab, run the selected tests, tear the lab down
 * (also on failure, unless asked to keep it), and return the report. What `main.ts` and the
 * integration test call.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCases } from './cases';
import { ConformanceLab, LAB_NAME } from './mesh-lab';
import { buildReport, type ConformanceReport } from './report';
import { checkSelection, defaultRunOptions, runAll, type RunOptions } from './runner';

export interface SuiteOptions extends Partial<RunOptions> {
  labName?: string;
  /** leave the lab up: `onKept` gets it, and its close() is the caller's */
  keep?: boolean;
  onKept?: (lab: ConformanceLab) => Promise<void>;
  casesPath?: string;
}

export function weftVersion(): string {
  const root = join(__dirname, '..', '..', '..');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const git = spawnSync('git', ['-C', root, 'describe', '--always', '--dirty'], { encoding: 'utf8' });
  return git.status === 0 ? `${pkg.version} (${git.stdout.trim()})` : pkg.version;
}

export async function runConformance(options: SuiteOptions = {}): Promise<ConformanceReport> {
  const started = Date.now();
  const data = loadCases(options.casesPath);
  const opts: RunOptions = { ...defaultRunOptions(), ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as RunOptions;
  checkSelection(data, opts.only);
  opts.log(`building lab ${options.labName ?? LAB_NAME}: 2 nodes, echo-v1/echo-v2 + consumer client, control plane and agents`);
  const lab = await ConformanceLab.create(data, options.labName ?? LAB_NAME);
  let outcomes;
  try {
    opts.log(`lab up after ${((Date.now() - started) / 1000).toFixed(1)} s`);
    outcomes = await runAll(lab, data, opts);
  } finally {
    if (options.keep && options.onKept) await options.onKept(lab);
    else await lab.close();
  }
  return buildReport({
    outcomes,
    allTests: data.tests,
    version: weftVersion(),
    source: `kubernetes-sigs/gateway-api ${data.source_commit.slice(0, 12)}`,
    options: { only: opts.only, rule: opts.rule, requestTimeoutMs: opts.requestTimeoutMs },
    elapsedMs: Date.now() - started,
  });
}

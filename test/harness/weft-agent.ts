// Runs `weft local` for one lab node: inside the node's netns and `system` cgroup, following a
// config file; collects its access log (stdout) and operational log (stderr).
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { LabNode } from './lab';

export const WEFT_CLI = join(__dirname, '..', '..', 'agent', 'cli.js');

export interface AgentHandle {
  readonly process: ChildProcess;
  /** parsed access-log lines so far */
  readonly accessLog: Array<Record<string, unknown>>;
  /** operational log text so far */
  stderr(): string;
  /** resolves when the agent says it is ready; rejects (bounded) if it exits or stalls */
  readonly ready: Promise<void>;
  /** waits (bounded) for an access-log line matching `pred` */
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

export function startLocalAgent(node: LabNode, configPath: string, extraArgs: string[] = []): AgentHandle {
  const child = node.spawn(process.execPath, [WEFT_CLI, 'local', '--config', configPath, '--node', node.name,
    '--cgroup-root', node.cgroupPath, ...extraArgs]);
  const accessLog: Array<Record<string, unknown>> = [];
  let err = '';
  let out = '';
  const waiters = new Set<() => void>();
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    const lines = out.split('\n');
    out = lines.pop()!;
    for (const l of lines) if (l.trim()) { try { accessLog.push(JSON.parse(l)); } catch { /* not JSON */ } }
    for (const w of waiters) w();
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d; for (const w of waiters) w(); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent on ${node.name} not ready after 15 s:\n${err}`)), 15_000);
    const check = () => { if (err.includes('node agent ready')) { clearTimeout(timer); waiters.delete(check); resolve(); } };
    waiters.add(check);
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`agent on ${node.name} exited (${code}):\n${err}`)); });
  });
  ready.catch(() => undefined);
  return {
    process: child,
    accessLog,
    stderr: () => err,
    ready,
    waitForLog(pred, timeoutMs = 5_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = accessLog.find(pred);
          if (!hit) return;
          clearTimeout(timer); waiters.delete(check); resolve(hit);
        };
        const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`no matching access-log line within ${timeoutMs} ms; have:\n${accessLog.map((l) => JSON.stringify(l)).join('\n')}`)); }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

// Bounded command execution: every call has a deadline and reports what the command said.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  timeoutMs?: number;
  input?: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** Collects a spawned child's output until it exits; kills it (its whole group) at the deadline. */
export function collect(child: ChildProcess, what: string, opts: ExecOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // A child that exits without reading its input is judged by its exit status, not by EPIPE.
  child.stdin?.on('error', () => undefined).end(opts.input ?? '');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      killGroup(child, 'SIGKILL');
      reject(new Error(`${what}: no exit within ${timeoutMs} ms (killed); stdout=${JSON.stringify(stdout)} stderr=${JSON.stringify(stderr)}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${what}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Signals the child's process group (children are spawned detached, as group leaders). */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

export function run(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const spawnOpts: SpawnOptions = { stdio: ['pipe', 'pipe', 'pipe'], detached: true };
  return collect(spawn(cmd, args, spawnOpts), `${cmd} ${args.join(' ')}`, opts);
}

/** Runs and throws with the command's stderr unless it exits 0. */
export async function runOk(cmd: string, args: string[], opts: ExecOptions = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code ?? r.signal}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** Synchronous variant for exit handlers; returns an error message or undefined. */
export function runSyncChecked(cmd: string, args: string[], timeoutMs = 5_000): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.error) return `${cmd} ${args.join(' ')}: ${r.error.message}`;
  if (r.status !== 0) return `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr.trim()}`;
  return undefined;
}

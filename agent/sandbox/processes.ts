// Processes a lab started: spawned detached (own process group), tracked until they exit.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { collect, killGroup, type ExecOptions, type ExecResult } from './run';

function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export class ProcessTracker {
  private readonly live = new Set<ChildProcess>();

  spawn(argv: [string, string[]], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn(argv[0], argv[1], { stdio: 'pipe', ...opts, detached: true });
    this.live.add(child);
    child.once('exit', () => this.live.delete(child));
    child.once('error', () => this.live.delete(child));
    return child;
  }

  exec(argv: [string, string[]], what: string, opts: ExecOptions = {}): Promise<ExecResult> {
    return collect(this.spawn(argv, { stdio: 'pipe' }), what, opts);
  }

  /** SIGTERM to every group, then SIGKILL to what is still there after `graceMs`. */
  async stopAll(graceMs: number): Promise<string[]> {
    const children = [...this.live];
    for (const c of children) killGroup(c, 'SIGTERM');
    const graceful = await Promise.all(children.map((c) => exited(c, graceMs)));
    const stubborn = children.filter((_, i) => !graceful[i]);
    for (const c of stubborn) killGroup(c, 'SIGKILL');
    const killed = await Promise.all(stubborn.map((c) => exited(c, 2_000)));
    return stubborn.filter((_, i) => !killed[i]).map((c) => `pid ${c.pid} survived SIGKILL for 2 s`);
  }

  killAllSync(): void {
    for (const c of this.live) killGroup(c, 'SIGKILL');
  }
}

// Runs `weft local` for one lab node: inside the node's netns and `system` cgroup, following a
// config file; collects its access log (stdout) and operational log (stderr).
import { spawnSync, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import type { LabNode } from './lab';
import { WEFT_NODE_FLAGS } from '../node-flags';

export const WEFT_CLI = join(__dirname, '..', 'cli.js');

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

/** `weft local` for a lab node, with its own data directory for the embedded control plane's CA. */
export function startLocalAgent(node: LabNode, configPath: string, extraArgs: string[] = []): AgentHandle {
  return startWeft(node, ['local', '--config', configPath, '--node', node.name, '--cgroup-root', node.cgroupPath,
    '--data-dir', join(dirname(configPath), `data-${node.name}`), ...extraArgs], 'node agent ready');
}

/** `weft controlplane` inside a lab node's netns, with a file source and a data directory. */
export function startControlPlane(node: LabNode, configPath: string, dataDir: string): AgentHandle {
  return startWeft(node, ['controlplane', '--config', configPath, '--listen', `0.0.0.0:${CONTROL_PLANE_PORT}`, '--data-dir', dataDir], 'control plane ready');
}

/**
 * `weft agent` for a lab node, talking to the control plane at `controlPlane` with the data directory's credentials;
 * its own data directory (cached certificates) is `agent-<node>` in there, not the host's default.
 */
export function startNodeAgent(node: LabNode, controlPlane: string, dataDir: string, extraArgs: string[] = []): AgentHandle {
  return startWeft(node, ['agent', '--control-plane', controlPlane, '--node', node.name, '--cgroup-root', node.cgroupPath,
    '--token-file', join(dataDir, 'bootstrap.token'), '--ca-file', join(dataDir, 'ca.pem'), '--data-dir', join(dataDir, `agent-${node.name}`), ...extraArgs], 'node agent ready');
}

export const CONTROL_PLANE_PORT = 15012;

/** A control plane on the first node and an agent on each node, following one config file. */
export interface MeshProcesses {
  cp: AgentHandle;
  /** in the order of the nodes */
  agents: AgentHandle[];
  /** Kills them all and removes what the agents left pinned on their nodes (also after a failed start). */
  stop(): Promise<void>;
}

/**
 * Starts `weft controlplane` on `nodes[0]` and `weft agent` on every node, and waits until all are
 * ready. On failure what was started is stopped before the error is thrown.
 */
export async function startMesh(nodes: LabNode[], configPath: string, dataDir: string): Promise<MeshProcesses> {
  const started: AgentHandle[] = [];
  const stop = async (): Promise<void> => {
    for (const h of started.reverse()) await h.kill('SIGKILL').catch(() => undefined);
    for (const n of nodes) spawnSync(process.execPath, [WEFT_CLI, 'uninstall', '--node', n.name]);
  };
  try {
    const cp = startControlPlane(nodes[0]!, configPath, dataDir);
    started.push(cp);
    await cp.ready;
    const agents = nodes.map((n) => startNodeAgent(n, `${nodes[0]!.ip}:${CONTROL_PLANE_PORT}`, dataDir));
    started.push(...agents);
    await Promise.all(agents.map((a) => a.ready));
    return { cp, agents, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

function startWeft(node: LabNode, args: string[], readyText: string): AgentHandle {
  const child = node.spawn(process.execPath, [...WEFT_NODE_FLAGS, WEFT_CLI, ...args]);
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
    const timer = setTimeout(() => reject(new Error(`weft ${args[0]} on ${node.name} not ready after 15 s:\n${err}`)), 15_000);
    const check = () => { if (err.includes(readyText)) { clearTimeout(timer); waiters.delete(check); resolve(); } };
    waiters.add(check);
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`weft ${args[0]} on ${node.name} exited (${code}):\n${err}`)); });
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

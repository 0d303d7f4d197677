/**
 * Weft as a benchmark contender: `weft controlplane` on n1 following a config file, `weft agent`
 * on n1 and n2. The agents' stdout (the access log, one line per connection and, once the proxy
 * speaks HTTP, one per request) goes to a file: at tens of thousands of requests a second, parsing
 * it in this process would take CPU from the two cores the contenders share.
 *
 * WEFT_BENCH_AGENT_FLAGS adds Node.js flags to the agents, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`
 * to see where a node proxy spends its CPU under the benchmark's load.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../../agent/config/parse';
import { WEFT_NODE_FLAGS } from '../../agent/node-flags';
import type { LabNode } from '../../agent/sandbox';
import { CONTROL_PLANE_PORT, startControlPlane, WEFT_CLI } from '../../agent/sandbox/weft-agent';
import { uninstallWeft, type BenchContext, type Running } from './hop-lab';

const READY_MS = 15_000;
const STOP_MS = 5_000;
const WARM_UP_MS = 15_000;
const WARM_UP_ATTEMPTS = 40;
const WARM_UP_PAUSE_MS = 250;

export interface WeftMeshOptions {
  /** labelled weft.dev/mesh=enabled */
  meshNamespaces: string[];
  /** Services, policies, ... added to the lab's Namespaces, Nodes and Pods */
  extra?: object[];
  /** client-pod commands run once before measuring (the first request waits for workload certificates); each must exit 0 */
  warmUp: Array<[cmd: string, args: string[]]>;
}

export interface WeftMesh extends Running {
  /** the node agents' access logs */
  accessLogs: string[];
  /** access-log lines, over both agents, that contain `text` (`"method"`: an HTTP request; `"dst.hbone_addr"`: a tunnelled connection) */
  countLogLines(text: string): number;
  /** each agent's operational log (its stderr) so far, n1 first */
  agentLogs(): string[];
}

interface AgentProcess { process: ChildProcess; stderr(): string; stop(): Promise<void> }

async function startAgent(node: LabNode, controlPlane: string, dataDir: string, accessLog: string): Promise<AgentProcess> {
  const out = openSync(accessLog, 'w');
  const extraFlags = (process.env.WEFT_BENCH_AGENT_FLAGS ?? '').split(' ').filter(Boolean);
  const child = node.spawn(process.execPath, [...WEFT_NODE_FLAGS, ...extraFlags, WEFT_CLI, 'agent', '--control-plane', controlPlane, '--node', node.name,
    '--cgroup-root', node.cgroupPath, '--token-file', join(dataDir, 'bootstrap.token'), '--ca-file', join(dataDir, 'ca.pem')],
  { stdio: ['ignore', out, 'pipe'] });
  closeSync(out);
  let err = '';
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`weft agent on ${node.name} not ready after ${READY_MS} ms:\n${err}`)), READY_MS);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (err.includes('node agent ready')) { clearTimeout(timer); resolve(); }
    });
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`weft agent on ${node.name} exited (${code}):\n${err}`)); });
  });
  return {
    process: child,
    stderr: () => err,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), STOP_MS);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * Runs a warm-up command until it succeeds, a bounded number of times: an agent says it is ready
 * before the certificates of its workloads arrive, and until then it refuses their tunnels.
 */
async function warmUp(c: BenchContext, cmd: string, args: string[], agents: AgentProcess[]): Promise<void> {
  const deadline = Date.now() + WARM_UP_MS;
  let last = '';
  let attempts = 0;
  while (attempts < WARM_UP_ATTEMPTS && Date.now() < deadline) {
    attempts++;
    const r = await c.client.exec(cmd, args, { timeoutMs: Math.max(1_000, Math.min(5_000, deadline - Date.now())) }).catch((e: Error) => ({ code: -1, stdout: '', stderr: e.message }));
    if (r.code === 0) return;
    last = `exit ${r.code}: ${r.stdout.slice(0, 500)}${r.stderr.slice(-500)}`;
    await new Promise((res) => setTimeout(res, WARM_UP_PAUSE_MS));
  }
  throw new Error(`Weft: warm-up \`${cmd} ${args.join(' ')}\` from pod ${c.client.name} failed ${attempts} times in ${WARM_UP_MS / 1000} s (last ${last}); `
    + `check the agents' logs (policies, certificates, redirect):\n${agents.map((a) => a.stderr().slice(-2000)).join('\n')}`);
}

/** Starts the control plane and both agents, warms the path up, and returns the agents' pids for readings. */
export async function startWeftMesh(c: BenchContext, opts: WeftMeshOptions): Promise<WeftMesh> {
  const config = join(c.dir, 'weft.yaml');
  const dataDir = join(c.dir, 'weft-data');
  const yaml = c.lab.yaml({ meshNamespaces: opts.meshNamespaces, extra: opts.extra ?? [] });
  const parsed = parseConfig(yaml, config);
  if (!parsed.ok) throw new Error(`the benchmark's Weft config is invalid:\n${parsed.error.map((e) => `  ${e.object} ${e.field}: ${e.message}`).join('\n')}`);
  writeFileSync(config, yaml);
  const cp = startControlPlane(c.n1, config, dataDir);
  const agents: AgentProcess[] = [];
  const stop = async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await cp.kill('SIGTERM');
    uninstallWeft(c.lab);
  };
  const accessLogs = [c.n1, c.n2].map((n) => join(c.dir, `access-${n.name}.log`));
  try {
    await cp.ready;
    for (const [i, n] of [c.n1, c.n2].entries()) agents.push(await startAgent(n, `${c.n1.ip}:${CONTROL_PLANE_PORT}`, dataDir, accessLogs[i]!));
    for (const [cmd, args] of opts.warmUp) await warmUp(c, cmd, args, agents);
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    accessLogs,
    pids: () => agents.map((a) => a.process.pid!),
    stop,
    countLogLines: (text) => accessLogs.reduce((sum, f) => sum + Number(spawnSync('grep', ['-cF', text, f], { encoding: 'utf8' }).stdout.trim() || 0), 0),
    agentLogs: () => agents.map((a) => a.stderr()),
  };
}

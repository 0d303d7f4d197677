/**
 * `weft agent`: the node agent fed by a control plane. Desired state arrives on the discovery
 * stream (the last snapshot stays in force while the control plane is away) and workload
 * certificates come from its CA over the certificate API.
 */
import { join } from 'node:path';
import type { Snapshot } from '../config/objects';
import { operationalLogger } from '../core/log';
import { requestCertificate } from '../identity/cert-client';
import { cgroup2Mount } from '../redirect/cgroup';
import { loadMigrateProgram } from '../proxy/shared-listener';
import { ensureBpffs, pinRootFor } from '../redirect/bpffs';
import type { AgentCredentials } from './credential-files';
import { watchControlPlane } from './discovery-client';
import { NodeAgent } from './agent';
import { DEFAULT_DRAIN_GRACE_MS } from './drain-grace';

export const BPF_DIR = join(__dirname, '..', '..', 'bpf');

export interface RunAgentOptions {
  controlPlane: string;
  node: string;
  /** Read again for every request and reconnect (credential-files.ts): the files may rotate. */
  token: AgentCredentials['token'];
  caPem: AgentCredentials['caPem'];
  cgroupRoot?: string;
  /** Where the kubelet's pod cgroups are searched for; default the cgroup root. */
  kubepodsCgroup?: string;
  nodeIps?: string[];
  certTtlSeconds?: number;
  /**
   * How long stop() lets established connections finish after the listeners closed (an upgrade's
   * drain, docs/upgrade.md); default DEFAULT_DRAIN_GRACE_MS.
   */
  drainGraceMs?: number;
  /**
   * The agent's own data directory (created 0700): workload keys and certificates are cached in
   * `identities/` so a restart or successor does not request them again. Without it they stay in memory.
   */
  dataDir?: string;
}

/** `weft agent --data-dir`'s default; daemonset/agent.yaml mounts it from the host. */
export const DEFAULT_AGENT_DATA_DIR = '/var/lib/weft/agent';

export { DEFAULT_DRAIN_GRACE_MS } from './drain-grace';

export interface RunningAgent {
  /** Stops applying state, closes the listeners, lets connections finish within `graceMs` (default: the option), then exits cleanly. */
  stop(graceMs?: number): Promise<void>;
}

export async function runAgent(o: RunAgentOptions): Promise<RunningAgent> {
  const log = operationalLogger('agent');
  const connection = { address: o.controlPlane, caPem: o.caPem, token: o.token, node: o.node };
  let agent: NodeAgent | undefined;
  let resolveFirst!: (s: Snapshot) => void;
  const first = new Promise<Snapshot>((r) => { resolveFirst = r; });
  // The newest snapshot: one that arrives while the agent is starting is applied once it has started.
  let latest: Snapshot | undefined;
  const watch = watchControlPlane(connection, (s) => { latest = s; if (agent) void agent.apply(s); else resolveFirst(s); }, log);
  try {
    // Every listener shares its port with a successor agent; this program keeps a closing listener's queue.
    ensureBpffs();
    loadMigrateProgram(BPF_DIR, pinRootFor(o.node));
    log.info({ controlPlane: o.controlPlane, node: o.node }, 'waiting for the first snapshot from the control plane');
    agent = await NodeAgent.start({
      node: o.node,
      cgroupRoot: o.cgroupRoot ?? cgroup2Mount(),
      ...(o.kubepodsCgroup ? { kubepodsCgroup: o.kubepodsCgroup } : {}),
      bpfDir: BPF_DIR,
      controlPlane: watch,
      ...(o.nodeIps ? { nodeIps: o.nodeIps } : {}),
      identity: {
        request: (csr, validity) => requestCertificate(connection, csr, validity),
        trustBundle: o.caPem,
        ...(o.certTtlSeconds ? { validitySeconds: o.certTtlSeconds } : {}),
        ...(o.dataDir ? { dataDir: o.dataDir } : {}),
      },
    }, await first);
    if (latest !== undefined && latest !== await first) void agent.apply(latest);
  } catch (e) {
    watch.close();
    throw e;
  }
  return {
    async stop(graceMs) {
      watch.close();
      await agent?.stop(graceMs ?? o.drainGraceMs ?? DEFAULT_DRAIN_GRACE_MS);
    },
  };
}

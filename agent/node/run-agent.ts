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
import type { AgentCredentials } from './credential-files';
import { watchControlPlane } from './discovery-client';
import { NodeAgent } from './agent';

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
}

export async function runAgent(o: RunAgentOptions): Promise<{ stop(): Promise<void> }> {
  const log = operationalLogger('agent');
  const connection = { address: o.controlPlane, caPem: o.caPem, token: o.token, node: o.node };
  let agent: NodeAgent | undefined;
  let resolveFirst!: (s: Snapshot) => void;
  const first = new Promise<Snapshot>((r) => { resolveFirst = r; });
  const watch = watchControlPlane(connection, (s) => { if (agent) void agent.apply(s); else resolveFirst(s); }, log);
  try {
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
      },
    }, await first);
  } catch (e) {
    watch.close();
    throw e;
  }
  return {
    async stop() {
      watch.close();
      await agent?.stop();
    },
  };
}

/**
 * `weft local`: the embedded default. The control plane (file source, CA in the data directory)
 * and the node agent run in one process; the agent talks to the control plane over loopback
 * exactly as `weft agent` does over the network, so both modes share one code path.
 */
import { join } from 'node:path';
import { hostname } from 'node:os';
import { startControlPlane } from './controlplane/server';
import { readAgentCredentials } from './node/credential-files';
import { runAgent } from './node/run-agent';

export interface LocalOptions {
  config: string;
  node?: string;
  cgroupRoot?: string;
  kubepodsCgroup?: string;
  nodeIps?: string[];
  dataDir?: string;
  listen?: string;
  certTtlSeconds?: number;
  /** how long the agent lets connections finish on stop (run-agent.ts) */
  drainGraceMs?: number;
}

export const DEFAULT_DATA_DIR = '/var/lib/weft';

export async function runLocal(o: LocalOptions): Promise<{ stop(): Promise<void> }> {
  const dataDir = o.dataDir ?? DEFAULT_DATA_DIR;
  const cp = await startControlPlane({ listen: o.listen ?? '127.0.0.1:15012', dataDir, source: { kind: 'file', path: o.config } });
  try {
    const agent = await runAgent({
      controlPlane: cp.address,
      node: o.node ?? hostname(),
      ...readAgentCredentials(join(dataDir, 'bootstrap.token'), join(dataDir, 'ca.pem')),
      ...(o.cgroupRoot ? { cgroupRoot: o.cgroupRoot } : {}),
      ...(o.kubepodsCgroup ? { kubepodsCgroup: o.kubepodsCgroup } : {}),
      ...(o.nodeIps ? { nodeIps: o.nodeIps } : {}),
      ...(o.certTtlSeconds ? { certTtlSeconds: o.certTtlSeconds } : {}),
      ...(o.drainGraceMs !== undefined ? { drainGraceMs: o.drainGraceMs } : {}),
    });
    return { async stop() { await agent.stop(); await cp.close(); } };
  } catch (e) {
    await cp.close();
    throw e;
  }
}

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
import { operationalLogger } from './core/log';

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
export const DEFAULT_LOCAL_LISTEN = '127.0.0.1:15012';

export async function runLocal(o: LocalOptions): Promise<{ stop(): Promise<void> }> {
  const dataDir = o.dataDir ?? DEFAULT_DATA_DIR;
  const start = (listen: string) => startControlPlane({ listen, dataDir, source: { kind: 'file', path: o.config } });
  let cp: Awaited<ReturnType<typeof startControlPlane>>;
  try {
    cp = await start(o.listen ?? DEFAULT_LOCAL_LISTEN);
  } catch (e) {
    // A predecessor `weft local` on this host still holds the port while it drains (an upgrade,
    // docs/upgrade.md). Its CA is in the same data directory; this agent talks to its own control
    // plane, so any loopback port does.
    if (o.listen !== undefined || !/EADDRINUSE/.test((e as Error).message)) throw e;
    cp = await start('127.0.0.1:0');
    operationalLogger('local').warn({ address: cp.address, busy: DEFAULT_LOCAL_LISTEN },
      'the control plane port is held (a weft local still draining?): this control plane listens on a port of its own');
  }
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
      // the agent's own files (cached workload keys and certificates) beside the control plane's
      dataDir: join(dataDir, 'agent'),
    });
    return { async stop() { await agent.stop(); await cp.close(); } };
  } catch (e) {
    await cp.close();
    throw e;
  }
}

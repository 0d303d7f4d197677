/**
 * `weft local`: the embedded default. The control plane's source is a watched file of
 * Kubernetes-shaped objects; the node agent runs in the same process and follows its edits.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { formatConfigError } from './config/config-error';
import { watchConfig } from './config/watch';
import { operationalLogger } from './core/log';
import { NodeAgent } from './node/agent';
import { cgroup2Mount } from './redirect/cgroup';

export interface LocalOptions {
  config: string;
  node?: string;
  cgroupRoot?: string;
  nodeIps?: string[];
}

export const BPF_DIR = join(__dirname, '..', 'bpf');

export async function runLocal(o: LocalOptions): Promise<{ stop(): Promise<void> }> {
  const log = operationalLogger('local');
  let agent: NodeAgent | undefined;
  const watch = watchConfig(o.config,
    (s) => { log.info({ file: o.config }, 'config changed; applying'); void agent?.apply(s); },
    (e) => log.error({ file: o.config, problems: Array.isArray(e) ? e.map(formatConfigError) : [e.message] },
      'config edit rejected; the last good config stays in force'));
  try {
    agent = await NodeAgent.start({
      node: o.node ?? hostname(),
      cgroupRoot: o.cgroupRoot ?? cgroup2Mount(),
      bpfDir: BPF_DIR,
      ...(o.nodeIps ? { nodeIps: o.nodeIps } : {}),
    }, watch.current());
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

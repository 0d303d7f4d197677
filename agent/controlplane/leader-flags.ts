import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { parseLeaseName } from './leader-decision';

/**
 * `weft controlplane --leader-elect=true|false --lease-name [NAMESPACE/]NAME`, read without loading
 * the Kubernetes client. Leader election is on by default with the Kubernetes source (off with
 * --config: one process, nothing to elect). The Lease defaults to weft-controlplane in the pod's
 * namespace (POD_NAMESPACE, from the downward API in daemonset/controlplane.yaml), else
 * weft-system; the holder identity is the pod's name (POD_NAME), else the host name with a random
 * suffix, so two processes on one host never share an identity.
 */

export const DEFAULT_LEASE_NAME = 'weft-controlplane';
export const DEFAULT_LEASE_NAMESPACE = 'weft-system';

export interface LeaderFlagsInput {
  /** The Kubernetes source (not --config). */
  kube: boolean;
  leaderElect: string | undefined;
  leaseName: string | undefined;
  env: Record<string, string | undefined>;
}

export type LeaderFlags = { ok: true; value: { namespace: string; name: string; identity: string } | undefined } | { ok: false; error: string };

export function leaderElectionFlags(input: LeaderFlagsInput): LeaderFlags {
  const { kube, leaderElect, leaseName, env } = input;
  if (leaderElect !== undefined && leaderElect !== 'true' && leaderElect !== 'false') {
    return { ok: false, error: `--leader-elect takes true or false (got ${JSON.stringify(leaderElect)}); write --leader-elect=false to have this replica always write status` };
  }
  if (!kube) {
    if (leaderElect === 'true' || leaseName !== undefined) {
      return { ok: false, error: `${leaseName !== undefined ? '--lease-name' : '--leader-elect'} is for the Kubernetes source (a Lease in the cluster); with --config there is one control plane and nothing to elect` };
    }
    return { ok: true, value: undefined };
  }
  if (leaderElect === 'false') {
    if (leaseName !== undefined) return { ok: false, error: '--lease-name with --leader-elect=false: no Lease is used; drop one of them' };
    return { ok: true, value: undefined };
  }
  const namespace = env.POD_NAMESPACE !== undefined && env.POD_NAMESPACE !== '' ? env.POD_NAMESPACE : DEFAULT_LEASE_NAMESPACE;
  const lease = parseLeaseName(leaseName ?? DEFAULT_LEASE_NAME, namespace);
  if (!lease.ok) return lease;
  const identity = env.POD_NAME !== undefined && env.POD_NAME !== '' ? env.POD_NAME : `${hostname()}_${randomUUID().slice(0, 8)}`;
  return { ok: true, value: { ...lease.value, identity } };
}

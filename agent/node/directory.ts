import type { Directory, WorkloadRef } from '../core/workload';
import type { PodInfo } from '../config/objects';
import type { WorkloadStore } from '../state/store';

/** Adapts the state store to the proxy's read-only view; the cgroup → pod map comes from redirect. */
export function makeDirectory(store: WorkloadStore, podForCgroup: (id: bigint) => string | undefined): Directory {
  const ref = (p: PodInfo): WorkloadRef => store.workloadRef(p);
  return {
    sourceByCgroup(id) {
      const key = podForCgroup(id);
      if (!key) return undefined;
      const [ns, name] = key.split('/') as [string, string];
      const p = store.pod(ns, name);
      return p && ref(p);
    },
    podByIp(ip) {
      const p = store.podByIp(ip);
      return p && ref(p);
    },
    serviceByIp(ip) {
      const s = store.serviceByIp(ip);
      return s && { namespace: s.namespace, name: s.name };
    },
  };
}

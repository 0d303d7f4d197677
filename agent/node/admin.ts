/**
 * The admin API's routes (127.0.0.1:15000, DESIGN.md): read-only views of what the agent holds,
 * and `/explain`. The agent hands in a view of its state; nothing here changes it.
 */
import type { Snapshot } from '../config/objects';
import type { PolicySet } from '../policy';
import type { WorkloadStore } from '../state/store';
import { explain } from './explain';
import { explainQueryOf } from './explain-command';
import { badRequest, type Handler } from './http-endpoints';

export interface AdminView {
  /** the state in force; undefined before the first snapshot */
  store(): WorkloadStore | undefined;
  policies(): PolicySet;
  workloads(): unknown;
  certs(): unknown;
  redirect(): unknown;
}

export function adminRoutes(v: AdminView): Record<string, Handler> {
  return {
    '/config_dump': (): Snapshot | undefined => v.store()?.snapshot,
    '/workloads': () => v.workloads(),
    '/certs': () => v.certs(),
    '/redirect': () => v.redirect(),
    '/explain': (query) => {
      const q = explainQueryOf(query);
      if (!q.ok) throw badRequest(q.error);
      const store = v.store();
      if (!store) throw new Error('no state received from the control plane yet');
      const answer = explain(store, v.policies(), q.value);
      if (!answer.ok) throw badRequest(answer.error);
      return answer.value;
    },
  };
}

/** 15021, for kubelet probes: ready once the proxy listens. */
export function healthRoutes(ready: () => boolean): Record<string, Handler> {
  return {
    '/healthz/ready': () => {
      if (!ready()) throw new Error('proxy not listening');
      return { ready: true };
    },
    '/healthz/live': () => ({ live: true }),
  };
}

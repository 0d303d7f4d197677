import type { PodInfo } from '../config/objects';

/** The alphabet Kubernetes uses for generated name suffixes and `pod-template-hash` (no vowels). */
const SAFE = '[bcdfghjklmnpqrstvwxz2456789]';
/** `<deployment>-<replicaset hash>-<random 5>`, e.g. `web-7d4b9c-x2x4q`. */
const DEPLOYMENT_POD = new RegExp(`^(.+)-${SAFE}{1,10}-${SAFE}{5}$`);

/**
 * Istio's canonical workload name: label `app.kubernetes.io/name`, else `app`, else the name of
 * the Deployment that owns the pod, recovered from the pod name by stripping the ReplicaSet hash
 * (the `pod-template-hash` label when present) and the random suffix; else the pod name.
 */
export function workloadName(pod: PodInfo): string {
  return pod.labels['app.kubernetes.io/name'] || pod.labels.app || deploymentName(pod) || pod.name;
}

function deploymentName(pod: PodInfo): string | undefined {
  const hash = pod.labels['pod-template-hash'];
  if (hash) {
    const infix = `-${hash}-`;
    const at = pod.name.lastIndexOf(infix);
    return at > 0 && pod.name.length - at - infix.length === 5 ? pod.name.slice(0, at) : undefined;
  }
  return DEPLOYMENT_POD.exec(pod.name)?.[1];
}

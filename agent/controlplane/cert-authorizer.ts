/** Who may get a certificate for which identity: a pure decision, no I/O. */

export interface PodPlacement {
  namespace: string;
  serviceAccount: string;
  /** Empty while the pod is not scheduled. */
  nodeName: string;
}

export type CsrDecision = { allow: true } | { allow: false; reason: string };

/**
 * An agent may sign for identity (namespace, serviceAccount) only when a pod running as that
 * identity is scheduled on the agent's own node: a compromised node can then impersonate only the
 * workloads it already hosts.
 */
export function authorizeCsr(
  caller: { node: string },
  requested: { namespace: string; serviceAccount: string },
  pods: readonly PodPlacement[],
): CsrDecision {
  const who = `service account ${requested.namespace}/${requested.serviceAccount}`;
  if (caller.node === '') return { allow: false, reason: 'the caller did not say which node it runs on: check the agent\'s --node' };
  const running = pods.filter((pod) => pod.namespace === requested.namespace && pod.serviceAccount === requested.serviceAccount);
  if (running.some((pod) => pod.nodeName === caller.node)) return { allow: true };
  if (running.length === 0) {
    return { allow: false, reason: `no pod runs as ${who}: check the pod's spec.serviceAccountName and that the control plane sees the pod` };
  }
  const nodes = [...new Set(running.map((pod) => pod.nodeName || '(not scheduled)'))].sort();
  return {
    allow: false,
    reason: `no pod running as ${who} is scheduled on node ${caller.node} (its pods are on ${nodes.join(', ')}): ` +
      'an agent gets certificates only for pods on its own node; check the agent\'s --node and the pods\' spec.nodeName',
  };
}

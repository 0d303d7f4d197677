/** What the proxy and telemetry know about one end of a connection. */
export interface WorkloadRef {
  namespace: string;
  name: string;       // pod name
  workload: string;   // canonical workload name (app label, or the pod name without its hash)
  identity: string;   // spiffe://<td>/ns/<ns>/sa/<sa>
  node: string;
}

/** The proxy's read-only view of the state store. */
export interface Directory {
  /** The pod a captured connection came from, by the cgroup id the kernel recorded. */
  sourceByCgroup(cgroupId: bigint): WorkloadRef | undefined;
  podByIp(ip: string): WorkloadRef | undefined;
  serviceByIp(ip: string): { namespace: string; name: string } | undefined;
}

import {
  CGROUP_ANNOTATION, MESH_LABEL, ROOT_NAMESPACE, objectKey,
  type MtlsMode, type NamespaceInfo, type PeerAuthenticationInfo, type PodInfo, type Snapshot,
} from '../config/objects';
import { selectorMatches } from './selector';

/**
 * The mode the node proxy enforces for a pod. DISABLE counts as PERMISSIVE: a meshed pod still
 * has its outbound traffic carried over mTLS and still accepts what the node proxy delivers;
 * DISABLE only means plaintext from outside the mesh is not refused, which PERMISSIVE already allows.
 */
export type EnforcedMtlsMode = 'STRICT' | 'PERMISSIVE';

export interface EnrolledPod {
  /** `namespace/name` */
  key: string;
  pod: PodInfo;
  cgroupPath: string;
  mode: EnforcedMtlsMode;
}

/** Opt-in by namespace label `weft.dev/mesh=enabled`, opt-out by pod label `weft.dev/mesh=disabled`. */
export function isEnrolled(pod: PodInfo, namespace: NamespaceInfo | undefined): boolean {
  return namespace?.labels[MESH_LABEL] === 'enabled' && pod.labels[MESH_LABEL] !== 'disabled';
}

/**
 * Istio's PeerAuthentication precedence: a policy in the pod's namespace whose selector matches
 * the pod, then the pod's namespace-wide policy, then the mesh-wide policy (no selector, in
 * `weft-system`). UNSET inherits from the next level; with nothing set the mode is PERMISSIVE.
 * Where Istio picks the oldest of several policies at one level, Weft picks the first by name.
 */
export function mtlsModeFor(pod: PodInfo, snapshot: Snapshot): EnforcedMtlsMode {
  const { workload, namespace, mesh } = applicablePolicies(pod, snapshot.peerAuthentications);
  return enforced([workload?.mode, namespace?.mode, mesh?.mode]);
}

/**
 * As mtlsModeFor, for traffic to one of the pod's own (container) ports: the `portLevelMtls`
 * entry of the workload-selector policy wins; an absent or UNSET entry inherits the pod's mode.
 */
export function mtlsModeForPort(pod: PodInfo, port: number, snapshot: Snapshot): EnforcedMtlsMode {
  const { workload, namespace, mesh } = applicablePolicies(pod, snapshot.peerAuthentications);
  return enforced([workload?.portLevel[port], workload?.mode, namespace?.mode, mesh?.mode]);
}

/**
 * The pods this node's agent should capture: local, enrolled, and with a cgroup to attach to.
 * An enrolled pod without one is reported in `problems` and left out. Sorted by key.
 */
export function desiredEnrollment(snapshot: Snapshot, nodeName: string): { pods: EnrolledPod[]; problems: string[] } {
  const namespaces = new Map(snapshot.namespaces.map((ns) => [ns.name, ns]));
  const pods: EnrolledPod[] = [];
  const problems: string[] = [];
  const local = snapshot.pods
    .filter((pod) => pod.nodeName === nodeName)
    .map((pod) => ({ key: objectKey(pod), pod }))
    .sort((a, b) => compare(a.key, b.key));
  for (const { key, pod } of local) {
    if (!isEnrolled(pod, namespaces.get(pod.namespace))) continue;
    if (pod.cgroupPath === undefined) {
      problems.push(
        `Pod ${key} is in a mesh-enabled namespace but has no ${CGROUP_ANNOTATION} annotation ` +
          `(the absolute path of its cgroup v2 directory), so its traffic cannot be captured; it is not enrolled`,
      );
      continue;
    }
    pods.push({ key, pod, cgroupPath: pod.cgroupPath, mode: mtlsModeFor(pod, snapshot) });
  }
  return { pods, problems };
}

interface ApplicablePolicies {
  workload?: PeerAuthenticationInfo;
  namespace?: PeerAuthenticationInfo;
  mesh?: PeerAuthenticationInfo;
}

function applicablePolicies(pod: PodInfo, policies: PeerAuthenticationInfo[]): ApplicablePolicies {
  const byName = [...policies].sort((a, b) => compare(a.name, b.name));
  const inPodNamespace = byName.filter((pa) => pa.namespace === pod.namespace);
  return {
    workload: inPodNamespace.find((pa) => pa.matchLabels !== undefined && selectorMatches(pa.matchLabels, pod.labels)),
    namespace: inPodNamespace.find((pa) => pa.matchLabels === undefined),
    mesh: byName.find((pa) => pa.namespace === ROOT_NAMESPACE && pa.matchLabels === undefined),
  };
}

/** The first mode that is set, from the most specific level down. */
function enforced(modes: (MtlsMode | undefined)[]): EnforcedMtlsMode {
  const mode = modes.find((m) => m !== undefined && m !== 'UNSET');
  return mode === 'STRICT' ? 'STRICT' : 'PERMISSIVE';
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

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
 * How the node found (or did not find) the cgroup of a pod known only by its UID (Kubernetes
 * mode). Filled in by the agent from cgroupfs (redirect/pod-cgroup.ts), read here: the decision
 * itself does no I/O.
 *   found    the kubelet's pod cgroup directory
 *   absent   not there yet: the kubelet creates it shortly after the API shows the pod; retried
 *   invalid  will not resolve by waiting (an ambiguous match, a malformed UID)
 */
export type CgroupLookup = { kind: 'found'; path: string } | { kind: 'absent'; reason: string } | { kind: 'invalid'; reason: string };

/** An enrolled pod whose cgroup the agent is still waiting for: reported, retried, not dropped. */
export interface PendingPod {
  key: string;
  uid: string;
  reason: string;
}

export interface DesiredEnrollment {
  pods: EnrolledPod[];
  pending: PendingPod[];
  problems: string[];
}

/** This node's pods that should be captured, sorted by key. */
function localEnrolledPods(snapshot: Snapshot, nodeName: string): Array<{ key: string; pod: PodInfo }> {
  const namespaces = new Map(snapshot.namespaces.map((ns) => [ns.name, ns]));
  return snapshot.pods
    .filter((pod) => pod.nodeName === nodeName && isEnrolled(pod, namespaces.get(pod.namespace)))
    .map((pod) => ({ key: objectKey(pod), pod }))
    .sort((a, b) => compare(a.key, b.key));
}

/** The UIDs whose cgroups the agent must look up before deciding: enrolled local pods with no cgroup path. */
export function podUidsToResolve(snapshot: Snapshot, nodeName: string): string[] {
  return localEnrolledPods(snapshot, nodeName)
    .flatMap(({ pod }) => (pod.cgroupPath === undefined && pod.uid !== undefined ? [pod.uid] : []));
}

/**
 * The pods this node's agent should capture: local, enrolled, and with a cgroup to attach to.
 * The cgroup is the pod's `cgroupPath` (local mode: the `weft.dev/cgroup` annotation) or else the
 * one `cgroups` found for its UID (Kubernetes). A pod whose cgroup is not there yet is `pending`;
 * one that cannot be captured at all is reported in `problems`. Both are left out. Sorted by key.
 */
export function desiredEnrollment(snapshot: Snapshot, nodeName: string, cgroups: ReadonlyMap<string, CgroupLookup> = new Map()): DesiredEnrollment {
  const pods: EnrolledPod[] = [];
  const pending: PendingPod[] = [];
  const problems: string[] = [];
  for (const { key, pod } of localEnrolledPods(snapshot, nodeName)) {
    const enroll = (cgroupPath: string) => pods.push({ key, pod, cgroupPath, mode: mtlsModeFor(pod, snapshot) });
    if (pod.cgroupPath !== undefined) {
      enroll(pod.cgroupPath);
      continue;
    }
    if (pod.uid === undefined) {
      problems.push(
        `Pod ${key} is in a mesh-enabled namespace but has no ${CGROUP_ANNOTATION} annotation ` +
          `(the absolute path of its cgroup v2 directory) and no metadata.uid to find the kubelet's cgroup by, ` +
          'so its traffic cannot be captured; it is not enrolled',
      );
      continue;
    }
    const found = cgroups.get(pod.uid) ?? { kind: 'absent', reason: `the cgroup of pod UID ${pod.uid} has not been looked up yet` };
    if (found.kind === 'found') enroll(found.path);
    else if (found.kind === 'absent') pending.push({ key, uid: pod.uid, reason: found.reason });
    else problems.push(`Pod ${key}: ${found.reason}; it is not enrolled`);
  }
  return { pods, pending, problems };
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

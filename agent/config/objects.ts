import type { AuthorizationPolicyInfo } from '../policy/authorization-policy';
import type { GrpcRouteInfo, HttpRouteInfo } from '../route/route-info';
import type { TrafficPolicyInfo } from '../traffic/traffic-policy';
import type { ProxyConfigInfo } from './proxy-config';

/**
 * Weft's internal view of the cluster: plain types converted once, at the edge (parse.ts).
 * Nothing past the edge sees raw YAML or Kubernetes API objects.
 */

export interface NamespaceInfo {
  name: string;
  labels: Record<string, string>;
}

export interface PodInfo {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  nodeName: string;
  /** `spec.serviceAccountName`, 'default' when unset. */
  serviceAccount: string;
  /** `status.podIP` and `status.podIPs`, deduplicated, in canonical form (IPv4 and/or IPv6). */
  ips: string[];
  /** Absolute path of the pod's cgroup v2 directory: annotation `weft.dev/cgroup`. */
  cgroupPath?: string;
  /**
   * The UID the kubelet names the pod's cgroup after (`metadata.uid`; for a static pod's mirror,
   * the static pod's own UID). Without a `cgroupPath`, the agent on the pod's node finds the
   * cgroup from it (agent/redirect/pod-cgroup.ts).
   */
  uid?: string;
  /**
   * The pod's `Ready` condition is True (what the EndpointSlice controller calls "serving").
   * Absent: ready. Set (to false) only when the pod is not ready.
   */
  ready?: boolean;
  /** `metadata.deletionTimestamp` is set: the pod is shutting down. Absent: not terminating. */
  terminating?: boolean;
  /**
   * Named TCP container ports (`spec.containers[].ports[]` with a name): name → containerPort, what a
   * Service's named `targetPort` resolves by. Absent: no named TCP port.
   */
  containerPorts?: Record<string, number>;
}

export interface NodeInfo {
  name: string;
  /** `status.addresses` of type InternalIP, in canonical form. */
  internalIPs: string[];
}

export interface ServicePort {
  name?: string;
  port: number;
  targetPort: number | string;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
}

export interface ServiceInfo {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** Empty: the Service selects no pods (its endpoints are managed elsewhere). */
  selector: Record<string, string>;
  /** Canonical form; empty for a headless Service. */
  clusterIPs: string[];
  ports: ServicePort[];
}

/** One port of an EndpointSlice (`discovery.k8s.io/v1`); `name` absent for the Service's unnamed port. */
export interface EndpointSlicePort {
  name?: string;
  port: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
}

/** One endpoint of an EndpointSlice, its conditions with Kubernetes' defaults for absent ones applied. */
export interface EndpointSliceEndpoint {
  /** Canonical form for IPv4/IPv6 slices; hostnames for FQDN slices. */
  addresses: string[];
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName?: string;
  /** `targetRef.name` when the target is a Pod (in the slice's namespace). */
  pod?: string;
}

export interface EndpointSliceInfo {
  namespace: string;
  name: string;
  /** Label `kubernetes.io/service-name`: the Service whose endpoints these are. */
  service: string;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  ports: EndpointSlicePort[];
  endpoints: EndpointSliceEndpoint[];
}

export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'UNSET' | 'DISABLE';

export interface PeerAuthenticationInfo {
  namespace: string;
  name: string;
  /** Absent: the policy applies namespace-wide (or mesh-wide in the root namespace). */
  matchLabels?: Record<string, string>;
  mode: MtlsMode;
  portLevel: Record<number, MtlsMode>;
}

export interface Snapshot {
  namespaces: NamespaceInfo[];
  pods: PodInfo[];
  nodes: NodeInfo[];
  services: ServiceInfo[];
  peerAuthentications: PeerAuthenticationInfo[];
  /** Validated and normalized (agent/policy/convert.ts); agents compile them into a PolicySet. */
  authorizationPolicies: AuthorizationPolicyInfo[];
  /** The node proxy's limits (`ProxyConfig default`); absent: the defaults. */
  proxyConfig?: ProxyConfigInfo;
  /** Gateway API HTTPRoutes (agent/route/convert-http.ts); agents index them with a RouteIndex. Absent: none. */
  httpRoutes?: HttpRouteInfo[];
  /** Gateway API GRPCRoutes (agent/route/convert-grpc.ts). Absent: none. */
  grpcRoutes?: GrpcRouteInfo[];
  /** Validated TrafficPolicies (agent/traffic/convert.ts); agent/traffic/resolve.ts picks the one in force per Service port. */
  trafficPolicies?: TrafficPolicyInfo[];
  /** Kubernetes' EndpointSlices (agent/state/endpoints.ts); absent or without one for a Service: its selector decides. */
  endpointSlices?: EndpointSliceInfo[];
}

/** Policies in this namespace apply mesh-wide. */
export const ROOT_NAMESPACE = 'weft-system';

/** Namespace label `weft.dev/mesh=enabled` opts a namespace in; Pod label `=disabled` opts a pod out. */
export const MESH_LABEL = 'weft.dev/mesh';

/** Pod annotation: the absolute path of the pod's cgroup v2 directory. */
export const CGROUP_ANNOTATION = 'weft.dev/cgroup';

export function emptySnapshot(): Snapshot {
  return { namespaces: [], pods: [], nodes: [], services: [], peerAuthentications: [], authorizationPolicies: [] };
}

/** `namespace/name`: how pods, Services and policies are keyed and named in messages. */
export function objectKey(o: { namespace: string; name: string }): string {
  return `${o.namespace}/${o.name}`;
}

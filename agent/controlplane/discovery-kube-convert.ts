import { isIP } from 'node:net';
import type { V1EndpointSlice, V1Namespace, V1Node, V1Pod, V1Service } from '@kubernetes/client-node';
import { Checker } from '../config/checker';
import type { ConfigError } from '../config/config-error';
import { ADDRESS_TYPES, SERVICE_NAME_LABEL } from '../config/endpoint-slice';
import { KINDS, type Draft } from '../config/kinds';
import type { Metadata } from '../config/metadata';
import {
  emptySnapshot, type EndpointSliceEndpoint, type EndpointSliceInfo, type EndpointSlicePort, type NamespaceInfo, type NodeInfo,
  type PeerAuthenticationInfo, type PodInfo, type ServiceInfo, type ServicePort, type Snapshot,
} from '../config/objects';
import { convertPeerAuthentication } from '../config/peer-authentication';
import { DEFAULT_SERVICE_ACCOUNT } from '../config/pod';
import { canonicalIp } from '../core/ip';
import type { AuthorizationPolicyInfo } from '../policy/authorization-policy';
import { convertAuthorizationPolicy } from '../policy/convert';
import { err, ok, type Result } from '../core/result';

/**
 * Kubernetes API objects to Weft's Snapshot types, at the edge. Unlike the config file parser this
 * is lenient about fields it does not read: the API server already validated the objects, and
 * newer Kubernetes versions add fields.
 *
 * Pods get no `cgroupPath`: in Kubernetes the pod's cgroup is the kubelet's (`.../pod<uid>` under
 * the kubepods tree, named by the cgroup driver), which only the agent on that node can resolve
 * from the pod's UID (agent/redirect/pod-cgroup.ts). The control plane never guesses a path; it
 * passes the UID.
 */

/**
 * A static pod's mirror in the API has a UID of its own, but the kubelet runs (and names the cgroup
 * of) the static pod, whose UID is its config hash, which the mirror carries in this annotation.
 */
const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

function kubeletUid(pod: V1Pod): string | undefined {
  return pod.metadata?.annotations?.[MIRROR_ANNOTATION] || pod.metadata?.uid || undefined;
}

function ips(values: (string | undefined)[]): string[] {
  return [...new Set(values.filter((v): v is string => v !== undefined && isIP(v) !== 0).map(canonicalIp))];
}

export function namespaceInfo(ns: V1Namespace): NamespaceInfo {
  return { name: ns.metadata?.name ?? '', labels: ns.metadata?.labels ?? {} };
}

/** Terminated pods (Succeeded, Failed) hold no identity and no address: skipped. */
export function podInfo(pod: V1Pod): PodInfo | undefined {
  const phase = pod.status?.phase;
  if (phase === 'Succeeded' || phase === 'Failed') return undefined;
  const uid = kubeletUid(pod);
  return {
    namespace: pod.metadata?.namespace ?? '',
    name: pod.metadata?.name ?? '',
    labels: pod.metadata?.labels ?? {},
    annotations: pod.metadata?.annotations ?? {},
    nodeName: pod.spec?.nodeName ?? '',
    serviceAccount: pod.spec?.serviceAccountName || pod.spec?.serviceAccount || DEFAULT_SERVICE_ACCOUNT,
    ips: ips([pod.status?.podIP, ...(pod.status?.podIPs ?? []).map((p) => p.ip)]),
    ...(uid ? { uid } : {}),
    ...(podReady(pod) ? {} : { ready: false }),
    ...(pod.metadata?.deletionTimestamp ? { terminating: true } : {}),
    ...containerPorts(pod),
  };
}

/** As the EndpointSlice controller (podutil.IsPodReady): the pod's Ready condition is True. */
function podReady(pod: V1Pod): boolean {
  return (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
}

/** Named TCP container ports; the first container with a name wins, as podutil.FindPort resolves a named targetPort. */
function containerPorts(pod: V1Pod): { containerPorts?: Record<string, number> } {
  const named: Record<string, number> = {};
  for (const container of pod.spec?.containers ?? []) {
    for (const port of container.ports ?? []) {
      if (!port.name || (port.protocol ?? 'TCP') !== 'TCP' || !Number.isInteger(port.containerPort) || port.name in named) continue;
      named[port.name] = port.containerPort;
    }
  }
  return Object.keys(named).length > 0 ? { containerPorts: named } : {};
}

export function nodeInfo(node: V1Node): NodeInfo {
  const internal = (node.status?.addresses ?? []).filter((a) => a.type === 'InternalIP').map((a) => a.address);
  return { name: node.metadata?.name ?? '', internalIPs: ips(internal) };
}

export function serviceInfo(svc: V1Service): ServiceInfo {
  const ports: ServicePort[] = (svc.spec?.ports ?? []).map((p) => {
    const port: ServicePort = { port: p.port, targetPort: p.targetPort ?? p.port, protocol: (p.protocol ?? 'TCP') as ServicePort['protocol'] };
    if (p.name) port.name = p.name;
    if (p.appProtocol) port.appProtocol = p.appProtocol;
    return port;
  });
  return {
    namespace: svc.metadata?.namespace ?? '',
    name: svc.metadata?.name ?? '',
    labels: svc.metadata?.labels ?? {},
    selector: svc.spec?.selector ?? {},
    clusterIPs: ips([svc.spec?.clusterIP, ...(svc.spec?.clusterIPs ?? [])]),
    ports,
  };
}

/**
 * An EndpointSlice with the API's defaults for absent conditions (ready and serving true,
 * terminating false). Skipped: a slice without the `kubernetes.io/service-name` label (it belongs
 * to no Service; kube-proxy ignores it too) or of an address type this version does not know.
 * Ports without a number and addresses that are not of the slice's family are left out.
 */
export function endpointSliceInfo(slice: V1EndpointSlice): EndpointSliceInfo | undefined {
  const service = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  const addressType = (ADDRESS_TYPES as readonly string[]).includes(slice.addressType) ? slice.addressType as EndpointSliceInfo['addressType'] : undefined;
  if (!service || addressType === undefined) return undefined;
  const namespace = slice.metadata?.namespace ?? '';
  const ports: EndpointSlicePort[] = [];
  for (const p of slice.ports ?? []) {
    if (p.port === undefined || p.port === null) continue;
    const port: EndpointSlicePort = { port: p.port, protocol: (p.protocol ?? 'TCP') as EndpointSlicePort['protocol'] };
    if (p.name) port.name = p.name;
    if (p.appProtocol) port.appProtocol = p.appProtocol;
    ports.push(port);
  }
  const family = addressType === 'IPv4' ? 4 : addressType === 'IPv6' ? 6 : 0;
  const endpoints: EndpointSliceEndpoint[] = [];
  for (const e of slice.endpoints ?? []) {
    const addresses = family === 0
      ? (e.addresses ?? []).filter((a) => a !== '')
      : (e.addresses ?? []).filter((a) => isIP(a) === family).map(canonicalIp);
    if (addresses.length === 0) continue;
    const endpoint: EndpointSliceEndpoint = {
      addresses,
      ready: e.conditions?.ready ?? true,
      serving: e.conditions?.serving ?? true,
      terminating: e.conditions?.terminating ?? false,
    };
    if (e.nodeName) endpoint.nodeName = e.nodeName;
    const ref = e.targetRef;
    if (ref?.kind === 'Pod' && ref.name && (ref.namespace === undefined || ref.namespace === namespace)) endpoint.pod = ref.name;
    endpoints.push(endpoint);
  }
  return { namespace, name: slice.metadata?.name ?? '', service, addressType, ports, endpoints };
}

/** A custom object as the API returns it (untyped). */
export interface CustomObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string>; resourceVersion?: string };
  spec?: unknown;
}

/** Istio's PeerAuthentication spec, checked by the same rules as the config file. */
export function peerAuthenticationInfo(obj: CustomObject): Result<PeerAuthenticationInfo, string> {
  return checked('PeerAuthentication', obj, convertPeerAuthentication);
}

/** Istio's AuthorizationPolicy spec, checked by the same rules as the config file (agent/policy/convert.ts). */
export function authorizationPolicyInfo(obj: CustomObject): Result<AuthorizationPolicyInfo, string> {
  return checked('AuthorizationPolicy', obj, convertAuthorizationPolicy);
}

/**
 * Any kind of the config file's registry (agent/config/kinds.ts), converted by the same rules: what
 * the object adds to a snapshot, as a fragment (only the fields it filled), or why it is invalid.
 * The kube source need not know the kind's types to carry it.
 */
export function kindFragment(kind: string, obj: CustomObject): Result<Partial<Snapshot>, string> {
  const entry = KINDS[kind];
  if (entry === undefined) return err(`${kind} is not a kind this version of Weft reads`);
  const read = checked(kind, obj, (c, o, meta) => entry.read(c, o, meta));
  if (!read.ok) return read;
  const draft: Draft = { snapshot: emptySnapshot(), hostNetworkPods: new Set() };
  read.value(draft);
  const fragment: Partial<Snapshot> = {};
  for (const [key, value] of Object.entries(draft.snapshot) as [keyof Snapshot, unknown][]) {
    if (Array.isArray(value) ? value.length > 0 : value !== undefined) (fragment as Record<string, unknown>)[key] = value;
  }
  return ok(fragment);
}

/** Runs a config-file converter over an API object with a Checker of its own; the errors joined as `field: message; ...`. */
function checked<T>(kind: string, obj: CustomObject, convert: (c: Checker, obj: Record<string, unknown>, meta: Metadata) => T): Result<T, string> {
  const meta = { name: obj.metadata?.name ?? '', namespace: obj.metadata?.namespace ?? '', labels: obj.metadata?.labels ?? {}, annotations: obj.metadata?.annotations ?? {} };
  const errors: ConfigError[] = [];
  const info = convert(new Checker(`${kind} ${meta.namespace}/${meta.name}`, errors), obj as Record<string, unknown>, meta);
  return errors.length === 0 ? ok(info) : err(errors.map((e) => `${e.field}: ${e.message}`).join('; '));
}


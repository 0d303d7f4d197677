import { isIP } from 'node:net';
import type { V1Namespace, V1Node, V1Pod, V1Service } from '@kubernetes/client-node';
import { Checker } from '../config/checker';
import type { ConfigError } from '../config/config-error';
import type { Metadata } from '../config/metadata';
import type { NamespaceInfo, NodeInfo, PeerAuthenticationInfo, PodInfo, ServiceInfo, ServicePort } from '../config/objects';
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
  };
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

/** Runs a config-file converter over an API object with a Checker of its own; the errors joined as `field: message; ...`. */
function checked<T>(kind: string, obj: CustomObject, convert: (c: Checker, obj: Record<string, unknown>, meta: Metadata) => T): Result<T, string> {
  const meta = { name: obj.metadata?.name ?? '', namespace: obj.metadata?.namespace ?? '', labels: obj.metadata?.labels ?? {}, annotations: obj.metadata?.annotations ?? {} };
  const errors: ConfigError[] = [];
  const info = convert(new Checker(`${kind} ${meta.namespace}/${meta.name}`, errors), obj as Record<string, unknown>, meta);
  return errors.length === 0 ? ok(info) : err(errors.map((e) => `${e.field}: ${e.message}`).join('; '));
}


/**
 * Istio's standard labels for one connection or request, derived from what the proxy reported and
 * the state in force. Pure: tested as a table, without sockets.
 *
 * Rules (istio-metrics.md §4; where Istio leaves room, docs/metrics.md says what was chosen):
 * - a workload's app / version / canonical service / canonical revision come from its pod labels the
 *   way Istio derives them (`service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`, the
 *   workload name; `…/canonical-revision`, `app.kubernetes.io/version`, `version`, `latest`);
 * - `source_principal` is the mTLS identity only (`unknown` for plaintext: there is none);
 *   `destination_principal` is the destination workload's identity whenever it is known;
 * - `destination_service` is the Service FQDN the client addressed, else the Service selecting the
 *   destination pod on the port it was reached on, else any Service selecting it;
 * - a plaintext client is named from the state by its address (as ztunnel's inbound passthrough does);
 * - `unknown` only where the mesh does not know the answer.
 */
import type { PodInfo, ServiceInfo } from '../config/objects';
import type { WorkloadRef } from '../core/workload';
import type { WorkloadStore } from '../state/store';
import type { ConnectionOpenedEvent, RequestCompletedEvent, ResponseFlags } from './events';

/** The TCP metrics' labels (Envoy's order, istio-metrics.md §4.1). */
export const TCP_LABELS = [
  'reporter', 'source_workload', 'source_canonical_service', 'source_canonical_revision', 'source_workload_namespace',
  'source_principal', 'source_app', 'source_version', 'source_cluster',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_service', 'destination_canonical_service', 'destination_canonical_revision', 'destination_service_name',
  'destination_service_namespace', 'destination_cluster',
  'request_protocol', 'response_flags', 'connection_security_policy',
] as const;

/** The HTTP/gRPC metrics' labels: the TCP ones plus `response_code` and `grpc_response_status` (25). */
export const HTTP_LABELS = [...TCP_LABELS.slice(0, 21), 'response_code', 'grpc_response_status', ...TCP_LABELS.slice(21)] as const;

export type TcpLabelName = (typeof TCP_LABELS)[number];
export type HttpLabelName = (typeof HTTP_LABELS)[number];
export type TcpLabels = Record<TcpLabelName, string>;
export type HttpLabels = Record<HttpLabelName, string>;

export const UNKNOWN = 'unknown';
/** Istio's cluster ID when none is configured; Weft is one cluster. */
export const CLUSTER_ID = 'Kubernetes';

/** What a label needs to know of one end: the workload reference and, if the pod is in the state, its labels. */
interface End {
  ref?: WorkloadRef;
  pod?: PodInfo;
  principal?: string;
  namespace?: string;
}

/** Istio's canonical service of a pod (`service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`, the workload). */
export function canonicalService(labels: Record<string, string>, workload: string): string {
  return labels['service.istio.io/canonical-name'] ?? labels['app.kubernetes.io/name'] ?? labels.app ?? workload;
}

/** Istio's canonical revision of a pod (`service.istio.io/canonical-revision`, `app.kubernetes.io/version`, `version`, `latest`). */
export function canonicalRevision(labels: Record<string, string>): string {
  return labels['service.istio.io/canonical-revision'] ?? labels['app.kubernetes.io/version'] ?? labels.version ?? 'latest';
}

/** One end's workload labels, without the `source_`/`destination_` prefix. */
interface WorkloadLabels { workload: string; canonicalService: string; canonicalRevision: string; namespace: string; app: string; version: string; cluster: string }

/**
 * One end's workload labels, as a fixed-shape object: built with computed `${prefix}_…` keys it
 * was a dictionary-mode object per end and per connection (~0.8 % of a node proxy's CPU under a
 * new connection per request, docs/new-connections.md).
 */
function workloadLabels(e: End): WorkloadLabels {
  const ref = e.ref;
  if (!ref) {
    return { workload: UNKNOWN, canonicalService: UNKNOWN, canonicalRevision: 'latest', namespace: e.namespace ?? UNKNOWN, app: UNKNOWN, version: UNKNOWN, cluster: UNKNOWN };
  }
  const labels = e.pod?.labels ?? {};
  const service = canonicalService(labels, ref.workload);
  const revision = canonicalRevision(labels);
  return {
    workload: ref.workload,
    canonicalService: service,
    canonicalRevision: revision,
    namespace: ref.namespace,
    // As ztunnel: the canonical service and revision stand in for absent app and version labels.
    app: labels.app ?? labels['app.kubernetes.io/name'] ?? service,
    version: labels.version ?? labels['app.kubernetes.io/version'] ?? revision,
    cluster: CLUSTER_ID,
  };
}

/** `<name>.<namespace>.svc.cluster.local` */
export function serviceHost(s: { namespace: string; name: string }): string {
  return `${s.name}.${s.namespace}.svc.cluster.local`;
}

/** The Service a connection to `pod:port` belongs to: the one whose targetPort is `port`, else any selecting the pod. */
export function serviceOfPod(store: WorkloadStore, pod: PodInfo, port: number): ServiceInfo | undefined {
  const selecting = store.servicesSelecting(pod);
  return selecting.find((s) => s.ports.some((p) => p.targetPort === port)) ?? selecting[0];
}

/** The namespace a SPIFFE ID names (`spiffe://td/ns/<ns>/sa/<sa>`). */
function namespaceOfIdentity(id: string | undefined): string | undefined {
  return id === undefined ? undefined : /\/ns\/([^/]+)\/sa\//.exec(id)?.[1];
}

/** The TCP labels of a connection (every label of TCP_LABELS set). Pure. */
export function tcpLabels(ev: ConnectionOpenedEvent, flags: ResponseFlags, store: WorkloadStore | undefined): TcpLabels {
  const { ends, security } = ev;
  const mtls = security === 'mutual_tls';
  // The source: the pod the kernel (same node) or a verified tunnel peer (HBONE) named; a plaintext client by its address.
  let srcRef = ends.src;
  if (!srcRef && !mtls && store) {
    const p = store.podByIp(ends.srcIp);
    if (p) srcRef = store.workloadRef(p);
  }
  const srcPrincipal = mtls ? (ends.src?.identity ?? ends.srcIdentity) : undefined;
  const src: End = {
    ...(srcRef ? { ref: srcRef } : {}),
    ...(srcRef && store ? { pod: store.pod(srcRef.namespace, srcRef.name) } : {}),
    ...(srcPrincipal ? { principal: srcPrincipal } : {}),
    ...(!srcRef && srcPrincipal ? { namespace: namespaceOfIdentity(srcPrincipal) } : {}),
  } as End;
  const dstPod = ends.dst && store ? store.pod(ends.dst.namespace, ends.dst.name) : undefined;
  const dst: End = { ...(ends.dst ? { ref: ends.dst } : {}), ...(dstPod ? { pod: dstPod } : {}) };
  const svc = ends.dstService ?? (dstPod && store ? serviceOfPod(store, dstPod, ends.dstPort) : undefined);
  const s = workloadLabels(src);
  const d = workloadLabels(dst);
  return {
    reporter: ev.reporter,
    source_workload: s.workload,
    source_canonical_service: s.canonicalService,
    source_canonical_revision: s.canonicalRevision,
    source_workload_namespace: s.namespace,
    source_principal: src.principal ?? UNKNOWN,
    source_app: s.app,
    source_version: s.version,
    source_cluster: s.cluster,
    destination_workload: d.workload,
    destination_workload_namespace: d.namespace,
    destination_principal: ends.dst?.identity ?? UNKNOWN,
    destination_app: d.app,
    destination_version: d.version,
    destination_service: svc ? serviceHost(svc) : UNKNOWN,
    destination_canonical_service: d.canonicalService,
    destination_canonical_revision: d.canonicalRevision,
    destination_service_name: svc?.name ?? UNKNOWN,
    destination_service_namespace: svc?.namespace ?? ends.dst?.namespace ?? UNKNOWN,
    destination_cluster: d.cluster,
    request_protocol: 'tcp',
    response_flags: flags,
    connection_security_policy: security,
  };
}

/**
 * Everything tcpLabels reads of an event, as one string: for one store, two events with the same
 * key have the same TCP labels. The source address counts only where tcpLabels looks the source up
 * by it (no source pod named, no peer certificate), and the destination port only where it picks
 * the Service by it (no Service named). Pure.
 */
export function tcpLabelsKey(ev: ConnectionOpenedEvent, flags: ResponseFlags): string {
  const { ends, security } = ev;
  const src = ends.src;
  const dst = ends.dst;
  let k = `${ev.reporter}|${security}|${flags}|`;
  k += src ? `${src.namespace}|${src.name}|${src.workload}|${src.identity}|` : `||${ends.srcIdentity ?? ''}|${security === 'mutual_tls' ? '' : ends.srcIp}|`;
  k += dst ? `${dst.namespace}|${dst.name}|${dst.workload}|${dst.identity}|` : '||||';
  k += ends.dstService ? `${ends.dstService.namespace}|${ends.dstService.name}` : `|${dst ? ends.dstPort : ''}`;
  return k;
}

/** The HTTP/gRPC labels of a request (every label of HTTP_LABELS set). Pure. */
export function httpLabels(ev: RequestCompletedEvent, store: WorkloadStore | undefined): HttpLabels {
  const l = tcpLabels(ev, ev.flags, store);
  return { ...l, request_protocol: ev.protocol, response_code: String(ev.status), grpc_response_status: ev.grpcStatus ?? '' };
}

/** A stable key for a label set (the values in the declared order). */
export function labelKey(names: readonly string[], labels: Record<string, string>): string {
  return names.map((n) => labels[n]).join('\u0000');
}

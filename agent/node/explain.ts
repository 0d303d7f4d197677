/**
 * `weft explain`: what the node proxy would decide for a connection or request, and why. The facts
 * are derived the way the proxy derives them when the connection arrives (agent/proxy/deliver.ts):
 * a meshed source pod presents its identity; a pod outside the mesh or a bare IP is a plaintext
 * client with no principal; a port a Service declares as TCP is judged as TCP even for a request.
 * Pure over the state store and the policies in force, so the offline (`--config`) and the running
 * agent's answer are the same function.
 */
import { isIP } from 'node:net';
import { canonicalIp, familyOf } from '../core/ip';
import { err, ok, type Result } from '../core/result';
import { ROOT_NAMESPACE, type PodInfo } from '../config/objects';
import { localNamespaces } from '../controlplane/discovery-view';
import type { AuthzDecision, PolicySet, RequestFacts } from '../policy';
import { protocolForPort } from '../proxy/deliver';
import { isEnrolled, mtlsModeForPort } from '../state/enrollment';
import type { WorkloadStore } from '../state/store';
import { DEFAULT_PATH_NORMALIZATION, normalizeTarget } from '../http/path-normalize';

export interface ExplainQuery {
  /** `namespace/pod`, or an IP address (a client outside the mesh) */
  src: string;
  /** `namespace/pod` */
  dst: string;
  port?: number;
  method?: string;
  path?: string;
  host?: string;
  /** header name (any case) → value */
  headers?: Record<string, string>;
}

export interface ExplainAnswer {
  decision: 'ALLOW' | 'DENY';
  /** `namespace/name` of the deciding policy */
  policy?: string;
  rule?: number;
  reason: string;
  /** what the answer was judged on */
  judgedAs: 'tcp' | 'http';
}

/**
 * `node`: the running agent's node. An agent receives its node's projection of the cluster
 * (controlplane/discovery-view.ts): the PeerAuthentications and AuthorizationPolicies of the root
 * namespace and of the namespaces with a pod on its node, no others. For a destination whose
 * namespace has no pod there, it would answer from policies it does not hold, so it says where
 * to ask instead. Without `node` (offline, `--config`) the state is the whole cluster's.
 */
export function explain(store: WorkloadStore, policies: PolicySet, q: ExplainQuery, node?: string): Result<ExplainAnswer, string> {
  const dst = podRef(store, q.dst, 'DST');
  if (!dst.ok) return dst;
  const pod = dst.value;
  if (node !== undefined && pod.namespace !== ROOT_NAMESPACE && !localNamespaces(store.snapshot, node).has(pod.namespace)) {
    return err(`${q.dst} runs on node ${pod.nodeName} and no pod of namespace ${pod.namespace} runs on this agent's node ${node}: this agent does not receive that namespace's policies (each agent gets those of its own pods' namespaces). Ask the agent on ${pod.nodeName}, or answer offline with --config`);
  }
  const judgedAsHttp = q.method !== undefined;
  if (!isEnrolled(pod, store.namespace(pod.namespace))) {
    return ok({ decision: 'ALLOW', reason: `pod ${q.dst} is not in the mesh (its namespace lacks weft.dev/mesh=enabled, or the pod opts out): Weft applies no policy to it`, judgedAs: judgedAsHttp ? 'http' : 'tcp' });
  }
  const port = q.port ?? defaultPort(store, pod);
  if (port === undefined) return err(`no port: give DST as ${q.dst}:PORT (no Service selecting the pod names a numeric targetPort)`);

  let sourceIp: string;
  let principal: string | undefined;
  if (isIP(q.src) !== 0) {
    sourceIp = canonicalIp(q.src);
  } else {
    const src = podRef(store, q.src, 'SRC');
    if (!src.ok) return src;
    sourceIp = src.value.ips.find((ip) => familyOf(ip) === familyOf(pod.ips[0] ?? ip)) ?? src.value.ips[0] ?? '0.0.0.0';
    if (isEnrolled(src.value, store.namespace(src.value.namespace))) principal = store.identityOf(src.value);
  }
  if (principal === undefined && mtlsModeForPort(pod, port, store.snapshot) === 'STRICT') {
    return ok({ decision: 'DENY', reason: `${q.dst} is STRICT (PeerAuthentication) and ${q.src} is a plaintext client outside the mesh: enroll the client's namespace or make the destination PERMISSIVE`, judgedAs: 'tcp' });
  }
  const declared = protocolForPort(store, pod, port);
  const asTcp = !judgedAsHttp || declared === 'tcp';
  // The proxy judges the normalized path (ProxyConfig spec.pathNormalization), so explain does too.
  const mode = store.snapshot.proxyConfig?.pathNormalization?.normalization ?? DEFAULT_PATH_NORMALIZATION;
  const target = asTcp ? undefined : normalizeTarget(q.path!, q.method!, mode);
  if (target !== undefined && !target.ok) {
    return ok({ decision: 'DENY', reason: `the proxy answers 400 before any policy (path normalization ${mode}): ${target.error}`, judgedAs: 'http' });
  }
  const request: RequestFacts | undefined = target === undefined ? undefined : requestFacts({ ...q, path: target.value.path }, pod, port);
  const decision: AuthzDecision = policies.decide({ namespace: pod.namespace, labels: pod.labels },
    { sourceIp, sourcePort: 0, ...(principal === undefined ? {} : { sourcePrincipal: principal }), destinationIp: pod.ips[0] ?? '0.0.0.0', destinationPort: port }, request);
  const note = judgedAsHttp && asTcp ? ` (port ${port} is declared TCP by a Service, so the proxy judges the connection, not the request)`
    : request !== undefined && request.path !== q.path ? ` (path judged as ${request.path}: path normalization ${mode})` : '';
  return ok({
    decision: decision.allow ? 'ALLOW' : 'DENY',
    ...(decision.policy === undefined ? {} : { policy: decision.policy, rule: decision.rule ?? 0 }),
    reason: decision.reason + note,
    judgedAs: asTcp ? 'tcp' : 'http',
  });
}

/** First line ALLOW or DENY; then the deciding policy and rule, or `no policy`; then the reason. */
export function formatExplain(a: ExplainAnswer): string {
  const by = a.policy === undefined ? 'no policy' : `policy ${a.policy} rule ${a.rule}`;
  return `${a.decision}\n${by}\nreason: ${a.reason}\n`;
}

/** `weft explain SRC DST[:PORT] [METHOD PATH]` positionals into a query; flags are added by the caller. */
export function parseExplainTarget(positionals: string[]): Result<Pick<ExplainQuery, 'src' | 'dst' | 'port' | 'method' | 'path'>, string> {
  const [src, dstArg, method, path, ...extra] = positionals;
  if (src === undefined || dstArg === undefined) return err('usage: weft explain SRC DST[:PORT] [METHOD PATH]: SRC is namespace/pod or an IP, DST is namespace/pod');
  if (extra.length > 0) return err(`unexpected arguments: ${extra.join(' ')}`);
  if (method !== undefined && path === undefined) return err(`${method}: a request needs METHOD and PATH (e.g. GET /orders)`);
  if (path !== undefined && !path.startsWith('/')) return err(`PATH must start with / (got ${path})`);
  const m = /^([^:]+)(?::(\d+))?$/.exec(dstArg);
  if (!m) return err(`DST must be namespace/pod[:port] (got ${dstArg})`);
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && !(port >= 1 && port <= 65535)) return err(`DST port must be 1-65535 (got ${m[2]})`);
  return ok({ src, dst: m[1]!, ...(port === undefined ? {} : { port }), ...(method === undefined ? {} : { method: method.toUpperCase(), path: path! }) });
}

/** `--header name=value` flags into a header map. */
export function parseHeaderFlags(values: string[]): Result<Record<string, string>, string> {
  const headers: Record<string, string> = {};
  for (const v of values) {
    const i = v.indexOf('=');
    if (i <= 0) return err(`--header must be NAME=VALUE (got ${v})`);
    headers[v.slice(0, i).trim().toLowerCase()] = v.slice(i + 1);
  }
  return ok(headers);
}

function podRef(store: WorkloadStore, ref: string, what: string): Result<PodInfo, string> {
  const [ns, name, ...rest] = ref.split('/');
  if (!ns || !name || rest.length > 0) return err(`${what} must be namespace/pod (got ${ref})`);
  const pod = store.pod(ns, name);
  return pod ? ok(pod) : err(`${what}: no pod ${ns}/${name} in the state in force`);
}

/** The port when DST names none: the only numeric targetPort of the Services selecting the pod. */
function defaultPort(store: WorkloadStore, pod: PodInfo): number | undefined {
  const ports = new Set(store.servicesSelecting(pod).flatMap((s) => s.ports.map((p) => p.targetPort)).filter((p): p is number => typeof p === 'number'));
  return ports.size === 1 ? [...ports][0] : undefined;
}

function requestFacts(q: ExplainQuery, pod: PodInfo, port: number): RequestFacts {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(q.headers ?? {})) headers[k.toLowerCase()] = v;
  const host = q.host ?? headers.host ?? (port === 80 ? pod.ips[0] : `${pod.ips[0]}:${port}`) ?? '';
  headers.host = host;
  return { method: q.method!, path: q.path!, host, headers };
}

/**
 * Name resolution as cluster DNS would answer a pod: a bare Service name is looked up in the
 * client's namespace, `name.namespace` and `name.namespace.svc` through the search list
 * (`<ns>.svc.cluster.local svc.cluster.local cluster.local`), and the full name as it is. Pure: the
 * table of Services and their cluster IPs is handed in.
 */
import { isIP } from 'node:net';
import { err, ok, type Result } from '../../agent/core/result';

export const CLUSTER_DOMAIN = 'cluster.local';

export interface DnsService {
  name: string;
  namespace: string;
  clusterIP: string;
}

export interface Target {
  /** the address the client connects to */
  ip: string;
  port: number;
  /** the Host header (HTTP) or :authority (gRPC) the client sends */
  authority: string;
  /** the name as written, after template variables were filled in */
  host: string;
  /** the Service the name resolved to (`name.namespace`), if it was a name */
  service?: string;
}

const DEFAULT_PORT: Record<string, number> = { http: 80, https: 443, grpc: 80 };

/** `${VAR}` filled in from `vars`; an unknown variable is an error naming it. */
export function expandTemplate(host: string, vars: Record<string, string>): Result<string, string> {
  let missing: string | undefined;
  const out = host.replace(/\$\{([A-Za-z0-9_]+)\}/g, (_, name: string) => {
    const v = vars[name];
    if (v === undefined) missing ??= name;
    return v ?? '';
  });
  return missing ? err(`host '${host}': template variable \${${missing}} is not known (have: ${Object.keys(vars).join(', ') || 'none'})`) : ok(out);
}

/** Splits `host[:port]` (IPv6 in brackets); the port defaults by protocol. */
export function splitHostPort(hostPort: string, protocol: string): Result<{ host: string; port: number }, string> {
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(hostPort);
  if (!m) return err(`host '${hostPort}' is not host[:port]`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  const port = m[2] === undefined ? DEFAULT_PORT[protocol] : Number(m[2]);
  if (port === undefined) return err(`host '${hostPort}': no port and no default port for protocol '${protocol}'`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return err(`host '${hostPort}': port ${m[2]} is out of range`);
  return ok({ host, port });
}

/** The names a resolver with `ndots:5` and the pod's search list tries, in order. */
export function searchCandidates(name: string, clientNamespace: string): string[] {
  if (name.endsWith('.')) return [name.slice(0, -1)];
  const search = [`${clientNamespace}.svc.${CLUSTER_DOMAIN}`, `svc.${CLUSTER_DOMAIN}`, CLUSTER_DOMAIN];
  const dots = name.split('.').length - 1;
  const expanded = search.map((s) => `${name}.${s}`);
  return dots >= 5 ? [name, ...expanded] : [...expanded, name];
}

/** What cluster DNS answers for `name` asked from a pod in `clientNamespace`. */
export function resolveName(name: string, clientNamespace: string, services: readonly DnsService[]): Result<DnsService, string> {
  const byFqdn = new Map(services.map((s) => [`${s.name}.${s.namespace}.svc.${CLUSTER_DOMAIN}`, s]));
  const candidates = searchCandidates(name.toLowerCase(), clientNamespace);
  for (const c of candidates) {
    const hit = byFqdn.get(c);
    if (hit) return ok(hit);
  }
  return err(`host '${name}' does not resolve from namespace ${clientNamespace}: no Service answers to ${candidates.join(', ')}`);
}

/**
 * The connection target of a case's request: template variables filled in, the name resolved to a
 * cluster IP (an IP stays as it is), the port from the host or the protocol's default, and the
 * Host/:authority sent: the host as written unless the case's headers carry a `Host` entry.
 */
export function resolveTarget(
  request: { protocol: string; host: string; headers: Record<string, string> },
  clientNamespace: string,
  services: readonly DnsService[],
  vars: Record<string, string>,
): Result<Target, string> {
  const expanded = expandTemplate(request.host || 'echo', vars);
  if (!expanded.ok) return expanded;
  const hp = splitHostPort(expanded.value, request.protocol);
  if (!hp.ok) return hp;
  const hostOverride = Object.entries(request.headers).find(([k]) => k.toLowerCase() === 'host')?.[1];
  const authority = hostOverride ?? expanded.value;
  if (isIP(hp.value.host)) return ok({ ip: hp.value.host, port: hp.value.port, authority, host: expanded.value });
  const svc = resolveName(hp.value.host, clientNamespace, services);
  if (!svc.ok) return svc;
  return ok({ ip: svc.value.clusterIP, port: hp.value.port, authority, host: expanded.value, service: `${svc.value.name}.${svc.value.namespace}` });
}

/**
 * Connections from meshed pods to a Service's cluster IP. The source proxy resolves the Service
 * port to its endpoints, picks one (the Service port's balancer, skipping ejected endpoints) and
 * carries the connection there like any meshed connection: HBONE to another node, deliver() on
 * this one, plaintext to a pod outside the mesh. HTTP ports are served request by request
 * (service-http.ts: routes, per-request balancing, resilience); the rest is balanced per
 * connection. A Service with no usable endpoint is refused at once, never sent to the cluster IP.
 */
import { declaredProtocol } from '../http/protocol';
import { sniffProtocol } from '../http/sniff';
import { connectionClosed, connectionOpened, type ResponseFlags, type SecurityPolicy } from '../telemetry/events';
import { connectionMembers, type ConnectionRecord } from './access-log';
import { wantsLine } from '../core/log';
import { deliver, socketDownstream } from './deliver';
import { relay } from './relay';
import { sameFamilyFirst, servicePortKey } from './service-target';
import { serveServiceHttp } from './service-http';
import { connectWithTimeout } from './connect';
import type { ServiceConnection, ServiceEnv } from './service-env';
import type { Endpoint } from '../state/endpoints';

export async function handleServiceConnection(env: ServiceEnv, c: ServiceConnection): Promise<void> {
  let protocol = declaredProtocol(c.target.port);
  let head: Buffer | undefined;
  if (protocol === undefined) ({ protocol, head } = await sniffProtocol(c.client, env.sniffMs()));
  if (protocol !== 'tcp' && c.src) return serveServiceHttp(env, c, protocol, head);
  return serviceTcp(env, c, head);
}

/** One TCP connection to a Service port, balanced per connection. */
async function serviceTcp(env: ServiceEnv, c: ServiceConnection, head: Buffer | undefined): Promise<void> {
  const started = performance.now();
  const { service, port, vip } = c.target;
  const store = env.store();
  const key = servicePortKey(service, port.port);
  const svcRef = { namespace: service.namespace, name: service.name };
  const base = { direction: 'outbound' as const, srcIp: c.clientIp, srcPort: c.clientPort, ...(c.src ? { src: c.src } : {}), dstService: svcRef };
  const finish = (record: Omit<ConnectionRecord, 'decision' | 'bytesSent' | 'bytesRecv' | 'durationMs' | 'error'>, security: SecurityPolicy,
    f: { decision: 'allow' | 'deny'; sent: number; recv: number; error?: string; flags: ResponseFlags }, msg: string, opened: boolean) => {
    if (wantsLine(env.accessLog, f)) {
      env.accessLog.write(connectionMembers({ ...record, decision: f.decision, bytesSent: f.sent, bytesRecv: f.recv, durationMs: performance.now() - started,
        error: f.error }), msg);
    }
    if (connectionClosed.hasSubscribers) {
      if (!opened && connectionOpened.hasSubscribers) connectionOpened.publish({ reporter: 'source', ends: record, security });
      connectionClosed.publish({ reporter: 'source', ends: record, security, bytesFromClient: f.sent, bytesToClient: f.recv, flags: f.flags });
    }
  };
  const candidates = sameFamilyFirst(env.runtime.usableEndpoints(store, service, port), vip);
  const picked = env.runtime.pick(key, service, port.port, candidates);
  if (!picked) {
    c.client.resetAndDestroy();
    finish({ ...base, dstIp: vip, dstPort: port.port }, 'none', { decision: 'deny', sent: 0, recv: 0, flags: 'NO_HEALTHY_UPSTREAM',
      error: candidates.length === 0 ? `Service ${service.namespace}/${service.name} port ${port.port} has no ready endpoint` : `every endpoint of Service ${service.namespace}/${service.name} port ${port.port} is ejected or over its limits` }, 'connection refused', false);
    return;
  }
  const ep = picked;
  const record = { ...base, dstIp: ep.ip, dstPort: ep.port, ...(ep.pod ? { dst: store.workloadRef(ep.pod) } : {}) };
  const admitted = env.runtime.admitConnection(key, service, port.port);
  if (!admitted.ok) {
    c.client.resetAndDestroy();
    finish(record, 'none', { decision: 'deny', sent: 0, recv: 0, flags: 'UPSTREAM_OVERFLOW', error: admitted.reason }, 'connection refused', false);
    return;
  }
  try {
    await carry(env, c, head, key, ep, record, finish);
  } finally {
    admitted.release();
  }
}

type Finish = (record: Omit<ConnectionRecord, 'decision' | 'bytesSent' | 'bytesRecv' | 'durationMs' | 'error'>, security: SecurityPolicy,
  f: { decision: 'allow' | 'deny'; sent: number; recv: number; error?: string; flags: ResponseFlags }, msg: string, opened: boolean) => void;

/** Carries one admitted connection to the endpoint picked for it. */
async function carry(env: ServiceEnv, c: ServiceConnection, head: Buffer | undefined, key: string, ep: Endpoint,
  record: Omit<ConnectionRecord, 'decision' | 'bytesSent' | 'bytesRecv' | 'durationMs' | 'error'>, finish: Finish): Promise<void> {
  const route = env.dialer.route(ep.ip);
  if (route.kind === 'local') {
    // This proxy is the endpoint's proxy too: the same delivery (and policy) as a tunnelled stream.
    env.runtime.started(key, ep);
    const client = c.client;
    if (head && head.length > 0) client.unshift(head);
    await deliver(socketDownstream(client), {
      path: 'local', pod: route.pod,
      conn: { sourceIp: c.clientIp, sourcePort: c.clientPort, ...(c.src ? { sourcePrincipal: c.src.identity } : {}), destinationIp: ep.ip, destinationPort: ep.port },
      record,
    }, env.delivery);
    env.runtime.finished(key, ep, { kind: 'success' });
    return;
  }
  const security: SecurityPolicy = route.kind === 'hbone' ? 'mutual_tls' : 'none';
  if (connectionOpened.hasSubscribers) connectionOpened.publish({ reporter: 'source', ends: record, security });
  if (route.kind === 'unreachable' || (route.kind === 'hbone' && !c.src)) {
    c.client.resetAndDestroy();
    finish(record, security, { decision: 'deny', sent: 0, recv: 0, error: route.kind === 'unreachable' ? route.reason : 'source pod unknown: no identity to present',
      flags: route.kind === 'unreachable' ? 'CONNECT' : 'IDENTITY_ERROR' }, 'connection refused', true);
    return;
  }
  env.runtime.started(key, ep);
  let upstream;
  try {
    upstream = route.kind === 'hbone'
      ? await env.dialer.openTunnel(route, c.src!, { ip: ep.ip, port: ep.port }, { ip: c.clientIp, port: c.clientPort })
      : await connectWithTimeout(ep.ip, ep.port, env.dialer.connectTimeoutMs);
  } catch (e) {
    env.runtime.finished(key, ep, { kind: 'local-origin-failure' });
    c.client.resetAndDestroy();
    const err = e as Error & { code?: string };
    finish({ ...record, ...(route.kind === 'hbone' ? { hboneAddr: `${route.nodeAddress}:${route.port}` } : {}) }, security,
      { decision: 'allow', sent: 0, recv: 0, error: err.code ? `${err.code}: ${err.message}` : err.message, flags: err.code === 'HBONE_FORBIDDEN' ? 'DENY' : 'CONNECT' }, 'connection failed', true);
    return;
  }
  if (head && head.length > 0) upstream.write(head);
  const r = await relay(c.client, upstream);
  env.runtime.finished(key, ep, r.error && r.sent === 0 && r.received === 0 ? { kind: 'local-origin-failure' } : { kind: 'success' });
  finish({ ...record, ...(route.kind === 'hbone' ? { hboneAddr: `${route.nodeAddress}:${route.port}` } : {}) }, security,
    { decision: 'allow', sent: r.sent + (head?.length ?? 0), recv: r.received, ...(r.error ? { error: r.error.message } : {}), flags: '-' },
    route.kind === 'passthrough' ? 'connection complete (plaintext: the endpoint is not in the mesh)' : 'connection complete', true);
}

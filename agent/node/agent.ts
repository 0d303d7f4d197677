/**
 * The node agent: takes snapshots of desired state and drives redirect and proxy from them.
 * Data flows one way: snapshot → store → {redirect, proxy directory}. Stopping the agent leaves
 * the kernel state pinned: enrolled pods stay captured and fail closed until it is back.
 */
import type http from 'node:http';
import { isAbsolute, relative } from 'node:path';
import * as bpf from '../../native/libbpf';
import * as libc from '../../native/libc';
import type { Snapshot } from '../config/objects';
import type { AccessLog, Logger } from '../core/log';
import { accessLogger, operationalLogger } from '../core/log';
import type { AccessLogConfig } from '../config/proxy-config';
import { accessLogGate, DEFAULT_ACCESS_LOG } from '../telemetry/access-log-policy';
import { MetricsSwitch } from '../telemetry/metrics-switch';
import type { Directory } from '../core/workload';
import { IdentityManager, type CertificateRequester } from '../identity/manager';
import { defaultProxyConfig } from '../config/proxy-config';
import { PolicySet } from '../policy';
import { deliver, judge, socketDownstream, type Arrival, type DeliveryContext, type DeliveryState } from '../proxy/deliver';
import { listenInbound, localTarget, plaintextArrival } from '../proxy/inbound';
import { listenInboundPlaintext, type InboundPlaintextListener } from '../proxy/inbound-plaintext';
import { connectToPod } from '../proxy/upstream-connect';
import { HeldAddresses } from '../proxy/held-addresses';
import type { SourceCollision } from '../proxy/source-address';
import { DEFAULT_FAIRNESS } from '../proxy/fairness';
import { arrivalAccount, FairShare } from '../proxy/fairness-share';
import { registerOverloadShed } from '../telemetry/overload-shed';
import { canonicalIp } from '../core/ip';
import { LiveConnections } from '../proxy/live-connections';
import { splicerFor, type Splicer } from '../proxy/splice';
import { SpliceKernel } from '../proxy/splice-kernel';
import { OutboundProxy } from '../proxy/outbound';
import { routeOutbound, type OutboundRoute } from '../proxy/outbound-route';
import type { Dialer } from '../proxy/dial';
import type { ServiceEnv } from '../proxy/service-env';
import { planRequest } from '../proxy/service-plan';
import { ServiceRuntime } from '../proxy/service-runtime';
import { UpstreamPools } from '../proxy/upstream-pools';
import type { WorkloadRef } from '../core/workload';
import type { Duplex } from 'node:stream';
import { HbonePool } from '../tunnel/hbone-pool';
import type { HboneServer } from '../tunnel/hbone-server';
import { sniFor } from '../tunnel/sni';
import { childTraceparent } from '../tunnel/traceparent';
import { cgroupId, ownCgroupPath } from '../redirect/cgroup';
import { decodeOrig, encodeFlow, ORIG_SIZE } from '../redirect/codec';
import { Datapath } from '../redirect/datapath';
import { RedirectManager, type PodToEnroll } from '../redirect/manager';
import { PodCgroupResolver } from '../redirect/pod-cgroup';
import { desiredEnrollment, podUidsToResolve, type PendingPod } from '../state/enrollment';
import { WorkloadStore } from '../state/store';
import { makeDirectory } from './directory';
import { CAPTURE_PORTS, PORTS } from './ports';
import { heldCapturePorts } from '../redirect/capture-ports';
import { adminRoutes, healthRoutes } from './admin';
import { serveJson } from './http-endpoints';
import { MeshMetrics } from '../telemetry/metrics';
import { LiveView } from '../telemetry/live-view';
import { registerHealth } from '../telemetry/health';
import { startIdleShrink } from '../core/idle-shrink';
import { registerNodeState, type ControlPlaneView, type SpliceView } from '../telemetry/node-state';
import { registerServiceMetrics } from '../telemetry/service-metrics';
import { serveMetrics } from '../telemetry/serve';
import { TracingRuntime } from '../telemetry/tracing-runtime';
import { DEFAULT_PATH_NORMALIZATION } from '../http/path-normalize';

export { PORTS } from './ports';

/**
 * While a pod's cgroup is not there yet, the last snapshot is applied again after 1 s, then at
 * doubling intervals up to 10 s (a pod that never appears, e.g. with --kubepods-cgroup pointing
 * elsewhere, must not keep the agent busy); a newly pending pod starts again at 1 s.
 */
const DEFAULT_PROXY_CONFIG = defaultProxyConfig();
const CONNECT_TIMEOUT_MS = 10_000;

const WEFT_VERSION = '0.1.0';

export const PENDING_RETRY_MS = { first: 1_000, max: 10_000 } as const;

/** Where workload certificates come from, and the roots every peer must chain to. */
export interface IdentitySource {
  request: CertificateRequester;
  /**
   * The roots as they are now (the CA file can change on rotation). Asked for every new outbound
   * tunnel session and every inbound (15008) handshake.
   */
  trustBundle: () => string;
  validitySeconds?: number;
  /** The agent's data directory: keys and certificates are cached under `identities/` across restarts (identity/cert-cache.ts). */
  dataDir?: string;
}

export interface AgentOptions {
  node: string;
  cgroupRoot: string;
  /**
   * Where to look for the kubelet's pod cgroups (the kubepods tree, or a directory a few levels
   * above it) for pods known only by UID; default `cgroupRoot`.
   */
  kubepodsCgroup?: string;
  bpfDir: string;
  /** The node's own addresses, where enrolled pods' connects are sent; default: the Node object's InternalIPs. */
  nodeIps?: string[];
  outboundPort?: number;
  adminPort?: number;
  healthPort?: number;
  metricsPort?: number;
  identity: IdentitySource;
  /** The control-plane watch feeding this agent, for its connection state and config generation in metrics. */
  controlPlane?: ControlPlaneView;
}

export class NodeAgent {
  private store: WorkloadStore | undefined;
  private policies = new PolicySet([]);
  /** TCP connections into this node's pods, re-judged when policy changes */
  private readonly live = new LiveConnections<Arrival>();
  /** Connections into this node's pods made from the client's address but another port, by the collision that moved them (docs/source-address.md). */
  private readonly sourcePortMoves: Record<SourceCollision, number> = { EADDRINUSE: 0, EADDRNOTAVAIL: 0 };
  /**
   * Pod addresses with connections the proxy made from their clients' addresses: a pod leaving the
   * mesh keeps its replies steered until they end (WEFT_CAPTURE_LINGER); the last one out lets the
   * redirect state be applied again without it.
   */
  private readonly held = new HeldAddresses((ip) => { if (this.redirect.current().capture.lingering.includes(ip)) this.reconcileAgain(); });
  /** the pods last enrolled, for reconcileAgain() */
  private enrollment: PodToEnroll[] = [];
  private reconcileQueued = false;
  private directory: Directory | undefined;
  private applying: Promise<void> = Promise.resolve();
  private lastProblems: string[] = [];
  private latest: Snapshot | undefined;
  private pending: PendingPod[] = [];
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay: number = PENDING_RETRY_MS.first;
  private stopped = false;
  /** every listener is up (readiness on 15021) */
  private started = false;
  private readonly podCgroups: PodCgroupResolver;
  private servers: http.Server[] = [];
  private proxy: OutboundProxy | undefined;
  private inbound: HboneServer | undefined;
  private plaintext: InboundPlaintextListener | undefined;
  private readonly pool = new HbonePool({ timeoutMs: 10_000 });
  /** pooled connections from the source proxy to Service endpoints */
  private readonly upstreams = new UpstreamPools();
  /** balancers, breakers and outlier state per Service port; outlives snapshots */
  private readonly serviceRuntime = new ServiceRuntime();
  readonly identities: IdentityManager;
  /** Istio's standard metrics, from the proxy's telemetry events; served on 15020 */
  readonly metrics = new MeshMetrics();
  /** who talks to whom through this proxy, for the admin port's /live page and `weft top` */
  readonly liveView: LiveView;
  /** ProxyConfig spec.telemetry.metrics: the mesh metrics and the live view listen only while on */
  readonly metricsSwitch: MetricsSwitch;
  /** every access-log line of this agent, filtered by ProxyConfig spec.accessLog (the one in force at each line) */
  readonly accessLog: AccessLog;
  private accessLogConfig: AccessLogConfig = DEFAULT_ACCESS_LOG;
  /** spans per HTTP hop over OTLP/HTTP while ProxyConfig spec.tracing is set */
  readonly tracing: TracingRuntime;
  private stopHealth: (() => void) | undefined;
  /** same-node splicing's kernel side (docs/splice.md); undefined when the kernel refused it */
  private spliceKernel: SpliceKernel | undefined;
  private splicer: Splicer | undefined;
  /** per-pod limits, read budgets and overload shedding (ProxyConfig spec.fairness, docs/fairness.md) */
  readonly fairness = new FairShare(() => this.store?.snapshot.proxyConfig?.fairness ?? DEFAULT_FAIRNESS,
    (account, lagMs, c, sheds, shedMs) => this.log.warn({ account: account.key, lagMs: Math.round(lagMs), overloadLagMs: c.overloadLagMs, shedMs, sheds },
      'proxy overloaded (event-loop lag above spec.fairness.overloadLagMs): the noisiest pod is shed, its new connections refused and its reads held (reported at most every 10 s; sheds: how many since)'));

  private constructor(
    readonly opts: AgentOptions,
    private readonly dp: Datapath,
    private readonly redirect: RedirectManager,
    private readonly log: Logger,
  ) {
    this.identities = new IdentityManager({ request: opts.identity.request, validitySeconds: opts.identity.validitySeconds ?? 86_400, log: operationalLogger('identity'),
      ...(opts.identity.dataDir ? { cache: { dataDir: opts.identity.dataDir, trustBundle: opts.identity.trustBundle } } : {}) });
    this.podCgroups = new PodCgroupResolver(opts.kubepodsCgroup ?? opts.cgroupRoot);
    this.liveView = new LiveView({ node: opts.node });
    this.metricsSwitch = new MetricsSwitch(this.metrics.registry, [this.metrics, this.liveView]);
    this.accessLog = accessLogger(1, {}, accessLogGate(() => this.accessLogConfig));
    this.tracing = new TracingRuntime({ node: opts.node, log: operationalLogger('tracing') });
    redirect.holdingConnections((ip) => this.held.holds(ip));
  }

  static async start(opts: AgentOptions, first: Snapshot): Promise<NodeAgent> {
    const log = operationalLogger('agent');
    const nodeIps = opts.nodeIps ?? first.nodes.find((n) => n.name === opts.node)?.internalIPs ?? [];
    const proxyIp4 = nodeIps.find((ip) => !ip.includes(':')) ?? null;
    const proxyIp6 = nodeIps.find((ip) => ip.includes(':')) ?? null;
    if (!proxyIp4 && !proxyIp6) {
      throw new Error(`node ${opts.node}: no address for the node proxy. Add a Node object named ${opts.node} with ` +
        'status.addresses of type InternalIP to the config, or pass --node-ip');
    }
    const proxyCgroupId = cgroupId(ownCgroupPath());
    const dp = Datapath.load(opts.node, opts.bpfDir);
    const outboundPort = opts.outboundPort ?? PORTS.outbound;
    const redirect = new RedirectManager(dp, { proxyIp4, proxyIp6, outboundPort, proxyCgroupId }, log);
    const agent = new NodeAgent(opts, dp, redirect, log);
    try {
      // The pods' own sockets too (sk_msg at their sendmsg, docs/splice.md), where the capture is.
      const kernel = SpliceKernel.load(opts.bpfDir, { cgroupRoot: opts.cgroupRoot, outboundPort, capturePorts: CAPTURE_PORTS },
        (e) => log.warn({ err: e.message }, 'same-node splicing at the pods\' sendmsg() off: splicing at the proxy\'s sockets only'));
      agent.spliceKernel = kernel;
      agent.splicer = splicerFor(kernel);
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'same-node splicing off');
    }
    if (opts.kubepodsCgroup !== undefined && !isWithin(opts.kubepodsCgroup, opts.cgroupRoot)) {
      log.warn({ kubepodsCgroup: opts.kubepodsCgroup, cgroupRoot: opts.cgroupRoot },
        'the kubepods cgroup is not under the cgroup root the socket programs attach to: pods found there cannot be captured');
    }
    try {
      agent.metricsSwitch.start();
      // Health first, answering not ready until every listener is up: during an upgrade the kubelet's probe
      // reaches this agent from its start (newest wins, shared-listener.ts), never the one it replaces.
      agent.servers.push(await serveJson('0.0.0.0', opts.healthPort ?? PORTS.health, healthRoutes(() => agent.started, () => redirect.current().strictNotEnforced)));
      redirect.install(opts.cgroupRoot);
      await agent.apply(first);
      const flowFd = dp.mapFd('weft_flow_orig');
      const hosts = [...(proxyIp4 ? ['0.0.0.0'] : []), ...(proxyIp6 ? ['::'] : [])];
      const trustBundle = opts.identity.trustBundle;
      const delivery = agent.delivery();
      agent.inbound = await listenInbound({
        delivery,
        host: proxyIp6 ? '::' : '0.0.0.0', // '::' is dual-stack: one listener serves both families
        port: PORTS.hbone, node: opts.node,
        trustBundle,
        store: () => agent.store!,
        credentials: (id) => {
          const material = (c: { keyPem: string; chainPem: string[] }) => ({ key: c.keyPem, chain: c.chainPem });
          const c = agent.identities.get(id);
          return c ? material(c) : agent.identities.whenReady(id, 5_000).then(material, () => undefined);
        },
        accessLog: agent.accessLog,
        fairness: agent.fairness,
      });
      const openTunnel = async (route: Extract<OutboundRoute, { kind: 'hbone' }>, source: WorkloadRef, target: { ip: string; port: number }, client: { ip: string; port: number }): Promise<Duplex> => {
        const cert = await agent.identities.whenReady(source.identity, 5_000);
        return agent.pool.connect({
          sourceIdentity: source.identity,
          credentials: { key: cert.keyPem, chain: cert.chainPem },
          trustBundle: trustBundle(),
          nodeAddress: { host: route.nodeAddress, port: route.port },
          expectedPeerIdentity: route.identity,
          servername: sniFor(route.identity),
          target,
          source: client,
          traceparent: childTraceparent(),
        });
      };
      const route = (ip: string) => routeOutbound(ip, opts.node, agent.store!);
      const dialer: Dialer = { route, openTunnel, delivery, connectTimeoutMs: CONNECT_TIMEOUT_MS };
      const services: ServiceEnv = {
        store: () => agent.store!,
        plan: (call, request) => planRequest(agent.store!, agent.serviceRuntime, call, request),
        dialer,
        runtime: agent.serviceRuntime,
        pools: agent.upstreams,
        delivery,
        limits: () => agent.deliveryState().limits,
        pathNormalization: () => agent.deliveryState().pathNormalization,
        sniffMs: () => agent.deliveryState().sniffMs,
        tracer: () => agent.tracing.tracer,
        accessLog: agent.accessLog,
        log: operationalLogger('proxy'),
      };
      agent.proxy = await OutboundProxy.listen({
        port: outboundPort,
        captureAnchor: (family, fd) => dp.setCaptureAnchor(family, fd),
        hosts,
        lookupOrig: (flow) => { const v = bpf.mapLookup(flowFd, encodeFlow(flow), ORIG_SIZE); return v && decodeOrig(v); },
        directory: () => agent.directory!,
        route,
        delivery,
        openTunnel,
        services,
        accessLog: agent.accessLog,
        log: operationalLogger('proxy'),
        fairness: agent.fairness.start(),
      });
      const held = heldCapturePorts([proxyIp4, proxyIp6].filter((ip): ip is string => ip !== null), CAPTURE_PORTS);
      if (held.length === 0) redirect.spreadOver(CAPTURE_PORTS);
      else redirect.keepOnOutboundPort(`capture ports held by another socket on this node: ${held.join(', ')}`);
      agent.plaintext = await listenInboundPlaintext({ hosts, port: PORTS.inboundPlaintext, log: operationalLogger('inbound-plaintext'),
        onConnection: (client, f) => {
          const store = agent.store!;
          const t = localTarget(f.dstIp, opts.node, store);
          if (!('pod' in t)) {
            client.resetAndDestroy();
            return void agent.log.warn({ client: `${f.clientIp}:${f.clientPort}`, reason: t.reason }, 'captured a plaintext connection for no pod on this node: refused');
          }
          void deliver(socketDownstream(client), plaintextArrival(store, f, t.pod), delivery);
        } });
      agent.servers.push(await serveJson('127.0.0.1', opts.adminPort ?? PORTS.admin, adminRoutes({
        node: opts.node,
        store: () => agent.store,
        policies: () => agent.policies,
        workloads: () => agent.workloads(),
        certs: () => agent.identities.status(),
        services: () => agent.serviceRuntime.summary(),
        live: () => agent.liveView.feed(),
        redirect: () => ({ node: opts.node, pinRoot: dp.pinRoot, cgroupRoot: opts.cgroupRoot, ...redirect.current(), capturePorts: redirect.capturePorts(), pending: agent.pending,
          kubepods: agent.podCgroups.knownTrees(), counters: redirect.counters(),
          splice: agent.spliceKernel ? { sockets: agent.spliceKernel.sockets, podSide: agent.spliceKernel.podSide, entersClients: agent.spliceKernel.entersClients,
            ...agent.spliceView()! } : null }),
      })));
      agent.stopHealth = registerHealth(agent.metrics.registry, {
        connections: () => (agent.proxy?.connections ?? 0) + agent.live.size,
        certificates: () => agent.identities.status(),
        version: WEFT_VERSION,
        podConnections: () => agent.metrics.podConnections.counts(),
        loopDelay: agent.fairness.lagHistogram,
      });
      const stopShed = registerOverloadShed(agent.metrics.registry);
      const stopShrink = startIdleShrink(() => agent.fairness.activity(),
        (e) => agent.log.debug({ beforeMiB: +(e.beforeBytes / 2 ** 20).toFixed(1), afterMiB: +(e.afterBytes / 2 ** 20).toFixed(1), ms: Math.round(e.ms) },
          e.after === 'start' ? 'started and idle: V8 heap given back' : 'traffic stopped: V8 heap given back'),
        (e) => agent.log.warn({ reason: e.message }, 'traffic stopped, but the V8 heap could not be given back'),
        () => libc.mallocTrim());
      const stopHealth = agent.stopHealth;
      agent.stopHealth = () => { stopHealth(); stopShed(); agent.fairness.stop(); stopShrink(); };
      registerServiceMetrics(agent.metrics.registry, () => agent.serviceRuntime.stats());
      registerNodeState(agent.metrics.registry, { ...(opts.controlPlane ? { controlPlane: opts.controlPlane } : {}), redirectCounters: () => redirect.counters(), strictNotEnforced: () => redirect.current().strictNotEnforced,
        enrolledPods: () => redirect.current().enrolled.length, pendingPods: () => agent.pending.length,
        splice: () => agent.spliceView(), capturePorts: () => redirect.capturePortCount(), sourcePortMoves: () => agent.sourcePortMoves });
      agent.servers.push(await serveMetrics('0.0.0.0', opts.metricsPort ?? PORTS.metrics, agent.metrics.registry));
    } catch (e) {
      await agent.stop();
      throw e;
    }
    agent.started = true;
    log.info({ node: opts.node, proxyIp4, proxyIp6, outboundPort }, 'node agent ready');
    return agent;
  }

  /**
   * Applies a snapshot; calls are serialised so the kernel sees them in order. Pods known only by
   * UID are looked up in cgroupfs first; while one is not there yet (the kubelet creates its cgroup
   * shortly after the API shows it), it is reported as pending and the latest snapshot is applied
   * again (PENDING_RETRY_MS) until it resolves or leaves the snapshot.
   */
  apply(snapshot: Snapshot): Promise<void> {
    this.latest = snapshot;
    this.applying = this.applying.then(async () => {
      if (this.stopped) return;
      const store = new WorkloadStore(snapshot);
      const cgroups = this.podCgroups.resolveAll(podUidsToResolve(snapshot, this.opts.node));
      const desired = desiredEnrollment(snapshot, this.opts.node, cgroups);
      this.enrollment = desired.pods.map((p) => ({ key: p.key, cgroupPath: p.cgroupPath, ips: p.pod.ips, strict: p.mode === 'STRICT' }));
      await this.redirect.reconcile(this.enrollment);
      this.store = store;
      this.serviceRuntime.setStore(store);
      this.upstreams.sweep((endpoint) => store.podByIp(endpoint.slice(0, endpoint.lastIndexOf(':')).replace(/^\[|\]$/g, '')) !== undefined);
      this.metrics.setStore(store);
      this.liveView.setStore(store);
      this.accessLogConfig = snapshot.proxyConfig?.accessLog ?? DEFAULT_ACCESS_LOG;
      const metricsOn = snapshot.proxyConfig?.telemetry?.metrics ?? true;
      if (this.metricsSwitch.set(metricsOn)) this.log.info({ metrics: metricsOn }, metricsOn ? 'mesh metrics on (ProxyConfig spec.telemetry.metrics)' : 'mesh metrics off (ProxyConfig spec.telemetry.metrics): /metrics serves the agent\'s health only');
      this.tracing.configure(snapshot.proxyConfig?.tracing);
      try {
        this.spliceKernel?.enterClients(snapshot.proxyConfig?.sameNodeSplice !== false);
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'switching the pods\' client sockets in or out of same-node splicing failed');
      }
      this.policies = new PolicySet(snapshot.authorizationPolicies);
      this.directory = makeDirectory(store, (id) => this.redirect.podForCgroup(id));
      this.recheckLive();
      this.identities.setWanted([...new Set(desired.pods.map((p) => store.identityOf(p.pod)))]);
      const problems = [...desired.problems, ...this.redirect.current().problems];
      for (const p of desired.problems) if (!this.lastProblems.includes(p)) this.log.warn(p);
      this.lastProblems = problems;
      this.notePending(desired.pending, new Set(desired.pods.map((p) => p.key)));
    }).catch((e) => { this.log.error({ err: (e as Error).message }, 'applying the new state failed; the previous state stays in force'); });
    return this.applying;
  }

  /** Applies the last enrollment again, after the ones before it (once however many ask meanwhile): a lingering address was released. */
  private reconcileAgain(): void {
    if (this.reconcileQueued || this.stopped) return;
    this.reconcileQueued = true;
    this.applying = this.applying.then(async () => {
      this.reconcileQueued = false;
      if (this.stopped) return;
      await this.redirect.reconcile(this.enrollment);
    }).catch((e) => { this.log.error({ err: (e as Error).message }, 'releasing the addresses of pods that left the mesh failed; they are retried at the next change'); });
  }

  /** The policy in force and how connections into this node's pods are delivered. */
  private delivery(): DeliveryContext {
    // The pod sees its client's own address (source preservation: proxy/source-address.ts).
    const nodeIps = new Set((this.opts.nodeIps ?? this.latest?.nodes.find((n) => n.name === this.opts.node)?.internalIPs ?? []).map(canonicalIp));
    const fellBack = new Set<string>();
    const upstream = {
      steered: (ip: string) => this.redirect.steersReplies(ip), captured: (ip: string) => this.redirect.capturesInbound(ip), nodeIps, timeoutMs: CONNECT_TIMEOUT_MS,
      onFallback: (a: Arrival, e: Error & { code?: string }) => {
        if (fellBack.has(e.code ?? '')) return; // once per cause: a port collision is routine, EPERM a setup fault
        fellBack.add(e.code ?? '');
        this.log.warn({ src: `${a.conn.sourceIp}:${a.conn.sourcePort}`, dst: `${a.conn.destinationIp}:${a.conn.destinationPort}`, err: e.message },
          'connecting from the client\'s address failed; this connection comes from the node\'s address (logged once per cause)');
      },
      onPortMoved: (_a: Arrival, code: SourceCollision) => { this.sourcePortMoves[code]++; },
      held: this.held,
    };
    return {
      state: () => this.deliveryState(),
      connect: (a, reader) => connectToPod(a, reader, upstream).then((s) => {
        this.fairness.attachUpstream(s, a.ticket, () => arrivalAccount(a));
        return s;
      }),
      live: this.live,
      accessLog: this.accessLog,
      draining: () => this.stopped,
      // ProxyConfig spec.sameNodeSplice (default on), asked per connection.
      splicer: () => (this.store?.snapshot.proxyConfig?.sameNodeSplice === false ? undefined : this.splicer),
    };
  }

  /** The policy and limits in force (ProxyConfig `default`, else the defaults). */
  private deliveryState(): DeliveryState {
    const config = this.store!.snapshot.proxyConfig ?? DEFAULT_PROXY_CONFIG;
    const tracer = this.tracing.tracer;
    return { store: this.store!, policies: this.policies, limits: config.http, pathNormalization: config.pathNormalization?.normalization ?? DEFAULT_PATH_NORMALIZATION,
      sniffMs: config.protocolDetectionTimeoutMs, ...(tracer === undefined ? {} : { tracer }) };
  }

  /** Closes the live TCP connections the policy now in force denies. */
  private recheckLive(): void {
    const state = this.deliveryState();
    const closed = this.live.recheck((a) => {
      const d = judge(state, a);
      return d.allow ? undefined : d.reason;
    });
    if (closed > 0) this.log.info({ closed }, 'closed established connections the new policy denies');
  }

  /** Logs pods that start or stop waiting for their cgroup, and keeps retrying while any waits. */
  private notePending(pending: PendingPod[], enrolled: Set<string>): void {
    const before = new Set(this.pending.map((p) => p.key));
    // A STRICT pod not enforced is retried too: its interface may appear (or its MAC be learned) later.
    const waiting = pending.length > 0 || this.redirect.current().strictNotEnforced.length > 0;
    const fresh = pending.filter((p) => !before.has(p.key));
    for (const p of fresh) this.log.info({ pod: p.key, uid: p.uid, reason: p.reason }, 'pod pending: its cgroup is not there yet; retrying');
    for (const key of before) {
      if (enrolled.has(key)) this.log.info({ pod: key }, 'pending pod\'s cgroup found; enrolled');
    }
    this.pending = pending;
    if (fresh.length > 0 || !waiting) {
      this.retryDelay = PENDING_RETRY_MS.first;
      if (this.retryTimer !== undefined && fresh.length > 0) { clearTimeout(this.retryTimer); this.retryTimer = undefined; }
    }
    if (!waiting || this.retryTimer !== undefined || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retryDelay = Math.min(this.retryDelay * 2, PENDING_RETRY_MS.max);
      if (this.latest) void this.apply(this.latest);
    }, this.retryDelay);
    this.retryTimer.unref();
  }

  workloads(): unknown {
    const store = this.store;
    if (!store) return [];
    const notEnforced = new Map(this.redirect.current().strictNotEnforced.map((n) => [n.pod, n.reason]));
    return this.redirect.current().enrolled.map((e) => {
      const [ns, name] = e.key.split('/') as [string, string];
      const pod = store.pod(ns, name);
      return { pod: e.key, identity: pod && store.identityOf(pod), workload: pod && store.workloadName(pod), ips: pod?.ips,
        mtls: e.strict ? 'STRICT' : 'PERMISSIVE', cgroupId: e.cgroupId, hostIfindex: e.ifindex,
        ...(e.strict ? { strictEnforced: !notEnforced.has(e.key), ...(notEnforced.has(e.key) ? { strictNotEnforced: notEnforced.get(e.key) } : {}) } : {}) };
    });
  }

  /** What same-node splicing has done, for /redirect and /metrics; undefined while its kernel side is not loaded. */
  private spliceView(): SpliceView | undefined {
    const k = this.spliceKernel;
    const arming = this.splicer?.arming;
    return k && { movedBytes: k.moved, counters: k.counters(), spinHandovers: k.spinHandovers, armSkipped: arming?.skipped ?? 0, quietDestinations: arming?.quiet ?? 0 };
  }

  /**
   * Stops serving; pinned kernel state stays (enrolled pods fail closed until an agent is back, or
   * a successor agent already serves them: docs/upgrade.md). Every listener closes at once (a
   * successor's take the new connections); established connections and tunnel sessions get
   * `graceMs` to end before they are cut.
   */
  async stop(graceMs = 1_000): Promise<void> {
    this.stopped = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    await this.applying;
    this.metrics.unsubscribe();
    this.liveView.unsubscribe();
    this.stopHealth?.();
    const open = (this.proxy?.connections ?? 0) + this.live.size;
    if (graceMs > 1_000) this.log.info({ connections: open, graceMs }, 'draining: listeners closed, established connections may finish');
    await Promise.all([this.proxy?.close(graceMs), this.inbound?.close(graceMs), this.plaintext?.close(graceMs),
      ...this.servers.map((s) => new Promise((r) => s.close(r)))]);
    await this.pool.close();
    this.upstreams.close();
    this.identities.close();
    await this.tracing.close();
    this.spliceKernel?.close();
    this.dp.close();
  }
}

function isWithin(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

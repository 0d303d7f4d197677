/**
 * The node agent's state an operator checks first when traffic looks wrong: is the agent connected
 * to the control plane, which config generation does it hold, and what the redirect programs in
 * the kernel counted (redirected connects, strict-mode drops, ...), by reason. Read at scrape
 * (collect); nothing runs between scrapes.
 *
 * Where Weft has ztunnel's concept, the same facts are also exported under ztunnel's names, types and
 * labels, so that Istio's ztunnel dashboard reads the agent unchanged (docs/metrics.md):
 * `istio_xds_connection_terminations_total{reason}` and `istio_xds_message_total{url}` (the discovery
 * stream), `workload_manager_active_proxy_count` (pods this node's proxy serves: enrolled) and
 * `workload_manager_pending_proxy_count` (pods waiting for their cgroup).
 */
import { Counter, Gauge, type Registry } from './prom-classes';
import { TERMINATION_REASONS, type TerminationReason } from './control-plane-stream';

/** The control-plane watch as the agent sees it (discovery-client.ts's DiscoveryWatch has this shape). */
export interface ControlPlaneView {
  /** A Watch stream is open and has delivered its first snapshot. */
  connected(): boolean;
  /** Version of the last snapshot received from the control plane; 0 before the first. */
  lastVersion(): number;
  /** Streams to the control plane that ended, by ztunnel's reason (absent: the counter is not exported). */
  terminations?(): Readonly<Record<TerminationReason, number>>;
  /** Messages received from the control plane, by type URL (absent: the counter is not exported). */
  messages?(): Readonly<Record<string, number>>;
}

export interface NodeStateSources {
  /** Absent when the agent is not fed by a control plane (then neither gauge is exported). */
  controlPlane?: ControlPlaneView;
  /** The kernel counters of the redirect programs by reason (the admin API's `/redirect` `counters`). */
  redirectCounters(): Record<string, bigint | number>;
  /** STRICT pods on this node whose enforcement could not be attached (the admin API's `/redirect` `strictNotEnforced`). */
  strictNotEnforced?(): Array<{ pod: string }>;
  /** Local pods the proxy serves now: enrolled, their traffic captured (ztunnel's active proxies). */
  enrolledPods?(): number;
  /** Local enrolled pods waiting for their cgroup to appear (ztunnel's pending proxies). */
  pendingPods?(): number;
  /** Same-node splicing (docs/splice.md): undefined while its kernel side is not loaded (then its series read 0). */
  splice?(): SpliceView | undefined;
  /** How many capture ports captured connects are spread over (docs/capture-ports.md); 0: the outbound port alone. */
  capturePorts?(): number;
  /** Connections into this node's pods that kept the client's address but not its port, by the collision (docs/source-address.md). */
  sourcePortMoves?(): Readonly<Record<string, number>>;
}

/** What same-node splicing has done (the admin API's `/redirect` `splice`). */
export interface SpliceView {
  /** bytes closed spliced connections had carried by the kernel, as their access-log lines count them */
  movedBytes: bigint;
  /** the splice programs' kernel counters, by event */
  counters: Record<string, bigint | number>;
  /** connections whose pod spun on a full proxy socket, handed back to the relay by the watchdog */
  spinHandovers: number;
  /** connections whose server was not armed before its first byte: their destination's last connections were all short (proxy/splice-arming.ts) */
  armSkipped: number;
  /** destinations (pod address and port) not armed now */
  quietDestinations: number;
}

export function registerNodeState(registry: Registry, s: NodeStateSources): void {
  const r = [registry];
  const cp = s.controlPlane;
  if (cp) {
    new Gauge({ name: 'weft_agent_control_plane_connected', help: '1 while the agent watches the control plane (a stream is open and delivered its first snapshot), else 0: the last snapshot stays in force', registers: r,
      collect() { this.set(cp.connected() ? 1 : 0); } });
    new Gauge({ name: 'weft_agent_config_generation', help: 'Version of the last config snapshot received from the control plane (the same on every agent once they agree)', registers: r,
      collect() { this.set(cp.lastVersion()); } });
    const terminations = cp.terminations?.bind(cp);
    if (terminations) {
      // Every reason from the start (at 0): rate() over a series that appears with its first increment misses that increment.
      new Counter({ name: 'istio_xds_connection_terminations_total', help: 'Streams to the control plane that ended (ztunnel\'s reasons: ConnectionError, Error, Reconnect, Complete); the agent reconnects with backoff and keeps the last snapshot meanwhile', labelNames: ['reason'], registers: r,
        collect() {
          const n = terminations();
          this.reset();
          for (const reason of TERMINATION_REASONS) this.inc({ reason }, n[reason]);
        } });
    }
    const messages = cp.messages?.bind(cp);
    if (messages) {
      new Counter({ name: 'istio_xds_message_total', help: 'Messages received from the control plane, by type URL (a full state of the node\'s view, or a delta)', labelNames: ['url'], registers: r,
        collect() {
          this.reset();
          for (const [url, n] of Object.entries(messages())) this.inc({ url }, n);
        } });
    }
  }
  new Counter({ name: 'weft_redirect_events_total', help: 'What the redirect programs in the kernel counted, by reason (as the admin API\'s /redirect counters)', labelNames: ['reason'], registers: r,
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(s.redirectCounters())) this.inc({ reason }, Number(n));
    } });
  const splice = s.splice;
  if (splice) {
    new Counter({ name: 'weft_splice_moved_bytes_total', help: 'Bytes of closed same-node connections that the kernel carried without this process (spliced), as their access-log lines count them', registers: r,
      collect() { this.reset(); this.inc(Number(splice()?.movedBytes ?? 0n)); } });
    new Counter({ name: 'weft_splice_events_total', help: 'What the same-node splice programs in the kernel counted, by event (as the admin API\'s /redirect splice counters; a message sent again after its redirect found no room counts again)', labelNames: ['event'], registers: r,
      collect() {
        this.reset();
        for (const [event, n] of Object.entries(splice()?.counters ?? {})) this.inc({ event }, Number(n));
      } });
    new Counter({ name: 'weft_splice_spin_handovers_total', help: 'Spliced connections whose pod retried on a full proxy socket for a reader under 256 MiB/s, handed back to the relay and TCP\'s backpressure (docs/splice.md, "Backpressure")', registers: r,
      collect() { this.reset(); this.inc(splice()?.spinHandovers ?? 0); } });
    new Counter({ name: 'weft_splice_arm_skipped_total', help: 'Same-node connections whose server was not armed before its first byte, because the last 16 connections to its address and port each carried under 64 KiB from the server (docs/splice.md, "Which servers are armed")', registers: r,
      collect() { this.reset(); this.inc(splice()?.armSkipped ?? 0); } });
    new Gauge({ name: 'weft_splice_quiet_destinations', help: 'Pod addresses and ports whose servers are not armed now (their last 16 connections were short)', registers: r,
      collect() { this.set(splice()?.quietDestinations ?? 0); } });
  }
  const { enrolledPods, pendingPods } = s;
  if (enrolledPods) {
    new Gauge({ name: 'workload_manager_active_proxy_count', help: 'Pods on this node the proxy serves now: enrolled in the mesh, their traffic captured (ztunnel\'s name)', registers: r,
      collect() { this.set(enrolledPods()); } });
  }
  if (pendingPods) {
    new Gauge({ name: 'workload_manager_pending_proxy_count', help: 'Enrolled pods on this node waiting for their cgroup (the kubelet creates it shortly after the API shows the pod); retried (ztunnel\'s name)', registers: r,
      collect() { this.set(pendingPods()); } });
  }
  const capturePorts = s.capturePorts;
  if (capturePorts) {
    new Gauge({ name: 'weft_capture_ports', help: 'Capture ports the node\'s captured connects are spread over (docs/capture-ports.md); 0: all of them go to the outbound port, and a pod runs short of source ports sooner (see the admin API\'s /redirect capturePorts for why)', registers: r,
      collect() { this.set(capturePorts()); } });
  }
  const moves = s.sourcePortMoves;
  if (moves) {
    new Counter({ name: 'weft_source_port_moved_total', help: 'Connections into this node\'s pods made from the client\'s address but another port, since the client\'s port was taken for that destination (EADDRNOTAVAIL: the same 4-tuple still held, e.g. in TIME_WAIT; EADDRINUSE: a socket bound to that address and port); docs/source-address.md', labelNames: ['reason'], registers: r,
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(moves())) this.inc({ reason }, n);
      } });
  }
  const notEnforced = s.strictNotEnforced;
  if (notEnforced) {
    new Gauge({ name: 'weft_strict_not_enforced', help: '1 for each STRICT pod on this node whose host-side interface was not found: plaintext from outside the mesh is NOT refused for it (see the admin API\'s /redirect strictNotEnforced for the reason)', labelNames: ['pod_namespace', 'pod_name'], registers: r,
      collect() {
        this.reset();
        for (const { pod } of notEnforced()) {
          const slash = pod.indexOf('/');
          this.set({ pod_namespace: pod.slice(0, slash), pod_name: pod.slice(slash + 1) }, 1);
        }
      } });
  }
}

/**
 * The node agent's state an operator checks first when traffic looks wrong: is the agent connected
 * to the control plane, which config generation does it hold, and what the redirect programs in
 * the kernel counted (redirected connects, strict-mode drops, ...), by reason. Read at scrape
 * (collect); nothing runs between scrapes.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

/** The control-plane watch as the agent sees it (discovery-client.ts's DiscoveryWatch has this shape). */
export interface ControlPlaneView {
  /** A Watch stream is open and has delivered its first snapshot. */
  connected(): boolean;
  /** Version of the last snapshot received from the control plane; 0 before the first. */
  lastVersion(): number;
}

export interface NodeStateSources {
  /** Absent when the agent is not fed by a control plane (then neither gauge is exported). */
  controlPlane?: ControlPlaneView;
  /** The kernel counters of the redirect programs by reason (the admin API's `/redirect` `counters`). */
  redirectCounters(): Record<string, bigint | number>;
  /** STRICT pods on this node whose enforcement could not be attached (the admin API's `/redirect` `strictNotEnforced`). */
  strictNotEnforced?(): Array<{ pod: string }>;
}

export function registerNodeState(registry: Registry, s: NodeStateSources): void {
  const r = [registry];
  const cp = s.controlPlane;
  if (cp) {
    new Gauge({ name: 'weft_agent_control_plane_connected', help: '1 while the agent watches the control plane (a stream is open and delivered its first snapshot), else 0: the last snapshot stays in force', registers: r,
      collect() { this.set(cp.connected() ? 1 : 0); } });
    new Gauge({ name: 'weft_agent_config_generation', help: 'Version of the last config snapshot received from the control plane (the same on every agent once they agree)', registers: r,
      collect() { this.set(cp.lastVersion()); } });
  }
  new Counter({ name: 'weft_redirect_events_total', help: 'What the redirect programs in the kernel counted, by reason (as the admin API\'s /redirect counters)', labelNames: ['reason'], registers: r,
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(s.redirectCounters())) this.inc({ reason }, Number(n));
    } });
  const notEnforced = s.strictNotEnforced;
  if (notEnforced) {
    new Gauge({ name: 'weft_strict_not_enforced', help: '1 for each STRICT pod on this node whose host-side interface was not found: plaintext from outside the mesh is NOT refused for it (see the admin API\'s /redirect strictNotEnforced for the reason)', labelNames: ['pod'], registers: r,
      collect() {
        this.reset();
        for (const { pod } of notEnforced()) this.set({ pod }, 1);
      } });
  }
}

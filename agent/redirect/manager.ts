/**
 * Keeps the kernel in step with the desired set of enrolled pods: the pod cgroups the socket
 * programs capture, the STRICT pods' interfaces, and the addresses and interfaces of inbound
 * plaintext capture (bpf/weft_ingress.c). The kernel map is read back on every pass, so
 * a restarted agent converges on what it finds pinned instead of starting from scratch.
 */
import { existsSync } from 'node:fs';
import * as bpf from '../../native/libbpf';
import type { Logger } from '../core/log';
import { canonicalIp } from '../core/ip';
import { weft_counter } from '../core/bpf-layout.generated';
import { cgroupId } from './cgroup';
import { CAPTURE, installCaptureRouting, ownNetnsIno } from './capture-routing';
import {
  decodeCgroupKey, decodeIpKey, encodeCapture, encodeCaptureRoute, encodeCgroupKey, encodeConfig, encodeIpKey, encodePod,
  IP_KEY_SIZE, NodeDatapathConfig, type CapturePorts,
} from './codec';
import { Datapath } from './datapath';
import { registerProxyCgroup } from './proxy-cgroups';
import { lookupPodInterfaces, type InterfaceLookup } from './interfaces';
import { captureAddresses, DesiredPod, planEnrollment } from './plan';
import { captureEntries, ingressInterfaces, lingeringAddresses, planCaptureEntries, steeredPods, withLingering, type Steering } from './reply-steering';
import { weft_capture } from '../core/bpf-layout.generated';

export interface PodToEnroll {
  key: string;
  cgroupPath: string;
  ips: string[];
  strict: boolean;
}

export interface RedirectState {
  enrolled: Array<{ key: string; cgroupId: string; strict: boolean; ifindex: number | null }>;
  /**
   * inbound plaintext capture: the pod addresses captured and the interfaces watched (tcx ingress);
   * `lingering`: addresses of pods that left the mesh whose connections through the proxy still
   * run (kept steered until they end, nothing new captured)
   */
  capture: { addresses: string[]; interfaces: number[]; lingering: string[] };
  /**
   * Source address preservation: the pod addresses whose replies the ingress program brings back
   * to the proxy's transparent sockets (the proxy connects to them from their client's address),
   * and the pods it does not preserve sources for, with the reason.
   */
  replies: Steering;
  problems: string[];
  /**
   * STRICT pods whose host-side interface could not be found, so nothing refuses plaintext from
   * outside the mesh: an error shown in `weft status`, the admin API, metrics and readiness.
   */
  strictNotEnforced: StrictNotEnforced[];
}

export interface StrictNotEnforced {
  /** namespace/name */
  pod: string;
  reason: string;
}

export class RedirectManager {
  private byCgroup = new Map<bigint, string>();
  private state: RedirectState = { enrolled: [], capture: { addresses: [], interfaces: [], lingering: [] }, replies: { addresses: [], notSteered: [] }, problems: [], strictNotEnforced: [] };
  /** whether the proxy holds a connection with a pod address (canonical); none until told */
  private held: (ip: string) => boolean = () => false;
  private steered = new Set<string>();
  private captured = new Set<string>();
  private lastNotEnforced = '';
  private capture: { ports: string } | { ports: null; reason: string } = { ports: null, reason: 'the proxy is not listening yet' };

  constructor(private readonly dp: Datapath, private cfg: NodeDatapathConfig, private readonly log: Logger) {}

  /**
   * Writes the node config, attaches the socket programs to the node's pod cgroup subtree, and
   * installs the policy routing of inbound capture (recording where, for `weft uninstall`).
   */
  install(cgroupRoot: string): void {
    const cfg = { ...this.cfg, captureMark: this.cfg.captureMark ?? CAPTURE.mark };
    // Before the config names this agent: a predecessor still draining stays the proxy too (docs/upgrade.md).
    const proxies = registerProxyCgroup(this.dp.mapFd('weft_proxy_cgroups'), this.dp.mapFd('weft_config'), this.cfg.proxyCgroupId);
    if (proxies.put.length > 1 || proxies.remove.length > 0) this.log.info({ added: proxies.put.map((p) => String(p.cgroupId)), removed: proxies.remove.map(String) }, 'node proxy cgroups updated');
    bpf.mapUpdate(this.dp.mapFd('weft_config'), Buffer.alloc(4), encodeConfig(cfg));
    const r = this.dp.attachSockPrograms(cgroupRoot);
    const lookup = this.dp.attachCaptureLookup();
    this.log.info({ cgroupRoot, ...r, captureLookup: lookup, pinRoot: this.dp.pinRoot }, 'socket programs attached');
    const route = { ...CAPTURE, mark: cfg.captureMark, netnsIno: ownNetnsIno() };
    bpf.mapUpdate(this.dp.mapFd('weft_capture_route'), Buffer.alloc(4), encodeCaptureRoute(route));
    installCaptureRouting(route);
    this.log.info({ mark: `0x${route.mark.toString(16)}`, table: route.table, priority: route.priority }, 'inbound capture routing installed');
  }

  /**
   * From now on captured connects go to one of `ports` (weft_capture_lookup hands them to the
   * outbound port's listeners), not to the outbound port alone. Called once the capture anchors are
   * in place: until then the config install() wrote keeps them on the outbound port, which a
   * predecessor agent of an earlier version still serves during an upgrade.
   */
  spreadOver(ports: CapturePorts): void {
    this.cfg = { ...this.cfg, capturePorts: ports };
    bpf.mapUpdate(this.dp.mapFd('weft_config'), Buffer.alloc(4), encodeConfig({ ...this.cfg, captureMark: this.cfg.captureMark ?? CAPTURE.mark }));
    this.capture = { ports: `${ports.base}-${ports.base + ports.count - 1}` };
    this.log.info({ outboundPort: this.cfg.outboundPort, capturePorts: this.capture.ports }, 'captured connections spread over the capture ports');
  }

  /** Leaves captured connects on the outbound port alone, for `reason` (an error in the log and /redirect). */
  keepOnOutboundPort(reason: string): void {
    this.capture = { ports: null, reason };
    this.log.error({ outboundPort: this.cfg.outboundPort, reason },
      'captured connections stay on the outbound port: a pod runs short of source ports at about 470 new connections/s (docs/capture-ports.md). Free the ports (ss -tlnp) and restart the agent');
  }

  /** Where captured connects go: the capture ports' range, or null with the reason they are not used. */
  capturePorts(): { ports: string } | { ports: null; reason: string } {
    return this.capture;
  }

  /** How many capture ports captured connects are spread over; 0 while they go to the outbound port alone. */
  capturePortCount(): number {
    return this.capture.ports === null ? 0 : this.cfg.capturePorts?.count ?? 0;
  }

  /** The pod (namespace/name) a captured connection came from, by the cgroup id the kernel recorded. */
  podForCgroup(id: bigint): string | undefined {
    return this.byCgroup.get(id);
  }

  /**
   * How to tell whether the proxy holds connections with a pod address (canonical): such an
   * address lingers in weft_capture after its pod leaves the mesh, until they end (withLingering).
   */
  holdingConnections(held: (ip: string) => boolean): void {
    this.held = held;
  }

  /** Whether the replies of the pod at `ip` (canonical) reach the proxy's transparent sockets. */
  steersReplies(ip: string): boolean {
    return this.steered.has(ip);
  }

  /** Whether the inbound plaintext of the pod at `ip` (canonical) is captured: enrolled, not STRICT, not lingering. */
  capturesInbound(ip: string): boolean {
    return this.captured.has(ip);
  }

  current(): RedirectState {
    return this.state;
  }

  async reconcile(pods: PodToEnroll[]): Promise<RedirectState> {
    const problems: string[] = [];
    const strictNotEnforced: StrictNotEnforced[] = [];
    const present = pods.filter((p) => {
      if (existsSync(p.cgroupPath)) return true;
      problems.push(`pod ${p.key}: cgroup ${p.cgroupPath} does not exist; not enrolled`);
      if (p.strict) strictNotEnforced.push({ pod: p.key, reason: `its cgroup ${p.cgroupPath} does not exist, so the pod is not enrolled` });
      return false;
    });
    const uplinkIps = [this.cfg.proxyIp4, this.cfg.proxyIp6].filter((ip): ip is string => !!ip);
    // Addresses of pods enrolled until now may linger with none enrolled: their interfaces are still watched.
    const found: InterfaceLookup = present.length > 0 || this.state.enrolled.length > 0 || this.state.capture.lingering.length > 0
      ? await lookupPodInterfaces(present, uplinkIps)
      : { pods: new Map(), addressIfindex: new Map(), podLinks: [] };
    const desired: DesiredPod[] = [];
    const moreStrict: number[] = [];
    for (const p of present) {
      const iface = found.pods.get(p.key);
      const ifindex = iface?.ok ? iface.ifindexes[0]! : null;
      const id = cgroupId(p.cgroupPath);
      if (p.strict && iface?.ok && id !== this.cfg.proxyCgroupId) moreStrict.push(...iface.ifindexes);
      if (p.strict && !iface?.ok) {
        const reason = `no host-side interface found (${iface?.reason ?? 'not looked up'})`;
        strictNotEnforced.push({ pod: p.key, reason });
        problems.push(`pod ${p.key}: STRICT NOT ENFORCED: ${reason}; plaintext from outside the mesh is not refused`);
      }
      desired.push({ key: p.key, cgroupId: id, strict: p.strict, ifindex, ips: p.ips.map(canonicalIp) });
    }
    const podsFd = this.dp.mapFd('weft_pods');
    const inKernel = bpf.mapKeys(podsFd, 8).map(decodeCgroupKey);
    const plan = planEnrollment(desired, inKernel, this.cfg.proxyCgroupId);
    for (const id of plan.addCgroups) bpf.mapUpdate(podsFd, encodeCgroupKey(id), encodePod());
    for (const id of plan.removeCgroups) bpf.mapDelete(podsFd, encodeCgroupKey(id));
    // A pod whose addresses sit behind several interfaces (one per family) is judged on each.
    const strictIfindexes = [...new Set([...plan.strictIfindexes, ...moreStrict])].sort((a, b) => a - b);
    const tc = this.dp.syncStrictInterfaces(strictIfindexes);
    const capture = this.syncCapture(captureEntries(desired, this.cfg.proxyCgroupId), found.podLinks, found.addressIfindex);
    const replies = steeredPods(desired.filter((d) => d.cgroupId !== this.cfg.proxyCgroupId)
      .map((d) => ({ key: d.key, ips: d.ips ?? [], iface: found.pods.get(d.key) })), new Set(capture.interfaces));
    this.steered = new Set(replies.addresses);
    const capturedAddresses = captureAddresses(desired, this.cfg.proxyCgroupId);
    this.captured = new Set(capturedAddresses);
    if (desired.some((d) => d.cgroupId === this.cfg.proxyCgroupId)) {
      problems.push('a pod shares the node proxy\'s cgroup; it is not enrolled (the proxy must never capture itself)');
    }
    this.byCgroup = new Map(desired.map((d) => [d.cgroupId, d.key]));
    this.state = {
      enrolled: desired.filter((d) => d.cgroupId !== this.cfg.proxyCgroupId)
        .map((d) => ({ key: d.key, cgroupId: d.cgroupId.toString(), strict: d.strict, ifindex: d.ifindex })),
      capture: { addresses: capturedAddresses, interfaces: capture.interfaces, lingering: capture.lingering },
      replies,
      problems,
      strictNotEnforced,
    };
    if (plan.addCgroups.length || plan.removeCgroups.length || tc.attached.length || tc.detached.length || capture.changed) {
      this.log.info({ enrolled: plan.addCgroups.length, unenrolled: plan.removeCgroups.length,
        strictAttached: tc.attached, strictDetached: tc.detached, captured: capturedAddresses.length, steered: replies.addresses.length,
        captureAttached: capture.attached, captureDetached: capture.detached, ...(capture.lingering.length > 0 ? { lingering: capture.lingering } : {}) }, 'redirect state changed');
    }
    for (const p of problems) this.log.warn(p);
    const notEnforced = JSON.stringify(strictNotEnforced);
    if (notEnforced !== this.lastNotEnforced && strictNotEnforced.length > 0) {
      this.log.error({ strictNotEnforced }, 'STRICT is not enforced for some pods: plaintext from outside the mesh reaches them (see /redirect strictNotEnforced)');
    }
    this.lastNotEnforced = notEnforced;
    return this.state;
  }

  /**
   * Makes weft_capture hold exactly `enrolled` (every enrolled pod address; STRICT ones flagged
   * replies-only) plus the addresses that linger (withLingering), and the ingress program watch the
   * interfaces ingressInterfaces() names.
   */
  private syncCapture(enrolled: Map<string, number>, podIfaces: number[], own: Map<string, number>) {
    const fd = this.dp.mapFd('weft_capture');
    const have = new Map(bpf.mapKeys(fd, IP_KEY_SIZE).map((k) => [decodeIpKey(k), bpf.mapLookup(fd, k, weft_capture.size)?.readUInt32LE(weft_capture.fields.flags.offset) ?? -1] as const));
    const entries = withLingering(enrolled, have.keys(), this.held);
    const plan = planCaptureEntries(entries, have);
    for (const [ip, flags] of plan.put) bpf.mapUpdate(fd, encodeIpKey(ip), encodeCapture(flags));
    for (const ip of plan.remove) bpf.mapDelete(fd, encodeIpKey(ip));
    const uplinks = [this.cfg.proxyIp4, this.cfg.proxyIp6].flatMap((ip) => (ip ? [own.get(canonicalIp(ip))] : []))
      .filter((i): i is number => i !== undefined);
    const interfaces = ingressInterfaces(entries, uplinks, podIfaces);
    const tcx = this.dp.syncCaptureInterfaces(interfaces);
    return { interfaces, lingering: lingeringAddresses(entries), ...tcx, changed: plan.put.length + plan.remove.length + tcx.attached.length + tcx.detached.length > 0 };
  }

  /** Counters from the programs: why they redirected, answered or dropped. */
  counters(): Record<string, bigint> {
    const fd = this.dp.mapFd('weft_counters');
    const out: Record<string, bigint> = {};
    for (const [name, idx] of Object.entries(weft_counter)) {
      if (name === 'WEFT_CTR_MAX') continue;
      const key = Buffer.alloc(4);
      key.writeUInt32LE(idx);
      const v = bpf.mapLookup(fd, key, 8);
      out[name.replace('WEFT_CTR_', '').toLowerCase()] = v ? v.readBigUInt64LE(0) : 0n;
    }
    return out;
  }
}

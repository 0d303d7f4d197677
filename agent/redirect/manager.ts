/**
 * Keeps the kernel in step with the desired set of enrolled pods: the pod cgroups the socket
 * programs capture, and the STRICT pods' interfaces. The kernel map is read back on every pass, so
 * a restarted agent converges on what it finds pinned instead of starting from scratch.
 */
import { existsSync } from 'node:fs';
import * as bpf from '../../native/libbpf';
import type { Logger } from '../core/log';
import { canonicalIp } from '../core/ip';
import { weft_counter } from '../core/bpf-layout.generated';
import { cgroupId } from './cgroup';
import { decodeCgroupKey, encodeCgroupKey, encodeConfig, encodePod, NodeDatapathConfig } from './codec';
import { Datapath } from './datapath';
import { podInterfaces } from './interfaces';
import { DesiredPod, planEnrollment } from './plan';

export interface PodToEnroll {
  key: string;
  cgroupPath: string;
  ips: string[];
  strict: boolean;
}

export interface RedirectState {
  enrolled: Array<{ key: string; cgroupId: string; strict: boolean; ifindex: number | null }>;
  problems: string[];
}

export class RedirectManager {
  private byCgroup = new Map<bigint, string>();
  private state: RedirectState = { enrolled: [], problems: [] };

  constructor(private readonly dp: Datapath, private readonly cfg: NodeDatapathConfig, private readonly log: Logger) {}

  /** Writes the node config and attaches the socket programs to the node's pod cgroup subtree. */
  install(cgroupRoot: string): void {
    bpf.mapUpdate(this.dp.mapFd('weft_config'), Buffer.alloc(4), encodeConfig(this.cfg));
    const r = this.dp.attachSockPrograms(cgroupRoot);
    this.log.info({ cgroupRoot, ...r, pinRoot: this.dp.pinRoot }, 'socket programs attached');
  }

  /** The pod (namespace/name) a captured connection came from, by the cgroup id the kernel recorded. */
  podForCgroup(id: bigint): string | undefined {
    return this.byCgroup.get(id);
  }

  current(): RedirectState {
    return this.state;
  }

  async reconcile(pods: PodToEnroll[]): Promise<RedirectState> {
    const problems: string[] = [];
    const ifaces = pods.some((p) => p.strict) ? await podInterfaces() : new Map<string, number>();
    const desired: DesiredPod[] = [];
    for (const p of pods) {
      if (!existsSync(p.cgroupPath)) {
        problems.push(`pod ${p.key}: cgroup ${p.cgroupPath} does not exist; not enrolled`);
        continue;
      }
      const ifindex = p.ips.map((ip) => ifaces.get(canonicalIp(ip))).find((x) => x !== undefined) ?? null;
      if (p.strict && ifindex === null) problems.push(`pod ${p.key}: STRICT but no host route to ${p.ips.join(', ')} on this node; inbound not enforced`);
      desired.push({ key: p.key, cgroupId: cgroupId(p.cgroupPath), strict: p.strict, ifindex });
    }
    const podsFd = this.dp.mapFd('weft_pods');
    const inKernel = bpf.mapKeys(podsFd, 8).map(decodeCgroupKey);
    const plan = planEnrollment(desired, inKernel, this.cfg.proxyCgroupId);
    for (const id of plan.addCgroups) bpf.mapUpdate(podsFd, encodeCgroupKey(id), encodePod());
    for (const id of plan.removeCgroups) bpf.mapDelete(podsFd, encodeCgroupKey(id));
    const tc = this.dp.syncStrictInterfaces(plan.strictIfindexes);
    if (desired.some((d) => d.cgroupId === this.cfg.proxyCgroupId)) {
      problems.push('a pod shares the node proxy\'s cgroup; it is not enrolled (the proxy must never capture itself)');
    }
    this.byCgroup = new Map(desired.map((d) => [d.cgroupId, d.key]));
    this.state = {
      enrolled: desired.filter((d) => d.cgroupId !== this.cfg.proxyCgroupId)
        .map((d) => ({ key: d.key, cgroupId: d.cgroupId.toString(), strict: d.strict, ifindex: d.ifindex })),
      problems,
    };
    if (plan.addCgroups.length || plan.removeCgroups.length || tc.attached.length || tc.detached.length) {
      this.log.info({ enrolled: plan.addCgroups.length, unenrolled: plan.removeCgroups.length,
        strictAttached: tc.attached, strictDetached: tc.detached }, 'redirect state changed');
    }
    for (const p of problems) this.log.warn(p);
    return this.state;
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

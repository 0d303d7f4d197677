/**
 * weft_proxy_cgroups (bpf/weft_common.h): the cgroups of every node proxy of this node that is
 * still alive, beside weft_config.proxy_cgroup_id (the newest). During an upgrade the old and the
 * new agent run at once, in two pods, so in two cgroups; STRICT enforcement (tcx egress) must keep
 * admitting the old agent's sockets while it drains, and the socket programs must keep skipping
 * them (docs/upgrade.md). Each agent adds its own cgroup at start, with its pid, and drops the
 * entries of agents that are gone.
 */
import * as bpf from '../../native/libbpf';
import { weft_config } from '../core/bpf-layout.generated';
import { decodeConfig } from './codec';

export interface ProxyCgroup {
  cgroupId: bigint;
  /** the agent's pid (the DaemonSet runs with hostPID, so every agent of the node sees the others); 0: unknown */
  pid: number;
}

/**
 * What a starting agent (`self`, pid `pid`) writes: its own entry, the predecessor named by the
 * config it is about to replace (an agent of a version without this map; pid unknown), and which
 * entries go: agents that are gone, and predecessors of unknown pid recorded by an earlier start
 * (an upgrade ago: long past their drain). Pure.
 */
export function planProxyCgroups(entries: ProxyCgroup[], self: bigint, pid: number, configured: bigint | undefined,
  alive: (pid: number) => boolean): { put: ProxyCgroup[]; remove: bigint[] } {
  const remove = entries.filter((e) => e.cgroupId !== self && (e.pid === 0 || !alive(e.pid))).map((e) => e.cgroupId);
  const put: ProxyCgroup[] = [{ cgroupId: self, pid }];
  const known = new Set(entries.map((e) => e.cgroupId));
  if (configured !== undefined && configured !== 0n && configured !== self && !known.has(configured)) put.push({ cgroupId: configured, pid: 0 });
  return { put, remove };
}

/** Whether a process with this pid exists (signal 0: EPERM means it does). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Registers this agent's cgroup (before weft_config is overwritten) and prunes the gone; returns what changed. */
export function registerProxyCgroup(mapFd: number, configFd: number, self: bigint, pid = process.pid): { put: ProxyCgroup[]; remove: bigint[] } {
  const entries = bpf.mapKeys(mapFd, 8).map((k) => ({ cgroupId: k.readBigUInt64LE(0), pid: bpf.mapLookup(mapFd, k, 4)?.readUInt32LE(0) ?? 0 }));
  const current = bpf.mapLookup(configFd, Buffer.alloc(4), weft_config.size);
  const configured = current ? decodeConfig(current).proxyCgroupId : undefined;
  const plan = planProxyCgroups(entries, self, pid, configured, pidAlive);
  for (const e of plan.put) {
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(e.cgroupId);
    const value = Buffer.alloc(4);
    value.writeUInt32LE(e.pid);
    bpf.mapUpdate(mapFd, key, value);
  }
  for (const id of plan.remove) {
    const key = Buffer.alloc(8);
    key.writeBigUInt64LE(id);
    bpf.mapDelete(mapFd, key);
  }
  return plan;
}

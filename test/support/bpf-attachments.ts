/**
 * What a lab node has attached to its cgroup, as the tests read it with bpftool. The capture's
 * programs are attached through pinned links that a restarted or upgraded agent adopts; the
 * splice's sockops program (bpf/weft_splice.c) is attached through a link each agent process holds
 * and takes with it (docs/splice.md), so it is counted apart.
 */
import { execFileSync } from 'node:child_process';
import { cgroupId } from '../../agent/sandbox/cgroup';

export function bpftoolJson(args: string[]): Array<Record<string, unknown>> {
  return JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8' }) || '[]');
}

/** The splice's sockops program (bpftool names it in full from its BTF; the kernel keeps 15 characters). */
const isSpliceSockops = (name: unknown): boolean => typeof name === 'string' && name.startsWith('weft_splice_soc');

/** The links on `cgroupPath` (its own, not its descendants'), split into the capture's and the splice's. */
export function cgroupLinks(cgroupPath: string): { capture: Array<Record<string, unknown>>; splice: Array<Record<string, unknown>> } {
  const root = String(cgroupId(cgroupPath));
  const splicePrograms = new Set(bpftoolJson(['prog', 'show']).filter((p) => isSpliceSockops(p.name)).map((p) => Number(p.id)));
  const links = bpftoolJson(['link', 'show']).filter((l) => l.cgroup_id !== undefined && String(l.cgroup_id) === root);
  return { capture: links.filter((l) => !splicePrograms.has(Number(l.prog_id))), splice: links.filter((l) => splicePrograms.has(Number(l.prog_id))) };
}

/** Programs attached to `cgroupPath` per attach type, the splice's sockops program left out. */
export function captureProgramsPerType(cgroupPath: string): Record<string, number> {
  const perType = new Map<string, number>();
  for (const p of bpftoolJson(['cgroup', 'show', cgroupPath])) {
    if (isSpliceSockops(p.name)) continue;
    perType.set(String(p.attach_type), (perType.get(String(p.attach_type)) ?? 0) + 1);
  }
  return Object.fromEntries([...perType].sort());
}

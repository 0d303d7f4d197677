/**
 * Where the kubelet put a pod's cgroup, found from the pod's UID: what the agent enrolls in
 * Kubernetes mode, where pods carry no `weft.dev/cgroup` annotation.
 *
 * The kubelet names the pod cgroup after the UID, under a `kubepods` tree whose spelling depends
 * on its cgroup driver and on the pod's QoS class:
 *
 *   systemd   kubepods.slice/kubepods-pod<uid_>.slice                                      Guaranteed
 *             kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice    Burstable
 *             kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_>.slice  BestEffort
 *   cgroupfs  kubepods/pod<uid>, kubepods/burstable/pod<uid>, kubepods/besteffort/pod<uid>
 *
 * (`<uid_>`: the UID with `-` written `_`, because `-` separates systemd slice levels.) With
 * `--cgroup-root /foo.slice` the systemd tree's names carry the root as a prefix
 * (`foo.slice/foo-kubepods.slice/foo-kubepods-burstable.slice/...`, as kind does with `kubelet`);
 * with cgroupfs the tree just moves (`foo/kubepods/...`). When the agent sees the host's cgroupfs
 * from a container, or the kubelet itself runs in one (kind), the tree sits a few levels down. So
 * the tree is found by name, searching a few levels below a root, not at one fixed path.
 *
 * The pure part (names, candidates, choosing) is tested without a filesystem; the class at the end
 * is the only part that reads cgroupfs. Container runtimes put each container in a child of the
 * pod cgroup (`cri-containerd-<id>.scope`, `crio-<id>.scope`, `<id>`): the socket programs match
 * those through the enrolled ancestor (bpf/weft_sock.c), so only the pod level is resolved here.
 */
import { readdirSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { isPodUid } from '../config/pod-uid';
import type { CgroupLookup } from '../state/enrollment';

export type CgroupDriver = 'systemd' | 'cgroupfs';
export type QosClass = 'Guaranteed' | 'Burstable' | 'BestEffort';

/** The kubelet's top pod cgroup, as found under the search root. */
export interface KubepodsTree {
  path: string;
  driver: CgroupDriver;
  /** systemd: the unit-name prefix every level repeats, `kubepods` or `<cgroup-root>-kubepods`. */
  unitPrefix: string;
}

export interface PodCgroupCandidate {
  path: string;
  driver: CgroupDriver;
  qos: QosClass;
}

/** What the node found for a pod UID (a CgroupLookup, with where it came from when found). */
export type PodCgroupResolution =
  | { kind: 'found'; path: string; driver: CgroupDriver; qos: QosClass }
  | { kind: 'absent'; reason: string }
  | { kind: 'invalid'; reason: string };

/** systemd escapes `-` in a slice's own name as `_`, because `-` separates its parent levels. */
export function systemdUid(uid: string): string {
  return uid.replaceAll('-', '_');
}

/** `kubepods` (cgroupfs), `kubepods.slice` or `<prefix>-kubepods.slice` (systemd); anything else: undefined. */
export function kubepodsTreeOf(path: string): KubepodsTree | undefined {
  const name = posix.basename(path);
  if (name === 'kubepods') return { path, driver: 'cgroupfs', unitPrefix: 'kubepods' };
  const m = /^((?:[^/]+-)?kubepods)\.slice$/.exec(name);
  return m ? { path, driver: 'systemd', unitPrefix: m[1]! } : undefined;
}

/** Where the kubelet would put the pod with this UID in `tree`, one path per QoS class. */
export function podCgroupCandidates(tree: KubepodsTree, uid: string): PodCgroupCandidate[] {
  const { path, driver } = tree;
  if (driver === 'cgroupfs') {
    return [
      { path: posix.join(path, `pod${uid}`), driver, qos: 'Guaranteed' },
      { path: posix.join(path, 'burstable', `pod${uid}`), driver, qos: 'Burstable' },
      { path: posix.join(path, 'besteffort', `pod${uid}`), driver, qos: 'BestEffort' },
    ];
  }
  const p = tree.unitPrefix;
  const u = systemdUid(uid);
  return [
    { path: posix.join(path, `${p}-pod${u}.slice`), driver, qos: 'Guaranteed' },
    { path: posix.join(path, `${p}-burstable.slice`, `${p}-burstable-pod${u}.slice`), driver, qos: 'Burstable' },
    { path: posix.join(path, `${p}-besteffort.slice`, `${p}-besteffort-pod${u}.slice`), driver, qos: 'BestEffort' },
  ];
}

/**
 * The pod cgroup for `uid` among `trees`, given which paths are directories. Exactly one match is
 * the answer; none means not there yet (the kubelet creates it shortly after the API shows the
 * pod); two or more is refused rather than guessed, since enrolling the wrong one would capture
 * another workload's traffic under this pod's identity.
 */
export function resolvePodCgroup(uid: string, trees: KubepodsTree[], isDirectory: (path: string) => boolean): PodCgroupResolution {
  if (!isPodUid(uid)) return { kind: 'invalid', reason: `"${uid}" is not a pod UID the kubelet names cgroups after` };
  if (trees.length === 0) return { kind: 'absent', reason: 'no kubelet cgroup tree (kubepods, kubepods.slice) found' };
  const found = trees.flatMap((t) => podCgroupCandidates(t, uid)).filter((c) => isDirectory(c.path));
  if (found.length === 1) return { kind: 'found', ...found[0]! };
  if (found.length > 1) {
    return { kind: 'invalid', reason: `pod UID ${uid} matches ${found.length} cgroups (${found.map((c) => c.path).join(', ')}); ` +
      'refusing to guess: point --kubepods-cgroup at the kubelet\'s tree' };
  }
  return { kind: 'absent', reason: `no cgroup for pod UID ${uid} yet under ${trees.map((t) => t.path).join(', ')}` };
}

/** How deep below the search root a kubepods tree may sit (kind: system.slice/docker-<id>.scope/kubelet.slice/kubelet-kubepods.slice). */
export const MAX_TREE_DEPTH = 4;
/** At most this many directories are read per search, so a huge host tree cannot stall the agent. */
const MAX_DIRS_READ = 20_000;

/**
 * The kubepods trees at or below `searchRoot`, breadth first, at most `maxDepth` levels down.
 * A tree is not searched inside (its pods are not trees). Unreadable directories are skipped.
 */
export function findKubepodsTrees(searchRoot: string, maxDepth = MAX_TREE_DEPTH): KubepodsTree[] {
  const trees: KubepodsTree[] = [];
  let level = [searchRoot];
  let read = 0;
  for (let depth = 0; depth <= maxDepth && level.length > 0; depth++) {
    const next: string[] = [];
    for (const dir of level) {
      const tree = kubepodsTreeOf(dir);
      if (tree) { trees.push(tree); continue; }
      if (depth === maxDepth || read >= MAX_DIRS_READ) continue;
      read++;
      try {
        for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) next.push(posix.join(dir, e.name));
      } catch { /* gone meanwhile, or not ours to read */ }
    }
    level = next;
  }
  return trees;
}

function isDirectory(path: string): boolean {
  try { return statSync(path).isDirectory(); } catch { return false; }
}

/** While a pod's cgroup is missing, the trees are searched for again at most this often. */
const RESEARCH_MS = 5_000;

/**
 * Resolves pod UIDs on this node. The kubepods trees are searched for once and remembered; while
 * some UID is not found, the search is repeated at most every 5 s (a kubelet started after the
 * agent, or a tree elsewhere than expected), so a pending pod costs a few stat calls per retry.
 */
export class PodCgroupResolver {
  private trees: KubepodsTree[] | undefined;
  private searchedAt = 0;

  constructor(readonly searchRoot: string, private readonly now: () => number = Date.now) {}

  resolve(uid: string): PodCgroupResolution {
    if (this.trees === undefined) this.search();
    let r = resolvePodCgroup(uid, this.trees!, isDirectory);
    if (r.kind === 'absent' && this.now() - this.searchedAt >= RESEARCH_MS) {
      this.search();
      r = resolvePodCgroup(uid, this.trees!, isDirectory);
    }
    if (r.kind === 'absent' && this.trees!.length === 0) return { kind: 'absent', reason: `${r.reason} under ${this.searchRoot}` };
    return r;
  }

  /** For the enrollment decision: one lookup per UID. */
  resolveAll(uids: Iterable<string>): Map<string, CgroupLookup> {
    return new Map([...new Set(uids)].map((uid) => [uid, this.resolve(uid)]));
  }

  /** The trees found by the last search (for the admin API). */
  knownTrees(): KubepodsTree[] {
    return this.trees ?? [];
  }

  private search(): void {
    this.trees = findKubepodsTrees(this.searchRoot);
    this.searchedAt = this.now();
  }
}

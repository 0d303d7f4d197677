import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The cgroup v2 mount point: at the top on pure v2 hosts, beside the v1 controllers on hybrid ones. */
export function cgroup2Mount(mounts = readFileSync('/proc/self/mounts', 'utf8')): string {
  for (const line of mounts.split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (fsType === 'cgroup2' && mountPoint) return mountPoint;
  }
  throw new Error('no cgroup2 filesystem is mounted (see /proc/self/mounts): Weft needs cgroup v2');
}

/** The kernel's cgroup id is the inode number of the cgroup's directory in cgroupfs. */
export function cgroupId(path: string): bigint {
  return statSync(path, { bigint: true }).ino;
}

/** The absolute path of this process's cgroup v2 directory. */
export function ownCgroupPath(procCgroup = readFileSync('/proc/self/cgroup', 'utf8'), mount = cgroup2Mount()): string {
  const line = procCgroup.split('\n').find((l) => l.startsWith('0::'));
  if (!line) throw new Error('this process has no cgroup v2 membership (no "0::" line in /proc/self/cgroup)');
  return join(mount, line.slice(3));
}

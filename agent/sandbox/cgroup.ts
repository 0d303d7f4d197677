// cgroup v2 directories for labs: where the hierarchy is mounted, ids, and teardown.
import * as fs from 'node:fs';
import * as path from 'node:path';

let root: string | undefined;

/** The cgroup2 mount point (hybrid hosts mount it beside the v1 controllers, pure v2 hosts at the top). */
export function cgroup2Root(): string {
  if (root !== undefined) return root;
  for (const line of fs.readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mountPoint, fsType] = line.split(' ');
    if (fsType === 'cgroup2' && mountPoint) return (root = mountPoint.replace(/\\040/g, ' '));
  }
  throw new Error('no cgroup2 mount in /proc/self/mounts: the lab needs the unified hierarchy');
}

/** The kernel's cgroup id is the inode number of the cgroup's directory. */
export function cgroupId(dir: string): bigint {
  return fs.statSync(dir, { bigint: true }).ino;
}

function populated(dir: string): boolean {
  return /^populated 1$/m.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8'));
}

/** Directories of the tree, deepest first. */
function subtree(dir: string): string[] {
  const children = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => subtree(path.join(dir, e.name)));
  return [...children, dir];
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Kills every process left in the tree (cgroup.kill), waits (bounded) until it is empty and
 * removes it deepest first. Synchronous so exit handlers can use it. Returns what went wrong.
 */
export function destroyCgroupTree(dir: string, opts: { kill: boolean; timeoutMs?: number }): string[] {
  if (!fs.existsSync(dir)) return [];
  if (!opts.kill && populated(dir)) return [];
  if (opts.kill) fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1');
  const deadline = Date.now() + (opts.timeoutMs ?? 3_000);
  while (populated(dir) && Date.now() < deadline) Atomics.wait(pause, 0, 0, 20);
  const errors: string[] = [];
  for (const d of subtree(dir)) {
    try {
      fs.rmdirSync(d);
    } catch (err) {
      errors.push(`rmdir ${d}: ${(err as Error).message}`);
    }
  }
  return errors;
}

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';

export const BPFFS = '/sys/fs/bpf';

/** Mounts the BPF filesystem at /sys/fs/bpf when the host has not (pins need it). */
export function ensureBpffs(): void {
  const mounted = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => { const [, mp, fs] = l.split(' '); return mp === BPFFS && fs === 'bpf'; });
  if (mounted) return;
  mkdirSync(BPFFS, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS], { stdio: 'pipe' });
  } catch (e) {
    throw new Error(`${BPFFS} is not a BPF filesystem and mounting one failed (${(e as Error).message.trim()}); ` +
      'Weft pins its maps and links there so redirection survives agent restarts');
  }
}

export function pinRootFor(node: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(node)) throw new Error(`node name ${JSON.stringify(node)} cannot name a pin directory`);
  return `${BPFFS}/weft/${node}`;
}

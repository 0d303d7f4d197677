// Network namespaces by name (iproute2's /run/netns) and running things inside them.
import * as fs from 'node:fs';
import { runOk, runSyncChecked } from './run';

const NETNS_DIR = '/run/netns';

export function listNetns(): string[] {
  return fs.existsSync(NETNS_DIR) ? fs.readdirSync(NETNS_DIR) : [];
}

export async function addNetns(name: string): Promise<void> {
  await runOk('ip', ['netns', 'add', name]);
}

export function deleteNetnsSync(name: string): string | undefined {
  return runSyncChecked('ip', ['netns', 'del', name]);
}

/** Runs iproute2 commands (one per line, without the leading `ip`) inside `ns`, stopping at the first error. */
export async function ipBatch(ns: string, lines: string[]): Promise<void> {
  await runOk('ip', ['-n', ns, '-batch', '-'], { input: lines.join('\n') + '\n' });
}

export async function sysctl(ns: string, settings: Record<string, string | number>): Promise<void> {
  const args = Object.entries(settings).map(([k, v]) => `${k}=${v}`);
  await runOk('nsenter', [`--net=${NETNS_DIR}/${ns}`, 'sysctl', '-qw', ...args]);
}

/**
 * argv that runs `cmd args` inside the netns and the cgroup from its first instruction: the
 * shell moves itself into the cgroup, then nsenter enters the netns and execs the command.
 * nsenter (unlike `ip netns exec`) leaves the mount namespace alone, so /sys/fs/cgroup and
 * /sys/fs/bpf stay visible to agents started this way.
 */
export function inNetnsAndCgroup(ns: string, cgroupDir: string, cmd: string, args: string[]): [string, string[]] {
  const script = 'cg=$1 ns=$2; shift 2; echo $$ > "$cg/cgroup.procs" && exec nsenter --net="$ns" -- "$@"';
  return ['sh', ['-c', script, 'weft-lab', cgroupDir, `${NETNS_DIR}/${ns}`, cmd, ...args]];
}

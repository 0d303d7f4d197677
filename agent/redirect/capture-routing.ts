/**
 * The policy routing that makes inbound capture deliver locally. bpf/weft_ingress.c hands a
 * captured packet to a proxy socket (bpf_sk_assign) and sets CAPTURE.mark; a rule sends marked
 * packets to CAPTURE.table, whose only routes are `local 0.0.0.0/0 dev lo` and `local ::/0 dev lo`,
 * so the kernel delivers them on this node instead of forwarding them to the pod (a forwarded
 * packet that carries a socket is dropped).
 *
 * The numbers, chosen to stay clear of the other dataplanes on a Kubernetes node:
 *   mark 0x2000/0x2000  kube-proxy uses 0x4000 and 0x8000, Cilium 0x0f00 and the upper 16 bits,
 *                       Calico the upper 16 bits, Istio 0x539 (TPROXY) and 0x111/0x222 (ambient)
 *   table 15006         Istio uses 133 and 100-102, Cilium 2004 and 2005, kube-router 77-79
 *   rule priority 90    ahead of the main table (32766) and of CNI rules that route pod addresses
 *                       from pref 100 on (Istio ambient 100-103, AWS VPC CNI 512+), behind the
 *                       local table (0) and Cilium's 9/10
 *
 * Rules and routes live in a network namespace; the namespace's inode is recorded in the pinned
 * weft_capture_route map so `weft uninstall`, run from anywhere, removes them where they are.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';

/** The inbound plaintext capture port (DESIGN.md); the node proxy's transparent listener. */
export const INBOUND_PLAINTEXT_PORT = 15006;

export const CAPTURE = { mark: 0x2000, table: 15006, priority: 90 } as const;

export interface CaptureRoute { netnsIno: bigint; mark: number; table: number; priority: number }

/** The inode of this process's network namespace: what the route record points at. */
export function ownNetnsIno(): bigint {
  return statSync('/proc/self/ns/net', { bigint: true }).ino;
}

const hex = (n: number) => `0x${n.toString(16)}`;

/** `ip` argv (without `ip`) for the rule and both routes, per family. */
export function routingCommands(r: Pick<CaptureRoute, 'mark' | 'table' | 'priority'>, verb: 'add' | 'del'): string[][] {
  const out: string[][] = [];
  for (const [fam, any] of [['-4', '0.0.0.0/0'], ['-6', '::/0']] as const) {
    out.push([fam, 'rule', verb, 'pref', String(r.priority), 'fwmark', `${hex(r.mark)}/${hex(r.mark)}`, 'lookup', String(r.table)]);
    out.push([fam, 'route', verb === 'add' ? 'replace' : 'del', 'local', any, 'dev', 'lo', 'table', String(r.table)]);
  }
  return out;
}

interface IpRule { priority?: number; fwmark?: string; fwmask?: string; table?: string }

/** Installs the rule (once) and the local routes in this network namespace. Idempotent. */
export function installCaptureRouting(r: Pick<CaptureRoute, 'mark' | 'table' | 'priority'> = CAPTURE): void {
  for (const argv of routingCommands(r, 'add')) {
    if (argv[1] === 'rule') {
      const rules = JSON.parse(execFileSync('ip', ['-j', argv[0]!, 'rule', 'show'], { encoding: 'utf8' }) || '[]') as IpRule[];
      const present = rules.some((x) => x.priority === r.priority && Number(x.fwmark) === r.mark && x.table === String(r.table));
      if (present) continue;
    }
    try {
      execFileSync('ip', argv, { stdio: 'pipe' });
    } catch (e) {
      throw new Error(`inbound capture: 'ip ${argv.join(' ')}' failed (${(e as { stderr?: string }).stderr?.trim() || (e as Error).message}); ` +
        'the agent needs CAP_NET_ADMIN in the node\'s network namespace, and IPv6 enabled for the -6 rule');
    }
  }
}

/**
 * A path to the network namespace with inode `ino`: this process's own, a named one (/run/netns),
 * or one a process lives in; null when none is found (the namespace is gone, and its rules with it).
 */
export function findNetns(ino: bigint): string | null {
  const candidates = ['/proc/self/ns/net'];
  if (existsSync('/run/netns')) candidates.push(...readdirSync('/run/netns').map((n) => `/run/netns/${n}`));
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) candidates.push(`/proc/${pid}/ns/net`);
  for (const path of candidates) {
    try {
      if (statSync(path, { bigint: true }).ino === ino) return path;
    } catch { /* gone meanwhile, or not a namespace */ }
  }
  return null;
}

/**
 * Removes the rule and routes recorded in `r` from the namespace they were made in. Returns what
 * was removed, one line each; entries already gone are skipped.
 */
export function removeCaptureRouting(r: CaptureRoute): string[] {
  const ns = findNetns(r.netnsIno);
  if (ns === null) return [];
  const own = statSync('/proc/self/ns/net', { bigint: true }).ino === r.netnsIno;
  const removed: string[] = [];
  for (const argv of routingCommands(r, 'del')) {
    const [cmd, args] = own ? ['ip', argv] : ['nsenter', [`--net=${ns}`, '--', 'ip', ...argv]];
    for (let i = 0; i < 8; i++) { // a rule added twice by hand is removed as often as it is there
      try {
        execFileSync(cmd, args, { stdio: 'pipe' });
        removed.push(`ip ${argv.join(' ')}${own ? '' : ` (netns ${ns})`}`);
      } catch {
        break;
      }
      if (argv[1] === 'route') break;
    }
  }
  return removed;
}

import { existsSync } from 'node:fs';

/**
 * Why a kernel-level test cannot run here, or null when it can. Tests that need root, BPF or
 * network namespaces skip only for these reasons, and print them loudly.
 */
export function kernelTestBlocker(): string | null {
  if (process.getuid?.() !== 0) return 'SKIPPED: needs root (BPF programs, network namespaces, cgroups)';
  if (!existsSync('/sys/kernel/btf/vmlinux')) return 'SKIPPED: kernel has no BTF (/sys/kernel/btf/vmlinux)';
  if (!existsSync('/usr/sbin/ip') && !existsSync('/sbin/ip') && !existsSync('/usr/bin/ip')) return 'SKIPPED: iproute2 (ip) is not installed';
  return null;
}

export function skipLoudly(t: { skip(msg: string): void }, reason: string): void {
  process.stderr.write(`\n!!! ${reason}\n`);
  t.skip(reason);
}

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Hitless agent upgrades (docs/upgrade.md). Every listener of the node proxy is opened with
 * SO_REUSEPORT, so a successor agent listens on the same ports while its predecessor still runs,
 * and this program is attached to each listener's reuseport group (SO_ATTACH_REUSEPORT_EBPF).
 *
 * Its attach type, BPF_SK_REUSEPORT_SELECT_OR_MIGRATE (section sk_reuseport/migrate), is what
 * matters: with it, a listener that closes does not reset the connections still in its accept
 * queue or half-way through the handshake; the kernel moves them to a live listener of the group
 * (the successor's). Without it (and with net.ipv4.tcp_migrate_req off, the default) they are
 * reset. The program picks nothing itself: SK_PASS without a selection lets the kernel choose a
 * live listener by the flow's hash, for new SYNs and for migrated connections alike. No maps, no
 * pins: each agent loads its own copy, and the group holds the last one attached.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sk_reuseport/migrate")
int weft_reuseport_migrate(struct sk_reuseport_md *ctx)
{
	return SK_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";

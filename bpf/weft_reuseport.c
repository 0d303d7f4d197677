// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Hitless agent upgrades (docs/upgrade.md). Every listener of the node proxy is opened with
 * SO_REUSEPORT, so a successor agent listens on the same ports while its predecessor still runs,
 * and this program is attached to each listener's reuseport group (SO_ATTACH_REUSEPORT_EBPF).
 *
 * Newest wins: each agent puts every listener it opens into weft_listeners (pinned in the node's
 * pin root, so all agents of a node share it) under its port's slot, replacing its predecessor's.
 * New connections go to the listener in the slot: the successor's from the moment it listens (its
 * health port from its start, so the kubelet's probe reaches the agent being probed, not the one
 * being replaced). A listener that closes leaves the map by itself; with no listener in the slot
 * (a port outside the agent's range, or a successor that died) the kernel picks one by hash.
 *
 * Its attach type, BPF_SK_REUSEPORT_SELECT_OR_MIGRATE (section sk_reuseport/migrate), keeps the
 * old listener's queue: when it closes, the connections in its accept queue or half-way through the
 * handshake are moved to the listener this program picks instead of being reset (without it, and
 * with net.ipv4.tcp_migrate_req off, the default, they are reset: test/bench/listener-handover.ts).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define AF_INET6 10
/* the agent's ports (15000-15021) and a little room; two slots per port, IPv4 and IPv6 listeners */
#define WEFT_PORT_BASE 15000
#define WEFT_PORT_SLOTS 64

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, 2 * WEFT_PORT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_listeners SEC(".maps");

SEC("sk_reuseport/migrate")
int weft_reuseport_migrate(struct sk_reuseport_md *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return SK_PASS;
	__u32 port = sk->src_port;
	if (port < WEFT_PORT_BASE || port >= WEFT_PORT_BASE + WEFT_PORT_SLOTS)
		return SK_PASS;
	__u32 slot = ((port - WEFT_PORT_BASE) << 1) | (sk->family == AF_INET6 ? 1 : 0);
	/* no listener in the slot (or not of this group): SK_PASS without a selection, the kernel hashes */
	bpf_sk_select_reuseport(ctx, &weft_listeners, &slot, 0);
	return SK_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Prototype (test/bench/msg-splice.ts, docs/splice.md "sk_msg from the pods' own sockets"): same-node
 * splicing at the sender's sendmsg instead of at the proxy's receive. Not loaded by the agent.
 *
 * A pod's TCP socket is entered in weft_msg_pod_socks when it is established (sockops, keyed by its
 * own 4-tuple). A proxy that relays a connection between two such sockets tells the kernel, per
 * sending pod socket, which of its own sockets carries that pod's bytes on (weft_msg_flow: the
 * proxy's upstream for the client, its accepted socket for the server) and how many of the pod's
 * bytes it has written there so far (weft_msg_relayed). The sk_msg verdict then sends the pod's
 * next message straight out of the proxy's socket (bpf_msg_redirect_hash without BPF_F_INGRESS: the
 * proxy socket's egress, in the sender's own sendmsg, no kernel worker), but only once nothing the
 * pod sent earlier can still be on its way through the proxy: every byte it wrote is acked by the
 * proxy's socket (write_seq == snd_una) and the proxy has written them all on (bytes_acked since
 * the socket was established == relayed). From then on every message of that socket is redirected, so order holds: the older
 * bytes are already in the proxy socket's send queue, the newer ones are appended behind them.
 * FIN and RST still travel the TCP path to the proxy, after every byte sendmsg redirected.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The few fields of the kernel's tcp_sock this reads; offsets come from the kernel's BTF (CO-RE). */
struct tcp_sock {
	__u64 bytes_acked;
	__u32 snd_una;
	__u32 write_seq;
} __attribute__((preserve_access_index));

/* A socket's own 4-tuple: addresses as on the wire, ports in host order. */
struct weft_msg_key {
	__u32 local_ip4;
	__u32 remote_ip4;
	__u16 local_port;
	__u16 remote_port;
};

struct weft_msg_state {
	__u64 redirected; /* bytes this pod socket sent that the verdict redirected */
	__u32 switched;   /* set once the verdict has redirected: it never passes a byte again */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct weft_msg_key);
	__type(value, __u64);
} weft_msg_pod_socks SEC(".maps");

/* The proxy's own sockets, by cookie: the redirect targets. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} weft_msg_proxy_socks SEC(".maps");

/* pod socket -> cookie of the proxy socket its bytes leave by */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct weft_msg_key);
	__type(value, __u64);
} weft_msg_flow SEC(".maps");

/* pod socket -> bytes of it the proxy has written on (the proxy updates it) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct weft_msg_key);
	__type(value, __u64);
} weft_msg_relayed SEC(".maps");

/* pod socket -> what the verdict did (the proxy enters it zeroed and reads it at close) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct weft_msg_key);
	__type(value, struct weft_msg_state);
} weft_msg_state SEC(".maps");

/* pod socket -> its bytes_acked when it was established (whether the SYN counts is the kernel's business) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct weft_msg_key);
	__type(value, __u64);
} weft_msg_base SEC(".maps");

enum { C_ADDED, C_PASSED, C_WAITED, C_SWITCHED, C_REDIRECTED, C_FAILED, C_MAX };
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} weft_msg_counters SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *c = bpf_map_lookup_elem(&weft_msg_counters, &i);
	if (c)
		__sync_fetch_and_add(c, 1);
}

/* remote_port is the socket's dport as stored (network order) shifted into the upper half (little endian). */
static __always_inline __u16 remote_port_of(__u32 remote_port)
{
	return bpf_ntohs((__u16)(remote_port >> 16));
}

SEC("sockops")
int weft_msg_sockops(struct bpf_sock_ops *ops)
{
	if (ops->family != 2 /* AF_INET */)
		return 1;
	if (ops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	struct weft_msg_key k = {
		.local_ip4 = ops->local_ip4,
		.remote_ip4 = ops->remote_ip4,
		.local_port = (__u16)ops->local_port,
		.remote_port = remote_port_of(ops->remote_port),
	};
	__u64 base = ops->bytes_acked;
	bpf_map_update_elem(&weft_msg_base, &k, &base, BPF_ANY);
	if (bpf_sock_hash_update(ops, &weft_msg_pod_socks, &k, BPF_NOEXIST) == 0)
		count(C_ADDED);
	return 1;
}

SEC("sk_msg")
int weft_msg_verdict(struct sk_msg_md *msg)
{
	struct weft_msg_key k = {
		.local_ip4 = msg->local_ip4,
		.remote_ip4 = msg->remote_ip4,
		.local_port = (__u16)msg->local_port,
		.remote_port = remote_port_of(msg->remote_port),
	};
	__u64 *target = bpf_map_lookup_elem(&weft_msg_flow, &k);
	struct weft_msg_state *st = bpf_map_lookup_elem(&weft_msg_state, &k);
	if (!target || !st) {
		count(C_PASSED);
		return SK_PASS;
	}
	if (!st->switched) {
		__u64 *relayed = bpf_map_lookup_elem(&weft_msg_relayed, &k);
		__u64 *base = bpf_map_lookup_elem(&weft_msg_base, &k);
		struct bpf_sock *sk = msg->sk;
		if (!relayed || !base || !sk) {
			count(C_PASSED);
			return SK_PASS;
		}
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
		if (!tp || tp->write_seq != tp->snd_una || tp->bytes_acked - *base != *relayed) {
			count(C_WAITED);
			return SK_PASS;
		}
		st->switched = 1;
		count(C_SWITCHED);
	}
	__u64 size = msg->size;
	__u64 cookie = *target;
	if (bpf_msg_redirect_hash(msg, &weft_msg_proxy_socks, &cookie, 0) != SK_PASS) {
		count(C_FAILED);
		return SK_DROP;
	}
	__sync_fetch_and_add(&st->redirected, size);
	count(C_REDIRECTED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

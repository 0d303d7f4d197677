// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Same-node splicing: once the node proxy has authorized a plain TCP connection between two pods
 * of its node, its two sockets (the client's accepted socket and the upstream to the destination
 * pod) are spliced here, so the bytes no longer cross user space. The stream verdict program runs
 * for each skb that arrives on a socket of weft_splice_active and sends it out of the peer socket
 * (bpf_sk_redirect_hash without BPF_F_INGRESS: the peer's egress), counting the bytes per socket
 * for the access log. FIN and RST stay with the proxy, which sees EOF on the read side and shuts
 * the peer's write side once every redirected byte is in the peer's send queue.
 *
 * Two sockhashes: weft_splice_socks holds every spliced socket as a redirect target and carries no
 * program; weft_splice_active carries the verdict program. A socket enters the second only when its
 * peer is already in the first, so no skb ever meets a missing target (agent/proxy/splice.ts).
 *
 * The pods' side (docs/splice.md, "sk_msg from the pods' own sockets"): a sockops program enters
 * the pods' own sockets in weft_splice_pods (a client socket connected to the proxy's outbound
 * port; a server socket accepted on an address the proxy announced in weft_splice_expect), and an
 * sk_msg verdict on that sockhash sends a pod's message straight out of the proxy socket that
 * carries its bytes on (weft_splice_flows), in the pod's own sendmsg(), once nothing it sent
 * earlier can still be on its way through the proxy: all its bytes acked by the proxy's socket
 * (write_seq == snd_una) and all of them written on by the proxy (bytes_acked since it was
 * established == weft_splice_relayed). Then every later message of that socket is redirected, so
 * the older bytes are ahead of the newer ones in the proxy socket's send queue. FIN and RST still
 * travel the TCP path to the proxy, after every byte sendmsg() redirected.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "weft_splice_maps.h"

/* The fields of the kernel's tcp_sock the sk_msg verdict reads; offsets from the kernel's BTF (CO-RE). */
struct tcp_sock {
	__u64 bytes_acked;
	__u32 snd_una;
	__u32 write_seq;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, WEFT_SPLICE_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u64);
} weft_splice_socks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, WEFT_SPLICE_MAX_SOCKS);
	__type(key, __u64);
	__type(value, __u64);
} weft_splice_active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WEFT_SPLICE_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct weft_splice_peer);
} weft_splice_peers SEC(".maps");

/* The pods' own sockets (sockops enters them), by tuple; the sk_msg verdict is attached here. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, WEFT_SPLICE_MAX_SOCKS);
	__type(key, struct weft_splice_tuple);
	__type(value, __u64);
} weft_splice_pods SEC(".maps");

/* A pod socket's bytes_acked when it was established (whether the SYN counts is the kernel's business). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} weft_splice_base SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WEFT_SPLICE_MAX_SOCKS);
	__type(key, struct weft_splice_tuple);
	__type(value, struct weft_splice_flow);
} weft_splice_flows SEC(".maps");

/* Bytes of a pod socket the proxy has written on so far (the proxy updates it after each write). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WEFT_SPLICE_MAX_SOCKS);
	__type(key, struct weft_splice_tuple);
	__type(value, __u64);
} weft_splice_relayed SEC(".maps");

/* Pod addresses being connected to for a splice: a socket accepted there enters weft_splice_pods (value: users). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct weft_splice_listen);
	__type(value, __u32);
} weft_splice_expect SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct weft_splice_config);
} weft_splice_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WEFT_SPLICE_CTR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} weft_splice_counters SEC(".maps");

/* Keeps enum weft_splice_counter in the object's BTF for the generated layout. */
const volatile enum weft_splice_counter weft_splice_counter_max = WEFT_SPLICE_CTR_MAX;

static __always_inline void add(enum weft_splice_counter c, __u64 n)
{
	__u32 key = c;
	__u64 *v = bpf_map_lookup_elem(&weft_splice_counters, &key);
	if (v)
		__sync_fetch_and_add(v, n);
}

static __always_inline void count(enum weft_splice_counter c)
{
	add(c, 1);
}

SEC("sk_skb/stream_verdict")
int weft_splice_verdict(struct __sk_buff *skb)
{
	/*
	 * A bare FIN reaches the verdict as an empty skb. Redirected, the peer's send of zero bytes
	 * counts as a broken pipe (the peer's psock reports EPIPE and stops sending); passed, it is
	 * the proxy's EOF, which it turns into shutdown(SHUT_WR) on the peer after the bytes.
	 */
	if (skb->len == 0) {
		count(WEFT_SPLICE_PASS_FIN);
		return SK_PASS;
	}
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct weft_splice_peer *peer = bpf_map_lookup_elem(&weft_splice_peers, &cookie);
	if (!peer) {
		count(WEFT_SPLICE_PASS_NO_PEER);
		return SK_PASS;
	}
	__u64 target = peer->peer_cookie;
	__u32 len = skb->len;
	if (bpf_sk_redirect_hash(skb, &weft_splice_socks, &target, 0) != SK_PASS) {
		/* The peer closed: the proxy reads these bytes and finds the peer gone. */
		count(WEFT_SPLICE_PASS_PEER_GONE);
		return SK_PASS;
	}
	__sync_fetch_and_add(&peer->bytes, len);
	count(WEFT_SPLICE_REDIRECTED);
	add(WEFT_SPLICE_REDIRECTED_BYTES, len);
	return SK_PASS;
}

/* remote_port is the socket's dport as stored (network order) in the upper half of the field (little endian). */
static __always_inline __u16 remote_port_of(__u32 remote_port)
{
	return bpf_ntohs((__u16)(remote_port >> 16));
}

/*
 * A dual-stack socket talking IPv4 (::ffff:a.b.c.d at both ends: a server listening on ::) is keyed
 * as the IPv4 socket it is, so the proxy's IPv4 view of the connection finds it.
 */
static __always_inline void unmap_v4(struct weft_splice_tuple *t)
{
	__u32 mapped = bpf_htonl(0x0000ffff);
	if (t->local[0] || t->local[1] || t->local[2] != mapped || t->remote[0] || t->remote[1] || t->remote[2] != mapped)
		return;
	t->family = 2;
	t->local[0] = t->local[3];
	t->remote[0] = t->remote[3];
	t->local[2] = 0;
	t->local[3] = 0;
	t->remote[2] = 0;
	t->remote[3] = 0;
}

/*
 * A socket's own tuple from a context that names its ends as sockops and sk_msg both do (family,
 * local_ip4/6, remote_ip4/6, local_port, remote_port). The contexts are different types, so a macro.
 */
#define TUPLE_OF(t, ctx)                                                     \
	do {                                                                   \
		if ((ctx)->family == 2 /* AF_INET */) {                        \
			(t).family = 2;                                        \
			(t).local[0] = (ctx)->local_ip4;                       \
			(t).remote[0] = (ctx)->remote_ip4;                     \
		} else {                                                       \
			(t).family = 10;                                       \
			for (int i = 0; i < 4; i++) {                          \
				(t).local[i] = (ctx)->local_ip6[i];            \
				(t).remote[i] = (ctx)->remote_ip6[i];          \
			}                                                      \
			unmap_v4(&(t));                                        \
		}                                                              \
		(t).local_port = (__u16)(ctx)->local_port;                     \
		(t).remote_port = remote_port_of((ctx)->remote_port);          \
	} while (0)

SEC("sockops")
int weft_splice_sockops(struct bpf_sock_ops *ops)
{
	if (ops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && ops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	struct weft_splice_tuple t = {};
	if (ops->family != 2 /* AF_INET */ && ops->family != 10 /* AF_INET6 */)
		return 1;
	TUPLE_OF(t, ops);
	if (ops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		/* a client: only a connection captured to one of the proxy's capture ports */
		__u32 zero = 0;
		struct weft_splice_config *c = bpf_map_lookup_elem(&weft_splice_config, &zero);
		if (!c || c->outbound_port == 0)
			return 1;
		if (t.remote_port != c->outbound_port &&
		    (t.remote_port < c->capture_port_base || t.remote_port - c->capture_port_base >= c->capture_port_count))
			return 1;
	} else {
		/* a server: only on an address the proxy is connecting to for a splice */
		struct weft_splice_listen l = { .port = t.local_port, .family = t.family };
		l.addr[0] = t.local[0];
		l.addr[1] = t.local[1];
		l.addr[2] = t.local[2];
		l.addr[3] = t.local[3];
		if (!bpf_map_lookup_elem(&weft_splice_expect, &l))
			return 1;
	}
	struct bpf_sock *sk = ops->sk;
	if (!sk)
		return 1;
	__u64 *base = bpf_sk_storage_get(&weft_splice_base, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!base)
		return 1;
	*base = ops->bytes_acked;
	if (bpf_sock_hash_update(ops, &weft_splice_pods, &t, BPF_NOEXIST) == 0)
		count(WEFT_SPLICE_POD_SOCKETS);
	return 1;
}

SEC("sk_msg")
int weft_splice_msg(struct sk_msg_md *msg)
{
	struct weft_splice_tuple t = {};
	TUPLE_OF(t, msg);
	struct weft_splice_flow *f = bpf_map_lookup_elem(&weft_splice_flows, &t);
	if (!f)
		return SK_PASS;
	if (!f->switched) {
		/*
		 * No count yet: the proxy has written none of this socket's bytes on. A server socket is
		 * armed that way before its first byte (splice.ts armServer), so a download switches at once.
		 */
		__u64 *relayed = bpf_map_lookup_elem(&weft_splice_relayed, &t);
		__u64 none = 0;
		struct bpf_sock *sk = msg->sk;
		if (!sk)
			return SK_PASS;
		if (!relayed)
			relayed = &none;
		__u64 *base = bpf_sk_storage_get(&weft_splice_base, sk, 0, 0);
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
		if (!base || !tp || tp->write_seq != tp->snd_una || tp->bytes_acked - *base != *relayed) {
			count(WEFT_SPLICE_MSG_WAITED);
			return SK_PASS;
		}
		f->switched = 1;
		count(WEFT_SPLICE_MSG_SWITCHED);
	}
	__u64 size = msg->size;
	__u64 target = f->target_cookie;
	if (bpf_msg_redirect_hash(msg, &weft_splice_socks, &target, 0) != SK_PASS) {
		/* The proxy's socket is gone: down the pod's own TCP path, to a proxy socket that is closing (a reset follows). */
		count(WEFT_SPLICE_MSG_TARGET_GONE);
		return SK_PASS;
	}
	__sync_fetch_and_add(&f->redirected, size);
	count(WEFT_SPLICE_MSG_REDIRECTED);
	add(WEFT_SPLICE_MSG_REDIRECTED_BYTES, size);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

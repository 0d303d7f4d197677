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
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "weft_splice_maps.h"

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

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WEFT_SPLICE_CTR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} weft_splice_counters SEC(".maps");

/* Keeps enum weft_splice_counter in the object's BTF for the generated layout. */
const volatile enum weft_splice_counter weft_splice_counter_max = WEFT_SPLICE_CTR_MAX;

static __always_inline void count(enum weft_splice_counter c)
{
	__u32 key = c;
	__u64 *v = bpf_map_lookup_elem(&weft_splice_counters, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
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
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

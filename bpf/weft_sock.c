// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket-level outbound capture for enrolled pods (attached to the node's cgroup subtree).
 *
 *   connect4/6   an enrolled pod's TCP connect goes to the node proxy (a capture port) instead; the original
 *                destination and the pod's cgroup id are recorded under the socket's cookie
 *   sockops      once the connection is established, the record is re-keyed by the 4-tuple the
 *                proxy sees on accept; both records are dropped when the socket closes
 *   getsockopt   SO_ORIGINAL_DST on the proxy's accepted socket answers the original destination
 *   getpeername  the client keeps seeing the peer it asked for
 *   sk_lookup    a SYN to a capture port goes to the outbound port's listeners (weft_capture_lookup)
 *
 * A socket is captured only if the task that connects is in a cgroup listed in weft_pods or below
 * one: a pod is enrolled by its pod-level cgroup, and in Kubernetes its processes run in container
 * child cgroups under it (kubepods-...-pod<uid>.slice/cri-containerd-<id>.scope). The node proxy's
 * own cgroup is never captured, even below an enrolled cgroup.
 */
#include "weft_common.h"

#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define SOL_IP 0
#define SOL_IPV6 41
#define SO_ORIGINAL_DST 80
/* Deepest cgroup level searched for an enrolled ancestor (kubelet pods sit at 3 to 6). */
#define WEFT_MAX_CGROUP_DEPTH 16

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WEFT_MAX_PODS);
	__type(key, __u64);
	__type(value, struct weft_pod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, WEFT_MAX_FLOWS);
	__type(key, __u64);
	__type(value, struct weft_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_sk_orig SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, WEFT_MAX_FLOWS);
	__type(key, struct weft_flow);
	__type(value, struct weft_orig);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_flow_orig SEC(".maps");

/*
 * The enrolled cgroup the connecting task belongs to: its own cgroup if enrolled, else the deepest
 * enrolled ancestor; 0 when none is. Why ancestors: the agent enrolls the pod-level cgroup, which
 * the kubelet creates before any container, so every container of the pod (init, restarted,
 * ephemeral, exec'd processes) is captured from its first connect. Enrolling each container cgroup
 * instead would leave a window after every container start in which the pod connects un-meshed.
 * The id recorded is the enrolled (pod) cgroup's, which is what the agent attributes by.
 * Cost for a task that is not enrolled: one lookup per level of its cgroup path (about 5 in
 * Kubernetes), bounded by WEFT_MAX_CGROUP_DEPTH; level 0 (the hierarchy root) is never a pod.
 */
static __always_inline __u64 enrolled_cgroup(void)
{
	__u64 self = bpf_get_current_cgroup_id();
	if (bpf_map_lookup_elem(&weft_pods, &self))
		return self;
	__u64 found = 0;
	for (int level = 1; level < WEFT_MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);
		if (id == 0 || id == self)
			break; /* past the task's own level */
		if (bpf_map_lookup_elem(&weft_pods, &id))
			found = id;
	}
	if (found) {
		/* the node proxy must never capture itself, even if an ancestor of its cgroup is enrolled */
		struct weft_config *cfg = config();
		if (is_proxy_cgroup(cfg, self))
			return 0;
	}
	return found;
}

static __always_inline int captured_tcp(struct bpf_sock_addr *ctx, __u64 *cgroup_id)
{
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 0;
	*cgroup_id = enrolled_cgroup();
	return *cgroup_id != 0;
}

/* The node proxy's port this connect goes to, in network byte order (weft_config, capture ports). */
static __always_inline __u32 capture_port(const struct weft_config *cfg)
{
	__u16 count = cfg->capture_port_count;
	if (!count)
		return bpf_htons(cfg->outbound_port);
	return bpf_htons((__u16)(cfg->capture_port_base + bpf_get_prandom_u32() % count));
}

static __always_inline int record(struct bpf_sock_addr *ctx, struct weft_orig *orig)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	return bpf_map_update_elem(&weft_sk_orig, &cookie, orig, BPF_ANY);
}

SEC("cgroup/connect4")
int weft_connect4(struct bpf_sock_addr *ctx)
{
	__u64 cgroup_id;
	if (!captured_tcp(ctx, &cgroup_id))
		return WEFT_SOCK_ALLOW;
	struct weft_config *cfg = config();
	if (!cfg || !cfg->proxy_ip4)
		return WEFT_SOCK_REJECT; /* enrolled but no proxy configured: fail closed */

	__u32 dst = ctx->user_ip4;
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	if ((bpf_ntohl(dst) >> 24) == 127)
		return WEFT_SOCK_ALLOW; /* the pod's own loopback never leaves the pod */

	struct weft_orig orig = { .port = port, .family = AF_INET, .cgroup_id = cgroup_id };
	orig.addr[0] = dst;
	if (record(ctx, &orig))
		return WEFT_SOCK_REJECT;
	ctx->user_ip4 = cfg->proxy_ip4;
	ctx->user_port = capture_port(cfg);
	count(WEFT_CTR_REDIRECT4);
	return WEFT_SOCK_ALLOW;
}

SEC("cgroup/connect6")
int weft_connect6(struct bpf_sock_addr *ctx)
{
	__u64 cgroup_id;
	if (!captured_tcp(ctx, &cgroup_id))
		return WEFT_SOCK_ALLOW;
	struct weft_config *cfg = config();
	if (!cfg)
		return WEFT_SOCK_REJECT;

	__u32 a0 = ctx->user_ip6[0], a1 = ctx->user_ip6[1], a2 = ctx->user_ip6[2], a3 = ctx->user_ip6[3];
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	if (!a0 && !a1 && !a2 && a3 == bpf_htonl(1))
		return WEFT_SOCK_ALLOW; /* ::1 */

	struct weft_orig orig = { .port = port, .cgroup_id = cgroup_id };
	if (!a0 && !a1 && a2 == bpf_htonl(0xffff)) {
		/* IPv4-mapped destination on a dual-stack socket: capture as IPv4 */
		if ((bpf_ntohl(a3) >> 24) == 127)
			return WEFT_SOCK_ALLOW;
		if (!cfg->proxy_ip4)
			return WEFT_SOCK_REJECT;
		orig.family = AF_INET;
		orig.addr[0] = a3;
		if (record(ctx, &orig))
			return WEFT_SOCK_REJECT;
		ctx->user_ip6[3] = cfg->proxy_ip4;
		ctx->user_port = capture_port(cfg);
		count(WEFT_CTR_REDIRECT4);
		return WEFT_SOCK_ALLOW;
	}

	if (!(cfg->proxy_ip6[0] | cfg->proxy_ip6[1] | cfg->proxy_ip6[2] | cfg->proxy_ip6[3])) {
		count(WEFT_CTR_REFUSED_NO_PROXY6);
		return WEFT_SOCK_REJECT;
	}
	orig.family = AF_INET6;
	orig.addr[0] = a0;
	orig.addr[1] = a1;
	orig.addr[2] = a2;
	orig.addr[3] = a3;
	if (record(ctx, &orig))
		return WEFT_SOCK_REJECT;
	ctx->user_ip6[0] = cfg->proxy_ip6[0];
	ctx->user_ip6[1] = cfg->proxy_ip6[1];
	ctx->user_ip6[2] = cfg->proxy_ip6[2];
	ctx->user_ip6[3] = cfg->proxy_ip6[3];
	ctx->user_port = capture_port(cfg);
	count(WEFT_CTR_REDIRECT6);
	return WEFT_SOCK_ALLOW;
}

/*
 * The 4-tuple of the client's socket (client -> proxy), in weft_flow form. A dual-stack socket
 * that was captured as IPv4 is keyed as the IPv4 connection the proxy sees.
 */
static __always_inline void flow_of(struct bpf_sock_ops *skops, const struct weft_orig *orig, struct weft_flow *k)
{
	k->family = skops->family;
	k->sport = skops->local_port;
	k->dport = bpf_ntohl(skops->remote_port);
	if (skops->family == AF_INET) {
		k->saddr[0] = skops->local_ip4;
		k->daddr[0] = skops->remote_ip4;
	} else {
		k->saddr[0] = skops->local_ip6[0];
		k->saddr[1] = skops->local_ip6[1];
		k->saddr[2] = skops->local_ip6[2];
		k->saddr[3] = skops->local_ip6[3];
		k->daddr[0] = skops->remote_ip6[0];
		k->daddr[1] = skops->remote_ip6[1];
		k->daddr[2] = skops->remote_ip6[2];
		k->daddr[3] = skops->remote_ip6[3];
		if (orig->family == AF_INET) {
			k->family = AF_INET;
			k->saddr[0] = k->saddr[3];
			k->daddr[0] = k->daddr[3];
			k->saddr[1] = k->saddr[2] = k->saddr[3] = 0;
			k->daddr[1] = k->daddr[2] = k->daddr[3] = 0;
		}
	}
}

SEC("sockops")
int weft_sockops(struct bpf_sock_ops *skops)
{
	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		__u64 cookie = bpf_get_socket_cookie(skops);
		struct weft_orig *orig = bpf_map_lookup_elem(&weft_sk_orig, &cookie);
		if (!orig)
			return 1; /* not a captured socket */
		struct weft_flow k = {};
		flow_of(skops, orig, &k);
		if (bpf_map_update_elem(&weft_flow_orig, &k, orig, BPF_ANY) == 0)
			count(WEFT_CTR_FLOW_RECORDED);
		bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
	} else if (skops->op == BPF_SOCK_OPS_STATE_CB && skops->args[1] == BPF_TCP_CLOSE) {
		__u64 cookie = bpf_get_socket_cookie(skops);
		struct weft_orig *orig = bpf_map_lookup_elem(&weft_sk_orig, &cookie);
		if (!orig)
			return 1;
		struct weft_flow k = {};
		flow_of(skops, orig, &k);
		bpf_map_delete_elem(&weft_flow_orig, &k);
		bpf_map_delete_elem(&weft_sk_orig, &cookie);
	}
	return 1;
}

/* SO_ORIGINAL_DST on the proxy's accepted socket: local = proxy, remote = the captured client. */
SEC("cgroup/getsockopt")
int weft_getsockopt(struct bpf_sockopt *ctx)
{
	if (ctx->optname != SO_ORIGINAL_DST || (ctx->level != SOL_IP && ctx->level != SOL_IPV6))
		return 1;
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	struct weft_flow k = {};
	k.family = sk->family;
	k.sport = bpf_ntohs(sk->dst_port);
	k.dport = sk->src_port;
	if (sk->family == AF_INET) {
		k.saddr[0] = sk->dst_ip4;
		k.daddr[0] = sk->src_ip4;
	} else {
		k.saddr[0] = sk->dst_ip6[0];
		k.saddr[1] = sk->dst_ip6[1];
		k.saddr[2] = sk->dst_ip6[2];
		k.saddr[3] = sk->dst_ip6[3];
		k.daddr[0] = sk->src_ip6[0];
		k.daddr[1] = sk->src_ip6[1];
		k.daddr[2] = sk->src_ip6[2];
		k.daddr[3] = sk->src_ip6[3];
	}
	struct weft_orig *orig = bpf_map_lookup_elem(&weft_flow_orig, &k);
	if (!orig)
		return 1;

	if (ctx->level == SOL_IP && orig->family == AF_INET) {
		__u8 *p = ctx->optval;
		if (p + 16 > (__u8 *)ctx->optval_end)
			return 1;
		__builtin_memset(p, 0, 16);
		*(__u16 *)p = AF_INET;
		*(__u16 *)(p + 2) = bpf_htons(orig->port);
		*(__u32 *)(p + 4) = orig->addr[0];
		ctx->optlen = 16;
	} else if (ctx->level == SOL_IPV6 && orig->family == AF_INET6) {
		__u8 *p = ctx->optval;
		if (p + 28 > (__u8 *)ctx->optval_end)
			return 1;
		__builtin_memset(p, 0, 28);
		*(__u16 *)p = AF_INET6;
		*(__u16 *)(p + 2) = bpf_htons(orig->port);
		*(__u32 *)(p + 8) = orig->addr[0];
		*(__u32 *)(p + 12) = orig->addr[1];
		*(__u32 *)(p + 16) = orig->addr[2];
		*(__u32 *)(p + 20) = orig->addr[3];
		ctx->optlen = 28;
	} else {
		return 1;
	}
	ctx->retval = 0;
	count(WEFT_CTR_ORIG_DST_ANSWERED);
	return 1;
}

SEC("cgroup/getpeername4")
int weft_getpeername4(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct weft_orig *orig = bpf_map_lookup_elem(&weft_sk_orig, &cookie);
	if (orig && orig->family == AF_INET) {
		ctx->user_ip4 = orig->addr[0];
		ctx->user_port = bpf_htons(orig->port);
	}
	return WEFT_SOCK_ALLOW;
}

SEC("cgroup/getpeername6")
int weft_getpeername6(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct weft_orig *orig = bpf_map_lookup_elem(&weft_sk_orig, &cookie);
	if (!orig)
		return WEFT_SOCK_ALLOW;
	if (orig->family == AF_INET) {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = orig->addr[0];
	} else {
		ctx->user_ip6[0] = orig->addr[0];
		ctx->user_ip6[1] = orig->addr[1];
		ctx->user_ip6[2] = orig->addr[2];
		ctx->user_ip6[3] = orig->addr[3];
	}
	ctx->user_port = bpf_htons(orig->port);
	return WEFT_SOCK_ALLOW;
}

/*
 * The capture ports (docs/capture-ports.md): no socket listens on them. A SYN to the node proxy's
 * address on one of them is handed to the anchor of its family, a listener in the outbound port's
 * reuseport group that the agent puts in weft_capture_anchor (key 0 IPv4, 1 IPv6). The kernel then
 * picks within that group as for 15001 itself (bpf/weft_reuseport.c: the newest agent's listener),
 * and the accepted socket keeps the capture port as its local port. No anchor (no agent): nothing
 * is assigned and the SYN is refused, as at 15001. Why an anchor and not the listener itself: a
 * socket can be in a REUSEPORT_SOCKARRAY (weft_listeners) or in a SOCKMAP, not both.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_capture_anchor SEC(".maps");

SEC("sk_lookup")
int weft_capture_lookup(struct bpf_sk_lookup *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	struct weft_config *cfg = config();
	if (!cfg || !cfg->capture_port_count)
		return SK_PASS;
	__u32 port = ctx->local_port;
	if (port < cfg->capture_port_base || port - cfg->capture_port_base >= cfg->capture_port_count)
		return SK_PASS;
	__u32 key;
	if (ctx->family == AF_INET) {
		if (!cfg->proxy_ip4 || ctx->local_ip4 != cfg->proxy_ip4)
			return SK_PASS;
		key = 0;
	} else {
		if (ctx->local_ip6[0] != cfg->proxy_ip6[0] || ctx->local_ip6[1] != cfg->proxy_ip6[1] ||
		    ctx->local_ip6[2] != cfg->proxy_ip6[2] || ctx->local_ip6[3] != cfg->proxy_ip6[3])
			return SK_PASS;
		key = 1;
	}
	struct bpf_sock *sk = bpf_map_lookup_elem(&weft_capture_anchor, &key);
	if (!sk)
		return SK_PASS;
	/* weft_counters is not counted here: a new index would change its pinned size (docs/capture-ports.md) */
	bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	return SK_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";

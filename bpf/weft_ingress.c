// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Inbound plaintext capture, attached (tcx ingress) to the node's uplinks and to every pod's
 * host-side interface. It steers, it does not decide: the node proxy decides what a captured
 * connection may do.
 *
 *   to a captured pod    a TCP segment whose destination is in weft_capture goes to the node
 *                        proxy's socket for its 4-tuple (bpf_skc_lookup_tcp) or, for a SYN, to the
 *                        transparent listener on the inbound plaintext port (15006). No listener
 *                        (agent down): the SYN is dropped, so nothing reaches the pod un-meshed.
 *   from an enrolled pod the pod's reply to a connection the proxy opened from its client's
 *                        address (a transparent upstream socket: a plaintext client's, or a meshed
 *                        source pod's on this node or another) goes to that socket, not to the
 *                        client: found by the reply's 4-tuple (bpf_skc_lookup_tcp). Segments no
 *                        proxy socket holds (the pod's own connections) pass untouched.
 *
 * weft_capture holds every enrolled pod address of this node; a STRICT pod's entry has
 * WEFT_CAPTURE_REPLIES_ONLY: its inbound plaintext is not captured (its tc egress enforcement
 * drops it), only its replies are steered, so source preservation works towards STRICT pods too.
 * A pod that left the mesh while the proxy still held connections with it (its namespace's label
 * turned off) keeps an entry with WEFT_CAPTURE_LINGER until they end: their segments still reach
 * the proxy's sockets both ways, and nothing new is captured.
 *
 * A packet handed to a socket (bpf_sk_assign) also gets the capture mark: an ip rule sends marked
 * packets to a table whose default route is `local ... dev lo`, so the kernel delivers them here
 * instead of forwarding them. Non-TCP traffic and TCP between other addresses pass untouched.
 */
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include "weft_common.h"

#define IPPROTO_TCP 6
#define TCX_PASS TC_ACT_OK
#define TCX_DROP TC_ACT_SHOT
#define LOOKUP_NETNS ((__u64)BPF_F_CURRENT_NETNS)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WEFT_MAX_CAPTURED_IPS);
	__type(key, struct weft_ip);
	__type(value, struct weft_capture);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_capture SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct weft_capture_route);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_capture_route SEC(".maps");

struct packet {
	struct bpf_sock_tuple tuple; /* as carried: saddr/sport is the sender */
	int v6;
	struct weft_ip src;
	struct weft_ip dst;
	int syn;                     /* SYN without ACK: opens a connection */
};

enum parsed { P_OTHER, P_TCP, P_UNPARSED };

static __always_inline enum parsed parse_tcp(struct __sk_buff *skb, __u32 l4_off, struct packet *p)
{
	struct tcphdr th;
	if (bpf_skb_load_bytes(skb, l4_off, &th, sizeof(th)))
		return P_UNPARSED;
	p->syn = th.syn && !th.ack;
	return P_TCP;
}

static __always_inline enum parsed parse(struct __sk_buff *skb, struct packet *p)
{
	__u32 off = sizeof(struct ethhdr);
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
			return P_OTHER;
		if (ip.protocol != IPPROTO_TCP)
			return P_OTHER;
		p->src.family = p->dst.family = AF_INET;
		p->src.addr[0] = ip.saddr;
		p->dst.addr[0] = ip.daddr;
		if (ip.frag_off & bpf_htons(0x1fff | 0x2000)) /* any fragment: the TCP header may be elsewhere */
			return P_UNPARSED;
		__u32 l4 = off + ip.ihl * 4;
		p->tuple.ipv4.saddr = ip.saddr;
		p->tuple.ipv4.daddr = ip.daddr;
		if (bpf_skb_load_bytes(skb, l4, &p->tuple.ipv4.sport, 4))
			return P_UNPARSED;
		return parse_tcp(skb, l4, p);
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return P_OTHER;
		__builtin_memcpy(p->src.addr, &ip6.saddr, 16);
		__builtin_memcpy(p->dst.addr, &ip6.daddr, 16);
		p->src.family = p->dst.family = AF_INET6;
		switch (ip6.nexthdr) {
		case IPPROTO_TCP:
			break;
		case 0: case 43: case 44: case 60: /* extension headers could hide TCP */
			return P_UNPARSED;
		default:
			return P_OTHER;
		}
		__u32 l4 = off + sizeof(ip6);
		__builtin_memcpy(p->tuple.ipv6.saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->tuple.ipv6.daddr, &ip6.daddr, 16);
		if (bpf_skb_load_bytes(skb, l4, &p->tuple.ipv6.sport, 4))
			return P_UNPARSED;
		p->v6 = 1;
		return parse_tcp(skb, l4, p);
	}
	return P_OTHER;
}

/* The verifier wants a constant tuple size per call. */
static __always_inline struct bpf_sock *skc_lookup(struct __sk_buff *skb, struct packet *p)
{
	if (p->v6)
		return bpf_skc_lookup_tcp(skb, &p->tuple, sizeof(p->tuple.ipv6), LOOKUP_NETNS, 0);
	return bpf_skc_lookup_tcp(skb, &p->tuple, sizeof(p->tuple.ipv4), LOOKUP_NETNS, 0);
}

static __always_inline struct bpf_sock *sk_lookup(struct __sk_buff *skb, struct packet *p)
{
	if (p->v6)
		return bpf_sk_lookup_tcp(skb, &p->tuple, sizeof(p->tuple.ipv6), LOOKUP_NETNS, 0);
	return bpf_sk_lookup_tcp(skb, &p->tuple, sizeof(p->tuple.ipv4), LOOKUP_NETNS, 0);
}

/* Hands the packet to `sk` (which it releases) and marks it for local delivery. */
static __always_inline int assign(struct __sk_buff *skb, struct bpf_sock *sk, struct weft_config *cfg, enum weft_counter ok)
{
	long err = bpf_sk_assign(skb, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(WEFT_CTR_CAPTURE_DROP_ASSIGN);
		return TCX_DROP; /* passing it would reach the pod (or the client) around the proxy */
	}
	skb->mark |= cfg->capture_mark;
	count(ok);
	return TCX_PASS;
}

/* A socket of the proxy's for this exact 4-tuple: established, handshaking or time-wait. */
static __always_inline struct bpf_sock *connection_socket(struct __sk_buff *skb, struct packet *p, int accept_time_wait)
{
	struct bpf_sock *sk = skc_lookup(skb, p);
	if (!sk)
		return 0;
	/* the lookup falls back to listeners bound to the port: those are not this connection's */
	if (sk->state == BPF_TCP_LISTEN || (!accept_time_wait && sk->state == BPF_TCP_TIME_WAIT)) {
		bpf_sk_release(sk);
		return 0;
	}
	return sk;
}

static __always_inline int to_captured_pod(struct __sk_buff *skb, struct packet *p, struct weft_config *cfg)
{
	/* a new SYN on the 4-tuple of a time-wait socket opens a new connection: it goes to the listener */
	struct bpf_sock *sk = connection_socket(skb, p, !p->syn);
	if (sk)
		return assign(skb, sk, cfg, WEFT_CTR_CAPTURE_ESTABLISHED);
	if (!p->syn) {
		count(WEFT_CTR_CAPTURE_PASS_NO_SOCKET);
		return TCX_PASS;
	}
	if (p->v6)
		p->tuple.ipv6.dport = bpf_htons(cfg->inbound_plaintext_port);
	else
		p->tuple.ipv4.dport = bpf_htons(cfg->inbound_plaintext_port);
	struct bpf_sock *l = sk_lookup(skb, p);
	if (l && l->state != BPF_TCP_LISTEN) {
		bpf_sk_release(l);
		l = 0;
	}
	if (!l) {
		count(WEFT_CTR_CAPTURE_DROP_NO_LISTENER);
		return TCX_DROP;
	}
	return assign(skb, l, cfg, WEFT_CTR_CAPTURE_LISTENER);
}

static __always_inline int is_node_address(struct packet *p, struct weft_config *cfg)
{
	if (p->dst.family == AF_INET)
		return p->dst.addr[0] == cfg->proxy_ip4;
	return p->dst.addr[0] == cfg->proxy_ip6[0] && p->dst.addr[1] == cfg->proxy_ip6[1] &&
	       p->dst.addr[2] == cfg->proxy_ip6[2] && p->dst.addr[3] == cfg->proxy_ip6[3];
}

static __always_inline int from_enrolled_pod(struct __sk_buff *skb, struct packet *p, struct weft_config *cfg, int accept_time_wait)
{
	if (is_node_address(p, cfg))
		return TCX_PASS; /* delivered locally anyway */
	struct bpf_sock *sk = connection_socket(skb, p, accept_time_wait);
	if (!sk)
		return TCX_PASS; /* not a proxied connection (e.g. one from before capture) */
	return assign(skb, sk, cfg, WEFT_CTR_CAPTURE_REPLY);
}

SEC("tc")
int weft_capture_ingress(struct __sk_buff *skb)
{
	struct packet p = {};
	enum parsed r = parse(skb, &p);
	if (r == P_OTHER)
		return TCX_PASS;
	struct weft_config *cfg = config();
	if (!cfg)
		return TCX_PASS;
	struct weft_capture *to = bpf_map_lookup_elem(&weft_capture, &p.dst);
	if (to && (to->flags & WEFT_CAPTURE_LINGER)) {
		/*
		 * out of the mesh: a connection the proxy still holds stays with it, nothing else is taken;
		 * not a time-wait socket's 4-tuple either: the pod now talks to clients directly, and one may
		 * reuse the 4-tuple of a connection the proxy closed
		 */
		if (r == P_TCP && !p.syn) {
			struct bpf_sock *sk = connection_socket(skb, &p, 0);
			if (sk)
				return assign(skb, sk, cfg, WEFT_CTR_CAPTURE_ESTABLISHED);
		}
	} else if (to && !(to->flags & WEFT_CAPTURE_REPLIES_ONLY)) {
		if (r == P_UNPARSED) {
			count(WEFT_CTR_CAPTURE_DROP_UNPARSED);
			return TCX_DROP;
		}
		return to_captured_pod(skb, &p, cfg);
	}
	struct weft_capture *from = r == P_TCP ? bpf_map_lookup_elem(&weft_capture, &p.src) : 0;
	if (from)
		/* a lingering pod's direct connections may reuse a closed proxy connection's 4-tuple (above) */
		return from_enrolled_pod(skb, &p, cfg, !(from->flags & WEFT_CAPTURE_LINGER));
	return TCX_PASS;
}

/* Keeps enum weft_capture_flag in the object's BTF, where the agent's generated layout reads it from. */
const volatile enum weft_capture_flag weft_capture_flag_anchor = WEFT_CAPTURE_LINGER;

char _license[] SEC("license") = "Dual BSD/GPL";

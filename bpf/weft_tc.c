// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * STRICT inbound enforcement, attached (tcx egress) to a STRICT pod's host-side interface: what
 * leaves the node towards the pod. TCP is admitted when the sending socket belongs to the node
 * proxy's cgroup. From anyone else, a TCP segment that opens a connection (SYN) or carries data is
 * dropped; bare ACK/FIN/RST segments pass, because the kernel sends those for the proxy's
 * time-wait sockets without a full socket attached, and they can neither open a connection nor
 * carry a byte. Segments the program cannot parse (IPv4 fragments, IPv6 extension headers) are
 * dropped unless they come from the proxy. Non-TCP traffic (ARP, ICMP, DNS over UDP) passes.
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

enum verdict { V_PASS_NON_TCP, V_PASS_CONTROL, V_DROP_SYN, V_DROP_DATA, V_DROP_UNPARSED };

static __always_inline enum verdict judge_tcp(struct __sk_buff *skb, __u32 l4_off, __u32 l3_end)
{
	struct tcphdr th;
	if (bpf_skb_load_bytes(skb, l4_off, &th, sizeof(th)))
		return V_DROP_UNPARSED;
	if (th.syn && !th.ack)
		return V_DROP_SYN;
	__u32 payload_start = l4_off + th.doff * 4;
	if (l3_end > payload_start)
		return V_DROP_DATA;
	return V_PASS_CONTROL;
}

static __always_inline enum verdict judge(struct __sk_buff *skb)
{
	__u32 off = sizeof(struct ethhdr);
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
			return V_DROP_UNPARSED;
		if (ip.protocol != IPPROTO_TCP)
			return V_PASS_NON_TCP;
		if (ip.frag_off & bpf_htons(0x1fff))
			return V_DROP_UNPARSED;
		return judge_tcp(skb, off + ip.ihl * 4, off + bpf_ntohs(ip.tot_len));
	}
	if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return V_DROP_UNPARSED;
		switch (ip6.nexthdr) {
		case IPPROTO_TCP:
			return judge_tcp(skb, off + sizeof(ip6), off + sizeof(ip6) + bpf_ntohs(ip6.payload_len));
		case 0: case 43: case 44: case 60: /* extension headers could hide TCP */
			return V_DROP_UNPARSED;
		default:
			return V_PASS_NON_TCP;
		}
	}
	return V_PASS_NON_TCP;
}

SEC("tc")
int weft_strict_egress(struct __sk_buff *skb)
{
	struct weft_config *cfg = config();
	__u64 sender = bpf_skb_cgroup_id(skb);
	if (is_proxy_cgroup(cfg, sender)) {
		count(WEFT_CTR_STRICT_PASS_PROXY);
		return TCX_PASS;
	}
	switch (judge(skb)) {
	case V_PASS_NON_TCP:
		return TCX_PASS;
	case V_PASS_CONTROL:
		count(WEFT_CTR_STRICT_PASS_CONTROL);
		return TCX_PASS;
	case V_DROP_SYN:
		count(WEFT_CTR_STRICT_DROP_SYN);
		return TCX_DROP;
	case V_DROP_DATA:
		count(WEFT_CTR_STRICT_DROP_DATA);
		return TCX_DROP;
	default:
		count(WEFT_CTR_STRICT_DROP_UNPARSED);
		return TCX_DROP;
	}
}

char _license[] SEC("license") = "Dual BSD/GPL";

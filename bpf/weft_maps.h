/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The single source of truth for every map Weft shares between the kernel and the agent.
 * TypeScript reads these layouts from the compiled objects' BTF (scripts/gen-layout.mjs):
 * change a struct here and the generated offsets follow; nothing is copied by hand.
 *
 * Conventions: IPv4 addresses live in addr[0] in network byte order, the rest zero; IPv6 uses all
 * four words in network byte order; ports are in host byte order; family is AF_INET or AF_INET6.
 */
#ifndef WEFT_MAPS_H
#define WEFT_MAPS_H

#include <linux/types.h>

#define WEFT_MAX_PODS 16384
#define WEFT_MAX_FLOWS 65536
/* Captured pod addresses (a pod may have an IPv4 and an IPv6 address). */
#define WEFT_MAX_CAPTURED_IPS (2 * WEFT_MAX_PODS)

/* Node-wide settings, one entry (key 0) in weft_config. */
struct weft_config {
	__u32 proxy_ip4;          /* where enrolled pods' IPv4 connects are sent (the node's address) */
	__u32 proxy_ip6[4];       /* same for IPv6; all zero: IPv6 connects of enrolled pods are refused */
	__u16 outbound_port;      /* node proxy outbound capture port (15001) */
	__u16 inbound_plaintext_port; /* the transparent listener captured inbound SYNs are assigned to (15006) */
	__u32 capture_mark;       /* fwmark set on captured packets: an ip rule sends them to a table of local routes */
	/*
	 * Capture ports: when capture_port_count is not zero, a captured connect goes to one of the
	 * node proxy's ports capture_port_base .. base + count - 1 (picked at random; weft_capture_lookup
	 * hands them to the outbound port's listeners) instead of outbound_port. The client's kernel
	 * picks a source port per destination address and port, so one port held all of a pod's
	 * captured connections, TIME_WAIT included, to one range of source ports
	 * (docs/capture-ports.md). Zero: outbound_port alone (an older agent).
	 */
	__u16 capture_port_base;
	__u16 capture_port_count;
	__u64 proxy_cgroup_id;    /* cgroup of the node proxy's sockets: the only sender STRICT pods accept */
};

/* Value of weft_pods, keyed by the pod's cgroup id (__u64). Presence means enrolled. */
struct weft_pod {
	__u32 flags;
	__u32 reserved;
};

/* Where an enrolled pod meant to connect, and who it was. Value of weft_sk_orig and weft_flow_orig. */
struct weft_orig {
	__u32 addr[4];
	__u16 port;
	__u8 family;
	__u8 reserved;
	__u32 reserved2;
	__u64 cgroup_id;          /* the connecting pod's cgroup: kernel fact, not the source IP */
};

/* A captured connection as the client's socket sees it: client -> node proxy. Key of weft_flow_orig. */
struct weft_flow {
	__u32 saddr[4];
	__u32 daddr[4];
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 reserved[3];
};

/*
 * Key of weft_capture: an address of an enrolled pod on this node (bpf/weft_ingress.c). Without
 * flags the node proxy captures the pod's inbound plaintext TCP at tc ingress; every entry's
 * replies to the proxy's transparent upstream sockets (source address preservation) go to them.
 */
struct weft_ip {
	__u32 addr[4];
	__u8 family;
	__u8 reserved[3];
};

struct weft_capture {
	__u32 flags;              /* enum weft_capture_flag */
	__u32 reserved;
};

enum weft_capture_flag {
	/* a STRICT pod: inbound plaintext is not captured (tc egress drops it); its replies are steered */
	WEFT_CAPTURE_REPLIES_ONLY = 1,
	/*
	 * a pod that has left the mesh while the proxy still holds connections with it: only segments
	 * of those connections are steered (to the proxy's socket for their 4-tuple, both ways); a SYN,
	 * or any segment no proxy socket holds, passes to the pod untouched
	 */
	WEFT_CAPTURE_LINGER = 2,
};

/*
 * Where the agent put the policy routing that delivers captured packets locally (one entry, key 0
 * in weft_capture_route), so `weft uninstall` can remove the rule and table from the right network
 * namespace even when it runs elsewhere. Written by the agent only; no program reads it.
 */
struct weft_capture_route {
	__u64 netns_ino;          /* inode of the agent's network namespace (/proc/self/ns/net) */
	__u32 mark;
	__u32 table;
	__u32 priority;
	__u32 reserved;
};

/* Index of weft_counters: why the programs did what they did. */
enum weft_counter {
	WEFT_CTR_REDIRECT4 = 0,
	WEFT_CTR_REDIRECT6,
	WEFT_CTR_REFUSED_NO_PROXY6,   /* enrolled pod connected over IPv6 but the node proxy has no IPv6 */
	WEFT_CTR_FLOW_RECORDED,
	WEFT_CTR_ORIG_DST_ANSWERED,
	WEFT_CTR_STRICT_PASS_PROXY,
	WEFT_CTR_STRICT_PASS_CONTROL,
	WEFT_CTR_STRICT_DROP_SYN,
	WEFT_CTR_STRICT_DROP_DATA,
	WEFT_CTR_STRICT_DROP_UNPARSED,
	WEFT_CTR_CAPTURE_LISTENER,        /* SYN to a captured pod handed to the 15006 listener */
	WEFT_CTR_CAPTURE_ESTABLISHED,     /* client segment handed to the proxy's socket for its connection */
	WEFT_CTR_CAPTURE_REPLY,           /* captured pod's segment handed to the proxy's transparent upstream socket */
	WEFT_CTR_CAPTURE_PASS_NO_SOCKET,  /* non-SYN to a captured pod with no proxy socket (a connection from before capture) */
	WEFT_CTR_CAPTURE_DROP_NO_LISTENER, /* SYN to a captured pod while no 15006 listener exists (agent down): fail closed */
	WEFT_CTR_CAPTURE_DROP_ASSIGN,     /* bpf_sk_assign refused the socket */
	WEFT_CTR_CAPTURE_DROP_UNPARSED,   /* IPv4 fragment or IPv6 extension header towards a captured pod */
	WEFT_CTR_MAX,
};

#endif

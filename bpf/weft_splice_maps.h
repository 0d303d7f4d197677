/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Layouts of the same-node splice maps (bpf/weft_splice.c), shared with the agent through BTF
 * (scripts/gen-layout.mjs generates the TypeScript view). Kept apart from weft_maps.h because
 * these maps are never pinned: they belong to one agent process and go away with it
 * (docs/splice.md).
 */
#ifndef WEFT_SPLICE_MAPS_H
#define WEFT_SPLICE_MAPS_H

#include <linux/types.h>

/* Two sockets per spliced connection: the client's accepted socket and the upstream to the pod. */
#define WEFT_SPLICE_MAX_SOCKS 65536

/*
 * Value of weft_splice_peers, keyed by a spliced socket's cookie (SO_COOKIE): where bytes that
 * arrive on this socket are sent, and how many the kernel has sent there so far.
 */
struct weft_splice_peer {
	__u64 peer_cookie;        /* cookie of the socket the bytes go out of */
	__u64 bytes;              /* bytes arrived on this socket and redirected to the peer */
};

/*
 * A pod socket's own 4-tuple (key of weft_splice_pods, weft_splice_flows, weft_splice_relayed):
 * addresses as on the wire (IPv4 in local[0]/remote[0], the rest zero), ports in host order.
 */
struct weft_splice_tuple {
	__u32 local[4];
	__u32 remote[4];
	__u16 local_port;
	__u16 remote_port;
	__u32 family;
};

/* Key of weft_splice_expect: a pod address and port that is being connected to for a splice. */
struct weft_splice_listen {
	__u32 addr[4];
	__u32 port;
	__u32 family;
};

/*
 * Value of weft_splice_flows, keyed by a pod socket's tuple: which of the proxy's sockets that
 * pod's bytes leave by, and what the sk_msg verdict did. The proxy writes it once; the verdict
 * updates `redirected` and `switched` in place.
 */
struct weft_splice_flow {
	__u64 target_cookie;      /* the proxy socket the pod's bytes go out of */
	__u64 redirected;         /* bytes of the pod's sendmsg() the verdict redirected */
	__u32 switched;           /* set once redirected: from then on every message is */
	__u32 pad;
};

/*
 * weft_splice_config[0]: the proxy's capture ports (outbound_port, and capture_port_count ports from
 * capture_port_base, as in weft_config): a client socket connected to one of them may be spliced.
 */
struct weft_splice_config {
	__u32 outbound_port;
	__u16 capture_port_base;
	__u16 capture_port_count;
};

/* Index of weft_splice_counters. */
enum weft_splice_counter {
	WEFT_SPLICE_REDIRECTED = 0,     /* skbs sent on to the peer socket */
	WEFT_SPLICE_PASS_NO_PEER,       /* skbs on a socket with no peer entry: left to the proxy */
	WEFT_SPLICE_PASS_PEER_GONE,     /* the peer socket is not in weft_splice_socks: left to the proxy */
	WEFT_SPLICE_PASS_FIN,           /* empty skbs (a bare FIN): left to the proxy, which sees EOF */
	WEFT_SPLICE_REDIRECTED_BYTES,   /* bytes of those skbs */
	WEFT_SPLICE_POD_SOCKETS,        /* pod sockets entered in weft_splice_pods (sockops) */
	WEFT_SPLICE_MSG_SWITCHED,       /* pod sockets whose sendmsg() went over to the kernel */
	WEFT_SPLICE_MSG_WAITED,         /* messages of a spliced pod socket passed to TCP: older bytes still on their way */
	WEFT_SPLICE_MSG_REDIRECTED,     /* messages sent out of the proxy's socket by the sk_msg verdict */
	WEFT_SPLICE_MSG_REDIRECTED_BYTES, /* bytes of those messages */
	WEFT_SPLICE_MSG_TARGET_GONE,    /* messages passed to TCP because the proxy's socket was gone */
	WEFT_SPLICE_CTR_MAX,
};

#endif

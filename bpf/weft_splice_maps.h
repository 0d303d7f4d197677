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

/* Index of weft_splice_counters. */
enum weft_splice_counter {
	WEFT_SPLICE_REDIRECTED = 0,     /* skbs sent on to the peer socket */
	WEFT_SPLICE_PASS_NO_PEER,       /* skbs on a socket with no peer entry: left to the proxy */
	WEFT_SPLICE_PASS_PEER_GONE,     /* the peer socket is not in weft_splice_socks: left to the proxy */
	WEFT_SPLICE_PASS_FIN,           /* empty skbs (a bare FIN): left to the proxy, which sees EOF */
	WEFT_SPLICE_CTR_MAX,
};

#endif

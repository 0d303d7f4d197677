/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Map definitions (BTF, pinned by name under the node's pin root) and helpers shared by programs. */
#ifndef WEFT_COMMON_H
#define WEFT_COMMON_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "weft_maps.h"

#define AF_INET 2
#define AF_INET6 10

/* Named return values of cgroup programs. */
#define WEFT_SOCK_ALLOW 1
#define WEFT_SOCK_REJECT 0

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct weft_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_config SEC(".maps");

/*
 * The cgroups of every node proxy of this node that is alive (key: cgroup id, value: the agent's
 * pid), beside weft_config.proxy_cgroup_id (the newest). During an upgrade the old and the new
 * agent run at once, in different cgroups in Kubernetes (two pods): both are the proxy, to STRICT
 * enforcement and to the capture skip, until the old one has drained (docs/upgrade.md).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_proxy_cgroups SEC(".maps");

static __always_inline int is_proxy_cgroup(struct weft_config *cfg, __u64 id)
{
	if (!id)
		return 0;
	if (cfg && id == cfg->proxy_cgroup_id)
		return 1;
	return bpf_map_lookup_elem(&weft_proxy_cgroups, &id) != 0;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WEFT_CTR_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} weft_counters SEC(".maps");

/* Keeps enum weft_counter in the object's BTF, where the agent's generated layout reads it from. */
const volatile enum weft_counter weft_counter_max = WEFT_CTR_MAX;

static __always_inline void count(enum weft_counter c)
{
	__u64 *v = bpf_map_lookup_elem(&weft_counters, &c);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline struct weft_config *config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&weft_config, &zero);
}

#endif

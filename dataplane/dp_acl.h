/* SPDX-License-Identifier: MIT */
/*
 * dp_acl.h: the allow-list of client source prefixes (zerohopd --allow CIDR, repeatable). The rx
 * lcore asks it about every frame it would answer (a request, ARP, ICMP echo) and drops the rest
 * under drop_acl, before anything reaches the ring. An empty list allows every source.
 *
 * Prefixes are written "a.b.c.d/len": a dotted quad as inet_pton(3) reads it (four decimal parts,
 * no leading zeros), then a length of 0 to 32, both required. Host bits set beyond the length
 * ("198.18.0.1/15") are refused rather than masked: on an allow-list such a typo would otherwise
 * let in far more than was meant, silently.
 */
#ifndef DP_ACL_H
#define DP_ACL_H

#include <stdint.h>

#include <rte_byteorder.h>

#define DP_ACL_PREFIXES_MAX 64u

/* One prefix, in host byte order: a source matches when (source & mask) == addr. */
struct dp_acl_prefix {
	uint32_t addr;  /* the network address, host bits zero */
	uint32_t mask;  /* `len` leading ones */
};

/* Filled at start-up, then read-only: each rx lcore holds a copy. */
struct dp_acl {
	uint32_t count;
	struct dp_acl_prefix prefixes[DP_ACL_PREFIXES_MAX];
};

/* An empty list: every source allowed. */
void dp_acl_init(struct dp_acl *acl);

/* Parse one "a.b.c.d/len" into `out`. Returns 0, or -EINVAL when it is malformed or has host bits set. */
int dp_acl_parse_prefix(const char *text, struct dp_acl_prefix *out);

/* Parse and append one prefix. Returns 0, -EINVAL (as above) or -ENOSPC (already DP_ACL_PREFIXES_MAX). */
int dp_acl_add(struct dp_acl *acl, const char *text);

/* Whether `src_ip` (network byte order) may be answered: the list is empty or a prefix holds it. */
int dp_acl_allows(const struct dp_acl *acl, rte_be32_t src_ip);

#endif /* DP_ACL_H */

/* SPDX-License-Identifier: MIT */
/*
 * dp_acl.c: see dp_acl.h. Matching walks the list: at most 64 compares of a masked word, only for
 * frames that would be answered, read from the lcore's own copy of the list.
 */
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>

#include <rte_byteorder.h>

#include "dp_acl.h"

/* "255.255.255.255/32" and its terminator. */
#define PREFIX_TEXT_MAX 19u
#define PREFIX_LEN_MAX 32u

void dp_acl_init(struct dp_acl *acl)
{
	memset(acl, 0, sizeof(*acl));
}

/* The prefix length: "0" or 1-2 decimal digits without a leading zero, at most 32. */
static int parse_len(const char *text, uint32_t *len)
{
	size_t n = strlen(text);

	if (n == 0 || n > 2 || (n == 2 && text[0] == '0'))
		return -EINVAL;
	*len = 0;
	for (size_t i = 0; i < n; i++) {
		if (text[i] < '0' || text[i] > '9')
			return -EINVAL;
		*len = *len * 10 + (uint32_t)(text[i] - '0');
	}
	return *len <= PREFIX_LEN_MAX ? 0 : -EINVAL;
}

int dp_acl_parse_prefix(const char *text, struct dp_acl_prefix *out)
{
	char addr_text[PREFIX_TEXT_MAX + 1];
	const char *slash = strchr(text, '/');
	struct in_addr addr;
	uint32_t len, mask, host;

	if (!slash || (size_t)(slash - text) >= sizeof(addr_text) || parse_len(slash + 1, &len))
		return -EINVAL;
	memcpy(addr_text, text, (size_t)(slash - text));
	addr_text[slash - text] = '\0';
	/* inet_pton, unlike inet_aton, takes only four decimal parts: no "1.2.3", no octal, no hex. */
	if (inet_pton(AF_INET, addr_text, &addr) != 1)
		return -EINVAL;
	/* A shift by 32 is undefined: /0 is spelled out. */
	mask = len == 0 ? 0 : UINT32_MAX << (PREFIX_LEN_MAX - len);
	host = rte_be_to_cpu_32(addr.s_addr);
	if (host & ~mask)
		return -EINVAL;
	out->addr = host;
	out->mask = mask;
	return 0;
}

int dp_acl_add(struct dp_acl *acl, const char *text)
{
	struct dp_acl_prefix prefix;
	int rc = dp_acl_parse_prefix(text, &prefix);

	if (rc)
		return rc;
	if (acl->count == DP_ACL_PREFIXES_MAX)
		return -ENOSPC;
	acl->prefixes[acl->count++] = prefix;
	return 0;
}

int dp_acl_allows(const struct dp_acl *acl, rte_be32_t src_ip)
{
	uint32_t src = rte_be_to_cpu_32(src_ip);

	if (acl->count == 0)
		return 1;
	for (uint32_t i = 0; i < acl->count; i++)
		if ((src & acl->prefixes[i].mask) == acl->prefixes[i].addr)
			return 1;
	return 0;
}

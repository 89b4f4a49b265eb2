/* SPDX-License-Identifier: MIT */
/*
 * dp_parse.c: see dp_parse.h. Every length field is checked against the frame before it is used.
 */
#include <string.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include "dp_parse.h"

#define IPV4_HDR_MIN_SIZE 20u
#define UDP_HDR_SIZE 8u
#define ICMP_HDR_SIZE 8u
#define REPLY_TTL 64
/* A correct one's-complement sum, its checksum field included, is all ones (RFC 1071). */
#define CKSUM_ALL_ONES 0xffffu

const char *dp_drop_key(enum dp_drop drop)
{
	static const char *const keys[] = {
#define DP_X(name, key, text) key,
		DP_DROP_LIST(DP_X)
#undef DP_X
	};
	return drop < DP_DROP_COUNT ? keys[drop] : "drop_unknown";
}

static enum dp_verdict drop(struct dp_frame_info *info, enum dp_drop why)
{
	info->drop = why;
	return DP_VERDICT_DROP;
}

/*
 * What a classification reads: the frame, its size, and how much of it the CPU may read (`head_size`:
 * all of it, except in a frame split between host and device memory, dp_classify_split).
 */
struct parse_in {
	const uint8_t *frame;
	uint32_t frame_size;
	uint32_t head_size;
	uint32_t rx_flags;
};

static enum dp_verdict classify_arp(const struct dp_self *self, const struct parse_in *in,
				    struct dp_frame_info *info)
{
	const struct rte_arp_hdr *arp = (const struct rte_arp_hdr *)(in->frame + info->l3_offset);

	if (in->frame_size < info->l3_offset + sizeof(*arp))
		return drop(info, DP_DROP_ARP_OTHER);
	if (in->head_size < info->l3_offset + sizeof(*arp))
		return drop(info, DP_DROP_SPLIT_LAYOUT);
	if (arp->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
	    arp->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
	    arp->arp_hlen != RTE_ETHER_ADDR_LEN || arp->arp_plen != sizeof(uint32_t) ||
	    arp->arp_opcode != rte_cpu_to_be_16(RTE_ARP_OP_REQUEST) ||
	    arp->arp_data.arp_tip != self->ip)
		return drop(info, DP_DROP_ARP_OTHER);
	info->src_ip = arp->arp_data.arp_sip;
	return DP_VERDICT_ARP_REQUEST;
}

static enum dp_verdict classify_icmp(const struct parse_in *in, const struct rte_ipv4_hdr *ip,
				     struct dp_frame_info *info)
{
	uint32_t icmp_size = rte_be_to_cpu_16(ip->total_length) - (info->l4_offset - info->l3_offset);
	const struct rte_icmp_hdr *icmp = (const struct rte_icmp_hdr *)(in->frame + info->l4_offset);

	/* The reply is built in place and its checksum covers the whole message: all of it must be
	 * where the CPU can read and write. */
	if (icmp_size >= ICMP_HDR_SIZE && info->l4_offset + icmp_size > in->head_size)
		return drop(info, DP_DROP_SPLIT_LAYOUT);
	if (icmp_size < ICMP_HDR_SIZE || icmp->icmp_type != RTE_IP_ICMP_ECHO_REQUEST ||
	    icmp->icmp_code != 0 || rte_raw_cksum(icmp, icmp_size) != CKSUM_ALL_ONES)
		return drop(info, DP_DROP_ICMP_OTHER);
	info->payload_offset = info->l4_offset;
	info->payload_size = (uint16_t)icmp_size;
	return DP_VERDICT_ICMP_ECHO;
}

/*
 * Whether a datagram's UDP checksum holds. 0 is "no checksum" (RFC 768, allowed over IPv4), taken
 * before the port's verdict since some ports report it bad. Otherwise the port's verdict when it gave
 * one, else our own sum; that one reads the payload, which a port with the L4 offload spares us.
 */
static int udp_checksum_ok(const struct rte_ipv4_hdr *ip, const struct rte_udp_hdr *udp, uint32_t udp_len,
			   uint32_t rx_flags)
{
	uint32_t sum;

	if (udp->dgram_cksum == 0 || (rx_flags & DP_RX_L4_CKSUM_GOOD))
		return 1;
	if (rx_flags & DP_RX_L4_CKSUM_BAD)
		return 0;
	/* The pseudo-header (both addresses, the protocol, the UDP length), then the datagram as far as
	 * the UDP length goes. Words are summed as they lie in memory, the constants converted to match;
	 * every piece but the last is of even size, so the pieces' sums add up to the sum of the whole. */
	sum = rte_raw_cksum(&ip->src_addr, 2 * sizeof(rte_be32_t));
	sum += rte_cpu_to_be_16(IPPROTO_UDP);
	sum += udp->dgram_len;
	sum += rte_raw_cksum(udp, udp_len);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == CKSUM_ALL_ONES;
}

static enum dp_verdict classify_udp(const struct dp_self *self, const struct parse_in *in,
				    const struct rte_ipv4_hdr *ip, struct dp_frame_info *info)
{
	uint32_t l4_size = rte_be_to_cpu_16(ip->total_length) - (info->l4_offset - info->l3_offset);
	const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)(in->frame + info->l4_offset);
	uint32_t udp_len;

	if (l4_size < UDP_HDR_SIZE)
		return drop(info, DP_DROP_UDP_BAD_LENGTH);
	if (in->head_size < info->l4_offset + UDP_HDR_SIZE)
		return drop(info, DP_DROP_SPLIT_LAYOUT);
	/* Under its own header (0 included) or past the IPv4 payload: bad. Short of the IPv4 payload:
	 * the datagram is what UDP says and the rest is ignored (dp_parse.h). */
	udp_len = rte_be_to_cpu_16(udp->dgram_len);
	if (udp_len < UDP_HDR_SIZE || udp_len > l4_size)
		return drop(info, DP_DROP_UDP_BAD_LENGTH);
	if (udp->dst_port != self->udp_port)
		return drop(info, DP_DROP_UDP_OTHER_PORT);
	/* Our own sum would read a payload in device memory: only the port can vouch for it. */
	if (udp->dgram_cksum != 0 && !(in->rx_flags & (DP_RX_L4_CKSUM_GOOD | DP_RX_L4_CKSUM_BAD)) &&
	    info->l4_offset + udp_len > in->head_size)
		return drop(info, DP_DROP_UDP_UNVERIFIED);
	if (!udp_checksum_ok(ip, udp, udp_len, in->rx_flags))
		return drop(info, DP_DROP_UDP_BAD_CHECKSUM);
	info->payload_offset = (uint16_t)(info->l4_offset + UDP_HDR_SIZE);
	info->payload_size = (uint16_t)(udp_len - UDP_HDR_SIZE);
	return DP_VERDICT_REQUEST;
}

static enum dp_verdict classify_ipv4(const struct dp_self *self, const struct parse_in *in,
				     struct dp_frame_info *info)
{
	const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(in->frame + info->l3_offset);
	uint32_t ip_hdr_size, total_len;

	if (in->frame_size < info->l3_offset + IPV4_HDR_MIN_SIZE)
		return drop(info, DP_DROP_IP_BAD_HEADER);
	if (in->head_size < info->l3_offset + IPV4_HDR_MIN_SIZE)
		return drop(info, DP_DROP_SPLIT_LAYOUT);
	ip_hdr_size = (uint32_t)(ip->version_ihl & 0x0f) * 4;
	total_len = rte_be_to_cpu_16(ip->total_length);
	/* The frame may carry Ethernet padding after the datagram, never less than it. */
	if ((ip->version_ihl >> 4) != 4 || ip_hdr_size < IPV4_HDR_MIN_SIZE || total_len < ip_hdr_size ||
	    info->l3_offset + total_len > in->frame_size)
		return drop(info, DP_DROP_IP_BAD_HEADER);
	if (in->head_size < info->l3_offset + ip_hdr_size)
		return drop(info, DP_DROP_SPLIT_LAYOUT);
	/* The port's verdict when it gave one; the header is checked above either way. */
	if ((in->rx_flags & DP_RX_IP_CKSUM_BAD) ||
	    (!(in->rx_flags & DP_RX_IP_CKSUM_GOOD) && rte_raw_cksum(ip, ip_hdr_size) != CKSUM_ALL_ONES))
		return drop(info, DP_DROP_IP_BAD_CHECKSUM);
	info->src_ip = ip->src_addr;
	if (ip->dst_addr != self->ip)
		return drop(info, DP_DROP_IP_NOT_FOR_US);
	/* More-fragments set or a non-zero offset: part of a larger datagram. */
	if (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK))
		return drop(info, DP_DROP_IP_FRAGMENT);
	info->l4_offset = (uint16_t)(info->l3_offset + ip_hdr_size);
	if (ip->next_proto_id == IPPROTO_UDP)
		return classify_udp(self, in, ip, info);
	if (ip->next_proto_id == IPPROTO_ICMP)
		return classify_icmp(in, ip, info);
	return drop(info, DP_DROP_IP_OTHER_PROTO);
}

/* A tag protocol identifier: 802.1Q, 802.1ad, and the pre-standard QinQ one. */
static int is_vlan_tpid(rte_be16_t type)
{
	return type == rte_cpu_to_be_16(RTE_ETHER_TYPE_VLAN) || type == rte_cpu_to_be_16(RTE_ETHER_TYPE_QINQ) ||
	       type == rte_cpu_to_be_16(RTE_ETHER_TYPE_QINQ1);
}

enum dp_verdict dp_classify(const struct dp_self *self, const uint8_t *frame, uint32_t frame_size,
			    uint32_t rx_flags, struct dp_frame_info *info)
{
	return dp_classify_split(self, frame, frame_size, frame_size, rx_flags, info);
}

enum dp_verdict dp_classify_split(const struct dp_self *self, const uint8_t *frame, uint32_t head_size,
				  uint32_t frame_size, uint32_t rx_flags, struct dp_frame_info *info)
{
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)frame;
	const struct parse_in in = {
		.frame = frame,
		.frame_size = frame_size,
		.head_size = RTE_MIN(head_size, frame_size),
		.rx_flags = rx_flags,
	};
	rte_be16_t ether_type;

	memset(info, 0, sizeof(*info));
	if (frame_size < sizeof(*eth))
		return drop(info, DP_DROP_RUNT);
	if (in.head_size < sizeof(*eth))
		return drop(info, DP_DROP_SPLIT_LAYOUT);
	/* Never answer a broadcast or multicast source: the answer would go to everyone. */
	if (!rte_is_unicast_ether_addr(&eth->src_addr))
		return drop(info, DP_DROP_BAD_SOURCE);
	info->l3_offset = sizeof(*eth);
	ether_type = eth->ether_type;
	/* One 802.1Q tag: the protocol is the one inside it, and the answers keep the tag in place. A
	 * service (802.1ad) tag outside, or a second tag inside, is a provider's stacking: not ours. */
	if (ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_VLAN)) {
		const struct rte_vlan_hdr *vlan = (const struct rte_vlan_hdr *)(eth + 1);

		if (frame_size < sizeof(*eth) + sizeof(*vlan))
			return drop(info, DP_DROP_RUNT);
		if (in.head_size < sizeof(*eth) + sizeof(*vlan))
			return drop(info, DP_DROP_SPLIT_LAYOUT);
		info->l3_offset += sizeof(*vlan);
		ether_type = vlan->eth_proto;
	}
	if (ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP))
		return classify_arp(self, &in, info);
	if (ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
		return classify_ipv4(self, &in, info);
	if (ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV6))
		return drop(info, DP_DROP_IPV6);
	if (is_vlan_tpid(ether_type))
		return drop(info, DP_DROP_VLAN_NESTED);
	return drop(info, DP_DROP_NOT_IPV4);
}

uint32_t dp_make_arp_reply(const struct dp_self *self, uint8_t *frame, const struct dp_frame_info *info)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)frame;
	struct rte_arp_hdr *arp = (struct rte_arp_hdr *)(frame + info->l3_offset);
	struct rte_arp_ipv4 *a = &arp->arp_data;

	rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
	rte_ether_addr_copy(&self->mac, &eth->src_addr);
	arp->arp_opcode = rte_cpu_to_be_16(RTE_ARP_OP_REPLY);
	rte_ether_addr_copy(&a->arp_sha, &a->arp_tha);
	a->arp_tip = a->arp_sip;
	rte_ether_addr_copy(&self->mac, &a->arp_sha);
	a->arp_sip = self->ip;
	/* Ethernet pads short frames on the wire; the ARP payload itself is what matters. */
	return info->l3_offset + (uint32_t)sizeof(*arp);
}

uint32_t dp_make_icmp_reply(const struct dp_self *self, uint8_t *frame, const struct dp_frame_info *info)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)frame;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(frame + info->l3_offset);
	struct rte_icmp_hdr *icmp = (struct rte_icmp_hdr *)(frame + info->l4_offset);

	rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
	rte_ether_addr_copy(&self->mac, &eth->src_addr);
	ip->dst_addr = ip->src_addr;
	ip->src_addr = self->ip;
	ip->time_to_live = REPLY_TTL;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	icmp->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
	icmp->icmp_cksum = 0;
	icmp->icmp_cksum = (uint16_t)~rte_raw_cksum(icmp, info->payload_size);
	return info->l3_offset + rte_be_to_cpu_16(ip->total_length);
}

/* Who an answer goes back to, read from the request before anything overwrites it. */
struct reply_to {
	struct rte_ether_addr mac;
	rte_be32_t ip;
	rte_be16_t port;
};

static void read_reply_to(const uint8_t *req, const struct dp_frame_info *info, struct reply_to *rt)
{
	const struct rte_ether_hdr *eth = (const struct rte_ether_hdr *)req;
	const struct rte_ipv4_hdr *ip = (const struct rte_ipv4_hdr *)(req + info->l3_offset);
	const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)(req + info->l4_offset);

	rte_ether_addr_copy(&eth->src_addr, &rt->mac);
	rt->ip = ip->src_addr;
	rt->port = udp->src_port;
}

/* The answer's headers at out: the request's L2 header (a VLAN tag stays) with the addresses turned
 * around, a fresh IPv4 header without options, UDP; the answer is already at the UDP payload. */
static void write_answer_headers(const struct dp_self *self, const struct reply_to *rt, uint32_t l3_offset,
				 uint8_t *out, uint32_t ans_size)
{
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)out;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(out + l3_offset);
	struct rte_udp_hdr *udp = (struct rte_udp_hdr *)(out + l3_offset + IPV4_HDR_MIN_SIZE);

	rte_ether_addr_copy(&rt->mac, &eth->dst_addr);
	rte_ether_addr_copy(&self->mac, &eth->src_addr);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(IPV4_HDR_MIN_SIZE + UDP_HDR_SIZE + ans_size));
	ip->packet_id = 0;
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = REPLY_TTL;
	ip->next_proto_id = IPPROTO_UDP;
	ip->src_addr = self->ip;
	ip->dst_addr = rt->ip;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	udp->src_port = self->udp_port;
	udp->dst_port = rt->port;
	udp->dgram_len = rte_cpu_to_be_16((uint16_t)(UDP_HDR_SIZE + ans_size));
	udp->dgram_cksum = 0;
	udp->dgram_cksum = rte_ipv4_udptcp_cksum(ip, udp);
}

uint32_t dp_answer_header_size(const struct dp_frame_info *info)
{
	return info->l3_offset + IPV4_HDR_MIN_SIZE + UDP_HDR_SIZE;
}

uint32_t dp_make_udp_answer(const struct dp_self *self, uint8_t *frame, uint32_t frame_cap,
			    const struct dp_frame_info *info, const uint8_t *ans, uint32_t ans_size)
{
	uint32_t hdr_size = dp_answer_header_size(info);
	uint32_t frame_size = hdr_size + ans_size;
	struct reply_to rt;

	if (frame_size > frame_cap || frame_size > UINT16_MAX)
		return 0;
	/* Read first: with IP options the new headers do not line up with the old, and the answer
	 * may land where the request's UDP header was. */
	read_reply_to(frame, info, &rt);
	memcpy(frame + hdr_size, ans, ans_size);
	write_answer_headers(self, &rt, info->l3_offset, frame, ans_size);
	return frame_size;
}

uint32_t dp_make_udp_answer_headers(const struct dp_self *self, const uint8_t *req, const struct dp_frame_info *info,
				    uint8_t *out, uint32_t ans_size)
{
	uint32_t hdr_size = dp_answer_header_size(info);
	struct reply_to rt;

	if (hdr_size + ans_size > UINT16_MAX)
		return 0;
	read_reply_to(req, info, &rt);
	memcpy(out, req, info->l3_offset); /* the L2 header, VLAN tag and all */
	write_answer_headers(self, &rt, info->l3_offset, out, ans_size);
	return hdr_size + ans_size;
}

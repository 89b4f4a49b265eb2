/* SPDX-License-Identifier: MIT */
/*
 * dp_parse.h: L2-L4 classification of received frames and in-place construction of the frames sent
 * back (ARP reply, ICMP echo reply, UDP answer). Works on plain byte buffers so it can be tested
 * without an EAL; the rx lcore reads headers only, never the request payload (except to verify a UDP
 * checksum that the port did not verify, see dp_classify).
 *
 * Ethernet frames come with no tag or with one 802.1Q tag (TPID 0x8100); an answer keeps the tag of
 * its request, so it goes back on the VLAN it came from.
 */
#ifndef DP_PARSE_H
#define DP_PARSE_H

#include <stdint.h>

#include <rte_byteorder.h>
#include <rte_ether.h>

/*
 * Why a frame was dropped: one counter each (dataplane/dp_lcore.h). dp_classify produces all but the
 * last two, which the rx lcore decides: the allow-list (dataplane/dp_acl.h) and chained mbufs.
 */
#define DP_DROP_LIST(X)                                                              \
	X(RUNT, "drop_runt", "frame shorter than its Ethernet header (802.1Q tag included)") \
	X(VLAN_NESTED, "drop_vlan_nested", "more than one VLAN tag, or an 802.1ad service tag") \
	X(NOT_IPV4, "drop_not_ipv4", "EtherType other than IPv4, ARP and IPv6")    \
	X(IPV6, "drop_ipv6", "IPv6 (not supported)")                               \
	X(IP_BAD_HEADER, "drop_ip_bad_header", "IPv4 version, header or total length wrong") \
	X(IP_BAD_CHECKSUM, "drop_ip_bad_checksum", "IPv4 header checksum wrong")    \
	X(IP_NOT_FOR_US, "drop_ip_not_for_us", "IPv4 destination is not ours")      \
	X(IP_FRAGMENT, "drop_ip_fragment", "IPv4 fragment (a request is one datagram)") \
	X(IP_OTHER_PROTO, "drop_ip_other_proto", "IPv4 protocol other than UDP and ICMP") \
	X(UDP_BAD_LENGTH, "drop_udp_bad_length", "UDP length disagrees with the IPv4 length") \
	X(UDP_OTHER_PORT, "drop_udp_other_port", "UDP destination port is not ours") \
	X(UDP_BAD_CHECKSUM, "drop_udp_bad_checksum", "UDP checksum present and wrong") \
	X(ARP_OTHER, "drop_arp_other", "ARP that is not a request for our address") \
	X(ICMP_OTHER, "drop_icmp_other", "ICMP other than a well-formed echo request") \
	X(BAD_SOURCE, "drop_bad_source", "broadcast or multicast source address")   \
	X(SPLIT_LAYOUT, "drop_split_layout", "split frame: headers past the host segment, or a payload not wholly in the device segment") \
	X(UDP_UNVERIFIED, "drop_udp_unverified", "UDP checksum the port did not verify, over a payload the CPU cannot read") \
	X(ACL, "drop_acl", "source address not on the allow-list")                  \
	X(MULTI_SEGMENT, "drop_multi_segment", "frame in more than one mbuf")

enum dp_drop {
#define DP_X(name, key, text) DP_DROP_##name,
	DP_DROP_LIST(DP_X)
#undef DP_X
	DP_DROP_COUNT
};

enum dp_verdict {
	DP_VERDICT_DROP = 0,
	DP_VERDICT_ARP_REQUEST,  /* an ARP request for our address: answer it */
	DP_VERDICT_ICMP_ECHO,    /* an ICMP echo request to us: answer it */
	DP_VERDICT_REQUEST,      /* a datagram to our UDP port: a request for the device */
};

/*
 * dp_classify's `rx_flags`: what the port already verified, decoded from the mbuf's offload flags by
 * the rx lcore (dataplane/dp_lcore.c) so that this file needs no rte_mbuf. A checksum whose pair has
 * neither bit set (DP_RX_CKSUM_UNKNOWN: af_packet, or a port without the offload) is verified in
 * software; GOOD skips that work, BAD drops the frame under the checksum's counter. The L4 pair
 * applies to UDP only (ports do not verify ICMP).
 */
#define DP_RX_CKSUM_UNKNOWN 0u
#define DP_RX_IP_CKSUM_GOOD (1u << 0)
#define DP_RX_IP_CKSUM_BAD (1u << 1)
#define DP_RX_L4_CKSUM_GOOD (1u << 2)
#define DP_RX_L4_CKSUM_BAD (1u << 3)

/* Who we are on the wire. Addresses in network byte order. */
struct dp_self {
	struct rte_ether_addr mac;
	rte_be32_t ip;
	rte_be16_t udp_port;
};

/* What classification learned about a frame. */
struct dp_frame_info {
	uint16_t l3_offset;       /* bytes of Ethernet header: 14, or 18 with an 802.1Q tag */
	uint16_t l4_offset;       /* l3_offset + IPv4 header with options */
	uint16_t payload_offset;  /* where the UDP payload starts */
	uint16_t payload_size;    /* UDP payload bytes (may be 0) */
	rte_be32_t src_ip;        /* the sender's IPv4 address (ARP: its sender address), for the allow-list */
	enum dp_drop drop;        /* set when the verdict is DP_VERDICT_DROP */
};

/*
 * Classify one frame by its headers; `rx_flags` as above. Every drop reason but DP_DROP_ACL and
 * DP_DROP_MULTI_SEGMENT comes from here, one per frame, checked in wire order (L2, then IPv4, then
 * L4), so that a frame with several faults is counted under the outermost one.
 *
 * Lengths: the IPv4 total length must fit in the frame (bytes after it are Ethernet padding or a
 * trailer, ignored). The UDP length must cover its own header and fit in the IPv4 payload; bytes of
 * the IPv4 payload after it are ignored (RFC 768 lets the UDP length be the authority, Linux does
 * the same, and that surplus area is where UDP options live), so the request is what UDP says.
 */
enum dp_verdict dp_classify(const struct dp_self *self, const uint8_t *frame, uint32_t frame_size,
			    uint32_t rx_flags, struct dp_frame_info *info);

/*
 * The same for a frame split between two memories (cuda-gpudirect: the port writes the headers to
 * host memory and the payload to GPU memory): only the first `head_size` bytes of the `frame_size`
 * are there for the CPU to read. Headers reaching past them drop the frame as DP_DROP_SPLIT_LAYOUT;
 * a UDP checksum the port did not verify over a payload past them drops it as DP_DROP_UDP_UNVERIFIED
 * (the rx lcore never reads device memory). Where the payload lies is the caller's to check.
 */
enum dp_verdict dp_classify_split(const struct dp_self *self, const uint8_t *frame, uint32_t head_size,
				  uint32_t frame_size, uint32_t rx_flags, struct dp_frame_info *info);

/* Turn an ARP request (classified as such) into our reply, in place. Returns the frame size. */
uint32_t dp_make_arp_reply(const struct dp_self *self, uint8_t *frame, const struct dp_frame_info *info);

/* Turn an ICMP echo request into the echo reply, in place. Returns the frame size. */
uint32_t dp_make_icmp_reply(const struct dp_self *self, uint8_t *frame, const struct dp_frame_info *info);

/*
 * Rewrite a request frame into the answer datagram: fresh Ethernet/IPv4 (no options)/UDP headers back
 * to the sender (an 802.1Q tag stays as it was), then `ans`. The frame buffer must hold
 * l3_offset + 28 + ans_size bytes (`frame_cap`). Returns the frame size, or 0 if it does not fit.
 */
uint32_t dp_make_udp_answer(const struct dp_self *self, uint8_t *frame, uint32_t frame_cap,
			    const struct dp_frame_info *info, const uint8_t *ans, uint32_t ans_size);

/* Bytes of the answer's headers for a request classified as info (L2 as received, IPv4, UDP). */
uint32_t dp_answer_header_size(const struct dp_frame_info *info);

/*
 * Zero-copy: the answer already lies at out + dp_answer_header_size(info); write its headers in front
 * of it, taking the addresses from the request frame `req`. Returns the frame size, or 0 if too large.
 */
uint32_t dp_make_udp_answer_headers(const struct dp_self *self, const uint8_t *req, const struct dp_frame_info *info,
				    uint8_t *out, uint32_t ans_size);

const char *dp_drop_key(enum dp_drop drop);

#endif /* DP_PARSE_H */

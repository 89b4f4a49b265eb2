/* SPDX-License-Identifier: MIT */
/*
 * test_parse.c: frame classification and the reply builders of dataplane/dp_parse.c, on frames built
 * by hand. No EAL: dp_parse works on plain byte buffers, and the DPDK checksum helpers used here to
 * verify the replies are inline.
 *
 * Frames are written byte by byte at their wire offsets (not through the DPDK header structs), so
 * a layout or byte-order mistake in dp_parse cannot cancel out against the same mistake here; the
 * checksums that go into them come from a local one's-complement sum, and the ones that come out are
 * verified with DPDK's. Every frame handed to the code under test is copied into an allocation of
 * exactly its size, so a read past the frame is an ASan error in the sanitized build.
 *
 * 802.1Q-tagged frames are the untagged ones with a tag inserted after the MAC addresses (tag_frame),
 * so every builder serves both. `rx_flags` (what the port verified) is UNKNOWN unless a case says
 * otherwise, so the checksums are verified in software as on af_packet.
 *
 * Exit status: 0 all checks passed, 1 a check failed.
 */
/* rte_ipv4_udptcp_cksum_verify is still marked experimental in DPDK 22.11. */
#define ALLOW_EXPERIMENTAL_API 1

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_udp.h>

#include "dp_parse.h"

#define TEST_NAME "test_parse"

/* ---- checks ---------------------------------------------------------------------------------- */

#include "zh_check.h"


/* ---- frames on the wire ---------------------------------------------------------------------- */

/* Wire offsets (RFC 791, 768, 792, 826). */
#define ETH_DST 0
#define ETH_SRC 6
#define ETH_TYPE 12
#define ETH_HDR 14u
#define VLAN_TAG 4u
#define ETH_VLAN_HDR (ETH_HDR + VLAN_TAG)
#define IPH_VIHL 0
#define IPH_TOTLEN 2
#define IPH_ID 4
#define IPH_FRAG 6
#define IPH_TTL 8
#define IPH_PROTO 9
#define IPH_CSUM 10
#define IPH_SRC 12
#define IPH_DST 16
#define UDP_SPORT 0
#define UDP_DPORT 2
#define UDP_LEN 4
#define UDP_CSUM 6
#define UDP_HDR 8u
#define ICMP_TYPE 0
#define ICMP_CODE 1
#define ICMP_CSUM 2
#define ICMP_IDENT 4
#define ICMP_SEQ 6
#define ARP_HTYPE 0
#define ARP_PTYPE 2
#define ARP_HLEN 4
#define ARP_PLEN 5
#define ARP_OP 6
#define ARP_SHA 8
#define ARP_SPA 14
#define ARP_THA 18
#define ARP_TPA 24
#define ARP_SIZE 28u

#define FRAME_MAX 2048u

static const uint8_t our_mac[6] = { 0x02, 0x5a, 0x48, 0x00, 0x00, 0x01 };
static const uint8_t peer_mac[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };
static const uint8_t other_mac[6] = { 0x02, 0x99, 0x88, 0x77, 0x66, 0x55 };
#define OUR_IP RTE_IPV4(10, 20, 0, 1)
#define PEER_IP RTE_IPV4(10, 20, 0, 2)
#define OTHER_IP RTE_IPV4(10, 20, 0, 3)
#define OUR_PORT 7600u
#define PEER_PORT 40123u

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

/* One's-complement sum of big-endian 16-bit words (RFC 1071), unfolded. */
static uint32_t sum_words(const uint8_t *p, size_t n, uint32_t sum)
{
	for (size_t i = 0; i + 1 < n; i += 2)
		sum += get16(p + i);
	if (n & 1)
		sum += (uint32_t)p[n - 1] << 8;
	return sum;
}

static uint16_t fold_complement(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* The UDP checksum over the IPv4 pseudo-header and the datagram (checksum field included). */
static uint16_t udp_checksum(const uint8_t *ip, const uint8_t *udp, uint16_t udp_len)
{
	uint32_t sum = sum_words(ip + IPH_SRC, 8, 0);

	sum += 17 + udp_len;
	return fold_complement(sum_words(udp, udp_len, sum));
}

static void ip_fix_checksum(uint8_t *frame)
{
	uint8_t *ip = frame + ETH_HDR;
	uint32_t hdr = (uint32_t)(ip[IPH_VIHL] & 0x0f) * 4;

	put16(ip + IPH_CSUM, 0);
	put16(ip + IPH_CSUM, fold_complement(sum_words(ip, hdr, 0)));
}

/* What a test frame carries; every field can be bent to make a bad one. */
struct spec {
	const uint8_t *src_mac;
	const uint8_t *dst_mac;
	uint16_t ether_type;
	uint32_t src_ip;
	uint32_t dst_ip;
	uint32_t ihl;        /* 32-bit words of IPv4 header, options filled with NOP */
	uint8_t proto;
	uint16_t frag;       /* flags and fragment offset as on the wire */
	uint16_t sport;
	uint16_t dport;
	uint32_t payload_len;
	uint32_t pad;        /* Ethernet padding after the datagram */
	uint8_t payload_seed;
};

static struct spec udp_spec(uint32_t payload_len)
{
	return (struct spec){
		.src_mac = peer_mac,
		.dst_mac = our_mac,
		.ether_type = RTE_ETHER_TYPE_IPV4,
		.src_ip = PEER_IP,
		.dst_ip = OUR_IP,
		.ihl = 5,
		.proto = IPPROTO_UDP,
		.frag = RTE_IPV4_HDR_DF_FLAG,
		.sport = PEER_PORT,
		.dport = OUR_PORT,
		.payload_len = payload_len,
		.payload_seed = 0x40,
	};
}

static void payload_fill(uint8_t *p, uint32_t n, uint8_t seed)
{
	for (uint32_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + i * 7);
}

static void put_eth(uint8_t *f, const struct spec *s)
{
	memcpy(f + ETH_DST, s->dst_mac, 6);
	memcpy(f + ETH_SRC, s->src_mac, 6);
	put16(f + ETH_TYPE, s->ether_type);
}

/* Ethernet + IPv4 with `l4_len` bytes of L4 to follow; returns the L4 offset. */
static uint32_t put_ipv4(uint8_t *f, const struct spec *s, uint32_t l4_len)
{
	uint8_t *ip = f + ETH_HDR;
	uint32_t hdr = s->ihl * 4;

	put_eth(f, s);
	ip[IPH_VIHL] = (uint8_t)(0x40 | s->ihl);
	ip[1] = 0;
	put16(ip + IPH_TOTLEN, (uint16_t)(hdr + l4_len));
	put16(ip + IPH_ID, 0x1234);
	put16(ip + IPH_FRAG, s->frag);
	ip[IPH_TTL] = 61;
	ip[IPH_PROTO] = s->proto;
	put32(ip + IPH_SRC, s->src_ip);
	put32(ip + IPH_DST, s->dst_ip);
	memset(ip + 20, 0x01, hdr > 20 ? hdr - 20 : 0); /* NOP options */
	ip_fix_checksum(f);
	return ETH_HDR + hdr;
}

/* A UDP datagram with a correct UDP checksum; returns the frame size, padding included. */
static uint32_t build_udp(uint8_t *f, const struct spec *s)
{
	uint32_t l4 = put_ipv4(f, s, UDP_HDR + s->payload_len);
	uint8_t *udp = f + l4;

	put16(udp + UDP_SPORT, s->sport);
	put16(udp + UDP_DPORT, s->dport);
	put16(udp + UDP_LEN, (uint16_t)(UDP_HDR + s->payload_len));
	put16(udp + UDP_CSUM, 0);
	payload_fill(udp + UDP_HDR, s->payload_len, s->payload_seed);
	put16(udp + UDP_CSUM, udp_checksum(f + ETH_HDR, udp, (uint16_t)(UDP_HDR + s->payload_len)));
	memset(udp + UDP_HDR + s->payload_len, 0xee, s->pad);
	return l4 + UDP_HDR + s->payload_len + s->pad;
}

/* An ICMP message (type, code, ident, seq, data) with a correct ICMP checksum. */
static uint32_t build_icmp(uint8_t *f, struct spec *s, uint8_t type, uint8_t code, uint32_t data_len)
{
	s->proto = IPPROTO_ICMP;
	uint32_t l4 = put_ipv4(f, s, 8 + data_len);
	uint8_t *icmp = f + l4;

	icmp[ICMP_TYPE] = type;
	icmp[ICMP_CODE] = code;
	put16(icmp + ICMP_CSUM, 0);
	put16(icmp + ICMP_IDENT, 0xbeef);
	put16(icmp + ICMP_SEQ, 42);
	payload_fill(icmp + 8, data_len, 0x10);
	put16(icmp + ICMP_CSUM, fold_complement(sum_words(icmp, 8 + data_len, 0)));
	memset(icmp + 8 + data_len, 0xee, s->pad);
	return l4 + 8 + data_len + s->pad;
}

/* An Ethernet/IPv4 ARP message, padded to the Ethernet minimum like a real one. */
static uint32_t build_arp(uint8_t *f, const uint8_t *src_mac, uint16_t op, uint32_t sender_ip, uint32_t target_ip)
{
	static const uint8_t broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t zero[6];
	uint8_t *arp = f + ETH_HDR;

	memcpy(f + ETH_DST, broadcast, 6);
	memcpy(f + ETH_SRC, src_mac, 6);
	put16(f + ETH_TYPE, RTE_ETHER_TYPE_ARP);
	put16(arp + ARP_HTYPE, 1);
	put16(arp + ARP_PTYPE, RTE_ETHER_TYPE_IPV4);
	arp[ARP_HLEN] = 6;
	arp[ARP_PLEN] = 4;
	put16(arp + ARP_OP, op);
	memcpy(arp + ARP_SHA, src_mac, 6);
	put32(arp + ARP_SPA, sender_ip);
	memcpy(arp + ARP_THA, zero, 6);
	put32(arp + ARP_TPA, target_ip);
	memset(arp + ARP_SIZE, 0, 60 - ETH_HDR - ARP_SIZE);
	return 60;
}

static struct dp_self self_of(const uint8_t *mac, uint32_t ip, uint16_t port)
{
	struct dp_self self;

	memcpy(self.mac.addr_bytes, mac, 6);
	self.ip = rte_cpu_to_be_32(ip);
	self.udp_port = rte_cpu_to_be_16(port);
	return self;
}

static struct dp_self ours(void)
{
	return self_of(our_mac, OUR_IP, OUR_PORT);
}

/* A copy in an allocation of exactly n bytes: reading past it is an ASan error. */
static uint8_t *dup_exact(const void *p, size_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	if (!q) {
		fprintf(stderr, "%s: out of memory\n", TEST_NAME);
		exit(1);
	}
	if (n)
		memcpy(q, p, n);
	return q;
}

static enum dp_verdict classify_flags(const struct dp_self *self, const uint8_t *frame, uint32_t size,
				      uint32_t rx_flags, struct dp_frame_info *info)
{
	uint8_t *copy = dup_exact(frame, size);
	enum dp_verdict v;

	memset(info, 0xa5, sizeof(*info));
	v = dp_classify(self, copy, size, rx_flags, info);
	free(copy);
	return v;
}

/* As af_packet delivers frames: the port verified no checksum. */
static enum dp_verdict classify_exact(const struct dp_self *self, const uint8_t *frame, uint32_t size,
				      struct dp_frame_info *info)
{
	return classify_flags(self, frame, size, DP_RX_CKSUM_UNKNOWN, info);
}

/* Which drop reasons some test produced; each one dp_classify can produce must come up. */
static uint32_t drops_seen;

/* A classification that must have dropped the frame for `want`. */
static void check_drop(int line, enum dp_verdict v, const struct dp_frame_info *info, enum dp_drop want)
{
	CHECK_U64_AT(line, v, DP_VERDICT_DROP);
	if (v == DP_VERDICT_DROP) {
		if (info->drop != want)
			check_failed(__FILE__, line, "drop %s, expected %s", dp_drop_key(info->drop), dp_drop_key(want));
		else
			checks_passed++;
		drops_seen |= 1u << info->drop;
	}
}

static void expect_drop_flags(int line, const uint8_t *frame, uint32_t size, uint32_t rx_flags, enum dp_drop want)
{
	struct dp_self self = ours();
	struct dp_frame_info info;
	enum dp_verdict v = classify_flags(&self, frame, size, rx_flags, &info);

	check_drop(line, v, &info, want);
}

#define EXPECT_DROP(frame, size, want) expect_drop_flags(__LINE__, frame, size, DP_RX_CKSUM_UNKNOWN, want)
#define EXPECT_DROP_FLAGS(frame, size, flags, want) expect_drop_flags(__LINE__, frame, size, flags, want)

/* Insert an 802.1Q (or other) tag after the MAC addresses of an n-byte frame; returns the new size. */
static uint32_t tag_frame(uint8_t *f, uint32_t n, uint16_t tpid, uint16_t tci)
{
	memmove(f + 2 * 6 + VLAN_TAG, f + 2 * 6, n - 2 * 6);
	put16(f + 12, tpid);
	put16(f + 14, tci);
	return n + VLAN_TAG;
}

/* Recompute the UDP checksum of an untagged IPv4 frame over the UDP length the frame now says. */
static void udp_fix_checksum(uint8_t *f)
{
	uint8_t *ip = f + ETH_HDR;
	uint8_t *udp = ip + (ip[IPH_VIHL] & 0x0f) * 4;

	put16(udp + UDP_CSUM, 0);
	put16(udp + UDP_CSUM, udp_checksum(ip, udp, get16(udp + UDP_LEN)));
}

/* ---- accepted frames ------------------------------------------------------------------------- */

/* Classify a request (behind an L2 header of l2 bytes) and check where its payload is. */
static void expect_request_l2(int line, const uint8_t *f, uint32_t size, uint32_t rx_flags, uint32_t l2,
			      uint32_t ihl, uint32_t payload_len)
{
	struct dp_self self = ours();
	struct dp_frame_info info;

	CHECK_U64_AT(line, classify_flags(&self, f, size, rx_flags, &info), DP_VERDICT_REQUEST);
	CHECK_U64_AT(line, info.l3_offset, l2);
	CHECK_U64_AT(line, info.l4_offset, l2 + ihl * 4);
	CHECK_U64_AT(line, info.payload_offset, l2 + ihl * 4 + UDP_HDR);
	CHECK_U64_AT(line, info.payload_size, payload_len);
	CHECK_U64_AT(line, rte_be_to_cpu_32(info.src_ip), PEER_IP);
}

static void expect_request(int line, const uint8_t *f, uint32_t size, uint32_t ihl, uint32_t payload_len)
{
	expect_request_l2(line, f, size, DP_RX_CKSUM_UNKNOWN, ETH_HDR, ihl, payload_len);
}

static void test_udp_request(void)
{
	static uint8_t f[FRAME_MAX];
	static const uint32_t sizes[] = { 0, 1, 2, 17, 100, 1000, 1472 };

	for (uint32_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct spec s = udp_spec(sizes[i]);
		uint32_t n = build_udp(f, &s);

		expect_request(__LINE__, f, n, 5, sizes[i]);
	}
	/* No UDP checksum (0) is allowed over IPv4; Don't Fragment is not a fragment. */
	struct spec s = udp_spec(10);
	uint32_t n = build_udp(f, &s);
	put16(f + ETH_HDR + 20 + UDP_CSUM, 0);
	expect_request(__LINE__, f, n, 5, 10);
	s.frag = 0;
	n = build_udp(f, &s);
	expect_request(__LINE__, f, n, 5, 10);
	/* A UDP length shorter than the IP payload: the datagram is what UDP says, its checksum covers
	 * that much, and the bytes after it in the IP payload are ignored (dp_parse.h). */
	s = udp_spec(10);
	n = build_udp(f, &s);
	put16(f + ETH_HDR + 20 + UDP_LEN, UDP_HDR + 5);
	udp_fix_checksum(f);
	expect_request(__LINE__, f, n, 5, 5);
	f[ETH_HDR + 20 + UDP_HDR + 5] ^= 0xff;
	f[ETH_HDR + 20 + UDP_HDR + 9] ^= 0xff;
	expect_request(__LINE__, f, n, 5, 5);
	put16(f + ETH_HDR + 20 + UDP_CSUM, 0);
	expect_request(__LINE__, f, n, 5, 5);
	/* A frame addressed to another MAC but our IP is still ours (the NIC filtered it already). */
	s = udp_spec(3);
	s.dst_mac = other_mac;
	n = build_udp(f, &s);
	expect_request(__LINE__, f, n, 5, 3);
}

/* Short frames are padded to 60 bytes on the wire: the frame may be longer than the datagram. */
static void test_ethernet_padding(void)
{
	static uint8_t f[FRAME_MAX];
	static const uint32_t payloads[] = { 0, 1, 10, 17 };

	for (uint32_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
		struct spec s = udp_spec(payloads[i]);

		s.pad = 60 - (ETH_HDR + 20 + UDP_HDR + payloads[i]);
		uint32_t n = build_udp(f, &s);
		CHECK_U64(n, 60);
		expect_request(__LINE__, f, n, 5, payloads[i]);
	}
	struct spec s = udp_spec(100);
	s.pad = 300;
	expect_request(__LINE__, f, build_udp(f, &s), 5, 100);
}

/* The TCI of the tagged test frames: priority 5, VLAN 1234, so that every bit of it is checked. */
#define TEST_TCI ((5u << 13) | 1234u)

/* Check an answer frame built by dp_make_udp_answer: back to the peer, `ans` as its payload, behind
 * an L2 header of l2 bytes (with l2 == ETH_VLAN_HDR, the request's tag is still in place). */
static void check_udp_answer(int line, const uint8_t *f, uint32_t size, uint32_t l2, const uint8_t *ans,
			     uint32_t ans_size)
{
	const uint8_t *ip = f + l2;
	const uint8_t *udp = ip + 20;

	CHECK_U64_AT(line, size, l2 + 20 + UDP_HDR + ans_size);
	CHECK_AT(line, memcmp(f + ETH_DST, peer_mac, 6) == 0 && memcmp(f + ETH_SRC, our_mac, 6) == 0);
	if (l2 == ETH_VLAN_HDR) {
		CHECK_U64_AT(line, get16(f + 12), RTE_ETHER_TYPE_VLAN);
		CHECK_U64_AT(line, get16(f + 14), TEST_TCI);
	}
	CHECK_U64_AT(line, get16(f + l2 - 2), RTE_ETHER_TYPE_IPV4);
	CHECK_U64_AT(line, ip[IPH_VIHL], 0x45);
	CHECK_U64_AT(line, get16(ip + IPH_TOTLEN), 20 + UDP_HDR + ans_size);
	CHECK_U64_AT(line, get16(ip + IPH_FRAG), RTE_IPV4_HDR_DF_FLAG);
	CHECK_AT(line, ip[IPH_TTL] > 0);
	CHECK_U64_AT(line, ip[IPH_PROTO], IPPROTO_UDP);
	CHECK_U64_AT(line, get32(ip + IPH_SRC), OUR_IP);
	CHECK_U64_AT(line, get32(ip + IPH_DST), PEER_IP);
	/* Both checksums, by DPDK's sums and by ours. */
	CHECK_U64_AT(line, rte_raw_cksum(ip, 20), 0xffff);
	CHECK_U64_AT(line, fold_complement(sum_words(ip, 20, 0)), 0);
	CHECK_U64_AT(line, get16(udp + UDP_SPORT), OUR_PORT);
	CHECK_U64_AT(line, get16(udp + UDP_DPORT), PEER_PORT);
	CHECK_U64_AT(line, get16(udp + UDP_LEN), UDP_HDR + ans_size);
	CHECK_AT(line, get16(udp + UDP_CSUM) != 0);
	CHECK_AT(line, rte_ipv4_udptcp_cksum_verify((const struct rte_ipv4_hdr *)ip, udp) == 0);
	CHECK_U64_AT(line, udp_checksum(ip, udp, (uint16_t)(UDP_HDR + ans_size)), 0);
	CHECK_AT(line, ans_size == 0 || memcmp(udp + UDP_HDR, ans, ans_size) == 0);

	/* From the peer's side the answer is a well-formed request to its port. */
	struct dp_self peer = self_of(peer_mac, PEER_IP, PEER_PORT);
	struct dp_frame_info info;
	CHECK_U64_AT(line, classify_exact(&peer, f, size, &info), DP_VERDICT_REQUEST);
	CHECK_U64_AT(line, info.l3_offset, l2);
	CHECK_U64_AT(line, info.payload_size, ans_size);
}

/* Answer a request (with `ihl` header words, tagged or not) in an allocation of exactly cap bytes. */
static void answer_case(int line, int tagged, uint32_t ihl, uint32_t req_payload, uint32_t ans_size)
{
	static uint8_t f[FRAME_MAX];
	static uint8_t ans[FRAME_MAX];
	struct dp_self self = ours();
	struct dp_frame_info info;
	struct spec s = udp_spec(req_payload);

	s.ihl = ihl;
	uint32_t n = build_udp(f, &s);
	uint32_t l2 = tagged ? ETH_VLAN_HDR : ETH_HDR;
	if (tagged)
		n = tag_frame(f, n, RTE_ETHER_TYPE_VLAN, TEST_TCI);
	CHECK_U64_AT(line, classify_exact(&self, f, n, &info), DP_VERDICT_REQUEST);
	CHECK_U64_AT(line, info.l4_offset, l2 + ihl * 4);
	payload_fill(ans, ans_size, 0x90);

	uint32_t need = l2 + 20 + UDP_HDR + ans_size;
	/* The request's frame buffer, as large as the answer needs and no larger. */
	uint32_t cap = need > n ? need : n;
	uint8_t *buf = calloc(1, cap);
	if (!buf) {
		CHECK_AT(line, !"calloc");
		return;
	}
	memcpy(buf, f, n);
	uint32_t size = dp_make_udp_answer(&self, buf, need, &info, ans, ans_size);
	check_udp_answer(line, buf, size, l2, ans, ans_size);
	free(buf);
}

/* Zero-copy: the answer already lies in another buffer, past room for its headers; the headers are
 * written in front of it from the request, which stays as it was. */
static void answer_headers_case(int line, int tagged, uint32_t ihl, uint32_t ans_size)
{
	static uint8_t f[FRAME_MAX];
	static uint8_t ans[FRAME_MAX];
	struct dp_self self = ours();
	struct dp_frame_info info;
	struct spec s = udp_spec(50);

	s.ihl = ihl;
	uint32_t n = build_udp(f, &s);
	uint32_t l2 = tagged ? ETH_VLAN_HDR : ETH_HDR;
	if (tagged)
		n = tag_frame(f, n, RTE_ETHER_TYPE_VLAN, TEST_TCI);
	CHECK_U64_AT(line, classify_exact(&self, f, n, &info), DP_VERDICT_REQUEST);
	uint32_t hdr = dp_answer_header_size(&info);
	CHECK_U64_AT(line, hdr, l2 + 20 + UDP_HDR);
	payload_fill(ans, ans_size, 0x33);

	uint8_t *req = dup_exact(f, n);
	uint8_t *out = calloc(1, hdr + ans_size);
	if (!out) {
		CHECK_AT(line, !"calloc");
		free(req);
		return;
	}
	memcpy(out + hdr, ans, ans_size);
	uint32_t size = dp_make_udp_answer_headers(&self, req, &info, out, ans_size);
	check_udp_answer(line, out, size, l2, ans, ans_size);
	CHECK_AT(line, memcmp(req, f, n) == 0);
	free(out);
	free(req);
}

static void test_udp_answer(void)
{
	/* Options in the request (ihl 6 and the largest, 15): the answer has a plain 20-byte header. */
	static const uint32_t ihls[] = { 5, 6, 15 };
	static const uint32_t ans_sizes[] = { 0, 1, 9, 200, 1472 };
	struct dp_self self = ours();
	struct dp_frame_info info;
	static uint8_t f[FRAME_MAX];

	for (uint32_t i = 0; i < sizeof(ihls) / sizeof(ihls[0]); i++) {
		struct spec s = udp_spec(33);

		s.ihl = ihls[i];
		expect_request(__LINE__, f, build_udp(f, &s), ihls[i], 33);
		for (uint32_t k = 0; k < sizeof(ans_sizes) / sizeof(ans_sizes[0]); k++) {
			for (int tagged = 0; tagged <= 1; tagged++) {
				answer_case(__LINE__, tagged, ihls[i], 33, ans_sizes[k]);
				answer_case(__LINE__, tagged, ihls[i], 1400, ans_sizes[k]);
				answer_headers_case(__LINE__, tagged, ihls[i], ans_sizes[k]);
			}
		}
	}

	/* One byte short of room: nothing is built and the frame is left as it was. */
	struct spec s = udp_spec(20);
	s.ihl = 6;
	uint32_t n = build_udp(f, &s);
	CHECK_U64(classify_exact(&self, f, n, &info), DP_VERDICT_REQUEST);
	uint8_t ans[100];
	payload_fill(ans, sizeof(ans), 1);
	uint32_t need = ETH_HDR + 20 + UDP_HDR + sizeof(ans);
	uint8_t *buf = malloc(need - 1);
	uint8_t *before = malloc(need - 1);
	if (buf && before) {
		memset(buf, 0x77, need - 1);
		memcpy(buf, f, n);
		memcpy(before, buf, need - 1);
		CHECK_U64(dp_make_udp_answer(&self, buf, need - 1, &info, ans, sizeof(ans)), 0);
		CHECK(memcmp(buf, before, need - 1) == 0);
		CHECK_U64(dp_make_udp_answer(&self, buf, 0, &info, ans, sizeof(ans)), 0);
	}
	free(buf);
	free(before);
}

static void test_arp(void)
{
	static uint8_t f[FRAME_MAX];
	struct dp_self self = ours();
	struct dp_frame_info info;
	uint32_t n = build_arp(f, peer_mac, RTE_ARP_OP_REQUEST, PEER_IP, OUR_IP);

	CHECK_U64(classify_exact(&self, f, n, &info), DP_VERDICT_ARP_REQUEST);
	/* Without the Ethernet padding, exactly the ARP message. */
	CHECK_U64(classify_exact(&self, f, ETH_HDR + ARP_SIZE, &info), DP_VERDICT_ARP_REQUEST);

	CHECK_U64(classify_exact(&self, f, n, &info), DP_VERDICT_ARP_REQUEST);
	CHECK_U64(rte_be_to_cpu_32(info.src_ip), PEER_IP);
	uint8_t *buf = dup_exact(f, n);
	uint32_t size = dp_make_arp_reply(&self, buf, &info);
	const uint8_t *arp = buf + ETH_HDR;

	CHECK_U64(size, ETH_HDR + ARP_SIZE);
	CHECK(memcmp(buf + ETH_DST, peer_mac, 6) == 0);
	CHECK(memcmp(buf + ETH_SRC, our_mac, 6) == 0);
	CHECK_U64(get16(buf + ETH_TYPE), RTE_ETHER_TYPE_ARP);
	CHECK_U64(get16(arp + ARP_HTYPE), 1);
	CHECK_U64(get16(arp + ARP_PTYPE), RTE_ETHER_TYPE_IPV4);
	CHECK(arp[ARP_HLEN] == 6 && arp[ARP_PLEN] == 4);
	CHECK_U64(get16(arp + ARP_OP), RTE_ARP_OP_REPLY);
	CHECK(memcmp(arp + ARP_SHA, our_mac, 6) == 0);
	CHECK_U64(get32(arp + ARP_SPA), OUR_IP);
	CHECK(memcmp(arp + ARP_THA, peer_mac, 6) == 0);
	CHECK_U64(get32(arp + ARP_TPA), PEER_IP);
	/* The reply is no request: classified again, it is dropped. */
	CHECK_U64(classify_exact(&self, buf, size, &info), DP_VERDICT_DROP);
	CHECK_U64(info.drop, DP_DROP_ARP_OTHER);
	free(buf);

	/* ARP that is not a request for us. */
	EXPECT_DROP(f, build_arp(f, peer_mac, RTE_ARP_OP_REQUEST, PEER_IP, OTHER_IP), DP_DROP_ARP_OTHER);
	EXPECT_DROP(f, build_arp(f, peer_mac, RTE_ARP_OP_REPLY, PEER_IP, OUR_IP), DP_DROP_ARP_OTHER);
	/* A gratuitous announcement of the peer's own address. */
	EXPECT_DROP(f, build_arp(f, peer_mac, RTE_ARP_OP_REQUEST, PEER_IP, PEER_IP), DP_DROP_ARP_OTHER);
	static const struct {
		uint32_t offset;
		uint32_t width;
		uint32_t value;
	} bent[] = {
		{ ARP_HTYPE, 2, 6 }, { ARP_PTYPE, 2, RTE_ETHER_TYPE_IPV6 }, { ARP_HLEN, 1, 8 }, { ARP_PLEN, 1, 16 },
		{ ARP_OP, 2, 3 },
	};
	for (uint32_t i = 0; i < sizeof(bent) / sizeof(bent[0]); i++) {
		n = build_arp(f, peer_mac, RTE_ARP_OP_REQUEST, PEER_IP, OUR_IP);
		if (bent[i].width == 2)
			put16(f + ETH_HDR + bent[i].offset, (uint16_t)bent[i].value);
		else
			f[ETH_HDR + bent[i].offset] = (uint8_t)bent[i].value;
		EXPECT_DROP(f, n, DP_DROP_ARP_OTHER);
	}
	/* Cut short anywhere inside the ARP message. */
	n = build_arp(f, peer_mac, RTE_ARP_OP_REQUEST, PEER_IP, OUR_IP);
	for (uint32_t cut = ETH_HDR; cut < ETH_HDR + ARP_SIZE; cut++)
		EXPECT_DROP(f, cut, DP_DROP_ARP_OTHER);
}

static void test_icmp(void)
{
	static const uint32_t data_lens[] = { 0, 1, 56, 57, 1000 };
	static const uint32_t ihls[] = { 5, 6 };
	static uint8_t f[FRAME_MAX];
	struct dp_self self = ours();
	struct dp_frame_info info;

	for (uint32_t h = 0; h < sizeof(ihls) / sizeof(ihls[0]); h++) {
		for (uint32_t i = 0; i < sizeof(data_lens) / sizeof(data_lens[0]); i++) {
			struct spec s = udp_spec(0);
			uint32_t len = data_lens[i];

			s.ihl = ihls[h];
			/* Padded when short, as on the wire; the ICMP size comes from the IP header. */
			s.pad = len < 18 ? 10 : 0;
			uint32_t n = build_icmp(f, &s, RTE_IP_ICMP_ECHO_REQUEST, 0, len);
			uint32_t l4 = ETH_HDR + ihls[h] * 4;

			CHECK_U64(classify_exact(&self, f, n, &info), DP_VERDICT_ICMP_ECHO);
			CHECK_U64(info.l4_offset, l4);
			CHECK_U64(info.payload_offset, l4);
			CHECK_U64(info.payload_size, 8 + len);

			uint8_t *buf = dup_exact(f, n);
			uint32_t size = dp_make_icmp_reply(&self, buf, &info);
			const uint8_t *ip = buf + ETH_HDR;
			const uint8_t *icmp = buf + l4;

			CHECK_U64(size, l4 + 8 + len);
			CHECK(memcmp(buf + ETH_DST, peer_mac, 6) == 0 && memcmp(buf + ETH_SRC, our_mac, 6) == 0);
			CHECK_U64(get32(ip + IPH_SRC), OUR_IP);
			CHECK_U64(get32(ip + IPH_DST), PEER_IP);
			CHECK_U64(get16(ip + IPH_TOTLEN), ihls[h] * 4 + 8 + len);
			CHECK(ip[IPH_TTL] > 0);
			CHECK_U64(rte_raw_cksum(ip, ihls[h] * 4), 0xffff);
			CHECK_U64(fold_complement(sum_words(ip, ihls[h] * 4, 0)), 0);
			CHECK_U64(icmp[ICMP_TYPE], RTE_IP_ICMP_ECHO_REPLY);
			CHECK_U64(icmp[ICMP_CODE], 0);
			CHECK_U64(rte_raw_cksum(icmp, 8 + len), 0xffff);
			CHECK_U64(fold_complement(sum_words(icmp, 8 + len, 0)), 0);
			/* Identifier, sequence and data come back unchanged. */
			CHECK(memcmp(icmp + ICMP_IDENT, f + l4 + ICMP_IDENT, 4 + len) == 0);
			free(buf);
		}
	}

	struct spec s = udp_spec(0);
	/* An echo reply, another type, a non-zero code, a wrong checksum, less than a header. */
	EXPECT_DROP(f, build_icmp(f, &s, RTE_IP_ICMP_ECHO_REPLY, 0, 8), DP_DROP_ICMP_OTHER);
	EXPECT_DROP(f, build_icmp(f, &s, 13, 0, 12), DP_DROP_ICMP_OTHER);
	EXPECT_DROP(f, build_icmp(f, &s, RTE_IP_ICMP_ECHO_REQUEST, 1, 8), DP_DROP_ICMP_OTHER);
	uint32_t n = build_icmp(f, &s, RTE_IP_ICMP_ECHO_REQUEST, 0, 8);
	f[ETH_HDR + 20 + ICMP_CSUM] ^= 0x01;
	EXPECT_DROP(f, n, DP_DROP_ICMP_OTHER);
	n = build_icmp(f, &s, RTE_IP_ICMP_ECHO_REQUEST, 0, 8);
	f[ETH_HDR + 20 + 8 + 3] ^= 0x80; /* data changed after the checksum */
	EXPECT_DROP(f, n, DP_DROP_ICMP_OTHER);
	for (uint32_t icmp_len = 0; icmp_len < 8; icmp_len++) {
		n = build_icmp(f, &s, RTE_IP_ICMP_ECHO_REQUEST, 0, 0);
		put16(f + ETH_HDR + IPH_TOTLEN, (uint16_t)(20 + icmp_len));
		ip_fix_checksum(f);
		EXPECT_DROP(f, ETH_HDR + 20 + icmp_len, DP_DROP_ICMP_OTHER);
	}
}

/* ---- dropped frames -------------------------------------------------------------------------- */

static void test_drop_l2(void)
{
	static uint8_t f[FRAME_MAX];
	struct spec s = udp_spec(10);
	uint32_t n = build_udp(f, &s);

	/* Shorter than an Ethernet header. */
	for (uint32_t size = 0; size < ETH_HDR; size++)
		EXPECT_DROP(f, size, DP_DROP_RUNT);

	/* Group (multicast or broadcast) source addresses, on a request and on ARP. */
	static const uint8_t group_macs[][6] = {
		{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff },
		{ 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 },
		{ 0x33, 0x33, 0x00, 0x00, 0x00, 0x01 },
		{ 0x03, 0x11, 0x22, 0x33, 0x44, 0x55 },
	};
	for (uint32_t i = 0; i < sizeof(group_macs) / sizeof(group_macs[0]); i++) {
		s = udp_spec(10);
		s.src_mac = group_macs[i];
		EXPECT_DROP(f, build_udp(f, &s), DP_DROP_BAD_SOURCE);
		EXPECT_DROP(f, build_arp(f, group_macs[i], RTE_ARP_OP_REQUEST, PEER_IP, OUR_IP), DP_DROP_BAD_SOURCE);
	}

	/* Other EtherTypes: LLDP, RARP, zero, IPv4 byte-swapped; a bare header too. (IPv6 and tags have
	 * counters of their own: test_ipv6, test_vlan.) */
	static const uint16_t types[] = { RTE_ETHER_TYPE_LLDP, RTE_ETHER_TYPE_RARP, 0x0000,
					  (uint16_t)((RTE_ETHER_TYPE_IPV4 << 8) | (RTE_ETHER_TYPE_IPV4 >> 8)) };
	for (uint32_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		s = udp_spec(10);
		n = build_udp(f, &s);
		put16(f + ETH_TYPE, types[i]);
		EXPECT_DROP(f, n, DP_DROP_NOT_IPV4);
		EXPECT_DROP(f, ETH_HDR, DP_DROP_NOT_IPV4);
	}
}

static void test_drop_ip(void)
{
	static uint8_t f[FRAME_MAX];
	struct spec s = udp_spec(10);
	uint32_t n;
	uint8_t *ip = f + ETH_HDR;

	/* The IPv4 EtherType with less than an IPv4 header after it. */
	n = build_udp(f, &s);
	for (uint32_t size = ETH_HDR; size < ETH_HDR + 20; size++)
		EXPECT_DROP(f, size, DP_DROP_IP_BAD_HEADER);
	/* Version 6 (or 0) behind the IPv4 EtherType. */
	static const uint8_t vihls[] = { 0x65, 0x05, 0x55, 0x44, 0x40 };
	for (uint32_t i = 0; i < sizeof(vihls) / sizeof(vihls[0]); i++) {
		n = build_udp(f, &s);
		ip[IPH_VIHL] = vihls[i];
		ip_fix_checksum(f);
		EXPECT_DROP(f, n, DP_DROP_IP_BAD_HEADER);
	}
	/* Total length past the end of the frame, and shorter than the header it claims. */
	n = build_udp(f, &s);
	EXPECT_DROP(f, n - 1, DP_DROP_IP_BAD_HEADER);
	put16(ip + IPH_TOTLEN, (uint16_t)(get16(ip + IPH_TOTLEN) + 1));
	ip_fix_checksum(f);
	EXPECT_DROP(f, n, DP_DROP_IP_BAD_HEADER);
	put16(ip + IPH_TOTLEN, 0xffff);
	ip_fix_checksum(f);
	EXPECT_DROP(f, n, DP_DROP_IP_BAD_HEADER);
	static const uint16_t short_totals[] = { 0, 19 };
	for (uint32_t i = 0; i < sizeof(short_totals) / sizeof(short_totals[0]); i++) {
		n = build_udp(f, &s);
		put16(ip + IPH_TOTLEN, short_totals[i]);
		ip_fix_checksum(f);
		EXPECT_DROP(f, n, DP_DROP_IP_BAD_HEADER);
	}
	s.ihl = 15;
	n = build_udp(f, &s);
	put16(ip + IPH_TOTLEN, 59);
	ip_fix_checksum(f);
	EXPECT_DROP(f, n, DP_DROP_IP_BAD_HEADER);
	/* A well-formed header with options, cut inside the options. */
	n = build_udp(f, &s);
	EXPECT_DROP(f, ETH_HDR + 40, DP_DROP_IP_BAD_HEADER);
	s.ihl = 5;

	/* Checksum: the field wrong, or a header byte changed after it was computed. */
	n = build_udp(f, &s);
	ip[IPH_CSUM + 1] ^= 0x01;
	EXPECT_DROP(f, n, DP_DROP_IP_BAD_CHECKSUM);
	n = build_udp(f, &s);
	ip[IPH_TTL]--;
	EXPECT_DROP(f, n, DP_DROP_IP_BAD_CHECKSUM);
	s.ihl = 6;
	n = build_udp(f, &s);
	ip[21] = 0x00; /* an option byte, covered by the checksum too */
	EXPECT_DROP(f, n, DP_DROP_IP_BAD_CHECKSUM);
	s.ihl = 5;

	/* Not our address: a neighbour's, broadcast, our address byte-swapped. */
	static const uint32_t not_ours[] = { OTHER_IP, 0xffffffffu, RTE_IPV4(1, 0, 20, 10) };
	for (uint32_t i = 0; i < sizeof(not_ours) / sizeof(not_ours[0]); i++) {
		s.dst_ip = not_ours[i];
		EXPECT_DROP(f, build_udp(f, &s), DP_DROP_IP_NOT_FOR_US);
		s = udp_spec(10);
		s.dst_ip = not_ours[i];
		EXPECT_DROP(f, build_icmp(f, &s, RTE_IP_ICMP_ECHO_REQUEST, 0, 8), DP_DROP_IP_NOT_FOR_US);
		s = udp_spec(10);
	}

	/* Fragments: more-fragments set, a non-zero offset, both. */
	static const uint16_t frags[] = { RTE_IPV4_HDR_MF_FLAG, 185, RTE_IPV4_HDR_MF_FLAG | 1,
					  RTE_IPV4_HDR_DF_FLAG | 1, RTE_IPV4_HDR_OFFSET_MASK };
	for (uint32_t i = 0; i < sizeof(frags) / sizeof(frags[0]); i++) {
		s.frag = frags[i];
		EXPECT_DROP(f, build_udp(f, &s), DP_DROP_IP_FRAGMENT);
	}
	s = udp_spec(10);

	/* Protocols other than UDP and ICMP. */
	static const uint8_t protos[] = { IPPROTO_TCP, IPPROTO_IGMP, 41, 253 };
	for (uint32_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++) {
		s.proto = protos[i];
		EXPECT_DROP(f, build_udp(f, &s), DP_DROP_IP_OTHER_PROTO);
	}
}

static void test_drop_udp(void)
{
	static uint8_t f[FRAME_MAX];
	struct spec s = udp_spec(10);
	uint8_t *udp = f + ETH_HDR + 20;
	uint32_t n;

	/* UDP length under its own header, or past the IP payload. */
	static const uint16_t bad_lens[] = { 0, 7, UDP_HDR + 11, 0xffff };
	for (uint32_t i = 0; i < sizeof(bad_lens) / sizeof(bad_lens[0]); i++) {
		n = build_udp(f, &s);
		put16(udp + UDP_LEN, bad_lens[i]);
		EXPECT_DROP(f, n, DP_DROP_UDP_BAD_LENGTH);
	}
	/* An IP payload too short for a UDP header. */
	for (uint32_t l4 = 0; l4 < UDP_HDR; l4++) {
		n = build_udp(f, &s);
		put16(f + ETH_HDR + IPH_TOTLEN, (uint16_t)(20 + l4));
		ip_fix_checksum(f);
		EXPECT_DROP(f, ETH_HDR + 20 + l4, DP_DROP_UDP_BAD_LENGTH);
	}
	/* Someone else's port, including ours byte-swapped; and a datagram from our port to theirs. */
	static const uint16_t ports[] = { 53, 0, (uint16_t)((OUR_PORT << 8 | OUR_PORT >> 8) & 0xffff), OUR_PORT + 1 };
	for (uint32_t i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		s.dport = ports[i];
		EXPECT_DROP(f, build_udp(f, &s), DP_DROP_UDP_OTHER_PORT);
	}
	s = udp_spec(10);
	s.sport = OUR_PORT;
	s.dport = PEER_PORT;
	EXPECT_DROP(f, build_udp(f, &s), DP_DROP_UDP_OTHER_PORT);
}

/* ---- 802.1Q, IPv6, checksums and the port's verdicts ----------------------------------------- */

/* One 802.1Q tag: requests, ARP and ICMP are classified behind it, and every answer keeps it. */
static void test_vlan(void)
{
	static uint8_t f[FRAME_MAX];
	static const uint16_t tcis[] = { TEST_TCI, 0, 1, 0x0fff, 0xffff };
	struct dp_self self = ours();
	struct dp_frame_info info;
	struct spec s;
	uint32_t n;

	/* Any VLAN id and priority, the priority-only tag (VLAN 0) included; options and padding too. */
	for (uint32_t i = 0; i < sizeof(tcis) / sizeof(tcis[0]); i++) {
		s = udp_spec(17);
		n = tag_frame(f, build_udp(f, &s), RTE_ETHER_TYPE_VLAN, tcis[i]);
		expect_request_l2(__LINE__, f, n, DP_RX_CKSUM_UNKNOWN, ETH_VLAN_HDR, 5, 17);
	}
	s = udp_spec(0);
	s.ihl = 7;
	s.pad = 30;
	n = tag_frame(f, build_udp(f, &s), RTE_ETHER_TYPE_VLAN, TEST_TCI);
	expect_request_l2(__LINE__, f, n, DP_RX_CKSUM_UNKNOWN, ETH_VLAN_HDR, 7, 0);

	/* ARP behind the tag, and the reply with the tag in place. */
	n = tag_frame(f, build_arp(f, peer_mac, RTE_ARP_OP_REQUEST, PEER_IP, OUR_IP), RTE_ETHER_TYPE_VLAN, TEST_TCI);
	CHECK_U64(classify_exact(&self, f, n, &info), DP_VERDICT_ARP_REQUEST);
	CHECK_U64(info.l3_offset, ETH_VLAN_HDR);
	CHECK_U64(rte_be_to_cpu_32(info.src_ip), PEER_IP);
	CHECK_U64(classify_exact(&self, f, ETH_VLAN_HDR + ARP_SIZE, &info), DP_VERDICT_ARP_REQUEST);
	uint8_t *buf = dup_exact(f, n);
	uint32_t size = dp_make_arp_reply(&self, buf, &info);
	const uint8_t *arp = buf + ETH_VLAN_HDR;
	CHECK_U64(size, ETH_VLAN_HDR + ARP_SIZE);
	CHECK(memcmp(buf + ETH_DST, peer_mac, 6) == 0 && memcmp(buf + ETH_SRC, our_mac, 6) == 0);
	CHECK_U64(get16(buf + 12), RTE_ETHER_TYPE_VLAN);
	CHECK_U64(get16(buf + 14), TEST_TCI);
	CHECK_U64(get16(buf + 16), RTE_ETHER_TYPE_ARP);
	CHECK_U64(get16(arp + ARP_OP), RTE_ARP_OP_REPLY);
	CHECK(memcmp(arp + ARP_SHA, our_mac, 6) == 0);
	CHECK_U64(get32(arp + ARP_SPA), OUR_IP);
	CHECK(memcmp(arp + ARP_THA, peer_mac, 6) == 0);
	CHECK_U64(get32(arp + ARP_TPA), PEER_IP);
	free(buf);
	/* Tagged ARP cut inside the message. */
	for (uint32_t cut = ETH_VLAN_HDR; cut < ETH_VLAN_HDR + ARP_SIZE; cut++)
		EXPECT_DROP(f, cut, DP_DROP_ARP_OTHER);

	/* ICMP echo behind the tag (with an option), and the reply with the tag in place. */
	s = udp_spec(0);
	s.ihl = 6;
	n = tag_frame(f, build_icmp(f, &s, RTE_IP_ICMP_ECHO_REQUEST, 0, 21), RTE_ETHER_TYPE_VLAN, TEST_TCI);
	uint32_t l4 = ETH_VLAN_HDR + 24;
	CHECK_U64(classify_exact(&self, f, n, &info), DP_VERDICT_ICMP_ECHO);
	CHECK_U64(info.l3_offset, ETH_VLAN_HDR);
	CHECK_U64(info.l4_offset, l4);
	CHECK_U64(info.payload_size, 8 + 21);
	buf = dup_exact(f, n);
	size = dp_make_icmp_reply(&self, buf, &info);
	CHECK_U64(size, l4 + 8 + 21);
	CHECK(memcmp(buf + ETH_DST, peer_mac, 6) == 0 && memcmp(buf + ETH_SRC, our_mac, 6) == 0);
	CHECK_U64(get16(buf + 12), RTE_ETHER_TYPE_VLAN);
	CHECK_U64(get16(buf + 14), TEST_TCI);
	CHECK_U64(get16(buf + 16), RTE_ETHER_TYPE_IPV4);
	CHECK_U64(get32(buf + ETH_VLAN_HDR + IPH_SRC), OUR_IP);
	CHECK_U64(get32(buf + ETH_VLAN_HDR + IPH_DST), PEER_IP);
	CHECK_U64(rte_raw_cksum(buf + ETH_VLAN_HDR, 24), 0xffff);
	CHECK_U64(buf[l4 + ICMP_TYPE], RTE_IP_ICMP_ECHO_REPLY);
	CHECK_U64(rte_raw_cksum(buf + l4, 8 + 21), 0xffff);
	free(buf);
}

/* Tagged frames that are dropped: each under the reason of what is inside, or of the tags. */
static void test_vlan_drops(void)
{
	static uint8_t f[FRAME_MAX];
	struct spec s = udp_spec(10);
	uint32_t n;

	/* The tag itself cut short: the Ethernet header is 18 bytes then. */
	n = tag_frame(f, build_udp(f, &s), RTE_ETHER_TYPE_VLAN, TEST_TCI);
	for (uint32_t size = ETH_HDR; size < ETH_VLAN_HDR; size++)
		EXPECT_DROP(f, size, DP_DROP_RUNT);
	/* Less than an IPv4 header behind the tag; total length past the frame. */
	for (uint32_t size = ETH_VLAN_HDR; size < ETH_VLAN_HDR + 20; size++)
		EXPECT_DROP(f, size, DP_DROP_IP_BAD_HEADER);
	EXPECT_DROP(f, n - 1, DP_DROP_IP_BAD_HEADER);
	/* Bad checksums behind the tag. */
	n = build_udp(f, &s);
	f[ETH_HDR + IPH_TTL]--;
	EXPECT_DROP(f, tag_frame(f, n, RTE_ETHER_TYPE_VLAN, TEST_TCI), DP_DROP_IP_BAD_CHECKSUM);
	n = build_udp(f, &s);
	f[n - 1] ^= 0x10;
	EXPECT_DROP(f, tag_frame(f, n, RTE_ETHER_TYPE_VLAN, TEST_TCI), DP_DROP_UDP_BAD_CHECKSUM);
	/* Other EtherTypes behind the tag. */
	n = build_udp(f, &s);
	put16(f + ETH_TYPE, RTE_ETHER_TYPE_LLDP);
	EXPECT_DROP(f, tag_frame(f, n, RTE_ETHER_TYPE_VLAN, TEST_TCI), DP_DROP_NOT_IPV4);
	n = build_udp(f, &s);
	put16(f + ETH_TYPE, RTE_ETHER_TYPE_IPV6);
	EXPECT_DROP(f, tag_frame(f, n, RTE_ETHER_TYPE_VLAN, TEST_TCI), DP_DROP_IPV6);
	/* A group source is refused before the tag is read. */
	s.src_mac = (const uint8_t[6]){ 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };
	EXPECT_DROP(f, tag_frame(f, build_udp(f, &s), RTE_ETHER_TYPE_VLAN, TEST_TCI), DP_DROP_BAD_SOURCE);
	s = udp_spec(10);

	/* Two tags (802.1Q in 802.1Q, 802.1ad in 802.1Q) and service tags outside (802.1ad, the old
	 * 0x9100), around IPv4 and around ARP; a service tag with nothing after it is one too. */
	static const uint16_t outer[] = { RTE_ETHER_TYPE_VLAN, RTE_ETHER_TYPE_VLAN, RTE_ETHER_TYPE_QINQ,
					  RTE_ETHER_TYPE_QINQ1 };
	static const uint16_t inner[] = { RTE_ETHER_TYPE_VLAN, RTE_ETHER_TYPE_QINQ, RTE_ETHER_TYPE_VLAN,
					  RTE_ETHER_TYPE_VLAN };
	for (uint32_t i = 0; i < sizeof(outer) / sizeof(outer[0]); i++) {
		n = tag_frame(f, build_udp(f, &s), inner[i], 7);
		EXPECT_DROP(f, tag_frame(f, n, outer[i], 8), DP_DROP_VLAN_NESTED);
		n = tag_frame(f, build_arp(f, peer_mac, RTE_ARP_OP_REQUEST, PEER_IP, OUR_IP), inner[i], 7);
		EXPECT_DROP(f, tag_frame(f, n, outer[i], 8), DP_DROP_VLAN_NESTED);
	}
	EXPECT_DROP(f, tag_frame(f, build_udp(f, &s), RTE_ETHER_TYPE_QINQ, 8), DP_DROP_VLAN_NESTED);
	EXPECT_DROP(f, tag_frame(f, build_udp(f, &s), RTE_ETHER_TYPE_QINQ1, 8), DP_DROP_VLAN_NESTED);
	n = build_udp(f, &s);
	put16(f + ETH_TYPE, RTE_ETHER_TYPE_QINQ);
	EXPECT_DROP(f, ETH_HDR, DP_DROP_VLAN_NESTED);
	/* An inner tag cut short is still two tags. */
	n = tag_frame(f, tag_frame(f, build_udp(f, &s), RTE_ETHER_TYPE_VLAN, 7), RTE_ETHER_TYPE_VLAN, 8);
	EXPECT_DROP(f, ETH_VLAN_HDR, DP_DROP_VLAN_NESTED);
}

/* IPv6 is not supported: counted under its own reason, tagged or not, whatever follows. */
static void test_ipv6(void)
{
	static uint8_t f[FRAME_MAX];
	struct spec s = udp_spec(10);
	uint32_t n = build_udp(f, &s);

	put16(f + ETH_TYPE, RTE_ETHER_TYPE_IPV6);
	f[ETH_HDR] = 0x60;
	EXPECT_DROP(f, n, DP_DROP_IPV6);
	EXPECT_DROP(f, ETH_HDR, DP_DROP_IPV6);
	EXPECT_DROP(f, ETH_HDR + 1, DP_DROP_IPV6);
	/* A version-6 header behind the IPv4 EtherType is a bad IPv4 header, not IPv6. */
	n = build_udp(f, &s);
	f[ETH_HDR + IPH_VIHL] = 0x65;
	ip_fix_checksum(f);
	EXPECT_DROP(f, n, DP_DROP_IP_BAD_HEADER);
}

/* The UDP checksum, verified in software (the port said nothing): present and wrong is dropped. */
static void test_udp_checksum(void)
{
	static uint8_t f[FRAME_MAX];
	static const uint32_t sizes[] = { 0, 1, 2, 3, 17, 1000, 1471, 1472 };
	uint8_t *udp = f + ETH_HDR + 20;
	struct spec s;
	uint32_t n;

	for (uint32_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		s = udp_spec(sizes[i]);
		n = build_udp(f, &s);
		expect_request(__LINE__, f, n, 5, sizes[i]);
		/* The field wrong by one bit. */
		udp[UDP_CSUM + 1] ^= 0x01;
		EXPECT_DROP(f, n, DP_DROP_UDP_BAD_CHECKSUM);
		udp[UDP_CSUM + 1] ^= 0x01;
		/* The last byte of the datagram changed (an odd last byte is summed as its high half). */
		if (sizes[i] > 0) {
			f[n - 1] ^= 0x01;
			EXPECT_DROP(f, n, DP_DROP_UDP_BAD_CHECKSUM);
			f[n - 1] ^= 0x01;
		}
		/* A pseudo-header field changed: the source address (IP checksum fixed, so only UDP's is off). */
		put32(f + ETH_HDR + IPH_SRC, OTHER_IP);
		ip_fix_checksum(f);
		EXPECT_DROP(f, n, DP_DROP_UDP_BAD_CHECKSUM);
		/* The same datagram without a checksum (0) is accepted. */
		put16(udp + UDP_CSUM, 0);
		struct dp_self self = ours();
		struct dp_frame_info info;
		CHECK_U64(classify_exact(&self, f, n, &info), DP_VERDICT_REQUEST);
		CHECK_U64(info.payload_size, sizes[i]);
	}
	/* Two words swapped keep the one's-complement sum; a word's bytes swapped do not. */
	s = udp_spec(20);
	n = build_udp(f, &s);
	uint8_t w[2];
	memcpy(w, udp + UDP_HDR, 2);
	memcpy(udp + UDP_HDR, udp + UDP_HDR + 2, 2);
	memcpy(udp + UDP_HDR + 2, w, 2);
	expect_request(__LINE__, f, n, 5, 20);
	n = build_udp(f, &s);
	w[0] = udp[UDP_HDR];
	udp[UDP_HDR] = udp[UDP_HDR + 1];
	udp[UDP_HDR + 1] = w[0];
	EXPECT_DROP(f, n, DP_DROP_UDP_BAD_CHECKSUM);

	/* A datagram whose checksum computes to 0 carries 0xffff (RFC 768): made so by changing one
	 * payload word by the checksum it had, which brings the sum to all ones. */
	s = udp_spec(20);
	n = build_udp(f, &s);
	uint16_t csum = get16(udp + UDP_CSUM);
	uint32_t word = (uint32_t)get16(udp + UDP_HDR) + csum;
	put16(udp + UDP_HDR, (uint16_t)((word & 0xffff) + (word >> 16)));
	put16(udp + UDP_CSUM, 0);
	CHECK_U64(udp_checksum(f + ETH_HDR, udp, UDP_HDR + 20), 0);
	put16(udp + UDP_CSUM, 0xffff);
	expect_request(__LINE__, f, n, 5, 20);
	put16(udp + UDP_CSUM, 0);
	expect_request(__LINE__, f, n, 5, 20);

	/* With IPv4 options the pseudo-header is still just the addresses, protocol and UDP length. */
	s = udp_spec(33);
	s.ihl = 9;
	n = build_udp(f, &s);
	expect_request(__LINE__, f, n, 9, 33);
	f[n - 5] ^= 0x40;
	EXPECT_DROP(f, n, DP_DROP_UDP_BAD_CHECKSUM);
	/* A bad checksum to another port is that port's drop: the checksum is checked only for us. */
	s = udp_spec(10);
	s.dport = 53;
	n = build_udp(f, &s);
	udp[UDP_CSUM] ^= 0x01;
	EXPECT_DROP(f, n, DP_DROP_UDP_OTHER_PORT);
}

/* What the port verified (rx_flags) replaces the software check, and only the check. */
static void test_rx_flags(void)
{
	static uint8_t f[FRAME_MAX];
	struct spec s = udp_spec(40);
	uint8_t *ip = f + ETH_HDR;
	uint8_t *udp = ip + 20;
	struct dp_self self = ours();
	struct dp_frame_info info;
	uint32_t n;

	/* A good frame: accepted whatever the port says, except where it says bad. */
	n = build_udp(f, &s);
	static const uint32_t fine[] = { DP_RX_CKSUM_UNKNOWN, DP_RX_IP_CKSUM_GOOD, DP_RX_L4_CKSUM_GOOD,
					 DP_RX_IP_CKSUM_GOOD | DP_RX_L4_CKSUM_GOOD };
	for (uint32_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
		expect_request_l2(__LINE__, f, n, fine[i], ETH_HDR, 5, 40);
	EXPECT_DROP_FLAGS(f, n, DP_RX_IP_CKSUM_BAD, DP_DROP_IP_BAD_CHECKSUM);
	EXPECT_DROP_FLAGS(f, n, DP_RX_IP_CKSUM_BAD | DP_RX_L4_CKSUM_BAD, DP_DROP_IP_BAD_CHECKSUM);
	EXPECT_DROP_FLAGS(f, n, DP_RX_L4_CKSUM_BAD, DP_DROP_UDP_BAD_CHECKSUM);
	EXPECT_DROP_FLAGS(f, n, DP_RX_IP_CKSUM_GOOD | DP_RX_L4_CKSUM_BAD, DP_DROP_UDP_BAD_CHECKSUM);
	/* Tagged: the same. */
	uint32_t tn = tag_frame(f, n, RTE_ETHER_TYPE_VLAN, TEST_TCI);
	expect_request_l2(__LINE__, f, tn, DP_RX_IP_CKSUM_GOOD | DP_RX_L4_CKSUM_GOOD, ETH_VLAN_HDR, 5, 40);
	EXPECT_DROP_FLAGS(f, tn, DP_RX_L4_CKSUM_BAD, DP_DROP_UDP_BAD_CHECKSUM);

	/* Wrong checksums the port vouched for are not summed again; unknown, they are. */
	n = build_udp(f, &s);
	ip[IPH_CSUM] ^= 0x20;
	udp[UDP_CSUM] ^= 0x20;
	expect_request_l2(__LINE__, f, n, DP_RX_IP_CKSUM_GOOD | DP_RX_L4_CKSUM_GOOD, ETH_HDR, 5, 40);
	EXPECT_DROP_FLAGS(f, n, DP_RX_CKSUM_UNKNOWN, DP_DROP_IP_BAD_CHECKSUM);
	EXPECT_DROP_FLAGS(f, n, DP_RX_L4_CKSUM_GOOD, DP_DROP_IP_BAD_CHECKSUM);
	EXPECT_DROP_FLAGS(f, n, DP_RX_IP_CKSUM_GOOD, DP_DROP_UDP_BAD_CHECKSUM);

	/* No UDP checksum (0) is accepted even where the port calls it bad (some do). */
	n = build_udp(f, &s);
	put16(udp + UDP_CSUM, 0);
	expect_request_l2(__LINE__, f, n, DP_RX_L4_CKSUM_BAD, ETH_HDR, 5, 40);

	/* A good IPv4 checksum excuses no other fault of the header. */
	n = build_udp(f, &s);
	EXPECT_DROP_FLAGS(f, n - 1, DP_RX_IP_CKSUM_GOOD | DP_RX_L4_CKSUM_GOOD, DP_DROP_IP_BAD_HEADER);
	ip[IPH_VIHL] = 0x55;
	EXPECT_DROP_FLAGS(f, n, DP_RX_IP_CKSUM_GOOD | DP_RX_L4_CKSUM_GOOD, DP_DROP_IP_BAD_HEADER);
	n = build_udp(f, &s);
	put16(udp + UDP_LEN, 0xffff);
	EXPECT_DROP_FLAGS(f, n, DP_RX_IP_CKSUM_GOOD | DP_RX_L4_CKSUM_GOOD, DP_DROP_UDP_BAD_LENGTH);

	/* The L4 verdict is about UDP: ICMP is always summed here, and ARP ignores both. */
	s = udp_spec(0);
	n = build_icmp(f, &s, RTE_IP_ICMP_ECHO_REQUEST, 0, 8);
	CHECK_U64(classify_flags(&self, f, n, DP_RX_L4_CKSUM_BAD, &info), DP_VERDICT_ICMP_ECHO);
	f[ETH_HDR + 20 + ICMP_CSUM] ^= 0x01;
	EXPECT_DROP_FLAGS(f, n, DP_RX_L4_CKSUM_GOOD, DP_DROP_ICMP_OTHER);
	n = build_arp(f, peer_mac, RTE_ARP_OP_REQUEST, PEER_IP, OUR_IP);
	CHECK_U64(classify_flags(&self, f, n, DP_RX_IP_CKSUM_BAD | DP_RX_L4_CKSUM_BAD, &info),
		  DP_VERDICT_ARP_REQUEST);
}

/*
 * A frame split between host and device memory (cuda-gpudirect with header split): only the head is
 * there to read. The head is copied alone into a buffer of its exact size, so ASan catches any read
 * past it; the rest of the frame is never handed over.
 */
static enum dp_verdict classify_split(const uint8_t *frame, uint32_t head, uint32_t size, uint32_t rx_flags,
				      struct dp_frame_info *info)
{
	struct dp_self self = ours();
	uint8_t *copy = dup_exact(frame, head < size ? head : size);
	enum dp_verdict v;

	memset(info, 0xa5, sizeof(*info));
	v = dp_classify_split(&self, copy, head, size, rx_flags, info);
	free(copy);
	return v;
}

static void expect_split_drop(int line, const uint8_t *frame, uint32_t head, uint32_t size, uint32_t rx_flags,
			      enum dp_drop want)
{
	struct dp_frame_info info;
	enum dp_verdict v = classify_split(frame, head, size, rx_flags, &info);

	check_drop(line, v, &info, want);
}

static void test_split_frames(void)
{
	static uint8_t f[FRAME_MAX];
	const uint32_t head = ETH_HDR + 20 + UDP_HDR; /* the untagged, option-free split point */
	const uint32_t port_verified = DP_RX_IP_CKSUM_GOOD | DP_RX_L4_CKSUM_GOOD;
	struct dp_frame_info info;
	struct spec s = udp_spec(100);
	uint32_t n = build_udp(f, &s);

	/* Headers in the head, payload beyond it, checksums vouched for by the port: a request whose
	 * payload starts exactly where the device segment does. */
	CHECK_U64(classify_split(f, head, n, port_verified, &info), DP_VERDICT_REQUEST);
	CHECK_U64(info.payload_offset, head);
	CHECK_U64(info.payload_size, 100);
	/* The port verified the IPv4 header only: the CPU cannot sum a payload it may not read. */
	expect_split_drop(__LINE__, f, head, n, DP_RX_IP_CKSUM_GOOD, DP_DROP_UDP_UNVERIFIED);
	expect_split_drop(__LINE__, f, head, n, DP_RX_CKSUM_UNKNOWN, DP_DROP_UDP_UNVERIFIED);
	/* ... unless there is no checksum to verify, or the port found it bad. */
	expect_split_drop(__LINE__, f, head, n, DP_RX_IP_CKSUM_GOOD | DP_RX_L4_CKSUM_BAD, DP_DROP_UDP_BAD_CHECKSUM);
	put16(f + ETH_HDR + 20 + UDP_CSUM, 0);
	CHECK_U64(classify_split(f, head, n, DP_RX_CKSUM_UNKNOWN, &info), DP_VERDICT_REQUEST);
	/* A head holding the whole frame is an ordinary frame: the software sum runs and holds. */
	n = build_udp(f, &s);
	CHECK_U64(classify_split(f, n, n, DP_RX_CKSUM_UNKNOWN, &info), DP_VERDICT_REQUEST);
	CHECK_U64(classify_split(f, n + 100, n, DP_RX_CKSUM_UNKNOWN, &info), DP_VERDICT_REQUEST);
	/* A tag or IPv4 options push the UDP header past a fixed split point. */
	n = tag_frame(f, build_udp(f, &s), RTE_ETHER_TYPE_VLAN, 7);
	expect_split_drop(__LINE__, f, head, n, port_verified, DP_DROP_SPLIT_LAYOUT);
	s.ihl = 6;
	n = build_udp(f, &s);
	expect_split_drop(__LINE__, f, head, n, port_verified, DP_DROP_SPLIT_LAYOUT);
	/* Heads cut inside each header. */
	s = udp_spec(100);
	n = build_udp(f, &s);
	expect_split_drop(__LINE__, f, 10, n, port_verified, DP_DROP_SPLIT_LAYOUT);
	expect_split_drop(__LINE__, f, ETH_HDR + 10, n, port_verified, DP_DROP_SPLIT_LAYOUT);
	expect_split_drop(__LINE__, f, ETH_HDR + 20 + 4, n, port_verified, DP_DROP_SPLIT_LAYOUT);
	/* A runt is a runt whatever the split. */
	expect_split_drop(__LINE__, f, 4, 10, port_verified, DP_DROP_RUNT);
	/* An ICMP echo is answered in place and summed whole: its data past the head drops it. */
	s = udp_spec(0);
	n = build_icmp(f, &s, RTE_IP_ICMP_ECHO_REQUEST, 0, 56);
	expect_split_drop(__LINE__, f, head, n, port_verified, DP_DROP_SPLIT_LAYOUT);
	CHECK_U64(classify_split(f, n, n, port_verified, &info), DP_VERDICT_ICMP_ECHO);
	/* ARP fits a 42-byte head; cut short, it cannot be read. */
	n = build_arp(f, peer_mac, RTE_ARP_OP_REQUEST, PEER_IP, OUR_IP);
	CHECK_U64(classify_split(f, head, n, DP_RX_CKSUM_UNKNOWN, &info), DP_VERDICT_ARP_REQUEST);
	expect_split_drop(__LINE__, f, ETH_HDR + 20, n, DP_RX_CKSUM_UNKNOWN, DP_DROP_SPLIT_LAYOUT);
}

/* Every drop reason that classification can reach was reached, and each has its own counter key. */
static void test_drop_coverage(void)
{
	for (uint32_t d = 0; d < DP_DROP_COUNT; d++) {
		const char *key = dp_drop_key((enum dp_drop)d);

		CHECK(key != NULL && strncmp(key, "drop_", 5) == 0 && strcmp(key, "drop_unknown") != 0);
		for (uint32_t e = 0; e < d; e++)
			CHECK(strcmp(key, dp_drop_key((enum dp_drop)e)) != 0);
		/* The allow-list and multi-segment frames are the rx lcore's to drop: dp_classify knows no
		 * list and sees one buffer. */
		if (d == DP_DROP_MULTI_SEGMENT || d == DP_DROP_ACL)
			continue;
		if (!(drops_seen & (1u << d)))
			check_failed(__FILE__, __LINE__, "no test produced %s", key);
		else
			checks_passed++;
	}
	CHECK(strcmp(dp_drop_key(DP_DROP_COUNT), "drop_unknown") == 0);
}

int main(void)
{
	RUN(test_udp_request);
	RUN(test_split_frames);
	RUN(test_ethernet_padding);
	RUN(test_udp_answer);
	RUN(test_arp);
	RUN(test_icmp);
	RUN(test_drop_l2);
	RUN(test_drop_ip);
	RUN(test_drop_udp);
	RUN(test_vlan);
	RUN(test_vlan_drops);
	RUN(test_ipv6);
	RUN(test_udp_checksum);
	RUN(test_rx_flags);
	RUN(test_drop_coverage);
	return check_summary();
}

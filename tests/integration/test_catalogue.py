# SPDX-License-Identifier: MIT
"""A catalogue of crafted frames, each sent as raw bytes from the client namespace through the dev
network (scapy builds them; zhnet.send_frame puts them on the veth). Each one is answered or dropped
with exactly one counter moving by exactly one, and nothing else moves among the drop and answer
counters; a good request right after each is answered.

What reaches the appliance is what the kernel's af_packet path hands DPDK's net_af_packet, which is
not always what was sent. Three effects, found by sending these frames and asserted as found:
  * The PMD joins its sockets to a fanout group with PACKET_FANOUT_FLAG_DEFRAG, so the kernel
    reassembles IPv4 fragments before the appliance sees them: a complete set arrives as one
    datagram (and is answered), a lone fragment waits in the kernel's reassembly queue and never
    arrives. The fragment counter is covered by tests/unit/test_parse.c.
  * The kernel takes the outer VLAN tag off into the packet's metadata and the PMD puts it back as
    802.1Q (TPID 0x8100) whatever its TPID was, so an outer 802.1ad tag arrives as 802.1Q.
  * Each frame lands in a 2048-byte ring slot behind the PMD's header, so frames are cut at
    1982 bytes (FRAME_CUT below): a jumbo frame arrives cut, its IPv4 length past its end.
The sending kernel refuses a frame shorter than an Ethernet header and the receiving one frees a
tagged frame too short to take the tag off, so drop_runt cannot be reached on this wire; it is
covered by tests/unit/test_parse.c.
"""
import contextlib
import random
import select
import socket
import struct
import subprocess
import time

import msgpack
import pytest
# Debian's python3-scapy, under /usr/bin/python3.
from scapy.all import ARP, ICMP, IP, UDP, Dot1Q, Ether, IPOption_NOP, IPOption_Router_Alert, IPv6, Raw

from zhnet import APPLIANCE_IP, STATUS, UDP_PORT, Client, netns, send_frame

# The counters an item may move: every drop reason, every answer status, and these.
ANSWER_COUNTERS = ("arp_replies", "icmp_replies", "requests", "answers", "busy", "too_large",
                   "answers_unsent", "device_stalled", "device_unmapped", "draining")
# The largest frame the af_packet PMD delivers: a 2048-byte ring slot less the 66 bytes in front of
# an Ethernet header (tpacket2 header and sockaddr_ll, aligned). Found by sending: see JUMBO.
FRAME_CUT = 1982
TCI = (5 << 13) | 1234  # priority 5, VLAN 1234

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40


@pytest.fixture(scope="module")
def wire(net, appliance):
    """The raw side of the client: its MAC, a UDP client whose port the crafted requests come from,
    and a capture socket on the client's veth. The appliance's address is pinned in the client's
    neighbour table so that no ARP of the kernel's own moves a counter in the middle of an item."""
    subprocess.run(["ip", "-n", net.client_ns, "neigh", "replace", APPLIANCE_IP, "lladdr", appliance.mac,
                    "dev", net.client_if, "nud", "permanent"], check=True, capture_output=True)
    client = Client(net)
    with netns(net.client_ns):
        cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    cap.bind((net.client_if, 0))
    cap.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    w = Wire(net, appliance, client, cap)
    yield w
    cap.close()
    client.close()
    subprocess.run(["ip", "-n", net.client_ns, "neigh", "del", APPLIANCE_IP, "dev", net.client_if],
                   capture_output=True)


class Wire:
    def __init__(self, net, appliance, client, cap):
        self.net = net
        self.app = appliance
        self.client = client
        self.cap = cap
        self.mac = net.client_mac()
        self.port = client.sock.getsockname()[1]

    def eth(self, **kw):
        return Ether(src=self.mac, dst=self.app.mac, **kw)

    def ip(self, **kw):
        return IP(src=self.net.client_ip, dst=APPLIANCE_IP, **kw)

    def udp(self, **kw):
        kw.setdefault("sport", self.port)
        kw.setdefault("dport", UDP_PORT)
        return UDP(**kw)

    def drain(self):
        while select.select([self.cap], [], [], 0)[0]:
            self.cap.recv(65536)

    def capture(self, match, timeout_s=2.0):
        """The first frame from the appliance for which match(frame) holds, with its 802.1Q tag put
        back where the kernel took it off (PACKET_AUXDATA); None if none comes in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.cap], [], [], left)[0]:
                return None
            data, anc, _, addr = self.cap.recvmsg(65536, socket.CMSG_SPACE(20))
            if addr[2] == PACKET_OUTGOING:
                continue
            for level, kind, aux in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    status, _, _, _, _, tci, tpid = struct.unpack("IIIHHHH", aux[:20])
                    if status & TP_STATUS_VLAN_VALID:
                        tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                        data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
            frame = Ether(data)
            if frame.src == self.app.mac and match(frame):
                return frame


def watched(stats):
    return {k: v for k, v in stats.items()
            if k.startswith("drop_") or k.startswith("status_") or k in ANSWER_COUNTERS}


def moved(before, after):
    b, a = watched(before), watched(after)
    return {k: a[k] - b.get(k, 0) for k in a if a[k] != b.get(k, 0)}


def settle(app, before, rx_frames, timeout_s=3.0):
    """Counters once the appliance has received rx_frames more frames (or after a pause when none
    are expected): a burst's counters are published together, after the whole burst."""
    deadline = time.monotonic() + timeout_s
    while True:
        time.sleep(0.05 if rx_frames else 0.5)
        after = app.stats()
        if after["rx_frames"] - before["rx_frames"] >= rx_frames or time.monotonic() > deadline:
            return after


def good_request_answered(w, request_id):
    answer = w.client.ask({"id": request_id, "tokens": [4, 5, 6]})
    assert answer == {"id": request_id, "status": 0, "tokens": [4, 5, 6]}


@contextlib.contextmanager
def mtu(net, size):
    """Both veth ends of this module's dev network at `size` bytes, back to 1500 afterwards."""
    def set_mtu(m):
        subprocess.run(["ip", "-n", net.app_ns, "link", "set", net.app_if, "mtu", str(m)], check=True)
        subprocess.run(["ip", "-n", net.client_ns, "link", "set", net.client_if, "mtu", str(m)], check=True)
    set_mtu(size)
    try:
        yield
    finally:
        set_mtu(1500)


def req(request_id, tokens=(1, 2, 3)):
    return msgpack.packb({"id": request_id, "tokens": list(tokens)})


def junk(n, seed):
    return bytes(random.Random(seed).getrandbits(8) for _ in range(n))


# ---- the catalogue ------------------------------------------------------------------------------
#
# Each item: (name, frames(w) -> list of frames, what the appliance does). What it does is one of
#   ("udp", id, status)       a UDP answer to the client's socket (status by name, id None for nil)
#   ("tagged-udp", id, status) the same with the request's 802.1Q tag, captured raw
#   ("arp", tci)              an ARP reply (tci None: untagged), captured raw
#   ("icmp", tci)             an ICMP echo reply, captured raw
#   ("drop", counter)         no answer, that drop counter +1
#   ("nothing", None)         nothing reaches the appliance: no counter moves (see the docstring)
# `rx` is how many frames the appliance receives (1 unless the kernel joins or keeps them).

def _frames_fragments(w):
    # One request cut in two fragments at 24 bytes of UDP (a multiple of 8), both sent.
    l4 = bytes(IP(bytes(w.ip() / w.udp() / Raw(req(301)))).payload)
    return [w.eth() / w.ip(id=0x4242, proto=17, flags="MF", frag=0) / Raw(l4[:24]),
            w.eth() / w.ip(id=0x4242, proto=17, flags=0, frag=3) / Raw(l4[24:])]


def inet_checksum(data):
    """RFC 1071: the one's complement of the one's-complement sum of 16-bit big-endian words."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def _request_with_surplus(w):
    # The UDP length covers the request; 12 random bytes follow it inside the IPv4 payload (the UDP
    # surplus area, ignored). The UDP checksum, computed here, covers what the UDP length covers.
    body = req(305)
    udp_len = 8 + len(body)
    header = struct.pack("!HHHH", w.port, UDP_PORT, udp_len, 0)
    pseudo = socket.inet_aton(w.net.client_ip) + socket.inet_aton(APPLIANCE_IP) + struct.pack("!BBH", 0, 17, udp_len)
    csum = inet_checksum(pseudo + header + body) or 0xffff
    udp = header[:6] + struct.pack("!H", csum) + body
    return [w.eth() / w.ip(proto=17) / Raw(udp + junk(12, 5))]


CATALOGUE = [
    # -- the good request, as a reference for the others
    ("good_request", lambda w: [w.eth() / w.ip() / w.udp() / Raw(req(300))], 1, ("udp", 300, "ok")),
    ("good_request_minimum_frame", lambda w: [w.eth() / w.ip() / w.udp() / Raw(b"\x81\xa2id\x01")], 1,
     ("udp", 1, "ok")),
    # -- Ethernet with one 802.1Q tag: answered with the same tag
    ("vlan_request", lambda w: [w.eth() / Dot1Q(vlan=1234, prio=5) / w.ip() / w.udp() / Raw(req(302))], 1,
     ("tagged-udp", 302, "ok")),
    ("vlan_arp_request", lambda w: [Ether(src=w.mac, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=1234, prio=5) /
                                    ARP(op=1, hwsrc=w.mac, psrc=w.net.client_ip, pdst=APPLIANCE_IP)], 1,
     ("arp", TCI)),
    ("vlan_icmp_echo", lambda w: [w.eth() / Dot1Q(vlan=1234, prio=5) / w.ip() / ICMP(id=7, seq=1) /
                                  Raw(b"ping" * 8)], 1, ("icmp", TCI)),
    ("vlan_priority_tag_only", lambda w: [w.eth() / Dot1Q(vlan=0, prio=5) / w.ip() / w.udp() / Raw(req(303))], 1,
     ("tagged-udp", 303, "ok")),
    # -- two tags: 802.1Q in 802.1Q, 802.1Q in 802.1ad
    ("vlan_nested_8100_8100", lambda w: [w.eth() / Dot1Q(vlan=7) / Dot1Q(vlan=8) / w.ip() / w.udp() /
                                         Raw(req(310))], 1, ("drop", "drop_vlan_nested")),
    ("vlan_nested_88a8_8100", lambda w: [w.eth(type=0x88a8) / Dot1Q(vlan=7) / Dot1Q(vlan=8) / w.ip() /
                                         w.udp() / Raw(req(311))], 1, ("drop", "drop_vlan_nested")),
    # A lone 802.1ad tag arrives re-tagged as 802.1Q by the PMD (see the docstring): answered, tagged.
    ("vlan_88a8_single", lambda w: [w.eth(type=0x88a8) / Dot1Q(vlan=1234, prio=5) / w.ip() / w.udp() /
                                    Raw(req(312))], 1, ("tagged-udp", 312, "ok")),
    # -- IPv4 with options: Router Alert and NOPs
    ("ipv4_options", lambda w: [w.eth() / w.ip(options=[IPOption_Router_Alert(), IPOption_NOP(), IPOption_NOP(),
                                                          IPOption_NOP(), IPOption_NOP()]) /
                                w.udp() / Raw(req(320))], 1, ("udp", 320, "ok")),
    ("ipv4_options_max", lambda w: [w.eth() / w.ip(options=[IPOption_NOP()] * 40) / w.udp() / Raw(req(321))], 1,
     ("udp", 321, "ok")),
    # -- IPv4 fragments (the kernel reassembles, see the docstring)
    ("ipv4_fragments_complete", _frames_fragments, 1, ("udp", 301, "ok")),
    ("ipv4_first_fragment_alone", lambda w: [w.eth() / w.ip(id=0x4343, flags="MF", frag=0, proto=17) /
                                             Raw(b"\x00" * 32)], 0, ("nothing", None)),
    ("ipv4_last_fragment_alone", lambda w: [w.eth() / w.ip(id=0x4444, flags=0, frag=100, proto=17) /
                                            Raw(b"\x00" * 32)], 0, ("nothing", None)),
    # -- IPv6: not supported, counted
    ("ipv6_udp", lambda w: [w.eth() / IPv6(src="2001:db8::2", dst="2001:db8::1") / UDP(sport=5, dport=UDP_PORT) /
                            Raw(req(330))], 1, ("drop", "drop_ipv6")),
    ("vlan_ipv6", lambda w: [w.eth() / Dot1Q(vlan=9) / IPv6(src="2001:db8::2", dst="2001:db8::1") /
                             UDP(sport=5, dport=UDP_PORT) / Raw(req(331))], 1, ("drop", "drop_ipv6")),
    # -- checksums
    ("ipv4_bad_header_checksum", lambda w: [w.eth() / w.ip(chksum=0x1234) / w.udp() / Raw(req(340))], 1,
     ("drop", "drop_ip_bad_checksum")),
    ("udp_bad_checksum", lambda w: [w.eth() / w.ip() / w.udp(chksum=0x1234) / Raw(req(341))], 1,
     ("drop", "drop_udp_bad_checksum")),
    ("udp_no_checksum", lambda w: [w.eth() / w.ip() / w.udp(chksum=0) / Raw(req(342))], 1, ("udp", 342, "ok")),
    ("vlan_udp_bad_checksum", lambda w: [w.eth() / Dot1Q(vlan=1234) / w.ip() / w.udp(chksum=0x1234) /
                                         Raw(req(343))], 1, ("drop", "drop_udp_bad_checksum")),
    # -- length fields that disagree with the frame
    ("ipv4_total_length_past_frame", lambda w: [w.eth() / w.ip(len=20 + 8 + 200) / w.udp(len=8 + 11) /
                                                Raw(req(350))], 1, ("drop", "drop_ip_bad_header")),
    ("ipv4_total_length_under_header", lambda w: [w.eth() / w.ip(len=19) / w.udp() / Raw(req(351))], 1,
     ("drop", "drop_ip_bad_header")),
    ("udp_length_0", lambda w: [w.eth() / w.ip() / w.udp(len=0) / Raw(req(352))], 1,
     ("drop", "drop_udp_bad_length")),
    ("udp_length_65535", lambda w: [w.eth() / w.ip() / w.udp(len=65535) / Raw(req(353))], 1,
     ("drop", "drop_udp_bad_length")),
    ("udp_length_past_ip_payload", lambda w: [w.eth() / w.ip() / w.udp(len=8 + len(req(354)) + 1) /
                                              Raw(req(354))], 1, ("drop", "drop_udp_bad_length")),
    ("udp_length_short_of_ip_payload", _request_with_surplus, 1, ("udp", 305, "ok")),
    # -- addresses
    ("broadcast_source_mac", lambda w: [Ether(src="ff:ff:ff:ff:ff:ff", dst=w.app.mac) / w.ip() / w.udp() /
                                        Raw(req(360))], 1, ("drop", "drop_bad_source")),
    ("multicast_source_mac", lambda w: [Ether(src="01:00:5e:00:00:01", dst=w.app.mac) / w.ip() / w.udp() /
                                        Raw(req(361))], 1, ("drop", "drop_bad_source")),
    ("arp_for_another_address", lambda w: [Ether(src=w.mac, dst="ff:ff:ff:ff:ff:ff") /
                                           ARP(op=1, hwsrc=w.mac, psrc=w.net.client_ip, pdst="198.18.0.77")], 1,
     ("drop", "drop_arp_other")),
    ("arp_request_for_us", lambda w: [Ether(src=w.mac, dst="ff:ff:ff:ff:ff:ff") /
                                      ARP(op=1, hwsrc=w.mac, psrc=w.net.client_ip, pdst=APPLIANCE_IP)], 1,
     ("arp", None)),
    ("ipv4_not_for_us", lambda w: [w.eth() / IP(src=w.net.client_ip, dst="198.18.0.77") / w.udp() /
                                   Raw(req(362))], 1, ("drop", "drop_ip_not_for_us")),
    ("udp_other_port", lambda w: [w.eth() / w.ip() / w.udp(dport=UDP_PORT + 1) / Raw(req(363))], 1,
     ("drop", "drop_udp_other_port")),
    ("tcp", lambda w: [w.eth() / w.ip(proto=6) / Raw(b"\x00" * 20)], 1, ("drop", "drop_ip_other_proto")),
    ("icmp_timestamp", lambda w: [w.eth() / w.ip() / ICMP(type=13)], 1, ("drop", "drop_icmp_other")),
    ("lldp", lambda w: [Ether(src=w.mac, dst="01:80:c2:00:00:0e", type=0x88cc) / Raw(b"\x02\x07" + b"\x00" * 40)],
     1, ("drop", "drop_not_ipv4")),
    # -- runts: a header and nothing else, a cut 802.1Q tag
    ("runt_ethernet_header_only", lambda w: [w.eth(type=0x0800)], 1, ("drop", "drop_ip_bad_header")),
    # A tagged frame needs 6 bytes after its MAC header for the receiving kernel to take the tag off
    # (the tag and a peek at what follows); with less, the kernel frees it: cut inside the tag, and
    # the whole tag with nothing after it.
    ("runt_cut_inside_vlan_tag", lambda w: [bytes(w.eth(type=0x8100)) + b"\x04\xd2\x08"], 0, ("nothing", None)),
    ("runt_vlan_tag_only", lambda w: [w.eth() / Dot1Q(vlan=1234)], 0, ("nothing", None)),
    # The tag, then 2 bytes where an IPv4 header should be.
    ("runt_vlan_tag_then_2_bytes", lambda w: [w.eth() / Dot1Q(vlan=1234, type=0x0800) / Raw(b"\x45\x00")], 1,
     ("drop", "drop_ip_bad_header")),
    ("runt_ipv4_header_cut", lambda w: [bytes(w.eth() / w.ip() / w.udp() / Raw(req(370)))[:14 + 12]], 1,
     ("drop", "drop_ip_bad_header")),
    ("runt_udp_header_cut", lambda w: [w.eth() / w.ip(proto=17) / Raw(b"\x9c\x40\x23")], 1,
     ("drop", "drop_udp_bad_length")),
    # -- random bytes after a valid header
    # 64 random bytes where the IPv4 header should be (this seed's first byte is not 0x4X).
    ("random_after_ethernet_header", lambda w: [w.eth(type=0x0800) / Raw(junk(64, 1))], 1,
     ("drop", "drop_ip_bad_header")),
    # A valid UDP header, then 200 random bytes as the request: the device says bad_request.
    ("random_after_udp_header", lambda w: [w.eth() / w.ip() / w.udp() / Raw(junk(200, 2))], 1,
     ("udp", None, "bad_request")),
    # A valid request, then 30 random bytes after the IPv4 datagram (an Ethernet trailer, ignored).
    ("random_after_ipv4_datagram", lambda w: [bytes(w.eth() / w.ip() / w.udp() / Raw(req(380))) + junk(30, 3)],
     1, ("udp", 380, "ok")),
]


def _check_answer(w, what, tag):
    kind = what[0]
    if kind == "udp":
        _, want_id, status = what
        answer = w.client.recv_answer()
        assert answer["id"] == want_id and answer["status"] == STATUS[status], answer
    elif kind == "tagged-udp":
        _, want_id, status = what
        frame = w.capture(lambda f: Dot1Q in f and UDP in f and f[UDP].sport == UDP_PORT)
        assert frame is not None, "no tagged answer captured"
        assert frame[Ether].type == 0x8100 and frame[Dot1Q].type == 0x0800
        assert frame[Dot1Q].vlan == tag["vlan"] and frame[Dot1Q].prio == tag["prio"]
        assert frame[IP].src == APPLIANCE_IP and frame[IP].dst == w.net.client_ip
        assert frame[UDP].dport == w.port
        answer = msgpack.unpackb(bytes(frame[UDP].payload), raw=False)
        assert answer["id"] == want_id and answer["status"] == STATUS[status], answer
        if tag["vlan"] == 0:
            # A priority-only tag: the client kernel drops the tag and delivers the answer.
            assert w.client.recv_answer() == answer
        else:
            # The client kernel has no VLAN 1234 to deliver the answer on: the socket gets nothing.
            assert w.client.expect_silence(0.1)
    elif kind == "arp":
        _, tci = what
        frame = w.capture(lambda f: ARP in f and f[ARP].op == 2)
        assert frame is not None, "no ARP reply captured"
        assert frame[ARP].psrc == APPLIANCE_IP and frame[ARP].hwsrc == w.app.mac
        assert frame[ARP].pdst == w.net.client_ip and frame[ARP].hwdst == w.mac
        if tci is None:
            assert Dot1Q not in frame
        else:
            assert frame[Ether].type == 0x8100 and (frame[Dot1Q].prio << 13 | frame[Dot1Q].vlan) == tci
    elif kind == "icmp":
        _, tci = what
        frame = w.capture(lambda f: ICMP in f and f[ICMP].type == 0)
        assert frame is not None, "no ICMP echo reply captured"
        assert frame[IP].src == APPLIANCE_IP and frame[ICMP].id == 7 and bytes(frame[ICMP].payload)[:32] == b"ping" * 8
        if tci is None:
            assert Dot1Q not in frame
        else:
            assert frame[Ether].type == 0x8100 and (frame[Dot1Q].prio << 13 | frame[Dot1Q].vlan) == tci
    else:
        assert w.client.expect_silence(0.2)


def _expected(what):
    kind = what[0]
    if kind in ("udp", "tagged-udp"):
        status = what[2]
        if status == "too_large":  # answered by the rx lcore itself, from the headers
            return {"too_large": 1, "status_too_large": 1}
        return {"requests": 1, "answers": 1, f"status_{status}": 1}
    if kind == "arp":
        return {"arp_replies": 1}
    if kind == "icmp":
        return {"icmp_replies": 1}
    if kind == "drop":
        return {what[1]: 1}
    return {}


@pytest.mark.parametrize("name,frames,rx,what", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue_item(wire, name, frames, rx, what):
    w = wire
    built = frames(w)
    tag = {}
    for f in built:
        if not isinstance(f, bytes) and Dot1Q in f:
            tag = {"vlan": f[Dot1Q].vlan, "prio": f[Dot1Q].prio}
    w.drain()
    before = w.app.stats()
    for f in built:
        send_frame(w.net, bytes(f))
    _check_answer(w, what, tag)
    after = settle(w.app, before, rx)
    assert after["rx_frames"] - before["rx_frames"] == rx
    assert moved(before, after) == _expected(what)
    good_request_answered(w, 900_000 + [c[0] for c in CATALOGUE].index(name))


def test_runt_shorter_than_ethernet_is_refused_by_the_kernel(wire):
    # drop_runt for frames under 14 bytes is unreachable on a veth: the sender's kernel refuses them.
    with pytest.raises(OSError):
        send_frame(wire.net, bytes(wire.eth())[:13])


JUMBO = [
    # Within the PMD's frame: a request over 1472 bytes, answered too_large by the rx lcore.
    ("jumbo_1600_within_port_frame", 1600, 1, ("udp", None, "too_large")),
    # Exactly the largest frame the PMD delivers whole.
    ("jumbo_at_frame_cut", FRAME_CUT, 1, ("udp", None, "too_large")),
    # Past it: cut at FRAME_CUT bytes, the IPv4 length now past the frame's end.
    ("jumbo_just_past_frame_cut", FRAME_CUT + 1, 1, ("drop", "drop_ip_bad_header")),
    ("jumbo_3000", 3000, 1, ("drop", "drop_ip_bad_header")),
    ("jumbo_9014", 9014, 1, ("drop", "drop_ip_bad_header")),
]


@pytest.mark.parametrize("name,size,rx,what", JUMBO, ids=[j[0] for j in JUMBO])
def test_jumbo_frame(wire, name, size, rx, what):
    w = wire
    head = w.eth() / w.ip() / w.udp()
    frame = head / Raw(b"\x00" * (size - len(head)))
    assert len(bytes(frame)) == size
    with mtu(w.net, 9000):
        w.drain()
        before = w.app.stats()
        send_frame(w.net, bytes(frame))
        _check_answer(w, what, {})
        after = settle(w.app, before, rx)
    assert after["rx_frames"] - before["rx_frames"] == rx
    assert moved(before, after) == _expected(what)
    good_request_answered(w, 910_000 + size)

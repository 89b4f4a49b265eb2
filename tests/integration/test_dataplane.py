# SPDX-License-Identifier: MIT
"""End to end through the dev network: a kernel UDP client in its own namespace, zerohopd on DPDK
(af_packet on a veth) with the cpu device and the echo model."""
import struct
import subprocess
import time

import msgpack
import pytest

from zhnet import APPLIANCE_IP, STATUS, UDP_PORT, Client, drops_total, send_frame


@pytest.fixture
def client(net, appliance):
    c = Client(net)
    yield c
    c.close()


def assert_good_request_served(client, request_id=999_001):
    answer = client.ask({"id": request_id, "tokens": [7, 8, 9]})
    assert answer == {"id": request_id, "status": 0, "tokens": [7, 8, 9]}


def test_echo_request(client):
    answer = client.ask({"id": 42, "tokens": [1, 2, 3, 65535, 4294967295]})
    assert answer == {"id": 42, "status": 0, "tokens": [1, 2, 3, 65535, 4294967295]}


def test_named_model_and_op(client):
    answer = client.ask({"id": 43, "model": "echo", "op": "echo", "tokens": []})
    assert answer == {"id": 43, "status": 0, "tokens": []}


def test_trace_returns_stage_timestamps(client):
    answer = client.ask({"id": 44, "tokens": [5], "trace": True})
    assert answer["status"] == 0 and answer["tokens"] == [5]
    rx, publish, claim, done, nic_rx = answer["trace"]
    # On the cpu device every stage is stamped with the same TSC, so the stages are ordered.
    assert 0 < rx <= publish <= claim <= done
    # af_packet stamps nothing: the NIC rx value says "none".
    assert nic_rx == 0


def test_arp_is_answered_by_the_appliance(net, appliance, client):
    net.flush_neigh()
    before = appliance.stats()["arp_replies"]
    assert_good_request_served(client)
    lladdr, _ = net.neigh(APPLIANCE_IP)
    assert lladdr == appliance.mac, "the client resolved the appliance's address to its MAC"
    assert appliance.stats()["arp_replies"] >= before + 1


def test_icmp_echo(net, appliance):
    before = appliance.stats()["icmp_replies"]
    out = subprocess.run(["ip", "netns", "exec", net.client_ns, "ping", "-c", "3", "-i", "0.2", "-W", "2",
                          APPLIANCE_IP], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0% packet loss" in out.stdout
    assert appliance.stats()["icmp_replies"] == before + 3


def test_thousand_requests_in_a_row(appliance, client):
    before = appliance.stats()
    started = time.monotonic()
    for i in range(1000):
        tokens = [i, i * 7 % 512, 1000 + i]
        answer = client.ask({"id": 10_000 + i, "tokens": tokens})
        assert answer == {"id": 10_000 + i, "status": 0, "tokens": tokens}
        assert time.monotonic() - started < 120, "1000 requests took over 2 minutes"
    after = appliance.stats()
    assert after["answers"] - before["answers"] == 1000
    assert after["status_ok"] - before["status_ok"] == 1000


def _req(**fields):
    return msgpack.packb(fields)


GOOD = _req(id=77, tokens=[1, 2, 3])

# Bad requests that deserve an answer: (name, payload, status, id expected in the answer).
ANSWERED = [
    ("not_msgpack_c1", b"\xc1", "bad_request", None),
    ("not_msgpack_text", b"hello, appliance", "bad_request", None),
    ("empty_datagram", b"", "bad_request", None),
    ("truncated", GOOD[:-2], "bad_request", 77),  # the id comes before the cut
    ("missing_id", _req(tokens=[1]), "bad_request", None),
    ("string_token", _req(id=5, tokens=[1, "two", 3]), "bad_request", 5),
    ("negative_id", _req(id=-5, tokens=[1]), "bad_request", None),
    ("float_token", _req(id=6, tokens=[1.5]), "bad_request", 6),
    ("too_many_tokens", _req(id=7, tokens=list(range(257))), "too_large", 7),
    # msgpack-c 4.0 tries to allocate 256 GiB on this; it must be refused from the header alone.
    ("map32_claims_4g_entries", b"\xdf\xff\xff\xff\xff" + b"\xa2id\x01", "too_large", None),
    ("tokens_array32_claims_4g", b"\x82\xa2id\x08\xa6tokens\xdd\xff\xff\xff\xff\x01\x02", "too_large", 8),
    ("unknown_model", _req(id=9, model="no-such-model", tokens=[1]), "unknown_model", 9),
    ("unsupported_op", _req(id=10, op="generate", tokens=[1]), "bad_request", 10),
    ("unknown_op", _req(id=11, op="dance", tokens=[1]), "bad_request", 11),
    ("not_a_map", msgpack.packb([1, 2, 3]), "bad_request", None),
    ("duplicate_key", b"\x83\xa2id\x0c\xa6tokens\x90\xa2id\x0d", "bad_request", 12),  # the first id
    ("trailing_bytes", GOOD + b"\x00", "bad_request", 77),
]


@pytest.mark.parametrize("name,payload,status,want_id", ANSWERED, ids=[a[0] for a in ANSWERED])
def test_bad_request_is_answered(appliance, client, name, payload, status, want_id):
    answer = client.ask_raw(payload)
    assert answer["status"] == STATUS[status], answer
    assert answer["id"] == want_id
    assert isinstance(answer.get("error"), str) and 0 < len(answer["error"]) <= 48
    assert "tokens" not in answer
    assert_good_request_served(client)


def test_datagram_to_another_port_is_dropped(net, appliance):
    before = appliance.stats()
    from zhnet import netns
    import socket
    with netns(net.client_ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(0.5)
        s.sendto(GOOD, (APPLIANCE_IP, UDP_PORT + 1))
        with pytest.raises(socket.timeout):
            s.recv(65536)
    finally:
        s.close()
    after = appliance.stats()
    assert after["drop_udp_other_port"] == before["drop_udp_other_port"] + 1
    assert after["requests"] == before["requests"]


def test_oversized_datagram_is_dropped(appliance, client):
    # 2000 bytes do not fit the 1500-byte MTU: the client's kernel sends two IPv4 fragments. The
    # af_packet port reassembles them (DPDK sets PACKET_FANOUT_FLAG_DEFRAG) and cuts the datagram at
    # its 2048-byte frame, so the appliance sees one datagram whose IPv4 length exceeds the frame.
    # (Fragments that reach the lcore as fragments are covered by tests/unit/test_parse.c.)
    before = appliance.stats()
    client.send_raw(b"\x81\xa2id\x01" + b"\x00" * 1995)
    assert client.expect_silence()
    after = appliance.stats()
    assert drops_total(after) == drops_total(before) + 1
    assert after["drop_ip_bad_header"] + after["drop_ip_fragment"] == \
        before["drop_ip_bad_header"] + before["drop_ip_fragment"] + 1
    assert after["requests"] == before["requests"]
    assert_good_request_served(client)


def _mac(text):
    return bytes(int(x, 16) for x in text.split(":"))


def _ipv4_header(src, dst, payload_len, proto=17, ihl=5, frag=0x4000):
    import socket
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + payload_len, 0, frag, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst)) + b"\x00" * (ihl * 4 - 20)
    csum = 0
    for i in range(0, len(hdr), 2):
        csum += (hdr[i] << 8) | hdr[i + 1]
    while csum >> 16:
        csum = (csum & 0xffff) + (csum >> 16)
    return hdr[:10] + struct.pack("!H", ~csum & 0xffff) + hdr[12:]


RUNTS = [
    # (name, frame builder(eth header bytes) -> frame)
    ("eth_header_only", lambda eth: eth),
    ("ipv4_header_cut", lambda eth: eth + b"\x45\x00\x00\x30\x00\x00"),
    ("udp_header_cut", lambda eth: eth + _ipv4_header("198.18.0.2", APPLIANCE_IP, 8)[:20] + b"\x23\x28"),
    ("ip_total_length_beyond_frame",
     lambda eth: eth + _ipv4_header("198.18.0.2", APPLIANCE_IP, 200) + b"\x00" * 20),
]


@pytest.mark.parametrize("name,build", RUNTS, ids=[r[0] for r in RUNTS])
def test_runt_frames_are_dropped_and_counted(net, appliance, client, name, build):
    eth = _mac(appliance.mac) + _mac(net.client_mac()) + b"\x08\x00"
    before = appliance.stats()
    send_frame(net, build(eth))
    time.sleep(0.2)
    after = appliance.stats()
    assert after["rx_frames"] == before["rx_frames"] + 1
    assert drops_total(after) == drops_total(before) + 1, "exactly one drop counter moved"
    assert after["requests"] == before["requests"]
    assert_good_request_served(client)


def test_counters_add_up(appliance):
    stats = appliance.stats()
    # Every frame received is answered, dropped, or still in flight (none now).
    handled = stats["arp_replies"] + stats["icmp_replies"] + stats["requests"] + stats["busy"] + \
        stats["too_large"] + drops_total(stats)
    assert handled == stats["rx_frames"]
    assert stats["answers"] == stats["requests"]
    assert sum(v for k, v in stats.items() if k.startswith("status_")) == stats["answers"] + stats["busy"] + \
        stats["too_large"]

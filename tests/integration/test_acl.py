# SPDX-License-Identifier: MIT
"""The allow-list (zerohopd --allow CIDR): an allowed client is served; a refused one gets no answer of
any kind (UDP, ARP, ICMP), each of its frames counted once under drop_acl before the ring; bad
prefixes stop zerohopd at start-up. The dev network's client is 198.18.0.2."""
import subprocess
import time

import pytest
from scapy.all import ARP, Ether  # Debian's python3-scapy

from conftest import BUILDS
from zhnet import APPLIANCE_IP, Appliance, Client, drops_total, send_frame

REQUESTS = 5


def ping(net, count):
    return subprocess.run(["ip", "netns", "exec", net.client_ns, "ping", "-c", str(count), "-i", "0.2", "-W", "1",
                           APPLIANCE_IP], capture_output=True, text=True, timeout=30)


def settled_stats(app, before, frames, timeout_s=3.0):
    """Counters once the appliance has received `frames` more frames."""
    deadline = time.monotonic() + timeout_s
    while True:
        time.sleep(0.05)
        after = app.stats()
        if after["rx_frames"] - before["rx_frames"] >= frames or time.monotonic() > deadline:
            return after


def stop_cleanly(app):
    rc, final = app.stop()
    assert rc == 0, "zerohopd did not stop cleanly:\n" + "".join(app.log[-40:])
    assert final is not None


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("allow", [["198.18.0.2/32"], ["198.19.0.0/16", "198.18.0.0/15"], ["0.0.0.0/0"]],
                         ids=["host", "second_of_two", "everything"])
def test_allowed_client_is_served(net, build, allow):
    args = [a for prefix in allow for a in ("--allow", prefix)]
    app = Appliance(build, net, extra_args=args)
    try:
        net.flush_neigh()  # so that the client resolves the appliance through its ARP reply
        client = Client(net)
        for i in range(REQUESTS):
            assert client.ask({"id": i, "tokens": [i, 7]}) == {"id": i, "status": 0, "tokens": [i, 7]}
        client.close()
        out = ping(net, 2)
        assert out.returncode == 0, out.stdout + out.stderr
        stats = app.stats()
        assert stats["drop_acl"] == 0
        assert stats["arp_replies"] >= 1 and stats["icmp_replies"] == 2
        assert stats["requests"] == stats["answers"] == REQUESTS
    finally:
        stop_cleanly(app)


@pytest.mark.parametrize("build", BUILDS)
def test_refused_client_gets_nothing(net, build):
    app = Appliance(build, net, extra_args=["--allow", "198.19.0.0/16"])
    # The client must not need ARP (which is refused too) to send its requests: pin the appliance's
    # address in its neighbour table, so that each request is one frame.
    subprocess.run(["ip", "-n", net.client_ns, "neigh", "replace", APPLIANCE_IP, "lladdr", app.mac, "dev",
                    net.client_if, "nud", "permanent"], check=True, capture_output=True)
    try:
        client = Client(net, timeout_s=0.3)
        for i in range(REQUESTS):
            before = app.stats()
            client.send_raw(b"\x82\xa2id" + bytes([i]) + b"\xa6tokens\x91\x01")
            assert client.expect_silence(0.3), "a refused source was answered"
            after = settled_stats(app, before, 1)
            assert after["drop_acl"] == before["drop_acl"] + 1
            assert drops_total(after) == drops_total(before) + 1
            assert after["requests"] == before["requests"] and after["busy"] == before["busy"]
            assert after["too_large"] == before["too_large"]
        client.close()

        # ICMP echo: each one dropped under drop_acl, none answered.
        before = app.stats()
        out = ping(net, 2)
        assert out.returncode != 0 and " 100% packet loss" in out.stdout, out.stdout
        after = settled_stats(app, before, 2)
        assert after["drop_acl"] == before["drop_acl"] + 2 and after["icmp_replies"] == before["icmp_replies"]

        # An ARP request for the appliance's address from the refused source: dropped too.
        mac = net.client_mac()
        before = app.stats()
        send_frame(net, bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") /
                              ARP(op=1, hwsrc=mac, psrc=net.client_ip, pdst=APPLIANCE_IP)))
        after = settled_stats(app, before, 1)
        assert after["drop_acl"] == before["drop_acl"] + 1 and after["arp_replies"] == before["arp_replies"]
        assert drops_total(after) == drops_total(before) + 1
        assert app.stats()["answers"] == 0
    finally:
        subprocess.run(["ip", "-n", net.client_ns, "neigh", "del", APPLIANCE_IP, "dev", net.client_if],
                       capture_output=True)
        stop_cleanly(app)


BAD_PREFIXES = ["198.18.0.1/15", "1.2.3.4/33", "1.2.3", "a.b.c.d/8", "", "198.18.0.2"]


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("prefix", BAD_PREFIXES, ids=[p or "empty" for p in BAD_PREFIXES])
def test_bad_prefix_stops_zerohopd(net, build, prefix):
    with pytest.raises(RuntimeError, match=f"bad value '{prefix}' for --allow"):
        Appliance(build, net, extra_args=["--allow", prefix])


@pytest.mark.parametrize("build", BUILDS)
def test_more_than_64_prefixes_stop_zerohopd(net, build):
    args = [a for i in range(65) for a in ("--allow", f"198.19.{i}.0/24")]
    with pytest.raises(RuntimeError, match="bad value '198.19.64.0/24' for --allow"):
        Appliance(build, net, extra_args=args)

# SPDX-License-Identifier: MIT
"""zerohop-bench --dpdk: the bench's own frames through a DPDK port on the client veth (net_af_xdp, and
net_af_packet), against the appliance on the dev network. Every EAL run has --no-pci, a file prefix of
its own and -l 0; the refusals are checked to exit before the EAL starts."""
import glob
import itertools
import json
import os
import socket
import struct
import subprocess
import time

import pytest

from zhnet import APPLIANCE_IP, ROOT, netns
from test_bench import assert_consistent

_run_ids = itertools.count()
# build-asan: net_af_xdp leaks libxdp's umem struct at close (see the file); nothing else is suppressed.
_ENV = dict(os.environ, LSAN_OPTIONS="suppressions=" + os.path.join(os.path.dirname(__file__), "lsan-af-xdp.supp"))


def bench(build, ns, *args, timeout_s=90):
    """Run zerohop-bench in namespace `ns`; returns (exit code, stdout, stderr)."""
    cmd = ["ip", "netns", "exec", ns, f"{ROOT}/{build}/zerohop-bench", *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=_ENV)
    return out.returncode, out.stdout, out.stderr


def eal_args(net, vdev="net_af_xdp0", no_pci=True, quiet=True):
    """The EAL arguments after --: the client veth as the port, no PCI probing, a small pool. Not quiet:
    an EAL that starts says "EAL: Detected CPU lcores" on stderr (the refusal tests look for it)."""
    args = ["--no-pci"] if no_pci else []
    if quiet:
        args.append("--log-level=lib.eal:warning")
    # --no-shconf --no-telemetry: the EAL's runtime directory stays empty, and the bench removes it.
    return ["--", *args, "--no-shconf", "--no-telemetry", "--no-huge", "-m", "256",
            "--vdev", f"{vdev},iface={net.client_if}", "-l", "0",
            "--file-prefix", f"zb-dpdk-{os.getpid()}-{next(_run_ids)}"]


def bench_dpdk_json(build, net, *args, vdev="net_af_xdp0", timeout_s=150):
    """zerohop-bench --dpdk --json in the client namespace, bounded like test_bench's bench_json."""
    defaults = []
    if "--duration-s" not in args:
        defaults += ["--duration-s", 60]
    if "--timeout-ms" not in args:
        defaults += ["--timeout-ms", 10000]
    rc, out, err = bench(build, net.client_ns, "--dpdk", "--src", net.client_ip, "--json", *defaults, *args,
                         *eal_args(net, vdev), timeout_s=timeout_s)
    assert rc == 0, out + err
    result = json.loads(out)
    assert_consistent(result)
    assert result["dpdk"]["rx_bad_checksum"] == 0
    return result


@pytest.mark.parametrize("vdev", ["net_af_xdp0", "net_af_packet0"])
def test_bench_dpdk_closed_loop_all_answered(net, appliance, vdev):
    before = appliance.stats()
    r = bench_dpdk_json(appliance.build, net, "--mode", "closed", "--outstanding", 8, "--count", 20000, vdev=vdev)
    assert r["sent"] == 20000
    assert r["answered"] == 20000 and r["lost"] == 0 and r["stray"] == 0
    assert r["status"]["ok"] == 20000
    lat = r["latency_us"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]
    assert r["throughput_rps"] > 0
    after = appliance.stats()
    assert after["status_ok"] - before["status_ok"] == 20000
    # The appliance checks both checksums in software on af_packet: the bench's frames carry full ones.
    for key in ("drop_udp_bad_checksum", "drop_ip_bad_checksum", "drop_ip_bad_header", "drop_udp_bad_length"):
        assert after[key] == before[key], key
    # The destination's MAC came from one ARP exchange with the appliance.
    assert after["arp_replies"] > before["arp_replies"]
    assert r["dpdk"]["port"].startswith(vdev)
    # A clean EAL cleanup: no runtime directory left behind by any run of this module.
    assert not glob.glob(f"/var/run/dpdk/zb-dpdk-{os.getpid()}-*")
    if vdev == "net_af_packet0":
        # af_xdp keeps its fill ring's mbufs at close (zh_bench_dpdk.h); af_packet gives all back.
        assert r["dpdk"]["mbufs_unreturned"] == 0


def test_bench_dpdk_given_mac_and_source_ports(net, appliance):
    before = appliance.stats()
    r = bench_dpdk_json(appliance.build, net, "--dst-mac", appliance.mac, "--src-ports", 4, "--count", 2000,
                        "--outstanding", 4)
    assert r["answered"] == 2000 and r["status"]["ok"] == 2000 and r["dpdk"]["src_ports"] == 4
    # No ARP was needed. (af_xdp: with af_packet the client's kernel also sees the answers, and asks
    # the appliance's MAC itself to send its ICMP port-unreachable.)
    assert appliance.stats()["arp_replies"] == before["arp_replies"]


def arp_request_from_app_side(net, target_ip, count):
    """Broadcast ARP requests for target_ip on the appliance's veth, as if the appliance asked."""
    src_mac = bytes.fromhex("020000000099")
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, socket.inet_aton(APPLIANCE_IP), bytes(6),
                      socket.inet_aton(target_ip))
    frame = b"\xff" * 6 + src_mac + struct.pack("!H", 0x0806) + arp
    with netns(net.app_ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((net.app_if, 0))
        for _ in range(count):
            s.send(frame)
            time.sleep(0.05)
    finally:
        s.close()


def test_bench_dpdk_open_loop_answers_arp(net, appliance):
    """An open-loop run at a modest rate; meanwhile ARP requests for the client's address arrive, which
    only the bench can answer (af_xdp takes every frame away from the client's kernel)."""
    cmd = ["ip", "netns", "exec", net.client_ns, f"{ROOT}/{appliance.build}/zerohop-bench", "--dpdk", "--src",
           net.client_ip, "--json", "--mode", "open", "--rate", "2000", "--duration-s", "2", "--count", "100000",
           "--timeout-ms", "10000", *eal_args(net)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_ENV)
    try:
        # One request every 0.1 s while the bench runs (its start-up takes a while on a busy machine),
        # for at most 30 s.
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            arp_request_from_app_side(net, net.client_ip, count=1)
            time.sleep(0.1)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, out + err
    r = json.loads(out)
    assert_consistent(r)
    # 2 s at 2000/s: the schedule decides how many leave.
    assert 3900 <= r["sent"] <= 4001
    assert r["answered"] >= r["sent"] * 0.99
    assert r["status"]["ok"] == r["answered"]
    assert r["dpdk"]["arp_replies"] >= 1


def test_bench_dpdk_refuses_eal_without_no_pci(net, appliance):
    rc, out, err = bench(appliance.build, net.client_ns, "--dpdk", "--src", net.client_ip, "--count", 10,
                         *eal_args(net, no_pci=False, quiet=False))
    assert rc == 2, out + err
    assert "refusing to start the EAL without --no-pci" in err and out == ""
    # The EAL never started: it would have said so.
    assert "EAL:" not in err


@pytest.mark.parametrize("args", [["--addr", "203.0.113.9"], ["--addr", "198.20.0.1"], ["--src", "192.0.2.7"]])
def test_bench_dpdk_refuses_addresses_outside_test_ranges(net, appliance, args):
    cmd = ["--dpdk", "--count", 10, *args]
    if "--src" not in args:
        cmd += ["--src", net.client_ip]
    rc, out, err = bench(appliance.build, net.client_ns, *cmd, *eal_args(net, quiet=False))
    assert rc == 2, out + err
    assert "refusing to send" in err and out == ""
    assert "EAL:" not in err


def test_bench_dpdk_usage_errors(net, appliance):
    eal = eal_args(net, quiet=False)
    for args in (["--dpdk", *eal],                                          # no --src
                 ["--dpdk", "--src", net.client_ip],                        # no EAL arguments
                 ["--dpdk", "--src", net.client_ip, "--threads", "2", *eal],
                 ["--dpdk", "--src", net.client_ip, "--wait", "block", *eal],
                 ["--dpdk", "--src", net.client_ip, "--dst-mac", "02:00:00:00:00", *eal],
                 ["--src", net.client_ip],                                  # --src without --dpdk
                 ["--count", "10", *eal]):                                  # EAL arguments without --dpdk
        rc, out, err = bench(appliance.build, net.client_ns, *args)
        assert rc == 2, (args, out, err)
        assert "EAL:" not in err, (args, err)

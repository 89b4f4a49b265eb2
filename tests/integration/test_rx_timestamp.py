# SPDX-License-Identifier: MIT
"""NIC rx timestamps (docs/PROTOCOL.md, the trace's fifth value; docs/MGMT.md, the wire_to_rx stage).

No port here has a hardware clock, but DPDK 22.11's net_pcap stamps every frame with libpcap's capture
time (the kernel's CLOCK_REALTIME, in microseconds) without offering the offload or read_clock: the
appliance maps that clock to the TSC with a stated bound. On net_pcap the trace must carry a NIC rx time
no later than the rx poll (within the bound), the wire_to_rx stage must count every traced request,
and the status must say so; on af_packet (no stamps) the trace says none (0) and the stage stays empty.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from conftest import BUILDS
from zhnet import APPLIANCE_IP, UDP_PORT, Appliance, Client, ROOT, netns

REQUESTS = 40
PCAP_VDEV = "net_pcap0,iface={iface}"
BOUND_RE = re.compile(r"rx timestamps: nic \(mapped, bound ±(\d+) ns\)")


def ctl_json(app, *args):
    out = subprocess.run([f"{ROOT}/{app.build}/zerohopctl", "--socket", app.ctl_socket, "--json", *args],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def metrics_text(net, port=9100):
    with netns(net.app_ns):
        s = socket.create_connection(("127.0.0.1", port), timeout=2.0)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.decode()
    finally:
        s.close()


def start(build, net, vdev=None):
    if not os.path.exists(f"{ROOT}/{build}/zerohopd"):
        pytest.fail(f"{build}/zerohopd is not built (make all / make asan)")
    return Appliance(build, net, vdev=vdev)


def stop(app):
    rc, final = app.stop()
    assert rc == 0, "zerohopd did not stop cleanly:\n" + "".join(app.log[-40:])
    assert final is not None
    return final


def traced(client, count):
    """`count` traced echo requests, spaced so that each is its own burst; returns the traces and
    the client's CLOCK_MONOTONIC send times (ns)."""
    traces, sent_ns = [], []
    for i in range(count):
        sent_ns.append(time.monotonic_ns())
        answer = client.ask({"id": i, "tokens": [i], "trace": True})
        assert answer["status"] == 0, answer
        assert len(answer["trace"]) == 5, answer
        traces.append(answer["trace"])
        time.sleep(0.02)
    return traces, sent_ns


@pytest.mark.parametrize("build", BUILDS)
def test_net_pcap_stamps_are_mapped(net, build):
    app = start(build, net, vdev=PCAP_VDEV)
    try:
        line = next((l for l in app.log if "rx timestamps:" in l), "")
        m = BOUND_RE.search(line)
        assert m, "the start-up line states no mapped bound:\n" + "".join(app.log)
        bound_ns = int(m.group(1))
        # A microsecond stamp and a clock_gettime bracket: about 1 us, never tens of us.
        assert 1000 <= bound_ns < 50000, line
        client = Client(net)
        traces, sent_ns = traced(client, REQUESTS)
        client.close()
        # The TSC's rate, from the appliance's own rx stamps against the client's send times over the
        # run (the jitter of a send is small beside the run's length).
        tsc_per_ns = (traces[-1][0] - traces[0][0]) / (sent_ns[-1] - sent_ns[0])
        assert 0.1 < tsc_per_ns < 10, tsc_per_ns
        bound_tsc = bound_ns * tsc_per_ns
        wire_ns = []
        for rx, publish, claim, done, nic_rx in traces:
            assert nic_rx != 0, "a frame net_pcap stamped has no NIC rx time"
            assert 0 < rx <= publish <= claim <= done
            # The frame reached the kernel before the rx lcore polled it, within the map's bound.
            assert nic_rx <= rx + bound_tsc, (nic_rx, rx, bound_tsc)
            wire_ns.append((rx - nic_rx) / tsc_per_ns)
        # And not absurdly long before (the dev network delivers within milliseconds).
        assert max(wire_ns) < 1e9, wire_ns
        print(f"net_pcap wire -> rx poll: min {min(wire_ns) / 1000:.1f} us, "
              f"median {sorted(wire_ns)[len(wire_ns) // 2] / 1000:.1f} us, max {max(wire_ns) / 1000:.1f} us; "
              f"map bound ±{bound_ns} ns")

        stats = app.stats()
        assert stats["rx_stamps_mapped"] >= REQUESTS and stats["rx_stamps_unmapped"] == 0, stats
        st = ctl_json(app, "stats")
        assert st["stages"]["wire_to_rx"]["count"] >= REQUESTS, st["stages"]
        assert st["stages"]["wire_to_rx"]["max_us"] > 0, st["stages"]
        assert ctl_json(app, "status")["rx_timestamps"].startswith("nic (mapped, bound ±")
        text = metrics_text(net)
        count = re.search(r'zerohop_stage_latency_seconds_count\{stage="wire_to_rx"\} (\d+)', text)
        assert count and int(count.group(1)) >= REQUESTS, text[:2000]

        # zerohop-probe splits its first stage at the NIC rx time and counts the map's bound in it.
        result = subprocess.run([shutil.which("ip") or "/usr/sbin/ip", "netns", "exec", net.client_ns,
                                 f"{ROOT}/{build}/zerohop-probe", "--addr", APPLIANCE_IP, "--port", str(UDP_PORT),
                                 "--json", "--count", "200", "--warmup", "20", "--timeout-ms", "500",
                                 "--nic-bound-ns", str(bound_ns)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["nic_rx_timestamp"] is True and report["nic_bound_ns"] == bound_ns, report
        stages = report["targets"][0]["points"][0]["stages"]
        assert "wire_rx_poll" not in stages and {"wire", "nic_rx_poll"} <= set(stages), stages
        answered = report["targets"][0]["points"][0]["answered"]
        assert stages["nic_rx_poll"]["count"] == answered and stages["wire"]["count"] == answered
        # Send -> NIC rx and NIC rx -> rx poll are in order within the bounds the probe states.
        assert stages["nic_rx_poll"]["below_bound"] == 0 and stages["wire"]["below_bound"] == 0, stages
        print(f"zerohop-probe on net_pcap: wire p50 {stages['wire']['p50_us']:.1f} us, NIC rx -> rx poll "
              f"p50 {stages['nic_rx_poll']['p50_us']:.1f} us, p99 {stages['nic_rx_poll']['p99_us']:.1f} us")

        # With the control socket the probe takes the bound from the appliance's status itself.
        status_bound = ctl_json(app, "status")["rx_timestamp_bound_ns"]
        assert 0 < status_bound < 1_000_000, status_bound
        result = subprocess.run([shutil.which("ip") or "/usr/sbin/ip", "netns", "exec", net.client_ns,
                                 f"{ROOT}/{build}/zerohop-probe", "--addr", APPLIANCE_IP, "--port", str(UDP_PORT),
                                 "--count", "100", "--warmup", "10", "--timeout-ms", "500",
                                 "--ctl-socket", app.ctl_socket],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "(the appliance's status): wire and rx poll are split at it" in result.stdout, result.stdout
    finally:
        stop(app)


@pytest.mark.parametrize("build", BUILDS)
def test_no_rx_timestamp_turns_them_off(net, build):
    app = Appliance(build, net, vdev=PCAP_VDEV, extra_args=["--no-rx-timestamp"])
    try:
        assert any("rx timestamps: tsc (the port's are turned off" in l for l in app.log), "".join(app.log)
        client = Client(net)
        traces, _ = traced(client, 3)
        client.close()
        assert all(t[4] == 0 for t in traces), traces
        assert app.stats()["rx_stamps_mapped"] == 0
    finally:
        stop(app)


@pytest.mark.parametrize("build", BUILDS)
def test_af_packet_trace_says_none(net, build):
    app = start(build, net)
    try:
        assert any("rx timestamps: tsc (port offers none)" in l for l in app.log), "".join(app.log)
        client = Client(net)
        traces, _ = traced(client, 5)
        client.close()
        assert all(t[4] == 0 for t in traces), traces
        stats = app.stats()
        assert stats["rx_stamps_mapped"] == 0 and stats["rx_stamps_unmapped"] == 0, stats
        assert ctl_json(app, "stats")["stages"]["wire_to_rx"]["count"] == 0
        assert ctl_json(app, "status")["rx_timestamps"] == "tsc (port offers none)"
    finally:
        stop(app)

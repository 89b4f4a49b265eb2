# SPDX-License-Identifier: MIT
"""zerohop-bench against the appliance through the dev network, and zerohop-udp-echo (the kernel
baseline) on a separate dev network of its own, whose app-side veth gets the kernel address
198.18.0.1/24 inside its namespace; the appliance's network is never given one."""
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import msgpack
import pytest

from zhnet import APPLIANCE_IP, ROOT, UDP_PORT, DevNet, netns

STATUS_NAMES = ["ok", "bad_request", "unknown_model", "busy", "too_large", "unauthorized", "draining",
                "internal", "other"]


def bench(build, ns, *args, timeout_s=90):
    """Run zerohop-bench in namespace `ns`; returns (exit code, stdout, stderr)."""
    cmd = ["ip", "netns", "exec", ns, f"{ROOT}/{build}/zerohop-bench", *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    return out.returncode, out.stdout, out.stderr


def bench_json(build, ns, *args, timeout_s=150):
    """Run zerohop-bench --json; the run is bounded by its count (and a generous --duration-s), and a
    request counts as lost only after 10 s, so that a busy shared machine does not fail the test."""
    defaults = []
    if "--duration-s" not in args:
        defaults += ["--duration-s", 120]
    if "--timeout-ms" not in args:
        defaults += ["--timeout-ms", 10000]
    rc, out, err = bench(build, ns, "--json", *defaults, *args, timeout_s=timeout_s)
    assert rc == 0, out + err
    result = json.loads(out)
    assert_consistent(result)
    return result


def assert_consistent(r):
    assert set(r["status"]) == set(STATUS_NAMES)
    assert r["answered"] == sum(r["status"].values())
    assert r["sent"] == r["answered"] + r["lost"]
    assert r["malformed"] == 0


def test_bench_histogram_self_test(appliance):
    out = subprocess.run([f"{ROOT}/{appliance.build}/zerohop-bench", "--self-test"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert ", 0 failed" in out.stdout


def test_bench_closed_loop_all_answered(net, appliance):
    before = appliance.stats()
    r = bench_json(appliance.build, net.client_ns, "--mode", "closed", "--outstanding", 8, "--count", 20000)
    assert r["sent"] == 20000
    assert r["answered"] == 20000 and r["lost"] == 0 and r["stray"] == 0
    assert r["status"]["ok"] == 20000
    lat = r["latency_us"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]
    after = appliance.stats()
    assert after["status_ok"] - before["status_ok"] == 20000


def test_bench_open_loop_modest_rate(net, appliance):
    r = bench_json(appliance.build, net.client_ns, "--mode", "open", "--rate", 2000, "--duration-s", 2,
                   "--count", 100000)
    # 2 s at 2000/s: the schedule decides how many leave, not how fast answers come back.
    assert 3900 <= r["sent"] <= 4001
    assert r["answered"] >= r["sent"] * 0.99
    assert r["status"]["ok"] == r["answered"]


def test_bench_poisson_two_threads(net, appliance):
    r = bench_json(appliance.build, net.client_ns, "--mode", "poisson", "--rate", 2000, "--duration-s", 1,
                   "--threads", 2, "--seed", 7, "--tokens-random", 8, "--vocab", 1000)
    assert 1500 <= r["sent"] <= 2500
    assert r["answered"] >= r["sent"] * 0.99
    assert r["status"]["ok"] == r["answered"]


def test_bench_status_codes_counted(net, appliance):
    r = bench_json(appliance.build, net.client_ns, "--model", "nope", "--count", 500, "--outstanding", 4)
    assert r["answered"] == 500 and r["status"]["unknown_model"] == 500


def read_hgrm(path):
    with open(path) as f:
        lines = f.read().split("\n")
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    assert lines[1] == ""
    rows, footer = [], []
    for line in lines[2:]:
        if line.startswith("#["):
            footer.append(line)
        elif line:
            rows.append(line.split())
    return rows, footer


def test_bench_hgrm_layout(net, appliance, tmp_path):
    path = tmp_path / "run.hgrm"
    r = bench_json(appliance.build, net.client_ns, "--count", 5000, "--outstanding", 2, "--hgrm", path)
    rows, footer = read_hgrm(path)
    assert len(rows) > 10
    assert all(len(row) == 4 for row in rows[:-1]) and len(rows[-1]) == 3
    values = [float(row[0]) for row in rows]
    pcts = [float(row[1]) for row in rows]
    counts = [int(row[2]) for row in rows]
    assert values == sorted(values) and pcts == sorted(pcts) and counts == sorted(counts)
    assert pcts[0] == 0.0 and pcts[-1] == 1.0
    assert counts[-1] == r["answered"] == 5000
    for row in rows[:-1]:
        assert abs(float(row[3]) - 1 / (1 - float(row[1]))) < 0.01 * float(row[3])
    assert len(footer) == 3
    m = re.fullmatch(r"#\[Mean    = +([0-9.]+), StdDeviation   = +([0-9.]+)\]", footer[0])
    assert m
    m = re.fullmatch(r"#\[Max     = +([0-9.]+), Total count    = +([0-9]+)\]", footer[1])
    assert m and int(m.group(2)) == r["answered"]
    assert abs(float(m.group(1)) - r["latency_us"]["max"]) < 0.01
    assert re.fullmatch(r"#\[Buckets = +[0-9]+, SubBuckets     = +[0-9]+\]", footer[2])


@pytest.mark.skipif(shutil.which("gnuplot") is None, reason="gnuplot is not installed (gnuplot-nox)")
def test_bench_plot_png(net, appliance, tmp_path):
    path = tmp_path / "run.png"
    bench_json(appliance.build, net.client_ns, "--count", 3000, "--plot", path, "--title", "test_bench's plot")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 1024


# Documentation ranges (RFC 5737) and the edges of 198.18.0.0/15: nothing is ever sent to them.
@pytest.mark.parametrize("addr", ["192.0.2.1", "198.51.100.7", "203.0.113.9", "198.20.0.1", "198.17.255.255",
                                  "0.0.0.0", "255.255.255.255"])
def test_bench_refuses_destination_outside_test_ranges(net, appliance, addr):
    # Inside the client namespace, which has no route to any of these anyway.
    rc, out, err = bench(appliance.build, net.client_ns, "--addr", addr, "--count", 10, "--duration-s", 1)
    assert rc == 2, out + err
    assert "refusing" in err and out == ""


def test_bench_usage_errors(net, appliance):
    for args in (["--mode", "open"], ["--rate", "10"], ["--count", "0"], ["--count", "1000000000"],
                 ["--duration-s", "100000"], ["--tokens", "1,x"], ["--dpdk"], ["--wait", "nap"]):
        rc, out, err = bench(appliance.build, net.client_ns, *args)
        assert rc == 2, (args, out, err)


class EchoServer:
    """zerohop-udp-echo in the app namespace of its own dev network."""

    def __init__(self, build, net, *args):
        cmd = ["ip", "netns", "exec", net.app_ns, f"{ROOT}/{build}/zerohop-udp-echo", "--bind", APPLIANCE_IP,
               "--port", str(UDP_PORT), "--duration-s", "120", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.log = []
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 20
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None or time.monotonic() > deadline:
                raise RuntimeError("zerohop-udp-echo did not start:\n" + "".join(self.log))
            if line.startswith("zerohop-udp-echo: ready"):
                break

    def _read(self):
        for line in self.proc.stdout:
            self.log.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=10)
        for line in self.log:
            if line.startswith("zerohop-udp-echo: stats "):
                return rc, json.loads(line[len("zerohop-udp-echo: stats "):])
        return rc, None


@pytest.fixture(scope="module")
def kernel_net():
    """A second dev network for the kernel server: its app-side veth carries 198.18.0.1/24 inside
    its own namespace (the appliance's network stays without a kernel address)."""
    dn = DevNet(("zb%x" % (os.getpid() % 0xffff))[:8] + "udp")
    dn.down()
    dn.up()
    subprocess.run(["ip", "-n", dn.app_ns, "addr", "replace", f"{APPLIANCE_IP}/24", "dev", dn.app_if],
                   check=True, capture_output=True)
    yield dn
    dn.down()


def ask_raw(ns, payload, timeout_s=2.0):
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout_s)
        s.connect((APPLIANCE_IP, UDP_PORT))
        s.send(payload)
        return s.recv(65536)
    finally:
        s.close()


@pytest.mark.parametrize("mode", ["--busy-poll", None])
def test_bench_udp_echo_baseline(net, appliance, kernel_net, mode):
    server = EchoServer(appliance.build, kernel_net, *([mode] if mode else []))
    try:
        # The same request bytes get the same answer bytes from both servers.
        for req in ({"id": 42, "tokens": [1, 2, 3, 4294967295]}, {"id": 43, "model": "nope", "tokens": [1]},
                    {"id": 44, "model": "echo", "op": "echo", "tokens": []}, {"tokens": [1]}):
            payload = msgpack.packb(req)
            assert ask_raw(kernel_net.client_ns, payload) == ask_raw(net.client_ns, payload), req
        oversized = msgpack.packb({"id": 45, "tokens": list(range(1 << 20, (1 << 20) + 300))})
        assert len(oversized) > 1472
        too_large = msgpack.unpackb(ask_raw(kernel_net.client_ns, oversized))
        assert too_large["status"] == 4 and too_large["id"] is None
        r = bench_json(appliance.build, kernel_net.client_ns, "--mode", "closed", "--outstanding", 8,
                       "--count", 20000)
        assert r["sent"] == 20000 and r["answered"] == 20000 and r["lost"] == 0
        assert r["status"]["ok"] == 20000
        r = bench_json(appliance.build, kernel_net.client_ns, "--mode", "open", "--rate", 2000,
                       "--duration-s", 1, "--wait", "block")
        assert r["answered"] >= r["sent"] * 0.99 and r["sent"] >= 1900
    finally:
        rc, stats = server.stop()
    assert rc == 0, "".join(server.log)
    assert stats is not None and stats["answers"] == stats["requests"] >= 20000 + 1900 + 5
    assert "zerohop-udp-echo: stopped\n" in server.log


def test_bench_udp_echo_refuses_other_addresses(appliance):
    out = subprocess.run([f"{ROOT}/{appliance.build}/zerohop-udp-echo", "--bind", "203.0.113.3", "--duration-s",
                          "1"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "refusing" in out.stderr

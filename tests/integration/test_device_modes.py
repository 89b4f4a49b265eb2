# SPDX-License-Identifier: MIT
"""The cpu device's configurations end to end: two pinned workers under a long run of requests, and
inline mode (the rx lcore runs the device loop itself)."""
import os
import time

import msgpack
import pytest

from conftest import BUILDS
from zhnet import Appliance, Client


def pipelined(client, count, window=64, deadline_s=300):
    """Send `count` echo requests keeping `window` in flight; return {id: answer}. Bounded in time."""
    answers = {}
    sent = 0
    started = time.monotonic()
    client.sock.settimeout(2.0)
    while len(answers) < count:
        assert time.monotonic() - started < deadline_s, f"{len(answers)}/{count} answered in {deadline_s} s"
        while sent < count and sent - len(answers) < window:
            client.send_raw(msgpack.packb({"id": sent, "tokens": [sent & 0xffff, sent >> 16, 7]}))
            sent += 1
        answer = client.recv_answer()
        assert answer["id"] not in answers, f"id {answer['id']} answered twice"
        answers[answer["id"]] = answer
    return answers


@pytest.mark.parametrize("build", BUILDS)
def test_two_workers_answer_100k_requests(net, build):
    app = Appliance(build, net, extra_args=["--workers", "2", "--worker-cores", "0,1"])
    try:
        assert any("2 worker(s) on core(s) 0,1" in line for line in app.log)
        client = Client(net)
        count = 100_000 if build == "build" else 20_000  # the sanitizer build is ~5x slower
        answers = pipelined(client, count)
        client.close()
        for i in range(count):
            assert answers[i] == {"id": i, "status": 0, "tokens": [i & 0xffff, i >> 16, 7]}
        stats = app.stats()
        assert stats["answers"] >= count and stats["status_ok"] >= count
        assert stats["busy"] == 0
    finally:
        rc, final = app.stop()
    assert rc == 0
    # The workers (not the rx lcore) served every request.
    served = [line for line in app.log if "device served" in line]
    assert served and int(served[-1].split()[3]) >= count


@pytest.mark.parametrize("build", BUILDS)
def test_inline_mode(net, build):
    app = Appliance(build, net, extra_args=["--workers", "0"])
    try:
        assert any("inline (the rx lcore runs the device loop)" in line for line in app.log)
        client = Client(net)
        answers = pipelined(client, 5000)
        for i in range(5000):
            assert answers[i]["status"] == 0 and answers[i]["id"] == i
        bad = client.ask_raw(b"\xc1")
        assert bad["status"] == 1 and bad["id"] is None
        assert client.ask({"id": 1, "tokens": [3]}) == {"id": 1, "status": 0, "tokens": [3]}
        client.close()
        stats = app.stats()
        assert stats["served_inline"] == stats["requests"] >= 5002
    finally:
        rc, _ = app.stop()
    assert rc == 0
    assert any("device served 0 requests" in line for line in app.log)


@pytest.mark.parametrize("build", BUILDS)
def test_stalled_device_is_reported_and_answered_internal(net, build, monkeypatch):
    # Test-only knob: the single worker stops beating and serving after 3 requests.
    monkeypatch.setenv("ZH_TEST_STALL_AFTER_REQUESTS", "3")
    app = Appliance(build, net, extra_args=["--workers", "1", "--stall-ms", "200"])
    try:
        client = Client(net, timeout_s=1.0)
        for i in range(3):
            assert client.ask({"id": i, "tokens": [i]})["status"] == 0
        # The 4th reaches the ring but no worker takes it: no answer, no hang.
        client.send_raw(msgpack.packb({"id": 3, "tokens": [3]}))
        assert client.expect_silence(0.5)
        deadline = time.monotonic() + 10
        while not any("device stalled" in line for line in app.log):
            assert time.monotonic() < deadline, "the watchdog never reported the stall"
            time.sleep(0.05)
        answer = client.ask({"id": 4, "tokens": [4]})
        assert answer["status"] == 7 and answer["error"] == "device stalled"
        client.close()
        assert app.stats()["device_stalled"] >= 1
    finally:
        rc, _ = app.stop()
    # Shutdown does not hang on the stalled request; it says what it left behind.
    assert rc == 0
    assert any("still on the device at stop" in line for line in app.log)


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("kind", ["cuda-host", "cuda-gpudirect"])
def test_cuda_kinds_refuse_without_a_gpu(net, build, kind):
    import subprocess
    from zhnet import ROOT
    if os.path.exists("/dev/nvidia0"):
        pytest.skip("a GPU is present: the CUDA placements are checked by make gpu-check")
    out = subprocess.run(["ip", "netns", "exec", net.app_ns, f"{ROOT}/{build}/zerohopd", "--no-pci", "--no-huge",
                          "-m", "256", "--file-prefix", f"zh-kind-{os.getpid()}", "--vdev",
                          f"net_af_packet0,iface={net.app_if}", "-l", "0-1", "--log-level=lib.eal:warning",
                          "--", "--device", kind], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"{kind} cannot run: no CUDA driver (cudaErrorInsufficientDriver, 35)" in out.stdout + out.stderr


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("mode", ["zero_copy", "copied"])
def test_tx_answers_recycle_their_slots(net, build, mode):
    # Eight slots and 2000 answers: a slot kept by a sent answer (zero-copy) must come back when the
    # port frees the frame, or the ring fills and requests turn busy.
    extra = ["--ring-slots", "8"] + (["--tx-copy"] if mode == "copied" else [])
    app = Appliance(build, net, extra_args=extra)
    try:
        client = Client(net)
        answers = pipelined(client, 2000, window=4)
        client.close()
        assert all(a["status"] == 0 for a in answers.values())
        stats = app.stats()
        assert stats["busy"] == 0
        assert stats["answers_" + mode] >= 2000
        other = "answers_copied" if mode == "zero_copy" else "answers_zero_copy"
        assert stats[other] == 0
    finally:
        rc, _ = app.stop()
    assert rc == 0

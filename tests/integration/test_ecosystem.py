# SPDX-License-Identifier: MIT
"""Ecosystem hooks: DPDK telemetry shows zerohop's counters (/zerohop/stats, what dpdk-telemetry.py
asks), and systemd's notify protocol hears READY and STOPPING."""
import glob
import json
import os
import socket
import tempfile

import pytest

from conftest import BUILDS
from zhnet import Appliance, Client


def telemetry(sock_path, cmd):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    s.connect(sock_path)
    try:
        json.loads(s.recv(16384))  # the greeting: version, pid, max_output_len
        s.send(cmd.encode())
        return json.loads(s.recv(65536))
    finally:
        s.close()


@pytest.mark.parametrize("build", BUILDS)
def test_dpdk_telemetry_and_sd_notify(net, build, monkeypatch):
    notify = tempfile.mktemp(prefix="zh-notify-")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(notify)
    ns.settimeout(30)
    monkeypatch.setenv("NOTIFY_SOCKET", notify)
    app = Appliance(build, net)
    try:
        ready = ns.recv(4096).decode()
        assert "READY=1" in ready
        c = Client(net)
        for i in range(5):
            assert c.ask({"id": i, "tokens": [i]})["status"] == 0
        c.close()
        prefix = app.proc.args[app.proc.args.index("--file-prefix") + 1]
        socks = glob.glob(f"/var/run/dpdk/{prefix}/dpdk_telemetry.v2")
        assert socks, "DPDK's telemetry socket exists"
        reply = telemetry(socks[0], "/")
        assert "/zerohop/stats" in reply["/"]
        stats = telemetry(socks[0], "/zerohop/stats")["/zerohop/stats"]
        assert stats["requests"] >= 5 and stats["answers"] >= 5 and stats["models"] == 1
    finally:
        rc, _ = app.stop()
        try:
            assert "STOPPING=1" in ns.recv(4096).decode()
        finally:
            ns.close()
            os.unlink(notify)
    assert rc == 0

# SPDX-License-Identifier: MIT
"""zerohopd --config FILE and --check-config FILE: the file's settings apply, the command line
overrides them, and a bad file is refused with its line before anything starts."""
import os
import subprocess
import tempfile

import pytest

from conftest import BUILDS
from zhnet import ROOT, Appliance, Client


def write(text):
    fd, path = tempfile.mkstemp(prefix="zh-cfg-", suffix=".ini")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("build", BUILDS)
def test_check_config(build):
    good = write("[device]\nworkers = 1\nring_slots = 256\n[models]\nfirst = echo\n")
    bad = write("[device]\nworkers = 1\nring_slots = 300\n")
    unknown = write("[network]\nudp_port = 9000\ncolour = blue\n")
    try:
        out = subprocess.run([f"{ROOT}/{build}/zerohopd", "--check-config", good], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0 and "valid" in out.stdout
        out = subprocess.run([f"{ROOT}/{build}/zerohopd", "--check-config", bad], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 1 and f"{bad}:3:" in out.stderr and "ring_slots" in out.stderr
        out = subprocess.run([f"{ROOT}/{build}/zerohopd", "--check-config", unknown], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 1 and f"{unknown}:3:" in out.stderr and "colour" in out.stderr
        out = subprocess.run([f"{ROOT}/{build}/zerohopd", "--check-config", f"{ROOT}/docs/config-example.ini"],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
    finally:
        for p in (good, bad, unknown):
            os.unlink(p)


@pytest.mark.parametrize("build", BUILDS)
def test_config_file_applies_and_command_line_overrides(net, build):
    path = write("[device]\nworkers = 1\nring_slots = 256\nidle = backoff\n"
                 "[mgmt]\nhttp_port = 0\n[models]\nfromfile = echo\nsecond = echo\n")
    try:
        app = Appliance(build, net, extra_args=["--config", path, "--ring-slots", "128"])
        try:
            assert any("ring 128 slots" in line for line in app.log), "the command line overrides the file"
            assert any("model fromfile: echo" in line and "the default" in line for line in app.log)
            c = Client(net)
            assert c.ask({"id": 1, "model": "second", "tokens": [5]}) == {"id": 1, "status": 0, "tokens": [5]}
            assert c.ask({"id": 2, "tokens": [6]})["status"] == 0
            c.close()
        finally:
            rc, _ = app.stop()
        assert rc == 0
    finally:
        os.unlink(path)

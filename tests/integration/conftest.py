# SPDX-License-Identifier: MIT
"""Fixtures: one private dev network per test module and one zerohopd per build under test.

ZH_TEST_BUILDS lists the build directories to test, e.g. "build build-asan" (default: "build").
"""
import os

import pytest

from zhnet import Appliance, DevNet, ROOT

BUILDS = os.environ.get("ZH_TEST_BUILDS", "build").split()


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root (network namespaces, af_packet)")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def net(request):
    # A short, per-module, per-process prefix: veth names are at most 15 characters.
    name = "zt%x%s" % (os.getpid() % 0xffff, request.module.__name__[-3:].replace("_", ""))
    dn = DevNet(name[:12].lower())
    dn.down()
    dn.up()
    yield dn
    dn.down()


@pytest.fixture(scope="module", params=BUILDS)
def appliance(request, net):
    build = request.param
    if not os.path.exists(f"{ROOT}/{build}/zerohopd"):
        pytest.fail(f"{build}/zerohopd is not built (make all / make asan)")
    app = Appliance(build, net)
    yield app
    rc, final = app.stop()
    assert rc == 0, "zerohopd did not stop cleanly:\n" + "".join(app.log[-40:])
    assert final is not None, "zerohopd printed no final counters"
    assert "zerohopd: stopped\n" in app.log

# SPDX-License-Identifier: MIT
"""Two queues on an af_packet port with fanout: requests from many source ports spread over both
rx/tx lcores and are all answered."""
import msgpack
import pytest

from conftest import BUILDS
from zhnet import Appliance, Client


@pytest.mark.parametrize("build", BUILDS)
def test_two_queues_spread_and_answer(net, build):
    # Three lcores on two cores: the control core on cpu 0, the two rx/tx lcores sharing cpu 1
    # (they back off when idle). af_packet's qpairs=2 opens two sockets in one fanout group, whose
    # hash spreads flows (source ports) over the two queues.
    app = Appliance(build, net, lcores="0@0,1@1,2@1", vdev_extra=",qpairs=2",
                    extra_args=["--queues", "2", "--workers", "0"])
    try:
        assert any("2 queue(s)" in line for line in app.log)
        clients = [Client(net) for _ in range(32)]
        sent = 0
        for rnd in range(5):
            for i, c in enumerate(clients):
                c.send_raw(msgpack.packb({"id": rnd * 1000 + i, "tokens": [i, rnd]}))
                sent += 1
            for i, c in enumerate(clients):
                answer = c.recv_answer()
                assert answer == {"id": rnd * 1000 + i, "status": 0, "tokens": [i, rnd]}
        for c in clients:
            c.close()
        lcores = app.lcore_stats()
        assert len(lcores) == 2
        requests = [lc["requests"] for lc in lcores]
        assert sum(requests) == sent
        assert min(requests) > 0, f"both queues got requests: {requests}"
    finally:
        rc, _ = app.stop()
    assert rc == 0

# SPDX-License-Identifier: MIT
"""External payload memory: the NIC-side half of cuda-gpudirect on any machine.

With `--payload-memory external` the device sets memory apart, the port registers it with DPDK
(rte_extmem_register), maps it for its DMA where it does any (rte_dev_dma_map) and builds its payload
mbufs on it (rte_pktmbuf_pool_create_extbuf): the same calls cuda-gpudirect makes with GPU memory. Here
the memory is host memory the cpu device reads, so every request must still be answered exactly; and
cuda-gpudirect itself must refuse with its reason on a machine without a GPU or an RDMA NIC.
"""
import os
import subprocess

import msgpack
import pytest

from conftest import BUILDS
from test_device_modes import pipelined
from zhnet import ROOT, Appliance, Client


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("workers", ["1", "0"])
def test_external_payload_memory_serves_every_request(net, build, workers):
    app = Appliance(build, net, extra_args=["--payload-memory", "external", "--workers", workers])
    try:
        line = next((l for l in app.log if "payloads in external" in l), "")
        assert "payloads in external host memory" in line, "".join(app.log)
        assert "registered with DPDK" in line
        # af_packet is a virtual port: the kernel copies its frames, there is nothing to map for DMA
        # (a PCI port would have rte_dev_dma_map program its IOMMU or memory registration here).
        assert "no DMA mapping (a virtual port: the CPU copies its frames)" in line
        assert "no header split" in line
        client = Client(net)
        count = 20_000 if build == "build" else 4_000
        answers = pipelined(client, count)
        # Requests of every size a datagram takes land in external mbufs and come back intact.
        for size in (0, 1, 100, 1000):
            tokens = list(range(size // 4))
            client.send_raw(msgpack.packb({"id": 10**9 + size, "tokens": tokens}))
            answer = client.recv_answer()
            assert answer == {"id": 10**9 + size, "status": 0, "tokens": tokens}
        client.close()
        for i in range(count):
            assert answers[i] == {"id": i, "status": 0, "tokens": [i & 0xffff, i >> 16, 7]}
        stats = app.stats()
        assert stats["answers"] >= count + 4
        assert stats["device_unmapped"] == 0 and stats["drop_multi_segment"] == 0
        assert stats["drop_split_layout"] == 0 and stats["drop_udp_unverified"] == 0
        # Nothing flushes on the cpu device: its memory is ordered like any host memory.
        assert stats["payload_flushes"] == 0
    finally:
        rc, _ = app.stop()
    assert rc == 0, "".join(app.log[-40:])


def test_payload_memory_option_is_checked(net):
    out = subprocess.run([f"{ROOT}/build/zerohopd", "--no-pci", "--no-huge", "-m", "64", "--", "--payload-memory",
                          "gpu"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "payload-memory" in out.stdout + out.stderr


def test_gpudirect_refuses_with_its_reason(net):
    """No GPU here (or no RDMA NIC): cuda-gpudirect says why and exits, it does not fall back."""
    out = subprocess.run(["ip", "netns", "exec", net.app_ns, f"{ROOT}/build/zerohopd", "--no-pci", "--no-huge",
                          "-m", "256", "--file-prefix", f"zh-test-gd-{os.getpid()}",
                          "--vdev", f"net_af_packet0,iface={net.app_if}", "-l", "0-1", "--",
                          "--device", "cuda-gpudirect", "--ctl-socket", ""],
                         capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "cuda-gpudirect cannot run" in text, text
    assert "zerohopd: ready" not in text

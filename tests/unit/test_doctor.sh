#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test_doctor.sh: zerohop-doctor (platform/doctor.c, docs/DOCTOR.md).
#
#   this machine: the doctor runs, its exit status is 1 exactly when a check FAILs (0 otherwise), the
#                 --json report parses with Python's json and holds every check id, the table says the
#                 same, and usage errors exit 2.
#   fake trees:   a tree where every check passes is generated in a temporary directory (sysfs, procfs,
#                 /dev/vfio, libcuda, /usr/local/cuda), then changed one fact at a time to make each
#                 check WARN, FAIL or SKIP; the doctor is pointed at it with --root and the status of the
#                 changed check (by id, and device where there is one) is read from --json. The tree is
#                 also compared before and after each run: the doctor writes nothing.
#
# Usage: test_doctor.sh [BUILD]. Without BUILD: the build directory this copy sits in (make puts it in
# $(BUILD)/tests/), else build/. Exit status: 0 pass, 1 fail.
set -u

self=$(readlink -f "$0")
here=$(dirname "$self")
if [ $# -ge 1 ]; then
	build=$(cd "$1" && pwd) || exit 1
elif [ -x "$here/../zerohop-doctor" ]; then
	build=$(cd "$here/.." && pwd)
else
	build=$(cd "$here/../.." && pwd)/build
fi
doctor=$build/zerohop-doctor
if [ ! -x "$doctor" ]; then
	echo "test_doctor: no $doctor (build first: make)" >&2
	exit 1
fi

exec /usr/bin/python3 - "$doctor" <<'PYTHON'
import json
import os
import shutil
import subprocess
import sys
import tempfile

DOCTOR = sys.argv[1]
IDS = ["hugepages", "iommu", "vfio", "nic-driver", "nic-numa", "gpu-present", "gpu-numa", "pcie-topology",
       "gpu-bar1", "gpudirect-rdma", "rdma-devices", "rdma-write-ordering", "cpu-isolation", "cpu-governor",
       "thp", "clocksource", "nvidia-driver", "cuda-version"]
failures = []
passed = 0


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print("FAIL:", what)


def run(args):
    return subprocess.run([DOCTOR] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)


# ---- this machine ----------------------------------------------------------------------------------

def this_machine():
    text = run([])
    js = run(["--json"])
    check(text.returncode in (0, 1), "text run exits 0 or 1 (got %d: %s)" % (text.returncode, text.stderr))
    try:
        report = json.loads(js.stdout)
    except ValueError as e:
        check(False, "--json parses: %s" % e)
        return
    check(True, "--json parses")
    ids = {c["id"] for c in report["checks"]}
    for i in IDS:
        check(i in ids, "check id %s present on this machine" % i)
    check(ids <= set(IDS), "no unknown check id: %s" % sorted(ids - set(IDS)))
    fails = [c for c in report["checks"] if c["status"] == "FAIL"]
    want = 1 if fails else 0
    check(js.returncode == want, "exit %d with %d FAIL (got %d)" % (want, len(fails), js.returncode))
    check(report["exit_code"] == js.returncode, "exit_code field matches the exit status")
    check(text.returncode == js.returncode, "table and JSON runs agree on the exit status")
    for c in report["checks"]:
        check(c["status"] in ("PASS", "WARN", "FAIL", "SKIP"), "status of %s is known" % c["id"])
        if c["status"] in ("WARN", "FAIL"):
            check(bool(c["fix"]), "%s %s has a fix" % (c["status"], c["id"]))
    counts = {s: sum(1 for c in report["checks"] if c["status"] == s.upper()) for s in ("pass", "warn", "fail", "skip")}
    check(report["summary"] == counts, "summary counts the checks")
    check("summary: " in text.stdout and "exit %d" % text.returncode in text.stdout, "the table ends with the summary")
    for i in IDS:
        check(("  %s " % i) in text.stdout, "the table names %s" % i)
    # On this machine (no GPU, no RDMA device) the GPU and RDMA checks must SKIP, not FAIL.
    if not report["gpus"]:
        for i in ("gpu-present", "gpu-numa", "gpu-bar1", "gpudirect-rdma", "nvidia-driver", "cuda-version"):
            check(all(c["status"] == "SKIP" for c in report["checks"] if c["id"] == i), "%s SKIPs without a GPU" % i)
    if not os.path.isdir("/sys/class/infiniband") or not os.listdir("/sys/class/infiniband"):
        st = [c["status"] for c in report["checks"] if c["id"] == "rdma-devices"]
        check(st in (["SKIP"], ["FAIL"]), "rdma-devices SKIPs without RDMA (FAILs only for a Mellanox NIC)")
    if fails:
        print("note: this machine FAILs:", "; ".join("%s: %s" % (c["id"], c["finding"]) for c in fails))


def usage_errors():
    for args in (["--bogus"], ["--cores", "x"], ["--cores", "3-1"], ["--nic", "zz:00.0"], ["--gpu", "1"],
                 ["--root", "/nonexistent/dir"], ["extra"], ["--cores", "99999"]):
        r = run(args)
        check(r.returncode == 2, "usage error %s exits 2 (got %d)" % (args, r.returncode))
        check(r.stdout == "", "usage error %s prints no report" % args)
    h = run(["--help"])
    check(h.returncode == 0 and "exit status: 0" in h.stdout and "2 usage error" in h.stdout,
          "--help exits 0 and documents the exit status")


# ---- fake trees ------------------------------------------------------------------------------------

class Tree:
    """A fake root: sysfs, procfs and /dev as the doctor reads them."""

    def __init__(self, root):
        self.root = root

    def p(self, rel):
        return os.path.join(self.root, rel.lstrip("/"))

    def write(self, rel, text):
        path = self.p(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def rm(self, rel):
        path = self.p(rel)
        if os.path.islink(path) or os.path.isfile(path):
            os.unlink(path)
        elif os.path.isdir(path):
            shutil.rmtree(path)

    def link(self, rel, target_rel):
        """A relative symbolic link at rel to target_rel (both from the root), as sysfs has them."""
        path = self.p(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(os.path.relpath(self.p(target_rel), os.path.dirname(path)), path)

    def mkdir(self, rel):
        os.makedirs(self.p(rel), exist_ok=True)

    def pci(self, chain, host="pci0000:00", vendor=0x8086, device=0x1593, cls=0x020000, driver=None, numa=0,
            resource=None, group=None):
        """A device at the end of chain (bridges first), under host; returns its address."""
        bdf = chain[-1]
        devdir = "/sys/devices/%s/%s" % (host, "/".join(chain))
        for i, b in enumerate(chain[:-1]):
            bridge = "/sys/devices/%s/%s" % (host, "/".join(chain[:i + 1]))
            self.write(bridge + "/class", "0x060400\n")
            self.link("/sys/bus/pci/devices/" + b, bridge)
        self.write(devdir + "/vendor", "0x%04x\n" % vendor)
        self.write(devdir + "/device", "0x%04x\n" % device)
        self.write(devdir + "/class", "0x%06x\n" % cls)
        self.write(devdir + "/numa_node", "%d\n" % numa)
        if resource is not None:
            self.write(devdir + "/resource", resource)
        self.link("/sys/bus/pci/devices/" + bdf, devdir)
        self.bind(bdf, driver)
        if group is not None:
            self.link(devdir + "/iommu_group", "/sys/kernel/iommu_groups/%s" % group)
            self.link("/sys/kernel/iommu_groups/%s/devices/%s" % (group, bdf), devdir)
        return bdf

    def devdir(self, bdf):
        return "/" + os.path.relpath(os.path.realpath(self.p("/sys/bus/pci/devices/" + bdf)), self.root)

    def bind(self, bdf, driver):
        d = self.devdir(bdf)
        self.rm(d + "/driver")
        if driver:
            self.mkdir("/sys/bus/pci/drivers/" + driver)
            self.link(d + "/driver", "/sys/bus/pci/drivers/" + driver)

    def set(self, bdf, attr, text):
        self.write(self.devdir(bdf) + "/" + attr, text)

    def snapshot(self):
        out = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for n in dirnames + filenames:
                path = os.path.join(dirpath, n)
                st = os.lstat(path)
                out[path] = (st.st_mode, st.st_size, st.st_mtime_ns,
                             os.readlink(path) if os.path.islink(path) else None)
        return out


NIC = "0000:05:00.0"
GPU = "0000:06:00.0"
GIB = 1 << 30
MIB = 1 << 20


def bar_lines(bar0_64=False, bar1_size=32 * GIB):
    """A GPU's resource file: BAR0 16 MiB (32-bit unless bar0_64), BAR1 of bar1_size, 64-bit prefetchable."""
    mem, mem64_pref = 0x40200, 0x14220c
    lines = []
    lines.append((0xfa000000, 0xfa000000 + 16 * MIB - 1, mem64_pref if bar0_64 else mem))
    if bar0_64:
        lines.append((0, 0, 0))
    start = 0x38000000000
    lines.append((start, start + bar1_size - 1, mem64_pref) if bar1_size else (0, 0, 0))
    lines.append((0, 0, 0))
    lines += [(0, 0, 0)] * (13 - len(lines))
    return "".join("0x%016x 0x%016x 0x%016x\n" % l for l in lines)


def good_tree(root):
    """Every check PASSes here (rdma-write-ordering SKIPs: it always does), with --cores 2-3."""
    t = Tree(root)
    # Hugepages: 1024 x 2 MiB reserved, 1000 free, hugetlbfs mounted.
    t.write("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "1024\n")
    t.write("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "1000\n")
    t.write("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "0\n")
    t.write("/sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages", "0\n")
    t.write("/proc/mounts", "sysfs /sys sysfs rw 0 0\nhugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n")
    t.write("/proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 intel_iommu=on iommu=pt "
            "isolcpus=managed_irq,domain,2-3 nohz_full=2-3 rcu_nocbs=2-3 quiet\n")
    t.mkdir("/sys/class/iommu/dmar0")
    t.mkdir("/sys/class/iommu/dmar1")
    t.write("/dev/vfio/vfio", "")
    t.write("/dev/vfio/12", "")
    # One PCIe switch below root port 00:01.0: upstream port 01:00.0, downstream ports 02:08.0 and 02:10.0.
    t.pci(["0000:00:01.0", "0000:01:00.0", "0000:02:08.0", NIC], driver="vfio-pci", group=12)
    t.pci(["0000:00:01.0", "0000:01:00.0", "0000:02:10.0", GPU], vendor=0x10de, device=0x2335, cls=0x030200,
          driver="nvidia", resource=bar_lines(), group=13)
    # Four CPUs, all present, on one NUMA node.
    t.write("/sys/devices/system/cpu/present", "0-3\n")
    t.write("/sys/devices/system/node/node0/cpulist", "0-3\n")
    for c in range(4):
        t.write("/sys/devices/system/cpu/cpu%d/cpufreq/scaling_governor" % c, "performance\n")
    t.write("/sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n")
    t.write("/sys/kernel/mm/transparent_hugepage/defrag", "always defer defer+madvise [madvise] never\n")
    t.write("/sys/devices/system/clocksource/clocksource0/current_clocksource", "tsc\n")
    t.write("/proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu tsc msr constant_tsc nonstop_tsc rdtscp\n\n")
    t.write("/proc/modules", "nvidia_peermem 16384 0 - Live 0x0\nnvidia 56000000 100 nvidia_peermem, Live 0x0\n")
    t.mkdir("/sys/module/nvidia")
    t.write("/proc/sys/kernel/osrelease", "6.8.0-45-generic\n")
    t.write("/proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  "
            "Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Mar  5 19:33:37 UTC 2024\nGCC version:  gcc 12\n")
    t.write("/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", "")
    t.link("/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15")
    t.write("/usr/local/cuda/version.json", '{\n   "cuda" : {\n      "name" : "CUDA SDK",\n'
            '      "version" : "12.4.1"\n   },\n   "cuda_cudart" : {\n      "version" : "12.4.127"\n   }\n}\n')
    t.write("/sys/class/infiniband/mlx5_0/ports/1/state", "4: ACTIVE\n")
    t.write("/sys/class/infiniband/mlx5_0/ports/1/link_layer", "Ethernet\n")
    return t


def doctor_on(t, args=("--cores", "2-3")):
    before = t.snapshot()
    r = run(["--json", "--root", t.root] + list(args))
    check(t.snapshot() == before, "the doctor changed nothing under %s" % t.root)
    try:
        report = json.loads(r.stdout)
    except ValueError as e:
        check(False, "fake-tree --json parses: %s (stderr %s)" % (e, r.stderr))
        return None, r.returncode
    return report, r.returncode


def status_of(report, cid, device=None):
    found = [c for c in report["checks"] if c["id"] == cid and (device is None or c["device"] == device)]
    return found[0] if found else None


def expect(name, mutate, cid, status, device=None, args=("--cores", "2-3"), finding=None):
    """Builds the good tree, applies mutate, and checks that cid (for device) has status."""
    root = tempfile.mkdtemp(prefix="zh-doctor-")
    try:
        t = good_tree(root)
        if mutate:
            mutate(t)
        report, rc = doctor_on(t, args)
        if report is None:
            return
        c = status_of(report, cid, device)
        ok = c is not None and c["status"] == status and (finding is None or finding in c["finding"])
        check(ok, "%s: %s%s is %s%s (got %s)" % (name, cid, " " + device if device else "", status,
                                                 " with '%s'" % finding if finding else "",
                                                 json.dumps(c) if c else "nothing"))
        fails = any(x["status"] == "FAIL" for x in report["checks"])
        check(rc == (1 if fails else 0), "%s: exit status %d follows the FAILs" % (name, rc))
        check({x["id"] for x in report["checks"]} == set(IDS), "%s: every check id reported" % name)
    finally:
        shutil.rmtree(root)


def all_pass():
    root = tempfile.mkdtemp(prefix="zh-doctor-")
    try:
        t = good_tree(root)
        report, rc = doctor_on(t)
        bad = [c for c in report["checks"] if c["status"] != "PASS" and c["id"] != "rdma-write-ordering"]
        check(not bad, "the good tree passes every check: %s" % json.dumps(bad))
        check(rc == 0, "the good tree exits 0")
        check(report["nics"] == [NIC] and report["gpus"] == [GPU], "the scan finds the NIC and the GPU only")
        check(status_of(report, "rdma-write-ordering")["status"] == "SKIP", "rdma-write-ordering always SKIPs")
        check("PIX" in status_of(report, "pcie-topology")["finding"], "one switch is PIX")
        check("32 GiB" in status_of(report, "gpu-bar1")["finding"], "BAR1 read from resource line 1")
        # The table: aligned columns, no fix line for a PASS.
        text = run(["--root", root, "--cores", "2-3"]).stdout.splitlines()
        rows = [l for l in text if l[:4] in ("PASS", "WARN", "FAIL", "SKIP")]
        check(len(rows) == len(report["checks"]), "one table row per check")
        check(all(l[4:8] == "    " and l[8:].split()[0] in IDS for l in rows), "the check column starts at 8")
        width = max(len(i) for i in IDS)
        check(all(l[8 + width:10 + width] == "  " and l[10 + width] != " " for l in rows),
              "the finding column is aligned")
        check(not any("fix:" in l for l in text), "no fix line when everything passes")
    finally:
        shutil.rmtree(root)


def two_nodes(t, nic_node=0, gpu_node=0):
    t.write("/sys/devices/system/node/node0/cpulist", "0-1\n")
    t.write("/sys/devices/system/node/node1/cpulist", "2-3\n")
    t.set(NIC, "numa_node", "%d\n" % nic_node)
    t.set(GPU, "numa_node", "%d\n" % gpu_node)


def move_gpu(t, chain, host="pci0000:00", numa=0):
    """Moves the GPU elsewhere in the tree (the old place removed)."""
    old = t.devdir(GPU)
    t.rm("/sys/bus/pci/devices/" + GPU)
    t.rm(old)
    t.pci(chain + [GPU], host=host, vendor=0x10de, device=0x2335, cls=0x030200, driver="nvidia",
          resource=bar_lines(), numa=numa)


def cases():
    cmd = "/proc/cmdline"
    base_cmd = "intel_iommu=on iommu=pt isolcpus=managed_irq,domain,2-3 nohz_full=2-3 rcu_nocbs=2-3"

    # hugepages
    expect("hugepages none reserved, NIC on vfio", lambda t: t.write(
        "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0\n") or t.write(
        "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "0\n"), "hugepages", "FAIL")
    expect("hugepages none reserved, NIC on a kernel driver", lambda t: t.write(
        "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0\n") or t.write(
        "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "0\n") or t.bind(NIC, "ice"),
        "hugepages", "WARN")
    expect("hugepages all in use", lambda t: t.write(
        "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "0\n"), "hugepages", "WARN")
    expect("hugepages not mounted", lambda t: t.write("/proc/mounts", "sysfs /sys sysfs rw 0 0\n"),
           "hugepages", "FAIL")

    # iommu
    expect("iommu translated", lambda t: t.write(cmd, base_cmd.replace("iommu=pt ", "")), "iommu", "WARN")
    expect("iommu requested, absent", lambda t: t.rm("/sys/class/iommu/dmar0") or t.rm("/sys/class/iommu/dmar1"),
           "iommu", "FAIL")
    expect("iommu absent", lambda t: t.rm("/sys/class/iommu/dmar0") or t.rm("/sys/class/iommu/dmar1") or
           t.write(cmd, base_cmd.replace("intel_iommu=on iommu=pt ", "")), "iommu", "WARN")

    # vfio
    expect("vfio group viable", None, "vfio", "PASS", device=NIC)
    expect("vfio group not viable", lambda t: t.pci(["0000:00:01.0", "0000:01:00.0", "0000:02:08.0", "0000:05:00.1"],
                                                     cls=0x020000, driver="ice", group=12), "vfio", "FAIL",
           device=NIC, finding="0000:05:00.1 on ice")
    expect("vfio group node missing", lambda t: t.rm("/dev/vfio/12"), "vfio", "FAIL", device=NIC)
    expect("vfio not loaded", lambda t: t.rm("/dev/vfio") or t.bind(NIC, "ice"), "vfio", "WARN")
    expect("vfio not needed on mlx5", lambda t: t.rm("/dev/vfio") or t.bind(NIC, "mlx5_core"), "vfio", "SKIP")

    # nic-driver
    def kernel_nic_up(t):
        t.bind(NIC, "ice")
        t.set(NIC, "net/ens5f0/flags", "0x1003\n")
        t.set(NIC, "net/ens5f0/operstate", "up\n")
    expect("nic on a kernel driver, up", kernel_nic_up, "nic-driver", "WARN", device=NIC, finding="ens5f0 up")
    expect("nic on mlx5_core", lambda t: t.bind(NIC, "mlx5_core"), "nic-driver", "PASS", device=NIC)
    expect("nic without a driver", lambda t: t.bind(NIC, None), "nic-driver", "FAIL", device=NIC)
    expect("nic given, absent", None, "nic-driver", "FAIL", device="0000:09:00.0",
           args=("--cores", "2-3", "--nic", "09:00.0"))

    # nic-numa
    expect("nic numa one node", lambda t: t.set(NIC, "numa_node", "-1\n"), "nic-numa", "PASS", device=NIC)
    expect("nic numa cores away", lambda t: two_nodes(t, 0, 0), "nic-numa", "FAIL", device=NIC)
    expect("nic numa cores local", lambda t: two_nodes(t, 1, 1), "nic-numa", "PASS", device=NIC)
    expect("nic numa unknown on two nodes", lambda t: two_nodes(t, -1, 1), "nic-numa", "WARN", device=NIC)

    # gpu-present
    expect("no gpu", lambda t: t.rm("/sys/bus/pci/devices/" + GPU), "gpu-present", "SKIP")
    expect("gpu on nouveau", lambda t: t.bind(GPU, "nouveau"), "gpu-present", "FAIL", device=GPU)
    expect("gpu without a driver", lambda t: t.bind(GPU, None), "gpu-present", "FAIL", device=GPU)

    # gpu-numa
    expect("gpu numa same as nic", lambda t: two_nodes(t, 1, 1), "gpu-numa", "PASS", device=GPU)
    expect("gpu numa other node", lambda t: two_nodes(t, 0, 1), "gpu-numa", "FAIL", device=GPU)
    expect("gpu numa unknown", lambda t: two_nodes(t, 0, -1), "gpu-numa", "WARN", device=GPU)

    # pcie-topology: PIX (the good tree), PXB, PHB, NODE, SYS, SKIP.
    pair = NIC + "-" + GPU
    expect("pcie PIX", None, "pcie-topology", "PASS", device=pair, finding="PIX")
    expect("pcie PXB", lambda t: move_gpu(t, ["0000:00:01.0", "0000:01:00.0", "0000:02:10.0", "0000:07:00.0",
                                              "0000:08:04.0"]), "pcie-topology", "PASS", device=pair, finding="PXB")
    expect("pcie PHB", lambda t: move_gpu(t, ["0000:00:03.0"]), "pcie-topology", "WARN", device=pair, finding="PHB")
    expect("pcie PHB, no bridges (a VM)", lambda t: move_gpu(t, []) or t.rm(t.devdir(NIC)) or t.rm(
        "/sys/bus/pci/devices/" + NIC) or t.pci([NIC], driver="vfio-pci", group=12), "pcie-topology", "WARN",
        device=pair, finding="PHB")
    expect("pcie NODE", lambda t: move_gpu(t, ["0000:40:01.0"], host="pci0000:40"), "pcie-topology", "FAIL",
           device=pair, finding="NODE")
    expect("pcie SYS", lambda t: two_nodes(t, 0, 0) or move_gpu(t, ["0000:80:01.0"], host="pci0000:80", numa=1),
           "pcie-topology", "FAIL", device=pair, finding="SYS")
    expect("pcie without a GPU", lambda t: t.rm("/sys/bus/pci/devices/" + GPU), "pcie-topology", "SKIP")

    # gpu-bar1
    expect("bar1 small", lambda t: t.set(GPU, "resource", bar_lines(bar1_size=128 * MIB)), "gpu-bar1", "WARN",
           device=GPU, finding="128 MiB")
    expect("bar1 256 MiB", lambda t: t.set(GPU, "resource", bar_lines(bar1_size=256 * MIB)), "gpu-bar1", "PASS",
           device=GPU)
    expect("bar1 unassigned", lambda t: t.set(GPU, "resource", bar_lines(bar1_size=0)), "gpu-bar1", "FAIL",
           device=GPU)
    expect("bar1 after a 64-bit BAR0", lambda t: t.set(GPU, "resource", bar_lines(bar0_64=True, bar1_size=64 * GIB)),
           "gpu-bar1", "PASS", device=GPU, finding="64 GiB")
    expect("bar1 unreadable", lambda t: t.set(GPU, "resource", "garbage\n"), "gpu-bar1", "WARN", device=GPU)

    # gpudirect-rdma
    no_peermem = "nvidia 56000000 100 - Live 0x0\n"
    expect("gpudirect dma-buf", lambda t: t.write("/proc/modules", no_peermem), "gpudirect-rdma", "WARN")
    expect("gpudirect old kernel", lambda t: t.write("/proc/modules", no_peermem) or t.write(
        "/proc/sys/kernel/osrelease", "5.4.0-150-generic\n"), "gpudirect-rdma", "FAIL")
    expect("gpudirect proprietary module", lambda t: t.write("/proc/modules", no_peermem) or t.write(
        "/proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 "
        "19:33:37 UTC 2024\n"), "gpudirect-rdma", "FAIL")
    expect("gpudirect without a GPU", lambda t: t.rm("/sys/bus/pci/devices/" + GPU), "gpudirect-rdma", "SKIP")

    # rdma-devices
    expect("rdma port down", lambda t: t.write("/sys/class/infiniband/mlx5_0/ports/1/state", "1: DOWN\n"),
           "rdma-devices", "FAIL")
    expect("rdma port init", lambda t: t.write("/sys/class/infiniband/mlx5_0/ports/1/state", "2: INIT\n"),
           "rdma-devices", "WARN")
    expect("rdma none", lambda t: t.rm("/sys/class/infiniband"), "rdma-devices", "SKIP")
    expect("rdma none with a Mellanox NIC", lambda t: t.rm("/sys/class/infiniband") or t.set(NIC, "vendor", "0x15b3\n"),
           "rdma-devices", "FAIL")

    # cpu-isolation
    expect("isolation without cores", None, "cpu-isolation", "WARN", args=())
    expect("isolation missing isolcpus", lambda t: t.write(cmd, "iommu=pt nohz_full=2-3 rcu_nocbs=2-3"),
           "cpu-isolation", "FAIL")
    expect("isolation missing nohz_full", lambda t: t.write(cmd, "isolcpus=2-3 rcu_nocbs=2-3"), "cpu-isolation", "WARN")
    expect("isolation rcu_nocbs=all", lambda t: t.write(cmd, "isolcpus=domain,2-3 nohz_full=2-3 rcu_nocbs=all"),
           "cpu-isolation", "PASS")
    expect("isolation core absent", None, "cpu-isolation", "FAIL", args=("--cores", "2-5"))
    expect("isolation params after -- ignored", lambda t: t.write(cmd, "iommu=pt -- isolcpus=2-3 nohz_full=2-3 "
                                                                     "rcu_nocbs=2-3"), "cpu-isolation", "FAIL")

    # cpu-governor
    expect("governor powersave on a dataplane core", lambda t: t.write(
        "/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor", "powersave\n"), "cpu-governor", "FAIL")
    expect("governor powersave elsewhere, no cores", lambda t: t.write(
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "powersave\n"), "cpu-governor", "WARN", args=())
    expect("governor powersave off the dataplane", lambda t: t.write(
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "powersave\n"), "cpu-governor", "PASS")
    expect("no cpufreq", lambda t: [t.rm("/sys/devices/system/cpu/cpu%d/cpufreq" % c) for c in range(4)],
           "cpu-governor", "WARN", finding="no cpufreq")

    # thp
    expect("thp always", lambda t: t.write("/sys/kernel/mm/transparent_hugepage/enabled", "[always] madvise never\n"),
           "thp", "WARN")
    expect("thp defrag always", lambda t: t.write("/sys/kernel/mm/transparent_hugepage/defrag",
                                                  "[always] defer defer+madvise madvise never\n"), "thp", "WARN")
    expect("thp never", lambda t: t.write("/sys/kernel/mm/transparent_hugepage/enabled", "always madvise [never]\n"),
           "thp", "PASS")
    expect("thp absent", lambda t: t.rm("/sys/kernel/mm/transparent_hugepage"), "thp", "SKIP")

    # clocksource
    expect("clocksource kvm-clock", lambda t: t.write(
        "/sys/devices/system/clocksource/clocksource0/current_clocksource", "kvm-clock\n"), "clocksource", "WARN")
    expect("clocksource without invariant TSC", lambda t: t.write(
        "/proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu tsc msr rdtscp\n"), "clocksource", "FAIL")
    expect("clocksource, no x86 flags", lambda t: t.write("/proc/cpuinfo", "processor\t: 0\nFeatures\t: fp asimd\n"),
           "clocksource", "PASS")

    # nvidia-driver
    expect("driver/library mismatch", lambda t: t.write("/usr/lib/x86_64-linux-gnu/libcuda.so.535.129.03", "") or t.link(
        "/usr/lib/x86_64-linux-gnu/libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.535.129.03"),
        "nvidia-driver", "FAIL", finding="535.129.03")
    expect("driver without libcuda", lambda t: t.rm("/usr/lib/x86_64-linux-gnu"), "nvidia-driver", "WARN")
    expect("driver from /sys/module", lambda t: t.rm("/proc/driver") or t.write("/sys/module/nvidia/version",
                                                                                "550.54.15\n"), "nvidia-driver", "PASS")
    expect("driver not loaded, GPU present", lambda t: t.rm("/proc/driver"), "nvidia-driver", "FAIL")
    expect("no driver, no GPU", lambda t: t.rm("/proc/driver") or t.rm("/sys/bus/pci/devices/" + GPU),
           "nvidia-driver", "SKIP")

    # cuda-version
    expect("toolkit too new for the driver", lambda t: t.write("/usr/local/cuda/version.json",
                                                               '{"cuda": {"name": "CUDA SDK", "version": "13.0.2"}}\n'),
           "cuda-version", "FAIL", finding="580")
    expect("no toolkit", lambda t: t.rm("/usr/local/cuda"), "cuda-version", "WARN")
    expect("toolkit from cuda.h", lambda t: t.rm("/usr/local/cuda/version.json") or t.write(
        "/usr/local/cuda/include/cuda.h", "/* cuda.h */\n#define CUDA_VERSION 12080\n"), "cuda-version", "PASS",
        finding="12.8")
    expect("cuda without a driver", lambda t: t.rm("/proc/driver"), "cuda-version", "SKIP")


this_machine()
usage_errors()
all_pass()
cases()
print("test_doctor: %d checks passed, %d failed" % (passed, len(failures)))
sys.exit(1 if failures else 0)
PYTHON

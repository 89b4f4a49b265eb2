# SPDX-License-Identifier: MIT
"""zerohop-probe --dpdk: the probe's requests through a DPDK port (net_af_xdp on the client veth, the
module zerohop-bench --dpdk uses) against the appliance on the dev network. The stamps stay the probe's
TSC, so the checks are test_probe's: every stage reported, the stages add up to the end-to-end time, the
report agrees with the raw stamps; the report names the transport; a rate sweep and the other modes run;
SIGINT ends a run with the EAL cleaned up and XDP detached; and the refusals exit with status 2 before
the EAL starts. Every EAL run has --no-pci, a file prefix of its own and one core."""
import csv
import glob
import itertools
import json
import os
import signal
import subprocess
import time

import pytest

from zhnet import APPLIANCE_IP, ROOT, UDP_PORT
from test_probe import COUNT, PIPELINE, END_TO_END, PROBE_BOUNDS, PROBE_CORE, check_stages

_run_ids = itertools.count()
# build-asan: net_af_xdp leaks libxdp's umem struct at close (the file says why); nothing else is suppressed.
_ENV = dict(os.environ, LSAN_OPTIONS="suppressions=" + os.path.join(os.path.dirname(__file__), "lsan-af-xdp.supp"))
_PREFIX = f"zp-dpdk-{os.getpid()}"


def eal_args(net, no_pci=True, quiet=True):
    """The EAL arguments after --: the client veth as the port, no PCI probing, a small pool, the probe on
    PROBE_CORE (beside the rx lcore, as test_probe pins it; -l is how --dpdk chooses the probe's core). Not
    quiet: an EAL that starts says "EAL: Detected CPU lcores" on stderr (the refusal tests look for it)."""
    args = ["--no-pci"] if no_pci else []
    if quiet:
        args.append("--log-level=lib.eal:warning")
    # --no-shconf --no-telemetry: the EAL's runtime directory stays empty, and the port module removes it.
    return ["--", *args, "--no-shconf", "--no-telemetry", "--no-huge", "-m", "256",
            "--vdev", f"net_af_xdp0,iface={net.client_if}", "-l", PROBE_CORE,
            "--file-prefix", f"{_PREFIX}-{next(_run_ids)}"]


def probe_cmd(net, build, *args, eal=None):
    return ["ip", "netns", "exec", net.client_ns, f"{ROOT}/{build}/zerohop-probe", "--addr", APPLIANCE_IP,
            "--port", str(UDP_PORT), *map(str, args), *(eal if eal is not None else eal_args(net))]


def probe(net, build, *args, eal=None, timeout_s=120):
    """Run zerohop-probe in the client namespace; returns (exit code, stdout, stderr)."""
    out = subprocess.run(probe_cmd(net, build, *args, eal=eal), capture_output=True, text=True, timeout=timeout_s,
                         env=_ENV)
    return out.returncode, out.stdout, out.stderr


def dpdk(net, *args):
    return ["--dpdk", "--src", net.client_ip, *args]


def xdp_attached(net):
    out = subprocess.run(["ip", "-n", net.client_ns, "-j", "link", "show", net.client_if], check=True,
                         capture_output=True, text=True, timeout=10).stdout
    return "xdp" in json.loads(out)[0]


def assert_clean(net):
    """The EAL cleaned up: no runtime directory left by this module's runs, no XDP left on the veth."""
    assert not glob.glob(f"/var/run/dpdk/{_PREFIX}-*")
    assert not xdp_attached(net)


def assert_dpdk_json(report, net):
    assert report["transport"] == "dpdk", report["transport"]
    port = report["dpdk"]
    assert port["port"].startswith("net_af_xdp0 ") and port["src"] == net.client_ip, port
    assert port["rx_bad_checksum"] == 0, port


def test_probe_dpdk_stages_add_up(net, appliance, tmp_path):
    raw = tmp_path / "raw.csv"
    csv_path = tmp_path / "single.csv"
    rc, out, err = probe(net, appliance.build, *dpdk(net, "--json", "--count", COUNT, "--raw", raw, "--csv", csv_path,
                                                     *PROBE_BOUNDS))
    assert rc == 0, out + err
    report = json.loads(out)
    assert_dpdk_json(report, net)
    assert not report["dpdk"]["dst_mac_given"]
    # test_probe's checks: every stage, the stages add up per request and in the means, the percentiles
    # are those of the raw TSC stamps, the stamps in order within the cross-core bound.
    stages = check_stages(report, raw)
    assert abs(sum(stages[k]["mean_us"] for k in PIPELINE) - stages[END_TO_END]["mean_us"]) < 0.01
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["stage"] for r in rows} == {*PIPELINE, END_TO_END}
    assert all(r["transport"] == "dpdk" and r["mode"] == "single" and r["calibrated"] == "1" for r in rows), rows
    assert_clean(net)


def test_probe_dpdk_rate_sweep(net, appliance, tmp_path):
    path = tmp_path / "rate.csv"
    rc, out, err = probe(net, appliance.build, *dpdk(net, "--mode", "rate", "--rates", "200,1000", "--seconds", "1",
                                                     "--timeout-ms", "500", "--csv", path))
    assert rc == 0, out + err
    assert "transport: DPDK port net_af_xdp0 " in out, out
    assert "client send lag" in out and "rate req/s" in out
    assert len([line for line in out.splitlines() if line.startswith("knee: ")]) == 1, out
    port_lines = [line for line in out.splitlines() if line.startswith("dpdk port net_af_xdp0 ")]
    assert len(port_lines) == 1 and "bad checksum 0," in port_lines[0], out
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    stages = {"send_lag", *PIPELINE, END_TO_END}
    assert {(r["point"], r["stage"]) for r in rows} == {(p, s) for p in ("0", "1") for s in stages}
    for row in rows:
        assert row["transport"] == "dpdk" and row["mode"] == "rate", row
        assert float(row["param"]) in (200.0, 1000.0)
        # One second at each rate: the schedule decides how many leave (a full port would count one as
        # not sent).
        assert 0.98 * float(row["param"]) <= int(row["sent"]) <= float(row["param"]), row
        assert int(row["count"]) == int(row["answered"]) >= 0.98 * int(row["sent"]), row
    assert_clean(net)


def test_probe_dpdk_payload_and_idle_with_a_given_mac(net, appliance):
    before = appliance.stats()
    rc, out, err = probe(net, appliance.build, *dpdk(net, "--json", "--dst-mac", appliance.mac, "--mode", "payload",
                                                     "--sizes", "1,64", "--count", 200, *PROBE_BOUNDS))
    assert rc == 0, out + err
    payload = json.loads(out)
    assert_dpdk_json(payload, net)
    assert payload["dpdk"]["dst_mac_given"]
    # No ARP was needed.
    assert appliance.stats()["arp_replies"] == before["arp_replies"]
    points = payload["targets"][0]["points"]
    assert points[1]["datagram_bytes"] - points[0]["datagram_bytes"] >= 63, points
    assert all(p["answered"] >= 190 for p in points), points

    rc, out, err = probe(net, appliance.build, *dpdk(net, "--json", "--mode", "idle", "--gaps-us", "0,2000",
                                                     "--count", 50, *PROBE_BOUNDS))
    assert rc == 0, out + err
    idle = json.loads(out)
    assert_dpdk_json(idle, net)
    gaps = idle["targets"][0]["points"]
    assert [p["param"] for p in gaps] == [0, 2000] and gaps[1]["gap_us_mean"] >= 2000
    assert all(p["answered"] >= 48 for p in gaps), gaps
    assert_clean(net)


def test_probe_dpdk_sigint_cleans_up(net, appliance):
    """A run far longer than the test, stopped by SIGINT once the port is up: the probe reports what it
    measured, closes the port (XDP detached) and cleans up the EAL."""
    cmd = probe_cmd(net, appliance.build, *dpdk(net, "--json", "--count", 100000, "--seconds", 600,
                                                "--max-seconds", 600))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_ENV)
    try:
        # The port is open once XDP is on the veth (the calibration and the EAL take a second or two).
        deadline = time.monotonic() + 30
        while proc.poll() is None and not xdp_attached(net) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate(timeout=10)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            # SIGTERM first: a SIGKILLed af_xdp process leaves XDP attached.
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
    assert proc.returncode == 0, out + err
    report = json.loads(out)
    assert_dpdk_json(report, net)
    point = report["targets"][0]["points"][0]
    assert report["truncated"] and point["capped"] == "signal", point
    assert 0 < point["answered"] < 100000
    assert_clean(net)


def test_probe_dpdk_max_seconds_bounds_a_silent_run(net, appliance):
    """Requests to an address nobody has (sent to the appliance's MAC, which drops them): --max-seconds
    still ends the run on time, the port is closed, and a run without a traced answer fails."""
    started = time.monotonic()
    rc, out, err = probe(net, appliance.build, *dpdk(net, "--json", "--addr", "198.18.0.99", "--dst-mac", appliance.mac,
                                                     "--count", 1000, "--timeout-ms", 100, "--max-seconds", 2))
    # The calibration, the EAL and the port take a second or two of the run's 2 s; the clean-up follows.
    assert time.monotonic() - started < 10
    assert rc == 1 and "gave no traced answer" in err, out + err
    report = json.loads(out)
    assert_dpdk_json(report, net)
    assert report["truncated"]
    assert_clean(net)


@pytest.mark.parametrize("args, message", [
    # EAL arguments without --no-pci (or an allow-list).
    (["--dpdk", "--src", "SRC", "NOPCI"], "refusing to start the EAL without --no-pci"),
    # A source or a destination outside 198.18.0.0/15 and 127.0.0.0/8.
    (["--dpdk", "--src", "192.0.2.7"], "refusing to send from 192.0.2.7"),
    (["--dpdk", "--src", "SRC", "--addr", "203.0.113.9"], "refused: 203.0.113.9"),
    (["--dpdk", "--src", "SRC", "--addr", "198.20.0.1"], "refused: 198.20.0.1"),
    # One port, one destination.
    (["--dpdk", "--src", "SRC", "--placement", "cpu,cuda-host", "--target", f"cpu={APPLIANCE_IP}:{UDP_PORT}",
      "--target", f"cuda-host={APPLIANCE_IP}:{UDP_PORT}"], "give one target, not 2"),
    (["--dpdk", "--src", "SRC", "--target", f"cpu={APPLIANCE_IP}:{UDP_PORT}",
      "--target", f"cuda-host={APPLIANCE_IP}:{UDP_PORT}"], "give one target, not 2"),
    # The EAL's -l chooses the core.
    (["--dpdk", "--src", "SRC", "--cpu", "1"], "--cpu does not apply to --dpdk"),
    (["--dpdk"], "--dpdk needs --src"),
    (["--dpdk", "--src", "SRC", "NOEAL"], "--dpdk needs EAL arguments after --"),
    (["--dpdk", "--src", "SRC", "--dst-mac", "02:00:00:00:00"], "bad value for --dst-mac"),
    (["--src", "SRC", "NOEAL"], "--src and --dst-mac apply to --dpdk"),
    ([], "arguments after -- are the EAL's, for --dpdk"),
])
def test_probe_dpdk_refusals(net, appliance, args, message):
    eal = eal_args(net, no_pci="NOPCI" not in args, quiet=False)
    if "NOEAL" in args:
        eal = []
    args = [net.client_ip if a == "SRC" else a for a in args if a not in ("NOPCI", "NOEAL")]
    rc, out, err = probe(net, appliance.build, "--count", 10, *args, eal=eal, timeout_s=30)
    assert rc == 2, (args, out, err)
    assert message in err and out == "", (args, err)
    # The EAL never started: it would have said so.
    assert "EAL:" not in err, (args, err)
    assert_clean(net)

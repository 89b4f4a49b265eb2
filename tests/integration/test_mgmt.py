# SPDX-License-Identifier: MIT
"""The management plane against docs/MGMT.md: zerohopctl's commands (tables, --json, exit codes), the
control protocol's refusals of bad frames, the connection bounds, /metrics (parsed strictly with
promparse, counters checked against what the test sent), /healthz and /readyz through drain, HTTP
errors, and the probes' answers while the dataplane runs at full load. The promparse unit tests and
zerohopctl's own checks against a fake appliance come first: they need no appliance."""
import json
import math
import os
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time

import msgpack
import pytest

import promparse
from conftest import BUILDS
from zhnet import ROOT, Appliance, Client, DevNet, netns

IDLE_CLOSE_S = 10
MAX_CONNECTIONS = 64
FRAME_MAX_BYTES = 65536
STAGES = ("wire_to_rx", "rx_to_ring", "ring_to_claim", "device_compute", "device_to_tx", "end_to_end")
# Stages an af_packet port never records: it has no NIC rx timestamps.
STAGES_NEED_NIC_STAMPS = ("wire_to_rx",)
CTL_OK, CTL_BAD_REQUEST, CTL_UNKNOWN_COMMAND, CTL_NOT_FOUND, CTL_FAILED, CTL_BUSY = range(6)


# ---- helpers ----

def ctl_bin(build):
    return f"{ROOT}/{build}/zerohopctl"


def ctl(build, sock, *args, timeout_s=60):
    """Run zerohopctl against `sock`; returns the CompletedProcess (text)."""
    return subprocess.run([ctl_bin(build), "--socket", sock, *args], capture_output=True, text=True,
                          timeout=timeout_s)


def ctl_json(build, sock, *args):
    out = ctl(build, sock, "--json", *args)
    assert out.returncode == 0, f"zerohopctl {' '.join(args)}: rc {out.returncode}: {out.stderr}"
    return json.loads(out.stdout)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def ctl_ask(path, request):
    """One request on a new connection; returns the reply."""
    c = Ctl(path)
    try:
        return c.ask(request)
    finally:
        c.close()


class Ctl:
    """A raw control-protocol connection (frames: 4-byte big-endian length, then msgpack)."""

    def __init__(self, path, timeout_s=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        self.sock.connect(path)

    def close(self):
        self.sock.close()

    def send_frame(self, body):
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def recv_frame(self):
        (n,) = struct.unpack(">I", recv_exact(self.sock, 4))
        assert 0 < n <= 256 * 1024, f"a reply frame of {n} bytes"
        return msgpack.unpackb(recv_exact(self.sock, n), raw=False, strict_map_key=False)

    def ask(self, request):
        self.send_frame(msgpack.packb(request))
        return self.recv_frame()

    def ask_raw(self, body):
        self.send_frame(body)
        return self.recv_frame()

    def closed_within(self, timeout_s):
        """True if the server closes the connection (EOF or reset) within timeout_s; data is skipped."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                if not self.sock.recv(65536):
                    return True
            except ConnectionResetError:
                return True
            except socket.timeout:
                return False


def free_port(ns):
    """An unused TCP port on 127.0.0.1 in namespace `ns`."""
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def http(net, port, raw, timeout_s=2.0):
    """Send `raw` to the appliance's HTTP listener (loopback in the app namespace); read to EOF.
    Returns (status code, {lower-case header: value}, body bytes)."""
    with netns(net.app_ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    data = b""
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(raw)
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                if data:
                    break
                raise
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, f"no end of headers in {data[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    version, code, *_ = lines[0].split(" ", 2)
    assert version in ("HTTP/1.0", "HTTP/1.1"), lines[0]
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        assert int(headers["content-length"]) == len(body), "Content-Length is not the body's length"
    return int(code), headers, body


def get(net, port, path, timeout_s=2.0):
    return http(net, port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(), timeout_s)


def metrics(net, port):
    code, headers, body = get(net, port, "/metrics")
    assert code == 200, body
    assert headers.get("content-type", "").startswith("text/plain"), headers
    return promparse.parse(body.decode("utf-8"))


# ---- promparse on known texts ----

GOOD = """# HELP zerohop_requests_total Requests answered, by model and status.
# TYPE zerohop_requests_total counter
zerohop_requests_total{model="echo",status="ok"} 12
zerohop_requests_total{model="a \\"q\\" b\\\\c\\nd",status="ok",} 3 1700000000000
# a comment
# TYPE lat_seconds histogram
lat_seconds_bucket{stage="e",le="1e-06"} 0
lat_seconds_bucket{stage="e",le="0.5"} 4
lat_seconds_bucket{stage="e",le="+Inf"} 5
lat_seconds_sum{stage="e"} 2.5
lat_seconds_count{stage="e"} 5

# TYPE g gauge
g -Inf
# TYPE h gauge
h NaN
# TYPE s summary
s{quantile="0.5"} 1
s_sum 3
s_count 2
"""

BAD_TEXTS = [
    ("no_type", "x 1\n"),
    ("help_only", "# HELP x y\nx 1\n"),
    ("type_after_sample", "# TYPE x gauge\nx 1\n# TYPE x gauge\n"),
    ("bad_name", "# TYPE 1x gauge\n1x 1\n"),
    ("bad_label_name", "# TYPE x gauge\nx{1a=\"b\"} 1\n"),
    ("reserved_label", "# TYPE x gauge\nx{__a=\"b\"} 1\n"),
    ("bad_escape", "# TYPE x gauge\nx{a=\"\\t\"} 1\n"),
    ("unterminated", "# TYPE x gauge\nx{a=\"b} 1\n"),
    ("dup_label", "# TYPE x gauge\nx{a=\"b\",a=\"c\"} 1\n"),
    ("dup_series", "# TYPE x gauge\nx{a=\"b\"} 1\nx{a=\"b\"} 2\n"),
    ("bad_value", "# TYPE x gauge\nx 1.2.3\n"),
    ("bad_timestamp", "# TYPE x gauge\nx 1 1.5\n"),
    ("no_newline", "# TYPE x gauge\nx 1"),
    ("unknown_type", "# TYPE x thing\nx 1\n"),
    ("not_contiguous", "# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx{a=\"b\"} 1\n"),
    ("counter_negative", "# TYPE x_total counter\nx_total -1\n"),
    ("wrong_sample_of_counter", "# TYPE x counter\nx_bucket 1\n"),
    ("bucket_without_le", "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n"),
    ("no_inf_bucket", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"),
    ("not_cumulative", "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"),
    ("inf_not_count", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"),
    ("le_not_increasing", "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
                          "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"),
    ("no_count", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\n"),
    ("text_after_timestamp", "# TYPE x gauge\nx 1 2 3\n"),
    ("no_value", "# TYPE x gauge\nx\n"),
    ("no_blank_before_value", "# TYPE x gauge\nx{a=\"b\"}1\n"),
    ("label_without_quotes", "# TYPE x gauge\nx{a=b} 1\n"),
    ("sum_with_le", "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum{le=\"1\"} 1\nh_count 1\n"),
    ("second_help", "# HELP x a\n# HELP x b\n# TYPE x gauge\nx 1\n"),
]


def test_promparse_accepts_a_good_text():
    fams = promparse.parse(GOOD)
    assert list(fams) == ["zerohop_requests_total", "lat_seconds", "g", "h", "s"]
    assert fams["zerohop_requests_total"].help == "Requests answered, by model and status."
    assert promparse.value(fams, "zerohop_requests_total", model="echo", status="ok") == 12
    odd = fams["zerohop_requests_total"].samples[1]
    assert odd.labels["model"] == 'a "q" b\\c\nd' and odd.timestamp == 1700000000000
    assert promparse.value(fams, "lat_seconds_count", stage="e") == 5
    assert promparse.value(fams, "g") == -math.inf and math.isnan(promparse.value(fams, "h"))
    assert promparse.total(fams, "zerohop_requests_total") == 15
    assert promparse.parse("") == {}


@pytest.mark.parametrize("name,text", BAD_TEXTS, ids=[b[0] for b in BAD_TEXTS])
def test_promparse_refuses(name, text):
    with pytest.raises(promparse.PromParseError):
        promparse.parse(text)


# ---- zerohopctl against a fake appliance (client-side checks; no zerohopd needed) ----

class FakeAppliance:
    """A one-shot control socket that answers the first request with `reply(request) -> bytes`."""

    def __init__(self, reply):
        self.dir = tempfile.mkdtemp(prefix="zh-fake-")
        self.path = os.path.join(self.dir, "ctl.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.listener.settimeout(10)
        self.request = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(reply,), daemon=True)
        self.thread.start()

    def _serve(self, reply):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                (n,) = struct.unpack(">I", recv_exact(conn, 4))
                self.request = msgpack.unpackb(recv_exact(conn, n), raw=False)
                body = reply(self.request)
                if body is not None:
                    conn.sendall(body)
                    time.sleep(0.2)
                else:
                    self.done.wait(10)
            except (OSError, EOFError):
                pass

    def close(self):
        self.done.set()
        self.listener.close()
        self.thread.join(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def frame(obj=None, raw=None):
    body = raw if raw is not None else msgpack.packb(obj)
    return struct.pack(">I", len(body)) + body


def run_fake(reply, *args, timeout_ms=1500):
    fake = FakeAppliance(reply)
    try:
        out = subprocess.run([ctl_bin(BUILDS[0]), "--socket", fake.path, "--timeout-ms", str(timeout_ms), *args],
                             capture_output=True, text=True, timeout=30)
    finally:
        fake.close()
    return out, fake.request


def test_ctl_request_frame_follows_the_spec():
    out, req = run_fake(lambda r: frame({"v": 1, "id": r["id"], "status": 0, "result": {"draining": False}}),
                        "reload", "m", "rel/dir")
    assert out.returncode == 0, out.stderr
    assert req["v"] == 1 and req["cmd"] == "reload" and isinstance(req["id"], int)
    # Arguments are keys of the request map itself (docs/MGMT.md), a relative path made absolute.
    assert req["name"] == "m" and req["path"] == os.path.join(os.getcwd(), "rel/dir")


def test_ctl_refuses_a_reply_with_another_id():
    out, _ = run_fake(lambda r: frame({"v": 1, "id": r["id"] ^ 1, "status": 0, "result": {}}), "status")
    assert out.returncode == 3 and "id" in out.stderr


def test_ctl_refuses_a_lying_container_header():
    # A map that claims 2^32-1 entries: the bounded reader refuses it before msgpack-c allocates.
    out, _ = run_fake(lambda r: frame(raw=b"\x83\xa1v\x01\xa6result\xdf\xff\xff\xff\xff"), "status")
    assert out.returncode == 3 and "malformed reply" in out.stderr


def test_ctl_refuses_an_oversized_reply_length():
    out, _ = run_fake(lambda r: struct.pack(">I", 1 << 30), "status")
    assert out.returncode == 3 and "malformed reply" in out.stderr


def test_ctl_times_out():
    started = time.monotonic()
    out, _ = run_fake(lambda r: None, "status", timeout_ms=300)
    assert out.returncode == 3 and "no reply within 300 ms" in out.stderr
    assert time.monotonic() - started < 3


def test_ctl_busy_refusal_with_nil_id_is_an_error_status():
    out, _ = run_fake(lambda r: frame({"v": 1, "id": None, "status": 5, "error": "too many connections"}), "models")
    assert out.returncode == 1
    assert out.stderr.startswith("zerohopctl: models: too many connections")


def test_ctl_json_escapes_everything():
    weird = {"s": 'q"b\\c\n\t\x01\x7fé€😀', "bad": b"a\xffb", "f": 1.0, "nan": float("nan"), 7: [None, True]}

    def reply(r):
        body = msgpack.packb({"v": 1, "id": r["id"], "status": 0, "result": weird}, use_bin_type=False)
        return frame(raw=body)

    out, _ = run_fake(reply, "--json", "config")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["s"] == weird["s"] and got["bad"] == "a\ufffdb"
    assert got["f"] == 1.0 and isinstance(got["f"], float) and got["nan"] is None and got["7"] == [None, True]


def test_ctl_usage_and_help():
    exe = ctl_bin(BUILDS[0])
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and out.stdout.startswith("usage: zerohopctl")
    for cmd in ("status", "models", "load", "unload", "reload", "stats", "drain", "undrain", "config", "doctor"):
        assert cmd in out.stdout
        h = subprocess.run([exe, cmd, "--help"], capture_output=True, text=True, timeout=10)
        assert h.returncode == 0 and "usage: zerohopctl" in h.stdout and cmd in h.stdout, h
        assert "exit status" in h.stdout or cmd == "doctor"
    for args in ([], ["frob"], ["load", "x"], ["unload"], ["unload", "a", "b"], ["reload", "a", "b", "c"],
                 ["--timeout-ms", "x", "status"], ["--timeout-ms", "0", "status"], ["--bogus", "status"],
                 ["unload", ""]):
        u = subprocess.run([exe, *args], capture_output=True, text=True, timeout=10)
        assert u.returncode == 2, (args, u)
        assert u.stderr, args
    gone = subprocess.run([exe, "--socket", "/nonexistent/zh.sock", "status"], capture_output=True, text=True,
                          timeout=10)
    assert gone.returncode == 3 and "cannot connect" in gone.stderr


def test_ctl_doctor_without_the_doctor_binary():
    exe = ctl_bin(BUILDS[0])
    if os.path.exists(f"{ROOT}/{BUILDS[0]}/zerohop-doctor"):
        out = subprocess.run([exe, "doctor", "--json"], capture_output=True, text=True, timeout=60)
        assert out.returncode in (0, 1), out
        json.loads(out.stdout)
        return
    with tempfile.TemporaryDirectory(prefix="zh-doctor-") as d:
        shutil.copy(exe, d)
        out = subprocess.run([f"{d}/zerohopctl", "doctor"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 3 and "zerohop-doctor" in out.stderr
        # Present: zerohopctl runs it from its own directory and passes --json on.
        with open(f"{d}/zerohop-doctor", "w") as f:
            f.write("#!/bin/sh\necho \"{\\\"args\\\": \\\"$*\\\"}\"\nexit 4\n")
        os.chmod(f"{d}/zerohop-doctor", 0o755)
        out = subprocess.run([f"{d}/zerohopctl", "--json", "doctor"], capture_output=True, text=True, timeout=10)
        assert out.returncode == 4 and json.loads(out.stdout) == {"args": "--json"}


# ---- the appliance ----

@pytest.fixture(scope="module")
def models_dir():
    with tempfile.TemporaryDirectory(prefix="zh-mgmt-") as d:
        yield d


@pytest.fixture(scope="module", params=BUILDS)
def mg(request, net, models_dir):
    """zerohopd with the control socket in a temporary directory and HTTP on a free loopback port."""
    build = request.param
    for tool in ("zerohopd", "zerohopctl", "zerohop-mkmodel"):
        if not os.path.exists(f"{ROOT}/{build}/{tool}"):
            pytest.fail(f"{build}/{tool} is not built (make all / make asan)")
    rank = f"{models_dir}/rank-{build}"
    subprocess.run([f"{ROOT}/{build}/zerohop-mkmodel", "ranker", rank, "--seed", "5", "--vocab", "100",
                    "--embedding-dim", "8", "--dense", "2", "--hidden", "16", "--outputs", "1"],
                   check=True, capture_output=True, timeout=60)
    sock = f"{models_dir}/ctl-{build}.sock"
    port = free_port(net.app_ns)
    app = Appliance(build, net, extra_args=["--ctl-socket", sock, "--http-port", str(port),
                                            "--model", "echo", "--model", f"rank={rank}"])
    app.sock, app.port, app.rank = sock, port, rank
    yield app
    rc, _ = app.stop()
    assert rc == 0, "zerohopd did not stop cleanly:\n" + "".join(app.log[-40:])
    assert "zerohopd: stopped\n" in app.log


@pytest.fixture
def client(net, mg):
    c = Client(net, timeout_s=2.0)
    yield c
    c.close()


def wait_for(predicate, timeout_s=3.0, step_s=0.02):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step_s)


def test_control_socket_mode(mg):
    st = os.stat(mg.sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)


def test_ctl_status(mg):
    human = ctl(mg.build, mg.sock, "status")
    assert human.returncode == 0, human.stderr
    for key in ("version", "uptime_s", "device", "draining", "healthy", "models", "requests"):
        assert any(line.split()[0] == key for line in human.stdout.splitlines() if line.strip()), human.stdout
    st = ctl_json(mg.build, mg.sock, "status")
    assert set(st) >= {"version", "uptime_s", "device", "draining", "healthy", "models", "requests"}, st
    assert isinstance(st["version"], str) and st["version"]
    assert st["draining"] is False and st["healthy"] is True
    assert st["models"] == 2 and isinstance(st["requests"], int) and isinstance(st["uptime_s"], (int, float))
    # af_packet offers no rx timestamps: traces start at the rx poll.
    assert st["rx_timestamps"] == "tsc (port offers none)", st
    assert st["rx_timestamp_bound_ns"] == 0, st
    # The cpu device's clock is the TSC: the identity map, nothing to calibrate.
    clock = st["device_clock"]
    assert clock["kind"] == "tsc" and clock["calibrated"] is False and clock["samples"] == 0, clock
    assert clock["rate_tsc"] == clock["rate_dclk"] == 1 and clock["tsc_hz"] > 1e8, clock
    assert any(line.startswith("device_clock") and "tsc" in line for line in human.stdout.splitlines()), human.stdout
    assert "device clock map" not in human.stdout, "a TSC clock has no map to show: " + human.stdout


def test_ctl_models(mg):
    models = ctl_json(mg.build, mg.sock, "models")
    assert [m["name"] for m in models] == ["echo", "rank"], models
    for m in models:
        assert set(m) >= {"name", "arch", "path", "default", "version", "params"}, m
    echo, rank = models
    assert echo["default"] is True and rank["default"] is False
    assert rank["arch"] == "ranker" and rank["path"] == mg.rank and rank["version"] == 1
    # embedding 100x8, mlp.0 16x10 + 16, mlp.1 1x16 + 1.
    assert rank["params"] == 100 * 8 + 16 * 10 + 16 + 16 + 1
    human = ctl(mg.build, mg.sock, "models")
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ARCH", "DEFAULT", "VERSION", "PARAMS", "PATH"]
    assert lines[2].split()[:5] == ["rank", "ranker", "no", "1", str(rank["params"])]
    assert lines[2].endswith(mg.rank)
    # Aligned: each column starts at the same offset in every row.
    assert lines[1].index("echo") == lines[2].index("rank") == 0
    assert lines[0].index("ARCH") == lines[1].index("echo", 4) == lines[2].index("ranker")


def test_ctl_stats(mg, client):
    for i in range(10):
        assert client.ask({"id": i, "model": "echo", "tokens": [i]})["status"] == 0
    st = ctl_json(mg.build, mg.sock, "stats")
    assert isinstance(st["counters"], dict) and st["counters"]
    assert all(isinstance(v, int) for v in st["counters"].values()), st["counters"]
    assert set(st["stages"]) == set(STAGES), st["stages"]
    for name, stage in st["stages"].items():
        assert set(stage) >= {"count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"}, stage
        if name in STAGES_NEED_NIC_STAMPS:
            assert stage["count"] == 0, (name, stage)
            continue
        assert stage["count"] >= 10
        assert 0 <= stage["p50_us"] <= stage["p90_us"] <= stage["p99_us"] <= stage["p999_us"] <= stage["max_us"], \
            (name, stage)
    assert st["ring"]["slots"] == 1024 and 0 <= st["ring"]["occupied"] <= 1024
    human = ctl(mg.build, mg.sock, "stats")
    assert human.returncode == 0, human.stderr
    text = human.stdout
    assert "counters" in text and "STAGE" in text and "P99.9" in text and "of 1024 slots occupied" in text
    for name in STAGES:
        assert name in text


def test_ctl_config(mg):
    cfg = ctl_json(mg.build, mg.sock, "config")
    assert cfg and all(isinstance(k, str) and isinstance(v, str) for k, v in cfg.items()), cfg
    for key in cfg:
        section, _, name = key.partition(".")
        assert section in ("network", "device", "mgmt", "models") and name, key
    assert cfg["network.ip"] == "198.18.0.1" and cfg["network.udp_port"] == "9000"
    assert cfg["mgmt.ctl_socket"] == mg.sock and cfg["mgmt.http_port"] == str(mg.port)
    assert cfg["mgmt.max_connections"] == str(MAX_CONNECTIONS)
    human = ctl(mg.build, mg.sock, "config")
    assert human.returncode == 0 and "mgmt.ctl_socket" in human.stdout and mg.sock in human.stdout


def test_ctl_errors_exit_1(mg):
    out = ctl(mg.build, mg.sock, "unload", "nope")
    assert out.returncode == 1 and out.stderr.startswith("zerohopctl: unload: "), out
    out = ctl(mg.build, mg.sock, "reload", "nope")
    assert out.returncode == 1 and out.stderr.startswith("zerohopctl: reload: "), out
    out = ctl(mg.build, mg.sock, "load", "rank", mg.rank)
    assert out.returncode == 1 and out.stderr.startswith("zerohopctl: load: "), out
    out = ctl(mg.build, mg.sock, "load", "x", "/nonexistent/model")
    assert out.returncode == 1 and out.stderr.startswith("zerohopctl: load: "), out
    assert [m["name"] for m in ctl_json(mg.build, mg.sock, "models")] == ["echo", "rank"]


def test_drain_and_undrain(net, mg, client):
    assert get(net, mg.port, "/readyz")[0] == 200
    human = ctl(mg.build, mg.sock, "drain")
    assert human.returncode == 0 and human.stdout == "draining: yes\n", human
    try:
        assert ctl_json(mg.build, mg.sock, "drain") == {"draining": True}
        assert ctl_json(mg.build, mg.sock, "status")["draining"] is True
        answer = client.ask({"id": 1, "model": "echo", "tokens": [1]})
        assert answer["status"] == 6, answer
        code, headers, body = get(net, mg.port, "/readyz")
        assert code == 503 and body.strip(), (code, body)
        fams = metrics(net, mg.port)
        assert promparse.value(fams, "zerohop_draining") == 1
        # Draining is not unhealthy.
        assert get(net, mg.port, "/healthz")[0] == 200
    finally:
        undrain = ctl(mg.build, mg.sock, "undrain")
    assert undrain.returncode == 0 and undrain.stdout == "draining: no\n", undrain
    assert ctl_json(mg.build, mg.sock, "undrain") == {"draining": False}
    assert client.ask({"id": 2, "model": "echo", "tokens": [2]}) == {"id": 2, "status": 0, "tokens": [2]}
    code, _, body = get(net, mg.port, "/readyz")
    assert code == 200 and body.strip() == b"ready"
    assert promparse.value(metrics(net, mg.port), "zerohop_draining") == 0


# ---- HTTP ----

def test_http_probes_and_errors(net, mg):
    code, headers, body = get(net, mg.port, "/healthz")
    assert code == 200 and body.strip() == b"ok" and headers.get("connection", "").lower() == "close"
    code, headers, body = get(net, mg.port, "/readyz")
    assert code == 200 and body.strip() == b"ready" and headers.get("connection", "").lower() == "close"
    cases = [
        (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"\x00\x01garbage\xff\r\n\r\n", 400),
        (b"GET /metrics\r\n\r\n", 400),                      # no HTTP/1.x
        (b"G(T /metrics HTTP/1.1\r\n\r\n", 400),              # bad method token
        (b"GET /metrics SMTP/1.1\r\n\r\n", 400),
        (b"\r\n\r\n", 400),                                   # no request line
        (b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\n", 400),  # over 8 KiB of headers
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"DELETE /healthz HTTP/1.1\r\n\r\n", 405),
        (b"PUT /readyz HTTP/1.0\r\n\r\n", 405),
        (b"GET /metrics HTTP/1.0\r\n\r\n", 200),
    ]
    for raw, want in cases:
        code, headers, _ = http(net, mg.port, raw)
        assert code == want, (raw[:40], code)
        assert headers.get("connection", "").lower() == "close", (raw[:40], headers)
    # The server is still serving after all of that.
    assert get(net, mg.port, "/healthz")[0] == 200


def test_http_head_is_405(net, mg):
    with netns(net.app_ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(("127.0.0.1", mg.port))
        s.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = s.recv(4096)
    finally:
        s.close()
    assert head.startswith(b"HTTP/1.1 405 ") or head.startswith(b"HTTP/1.0 405 "), head[:40]


def test_metrics_families(net, mg):
    fams = metrics(net, mg.port)
    want = {
        "zerohop_build_info": "gauge", "zerohop_requests_total": "counter",
        "zerohop_stage_latency_seconds": "histogram", "zerohop_ring_slots": "gauge",
        "zerohop_ring_occupied": "gauge", "zerohop_port_rx_frames_total": "counter",
        "zerohop_port_tx_frames_total": "counter", "zerohop_port_drops_total": "counter",
        "zerohop_model_loads_total": "counter", "zerohop_draining": "gauge", "zerohop_device_healthy": "gauge",
    }
    for name, kind in want.items():
        assert name in fams and fams[name].type == kind, (name, fams.get(name))
    for fam in fams.values():
        if fam.type == "counter":
            assert fam.name.endswith("_total"), fam.name
    info = fams["zerohop_build_info"].samples
    assert len(info) == 1 and info[0].value == 1 and set(info[0].labels) >= {"version", "cuda_runtime"}
    stages = {s.labels["stage"] for s in fams["zerohop_stage_latency_seconds"].samples}
    assert stages == set(STAGES)
    les = sorted({promparse.parse_float(s.labels["le"]) for s in fams["zerohop_stage_latency_seconds"].samples
                  if s.name.endswith("_bucket")})
    finite = [le for le in les if le != math.inf]
    assert math.isclose(finite[0], 1e-6) and math.isclose(finite[-1], 1.0), les
    assert promparse.value(fams, "zerohop_ring_slots") == 1024
    assert promparse.value(fams, "zerohop_device_healthy") == 1
    for s in fams["zerohop_port_drops_total"].samples:
        assert s.labels.get("reason"), s
    assert {s.labels.get("result") for s in fams["zerohop_model_loads_total"].samples} >= {"ok", "failed"}
    for s in fams["zerohop_requests_total"].samples:
        assert set(s.labels) == {"model", "status"}, s


def stage_counts(fams):
    return {st: promparse.value(fams, "zerohop_stage_latency_seconds_count", stage=st) for st in STAGES}


def test_metrics_count_what_was_sent(net, mg, client):
    n_ok, n_bad = 37, 11
    before = metrics(net, mg.port)
    for i in range(n_ok):
        assert client.ask({"id": i, "model": "echo", "tokens": [i, 1]})["status"] == 0
    for _ in range(n_bad):
        answer = client.ask_raw(b"\xc1")
        assert answer["status"] == 1 and answer["id"] is None, answer

    def settled():
        after = metrics(net, mg.port)
        ok = promparse.value(after, "zerohop_requests_total", model="echo", status="ok") - \
            promparse.value(before, "zerohop_requests_total", model="echo", status="ok")
        return after if ok >= n_ok and stage_counts(after)["end_to_end"] - stage_counts(before)["end_to_end"] >= \
            n_ok + n_bad else None

    # The counters are gathered on the management plane's tick: give them a moment.
    after = wait_for(settled, timeout_s=3.0)
    assert after, "the metrics never caught up with the requests sent"
    ok_delta = promparse.value(after, "zerohop_requests_total", model="echo", status="ok") - \
        promparse.value(before, "zerohop_requests_total", model="echo", status="ok")
    bad_delta = promparse.total(after, "zerohop_requests_total", status="bad_request") - \
        promparse.total(before, "zerohop_requests_total", status="bad_request")
    assert ok_delta == n_ok and bad_delta == n_bad, (ok_delta, bad_delta)
    # Both kinds went through the ring and the device (the device decodes the request), so every
    # stage timed each of them once; an answer from the rx lcore (draining, busy) would time none.
    b, a = stage_counts(before), stage_counts(after)
    for st in STAGES:
        want = 0 if st in STAGES_NEED_NIC_STAMPS else n_ok + n_bad
        assert a[st] - b[st] == want, (st, a[st] - b[st])
    e2e_sum = promparse.value(after, "zerohop_stage_latency_seconds_sum", stage="end_to_end") - \
        promparse.value(before, "zerohop_stage_latency_seconds_sum", stage="end_to_end")
    assert 0 < e2e_sum / (n_ok + n_bad) < 0.5, e2e_sum
    rx, tx = (promparse.value(after, name) - promparse.value(before, name)
              for name in ("zerohop_port_rx_frames_total", "zerohop_port_tx_frames_total"))
    assert rx >= n_ok + n_bad and tx >= n_ok + n_bad, (rx, tx)
    # zerohopctl stats reads the same histograms.
    st = ctl_json(mg.build, mg.sock, "stats")
    assert st["stages"]["end_to_end"]["count"] == a["end_to_end"]


def test_status_requests_counts(mg, client):
    before = ctl_json(mg.build, mg.sock, "status")["requests"]
    for i in range(5):
        assert client.ask({"id": i, "tokens": [i]})["status"] == 0
    after = before
    deadline = time.monotonic() + 3
    while after < before + 5 and time.monotonic() < deadline:
        time.sleep(0.02)
        after = ctl_json(mg.build, mg.sock, "status")["requests"]
    assert after == before + 5, (before, after)


# ---- control protocol: bad input ----

def test_ctl_protocol_good_request_and_pipelining(mg):
    c = Ctl(mg.sock)
    try:
        reply = c.ask({"v": 1, "id": 7, "cmd": "status"})
        assert reply["v"] == 1 and reply["id"] == 7 and reply["status"] == 0 and "error" not in reply
        assert reply["result"]["draining"] is False
        # Two frames in one write: two replies, in order.
        c.sock.sendall(frame({"v": 1, "id": 8, "cmd": "models"}) + frame({"v": 1, "id": 9, "cmd": "status"}))
        assert c.recv_frame()["id"] == 8 and c.recv_frame()["id"] == 9
        # One frame a byte at a time.
        for b in frame({"v": 1, "id": 10, "cmd": "status"}):
            c.sock.send(bytes([b]))
            time.sleep(0.002)
        assert c.recv_frame()["id"] == 10
        # A frame of exactly 65536 bytes is not over the bound.
        base = {"v": 1, "id": 11, "cmd": "status", "pad": ""}
        pad = FRAME_MAX_BYTES - len(msgpack.packb(base)) - 2
        body = msgpack.packb(dict(base, pad="x" * pad))
        assert len(body) == FRAME_MAX_BYTES, len(body)
        reply = c.ask_raw(body)
        assert reply["id"] == 11 and reply["status"] in (CTL_OK, CTL_BAD_REQUEST), reply
    finally:
        c.close()


BAD_FRAMES = [
    ("garbage", b"\xc1\xc1\xc1\xc1", CTL_BAD_REQUEST, None),
    ("truncated", b"\x83\xa1v\x01", CTL_BAD_REQUEST, None),
    ("not_a_map", msgpack.packb([1, 2, 3]), CTL_BAD_REQUEST, None),
    ("trailing_bytes", msgpack.packb({"v": 1, "id": 5, "cmd": "status"}) + b"\x00", CTL_BAD_REQUEST, "any"),
    ("no_cmd", msgpack.packb({"v": 1, "id": 5}), CTL_BAD_REQUEST, 5),
    ("cmd_not_str", msgpack.packb({"v": 1, "id": 5, "cmd": 3}), CTL_BAD_REQUEST, 5),
    ("unknown_cmd", msgpack.packb({"v": 1, "id": 5, "cmd": "frobnicate"}), CTL_UNKNOWN_COMMAND, 5),
    ("name_is_int", msgpack.packb({"v": 1, "id": 5, "cmd": "unload", "name": 3}), CTL_BAD_REQUEST, 5),
    ("path_is_bool", msgpack.packb({"v": 1, "id": 5, "cmd": "load", "name": "z", "path": True}), CTL_BAD_REQUEST, 5),
    ("missing_name", msgpack.packb({"v": 1, "id": 5, "cmd": "unload"}), CTL_BAD_REQUEST, 5),
    ("missing_path", msgpack.packb({"v": 1, "id": 5, "cmd": "load", "name": "z"}), CTL_BAD_REQUEST, 5),
    ("v2", msgpack.packb({"v": 2, "id": 5, "cmd": "status"}), CTL_BAD_REQUEST, "any"),
    ("no_v", msgpack.packb({"id": 5, "cmd": "status"}), CTL_BAD_REQUEST, "any"),
    ("id_negative", msgpack.packb({"v": 1, "id": -5, "cmd": "status"}), CTL_BAD_REQUEST, "any"),
    ("lying_map_header", b"\xdf\xff\xff\xff\xff", CTL_BAD_REQUEST, None),
    ("lying_array_in_map", b"\x83\xa1v\x01\xa2id\x05\xa3cmd\xdd\xff\xff\xff\xff", CTL_BAD_REQUEST, "any"),
    ("lying_str", b"\x83\xa1v\x01\xa2id\x05\xa3cmd\xdb\xff\xff\xff\xff", CTL_BAD_REQUEST, "any"),
    ("unload_unknown_model", msgpack.packb({"v": 1, "id": 5, "cmd": "unload", "name": "nope"}), CTL_NOT_FOUND, 5),
]


@pytest.mark.parametrize("name,body,status,want_id", BAD_FRAMES, ids=[b[0] for b in BAD_FRAMES])
def test_ctl_protocol_bad_input(mg, name, body, status, want_id):
    c = Ctl(mg.sock)
    try:
        reply = c.ask_raw(body)
        assert reply["v"] == 1 and reply["status"] == status, reply
        assert isinstance(reply.get("error"), str) and reply["error"], reply
        assert "result" not in reply, reply
        if want_id != "any":
            assert reply["id"] == want_id, reply
    finally:
        c.close()
    # The daemon still answers, on a new connection.
    assert ctl_ask(mg.sock, {"v": 1, "id": 6, "cmd": "status"})["status"] == 0


def test_ctl_oversized_frame_is_refused_and_closed(mg):
    c = Ctl(mg.sock)
    try:
        c.sock.sendall(struct.pack(">I", FRAME_MAX_BYTES + 1))
        reply = c.recv_frame()
        assert reply["status"] != 0 and reply["error"] and reply["id"] is None, reply
        assert c.closed_within(2.0), "the connection stayed open after an oversized frame"
    finally:
        c.close()
    c = Ctl(mg.sock)
    try:
        # Even with the bytes sent, the frame is refused from its length.
        c.sock.sendall(struct.pack(">I", 0xffffffff) + b"\x80" * 1024)
        reply = c.recv_frame()
        assert reply["status"] != 0 and reply["id"] is None, reply
        assert c.closed_within(2.0)
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed before the refusal could be read: the unread bytes reset it
    finally:
        c.close()
    assert ctl_ask(mg.sock, {"v": 1, "id": 6, "cmd": "status"})["status"] == 0


def test_idle_connections_are_closed_and_block_nobody(net, mg):
    silent = Ctl(mg.sock)
    partial = Ctl(mg.sock)
    partial.sock.sendall(struct.pack(">I", 100) + b"\x85")  # a frame begun and never finished
    with netns(net.app_ns):
        http_idle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    http_idle.connect(("127.0.0.1", mg.port))
    http_idle.sendall(b"GET /metrics HTTP/1.1\r\n")  # headers begun, never ended
    started = time.monotonic()
    try:
        # Others are served meanwhile, at once.
        for _ in range(5):
            t = time.monotonic()
            assert ctl(mg.build, mg.sock, "status").returncode == 0
            assert get(net, mg.port, "/healthz", timeout_s=1.0)[0] == 200
            assert time.monotonic() - t < 1.0
        for conn in (silent, partial):
            assert conn.closed_within(IDLE_CLOSE_S + 4 - (time.monotonic() - started)), "an idle connection stayed open"
        waited = time.monotonic() - started
        assert IDLE_CLOSE_S - 1 <= waited <= IDLE_CLOSE_S + 4, waited
        http_idle.settimeout(max(0.5, IDLE_CLOSE_S + 4 - (time.monotonic() - started)))
        try:
            while http_idle.recv(65536):
                pass
        except ConnectionResetError:
            pass
        assert time.monotonic() - started <= IDLE_CLOSE_S + 4
    finally:
        silent.close()
        partial.close()
        http_idle.close()


def test_connection_limit(net, mg):
    conns = []
    try:
        for _ in range(MAX_CONNECTIONS):
            conns.append(Ctl(mg.sock))
        # Make sure the server has taken all 64 (a request on the last one is answered).
        assert conns[-1].ask({"v": 1, "id": 1, "cmd": "status"})["status"] == 0
        extra = Ctl(mg.sock)
        try:
            try:
                reply = extra.recv_frame()
                assert reply["status"] == CTL_BUSY and reply["error"] and reply["id"] is None, reply
            except (EOFError, ConnectionResetError):
                pass  # closed without a frame: a clean refusal too
            assert extra.closed_within(2.0)
        finally:
            extra.close()
        # HTTP shares the bound: 503 (or closed).
        try:
            code, headers, _ = get(net, mg.port, "/healthz")
            assert code == 503 and headers.get("connection", "").lower() == "close"
        except (ConnectionResetError, AssertionError) as e:
            if not isinstance(e, ConnectionResetError) and "no end of headers" not in str(e):
                raise
        # An existing connection still works.
        assert conns[0].ask({"v": 1, "id": 2, "cmd": "status"})["status"] == 0
    finally:
        for c in conns:
            c.close()
    # Once they are gone, new connections work.
    assert wait_for(lambda: ctl(mg.build, mg.sock, "status").returncode == 0, timeout_s=3.0)
    assert get(net, mg.port, "/healthz")[0] == 200


# ---- probes under load ----

def python_load(net, stop, counts):
    """Echo requests with 32 in flight until `stop` is set (at most 60 s); counts answers."""
    c = Client(net, timeout_s=2.0)
    try:
        inflight, sent = 0, 0
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            while inflight < 32:
                c.send_raw(msgpack.packb({"id": sent, "model": "echo", "tokens": [1, 2, 3]}))
                sent += 1
                inflight += 1
            c.recv_answer()
            inflight -= 1
            counts["answers"] += 1
        while inflight:
            c.recv_answer()
            inflight -= 1
            counts["answers"] += 1
    except Exception as e:  # noqa: BLE001 - reported by the test
        counts["error"] = repr(e)
    finally:
        c.close()


def test_probes_answer_under_full_load(net, mg):
    bench = f"{ROOT}/{mg.build}/zerohop-bench"
    duration_s = 5
    stop = threading.Event()
    counts = {"answers": 0}
    proc = thread = None
    before = metrics(net, mg.port)
    if os.path.exists(bench):
        proc = subprocess.Popen(["ip", "netns", "exec", net.client_ns, bench, "--addr", "198.18.0.1", "--port",
                                 "9000", "--mode", "closed", "--outstanding", "32", "--duration-s", str(duration_s),
                                 "--model", "echo", "--tokens", "1,2,3"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    else:
        thread = threading.Thread(target=python_load, args=(net, stop, counts), daemon=True)
        thread.start()
    probes, worst = 0, 0.0
    try:
        time.sleep(0.5)
        end = time.monotonic() + duration_s - 1
        while time.monotonic() < end:
            for path in ("/healthz", "/metrics"):
                t = time.monotonic()
                code, _, body = get(net, mg.port, path, timeout_s=1.0)
                took = time.monotonic() - t
                worst = max(worst, took)
                assert code == 200 and took < 1.0, (path, code, took)
                if path == "/metrics":
                    promparse.parse(body.decode())
                probes += 1
            time.sleep(0.05)
    finally:
        stop.set()
        if proc:
            out, _ = proc.communicate(timeout=duration_s + 30)
            assert proc.returncode == 0, out
        if thread:
            thread.join(timeout=30)
    assert "error" not in counts, counts
    after = metrics(net, mg.port)
    served = promparse.value(after, "zerohop_requests_total", model="echo", status="ok") - \
        promparse.value(before, "zerohop_requests_total", model="echo", status="ok")
    assert served > 1000, f"only {served} requests were served under 'full load'"
    assert probes >= 10, probes


# ---- a stalled device ----

@pytest.fixture
def own_net():
    """A dev network of this test's own: the module's appliance keeps running on `net`."""
    dn = DevNet(("zt%xstl" % (os.getpid() % 0xffff))[:12])
    dn.down()
    dn.up()
    yield dn
    dn.down()


@pytest.mark.parametrize("build", BUILDS)
def test_stalled_device_turns_healthz_503(own_net, build, monkeypatch, models_dir):
    # Test-only knob (as in test_device_modes.py): the worker stops beating after 3 requests.
    monkeypatch.setenv("ZH_TEST_STALL_AFTER_REQUESTS", "3")
    net = own_net
    sock = f"{models_dir}/stall-{build}.sock"
    port = free_port(net.app_ns)
    app = Appliance(build, net, extra_args=["--workers", "1", "--stall-ms", "200", "--ctl-socket", sock,
                                            "--http-port", str(port)])
    try:
        assert get(net, port, "/healthz")[0] == 200
        c = Client(net, timeout_s=1.0)
        for i in range(3):
            assert c.ask({"id": i, "tokens": [i]})["status"] == 0
        c.send_raw(msgpack.packb({"id": 3, "tokens": [3]}))
        c.close()
        assert wait_for(lambda: get(net, port, "/healthz")[0] == 503, timeout_s=10), "/healthz stayed 200"
        assert promparse.value(metrics(net, port), "zerohop_device_healthy") == 0
        assert ctl_json(build, sock, "status")["healthy"] is False
    finally:
        rc, _ = app.stop()
    assert rc == 0

# SPDX-License-Identifier: MIT
"""Hot swap (docs/MGMT.md): a bounded load generator sends continuously while the model is reloaded 20
times, alternating two versions whose answers differ; every request gets an ok answer from one of the
two versions, with zero failures and zero timeouts. Models that break a rule of docs/MODELS.md (a
truncated file, tensors of the wrong shape) and a missing path are refused while the old version keeps
answering exactly as before; `load` adds a name, `unload` removes it (its requests then get
unknown_model), and the last model cannot be unloaded."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import msgpack
import pytest

import promparse
from conftest import BUILDS
from zhnet import ROOT, Appliance, Client, netns

RELOADS = 20
WINDOW = 32
SEND_LIMIT_S = 120
TOKENS = [3, 14, 15, 92, 65]
DENSE = [0.25, -1.5]
RULES = ("header-size", "header-json", "tensor-entry", "dtype", "shape", "byte-size", "data-range", "overlap",
         "required", "tensor-shape", "alignment")


def ctl(app, *args, timeout_s=120):
    return subprocess.run([f"{ROOT}/{app.build}/zerohopctl", "--socket", app.sock, *args], capture_output=True,
                          text=True, timeout=timeout_s)


def ctl_json(app, *args):
    out = ctl(app, "--json", *args)
    assert out.returncode == 0, f"zerohopctl {' '.join(args)}: rc {out.returncode}: {out.stderr}"
    return json.loads(out.stdout)


def mkranker(build, out, seed, embedding_dim=8):
    subprocess.run([f"{ROOT}/{build}/zerohop-mkmodel", "ranker", out, "--seed", str(seed), "--vocab", "100",
                    "--embedding-dim", str(embedding_dim), "--dense", "2", "--hidden", "16", "--outputs", "1"],
                   check=True, capture_output=True, timeout=60)


def free_port(ns):
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def metrics(net, port):
    with netns(net.app_ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2.0)
    data = b""
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"200", head
    return promparse.parse(body.decode())


def score(client, model="rank", req_id=1):
    answer = client.ask({"id": req_id, "model": model, "op": "score", "tokens": TOKENS, "dense": DENSE})
    assert answer["status"] == 0 and answer["id"] == req_id, answer
    return answer["scores"]


@pytest.fixture(scope="module")
def models(request):
    with tempfile.TemporaryDirectory(prefix="zh-hotswap-") as d:
        yield d


@pytest.fixture(scope="module", params=BUILDS)
def app(request, net, models):
    build = request.param
    for tool in ("zerohopd", "zerohopctl", "zerohop-mkmodel"):
        if not os.path.exists(f"{ROOT}/{build}/{tool}"):
            pytest.fail(f"{build}/{tool} is not built (make all / make asan)")
    d = f"{models}/{build}"
    os.makedirs(d)
    mkranker(build, f"{d}/v1", 1)
    mkranker(build, f"{d}/v2", 2)
    sock = f"{d}/ctl.sock"
    port = free_port(net.app_ns)
    a = Appliance(build, net, extra_args=["--workers", "2", "--worker-cores", "0,1", "--model", f"rank={d}/v1",
                                          "--ctl-socket", sock, "--http-port", str(port)])
    a.dir, a.sock, a.port = d, sock, port
    yield a
    rc, _ = a.stop()
    assert rc == 0, "zerohopd did not stop cleanly:\n" + "".join(a.log[-40:])


@pytest.fixture
def client(net, app):
    c = Client(net, timeout_s=2.0)
    yield c
    c.close()


@pytest.fixture(scope="module")
def versions(net, app):
    """Each version's answer to the fixed request, learnt by asking (reloading to v2 and back)."""
    c = Client(net, timeout_s=2.0)
    try:
        v1 = score(c)
        assert ctl(app, "reload", "rank", f"{app.dir}/v2").returncode == 0
        v2 = score(c)
        assert ctl(app, "reload", "rank", f"{app.dir}/v1").returncode == 0
        assert score(c) == v1
    finally:
        c.close()
    assert len(v1) == len(v2) == 1 and abs(v1[0] - v2[0]) > 1e-3, (v1, v2)
    return v1, v2


class Sender(threading.Thread):
    """Score requests with WINDOW in flight until stopped (at most SEND_LIMIT_S); keeps every answer."""

    def __init__(self, net):
        super().__init__(daemon=True)
        self.client = Client(net, timeout_s=2.0)
        self.stop_event = threading.Event()
        self.sent = 0
        self.answers = {}
        self.error = None

    def run(self):
        inflight = 0
        deadline = time.monotonic() + SEND_LIMIT_S
        try:
            while True:
                if not self.stop_event.is_set() and time.monotonic() < deadline:
                    while inflight < WINDOW:
                        self.client.send_raw(msgpack.packb({"id": self.sent, "model": "rank", "op": "score",
                                                            "tokens": TOKENS, "dense": DENSE}))
                        self.sent += 1
                        inflight += 1
                elif inflight == 0:
                    return
                answer = self.client.recv_answer()  # a timeout raises: no answer may go missing
                inflight -= 1
                if answer.get("id") in self.answers:
                    raise AssertionError(f"id {answer.get('id')} answered twice")
                self.answers[answer.get("id")] = answer
        except Exception as e:  # noqa: BLE001 - the test reports it
            self.error = f"{e!r} after {len(self.answers)} answers of {self.sent} sent"
        finally:
            self.client.close()

    def finish(self):
        self.stop_event.set()
        self.join(timeout=SEND_LIMIT_S + 30)
        assert not self.is_alive(), "the sender did not finish"


def close_to(scores, want):
    return len(scores) == len(want) and all(abs(a - b) <= 1e-6 for a, b in zip(scores, want))


def test_reload_20_times_under_load(net, app, versions):
    v1, v2 = versions
    before = metrics(net, app.port)
    version = ctl_json(app, "models")[0]["version"]
    sender = Sender(net)
    sender.start()
    try:
        time.sleep(0.2)
        for i in range(RELOADS):
            path = f"{app.dir}/v2" if i % 2 == 0 else f"{app.dir}/v1"
            out = ctl(app, "--json", "reload", "rank", path)
            assert out.returncode == 0, f"reload {i + 1}: rc {out.returncode}: {out.stderr}"
            entry = json.loads(out.stdout)
            assert entry["name"] == "rank" and entry["path"] == path and entry["version"] == version + i + 1, entry
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        sender.finish()
    assert sender.error is None, sender.error
    assert len(sender.answers) == sender.sent and sender.sent > RELOADS * WINDOW, (len(sender.answers), sender.sent)
    seen = {1: 0, 2: 0}
    for req_id, answer in sender.answers.items():
        assert answer["status"] == 0, answer
        if close_to(answer["scores"], v1):
            seen[1] += 1
        elif close_to(answer["scores"], v2):
            seen[2] += 1
        else:
            raise AssertionError(f"request {req_id}: {answer['scores']} is neither version's {v1} / {v2}")
    assert seen[1] and seen[2], f"the answers never changed version: {seen}"
    # 20 reloads: the last one is back to v1.
    c = Client(net, timeout_s=2.0)
    try:
        assert score(c) == v1
    finally:
        c.close()
    after = metrics(net, app.port)
    loads_ok = promparse.value(after, "zerohop_model_loads_total", result="ok") - \
        promparse.value(before, "zerohop_model_loads_total", result="ok")
    assert loads_ok == RELOADS, loads_ok


def truncated_model(app):
    d = f"{app.dir}/truncated"
    shutil.copytree(f"{app.dir}/v2", d)
    size = os.path.getsize(f"{d}/model.safetensors")
    os.truncate(f"{d}/model.safetensors", size // 2)
    return d


def wrong_shape_model(app):
    # Tensors for an embedding of 16, a config that says 8.
    d = f"{app.dir}/wrong-shape"
    mkranker(app.build, d, 3, embedding_dim=16)
    with open(f"{d}/config.json") as f:
        config = json.load(f)
    config["embedding_dim"] = 8
    with open(f"{d}/config.json", "w") as f:
        json.dump(config, f)
    return d


BAD_MODELS = [
    ("truncated", truncated_model, ("data-range", "header-size", "byte-size")),
    ("wrong_shape", wrong_shape_model, ("tensor-shape",)),
    ("missing_path", lambda app: f"{app.dir}/does-not-exist", ("does-not-exist", "No such file", "not found")),
]


@pytest.mark.parametrize("name,make,why", BAD_MODELS, ids=[b[0] for b in BAD_MODELS])
def test_bad_reload_is_refused_and_the_old_version_serves(net, app, versions, client, name, make, why):
    path = make(app)
    before_models = ctl_json(app, "models")
    before = score(client)
    before_failed = promparse.value(metrics(net, app.port), "zerohop_model_loads_total", result="failed")
    out = ctl(app, "reload", "rank", path)
    assert out.returncode == 1, (out.returncode, out.stderr)
    assert out.stderr.startswith("zerohopctl: reload: "), out.stderr
    assert any(w in out.stderr for w in why), f"the error names none of {why}: {out.stderr}"
    if name != "missing_path":
        assert any(rule in out.stderr for rule in RULES)
    # Untouched: the same table, the same answer to the bit.
    assert ctl_json(app, "models") == before_models
    for i in range(20):
        assert score(client, req_id=10 + i) == before
    assert promparse.value(metrics(net, app.port), "zerohop_model_loads_total", result="failed") == \
        before_failed + 1


def test_load_and_unload(net, app, versions, client):
    v1, v2 = versions
    out = ctl(app, "load", "rank2", f"{app.dir}/v2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].split()[:4] == ["rank2", "ranker", "no", "1"], out.stdout
    models = ctl_json(app, "models")
    assert [(m["name"], m["default"], m["version"]) for m in models][-1] == ("rank2", False, 1), models
    assert close_to(score(client, "rank2"), v2) and close_to(score(client, "rank"), v1)
    # A name that exists is refused.
    out = ctl(app, "load", "rank2", f"{app.dir}/v1")
    assert out.returncode == 1 and out.stderr.startswith("zerohopctl: load: "), out
    assert close_to(score(client, "rank2"), v2)

    out = ctl(app, "unload", "rank2")
    assert out.returncode == 0 and out.stdout == "unloaded rank2\n", out
    answer = client.ask({"id": 5, "model": "rank2", "op": "score", "tokens": TOKENS, "dense": DENSE})
    assert answer["status"] == 2 and answer["id"] == 5, answer
    assert [m["name"] for m in ctl_json(app, "models")] == ["rank"]
    out = ctl(app, "unload", "rank2")
    assert out.returncode == 1 and out.stderr.startswith("zerohopctl: unload: "), out


def test_unload_default_and_last(net, app, versions, client):
    v1, v2 = versions
    assert ctl(app, "load", "other", f"{app.dir}/v2").returncode == 0
    # Unloading the default makes the next model the default: a request naming no model reaches it.
    assert ctl(app, "unload", "rank").returncode == 0
    models = ctl_json(app, "models")
    assert [(m["name"], m["default"]) for m in models] == [("other", True)], models
    answer = client.ask({"id": 6, "op": "score", "tokens": TOKENS, "dense": DENSE})
    assert answer["status"] == 0 and close_to(answer["scores"], v2), answer
    # The last model cannot go.
    out = ctl(app, "unload", "other")
    assert out.returncode == 1 and out.stderr.startswith("zerohopctl: unload: "), out
    assert close_to(score(client, "other"), v2)
    # Put rank back for whatever runs next.
    assert ctl(app, "load", "rank", f"{app.dir}/v1").returncode == 0
    assert close_to(score(client, "rank"), v1)


def test_load_waits_for_its_files_without_blocking_the_loop(net, app, versions, client):
    """config.json is a FIFO: the load stays in progress until the test writes it. Meanwhile the
    management plane answers, a second load is refused busy, and requests are served."""
    v1, v2 = versions
    d = f"{app.dir}/slow"
    os.makedirs(d)
    shutil.copy(f"{app.dir}/v2/model.safetensors", d)
    with open(f"{app.dir}/v2/config.json", "rb") as f:
        config = f.read()
    os.mkfifo(f"{d}/config.json")
    slow = subprocess.Popen([f"{ROOT}/{app.build}/zerohopctl", "--socket", app.sock, "load", "slow", d],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        assert slow.poll() is None, slow.communicate()
        started = time.monotonic()
        assert ctl(app, "status").returncode == 0
        assert time.monotonic() - started < 1.0
        busy = ctl(app, "load", "other", f"{app.dir}/v1")
        assert busy.returncode == 1 and "(status 5, busy)" in busy.stderr, busy
        assert close_to(score(client), v1)
        # The reader waits in open(): this open finds it, and the load goes on.
        fd = os.open(f"{d}/config.json", os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, config)
        os.close(fd)
        out, err = slow.communicate(timeout=60)
        assert slow.returncode == 0, err
    finally:
        if slow.poll() is None:
            try:
                os.close(os.open(f"{d}/config.json", os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            slow.kill()
            slow.wait()
    assert close_to(score(client, "slow"), v2)
    assert ctl(app, "unload", "slow").returncode == 0

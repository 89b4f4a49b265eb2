# SPDX-License-Identifier: MIT
"""Real models through the appliance: stories260K byte for byte against llama2.c's reference output,
a random ranker against an independent numpy reference, sampling, KV isolation and bad inputs."""
import json
import os
import struct
import subprocess
import tempfile

import msgpack
import numpy as np
import pytest

from conftest import BUILDS
from zhnet import ROOT, Appliance, Client

FIXTURES = os.environ.get("ZH_FIXTURES", os.path.join(ROOT, "tests", "data"))
EXPECTED = os.path.join(FIXTURES, "stories260K_t0_n200_expected.txt")
TOKENIZER = os.path.join(FIXTURES, "tok512.bin")
FIRST_20 = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337]


def mkmodel(build, kind, out, *args):
    subprocess.run([f"{ROOT}/{build}/zerohop-mkmodel", kind, out, *args], check=True, capture_output=True,
                   timeout=60)


def read_safetensors(path):
    """An independent reader: numpy arrays by name (F32 only, which mkmodel writes by default)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32"
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + e], dtype="<f4").reshape(t["shape"])
    return out


@pytest.fixture(scope="module")
def models_dir():
    with tempfile.TemporaryDirectory(prefix="zh-models-") as d:
        yield d


@pytest.fixture(scope="module", params=BUILDS)
def app(request, net, models_dir):
    build = request.param
    mkmodel(build, "ranker", f"{models_dir}/rank", "--seed", "7", "--vocab", "1000", "--embedding-dim", "16",
            "--dense", "4", "--hidden", "32,16", "--outputs", "2", "--bag", "mean", "--activation", "sigmoid")
    mkmodel(build, "llama", f"{models_dir}/tiny", "--seed", "3", "--dim", "32", "--hidden", "64", "--layers", "2",
            "--heads", "4", "--kv-heads", "2", "--vocab", "64", "--seq-len", "16")
    a = Appliance(build, net, extra_args=[
        "--workers", "2", "--worker-cores", "0,1",
        "--model", f"stories260K={ROOT}/models/stories260K", "--model", f"rank={models_dir}/rank",
        "--model", f"tiny={models_dir}/tiny", "--model", "echo"])
    yield a
    rc, _ = a.stop()
    assert rc == 0, "".join(a.log[-30:])


@pytest.fixture
def client(net, app):
    c = Client(net, timeout_s=10.0)
    yield c
    c.close()


def test_stories260k_greedy_200_tokens_byte_exact(app, client):
    answer = client.ask({"id": 1, "model": "stories260K", "op": "generate", "tokens": [1], "max_new": 200,
                         "temperature": 0})
    assert answer["status"] == 0, answer
    assert answer["tokens"][:20] == FIRST_20
    assert len(answer["tokens"]) == 200 and answer["stop"] == "max_new"


def test_client_tells_the_story_byte_exact(net, app):
    out = subprocess.run(["ip", "netns", "exec", net.client_ns, f"{ROOT}/{app.build}/zerohop-client", "--addr", "198.18.0.1",
                          "--model", "stories260K", "--op", "generate", "--max-new", "200", "--tokenizer", TOKENIZER,
                          "--prompt", "", "--timeout-ms", "10000"], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with open(EXPECTED, "rb") as f:
        expected = f.read()
    assert out.stdout == expected


def test_default_model_is_the_first(client):
    answer = client.ask({"id": 2, "tokens": [1], "max_new": 3})
    assert answer["status"] == 0 and answer["tokens"] == FIRST_20[:3]


def test_logits_top_k(client):
    answer = client.ask({"id": 3, "model": "stories260K", "op": "logits", "tokens": [1], "top_k": 5})
    assert answer["status"] == 0
    assert answer["ids"][0] == FIRST_20[0] and len(answer["ids"]) == 5
    assert answer["logits"] == sorted(answer["logits"], reverse=True)


def test_seeded_sampling_repeats(client):
    req = {"id": 4, "model": "stories260K", "tokens": [1], "max_new": 40, "temperature": 0.9, "seed": 1234}
    first = client.ask(req)
    assert first["status"] == 0
    for _ in range(3):
        assert client.ask(req)["tokens"] == first["tokens"]
    other = client.ask(dict(req, seed=99))
    assert other["tokens"] != first["tokens"]


def test_concurrent_requests_never_share_kv(net, app):
    # Two clients interleave generations on the two workers; each answer equals the same request alone.
    a, b = Client(net, timeout_s=10.0), Client(net, timeout_s=10.0)
    try:
        ra = {"id": 5, "model": "stories260K", "tokens": [1, 403, 407], "max_new": 60}
        rb = {"id": 6, "model": "stories260K", "tokens": [1, 338, 401, 396], "max_new": 60}
        alone_a, alone_b = a.ask(ra)["tokens"], b.ask(rb)["tokens"]
        for _ in range(10):
            a.send_raw(msgpack.packb(ra))
            b.send_raw(msgpack.packb(rb))
            assert a.recv_answer()["tokens"] == alone_a
            assert b.recv_answer()["tokens"] == alone_b
    finally:
        a.close()
        b.close()


def ranker_reference(weights, tokens, dense, bag="mean", act="sigmoid", layers=3):
    emb = weights["embedding.weight"].astype(np.float64)
    x = emb[tokens].mean(axis=0) if (bag == "mean" and tokens) else (emb[tokens].sum(axis=0) if tokens else
                                                                      np.zeros(emb.shape[1]))
    x = np.concatenate([x, np.asarray(dense, dtype=np.float64)])
    for i in range(layers):
        x = weights[f"mlp.{i}.weight"].astype(np.float64) @ x + weights[f"mlp.{i}.bias"]
        if i + 1 < layers:
            x = np.maximum(x, 0.0)
    return 1.0 / (1.0 + np.exp(-x)) if act == "sigmoid" else x


def test_ranker_matches_numpy(client, models_dir):
    weights = read_safetensors(f"{models_dir}/rank/model.safetensors")
    rng = np.random.default_rng(11)
    for i in range(200):
        tokens = [int(t) for t in rng.integers(0, 1000, size=int(rng.integers(0, 20)))]
        dense = [float(v) for v in rng.normal(size=4).astype(np.float32)]
        answer = client.ask({"id": 100 + i, "model": "rank", "op": "score", "tokens": tokens, "dense": dense})
        assert answer["status"] == 0, answer
        want = ranker_reference(weights, tokens, dense)
        np.testing.assert_allclose(answer["scores"], want, rtol=1e-5, atol=1e-6)


BAD = [
    ("token_beyond_vocab", {"model": "stories260K", "tokens": [1, 512]}, 1),
    ("empty_prompt", {"model": "stories260K", "tokens": []}, 1),
    ("more_tokens_than_context", {"model": "tiny", "tokens": [3] * 17}, 4),
    ("generate_on_ranker", {"model": "rank", "op": "generate", "tokens": [1], "dense": [0, 0, 0, 0]}, 1),
    ("score_on_llama", {"model": "stories260K", "op": "score", "tokens": [1]}, 1),
    ("max_new_zero", {"model": "stories260K", "tokens": [1], "max_new": 0}, 1),
    ("max_new_too_big", {"model": "stories260K", "tokens": [1], "max_new": 257}, 1),
    ("top_k_zero", {"model": "stories260K", "op": "logits", "tokens": [1], "top_k": 0}, 1),
    ("top_k_too_big", {"model": "stories260K", "op": "logits", "tokens": [1], "top_k": 65}, 1),
    ("dense_wrong_length", {"model": "rank", "tokens": [1], "dense": [1.0, 2.0]}, 1),
    ("dense_missing", {"model": "rank", "tokens": [1]}, 1),
]


@pytest.mark.parametrize("name,req,status", BAD, ids=[b[0] for b in BAD])
def test_bad_model_requests(client, name, req, status):
    answer = client.ask(dict(req, id=77))
    assert answer["status"] == status and answer["id"] == 77 and answer["error"], answer
    assert client.ask({"id": 78, "model": "echo", "tokens": [4]}) == {"id": 78, "status": 0, "tokens": [4]}


def test_context_stop(client):
    answer = client.ask({"id": 79, "model": "tiny", "tokens": [3] * 14, "max_new": 100})
    assert answer["status"] == 0
    assert answer["stop"] in ("context", "eos", "bos")
    assert len(answer["tokens"]) <= 3

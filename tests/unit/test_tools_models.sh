#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# test_tools_models.sh: zerohop-convert and zerohop-mkmodel, checked by a reader written here
# independently of tools/zh_safetensors_write.c (Python's json, struct and array modules only).
#
#   converter: stories260K (the project fixture) and small synthetic llama2.c checkpoints, tied and
#              untied: every tensor's bytes against the source floats (q/k un-permuted back to llama2.c's
#              rows), the safetensors layout, config.json, determinism, the committed models/stories260K
#              reproduced byte for byte, and malformed checkpoints refused with exit 1 and nothing written.
#   mkmodel:   same seed same bytes, other seed other bytes, shapes as asked, F16/BF16 files holding the
#              F32 values rounded to nearest even, value ranges, bad options refused.
#
# Usage: test_tools_models.sh [BUILD]. Without BUILD: the build directory this copy sits in (make puts
# it in $(BUILD)/tests/), else build/. The fixture comes from $ZH_FIXTURES, else ../shared/fixtures
# beside the repository. Exit status: 0 pass, 1 fail, 77 the fixture is missing (everything else ran).
set -u

self=$(readlink -f "$0")
here=$(dirname "$self")
if [ $# -ge 1 ]; then
	build=$(cd "$1" && pwd) || exit 1
elif [ -x "$here/../zerohop-convert" ]; then
	build=$(cd "$here/.." && pwd)
else
	build=$(cd "$here/../.." && pwd)/build
fi

# The repository root holds the committed model: the working directory, or the build directory's parent.
root=
for candidate in "$PWD" "$build/.." "$here/../.."; do
	if [ -f "$candidate/tools/zerohop_convert.c" ]; then
		root=$(cd "$candidate" && pwd)
		break
	fi
done
if [ -z "$root" ]; then
	echo "test_tools_models: cannot find the repository root (run from it)" >&2
	exit 1
fi
fixtures=${ZH_FIXTURES:-$root/../shared/fixtures}

for tool in zerohop-convert zerohop-mkmodel; do
	if [ ! -x "$build/$tool" ]; then
		echo "test_tools_models: $build/$tool is not built" >&2
		exit 1
	fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/test_tools_models.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT

/usr/bin/python3 - "$build" "$root" "$fixtures" "$work" <<'PY'
import array, hashlib, json, os, random, struct, subprocess, sys, time

BUILD, ROOT, FIXTURES, WORK = sys.argv[1:5]
CONVERT = os.path.join(BUILD, "zerohop-convert")
MKMODEL = os.path.join(BUILD, "zerohop-mkmodel")
NAME = "test_tools_models"
started = time.time()
passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        if failed <= 40:
            print(f"  FAIL {what}", flush=True)
    return ok


def run(argv):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ---- the reader -------------------------------------------------------------------------------

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


def prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def read_safetensors(path, what):
    """Parse and check the layout; returns (metadata, [(name, dtype, shape, bytes)]) or None."""
    blob = read(path)
    if not check(len(blob) >= 8, f"{what}: has the 8-byte size"):
        return None
    n = struct.unpack("<Q", blob[:8])[0]
    if not check(8 + n <= len(blob), f"{what}: header inside the file"):
        return None
    raw = blob[8:8 + n]
    check(n % 8 == 0, f"{what}: header size {n} is a multiple of 8")
    check(raw.rstrip(b" ").endswith(b"}") and raw.startswith(b"{"), f"{what}: header is an object padded with spaces")
    try:
        pairs = json.loads(raw.decode("utf-8"), object_pairs_hook=lambda kv: kv)
    except ValueError as e:
        check(False, f"{what}: header JSON parses ({e})")
        return None
    keys = [k for k, _ in pairs]
    check(len(keys) == len(set(keys)), f"{what}: no duplicate names")
    data = blob[8 + n:]
    meta = None
    tensors = []
    end_prev = 0
    for key, value in pairs:
        if key == "__metadata__":
            meta = dict(value)
            check(all(isinstance(v, str) for v in meta.values()), f"{what}: metadata values are strings")
            continue
        entry = dict(value)
        if not check(sorted(entry) == ["data_offsets", "dtype", "shape"], f"{what}: {key}: exactly three fields"):
            return None
        dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
        ok = check(dtype in DTYPE_BYTES, f"{what}: {key}: dtype {dtype}")
        ok &= check(all(isinstance(d, int) and d >= 0 for d in shape), f"{what}: {key}: shape {shape}")
        ok &= check(begin == end_prev, f"{what}: {key}: begins where the previous tensor ends ({begin} vs {end_prev})")
        if not ok:
            return None
        check(begin % DTYPE_BYTES[dtype] == 0, f"{what}: {key}: offset {begin} aligned to the dtype")
        check(end - begin == prod(shape) * DTYPE_BYTES[dtype], f"{what}: {key}: byte size matches the shape")
        tensors.append((key, dtype, shape, data[begin:end]))
        end_prev = end
    check(end_prev == len(data), f"{what}: data area is exactly the tensors ({end_prev} vs {len(data)})")
    return meta, tensors


def floats(b):
    a = array.array("f")
    a.frombytes(b)
    return a


# ---- llama2.c checkpoints ---------------------------------------------------------------------

HEADER = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")


def l2c_split(blob):
    """The header and the weights of a llama2.c checkpoint, as byte strings, in file order."""
    h = dict(zip(HEADER, struct.unpack("<7i", blob[:28])))
    D, H, L = h["dim"], h["hidden_dim"], h["n_layers"]
    V, S = abs(h["vocab_size"]), h["seq_len"]
    hs = D // h["n_heads"]
    KV = hs * h["n_kv_heads"]
    sizes = [("token_embedding", V * D), ("rms_att", L * D), ("wq", L * D * D), ("wk", L * KV * D),
             ("wv", L * KV * D), ("wo", L * D * D), ("rms_ffn", L * D), ("w1", L * H * D), ("w2", L * D * H),
             ("w3", L * H * D), ("rms_final", D), ("freq_cis_real", S * hs // 2), ("freq_cis_imag", S * hs // 2)]
    if h["vocab_size"] < 0:
        sizes.append(("wcls", V * D))
    w = {}
    off = 28
    for name, count in sizes:
        w[name] = blob[off:off + 4 * count]
        off += 4 * count
    assert off == len(blob), "a synthetic checkpoint has the wrong size"
    return h, w


def unpermute(hf, heads, hs, cols):
    """HF rotate-half rows back to llama2.c's interleaved ones: (h, 2i) = HF (h, i), (h, 2i+1) = HF (h, i + hs/2)."""
    row = 4 * cols
    out = []
    for h in range(heads):
        base = h * hs
        for i in range(hs // 2):
            out.append(hf[(base + i) * row:(base + i + 1) * row])
            out.append(hf[(base + i + hs // 2) * row:(base + i + hs // 2 + 1) * row])
    return b"".join(out)


def check_converted(bin_path, out_dir, name, what):
    blob = read(bin_path)
    h, w = l2c_split(blob)
    D, H, L = h["dim"], h["hidden_dim"], h["n_layers"]
    V, tied = abs(h["vocab_size"]), h["vocab_size"] > 0
    heads, kv_heads = h["n_heads"], h["n_kv_heads"]
    hs = D // heads
    KV = hs * kv_heads

    cfg = json.loads(read(os.path.join(out_dir, "config.json")))
    want_cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": D,
                "intermediate_size": H, "num_hidden_layers": L, "num_attention_heads": heads,
                "num_key_value_heads": kv_heads, "vocab_size": V, "max_position_embeddings": h["seq_len"],
                "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": tied,
                "bos_token_id": 1, "eos_token_id": 2}
    check(cfg == want_cfg, f"{what}: config.json {cfg}")
    check(all(type(cfg[k]) is type(v) for k, v in want_cfg.items() if k in cfg), f"{what}: config.json value types")

    parsed = read_safetensors(os.path.join(out_dir, "model.safetensors"), what)
    if parsed is None:
        return
    meta, tensors = parsed
    check(meta == {"format": "pt", "source": os.path.basename(bin_path), "converter": "zerohop-convert",
                   "name": name}, f"{what}: metadata {meta}")

    def layer(key, l, n):
        return w[key][l * n * 4:(l + 1) * n * 4]

    want = [("model.embed_tokens.weight", [V, D], w["token_embedding"])]
    for l in range(L):
        p = f"model.layers.{l}."
        want += [(p + "input_layernorm.weight", [D], layer("rms_att", l, D)),
                 (p + "self_attn.q_proj.weight", [D, D], ("q", layer("wq", l, D * D), heads)),
                 (p + "self_attn.k_proj.weight", [KV, D], ("k", layer("wk", l, KV * D), kv_heads)),
                 (p + "self_attn.v_proj.weight", [KV, D], layer("wv", l, KV * D)),
                 (p + "self_attn.o_proj.weight", [D, D], layer("wo", l, D * D)),
                 (p + "post_attention_layernorm.weight", [D], layer("rms_ffn", l, D)),
                 (p + "mlp.gate_proj.weight", [H, D], layer("w1", l, H * D)),
                 (p + "mlp.up_proj.weight", [H, D], layer("w3", l, H * D)),
                 (p + "mlp.down_proj.weight", [D, H], layer("w2", l, D * H))]
    want.append(("model.norm.weight", [D], w["rms_final"]))
    if not tied:
        want.append(("lm_head.weight", [V, D], w["wcls"]))

    check([t[0] for t in tensors] == [x[0] for x in want], f"{what}: tensor names and order")
    moved = 0
    for (name_, dtype, shape, data), (wname, wshape, src) in zip(tensors, want):
        check(dtype == "F32" and shape == wshape, f"{what}: {name_}: F32 {shape} (want {wshape})")
        if isinstance(src, tuple):
            _, rows, nheads = src
            check(unpermute(data, nheads, hs, D) == rows, f"{what}: {name_}: un-permuted rows equal llama2.c's")
            moved += data != rows
        else:
            check(data == src, f"{what}: {name_}: bytes equal the checkpoint's")
    # With a head size above 2 the permutation moves rows; a converter that forgot it would pass above.
    if hs > 2:
        check(moved == 2 * L, f"{what}: every q/k tensor was reordered ({moved} of {2 * L})")
    check(not [f for f in os.listdir(out_dir) if f.startswith(".tmp-")], f"{what}: no temporary files left")


def make_checkpoint(path, dim, hidden, layers, heads, kv_heads, vocab, seq_len, untied, seed, extra=0, cut=0):
    """A llama2.c checkpoint of random floats; vocab_size negative when untied."""
    hs = dim // heads
    kv = hs * kv_heads
    n = (vocab * dim + layers * (2 * dim + 2 * dim * dim + 2 * kv * dim + 3 * hidden * dim) + dim
         + seq_len * hs + (vocab * dim if untied else 0))
    rng = random.Random(seed)
    vals = array.array("f", (rng.uniform(-1, 1) for _ in range(n)))
    blob = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, -vocab if untied else vocab, seq_len)
    blob += vals.tobytes() + b"\0" * extra
    if cut:
        blob = blob[:-cut]
    with open(path, "wb") as f:
        f.write(blob)
    return blob


def refused(argv, tool, what, out_dir=None):
    rc, _, err = run(argv)
    check(rc == 1, f"{what}: exit 1 (got {rc}; {err.strip()[:200]})")
    check(err.startswith(tool + ": "), f"{what}: message names the tool ({err.strip()[:200]})")
    check("Sanitizer" not in err and "runtime error" not in err, f"{what}: no sanitizer report")
    if out_dir is not None:
        left = os.listdir(out_dir) if os.path.isdir(out_dir) else []
        check(not [f for f in left if f in ("config.json", "model.safetensors") or f.startswith(".tmp-")],
              f"{what}: nothing written ({left})")
    return err


# ---- converter: synthetic checkpoints ---------------------------------------------------------

def test_convert_synthetic():
    shapes = [  # dim, hidden, layers, heads, kv_heads, vocab, seq_len, untied
        (16, 40, 2, 4, 2, 37, 8, False),
        (16, 24, 1, 2, 2, 11, 3, True),
        (24, 30, 3, 3, 1, 19, 5, True),
        (8, 8, 1, 4, 4, 5, 2, False),  # head size 2: the permutation is the identity
    ]
    for i, s in enumerate(shapes):
        src = os.path.join(WORK, f"synth{i}.bin")
        make_checkpoint(src, *s, seed=100 + i)
        out = os.path.join(WORK, f"synth{i}")
        rc, _, err = run([CONVERT, src, out, "--name", f"synth-{i}"])
        if check(rc == 0, f"synthetic {s}: converted ({err.strip()})"):
            check_converted(src, out, f"synth-{i}", f"synthetic {s}")


def test_convert_malformed():
    good = (16, 40, 2, 4, 2, 37, 8, False)
    src = os.path.join(WORK, "bad.bin")
    out = os.path.join(WORK, "bad-out")

    def bad(what, blob=None, **kw):
        if blob is None:
            args = dict(zip(("dim", "hidden", "layers", "heads", "kv_heads", "vocab", "seq_len", "untied"), good))
            args.update(kw)
            make_checkpoint(src, **args, seed=7)
        else:
            with open(src, "wb") as f:
                f.write(blob)
        return refused([CONVERT, src, out], "zerohop-convert", "malformed: " + what, out)

    blob = make_checkpoint(src, *good, seed=7)
    bad("empty file", b"")
    bad("shorter than the header", blob[:20])
    bad("header only", blob[:28])
    bad("truncated by one float", cut=4)
    bad("truncated by one byte", cut=1)
    bad("one trailing byte", extra=1)
    err = bad("one trailing float", extra=4)
    check("trailing" in err, "malformed: trailing bytes are called so")
    err = bad("tied header, untied size", blob[:20] + struct.pack("<i", 37) + blob[24:] + b"\0" * (37 * 16 * 4))
    check("separate classifier" in err, f"malformed: a size that fits the other tying says so ({err.strip()})")
    bad("untied header, tied size", blob[:20] + struct.pack("<i", -37) + blob[24:])
    for i, field in enumerate(HEADER):
        for value in (0, -1) if field != "vocab_size" else (0, -2**31):
            head = list(struct.unpack("<7i", blob[:28]))
            head[i] = value
            bad(f"{field} = {value}", struct.pack("<7i", *head) + blob[28:])
    bad("heads do not divide dim", heads=3, kv_heads=1)
    bad("kv heads do not divide heads", heads=4, kv_heads=3)
    bad("odd head size", dim=12, heads=4, kv_heads=2)
    bad("huge sizes", struct.pack("<7i", 2**31 - 1, 2**31 - 1, 2**31 - 1, 1, 1, 2**31 - 1, 2**31 - 1) + blob[28:])
    refused([CONVERT, os.path.join(WORK, "missing.bin"), out], "zerohop-convert", "missing input", out)
    refused([CONVERT, src], "zerohop-convert", "no OUT_DIR")
    make_checkpoint(src, *good, seed=7)
    refused([CONVERT, src, out, "--name", "bad name"], "zerohop-convert", "bad --name", out)
    refused([CONVERT, src, out, "--name", "x" * 32], "zerohop-convert", "--name too long", out)
    refused([CONVERT, src, out, "--bogus"], "zerohop-convert", "unknown option", out)
    with open(os.path.join(WORK, "file"), "w") as f:
        f.write("x")
    refused([CONVERT, src, os.path.join(WORK, "file", "sub")], "zerohop-convert", "OUT_DIR under a file")


# ---- converter: stories260K -------------------------------------------------------------------

STORIES_SHA256 = "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696"


def test_convert_stories():
    """False when the fixture is missing."""
    src = os.path.join(FIXTURES, "stories260K.bin")
    if not os.path.isfile(src):
        print(f"  skip: {src} is missing (set ZH_FIXTURES); stories260K checks not run")
        return False
    check(hashlib.sha256(read(src)).hexdigest() == STORIES_SHA256, "stories260K.bin is the known file")
    outs = [os.path.join(WORK, f"a{i}", "stories260K") for i in range(2)]
    for out in outs:
        rc, _, err = run([CONVERT, src, out])
        check(rc == 0, f"stories260K converted ({err.strip()})")
    check_converted(src, outs[0], "stories260K", "stories260K")
    cfg = json.loads(read(os.path.join(outs[0], "config.json")))
    check((cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
           cfg["num_key_value_heads"], cfg["vocab_size"], cfg["max_position_embeddings"],
           cfg["tie_word_embeddings"]) == (64, 172, 5, 8, 4, 512, 512, True), "stories260K: the known shape")
    for f in ("config.json", "model.safetensors"):
        check(read(os.path.join(outs[0], f)) == read(os.path.join(outs[1], f)), f"stories260K: {f} deterministic")
        committed = os.path.join(ROOT, "models", "stories260K", f)
        check(os.path.isfile(committed) and read(committed) == read(os.path.join(outs[0], f)),
              f"models/stories260K/{f} is what the converter writes")
    check(os.path.isfile(os.path.join(ROOT, "models", "stories260K", "SOURCE.md")), "models/stories260K/SOURCE.md")
    # A second conversion into an existing directory replaces the files.
    rc, _, _ = run([CONVERT, src, outs[0], "--name", "other"])
    meta, _ = read_safetensors(os.path.join(outs[0], "model.safetensors"), "stories260K again") or ({}, [])
    check(rc == 0 and meta.get("name") == "other", "stories260K: converting again replaces the model")
    return True


# ---- mkmodel ----------------------------------------------------------------------------------

def f16_round(x):
    return struct.unpack("<H", struct.pack("<e", x))[0]


def bf16_round(x):
    """Nearest bfloat16 to the float32 x, ties to even, found by comparing both neighbours."""
    bits = struct.unpack("<I", struct.pack("<f", x))[0]
    lo = bits >> 16
    hi = lo + 1
    vlo = struct.unpack("<f", struct.pack("<I", lo << 16))[0]
    vhi = struct.unpack("<f", struct.pack("<I", (hi << 16) & 0xffffffff))[0]
    dlo, dhi = abs(x - vlo), abs(vhi - x)
    if dlo < dhi or (dlo == dhi and lo % 2 == 0):
        return lo
    return hi


def mk(arch, out, *args):
    rc, _, err = run([MKMODEL, arch, out] + list(args))
    check(rc == 0, f"mkmodel {arch} {' '.join(args)}: exit 0 ({err.strip()})")
    return rc == 0


def files_of(out):
    return read(os.path.join(out, "config.json")), read(os.path.join(out, "model.safetensors"))


def test_mkmodel_llama():
    p = lambda n: os.path.join(WORK, n)
    opts = ["--name", "m", "--dim", "32", "--hidden", "48", "--layers", "3", "--heads", "4", "--kv-heads", "2",
            "--vocab", "100", "--seq-len", "64", "--untied"]
    if not (mk("llama", p("l1"), "--seed", "1", *opts) and mk("llama", p("l1b"), "--seed", "1", *opts)
            and mk("llama", p("l2"), "--seed", "2", *opts)):
        return
    check(files_of(p("l1")) == files_of(p("l1b")), "mkmodel llama: same seed, same bytes")
    check(files_of(p("l1"))[1] != files_of(p("l2"))[1], "mkmodel llama: another seed, other weights")
    cfg = json.loads(files_of(p("l1"))[0])
    check(cfg == {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
                  "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
                  "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 64,
                  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": False,
                  "bos_token_id": 1, "eos_token_id": 2}, f"mkmodel llama: config {cfg}")
    meta, tensors = read_safetensors(os.path.join(p("l1"), "model.safetensors"), "mkmodel llama") or (None, [])
    check(meta == {"format": "pt", "generator": "zerohop-mkmodel", "seed": "1", "name": "m"},
          f"mkmodel llama: metadata {meta}")
    want = {"model.embed_tokens.weight": [100, 32], "model.norm.weight": [32], "lm_head.weight": [100, 32]}
    for l in range(3):
        q = f"model.layers.{l}."
        want.update({q + "input_layernorm.weight": [32], q + "self_attn.q_proj.weight": [32, 32],
                     q + "self_attn.k_proj.weight": [16, 32], q + "self_attn.v_proj.weight": [16, 32],
                     q + "self_attn.o_proj.weight": [32, 32], q + "post_attention_layernorm.weight": [32],
                     q + "mlp.gate_proj.weight": [48, 32], q + "mlp.up_proj.weight": [48, 32],
                     q + "mlp.down_proj.weight": [32, 48]})
    check({t[0]: t[2] for t in tensors} == want and len(tensors) == len(want), "mkmodel llama: tensors and shapes")
    for name, dtype, shape, data in tensors:
        v = floats(data)
        if name.endswith("norm.weight"):
            lo, hi = 0.9, 1.1
        else:
            r = 1 / (48 if name.endswith("down_proj.weight") else 32) ** 0.5
            lo, hi = -r, r
        check(dtype == "F32" and min(v) >= lo - 1e-6 and max(v) <= hi + 1e-6 and max(v) > min(v),
              f"mkmodel llama: {name} values in [{lo:.3f}, {hi:.3f}]")

    # Defaults: stories260K's shape with every head its own kv head, tied.
    if mk("llama", p("ld"), "--seed", "5"):
        cfg = json.loads(files_of(p("ld"))[0])
        check((cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"],
               cfg["num_key_value_heads"], cfg["vocab_size"], cfg["max_position_embeddings"],
               cfg["tie_word_embeddings"]) == (64, 172, 5, 8, 8, 512, 512, True), f"mkmodel llama defaults {cfg}")
        _, tensors = read_safetensors(os.path.join(p("ld"), "model.safetensors"), "mkmodel llama defaults") or (0, [])
        check(len(tensors) == 2 + 9 * 5 and "lm_head.weight" not in [t[0] for t in tensors],
              "mkmodel llama defaults: tied, no lm_head")

    # The same seed in F16 and BF16: the F32 values rounded to nearest even.
    f32 = read_safetensors(os.path.join(p("l1"), "model.safetensors"), "f32")[1]
    for dt, rnd, fmt in (("f16", f16_round, "F16"), ("bf16", bf16_round, "BF16")):
        if not mk("llama", p("l1" + dt), "--seed", "1", "--dtype", dt, *opts):
            continue
        _, tensors = read_safetensors(os.path.join(p("l1" + dt), "model.safetensors"), "mkmodel " + dt) or (0, [])
        check([(t[0], t[2]) for t in tensors] == [(t[0], t[2]) for t in f32], f"mkmodel {dt}: same tensors")
        ok = True
        for (name, dtype, shape_, data), ref in zip(tensors, f32):
            ok &= check(dtype == fmt and len(data) == 2 * prod(shape_), f"mkmodel {dt}: {name} is {fmt}, 2 bytes each")
            got = array.array("H")
            got.frombytes(data)
            ok &= list(got) == [rnd(x) for x in floats(ref[3])]
        check(ok, f"mkmodel {dt}: every value is the F32 value rounded to nearest even")
        check(os.path.getsize(os.path.join(p("l1" + dt), "model.safetensors")) - 8
              - struct.unpack("<Q", read(os.path.join(p("l1" + dt), "model.safetensors"))[:8])[0]
              == sum(2 * prod(t[2]) for t in f32), f"mkmodel {dt}: file size")

    def refuse(what, *args):
        refused([MKMODEL, "llama", p("lbad")] + list(args), "zerohop-mkmodel", "mkmodel llama: " + what, p("lbad"))

    refuse("no seed")
    refuse("heads do not divide dim", "--seed", "1", "--dim", "30", "--heads", "4")
    refuse("kv heads do not divide heads", "--seed", "1", "--heads", "8", "--kv-heads", "3")
    refuse("odd head size", "--seed", "1", "--dim", "24", "--heads", "8")
    refuse("zero dim", "--seed", "1", "--dim", "0")
    refuse("negative seed", "--seed", "-1")
    refuse("not a number", "--seed", "1", "--vocab", "12x")
    refuse("bad dtype", "--seed", "1", "--dtype", "f64")
    refuse("ranker option", "--seed", "1", "--bag", "sum")
    refuse("unknown option", "--seed", "1", "--wide")
    refuse("extra argument", "--seed", "1", "extra")
    refused([MKMODEL, "gpt", p("lbad"), "--seed", "1"], "zerohop-mkmodel", "mkmodel: unknown architecture", p("lbad"))
    refused([MKMODEL], "zerohop-mkmodel", "mkmodel: no arguments")


def test_mkmodel_ranker():
    p = lambda n: os.path.join(WORK, n)
    args = ["--name", "r", "--vocab", "50", "--embedding-dim", "8", "--dense", "3", "--hidden", "16,8,4",
            "--outputs", "2", "--bag", "mean", "--activation", "none"]
    if not (mk("ranker", p("r1"), "--seed", "9", *args) and mk("ranker", p("r1b"), "--seed", "9", *args)
            and mk("ranker", p("r2"), "--seed", "10", *args)):
        return
    check(files_of(p("r1")) == files_of(p("r1b")), "mkmodel ranker: same seed, same bytes")
    check(files_of(p("r1"))[1] != files_of(p("r2"))[1], "mkmodel ranker: another seed, other weights")
    cfg = json.loads(files_of(p("r1"))[0])
    check(cfg == {"architectures": ["ZerohopRanker"], "model_type": "zerohop_ranker", "vocab_size": 50,
                  "embedding_dim": 8, "bag_mode": "mean", "dense_features": 3, "hidden_sizes": [16, 8, 4],
                  "output_size": 2, "output_activation": "none"}, f"mkmodel ranker: config {cfg}")
    _, tensors = read_safetensors(os.path.join(p("r1"), "model.safetensors"), "mkmodel ranker") or (0, [])
    want = [("embedding.weight", [50, 8]), ("mlp.0.weight", [16, 11]), ("mlp.0.bias", [16]),
            ("mlp.1.weight", [8, 16]), ("mlp.1.bias", [8]), ("mlp.2.weight", [4, 8]), ("mlp.2.bias", [4]),
            ("mlp.3.weight", [2, 4]), ("mlp.3.bias", [2])]
    check([(t[0], t[2]) for t in tensors] == want, "mkmodel ranker: tensors and shapes")
    fan_in = {"embedding": 8, "mlp.0": 11, "mlp.1": 16, "mlp.2": 8, "mlp.3": 4}
    for name, _, _, data in tensors:
        r = 1 / fan_in[name.rsplit(".", 1)[0]] ** 0.5
        v = floats(data)
        check(min(v) >= -r and max(v) <= r, f"mkmodel ranker: {name} within ±{r:.3f}")

    if mk("ranker", p("r0"), "--seed", "1", "--hidden", "", "--dtype", "bf16"):
        cfg = json.loads(files_of(p("r0"))[0])
        check(cfg["hidden_sizes"] == [] and cfg["bag_mode"] == "sum" and cfg["output_activation"] == "sigmoid"
              and cfg["vocab_size"] == 1000 and cfg["dense_features"] == 4, f"mkmodel ranker defaults {cfg}")
        _, tensors = read_safetensors(os.path.join(p("r0"), "model.safetensors"), "mkmodel ranker bf16") or (0, [])
        check([(t[0], t[1], t[2]) for t in tensors] == [("embedding.weight", "BF16", [1000, 16]),
              ("mlp.0.weight", "BF16", [1, 20]), ("mlp.0.bias", "BF16", [1])], "mkmodel ranker: no hidden layers")

    def refuse(what, *a):
        refused([MKMODEL, "ranker", p("rbad"), "--seed", "1"] + list(a), "zerohop-mkmodel", "mkmodel ranker: " + what,
                p("rbad"))

    refuse("empty width", "--hidden", "8,,4")
    refuse("trailing comma", "--hidden", "8,")
    refuse("zero width", "--hidden", "0")
    refuse("bad bag", "--bag", "max")
    refuse("bad activation", "--activation", "relu")
    refuse("zero outputs", "--outputs", "0")
    refuse("zero embedding", "--embedding-dim", "0")
    refuse("llama option", "--heads", "2")


have_fixture = True
for test in (test_convert_synthetic, test_convert_malformed, test_convert_stories, test_mkmodel_llama,
             test_mkmodel_ranker):
    try:
        if test() is False:
            have_fixture = False
    except Exception as e:  # A crash in one part fails it and lets the others run.
        check(False, f"{test.__name__} raised {type(e).__name__}: {e}")

elapsed = time.time() - started
if failed:
    print(f"{NAME}: {failed} of {passed + failed} checks failed ({elapsed:.1f} s)")
    sys.exit(1)
if not have_fixture:
    print(f"{NAME}: {passed} checks passed, stories260K skipped ({elapsed:.1f} s)")
    sys.exit(77)
print(f"{NAME}: {passed} checks passed ({elapsed:.1f} s)")
PY

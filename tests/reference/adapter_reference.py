#!/usr/bin/python3
"""adapter_reference.py — independent float64 PyTorch references of the Bone, Bat and LoRA adapters on a
small RWKV-7, and the generator of the committed vectors tests/reference/vectors/adapter-*.

Contract:
  * The backbone is the committed float64 model of rwkv7_reference.py (imported, not rewritten).  Every
    adapter is applied in its DENSE form, W' = W + dW(adapter, W), substituted for the base weight of each
    adapted linear before calling rwkv7_reference.forward, so the reference is independent of the C code's
    efficient forms (Bone's segmented sum, Bat's per-block GEMMs):
      - Bone (DiSHA/MiSS default; RWKV-PEFT BoneLinear): D (r, out); dW[o, j r + k] = D[k, o] for every column
        block j (dW = [D^T | D^T | ...] truncated to `in` columns).
      - Bat, RWKV-PEFT BatLinear's column-block form: B (in/r, r, r); W viewed as blocks W_ab (a: row block,
        b: column block) -> dW_ab = W_ab B_b + B_b (einops '(a r1) (b r2) -> a b r1 r2', @ B + B).
      - LoRA: A (r, in), B (out, r); dW = (alpha / r) B A.
    Targets: all six linears (att.receptance, att.key, att.value, att.output, ffn.key, ffn.value).
  * Model: L2, C64, head 16 (4 heads), V97, LoRA ranks 32, F = 4C; batch B2 T32 with ~10% masked targets;
    loss = masked cross-entropy with L2Wrap (rwkv7_reference.training_loss).  Adapter r = 8 (alpha 16 for
    LoRA), with NONZERO random adapter weights so that every adapter path matters.
  * Gradients (autograd): every adapter tensor, the 12 base weights of the adapted linears (trained too:
    for Bat they get the extra term through dW(W)), and the embedded input x0 (B, T, C) (obtained by feeding
    x0 as the embedding table of the tokens 0..B*T-1).
  * Before writing, the script validates itself: Bone's dense form equals the segmented-sum form
    x W^T + s D (also with in % r != 0), Bat's einsum form equals an explicit loop over r x r blocks, and
    the dense adapted linear passes torch.autograd.gradcheck.
  * `/usr/bin/python3 tests/reference/adapter_reference.py` validates and (re)writes the files;
    `--check` recomputes the outputs from the committed inputs and compares (exit status 0 = agree).
    Output is deterministic (fixed seeds, float64 on fp32-rounded inputs).
  * Files (safetensors written by hand: u64 LE header length, JSON header, data; F32 and I32):
      adapter-model.safetensors            the RWKV-7 base model under its official names
      adapter-<kind>.safetensors           the adapter file exactly as modrwkv's adapter_store writes it:
                                           tensors blocks.{l}.{target}.bone|bat|lora_A|lora_B and
                                           __metadata__ {format: modrwkv-adapter, kind, r, alpha, targets,
                                           n_layer, n_embd, dim_ffn}
      adapter-<kind>.expected.safetensors  tokens, targets (I32 (B, T)), logits (B, T, V), loss (1),
                                           grad.x0 (B, T, C), grad.<adapter tensor>, grad.<base weight>
"""
import argparse
import collections
import json
import math
import os
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rwkv7_reference as R  # noqa: E402  (sets the float64 default dtype)

torch.set_default_dtype(torch.float64)

VEC_DIR = os.path.join(HERE, "vectors")
MODEL_FILE = "adapter-model.safetensors"
N_LAYER, C, N_HEAD, V, RANK = 2, 64, 4, 97, 32
B, T = 2, 32
MODEL_SEED = 20250712   # chosen so that every logits row has a top-2 gap > 1e-3 (unambiguous L2Wrap argmax)
TARGETS = ["att.receptance", "att.key", "att.value", "att.output", "ffn.key", "ffn.value"]
CASES = collections.OrderedDict([
    ("bone", dict(r=8, alpha=8.0, seed=20250712)),
    ("bat", dict(r=8, alpha=8.0, seed=20250713)),
    ("lora", dict(r=8, alpha=16.0, seed=20250714)),
])


def dims(target):
    """(in, out) of an adapted linear."""
    F = 4 * C
    return (F if target == "ffn.value" else C), (F if target == "ffn.key" else C)


# ----------------------------------------------------------------------------------------------------
# Adapters in dense form
# ----------------------------------------------------------------------------------------------------

def bone_delta(D, n_in):
    """D (r, out) -> dW (out, in) with dW[o, j r + k] = D[k, o]."""
    r = D.shape[0]
    reps = (n_in + r - 1) // r
    return torch.cat([D.T] * reps, dim=1)[:, :n_in]


def bat_delta(Bt, W):
    """Column-block Bat: Bt (in/r, r, r), W (out, in) -> dW with dW_ab = W_ab Bt_b + Bt_b."""
    out, n_in = W.shape
    r = Bt.shape[1]
    blocks = W.reshape(out // r, r, n_in // r, r).permute(0, 2, 1, 3)     # (a, b, r1, r2)
    d = blocks @ Bt + Bt                                                   # Bt broadcast over a
    return d.permute(0, 2, 1, 3).reshape(out, n_in)


def lora_delta(A, Bm, alpha):
    return (alpha / A.shape[0]) * (Bm @ A)


def adapter_names(kind, layer, target):
    pre = "blocks.%d.%s." % (layer, target)
    return [pre + "lora_A", pre + "lora_B"] if kind == "lora" else [pre + kind]


def adapted_params(kind, cfg, base, adapter):
    """The model dict with W + dW substituted for every adapted base weight."""
    p = dict(base)
    for layer in range(N_LAYER):
        for target in TARGETS:
            wname = "blocks.%d.%s.weight" % (layer, target)
            W = base[wname]
            names = adapter_names(kind, layer, target)
            if kind == "bone":
                dW = bone_delta(adapter[names[0]], W.shape[1])
            elif kind == "bat":
                dW = bat_delta(adapter[names[0]], W)
            else:
                dW = lora_delta(adapter[names[0]], adapter[names[1]], cfg["alpha"])
            p[wname] = W + dW
    return p


# ----------------------------------------------------------------------------------------------------
# Random inputs
# ----------------------------------------------------------------------------------------------------

def random_adapter(kind, cfg, gen):
    """Nonzero fp32 adapter tensors (dW comparable to half the base weights' scale)."""
    r = cfg["r"]
    d = collections.OrderedDict()
    for layer in range(N_LAYER):
        for target in TARGETS:
            n_in, n_out = dims(target)
            names = adapter_names(kind, layer, target)
            if kind == "bone":
                d[names[0]] = torch.randn(r, n_out, generator=gen) * (0.5 / math.sqrt(n_in))
            elif kind == "bat":
                d[names[0]] = torch.randn(n_in // r, r, r, generator=gen) * (0.5 / math.sqrt(n_in))
            else:
                bound = 1.0 / math.sqrt(n_in)                              # kaiming_uniform(a=sqrt 5)
                d[names[0]] = (torch.rand(r, n_in, generator=gen) * 2 - 1) * bound
                d[names[1]] = torch.randn(n_out, r, generator=gen) * 0.15
    return collections.OrderedDict((n, t.float().contiguous()) for n, t in d.items())


def random_model():
    gen = torch.Generator().manual_seed(MODEL_SEED)
    model = R.random_model(gen, n_layer=N_LAYER, C=C, n_head=N_HEAD, V=V, rank=RANK)
    tokens, targets = R.random_batch(gen, B=B, T=T, V=V)
    return model, tokens, targets


# ----------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------

def outputs(kind, cfg, model, adapter, tokens, targets):
    """Logits, loss and gradients (float64) for one adapter kind; returns an OrderedDict of fp32 tensors."""
    base = R.as_f64_leaves(model)
    ad = R.as_f64_leaves(adapter)
    x0 = base["emb.weight"].detach()[tokens].reshape(B * T, C).clone().requires_grad_(True)
    p = adapted_params(kind, cfg, base, ad)
    p["emb.weight"] = x0                                                  # row n = embedding of position n
    logits = R.forward(p, torch.arange(B * T).reshape(B, T))
    top2 = logits.topk(2, dim=-1).values
    gap = (top2[..., 0] - top2[..., 1]).min().item()
    if gap < 1e-3:
        raise SystemExit("%s: argmax of some logits row is ambiguous in fp32 (gap %.2e); change the seed" % (kind, gap))
    loss = R.training_loss(logits, targets)
    loss.backward()
    out = collections.OrderedDict()
    out["logits"] = logits.detach().float().contiguous()
    out["loss"] = loss.detach().reshape(1).float()
    out["grad.x0"] = x0.grad.reshape(B, T, C).float().contiguous()
    for n, t in ad.items():
        out["grad." + n] = t.grad.float().contiguous()
    for layer in range(N_LAYER):
        for target in TARGETS:
            n = "blocks.%d.%s.weight" % (layer, target)
            out["grad." + n] = base[n].grad.float().contiguous()
    return out


def adapter_metadata(kind, cfg):
    return collections.OrderedDict([
        ("alpha", "%g" % cfg["alpha"]), ("dim_ffn", str(4 * C)), ("format", "modrwkv-adapter"), ("kind", kind),
        ("n_embd", str(C)), ("n_layer", str(N_LAYER)), ("r", str(cfg["r"])), ("targets", "all")])


def build_files():
    """{file name: (OrderedDict of tensors, metadata or None)} for every committed file."""
    model, tokens, targets = random_model()
    files = collections.OrderedDict()
    files[MODEL_FILE] = (model, None)
    for kind, cfg in CASES.items():
        adapter = random_adapter(kind, cfg, torch.Generator().manual_seed(cfg["seed"]))
        files["adapter-%s.safetensors" % kind] = (adapter, adapter_metadata(kind, cfg))
        expected = collections.OrderedDict([("tokens", tokens.int()), ("targets", targets.int())])
        expected.update(outputs(kind, cfg, model, adapter, tokens, targets))
        files["adapter-%s.expected.safetensors" % kind] = (expected, None)
    return files


# ----------------------------------------------------------------------------------------------------
# Self-validation
# ----------------------------------------------------------------------------------------------------

def segmented_sum(x, r):
    pad = (r - x.shape[-1] % r) % r
    x = torch.nn.functional.pad(x, (0, pad))
    return x.reshape(*x.shape[:-1], x.shape[-1] // r, r).sum(-2)


def validate():
    gen = torch.Generator().manual_seed(1)
    ok = True
    for n_in, n_out, r in ((64, 48, 8), (20, 12, 8)):                      # second: in % r != 0 (padding)
        x = torch.randn(5, n_in, generator=gen)
        W = torch.randn(n_out, n_in, generator=gen)
        D = torch.randn(r, n_out, generator=gen)
        err = (x @ (W + bone_delta(D, n_in)).T - (x @ W.T + segmented_sum(x, r) @ D)).abs().max().item()
        print("bone dense form vs segmented-sum form (in %d, r %d): max err %.2e" % (n_in, r, err))
        ok &= err < 1e-12
    W = torch.randn(24, 16, generator=gen)
    Bt = torch.randn(4, 4, 4, generator=gen)
    loop = torch.zeros_like(W)
    for a in range(6):
        for b in range(4):
            blk = W[4 * a:4 * a + 4, 4 * b:4 * b + 4]
            loop[4 * a:4 * a + 4, 4 * b:4 * b + 4] = blk @ Bt[b] + Bt[b]
    err = (bat_delta(Bt, W) - loop).abs().max().item()
    print("bat einsum form vs explicit block loop: max err %.2e" % err)
    ok &= err < 1e-12
    x = torch.randn(3, 16, generator=gen, requires_grad=True)
    Wl = torch.randn(24, 16, generator=gen, requires_grad=True)
    Bl = (0.3 * torch.randn(4, 4, 4, generator=gen)).requires_grad_(True)
    good = torch.autograd.gradcheck(lambda x, w, b: x @ (w + bat_delta(b, w)).T, (x, Wl, Bl))
    print("gradcheck of the bat linear: %s" % ("PASS" if good else "FAIL"))
    return ok and good


# ----------------------------------------------------------------------------------------------------
# safetensors by hand
# ----------------------------------------------------------------------------------------------------

DTYPES = {torch.float32: "F32", torch.int32: "I32"}
TORCH_DTYPES = {"F32": torch.float32, "I32": torch.int32}


def write_safetensors(path, tensors, metadata):
    header = collections.OrderedDict()
    if metadata:
        header["__metadata__"] = metadata
    blobs, offset = [], 0
    for name, t in tensors.items():
        data = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n].decode(), object_pairs_hook=collections.OrderedDict)
    metadata = header.pop("__metadata__", None)
    out = collections.OrderedDict()
    for name, h in header.items():
        b, e = h["data_offsets"]
        buf = bytearray(raw[8 + n + b:8 + n + e])
        out[name] = torch.frombuffer(buf, dtype=TORCH_DTYPES[h["dtype"]]).reshape(h["shape"]).clone()
    return out, metadata


# ----------------------------------------------------------------------------------------------------
# Check mode
# ----------------------------------------------------------------------------------------------------

def compare(name, got, want, rel_tol):
    """Relative error w.r.t. the tensor's max |value|; exact equality for integer tensors."""
    if got.shape != want.shape or got.dtype != want.dtype:
        print("  %s: shape/dtype %s %s vs %s %s FAIL" % (name, tuple(got.shape), got.dtype, tuple(want.shape),
                                                         want.dtype))
        return False
    if not want.is_floating_point():
        return torch.equal(got, want)
    err = (got.double() - want.double()).abs().max().item() / max(want.abs().max().item(), 1e-30)
    if err > rel_tol:
        print("  %s: max err / max|want| %.3e (tol %.1e) FAIL" % (name, err, rel_tol))
    return err <= rel_tol


def check_files():
    ok = True
    committed = {}
    for fname in build_files():
        path = os.path.join(VEC_DIR, fname)
        if not os.path.exists(path):
            print("%s: missing (run without --check to write it)" % path)
            return False
        committed[fname] = read_safetensors(path)
    fresh = build_files()
    same = all(torch.equal(committed[f][0][n], t) for f in (MODEL_FILE,) for n, t in fresh[f][0].items())
    for kind in CASES:
        f = "adapter-%s.safetensors" % kind
        same &= all(torch.equal(committed[f][0][n], t) for n, t in fresh[f][0].items())
        same &= committed[f][1] == fresh[f][1]
    print("inputs regenerate bitwise from the seeds: %s" % ("yes" if same else "NO (torch draws other numbers)"))
    model = committed[MODEL_FILE][0]
    for kind, cfg in CASES.items():
        adapter = committed["adapter-%s.safetensors" % kind][0]
        want = committed["adapter-%s.expected.safetensors" % kind][0]
        got = outputs(kind, cfg, model, adapter, want["tokens"].long(), want["targets"].long())
        good = list(want.keys())[2:] == list(got.keys())
        good &= all(compare("%s[%s]" % (kind, n), t, want[n], 1e-5) for n, t in got.items())
        print("adapter-%s outputs recomputed from the committed inputs: %s" % (kind, "PASS" if good else "FAIL"))
        ok &= good
    return ok


def write_files():
    os.makedirs(VEC_DIR, exist_ok=True)
    for fname, (tensors, metadata) in build_files().items():
        path = os.path.join(VEC_DIR, fname)
        write_safetensors(path, tensors, metadata)
        print("wrote %s (%d tensors, %d bytes)" % (path, len(tensors), os.path.getsize(path)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="recompute and compare with the committed files")
    args = ap.parse_args()
    if not validate():
        print("validation FAILED: no files written")
        return 1
    if args.check:
        ok = check_files()
        print("check: %s" % ("PASS" if ok else "FAIL"))
        return 0 if ok else 1
    write_files()
    return 0


if __name__ == "__main__":
    sys.exit(main())

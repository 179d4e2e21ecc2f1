#!/usr/bin/python3
"""projector_reference.py — independent float64 PyTorch reference of the ModRWKV projectors (trainer/projector.h),
and the generator of tests/reference/vectors/projector.safetensors (read by tests/test_projector.c).

Contract:
  * Written from the published adapter (paper §3.2-§3.3, the released VisualAdapter: proj = Sequential(
    Linear(D_enc, H), ReLU, Linear(H, C)), forward x = proj(x); x + LayerNorm(C)(x), eps 1e-5) and the four
    kinds of trainer/projector.h: linear (one Linear with bias), mlp, conv_mlp (Conv1d D_enc -> D_enc over
    tokens, kernel k, stride s, no bias, no padding, then the mlp), pool_mlp (avg_pool1d of window and stride
    s, floor, then the mlp).  Plain autograd, float64 on float32-rounded parameters and inputs.
  * Gradients are of the loss sum(out * dout) for a stored random dout, w.r.t. every parameter and the input.
  * `/usr/bin/python3 tests/reference/projector_reference.py` runs self-checks (gradcheck of every kind, the
    Table 7 token counts 577 -> 288 / 192 / 144) and (re)writes the vectors file; `--check` recomputes and
    compares with the committed file without writing (exit 0 = identical bytes).  Deterministic (fixed seeds).
  * File contents, for each case of CASES (prefix "<case>."): every parameter under its name (proj.weight,
    proj.0.weight, conv.weight, pre_norm.bias, ...), "input" (B, n_in, D_enc), "dout" and "out"
    (B, n_out, C), "grad.<parameter name>" and "grad.input".
"""
import argparse
import collections
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "vectors", "projector.safetensors")

B, N_IN, D_ENC, C = 2, 11, 6, 5   # tests/test_projector.c uses the same numbers
# case name -> (kind, ratio, k, s)
CASES = collections.OrderedDict([
    ("linear", ("linear", 0, 0, 0)),
    ("mlp", ("mlp", 2, 0, 0)),
    ("conv_mlp_k3s2", ("conv_mlp", 2, 3, 2)),
    ("conv_mlp_k5s4", ("conv_mlp", 4, 5, 4)),
    ("pool_mlp_s3", ("pool_mlp", 2, 0, 3)),
])


def param_shapes(kind, d, c, ratio, k):
    shapes = collections.OrderedDict()
    if kind == "linear":
        shapes["proj.weight"] = (c, d)
        shapes["proj.bias"] = (c,)
        return shapes
    if kind == "conv_mlp":
        shapes["conv.weight"] = (d, d, k)
    h = ratio * c
    shapes["proj.0.weight"] = (h, d)
    shapes["proj.0.bias"] = (h,)
    shapes["proj.2.weight"] = (c, h)
    shapes["proj.2.bias"] = (c,)
    shapes["pre_norm.weight"] = (c,)
    shapes["pre_norm.bias"] = (c,)
    return shapes


def projector(p, x, kind, k, s):
    """x (B, n_in, D_enc) -> (B, n_out, C)."""
    if kind == "linear":
        return F.linear(x, p["proj.weight"], p["proj.bias"])
    if kind == "conv_mlp":
        x = F.conv1d(x.transpose(1, 2), p["conv.weight"], None, stride=s).transpose(1, 2)
    elif kind == "pool_mlp":
        x = F.avg_pool1d(x.transpose(1, 2), s, s).transpose(1, 2)
    h = F.linear(torch.relu(F.linear(x, p["proj.0.weight"], p["proj.0.bias"])), p["proj.2.weight"], p["proj.2.bias"])
    return h + F.layer_norm(h, (h.shape[-1],), p["pre_norm.weight"], p["pre_norm.bias"], 1e-5)


def make_params(kind, d, c, ratio, k, g):
    """Uniform weights a bit beyond the PyTorch init bound; a LayerNorm away from (1, 0) so its grads matter."""
    p = collections.OrderedDict()
    fan_in = 1
    for name, shape in param_shapes(kind, d, c, ratio, k).items():
        if name == "pre_norm.weight":
            v = 1.0 + 0.3 * torch.randn(shape, generator=g)
        elif name == "pre_norm.bias":
            v = 0.2 * torch.randn(shape, generator=g)
        else:
            if len(shape) >= 2:              # a weight; its bias (next) shares the bound
                fan_in = int(np.prod(shape[1:]))
            v = (torch.rand(shape, generator=g) * 2 - 1) * 1.5 / fan_in ** 0.5
        p[name] = v.float().double().requires_grad_(True)
    return p


def n_out_of(kind, n_in, k, s):
    if kind == "conv_mlp":
        return (n_in - k) // s + 1
    if kind == "pool_mlp":
        return n_in // s
    return n_in


def self_checks():
    g = torch.Generator().manual_seed(5)
    for kind, ratio, k, s in CASES.values():
        p = make_params(kind, 3, 2, max(ratio, 1), k, g)
        x = torch.randn(1, 7, 3, generator=g).requires_grad_(True)

        def fn(*args, kind=kind, k=k, s=s, names=list(p.keys())):
            return projector(collections.OrderedDict(zip(names, args[:-1])), args[-1], kind, k, s)

        assert torch.autograd.gradcheck(fn, list(p.values()) + [x], eps=1e-6, atol=1e-7), f"gradcheck {kind}"
    x = torch.zeros(1, 768, 577)
    for (k, s), want in (((3, 2), 288), ((4, 3), 192), ((5, 4), 144)):
        got = F.conv1d(x, torch.zeros(768, 768, k), stride=s).shape[-1]
        assert got == want == n_out_of("conv_mlp", 577, k, s), f"Table 7 ({k},{s}): {got} != {want}"
    print("self-checks passed: gradcheck of every kind, Table 7 token counts")


def safetensors_bytes(tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors:
        data = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    return struct.pack("<Q", len(hj)) + hj + b"".join(blobs)


def build():
    tensors = []
    for i, (case, (kind, ratio, k, s)) in enumerate(CASES.items()):
        g = torch.Generator().manual_seed(100 + i)
        p = make_params(kind, D_ENC, C, ratio, k, g)
        x = torch.randn(B, N_IN, D_ENC, generator=g).float().double().requires_grad_(True)
        dout = torch.randn(B, n_out_of(kind, N_IN, k, s), C, generator=g).float().double()
        out = projector(p, x, kind, k, s)
        assert out.shape == dout.shape
        (out * dout).sum().backward()
        tensors += [(f"{case}.{name}", v.detach().numpy()) for name, v in p.items()]
        tensors += [(f"{case}.input", x.detach().numpy()), (f"{case}.dout", dout.numpy()),
                    (f"{case}.out", out.detach().numpy())]
        tensors += [(f"{case}.grad.{name}", v.grad.numpy()) for name, v in p.items()]
        tensors.append((f"{case}.grad.input", x.grad.numpy()))
    return safetensors_bytes(tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    args = ap.parse_args()
    self_checks()
    data = build()
    if args.check:
        with open(OUT, "rb") as f:
            same = f.read() == data
        print(f"{OUT}: {'identical' if same else 'DIFFERS'}")
        return 0 if same else 1
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(data)
    print(f"wrote {OUT} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

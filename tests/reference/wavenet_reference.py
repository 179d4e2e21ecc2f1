#!/usr/bin/python3
"""wavenet_reference.py — independent float64 PyTorch reference of the WaveNet-style time-series encoder
(trainer/wavenet.h), and the generator of tests/reference/vectors/wavenet.safetensors (read by
tests/test_wavenet.c).

Contract:
  * Written from the description in trainer/wavenet.h (ModRWKV paper §3.1: WaveNet trained from scratch):
    input 1x1 conv Cin -> R; L layers of causal dilated conv (kernel 2, dilation 2^(l mod cycle), left
    padding only) R -> 2R, gate tanh(first R) * sigmoid(last R), residual 1x1 conv R -> R added to the
    stream, skip 1x1 conv R -> S summed over layers; relu(skip) -> 1x1 conv S -> D_out; mean over
    non-overlapping windows of `patch` steps.  Conv1d weights (out, in, k), with biases.
  * Plain autograd in float64 on float32-rounded parameters and inputs; the stored results are rounded to
    float32.  Gradients are of the loss sum(out * dout) for a stored random dout.
  * `/usr/bin/python3 tests/reference/wavenet_reference.py` checks the model (gradcheck of a tiny instance,
    causality) and (re)writes the vectors file; `--check` recomputes and compares with the committed file
    without writing (exit 0 = identical bytes).  Deterministic: a fixed torch seed.
  * File contents: every parameter under its name (ts_encoder....), "input" (B, T, Cin), "dout"
    (B, n_out, D_out), "out" (B, n_out, D_out), "grad.<parameter name>" and "grad.input"; sizes in CONFIG.
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
OUT = os.path.join(HERE, "vectors", "wavenet.safetensors")

# B, T, Cin, R, S, D_out, L, cycle, patch (tests/test_wavenet.c uses the same numbers)
CONFIG = dict(B=2, T=26, Cin=3, R=8, S=12, D=10, L=5, cycle=3, patch=4)


def param_shapes(c):
    shapes = collections.OrderedDict()
    shapes["ts_encoder.input.weight"] = (c["R"], c["Cin"], 1)
    shapes["ts_encoder.input.bias"] = (c["R"],)
    for l in range(c["L"]):
        shapes[f"ts_encoder.layers.{l}.dilated.weight"] = (2 * c["R"], c["R"], 2)
        shapes[f"ts_encoder.layers.{l}.dilated.bias"] = (2 * c["R"],)
        shapes[f"ts_encoder.layers.{l}.res.weight"] = (c["R"], c["R"], 1)
        shapes[f"ts_encoder.layers.{l}.res.bias"] = (c["R"],)
        shapes[f"ts_encoder.layers.{l}.skip.weight"] = (c["S"], c["R"], 1)
        shapes[f"ts_encoder.layers.{l}.skip.bias"] = (c["S"],)
    shapes["ts_encoder.output.weight"] = (c["D"], c["S"], 1)
    shapes["ts_encoder.output.bias"] = (c["D"],)
    return shapes


def wavenet(p, x, c):
    """x (B, T, Cin) -> (B, T // patch, D_out)."""
    R = c["R"]
    h = F.conv1d(x.transpose(1, 2), p["ts_encoder.input.weight"], p["ts_encoder.input.bias"])   # (B, R, T)
    skip = 0
    for l in range(c["L"]):
        d = 2 ** (l % c["cycle"])
        pre = f"ts_encoder.layers.{l}."
        z = F.conv1d(F.pad(h, (d, 0)), p[pre + "dilated.weight"], p[pre + "dilated.bias"], dilation=d)
        g = torch.tanh(z[:, :R]) * torch.sigmoid(z[:, R:])
        skip = skip + F.conv1d(g, p[pre + "skip.weight"], p[pre + "skip.bias"])
        h = h + F.conv1d(g, p[pre + "res.weight"], p[pre + "res.bias"])
    y = F.conv1d(torch.relu(skip), p["ts_encoder.output.weight"], p["ts_encoder.output.bias"])  # (B, D, T)
    y = F.avg_pool1d(y, c["patch"], c["patch"])                                                 # floor
    return y.transpose(1, 2).contiguous()


def make_case(c, seed):
    g = torch.Generator().manual_seed(seed)
    p = collections.OrderedDict()
    fan_in = 1
    for name, shape in param_shapes(c).items():
        if len(shape) == 3:              # a weight (out, in, k); its bias (next) shares the bound
            fan_in = shape[1] * shape[2]
        bound = 1.0 / fan_in ** 0.5
        v = (torch.rand(shape, generator=g) * 2 - 1) * bound * 1.5   # a bit larger than init: livelier gates
        p[name] = v.float().double().requires_grad_(True)
    x = torch.randn(c["B"], c["T"], c["Cin"], generator=g).float().double().requires_grad_(True)
    n_out = c["T"] // c["patch"]
    dout = torch.randn(c["B"], n_out, c["D"], generator=g).float().double()
    return p, x, dout


def self_checks():
    small = dict(B=1, T=9, Cin=2, R=3, S=4, D=2, L=3, cycle=2, patch=2)
    p, x, _ = make_case(small, 7)
    leaves = list(p.values()) + [x]

    def fn(*args):
        q = collections.OrderedDict(zip(p.keys(), args[:-1]))
        return wavenet(q, args[-1], small)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7), "gradcheck failed"
    # causality: token n must not depend on steps >= (n + 1) * patch
    c = CONFIG
    p, x, _ = make_case(c, 3)
    with torch.no_grad():
        y0 = wavenet(p, x, c)
        x2 = x.clone()
        x2[:, 12:] += 1.0
        y1 = wavenet(p, x2, c)
        assert torch.equal(y0[:, :3], y1[:, :3]) and not torch.equal(y0[:, 3:], y1[:, 3:]), "causality"
    print("self-checks passed: gradcheck, causality")


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
    c = CONFIG
    p, x, dout = make_case(c, 2024)
    out = wavenet(p, x, c)
    (out * dout).sum().backward()
    tensors = [(name, v.detach().numpy()) for name, v in p.items()]
    tensors += [("input", x.detach().numpy()), ("dout", dout.numpy()), ("out", out.detach().numpy())]
    # the last layer's residual conv feeds nothing: autograd leaves its grad None, the C side writes zeros
    tensors += [("grad." + name, (v.grad if v.grad is not None else torch.zeros_like(v)).numpy())
                for name, v in p.items()]
    tensors.append(("grad.input", x.grad.numpy()))
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

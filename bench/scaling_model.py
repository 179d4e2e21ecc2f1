#!/usr/bin/python3
"""scaling_model.py — an analytic model of distributed RWKV-7 training on H100 nodes: per-step compute
time, per-rank communication bytes and times for data parallelism (all-reduce, ZeRO-1) and tensor
parallelism, and the weak-scaling efficiency they imply (BENCHMARKS.md, "Distributed: communication
volume and scaling model").

Usage: bench/scaling_model.py [--mfu 0.40] [--check]   (prints markdown; python3 + numpy only)

Every formula used is printed above the tables it produces, so the output documents itself. The
assumptions (hardware peaks, bandwidths, MFU, the stage-2 recipe) are the constants below.
"""
import argparse
import sys

import numpy as np

# ---------------------------------------------------------------------------- assumptions
PEAK_FLOPS = 989.4e12      # H100 SXM, bf16 dense tensor-core peak (1979 TFLOP/s is the 2:4-sparse figure)
NVLINK_BUS = 450e9         # B/s per GPU: NVLink 4 (900 GB/s both directions), algorithmic bus bandwidth in a node
NIC_BYTES = 400e9 / 8      # one 400 Gb/s NDR InfiniBand port, B/s
GPUS_PER_NODE = 8
GRAD_BYTES = 4             # fp32 gradients and (ZeRO-1) fp32 parameters, as sharding/data_parallel.c moves them
ACT_BYTES = 2              # bf16 activations for tensor-parallel all-reduces
BUCKET_BYTES = 25 << 20    # DP_DEFAULT_BUCKET_BYTES: the last bucket is reduced after the backward ends
BACKWARD_SHARE = 2.0 / 3.0 # backward = 2/3 of the step's FLOPs (4N of 6N per token)
OVERLAP_SLOWDOWN = 0.10    # compute runs this much slower while NCCL overlaps it (its SMs and memory traffic)
VOCAB = 65536
CTX = 2048                 # ModRWKV stage 2 (paper Table 9): ctx_len 2048, global batch 128 on 8 GPUs
STAGE2_BATCH = 128
NODE_COUNTS = [1, 2, 4, 8, 16, 32, 64]

# Released RWKV-7 World models (reference/rwkv7.md §1.3, §1.4): L, C and the LoRA ranks Dw, Da, Dv, Dg
# of the published checkpoints.
MODELS = {
    "0.4B": dict(L=24, C=1024, lora=(64, 64, 32, 128)),
    "1.5B": dict(L=24, C=2048, lora=(96, 96, 64, 256)),
    "3B":   dict(L=32, C=2560, lora=(96, 96, 64, 320)),
    "7.2B": dict(L=32, C=4096, lora=(128, 128, 96, 480)),
}


# ---------------------------------------------------------------------------- model size
def params(L, C, lora, V=VOCAB):
    """RWKV-LM README count: 2VC + 4C + L (19C + 12C^2 + 2C (Dw + Da + Dv + Dg))."""
    return 2 * V * C + 4 * C + L * (19 * C + 12 * C * C + 2 * C * sum(lora))


def block0_unused(C, lora):
    """blocks.0.att.v0/v1/v2 exist but get no gradient: C + 2 C Dv."""
    return C + 2 * C * lora[2]


def replicated_under_tp(L, C, lora, V=VOCAB):
    """Tensors every tensor-parallel rank holds whole: the embedding, the per-channel vectors (19C per
    block, ln_out) and the first LoRA matrices (C x D: they need the full input)."""
    return V * C + 2 * C + L * (19 * C + C * sum(lora))


def check_counts():
    """The formula against published counts, the rwkv.cpp tiny model and modrwkv's own count."""
    published = {"0.4B": 450_834_432, "1.5B": 1_527_668_736, "3B": 2_948_065_280, "7.2B": 7_199_932_416}
    rows = []
    for name, m in MODELS.items():
        rows.append((f"RWKV-7 {name} (L{m['L']} C{m['C']})", params(**m), published[name]))
    tiny = params(12, 64, (32, 32, 32, 32), V=256) - block0_unused(64, (32, 32, 32, 32))
    rows.append(("rwkv.cpp tiny-rwkv-7v0-834K (V256 L12 C64, no block-0 v0/v1/v2)", tiny, 829_888))
    rows.append(("modrwkv L2 C64 V256 (metrics.jsonl params_total)", params(2, 64, (32,) * 4, V=256), 166_528))
    ok = all(a == b for _, a, b in rows)
    return rows, ok


# ---------------------------------------------------------------------------- costs
def ring(bytes_, p, bw):
    """Ring all-reduce time: 2 (p-1)/p bytes / bus bandwidth (reduce-scatter + all-gather)."""
    return 0.0 if p <= 1 else 2.0 * (p - 1) / p * bytes_ / bw


def dp_time_flat(grad, nodes, nics):
    """One flat ring over all GPUs: its slowest hop is a node-to-node link of one NIC (nics/8 of a port's
    rate per GPU when a node has fewer NICs than GPUs)."""
    P = nodes * GPUS_PER_NODE
    bw = NVLINK_BUS if nodes == 1 else min(NVLINK_BUS, nics * NIC_BYTES / GPUS_PER_NODE)
    return ring(grad, P, bw)


def dp_time_hier(grad_per_gpu, nodes, nics, k=GPUS_PER_NODE):
    """Hierarchical all-reduce of dp groups with k GPUs per node (8/k such groups per node, one per tp
    rank): reduce-scatter inside the node (NVLink), all-reduce of each GPU's 1/k shard across the nodes,
    all-gather inside the node. After the reduce-scatter a node holds (8/k) G bytes, which cross its ports:
    2 (k-1)/k G / B_nvl + 2 (n-1)/n (8/k) G / B_node."""
    intra = ring(grad_per_gpu, k, NVLINK_BUS)
    per_node = GPUS_PER_NODE // k * grad_per_gpu
    inter = 0.0 if nodes <= 1 else 2.0 * (nodes - 1) / nodes * per_node / (nics * NIC_BYTES)
    return intra + inter


def layout(model, nodes, tp=1, nics=8, tokens_per_gpu=STAGE2_BATCH // GPUS_PER_NODE * CTX, mfu=0.40):
    """One configuration: returns a dict of times (s), bytes and efficiencies."""
    m = MODELS[model]
    L, C, lora = m["L"], m["C"], m["lora"]
    N = params(L, C, lora)
    trained = N - block0_unused(C, lora)
    flops = 6.0 * (N - VOCAB * C) * tokens_per_gpu  # per GPU (with tp: tp x the tokens, 1/tp of the matmuls)
    t_c = flops / (PEAK_FLOPS * mfu)
    rep = replicated_under_tp(L, C, lora)
    grad = GRAD_BYTES * (rep + (trained - rep) / tp)            # gradient bytes held by one GPU
    P = nodes * GPUS_PER_NODE
    dp = P // tp
    # data parallel: the ring volume per rank, the two schedules, and overlap with the backward pass
    dp_bytes = 2.0 * (dp - 1) / dp * grad
    t_flat = dp_time_flat(grad, nodes, nics) if tp == 1 else float("nan")
    k = GPUS_PER_NODE // tp
    t_hier = dp_time_hier(grad, nodes, nics, k) if dp > 1 else 0.0
    t_bucket = dp_time_hier(min(BUCKET_BYTES, grad), nodes, nics, k) if dp > 1 else 0.0
    budget = BACKWARD_SHARE * t_c
    hidden = lambda t: max(t - budget, t_bucket * t / max(t_hier, 1e-30)) + OVERLAP_SLOWDOWN * min(t, budget)
    exposed_ar = hidden(t_hier)
    exposed_z1 = hidden(t_hier / 2) + t_hier / 2  # the all-gather comes after the update
    # tensor parallel: 4 all-reduces of (B, T, C) bf16 per layer (TimeMix output and ChannelMix value in
    # the forward, the two LayerNorm entries in the backward) + 1 at the head's input in the backward,
    # and 3 fp32 scalars per row for the vocabulary-parallel cross-entropy (max, target logit, sum exp)
    rows = tokens_per_gpu * tp                                  # rows of the replica's micro-batch
    n_ar = 4 * L + 1
    tp_bytes = (n_ar * 2.0 * (tp - 1) / tp * rows * C * ACT_BYTES + 3 * 2.0 * (tp - 1) / tp * rows * 4) if tp > 1 else 0.0
    t_tp = tp_bytes / NVLINK_BUS
    eff = lambda exposed: t_c / (t_c + exposed)
    state = (2 + GRAD_BYTES) * (rep + (trained - rep) / tp)     # bf16 weights + fp32 gradients per GPU
    adam = 12.0 * (rep + (trained - rep) / tp)                  # fp32 master + m + v
    return dict(N=N, trained=trained, P=P, dp=dp, tp=tp, t_c=t_c, grad=grad, dp_bytes=dp_bytes,
                t_flat=t_flat, t_hier=t_hier, t_bucket=t_bucket, tp_bytes=tp_bytes, t_tp=t_tp,
                eff_flat=eff(t_flat), eff_hier=eff(t_hier), eff_overlap=eff(exposed_ar),
                eff_z1=eff(exposed_z1), eff_tp=eff(t_tp + exposed_ar), eff_tp_z1=eff(t_tp + exposed_z1),
                mem_z0=(state + adam) / 2**30, mem_z1=(state + adam / dp) / 2**30,
                batch=STAGE2_BATCH * nodes, flops=flops)


# ---------------------------------------------------------------------------- output
def gb(x):
    return f"{x / 1e9:.2f}"


def ms(x):
    return "–" if np.isnan(x) else f"{1e3 * x:.1f}"


def pct(x):
    return "–" if np.isnan(x) else f"{100 * x:.1f}%"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def print_counts():
    rows, ok = check_counts()
    print(table(["model", "formula", "reference", "equal"],
                [(n, f"{a:,}", f"{b:,}", "yes" if a == b else "**NO**") for n, a, b in rows]))
    return ok


def print_weak(model, mfu, nics):
    rows = []
    for n in NODE_COUNTS:
        r = layout(model, n, nics=nics, mfu=mfu)
        rows.append((n, r["P"], r["batch"], ms(r["t_c"]), gb(r["dp_bytes"]), ms(r["t_flat"]), ms(r["t_hier"]),
                     pct(r["eff_flat"]), pct(r["eff_hier"]), pct(r["eff_overlap"]), pct(r["eff_z1"])))
    print(table(["nodes", "GPUs", "global batch (seq)", "compute ms", "DP GB/rank/step", "flat ring ms",
                 "hierarchical ms", "eff flat", "eff hier", "eff hier+overlap", "eff ZeRO-1 hier+overlap"], rows))


def print_summary(mfu):
    rows = []
    for model in MODELS:
        for nics in (8, 4):
            r = layout(model, 64, nics=nics, mfu=mfu)
            rows.append((model, f"{r['N'] / 1e9:.3f}", f"{nics}x NDR", ms(r["t_c"]), gb(r["dp_bytes"]),
                         pct(r["eff_flat"]), pct(r["eff_hier"]), pct(r["eff_overlap"]), pct(r["eff_z1"]),
                         f"{r['mem_z0']:.0f} / {r['mem_z1']:.1f}"))
    print(table(["model", "params (B)", "IB per node", "compute ms", "DP GB/rank/step", "eff flat",
                 "eff hier", "eff hier+overlap", "eff ZeRO-1", "model state GiB/GPU zero 0 / 1"], rows))


def print_tp(mfu):
    rows = []
    for model in ("1.5B", "7.2B"):
        for tp in (1, 2, 4, 8):
            r = layout(model, 64, tp=tp, mfu=mfu)
            rows.append((model, tp, r["dp"], ms(r["t_c"]), gb(r["tp_bytes"]), ms(r["t_tp"]), gb(r["dp_bytes"]),
                         ms(r["t_hier"]), pct(r["eff_tp"]), pct(r["eff_tp_z1"]),
                         f"{r['mem_z0']:.0f} / {r['mem_z1']:.1f}"))
    print(table(["model", "tp", "dp", "compute ms", "TP GB/rank/step", "TP ms (exposed)", "DP GB/rank/step",
                 "DP hierarchical ms", "eff (DP overlap)", "eff ZeRO-1", "model state GiB/GPU zero 0 / 1"], rows))


def print_strong(mfu):
    rows = []
    total = STAGE2_BATCH * CTX
    for n in (1, 2, 4, 8, 16):
        P = n * GPUS_PER_NODE
        r = layout("1.5B", n, tokens_per_gpu=total // P, mfu=mfu)
        rows.append((n, P, STAGE2_BATCH // P, ms(r["t_c"]), ms(r["t_hier"]), pct(r["eff_overlap"]),
                     f"{total / (r['t_c'] / r['eff_overlap']) / 1e6:.2f}"))
    print(table(["nodes", "GPUs", "seq/GPU", "compute ms", "DP hierarchical ms", "eff hier+overlap",
                 "Mtok/s"], rows))


FORMULAS = r"""
Formulas (every time is per optimizer step, per GPU):

- parameters N = 2VC + 4C + L (19C + 12C² + 2C (Dw+Da+Dv+Dg)), V = 65536; trained = N − (C + 2C·Dv)
  (block 0's v0/v1/v2 get no gradient).
- compute t_c = 6 (N − VC) · tokens_per_GPU / (peak · MFU), peak = 989.4 TFLOP/s (H100 SXM bf16 dense),
  the embedding lookup (VC) is not a matmul; the WKV recurrence (≈ 8·64·C FLOPs per layer and token,
  < 1% of 6N) is left out. tokens_per_GPU = 16 × 2048 = 32768 (stage 2: 128 sequences of 2048 on 8 GPUs,
  kept per GPU as nodes are added: weak scaling, global batch 128 × nodes).
- gradient bytes G = 4 · trained (fp32, as sharding/data_parallel.c moves them); ring all-reduce volume per
  rank 2 (p−1)/p · G; ZeRO-1 moves (p−1)/p · G in the reduce-scatter and (p−1)/p · G in the all-gather of
  the parameters: the same total (plus at most p−1 values of padding).
- ring(S, p, B) = 2 (p−1)/p · S / B. NVLink bus bandwidth B_nvl = 450 GB/s per GPU; one NDR port
  = 400 Gb/s = 50 GB/s; a node has 8 (or 4) ports: B_node = 400 (200) GB/s.
- flat ring: one ring over all P GPUs whose slowest hop is one port: t = ring(G, P, B_node / 8).
- hierarchical (NCCL's rail-aligned rings/trees): reduce-scatter in the node, all-reduce of each GPU's 1/8
  across the n nodes over the node's ports, all-gather in the node:
  t = 2 (8−1)/8 · G / B_nvl + 2 (n−1)/n · G / B_node (the 8 GPUs' shards share B_node).
- overlap: buckets are all-reduced while the backward pass runs (2/3 of t_c): exposed
  = max(t − 2/3 t_c, t_bucket) + 0.10 · min(t, 2/3 t_c), with t = t_hier, t_bucket = the hierarchical time of
  the last 25 MiB bucket (reduced after the backward ends) and a 10% slowdown of the compute it overlaps
  (NCCL's SMs and memory traffic). ZeRO-1 as implemented: the reduce-scatter (t = t_hier / 2) overlaps like
  that, the all-gather of the updated parameters (t_hier / 2) is exposed.
- tensor parallel (tp GPUs of one node share a replica; the replica's batch is tp × 16 sequences, so each
  GPU's FLOPs stay t_c): per layer 2 forward all-reduces of (B, T, C) (TimeMix output, ChannelMix value) and
  2 backward ones (the two LayerNorm entries), one more backward at the head's input, in bf16, plus 3 fp32
  scalars per row for the vocabulary-parallel cross-entropy: bytes/rank = (4L+1) · 2 (tp−1)/tp · B·T·C·2
  + 3 · 2 (tp−1)/tp · B·T·4; they sit on the critical path: exposed t_tp = bytes / B_nvl. With tp, a GPU holds
  the replicated tensors (embedding, 19C per block, the C×D LoRA matrices) whole and 1/tp of the others;
  the dp group of a tp rank has 8/tp GPUs per node.
- weak-scaling efficiency = t_c / (t_c + exposed communication).
- model state per GPU: bf16 weights + fp32 gradients (6 B/param) + fp32 master, m, v (12 B/param, divided
  by dp under ZeRO-1); activations come on top.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mfu", type=float, default=0.40, help="assumed model FLOPs utilisation (default 0.40)")
    ap.add_argument("--check", action="store_true", help="only check the parameter formula; exit 1 if it fails")
    a = ap.parse_args()
    if a.check:
        ok = print_counts()
        sys.exit(0 if ok else 1)
    print(FORMULAS)
    print(f"Assumed MFU {100 * a.mfu:.0f}%: a step of 6N·tokens FLOPs runs at {a.mfu * PEAK_FLOPS / 1e12:.0f} TFLOP/s "
          "per GPU.\n")
    print("**Parameter formula check**\n")
    ok = print_counts()
    print("\n**1.5B, stage 2, weak scaling (8x NDR per node)**\n")
    print_weak("1.5B", a.mfu, 8)
    print("\n**All sizes at 64 nodes (512 GPUs), data parallel only (tp = 1)**\n")
    print_summary(a.mfu)
    print("\n**Tensor-parallel layouts at 64 nodes (8x NDR), hierarchical DP with overlap**\n")
    print_tp(a.mfu)
    print("\n**Strong scaling of the paper's global batch (128 × 2048 tokens), 1.5B, 8x NDR**\n")
    print_strong(a.mfu)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

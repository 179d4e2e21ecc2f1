#!/usr/bin/python3
"""rwkv7_reference.py — independent float64 PyTorch reference of the RWKV-7 (x070) model, and the
generator of the committed reference vectors in tests/reference/vectors/.

Contract:
  * The model is written from /work/shared/reference/rwkv7.md §1-§3 (tensor names and shapes of §1.2,
    forward of §2.1-§2.5, loss and L2Wrap of §2.6) in plain autograd, float64 throughout, with the WKV7
    recurrence as an explicit loop over time.  Gradients come from autograd; the only custom backward
    is L2Wrap, which by design is not the gradient of anything.
  * `/usr/bin/python3 tests/reference/rwkv7_reference.py` validates the implementation (tiny rwkv.cpp
    model logits, WKV gradcheck, full-model finite differences) and then (re)writes every vectors file.
    The output is deterministic: a fixed seed and float64 arithmetic on fp32-rounded inputs.
  * `--check` recomputes everything and compares with the committed files without writing anything;
    exit status 0 means they agree.  `--sensitivity` prints how much each parameter tensor moves the
    logits of the gradient-vector model (evidence that every path of the block is exercised).
  * Files are torch.save'd OrderedDicts of plain contiguous tensors (no Python ints or strings), the
    state_dict pickle subset that the C checkpoint reader accepts.

Conventions (same as the official kernels): activations are [B, T, C] or per head [B, T, H, N];
WKV states are [B, H, N, N] with S[i][j], i = value index, j = key index; Linear weights are [out, in]
and applied as x @ W.T; LoRA matrices are applied as x @ w1 @ w2; targets < 0 are masked out of the loss.
"""
import argparse
import collections
import math
import os
import sys

import torch

torch.set_default_dtype(torch.float64)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VEC_DIR = os.path.join(HERE, "vectors")
TINY_MODEL = os.path.join(ROOT, "tests", "data", "tiny-rwkv7-834K-fp32.pth")
TINY_LOGITS = os.path.join(ROOT, "tests", "data", "tiny-rwkv7-834K.expected-logits-34-105-110.f32")

LN_EPS = 1e-5          # LayerNorm ln0/ln1/ln2/ln_out (§2.1)
GN_EPS = 64e-5         # GroupNorm ln_x (§2.2)
KK_EPS = 1e-12         # clamp on the norm of k*k_k (§2.2)
DECAY_SCALE = math.exp(-0.5)   # decay = exp(-e^-0.5 * sigmoid(d)) (§2.3)
L2WRAP_FACTOR = 1e-4   # §2.6

GRAD_PREFIX = "grad-L3-C128-V256-T64"
MODEL_SEED = 20250705   # chosen so that every logits row has a top-2 gap > 1e-3 (unambiguous argmax)
WKV_SEED = 20250702
WKV_FILE = "wkv7.pth"


# ----------------------------------------------------------------------------------------------------
# Model (float64)
# ----------------------------------------------------------------------------------------------------

def layer_norm(x, weight, bias, eps):
    """LayerNorm over the last axis with biased variance."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def token_shift(x):
    """prev(x)[t] = x[t-1], prev(x)[0] = 0 (zero padding at the start of every sequence).  x: (B, T, C)"""
    return torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)


def wkv7_loop(r, w, k, v, a, b, s0):
    """WKV7 recurrence (§2.4), one step at a time.

    r, w, k, v, a, b: (B, T, H, N); s0: (B, H, N, N) with S[i][j], i = value index, j = key index.
    Per step:  sa = S a;  S = S diag(w) + sa b^T + v k^T;  y = S r.
    Returns y (B, T, H, N) and the final state sT (B, H, N, N).
    """
    T = r.shape[1]
    S = s0
    ys = []
    for t in range(T):
        sa = torch.einsum("bhij,bhj->bhi", S, a[:, t])                      # (B, H, N)
        S = (S * w[:, t, :, None, :]
             + sa[..., :, None] * b[:, t, :, None, :]
             + v[:, t, :, :, None] * k[:, t, :, None, :])                  # (B, H, N, N)
        ys.append(torch.einsum("bhij,bhj->bhi", S, r[:, t]))
    return torch.stack(ys, dim=1), S


def time_mix(p, pre, x, v_first, layer, n_head):
    """RWKV_Tmix_x070 (§2.2).  x: ln1 output (B, T, C).  Returns (out (B, T, C), v_first)."""
    B, T, C = x.shape
    N = C // n_head
    xx = token_shift(x) - x
    xr = x + xx * p[pre + "x_r"]
    xw = x + xx * p[pre + "x_w"]
    xk = x + xx * p[pre + "x_k"]
    xv = x + xx * p[pre + "x_v"]
    xa = x + xx * p[pre + "x_a"]
    xg = x + xx * p[pre + "x_g"]

    r = xr @ p[pre + "receptance.weight"].T
    k = xk @ p[pre + "key.weight"].T
    v = xv @ p[pre + "value.weight"].T
    d = p[pre + "w0"] + torch.tanh(xw @ p[pre + "w1"]) @ p[pre + "w2"]
    w = torch.exp(-DECAY_SCALE * torch.sigmoid(d))                          # (B, T, C) in (0.545, 1)
    if layer == 0:
        v_first = v
    else:
        gate_v = torch.sigmoid(p[pre + "v0"] + (xv @ p[pre + "v1"]) @ p[pre + "v2"])
        v = v + (v_first - v) * gate_v
    a = torch.sigmoid(p[pre + "a0"] + (xa @ p[pre + "a1"]) @ p[pre + "a2"])
    g = torch.sigmoid(xg @ p[pre + "g1"]) @ p[pre + "g2"]

    u = (k * p[pre + "k_k"]).view(B, T, n_head, N)
    kk = u / torch.clamp(torch.linalg.vector_norm(u, dim=-1, keepdim=True), min=KK_EPS)
    kk = kk.view(B, T, C)
    k = k * (1 + (a - 1) * p[pre + "k_a"])

    def heads(z):
        return z.view(B, T, n_head, N)

    s0 = torch.zeros(B, n_head, N, N, dtype=x.dtype)
    y, _ = wkv7_loop(heads(r), heads(w), heads(k), heads(v), heads(-kk), heads(kk * a), s0)

    mean = y.mean(-1, keepdim=True)                                         # GroupNorm, H groups
    var = ((y - mean) ** 2).mean(-1, keepdim=True)
    y = ((y - mean) / torch.sqrt(var + GN_EPS)).reshape(B, T, C)
    y = y * p[pre + "ln_x.weight"] + p[pre + "ln_x.bias"]

    bonus = (heads(r * k) * p[pre + "r_k"]).sum(-1, keepdim=True) * heads(v)  # (B, T, H, N)
    y = y + bonus.reshape(B, T, C)
    return (y * g) @ p[pre + "output.weight"].T, v_first


def channel_mix(p, pre, x):
    """RWKV_CMix_x070 (§2.5).  x: ln2 output (B, T, C)."""
    xk = x + (token_shift(x) - x) * p[pre + "x_k"]
    h = torch.relu(xk @ p[pre + "key.weight"].T) ** 2                      # (B, T, 4C)
    return h @ p[pre + "value.weight"].T


def model_dims(p):
    """(n_layer, n_embd, n_head, vocab) read from tensor shapes."""
    n_layer = 1 + max(int(name.split(".")[1]) for name in p if name.startswith("blocks."))
    vocab, n_embd = p["emb.weight"].shape
    n_head = p["blocks.0.att.r_k"].shape[0]
    return n_layer, n_embd, n_head, vocab


def forward(p, tokens):
    """Logits (B, T, V) for int64 tokens (B, T); p maps official names to float64 tensors."""
    n_layer, _, n_head, _ = model_dims(p)
    x = p["emb.weight"][tokens]
    x = layer_norm(x, p["blocks.0.ln0.weight"], p["blocks.0.ln0.bias"], LN_EPS)
    v_first = None
    for layer in range(n_layer):
        pre = "blocks.%d." % layer
        h = layer_norm(x, p[pre + "ln1.weight"], p[pre + "ln1.bias"], LN_EPS)
        dx, v_first = time_mix(p, pre + "att.", h, v_first, layer, n_head)
        x = x + dx
        h = layer_norm(x, p[pre + "ln2.weight"], p[pre + "ln2.bias"], LN_EPS)
        x = x + channel_mix(p, pre + "ffn.", h)
    x = layer_norm(x, p["ln_out.weight"], p["ln_out.bias"], LN_EPS)
    return x @ p["head.weight"].T


# ----------------------------------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------------------------------

def first_argmax(z):
    """Index of the first maximum along the last axis (explicit, independent of torch's tie rule)."""
    top = z.max(dim=-1, keepdim=True).values
    idx = torch.arange(z.shape[-1]).expand_as(z)
    return torch.where(z == top, idx, z.shape[-1]).min(dim=-1).values


class L2Wrap(torch.autograd.Function):
    """Returns loss unchanged; backward adds, for every unmasked row, onehot(first argmax) *
    max_logit * 1e-4 / n_unmasked (times the upstream gradient) to dlogits.  §2.6, with the
    1/(B*T) of the unmasked case generalised to 1/n_unmasked."""

    @staticmethod
    def forward(ctx, loss, logits, mask):
        ctx.save_for_backward(logits, mask)
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_loss):
        logits, mask = ctx.saved_tensors
        n_unmasked = mask.sum()
        idx = first_argmax(logits)                                          # (B, T)
        top = logits.gather(-1, idx[..., None])                             # (B, T, 1)
        scale = torch.where(mask[..., None], top * (L2WRAP_FACTOR / n_unmasked), 0.0)
        dlogits = torch.zeros_like(logits).scatter_(-1, idx[..., None], scale) * grad_loss
        return grad_loss, dlogits, None


def masked_ce(logits, targets):
    """Mean cross-entropy over positions with targets >= 0 (sum of CE / number of unmasked)."""
    mask = targets >= 0
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
    return torch.where(mask, nll, 0.0).sum() / mask.sum(), mask


def training_loss(logits, targets):
    """CE loss with L2Wrap attached to its backward."""
    loss, mask = masked_ce(logits, targets)
    return L2Wrap.apply(loss, logits, mask)


# ----------------------------------------------------------------------------------------------------
# Random model and batch for the gradient vectors
# ----------------------------------------------------------------------------------------------------

def param_shapes(n_layer, C, n_head, V, Dw, Da, Dv, Dg):
    """Official names and shapes (§1.1, §1.2) in state_dict registration order."""
    N = C // n_head
    shapes = collections.OrderedDict()
    shapes["emb.weight"] = (V, C)
    vec = (1, 1, C)
    for i in range(n_layer):
        pre = "blocks.%d." % i
        for ln in ["ln1", "ln2"] + (["ln0"] if i == 0 else []):
            shapes[pre + ln + ".weight"] = (C,)
            shapes[pre + ln + ".bias"] = (C,)
        att = pre + "att."
        for m in "rwkvag":
            shapes[att + "x_" + m] = vec
        for name, D in (("w", Dw), ("a", Da), ("v", Dv)):
            shapes[att + name + "0"] = vec
            shapes[att + name + "1"] = (C, D)
            shapes[att + name + "2"] = (D, C)
        shapes[att + "g1"] = (C, Dg)
        shapes[att + "g2"] = (Dg, C)
        shapes[att + "k_k"] = vec
        shapes[att + "k_a"] = vec
        shapes[att + "r_k"] = (n_head, N)
        for lin in ("receptance", "key", "value", "output"):
            shapes[att + lin + ".weight"] = (C, C)
        shapes[att + "ln_x.weight"] = (C,)
        shapes[att + "ln_x.bias"] = (C,)
        shapes[pre + "ffn.x_k"] = vec
        shapes[pre + "ffn.key.weight"] = (4 * C, C)
        shapes[pre + "ffn.value.weight"] = (C, 4 * C)
    shapes["ln_out.weight"] = (C,)
    shapes["ln_out.bias"] = (C,)
    shapes["head.weight"] = (V, C)
    return shapes


def random_param(name, shape, gen):
    """A random value for one tensor, scaled so that its path contributes materially."""
    def normal(mean, std):
        return mean + std * torch.randn(shape, generator=gen)

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    leaf = name.split(".")[-1]
    if name == "emb.weight":
        return normal(0.0, 1.0)
    if leaf == "weight" and (".ln" in name or name.startswith("ln_out")):
        return normal(1.0, 0.1)                        # LayerNorm / GroupNorm gains
    if leaf == "bias":
        return normal(0.0, 0.1)
    if leaf.startswith("x_"):
        return uniform(0.0, 1.0)                       # token-shift lerp coefficients
    if leaf == "w0":
        return normal(0.0, 1.0)                        # decay spans roughly (0.56, 0.95)
    if leaf in ("a0", "v0"):
        return normal(0.0, 0.5)
    if leaf in ("k_k", "k_a"):
        return uniform(0.5, 1.5)
    if leaf == "r_k":
        return normal(0.0, 0.1)                        # bonus comparable to the GroupNorm output
    # every remaining tensor is a matrix applied to its first axis (LoRA) or its second (Linear [out, in])
    fan_in = shape[0] if leaf in ("w1", "w2", "a1", "a2", "v1", "v2", "g1", "g2") else shape[1]
    return normal(0.0, 1.0 / math.sqrt(fan_in))


def random_model(gen, n_layer=3, C=128, n_head=2, V=256, rank=32):
    """fp32 state_dict (OrderedDict) of a random model; block 0 includes the unused v0/v1/v2."""
    shapes = param_shapes(n_layer, C, n_head, V, rank, rank, rank, rank)
    return collections.OrderedDict(
        (name, random_param(name, shape, gen).float().contiguous()) for name, shape in shapes.items())


def random_batch(gen, B=2, T=64, V=256):
    """Random tokens and targets; about 10% of targets masked (-1), including the last 8 positions of
    row 1 as one contiguous run (like end-of-data padding) and scattered single positions."""
    tokens = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
    targets = torch.randint(0, V, (B, T), generator=gen, dtype=torch.int64)
    scattered = torch.rand((B, T), generator=gen) < 0.05
    targets[scattered] = -1
    targets[1, T - 8:] = -1
    return tokens, targets


def as_f64_leaves(state_dict):
    return collections.OrderedDict(
        (n, t.detach().to(torch.float64).clone().requires_grad_(True)) for n, t in state_dict.items())


def model_outputs(state_dict, tokens, targets):
    """Logits, CE loss and L2Wrap gradients (float64) of an fp32 state_dict."""
    p = as_f64_leaves(state_dict)
    logits = forward(p, tokens)
    loss = training_loss(logits, targets)
    loss.backward()
    grads = collections.OrderedDict(
        (n, t.grad if t.grad is not None else torch.zeros_like(t)) for n, t in p.items())
    return logits.detach(), loss.detach(), grads


# ----------------------------------------------------------------------------------------------------
# WKV-only vectors
# ----------------------------------------------------------------------------------------------------

def random_wkv_inputs(gen, B=2, T=40, H=2, N=64):
    """fp32 inputs shaped like the model's: w in (0.55, 1), a = -kk, b = kk*gate with kk unit per head."""
    def randn(*shape):
        return torch.randn(shape, generator=gen)

    r, k, v = randn(B, T, H, N), randn(B, T, H, N), randn(B, T, H, N)
    w = 0.55 + 0.45 * torch.rand((B, T, H, N), generator=gen)
    kk = randn(B, T, H, N)
    kk = kk / torch.linalg.vector_norm(kk, dim=-1, keepdim=True)
    gate = torch.rand((B, T, H, N), generator=gen)
    s0 = 0.5 * randn(B, H, N, N)
    dy_weights, dsT_weights = randn(B, T, H, N), randn(B, H, N, N)
    inputs = collections.OrderedDict(
        [("r", r), ("w", w), ("k", k), ("v", v), ("a", -kk), ("b", kk * gate), ("s0", s0),
         ("dy_weights", dy_weights), ("dsT_weights", dsT_weights)])
    return collections.OrderedDict((n, t.float().contiguous()) for n, t in inputs.items())


def wkv_outputs(inputs):
    """y, sT and d(sum(y*dy_weights) + sum(sT*dsT_weights)) / d{r,w,k,v,a,b,s0}, float64."""
    leaves = {n: inputs[n].to(torch.float64).requires_grad_(True) for n in "r w k v a b s0".split()}
    y, sT = wkv7_loop(*(leaves[n] for n in "r w k v a b s0".split()))
    loss = (y * inputs["dy_weights"].double()).sum() + (sT * inputs["dsT_weights"].double()).sum()
    loss.backward()
    out = collections.OrderedDict([("y", y.detach()), ("sT", sT.detach())])
    for n in "r w k v a b s0".split():
        out["d" + n] = leaves[n].grad
    return out


# ----------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------

def validate_tiny_model():
    """Logits at the last of tokens [34, 105, 110] vs rwkv.cpp's expected logits.  Returns max |diff|."""
    sd = torch.load(TINY_MODEL, map_location="cpu")
    p = {n: t.to(torch.float64) for n, t in sd.items()}
    with torch.no_grad():
        logits = forward(p, torch.tensor([[34, 105, 110]]))[0, -1]
    with open(TINY_LOGITS, "rb") as f:
        want = torch.frombuffer(bytearray(f.read()), dtype=torch.float32).to(torch.float64)
    return (logits - want).abs().max().item()


def validate_wkv_gradcheck():
    gen = torch.Generator().manual_seed(7)
    B, T, H, N = 1, 5, 2, 4
    def randn(*shape):
        return torch.randn(shape, generator=gen)
    kk = randn(B, T, H, N)
    kk = kk / kk.norm(dim=-1, keepdim=True)
    args = [randn(B, T, H, N), 0.55 + 0.45 * torch.rand((B, T, H, N), generator=gen),
            randn(B, T, H, N), randn(B, T, H, N), -kk, kk * torch.rand((B, T, H, N), generator=gen),
            randn(B, H, N, N)]
    args = [t.requires_grad_(True) for t in args]
    return torch.autograd.gradcheck(lambda *xs: wkv7_loop(*xs), args, eps=1e-6, atol=1e-7, rtol=1e-6)


def validate_model_fd():
    """Directional (Richardson-extrapolated) central differences of the CE loss (no L2Wrap) of a small
    random model vs autograd.  Returns the worst relative error over a few random directions."""
    gen = torch.Generator().manual_seed(11)
    sd = random_model(gen, n_layer=2, C=128, n_head=2, V=64, rank=32)
    tokens, targets = random_batch(gen, B=2, T=12, V=64)
    p = as_f64_leaves(sd)
    loss, _ = masked_ce(forward(p, tokens), targets)
    loss.backward()

    def central(dirs, h):
        with torch.no_grad():
            plus = {n: t + h * dirs[n] for n, t in p.items()}
            minus = {n: t - h * dirs[n] for n, t in p.items()}
            return (masked_ce(forward(plus, tokens), targets)[0]
                    - masked_ce(forward(minus, tokens), targets)[0]).item() / (2 * h)

    worst = 0.0
    for _ in range(4):
        # random direction, each tensor's part scaled like the tensor (matrices are ~1/sqrt(fan_in))
        dirs = {n: torch.randn(t.shape, generator=gen) * max(t.detach().pow(2).mean().sqrt().item(), 0.1)
                for n, t in p.items()}
        analytic = sum((t.grad * dirs[n]).sum().item() for n, t in p.items() if t.grad is not None)
        h = 1e-5   # Richardson extrapolation of two central differences: error O(h^4)
        numeric = (4 * central(dirs, h / 2) - central(dirs, h)) / 3
        worst = max(worst, abs(numeric - analytic) / abs(analytic))
    return worst


def validate_l2wrap():
    """The L2Wrap gradient difference on a small logits tensor equals the formula of the docstring."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn((2, 5, 7), generator=gen).requires_grad_(True)
    targets = torch.randint(0, 7, (2, 5), generator=gen)
    targets[0, 1] = -1
    targets[1, 3:] = -1
    with_wrap = torch.autograd.grad(training_loss(logits, targets), logits)[0]
    plain = torch.autograd.grad(masked_ce(logits, targets)[0], logits)[0]
    want = torch.zeros_like(plain)
    n = int((targets >= 0).sum())
    for b in range(2):
        for t in range(5):
            if targets[b, t] >= 0:
                row = logits[b, t].detach()
                j = int(row.argmax())
                want[b, t, j] = row[j] * 1e-4 / n
    fwd_same = training_loss(logits, targets).item() == masked_ce(logits, targets)[0].item()
    return fwd_same, (with_wrap - plain - want).abs().max().item()


def run_validation():
    ok = True
    diff = validate_tiny_model()
    good = diff < 1e-4
    ok &= good
    print("tiny rwkv.cpp model, logits after [34,105,110]: max |diff| %.3e (tol 1e-4) %s"
          % (diff, "PASS" if good else "FAIL"))
    good = validate_wkv_gradcheck()
    ok &= good
    print("WKV7 loop torch.autograd.gradcheck (B1 T5 H2 N4, float64): %s" % ("PASS" if good else "FAIL"))
    err = validate_model_fd()
    good = err < 1e-7
    ok &= good
    print("full model CE gradient vs central differences (4 directions): max rel err %.3e (tol 1e-7) %s"
          % (err, "PASS" if good else "FAIL"))
    fwd_same, err = validate_l2wrap()
    good = fwd_same and err < 1e-15
    ok &= good
    print("L2Wrap: forward unchanged %s, added gradient max err %.3e %s"
          % (fwd_same, err, "PASS" if good else "FAIL"))
    return ok


# ----------------------------------------------------------------------------------------------------
# Vector files
# ----------------------------------------------------------------------------------------------------

def f32(d):
    return collections.OrderedDict((n, t.detach().float().contiguous().clone()) for n, t in d.items())


def build_vectors():
    """Returns {file name: OrderedDict of tensors} for every committed vectors file."""
    gen = torch.Generator().manual_seed(MODEL_SEED)
    model = random_model(gen)
    tokens, targets = random_batch(gen)
    logits, loss, grads = model_outputs(model, tokens, targets)
    top2 = logits.topk(2, dim=-1).values
    gap = (top2[..., 0] - top2[..., 1]).min().item()
    if gap < 1e-3:
        raise SystemExit("argmax of some logits row is ambiguous in fp32 (gap %.2e); change the seed" % gap)
    batch = collections.OrderedDict([
        ("tokens", tokens.contiguous()), ("targets", targets.contiguous()),
        ("logits", logits.float().contiguous()), ("loss", loss.reshape(1).float()),
        ("l2wrap_included", torch.ones(1, dtype=torch.int64))])
    wkv_in = random_wkv_inputs(torch.Generator().manual_seed(WKV_SEED))
    wkv = collections.OrderedDict(wkv_in)
    wkv.update(f32(wkv_outputs(wkv_in)))
    return collections.OrderedDict([
        (GRAD_PREFIX + ".model.pth", model),
        (GRAD_PREFIX + ".grads.pth", f32(grads)),
        (GRAD_PREFIX + ".batch.pth", batch),
        (WKV_FILE, wkv)])


def recompute_outputs(files):
    """Outputs recomputed from the committed inputs (so the check is independent of the RNG)."""
    model = files[GRAD_PREFIX + ".model.pth"]
    batch = files[GRAD_PREFIX + ".batch.pth"]
    logits, loss, grads = model_outputs(model, batch["tokens"], batch["targets"])
    wkv_in = files[WKV_FILE]
    wkv = f32(wkv_outputs(wkv_in))
    return {GRAD_PREFIX + ".grads.pth": f32(grads),
            GRAD_PREFIX + ".batch.pth": {"logits": logits.float(), "loss": loss.reshape(1).float()},
            WKV_FILE: wkv}


def compare(name, got, want, rel_tol):
    """Relative error w.r.t. the tensor's max |value|; exact equality for integer tensors."""
    if got.shape != want.shape or got.dtype != want.dtype:
        print("  %s: shape/dtype %s %s vs %s %s FAIL" % (name, tuple(got.shape), got.dtype,
                                                         tuple(want.shape), want.dtype))
        return False
    if not want.is_floating_point() or rel_tol == 0:
        good = torch.equal(got, want)
        if not good:
            print("  %s: not bitwise equal FAIL" % name)
        return good
    scale = max(want.abs().max().item(), 1e-30)
    err = (got.double() - want.double()).abs().max().item() / scale
    good = err <= rel_tol
    if not good:
        print("  %s: max err / max|want| %.3e (tol %.1e) FAIL" % (name, err, rel_tol))
    return good


def check_files():
    """Compares the committed files with this script (see README.md); True if they agree."""
    ok = True
    committed = {}
    fresh = build_vectors()
    for fname in fresh:
        path = os.path.join(VEC_DIR, fname)
        if not os.path.exists(path):
            print("%s: missing (run without --check to write it)" % path)
            return False
        committed[fname] = torch.load(path, map_location="cpu")
    # 1. inputs regenerate bitwise (if this fails only, the RNG changed: outputs are still checked below)
    inputs_same = True
    for fname, d in fresh.items():
        for n, t in d.items():
            if fname.endswith(".model.pth") or n in ("tokens", "targets", "r", "w", "k", "v", "a", "b",
                                                     "s0", "dy_weights", "dsT_weights"):
                if n not in committed[fname] or not torch.equal(committed[fname][n], t):
                    inputs_same = False
    print("inputs regenerate bitwise from the seed: %s" % (
        "yes" if inputs_same else "NO (this torch draws other random numbers; not an error by itself)"))
    # 2. outputs recomputed from the committed inputs agree with the committed outputs
    for fname, d in recompute_outputs(committed).items():
        good = all(compare("%s[%s]" % (fname, n), t, committed[fname][n], 1e-5) for n, t in d.items())
        print("%s outputs recomputed from committed inputs: %s" % (fname, "PASS" if good else "FAIL"))
        ok &= good
    # 3. the committed files hold exactly the tensors this script writes
    for fname, d in fresh.items():
        good = list(committed[fname].keys()) == list(d.keys())
        if not good:
            print("%s: key list differs from what the script writes FAIL" % fname)
        ok &= good
    return ok


def write_files():
    os.makedirs(VEC_DIR, exist_ok=True)
    for fname, d in build_vectors().items():
        path = os.path.join(VEC_DIR, fname)
        torch.save(d, path)
        print("wrote %s (%d tensors, %d bytes)" % (path, len(d), os.path.getsize(path)))


# ----------------------------------------------------------------------------------------------------
# Sensitivity report
# ----------------------------------------------------------------------------------------------------

def neutral_value(name, t):
    """The value that switches a tensor's path off (or to its identity)."""
    leaf = name.split(".")[-1]
    if leaf == "weight" and (".ln" in name or name.startswith("ln_out")):
        return torch.ones_like(t)
    if leaf == "k_a":
        return torch.zeros_like(t)     # k unmodified
    if leaf == "k_k":
        return torch.ones_like(t)
    return torch.zeros_like(t)


def sensitivity():
    """RMS change of the logits (relative to their RMS) when each tensor is set to its neutral value."""
    gen = torch.Generator().manual_seed(MODEL_SEED)
    model = random_model(gen)
    tokens, _ = random_batch(gen)
    base = {n: t.double() for n, t in model.items()}
    with torch.no_grad():
        ref = forward(base, tokens)
        rms = ref.pow(2).mean().sqrt().item()
        rows = []
        for name in model:
            if name.startswith("blocks.0.att.v"):
                continue
            p = dict(base)
            p[name] = neutral_value(name, base[name])
            rows.append(((forward(p, tokens) - ref).pow(2).mean().sqrt().item() / rms, name))
    for rel, name in sorted(rows):
        print("%.4f  %s" % (rel, name))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="recompute and compare with committed files")
    ap.add_argument("--sensitivity", action="store_true", help="print per-tensor logit sensitivity")
    args = ap.parse_args()
    if args.sensitivity:
        sensitivity()
        return 0
    if not run_validation():
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

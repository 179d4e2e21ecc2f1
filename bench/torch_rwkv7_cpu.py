#!/usr/bin/python3
"""torch_rwkv7_cpu.py — speed baseline: one RWKV-7 (x070) training step in PyTorch on the CPU.

Contract:
  * Same model and loss as tests/reference/rwkv7_reference.py (reference/rwkv7.md §2, masked CE + L2Wrap),
    in fp32 with autograd, LoRA ranks from the current RWKV-LM formulas (§1.3, as trainer/rwkv7.c).
    WKV7 uses a chunked matrix form (chunk 16, no Python loop over time steps; derivation below).
  * Speed measures that a careful PyTorch user would take, all checked by --verify:
    - the head matmul, cross-entropy and L2Wrap are one autograd Function working in a persistent
      (BT, V) buffer (softmax in place, no fresh 134 MB tensors per step);
    - the embedding and head gradients accumulate into persistent buffers;
    - AdamW (torch.optim.AdamW's exact update, RWKV-LM's groups of §5.3: wd only on 2-D *.weight,
      w0 at 2x lr, betas 0.9/0.99, eps 1e-18) with global grad-norm clipping at 1.0 folded in, applied
      in cache-sized slices: one read and write of p, m, v, g per step.
  * OMP_WAIT_POLICY defaults to PASSIVE (see below); set it in the environment to override.
  * Timing: --warmup untimed steps, then --steps timed steps; prints one JSON line
    {"impl": "pytorch", "tokens_per_s": ..., "step_s": ..., "n_params": ...} where step_s is the MEDIAN
    wall time of a timed step (forward + backward + clip + AdamW; robust to a busy shared machine) and
    tokens_per_s = batch * ctx / step_s.
  * --verify checks the chunked WKV7 against the float64 step-by-step loop of the reference (float64
    and fp32, forward and all gradients), this fp32 loss and gradients against the float64 reference
    model, and the sliced AdamW against torch.optim.AdamW + clip_grad_norm_.

Chunked WKV7 (per batch and head; S[i][j], i = value, j = key; time-major matrices, rows = steps).
Within a chunk of K steps starting from state S0, let P_t = w_1 ⊙ ... ⊙ w_t (P_0 = 1) and u_t = S_{t-1} a_t.
Unrolling S_t = S_{t-1} diag(w_t) + u_t b_tᵀ + v_t k_tᵀ gives
    S_t = S0 diag(P_t) + Σ_{s≤t} (v_s k_sᵀ + u_s b_sᵀ) diag(P_t / P_s).
With wq_t = r_t⊙P_t, wa_t = a_t⊙P_{t-1}, kwi_s = k_s/P_s, bwi_s = b_s/P_s, kp_s = k_s⊙P_K/P_s, bp_s = b_s⊙P_K/P_s:
    U = WA S0ᵀ + A_ak V + A_ab U,  A_ak = tril₋₁(WA KWIᵀ), A_ab = tril₋₁(WA BWIᵀ)
      ⇒ U = U0 + W̃ S0ᵀ with [U0 | W̃] = (I − A_ab)⁻¹ [A_ak V | WA]        (unit lower-triangular solve)
    Y = WQ S0ᵀ + tril₀(WQ KWIᵀ) V + tril₀(WQ BWIᵀ) U = Y0 + Q S0ᵀ,  Y0 = L_k V + L_b U0,  Q = WQ + L_b W̃
    S_K = S0 (diag(P_K) + W̃ᵀ BP) + (Vᵀ KP + U0ᵀ BP) = S0 M + D.
Everything except the chain S_{c+1} = S_c M_c + D_c (one batched N×N matmul per chunk) is computed for all
chunks at once; then Y = Y0 + Q S_cᵀ for all chunks.  P is formed in log space (cumsum of log w);
w ≥ 0.545 bounds 1/P_t by 0.545⁻¹⁶ ≈ 1.6e4, which fp32 represents without trouble.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

# Threads that sleep at OpenMP barriers instead of spinning: on a shared machine a spinning thread whose
# partner was descheduled makes every parallel op wait a scheduler quantum (measured: 20 s vs 2.7 s per
# step with one other busy process on 2 cores).  Must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

DECAY_SCALE = math.exp(-0.5)
CHUNK = 16


# ----------------------------------------------------------------------------------------------------
# Chunked WKV7
# ----------------------------------------------------------------------------------------------------

def wkv7_chunked(r, w, k, v, a, b, s0=None, chunk=CHUNK):
    """r, w, k, v, a, b: (B, T, H, N); s0: (B, H, N, N) or None (zeros).  Returns y (B, T, H, N), sT."""
    B, T, H, N = r.shape
    K = chunk
    pad = (-T) % K
    nc = (T + pad) // K
    # one contiguous (6, B, H, NC, K, N) copy; padding log w with 0 means w = 1, so padded steps keep the state
    x = torch.stack([r, torch.log(w), k, v, a, b])                           # (6, B, T, H, N)
    if pad:
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
    x = x.view(6, B, nc, K, H, N).permute(0, 1, 4, 2, 3, 5).contiguous()
    r, logw, k, v, a, b = x.unbind(0)                                       # (B, H, NC, K, N) each

    lp = logw.cumsum(dim=3)                                                 # log P_t
    p_t = torch.exp(lp)                                                     # P_t
    p_inv = torch.exp(-lp)                                                  # 1 / P_t
    p_end = p_t[..., -1:, :]                                                # P_K
    p_prev = torch.cat([torch.ones_like(p_end), p_t[..., :-1, :]], dim=3)   # P_{t-1}
    wq, wa = r * p_t, a * p_prev
    kwi, bwi = k * p_inv, b * p_inv
    kp, bp = kwi * p_end, bwi * p_end

    # [[A_ak, A_ab], [L_k, L_b]] = tril([WA; WQ] [KWI; BWI]^T): strictly lower for WA rows, inclusive for WQ
    ones = torch.ones(K, K, dtype=r.dtype)
    mask = torch.cat([torch.tril(ones, -1).repeat(1, 2), torch.tril(ones).repeat(1, 2)], dim=0)
    prod = (torch.cat([wa, wq], dim=3) @ torch.cat([kwi, bwi], dim=3).mT) * mask   # (B, H, NC, 2K, 2K)
    a_ak, a_ab = prod[..., :K, :K], prod[..., :K, K:]
    l_k, l_b = prod[..., K:, :K], prod[..., K:, K:]
    eye = torch.eye(K, dtype=r.dtype)
    sol = torch.linalg.solve_triangular(eye - a_ab, torch.cat([a_ak @ v, wa], dim=-1),
                                        upper=False, unitriangular=True)
    u0, wt = sol[..., :N], sol[..., N:]                                     # (B, H, NC, K, N) each
    y0 = l_k @ v + l_b @ u0
    q = wq + l_b @ wt
    m = torch.diag_embed(p_end[..., 0, :]) + wt.mT @ bp                     # (B, H, NC, N, N)
    d = v.mT @ kp + u0.mT @ bp

    s = torch.zeros(B, H, N, N, dtype=r.dtype) if s0 is None else s0
    starts = []
    for m_c, d_c in zip(m.unbind(2), d.unbind(2)):   # unbind: one stacked gradient, not one per chunk
        starts.append(s)
        s = torch.baddbmm(d_c.flatten(0, 1), s.flatten(0, 1), m_c.flatten(0, 1)).view(B, H, N, N)
    y = y0 + q @ torch.stack(starts, dim=2).mT                              # (B, H, NC, K, N)
    y = y.permute(0, 2, 3, 1, 4).reshape(B, nc * K, H, N)[:, :T]
    return y, s


# ----------------------------------------------------------------------------------------------------
# Model (fp32)
# ----------------------------------------------------------------------------------------------------

def lora_rank(factor, C):
    """Current RWKV-LM formula max(32, round(factor*sqrt(C)/32)*32); Python round is half-to-even."""
    return max(32, round(factor * math.sqrt(C) / 32) * 32)


def init_params(n_layer, C, V, head_size, gen):
    """Random fp32 parameters with official names; scales keep every path active (as in the reference)."""
    H = C // head_size
    dw = da = lora_rank(2.5, C)
    dv, dg = lora_rank(1.7, C), lora_rank(5.0, C)

    def normal(shape, std, mean=0.0):
        return mean + std * torch.randn(shape, generator=gen)

    def uniform(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    def mat(out_dim, in_dim):
        return normal((out_dim, in_dim), in_dim ** -0.5)

    p = {"emb.weight": normal((V, C), 1.0)}
    vec = (1, 1, C)
    for i in range(n_layer):
        pre = "blocks.%d." % i
        for ln in ["ln1", "ln2"] + (["ln0"] if i == 0 else []):
            p[pre + ln + ".weight"] = normal((C,), 0.1, 1.0)
            p[pre + ln + ".bias"] = normal((C,), 0.1)
        att = pre + "att."
        for m in "rwkvag":
            p[att + "x_" + m] = uniform(vec, 0.0, 1.0)
        for name, rank, std0 in (("w", dw, 1.0), ("a", da, 0.5), ("v", dv, 0.5)):
            p[att + name + "0"] = normal(vec, std0)
            p[att + name + "1"] = normal((C, rank), C ** -0.5)
            p[att + name + "2"] = normal((rank, C), rank ** -0.5)
        p[att + "g1"] = normal((C, dg), C ** -0.5)
        p[att + "g2"] = normal((dg, C), dg ** -0.5)
        p[att + "k_k"] = uniform(vec, 0.5, 1.5)
        p[att + "k_a"] = uniform(vec, 0.5, 1.5)
        p[att + "r_k"] = normal((H, head_size), 0.1)
        for lin in ("receptance", "key", "value", "output"):
            p[att + lin + ".weight"] = mat(C, C)
        p[att + "ln_x.weight"] = normal((C,), 0.1, 1.0)
        p[att + "ln_x.bias"] = normal((C,), 0.1)
        p[pre + "ffn.x_k"] = uniform(vec, 0.0, 1.0)
        p[pre + "ffn.key.weight"] = mat(4 * C, C)
        p[pre + "ffn.value.weight"] = mat(C, 4 * C)
    p["ln_out.weight"] = normal((C,), 0.1, 1.0)
    p["ln_out.bias"] = normal((C,), 0.1)
    p["head.weight"] = mat(V, C)
    return {n: t.float().requires_grad_(True) for n, t in p.items()}


def token_shift(x):
    """(B, T, C): x[t-1], zero at t = 0."""
    return F.pad(x, (0, 0, 1, -1))


def time_mix(p, pre, x, v_first, layer, n_head):
    B, T, C = x.shape
    N = C // n_head
    xx = token_shift(x) - x
    mix = torch.cat([p[pre + "x_" + m] for m in "rwkvag"], dim=0)            # (6, 1, C)
    xr, xw, xk, xv, xa, xg = (x + xx * mix[:, None]).unbind(0)              # 6 x (B, T, C)

    r = xr @ p[pre + "receptance.weight"].mT
    k = xk @ p[pre + "key.weight"].mT
    v = xv @ p[pre + "value.weight"].mT
    d = p[pre + "w0"] + torch.tanh(xw @ p[pre + "w1"]) @ p[pre + "w2"]
    w = torch.exp(-DECAY_SCALE * torch.sigmoid(d))                          # decay in (0.545, 1)
    if layer == 0:
        v_first = v
    else:
        v = torch.lerp(v, v_first, torch.sigmoid(p[pre + "v0"] + (xv @ p[pre + "v1"]) @ p[pre + "v2"]))
    a = torch.sigmoid(p[pre + "a0"] + (xa @ p[pre + "a1"]) @ p[pre + "a2"])
    g = torch.sigmoid(xg @ p[pre + "g1"]) @ p[pre + "g2"]
    kk = F.normalize((k * p[pre + "k_k"]).view(B, T, n_head, N), dim=-1, eps=1e-12)
    k = k * (1 + (a - 1) * p[pre + "k_a"])

    def heads(z):
        return z.view(B, T, n_head, N)

    y, _ = wkv7_chunked(heads(r), heads(w), heads(k), heads(v), -kk, kk * heads(a))
    y = F.group_norm(y.reshape(B * T, C), n_head, p[pre + "ln_x.weight"], p[pre + "ln_x.bias"], eps=64e-5)
    bonus = (heads(r * k) * p[pre + "r_k"]).sum(-1, keepdim=True) * heads(v)
    y = y.view(B, T, C) + bonus.view(B, T, C)
    return (y * g) @ p[pre + "output.weight"].mT, v_first


def channel_mix(p, pre, x):
    xk = x + (token_shift(x) - x) * p[pre + "x_k"]
    return torch.relu(xk @ p[pre + "key.weight"].mT).square() @ p[pre + "value.weight"].mT


class EmbeddingInto(torch.autograd.Function):
    """emb[tokens]; the backward scatter-adds straight into a persistent (V, C) gradient buffer
    (no fresh (V, C) tensor per step) and returns no gradient for the weight itself."""

    @staticmethod
    def forward(ctx, tokens, weight, dweight):
        ctx.save_for_backward(tokens)
        ctx.dweight = dweight
        return weight[tokens]

    @staticmethod
    def backward(ctx, dx):
        (tokens,) = ctx.saved_tensors
        ctx.dweight.index_add_(0, tokens.flatten(), dx.flatten(0, -2))
        return None, None, None


class HeadCrossEntropyL2Wrap(torch.autograd.Function):
    """logits = x @ head^T, masked mean cross-entropy (targets < 0 masked), and in the backward L2Wrap:
    dlogits = (softmax - onehot(target)) / n + onehot(argmax) * max * 1e-4 / n on unmasked rows.
    The (BT, V) logits live in a persistent buffer that is turned into softmax in place; the head
    gradient is accumulated into a persistent buffer; the weight itself gets no autograd gradient."""

    ROWS = 16   # softmax row block: keeps each in-place pass in cache

    @staticmethod
    def forward(ctx, x, weight, targets, logits, dweight):                  # (BT, C), (V, C), (BT,)
        torch.mm(x, weight.mT, out=logits)                                  # (BT, V)
        mask = targets >= 0
        n = mask.sum().clamp(min=1)
        target_logit = logits.gather(1, targets.clamp(min=0)[:, None])[:, 0]
        top, idx = logits.max(dim=1)
        lse = torch.empty_like(top)
        for r0 in range(0, logits.shape[0], HeadCrossEntropyL2Wrap.ROWS):
            rows = slice(r0, r0 + HeadCrossEntropyL2Wrap.ROWS)
            block = logits[rows].sub_(top[rows, None]).exp_()
            total = block.sum(dim=1)
            block.div_(total[:, None])                                      # softmax, in place
            lse[rows] = top[rows] + torch.log(total)
        ctx.save_for_backward(x, weight, targets, mask, n, top, idx)
        ctx.probs, ctx.dweight = logits, dweight
        return ((lse - target_logit) * mask).sum() / n

    @staticmethod
    def backward(ctx, grad_loss):
        x, weight, targets, mask, n, top, idx = ctx.saved_tensors
        rows = torch.arange(x.shape[0])
        scale = mask * (grad_loss / n)                                      # (BT,)
        dlogits = ctx.probs.mul_(scale[:, None])
        dlogits.index_put_((rows, targets.clamp(min=0)), -scale, accumulate=True)
        dlogits.index_put_((rows, idx), top * 1e-4 * scale, accumulate=True)
        ctx.dweight.addmm_(dlogits.mT, x)
        return dlogits @ weight, None, None, None, None


class BlockedAdamW:
    """AdamW exactly as torch.optim.AdamW (decoupled weight decay, bias correction), with the global
    grad-norm clipping coefficient folded in, applied in cache-sized slices so that every element of
    p, m, v and g is read and written once per step.  Groups as RWKV-LM (§5.3): 2-D *.weight decays;
    att.w0 gets 2x lr and no decay; the rest no decay.  Gradients named in `zero_after` are zeroed
    slice by slice after use (the persistent buffers of the embedding and the head)."""

    SLICE = 1 << 18

    def __init__(self, params, lr=6e-4, betas=(0.9, 0.99), eps=1e-18, weight_decay=0.001):
        self.params, self.betas, self.eps, self.t = params, betas, eps, 0
        self.hyper = {}
        for name, t in params.items():
            if name.endswith("att.w0"):
                self.hyper[name] = (2 * lr, 0.0)
            elif t.squeeze().dim() >= 2 and ".weight" in name:
                self.hyper[name] = (lr, weight_decay)
            else:
                self.hyper[name] = (lr, 0.0)
        self.m = {n: torch.zeros(t.numel()) for n, t in params.items()}
        self.v = {n: torch.zeros(t.numel()) for n, t in params.items()}
        self.scratch = torch.empty(self.SLICE)

    @torch.no_grad()
    def step(self, grads, clip=1.0, zero_after=()):
        self.t += 1
        b1, b2 = self.betas
        bc1, bc2_sqrt = 1 - b1 ** self.t, math.sqrt(1 - b2 ** self.t)
        for name, t in self.params.items():
            lr, wd = self.hyper[name]
            p, g, m, v = t.view(-1), grads[name].view(-1), self.m[name], self.v[name]
            for s0 in range(0, p.numel(), self.SLICE):
                sl = slice(s0, s0 + self.SLICE)
                ps, gs, ms, vs = p[sl], g[sl], m[sl], v[sl]
                if clip != 1.0:
                    gs.mul_(clip)
                if wd:
                    ps.mul_(1 - lr * wd)
                ms.mul_(b1).add_(gs, alpha=1 - b1)
                vs.mul_(b2).addcmul_(gs, gs, value=1 - b2)
                denom = torch.sqrt(vs, out=self.scratch[:ps.numel()]).div_(bc2_sqrt).add_(self.eps)
                ps.addcdiv_(ms, denom, value=-lr / bc1)
                if name in zero_after:
                    gs.zero_()


def hidden(p, tokens, n_layer, n_head, demb):
    """Final LayerNorm output (B, T, C)."""
    C = p["emb.weight"].shape[1]
    x = EmbeddingInto.apply(tokens, p["emb.weight"], demb)
    x = F.layer_norm(x, (C,), p["blocks.0.ln0.weight"], p["blocks.0.ln0.bias"], 1e-5)
    v_first = None
    for i in range(n_layer):
        pre = "blocks.%d." % i
        h = F.layer_norm(x, (C,), p[pre + "ln1.weight"], p[pre + "ln1.bias"], 1e-5)
        dx, v_first = time_mix(p, pre + "att.", h, v_first, i, n_head)
        x = x + dx
        h = F.layer_norm(x, (C,), p[pre + "ln2.weight"], p[pre + "ln2.bias"], 1e-5)
        x = x + channel_mix(p, pre + "ffn.", h)
    return F.layer_norm(x, (C,), p["ln_out.weight"], p["ln_out.bias"], 1e-5)


class Trainer:
    """One model's parameters, persistent buffers (logits, emb/head gradients) and optimizer."""

    PERSISTENT = ("emb.weight", "head.weight")

    def __init__(self, p, n_layer, n_head, rows):
        self.p, self.n_layer, self.n_head = p, n_layer, n_head
        self.dbig = {n: torch.zeros_like(p[n]) for n in self.PERSISTENT}
        self.logits = torch.empty(rows, p["head.weight"].shape[0])
        self.opt = BlockedAdamW(p)

    def loss_and_grads(self, tokens, targets):
        """Forward and backward; returns (loss, {name: gradient})."""
        for t in self.p.values():
            t.grad = None
        x = hidden(self.p, tokens, self.n_layer, self.n_head, self.dbig["emb.weight"])
        loss = HeadCrossEntropyL2Wrap.apply(x.flatten(0, 1), self.p["head.weight"], targets.flatten(),
                                            self.logits, self.dbig["head.weight"])
        loss.backward()
        grads = {n: self.dbig[n] if n in self.dbig else t.grad for n, t in self.p.items()}
        return loss.item(), {n: g if g is not None else torch.zeros_like(self.p[n]) for n, g in grads.items()}

    def step(self, tokens, targets, max_norm=1.0):
        loss, grads = self.loss_and_grads(tokens, targets)
        norm = math.sqrt(sum(torch.linalg.vector_norm(g).item() ** 2 for g in grads.values()))
        clip = min(1.0, max_norm / (norm + 1e-6))                          # as clip_grad_norm_
        self.opt.step(grads, clip, zero_after=self.PERSISTENT)
        return loss


# ----------------------------------------------------------------------------------------------------
# Verification against the float64 reference
# ----------------------------------------------------------------------------------------------------

def load_reference():
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(os.path.dirname(here), "tests", "reference"))
    import rwkv7_reference
    torch.set_default_dtype(torch.float32)   # the reference module sets float64 on import
    return rwkv7_reference


def rel_err(got, want):
    return ((got.double() - want.double()).abs().max() / want.double().abs().max()).item()


def verify_wkv(ref):
    """Chunked vs loop: forward y, sT and gradients of every input, float64 and fp32, T = 40 (padded)."""
    gen = torch.Generator().manual_seed(5)
    B, T, H, N = 2, 40, 2, 64
    kk = F.normalize(torch.randn((B, T, H, N), generator=gen, dtype=torch.float64), dim=-1)
    inputs = [torch.randn((B, T, H, N), generator=gen, dtype=torch.float64),
              torch.exp(-DECAY_SCALE * torch.sigmoid(2 * torch.randn((B, T, H, N), generator=gen,
                                                                     dtype=torch.float64))),
              torch.randn((B, T, H, N), generator=gen, dtype=torch.float64),
              torch.randn((B, T, H, N), generator=gen, dtype=torch.float64),
              -kk, kk * torch.rand((B, T, H, N), generator=gen, dtype=torch.float64),
              torch.randn((B, H, N, N), generator=gen, dtype=torch.float64)]
    wy = torch.randn((B, T, H, N), generator=gen, dtype=torch.float64)
    ws = torch.randn((B, H, N, N), generator=gen, dtype=torch.float64)

    def run(fn, dtype):
        xs = [t.detach().to(dtype).clone().requires_grad_(True) for t in inputs]
        y, s = fn(*xs)
        ((y * wy.to(dtype)).sum() + (s * ws.to(dtype)).sum()).backward()
        return [y, s] + [x.grad for x in xs]

    names = "y sT dr dw dk dv da db ds0".split()
    want = run(ref.wkv7_loop, torch.float64)
    ok = True
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        got = run(wkv7_chunked, dtype)
        errs = [rel_err(g, w) for g, w in zip(got, want)]
        good = max(errs) < tol
        ok &= good
        print("chunked WKV7 (%s) vs float64 loop, max err/max|ref| over %s: %.2e (tol %.0e) %s"
              % (str(dtype).replace("torch.", ""), "/".join(names), max(errs), tol,
                 "PASS" if good else "FAIL"))
    return ok


def verify_model(ref):
    """This fp32 model (chunked WKV, fused head/CE/L2Wrap) vs the float64 reference: loss and gradients."""
    gen = torch.Generator().manual_seed(6)
    n_layer, C, V, T = 2, 128, 256, 48
    p = init_params(n_layer, C, V, 64, gen)
    tokens = torch.randint(0, V, (2, T), generator=gen)
    targets = torch.randint(0, V, (2, T), generator=gen)
    targets[1, -5:] = -1
    loss, grads = Trainer(p, n_layer, C // 64, 2 * T).loss_and_grads(tokens, targets)
    _, want_loss, want_grads = ref.model_outputs({n: t.detach() for n, t in p.items()}, tokens, targets)
    err_loss = abs(loss - want_loss.item()) / want_loss.item()
    err_grads = max(rel_err(grads[n], want_grads[n]) for n in p if want_grads[n].abs().max() > 0)
    good = err_loss < 1e-6 and err_grads < 5e-5
    print("fp32 training loss/gradients vs float64 reference (L2 C128 V256 T48, masked targets): "
          "loss err %.2e (tol 1e-6), grads err/max|ref| %.2e (tol 5e-5) %s"
          % (err_loss, err_grads, "PASS" if good else "FAIL"))
    return good


def verify_adamw():
    """BlockedAdamW (slice 1000, clipping folded in) vs torch.optim.AdamW after clip_grad_norm_, 3 steps."""
    gen = torch.Generator().manual_seed(8)
    p = init_params(1, 64, 3000, 64, gen)
    q = {n: t.detach().clone().requires_grad_(True) for n, t in p.items()}
    ours = BlockedAdamW(p)
    ours.SLICE = 1000
    ours.scratch = torch.empty(1000)
    groups = [{"params": [q[n]], "lr": lr, "weight_decay": wd} for n, (lr, wd) in ours.hyper.items()]
    theirs = torch.optim.AdamW(groups, betas=(0.9, 0.99), eps=1e-18)
    for _ in range(3):
        grads = {n: torch.randn(t.shape, generator=gen) for n, t in p.items()}
        norm = math.sqrt(sum(g.norm().item() ** 2 for g in grads.values()))
        for n, t in q.items():
            t.grad = grads[n].clone()
        torch.nn.utils.clip_grad_norm_(list(q.values()), 1.0)
        theirs.step()
        ours.step(grads, min(1.0, 1.0 / (norm + 1e-6)))
    err = max(rel_err(p[n].detach(), q[n].detach()) for n in p)
    good = err < 1e-6
    print("BlockedAdamW vs torch.optim.AdamW + clip_grad_norm_ (3 steps): max err/max|p| %.2e (tol 1e-6) %s"
          % (err, "PASS" if good else "FAIL"))
    return good


# ----------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-embd", type=int, default=512)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--head-size", type=int, default=64)
    ap.add_argument("--verify", action="store_true", help="check against the float64 reference and exit")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.verify:
        ref = load_reference()
        results = [verify_wkv(ref), verify_model(ref), verify_adamw()]
        return 0 if all(results) else 1

    gen = torch.Generator().manual_seed(0)
    p = init_params(args.n_layer, args.n_embd, args.vocab, args.head_size, gen)
    trainer = Trainer(p, args.n_layer, args.n_embd // args.head_size, args.batch * args.ctx)
    tokens = torch.randint(0, args.vocab, (args.batch, args.ctx), generator=gen)
    targets = torch.randint(0, args.vocab, (args.batch, args.ctx), generator=gen)
    for _ in range(args.warmup):
        trainer.step(tokens, targets)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = trainer.step(tokens, targets)
        times.append(time.perf_counter() - t0)
    if not math.isfinite(loss):
        print("loss is not finite (%r)" % loss, file=sys.stderr)
        return 1
    step_s = statistics.median(times)
    print(json.dumps({"impl": "pytorch", "tokens_per_s": round(args.batch * args.ctx / step_s, 1),
                      "step_s": round(step_s, 4), "n_params": sum(t.numel() for t in p.values())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

// kernels.h — the backend-neutral compute API of modrwkv.
//
// Contract (DESIGN.md, "The kernel API"):
// - The model is written once against the table `KernelOps`; each backend (cpu/, later cuda/) fills it.
// - Operations take buffers the caller allocated through the backend (be->alloc) and shapes; they never
//   allocate device memory, never open files and know nothing of models, ranks or names. (CPU ops may
//   take small host scratch for per-row intermediates, e.g. the (N, H) sums of kprep/bonus backward.)
// - Layout is row-major and contiguous. Activations are (B, T, C) with C fastest; (N, C) means N rows.
// - Gradient convention (as llm.c): gradients of PARAMETERS always accumulate (+=) and may be NULL (a
//   frozen parameter: its gradient is not computed). Gradients of ACTIVATIONS are written (=) unless the
//   comment of the op says "+=" (the residual stream).
// - Results are deterministic for a fixed backend configuration (thread count): reductions over rows
//   are done in a fixed order, never with racy atomics.
// - CPU backend: fp32 everywhere, OpenBLAS sgemm, OpenMP threads.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct Backend Backend;

typedef struct KernelOps {
    // ---------------------------------------------------------------- dense algebra
    // C(M,N) = alpha * op(A) @ op(B) + beta * C, op(A) is (M,K), op(B) is (K,N); row-major with
    // leading dimensions lda/ldb/ldc; trans != 0 means the stored matrix is the transpose.
    void (*gemm)(Backend* be, int transA, int transB, int M, int N, int K, float alpha,
                 const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);

    // ---------------------------------------------------------------- normalisation
    // LayerNorm over the last dimension, biased variance. out, inp: (N, C); mean, rstd: (N) saved.
    void (*layernorm_forward)(Backend* be, float* out, float* mean, float* rstd, const float* inp,
                              const float* weight, const float* bias, int N, int C, float eps);
    // dinp += ...; dweight += ...; dbias += ... (dweight/dbias may be NULL for a frozen norm).
    void (*layernorm_backward)(Backend* be, float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, const float* mean, const float* rstd,
                               int N, int C);
    // GroupNorm: each row of C channels is G contiguous groups of C/G; statistics per (row, group).
    // out, inp: (N, C); mean, rstd: (N, G).
    void (*groupnorm_forward)(Backend* be, float* out, float* mean, float* rstd, const float* inp,
                              const float* weight, const float* bias, int N, int C, int G, float eps);
    // dinp = ...; dweight += ...; dbias += ...
    void (*groupnorm_backward)(Backend* be, float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, const float* mean, const float* rstd,
                               int N, int C, int G);

    // ---------------------------------------------------------------- token shift (n-way lerp)
    // xm[m][b][t][c] = x[b][t][c] + (prev[b][t][c] - x[b][t][c]) * mu[m][c], m < n_mix,
    // prev[b][t] = x[b][t-1] for t > 0 and x_prev[b] for t == 0 (x_prev NULL: zeros).
    // x: (B, T, C); x_prev: (B, C) or NULL; mu: (n_mix, C); xm: (n_mix, B, T, C).
    void (*tokenshift_forward)(Backend* be, float* xm, const float* x, const float* x_prev, const float* mu,
                               int n_mix, int B, int T, int C);
    // dx += ...; dmu += ...; dx_prev = ... (may be NULL). dxm: (n_mix, B, T, C).
    void (*tokenshift_backward)(Backend* be, float* dx, float* dx_prev, float* dmu, const float* dxm,
                                const float* x, const float* x_prev, const float* mu,
                                int n_mix, int B, int T, int C);

    // ---------------------------------------------------------------- WKV7 recurrence
    // Per (b, head h), with S an (N, N) fp32 state (S[i][j]: i value index, j key index):
    //   sa_i = sum_j a_j S[i][j];  S[i][j] = S[i][j] w_j + sa_i b_j + v_i k_j;  y_i = sum_j S[i][j] r_j
    // r, w, k, v, a, b, y: (B, T, H, N) with w the multiplicative decay in (0, 1).
    // s0: (B, H, N, N) initial state or NULL (zeros); sT: (B, H, N, N) final state or NULL.
    // ckpt: (B, H, n_chunks, N, N) with n_chunks = ceil(T / WKV7_CHUNK): chunk c holds the state
    // after step min(16c + 15, T - 1); NULL when no backward will follow (inference).
    void (*wkv7_forward)(Backend* be, float* y, float* sT, float* ckpt, const float* r, const float* w,
                         const float* k, const float* v, const float* a, const float* b, const float* s0,
                         int B, int T, int H, int N);
    // dr, dw, dk, dv, da, db = ... (B, T, H, N); ds0 = dL/ds0 (B, H, N, N) or NULL.
    // dy: (B, T, H, N); dsT: dL/dsT or NULL (zero). ckpt and s0 as given to the forward.
    void (*wkv7_backward)(Backend* be, float* dr, float* dw, float* dk, float* dv, float* da, float* db,
                          float* ds0, const float* dy, const float* dsT, const float* r, const float* w,
                          const float* k, const float* v, const float* a, const float* b, const float* s0,
                          const float* ckpt, int B, int T, int H, int N);

    // ---------------------------------------------------------------- elementwise activations (n values)
    void (*relu2_forward)(Backend* be, float* out, const float* inp, size_t n);        // relu(x)^2
    void (*relu2_backward)(Backend* be, float* dinp, const float* dout, const float* inp, size_t n);
    void (*sigmoid_forward)(Backend* be, float* out, const float* inp, size_t n);
    void (*sigmoid_backward)(Backend* be, float* dinp, const float* dout, const float* out, size_t n);
    void (*tanh_forward)(Backend* be, float* out, const float* inp, size_t n);
    void (*tanh_backward)(Backend* be, float* dinp, const float* dout, const float* out, size_t n);

    // ---------------------------------------------------------------- embedding
    // out (N, C) = table[idx[n]]; idx in [0, V).
    void (*embedding_forward)(Backend* be, float* out, const int32_t* idx, const float* table, int N, int C);
    // dtable[idx[n]] += dout[n], deterministic (rows summed in increasing n).
    void (*embedding_backward)(Backend* be, float* dtable, const float* dout, const int32_t* idx,
                               int N, int C, int V);

    // ---------------------------------------------------------------- loss
    // Masked softmax cross-entropy over logits (N, V); targets[n] < 0 means "not trained".
    // losses[n] = -log softmax(logits[n])[targets[n]] (0 for masked rows). If dlogits != NULL:
    //   dlogits[n] = dloss * (softmax - onehot(target)) + l2wrap * max_v(logits[n]) * onehot(argmax)
    // for trained rows and 0 for masked rows (dlogits may alias logits). Never stores probabilities.
    void (*crossentropy_forward_backward)(Backend* be, float* losses, float* dlogits, const float* logits,
                                          const int32_t* targets, int N, int V, float dloss, float l2wrap);

    // ---------------------------------------------------------------- optimizer
    // AdamW (decoupled weight decay, bias-corrected; DeepSpeed FusedAdam adam_w_mode), g = grad*grad_scale:
    //   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
    //   p -= lr * ( (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps) + weight_decay * p ).
    void (*adamw_update)(Backend* be, float* param, const float* grad, float* m, float* v, size_t n,
                         float lr, float beta1, float beta2, float eps, float weight_decay, int step,
                         float grad_scale);
    // sum of squares of n values, accumulated in double in a fixed order.
    double (*sum_squares)(Backend* be, const float* x, size_t n);

    // ---------------------------------------------------------------- plain vector ops (n values)
    void (*zero)(Backend* be, float* x, size_t n);                               // x = 0
    void (*copy)(Backend* be, float* dst, const float* src, size_t n);           // dst = src
    void (*axpy)(Backend* be, float* y, float alpha, const float* x, size_t n);  // y += alpha x
    void (*mul)(Backend* be, float* out, const float* a, const float* b, size_t n); // out = a b

    // ---------------------------------------------------------------- RWKV-7 TimeMix elementwise ops
    // All on (N, C) rows (N = B*T tokens) with per-channel vectors (C); heads are C/hs groups of hs.
    // Decay: d = pre + w0; w = exp(-exp(-0.5) * sigmoid(d)) in (0.545, 1). Saves d for the backward.
    void (*rwkv7_decay_forward)(Backend* be, float* w, float* d, const float* pre, const float* w0, int N, int C);
    // dpre = dw * w * (-exp(-0.5)) * s (1 - s), s = sigmoid(d); dw0 += sum over rows of dpre.
    void (*rwkv7_decay_backward)(Backend* be, float* dpre, float* dw0, const float* dw, const float* w, const float* d,
                                 int N, int C);
    // out = sigmoid(inp + bias) (the a and value-residual gates).
    void (*bias_sigmoid_forward)(Backend* be, float* out, const float* inp, const float* bias, int N, int C);
    // dinp = dout * out (1 - out); dbias += sum over rows of dinp.
    void (*bias_sigmoid_backward)(Backend* be, float* dinp, float* dbias, const float* dout, const float* out, int N, int C);
    // Value residual: v = vp + (vfirst - vp) * gamma.
    void (*rwkv7_vres_forward)(Backend* be, float* v, const float* vp, const float* vfirst, const float* gamma, size_t n);
    // dvp = dv (1 - gamma); dvfirst += dv gamma; dgamma = dv (vfirst - vp).
    void (*rwkv7_vres_backward)(Backend* be, float* dvp, float* dvfirst, float* dgamma, const float* dv, const float* vp,
                                const float* vfirst, const float* gamma, size_t n);
    // Key preparation: kk = per-head L2-normalise(k0 * k_k) (norm clamped at 1e-12); kmod = k0 (1 + (a - 1) k_a);
    // wa = -kk; wb = kk * a (the WKV7 a and b inputs).
    void (*rwkv7_kprep_forward)(Backend* be, float* kk, float* kmod, float* wa, float* wb, const float* k0, const float* a,
                                const float* k_k, const float* k_a, int N, int C, int hs);
    // dk0 = ..., da = ... (from kmod and wb); dk_k += ..., dk_a += ... (sums over rows). There is no dkk
    // input: kk reaches the loss only through wa = -kk and wb, so its gradient arrives in dwa and dwb.
    void (*rwkv7_kprep_backward)(Backend* be, float* dk0, float* da, float* dk_k, float* dk_a, const float* dkmod,
                                 const float* dwa, const float* dwb, const float* k0, const float* a, const float* kk,
                                 const float* k_k, const float* k_a, int N, int C, int hs);
    // Bonus and gate: z = (n + s_h v) g with s_h = sum_{j in head h} r_j k_j r_k[h][j].  r_k: (C) = (H, hs).
    void (*rwkv7_bonus_gate_forward)(Backend* be, float* z, const float* n, const float* r, const float* k, const float* v,
                                     const float* r_k, const float* g, int N, int C, int hs);
    // Given dz: dg = dz (n + s_h v); dr += ds_h k r_k; dk += ds_h r r_k; dv += dz g s_h; dr_k += sum ds_h r k,
    // with ds_h = sum_{i in h} dz_i g_i v_i. (dn = dz g is computed with `mul`.)
    void (*rwkv7_bonus_gate_backward)(Backend* be, float* dg, float* dr, float* dk, float* dv, float* dr_k, const float* dz,
                                      const float* n, const float* r, const float* k, const float* v, const float* r_k,
                                      const float* g, int N, int C, int hs);

    // ---------------------------------------------------------------- encoders, projectors, adapters
    // GELU in three published forms (mode GELU_ERF: x Phi(x), Whisper; GELU_TANH: the tanh approximation,
    // SigLIP "gelu_pytorch_tanh"; GELU_QUICK: x sigmoid(1.702 x), CLIP "quick_gelu"). n values.
    void (*gelu_forward)(Backend* be, float* out, const float* inp, size_t n, int mode);
    void (*gelu_backward)(Backend* be, float* dinp, const float* dout, const float* inp, size_t n, int mode);  // dinp =
    void (*relu_forward)(Backend* be, float* out, const float* inp, size_t n);
    void (*relu_backward)(Backend* be, float* dinp, const float* dout, const float* out, size_t n);  // dinp = dout [out > 0]
    // out (N, C) += bias (C) on every row; bias_backward: dbias (C) += sum over rows of dout (N, C).
    void (*bias_add)(Backend* be, float* out, const float* bias, int N, int C);
    void (*bias_backward)(Backend* be, float* dbias, const float* dout, int N, int C);
    // Non-causal softmax attention per (b, h): P = softmax(scale Q K^T) over keys, out = P V.
    // q, k, v, out: (B, T, H, D) (rows of H*D, as produced by the q/k/v projections); probs: (B, H, T, T) saved.
    void (*attention_forward)(Backend* be, float* out, float* probs, const float* q, const float* k, const float* v,
                              int B, int T, int H, int D, float scale);
    // dq, dk, dv = ... (B, T, H, D); scratch: (B, H, T, T) floats of working memory.
    void (*attention_backward)(Backend* be, float* dq, float* dk, float* dv, float* scratch, const float* dout,
                               const float* probs, const float* q, const float* k, const float* v, int B, int T, int H,
                               int D, float scale);
    // 1-D convolution as im2col + GEMM, channels last. x: (B, T_in, Cin); cols: (B, T_out, Cin * K) with
    //   cols[b][t][ci * K + j] = x[b][t * stride - pad_left + j * dilation][ci]  (0 outside [0, T_in)),
    // which matches a PyTorch Conv1d weight (Cout, Cin, K) viewed as (Cout, Cin * K).
    void (*im2col1d)(Backend* be, float* cols, const float* x, int B, int T_in, int Cin, int T_out, int K, int stride,
                     int dilation, int pad_left);
    // dx (B, T_in, Cin) += the scatter of dcols (B, T_out, Cin * K) back to the positions im2col1d read.
    void (*col2im1d)(Backend* be, float* dx, const float* dcols, int B, int T_in, int Cin, int T_out, int K, int stride,
                     int dilation, int pad_left);
    // ViT patch embedding input: img (B, Cc, S, S) -> patches (B, (S/P)^2, Cc * P * P), patches in row-major
    // order, values inside a patch in (c, ky, kx) order (a PyTorch Conv2d weight (D, Cc, P, P) as (D, Cc*P*P)).
    void (*patchify)(Backend* be, float* patches, const float* img, int B, int Cc, int S, int P);
    // Average pooling over tokens: out (B, T_in / s, C) (floor), out[t] = mean of x[t*s .. t*s + s - 1].
    void (*avgpool1d_forward)(Backend* be, float* out, const float* x, int B, int T_in, int C, int s);
    void (*avgpool1d_backward)(Backend* be, float* dx, const float* dout, int B, int T_in, int C, int s);  // dx +=
    // Bone's segmented sum: s (N, r), s[n][k] = sum_j x[n][j r + k] over the column blocks j of x (N, in),
    // x zero-padded on the right to a multiple of r. Backward: dx[n][i] += ds[n][i % r].
    void (*segment_sum)(Backend* be, float* s, const float* x, int N, int in, int r);
    void (*segment_sum_backward)(Backend* be, float* dx, const float* ds, int N, int in, int r);

    // ---------------------------------------------------------------- casts
    void (*f32_to_bf16)(Backend* be, uint16_t* out, const float* inp, size_t n);  // round to nearest even
    void (*bf16_to_f32)(Backend* be, float* out, const uint16_t* inp, size_t n);
} KernelOps;

enum { WKV7_CHUNK = 16 };
enum { GELU_ERF = 0, GELU_TANH = 1, GELU_QUICK = 2 };  // gelu modes

struct Backend {
    const char* name;   // "cpu"
    int n_threads;      // threads the backend uses for one op
    KernelOps k;        // the operations
    // memory (host memory on the CPU backend)
    void* (*alloc)(Backend* be, size_t bytes);        // zero-filled; exits with a message on failure
    void (*free)(Backend* be, void* p);
};

// Creates the CPU backend with n_threads threads (<= 0: all cores).
Backend* backend_cpu_create(int n_threads);
void backend_destroy(Backend* be);

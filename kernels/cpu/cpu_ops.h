// cpu_ops.h — the operations of the CPU backend, one `cpu_<op>` per entry of KernelOps.
//
// Contract: every function has exactly the signature of its KernelOps entry and the contract written
// there (kernels/kernels.h). All of them are fp32, run with the OpenMP thread count the backend set,
// and are deterministic: reductions over rows use a fixed partition that does not depend on the
// number of threads (row chunks of CPU_ROWS_PER_PARTIAL, or blocks of CPU_CHANNEL_BLOCK channels), so
// results are bit-identical for any thread count. The exception is gemm, whose blocking belongs to
// OpenBLAS: bit-identical for a fixed thread count only.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

// Below this many elements of work an op runs on the calling thread (a parallel region costs more).
enum { CPU_MIN_PARALLEL_WORK = 1 << 14 };

// Channels per block when an op parallelises over channels (parameter-gradient reductions).
enum { CPU_CHANNEL_BLOCK = 64 };

// Rows per partial sum when a reduction over rows is split into fixed chunks (independent of the
// thread count): the chunks are summed in parallel, then combined by cpu_sum_partials.
enum { CPU_ROWS_PER_PARTIAL = 32 };

// sum[i] = partial[0][i] + partial[1][i] + ... + partial[n_parts - 1][i], added in increasing order.
// partial: (n_parts, len). Parallel over blocks of i, so the result is independent of the thread count.
static inline void cpu_sum_partials(float* sum, const float* partial, int n_parts, size_t len) {
    size_t n_blocks = (len + CPU_CHANNEL_BLOCK - 1) / CPU_CHANNEL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)n_parts * len >= CPU_MIN_PARALLEL_WORK)
    for (size_t blk = 0; blk < n_blocks; blk++) {
        size_t i0 = blk * CPU_CHANNEL_BLOCK;
        size_t width = len - i0 < CPU_CHANNEL_BLOCK ? len - i0 : CPU_CHANNEL_BLOCK;
        float acc[CPU_CHANNEL_BLOCK] = {0};
        for (int p = 0; p < n_parts; p++) {
            const float* src = partial + (size_t)p * len + i0;
            for (size_t i = 0; i < width; i++) acc[i] += src[i];
        }
        for (size_t i = 0; i < width; i++) sum[i0 + i] = acc[i];
    }
}

// gemm.c
void cpu_gemm(Backend* be, int transA, int transB, int M, int N, int K, float alpha, const float* A, int lda,
              const float* B, int ldb, float beta, float* C, int ldc);

// layernorm.c (LayerNorm is GroupNorm with one group whose dinp accumulates)
void cpu_layernorm_forward(Backend* be, float* out, float* mean, float* rstd, const float* inp,
                           const float* weight, const float* bias, int N, int C, float eps);
void cpu_layernorm_backward(Backend* be, float* dinp, float* dweight, float* dbias, const float* dout,
                            const float* inp, const float* weight, const float* mean, const float* rstd,
                            int N, int C);

// groupnorm.c
void cpu_groupnorm_forward(Backend* be, float* out, float* mean, float* rstd, const float* inp,
                           const float* weight, const float* bias, int N, int C, int G, float eps);
void cpu_groupnorm_backward(Backend* be, float* dinp, float* dweight, float* dbias, const float* dout,
                            const float* inp, const float* weight, const float* mean, const float* rstd,
                            int N, int C, int G);
// The backward shared by both norms: dinp is accumulated (+=) when accumulate_dinp != 0, else written.
// dweight and dbias may each be NULL.
void cpu_norm_backward(float* dinp, int accumulate_dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, const float* mean, const float* rstd,
                       int N, int C, int G);

// tokenshift.c
void cpu_tokenshift_forward(Backend* be, float* xm, const float* x, const float* x_prev, const float* mu,
                            int n_mix, int B, int T, int C);
void cpu_tokenshift_backward(Backend* be, float* dx, float* dx_prev, float* dmu, const float* dxm,
                             const float* x, const float* x_prev, const float* mu, int n_mix, int B, int T,
                             int C);

// wkv7.c
void cpu_wkv7_forward(Backend* be, float* y, float* sT, float* ckpt, const float* r, const float* w,
                      const float* k, const float* v, const float* a, const float* b, const float* s0,
                      int B, int T, int H, int N);
void cpu_wkv7_backward(Backend* be, float* dr, float* dw, float* dk, float* dv, float* da, float* db,
                       float* ds0, const float* dy, const float* dsT, const float* r, const float* w,
                       const float* k, const float* v, const float* a, const float* b, const float* s0,
                       const float* ckpt, int B, int T, int H, int N);

// activations.c
void cpu_relu2_forward(Backend* be, float* out, const float* inp, size_t n);
void cpu_relu2_backward(Backend* be, float* dinp, const float* dout, const float* inp, size_t n);
void cpu_sigmoid_forward(Backend* be, float* out, const float* inp, size_t n);
void cpu_sigmoid_backward(Backend* be, float* dinp, const float* dout, const float* out, size_t n);
void cpu_tanh_forward(Backend* be, float* out, const float* inp, size_t n);
void cpu_tanh_backward(Backend* be, float* dinp, const float* dout, const float* out, size_t n);

// embedding.c
void cpu_embedding_forward(Backend* be, float* out, const int32_t* idx, const float* table, int N, int C);
void cpu_embedding_backward(Backend* be, float* dtable, const float* dout, const int32_t* idx, int N, int C,
                            int V);

// crossentropy.c
void cpu_crossentropy_forward_backward(Backend* be, float* losses, float* dlogits, const float* logits,
                                       const int32_t* targets, int N, int V, float dloss, float l2wrap);

// adamw.c
void cpu_adamw_update(Backend* be, float* param, const float* grad, float* m, float* v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int step, float grad_scale);
double cpu_sum_squares(Backend* be, const float* x, size_t n);

// rwkv7_ops.c (plain vector ops and the RWKV-7 TimeMix elementwise ops)
void cpu_zero(Backend* be, float* x, size_t n);
void cpu_copy(Backend* be, float* dst, const float* src, size_t n);
void cpu_axpy(Backend* be, float* y, float alpha, const float* x, size_t n);
void cpu_mul(Backend* be, float* out, const float* a, const float* b, size_t n);
void cpu_rwkv7_decay_forward(Backend* be, float* w, float* d, const float* pre, const float* w0, int N, int C);
void cpu_rwkv7_decay_backward(Backend* be, float* dpre, float* dw0, const float* dw, const float* w, const float* d,
                              int N, int C);
void cpu_bias_sigmoid_forward(Backend* be, float* out, const float* inp, const float* bias, int N, int C);
void cpu_bias_sigmoid_backward(Backend* be, float* dinp, float* dbias, const float* dout, const float* out, int N,
                               int C);
void cpu_rwkv7_vres_forward(Backend* be, float* v, const float* vp, const float* vfirst, const float* gamma,
                            size_t n);
void cpu_rwkv7_vres_backward(Backend* be, float* dvp, float* dvfirst, float* dgamma, const float* dv,
                             const float* vp, const float* vfirst, const float* gamma, size_t n);
void cpu_rwkv7_kprep_forward(Backend* be, float* kk, float* kmod, float* wa, float* wb, const float* k0,
                             const float* a, const float* k_k, const float* k_a, int N, int C, int hs);
void cpu_rwkv7_kprep_backward(Backend* be, float* dk0, float* da, float* dk_k, float* dk_a, const float* dkmod,
                              const float* dwa, const float* dwb, const float* k0, const float* a, const float* kk,
                              const float* k_k, const float* k_a, int N, int C, int hs);
void cpu_rwkv7_bonus_gate_forward(Backend* be, float* z, const float* n, const float* r, const float* k,
                                  const float* v, const float* r_k, const float* g, int N, int C, int hs);
void cpu_rwkv7_bonus_gate_backward(Backend* be, float* dg, float* dr, float* dk, float* dv, float* dr_k,
                                   const float* dz, const float* n, const float* r, const float* k, const float* v,
                                   const float* r_k, const float* g, int N, int C, int hs);

// cast.c
void cpu_f32_to_bf16(Backend* be, uint16_t* out, const float* inp, size_t n);
void cpu_bf16_to_f32(Backend* be, float* out, const uint16_t* inp, size_t n);

// nn_ops.c (encoders, projectors, adapters)
void cpu_gelu_forward(Backend* be, float* out, const float* inp, size_t n, int mode);
void cpu_gelu_backward(Backend* be, float* dinp, const float* dout, const float* inp, size_t n, int mode);
void cpu_relu_forward(Backend* be, float* out, const float* inp, size_t n);
void cpu_relu_backward(Backend* be, float* dinp, const float* dout, const float* out, size_t n);
void cpu_bias_add(Backend* be, float* out, const float* bias, int N, int C);
void cpu_bias_backward(Backend* be, float* dbias, const float* dout, int N, int C);
void cpu_avgpool1d_forward(Backend* be, float* out, const float* x, int B, int T_in, int C, int s);
void cpu_avgpool1d_backward(Backend* be, float* dx, const float* dout, int B, int T_in, int C, int s);
void cpu_patchify(Backend* be, float* patches, const float* img, int B, int Cc, int S, int P);
void cpu_segment_sum(Backend* be, float* s, const float* x, int N, int in, int r);
void cpu_segment_sum_backward(Backend* be, float* dx, const float* ds, int N, int in, int r);

// conv_ops.c
void cpu_im2col1d(Backend* be, float* cols, const float* x, int B, int T_in, int Cin, int T_out, int K, int stride,
                  int dilation, int pad_left);
void cpu_col2im1d(Backend* be, float* dx, const float* dcols, int B, int T_in, int Cin, int T_out, int K, int stride,
                  int dilation, int pad_left);

// attention.c
void cpu_attention_forward(Backend* be, float* out, float* probs, const float* q, const float* k, const float* v,
                           int B, int T, int H, int D, float scale);
void cpu_attention_backward(Backend* be, float* dq, float* dk, float* dv, float* scratch, const float* dout,
                            const float* probs, const float* q, const float* k, const float* v, int B, int T, int H,
                            int D, float scale);

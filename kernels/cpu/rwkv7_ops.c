// rwkv7_ops.c — CPU plain vector ops and the RWKV-7 TimeMix elementwise ops (contracts in kernels/kernels.h).
//
// Sums over rows into per-channel parameter gradients are parallelised over blocks of channels, each
// block walking the rows in increasing order: the result is bit-identical for any thread count.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/kernels.h"

enum { CBLOCK = 64 };  // channels per work item in the column-reduction passes

// ------------------------------------------------------------------------------------------------ vector ops

void cpu_zero(Backend* be, float* x, size_t n) { memset(x, 0, n * sizeof(float)); }

void cpu_copy(Backend* be, float* dst, const float* src, size_t n) {
    if (dst != src) memcpy(dst, src, n * sizeof(float));
}

void cpu_axpy(Backend* be, float* y, float alpha, const float* x, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

void cpu_mul(Backend* be, float* out, const float* a, const float* b, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

// dst (C) += sum over rows of src (N, C), in increasing row order per channel block.
static void colsum_accumulate(float* dst, const float* src, int N, int C) {
    int nb = (C + CBLOCK - 1) / CBLOCK;
    #pragma omp parallel for schedule(static)
    for (int cb = 0; cb < nb; cb++) {
        int c0 = cb * CBLOCK, c1 = c0 + CBLOCK < C ? c0 + CBLOCK : C;
        float acc[CBLOCK] = {0};
        for (int n = 0; n < N; n++)
            for (int c = c0; c < c1; c++) acc[c - c0] += src[(size_t)n * C + c];
        for (int c = c0; c < c1; c++) dst[c] += acc[c - c0];
    }
}

// ------------------------------------------------------------------------------------------------ decay
static const float W_SCALE = -0.6065306597126334f;  // -exp(-0.5)

void cpu_rwkv7_decay_forward(Backend* be, float* w, float* d, const float* pre, const float* w0, int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)n * C + c;
            float dd = pre[i] + w0[c];
            d[i] = dd;
            w[i] = expf(W_SCALE * sigmoidf(dd));
        }
    }
}

void cpu_rwkv7_decay_backward(Backend* be, float* dpre, float* dw0, const float* dw, const float* w, const float* d,
                              int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)n * C + c;
            float s = sigmoidf(d[i]);
            dpre[i] = dw[i] * w[i] * W_SCALE * s * (1.0f - s);
        }
    }
    if (dw0) colsum_accumulate(dw0, dpre, N, C);
}

// ------------------------------------------------------------------------------------------------ bias + sigmoid

void cpu_bias_sigmoid_forward(Backend* be, float* out, const float* inp, const float* bias, int N, int C) {
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = sigmoidf(inp[(size_t)n * C + c] + bias[c]);
}

void cpu_bias_sigmoid_backward(Backend* be, float* dinp, float* dbias, const float* dout, const float* out, int N,
                               int C) {
    size_t n = (size_t)N * C;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
    if (dbias) colsum_accumulate(dbias, dinp, N, C);
}

// ------------------------------------------------------------------------------------------------ value residual

void cpu_rwkv7_vres_forward(Backend* be, float* v, const float* vp, const float* vfirst, const float* gamma, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) v[i] = vp[i] + (vfirst[i] - vp[i]) * gamma[i];
}

void cpu_rwkv7_vres_backward(Backend* be, float* dvp, float* dvfirst, float* dgamma, const float* dv, const float* vp,
                             const float* vfirst, const float* gamma, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        dvp[i] = dv[i] * (1.0f - gamma[i]);
        dvfirst[i] += dv[i] * gamma[i];
        dgamma[i] = dv[i] * (vfirst[i] - vp[i]);
    }
}

// ------------------------------------------------------------------------------------------------ key preparation
static const float KK_EPS = 1e-12f;

void cpu_rwkv7_kprep_forward(Backend* be, float* kk, float* kmod, float* wa, float* wb, const float* k0, const float* a,
                             const float* k_k, const float* k_a, int N, int C, int hs) {
    int H = C / hs;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        for (int h = 0; h < H; h++) {
            size_t o = (size_t)n * C + (size_t)h * hs;
            float ss = 0.0f;
            for (int j = 0; j < hs; j++) {
                float u = k0[o + j] * k_k[h * hs + j];
                ss += u * u;
            }
            float inv = 1.0f / fmaxf(sqrtf(ss), KK_EPS);
            for (int j = 0; j < hs; j++) {
                size_t i = o + j;
                int c = h * hs + j;
                float kki = k0[i] * k_k[c] * inv;
                kk[i] = kki;
                kmod[i] = k0[i] * (1.0f + (a[i] - 1.0f) * k_a[c]);
                wa[i] = -kki;
                wb[i] = kki * a[i];
            }
        }
    }
}

// du = (dkk - kk (kk . dkk)) / max(|u|, eps), with dkk = -dwa + dwb a.
static float kprep_du(float dkk, float kk, float dot, float inv) { return (dkk - kk * dot) * inv; }

void cpu_rwkv7_kprep_backward(Backend* be, float* dk0, float* da, float* dk_k, float* dk_a, const float* dkmod,
                              const float* dwa, const float* dwb, const float* k0, const float* a, const float* kk,
                              const float* k_k, const float* k_a, int N, int C, int hs) {
    int H = C / hs;
    float* dot = xmalloc((size_t)N * H * 2 * sizeof(float));  // (N, H) kk.dkk and (N, H) 1/max(|u|, eps)
    float* inv = dot + (size_t)N * H;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        for (int h = 0; h < H; h++) {
            size_t o = (size_t)n * C + (size_t)h * hs;
            float ss = 0.0f, dt = 0.0f;
            for (int j = 0; j < hs; j++) {
                size_t i = o + j;
                float u = k0[i] * k_k[h * hs + j];
                ss += u * u;
                dt += kk[i] * (-dwa[i] + dwb[i] * a[i]);
            }
            dot[(size_t)n * H + h] = dt;
            inv[(size_t)n * H + h] = 1.0f / fmaxf(sqrtf(ss), KK_EPS);
        }
    }
    int nb = (C + CBLOCK - 1) / CBLOCK;
    #pragma omp parallel for schedule(static)
    for (int cb = 0; cb < nb; cb++) {
        int c0 = cb * CBLOCK, c1 = c0 + CBLOCK < C ? c0 + CBLOCK : C;
        float acc_kk[CBLOCK] = {0}, acc_ka[CBLOCK] = {0};
        for (int n = 0; n < N; n++) {
            for (int c = c0; c < c1; c++) {
                size_t i = (size_t)n * C + c;
                size_t nh = (size_t)n * H + c / hs;
                float dkk = -dwa[i] + dwb[i] * a[i];
                float du = kprep_du(dkk, kk[i], dot[nh], inv[nh]);
                dk0[i] = dkmod[i] * (1.0f + (a[i] - 1.0f) * k_a[c]) + du * k_k[c];
                da[i] = dkmod[i] * k0[i] * k_a[c] + dwb[i] * kk[i];
                acc_kk[c - c0] += du * k0[i];
                acc_ka[c - c0] += dkmod[i] * k0[i] * (a[i] - 1.0f);
            }
        }
        for (int c = c0; c < c1; c++) {
            if (dk_k) dk_k[c] += acc_kk[c - c0];
            if (dk_a) dk_a[c] += acc_ka[c - c0];
        }
    }
    free(dot);
}

// ------------------------------------------------------------------------------------------------ bonus + gate

// s_h = sum_{j in h} r_j k_j r_k_j for one row, all heads -> s (H)
static void bonus_sums(float* s, const float* r, const float* k, const float* r_k, int H, int hs) {
    for (int h = 0; h < H; h++) {
        float acc = 0.0f;
        for (int j = 0; j < hs; j++) acc += r[h * hs + j] * k[h * hs + j] * r_k[h * hs + j];
        s[h] = acc;
    }
}

void cpu_rwkv7_bonus_gate_forward(Backend* be, float* z, const float* n_, const float* r, const float* k, const float* v,
                                  const float* r_k, const float* g, int N, int C, int hs) {
    int H = C / hs;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        for (int h = 0; h < H; h++) {
            float s = 0.0f;
            bonus_sums(&s, r + o + (size_t)h * hs, k + o + (size_t)h * hs, r_k + (size_t)h * hs, 1, hs);
            for (int j = 0; j < hs; j++) {
                size_t i = o + (size_t)h * hs + j;
                z[i] = (n_[i] + s * v[i]) * g[i];
            }
        }
    }
}

void cpu_rwkv7_bonus_gate_backward(Backend* be, float* dg, float* dr, float* dk, float* dv, float* dr_k, const float* dz,
                                   const float* n_, const float* r, const float* k, const float* v, const float* r_k,
                                   const float* g, int N, int C, int hs) {
    int H = C / hs;
    float* s = xmalloc((size_t)N * H * 2 * sizeof(float));  // (N, H) s_h and (N, H) ds_h
    float* ds = s + (size_t)N * H;
    #pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        bonus_sums(s + (size_t)n * H, r + o, k + o, r_k, H, hs);
        for (int h = 0; h < H; h++) {
            float sh = s[(size_t)n * H + h], acc = 0.0f;
            for (int j = 0; j < hs; j++) {
                size_t i = o + (size_t)h * hs + j;
                acc += dz[i] * g[i] * v[i];
                dg[i] = dz[i] * (n_[i] + sh * v[i]);
                dv[i] += dz[i] * g[i] * sh;
            }
            ds[(size_t)n * H + h] = acc;
        }
    }
    int nb = (C + CBLOCK - 1) / CBLOCK;
    #pragma omp parallel for schedule(static)
    for (int cb = 0; cb < nb; cb++) {
        int c0 = cb * CBLOCK, c1 = c0 + CBLOCK < C ? c0 + CBLOCK : C;
        float acc[CBLOCK] = {0};
        for (int n = 0; n < N; n++) {
            for (int c = c0; c < c1; c++) {
                size_t i = (size_t)n * C + c;
                float dsh = ds[(size_t)n * H + c / hs];
                dr[i] += dsh * k[i] * r_k[c];
                dk[i] += dsh * r[i] * r_k[c];
                acc[c - c0] += dsh * r[i] * k[i];
            }
        }
        if (dr_k)
            for (int c = c0; c < c1; c++) dr_k[c] += acc[c - c0];
    }
    free(s);
}

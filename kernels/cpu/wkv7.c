// wkv7.c — the RWKV-7 WKV recurrence on the CPU, forward and backward (contract in kernels/kernels.h).
//
// Per (batch b, head h) the state S is an (N, N) fp32 matrix, S[i][j] with i the value index and j the
// key index (reference/rwkv7.md §2.4):
//   sa_i = sum_j a_j S[i][j];   S[i][j] = S[i][j] w_j + sa_i b_j + v_i k_j;   y_i = sum_j S[i][j] r_j
// Forward saves the state at the end of every chunk of WKV7_CHUNK (16) steps. Backward walks the
// chunks from last to first; inside a chunk it RECOMPUTES the 16 states from the chunk's starting
// checkpoint (exact, unlike the GPU kernels' backstepping by division), then applies §3.1:
//   dS += dy r^T; dr = S^T dy; dw_j = sum_i dS[i][j] S_prev[i][j]; dk = dS^T v; dv = dS k;
//   db = dS^T sa; dsa = dS b; da = S_prev^T dsa; dS <- dS diag(w) + dsa a^T
// Threads split the (b, h) pairs; every (b, h) is computed by one thread in a fixed order, so the
// result does not depend on the thread count.
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/kernels.h"

// Offset of step t of (b, h) in a (B, T, H, N) tensor.
static size_t btho(int b, int t, int h, int T, int H, int N) {
    return (((size_t)b * T + t) * H + h) * (size_t)N;
}

// One step of the recurrence on state S (N, N); writes y (N) and sa (N) if non-NULL.
// The j loops are explicit SIMD reductions (fixed lane order: deterministic for a given build).
static void wkv7_step(float* restrict S, float* restrict y, float* restrict sa_out, const float* restrict r,
                      const float* restrict w, const float* restrict k, const float* restrict v,
                      const float* restrict a, const float* restrict b, int N) {
    for (int i = 0; i < N; i++) {
        float* restrict Si = S + (size_t)i * N;
        float sa = 0.0f;
        #pragma omp simd reduction(+ : sa)
        for (int j = 0; j < N; j++) sa += a[j] * Si[j];
        float vi = v[i], yi = 0.0f;
        #pragma omp simd reduction(+ : yi)
        for (int j = 0; j < N; j++) {
            float s = Si[j] * w[j] + sa * b[j] + vi * k[j];
            Si[j] = s;
            yi += s * r[j];
        }
        if (y) y[i] = yi;
        if (sa_out) sa_out[i] = sa;
    }
}

void cpu_wkv7_forward(Backend* be, float* y, float* sT, float* ckpt, const float* r, const float* w,
                      const float* k, const float* v, const float* a, const float* b, const float* s0,
                      int B, int T, int H, int N) {
    int n_chunks = (T + WKV7_CHUNK - 1) / WKV7_CHUNK;
    size_t NN = (size_t)N * N;
    #pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int bi = bh / H, h = bh % H;
        // (N, N) running state: in sT itself when the caller wants it (RNN mode allocates nothing)
        float* S = sT ? sT + (size_t)bh * NN : malloc(NN * sizeof(float));
        if (!S) fatal("out of memory in wkv7_forward");
        if (s0 && S != s0 + (size_t)bh * NN) memcpy(S, s0 + (size_t)bh * NN, NN * sizeof(float));
        else if (!s0) memset(S, 0, NN * sizeof(float));
        for (int t = 0; t < T; t++) {
            size_t o = btho(bi, t, h, T, H, N);
            wkv7_step(S, y + o, NULL, r + o, w + o, k + o, v + o, a + o, b + o, N);
            if (ckpt && (t % WKV7_CHUNK == WKV7_CHUNK - 1 || t == T - 1))
                memcpy(ckpt + ((size_t)bh * n_chunks + t / WKV7_CHUNK) * NN, S, NN * sizeof(float));
        }
        if (!sT) free(S);
    }
}

// Backward of one step. S = S_t, Sp = S_{t-1}, dS = dL/dS_t on entry and dL/dS_{t-1} on exit.
// Outputs dr, dw, dk, dv, da, db (N each) for this step; dsa is scratch (N).
static void wkv7_step_backward(float* restrict dS, float* restrict dsa, float* restrict dr, float* restrict dw,
                               float* restrict dk, float* restrict dv, float* restrict da, float* restrict db,
                               const float* restrict S, const float* restrict Sp, const float* restrict sa,
                               const float* restrict dy, const float* restrict r, const float* restrict w,
                               const float* restrict k, const float* restrict v, const float* restrict a,
                               const float* restrict b, int N) {
    memset(dr, 0, N * sizeof(float));
    memset(dw, 0, N * sizeof(float));
    memset(dk, 0, N * sizeof(float));
    memset(db, 0, N * sizeof(float));
    memset(da, 0, N * sizeof(float));
    for (int i = 0; i < N; i++) {
        float* restrict dSi = dS + (size_t)i * N;
        const float* restrict Si = S + (size_t)i * N;
        const float* restrict Spi = Sp + (size_t)i * N;
        float dyi = dy[i], vi = v[i], sai = sa[i];
        float dvi = 0.0f, dsai = 0.0f;
        #pragma omp simd reduction(+ : dvi, dsai)
        for (int j = 0; j < N; j++) {
            float g = dSi[j] + dyi * r[j];   // dL/dS_t[i][j]
            dSi[j] = g;
            dr[j] += Si[j] * dyi;
            dw[j] += g * Spi[j];
            dk[j] += g * vi;
            db[j] += g * sai;
            dvi += g * k[j];
            dsai += g * b[j];
        }
        dv[i] = dvi;
        dsa[i] = dsai;
    }
    for (int i = 0; i < N; i++) {
        float* restrict dSi = dS + (size_t)i * N;
        const float* restrict Spi = Sp + (size_t)i * N;
        float dsai = dsa[i];
        #pragma omp simd
        for (int j = 0; j < N; j++) {
            da[j] += Spi[j] * dsai;
            dSi[j] = dSi[j] * w[j] + dsai * a[j];
        }
    }
}

void cpu_wkv7_backward(Backend* be, float* dr, float* dw, float* dk, float* dv, float* da, float* db,
                       float* ds0, const float* dy, const float* dsT, const float* r, const float* w,
                       const float* k, const float* v, const float* a, const float* b, const float* s0,
                       const float* ckpt, int B, int T, int H, int N) {
    int n_chunks = (T + WKV7_CHUNK - 1) / WKV7_CHUNK;
    size_t NN = (size_t)N * N;
    #pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * H; bh++) {
        int bi = bh / H, h = bh % H;
        // states: (WKV7_CHUNK + 1, N, N) = S_{t0-1} .. S_{t1-1}; sa: (WKV7_CHUNK, N); dS: (N, N); dsa: (N)
        float* states = malloc(((WKV7_CHUNK + 1) * NN + WKV7_CHUNK * (size_t)N + NN + N) * sizeof(float));
        if (!states) fatal("out of memory in wkv7_backward");
        float* sa = states + (WKV7_CHUNK + 1) * NN;
        float* dS = sa + WKV7_CHUNK * (size_t)N;
        float* dsa = dS + NN;
        if (dsT) memcpy(dS, dsT + (size_t)bh * NN, NN * sizeof(float));
        else memset(dS, 0, NN * sizeof(float));
        for (int c = n_chunks - 1; c >= 0; c--) {
            int t0 = c * WKV7_CHUNK, t1 = t0 + WKV7_CHUNK < T ? t0 + WKV7_CHUNK : T;
            // recompute the states of this chunk from its starting checkpoint
            const float* start = c > 0 ? ckpt + ((size_t)bh * n_chunks + c - 1) * NN : (s0 ? s0 + (size_t)bh * NN : NULL);
            if (start) memcpy(states, start, NN * sizeof(float));
            else memset(states, 0, NN * sizeof(float));
            for (int t = t0; t < t1; t++) {
                size_t o = btho(bi, t, h, T, H, N);
                float* S = states + (size_t)(t - t0 + 1) * NN;
                memcpy(S, S - NN, NN * sizeof(float));
                wkv7_step(S, NULL, sa + (size_t)(t - t0) * N, r + o, w + o, k + o, v + o, a + o, b + o, N);
            }
            for (int t = t1 - 1; t >= t0; t--) {
                size_t o = btho(bi, t, h, T, H, N);
                const float* S = states + (size_t)(t - t0 + 1) * NN;
                wkv7_step_backward(dS, dsa, dr + o, dw + o, dk + o, dv + o, da + o, db + o, S, S - NN,
                                   sa + (size_t)(t - t0) * N, dy + o, r + o, w + o, k + o, v + o, a + o, b + o, N);
            }
        }
        if (ds0) memcpy(ds0 + (size_t)bh * NN, dS, NN * sizeof(float));
        free(states);
    }
}

// attention.c — non-causal softmax attention for the ViT and Whisper encoders (kernels.h: attention_forward,
// attention_backward).
//
// Contract: as kernels.h. Per (batch, head) the work is three GEMMs on strided views of the (B, T, H, D)
// tensors (row stride H*D); the (batch, head) pairs run in parallel, each GEMM on its own thread (OpenBLAS
// runs single-threaded inside a parallel region), so results do not depend on the thread count.
#include <math.h>

#include "kernels/cpu/cpu_ops.h"

// In-place softmax of each row of s (T, T); rows are independent.
static void softmax_rows(float* s, int T) {
    for (int i = 0; i < T; i++) {
        float* row = s + (size_t)i * T;
        float mx = row[0];
        for (int j = 1; j < T; j++) mx = row[j] > mx ? row[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < T; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < T; j++) row[j] *= inv;
    }
}

void cpu_attention_forward(Backend* be, float* out, float* probs, const float* q, const float* k, const float* v,
                           int B, int T, int H, int D, float scale) {
    int C = H * D;
#pragma omp parallel for schedule(dynamic, 1) if (B * H > 1)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        size_t off = (size_t)b * T * C + (size_t)h * D;
        float* P = probs + (size_t)bh * T * T;  // (T, T)
        cpu_gemm(be, 0, 1, T, T, D, scale, q + off, C, k + off, C, 0.0f, P, T);  // scale Q K^T
        softmax_rows(P, T);
        cpu_gemm(be, 0, 0, T, D, T, 1.0f, P, T, v + off, C, 0.0f, out + off, C);  // P V
    }
}

void cpu_attention_backward(Backend* be, float* dq, float* dk, float* dv, float* scratch, const float* dout,
                            const float* probs, const float* q, const float* k, const float* v, int B, int T, int H,
                            int D, float scale) {
    int C = H * D;
#pragma omp parallel for schedule(dynamic, 1) if (B * H > 1)
    for (int bh = 0; bh < B * H; bh++) {
        int b = bh / H, h = bh % H;
        size_t off = (size_t)b * T * C + (size_t)h * D;
        const float* P = probs + (size_t)bh * T * T;  // (T, T)
        float* dP = scratch + (size_t)bh * T * T;     // (T, T): dP, then dS in place
        cpu_gemm(be, 1, 0, T, D, T, 1.0f, P, T, dout + off, C, 0.0f, dv + off, C);   // dV = P^T dO
        cpu_gemm(be, 0, 1, T, T, D, 1.0f, dout + off, C, v + off, C, 0.0f, dP, T);   // dP = dO V^T
        for (int i = 0; i < T; i++) {  // dS = P (dP - sum_j P dP), the softmax backward per row
            const float* p = P + (size_t)i * T;
            float* g = dP + (size_t)i * T;
            float dot = 0.0f;
            for (int j = 0; j < T; j++) dot += p[j] * g[j];
            for (int j = 0; j < T; j++) g[j] = p[j] * (g[j] - dot);
        }
        cpu_gemm(be, 0, 0, T, D, T, scale, dP, T, k + off, C, 0.0f, dq + off, C);  // dQ = scale dS K
        cpu_gemm(be, 1, 0, T, D, T, scale, dP, T, q + off, C, 0.0f, dk + off, C);  // dK = scale dS^T Q
    }
}

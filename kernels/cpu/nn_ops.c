// nn_ops.c — the elementwise and reshaping ops of encoders, projectors and adapters (kernels.h, section
// "encoders, projectors, adapters"): GELU (erf, tanh, quick), ReLU, bias add / bias gradient, average pooling
// over tokens, ViT patch extraction, and Bone's segmented sum.
//
// Contract: as kernels.h. Reductions over rows (bias gradient) sum rows in increasing order per channel, so
// the result does not depend on the thread count; everything else is elementwise or a gather/scatter whose
// every output element is written by one thread.
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

// ------------------------------------------------------------------------------------------------ GELU
static const float SQRT_2_OVER_PI = 0.7978845608028654f;
static const float GELU_TANH_C = 0.044715f;
static const float QUICK_GELU_C = 1.702f;
static const float INV_SQRT_2 = 0.7071067811865476f;
static const float INV_SQRT_2PI = 0.3989422804014327f;

static float gelu_value(float x, int mode) {
    if (mode == GELU_ERF) return 0.5f * x * (1.0f + erff(x * INV_SQRT_2));
    if (mode == GELU_TANH) return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x)));
    return x / (1.0f + expf(-QUICK_GELU_C * x));
}

static float gelu_derivative(float x, int mode) {
    if (mode == GELU_ERF) return 0.5f * (1.0f + erff(x * INV_SQRT_2)) + x * INV_SQRT_2PI * expf(-0.5f * x * x);
    if (mode == GELU_TANH) {
        float u = SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x);
        float t = tanhf(u);
        float du = SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_TANH_C * x * x);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
    }
    float s = 1.0f / (1.0f + expf(-QUICK_GELU_C * x));
    return s + x * QUICK_GELU_C * s * (1.0f - s);
}

void cpu_gelu_forward(Backend* be, float* out, const float* inp, size_t n, int mode) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) out[i] = gelu_value(inp[i], mode);
}

void cpu_gelu_backward(Backend* be, float* dinp, const float* dout, const float* inp, size_t n, int mode) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * gelu_derivative(inp[i], mode);
}

// ------------------------------------------------------------------------------------------------ ReLU
void cpu_relu_forward(Backend* be, float* out, const float* inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void cpu_relu_backward(Backend* be, float* dinp, const float* dout, const float* out, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

// ------------------------------------------------------------------------------------------------ bias
void cpu_bias_add(Backend* be, float* out, const float* bias, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_MIN_PARALLEL_WORK)
    for (int n = 0; n < N; n++) {
        float* row = out + (size_t)n * C;
        for (int c = 0; c < C; c++) row[c] += bias[c];
    }
}

// dbias (C) += sum over rows of dout (N, C), rows in increasing order inside each block of channels.
void cpu_bias_backward(Backend* be, float* dbias, const float* dout, int N, int C) {
    int nb = (C + CPU_CHANNEL_BLOCK - 1) / CPU_CHANNEL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_MIN_PARALLEL_WORK)
    for (int cb = 0; cb < nb; cb++) {
        int c0 = cb * CPU_CHANNEL_BLOCK, c1 = c0 + CPU_CHANNEL_BLOCK < C ? c0 + CPU_CHANNEL_BLOCK : C;
        float acc[CPU_CHANNEL_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float* row = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
        for (int c = c0; c < c1; c++) dbias[c] += acc[c - c0];
    }
}

// ------------------------------------------------------------------------------------------------ average pooling
void cpu_avgpool1d_forward(Backend* be, float* out, const float* x, int B, int T_in, int C, int s) {
    int T_out = T_in / s;
    float inv = 1.0f / (float)s;
#pragma omp parallel for schedule(static) if ((size_t)B * T_in * C >= CPU_MIN_PARALLEL_WORK)
    for (int bt = 0; bt < B * T_out; bt++) {
        int b = bt / T_out, t = bt % T_out;
        float* o = out + (size_t)bt * C;
        const float* src = x + ((size_t)b * T_in + (size_t)t * s) * C;
        for (int c = 0; c < C; c++) o[c] = 0.0f;
        for (int j = 0; j < s; j++)
            for (int c = 0; c < C; c++) o[c] += src[(size_t)j * C + c];
        for (int c = 0; c < C; c++) o[c] *= inv;
    }
}

void cpu_avgpool1d_backward(Backend* be, float* dx, const float* dout, int B, int T_in, int C, int s) {
    int T_out = T_in / s;
    float inv = 1.0f / (float)s;
#pragma omp parallel for schedule(static) if ((size_t)B * T_in * C >= CPU_MIN_PARALLEL_WORK)
    for (int bt = 0; bt < B * T_out; bt++) {
        int b = bt / T_out, t = bt % T_out;
        const float* g = dout + (size_t)bt * C;
        float* dst = dx + ((size_t)b * T_in + (size_t)t * s) * C;
        for (int j = 0; j < s; j++)
            for (int c = 0; c < C; c++) dst[(size_t)j * C + c] += g[c] * inv;
    }
}

// ------------------------------------------------------------------------------------------------ ViT patches
void cpu_patchify(Backend* be, float* patches, const float* img, int B, int Cc, int S, int P) {
    int G = S / P, n_patch = G * G, width = Cc * P * P;
#pragma omp parallel for schedule(static) if ((size_t)B * Cc * S * S >= CPU_MIN_PARALLEL_WORK)
    for (int bp = 0; bp < B * n_patch; bp++) {
        int b = bp / n_patch, p = bp % n_patch, py = p / G, px = p % G;
        float* dst = patches + (size_t)bp * width;
        for (int c = 0; c < Cc; c++)
            for (int ky = 0; ky < P; ky++) {
                const float* src = img + (((size_t)b * Cc + c) * S + (size_t)py * P + ky) * S + (size_t)px * P;
                memcpy(dst + ((size_t)c * P + ky) * P, src, (size_t)P * sizeof(float));
            }
    }
}

// ------------------------------------------------------------------------------------------------ Bone segmented sum
void cpu_segment_sum(Backend* be, float* s, const float* x, int N, int in, int r) {
#pragma omp parallel for schedule(static) if ((size_t)N * in >= CPU_MIN_PARALLEL_WORK)
    for (int n = 0; n < N; n++) {
        const float* row = x + (size_t)n * in;
        float* out = s + (size_t)n * r;
        for (int k = 0; k < r; k++) out[k] = 0.0f;
        for (int i0 = 0; i0 < in; i0 += r) {
            int w = in - i0 < r ? in - i0 : r;
            for (int k = 0; k < w; k++) out[k] += row[i0 + k];
        }
    }
}

void cpu_segment_sum_backward(Backend* be, float* dx, const float* ds, int N, int in, int r) {
#pragma omp parallel for schedule(static) if ((size_t)N * in >= CPU_MIN_PARALLEL_WORK)
    for (int n = 0; n < N; n++) {
        float* row = dx + (size_t)n * in;
        const float* g = ds + (size_t)n * r;
        for (int i = 0; i < in; i++) row[i] += g[i % r];
    }
}

// groupnorm.c — normalisation over contiguous channel groups of each row (LayerNorm is one group).
//
// Contract: as KernelOps.groupnorm_forward/backward. Statistics per (row, group): mean and biased
// variance computed in two passes in double; rstd = 1 / sqrt(var + eps); mean, rstd are saved.
// The backward computes dinp row by row in parallel. The parameter gradients are summed per fixed
// chunk of CPU_ROWS_PER_PARTIAL rows into a partial, then the partials are added in chunk order
// (cpu_sum_partials), so the result is bit-identical for any thread count.
#include <math.h>
#include <stdlib.h>

#include "kernels/common.h"
#include "kernels/cpu/cpu_ops.h"

// y = (x - mean) * rstd * w + b over one group of K values; stores the group's mean and rstd.
static void normalize_group(float* y, float* mean_out, float* rstd_out, const float* x, const float* w,
                            const float* b, int K, float eps) {
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int c = 0; c < K; c++) sum += x[c];
    double mean = sum / K;
    double sum_sq = 0;
#pragma omp simd reduction(+ : sum_sq)
    for (int c = 0; c < K; c++) {
        double d = x[c] - mean;
        sum_sq += d * d;
    }
    float m = (float)mean;
    float rstd = (float)(1.0 / sqrt(sum_sq / K + eps));
    for (int c = 0; c < K; c++) y[c] = (x[c] - m) * rstd * w[c] + b[c];
    *mean_out = m;
    *rstd_out = rstd;
}

void cpu_groupnorm_forward(Backend* be, float* out, float* mean, float* rstd, const float* inp,
                           const float* weight, const float* bias, int N, int C, int G, float eps) {
    int K = C / G;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_MIN_PARALLEL_WORK)
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < G; g++) {
            size_t off = (size_t)n * C + (size_t)g * K;  // group g of row n
            size_t stat = (size_t)n * G + g;
            normalize_group(out + off, mean + stat, rstd + stat, inp + off, weight + g * K, bias + g * K, K,
                            eps);
        }
    }
}

// Backward of one group of K values, with xhat = (x - mean) * rstd and g = w * dy:
//   dx = (g - mean(g) - xhat * mean(g * xhat)) * rstd   (added when accumulate, else written);
//   pdw += xhat * dy, pdb += dy when pdw != NULL.
static void normalize_group_backward(float* dx, int accumulate, float* pdw, float* pdb, const float* dy,
                                     const float* x, const float* w, float mean, float rstd, int K) {
    float inv_k = 1.0f / (float)K;
    float sum_g = 0, sum_g_xhat = 0;
#pragma omp simd reduction(+ : sum_g, sum_g_xhat)
    for (int c = 0; c < K; c++) {
        float g = w[c] * dy[c];
        sum_g += g;
        sum_g_xhat += g * (x[c] - mean) * rstd;
    }
    float mean_g = sum_g * inv_k, mean_g_xhat = sum_g_xhat * inv_k;
    if (accumulate) {
        for (int c = 0; c < K; c++) dx[c] += (w[c] * dy[c] - mean_g - (x[c] - mean) * rstd * mean_g_xhat) * rstd;
    } else {
        for (int c = 0; c < K; c++) dx[c] = (w[c] * dy[c] - mean_g - (x[c] - mean) * rstd * mean_g_xhat) * rstd;
    }
    if (pdw) {
        for (int c = 0; c < K; c++) {
            pdw[c] += (x[c] - mean) * rstd * dy[c];
            pdb[c] += dy[c];
        }
    }
}

void cpu_norm_backward(float* dinp, int accumulate_dinp, float* dweight, float* dbias, const float* dout,
                       const float* inp, const float* weight, const float* mean, const float* rstd, int N,
                       int C, int G) {
    if (N <= 0) return;
    int K = C / G;
    int n_parts = (N + CPU_ROWS_PER_PARTIAL - 1) / CPU_ROWS_PER_PARTIAL;
    // (n_parts, 2, C): per chunk of rows, the partial dweight then the partial dbias
    float* partial = (dweight || dbias) ? xcalloc((size_t)n_parts * 2 * C, sizeof(float)) : NULL;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_MIN_PARALLEL_WORK)
    for (int p = 0; p < n_parts; p++) {
        float* pdw = partial ? partial + (size_t)p * 2 * C : NULL;
        int n_end = (p + 1) * CPU_ROWS_PER_PARTIAL < N ? (p + 1) * CPU_ROWS_PER_PARTIAL : N;
        for (int n = p * CPU_ROWS_PER_PARTIAL; n < n_end; n++) {
            for (int g = 0; g < G; g++) {
                size_t off = (size_t)n * C + (size_t)g * K;  // group g of row n
                size_t stat = (size_t)n * G + g;
                normalize_group_backward(dinp + off, accumulate_dinp, pdw ? pdw + g * K : NULL,
                                         pdw ? pdw + C + g * K : NULL, dout + off, inp + off, weight + g * K,
                                         mean[stat], rstd[stat], K);
            }
        }
    }
    if (partial) {
        float* sum = xmalloc((size_t)2 * C * sizeof(float));  // (2, C): dweight then dbias
        cpu_sum_partials(sum, partial, n_parts, (size_t)2 * C);
        for (int c = 0; c < C; c++) {
            if (dweight) dweight[c] += sum[c];
            if (dbias) dbias[c] += sum[C + c];
        }
        free(sum);
        free(partial);
    }
}

void cpu_groupnorm_backward(Backend* be, float* dinp, float* dweight, float* dbias, const float* dout,
                            const float* inp, const float* weight, const float* mean, const float* rstd,
                            int N, int C, int G) {
    cpu_norm_backward(dinp, 0, dweight, dbias, dout, inp, weight, mean, rstd, N, C, G);
}

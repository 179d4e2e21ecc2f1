// adamw.c — the AdamW update and the sum of squares used for gradient-norm clipping.
//
// Contract: as KernelOps.adamw_update (decoupled weight decay, bias correction by step >= 1) and
// KernelOps.sum_squares: squares are summed in double per fixed chunk of SUM_SQUARES_CHUNK values, and
// the chunk sums are added in chunk order, so the result is bit-identical for any thread count.
#include <math.h>
#include <stdlib.h>

#include "kernels/common.h"
#include "kernels/cpu/cpu_ops.h"

enum { SUM_SQUARES_CHUNK = 1 << 14 };

void cpu_adamw_update(Backend* be, float* param, const float* grad, float* m, float* v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, int step, float grad_scale) {
    float inv_bias1 = (float)(1.0 / (1.0 - pow(beta1, step)));
    float inv_bias2 = (float)(1.0 / (1.0 - pow(beta2, step)));
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * grad_scale;
        float mi = beta1 * m[i] + (1.0f - beta1) * g;
        float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        float update = (mi * inv_bias1) / (sqrtf(vi * inv_bias2) + eps);
        param[i] -= lr * (update + weight_decay * param[i]);
    }
}

// Sum of x[i]^2 over one chunk, in double.
static double chunk_sum_squares(const float* x, size_t n) {
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (size_t i = 0; i < n; i++) sum += (double)x[i] * x[i];
    return sum;
}

double cpu_sum_squares(Backend* be, const float* x, size_t n) {
    if (n <= SUM_SQUARES_CHUNK) return chunk_sum_squares(x, n);
    size_t n_chunks = (n + SUM_SQUARES_CHUNK - 1) / SUM_SQUARES_CHUNK;
    double* partial = xmalloc(n_chunks * sizeof(double));
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n_chunks; i++) {
        size_t start = i * SUM_SQUARES_CHUNK;
        size_t len = n - start < SUM_SQUARES_CHUNK ? n - start : SUM_SQUARES_CHUNK;
        partial[i] = chunk_sum_squares(x + start, len);
    }
    double sum = 0;
    for (size_t i = 0; i < n_chunks; i++) sum += partial[i];
    free(partial);
    return sum;
}

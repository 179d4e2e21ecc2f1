// tokenshift.c — RWKV token shift: n_mix lerps between each token and the previous one.
//
// Contract: as KernelOps.tokenshift_forward/backward:
//   xm[m][b][t] = x[b][t] + (prev[b][t] - x[b][t]) * mu[m], prev[b][t] = x[b][t-1], x_prev[b] (t = 0)
//   or zeros (t = 0, x_prev NULL). The backward adds dx and dmu, writes dx_prev (if not NULL).
// Both are parallel over rows; the backward sums dmu per fixed chunk of CPU_ROWS_PER_PARTIAL rows and
// adds the chunks in order (cpu_sum_partials), so dmu is bit-identical for any thread count.
#include <stdlib.h>

#include "kernels/common.h"
#include "kernels/cpu/cpu_ops.h"

// One row of C channels for every m: xm[m] = x + (prev - x) * mu[m]; prev NULL means zeros.
// xm points at the row in plane m = 0; planes are `plane` floats apart.
static void mix_row(float* xm, size_t plane, const float* x, const float* prev, const float* mu, int n_mix,
                    int C) {
    for (int m = 0; m < n_mix; m++) {
        float* out = xm + (size_t)m * plane;
        const float* mu_m = mu + (size_t)m * C;
        if (prev) {
            for (int c = 0; c < C; c++) out[c] = x[c] + (prev[c] - x[c]) * mu_m[c];
        } else {
            for (int c = 0; c < C; c++) out[c] = x[c] + (-x[c]) * mu_m[c];
        }
    }
}

void cpu_tokenshift_forward(Backend* be, float* xm, const float* x, const float* x_prev, const float* mu,
                            int n_mix, int B, int T, int C) {
    size_t plane = (size_t)B * T * C;  // one (B, T, C) slice of xm
    int rows = B * T;
#pragma omp parallel for schedule(static) if (plane * (size_t)n_mix >= CPU_MIN_PARALLEL_WORK)
    for (int row = 0; row < rows; row++) {
        int b = row / T, t = row % T;
        const float* xr = x + (size_t)row * C;
        const float* prev = t > 0 ? xr - C : (x_prev ? x_prev + (size_t)b * C : NULL);
        mix_row(xm + (size_t)row * C, plane, xr, prev, mu, n_mix, C);
    }
}

// Everything the backward of one row needs, so the helpers below take one argument for the problem.
typedef struct {
    float* dx;            // (B, T, C)
    float* dx_prev;       // (B, C) or NULL
    const float* dxm;     // (n_mix, B, T, C)
    const float* x;       // (B, T, C)
    const float* x_prev;  // (B, C) or NULL
    const float* mu;      // (n_mix, C)
    int n_mix, B, T, C;
} ShiftGrad;

// Row (b, t), channels [c0, c0 + width): dx += sum_m dxm[m][t] (1 - mu[m]) + dxm[m][t+1] mu[m];
// dmu_part[m] += dxm[m][t] * (prev - x).
static void backward_block(const ShiftGrad* s, float* dmu_part, int b, int t, int c0, int width) {
    size_t plane = (size_t)s->B * s->T * s->C;
    size_t off = ((size_t)b * s->T + t) * s->C + c0;
    const float* x = s->x + off;
    const float* prev = t > 0 ? x - s->C : (s->x_prev ? s->x_prev + (size_t)b * s->C + c0 : NULL);
    float diff[CPU_CHANNEL_BLOCK], d[CPU_CHANNEL_BLOCK];
    for (int c = 0; c < width; c++) {
        diff[c] = prev ? prev[c] - x[c] : -x[c];
        d[c] = 0.0f;
    }
    for (int m = 0; m < s->n_mix; m++) {
        const float* g = s->dxm + (size_t)m * plane + off;
        const float* mu = s->mu + (size_t)m * s->C + c0;
        float* acc = dmu_part + (size_t)m * s->C + c0;
        for (int c = 0; c < width; c++) {
            d[c] += g[c] * (1.0f - mu[c]);
            acc[c] += g[c] * diff[c];
        }
        if (t + 1 < s->T) {
            const float* g_next = g + s->C;  // token t + 1 sees token t as its prev
            for (int c = 0; c < width; c++) d[c] += g_next[c] * mu[c];
        }
    }
    float* dx = s->dx + off;
    for (int c = 0; c < width; c++) dx[c] += d[c];
}

// dx_prev[b] = sum_m dxm[m][b][0] * mu[m].
static void backward_prev(const ShiftGrad* s, int b) {
    size_t plane = (size_t)s->B * s->T * s->C;
    float* dp = s->dx_prev + (size_t)b * s->C;
    for (int c = 0; c < s->C; c++) dp[c] = 0.0f;
    for (int m = 0; m < s->n_mix; m++) {
        const float* g = s->dxm + (size_t)m * plane + (size_t)b * s->T * s->C;
        const float* mu = s->mu + (size_t)m * s->C;
        for (int c = 0; c < s->C; c++) dp[c] += g[c] * mu[c];
    }
}

// One row (b, t) over all channels, in blocks of CPU_CHANNEL_BLOCK.
static void backward_row(const ShiftGrad* s, float* dmu_part, int row) {
    int b = row / s->T, t = row % s->T;
    for (int c0 = 0; c0 < s->C; c0 += CPU_CHANNEL_BLOCK) {
        int width = s->C - c0 < CPU_CHANNEL_BLOCK ? s->C - c0 : CPU_CHANNEL_BLOCK;
        backward_block(s, dmu_part, b, t, c0, width);
    }
    if (t == 0 && s->dx_prev) backward_prev(s, b);
}

void cpu_tokenshift_backward(Backend* be, float* dx, float* dx_prev, float* dmu, const float* dxm,
                             const float* x, const float* x_prev, const float* mu, int n_mix, int B, int T,
                             int C) {
    if (B <= 0 || T <= 0 || C <= 0) return;
    ShiftGrad s = {dx, dx_prev, dxm, x, x_prev, mu, n_mix, B, T, C};
    int rows = B * T;
    int n_parts = (rows + CPU_ROWS_PER_PARTIAL - 1) / CPU_ROWS_PER_PARTIAL;
    size_t len = (size_t)n_mix * C;
    float* partial = xcalloc((size_t)n_parts * len, sizeof(float));  // (n_parts, n_mix, C) dmu partials
#pragma omp parallel for schedule(static) if (len * (size_t)rows >= CPU_MIN_PARALLEL_WORK)
    for (int p = 0; p < n_parts; p++) {
        int end = (p + 1) * CPU_ROWS_PER_PARTIAL < rows ? (p + 1) * CPU_ROWS_PER_PARTIAL : rows;
        for (int row = p * CPU_ROWS_PER_PARTIAL; row < end; row++) backward_row(&s, partial + (size_t)p * len, row);
    }
    float* sum = xmalloc(len * sizeof(float));  // (n_mix, C)
    cpu_sum_partials(sum, partial, n_parts, len);
    for (size_t i = 0; i < len; i++) dmu[i] += sum[i];
    free(sum);
    free(partial);
}

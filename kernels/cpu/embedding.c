// embedding.c — token embedding lookup and its scatter-add backward.
//
// Contract: as KernelOps.embedding_forward/backward; idx values must lie in [0, V) (the data layer
// validates tokens). The backward is parallel over blocks of CPU_CHANNEL_BLOCK channels, each adding
// the rows in increasing n, so dtable is bit-identical for any thread count.
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

void cpu_embedding_forward(Backend* be, float* out, const int32_t* idx, const float* table, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_MIN_PARALLEL_WORK)
    for (int n = 0; n < N; n++) memcpy(out + (size_t)n * C, table + (size_t)idx[n] * C, (size_t)C * sizeof(float));
}

void cpu_embedding_backward(Backend* be, float* dtable, const float* dout, const int32_t* idx, int N, int C,
                            int V) {
    int n_blocks = (C + CPU_CHANNEL_BLOCK - 1) / CPU_CHANNEL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)N * C >= CPU_MIN_PARALLEL_WORK)
    for (int blk = 0; blk < n_blocks; blk++) {
        int c0 = blk * CPU_CHANNEL_BLOCK;
        int width = C - c0 < CPU_CHANNEL_BLOCK ? C - c0 : CPU_CHANNEL_BLOCK;
        for (int n = 0; n < N; n++) {
            float* dst = dtable + (size_t)idx[n] * C + c0;  // row idx[n] of the (V, C) table
            const float* src = dout + (size_t)n * C + c0;
            for (int c = 0; c < width; c++) dst[c] += src[c];
        }
    }
}

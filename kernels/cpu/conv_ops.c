// conv_ops.c — 1-D convolution as im2col + GEMM, channels last (kernels.h: im2col1d, col2im1d).
//
// Contract: as kernels.h. im2col1d writes every element of cols; col2im1d adds into dx, parallel over
// (batch, input channel block) so that each dx element is summed by one thread in increasing (t, j) order:
// deterministic for any thread count.
#include "kernels/cpu/cpu_ops.h"

void cpu_im2col1d(Backend* be, float* cols, const float* x, int B, int T_in, int Cin, int T_out, int K, int stride,
                  int dilation, int pad_left) {
    size_t width = (size_t)Cin * K;
#pragma omp parallel for schedule(static) if ((size_t)B * T_out * width >= CPU_MIN_PARALLEL_WORK)
    for (int bt = 0; bt < B * T_out; bt++) {
        int b = bt / T_out, t = bt % T_out;
        float* dst = cols + (size_t)bt * width;
        for (int j = 0; j < K; j++) {
            int pos = t * stride - pad_left + j * dilation;
            const float* src = pos >= 0 && pos < T_in ? x + ((size_t)b * T_in + pos) * Cin : NULL;
            for (int ci = 0; ci < Cin; ci++) dst[(size_t)ci * K + j] = src ? src[ci] : 0.0f;
        }
    }
}

void cpu_col2im1d(Backend* be, float* dx, const float* dcols, int B, int T_in, int Cin, int T_out, int K, int stride,
                  int dilation, int pad_left) {
    size_t width = (size_t)Cin * K;
    int nb = (Cin + CPU_CHANNEL_BLOCK - 1) / CPU_CHANNEL_BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)B * T_out * width >= CPU_MIN_PARALLEL_WORK)
    for (int bc = 0; bc < B * nb; bc++) {
        int b = bc / nb, c0 = (bc % nb) * CPU_CHANNEL_BLOCK;
        int c1 = c0 + CPU_CHANNEL_BLOCK < Cin ? c0 + CPU_CHANNEL_BLOCK : Cin;
        for (int t = 0; t < T_out; t++) {
            const float* src = dcols + ((size_t)b * T_out + t) * width;
            for (int j = 0; j < K; j++) {
                int pos = t * stride - pad_left + j * dilation;
                if (pos < 0 || pos >= T_in) continue;
                float* dst = dx + ((size_t)b * T_in + pos) * Cin;
                for (int ci = c0; ci < c1; ci++) dst[ci] += src[(size_t)ci * K + j];
            }
        }
    }
}

// cast.c — fp32 <-> bf16 conversion of n values (round to nearest even; NaN stays NaN, Inf stays Inf).
//
// Contract: as KernelOps.f32_to_bf16 / bf16_to_f32, with the scalar rules of kernels/bf16.h.
#include "kernels/bf16.h"
#include "kernels/cpu/cpu_ops.h"

void cpu_f32_to_bf16(Backend* be, uint16_t* out, const float* inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) out[i] = float_to_bf16(inp[i]);
}

void cpu_bf16_to_f32(Backend* be, float* out, const uint16_t* inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) out[i] = bf16_to_float(inp[i]);
}

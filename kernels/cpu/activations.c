// activations.c — elementwise relu², sigmoid and tanh with their backwards (n values each).
//
// Contract: as KernelOps: out = f(inp); dinp = dout * f'(.) is written (=). relu2 backward takes the
// input; sigmoid and tanh backwards take the forward's output (f' is a function of it).
#include <math.h>
#include <stdint.h>

#include "kernels/cpu/cpu_ops.h"

// max(x, 0) computed on the bits (x with the sign bit set becomes +0): no branch and no floating-point
// compare, so the loops below vectorise under the default -ftrapping-math and do not mispredict.
static inline float relu(float x) {
    union { float f; uint32_t u; } bits = {.f = x};  // C11 type punning through a union
    bits.u &= (bits.u >> 31) - 1u;                    // sign set: mask 0; clear: mask all ones
    return bits.f;
}

void cpu_relu2_forward(Backend* be, float* out, const float* inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) {
        float r = relu(inp[i]);
        out[i] = r * r;
    }
}

void cpu_relu2_backward(Backend* be, float* dinp, const float* dout, const float* inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) dinp[i] = 2.0f * relu(inp[i]) * dout[i];
}

void cpu_sigmoid_forward(Backend* be, float* out, const float* inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) out[i] = 1.0f / (1.0f + expf(-inp[i]));
}

void cpu_sigmoid_backward(Backend* be, float* dinp, const float* dout, const float* out, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * out[i] * (1.0f - out[i]);
}

void cpu_tanh_forward(Backend* be, float* out, const float* inp, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

void cpu_tanh_backward(Backend* be, float* dinp, const float* dout, const float* out, size_t n) {
#pragma omp parallel for schedule(static) if (n >= CPU_MIN_PARALLEL_WORK)
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * (1.0f - out[i] * out[i]);
}

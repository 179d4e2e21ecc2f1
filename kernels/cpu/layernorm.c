// layernorm.c — LayerNorm over the last dimension: GroupNorm with a single group (see groupnorm.c).
//
// Contract: as KernelOps.layernorm_forward/backward: biased variance; mean, rstd: (N) saved;
// the backward accumulates dinp (+=, the residual stream) and dweight/dbias (each may be NULL for a
// frozen norm). Deterministic and independent of the thread count.
#include "kernels/cpu/cpu_ops.h"

void cpu_layernorm_forward(Backend* be, float* out, float* mean, float* rstd, const float* inp,
                           const float* weight, const float* bias, int N, int C, float eps) {
    cpu_groupnorm_forward(be, out, mean, rstd, inp, weight, bias, N, C, 1, eps);
}

void cpu_layernorm_backward(Backend* be, float* dinp, float* dweight, float* dbias, const float* dout,
                            const float* inp, const float* weight, const float* mean, const float* rstd,
                            int N, int C) {
    cpu_norm_backward(dinp, 1, dweight, dbias, dout, inp, weight, mean, rstd, N, C, 1);
}

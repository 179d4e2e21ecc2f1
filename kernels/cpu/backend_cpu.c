// backend_cpu.c — the CPU backend: fills KernelOps with the cpu_* operations and allocates host memory.
//
// Contract: backend_cpu_create(n) sets the OpenMP and OpenBLAS thread counts to n (n <= 0: all cores)
// for the whole process; alloc returns zero-filled, 64-byte aligned host memory and exits through
// fatal() when memory runs out; backend_destroy frees the backend (not the buffers it allocated).
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/kernels.h"

enum { CPU_ALIGNMENT = 64 };

static void* cpu_alloc(Backend* be, size_t bytes) {
    size_t rounded = (bytes + CPU_ALIGNMENT - 1) / CPU_ALIGNMENT * CPU_ALIGNMENT;
    if (rounded < bytes) fatal("out of memory: cannot allocate %zu bytes of host memory", bytes);
    if (rounded == 0) rounded = CPU_ALIGNMENT;
    void* p = NULL;
    if (posix_memalign(&p, CPU_ALIGNMENT, rounded) != 0)
        fatal("out of memory allocating %zu bytes of host memory: reduce the model, batch or context size",
              bytes);
    memset(p, 0, rounded);
    return p;
}

static void cpu_free(Backend* be, void* p) { free(p); }

static KernelOps cpu_kernel_ops(void) {
    KernelOps k = {
        .gemm = cpu_gemm,
        .layernorm_forward = cpu_layernorm_forward,
        .layernorm_backward = cpu_layernorm_backward,
        .groupnorm_forward = cpu_groupnorm_forward,
        .groupnorm_backward = cpu_groupnorm_backward,
        .tokenshift_forward = cpu_tokenshift_forward,
        .tokenshift_backward = cpu_tokenshift_backward,
        .wkv7_forward = cpu_wkv7_forward,
        .wkv7_backward = cpu_wkv7_backward,
        .relu2_forward = cpu_relu2_forward,
        .relu2_backward = cpu_relu2_backward,
        .sigmoid_forward = cpu_sigmoid_forward,
        .sigmoid_backward = cpu_sigmoid_backward,
        .tanh_forward = cpu_tanh_forward,
        .tanh_backward = cpu_tanh_backward,
        .embedding_forward = cpu_embedding_forward,
        .embedding_backward = cpu_embedding_backward,
        .crossentropy_forward_backward = cpu_crossentropy_forward_backward,
        .adamw_update = cpu_adamw_update,
        .sum_squares = cpu_sum_squares,
        .zero = cpu_zero,
        .copy = cpu_copy,
        .axpy = cpu_axpy,
        .mul = cpu_mul,
        .rwkv7_decay_forward = cpu_rwkv7_decay_forward,
        .rwkv7_decay_backward = cpu_rwkv7_decay_backward,
        .bias_sigmoid_forward = cpu_bias_sigmoid_forward,
        .bias_sigmoid_backward = cpu_bias_sigmoid_backward,
        .rwkv7_vres_forward = cpu_rwkv7_vres_forward,
        .rwkv7_vres_backward = cpu_rwkv7_vres_backward,
        .rwkv7_kprep_forward = cpu_rwkv7_kprep_forward,
        .rwkv7_kprep_backward = cpu_rwkv7_kprep_backward,
        .rwkv7_bonus_gate_forward = cpu_rwkv7_bonus_gate_forward,
        .rwkv7_bonus_gate_backward = cpu_rwkv7_bonus_gate_backward,
        .gelu_forward = cpu_gelu_forward,
        .gelu_backward = cpu_gelu_backward,
        .relu_forward = cpu_relu_forward,
        .relu_backward = cpu_relu_backward,
        .bias_add = cpu_bias_add,
        .bias_backward = cpu_bias_backward,
        .attention_forward = cpu_attention_forward,
        .attention_backward = cpu_attention_backward,
        .im2col1d = cpu_im2col1d,
        .col2im1d = cpu_col2im1d,
        .patchify = cpu_patchify,
        .avgpool1d_forward = cpu_avgpool1d_forward,
        .avgpool1d_backward = cpu_avgpool1d_backward,
        .segment_sum = cpu_segment_sum,
        .segment_sum_backward = cpu_segment_sum_backward,
        .f32_to_bf16 = cpu_f32_to_bf16,
        .bf16_to_f32 = cpu_bf16_to_f32,
    };
    return k;
}

Backend* backend_cpu_create(int n_threads) {
    if (n_threads <= 0) n_threads = omp_get_num_procs();
    omp_set_num_threads(n_threads);
    openblas_set_num_threads(n_threads);
    Backend* be = xcalloc(1, sizeof *be);
    be->name = "cpu";
    be->n_threads = n_threads;
    be->k = cpu_kernel_ops();
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    return be;
}

void backend_destroy(Backend* be) { free(be); }

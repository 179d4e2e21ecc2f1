// gemm.c — C(M,N) = alpha * op(A) @ op(B) + beta * C through OpenBLAS cblas_sgemm (row-major); a single
// row (M == 1: RNN-mode decoding) goes through cblas_sgemv, which reads B once instead of packing it.
//
// Contract: as KernelOps.gemm. BLAS convention: with beta == 0, C is not read (NaN in C is overwritten).
// M or N <= 0 is a no-op; K <= 0 scales C by beta. Deterministic for a fixed OpenBLAS thread count.
#include <cblas.h>

#include "kernels/cpu/cpu_ops.h"

// C(M,N) = beta * C for an empty inner dimension (BLAS skips reading C when beta == 0).
static void scale_c(int M, int N, float beta, float* C, int ldc) {
    for (int i = 0; i < M; i++) {
        float* row = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++) row[j] = beta == 0.0f ? 0.0f : beta * row[j];
    }
}

void cpu_gemm(Backend* be, int transA, int transB, int M, int N, int K, float alpha, const float* A, int lda,
              const float* B, int ldb, float beta, float* C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    if (M == 1) {
        // C(1, N) = alpha * a(K) . op(B) + beta * C with a = row 0 of op(A)
        int inc_a = transA ? lda : 1;
        if (transB)  // B stored (N, K): C = B a
            cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, alpha, B, ldb, A, inc_a, beta, C, 1);
        else         // B stored (K, N): C = B^T a
            cblas_sgemv(CblasRowMajor, CblasTrans, K, N, alpha, B, ldb, A, inc_a, beta, C, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

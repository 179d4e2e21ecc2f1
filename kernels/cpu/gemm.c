// gemm.c — C(M,N) = alpha * op(A) @ op(B) + beta * C through OpenBLAS cblas_sgemm (row-major).
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
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
}

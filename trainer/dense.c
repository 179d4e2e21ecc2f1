// dense.c — the fully connected layer (see dense.h).
#include "trainer/dense.h"

void dense_forward(Backend* be, float* y, const float* x, const float* W, const float* b, int N, int n_in, int n_out,
                   float beta) {
    be->k.gemm(be, 0, 1, N, n_out, n_in, 1.0f, x, n_in, W, n_in, beta, y, n_out);
    if (b) be->k.bias_add(be, y, b, N, n_out);
}

void dense_backward(Backend* be, float* dx, float* dW, float* db, const float* dy, const float* x, const float* W,
                    int N, int n_in, int n_out, float beta) {
    if (dW) be->k.gemm(be, 1, 0, n_out, n_in, N, 1.0f, dy, n_out, x, n_in, 1.0f, dW, n_in);
    if (db) be->k.bias_backward(be, db, dy, N, n_out);
    if (dx) be->k.gemm(be, 0, 0, N, n_in, n_out, 1.0f, dy, n_out, W, n_in, beta, dx, n_in);
}

// dense.h — the fully connected layer of every module (PyTorch nn.Linear layout: W (n_out, n_in)), forward and
// backward through the backend's GEMM and bias ops.
//
// Contract: y (N, n_out) = x (N, n_in) W^T (+ b when b != NULL) + beta y. Backward: dW (n_out, n_in) += dy^T x
// and db (n_out) += the column sums of dy, each skipped when NULL (a frozen tensor); dx (N, n_in) = dy W +
// beta dx when dx != NULL. dW is computed before dx, so dx may alias x.
#pragma once
#include "kernels/kernels.h"

void dense_forward(Backend* be, float* y, const float* x, const float* W, const float* b, int N, int n_in, int n_out,
                   float beta);
void dense_backward(Backend* be, float* dx, float* dW, float* db, const float* dy, const float* x, const float* W,
                    int N, int n_in, int n_out, float beta);

// test_kernels_cpu.c — specification of the CPU backend's operations (WKV7 and the RWKV-7 elementwise
// ops are tested separately).
//
// - Every forward is compared with a plain double-precision reference written below (gemm: in all four
//   transpose combinations, with alpha, beta and leading dimensions wider than the matrices).
// - Every backward is compared with central finite differences (in double) of that reference, with
//   loss = sum(out * R) for random R; "+=" outputs start from random pre-filled buffers and must
//   accumulate, "=" outputs start NaN-poisoned and must be fully written. The cross-entropy L2Wrap
//   term is not a gradient: it is checked against its formula on top of the finite differences.
// - adamw is compared with a scalar double reference over several steps; the bf16 casts with exact
//   patterns (ties to even, NaN, Inf), an exhaustive round trip and an independent rounding reference.
// - Determinism: each parameter-gradient op (layernorm, groupnorm, tokenshift, embedding backwards),
//   cross-entropy, sum_squares and adamw are run twice and with 1 and 2 threads and must agree bit for
//   bit: all of them are thread-count independent by design. gemm (OpenBLAS) is promised bit-identical
//   only for a fixed thread count, so it is checked run-to-run only.
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"
#include "kernels/common.h"
#include "kernels/kernels.h"
#include "tests/testutil.h"

static Backend* be;
static TestRng rng;

static const double FWD_TOL = 1e-5;   // forward vs double reference, relative
static const double GRAD_TOL = 1e-4;  // backward vs finite differences, relative
static const double FD_STEP = 1e-4;   // central-difference step (inputs are O(1))

// ------------------------------------------------------------------------------------------------ helpers

// Uniform in [lo, hi), from this test's random stream (xmalloc'd, like every buffer helper of testutil.h).
static float* random_floats(size_t n, float lo, float hi) { return test_random_floats(&rng, n, lo, hi); }

static float* to_floats(const double* x, size_t n) {
    float* y = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

static double weighted_sum(const double* out, const float* R, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += out[i] * R[i];
    return s;
}

static int check_forward(const char* name, const float* got, const double* want, size_t n) {
    float* w = to_floats(want, n);
    int fail = check_rel_to_max(name, got, w, n, FWD_TOL);
    free(w);
    return fail;
}

// Central finite differences of loss(ctx) with respect to the n doubles at x (perturbed in place).
typedef double (*LossFn)(const void* ctx);
static float* finite_diff(double* x, size_t n, LossFn loss, const void* ctx) {
    float* grad = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_STEP;
        double up = loss(ctx);
        x[i] = x0 - FD_STEP;
        double down = loss(ctx);
        x[i] = x0;
        grad[i] = (float)((up - down) / (2 * FD_STEP));
    }
    return grad;
}

// Checks a "+=" gradient: got must equal prefill + finite differences.
static int check_accumulated(const char* name, const float* got, const float* prefill, const float* fd, size_t n) {
    float* want = test_plus(prefill, fd, n);
    int fail = check_rel_to_max(name, got, want, n, GRAD_TOL);
    free(want);
    return fail;
}

// ------------------------------------------------------------------------------------------------ backend

static int test_backend(void) {
    int fail = check_true("backend: name is cpu", strcmp(be->name, "cpu") == 0, be->name);
    fail += check_true("backend: n_threads is 2", be->n_threads == 2, "backend_cpu_create(2)");
    unsigned char* p = be->alloc(be, 1000);
    int zeroed = 1;
    for (int i = 0; i < 1000; i++) zeroed &= p[i] == 0;
    fail += check_true("backend: alloc is 64-byte aligned", (uintptr_t)p % 64 == 0, "misaligned");
    fail += check_true("backend: alloc is zero-filled", zeroed, "non-zero byte");
    void* q = be->alloc(be, 0);
    fail += check_true("backend: alloc(0) returns a pointer", q != NULL, "NULL");
    be->free(be, p);
    be->free(be, q);
    return fail;
}

// ------------------------------------------------------------------------------------------------ gemm

// C(M,N) = alpha op(A) op(B) + beta C0 in double; columns N..ldc-1 of C keep C0's values. mag gets
// the scale of each element's rounding error: |alpha| sum_k |a||b| + |beta||c| (1 on the padding).
static void ref_gemm(double* C, double* mag, int tA, int tB, int M, int N, int K, double alpha, const float* A,
                     int lda, const float* B, int ldb, double beta, const float* C0, int ldc) {
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < ldc; j++) C[i * ldc + j] = C0[i * ldc + j], mag[i * ldc + j] = 1;
        for (int j = 0; j < N; j++) {
            double s = 0, s_abs = 0;
            for (int k = 0; k < K; k++) {
                double a = tA ? A[k * lda + i] : A[i * lda + k];
                double b = tB ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
                s_abs += fabs(a * b);
            }
            double c = beta == 0 ? 0.0 : beta * C0[i * ldc + j];
            C[i * ldc + j] = alpha * s + c;
            mag[i * ldc + j] = fabs(alpha) * s_abs + fabs(c);
        }
    }
}

// One gemm with leading dimensions wider than the matrices (padding must stay untouched).
// beta == 0 starts C NaN-poisoned (BLAS convention: C is not read). The error of each element is
// measured relative to its magnitude (fp32 bound: K eps; typical sqrt(K) eps).
static int check_gemm(int tA, int tB, int M, int N, int K, float alpha, float beta) {
    int lda = (tA ? M : K) + 3, ldb = (tB ? K : N) + 2, ldc = N + 5;
    float* A = random_floats((size_t)(tA ? K : M) * lda, -1, 1);  // stored (M, K) or (K, M)
    float* B = random_floats((size_t)(tB ? N : K) * ldb, -1, 1);  // stored (K, N) or (N, K)
    float* C0 = random_floats((size_t)M * ldc, -1, 1);            // (M, ldc)
    if (beta == 0)
        for (int i = 0; i < M; i++) test_poison(C0 + (size_t)i * ldc, N);
    float* C = test_copy_floats(C0, (size_t)M * ldc);
    double* want = xmalloc((size_t)M * ldc * sizeof(double));
    double* mag = xmalloc((size_t)M * ldc * sizeof(double));
    ref_gemm(want, mag, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C0, ldc);
    be->k.gemm(be, tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    double err = 0;
    for (size_t i = 0; i < (size_t)M * ldc; i++) {
        double e = fabs(C[i] - want[i]) / mag[i];
        err = isnan(e) || e > err ? e : err;
    }
    char name[128];
    snprintf(name, sizeof name, "gemm transA=%d transB=%d M=%d N=%d K=%d alpha=%g beta=%g lda/ldb/ldc padded", tA, tB,
             M, N, K, alpha, beta);
    printf("%s: max err / (|alpha||A||B| + |beta||C|) %.3e (tol 2e-6)\n", name, err);
    int fail = check_true(name, err <= 2e-6, "error too large, or padding written");
    free(A), free(B), free(C0), free(C), free(want), free(mag);
    return fail;
}

static int test_gemm(void) {
    int fail = 0;
    for (int tA = 0; tA < 2; tA++) {
        for (int tB = 0; tB < 2; tB++) {
            fail += check_gemm(tA, tB, 5, 7, 6, 0.7f, 0.3f);
            fail += check_gemm(tA, tB, 5, 7, 6, 1.0f, 0.0f);
            fail += check_gemm(tA, tB, 130, 70, 200, -1.3f, 1.0f);
        }
    }
    // An empty inner dimension only scales C by beta.
    float C[6] = {1, 2, 3, 4, 5, 6}, want[6] = {0.5f, 1, 1.5f, 2, 2.5f, 3}, dummy = 0;
    be->k.gemm(be, 0, 0, 2, 3, 0, 1.0f, &dummy, 1, &dummy, 3, 0.5f, C, 3);
    fail += check_close_abs("gemm K=0 scales C by beta", C, want, 6, 0);
    return fail;
}

// -------------------------------------------------------------------------------------------- layernorm / groupnorm

static void ref_groupnorm(double* out, double* mean, double* rstd, const double* x, const double* w, const double* b,
                          int N, int C, int G, double eps) {
    int K = C / G;
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < G; g++) {
            const double* xs = x + n * C + g * K;
            double m = 0, var = 0;
            for (int c = 0; c < K; c++) m += xs[c];
            m /= K;
            for (int c = 0; c < K; c++) var += (xs[c] - m) * (xs[c] - m);
            var /= K;
            double rs = 1.0 / sqrt(var + eps);
            for (int c = 0; c < K; c++) out[n * C + g * K + c] = (xs[c] - m) * rs * w[g * K + c] + b[g * K + c];
            if (mean) mean[n * G + g] = m;
            if (rstd) rstd[n * G + g] = rs;
        }
    }
}

typedef struct {
    double *x, *w, *b;  // (N, C), (C), (C)
    const float* R;     // (N, C) loss weights
    int N, C, G;
    double eps;
} NormCase;

static double norm_loss(const void* ctx) {
    const NormCase* p = ctx;
    size_t n = (size_t)p->N * p->C;
    double* out = xmalloc(n * sizeof(double));
    ref_groupnorm(out, NULL, NULL, p->x, p->w, p->b, p->N, p->C, p->G, p->eps);
    double loss = weighted_sum(out, p->R, n);
    free(out);
    return loss;
}

// LayerNorm (G = 1, dinp +=) or GroupNorm (dinp =): forward, then every gradient vs finite differences.
static int check_norm(int layernorm, int N, int C, int G, float eps) {
    const char* op = layernorm ? "layernorm" : "groupnorm";
    size_t n = (size_t)N * C;
    float* x = random_floats(n, -1.0f, 3.0f);
    float* w = random_floats(C, 0.5f, 1.5f);
    float* b = random_floats(C, -0.5f, 0.5f);
    float* R = random_floats(n, -1.0f, 1.0f);
    float* out = test_poisoned_floats(n);
    float *mean = test_poisoned_floats((size_t)N * G), *rstd = test_poisoned_floats((size_t)N * G);
    if (layernorm) be->k.layernorm_forward(be, out, mean, rstd, x, w, b, N, C, eps);
    else be->k.groupnorm_forward(be, out, mean, rstd, x, w, b, N, C, G, eps);

    NormCase p = {test_to_doubles(x, n), test_to_doubles(w, C), test_to_doubles(b, C), R, N, C, G, eps};
    double* want = xmalloc(n * sizeof(double));
    double* want_mean = xmalloc((size_t)N * G * sizeof(double));
    double* want_rstd = xmalloc((size_t)N * G * sizeof(double));
    ref_groupnorm(want, want_mean, want_rstd, p.x, p.w, p.b, N, C, G, eps);
    char name[128];
    int fail = 0;
    snprintf(name, sizeof name, "%s forward N=%d C=%d G=%d: out", op, N, C, G);
    fail += check_forward(name, out, want, n);
    snprintf(name, sizeof name, "%s forward: mean", op);
    fail += check_forward(name, mean, want_mean, (size_t)N * G);
    snprintf(name, sizeof name, "%s forward: rstd", op);
    fail += check_forward(name, rstd, want_rstd, (size_t)N * G);

    float* dinp_pre = layernorm ? random_floats(n, -1, 1) : test_poisoned_floats(n);
    float* dw_pre = random_floats(C, -1, 1);
    float* db_pre = random_floats(C, -1, 1);
    float *dinp = test_copy_floats(dinp_pre, n), *dw = test_copy_floats(dw_pre, C), *db = test_copy_floats(db_pre, C);
    if (layernorm) be->k.layernorm_backward(be, dinp, dw, db, R, x, w, mean, rstd, N, C);
    else be->k.groupnorm_backward(be, dinp, dw, db, R, x, w, mean, rstd, N, C, G);
    float* fd_x = finite_diff(p.x, n, norm_loss, &p);
    float* fd_w = finite_diff(p.w, C, norm_loss, &p);
    float* fd_b = finite_diff(p.b, C, norm_loss, &p);
    if (layernorm) {
        fail += check_accumulated("layernorm backward: dinp += (pre-filled) vs finite differences", dinp, dinp_pre,
                                  fd_x, n);
    } else {
        fail += check_rel_to_max("groupnorm backward: dinp = (poisoned) vs finite differences", dinp, fd_x, n,
                                 GRAD_TOL);
    }
    snprintf(name, sizeof name, "%s backward: dweight += vs finite differences", op);
    fail += check_accumulated(name, dw, dw_pre, fd_w, C);
    snprintf(name, sizeof name, "%s backward: dbias += vs finite differences", op);
    fail += check_accumulated(name, db, db_pre, fd_b, C);

    // A frozen norm (dweight = dbias = NULL) gives the same dinp.
    float* dinp2 = test_copy_floats(dinp_pre, n);
    if (layernorm) be->k.layernorm_backward(be, dinp2, NULL, NULL, R, x, w, mean, rstd, N, C);
    else be->k.groupnorm_backward(be, dinp2, NULL, NULL, R, x, w, mean, rstd, N, C, G);
    snprintf(name, sizeof name, "%s backward with dweight = dbias = NULL: same dinp", op);
    fail += check_bitwise(name, dinp2, dinp, n * sizeof(float));

    free(x), free(w), free(b), free(R), free(out), free(mean), free(rstd), free(p.x), free(p.w), free(p.b);
    free(want), free(want_mean), free(want_rstd), free(dinp_pre), free(dw_pre), free(db_pre), free(dinp), free(dw);
    free(db), free(fd_x), free(fd_w), free(fd_b), free(dinp2);
    return fail;
}

// ------------------------------------------------------------------------------------------------ tokenshift

// xm[m][b][t] = x[b][t] + (prev - x[b][t]) mu[m], prev = x[b][t-1] or x_prev[b] at t = 0.
static void ref_tokenshift(double* xm, const double* x, const double* x_prev, const double* mu, int n_mix, int B,
                           int T, int C) {
    for (int m = 0; m < n_mix; m++)
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int c = 0; c < C; c++) {
                    double xv = x[(b * T + t) * C + c];
                    double prev = t > 0 ? x[(b * T + t - 1) * C + c] : x_prev[b * C + c];
                    xm[((m * B + b) * T + t) * C + c] = xv + (prev - xv) * mu[m * C + c];
                }
}

typedef struct {
    double *x, *x_prev, *mu;  // (B, T, C), (B, C) (zeros stand for NULL), (n_mix, C)
    const float* R;           // (n_mix, B, T, C)
    int n_mix, B, T, C;
} ShiftCase;

static double shift_loss(const void* ctx) {
    const ShiftCase* p = ctx;
    size_t n = (size_t)p->n_mix * p->B * p->T * p->C;
    double* xm = xmalloc(n * sizeof(double));
    ref_tokenshift(xm, p->x, p->x_prev, p->mu, p->n_mix, p->B, p->T, p->C);
    double loss = weighted_sum(xm, p->R, n);
    free(xm);
    return loss;
}

static int check_tokenshift(int n_mix, int B, int T, int C, int with_x_prev, int with_dx_prev) {
    size_t nx = (size_t)B * T * C, nm = (size_t)n_mix * nx;
    float* x = random_floats(nx, -2, 2);
    float* x_prev = with_x_prev ? random_floats((size_t)B * C, -2, 2) : xcalloc((size_t)B * C, sizeof(float));
    float* mu = random_floats((size_t)n_mix * C, 0, 1);
    float* R = random_floats(nm, -1, 1);
    const float* kx_prev = with_x_prev ? x_prev : NULL;  // the kernel sees NULL for "zeros"
    char cfg[96], name[192];
    snprintf(cfg, sizeof cfg, "n_mix=%d B=%d T=%d C=%d x_prev=%s dx_prev=%s", n_mix, B, T, C,
             with_x_prev ? "yes" : "NULL", with_dx_prev ? "yes" : "NULL");

    float* xm = test_poisoned_floats(nm);
    be->k.tokenshift_forward(be, xm, x, kx_prev, mu, n_mix, B, T, C);
    ShiftCase p = {test_to_doubles(x, nx), test_to_doubles(x_prev, (size_t)B * C),
                   test_to_doubles(mu, (size_t)n_mix * C), R, n_mix, B, T, C};
    double* want = xmalloc(nm * sizeof(double));
    ref_tokenshift(want, p.x, p.x_prev, p.mu, n_mix, B, T, C);
    snprintf(name, sizeof name, "tokenshift forward %s: xm", cfg);
    int fail = check_forward(name, xm, want, nm);

    float* dx_pre = random_floats(nx, -1, 1);
    float* dmu_pre = random_floats((size_t)n_mix * C, -1, 1);
    float *dx = test_copy_floats(dx_pre, nx), *dmu = test_copy_floats(dmu_pre, (size_t)n_mix * C);
    float* dx_prev = with_dx_prev ? test_poisoned_floats((size_t)B * C) : NULL;
    be->k.tokenshift_backward(be, dx, dx_prev, dmu, R, x, kx_prev, mu, n_mix, B, T, C);
    float* fd_x = finite_diff(p.x, nx, shift_loss, &p);
    float* fd_mu = finite_diff(p.mu, (size_t)n_mix * C, shift_loss, &p);
    snprintf(name, sizeof name, "tokenshift backward %s: dx +=", cfg);
    fail += check_accumulated(name, dx, dx_pre, fd_x, nx);
    snprintf(name, sizeof name, "tokenshift backward %s: dmu +=", cfg);
    fail += check_accumulated(name, dmu, dmu_pre, fd_mu, (size_t)n_mix * C);
    if (with_dx_prev) {
        float* fd_prev = finite_diff(p.x_prev, (size_t)B * C, shift_loss, &p);
        snprintf(name, sizeof name, "tokenshift backward %s: dx_prev = (poisoned)", cfg);
        fail += check_rel_to_max(name, dx_prev, fd_prev, (size_t)B * C, GRAD_TOL);
        free(fd_prev);
    }
    free(x), free(x_prev), free(mu), free(R), free(xm), free(p.x), free(p.x_prev), free(p.mu), free(want);
    free(dx_pre), free(dmu_pre), free(dx), free(dmu), free(dx_prev), free(fd_x), free(fd_mu);
    return fail;
}

static int test_tokenshift(void) {
    int fail = 0;
    fail += check_tokenshift(6, 2, 5, 70, 1, 1);  // two channel blocks, the second partial
    fail += check_tokenshift(2, 2, 40, 9, 1, 1);  // 80 rows: three dmu partial-sum chunks
    fail += check_tokenshift(6, 2, 3, 8, 0, 1);
    fail += check_tokenshift(1, 3, 4, 9, 1, 0);
    fail += check_tokenshift(1, 2, 1, 5, 0, 0);  // T = 1: every token's prev is x_prev
    return fail;
}

// ------------------------------------------------------------------------------------------------ activations

typedef enum { ACT_RELU2, ACT_SIGMOID, ACT_TANH } Activation;
static const char* const ACT_NAMES[] = {"relu2", "sigmoid", "tanh"};

static double ref_activation(Activation a, double x) {
    if (a == ACT_RELU2) return x > 0 ? x * x : 0;
    if (a == ACT_SIGMOID) return 1.0 / (1.0 + exp(-x));
    return tanh(x);
}

typedef struct {
    Activation act;
    double* x;
    const float* R;
    size_t n;
} ActCase;

static double act_loss(const void* ctx) {
    const ActCase* p = ctx;
    double s = 0;
    for (size_t i = 0; i < p->n; i++) s += ref_activation(p->act, p->x[i]) * p->R[i];
    return s;
}

static void act_forward(Activation a, float* out, const float* inp, size_t n) {
    if (a == ACT_RELU2) be->k.relu2_forward(be, out, inp, n);
    else if (a == ACT_SIGMOID) be->k.sigmoid_forward(be, out, inp, n);
    else be->k.tanh_forward(be, out, inp, n);
}

// relu2's backward takes the input, sigmoid's and tanh's the forward output.
static void act_backward(Activation a, float* dinp, const float* dout, const float* inp, const float* out, size_t n) {
    if (a == ACT_RELU2) be->k.relu2_backward(be, dinp, dout, inp, n);
    else if (a == ACT_SIGMOID) be->k.sigmoid_backward(be, dinp, dout, out, n);
    else be->k.tanh_backward(be, dinp, dout, out, n);
}

static int check_activation(Activation a) {
    char name[128];
    // forward on a size that runs in parallel; inputs keep |x| >= 0.05 so relu2's kink is not crossed
    size_t n = 40000;
    float* x = random_floats(n, 0.05f, 3.0f);
    for (size_t i = 0; i < n; i += 2) x[i] = -x[i];
    float* out = test_poisoned_floats(n);
    act_forward(a, out, x, n);
    double* want = xmalloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) want[i] = ref_activation(a, x[i]);
    snprintf(name, sizeof name, "%s forward n=%zu", ACT_NAMES[a], n);
    int fail = check_forward(name, out, want, n);

    // backward on the first 300 values
    size_t nb = 300;
    float* R = random_floats(nb, -1, 1);
    float* dinp = test_poisoned_floats(nb);
    act_backward(a, dinp, R, x, out, nb);
    ActCase p = {a, test_to_doubles(x, nb), R, nb};
    float* fd = finite_diff(p.x, nb, act_loss, &p);
    snprintf(name, sizeof name, "%s backward: dinp = (poisoned) vs finite differences", ACT_NAMES[a]);
    fail += check_rel_to_max(name, dinp, fd, nb, GRAD_TOL);
    free(x), free(out), free(want), free(R), free(dinp), free(p.x), free(fd);
    return fail;
}

// ------------------------------------------------------------------------------------------------ embedding

typedef struct {
    double* table;       // (V, C)
    const int32_t* idx;  // (N)
    const float* R;      // (N, C)
    int N, C;
} EmbeddingCase;

static double embedding_loss(const void* ctx) {
    const EmbeddingCase* p = ctx;
    double s = 0;
    for (int n = 0; n < p->N; n++)
        for (int c = 0; c < p->C; c++) s += p->table[p->idx[n] * p->C + c] * p->R[n * p->C + c];
    return s;
}

static int test_embedding(void) {
    int N = 12, C = 70, V = 5;
    int32_t idx[12] = {3, 0, 3, 4, 1, 3, 0, 2, 4, 3, 1, 0};  // repeated rows accumulate
    float* table = random_floats((size_t)V * C, -1, 1);
    float* out = test_poisoned_floats((size_t)N * C);
    be->k.embedding_forward(be, out, idx, table, N, C);
    double* want = xmalloc((size_t)N * C * sizeof(double));
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) want[n * C + c] = table[idx[n] * C + c];
    int fail = check_forward("embedding forward N=12 C=70 V=5: out = table[idx]", out, want, (size_t)N * C);

    float* R = random_floats((size_t)N * C, -1, 1);
    float* dt_pre = random_floats((size_t)V * C, -1, 1);
    float* dtable = test_copy_floats(dt_pre, (size_t)V * C);
    be->k.embedding_backward(be, dtable, R, idx, N, C, V);
    EmbeddingCase p = {test_to_doubles(table, (size_t)V * C), idx, R, N, C};
    float* fd = finite_diff(p.table, (size_t)V * C, embedding_loss, &p);
    fail += check_accumulated("embedding backward: dtable += vs finite differences", dtable, dt_pre, fd, (size_t)V * C);
    free(table), free(out), free(want), free(R), free(dt_pre), free(dtable), free(p.table), free(fd);
    return fail;
}

// ------------------------------------------------------------------------------------------------ cross-entropy

static void ref_crossentropy(double* losses, const double* logits, const int32_t* targets, int N, int V) {
    for (int n = 0; n < N; n++) {
        const double* l = logits + (size_t)n * V;
        if (targets[n] < 0) {
            losses[n] = 0;
            continue;
        }
        double max = l[0], sum = 0;
        for (int v = 1; v < V; v++) max = fmax(max, l[v]);
        for (int v = 0; v < V; v++) sum += exp(l[v] - max);
        losses[n] = max + log(sum) - l[targets[n]];
    }
}

typedef struct {
    double* logits;  // (N, V)
    const int32_t* targets;
    int N, V;
    double dloss;
} CrossEntropyCase;

// dloss * sum of the row losses: its gradient is dloss * (softmax - onehot) on trained rows.
static double crossentropy_loss(const void* ctx) {
    const CrossEntropyCase* p = ctx;
    double* losses = xmalloc((size_t)p->N * sizeof(double));
    ref_crossentropy(losses, p->logits, p->targets, p->N, p->V);
    double s = 0;
    for (int n = 0; n < p->N; n++) s += p->dloss * losses[n];
    free(losses);
    return s;
}

// The L2Wrap term the contract adds: l2wrap * max(row) at the FIRST index of the max (trained rows).
static void add_l2wrap(float* dlogits, const float* logits, const int32_t* targets, int N, int V, float l2wrap) {
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        const float* l = logits + (size_t)n * V;
        int argmax = 0;
        for (int v = 1; v < V; v++)
            if (l[v] > l[argmax]) argmax = v;
        dlogits[(size_t)n * V + argmax] = (float)((double)dlogits[(size_t)n * V + argmax] + (double)l2wrap * l[argmax]);
    }
}

static int rows_are_zero(const float* x, const int32_t* targets, int N, int V) {
    int ok = 1;
    for (int n = 0; n < N; n++)
        for (int v = 0; v < V && targets[n] < 0; v++) ok &= x[(size_t)n * V + v] == 0.0f;
    return ok;
}

static int test_crossentropy_small(void) {
    int N = 6, V = 37;
    int32_t targets[6] = {5, 0, -1, 36, 17, -1};  // rows 2 and 5 are masked
    float dloss = 0.7f, l2wrap = 0.01f;
    size_t n = (size_t)N * V;
    float* logits = random_floats(n, -4, 4);
    for (int v = 0; v < V; v++) logits[3 * V + v] += 50.0f;  // a row far from zero
    logits[0 * V + 3] = 6.0f;                                 // a tie for the max in row 0: the first wins
    logits[0 * V + 10] = 6.0f;
    float* losses = test_poisoned_floats(N);
    float* dlogits = test_poisoned_floats(n);
    be->k.crossentropy_forward_backward(be, losses, dlogits, logits, targets, N, V, dloss, 0.0f);

    CrossEntropyCase p = {test_to_doubles(logits, n), targets, N, V, dloss};
    double want_losses[6];
    ref_crossentropy(want_losses, p.logits, targets, N, V);
    int fail = check_forward("crossentropy N=6 V=37 (2 masked rows): losses", losses, want_losses, N);
    float* fd = finite_diff(p.logits, n, crossentropy_loss, &p);
    fail += check_rel_to_max("crossentropy l2wrap=0: dlogits = (poisoned) vs finite differences", dlogits, fd, n,
                             GRAD_TOL);
    fail += check_true("crossentropy: masked rows have loss 0 and zero dlogits",
                       losses[2] == 0 && losses[5] == 0 && rows_are_zero(dlogits, targets, N, V), "non-zero");

    float* dl_wrap = test_poisoned_floats(n);
    be->k.crossentropy_forward_backward(be, losses, dl_wrap, logits, targets, N, V, dloss, l2wrap);
    float* want_wrap = test_copy_floats(fd, n);
    add_l2wrap(want_wrap, logits, targets, N, V, l2wrap);
    fail += check_rel_to_max("crossentropy l2wrap=0.01: dlogits vs finite differences + l2wrap*max at first argmax",
                             dl_wrap, want_wrap, n, GRAD_TOL);
    fail += check_true("crossentropy l2wrap: the tie in row 0 credits index 3 only",
                       dl_wrap[3] - dlogits[3] > 0.05f && dl_wrap[10] == dlogits[10], "wrong argmax");

    float* in_place = test_copy_floats(logits, n);
    be->k.crossentropy_forward_backward(be, losses, in_place, in_place, targets, N, V, dloss, l2wrap);
    fail += check_bitwise("crossentropy with dlogits aliasing logits: same dlogits", in_place, dl_wrap,
                          n * sizeof(float));
    float* losses_only = test_poisoned_floats(N);
    be->k.crossentropy_forward_backward(be, losses_only, NULL, logits, targets, N, V, dloss, l2wrap);
    fail += check_bitwise("crossentropy with dlogits NULL: same losses", losses_only, losses, N * sizeof(float));
    free(logits), free(losses), free(dlogits), free(p.logits), free(fd), free(dl_wrap), free(want_wrap);
    free(in_place), free(losses_only);
    return fail;
}

// A large vocabulary over a wide range of logits: losses and dlogits against the analytic gradient.
static int test_crossentropy_large(void) {
    int N = 4, V = 50000;
    int32_t targets[4] = {7, 49999, 123, 25000};
    size_t n = (size_t)N * V;
    float* logits = random_floats(n, -30, 30);
    float* losses = test_poisoned_floats(N);
    float* dlogits = test_poisoned_floats(n);
    be->k.crossentropy_forward_backward(be, losses, dlogits, logits, targets, N, V, 1.0f, 0.0f);
    double want_losses[4];
    double* ld = test_to_doubles(logits, n);
    ref_crossentropy(want_losses, ld, targets, N, V);
    int fail = check_forward("crossentropy N=4 V=50000 logits in [-30, 30]: losses", losses, want_losses, N);
    double* want = xmalloc(n * sizeof(double));
    for (int r = 0; r < N; r++) {
        double* l = ld + (size_t)r * V;
        double max = l[0], sum = 0;
        for (int v = 1; v < V; v++) max = fmax(max, l[v]);
        for (int v = 0; v < V; v++) sum += exp(l[v] - max);
        for (int v = 0; v < V; v++) want[(size_t)r * V + v] = exp(l[v] - max) / sum - (v == targets[r]);
    }
    float* want_f = to_floats(want, n);  // every probability, down to e^-60, to 1e-5 of itself
    fail += check_close_rel("crossentropy V=50000: dlogits vs softmax - onehot (relative to each value)", dlogits,
                            want_f, n, FWD_TOL, 1e-30);
    free(want_f);
    free(logits), free(losses), free(dlogits), free(ld), free(want);
    return fail;
}

// -------------------------------------------------------------------------------------------- adamw and sum_squares

static int test_adamw(void) {
    size_t n = 40000;
    float lr = 1e-2f, b1 = 0.9f, b2 = 0.99f, eps = 1e-8f, wd = 0.1f, scale = 0.5f;
    float* param = random_floats(n, -1, 1);
    float* m = xcalloc(n, sizeof(float));
    float* v = xcalloc(n, sizeof(float));
    double* p_ref = test_to_doubles(param, n);
    double* m_ref = xcalloc(n, sizeof(double));
    double* v_ref = xcalloc(n, sizeof(double));
    int fail = 0;
    for (int step = 1; step <= 5; step++) {
        float* grad = random_floats(n, -2, 2);
        be->k.adamw_update(be, param, grad, m, v, n, lr, b1, b2, eps, wd, step, scale);
        double bc1 = 1 - pow(b1, step), bc2 = 1 - pow(b2, step);
        for (size_t i = 0; i < n; i++) {
            double g = (double)grad[i] * scale;
            m_ref[i] = b1 * m_ref[i] + (1 - (double)b1) * g;
            v_ref[i] = b2 * v_ref[i] + (1 - (double)b2) * g * g;
            p_ref[i] -= lr * ((m_ref[i] / bc1) / (sqrt(v_ref[i] / bc2) + eps) + wd * p_ref[i]);
        }
        char name[96];
        snprintf(name, sizeof name, "adamw step %d (lr 1e-2, wd 0.1, grad_scale 0.5): param", step);
        fail += check_forward(name, param, p_ref, n);
        free(grad);
    }
    fail += check_forward("adamw after 5 steps: m", m, m_ref, n);
    fail += check_forward("adamw after 5 steps: v", v, v_ref, n);
    free(param), free(m), free(v), free(p_ref), free(m_ref), free(v_ref);
    return fail;
}

static int check_sum_squares(size_t n) {
    float* x = random_floats(n, -3, 3);
    double want = 0;
    for (size_t i = 0; i < n; i++) want += (double)x[i] * x[i];
    double got = be->k.sum_squares(be, x, n);
    double rel = fabs(got - want) / fmax(want, 1e-300);
    char name[96], detail[96];
    snprintf(name, sizeof name, "sum_squares n=%zu", n);
    snprintf(detail, sizeof detail, "got %.17g want %.17g", got, want);
    printf("%s: rel err %.3e (tol 1e-12)\n", name, rel);
    free(x);
    return check_true(name, rel <= 1e-12, detail);
}

static int test_sum_squares(void) {
    float one = 1.0f;
    int fail = check_true("sum_squares n=0 is 0", be->k.sum_squares(be, &one, 0) == 0.0, "non-zero");
    fail += check_sum_squares(1000);
    fail += check_sum_squares(1000003);
    return fail;
}

// ------------------------------------------------------------------------------------------------ bf16 casts

// Nearest bf16 to x, ties to the even pattern, computed by comparing the two neighbours in double
// (an implementation independent of kernels/bf16.h). x must be finite.
static uint16_t ref_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);  // |lo| <= |x| < |hi|
    double dlo = fabs((double)x - (double)bf16_to_float(lo));
    uint32_t hu = (uint32_t)hi << 16;
    float hf;
    memcpy(&hf, &hu, 4);
    double dhi = fabs((double)x - (double)hf);
    if (dlo < dhi) return lo;
    if (dhi < dlo) return hi;
    return (lo & 1) ? hi : lo;
}

static int test_casts(void) {
    int fail = 0;
    // specific values: ties go to even, overflow rounds to Inf, signs and specials are kept
    const float vals[] = {1.0f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f, -(1.0f + 0x1p-8f),
                          INFINITY, -INFINITY, FLT_MAX, -0.0f, 0x1p-149f};
    const uint16_t want[] = {0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xBF80, 0x7F80, 0xFF80, 0x7F80, 0x8000, 0x0000};
    size_t nv = sizeof vals / sizeof vals[0];
    uint16_t got[16];
    be->k.f32_to_bf16(be, got, vals, nv);
    int same = memcmp(got, want, sizeof want) == 0;
    printf("bf16 specific values (ties to even, Inf, FLT_MAX -> Inf, -0, denormal):");
    for (size_t i = 0; i < nv; i++) printf(" %04x", got[i]);
    printf("\n");
    fail += check_true("bf16 specific values", same, "pattern mismatch");

    float nan_in[2] = {NAN, -NAN};
    uint16_t nan_out[2];
    float nan_back[2];
    be->k.f32_to_bf16(be, nan_out, nan_in, 2);
    be->k.bf16_to_f32(be, nan_back, nan_out, 2);
    fail += check_true("bf16 NaN stays NaN (both signs)", isnan(nan_back[0]) && isnan(nan_back[1]), "not NaN");

    // every bf16 pattern converts to float and back exactly (NaN patterns stay NaN)
    uint16_t* all = xmalloc(65536 * sizeof(uint16_t));
    uint16_t* back = xmalloc(65536 * sizeof(uint16_t));
    float* f = xmalloc(65536 * sizeof(float));
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    be->k.bf16_to_f32(be, f, all, 65536);
    be->k.f32_to_bf16(be, back, f, 65536);
    size_t bad = 0;
    for (uint32_t i = 0; i < 65536; i++) bad += isnan(f[i]) ? !isnan(bf16_to_float(back[i])) : back[i] != all[i];
    printf("bf16 round trip of all 65536 patterns: %zu mismatches (tol 0)\n", bad);
    fail += check_true("bf16 -> f32 -> bf16 round trip exact", bad == 0, "mismatch");

    // random floats over a wide range of exponents against the independent reference
    size_t n = 100000;
    float* x = xmalloc(n * sizeof(float));
    uint16_t* b = xmalloc(n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) x[i] = ldexpf(test_rng_uniform(&rng, -1, 1), (int)(i % 200) - 100);
    be->k.f32_to_bf16(be, b, x, n);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += b[i] != ref_bf16(x[i]);
    printf("f32 -> bf16 of %zu random floats vs nearest-even reference: %zu mismatches (tol 0)\n", n, bad);
    fail += check_true("f32 -> bf16 rounds to nearest even", bad == 0, "mismatch");
    free(all), free(back), free(f), free(x), free(b);
    return fail;
}

// ------------------------------------------------------------------------------------------------ determinism

// Inputs shared by the determinism runs: big enough that every op runs in parallel with several
// chunks / channel blocks.
enum { DN = 300, DC = 200, DG = 4, DMIX = 6, DB = 3, DT = 50, DV = 50, CE_N = 64, CE_V = 1000 };

typedef struct {
    float *x, *w, *mean, *rstd, *dout, *mu, *dxm, *logits;
    int32_t idx[DN], targets[CE_N];
} DetInputs;

// All parameter-gradient outputs of one run, in one flat buffer so runs compare with one memcmp.
typedef struct {
    float ln_dinp[DN * DC], ln_dw[DC], ln_db[DC];
    float gn_dinp[DN * DC], gn_dw[DC], gn_db[DC];
    float ts_dx[DB * DT * DC], ts_dprev[DB * DC], ts_dmu[DMIX * DC];
    float emb_dtable[DV * DC];
    float ce_losses[CE_N], ce_dlogits[CE_N * CE_V];
    double sumsq;
} DetOutputs;

static void determinism_run(DetOutputs* o, const DetInputs* in) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < DC; i++) o->ln_dw[i] = o->gn_dw[i] = 0.25f;  // += outputs start non-zero
    be->k.layernorm_backward(be, o->ln_dinp, o->ln_dw, o->ln_db, in->dout, in->x, in->w, in->mean, in->rstd, DN, DC);
    be->k.groupnorm_backward(be, o->gn_dinp, o->gn_dw, o->gn_db, in->dout, in->x, in->w, in->mean, in->rstd, DN, DC,
                             DG);
    const float* x_prev = in->x + DB * DT * DC;  // (DB, DC): the rows of x after the (DB, DT, DC) used as x
    be->k.tokenshift_backward(be, o->ts_dx, o->ts_dprev, o->ts_dmu, in->dxm, in->x, x_prev, in->mu, DMIX, DB, DT, DC);
    be->k.embedding_backward(be, o->emb_dtable, in->dout, in->idx, DN, DC, DV);
    be->k.crossentropy_forward_backward(be, o->ce_losses, o->ce_dlogits, in->logits, in->targets, CE_N, CE_V, 0.5f,
                                        1e-4f);
    o->sumsq = be->k.sum_squares(be, in->dout, (size_t)DN * DC);
}

static int test_determinism(void) {
    DetInputs in;
    in.x = random_floats((size_t)DN * DC, -1, 2);
    in.w = random_floats(DC, 0.5f, 1.5f);
    in.dout = random_floats((size_t)DN * DC, -1, 1);
    in.mu = random_floats((size_t)DMIX * DC, 0, 1);
    in.dxm = random_floats((size_t)DMIX * DB * DT * DC, -1, 1);
    in.logits = random_floats((size_t)CE_N * CE_V, -5, 5);
    in.mean = random_floats((size_t)DN * DG, -0.1f, 0.1f);  // statistics only need to be plausible
    in.rstd = random_floats((size_t)DN * DG, 0.5f, 2.0f);
    for (int n = 0; n < DN; n++) in.idx[n] = (int32_t)(test_rng_uniform(&rng, 0, DV - 0.01f));
    for (int n = 0; n < CE_N; n++) in.targets[n] = n % 7 == 3 ? -1 : (int32_t)(test_rng_uniform(&rng, 0, CE_V - 0.01f));

    int fail = check_true("determinism: the backend runs 2 OpenMP threads", omp_get_max_threads() == 2, "not 2");
    DetOutputs* a = xmalloc(sizeof *a);
    DetOutputs* b = xmalloc(sizeof *b);
    DetOutputs* c = xmalloc(sizeof *c);
    determinism_run(a, &in);
    determinism_run(b, &in);
    omp_set_num_threads(1);
    determinism_run(c, &in);
    omp_set_num_threads(2);
    fail += check_bitwise("determinism, 2 threads run twice: norm/tokenshift/embedding grads, CE, sum_squares", a, b,
                          sizeof *a);
    fail += check_bitwise("determinism, 1 vs 2 threads: norm/tokenshift/embedding grads, CE, sum_squares", a, c,
                          sizeof *a);

    // AdamW is elementwise: also thread-count independent.
    size_t n = (size_t)DN * DC;
    float *p1 = test_copy_floats(in.x, n), *p2 = test_copy_floats(in.x, n);
    float *m1 = xcalloc(n, sizeof(float)), *m2 = xcalloc(n, sizeof(float));
    float *v1 = xcalloc(n, sizeof(float)), *v2 = xcalloc(n, sizeof(float));
    be->k.adamw_update(be, p1, in.dout, m1, v1, n, 1e-3f, 0.9f, 0.99f, 1e-8f, 0.1f, 1, 1.0f);
    omp_set_num_threads(1);
    be->k.adamw_update(be, p2, in.dout, m2, v2, n, 1e-3f, 0.9f, 0.99f, 1e-8f, 0.1f, 1, 1.0f);
    omp_set_num_threads(2);
    fail += check_bitwise("determinism, 1 vs 2 threads: adamw param", p1, p2, n * sizeof(float));

    // gemm: bit-identical run to run at a fixed thread count
    int M = 257, N = 129, K = 300;
    float* A = random_floats((size_t)M * K, -1, 1);
    float* B = random_floats((size_t)K * N, -1, 1);
    float* C1 = xcalloc((size_t)M * N, sizeof(float));
    float* C2 = xcalloc((size_t)M * N, sizeof(float));
    be->k.gemm(be, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C1, N);
    be->k.gemm(be, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C2, N);
    fail += check_bitwise("determinism, gemm run twice", C1, C2, (size_t)M * N * sizeof(float));

    free(in.x), free(in.w), free(in.dout), free(in.mu), free(in.dxm), free(in.logits), free(in.mean), free(in.rstd);
    free(a), free(b), free(c), free(p1), free(p2), free(m1), free(m2), free(v1), free(v2), free(A), free(B), free(C1);
    free(C2);
    return fail;
}

// ------------------------------------------------------------------------------------------------ main

int main(void) {
    test_rng_seed(&rng, 7);
    be = backend_cpu_create(2);
    int fail = 0;
    fail += test_backend();
    fail += test_gemm();
    fail += check_norm(1, 70, 24, 1, 1e-5f);  // 70 rows: three partial-sum chunks, the last partial
    fail += check_norm(0, 70, 24, 3, 64e-5f);
    fail += test_tokenshift();
    fail += check_activation(ACT_RELU2);
    fail += check_activation(ACT_SIGMOID);
    fail += check_activation(ACT_TANH);
    fail += test_embedding();
    fail += test_crossentropy_small();
    fail += test_crossentropy_large();
    fail += test_adamw();
    fail += test_sum_squares();
    fail += test_casts();
    fail += test_determinism();
    backend_destroy(be);
    return test_summary("test_kernels_cpu", fail);
}

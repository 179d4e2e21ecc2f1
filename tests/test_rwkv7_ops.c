// test_rwkv7_ops.c — specification of the CPU backend's plain vector ops (zero, copy, axpy, mul) and of the
// RWKV-7 TimeMix elementwise ops (decay, bias_sigmoid, vres, kprep, bonus_gate); contracts in kernels/kernels.h,
// maths in reference/rwkv7.md §2.2-2.3 and §3.2.
//
// - Every forward is compared with a plain double-precision reference written below, on random inputs
//   bounded away from zero; "=" outputs start NaN-poisoned and must be fully written.
// - Every backward is compared with central finite differences (in double) of the reference loss
//   L = sum_i out_i R_i with random weights R, for EVERY input including the per-channel parameters
//   (kprep: L sums over kk, kmod, wa and wb with separate weights; kk's weight enters the backward through
//   dwa, since wa = -kk). The step is relative, h = 1e-4 |x|, so tiny inputs get tiny steps.
//   Each loss is a sum over rows and an activation only changes its own row, so the difference for an
//   activation evaluates that row's terms only (the same derivative, far cheaper and with less rounding);
//   a per-channel parameter evaluates all rows.
// - "+=" outputs start from random pre-filled buffers and must equal prefill + gradient.
// - Shapes: head sizes 8, 16 and 64; N = 1 and N = 70 rows with C = 128 + hs channels, so the per-channel
//   reductions run over three blocks of 64 channels (the last partial for hs 8 and 16) and rows are split
//   between 2 threads.
// - kk normalisation edge: one head of one row with |k0 k_k| ~ 1e-9 (far below 1, above the 1e-12 clamp):
//   every value finite, kk of unit norm, and gradients of size ~1e9 still match finite differences.
// - Determinism: every op run with 1 and 2 threads, and twice with 2, gives bit-identical results.
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "tests/testutil.h"

static Backend* be;
static TestRng rng;

static const double FWD_TOL = 1e-5;   // forward vs double reference, relative
static const double GRAD_TOL = 1e-3;  // backward vs finite differences, relative
static const double FD_STEP = 1e-4;   // central-difference step relative to |x|
static const float TINY = 1e-10f;     // k0 scale of the tiny head in the kk-normalisation edge case

// ------------------------------------------------------------------------------------------------ helpers

// Uniform in [lo, hi), from this test's random stream (xmalloc'd, like every buffer helper of testutil.h).
static float* random_floats(size_t n, float lo, float hi) { return test_random_floats(&rng, n, lo, hi); }

// Magnitudes uniform in [lo, hi] with random signs: never zero (lo > 0).
static float* random_signed(size_t n, float lo, float hi) {
    float* x = random_floats(n, lo, hi);
    for (size_t i = 0; i < n; i++)
        if (test_rng_uniform(&rng, 0, 1) < 0.5f) x[i] = -x[i];
    return x;
}

static double* new_doubles(size_t n) { return xmalloc(n * sizeof(double)); }

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

// "cfg: what" in a static buffer (one name at a time: the checks print it immediately).
static const char* label(const char* cfg, const char* what) {
    static char buf[256];
    snprintf(buf, sizeof buf, "%s: %s", cfg, what);
    return buf;
}

// As check_rel; when tiny > 0 the first `tiny` values (the tiny head of the kk edge case, on a scale of
// their own) and the rest are judged separately.
static int check_parts(const char* name, const float* got, const float* want, size_t n, double tol, size_t tiny) {
    if (tiny == 0) return check_rel_to_max(name, got, want, n, tol);
    char part[320];
    snprintf(part, sizeof part, "%s [tiny head]", name);
    int fail = check_rel_to_max(part, got, want, tiny, tol);
    snprintf(part, sizeof part, "%s [other heads]", name);
    return fail + check_rel_to_max(part, got + tiny, want + tiny, n - tiny, tol);
}

static int check_forward(const char* name, const float* got, const double* want, size_t n, size_t tiny) {
    float* w = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) w[i] = (float)want[i];
    int fail = check_parts(name, got, w, n, FWD_TOL, tiny);
    free(w);
    return fail;
}

// An "=" gradient: got (started poisoned) must equal the finite differences.
static int check_grad(const char* name, const float* got, const float* fd, size_t n, size_t tiny) {
    return check_parts(name, got, fd, n, GRAD_TOL, tiny);
}

// A "+=" gradient: got must equal prefill + finite differences.
static int check_accumulated(const char* name, const float* got, const float* prefill, const float* fd, size_t n,
                             size_t tiny) {
    float* want = test_plus(prefill, fd, n);
    int fail = check_parts(name, got, want, n, GRAD_TOL, tiny);
    free(want);
    return fail;
}

// Loss restricted to rows [row0, row1): the full loss is loss(ctx, 0, N).
typedef double (*LossFn)(const void* ctx, int row0, int row1);

// Central finite differences of the loss with respect to the n doubles at x (perturbed in place, never
// zero). row_len > 0: x is (N, row_len) and x[i] only changes row i / row_len; row_len == 0: x is a
// per-channel parameter that changes all N rows.
static float* finite_diff(double* x, size_t n, int row_len, int N, LossFn loss, const void* ctx) {
    float* grad = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        int row0 = row_len ? (int)(i / (size_t)row_len) : 0;
        int row1 = row_len ? row0 + 1 : N;
        double x0 = x[i], h = FD_STEP * fabs(x0);
        x[i] = x0 + h;
        double up = loss(ctx, row0, row1);
        x[i] = x0 - h;
        double down = loss(ctx, row0, row1);
        x[i] = x0;
        grad[i] = (float)((up - down) / (2 * h));
    }
    return grad;
}

// ------------------------------------------------------------------------------------------------ vector ops

static int check_vector_ops(size_t n) {
    char cfg[64];
    snprintf(cfg, sizeof cfg, "vector ops n=%zu", n);
    float* x = random_signed(n, 0.1f, 2.0f);
    float* b = random_signed(n, 0.1f, 2.0f);
    float* y0 = random_signed(n, 0.1f, 2.0f);

    float* z = test_copy_floats(x, n);
    be->k.zero(be, z, n);
    float* zeros = xcalloc(n, sizeof(float));
    int fail = check_close_abs(label(cfg, "zero: x = 0"), z, zeros, n, 0);

    float* dst = test_poisoned_floats(n);
    be->k.copy(be, dst, x, n);
    fail += check_bitwise(label(cfg, "copy: dst = src (poisoned dst)"), dst, x, n * sizeof(float));
    be->k.copy(be, dst, dst, n);
    fail += check_bitwise(label(cfg, "copy with dst == src: unchanged"), dst, x, n * sizeof(float));

    float alpha = -0.7f;
    float* y = test_copy_floats(y0, n);
    be->k.axpy(be, y, alpha, x, n);
    double* want = new_doubles(n);
    for (size_t i = 0; i < n; i++) want[i] = (double)y0[i] + (double)alpha * x[i];
    fail += check_forward(label(cfg, "axpy: y += -0.7 x (pre-filled y)"), y, want, n, 0);

    float* out = test_poisoned_floats(n);
    be->k.mul(be, out, x, b, n);
    for (size_t i = 0; i < n; i++) want[i] = (double)x[i] * b[i];
    fail += check_forward(label(cfg, "mul: out = a b (poisoned out)"), out, want, n, 0);
    free(x), free(b), free(y0), free(z), free(zeros), free(dst), free(y), free(want), free(out);
    return fail;
}

// n = 0 writes nothing.
static int check_vector_ops_empty(void) {
    float x[2] = {1.5f, -2.5f}, y[2] = {3.0f, 4.0f}, o[2] = {5.0f, 6.0f};
    be->k.zero(be, x, 0);
    be->k.copy(be, y, x, 0);
    be->k.axpy(be, y, 2.0f, x, 0);
    be->k.mul(be, o, x, y, 0);
    int same = x[0] == 1.5f && x[1] == -2.5f && y[0] == 3.0f && y[1] == 4.0f && o[0] == 5.0f && o[1] == 6.0f;
    printf("vector ops n=0: buffers after zero/copy/axpy/mul: x {%g, %g} y {%g, %g} out {%g, %g}\n", x[0], x[1], y[0],
           y[1], o[0], o[1]);
    return check_true("vector ops n=0 leave every buffer untouched", same, "a buffer was written");
}

// ------------------------------------------------------------------------------------------------ decay

// w = exp(-exp(-0.5) sigmoid(pre + w0)), in (exp(-exp(-0.5)), 1) = (0.5453, 1).
static double ref_decay(double pre, double w0) { return exp(-exp(-0.5) * sigmoid(pre + w0)); }

typedef struct {
    double *pre, *w0;  // (N, C), (C)
    const float* R;    // (N, C) loss weights of w
    int N, C;
} DecayCase;

static double decay_loss(const void* ctx, int row0, int row1) {
    const DecayCase* p = ctx;
    double L = 0;
    for (size_t i = (size_t)row0 * p->C; i < (size_t)row1 * p->C; i++)
        L += ref_decay(p->pre[i], p->w0[i % p->C]) * p->R[i];
    return L;
}

static int check_decay(int N, int C) {
    size_t nc = (size_t)N * C;
    char cfg[64];
    snprintf(cfg, sizeof cfg, "decay N=%d C=%d", N, C);
    float* pre = random_signed(nc, 0.1f, 3.0f);
    float* w0 = random_signed(C, 0.1f, 3.0f);
    float* R = random_floats(nc, -1, 1);
    float *w = test_poisoned_floats(nc), *d = test_poisoned_floats(nc);
    be->k.rwkv7_decay_forward(be, w, d, pre, w0, N, C);

    DecayCase p = {test_to_doubles(pre, nc), test_to_doubles(w0, C), R, N, C};
    double *want_w = new_doubles(nc), *want_d = new_doubles(nc);
    int in_range = 1;
    for (size_t i = 0; i < nc; i++) {
        want_d[i] = p.pre[i] + p.w0[i % C];
        want_w[i] = ref_decay(p.pre[i], p.w0[i % C]);
        in_range &= w[i] > 0.5453f && w[i] < 1.0f;
    }
    int fail = check_forward(label(cfg, "forward w = exp(-e^-0.5 sigmoid(pre + w0))"), w, want_w, nc, 0);
    fail += check_forward(label(cfg, "forward d = pre + w0 (saved)"), d, want_d, nc, 0);
    fail += check_true(label(cfg, "forward w in (0.5453, 1)"), in_range, "a decay out of range");

    float* dpre = test_poisoned_floats(nc);
    float* dw0_pre = random_floats(C, -1, 1);
    float* dw0 = test_copy_floats(dw0_pre, C);
    be->k.rwkv7_decay_backward(be, dpre, dw0, R, w, d, N, C);
    float* fd_pre = finite_diff(p.pre, nc, C, N, decay_loss, &p);
    float* fd_w0 = finite_diff(p.w0, C, 0, N, decay_loss, &p);
    fail += check_grad(label(cfg, "backward dpre = (poisoned) vs finite differences"), dpre, fd_pre, nc, 0);
    fail += check_accumulated(label(cfg, "backward dw0 += (pre-filled) vs finite differences"), dw0, dw0_pre, fd_w0,
                              C, 0);
    free(pre), free(w0), free(R), free(w), free(d), free(p.pre), free(p.w0), free(want_w), free(want_d);
    free(dpre), free(dw0_pre), free(dw0), free(fd_pre), free(fd_w0);
    return fail;
}

// ------------------------------------------------------------------------------------------------ bias + sigmoid

typedef struct {
    double *inp, *bias;  // (N, C), (C)
    const float* R;      // (N, C) loss weights of out
    int N, C;
} BiasSigmoidCase;

static double bias_sigmoid_loss(const void* ctx, int row0, int row1) {
    const BiasSigmoidCase* p = ctx;
    double L = 0;
    for (size_t i = (size_t)row0 * p->C; i < (size_t)row1 * p->C; i++)
        L += sigmoid(p->inp[i] + p->bias[i % p->C]) * p->R[i];
    return L;
}

static int check_bias_sigmoid(int N, int C) {
    size_t nc = (size_t)N * C;
    char cfg[64];
    snprintf(cfg, sizeof cfg, "bias_sigmoid N=%d C=%d", N, C);
    float* inp = random_signed(nc, 0.1f, 3.0f);
    float* bias = random_signed(C, 0.1f, 2.0f);
    float* R = random_floats(nc, -1, 1);
    float* out = test_poisoned_floats(nc);
    be->k.bias_sigmoid_forward(be, out, inp, bias, N, C);

    BiasSigmoidCase p = {test_to_doubles(inp, nc), test_to_doubles(bias, C), R, N, C};
    double* want = new_doubles(nc);
    for (size_t i = 0; i < nc; i++) want[i] = sigmoid(p.inp[i] + p.bias[i % C]);
    int fail = check_forward(label(cfg, "forward out = sigmoid(inp + bias)"), out, want, nc, 0);

    float* dinp = test_poisoned_floats(nc);
    float* dbias_pre = random_floats(C, -1, 1);
    float* dbias = test_copy_floats(dbias_pre, C);
    be->k.bias_sigmoid_backward(be, dinp, dbias, R, out, N, C);
    float* fd_inp = finite_diff(p.inp, nc, C, N, bias_sigmoid_loss, &p);
    float* fd_bias = finite_diff(p.bias, C, 0, N, bias_sigmoid_loss, &p);
    fail += check_grad(label(cfg, "backward dinp = (poisoned) vs finite differences"), dinp, fd_inp, nc, 0);
    fail += check_accumulated(label(cfg, "backward dbias += (pre-filled) vs finite differences"), dbias, dbias_pre,
                              fd_bias, C, 0);
    free(inp), free(bias), free(R), free(out), free(p.inp), free(p.bias), free(want), free(dinp), free(dbias_pre);
    free(dbias), free(fd_inp), free(fd_bias);
    return fail;
}

// ------------------------------------------------------------------------------------------------ value residual

static double ref_vres(double vp, double vfirst, double gamma) { return vp + (vfirst - vp) * gamma; }

typedef struct {
    double *vp, *vfirst, *gamma;  // (N, C) each
    const float* R;               // (N, C) loss weights of v
    int N, C;
} VresCase;

static double vres_loss(const void* ctx, int row0, int row1) {
    const VresCase* p = ctx;
    double L = 0;
    for (size_t i = (size_t)row0 * p->C; i < (size_t)row1 * p->C; i++)
        L += ref_vres(p->vp[i], p->vfirst[i], p->gamma[i]) * p->R[i];
    return L;
}

static int check_vres(int N, int C) {
    size_t nc = (size_t)N * C;
    char cfg[64];
    snprintf(cfg, sizeof cfg, "vres N=%d C=%d", N, C);
    float* vp = random_signed(nc, 0.1f, 2.0f);
    float* vfirst = random_signed(nc, 0.1f, 2.0f);
    float* gamma = random_floats(nc, 0.05f, 0.95f);
    float* R = random_floats(nc, -1, 1);
    float* v = test_poisoned_floats(nc);
    be->k.rwkv7_vres_forward(be, v, vp, vfirst, gamma, nc);

    VresCase p = {test_to_doubles(vp, nc), test_to_doubles(vfirst, nc), test_to_doubles(gamma, nc), R, N, C};
    double* want = new_doubles(nc);
    for (size_t i = 0; i < nc; i++) want[i] = ref_vres(p.vp[i], p.vfirst[i], p.gamma[i]);
    int fail = check_forward(label(cfg, "forward v = vp + (vfirst - vp) gamma"), v, want, nc, 0);

    float *dvp = test_poisoned_floats(nc), *dgamma = test_poisoned_floats(nc);
    float* dvfirst_pre = random_floats(nc, -1, 1);
    float* dvfirst = test_copy_floats(dvfirst_pre, nc);
    be->k.rwkv7_vres_backward(be, dvp, dvfirst, dgamma, R, vp, vfirst, gamma, nc);
    float* fd_vp = finite_diff(p.vp, nc, C, N, vres_loss, &p);
    float* fd_vfirst = finite_diff(p.vfirst, nc, C, N, vres_loss, &p);
    float* fd_gamma = finite_diff(p.gamma, nc, C, N, vres_loss, &p);
    fail += check_grad(label(cfg, "backward dvp = (poisoned) vs finite differences"), dvp, fd_vp, nc, 0);
    fail += check_accumulated(label(cfg, "backward dvfirst += (pre-filled) vs finite differences"), dvfirst,
                              dvfirst_pre, fd_vfirst, nc, 0);
    fail += check_grad(label(cfg, "backward dgamma = (poisoned) vs finite differences"), dgamma, fd_gamma, nc, 0);
    free(vp), free(vfirst), free(gamma), free(R), free(v), free(p.vp), free(p.vfirst), free(p.gamma), free(want);
    free(dvp), free(dgamma), free(dvfirst_pre), free(dvfirst), free(fd_vp), free(fd_vfirst), free(fd_gamma);
    return fail;
}

// ------------------------------------------------------------------------------------------------ key preparation

// One row of C channels in heads of hs: u = k0 k_k, kk = u / max(|u|_head, 1e-12), kmod = k0 (1 + (a - 1) k_a),
// wa = -kk, wb = kk a.
static void ref_kprep_row(double* kk, double* kmod, double* wa, double* wb, const double* k0, const double* a,
                          const double* k_k, const double* k_a, int C, int hs) {
    for (int h0 = 0; h0 < C; h0 += hs) {
        double ss = 0;
        for (int c = h0; c < h0 + hs; c++) ss += (k0[c] * k_k[c]) * (k0[c] * k_k[c]);
        double norm = fmax(sqrt(ss), 1e-12);
        for (int c = h0; c < h0 + hs; c++) {
            kk[c] = k0[c] * k_k[c] / norm;
            kmod[c] = k0[c] * (1 + (a[c] - 1) * k_a[c]);
            wa[c] = -kk[c];
            wb[c] = kk[c] * a[c];
        }
    }
}

typedef struct {
    double *k0, *a, *k_k, *k_a;                // (N, C), (N, C), (C), (C)
    const float *R_kk, *R_kmod, *R_wa, *R_wb;  // (N, C) loss weights of each output
    double* row;                               // scratch (4, C)
    int N, C, hs;
} KprepCase;

static double kprep_loss(const void* ctx, int row0, int row1) {
    const KprepCase* p = ctx;
    int C = p->C;
    double *kk = p->row, *kmod = kk + C, *wa = kmod + C, *wb = wa + C;
    double L = 0;
    for (int n = row0; n < row1; n++) {
        size_t o = (size_t)n * C;
        ref_kprep_row(kk, kmod, wa, wb, p->k0 + o, p->a + o, p->k_k, p->k_a, C, p->hs);
        for (int c = 0; c < C; c++)
            L += kk[c] * p->R_kk[o + c] + kmod[c] * p->R_kmod[o + c] + wa[c] * p->R_wa[o + c] +
                 wb[c] * p->R_wb[o + c];
    }
    return L;
}

static size_t count_nonfinite(const float* x, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += !isfinite(x[i]);
    return bad;
}

// The kk edge case: the tiny head (row 0, head 0) is finite everywhere and kk there has unit norm.
static int check_tiny_head(const char* cfg, float* const outs[], int n_outs, size_t nc, const float* kk, int hs) {
    size_t bad = 0;
    for (int i = 0; i < n_outs; i++) bad += count_nonfinite(outs[i], nc);
    printf("%s: %zu non-finite values in kk, kmod, wa, wb, dk0, da (tol 0)\n", cfg, bad);
    int fail = check_true(label(cfg, "kk, kmod, wa, wb, dk0, da finite"), bad == 0, "non-finite values");
    double ss = 0;
    for (int j = 0; j < hs; j++) ss += (double)kk[j] * kk[j];
    double err = fabs(sqrt(ss) - 1);
    char detail[64];
    snprintf(detail, sizeof detail, "|kk| = %.9g", sqrt(ss));
    printf("%s: tiny head |kk| - 1 = %.3e (tol 1e-5)\n", cfg, err);
    return fail + check_true(label(cfg, "tiny head kk has unit norm"), err <= 1e-5, detail);
}

// tiny != 0: k0 of row 0, head 0 is scaled by TINY, so |k0 k_k| there is ~1e-9.
static int check_kprep(int N, int C, int hs, int tiny) {
    size_t nc = (size_t)N * C, split = tiny ? (size_t)hs : 0;
    char cfg[96];
    snprintf(cfg, sizeof cfg, "kprep N=%d C=%d hs=%d%s", N, C, hs, tiny ? " (tiny |k0 k_k| in row 0 head 0)" : "");
    float* k0 = random_signed(nc, 0.1f, 2.0f);
    for (size_t j = 0; j < split; j++) k0[j] *= TINY;
    float* a = random_floats(nc, 0.05f, 0.95f);
    float* k_k = random_signed(C, 0.1f, 1.5f);
    float* k_a = random_signed(C, 0.1f, 1.5f);
    float *R_kk = random_floats(nc, -1, 1), *R_kmod = random_floats(nc, -1, 1);
    float *R_wa = random_floats(nc, -1, 1), *R_wb = random_floats(nc, -1, 1);
    float *kk = test_poisoned_floats(nc), *kmod = test_poisoned_floats(nc);
    float *wa = test_poisoned_floats(nc), *wb = test_poisoned_floats(nc);
    be->k.rwkv7_kprep_forward(be, kk, kmod, wa, wb, k0, a, k_k, k_a, N, C, hs);

    KprepCase p = {test_to_doubles(k0, nc), test_to_doubles(a, nc), test_to_doubles(k_k, C), test_to_doubles(k_a, C),
                   R_kk, R_kmod, R_wa, R_wb, new_doubles(4 * (size_t)C), N, C, hs};
    double *want_kk = new_doubles(nc), *want_kmod = new_doubles(nc), *want_wa = new_doubles(nc);
    double* want_wb = new_doubles(nc);
    for (int n = 0; n < N; n++) {
        size_t o = (size_t)n * C;
        ref_kprep_row(want_kk + o, want_kmod + o, want_wa + o, want_wb + o, p.k0 + o, p.a + o, p.k_k, p.k_a, C, hs);
    }
    int fail = check_forward(label(cfg, "forward kk = per-head normalise(k0 k_k)"), kk, want_kk, nc, split);
    fail += check_forward(label(cfg, "forward kmod = k0 (1 + (a - 1) k_a)"), kmod, want_kmod, nc, split);
    fail += check_forward(label(cfg, "forward wa = -kk"), wa, want_wa, nc, split);
    fail += check_forward(label(cfg, "forward wb = kk a"), wb, want_wb, nc, split);

    // kk's own gradient enters through wa = -kk: dwa = R_wa - R_kk.
    float* dwa = xmalloc(nc * sizeof(float));
    for (size_t i = 0; i < nc; i++) dwa[i] = R_wa[i] - R_kk[i];
    float *dk0 = test_poisoned_floats(nc), *da = test_poisoned_floats(nc);
    float *dk_k_pre = random_floats(C, -1, 1), *dk_a_pre = random_floats(C, -1, 1);
    float *dk_k = test_copy_floats(dk_k_pre, C), *dk_a = test_copy_floats(dk_a_pre, C);
    be->k.rwkv7_kprep_backward(be, dk0, da, dk_k, dk_a, R_kmod, dwa, R_wb, k0, a, kk, k_k, k_a, N, C, hs);
    float* fd_k0 = finite_diff(p.k0, nc, C, N, kprep_loss, &p);
    float* fd_a = finite_diff(p.a, nc, C, N, kprep_loss, &p);
    float* fd_k_k = finite_diff(p.k_k, C, 0, N, kprep_loss, &p);
    float* fd_k_a = finite_diff(p.k_a, C, 0, N, kprep_loss, &p);
    fail += check_grad(label(cfg, "backward dk0 = (poisoned) vs finite differences"), dk0, fd_k0, nc, split);
    fail += check_grad(label(cfg, "backward da = (poisoned) vs finite differences"), da, fd_a, nc, split);
    fail += check_accumulated(label(cfg, "backward dk_k += (pre-filled) vs finite differences"), dk_k, dk_k_pre,
                              fd_k_k, C, 0);
    fail += check_accumulated(label(cfg, "backward dk_a += (pre-filled) vs finite differences"), dk_a, dk_a_pre,
                              fd_k_a, C, 0);
    if (tiny) {
        float* const outs[] = {kk, kmod, wa, wb, dk0, da};
        fail += check_tiny_head(cfg, outs, 6, nc, kk, hs);
        size_t bad = count_nonfinite(dk_k, C) + count_nonfinite(dk_a, C);
        fail += check_true(label(cfg, "dk_k and dk_a finite"), bad == 0, "non-finite values");
    }
    free(k0), free(a), free(k_k), free(k_a), free(R_kk), free(R_kmod), free(R_wa), free(R_wb), free(kk), free(kmod);
    free(wa), free(wb), free(p.k0), free(p.a), free(p.k_k), free(p.k_a), free(p.row), free(want_kk), free(want_kmod);
    free(want_wa), free(want_wb), free(dwa), free(dk0), free(da), free(dk_k_pre), free(dk_a_pre), free(dk_k);
    free(dk_a), free(fd_k0), free(fd_a), free(fd_k_k), free(fd_k_a);
    return fail;
}

// ------------------------------------------------------------------------------------------------ bonus + gate

// One row: z = (n + s_h v) g with s_h = sum_{j in head h} r_j k_j r_k_j.
static void ref_bonus_row(double* z, const double* n, const double* r, const double* k, const double* v,
                          const double* r_k, const double* g, int C, int hs) {
    for (int h0 = 0; h0 < C; h0 += hs) {
        double s = 0;
        for (int c = h0; c < h0 + hs; c++) s += r[c] * k[c] * r_k[c];
        for (int c = h0; c < h0 + hs; c++) z[c] = (n[c] + s * v[c]) * g[c];
    }
}

typedef struct {
    double *n, *r, *k, *v, *r_k, *g;  // (N, C) each except r_k (C)
    const float* R;                   // (N, C) loss weights of z
    double* row;                      // scratch (C)
    int N, C, hs;
} BonusCase;

static double bonus_loss(const void* ctx, int row0, int row1) {
    const BonusCase* p = ctx;
    double L = 0;
    for (int n = row0; n < row1; n++) {
        size_t o = (size_t)n * p->C;
        ref_bonus_row(p->row, p->n + o, p->r + o, p->k + o, p->v + o, p->r_k, p->g + o, p->C, p->hs);
        for (int c = 0; c < p->C; c++) L += p->row[c] * p->R[o + c];
    }
    return L;
}

static int check_bonus_gate(int N, int C, int hs) {
    size_t nc = (size_t)N * C;
    char cfg[64];
    snprintf(cfg, sizeof cfg, "bonus_gate N=%d C=%d hs=%d", N, C, hs);
    float *n_ = random_signed(nc, 0.1f, 2.0f), *r = random_signed(nc, 0.1f, 1.5f);
    float *k = random_signed(nc, 0.1f, 1.5f), *v = random_signed(nc, 0.1f, 1.5f);
    float *r_k = random_signed(C, 0.1f, 1.0f), *g = random_signed(nc, 0.1f, 2.0f);
    float* R = random_floats(nc, -1, 1);
    float* z = test_poisoned_floats(nc);
    be->k.rwkv7_bonus_gate_forward(be, z, n_, r, k, v, r_k, g, N, C, hs);

    BonusCase p = {test_to_doubles(n_, nc), test_to_doubles(r, nc), test_to_doubles(k, nc), test_to_doubles(v, nc),
                   test_to_doubles(r_k, C), test_to_doubles(g, nc), R, new_doubles(C), N, C, hs};
    double* want = new_doubles(nc);
    for (int row = 0; row < N; row++) {
        size_t o = (size_t)row * C;
        ref_bonus_row(want + o, p.n + o, p.r + o, p.k + o, p.v + o, p.r_k, p.g + o, C, hs);
    }
    int fail = check_forward(label(cfg, "forward z = (n + s_h v) g"), z, want, nc, 0);

    float *dg = test_poisoned_floats(nc), *dn = test_poisoned_floats(nc);
    float *dr_pre = random_floats(nc, -1, 1), *dk_pre = random_floats(nc, -1, 1), *dv_pre = random_floats(nc, -1, 1);
    float* dr_k_pre = random_floats(C, -1, 1);
    float *dr = test_copy_floats(dr_pre, nc), *dk = test_copy_floats(dk_pre, nc), *dv = test_copy_floats(dv_pre, nc);
    float* dr_k = test_copy_floats(dr_k_pre, C);
    be->k.rwkv7_bonus_gate_backward(be, dg, dr, dk, dv, dr_k, R, n_, r, k, v, r_k, g, N, C, hs);
    be->k.mul(be, dn, R, g, nc);  // the contract's dn = dz g
    float* fd_n = finite_diff(p.n, nc, C, N, bonus_loss, &p);
    float* fd_r = finite_diff(p.r, nc, C, N, bonus_loss, &p);
    float* fd_k = finite_diff(p.k, nc, C, N, bonus_loss, &p);
    float* fd_v = finite_diff(p.v, nc, C, N, bonus_loss, &p);
    float* fd_g = finite_diff(p.g, nc, C, N, bonus_loss, &p);
    float* fd_r_k = finite_diff(p.r_k, C, 0, N, bonus_loss, &p);
    fail += check_grad(label(cfg, "backward dg = (poisoned) vs finite differences"), dg, fd_g, nc, 0);
    fail += check_grad(label(cfg, "dn = mul(dz, g) (poisoned) vs finite differences"), dn, fd_n, nc, 0);
    fail += check_accumulated(label(cfg, "backward dr += (pre-filled) vs finite differences"), dr, dr_pre, fd_r, nc, 0);
    fail += check_accumulated(label(cfg, "backward dk += (pre-filled) vs finite differences"), dk, dk_pre, fd_k, nc, 0);
    fail += check_accumulated(label(cfg, "backward dv += (pre-filled) vs finite differences"), dv, dv_pre, fd_v, nc, 0);
    fail += check_accumulated(label(cfg, "backward dr_k += (pre-filled) vs finite differences"), dr_k, dr_k_pre,
                              fd_r_k, C, 0);
    free(n_), free(r), free(k), free(v), free(r_k), free(g), free(R), free(z), free(p.n), free(p.r), free(p.k);
    free(p.v), free(p.r_k), free(p.g), free(p.row), free(want), free(dg), free(dn), free(dr_pre), free(dk_pre);
    free(dv_pre), free(dr_k_pre), free(dr), free(dk), free(dv), free(dr_k), free(fd_n), free(fd_r), free(fd_k);
    free(fd_v), free(fd_g), free(fd_r_k);
    return fail;
}

// ------------------------------------------------------------------------------------------------ determinism

// Big enough that every op runs on both threads and the reductions use four channel blocks (the last partial).
enum { DN = 300, DC = 208, DHS = 16, DNC = DN * DC };
// Every output of one run: 22 (DN, DC) tensors and 5 (DC) parameter gradients, in one flat buffer.
enum { DET_FLOATS = 22 * DNC + 5 * DC };

typedef struct {
    float* act[6];   // (DN, DC) signed activations
    float* unit[2];  // (DN, DC) in (0, 1): the a gate and gamma
    float* chan[4];  // (DC) per-channel parameters
    float* R[4];     // (DN, DC) upstream gradients
    float* acc;      // (DN, DC) start value of every "+=" output
} DetInputs;

static float* take(float** cursor, size_t n) {
    float* p = *cursor;
    *cursor += n;
    return p;
}

// A "+=" output from the buffer, filled with the common start values.
static float* take_prefilled(float** cursor, size_t n, const DetInputs* in) {
    return memcpy(take(cursor, n), in->acc, n * sizeof(float));
}

static void determinism_run(Backend* b, float* out, const DetInputs* in) {
    float* cur = out;
    float* const* x = in->act;
    float* const* R = in->R;
    const float *a = in->unit[0], *gamma = in->unit[1];
    float* y = take_prefilled(&cur, DNC, in);
    b->k.axpy(b, y, 0.3f, x[0], DNC);
    b->k.mul(b, take(&cur, DNC), x[0], x[1], DNC);

    float *w = take(&cur, DNC), *d = take(&cur, DNC);
    b->k.rwkv7_decay_forward(b, w, d, x[0], in->chan[0], DN, DC);
    b->k.rwkv7_decay_backward(b, take(&cur, DNC), take_prefilled(&cur, DC, in), R[0], w, d, DN, DC);

    float* s = take(&cur, DNC);
    b->k.bias_sigmoid_forward(b, s, x[1], in->chan[1], DN, DC);
    b->k.bias_sigmoid_backward(b, take(&cur, DNC), take_prefilled(&cur, DC, in), R[1], s, DN, DC);

    b->k.rwkv7_vres_forward(b, take(&cur, DNC), x[2], x[3], gamma, DNC);
    float *dvp = take(&cur, DNC), *dvfirst = take_prefilled(&cur, DNC, in);
    b->k.rwkv7_vres_backward(b, dvp, dvfirst, take(&cur, DNC), R[2], x[2], x[3], gamma, DNC);

    float *kk = take(&cur, DNC), *kmod = take(&cur, DNC), *wa = take(&cur, DNC), *wb = take(&cur, DNC);
    b->k.rwkv7_kprep_forward(b, kk, kmod, wa, wb, x[4], a, in->chan[2], in->chan[3], DN, DC, DHS);
    float *dk0 = take(&cur, DNC), *da = take(&cur, DNC);
    float *dk_k = take_prefilled(&cur, DC, in), *dk_a = take_prefilled(&cur, DC, in);
    b->k.rwkv7_kprep_backward(b, dk0, da, dk_k, dk_a, R[0], R[1], R[2], x[4], a, kk, in->chan[2], in->chan[3], DN,
                              DC, DHS);

    b->k.rwkv7_bonus_gate_forward(b, take(&cur, DNC), x[5], x[0], kmod, x[2], in->chan[0], s, DN, DC, DHS);
    float *dg = take(&cur, DNC), *dr = take_prefilled(&cur, DNC, in), *dk = take_prefilled(&cur, DNC, in);
    float *dv = take_prefilled(&cur, DNC, in), *dr_k = take_prefilled(&cur, DC, in);
    b->k.rwkv7_bonus_gate_backward(b, dg, dr, dk, dv, dr_k, R[3], x[5], x[0], kmod, x[2], in->chan[0], s, DN, DC,
                                   DHS);
    if (cur != out + DET_FLOATS) fatal("test_rwkv7_ops: determinism_run wrote %td floats, not %d", cur - out,
                                       (int)DET_FLOATS);
}

// One determinism run on a fresh backend with n_threads threads (the thread count is process-wide).
static int run_with_threads(int n_threads, float* out, const DetInputs* in) {
    Backend* b = backend_cpu_create(n_threads);
    char name[96], detail[64];
    snprintf(name, sizeof name, "determinism: backend_cpu_create(%d) runs %d OpenMP thread(s)", n_threads, n_threads);
    snprintf(detail, sizeof detail, "omp_get_max_threads() = %d", omp_get_max_threads());
    int fail = check_true(name, omp_get_max_threads() == n_threads, detail);
    determinism_run(b, out, in);
    backend_destroy(b);
    return fail;
}

static int test_determinism(void) {
    DetInputs in;
    for (int i = 0; i < 6; i++) in.act[i] = random_signed(DNC, 0.1f, 2.0f);
    for (int i = 0; i < 2; i++) in.unit[i] = random_floats(DNC, 0.05f, 0.95f);
    for (int i = 0; i < 4; i++) in.chan[i] = random_signed(DC, 0.1f, 1.5f);
    for (int i = 0; i < 4; i++) in.R[i] = random_floats(DNC, -1, 1);
    in.acc = random_floats(DNC, -1, 1);
    float* one = test_poisoned_floats(DET_FLOATS);
    float* two = test_poisoned_floats(DET_FLOATS);
    float* again = test_poisoned_floats(DET_FLOATS);
    int fail = run_with_threads(1, one, &in);
    fail += run_with_threads(2, two, &in);
    fail += run_with_threads(2, again, &in);  // leaves the process at 2 threads, as main's backend
    fail += check_bitwise("determinism N=300 C=208 hs=16, 1 vs 2 threads: every output of every op", one, two,
                          DET_FLOATS * sizeof(float));
    fail += check_bitwise("determinism N=300 C=208 hs=16, 2 threads run twice: every output of every op", two, again,
                          DET_FLOATS * sizeof(float));
    for (int i = 0; i < 6; i++) free(in.act[i]);
    for (int i = 0; i < 2; i++) free(in.unit[i]);
    for (int i = 0; i < 4; i++) free(in.chan[i]), free(in.R[i]);
    free(in.acc), free(one), free(two), free(again);
    return fail;
}

// ------------------------------------------------------------------------------------------------ main

int main(void) {
    test_rng_seed(&rng, 11);
    be = backend_cpu_create(2);
    int fail = 0;
    fail += check_vector_ops(1);
    fail += check_vector_ops(100003);
    fail += check_vector_ops_empty();
    fail += check_decay(1, 70);  // C = 70: two channel blocks, the second partial
    fail += check_decay(70, 136);
    fail += check_bias_sigmoid(1, 70);
    fail += check_bias_sigmoid(70, 136);
    fail += check_vres(1, 70);
    fail += check_vres(70, 136);
    const int head_sizes[] = {8, 16, 64};
    for (int i = 0; i < 3; i++) {
        int hs = head_sizes[i], C = 128 + hs;
        fail += check_kprep(1, C, hs, 0);
        fail += check_kprep(70, C, hs, 0);
        fail += check_bonus_gate(1, C, hs);
        fail += check_bonus_gate(70, C, hs);
    }
    fail += check_kprep(3, 128, 64, 1);
    fail += check_kprep(3, 32, 8, 1);
    fail += test_determinism();
    backend_destroy(be);
    return test_summary("test_rwkv7_ops", fail);
}

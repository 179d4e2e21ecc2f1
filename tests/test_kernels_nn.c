// test_kernels_nn.c — specification of the CPU backend's encoder, projector and adapter ops (kernels.h,
// section "encoders, projectors, adapters"): GELU (erf, tanh, quick), ReLU, bias add and its gradient,
// softmax attention, im2col1d / col2im1d, patchify, average pooling over tokens and Bone's segmented sum.
//
// - Every forward is compared with a plain double-precision implementation written below from the
//   contract in kernels.h; outputs start NaN-poisoned so an element the kernel forgets is caught.
//   Copies (im2col1d, patchify, ReLU, bias add) must be exact.
// - Every backward is compared with central finite differences (in double) of the reference loss
//   L = sum(out * R) for random R. "+=" outputs (bias_backward, col2im1d, avgpool1d_backward,
//   segment_sum_backward) start from random pre-filled buffers; "=" outputs start NaN-poisoned.
// - The backwards of the linear ops are the exact adjoints of their forwards: on small-integer data (every
//   float sum is exact) <dy, A x> == <A^T dy, x> and the accumulation pre + A^T dy hold bit for bit.
// - Attention: T = 1 (probabilities exactly 1), scores of magnitude 80, and exact integer scores in the
//   hundreds that overflow exp() unless the softmax subtracts the row maximum: every output must stay finite.
// - Determinism: attention forward/backward, bias_backward and col2im1d are bit-identical for backends
//   created with 1 and with 2 threads, and run to run.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "tests/testutil.h"

static Backend* be;
static TestRng rng;

static const double PI = 3.14159265358979323846;
static const double FD_STEP = 1e-4;  // central-difference step (inputs are O(1))

// Tolerances. u = 2^-24 is the fp32 unit roundoff; every check prints its measured error.
static const double U = 0x1p-24;
// Elementwise ops: relative above |want| = 1, absolute below (GELU's x Phi(x) and 1 + tanh(.) lose the
// relative accuracy of tiny negative-side values by cancellation, in the kernel as in every fp32
// implementation of these formulas). The derivatives' 1 - s (quick: s = sigmoid) and 1 - t^2 (tanh form)
// amplify the rounding of a saturated s or t: about 12 u measured, 32 u allowed.
static const double ELEM_TOL = 2e-6;
static const double ELEM_FLOOR = 1.0;
// Sums (bias gradient, col2im1d, avgpool1d, segment_sum) are judged by the rounding-error bound of fp32
// summation, see check_sum. Attention: three fp32 GEMMs and a softmax, relative to the largest value.
static const double ATTN_TOL = 1e-5;
// Attention at scores of magnitude 80: a score carries an absolute error of ~|s| D u = 4e-5, which becomes
// a relative error of the same size in the probabilities and the gradients.
static const double ATTN_LARGE_TOL = 3e-4;

// ------------------------------------------------------------------------------------------------ helpers

static float* random_floats(size_t n, float lo, float hi) { return test_random_floats(&rng, n, lo, hi); }

// Integers in [-8, 8]: a few of their sums and products are exact in float, so adjoint identities hold
// bit for bit.
static float* random_ints(size_t n) {
    float* x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = floorf(test_rng_uniform(&rng, -8.0f, 9.0f));
    return x;
}

static float* to_floats(const double* x, size_t n) {
    float* y = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = (float)x[i];
    return y;
}

static double dot(const float* a, const float* b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static double weighted_sum(const double* out, const float* R, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += out[i] * R[i];
    return s;
}

static int all_finite(const float* x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

// got vs a double reference, relative to the largest |want| (testutil's check_rel_to_max).
static int check_forward(const char* name, const float* got, const double* want, size_t n, double tol) {
    float* w = to_floats(want, n);
    int fail = check_rel_to_max(name, got, w, n, tol);
    free(w);
    return fail;
}

// Central finite differences, in double, of loss(ctx) with respect to x[0], x[step], x[2 step], ... (n / step
// rounded up of them; x has n doubles, perturbed in place).
typedef double (*LossFn)(const void* ctx);
static double* finite_diff(double* x, size_t n, size_t step, LossFn loss, const void* ctx) {
    double* grad = xmalloc((n + step - 1) / step * sizeof(double));
    for (size_t i = 0; i < n; i += step) {
        double x0 = x[i];
        x[i] = x0 + FD_STEP;
        double up = loss(ctx);
        x[i] = x0 - FD_STEP;
        double down = loss(ctx);
        x[i] = x0;
        grad[i / step] = (up - down) / (2 * FD_STEP);
    }
    return grad;
}

// got[i * step] vs want[i] (i < n) for an output that is an fp32 sum whose terms have absolute values adding
// up to mag[i]: k roundings err by at most k u mag[i]. Prints the largest |got - want| / (u mag), which must
// stay <= k; where mag is 0 (nothing to sum) got must equal want exactly.
static int check_sum(const char* name, const float* got, size_t step, const double* want, const double* mag, size_t n,
                     int k) {
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i * step] - want[i]);
        double e = mag[i] > 0 ? d / (U * mag[i]) : (d == 0 ? 0 : INFINITY);
        if (!(e <= worst)) {  // NaN counts as the worst
            worst = isnan(e) ? INFINITY : e;
            at = i;
        }
    }
    int fail = !(worst <= k);
    printf("%s: max |got - want| = %.3f u sum|terms| at [%zu] (got %.9g, want %.9g), tol %d u sum|terms| %s\n", name,
           worst, at * step, n ? got[at * step] : 0.0f, n ? want[at] : 0.0, k, fail ? "FAIL" : "PASS");
    return fail;
}

// The adjoint identity <dy, A x> == <A^T dy, x>, both sides exact sums of integers.
static int check_adjoint(const char* name, double lhs, double rhs) {
    char detail[128];
    snprintf(detail, sizeof detail, "<dy, A x> = %.17g, <A^T dy, x> = %.17g", lhs, rhs);
    printf("%s: <dy, A x> = %.17g, <A^T dy, x> = %.17g (tol 0)\n", name, lhs, rhs);
    return check_true(name, lhs == rhs, detail);
}

// ------------------------------------------------------------------------------------------------ linear ops
// im2col1d, avgpool1d and segment_sum each map one input to one output linearly; their finite-difference
// checks share one loss: L(x) = sum(ref(x) * R).

typedef void (*RefLinear)(double* out, const double* x, const void* shape);

typedef struct {
    RefLinear ref;
    const void* shape;
    double* x;       // the input, perturbed by finite_diff
    const float* R;  // loss weights, n_out of them
    size_t n_out;
} LinearCase;

static double linear_loss(const void* ctx) {
    const LinearCase* p = ctx;
    double* out = xmalloc(p->n_out * sizeof(double));
    p->ref(out, p->x, p->shape);
    double loss = weighted_sum(out, p->R, p->n_out);
    free(out);
    return loss;
}

// Central differences of sum(ref(x) * R) at the inputs x[0], x[step], x[2 step], ... (n_in / step rounded up
// of them), in double. The loss is linear in x, so they equal (A^T R)[i] up to double rounding; with |R|
// they give the magnitude (A^T |R|)[i] that check_sum needs (every entry of A is >= 0).
static double* linear_fd(RefLinear ref, const void* shape, const float* x, size_t n_in, size_t step, const float* R,
                         size_t n_out) {
    LinearCase p = {ref, shape, test_to_doubles(x, n_in), R, n_out};
    double* fd = finite_diff(p.x, n_in, step, linear_loss, &p);
    free(p.x);
    return fd;
}

// A "+=" backward of a linear op: got[i] must be pre[i] + (A^T R)[i], the finite differences, at the
// sampled inputs (every step-th), within k roundings of mag = |pre| + A^T |R|.
static int check_linear_backward(const char* name, const float* got, const float* pre, RefLinear ref, const void* shape,
                                 const float* x, size_t n_in, size_t step, const float* R, size_t n_out, int k) {
    float* abs_R = xmalloc(n_out * sizeof(float));
    for (size_t i = 0; i < n_out; i++) abs_R[i] = fabsf(R[i]);
    double* want = linear_fd(ref, shape, x, n_in, step, R, n_out);
    double* mag = linear_fd(ref, shape, x, n_in, step, abs_R, n_out);
    size_t n = (n_in + step - 1) / step;
    for (size_t i = 0; i < n; i++) {
        want[i] += pre[i * step];
        mag[i] += fabs(pre[i * step]);
    }
    int fail = check_sum(name, got, step, want, mag, n, k);
    free(abs_R), free(want), free(mag);
    return fail;
}

// A forward of a linear op vs ref(x), within k roundings of mag = ref(|x|).
static int check_linear_forward(const char* name, const float* got, RefLinear ref, const void* shape, const float* x,
                                size_t n_in, size_t n_out, int k) {
    double* xd = test_to_doubles(x, n_in);
    double* want = xmalloc(n_out * sizeof(double));
    ref(want, xd, shape);
    for (size_t i = 0; i < n_in; i++) xd[i] = fabs(xd[i]);
    double* mag = xmalloc(n_out * sizeof(double));
    ref(mag, xd, shape);
    int fail = check_sum(name, got, 1, want, mag, n_out, k);
    free(xd), free(want), free(mag);
    return fail;
}

// Inputs sampled by the finite differences of a linear op: all of a small tensor, every 37th of a large one.
static size_t fd_step(size_t n_in) { return n_in > 4096 ? 37 : 1; }

// ------------------------------------------------------------------------------------------------ GELU

static const char* const GELU_NAMES[] = {"erf", "tanh", "quick"};

static double ref_gelu(int mode, double x) {
    if (mode == GELU_ERF) return x * 0.5 * (1.0 + erf(x / sqrt(2.0)));  // x Phi(x)
    if (mode == GELU_TANH) return 0.5 * x * (1.0 + tanh(sqrt(2.0 / PI) * (x + 0.044715 * x * x * x)));
    return x / (1.0 + exp(-1.702 * x));  // x sigmoid(1.702 x)
}

// Inputs over [-8, 8] plus values where the formulas are delicate: zero, tiny, and far tails where exp
// overflows in fp32 (the quick form at -100) or erf / tanh saturate.
static float* gelu_inputs(size_t n) {
    static const float special[] = {0.0f, -0.0f, 1e-3f, -1e-3f, 30.0f, -30.0f, 100.0f, -100.0f};
    float* x = random_floats(n, -8.0f, 8.0f);
    memcpy(x, special, sizeof special);
    return x;
}

static int check_gelu(int mode) {
    size_t n = 40000;  // large enough to run in parallel
    char name[128];
    float* x = gelu_inputs(n);
    float* out = test_poisoned_floats(n);
    be->k.gelu_forward(be, out, x, n, mode);
    float* want = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) want[i] = (float)ref_gelu(mode, x[i]);
    snprintf(name, sizeof name, "gelu %s forward n=%zu, x in [-8, 8] and +-100: out (abs below 1, rel above)",
             GELU_NAMES[mode], n);
    int fail = check_close_rel(name, out, want, n, ELEM_TOL, ELEM_FLOOR);

    // dL/dx_i involves only term i of L = sum(gelu(x) R): its central difference is R_i (f(x+h) - f(x-h)) / 2h.
    float* R = random_floats(n, -1.0f, 1.0f);
    float* dinp = test_poisoned_floats(n);
    be->k.gelu_backward(be, dinp, R, x, n, mode);
    for (size_t i = 0; i < n; i++)
        want[i] = (float)(R[i] * (ref_gelu(mode, x[i] + FD_STEP) - ref_gelu(mode, x[i] - FD_STEP)) / (2 * FD_STEP));
    snprintf(name, sizeof name, "gelu %s backward: dinp = (poisoned) vs finite differences", GELU_NAMES[mode]);
    fail += check_close_rel(name, dinp, want, n, ELEM_TOL, ELEM_FLOOR);
    free(x), free(out), free(want), free(R), free(dinp);
    return fail;
}

// ------------------------------------------------------------------------------------------------ ReLU

static int test_relu(void) {
    size_t n = 40000;
    float* x = random_floats(n, 0.05f, 3.0f);  // |x| >= 0.05: finite differences never cross the kink
    for (size_t i = 0; i < n; i += 2) x[i] = -x[i];
    x[0] = 0.0f, x[1] = -0.0f;  // the kink itself: [out > 0] is 0 there
    float* out = test_poisoned_floats(n);
    be->k.relu_forward(be, out, x, n);
    float* want = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) want[i] = x[i] > 0 ? x[i] : 0.0f;
    int fail = check_close_abs("relu forward n=40000: out = max(x, 0) exactly", out, want, n, 0);

    float* R = random_floats(n, -1.0f, 1.0f);
    float* dinp = test_poisoned_floats(n);
    be->k.relu_backward(be, dinp, R, out, n);
    for (size_t i = 0; i < n; i++) want[i] = out[i] > 0 ? R[i] : 0.0f;
    fail += check_close_abs("relu backward: dinp = dout [out > 0] exactly (x = 0 and -0 give 0)", dinp, want, n, 0);
    for (size_t i = 2; i < n; i++) {
        double up = x[i] + FD_STEP > 0 ? x[i] + FD_STEP : 0, down = x[i] - FD_STEP > 0 ? x[i] - FD_STEP : 0;
        want[i] = (float)(R[i] * (up - down) / (2 * FD_STEP));
    }
    fail += check_close_rel("relu backward: dinp vs finite differences (|x| >= 0.05)", dinp + 2, want + 2, n - 2,
                            ELEM_TOL, ELEM_FLOOR);
    free(x), free(out), free(want), free(R), free(dinp);
    return fail;
}

// ------------------------------------------------------------------------------------------------ bias

typedef struct {
    const float* y0;  // (N, C): the rows bias_add adds to
    double* bias;     // (C)
    const float* R;   // (N, C)
    int N, C;
} BiasCase;

static double bias_loss(const void* ctx) {
    const BiasCase* p = ctx;
    double s = 0;
    for (int n = 0; n < p->N; n++)
        for (int c = 0; c < p->C; c++) s += ((double)p->y0[n * p->C + c] + p->bias[c]) * p->R[n * p->C + c];
    return s;
}

static int test_bias(void) {
    int N = 70, C = 150;  // three channel blocks of the gradient, the last partial
    size_t n = (size_t)N * C;
    float* y0 = random_floats(n, -1, 1);
    float* bias = random_floats(C, -1, 1);
    float* out = test_copy_floats(y0, n);
    be->k.bias_add(be, out, bias, N, C);
    float* want = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) want[i] = y0[i] + bias[i % C];
    int fail = check_close_abs("bias_add N=70 C=150: out += bias on every row, exactly", out, want, n, 0);

    float* R = random_floats(n, -1, 1);
    float* db_pre = random_floats(C, -1, 1);
    float* db = test_copy_floats(db_pre, C);
    be->k.bias_backward(be, db, R, N, C);
    BiasCase p = {y0, test_to_doubles(bias, C), R, N, C};
    double* fd = finite_diff(p.bias, C, 1, bias_loss, &p);
    double* mag = xcalloc(C, sizeof(double));  // |prefill| + sum over rows of |dout|
    for (int c = 0; c < C; c++) {
        fd[c] += db_pre[c];
        mag[c] = fabs(db_pre[c]);
        for (int r = 0; r < N; r++) mag[c] += fabs(R[r * C + c]);
    }
    // N - 1 roundings summing the rows, one adding into dbias, one for the expected value
    fail += check_sum("bias_backward N=70: dbias += (pre-filled) vs finite differences", db, 1, fd, mag, C, N + 1);
    free(y0), free(bias), free(out), free(want), free(R), free(db_pre), free(db), free(p.bias), free(fd), free(mag);
    return fail;
}

// ------------------------------------------------------------------------------------------------ attention

// Index of element (b, t, h, d) of a (B, T, H, D) tensor.
static size_t at4(int b, int t, int h, int d, int T, int H, int D) { return (((size_t)b * T + t) * H + h) * D + d; }

// out = softmax(scale Q K^T) V per (b, h); probs (B, H, T, T) or NULL. The softmax subtracts the row max.
static void ref_attention(double* out, double* probs, const double* q, const double* k, const double* v, int B,
                          int T, int H, int D, double scale) {
    double* p = xmalloc((size_t)T * sizeof(double));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++) {
                    double s = 0;
                    for (int d = 0; d < D; d++) s += q[at4(b, i, h, d, T, H, D)] * k[at4(b, j, h, d, T, H, D)];
                    p[j] = scale * s;
                    mx = fmax(mx, p[j]);
                }
                for (int j = 0; j < T; j++) sum += p[j] = exp(p[j] - mx);
                for (int j = 0; j < T; j++) p[j] /= sum;
                for (int d = 0; d < D; d++) {
                    double o = 0;
                    for (int j = 0; j < T; j++) o += p[j] * v[at4(b, j, h, d, T, H, D)];
                    out[at4(b, i, h, d, T, H, D)] = o;
                }
                if (probs) memcpy(probs + (((size_t)b * H + h) * T + i) * T, p, (size_t)T * sizeof(double));
            }
    free(p);
}

typedef struct {
    double *q, *k, *v;  // (B, T, H, D)
    const float* R;     // (B, T, H, D)
    int B, T, H, D;
    double scale;
} AttnCase;

static double attention_loss(const void* ctx) {
    const AttnCase* p = ctx;
    size_t n = (size_t)p->B * p->T * p->H * p->D;
    double* out = xmalloc(n * sizeof(double));
    ref_attention(out, NULL, p->q, p->k, p->v, p->B, p->T, p->H, p->D, p->scale);
    double loss = weighted_sum(out, p->R, n);
    free(out);
    return loss;
}

// Largest |scale q_i . k_j| over all (b, h, i, j).
static double max_abs_score(const float* q, const float* k, int B, int T, int H, int D, double scale) {
    double m = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    double s = 0;
                    for (int d = 0; d < D; d++) s += (double)q[at4(b, i, h, d, T, H, D)] * k[at4(b, j, h, d, T, H, D)];
                    m = fmax(m, fabs(scale * s));
                }
    return m;
}

// With nearly one-hot probabilities the true dq and dk are tiny, while dS = P (dP - sum_j P dP) keeps the
// absolute rounding error of the row sum, ~u max|dP| (the top P rounds to 1 and dP_top - sum_j P dP cancels),
// as every fp32 formulation does. Such a gradient is judged in absolute terms against G, the scale it would
// have with spread probabilities: G = scale max|other| max_{b,h,i,j} sum_d |dO_id| |V_jd| (other = k for dq,
// q for dk); the tolerance is 4 u G, four roundings of the row sum carried through scale K.
static double attention_grad_scale(const float* dout, const float* v, const float* other, int B, int T, int H, int D,
                                   float scale) {
    size_t n = (size_t)B * T * H * D;
    double dp = 0, mo = 0;
    for (size_t i = 0; i < n; i++) mo = fmax(mo, fabs(other[i]));
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    double s = 0;
                    for (int d = 0; d < D; d++) s += fabs(dout[at4(b, i, h, d, T, H, D)] * v[at4(b, j, h, d, T, H, D)]);
                    dp = fmax(dp, s);
                }
    return fabs(scale) * mo * dp;
}

typedef struct {
    const char* label;
    int B, T, H, D;
    float scale;
    double fwd_tol, grad_tol;  // relative to the largest value of each tensor
    int one_hot;               // dq and dk judged in absolute terms, see attention_grad_scale
} AttnSpec;

// dq or dk = (poisoned) vs finite differences.
static int check_attention_grad(const AttnSpec* s, const char* what, const float* got, const double* fd,
                                const float* dout, const float* v, const float* other) {
    size_t n = (size_t)s->B * s->T * s->H * s->D;
    char name[192];
    snprintf(name, sizeof name, "attention %s backward: %s = (poisoned) vs finite differences", s->label, what);
    if (!s->one_hot) return check_forward(name, got, fd, n, s->grad_tol);
    double G = attention_grad_scale(dout, v, other, s->B, s->T, s->H, s->D, s->scale);
    double tol = 4 * U * G;
    printf("attention %s: %s gradient scale G = %.3g, tol 4 u G = %.3g\n", s->label, what, G, tol);
    float* want = to_floats(fd, n);
    int fail = check_close_abs(name, got, want, n, tol);
    free(want);
    return fail;
}

// Forward (out, probs) vs the reference, backward (dq, dk, dv) vs finite differences; all outputs
// poisoned beforehand (scratch too: it is working memory, never read before written) and finite after.
static int check_attention(const AttnSpec* s, const float* q, const float* k, const float* v) {
    int B = s->B, T = s->T, H = s->H, D = s->D;
    size_t n = (size_t)B * T * H * D, np = (size_t)B * H * T * T;
    char name[192];
    float *out = test_poisoned_floats(n), *probs = test_poisoned_floats(np);
    be->k.attention_forward(be, out, probs, q, k, v, B, T, H, D, s->scale);
    AttnCase p = {test_to_doubles(q, n), test_to_doubles(k, n), test_to_doubles(v, n), NULL, B, T, H, D, s->scale};
    double* want = xmalloc(n * sizeof(double));
    double* want_p = xmalloc(np * sizeof(double));
    ref_attention(want, want_p, p.q, p.k, p.v, B, T, H, D, s->scale);
    snprintf(name, sizeof name, "attention %s B=%d T=%d H=%d D=%d scale=%g: out", s->label, B, T, H, D, s->scale);
    int fail = check_forward(name, out, want, n, s->fwd_tol);
    snprintf(name, sizeof name, "attention %s: probs", s->label);
    fail += check_forward(name, probs, want_p, np, s->fwd_tol);

    float* R = random_floats(n, -1, 1);
    float *dq = test_poisoned_floats(n), *dk = test_poisoned_floats(n), *dv = test_poisoned_floats(n);
    float* scratch = test_poisoned_floats(np);
    be->k.attention_backward(be, dq, dk, dv, scratch, R, probs, q, k, v, B, T, H, D, s->scale);
    p.R = R;
    double* fd_q = finite_diff(p.q, n, 1, attention_loss, &p);
    double* fd_k = finite_diff(p.k, n, 1, attention_loss, &p);
    double* fd_v = finite_diff(p.v, n, 1, attention_loss, &p);
    fail += check_attention_grad(s, "dq", dq, fd_q, R, v, k);
    fail += check_attention_grad(s, "dk", dk, fd_k, R, v, q);
    snprintf(name, sizeof name, "attention %s backward: dv = (poisoned) vs finite differences", s->label);
    fail += check_forward(name, dv, fd_v, n, s->grad_tol);
    snprintf(name, sizeof name, "attention %s: out, probs, dq, dk, dv all finite", s->label);
    int finite = all_finite(out, n) && all_finite(probs, np) && all_finite(dq, n) && all_finite(dk, n) &&
                 all_finite(dv, n);
    fail += check_true(name, finite, "NaN or Inf");
    free(out), free(probs), free(p.q), free(p.k), free(p.v), free(want), free(want_p), free(R), free(dq), free(dk);
    free(dv), free(scratch), free(fd_q), free(fd_k), free(fd_v);
    return fail;
}

// T = 1: the only key has probability exactly 1, so out = v, dv = dout and dq = dk = 0, all exactly.
static int check_attention_t1(void) {
    int B = 2, T = 1, H = 3, D = 5;
    size_t n = (size_t)B * T * H * D, np = (size_t)B * H;
    float *q = random_floats(n, -3, 3), *k = random_floats(n, -3, 3), *v = random_floats(n, -1, 1);
    float *out = test_poisoned_floats(n), *probs = test_poisoned_floats(np);
    be->k.attention_forward(be, out, probs, q, k, v, B, T, H, D, 0.7f);
    float* ones = xmalloc(np * sizeof(float));
    for (size_t i = 0; i < np; i++) ones[i] = 1.0f;
    int fail = check_close_abs("attention T=1 B=2 H=3 D=5: probs == 1 exactly", probs, ones, np, 0);
    fail += check_close_abs("attention T=1: out == v exactly", out, v, n, 0);
    float* dout = random_floats(n, -1, 1);
    float *dq = test_poisoned_floats(n), *dk = test_poisoned_floats(n), *dv = test_poisoned_floats(n);
    float* scratch = test_poisoned_floats(np);
    be->k.attention_backward(be, dq, dk, dv, scratch, dout, probs, q, k, v, B, T, H, D, 0.7f);
    float* zeros = xcalloc(n, sizeof(float));
    fail += check_close_abs("attention T=1 backward: dv == dout exactly", dv, dout, n, 0);
    fail += check_close_abs("attention T=1 backward: dq == 0 exactly", dq, zeros, n, 0);
    fail += check_close_abs("attention T=1 backward: dk == 0 exactly", dk, zeros, n, 0);
    free(q), free(k), free(v), free(out), free(probs), free(ones), free(dout), free(dq), free(dk), free(dv);
    free(scratch), free(zeros);
    return fail;
}

static int test_attention(void) {
    int fail = 0;
    {  // ordinary scores, scale 1/sqrt(D), several batches and heads interleaved in the rows
        AttnSpec s = {"ordinary scores", 2, 7, 3, 4, 0.5f, ATTN_TOL, ATTN_TOL, 0};
        size_t n = (size_t)s.B * s.T * s.H * s.D;
        float *q = random_floats(n, -1, 1), *k = random_floats(n, -1, 1), *v = random_floats(n, -1, 1);
        fail += check_attention(&s, q, k, v);
        free(q), free(k), free(v);
    }
    {  // q rescaled so that the largest |score| is 80: nearly one-hot probabilities
        AttnSpec s = {"scores up to +-80", 1, 6, 2, 8, 0.35355339f, ATTN_LARGE_TOL, ATTN_LARGE_TOL, 0};
        size_t n = (size_t)s.B * s.T * s.H * s.D;
        float *q = random_floats(n, -1, 1), *k = random_floats(n, -1, 1), *v = random_floats(n, -1, 1);
        double m = max_abs_score(q, k, s.B, s.T, s.H, s.D, s.scale);
        for (size_t i = 0; i < n; i++) q[i] = (float)(q[i] * 80.0 / m);
        m = max_abs_score(q, k, s.B, s.T, s.H, s.D, s.scale);
        printf("attention scores up to +-80: max |scale q.k| = %.3f\n", m);
        fail += check_attention(&s, q, k, v);
        free(q), free(k), free(v);
    }
    {  // even integer q, k in [-16, 16], scale 1: exact fp32 scores in the hundreds, where exp() overflows
       // unless the softmax subtracts the row maximum
        AttnSpec s = {"exact integer scores", 1, 6, 2, 4, 1.0f, ATTN_TOL, ATTN_TOL, 1};
        size_t n = (size_t)s.B * s.T * s.H * s.D;
        float *q = random_ints(n), *k = random_ints(n), *v = random_floats(n, -1, 1);
        for (size_t i = 0; i < n; i++) q[i] *= 2.0f, k[i] *= 2.0f;
        printf("attention exact integer scores: max |q.k| = %.0f\n", max_abs_score(q, k, s.B, s.T, s.H, s.D, 1.0));
        fail += check_attention(&s, q, k, v);
        free(q), free(k), free(v);
    }
    fail += check_attention_t1();
    return fail;
}

// ------------------------------------------------------------------------------------------------ im2col1d / col2im1d

typedef struct {
    int B, T_in, Cin, T_out, K, stride, dilation, pad_left;
} ConvShape;

static size_t conv_nx(const ConvShape* s) { return (size_t)s->B * s->T_in * s->Cin; }
static size_t conv_ncols(const ConvShape* s) { return (size_t)s->B * s->T_out * s->Cin * s->K; }

// cols[b][t][ci K + j] = x[b][t stride - pad_left + j dilation][ci], 0 outside [0, T_in). x: (B, T_in, Cin).
static void ref_im2col(double* cols, const double* x, const void* shape) {
    const ConvShape* s = shape;
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < s->T_out; t++)
            for (int ci = 0; ci < s->Cin; ci++)
                for (int j = 0; j < s->K; j++) {
                    int pos = t * s->stride - s->pad_left + j * s->dilation;
                    int inside = pos >= 0 && pos < s->T_in;
                    cols[(((size_t)b * s->T_out + t) * s->Cin + ci) * s->K + j] =
                        inside ? x[((size_t)b * s->T_in + pos) * s->Cin + ci] : 0.0;
                }
}

static void im2col(float* cols, const float* x, const ConvShape* s) {
    be->k.im2col1d(be, cols, x, s->B, s->T_in, s->Cin, s->T_out, s->K, s->stride, s->dilation, s->pad_left);
}

static void col2im(float* dx, const float* dcols, const ConvShape* s) {
    be->k.col2im1d(be, dx, dcols, s->B, s->T_in, s->Cin, s->T_out, s->K, s->stride, s->dilation, s->pad_left);
}

static int check_conv(const ConvShape* s) {
    size_t nx = conv_nx(s), nc = conv_ncols(s);
    int first = -s->pad_left, last = (s->T_out - 1) * s->stride - s->pad_left + (s->K - 1) * s->dilation;
    char cfg[160], name[256];
    snprintf(cfg, sizeof cfg, "B=%d T_in=%d Cin=%d T_out=%d K=%d stride=%d dilation=%d pad_left=%d (reads %d..%d)",
             s->B, s->T_in, s->Cin, s->T_out, s->K, s->stride, s->dilation, s->pad_left, first, last);

    float* x = random_floats(nx, -1, 1);
    float* cols = test_poisoned_floats(nc);
    im2col(cols, x, s);
    double* xd = test_to_doubles(x, nx);
    double* want = xmalloc(nc * sizeof(double));
    ref_im2col(want, xd, s);
    float* want_f = to_floats(want, nc);
    snprintf(name, sizeof name, "im2col1d %s: cols exactly", cfg);
    int fail = check_close_abs(name, cols, want_f, nc, 0);

    // col2im1d is the backward of im2col1d: dx += d/dx sum(im2col(x) * R).
    float* R = random_floats(nc, -1, 1);
    float* dx_pre = random_floats(nx, -1, 1);
    float* dx = test_copy_floats(dx_pre, nx);
    col2im(dx, R, s);
    // at most K taps read one position: K additions, one rounding of the expected value
    snprintf(name, sizeof name, "col2im1d: dx += (pre-filled) vs finite differences of sum(im2col(x) * R)%s",
             fd_step(nx) > 1 ? " (every 37th)" : "");
    fail += check_linear_backward(name, dx, dx_pre, ref_im2col, s, x, nx, fd_step(nx), R, nc, s->K + 1);

    // The exact adjoint, on integers: <dcols, im2col(x)> == <col2im(dcols), x>, and dx accumulates exactly.
    float *xi = random_ints(nx), *ci = random_ints(nc), *pre = random_ints(nx);
    float* cols_i = test_poisoned_floats(nc);
    im2col(cols_i, xi, s);
    float* dx_i = xcalloc(nx, sizeof(float));
    col2im(dx_i, ci, s);
    fail += check_adjoint("col2im1d is the adjoint of im2col1d (integer data)", dot(ci, cols_i, nc), dot(dx_i, xi, nx));
    float* dx_acc = test_copy_floats(pre, nx);
    col2im(dx_acc, ci, s);
    float* want_acc = test_plus(pre, dx_i, nx);
    fail += check_close_abs("col2im1d on pre-filled integers: dx == pre + col2im(dcols) exactly", dx_acc, want_acc,
                            nx, 0);
    free(x), free(cols), free(xd), free(want), free(want_f), free(R), free(dx_pre), free(dx), free(xi);
    free(ci), free(pre), free(cols_i), free(dx_i), free(dx_acc), free(want_acc);
    return fail;
}

static int test_conv(void) {
    // stride, dilation and left padding, with T_out reaching past T_in: positions -3..11 of [0, 9)
    ConvShape edges = {2, 9, 3, 6, 3, 2, 2, 3};
    // Whisper's two convolutions (K = 3, pad 1; stride 1 then 2), Cin over two channel blocks of col2im
    ConvShape whisper1 = {2, 20, 70, 20, 3, 1, 1, 1};
    ConvShape whisper2 = {2, 20, 70, 10, 3, 2, 1, 1};
    // K = 1 (a per-token linear map) and a kernel wider than the input
    ConvShape pointwise = {1, 5, 4, 5, 1, 1, 1, 0};
    ConvShape wide = {1, 4, 2, 3, 7, 1, 1, 4};
    return check_conv(&edges) + check_conv(&whisper1) + check_conv(&whisper2) + check_conv(&pointwise) +
           check_conv(&wide);
}

// ------------------------------------------------------------------------------------------------ patchify

// patches[b][py G + px][(c P + ky) P + kx] = img[b][c][py P + ky][px P + kx], G = S / P; exact copies.
static int check_patchify(int B, int Cc, int S, int P) {
    int G = S / P;
    size_t n = (size_t)B * Cc * S * S;
    float* img = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) img[i] = (float)i;  // every value names its position
    float* patches = test_poisoned_floats(n);
    be->k.patchify(be, patches, img, B, Cc, S, P);
    float* want = xmalloc(n * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int py = 0; py < G; py++)
            for (int px = 0; px < G; px++)
                for (int c = 0; c < Cc; c++)
                    for (int ky = 0; ky < P; ky++)
                        for (int kx = 0; kx < P; kx++) {
                            size_t dst = (((size_t)b * G * G + py * G + px) * Cc + c) * P * P + (size_t)ky * P + kx;
                            want[dst] = img[(((size_t)b * Cc + c) * S + py * P + ky) * S + px * P + kx];
                        }
    char name[160];
    snprintf(name, sizeof name, "patchify B=%d Cc=%d S=%d P=%d: row-major patches, (c, ky, kx) inside, exactly", B, Cc,
             S, P);
    int fail = check_close_abs(name, patches, want, n, 0);
    free(img), free(patches), free(want);
    return fail;
}

// ------------------------------------------------------------------------------------------------ avgpool1d

typedef struct {
    int B, T_in, C, s;
} PoolShape;

// out[b][t] = mean of x[b][t s .. t s + s - 1], t < T_in / s (floor). x: (B, T_in, C).
static void ref_avgpool(double* out, const double* x, const void* shape) {
    const PoolShape* p = shape;
    int T_out = p->T_in / p->s;
    for (int b = 0; b < p->B; b++)
        for (int t = 0; t < T_out; t++)
            for (int c = 0; c < p->C; c++) {
                double sum = 0;
                for (int j = 0; j < p->s; j++) sum += x[((size_t)b * p->T_in + t * p->s + j) * p->C + c];
                out[((size_t)b * T_out + t) * p->C + c] = sum / p->s;
            }
}

static int check_avgpool(const PoolShape* p) {
    int T_out = p->T_in / p->s;
    size_t nx = (size_t)p->B * p->T_in * p->C, no = (size_t)p->B * T_out * p->C;
    char name[192];
    float* x = random_floats(nx, -1, 1);
    float* out = test_poisoned_floats(no);
    be->k.avgpool1d_forward(be, out, x, p->B, p->T_in, p->C, p->s);
    snprintf(name, sizeof name, "avgpool1d forward B=%d T_in=%d C=%d s=%d (T_out=%d, %d tokens dropped): out", p->B,
             p->T_in, p->C, p->s, T_out, p->T_in - T_out * p->s);
    // s - 1 additions, the rounded 1/s and the product, one for the expected value
    int fail = check_linear_forward(name, out, ref_avgpool, p, x, nx, no, p->s + 2);

    float* R = random_floats(no, -1, 1);
    float* dx_pre = random_floats(nx, -1, 1);
    float* dx = test_copy_floats(dx_pre, nx);
    be->k.avgpool1d_backward(be, dx, R, p->B, p->T_in, p->C, p->s);
    // the rounded 1/s, the product, the addition, one for the expected value
    snprintf(name, sizeof name, "avgpool1d backward: dx += (pre-filled) vs finite differences%s",
             fd_step(nx) > 1 ? " (every 37th)" : "");
    fail += check_linear_backward(name, dx, dx_pre, ref_avgpool, p, x, nx, fd_step(nx), R, no, 4);
    int tail_same = 1;  // the dropped tokens get no gradient: their prefill is left untouched
    for (int b = 0; b < p->B; b++) {
        size_t t0 = ((size_t)b * p->T_in + (size_t)T_out * p->s) * p->C, len = (size_t)(p->T_in - T_out * p->s) * p->C;
        tail_same &= memcmp(dx + t0, dx_pre + t0, len * sizeof(float)) == 0;
    }
    fail += check_true("avgpool1d backward: dropped tokens keep their pre-filled dx bit for bit", tail_same, "changed");
    free(x), free(out), free(R), free(dx_pre), free(dx);
    return fail;
}

// With s a power of two, 1/s is exact and the backward is the adjoint of the forward bit for bit.
static int check_avgpool_adjoint(const PoolShape* p) {
    int T_out = p->T_in / p->s;
    size_t nx = (size_t)p->B * p->T_in * p->C, no = (size_t)p->B * T_out * p->C;
    float *x = random_ints(nx), *dout = random_ints(no), *pre = random_ints(nx);
    float* out = test_poisoned_floats(no);
    be->k.avgpool1d_forward(be, out, x, p->B, p->T_in, p->C, p->s);
    float* dx = xcalloc(nx, sizeof(float));
    be->k.avgpool1d_backward(be, dx, dout, p->B, p->T_in, p->C, p->s);
    char name[160];
    snprintf(name, sizeof name, "avgpool1d backward is the adjoint of the forward (integer data, T_in=%d s=%d)",
             p->T_in, p->s);
    int fail = check_adjoint(name, dot(dout, out, no), dot(dx, x, nx));
    float* dx_acc = test_copy_floats(pre, nx);
    be->k.avgpool1d_backward(be, dx_acc, dout, p->B, p->T_in, p->C, p->s);
    float* want = test_plus(pre, dx, nx);
    fail += check_close_abs("avgpool1d backward on pre-filled integers: dx == pre + backward exactly", dx_acc, want, nx,
                            0);
    free(x), free(dout), free(pre), free(out), free(dx), free(dx_acc), free(want);
    return fail;
}

static int test_avgpool(void) {
    PoolShape uneven = {2, 11, 5, 3};    // T_in not a multiple of s: 2 tokens dropped
    PoolShape large = {2, 400, 30, 4};   // parallel path
    PoolShape pow2 = {2, 11, 3, 4};      // for the exact adjoint, 3 tokens dropped
    PoolShape identity = {1, 5, 3, 1};   // s = 1 is the identity
    return check_avgpool(&uneven) + check_avgpool(&large) + check_avgpool(&identity) + check_avgpool_adjoint(&pow2);
}

// ------------------------------------------------------------------------------------------------ segment_sum

typedef struct {
    int N, in, r;
} SegShape;

// s[n][k] = sum_j x[n][j r + k] over j with j r + k < in (x zero-padded to a multiple of r). x: (N, in).
static void ref_segment_sum(double* s, const double* x, const void* shape) {
    const SegShape* p = shape;
    for (int n = 0; n < p->N; n++)
        for (int k = 0; k < p->r; k++) {
            double sum = 0;
            for (int i = k; i < p->in; i += p->r) sum += x[(size_t)n * p->in + i];
            s[(size_t)n * p->r + k] = sum;
        }
}

static int check_segment_sum(const SegShape* p) {
    size_t nx = (size_t)p->N * p->in, ns = (size_t)p->N * p->r;
    char name[192];
    float* x = random_floats(nx, -1, 1);
    float* s = test_poisoned_floats(ns);
    be->k.segment_sum(be, s, x, p->N, p->in, p->r);
    snprintf(name, sizeof name, "segment_sum N=%d in=%d r=%d: s", p->N, p->in, p->r);
    int blocks = (p->in + p->r - 1) / p->r;  // blocks - 1 additions, one for the expected value
    int fail = check_linear_forward(name, s, ref_segment_sum, p, x, nx, ns, blocks);

    float* R = random_floats(ns, -1, 1);
    float* dx_pre = random_floats(nx, -1, 1);
    float* dx = test_copy_floats(dx_pre, nx);
    be->k.segment_sum_backward(be, dx, R, p->N, p->in, p->r);
    // one addition, one for the expected value
    snprintf(name, sizeof name, "segment_sum backward: dx += (pre-filled) vs finite differences%s",
             fd_step(nx) > 1 ? " (every 37th)" : "");
    fail += check_linear_backward(name, dx, dx_pre, ref_segment_sum, p, x, nx, fd_step(nx), R, ns, 2);

    // the exact adjoint and accumulation on integers
    float *xi = random_ints(nx), *dsi = random_ints(ns), *pre = random_ints(nx);
    float* si = test_poisoned_floats(ns);
    be->k.segment_sum(be, si, xi, p->N, p->in, p->r);
    float* dxi = xcalloc(nx, sizeof(float));
    be->k.segment_sum_backward(be, dxi, dsi, p->N, p->in, p->r);
    fail += check_adjoint("segment_sum backward is the adjoint of segment_sum (integer data)", dot(dsi, si, ns),
                          dot(dxi, xi, nx));
    float* dx_acc = test_copy_floats(pre, nx);
    be->k.segment_sum_backward(be, dx_acc, dsi, p->N, p->in, p->r);
    float* want_acc = test_plus(pre, dxi, nx);
    fail += check_close_abs("segment_sum backward on pre-filled integers: dx == pre + backward exactly", dx_acc,
                            want_acc, nx, 0);
    free(x), free(s), free(R), free(dx_pre), free(dx), free(xi), free(dsi), free(pre);
    free(si), free(dxi), free(dx_acc), free(want_acc);
    return fail;
}

static int test_segment_sum(void) {
    SegShape uneven = {5, 10, 4};   // blocks of 4, 4 and a zero-padded 2
    SegShape narrow = {3, 3, 4};    // in < r: the last column of s is 0
    SegShape large = {300, 96, 8};  // a multiple of r, parallel path
    return check_segment_sum(&uneven) + check_segment_sum(&narrow) + check_segment_sum(&large);
}

// ------------------------------------------------------------------------------------------------ determinism

// Shapes of the determinism runs: big enough that every op runs in parallel (attention over B*H = 8
// (batch, head) pairs; bias_backward and col2im1d over several channel blocks).
enum { DB = 2, DT = 48, DH = 4, DD = 16, DN = 300, DC = 200 };
static const ConvShape DET_CONV = {3, 100, 130, 50, 3, 2, 1, 1};

typedef struct {
    float *q, *k, *v, *dout;  // (DB, DT, DH, DD)
    float* rows;              // (DN, DC): dout of bias_backward
    float* dcols;             // (B, T_out, Cin * K) of DET_CONV
} DetInputs;

// The outputs of one run, as one list of tensors so that runs compare tensor by tensor.
enum { DET_N_OUT = 7 };
static const char* const DET_NAMES[DET_N_OUT] = {"attention out", "attention probs", "attention dq", "attention dk",
                                                "attention dv", "bias_backward dbias", "col2im1d dx"};
typedef struct {
    float* t[DET_N_OUT];  // out, probs, dq, dk, dv (attention); dbias; dx
} DetOutputs;

static size_t det_size(int i) {
    size_t n = (size_t)DB * DT * DH * DD, np = (size_t)DB * DH * DT * DT;
    size_t sizes[DET_N_OUT] = {n, np, n, n, n, DC, conv_nx(&DET_CONV)};
    return sizes[i];
}

// Runs every op on backend b into freshly allocated outputs ("+=" outputs start from the same constants).
static DetOutputs determinism_run(Backend* b, const DetInputs* in) {
    DetOutputs o;
    for (int i = 0; i < DET_N_OUT; i++) o.t[i] = xmalloc(det_size(i) * sizeof(float));
    float *out = o.t[0], *probs = o.t[1], *dq = o.t[2], *dk = o.t[3], *dv = o.t[4], *dbias = o.t[5], *dx = o.t[6];
    float* scratch = xmalloc(det_size(1) * sizeof(float));
    b->k.attention_forward(b, out, probs, in->q, in->k, in->v, DB, DT, DH, DD, 0.25f);
    b->k.attention_backward(b, dq, dk, dv, scratch, in->dout, probs, in->q, in->k, in->v, DB, DT, DH, DD, 0.25f);
    for (int c = 0; c < DC; c++) dbias[c] = 0.25f;
    b->k.bias_backward(b, dbias, in->rows, DN, DC);
    for (size_t i = 0; i < det_size(6); i++) dx[i] = 0.5f;
    const ConvShape* s = &DET_CONV;
    b->k.col2im1d(b, dx, in->dcols, s->B, s->T_in, s->Cin, s->T_out, s->K, s->stride, s->dilation, s->pad_left);
    free(scratch);
    return o;
}

static void free_outputs(DetOutputs* o) {
    for (int i = 0; i < DET_N_OUT; i++) free(o->t[i]);
}

static int compare_runs(const char* what, const DetOutputs* a, const DetOutputs* b) {
    int fail = 0;
    for (int i = 0; i < DET_N_OUT; i++) {
        char name[160];
        snprintf(name, sizeof name, "determinism, %s: %s", what, DET_NAMES[i]);
        fail += check_bitwise(name, a->t[i], b->t[i], det_size(i) * sizeof(float));
    }
    return fail;
}

static int test_determinism(void) {
    size_t n = det_size(0);
    DetInputs in = {random_floats(n, -1, 1), random_floats(n, -1, 1), random_floats(n, -1, 1), random_floats(n, -1, 1),
                    random_floats((size_t)DN * DC, -1, 1), random_floats(conv_ncols(&DET_CONV), -1, 1)};
    Backend* one = backend_cpu_create(1);
    int fail = check_true("determinism: backend_cpu_create(1) runs 1 OpenMP thread", omp_get_max_threads() == 1,
                          "not 1");
    DetOutputs a = determinism_run(one, &in);
    backend_destroy(one);
    Backend* two = backend_cpu_create(2);
    fail += check_true("determinism: backend_cpu_create(2) runs 2 OpenMP threads", omp_get_max_threads() == 2,
                       "not 2");
    DetOutputs b = determinism_run(two, &in);
    DetOutputs c = determinism_run(two, &in);
    backend_destroy(two);
    fail += compare_runs("1 vs 2 threads", &a, &b);
    fail += compare_runs("2 threads run twice", &b, &c);
    free_outputs(&a), free_outputs(&b), free_outputs(&c);
    free(in.q), free(in.k), free(in.v), free(in.dout), free(in.rows), free(in.dcols);
    return fail;
}

// ------------------------------------------------------------------------------------------------ main

int main(void) {
    test_rng_seed(&rng, 11);
    be = backend_cpu_create(2);
    int fail = 0;
    fail += check_gelu(GELU_ERF);
    fail += check_gelu(GELU_TANH);
    fail += check_gelu(GELU_QUICK);
    fail += test_relu();
    fail += test_bias();
    fail += test_attention();
    fail += test_conv();
    fail += check_patchify(2, 3, 8, 4);
    fail += check_patchify(2, 3, 64, 16);  // parallel path
    fail += test_avgpool();
    fail += test_segment_sum();
    fail += test_determinism();
    backend_destroy(be);
    return test_summary("test_kernels_nn", fail);
}

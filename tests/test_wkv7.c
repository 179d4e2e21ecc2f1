// test_wkv7.c — the WKV7 kernel (forward, backward, state in/out, chunk checkpoints) against a naive
// double-precision implementation of reference/rwkv7.md §2.4 and against central finite differences of it.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tests/testutil.h"

typedef struct Inputs {
    int B, T, H, N;
    float *r, *w, *k, *v, *a, *b, *s0;  // (B, T, H, N) x 6, (B, H, N, N)
} Inputs;

static size_t nx(const Inputs* in) { return (size_t)in->B * in->T * in->H * in->N; }
static size_t ns(const Inputs* in) { return (size_t)in->B * in->H * in->N * in->N; }

// Realistic inputs: decay in (0.55, 1), a = -kk and b = kk * gate with kk unit-norm per head.
static void make_inputs(Inputs* in, TestRng* rng) {
    size_t n = nx(in);
    float** all[7] = {&in->r, &in->w, &in->k, &in->v, &in->a, &in->b, &in->s0};
    for (int i = 0; i < 6; i++) *all[i] = malloc(n * sizeof(float));
    in->s0 = malloc(ns(in) * sizeof(float));
    test_fill_uniform(rng, in->r, n, -1, 1);
    test_fill_uniform(rng, in->w, n, 0.55f, 0.999f);
    test_fill_uniform(rng, in->k, n, -1, 1);
    test_fill_uniform(rng, in->v, n, -1, 1);
    test_fill_uniform(rng, in->s0, ns(in), -0.5f, 0.5f);
    for (size_t row = 0; row < n / in->N; row++) {
        float* kk = in->a + row * in->N;
        double ss = 0;
        for (int j = 0; j < in->N; j++) {
            kk[j] = test_rng_uniform(rng, -1, 1);
            ss += kk[j] * kk[j];
        }
        for (int j = 0; j < in->N; j++) {
            kk[j] /= (float)sqrt(ss);
            in->b[row * in->N + j] = kk[j] * test_rng_uniform(rng, 0, 1);
            kk[j] = -kk[j];
        }
    }
}

static void free_inputs(Inputs* in) {
    free(in->r); free(in->w); free(in->k); free(in->v); free(in->a); free(in->b); free(in->s0);
}

// Naive double forward; returns L = sum(y * wy) + sum(sT * ws).
static double naive_loss(const Inputs* in, const float* wy, const float* ws, double* y_out, double* sT_out) {
    int B = in->B, T = in->T, H = in->H, N = in->N;
    double L = 0;
    double* S = malloc((size_t)N * N * sizeof(double));
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            size_t so = ((size_t)b * H + h) * N * N;
            for (int i = 0; i < N * N; i++) S[i] = in->s0[so + i];
            for (int t = 0; t < T; t++) {
                size_t o = (((size_t)b * T + t) * H + h) * N;
                for (int i = 0; i < N; i++) {
                    double sa = 0, y = 0;
                    for (int j = 0; j < N; j++) sa += (double)in->a[o + j] * S[i * N + j];
                    for (int j = 0; j < N; j++) {
                        S[i * N + j] = S[i * N + j] * in->w[o + j] + sa * in->b[o + j] + (double)in->v[o + i] * in->k[o + j];
                        y += S[i * N + j] * in->r[o + j];
                    }
                    if (y_out) y_out[o + i] = y;
                    L += y * wy[o + i];
                }
            }
            for (int i = 0; i < N * N; i++) {
                if (sT_out) sT_out[so + i] = S[i];
                L += S[i] * ws[so + i];
            }
        }
    }
    free(S);
    return L;
}

static int check_forward(Backend* be, int B, int T, int H, int N, uint64_t seed) {
    TestRng rng;
    test_rng_seed(&rng, seed);
    Inputs in = {.B = B, .T = T, .H = H, .N = N};
    make_inputs(&in, &rng);
    size_t n = nx(&in), s = ns(&in);
    float* y = malloc(n * sizeof(float));
    float* sT = malloc(s * sizeof(float));
    float* wy = calloc(n, sizeof(float));
    float* ws = calloc(s, sizeof(float));
    double* yd = malloc(n * sizeof(double));
    double* sTd = malloc(s * sizeof(double));
    test_poison(y, n);
    test_poison(sT, s);
    be->k.wkv7_forward(be, y, sT, NULL, in.r, in.w, in.k, in.v, in.a, in.b, in.s0, B, T, H, N);
    naive_loss(&in, wy, ws, yd, sTd);
    float* yref = malloc(n * sizeof(float));
    float* sref = malloc(s * sizeof(float));
    for (size_t i = 0; i < n; i++) yref[i] = (float)yd[i];
    for (size_t i = 0; i < s; i++) sref[i] = (float)sTd[i];
    char name[128];
    snprintf(name, sizeof name, "wkv7 forward y vs naive (B%d T%d H%d N%d)", B, T, H, N);
    int f = check_close_rel(name, y, yref, n, 1e-4, 1e-2);
    snprintf(name, sizeof name, "wkv7 forward final state vs naive (B%d T%d H%d N%d)", B, T, H, N);
    f += check_close_rel(name, sT, sref, s, 1e-4, 1e-2);
    // RNN mode: one step at a time with the state carried must give the same y and state
    float* st = malloc(s * sizeof(float));
    memcpy(st, in.s0, s * sizeof(float));
    float* y1 = malloc(n * sizeof(float));
    size_t row = (size_t)H * N;
    float* tmp[7];
    for (int i = 0; i < 7; i++) tmp[i] = malloc((size_t)B * row * sizeof(float));
    for (int t = 0; t < T; t++) {
        const float* src[6] = {in.r, in.w, in.k, in.v, in.a, in.b};
        for (int i = 0; i < 6; i++)
            for (int b = 0; b < B; b++) memcpy(tmp[i] + b * row, src[i] + ((size_t)b * T + t) * row, row * sizeof(float));
        be->k.wkv7_forward(be, tmp[6], st, NULL, tmp[0], tmp[1], tmp[2], tmp[3], tmp[4], tmp[5], st, B, 1, H, N);
        for (int b = 0; b < B; b++) memcpy(y1 + ((size_t)b * T + t) * row, tmp[6] + b * row, row * sizeof(float));
    }
    snprintf(name, sizeof name, "wkv7 one-step-at-a-time (state in/out) == parallel (T%d)", T);
    f += check_close_abs(name, y1, y, n, 1e-5);
    f += check_close_abs("wkv7 one-step-at-a-time final state == parallel", st, sT, s, 1e-5);
    for (int i = 0; i < 7; i++) free(tmp[i]);
    free(st); free(y1); free(y); free(sT); free(wy); free(ws); free(yd); free(sTd); free(yref); free(sref);
    free_inputs(&in);
    return f;
}

// Backward vs central finite differences of the naive double forward, for every input.
static int check_backward(Backend* be, int B, int T, int H, int N, uint64_t seed) {
    TestRng rng;
    test_rng_seed(&rng, seed);
    Inputs in = {.B = B, .T = T, .H = H, .N = N};
    make_inputs(&in, &rng);
    size_t n = nx(&in), s = ns(&in);
    int n_chunks = (T + WKV7_CHUNK - 1) / WKV7_CHUNK;
    float* wy = malloc(n * sizeof(float));
    float* ws = malloc(s * sizeof(float));
    test_fill_uniform(&rng, wy, n, -1, 1);
    test_fill_uniform(&rng, ws, s, -1, 1);
    float* y = malloc(n * sizeof(float));
    float* sT = malloc(s * sizeof(float));
    float* ckpt = malloc((size_t)B * H * n_chunks * N * N * sizeof(float));
    be->k.wkv7_forward(be, y, sT, ckpt, in.r, in.w, in.k, in.v, in.a, in.b, in.s0, B, T, H, N);
    float* g[7];
    for (int i = 0; i < 6; i++) { g[i] = malloc(n * sizeof(float)); test_poison(g[i], n); }
    g[6] = malloc(s * sizeof(float));
    test_poison(g[6], s);
    be->k.wkv7_backward(be, g[0], g[1], g[2], g[3], g[4], g[5], g[6], wy, ws, in.r, in.w, in.k, in.v, in.a, in.b, in.s0,
                        ckpt, B, T, H, N);
    float* x[7] = {in.r, in.w, in.k, in.v, in.a, in.b, in.s0};
    const char* names[7] = {"dr", "dw", "dk", "dv", "da", "db", "ds0"};
    int f = 0;
    for (int i = 0; i < 7; i++) {
        size_t cnt = i == 6 ? s : n;
        // check a deterministic sample of up to 400 elements per input
        size_t stride = cnt / 400 + 1, m = 0;
        float* got = malloc(cnt * sizeof(float));
        float* want = malloc(cnt * sizeof(float));
        for (size_t e = 0; e < cnt; e += stride, m++) {
            float orig = x[i][e];
            double h = 1e-3 * fmax(fabs(orig), 0.1);
            x[i][e] = (float)(orig + h);
            double hp = (double)x[i][e] - orig;
            double lp = naive_loss(&in, wy, ws, NULL, NULL);
            x[i][e] = (float)(orig - h);
            double hm = orig - (double)x[i][e];
            double lm = naive_loss(&in, wy, ws, NULL, NULL);
            x[i][e] = orig;
            want[m] = (float)((lp - lm) / (hp + hm));
            got[m] = g[i][e];
        }
        char name[128];
        snprintf(name, sizeof name, "wkv7 backward %s vs finite differences (B%d T%d H%d N%d, %zu samples)", names[i], B,
                 T, H, N, m);
        f += check_close_rel(name, got, want, m, 2e-3, 1e-1);
        free(got);
        free(want);
    }
    for (int i = 0; i < 7; i++) free(g[i]);
    free(wy); free(ws); free(y); free(sT); free(ckpt);
    free_inputs(&in);
    return f;
}

// Backward is independent of how many threads run it, and the chunk-recompute matches a T that is a
// multiple of 16 as well as one that is not.
static int check_determinism(Backend* be1, Backend* be2) {
    TestRng rng;
    test_rng_seed(&rng, 7);
    int B = 2, T = 37, H = 2, N = 16;
    Inputs in = {.B = B, .T = T, .H = H, .N = N};
    make_inputs(&in, &rng);
    size_t n = nx(&in), s = ns(&in);
    int n_chunks = (T + WKV7_CHUNK - 1) / WKV7_CHUNK;
    float* dy = malloc(n * sizeof(float));
    test_fill_uniform(&rng, dy, n, -1, 1);
    float* out[2][6];
    for (int rep = 0; rep < 2; rep++) {
        Backend* be = rep ? be2 : be1;
        float* y = malloc(n * sizeof(float));
        float* ckpt = malloc((size_t)B * H * n_chunks * N * N * sizeof(float));
        be->k.wkv7_forward(be, y, NULL, ckpt, in.r, in.w, in.k, in.v, in.a, in.b, NULL, B, T, H, N);
        for (int i = 0; i < 6; i++) out[rep][i] = malloc(n * sizeof(float));
        be->k.wkv7_backward(be, out[rep][0], out[rep][1], out[rep][2], out[rep][3], out[rep][4], out[rep][5], NULL, dy,
                            NULL, in.r, in.w, in.k, in.v, in.a, in.b, NULL, ckpt, B, T, H, N);
        free(y);
        free(ckpt);
    }
    int same = 1;
    for (int i = 0; i < 6; i++) same &= memcmp(out[0][i], out[1][i], n * sizeof(float)) == 0;
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < 6; i++) free(out[rep][i]);
    free(dy);
    free_inputs(&in);
    (void)s;
    return check_true("wkv7 backward bit-identical with 1 and 2 threads", same, "outputs differ");
}

int main(void) {
    Backend* be = backend_cpu_create(2);
    Backend* be1 = backend_cpu_create(1);
    int f = 0;
    f += check_forward(be, 2, 40, 2, 64, 1);    // T not a multiple of 16
    f += check_forward(be, 1, 48, 1, 64, 2);
    f += check_backward(be, 1, 21, 2, 8, 3);    // small N so finite differences stay cheap
    f += check_backward(be, 2, 33, 1, 16, 4);
    f += check_backward(be, 1, 16, 1, 64, 5);   // the real head size, exactly one chunk
    f += check_determinism(be1, be);
    backend_destroy(be1);
    backend_destroy(be);
    return test_summary("test_wkv7", f);
}

// rwkv7_init.c — initialisation of a fresh RWKV-7 model.
//
// RWKV7_INIT_OFFICIAL follows RWKV-LM train_temp (reference/rwkv7.md §5.1 module init and §5.2
// generate_init_weight overrides): token-shift ramps, zigzag/linear decay and gate biases, zero LoRA
// down-projections, orthogonal LoRA up-projections (gain 0.1), orthogonal r/v/ffn.key (gain 1), key
// (gain 0.1), head (0.5 sqrt(V/C)), zero output projections, emb ~ U(-1e-4, 1e-4), ln_x = ((l+1)/L)^0.7.
// Orthogonal matrices come from LAPACK's QR (sgeqrf/sorgqr), sign-corrected like torch.nn.init.orthogonal_.
// RWKV7_INIT_RANDOM draws every tensor from a small normal (or uniform) distribution so that every path
// of the block contributes to the output: used by tests and gradient checks.
#include "trainer/rwkv7_init.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// LAPACK (from OpenBLAS): QR factorisation and explicit Q.
extern void sgeqrf_(const int* m, const int* n, float* a, const int* lda, float* tau, float* work, const int* lwork,
                    int* info);
extern void sorgqr_(const int* m, const int* n, const int* k, float* a, const int* lda, const float* tau, float* work,
                    const int* lwork, int* info);

// out (rows, cols) row-major = gain x a random matrix with orthonormal rows or columns.
static void orthogonal(float* out, int rows, int cols, float gain, Rng* rng) {
    int m = rows >= cols ? rows : cols, n = rows >= cols ? cols : rows;  // the tall (m >= n) problem
    float* a = xmalloc((size_t)m * n * sizeof(float));                   // column-major (m, n)
    for (size_t i = 0; i < (size_t)m * n; i++) a[i] = rng_normal(rng);
    float* tau = xmalloc((size_t)n * sizeof(float));
    int lwork = 64 * n, info = 0;
    float* work = xmalloc((size_t)lwork * sizeof(float));
    sgeqrf_(&m, &n, a, &m, tau, work, &lwork, &info);
    if (info != 0) fatal("LAPACK sgeqrf failed (info %d) initialising a %dx%d matrix", info, rows, cols);
    float* sign = xmalloc((size_t)n * sizeof(float));
    for (int j = 0; j < n; j++) sign[j] = a[(size_t)j * m + j] < 0 ? -1.0f : 1.0f;
    sorgqr_(&m, &n, &n, a, &m, tau, work, &lwork, &info);
    if (info != 0) fatal("LAPACK sorgqr failed (info %d) initialising a %dx%d matrix", info, rows, cols);
    for (int i = 0; i < rows; i++) {
        for (int j = 0; j < cols; j++) {
            // rows >= cols: out = Q (m = rows); else out = Q^T (m = cols)
            size_t qi = rows >= cols ? (size_t)j * m + i : (size_t)i * m + j;
            int col = rows >= cols ? j : i;
            out[(size_t)i * cols + j] = gain * sign[col] * a[qi];
        }
    }
    free(a);
    free(tau);
    free(work);
    free(sign);
}

static void fill(float* x, size_t n, float v) {
    for (size_t i = 0; i < n; i++) x[i] = v;
}

static void fill_uniform(float* x, size_t n, float lo, float hi, Rng* rng) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)rng_uniform(rng);
}

static void fill_normal(float* x, size_t n, float mean, float std, Rng* rng) {
    for (size_t i = 0; i < n; i++) x[i] = mean + std * rng_normal(rng);
}

static void init_block_official(RWKV7* m, int l, Rng* rng) {
    const RWKV7Config* c = &m->cfg;
    BlockParams* p = &m->params.blocks[l];
    int C = c->n_embd, N = c->head_size, L = c->n_layer, F = c->dim_ffn;
    double r0 = L > 1 ? (double)l / (L - 1) : 0.0;   // ratio_0_to_1
    double r1 = 1.0 - (double)l / L;                 // ratio_1_to_almost0
    for (int i = 0; i < C; i++) {
        double ddd = (double)i / C;
        double lin = (double)i / (C - 1 > 0 ? C - 1 : 1) - 0.5;
        double z = ((i % N) - (N - 1) / 2.0) / ((N - 1) / 2.0);
        double zig = z * fabs(z);
        double www = -6.0 + 6.0 * pow((double)i / (C - 1 > 0 ? C - 1 : 1), 1.0 + pow(r0, 0.3));
        p->x_r[i] = (float)(1.0 - pow(ddd, 0.2 * r1));
        p->x_w[i] = (float)(1.0 - pow(ddd, 0.9 * r1));
        p->x_k[i] = (float)(1.0 - pow(ddd, 0.7 * r1));
        p->x_v[i] = (float)(1.0 - pow(ddd, 0.7 * r1));
        p->x_a[i] = (float)(1.0 - pow(ddd, 0.9 * r1));
        p->x_g[i] = (float)(1.0 - pow(ddd, 0.2 * r1));
        p->w0[i] = (float)(www + 0.5 + 2.5 * zig);
        p->a0[i] = (float)(-0.19 + 0.3 * zig + 0.4 * lin);
        p->v0[i] = (float)(0.73 - 0.4 * lin);
        p->k_k[i] = (float)(0.71 - 0.1 * lin);
        p->k_a[i] = 1.02f;
        p->r_k[i] = -0.04f;
        p->ffn_x_k[i] = (float)(1.0 - pow(ddd, pow(r1, 4.0)));
        p->lnx_w[i] = (float)pow((double)(l + 1) / L, 0.7);
    }
    fill(p->ln1_w, C, 1.0f);
    fill(p->ln2_w, C, 1.0f);
    // w1, a1, v1, g1 and the biases stay zero (buffers start zeroed)
    orthogonal(p->w2, c->d_decay, C, 0.1f, rng);
    orthogonal(p->a2, c->d_a, C, 0.1f, rng);
    orthogonal(p->v2, c->d_value, C, 0.1f, rng);
    orthogonal(p->g2, c->d_gate, C, 0.1f, rng);
    orthogonal(p->Wr, C, C, 1.0f, rng);
    orthogonal(p->Wk, C, C, 0.1f, rng);
    orthogonal(p->Wv, C, C, 1.0f, rng);
    orthogonal(p->ffn_key, F, C, 1.0f, rng);
    // Wo and ffn.value stay zero
}

static void init_official(RWKV7* m, Rng* rng) {
    const RWKV7Config* c = &m->cfg;
    ModelParams* P = &m->params;
    int C = c->n_embd, V = c->vocab_size;
    fill_uniform(P->emb, (size_t)V * C, -1e-4f, 1e-4f, rng);
    fill(P->ln0_w, C, 1.0f);
    fill(P->ln_out_w, C, 1.0f);
    for (int l = 0; l < c->n_layer; l++) init_block_official(m, l, rng);
    float gain = V > C ? 0.5f * sqrtf((float)V / C) : 0.5f;
    orthogonal(P->head, V, C, gain, rng);
}

static void init_block_random(RWKV7* m, int l, Rng* rng) {
    const RWKV7Config* c = &m->cfg;
    BlockParams* p = &m->params.blocks[l];
    int C = c->n_embd, F = c->dim_ffn;
    float sC = 1.0f / sqrtf((float)C), sF = 1.0f / sqrtf((float)F);
    fill_normal(p->ln1_w, C, 1.0f, 0.1f, rng);
    fill_normal(p->ln1_b, C, 0.0f, 0.1f, rng);
    fill_normal(p->ln2_w, C, 1.0f, 0.1f, rng);
    fill_normal(p->ln2_b, C, 0.0f, 0.1f, rng);
    fill_uniform(p->x_r, 6 * (size_t)C, 0.0f, 1.0f, rng);  // x_r .. x_g are contiguous
    fill_normal(p->w0, C, 0.0f, 1.0f, rng);
    fill_normal(p->a0, C, 0.0f, 0.5f, rng);
    fill_normal(p->v0, C, 0.0f, 0.5f, rng);
    struct { float* down; float* up; int d; } lora[4] = {
        {p->w1, p->w2, c->d_decay}, {p->a1, p->a2, c->d_a}, {p->v1, p->v2, c->d_value}, {p->g1, p->g2, c->d_gate}};
    for (int i = 0; i < 4; i++) {
        fill_normal(lora[i].down, (size_t)C * lora[i].d, 0.0f, sC, rng);
        fill_normal(lora[i].up, (size_t)lora[i].d * C, 0.0f, 1.0f / sqrtf((float)lora[i].d), rng);
    }
    fill_uniform(p->k_k, C, 0.5f, 1.5f, rng);
    fill_uniform(p->k_a, C, 0.5f, 1.5f, rng);
    fill_normal(p->r_k, C, 0.0f, 0.3f, rng);
    float* W[4] = {p->Wr, p->Wk, p->Wv, p->Wo};
    for (int i = 0; i < 4; i++) fill_normal(W[i], (size_t)C * C, 0.0f, sC, rng);
    fill_normal(p->lnx_w, C, 1.0f, 0.1f, rng);
    fill_normal(p->lnx_b, C, 0.0f, 0.1f, rng);
    fill_uniform(p->ffn_x_k, C, 0.0f, 1.0f, rng);
    fill_normal(p->ffn_key, (size_t)F * C, 0.0f, sC, rng);
    fill_normal(p->ffn_value, (size_t)C * F, 0.0f, sF, rng);
}

static void init_random(RWKV7* m, Rng* rng) {
    const RWKV7Config* c = &m->cfg;
    ModelParams* P = &m->params;
    int C = c->n_embd, V = c->vocab_size;
    fill_normal(P->emb, (size_t)V * C, 0.0f, 1.0f, rng);
    fill_normal(P->ln0_w, C, 1.0f, 0.1f, rng);
    fill_normal(P->ln0_b, C, 0.0f, 0.1f, rng);
    for (int l = 0; l < c->n_layer; l++) init_block_random(m, l, rng);
    fill_normal(P->ln_out_w, C, 1.0f, 0.1f, rng);
    fill_normal(P->ln_out_b, C, 0.0f, 0.1f, rng);
    fill_normal(P->head, (size_t)V * C, 0.0f, 1.0f / sqrtf((float)C), rng);
}

void rwkv7_init(RWKV7* m, RWKV7InitKind kind, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    m->be->k.zero(m->be, m->params_memory, m->n_params);
    if (kind == RWKV7_INIT_OFFICIAL) init_official(m, &rng);
    else init_random(m, &rng);
    m->has_block0_vres = 1;
}

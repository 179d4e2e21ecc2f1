// transformer.c — the pre-LN transformer encoder layer and its stack (transformer.h).
#include "trainer/transformer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char* const PROJ_NAME[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};

// The tensor-parallel group size (1 without one).
static int tp_size(const TransformerConfig* c) { return c->tp ? comm_size(c->tp) : 1; }

// Sums x (n) over the tensor-parallel group (nothing without one).
static void tp_sum(const TransformerConfig* c, float* x, size_t n) {
    if (tp_size(c) > 1) comm_all_reduce(c->tp, x, n, COMM_SUM);
}

int transformer_config_check(const TransformerConfig* c, Error* e) {
    if (c->dim <= 0 || c->n_heads <= 0 || c->mlp_dim <= 0)
        return errorf(e, "transformer: dim %d, n_heads %d and mlp_dim %d must be positive", c->dim, c->n_heads,
                      c->mlp_dim);
    if (c->dim % c->n_heads != 0)
        return errorf(e, "transformer: dim %d is not a multiple of n_heads %d", c->dim, c->n_heads);
    if (!(c->ln_eps > 0.0f)) return errorf(e, "transformer: layer-norm eps %g must be positive", (double)c->ln_eps);
    if (c->gelu_mode != GELU_ERF && c->gelu_mode != GELU_TANH && c->gelu_mode != GELU_QUICK)
        return errorf(e, "transformer: unknown gelu mode %d (0 erf, 1 tanh, 2 quick)", c->gelu_mode);
    if (c->names != TF_NAMES_VIT && c->names != TF_NAMES_WHISPER)
        return errorf(e, "transformer: unknown tensor naming %d", c->names);
    int P = tp_size(c);
    if (c->n_heads % P != 0 || c->mlp_dim % P != 0)
        return errorf(e, "transformer: parallel.tp = %d does not divide its %d heads and MLP width %d: choose a tp that "
                         "divides both", P, c->n_heads, c->mlp_dim);
    return 0;
}

// ---------------------------------------------------------------------------------------------------- names

static const char* ln1_name(const TransformerConfig* c) {
    return c->names == TF_NAMES_VIT ? "layer_norm1" : "self_attn_layer_norm";
}
static const char* ln2_name(const TransformerConfig* c) {
    return c->names == TF_NAMES_VIT ? "layer_norm2" : "final_layer_norm";
}
static const char* mlp_prefix(const TransformerConfig* c) { return c->names == TF_NAMES_VIT ? "mlp." : ""; }

// tp_dim: the dimension holding this rank's slice (-1 replicated; only set under tensor parallelism).
static void add_vec(ParamTable* t, int layer, int64_t n, const char* prefix, const char* name, const char* leaf,
                    int tp_dim) {
    TensorSpec* s = param_table_add(t, 1, &n, "%s%s.%s", prefix, name, leaf);
    s->layer = layer;
    s->tp_dim = tp_dim;
}

static void add_mat(ParamTable* t, int layer, int64_t rows, int64_t cols, const char* prefix, const char* name,
                    int tp_dim) {
    int64_t shape[2] = {rows, cols};
    TensorSpec* s = param_table_add(t, 2, shape, "%s%s.weight", prefix, name);
    s->layer = layer;
    s->tp_dim = tp_dim;
}

void transformer_layer_add_params(const TransformerConfig* c, ParamTable* t, const char* prefix, int layer) {
    const int P = tp_size(c), sl = P > 1 ? 0 : -1, col = P > 1 ? 1 : -1;  // slice dims under tensor parallelism
    const int64_t D = c->dim, Dl = c->dim / P, F = c->mlp_dim / P;
    char name[PARAM_NAME_MAX];
    add_vec(t, layer, D, prefix, ln1_name(c), "weight", -1);
    add_vec(t, layer, D, prefix, ln1_name(c), "bias", -1);
    for (int j = 0; j < 4; j++) {  // q, k, v: this rank's heads (rows); out: their columns, bias replicated
        snprintf(name, sizeof name, "self_attn.%s", PROJ_NAME[j]);
        if (j == TF_O) add_mat(t, layer, D, Dl, prefix, name, col);
        else add_mat(t, layer, Dl, D, prefix, name, sl);
        if (c->proj_bias[j]) add_vec(t, layer, j == TF_O ? D : Dl, prefix, name, "bias", j == TF_O ? -1 : sl);
    }
    add_vec(t, layer, D, prefix, ln2_name(c), "weight", -1);
    add_vec(t, layer, D, prefix, ln2_name(c), "bias", -1);
    snprintf(name, sizeof name, "%sfc1", mlp_prefix(c));
    add_mat(t, layer, F, D, prefix, name, sl);
    add_vec(t, layer, F, prefix, name, "bias", sl);
    snprintf(name, sizeof name, "%sfc2", mlp_prefix(c));
    add_mat(t, layer, D, F, prefix, name, col);
    add_vec(t, layer, D, prefix, name, "bias", -1);
}

void transformer_layer_point(const TransformerConfig* c, const ParamTable* t, float* base, const char* prefix,
                             TransformerLayerParams* p) {
    const char* mp = mlp_prefix(c);
    p->ln1_w = param_view(t, base, "%s%s.weight", prefix, ln1_name(c));
    p->ln1_b = param_view(t, base, "%s%s.bias", prefix, ln1_name(c));
    for (int j = 0; j < 4; j++) {
        p->w[j] = param_view(t, base, "%sself_attn.%s.weight", prefix, PROJ_NAME[j]);
        p->b[j] = c->proj_bias[j] ? param_view(t, base, "%sself_attn.%s.bias", prefix, PROJ_NAME[j]) : NULL;
    }
    p->ln2_w = param_view(t, base, "%s%s.weight", prefix, ln2_name(c));
    p->ln2_b = param_view(t, base, "%s%s.bias", prefix, ln2_name(c));
    p->fc1_w = param_view(t, base, "%s%sfc1.weight", prefix, mp);
    p->fc1_b = param_view(t, base, "%s%sfc1.bias", prefix, mp);
    p->fc2_w = param_view(t, base, "%s%sfc2.weight", prefix, mp);
    p->fc2_b = param_view(t, base, "%s%sfc2.bias", prefix, mp);
}

// ---------------------------------------------------------------------------------------------------- init

void tf_fill(float* x, size_t n, float v) {
    for (size_t i = 0; i < n; i++) x[i] = v;
}

void tf_fill_normal(float* x, size_t n, float std, Rng* r) {
    for (size_t i = 0; i < n; i++) x[i] = std * rng_normal(r);
}

void transformer_layer_init_random(const TransformerConfig* c, const TransformerLayerParams* p, Rng* r) {
    // this rank's sizes (a tensor-parallel model is initialised whole and then sliced: tp_slice_table)
    const size_t D = (size_t)c->dim, Dl = D / (size_t)tp_size(c), F = (size_t)c->mlp_dim / (size_t)tp_size(c);
    tf_fill(p->ln1_w, D, 1.0f);
    tf_fill(p->ln1_b, D, 0.0f);
    for (int j = 0; j < 4; j++) {
        tf_fill_normal(p->w[j], Dl * D, 1.0f / sqrtf((float)D), r);
        if (p->b[j]) tf_fill(p->b[j], j == TF_O ? D : Dl, 0.0f);
    }
    tf_fill(p->ln2_w, D, 1.0f);
    tf_fill(p->ln2_b, D, 0.0f);
    tf_fill_normal(p->fc1_w, F * D, 1.0f / sqrtf((float)D), r);
    tf_fill(p->fc1_b, F, 0.0f);
    tf_fill_normal(p->fc2_w, D * F, 1.0f / sqrtf((float)c->mlp_dim), r);
    tf_fill(p->fc2_b, D, 0.0f);
}

// ---------------------------------------------------------------------------------------------------- activations

float* arena_take(FloatArena* ar, size_t n) {
    float* p = ar->base ? ar->base + ar->used : NULL;
    ar->used += (n + 15) / 16 * 16;
    return p;
}

void transformer_stack_init(TransformerStack* s, int B, int T, int n_run, int with_backward) {
    memset(s, 0, sizeof *s);
    s->B = B;
    s->T = T;
    s->n_run = n_run;
    s->with_backward = with_backward;
    int n_res = with_backward ? n_run + 1 : 2;
    int n_layers = with_backward ? n_run : 1;
    s->res = xcalloc((size_t)n_res, sizeof(float*));
    s->layers = xcalloc((size_t)(n_layers > 0 ? n_layers : 1), sizeof(TransformerLayerActs));
}

void transformer_stack_free(TransformerStack* s) {
    free(s->res);
    free(s->layers);
    memset(s, 0, sizeof *s);
}

// The buffers of one layer (Dl: this rank's attention width); g is the shared (N, F) working buffer.
static void layout_layer(TransformerLayerActs* a, FloatArena* ar, size_t N, size_t D, size_t Dl, size_t F,
                         size_t BHTT, float* g) {
    a->ln1 = arena_take(ar, N * D);
    a->ln1_mean = arena_take(ar, N);
    a->ln1_rstd = arena_take(ar, N);
    a->q = arena_take(ar, N * Dl);
    a->k = arena_take(ar, N * Dl);
    a->v = arena_take(ar, N * Dl);
    a->probs = arena_take(ar, BHTT);
    a->att = arena_take(ar, N * Dl);
    a->x_mid = arena_take(ar, N * D);
    a->ln2 = arena_take(ar, N * D);
    a->ln2_mean = arena_take(ar, N);
    a->ln2_rstd = arena_take(ar, N);
    a->h = arena_take(ar, N * F);
    a->g = g;
}

static void layout_scratch(TransformerScratch* s, FloatArena* ar, size_t N, size_t D, size_t F, size_t BHTT) {
    s->dF1 = arena_take(ar, N * F);
    s->dF2 = arena_take(ar, N * F);
    s->dD1 = arena_take(ar, N * D);
    s->dq = arena_take(ar, N * D);
    s->dk = arena_take(ar, N * D);
    s->dv = arena_take(ar, N * D);
    s->dmid = arena_take(ar, N * D);
    s->dprobs = arena_take(ar, BHTT);
}

void transformer_stack_layout(const TransformerConfig* c, TransformerStack* s, FloatArena* ar) {
    const size_t P = (size_t)tp_size(c), N = (size_t)s->B * s->T, D = (size_t)c->dim, F = (size_t)c->mlp_dim / P;
    const size_t Dl = D / P, BHTT = (size_t)s->B * (c->n_heads / P) * s->T * s->T;
    int n_res = s->with_backward ? s->n_run + 1 : 2;
    for (int l = 0; l < n_res; l++) s->res[l] = arena_take(ar, N * D);
    if (s->n_run == 0) return;
    if (s->with_backward) {
        layout_scratch(&s->scratch, ar, N, D, F, BHTT);
        for (int l = 0; l < s->n_run; l++) layout_layer(&s->layers[l], ar, N, D, Dl, F, BHTT, s->scratch.dF1);
    } else {
        float* g = arena_take(ar, N * F);
        layout_layer(&s->layers[0], ar, N, D, Dl, F, BHTT, g);
    }
}

// ---------------------------------------------------------------------------------------------------- layer

static float attention_scale(const TransformerConfig* c) {
    return 1.0f / sqrtf((float)(c->dim / c->n_heads));
}

// out (N, D) = res + inp W^T + b for a row-parallel linear (W: this rank's input columns, b replicated): the
// ranks' partial products are summed before the bias and the residual. out may alias res.
static void row_parallel_forward(Backend* be, const TransformerConfig* c, float* out, const float* res,
                                 const float* inp, const float* W, const float* b, int N, int IC, int OC) {
    size_t n = (size_t)N * OC;
    if (tp_size(c) == 1) {  // one GEMM accumulating into the residual
        if (out != res) be->k.copy(be, out, res, n);
        dense_forward(be, out, inp, W, b, N, IC, OC, 1.0f);
        return;
    }
    float* partial = xmalloc(n * sizeof(float));  // host: the CPU backend (tensor parallelism runs there)
    dense_forward(be, partial, inp, W, NULL, N, IC, OC, 0.0f);
    tp_sum(c, partial, n);
    if (b) be->k.bias_add(be, partial, b, N, OC);
    if (out != res) be->k.copy(be, out, res, n);
    be->k.axpy(be, out, 1.0f, partial, n);
    free(partial);
}

void transformer_layer_forward(Backend* be, const TransformerConfig* c, const TransformerLayerParams* p,
                               TransformerLayerActs* a, float* out, const float* inp, int B, int T) {
    const int P = tp_size(c), N = B * T, D = c->dim, Dl = D / P, F = c->mlp_dim / P, H = c->n_heads / P;
    float* qkv[3] = {a->q, a->k, a->v};
    // attention block: x_mid = inp + out_proj(attention(LN1(inp)))
    be->k.layernorm_forward(be, a->ln1, a->ln1_mean, a->ln1_rstd, inp, p->ln1_w, p->ln1_b, N, D, c->ln_eps);
    for (int j = 0; j < 3; j++) dense_forward(be, qkv[j], a->ln1, p->w[j], p->b[j], N, D, Dl, 0.0f);
    be->k.attention_forward(be, a->att, a->probs, a->q, a->k, a->v, B, T, H, D / c->n_heads, attention_scale(c));
    row_parallel_forward(be, c, a->x_mid, inp, a->att, p->w[TF_O], p->b[TF_O], N, Dl, D);
    // MLP block: out = x_mid + fc2(gelu(fc1(LN2(x_mid))))
    be->k.layernorm_forward(be, a->ln2, a->ln2_mean, a->ln2_rstd, a->x_mid, p->ln2_w, p->ln2_b, N, D, c->ln_eps);
    dense_forward(be, a->h, a->ln2, p->fc1_w, p->fc1_b, N, D, F, 0.0f);
    be->k.gelu_forward(be, a->g, a->h, (size_t)N * F, c->gelu_mode);
    row_parallel_forward(be, c, out, a->x_mid, a->g, p->fc2_w, p->fc2_b, N, F, D);
}

// The MLP block: s->dmid = dL/dx_mid (dout through the residual and through LN2).
static void mlp_backward(Backend* be, const TransformerConfig* c, const TransformerLayerParams* p,
                         const TransformerLayerParams* g, const TransformerLayerActs* a, const TransformerScratch* s,
                         const float* dout, int N) {
    const int D = c->dim, F = c->mlp_dim / tp_size(c);
    const size_t NF = (size_t)N * F;
    be->k.gelu_forward(be, s->dF1, a->h, NF, c->gelu_mode);   // g recomputed (N, F)
    dense_backward(be, s->dF2, g ? g->fc2_w : NULL, g ? g->fc2_b : NULL, dout, s->dF1, p->fc2_w, N, F, D, 0.0f);
    be->k.gelu_backward(be, s->dF1, s->dF2, a->h, NF, c->gelu_mode);                 // dh (N, F)
    dense_backward(be, s->dD1, g ? g->fc1_w : NULL, g ? g->fc1_b : NULL, s->dF1, a->ln2, p->fc1_w, N, D, F, 0.0f);
    tp_sum(c, s->dD1, (size_t)N * D);  // the ranks' MLP units each contribute to dL/dLN2
    be->k.copy(be, s->dmid, dout, (size_t)N * D);
    be->k.layernorm_backward(be, s->dmid, g ? g->ln2_w : NULL, g ? g->ln2_b : NULL, s->dD1, a->x_mid, p->ln2_w,
                             a->ln2_mean, a->ln2_rstd, N, D);
}

void transformer_layer_backward(Backend* be, const TransformerConfig* c, const TransformerLayerParams* p,
                                const TransformerLayerParams* g, const TransformerLayerActs* a,
                                const TransformerScratch* s, float* dinp, const float* dout, const float* inp,
                                int B, int T) {
    const int P = tp_size(c), N = B * T, D = c->dim, Dl = D / P, H = c->n_heads / P;
    mlp_backward(be, c, p, g, a, s, dout, N);   // the last read of dout: dinp may alias it from here on
    // attention block: x_mid = inp + out_proj(att)
    dense_backward(be, s->dD1, g ? g->w[TF_O] : NULL, g ? g->b[TF_O] : NULL, s->dmid, a->att, p->w[TF_O], N, Dl, D,
                   0.0f);
    be->k.attention_backward(be, s->dq, s->dk, s->dv, s->dprobs, s->dD1, a->probs, a->q, a->k, a->v, B, T, H,
                             D / c->n_heads, attention_scale(c));
    const float* dqkv[3] = {s->dq, s->dk, s->dv};
    for (int j = 0; j < 3; j++)   // dD1 = dL/dLN1(inp), summed over q, k, v
        dense_backward(be, s->dD1, g ? g->w[j] : NULL, g ? g->b[j] : NULL, dqkv[j], a->ln1, p->w[j], N, D, Dl,
                       j == 0 ? 0.0f : 1.0f);
    tp_sum(c, s->dD1, (size_t)N * D);  // and over the ranks' heads
    be->k.copy(be, dinp, s->dmid, (size_t)N * D);
    be->k.layernorm_backward(be, dinp, g ? g->ln1_w : NULL, g ? g->ln1_b : NULL, s->dD1, inp, p->ln1_w, a->ln1_mean,
                             a->ln1_rstd, N, D);
}

// ---------------------------------------------------------------------------------------------------- stack

float* transformer_stack_input(const TransformerStack* s) { return s->res[0]; }

float* transformer_stack_forward(Backend* be, const TransformerConfig* c, const TransformerLayerParams* layers,
                                 TransformerStack* s) {
    float* x = s->res[0];
    for (int l = 0; l < s->n_run; l++) {
        float* y = s->with_backward ? s->res[l + 1] : s->res[(l + 1) % 2];
        TransformerLayerActs* a = s->with_backward ? &s->layers[l] : &s->layers[0];
        transformer_layer_forward(be, c, &layers[l], a, y, x, s->B, s->T);
        x = y;
    }
    return x;
}

void transformer_stack_backward(Backend* be, const TransformerConfig* c, const TransformerLayerParams* layers,
                                const TransformerLayerParams* grads, TransformerStack* s, float* dres) {
    if (!s->with_backward) fatal("internal: transformer backward on activations created without backward");
    for (int l = s->n_run - 1; l >= 0; l--)
        transformer_layer_backward(be, c, &layers[l], grads ? &grads[l] : NULL, &s->layers[l], &s->scratch, dres,
                                   dres, s->res[l], s->B, s->T);
}

// whisper.c — the Whisper audio encoder (whisper.h).
#include "trainer/whisper.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/rng.h"

enum { CONV_K = 3 };   // both convolutions: kernel 3, padding 1

// ---------------------------------------------------------------------------------------------------- config

static void config_sizes(WhisperConfig* c, int n_mels, int dim, int n_layers, int n_heads) {
    memset(c, 0, sizeof *c);
    c->n_mels = n_mels;
    c->dim = dim;
    c->n_layers = n_layers;
    c->n_heads = n_heads;
    c->mlp_dim = 4 * dim;
    c->max_positions = 1500;
    c->ln_eps = 1e-5f;
    c->length_mode = WHISPER_PAD30;
    snprintf(c->prefix, sizeof c->prefix, "model.encoder.");
}

void whisper_config_small(WhisperConfig* c) { config_sizes(c, 80, 768, 12, 12); }
void whisper_config_medium(WhisperConfig* c) { config_sizes(c, 80, 1024, 24, 16); }
void whisper_config_large_v3(WhisperConfig* c) { config_sizes(c, 128, 1280, 32, 20); }

static TransformerConfig layer_config(const WhisperConfig* c) {
    return (TransformerConfig){.dim = c->dim, .n_heads = c->n_heads, .mlp_dim = c->mlp_dim, .ln_eps = c->ln_eps,
                               .gelu_mode = GELU_ERF, .names = TF_NAMES_WHISPER, .proj_bias = {1, 0, 1, 1},
                               .tp = c->tp};
}

int whisper_config_check(const WhisperConfig* c, Error* e) {
    if (c->n_mels <= 0) return errorf(e, "whisper: n_mels %d must be positive", c->n_mels);
    if (c->n_layers < 0) return errorf(e, "whisper: n_layers %d must not be negative", c->n_layers);
    if (c->max_positions <= 0) return errorf(e, "whisper: max_positions %d must be positive", c->max_positions);
    if (c->length_mode != WHISPER_PAD30 && c->length_mode != WHISPER_TRUNCATE)
        return errorf(e, "whisper: unknown length mode %d (0 pad30, 1 truncate)", c->length_mode);
    if (memchr(c->prefix, '\0', sizeof c->prefix) == NULL) return errorf(e, "whisper: the name prefix is too long");
    TransformerConfig tf = layer_config(c);
    Error sub;
    if (transformer_config_check(&tf, &sub) != 0) return errorf(e, "whisper: %s", sub.msg);
    if (c->dim < 4 || c->dim % 2 != 0) return errorf(e, "whisper: dim %d must be even and >= 4", c->dim);
    return 0;
}

int whisper_check_frames(const WhisperConfig* c, int n_frames, Error* e) {
    int full = 2 * c->max_positions;
    if (c->length_mode == WHISPER_PAD30 && n_frames != full)
        return errorf(e, "whisper: %d input frames, but the pad30 mode takes exactly %d (30 s padded): pad the "
                      "audio, or use the truncate mode", n_frames, full);
    if (n_frames < 1 || n_frames > full)
        return errorf(e, "whisper: %d input frames is outside [1, %d] (%d positions)", n_frames, full,
                      c->max_positions);
    return 0;
}

int whisper_out_tokens(const WhisperConfig* c, int n_frames) {
    if (whisper_check_frames(c, n_frames, NULL) != 0) return -1;
    return (n_frames - 1) / 2 + 1;
}

int whisper_out_dim(const WhisperConfig* c) { return c->dim; }

int whisper_valid_tokens(const WhisperConfig* c, int n_frames, int real_frames) {
    int n_out = (n_frames - 1) / 2 + 1;
    if (c->length_mode == WHISPER_TRUNCATE) return n_out;
    int kept = real_frames / 2 + 1;
    return kept < n_out ? kept : n_out;
}

static int has_tensor(const TensorSet* set, const char* prefix, size_t plen, const char* leaf) {
    char name[PARAM_NAME_MAX + WHISPER_PREFIX_MAX];
    snprintf(name, sizeof name, "%.*s%s", (int)plen, prefix, leaf);
    return tensorset_find(set, name) != NULL;
}

int whisper_detect_prefix(const TensorSet* set, char* prefix, size_t len) {
    static const char suffix[] = "conv1.weight";
    const size_t slen = strlen(suffix);
    int found = 0;
    for (int i = 0; i < set->n; i++) {
        const char* name = set->t[i].name;
        size_t n = strlen(name), plen = n - slen;
        if (n < slen || strcmp(name + plen, suffix) != 0 || plen >= len) continue;
        if (!has_tensor(set, name, plen, "embed_positions.weight")) continue;
        if (found && (strncmp(prefix, name, plen) != 0 || prefix[plen] != '\0')) return -1;
        memcpy(prefix, name, plen);
        prefix[plen] = '\0';
        found = 1;
    }
    return found ? 0 : -1;
}

// ---------------------------------------------------------------------------------------------------- parameters

static void add_tensor(ParamTable* t, const char* prefix, const char* name, int ndim, int64_t d0, int64_t d1,
                       int64_t d2) {
    int64_t shape[3] = {d0, d1, d2};
    param_table_add(t, ndim, shape, "%s%s", prefix, name);
}

static void build_table(Whisper* w) {
    const WhisperConfig* c = &w->cfg;
    const int64_t D = c->dim;
    ParamTable* t = &w->table;
    add_tensor(t, c->prefix, "conv1.weight", 3, D, c->n_mels, CONV_K);
    add_tensor(t, c->prefix, "conv1.bias", 1, D, 0, 0);
    add_tensor(t, c->prefix, "conv2.weight", 3, D, D, CONV_K);
    add_tensor(t, c->prefix, "conv2.bias", 1, D, 0, 0);
    add_tensor(t, c->prefix, "embed_positions.weight", 2, c->max_positions, D, 0);
    t->specs[t->n - 1].unused = 1;   // frozen sinusoids, as in HF
    char lp[PARAM_NAME_MAX];
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(lp, sizeof lp, "%slayers.%d.", c->prefix, l);
        transformer_layer_add_params(&w->tf, t, lp, l);
    }
    add_tensor(t, c->prefix, "layer_norm.weight", 1, D, 0, 0);
    add_tensor(t, c->prefix, "layer_norm.bias", 1, D, 0, 0);
}

Whisper* whisper_create(const WhisperConfig* c, Backend* be, Error* e) {
    if (whisper_config_check(c, e) != 0) return NULL;
    Whisper* w = xcalloc(1, sizeof *w);
    w->cfg = *c;
    w->be = be;
    w->tf = layer_config(c);
    param_table_init(&w->table);
    build_table(w);
    w->p.layers = xcalloc((size_t)c->n_layers + 1, sizeof(TransformerLayerParams));
    w->g.layers = xcalloc((size_t)c->n_layers + 1, sizeof(TransformerLayerParams));
    return w;
}

static void point(const Whisper* w, WhisperParams* p, float* base) {
    const WhisperConfig* c = &w->cfg;
    const ParamTable* t = &w->table;
    p->conv1_w = param_view(t, base, "%sconv1.weight", c->prefix);
    p->conv1_b = param_view(t, base, "%sconv1.bias", c->prefix);
    p->conv2_w = param_view(t, base, "%sconv2.weight", c->prefix);
    p->conv2_b = param_view(t, base, "%sconv2.bias", c->prefix);
    p->pos = param_view(t, base, "%sembed_positions.weight", c->prefix);
    char lp[PARAM_NAME_MAX];
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(lp, sizeof lp, "%slayers.%d.", c->prefix, l);
        transformer_layer_point(&w->tf, t, base, lp, &p->layers[l]);
    }
    p->ln_w = param_view(t, base, "%slayer_norm.weight", c->prefix);
    p->ln_b = param_view(t, base, "%slayer_norm.bias", c->prefix);
}

void whisper_bind(Whisper* w, float* params, float* grads) {
    w->params = params;
    w->grads = grads;
    point(w, &w->p, params);
    point(w, &w->g, grads);
    w->g.pos = NULL;   // frozen
}

// Whisper's positional table: row t = [sin(t * inv_i) | cos(t * inv_i)], inv_i = 10000^(-i / (D/2 - 1)).
static void sinusoids(float* pos, int n_pos, int D) {
    const int half = D / 2;
    const double inc = log(10000.0) / (half - 1);
    for (int t = 0; t < n_pos; t++)
        for (int i = 0; i < half; i++) {
            double a = t * exp(-inc * i);
            pos[(size_t)t * D + i] = (float)sin(a);
            pos[(size_t)t * D + half + i] = (float)cos(a);
        }
}

void whisper_init_random(Whisper* w, uint64_t seed) {
    const WhisperConfig* c = &w->cfg;
    const size_t D = (size_t)c->dim, M = (size_t)c->n_mels;
    Rng r;
    rng_seed(&r, seed);
    tf_fill_normal(w->p.conv1_w, D * M * CONV_K, 1.0f / sqrtf((float)(M * CONV_K)), &r);
    tf_fill(w->p.conv1_b, D, 0.0f);
    tf_fill_normal(w->p.conv2_w, D * D * CONV_K, 1.0f / sqrtf((float)(D * CONV_K)), &r);
    tf_fill(w->p.conv2_b, D, 0.0f);
    sinusoids(w->p.pos, c->max_positions, c->dim);
    for (int l = 0; l < c->n_layers; l++) transformer_layer_init_random(&w->tf, &w->p.layers[l], &r);
    tf_fill(w->p.ln_w, D, 1.0f);
    tf_fill(w->p.ln_b, D, 0.0f);
}

int whisper_load(Whisper* w, const TensorSet* set, const char* file, Error* e) {
    if (!w->params) fatal("internal: whisper_load before whisper_bind");
    const char* want = w->cfg.prefix;
    char found[WHISPER_PREFIX_MAX];
    if (!has_tensor(set, want, strlen(want), "conv1.weight") &&
        whisper_detect_prefix(set, found, sizeof found) == 0)
        return errorf(e, "%s: no tensor '%sconv1.weight': this checkpoint holds the Whisper encoder under the prefix "
                      "'%s': configure that prefix", file, want, found);
    return param_table_load(&w->table, w->params, set, "", 0, file, e);
}

void whisper_free(Whisper* w) {
    if (!w) return;
    param_table_free(&w->table);
    free(w->p.layers);
    free(w->g.layers);
    free(w);
}

// ---------------------------------------------------------------------------------------------------- activations

static void layout_acts(const Whisper* w, WhisperActs* a, FloatArena* ar) {
    const size_t B = (size_t)a->B, Tin = (size_t)a->n_frames, T = (size_t)a->n_out;
    const size_t D = (size_t)w->cfg.dim, M = (size_t)w->cfg.n_mels;
    a->cols1 = arena_take(ar, B * Tin * M * CONV_K);
    a->h1 = arena_take(ar, B * Tin * D);
    a->g1 = arena_take(ar, B * Tin * D);
    a->cols2 = arena_take(ar, B * T * D * CONV_K);
    a->h2 = arena_take(ar, B * T * D);
    transformer_stack_layout(&w->tf, &a->stack, ar);
    a->ln_mean = arena_take(ar, B * T);
    a->ln_rstd = arena_take(ar, B * T);
    a->out = arena_take(ar, B * T * D);
    if (!a->with_backward) return;
    a->dres = arena_take(ar, B * T * D);
    a->dh2 = arena_take(ar, B * T * D);
    a->dcols2 = arena_take(ar, B * T * D * CONV_K);
    a->dg1 = arena_take(ar, B * Tin * D);
    a->dh1 = arena_take(ar, B * Tin * D);
    a->dcols1 = arena_take(ar, B * Tin * M * CONV_K);
}

WhisperActs* whisper_acts_create(const Whisper* w, int B, int n_in, int with_backward) {
    Error e;
    if (whisper_check_frames(&w->cfg, n_in, &e) != 0) fatal("internal: %s", e.msg);
    WhisperActs* a = xcalloc(1, sizeof *a);
    a->B = B;
    a->n_frames = n_in;
    a->n_out = whisper_out_tokens(&w->cfg, n_in);
    a->with_backward = with_backward;
    a->real_frames = xcalloc((size_t)B, sizeof(int));
    a->n_valid = xcalloc((size_t)B, sizeof(int));
    for (int b = 0; b < B; b++) a->real_frames[b] = n_in;
    transformer_stack_init(&a->stack, B, a->n_out, w->cfg.n_layers, with_backward);
    FloatArena count = {NULL, 0};
    layout_acts(w, a, &count);
    a->n_floats = count.used;
    a->memory = w->be->alloc(w->be, a->n_floats * sizeof(float));
    FloatArena ar = {a->memory, 0};
    layout_acts(w, a, &ar);
    return a;
}

void whisper_acts_free(const Whisper* w, WhisperActs* a) {
    if (!a) return;
    w->be->free(w->be, a->memory);
    transformer_stack_free(&a->stack);
    free(a->real_frames);
    free(a->n_valid);
    free(a);
}

// ---------------------------------------------------------------------------------------------------- forward

// The stack input (B, T', D) = GELU(conv2(GELU(conv1(mel)))) + embed_positions[0, T').
static void embed_forward(Whisper* w, WhisperActs* a, const float* mel) {
    Backend* be = w->be;
    const int B = a->B, Tin = a->n_frames, T = a->n_out, D = w->cfg.dim, M = w->cfg.n_mels;
    be->k.im2col1d(be, a->cols1, mel, B, Tin, M, Tin, CONV_K, 1, 1, 1);                 // (B, Tin, M * 3)
    dense_forward(be, a->h1, a->cols1, w->p.conv1_w, w->p.conv1_b, B * Tin, M * CONV_K, D, 0.0f);
    be->k.gelu_forward(be, a->g1, a->h1, (size_t)B * Tin * D, GELU_ERF);
    be->k.im2col1d(be, a->cols2, a->g1, B, Tin, D, T, CONV_K, 2, 1, 1);                  // (B, T, D * 3)
    dense_forward(be, a->h2, a->cols2, w->p.conv2_w, w->p.conv2_b, B * T, D * CONV_K, D, 0.0f);
    float* x = transformer_stack_input(&a->stack);
    be->k.gelu_forward(be, x, a->h2, (size_t)B * T * D, GELU_ERF);
    be->k.bias_add(be, x, w->p.pos, B, T * D);
}

void whisper_forward(Whisper* w, WhisperActs* a, const float* mel) {
    Backend* be = w->be;
    const int B = a->B, T = a->n_out, D = w->cfg.dim;
    embed_forward(w, a, mel);
    a->last = transformer_stack_forward(be, &w->tf, w->p.layers, &a->stack);
    be->k.layernorm_forward(be, a->out, a->ln_mean, a->ln_rstd, a->last, w->p.ln_w, w->p.ln_b, B * T, D,
                            w->cfg.ln_eps);
    for (int b = 0; b < B; b++) {   // truncation (pad30): the rows past the real length are not output
        int nv = whisper_valid_tokens(&w->cfg, a->n_frames, a->real_frames[b]);
        a->n_valid[b] = nv;
        if (nv < T) be->k.zero(be, a->out + ((size_t)b * T + nv) * D, (size_t)(T - nv) * D);
    }
}

// ---------------------------------------------------------------------------------------------------- backward

// From dres = dL/d(stack input) down to the convolutions' weights and, if dmel, the input.
static void embed_backward(Whisper* w, WhisperActs* a, float* dmel) {
    Backend* be = w->be;
    const int B = a->B, Tin = a->n_frames, T = a->n_out, D = w->cfg.dim, M = w->cfg.n_mels;
    const size_t BTD = (size_t)B * T * D, BTinD = (size_t)B * Tin * D;
    be->k.gelu_backward(be, a->dh2, a->dres, a->h2, BTD, GELU_ERF);
    dense_backward(be, a->dcols2, w->g.conv2_w, w->g.conv2_b, a->dh2, a->cols2, w->p.conv2_w, B * T, D * CONV_K,
                       D, 0.0f);
    be->k.zero(be, a->dg1, BTinD);
    be->k.col2im1d(be, a->dg1, a->dcols2, B, Tin, D, T, CONV_K, 2, 1, 1);
    be->k.gelu_backward(be, a->dh1, a->dg1, a->h1, BTinD, GELU_ERF);
    dense_backward(be, dmel ? a->dcols1 : NULL, w->g.conv1_w, w->g.conv1_b, a->dh1, a->cols1, w->p.conv1_w,
                       B * Tin, M * CONV_K, D, 0.0f);
    if (!dmel) return;
    be->k.zero(be, dmel, (size_t)B * Tin * M);
    be->k.col2im1d(be, dmel, a->dcols1, B, Tin, M, Tin, CONV_K, 1, 1, 1);
}

void whisper_backward(Whisper* w, WhisperActs* a, const float* dout, float* dmel) {
    if (!a->with_backward) fatal("internal: whisper_backward on activations created without backward");
    if (!w->grads && !dmel) return;   // frozen and no input gradient wanted: nothing to compute
    Backend* be = w->be;
    const int B = a->B, T = a->n_out, D = w->cfg.dim;
    be->k.zero(be, a->dres, (size_t)B * T * D);
    for (int b = 0; b < B; b++) {   // final layer_norm on the kept rows only
        size_t row = (size_t)b * T;
        be->k.layernorm_backward(be, a->dres + row * D, w->g.ln_w, w->g.ln_b, dout + row * D, a->last + row * D,
                                 w->p.ln_w, a->ln_mean + row, a->ln_rstd + row, a->n_valid[b], D);
    }
    transformer_stack_backward(be, &w->tf, w->p.layers, w->grads ? w->g.layers : NULL, &a->stack, a->dres);
    embed_backward(w, a, dmel);
}

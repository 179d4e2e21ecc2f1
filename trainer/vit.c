// vit.c — the SigLIP and CLIP vision towers (vit.h).
#include "trainer/vit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/rng.h"

static const char PATCH_SUFFIX[] = "embeddings.patch_embedding.weight";

// ---------------------------------------------------------------------------------------------------- config

static void config_common(ViTConfig* c) {
    memset(c, 0, sizeof *c);
    c->channels = 3;
    c->hidden_layer = -1;
    c->keep_cls = 1;
    snprintf(c->prefix, sizeof c->prefix, "vision_model.");
}

void vit_config_siglip2_base_384(ViTConfig* c) {
    config_common(c);
    c->kind = VIT_SIGLIP;
    c->image_size = 384;
    c->patch_size = 16;
    c->dim = 768;
    c->n_layers = 12;
    c->n_heads = 12;
    c->mlp_dim = 3072;
    c->ln_eps = 1e-6f;
}

void vit_config_clip_large_336(ViTConfig* c) {
    config_common(c);
    c->kind = VIT_CLIP;
    c->image_size = 336;
    c->patch_size = 14;
    c->dim = 1024;
    c->n_layers = 24;
    c->n_heads = 16;
    c->mlp_dim = 4096;
    c->ln_eps = 1e-5f;
}

int vit_config_check(const ViTConfig* c, Error* e) {
    if (c->kind != VIT_SIGLIP && c->kind != VIT_CLIP)
        return errorf(e, "vit: unknown kind %d (0 SigLIP, 1 CLIP)", c->kind);
    if (c->image_size <= 0 || c->patch_size <= 0 || c->image_size % c->patch_size != 0)
        return errorf(e, "vit: image size %d must be a positive multiple of the patch size %d", c->image_size,
                      c->patch_size);
    if (c->channels <= 0) return errorf(e, "vit: channels %d must be positive", c->channels);
    if (c->n_layers < 0) return errorf(e, "vit: n_layers %d must not be negative", c->n_layers);
    if (c->hidden_layer < -(c->n_layers + 1) || c->hidden_layer > c->n_layers)
        return errorf(e, "vit: hidden layer %d is outside [-%d, %d] (-1 = last_hidden_state)", c->hidden_layer,
                      c->n_layers + 1, c->n_layers);
    if (memchr(c->prefix, '\0', sizeof c->prefix) == NULL) return errorf(e, "vit: the name prefix is too long");
    TransformerConfig tf = {.dim = c->dim, .n_heads = c->n_heads, .mlp_dim = c->mlp_dim, .ln_eps = c->ln_eps,
                            .gelu_mode = GELU_TANH, .names = TF_NAMES_VIT, .tp = c->tp};
    Error sub;
    if (transformer_config_check(&tf, &sub) != 0) return errorf(e, "vit: %s", sub.msg);
    return 0;
}

static int n_patches(const ViTConfig* c) {
    int g = c->image_size / c->patch_size;
    return g * g;
}

static int n_layers_run(const ViTConfig* c) {
    if (c->hidden_layer == -1) return c->n_layers;
    return c->hidden_layer >= 0 ? c->hidden_layer : c->n_layers + 1 + c->hidden_layer;
}

int vit_out_tokens(const ViTConfig* c, int n_in) {
    return n_patches(c) + (c->kind == VIT_CLIP && c->keep_cls ? 1 : 0);
}

int vit_out_dim(const ViTConfig* c) { return c->dim; }

int vit_detect_prefix(const TensorSet* set, char* prefix, size_t len) {
    const size_t slen = strlen(PATCH_SUFFIX);
    int found = 0;
    for (int i = 0; i < set->n; i++) {
        const char* name = set->t[i].name;
        size_t n = strlen(name);
        if (n < slen || strcmp(name + n - slen, PATCH_SUFFIX) != 0 || n - slen >= len) continue;
        if (found && (strncmp(prefix, name, n - slen) != 0 || prefix[n - slen] != '\0')) return -1;
        memcpy(prefix, name, n - slen);
        prefix[n - slen] = '\0';
        found = 1;
    }
    return found ? 0 : -1;
}

// ---------------------------------------------------------------------------------------------------- parameters

static void add_tensor(ParamTable* t, const char* prefix, const char* name, int ndim, int64_t d0, int64_t d1,
                       int64_t d2, int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    param_table_add(t, ndim, shape, "%s%s", prefix, name);
}

static void build_table(ViT* v) {
    const ViTConfig* c = &v->cfg;
    const int64_t D = c->dim, P = c->patch_size;
    ParamTable* t = &v->table;
    if (c->kind == VIT_CLIP) add_tensor(t, c->prefix, "embeddings.class_embedding", 1, D, 0, 0, 0);
    add_tensor(t, c->prefix, "embeddings.patch_embedding.weight", 4, D, c->channels, P, P);
    if (c->kind == VIT_SIGLIP) add_tensor(t, c->prefix, "embeddings.patch_embedding.bias", 1, D, 0, 0, 0);
    add_tensor(t, c->prefix, "embeddings.position_embedding.weight", 2, v->n_tokens, D, 0, 0);
    if (c->kind == VIT_CLIP) {
        add_tensor(t, c->prefix, "pre_layrnorm.weight", 1, D, 0, 0, 0);
        add_tensor(t, c->prefix, "pre_layrnorm.bias", 1, D, 0, 0, 0);
    }
    char lp[PARAM_NAME_MAX];
    for (int l = 0; l < v->n_run; l++) {
        snprintf(lp, sizeof lp, "%sencoder.layers.%d.", c->prefix, l);
        transformer_layer_add_params(&v->tf, t, lp, l);
    }
    if (c->kind == VIT_SIGLIP && c->hidden_layer == -1) {
        add_tensor(t, c->prefix, "post_layernorm.weight", 1, D, 0, 0, 0);
        add_tensor(t, c->prefix, "post_layernorm.bias", 1, D, 0, 0, 0);
    }
}

ViT* vit_create(const ViTConfig* c, Backend* be, Error* e) {
    if (vit_config_check(c, e) != 0) return NULL;
    ViT* v = xcalloc(1, sizeof *v);
    v->cfg = *c;
    v->be = be;
    v->tf = (TransformerConfig){.dim = c->dim, .n_heads = c->n_heads, .mlp_dim = c->mlp_dim, .ln_eps = c->ln_eps,
                                .gelu_mode = c->kind == VIT_SIGLIP ? GELU_TANH : GELU_QUICK, .names = TF_NAMES_VIT,
                                .proj_bias = {1, 1, 1, 1}, .tp = c->tp};
    v->n_run = n_layers_run(c);
    v->n_tokens = n_patches(c) + (c->kind == VIT_CLIP ? 1 : 0);
    param_table_init(&v->table);
    build_table(v);
    v->p.layers = xcalloc((size_t)v->n_run + 1, sizeof(TransformerLayerParams));
    v->g.layers = xcalloc((size_t)v->n_run + 1, sizeof(TransformerLayerParams));
    return v;
}

static float* view_if(const ViT* v, float* base, int present, const char* name) {
    return present ? param_view(&v->table, base, "%s%s", v->cfg.prefix, name) : NULL;
}

static void point(const ViT* v, ViTParams* p, float* base) {
    const ViTConfig* c = &v->cfg;
    int clip = c->kind == VIT_CLIP, post = c->kind == VIT_SIGLIP && c->hidden_layer == -1;
    p->class_emb = view_if(v, base, clip, "embeddings.class_embedding");
    p->patch_w = view_if(v, base, 1, "embeddings.patch_embedding.weight");
    p->patch_b = view_if(v, base, !clip, "embeddings.patch_embedding.bias");
    p->pos = view_if(v, base, 1, "embeddings.position_embedding.weight");
    p->pre_ln_w = view_if(v, base, clip, "pre_layrnorm.weight");
    p->pre_ln_b = view_if(v, base, clip, "pre_layrnorm.bias");
    p->post_ln_w = view_if(v, base, post, "post_layernorm.weight");
    p->post_ln_b = view_if(v, base, post, "post_layernorm.bias");
    char lp[PARAM_NAME_MAX];
    for (int l = 0; l < v->n_run; l++) {
        snprintf(lp, sizeof lp, "%sencoder.layers.%d.", c->prefix, l);
        transformer_layer_point(&v->tf, &v->table, base, lp, &p->layers[l]);
    }
}

void vit_bind(ViT* v, float* params, float* grads) {
    v->params = params;
    v->grads = grads;
    point(v, &v->p, params);
    point(v, &v->g, grads);
}

void vit_init_random(ViT* v, uint64_t seed) {
    const ViTConfig* c = &v->cfg;
    const size_t D = (size_t)c->dim, width = (size_t)c->channels * c->patch_size * c->patch_size;
    Rng r;
    rng_seed(&r, seed);
    if (v->p.class_emb) tf_fill_normal(v->p.class_emb, D, 1.0f / sqrtf((float)D), &r);
    tf_fill_normal(v->p.patch_w, D * width, 1.0f / sqrtf((float)width), &r);
    if (v->p.patch_b) tf_fill(v->p.patch_b, D, 0.0f);
    tf_fill_normal(v->p.pos, (size_t)v->n_tokens * D, 0.02f, &r);
    if (v->p.pre_ln_w) tf_fill(v->p.pre_ln_w, D, 1.0f);
    if (v->p.pre_ln_b) tf_fill(v->p.pre_ln_b, D, 0.0f);
    for (int l = 0; l < v->n_run; l++) transformer_layer_init_random(&v->tf, &v->p.layers[l], &r);
    if (v->p.post_ln_w) tf_fill(v->p.post_ln_w, D, 1.0f);
    if (v->p.post_ln_b) tf_fill(v->p.post_ln_b, D, 0.0f);
}

int vit_load(ViT* v, const TensorSet* set, const char* file, Error* e) {
    if (!v->params) fatal("internal: vit_load before vit_bind");
    return param_table_load(&v->table, v->params, set, "", 0, file, e);
}

void vit_free(ViT* v) {
    if (!v) return;
    param_table_free(&v->table);
    free(v->p.layers);
    free(v->g.layers);
    free(v);
}

// ---------------------------------------------------------------------------------------------------- activations

static void layout_acts(const ViT* v, ViTActs* a, FloatArena* ar) {
    const ViTConfig* c = &v->cfg;
    const int clip = c->kind == VIT_CLIP, post = !clip && c->hidden_layer == -1;
    const size_t B = (size_t)a->B, Np = (size_t)n_patches(c), T = (size_t)v->n_tokens, D = (size_t)c->dim;
    const size_t W = (size_t)c->channels * c->patch_size * c->patch_size;
    a->patches = arena_take(ar, B * Np * W);
    a->emb = clip ? arena_take(ar, B * Np * D) : NULL;
    a->x0 = clip ? arena_take(ar, B * T * D) : NULL;
    a->pre_mean = clip ? arena_take(ar, B * T) : NULL;
    a->pre_rstd = clip ? arena_take(ar, B * T) : NULL;
    transformer_stack_layout(&v->tf, &a->stack, ar);
    a->post_mean = post ? arena_take(ar, B * T) : NULL;
    a->post_rstd = post ? arena_take(ar, B * T) : NULL;
    a->out = arena_take(ar, B * (size_t)vit_out_tokens(c, 0) * D);
    a->dres = a->with_backward ? arena_take(ar, B * T * D) : NULL;
    a->dx0 = a->with_backward && clip ? arena_take(ar, B * T * D) : NULL;
    a->dpatches = a->with_backward ? arena_take(ar, B * Np * W) : NULL;
}

ViTActs* vit_acts_create(const ViT* v, int B, int n_in, int with_backward) {
    ViTActs* a = xcalloc(1, sizeof *a);
    a->B = B;
    a->with_backward = with_backward;
    transformer_stack_init(&a->stack, B, v->n_tokens, v->n_run, with_backward);
    FloatArena count = {NULL, 0};
    layout_acts(v, a, &count);
    a->n_floats = count.used;
    a->memory = v->be->alloc(v->be, a->n_floats * sizeof(float));
    FloatArena ar = {a->memory, 0};
    layout_acts(v, a, &ar);
    return a;
}

void vit_acts_free(const ViT* v, ViTActs* a) {
    if (!a) return;
    v->be->free(v->be, a->memory);
    transformer_stack_free(&a->stack);
    free(a);
}

// ---------------------------------------------------------------------------------------------------- forward

// CLIP: a->x0 (B, T, D) = [class_embedding, patch embeddings] + positions.
static void clip_embed(ViT* v, ViTActs* a) {
    Backend* be = v->be;
    const int B = a->B, Np = n_patches(&v->cfg), T = v->n_tokens, D = v->cfg.dim;
    const int W = v->cfg.channels * v->cfg.patch_size * v->cfg.patch_size;
    dense_forward(be, a->emb, a->patches, v->p.patch_w, NULL, B * Np, W, D, 0.0f);   // (B * Np, D)
    for (int b = 0; b < B; b++) {
        float* row = a->x0 + (size_t)b * T * D;
        be->k.copy(be, row, v->p.class_emb, (size_t)D);
        be->k.copy(be, row + D, a->emb + (size_t)b * Np * D, (size_t)Np * D);
    }
    be->k.bias_add(be, a->x0, v->p.pos, B, T * D);
}

// a->out from the last residual a->last (B, T, D).
static void output_forward(ViT* v, ViTActs* a) {
    Backend* be = v->be;
    const ViTConfig* c = &v->cfg;
    const int B = a->B, Np = n_patches(c), T = v->n_tokens, D = c->dim;
    if (v->p.post_ln_w) {
        be->k.layernorm_forward(be, a->out, a->post_mean, a->post_rstd, a->last, v->p.post_ln_w, v->p.post_ln_b,
                                B * T, D, c->ln_eps);
    } else if (c->kind == VIT_CLIP && !c->keep_cls) {
        for (int b = 0; b < B; b++)
            be->k.copy(be, a->out + (size_t)b * Np * D, a->last + ((size_t)b * T + 1) * D, (size_t)Np * D);
    } else {
        be->k.copy(be, a->out, a->last, (size_t)B * T * D);
    }
}

void vit_forward(ViT* v, ViTActs* a, const float* pixels) {
    Backend* be = v->be;
    const ViTConfig* c = &v->cfg;
    const int B = a->B, Np = n_patches(c), T = v->n_tokens, D = c->dim;
    const int W = c->channels * c->patch_size * c->patch_size;
    be->k.patchify(be, a->patches, pixels, B, c->channels, c->image_size, c->patch_size);   // (B, Np, W)
    float* x = transformer_stack_input(&a->stack);                                         // (B, T, D)
    if (c->kind == VIT_SIGLIP) {
        dense_forward(be, x, a->patches, v->p.patch_w, v->p.patch_b, B * Np, W, D, 0.0f);
        be->k.bias_add(be, x, v->p.pos, B, T * D);
    } else {
        clip_embed(v, a);
        be->k.layernorm_forward(be, x, a->pre_mean, a->pre_rstd, a->x0, v->p.pre_ln_w, v->p.pre_ln_b, B * T, D,
                                c->ln_eps);
    }
    a->last = transformer_stack_forward(be, &v->tf, v->p.layers, &a->stack);
    output_forward(v, a);
}

// ---------------------------------------------------------------------------------------------------- backward

// a->dres (B, T, D) = dL/d(last residual) from dout.
static void output_backward(ViT* v, ViTActs* a, const float* dout) {
    Backend* be = v->be;
    const ViTConfig* c = &v->cfg;
    const int B = a->B, Np = n_patches(c), T = v->n_tokens, D = c->dim;
    const size_t BTD = (size_t)B * T * D;
    if (v->p.post_ln_w) {
        be->k.zero(be, a->dres, BTD);
        be->k.layernorm_backward(be, a->dres, v->g.post_ln_w, v->g.post_ln_b, dout, a->last, v->p.post_ln_w,
                                 a->post_mean, a->post_rstd, B * T, D);
    } else if (c->kind == VIT_CLIP && !c->keep_cls) {
        be->k.zero(be, a->dres, BTD);
        for (int b = 0; b < B; b++)
            be->k.copy(be, a->dres + ((size_t)b * T + 1) * D, dout + (size_t)b * Np * D, (size_t)Np * D);
    } else {
        be->k.copy(be, a->dres, dout, BTD);
    }
}

// CLIP: from dres = dL/d(pre_layrnorm output) to the patch-embedding gradient (B * Np, D), returned (a->emb
// reused); class and position gradients accumulated.
static float* clip_embed_backward(ViT* v, ViTActs* a) {
    Backend* be = v->be;
    const ViTConfig* c = &v->cfg;
    const int B = a->B, Np = n_patches(c), T = v->n_tokens, D = c->dim;
    be->k.zero(be, a->dx0, (size_t)B * T * D);
    be->k.layernorm_backward(be, a->dx0, v->g.pre_ln_w, v->g.pre_ln_b, a->dres, a->x0, v->p.pre_ln_w, a->pre_mean,
                             a->pre_rstd, B * T, D);
    if (v->g.pos) be->k.bias_backward(be, v->g.pos, a->dx0, B, T * D);
    for (int b = 0; b < B; b++) {
        const float* row = a->dx0 + (size_t)b * T * D;
        if (v->g.class_emb) be->k.axpy(be, v->g.class_emb, 1.0f, row, (size_t)D);
        be->k.copy(be, a->emb + (size_t)b * Np * D, row + D, (size_t)Np * D);
    }
    return a->emb;
}

// dpixels (B, channels, S, S) = the inverse permutation of patchify applied to dpatches. Host-side: the kernel
// table has no unpatchify op yet (a CUDA backend needs one before pixel gradients are asked for there).
static void unpatchify(const ViTConfig* c, float* dpixels, const float* dpatches, int B) {
    const int C = c->channels, S = c->image_size, P = c->patch_size, G = S / P;
    const size_t W = (size_t)C * P * P;
    for (int b = 0; b < B; b++)
        for (int py = 0; py < G; py++)
            for (int px = 0; px < G; px++) {
                const float* src = dpatches + ((size_t)b * G * G + (size_t)py * G + px) * W;
                for (int ch = 0; ch < C; ch++)
                    for (int ky = 0; ky < P; ky++) {
                        float* dst = dpixels + (((size_t)b * C + ch) * S + (size_t)py * P + ky) * S + (size_t)px * P;
                        memcpy(dst, src + ((size_t)ch * P + ky) * P, (size_t)P * sizeof(float));
                    }
            }
}

void vit_backward(ViT* v, ViTActs* a, const float* dout, float* dpixels) {
    if (!a->with_backward) fatal("internal: vit_backward on activations created without backward");
    if (!v->grads && !dpixels) return;   // frozen and no input gradient wanted: nothing to compute
    Backend* be = v->be;
    const ViTConfig* c = &v->cfg;
    const int B = a->B, Np = n_patches(c), T = v->n_tokens, D = c->dim;
    const int W = c->channels * c->patch_size * c->patch_size;
    output_backward(v, a, dout);
    transformer_stack_backward(be, &v->tf, v->p.layers, v->grads ? v->g.layers : NULL, &a->stack, a->dres);
    float* demb = a->dres;   // SigLIP: dL/d(embeddings) = dL/d(patch embeddings) row for row
    if (c->kind == VIT_CLIP) {
        demb = clip_embed_backward(v, a);
    } else if (v->g.pos) {
        be->k.bias_backward(be, v->g.pos, a->dres, B, T * D);
    }
    dense_backward(be, dpixels ? a->dpatches : NULL, v->g.patch_w, v->g.patch_b, demb, a->patches, v->p.patch_w,
                       B * Np, W, D, 0.0f);
    if (dpixels) unpatchify(c, dpixels, a->dpatches, B);
}

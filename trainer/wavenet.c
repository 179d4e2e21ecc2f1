// wavenet.c — the WaveNet-style time-series encoder (wavenet.h).
#include "trainer/wavenet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/dense.h"
#include "trainer/rng.h"

static int dilation_of(const WaveNetConfig* c, int l) { return 1 << (l % c->dilation_cycle); }

// ---------------------------------------------------------------------------------------------- config
int wavenet_config_check(const WaveNetConfig* c, Error* e) {
    if (c->in_channels < 1 || c->residual < 1 || c->skip < 1 || c->out_dim < 1 || c->n_layers < 1)
        return errorf(e, "wavenet: in_channels %d, residual %d, skip %d, out_dim %d and n_layers %d must all be >= 1",
                      c->in_channels, c->residual, c->skip, c->out_dim, c->n_layers);
    if (c->dilation_cycle < 1 || c->dilation_cycle > WAVENET_MAX_CYCLE)
        return errorf(e, "wavenet: dilation_cycle %d must be in 1..%d (layer l dilates by 2^(l mod cycle))",
                      c->dilation_cycle, WAVENET_MAX_CYCLE);
    if (c->patch < 1) return errorf(e, "wavenet: patch %d must be >= 1 (time steps per output token)", c->patch);
    return 0;
}

int wavenet_receptive_field(const WaveNetConfig* c) {
    int rf = 1;
    for (int l = 0; l < c->n_layers; l++) rf += dilation_of(c, l) * (WAVENET_KERNEL - 1);
    return rf;
}

int wavenet_out_tokens(const WaveNetConfig* c, int n_in) { return n_in / c->patch; }
int wavenet_out_dim(const WaveNetConfig* c) { return c->out_dim; }

int wavenet_check_input(const WaveNetConfig* c, int n_in, Error* e) {
    if (n_in < c->patch)
        return errorf(e, "wavenet: a series of %d steps is shorter than one patch of %d steps: use a longer "
                         "lookback or a smaller patch", n_in, c->patch);
    return 0;
}

// ---------------------------------------------------------------------------------------------- parameters
static void add_conv(ParamTable* t, int layer, int out, int in, int k, const char* name) {
    int64_t ws[3] = {out, in, k}, bs[1] = {out};
    param_table_add(t, 3, ws, "ts_encoder.%s.weight", name)->layer = layer;
    param_table_add(t, 1, bs, "ts_encoder.%s.bias", name)->layer = layer;
}

static void build_table(WaveNet* w) {
    const WaveNetConfig* c = &w->cfg;
    char name[64];
    param_table_init(&w->table);
    add_conv(&w->table, -1, c->residual, c->in_channels, 1, "input");
    for (int l = 0; l < c->n_layers; l++) {
        snprintf(name, sizeof name, "layers.%d.dilated", l);
        add_conv(&w->table, l, 2 * c->residual, c->residual, WAVENET_KERNEL, name);
        snprintf(name, sizeof name, "layers.%d.res", l);
        add_conv(&w->table, l, c->residual, c->residual, 1, name);
        snprintf(name, sizeof name, "layers.%d.skip", l);
        add_conv(&w->table, l, c->skip, c->residual, 1, name);
    }
    add_conv(&w->table, -1, c->out_dim, c->skip, 1, "output");
    int last = c->n_layers - 1;   // its residual conv feeds nothing
    for (int i = 0; i < w->table.n; i++) {
        TensorSpec* s = &w->table.specs[i];
        snprintf(name, sizeof name, "ts_encoder.layers.%d.res.", last);
        if (strncmp(s->name, name, strlen(name)) == 0) s->unused = 1;
    }
}

static void point(const WaveNet* w, WaveNetParams* p, float* base) {
    const ParamTable* t = &w->table;
    p->in_w = param_view(t, base, "ts_encoder.input.weight");
    p->in_b = param_view(t, base, "ts_encoder.input.bias");
    for (int l = 0; l < w->cfg.n_layers; l++) {
        WaveNetLayer* L = &p->layers[l];
        L->dil_w = param_view(t, base, "ts_encoder.layers.%d.dilated.weight", l);
        L->dil_b = param_view(t, base, "ts_encoder.layers.%d.dilated.bias", l);
        L->res_w = param_view(t, base, "ts_encoder.layers.%d.res.weight", l);
        L->res_b = param_view(t, base, "ts_encoder.layers.%d.res.bias", l);
        L->skip_w = param_view(t, base, "ts_encoder.layers.%d.skip.weight", l);
        L->skip_b = param_view(t, base, "ts_encoder.layers.%d.skip.bias", l);
    }
    p->out_w = param_view(t, base, "ts_encoder.output.weight");
    p->out_b = param_view(t, base, "ts_encoder.output.bias");
}

WaveNet* wavenet_create(const WaveNetConfig* c, Backend* be, Error* e) {
    if (wavenet_config_check(c, e) != 0) return NULL;
    WaveNet* w = xcalloc(1, sizeof *w);
    w->cfg = *c;
    w->be = be;
    build_table(w);
    w->p.layers = xcalloc((size_t)c->n_layers, sizeof(WaveNetLayer));
    w->g.layers = xcalloc((size_t)c->n_layers, sizeof(WaveNetLayer));
    return w;
}

void wavenet_free(WaveNet* w) {
    if (!w) return;
    param_table_free(&w->table);
    free(w->p.layers);
    free(w->g.layers);
    free(w);
}

void wavenet_bind(WaveNet* w, float* params, float* grads) {
    w->params_base = params;
    w->grads_base = grads;
    point(w, &w->p, params);
    point(w, &w->g, grads);   // all NULL when frozen
}

void wavenet_init_random(WaveNet* w, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < w->table.n; i++) {
        const TensorSpec* s = &w->table.specs[i];
        // weight (out, in, k): fan_in = in * k; the bias shares its weight's bound (the previous spec)
        const TensorSpec* wspec = s->ndim == 3 ? s : &w->table.specs[i - 1];
        double bound = 1.0 / sqrt((double)(wspec->shape[1] * wspec->shape[2]));
        float* v = w->params_base + s->offset;
        for (size_t j = 0; j < s->numel; j++) v[j] = (float)((2.0 * rng_uniform(&rng) - 1.0) * bound);
    }
}

int wavenet_load(WaveNet* w, const TensorSet* set, const char* file, Error* e) {
    return param_table_load(&w->table, w->params_base, set, "", 0, file, e);
}

// ---------------------------------------------------------------------------------------------- activations
// Hands out n floats of the arena at base (base NULL: only counts, returns NULL).
static float* carve(float* base, size_t* used, size_t n) {
    float* p = base ? base + *used : NULL;
    *used += n;
    return p;
}

// Carves the arena at base into a's views (base NULL: views NULL); returns the floats it needs.
static size_t layout_acts(const WaveNetConfig* c, WaveNetActs* a, float* base) {
    size_t BT = (size_t)a->B * a->T, R = (size_t)c->residual, S = (size_t)c->skip, D = (size_t)c->out_dim;
    size_t used = 0;
    int per_layer = a->with_backward;   // inference reuses two h buffers and one set of gate buffers
    a->input = per_layer ? carve(base, &used, BT * c->in_channels) : NULL;
    float* ping[2] = {carve(base, &used, BT * R), carve(base, &used, BT * R)};
    float *ta0 = NULL, *sb0 = NULL, *g0 = NULL;
    if (!per_layer) {
        ta0 = carve(base, &used, BT * R);
        sb0 = carve(base, &used, BT * R);
        g0 = carve(base, &used, BT * R);
    }
    for (int l = 0; l < c->n_layers; l++) {
        a->h[l] = per_layer ? (l < 2 ? ping[l] : carve(base, &used, BT * R)) : ping[l % 2];
        a->ta[l] = per_layer ? carve(base, &used, BT * R) : ta0;
        a->sb[l] = per_layer ? carve(base, &used, BT * R) : sb0;
        a->g[l] = per_layer ? carve(base, &used, BT * R) : g0;
    }
    a->cols = carve(base, &used, BT * 2 * R);
    a->za = carve(base, &used, BT * R);
    a->zb = carve(base, &used, BT * R);
    a->skip = carve(base, &used, BT * S);
    a->relu = carve(base, &used, BT * S);
    a->y = carve(base, &used, BT * D);
    a->out = carve(base, &used, (size_t)a->B * a->n_out * D);
    if (a->with_backward) {
        a->dh = carve(base, &used, BT * R);
        a->dg = carve(base, &used, BT * R);
        a->dtmp = carve(base, &used, BT * R);
        a->dza = carve(base, &used, BT * R);
        a->dzb = carve(base, &used, BT * R);
        a->dcols = carve(base, &used, BT * 2 * R);
        a->drelu = carve(base, &used, BT * S);
        a->dskip = carve(base, &used, BT * S);
        a->dy = carve(base, &used, BT * D);
    }
    return used;
}

WaveNetActs* wavenet_acts_create(const WaveNet* w, int B, int n_in, int with_backward) {
    const WaveNetConfig* c = &w->cfg;
    if (B < 1 || n_in < c->patch) fatal("internal: wavenet activations for B %d, T %d (patch %d)", B, n_in, c->patch);
    WaveNetActs* a = xcalloc(1, sizeof *a);
    a->B = B;
    a->T = n_in;
    a->n_out = wavenet_out_tokens(c, n_in);
    a->with_backward = with_backward;
    a->h = xcalloc((size_t)c->n_layers, sizeof(float*));
    a->ta = xcalloc((size_t)c->n_layers, sizeof(float*));
    a->sb = xcalloc((size_t)c->n_layers, sizeof(float*));
    a->g = xcalloc((size_t)c->n_layers, sizeof(float*));
    size_t n = layout_acts(c, a, NULL);
    a->memory = w->be->alloc(w->be, n * sizeof(float));
    layout_acts(c, a, a->memory);
    return a;
}

void wavenet_acts_free(const WaveNet* w, WaveNetActs* a) {
    if (!a) return;
    w->be->free(w->be, a->memory);
    free(a->h);
    free(a->ta);
    free(a->sb);
    free(a->g);
    free(a);
}

// ---------------------------------------------------------------------------------------------- forward
// 1x1 convolutions and the output layer are dense layers (trainer/dense.h); beta 1 accumulates.

// Layer l: gated activation of the causal dilated conv of h[l]; skip += ...; h[l+1] = h[l] + res (not last).
static void layer_forward(WaveNet* w, WaveNetActs* a, int l) {
    Backend* be = w->be;
    const WaveNetConfig* c = &w->cfg;
    const WaveNetLayer* P = &w->p.layers[l];
    int R = c->residual, BT = a->B * a->T, d = dilation_of(c, l);
    size_t n = (size_t)BT * R;
    be->k.im2col1d(be, a->cols, a->h[l], a->B, a->T, R, a->T, WAVENET_KERNEL, 1, d, d);  // (BT, 2R)
    // a = cols Wd[:R]^T + bd[:R]; b = cols Wd[R:]^T + bd[R:]   (Wd (2R, R*2) rows of R*2)
    dense_forward(be, a->za, a->cols, P->dil_w, P->dil_b, BT, 2 * R, R, 0.0f);
    dense_forward(be, a->zb, a->cols, P->dil_w + (size_t)R * 2 * R, P->dil_b + R, BT, 2 * R, R, 0.0f);
    be->k.tanh_forward(be, a->ta[l], a->za, n);
    be->k.sigmoid_forward(be, a->sb[l], a->zb, n);
    be->k.mul(be, a->g[l], a->ta[l], a->sb[l], n);                                         // (BT, R)
    dense_forward(be, a->skip, a->g[l], P->skip_w, P->skip_b, BT, R, c->skip, l > 0 ? 1.0f : 0.0f);            // (BT, S)
    if (l + 1 < c->n_layers) {
        be->k.copy(be, a->h[l + 1], a->h[l], n);
        dense_forward(be, a->h[l + 1], a->g[l], P->res_w, P->res_b, BT, R, R, 1.0f);                // (BT, R)
    }
}

void wavenet_forward(WaveNet* w, WaveNetActs* a, const float* input) {
    Backend* be = w->be;
    const WaveNetConfig* c = &w->cfg;
    int BT = a->B * a->T;
    if (a->with_backward) be->k.copy(be, a->input, input, (size_t)BT * c->in_channels);
    dense_forward(be, a->h[0], input, w->p.in_w, w->p.in_b, BT, c->in_channels, c->residual, 0.0f);   // (BT, R)
    for (int l = 0; l < c->n_layers; l++) layer_forward(w, a, l);
    be->k.relu_forward(be, a->relu, a->skip, (size_t)BT * c->skip);
    dense_forward(be, a->y, a->relu, w->p.out_w, w->p.out_b, BT, c->skip, c->out_dim, 0.0f);         // (BT, D)
    be->k.avgpool1d_forward(be, a->out, a->y, a->B, a->T, c->out_dim, c->patch);          // (B, n_out, D)
}

// ---------------------------------------------------------------------------------------------- backward
// a->dh holds dL/dh[l+1] (zero for the last layer) on entry and dL/dh[l] on exit; a->dskip is dL/dskip.
static void layer_backward(WaveNet* w, WaveNetActs* a, int l) {
    Backend* be = w->be;
    const WaveNetConfig* c = &w->cfg;
    const WaveNetLayer* P = &w->p.layers[l];
    const WaveNetLayer* G = &w->g.layers[l];
    int R = c->residual, BT = a->B * a->T, d = dilation_of(c, l);
    size_t n = (size_t)BT * R;
    dense_backward(be, a->dg, G->skip_w, G->skip_b, a->dskip, a->g[l], P->skip_w, BT, R, c->skip, 0.0f);
    if (l + 1 < c->n_layers)
        dense_backward(be, a->dg, G->res_w, G->res_b, a->dh, a->g[l], P->res_w, BT, R, R, 1.0f);
    // g = ta * sb: dza = dg sb (1 - ta^2), dzb = dg ta sb (1 - sb)
    be->k.mul(be, a->dtmp, a->dg, a->sb[l], n);
    be->k.tanh_backward(be, a->dza, a->dtmp, a->ta[l], n);
    be->k.mul(be, a->dtmp, a->dg, a->ta[l], n);
    be->k.sigmoid_backward(be, a->dzb, a->dtmp, a->sb[l], n);
    be->k.im2col1d(be, a->cols, a->h[l], a->B, a->T, R, a->T, WAVENET_KERNEL, 1, d, d);  // recomputed (BT, 2R)
    float* gw_b = G->dil_w ? G->dil_w + (size_t)R * 2 * R : NULL;
    float* gb_b = G->dil_b ? G->dil_b + R : NULL;
    dense_backward(be, a->dcols, G->dil_w, G->dil_b, a->dza, a->cols, P->dil_w, BT, 2 * R, R, 0.0f);
    dense_backward(be, a->dcols, gw_b, gb_b, a->dzb, a->cols, P->dil_w + (size_t)R * 2 * R, BT, 2 * R, R, 1.0f);
    // dh[l] = dh[l+1] (identity path of the residual) + the scatter of dcols
    be->k.col2im1d(be, a->dh, a->dcols, a->B, a->T, R, a->T, WAVENET_KERNEL, 1, d, d);
}

void wavenet_backward(WaveNet* w, WaveNetActs* a, const float* dout, float* dinput) {
    Backend* be = w->be;
    const WaveNetConfig* c = &w->cfg;
    if (!a->with_backward) fatal("internal: wavenet_backward on activations created without backward");
    if (!w->grads_base && !dinput) return;   // frozen and no input gradient wanted
    int BT = a->B * a->T;
    be->k.zero(be, a->dy, (size_t)BT * c->out_dim);
    be->k.avgpool1d_backward(be, a->dy, dout, a->B, a->T, c->out_dim, c->patch);         // (BT, D)
    dense_backward(be, a->drelu, w->g.out_w, w->g.out_b, a->dy, a->relu, w->p.out_w, BT, c->skip, c->out_dim, 0.0f);
    be->k.relu_backward(be, a->dskip, a->drelu, a->relu, (size_t)BT * c->skip);          // (BT, S)
    be->k.zero(be, a->dh, (size_t)BT * c->residual);
    for (int l = c->n_layers - 1; l >= 0; l--) layer_backward(w, a, l);
    dense_backward(be, dinput, w->g.in_w, w->g.in_b, a->dh, a->input, w->p.in_w, BT, c->in_channels, c->residual, 0.0f);
}

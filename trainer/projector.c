// projector.c — the ModRWKV projectors: linear, mlp, conv_mlp, pool_mlp (projector.h).
#include "trainer/projector.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/dense.h"
#include "trainer/rng.h"

static const float LN_EPS = 1e-5f;   // the released adapter's nn.LayerNorm default

static const char* const KIND_NAMES[] = {"linear", "mlp", "conv_mlp", "pool_mlp"};
enum { N_KINDS = 4 };

static int has_mlp(const ProjectorConfig* c) { return c->kind != PROJ_LINEAR; }

// Tensor-parallel ranks of the mlp's hidden layer (1: none, and always for the linear kind).
static int tp_size(const ProjectorConfig* c) { return c->tp && has_mlp(c) ? comm_size(c->tp) : 1; }

static void tp_sum(const ProjectorConfig* c, float* x, size_t n) {
    if (tp_size(c) > 1) comm_all_reduce(c->tp, x, n, COMM_SUM);
}

// ---------------------------------------------------------------------------------------------- config
int projector_kind_parse(const char* name, ProjectorKind* kind, Error* e) {
    for (int i = 0; i < N_KINDS; i++)
        if (name && strcmp(name, KIND_NAMES[i]) == 0) {
            *kind = (ProjectorKind)i;
            return 0;
        }
    return errorf(e, "projector: unknown kind '%s': use linear, mlp, conv_mlp or pool_mlp", name ? name : "(null)");
}

const char* projector_kind_name(ProjectorKind kind) {
    return (int)kind >= 0 && (int)kind < N_KINDS ? KIND_NAMES[kind] : "unknown";
}

int projector_config_check(const ProjectorConfig* c, Error* e) {
    if ((int)c->kind < 0 || (int)c->kind >= N_KINDS)
        return errorf(e, "projector: kind %d is not one of linear, mlp, conv_mlp, pool_mlp", (int)c->kind);
    const char* kn = KIND_NAMES[c->kind];
    if (c->d_enc < 1 || c->n_embd < 1)
        return errorf(e, "projector %s: d_enc %d and n_embd %d must be >= 1", kn, c->d_enc, c->n_embd);
    if (has_mlp(c) && (c->ratio < 1 || (int64_t)c->ratio * c->n_embd > (1 << 24)))
        return errorf(e, "projector %s: ratio %d must be >= 1 with ratio x n_embd <= 16777216 (hidden size; the "
                         "paper uses 2, 4 or 8)", kn, c->ratio);
    if (c->kind == PROJ_CONV_MLP && (c->k < 1 || c->s < 1))
        return errorf(e, "projector conv_mlp: kernel k = %d and stride s = %d must be >= 1 (the paper's (3,2), "
                         "(4,3), (5,4))", c->k, c->s);
    if (c->kind == PROJ_POOL_MLP && c->s < 1)
        return errorf(e, "projector pool_mlp: pooling window s = %d must be >= 1", c->s);
    if (has_mlp(c) && (c->ratio * c->n_embd) % tp_size(c) != 0)
        return errorf(e, "projector hidden size %d (ratio %d x n_embd %d) does not split over parallel.tp = %d ranks",
                      c->ratio * c->n_embd, c->ratio, c->n_embd, tp_size(c));
    return 0;
}

int projector_check_input(const ProjectorConfig* c, int n_in, Error* e) {
    if (n_in < 1) return errorf(e, "projector %s: no input tokens (n_in = %d)", projector_kind_name(c->kind), n_in);
    if (c->kind == PROJ_CONV_MLP && n_in < c->k)
        return errorf(e, "projector conv_mlp: %d input tokens is shorter than the kernel k = %d (stride s = %d): "
                         "use a smaller k or more tokens", n_in, c->k, c->s);
    if (c->kind == PROJ_POOL_MLP && n_in < c->s)
        return errorf(e, "projector pool_mlp: %d input tokens is shorter than the pooling window s = %d: "
                         "use a smaller s or more tokens", n_in, c->s);
    return 0;
}

int projector_out_tokens(const ProjectorConfig* c, int n_in) {
    if (projector_check_input(c, n_in, NULL) != 0) return 0;
    if (c->kind == PROJ_CONV_MLP) return (n_in - c->k) / c->s + 1;
    if (c->kind == PROJ_POOL_MLP) return n_in / c->s;
    return n_in;
}

int projector_out_dim(const ProjectorConfig* c) { return c->n_embd; }

// ---------------------------------------------------------------------------------------------- parameters
static void build_table(const ProjectorConfig* c, ParamTable* t) {
    const int P = tp_size(c), split = P > 1 ? 0 : -1, cols = P > 1 ? 1 : -1;
    int64_t D = c->d_enc, C = c->n_embd, H = (int64_t)c->ratio * c->n_embd / P;
    param_table_init(t);
    if (c->kind == PROJ_LINEAR) {
        param_table_add(t, 2, (int64_t[]){C, D}, "proj.weight");
        param_table_add(t, 1, (int64_t[]){C}, "proj.bias");
        return;
    }
    if (c->kind == PROJ_CONV_MLP) param_table_add(t, 3, (int64_t[]){D, D, c->k}, "conv.weight");
    param_table_add(t, 2, (int64_t[]){H, D}, "proj.0.weight")->tp_dim = split;
    param_table_add(t, 1, (int64_t[]){H}, "proj.0.bias")->tp_dim = split;
    param_table_add(t, 2, (int64_t[]){C, H}, "proj.2.weight")->tp_dim = cols;
    param_table_add(t, 1, (int64_t[]){C}, "proj.2.bias");
    param_table_add(t, 1, (int64_t[]){C}, "pre_norm.weight");
    param_table_add(t, 1, (int64_t[]){C}, "pre_norm.bias");
}

size_t projector_n_params(const ProjectorConfig* c) {
    ParamTable t;
    build_table(c, &t);
    size_t n = t.n_params;
    param_table_free(&t);
    return n;
}

static void point(const Projector* p, ProjectorParams* v, float* base) {
    const ParamTable* t = &p->table;
    memset(v, 0, sizeof *v);
    if (p->cfg.kind == PROJ_LINEAR) {
        v->w1 = param_view(t, base, "proj.weight");
        v->b1 = param_view(t, base, "proj.bias");
        return;
    }
    if (p->cfg.kind == PROJ_CONV_MLP) v->conv_w = param_view(t, base, "conv.weight");
    v->w1 = param_view(t, base, "proj.0.weight");
    v->b1 = param_view(t, base, "proj.0.bias");
    v->w2 = param_view(t, base, "proj.2.weight");
    v->b2 = param_view(t, base, "proj.2.bias");
    v->ln_w = param_view(t, base, "pre_norm.weight");
    v->ln_b = param_view(t, base, "pre_norm.bias");
}

Projector* projector_create(const ProjectorConfig* c, Backend* be, Error* e) {
    if (projector_config_check(c, e) != 0) return NULL;
    Projector* p = xcalloc(1, sizeof *p);
    p->cfg = *c;
    p->hidden = has_mlp(c) ? c->ratio * c->n_embd / tp_size(c) : 0;
    p->be = be;
    build_table(c, &p->table);
    return p;
}

void projector_free(Projector* p) {
    if (!p) return;
    param_table_free(&p->table);
    free(p);
}

void projector_bind(Projector* p, float* params, float* grads) {
    p->params_base = params;
    p->grads_base = grads;
    point(p, &p->p, params);
    point(p, &p->g, grads);
}

void projector_init_random(Projector* p, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    double bound = 1.0;
    for (int i = 0; i < p->table.n; i++) {
        const TensorSpec* s = &p->table.specs[i];
        float* v = p->params_base + s->offset;
        int is_norm = strncmp(s->name, "pre_norm.", 9) == 0;
        if (is_norm) {
            float fill = strcmp(s->name, "pre_norm.weight") == 0 ? 1.0f : 0.0f;
            for (size_t j = 0; j < s->numel; j++) v[j] = fill;
            continue;
        }
        if (s->ndim >= 2) bound = 1.0 / sqrt((double)(s->numel / (size_t)s->shape[0]));  // fan_in = in (x k)
        for (size_t j = 0; j < s->numel; j++) v[j] = (float)((2.0 * rng_uniform(&rng) - 1.0) * bound);
    }
}

int projector_load(Projector* p, const TensorSet* set, const char* file, Error* e) {
    return param_table_load(&p->table, p->params_base, set, "", 0, file, e);
}

// ---------------------------------------------------------------------------------------------- activations
static float* carve(float* base, size_t* used, size_t n) {
    float* q = base ? base + *used : NULL;
    *used += n;
    return q;
}

// Carves the arena at base into a's views (base NULL: views NULL); returns the floats it needs.
static size_t layout_acts(const Projector* p, ProjectorActs* a, float* base) {
    const ProjectorConfig* c = &p->cfg;
    size_t N = (size_t)a->B * a->n_out, D = (size_t)c->d_enc, C = (size_t)c->n_embd, H = (size_t)p->hidden;
    size_t used = 0;
    int transformed = c->kind == PROJ_CONV_MLP || c->kind == PROJ_POOL_MLP;
    if (c->kind == PROJ_CONV_MLP) a->cols = carve(base, &used, N * D * c->k);
    a->xin = transformed || a->with_backward ? carve(base, &used, N * D) : NULL;
    if (has_mlp(c)) {
        a->h1 = carve(base, &used, N * H);
        a->a1 = carve(base, &used, N * H);
        a->h = carve(base, &used, N * C);
        a->ln = carve(base, &used, N * C);
        a->ln_mean = carve(base, &used, N);
        a->ln_rstd = carve(base, &used, N);
    }
    a->out = carve(base, &used, N * C);
    if (a->with_backward) {
        if (has_mlp(c)) {
            a->dh = carve(base, &used, N * C);
            a->da1 = carve(base, &used, N * H);
            a->dh1 = carve(base, &used, N * H);
        }
        if (transformed) a->dxin = carve(base, &used, N * D);
        if (c->kind == PROJ_CONV_MLP) a->dcols = carve(base, &used, N * D * c->k);
    }
    return used;
}

ProjectorActs* projector_acts_create(const Projector* p, int B, int n_in, int with_backward) {
    if (B < 1 || projector_check_input(&p->cfg, n_in, NULL) != 0)
        fatal("internal: projector %s activations for B %d, n_in %d", projector_kind_name(p->cfg.kind), B, n_in);
    ProjectorActs* a = xcalloc(1, sizeof *a);
    a->B = B;
    a->n_in = n_in;
    a->n_out = projector_out_tokens(&p->cfg, n_in);
    a->with_backward = with_backward;
    size_t n = layout_acts(p, a, NULL);
    a->memory = p->be->alloc(p->be, n * sizeof(float));
    layout_acts(p, a, a->memory);
    return a;
}

void projector_acts_free(const Projector* p, ProjectorActs* a) {
    if (!a) return;
    p->be->free(p->be, a->memory);
    free(a);
}

// ---------------------------------------------------------------------------------------------- forward

// The mlp on xin (N, D): a->out = h + LayerNorm(h), h = relu(xin W1^T + b1) W2^T + b2.
static void mlp_forward(Projector* p, ProjectorActs* a, const float* xin, int N) {
    Backend* be = p->be;
    const ProjectorParams* P = &p->p;
    int D = p->cfg.d_enc, C = p->cfg.n_embd, H = p->hidden;
    dense_forward(be, a->h1, xin, P->w1, P->b1, N, D, H, 0.0f);                                   // (N, H)
    be->k.relu_forward(be, a->a1, a->h1, (size_t)N * H);
    if (tp_size(&p->cfg) == 1) {
        dense_forward(be, a->h, a->a1, P->w2, P->b2, N, H, C, 0.0f);                              // (N, C)
    } else {  // the ranks' hidden units each give a part of h: summed, then the bias
        dense_forward(be, a->h, a->a1, P->w2, NULL, N, H, C, 0.0f);
        tp_sum(&p->cfg, a->h, (size_t)N * C);
        be->k.bias_add(be, a->h, P->b2, N, C);
    }
    be->k.layernorm_forward(be, a->ln, a->ln_mean, a->ln_rstd, a->h, P->ln_w, P->ln_b, N, C, LN_EPS);
    be->k.copy(be, a->out, a->h, (size_t)N * C);
    be->k.axpy(be, a->out, 1.0f, a->ln, (size_t)N * C);
}

void projector_forward(Projector* p, ProjectorActs* a, const float* input) {
    Backend* be = p->be;
    const ProjectorConfig* c = &p->cfg;
    int N = a->B * a->n_out, D = c->d_enc;
    const float* xin = input;                                                        // (N, D)
    if (c->kind == PROJ_CONV_MLP) {
        be->k.im2col1d(be, a->cols, input, a->B, a->n_in, D, a->n_out, c->k, c->s, 1, 0);   // (N, D k)
        dense_forward(be, a->xin, a->cols, p->p.conv_w, NULL, N, D * c->k, D, 0.0f);
        xin = a->xin;
    } else if (c->kind == PROJ_POOL_MLP) {
        be->k.avgpool1d_forward(be, a->xin, input, a->B, a->n_in, D, c->s);
        xin = a->xin;
    } else if (a->with_backward) {
        be->k.copy(be, a->xin, input, (size_t)N * D);   // kept for the weight gradient
    }
    if (c->kind == PROJ_LINEAR) dense_forward(be, a->out, xin, p->p.w1, p->p.b1, N, D, c->n_embd, 0.0f);
    else mlp_forward(p, a, xin, N);
}

// ---------------------------------------------------------------------------------------------- backward

// Through the mlp: dxin (N, D) = ... unless NULL; weight grads += unless frozen.
static void mlp_backward(Projector* p, ProjectorActs* a, const float* dout, float* dxin, int N) {
    Backend* be = p->be;
    const ProjectorParams *P = &p->p, *G = &p->g;
    int D = p->cfg.d_enc, C = p->cfg.n_embd, H = p->hidden;
    // y = h + LN(h): dh = dout + LN backward (layernorm_backward accumulates into dinp)
    be->k.copy(be, a->dh, dout, (size_t)N * C);
    be->k.layernorm_backward(be, a->dh, G->ln_w, G->ln_b, dout, a->h, P->ln_w, a->ln_mean, a->ln_rstd, N, C);
    dense_backward(be, a->da1, G->w2, G->b2, a->dh, a->a1, P->w2, N, H, C, 0.0f);        // (N, H)
    be->k.relu_backward(be, a->dh1, a->da1, a->a1, (size_t)N * H);
    dense_backward(be, dxin, G->w1, G->b1, a->dh1, a->xin, P->w1, N, D, H, 0.0f);        // (N, D)
    if (dxin) tp_sum(&p->cfg, dxin, (size_t)N * D);  // each rank's hidden units contribute to it
}

void projector_backward(Projector* p, ProjectorActs* a, const float* dout, float* dinput) {
    Backend* be = p->be;
    const ProjectorConfig* c = &p->cfg;
    if (!a->with_backward) fatal("internal: projector_backward on activations created without backward");
    int frozen = p->grads_base == NULL;
    if (frozen && !dinput) return;
    int N = a->B * a->n_out, D = c->d_enc;
    size_t n_input = (size_t)a->B * a->n_in * D;
    // gradient w.r.t. the first Linear's input: straight into dinput for linear/mlp, into dxin otherwise
    int transformed = c->kind == PROJ_CONV_MLP || c->kind == PROJ_POOL_MLP;
    int need_dxin = dinput != NULL || (c->kind == PROJ_CONV_MLP && !frozen);
    float* dxin = !need_dxin ? NULL : transformed ? a->dxin : dinput;
    if (c->kind == PROJ_LINEAR) dense_backward(be, dxin, p->g.w1, p->g.b1, dout, a->xin, p->p.w1, N, D, c->n_embd, 0.0f);
    else mlp_backward(p, a, dout, dxin, N);
    if (c->kind == PROJ_CONV_MLP && need_dxin) {
        dense_backward(be, dinput ? a->dcols : NULL, p->g.conv_w, NULL, a->dxin, a->cols, p->p.conv_w, N, D * c->k, D, 0.0f);
        if (dinput) {
            be->k.zero(be, dinput, n_input);
            be->k.col2im1d(be, dinput, a->dcols, a->B, a->n_in, D, a->n_out, c->k, c->s, 1, 0);
        }
    } else if (c->kind == PROJ_POOL_MLP && dinput) {
        be->k.zero(be, dinput, n_input);
        be->k.avgpool1d_backward(be, dinput, a->dxin, a->B, a->n_in, D, c->s);
    }
}

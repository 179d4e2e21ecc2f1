// adapter.c — Bone, Bat and LoRA adapters on the RWKV-7 backbone (maths and contract: adapter.h).
//
// Activation memory for N tokens (adapter_mem_floats), one block of the RWKV7Acts arena:
//   Bone / LoRA, with backward: (L * n_targets) saved (N, r) tensors (Bone s, LoRA x A^T), slot
//     l * n_targets + index of the target, then one (N, r) backward scratch (ds, d(x A^T));
//     forward only: one (N, r) scratch reused by every linear.
//   Bat: one (out, in) scratch for the materialised dW (recomputed in the backward, never stored per layer),
//     plus, with backward, one (out, in) scratch for G = dy^T x; sized for the largest adapted linear.
#include "trainer/adapter.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/rng.h"

static const char* const KIND_NAMES[] = {"none", "bone", "bat", "lora"};
static const char* const TARGET_NAMES[ADAPTER_N_TARGETS] = {"att.receptance", "att.key", "att.value",
                                                             "att.output", "ffn.key", "ffn.value"};
static const char* const FILE_FORMAT = "modrwkv-adapter";

const char* adapter_kind_name(AdapterKind k) { return k >= ADAPTER_NONE && k <= ADAPTER_LORA ? KIND_NAMES[k] : "?"; }

const char* adapter_target_name(AdapterTarget t) { return t >= 0 && t < ADAPTER_N_TARGETS ? TARGET_NAMES[t] : "?"; }

// ---------------------------------------------------------------------------------------------------- config

int adapter_parse_kind(const char* s, AdapterKind* out, const char* what, Error* e) {
    for (int k = ADAPTER_NONE; k <= ADAPTER_LORA; k++)
        if (strcmp(s, KIND_NAMES[k]) == 0) {
            *out = (AdapterKind)k;
            return 0;
        }
    return errorf(e, "%s: unknown adapter kind '%s': use none, bone, bat or lora", what, s);
}

static int parse_target(const char* name, size_t len, unsigned* mask) {
    for (int t = 0; t < ADAPTER_N_TARGETS; t++)
        if (strlen(TARGET_NAMES[t]) == len && strncmp(name, TARGET_NAMES[t], len) == 0) {
            *mask |= 1u << t;
            return 0;
        }
    return -1;
}

int adapter_parse_targets(const char* s, unsigned* out, const char* what, Error* e) {
    if (strcmp(s, "all") == 0) {
        *out = ADAPTER_TARGETS_ALL;
        return 0;
    }
    unsigned mask = 0;
    const char* p = s;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        size_t len = strcspn(p, ", ");
        if (len == 0) break;
        if (parse_target(p, len, &mask) != 0)
            return errorf(e, "%s: unknown adapter target '%.*s': use 'all' or a comma list of att.receptance, "
                          "att.key, att.value, att.output, ffn.key, ffn.value", what, (int)len, p);
        p += len;
    }
    if (mask == 0) return errorf(e, "%s: empty adapter target list '%s': name at least one linear, or 'all'", what, s);
    *out = mask;
    return 0;
}

const char* adapter_targets_str(unsigned targets, char* buf, size_t len) {
    if ((targets & ADAPTER_TARGETS_ALL) == ADAPTER_TARGETS_ALL) {
        snprintf(buf, len, "all");
        return buf;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int t = 0; t < ADAPTER_N_TARGETS && used < len; t++)
        if (targets & (1u << t)) used += (size_t)snprintf(buf + used, len - used, used ? ",%s" : "%s", TARGET_NAMES[t]);
    return buf;
}

AdapterConfig adapter_config_default(void) {
    AdapterConfig c = {ADAPTER_NONE, 64, 64.0f, ADAPTER_TARGETS_ALL};
    return c;
}

// in and out features of target t.
static void target_dims(const RWKV7Config* m, AdapterTarget t, int* in, int* out) {
    *in = t == ADAPT_FFN_VALUE ? m->dim_ffn : m->n_embd;
    *out = t == ADAPT_FFN_KEY ? m->dim_ffn : m->n_embd;
}

static int dim_ffn(const RWKV7Config* m) { return m->dim_ffn > 0 ? m->dim_ffn : 4 * m->n_embd; }

// 1 for the targets whose weight rows (outputs) a tensor-parallel backbone splits; the others (att.output,
// ffn.value) have their columns (inputs) split.
static int column_parallel(AdapterTarget t) { return t != ADAPT_ATT_OUTPUT && t != ADAPT_FFN_VALUE; }

// in and out features of target t on this rank (the whole linear without tensor parallelism).
static void local_dims(const Adapter* a, AdapterTarget t, int* in, int* out) {
    target_dims(&a->model, t, in, out);
    if (column_parallel(t)) *out /= a->tp_size;
    else *in /= a->tp_size;
}

// Tensor-parallel roles of a new spec: sliced along dim, or (dim < 0) replicated with partial gradients.
static void tp_role(const Adapter* a, TensorSpec* s, int dim) {
    if (a->tp_size == 1) return;
    s->tp_dim = dim;
    s->tp_partial = dim < 0;
}

int adapter_config_check(const AdapterConfig* c, const RWKV7Config* model, Error* e) {
    int C = model->n_embd, F = dim_ffn(model);
    if (c->kind < ADAPTER_BONE || c->kind > ADAPTER_LORA)
        return errorf(e, "adapter kind %d: choose bone, bat or lora", (int)c->kind);
    if (c->r < 1 || c->r > C)
        return errorf(e, "adapter r %d: must lie in [1, n_embd = %d]", c->r, C);
    if ((c->targets & ADAPTER_TARGETS_ALL) == 0 || (c->targets & ~(unsigned)ADAPTER_TARGETS_ALL) != 0)
        return errorf(e, "adapter targets 0x%x: name at least one of the six linears (or 'all')", c->targets);
    if (c->kind == ADAPTER_LORA && !(c->alpha > 0.0f && isfinite(c->alpha)))
        return errorf(e, "LoRA alpha %g: must be a positive number (scale = alpha / r)", (double)c->alpha);
    if (c->kind == ADAPTER_BAT && (C % c->r != 0 || F % c->r != 0))
        return errorf(e, "bat adapter r %d: must divide n_embd %d and dim_ffn %d (W is cut into r x r blocks)", c->r,
                      C, F);
    return 0;
}

static size_t target_params(const AdapterConfig* c, int in, int out) {
    size_t r = (size_t)c->r;
    if (c->kind == ADAPTER_BONE) return r * (size_t)out;
    if (c->kind == ADAPTER_BAT) return (size_t)in * r;
    if (c->kind == ADAPTER_LORA) return r * ((size_t)in + (size_t)out);
    return 0;
}

size_t adapter_param_count(const AdapterConfig* c, const RWKV7Config* model) {
    RWKV7Config m = *model;
    m.dim_ffn = dim_ffn(model);
    size_t per_layer = 0;
    for (int t = 0; t < ADAPTER_N_TARGETS; t++) {
        if (!(c->targets & (1u << t))) continue;
        int in, out;
        target_dims(&m, (AdapterTarget)t, &in, &out);
        per_layer += target_params(c, in, out);
    }
    return per_layer * (size_t)model->n_layer;
}

// ---------------------------------------------------------------------------------------------------- module

static void build_table(Adapter* a) {
    const AdapterConfig* c = &a->cfg;
    for (int l = 0; l < a->model.n_layer; l++)
        for (int t = 0; t < ADAPTER_N_TARGETS; t++) {
            if (a->slot_index[t] < 0) continue;
            int in, out, col = column_parallel((AdapterTarget)t);
            local_dims(a, (AdapterTarget)t, &in, &out);
            TensorSpec* s;
            if (c->kind == ADAPTER_BONE) {
                int64_t shape[2] = {c->r, out};
                s = param_table_add(&a->table, 2, shape, "blocks.%d.%s.bone", l, TARGET_NAMES[t]);
                tp_role(a, s, col ? 1 : -1);
            } else if (c->kind == ADAPTER_BAT) {
                int64_t shape[3] = {in / c->r, c->r, c->r};
                s = param_table_add(&a->table, 3, shape, "blocks.%d.%s.bat", l, TARGET_NAMES[t]);
            } else {
                int64_t shape_a[2] = {c->r, in}, shape_b[2] = {out, c->r};
                s = param_table_add(&a->table, 2, shape_a, "blocks.%d.%s.lora_A", l, TARGET_NAMES[t]);
                s->layer = l;
                tp_role(a, s, col ? -1 : 1);
                s = param_table_add(&a->table, 2, shape_b, "blocks.%d.%s.lora_B", l, TARGET_NAMES[t]);
                tp_role(a, s, col ? 0 : -1);
            }
            s->layer = l;
        }
}

// Stacked identity E (rows, r), E[o][k] = (o % r == k): tiles B over row blocks (Bat) and transposes
// column blocks (Bone merge) through GEMMs. Written once at creation (host-visible backend memory).
static void build_eye(Adapter* a) {
    int r = a->cfg.r, C = a->model.n_embd, F = a->model.dim_ffn;
    a->eye_rows = C > F ? C : F;
    if (a->eye_rows < r) a->eye_rows = r;
    a->eye = a->be->alloc(a->be, (size_t)a->eye_rows * r * sizeof(float));  // zero-filled
    for (int o = 0; o < a->eye_rows; o++) a->eye[(size_t)o * r + o % r] = 1.0f;
}

Adapter* adapter_create(const AdapterConfig* c, const RWKV7Config* model, Backend* be, Error* e) {
    return adapter_create_tp(c, model, 1, be, e);
}

// Whether the adapter can be split over tp_size ranks; 0 or -1 with e filled.
static int check_tp(const AdapterConfig* c, const RWKV7Config* model, int tp_size, Error* e) {
    if (tp_size == 1) return 0;
    if (c->kind == ADAPTER_BAT)
        return errorf(e, "model.adapter.kind bat is not supported with parallel.tp > 1: use bone or lora, or tp 1");
    int C = model->n_embd, F = dim_ffn(model);
    if (c->kind == ADAPTER_BONE && ((C / tp_size) % c->r != 0 || (F / tp_size) % c->r != 0))
        return errorf(e, "bone adapter r %d with parallel.tp %d: r must divide n_embd / tp = %d and dim_ffn / tp = %d "
                         "(the segmented sums are split with the linears' inputs): lower r or tp",
                      c->r, tp_size, C / tp_size, F / tp_size);
    return 0;
}

Adapter* adapter_create_tp(const AdapterConfig* c, const RWKV7Config* model, int tp_size, Backend* be, Error* e) {
    if (adapter_config_check(c, model, e) != 0 || check_tp(c, model, tp_size, e) != 0) return NULL;
    Adapter* a = xcalloc(1, sizeof *a);
    a->cfg = *c;
    a->model = *model;
    a->model.dim_ffn = dim_ffn(model);
    a->tp_size = tp_size;
    a->be = be;
    for (int t = 0; t < ADAPTER_N_TARGETS; t++) a->slot_index[t] = (c->targets & (1u << t)) ? a->n_targets++ : -1;
    param_table_init(&a->table);
    build_table(a);
    a->slots = xcalloc((size_t)model->n_layer * ADAPTER_N_TARGETS, sizeof(AdapterSlot));
    build_eye(a);
    return a;
}

void adapter_free(Adapter* a) {
    if (!a) return;
    a->be->free(a->be, a->eye);
    free(a->slots);
    param_table_free(&a->table);
    free(a);
}

void adapter_bind(Adapter* a, float* params, float* grads) {
    const char* first = a->cfg.kind == ADAPTER_BONE ? "bone" : a->cfg.kind == ADAPTER_BAT ? "bat" : "lora_A";
    a->params = params;
    a->grads = grads;
    for (int l = 0; l < a->model.n_layer; l++)
        for (int t = 0; t < ADAPTER_N_TARGETS; t++) {
            if (a->slot_index[t] < 0) continue;
            AdapterSlot* s = &a->slots[l * ADAPTER_N_TARGETS + t];
            s->w = param_view(&a->table, params, "blocks.%d.%s.%s", l, TARGET_NAMES[t], first);
            s->g = param_view(&a->table, grads, "blocks.%d.%s.%s", l, TARGET_NAMES[t], first);
            if (a->cfg.kind != ADAPTER_LORA) continue;
            s->w2 = param_view(&a->table, params, "blocks.%d.%s.lora_B", l, TARGET_NAMES[t]);
            s->g2 = param_view(&a->table, grads, "blocks.%d.%s.lora_B", l, TARGET_NAMES[t]);
        }
}

void adapter_init_random(Adapter* a, uint64_t seed) {
    a->be->k.zero(a->be, a->params, a->table.n_params);
    if (a->cfg.kind != ADAPTER_LORA) return;
    Rng rng;
    rng_seed(&rng, seed);
    for (int i = 0; i < a->table.n; i++) {
        const TensorSpec* s = &a->table.specs[i];
        if (!strstr(s->name, ".lora_A")) continue;
        float bound = 1.0f / sqrtf((float)s->shape[1]);  // kaiming_uniform(a = sqrt 5): gain sqrt(1/3) * sqrt(3/fan_in)
        float* w = a->params + s->offset;
        for (size_t j = 0; j < s->numel; j++) w[j] = (float)((2.0 * rng_uniform(&rng) - 1.0) * bound);
    }
}

// ---------------------------------------------------------------------------------------------------- memory

static size_t max_weight(const Adapter* a) {
    size_t m = 0;
    for (int t = 0; t < ADAPTER_N_TARGETS; t++) {
        if (a->slot_index[t] < 0) continue;
        int in, out;
        local_dims(a, (AdapterTarget)t, &in, &out);
        if ((size_t)in * out > m) m = (size_t)in * out;
    }
    return m;
}

size_t adapter_mem_floats(const Adapter* a, int N, int with_backward) {
    size_t Nr = (size_t)N * a->cfg.r;
    if (a->cfg.kind == ADAPTER_BAT) return (with_backward ? 2 : 1) * max_weight(a);
    if (!with_backward) return Nr;
    return ((size_t)a->model.n_layer * a->n_targets + 1) * Nr;
}

// The saved (N, r) tensor of (layer, t) (Bone / LoRA); forward-only memory has one shared slot.
static float* saved_rows(const Adapter* a, float* mem, int N, int with_backward, int layer, AdapterTarget t) {
    if (!with_backward) return mem;
    return mem + ((size_t)layer * a->n_targets + a->slot_index[t]) * N * a->cfg.r;
}

static float* backward_scratch(const Adapter* a, float* mem, int N) {
    return mem + (size_t)a->model.n_layer * a->n_targets * N * a->cfg.r;
}

// ---------------------------------------------------------------------------------------------------- Bone

static void bone_forward(const Adapter* a, const AdapterSlot* s, float* sv, float* y, const float* x, int N, int in,
                         int out) {
    Backend* be = a->be;
    int r = a->cfg.r;
    be->k.segment_sum(be, sv, x, N, in, r);                                    // s (N, r)
    be->k.gemm(be, 0, 0, N, out, r, 1.0f, sv, r, s->w, out, 1.0f, y, out);    // y += s D
}

static void bone_backward(const Adapter* a, const AdapterSlot* s, const float* sv, float* ds, float* dx,
                          const float* dy, int N, int in, int out) {
    Backend* be = a->be;
    int r = a->cfg.r;
    if (s->g) be->k.gemm(be, 1, 0, r, out, N, 1.0f, sv, r, dy, out, 1.0f, s->g, out);  // dD += s^T dy
    if (!dx) return;
    be->k.gemm(be, 0, 1, N, r, out, 1.0f, dy, out, s->w, out, 0.0f, ds, r);             // ds = dy D^T
    be->k.segment_sum_backward(be, dx, ds, N, in, r);                                   // dx[:, i] += ds[:, i % r]
}

// ---------------------------------------------------------------------------------------------------- LoRA

static float lora_scale(const Adapter* a) { return a->cfg.alpha / (float)a->cfg.r; }

static void lora_forward(const Adapter* a, const AdapterSlot* s, float* h, float* y, const float* x, int N, int in,
                         int out) {
    Backend* be = a->be;
    int r = a->cfg.r;
    be->k.gemm(be, 0, 1, N, r, in, 1.0f, x, in, s->w, in, 0.0f, h, r);                 // h = x A^T (N, r)
    be->k.gemm(be, 0, 1, N, out, r, lora_scale(a), h, r, s->w2, r, 1.0f, y, out);      // y += scale h B^T
}

static void lora_backward(const Adapter* a, const AdapterSlot* s, const float* h, float* dh, float* dx,
                          const float* dy, const float* x, int N, int in, int out) {
    Backend* be = a->be;
    int r = a->cfg.r;
    float scale = lora_scale(a);
    if (s->g2) be->k.gemm(be, 1, 0, out, r, N, scale, dy, out, h, r, 1.0f, s->g2, r);  // dB += scale dy^T h
    if (!s->g && !dx) return;
    be->k.gemm(be, 0, 0, N, r, out, scale, dy, out, s->w2, r, 0.0f, dh, r);            // dh = scale dy B
    if (s->g) be->k.gemm(be, 1, 0, r, in, N, 1.0f, dh, r, x, in, 1.0f, s->g, in);      // dA += dh^T x
    if (dx) be->k.gemm(be, 0, 0, N, in, r, 1.0f, dh, r, s->w, in, 1.0f, dx, in);       // dx += dh A
}

// ---------------------------------------------------------------------------------------------------- Bat

// delta (out, in) = W' - W: per column block b, delta[:, b r : b r + r] = (E + W[:, b r : b r + r]) B_b.
static void bat_delta(const Adapter* a, float* delta, const float* W, const float* B, int in, int out) {
    Backend* be = a->be;
    int r = a->cfg.r;
    for (int b = 0; b < in / r; b++) {
        const float* Bb = B + (size_t)b * r * r;
        be->k.gemm(be, 0, 0, out, r, r, 1.0f, a->eye, r, Bb, r, 0.0f, delta + (size_t)b * r, in);
        be->k.gemm(be, 0, 0, out, r, r, 1.0f, W + (size_t)b * r, in, Bb, r, 1.0f, delta + (size_t)b * r, in);
    }
}

static void bat_forward(const Adapter* a, const AdapterSlot* s, float* delta, float* y, const float* x,
                        const float* W, int N, int in, int out) {
    bat_delta(a, delta, W, s->w, in, out);
    a->be->k.gemm(a->be, 0, 1, N, out, in, 1.0f, x, in, delta, in, 1.0f, y, out);  // y += x delta^T
}

static void bat_backward(const Adapter* a, const AdapterSlot* s, float* delta, float* G, float* dx, float* dW,
                         const float* dy, const float* x, const float* W, int N, int in, int out) {
    Backend* be = a->be;
    int r = a->cfg.r;
    if (dx) {
        bat_delta(a, delta, W, s->w, in, out);
        be->k.gemm(be, 0, 0, N, in, out, 1.0f, dy, out, delta, in, 1.0f, dx, in);  // dx += dy delta
    }
    if (!s->g && !dW) return;
    be->k.gemm(be, 1, 0, out, in, N, 1.0f, dy, out, x, in, 0.0f, G, in);           // G = dy^T x (out, in)
    for (int b = 0; b < in / r; b++) {
        const float* Gb = G + (size_t)b * r;
        float* gB = s->g ? s->g + (size_t)b * r * r : NULL;
        if (gB) {  // dB_b += (E + W_b)^T G_b
            be->k.gemm(be, 1, 0, r, r, out, 1.0f, a->eye, r, Gb, in, 1.0f, gB, r);
            be->k.gemm(be, 1, 0, r, r, out, 1.0f, W + (size_t)b * r, in, Gb, in, 1.0f, gB, r);
        }
        if (dW)  // dW_b += G_b B_b^T
            be->k.gemm(be, 0, 1, out, r, r, 1.0f, Gb, in, s->w + (size_t)b * r * r, r, 1.0f, dW + (size_t)b * r, in);
    }
}

// ---------------------------------------------------------------------------------------------------- passes

void adapter_forward(const Adapter* a, float* mem, int N, int with_backward, int layer, AdapterTarget t, float* y,
                     const float* x, const float* W) {
    if (a->slot_index[t] < 0) return;
    const AdapterSlot* s = &a->slots[layer * ADAPTER_N_TARGETS + t];
    int in, out;
    local_dims(a, t, &in, &out);
    float* saved = saved_rows(a, mem, N, with_backward, layer, t);
    if (a->cfg.kind == ADAPTER_BONE) bone_forward(a, s, saved, y, x, N, in, out);
    else if (a->cfg.kind == ADAPTER_LORA) lora_forward(a, s, saved, y, x, N, in, out);
    else bat_forward(a, s, mem, y, x, W, N, in, out);
}

void adapter_backward(const Adapter* a, float* mem, int N, int layer, AdapterTarget t, float* dx, float* dW,
                      const float* dy, const float* x, const float* W) {
    if (a->slot_index[t] < 0) return;
    const AdapterSlot* s = &a->slots[layer * ADAPTER_N_TARGETS + t];
    int in, out;
    local_dims(a, t, &in, &out);
    float *saved = saved_rows(a, mem, N, 1, layer, t), *scratch = backward_scratch(a, mem, N);
    if (a->cfg.kind == ADAPTER_BONE) bone_backward(a, s, saved, scratch, dx, dy, N, in, out);
    else if (a->cfg.kind == ADAPTER_LORA) lora_backward(a, s, saved, scratch, dx, dy, x, N, in, out);
    else bat_backward(a, s, mem, mem + max_weight(a), dx, dW, dy, x, W, N, in, out);
}

// ---------------------------------------------------------------------------------------------------- merge

static float* target_weight(BlockParams* b, AdapterTarget t) {
    float* w[ADAPTER_N_TARGETS] = {b->Wr, b->Wk, b->Wv, b->Wo, b->ffn_key, b->ffn_value};
    return w[t];
}

// W (out, in) += dW of one linear.
static void merge_one(const Adapter* a, const AdapterSlot* s, float* W, int in, int out) {
    Backend* be = a->be;
    int r = a->cfg.r;
    if (a->cfg.kind == ADAPTER_BONE) {
        for (int j = 0; j * r < in; j++) {  // W[:, j r + k] += D[k, :]^T, the last block truncated to in
            int cols = in - j * r < r ? in - j * r : r;
            be->k.gemm(be, 1, 0, out, cols, r, 1.0f, s->w, out, a->eye, r, 1.0f, W + (size_t)j * r, in);
        }
    } else if (a->cfg.kind == ADAPTER_LORA) {
        be->k.gemm(be, 0, 0, out, in, r, lora_scale(a), s->w2, r, s->w, in, 1.0f, W, in);  // W += scale B A
    } else {
        float* delta = be->alloc(be, (size_t)in * out * sizeof(float));
        bat_delta(a, delta, W, s->w, in, out);
        be->k.axpy(be, W, 1.0f, delta, (size_t)in * out);
        be->free(be, delta);
    }
}

static int same_model(const RWKV7Config* x, const RWKV7Config* y) {
    return x->n_layer == y->n_layer && x->n_embd == y->n_embd && x->dim_ffn == y->dim_ffn;
}

int adapter_merge(const Adapter* a, RWKV7* m, Error* e) {
    if (a->tp_size != 1)
        return errorf(e, "cannot merge a tensor-parallel slice of an adapter: merge the whole model (a checkpoint)");
    if (!same_model(&a->model, &m->cfg))
        return errorf(e, "cannot merge: the adapter was built for n_layer %d, n_embd %d, dim_ffn %d, the model has "
                      "n_layer %d, n_embd %d, dim_ffn %d", a->model.n_layer, a->model.n_embd, a->model.dim_ffn,
                      m->cfg.n_layer, m->cfg.n_embd, m->cfg.dim_ffn);
    for (int l = 0; l < a->model.n_layer; l++)
        for (int t = 0; t < ADAPTER_N_TARGETS; t++) {
            if (a->slot_index[t] < 0) continue;
            int in, out;
            target_dims(&a->model, (AdapterTarget)t, &in, &out);
            merge_one(a, &a->slots[l * ADAPTER_N_TARGETS + t], target_weight(&m->params.blocks[l], (AdapterTarget)t),
                      in, out);
        }
    return 0;
}

// ---------------------------------------------------------------------------------------------------- files

static void set_int(json_t* meta, const char* key, int v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%d", v);
    json_object_set_new(meta, key, json_string(buf));
}

void adapter_store(const Adapter* a, TensorSet* out) {
    param_table_store(&a->table, a->params, out, "");
    json_t* meta = json_object();
    char buf[160];
    json_object_set_new(meta, "format", json_string(FILE_FORMAT));
    json_object_set_new(meta, "kind", json_string(adapter_kind_name(a->cfg.kind)));
    set_int(meta, "r", a->cfg.r);
    snprintf(buf, sizeof buf, "%.9g", (double)a->cfg.alpha);
    json_object_set_new(meta, "alpha", json_string(buf));
    json_object_set_new(meta, "targets", json_string(adapter_targets_str(a->cfg.targets, buf, sizeof buf)));
    set_int(meta, "n_layer", a->model.n_layer);
    set_int(meta, "n_embd", a->model.n_embd);
    set_int(meta, "dim_ffn", a->model.dim_ffn);
    free(out->metadata);
    out->metadata = json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(meta);
}

// The string value of key, or NULL with e filled.
static const char* meta_string(json_t* meta, const char* key, const char* file, Error* e) {
    json_t* v = json_object_get(meta, key);
    if (!json_is_string(v)) {
        errorf(e, "%s: adapter metadata lacks '%s': not an adapter file written by modrwkv (adapter_store)", file, key);
        return NULL;
    }
    return json_string_value(v);
}

static int meta_int(json_t* meta, const char* key, const char* file, int* out, Error* e) {
    const char* s = meta_string(meta, key, file, e);
    if (!s) return -1;
    char* end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 0 || v > 1 << 30)
        return errorf(e, "%s: adapter metadata '%s' is '%s', expected a non-negative integer", file, key, s);
    *out = (int)v;
    return 0;
}

static int read_config(json_t* meta, const char* file, AdapterConfig* c, RWKV7Config* model, Error* e) {
    const char* format = meta_string(meta, "format", file, e);
    if (!format) return -1;
    if (strcmp(format, FILE_FORMAT) != 0)
        return errorf(e, "%s: metadata format is '%s', expected '%s' (an adapter file)", file, format, FILE_FORMAT);
    const char *kind = meta_string(meta, "kind", file, e), *alpha = kind ? meta_string(meta, "alpha", file, e) : NULL;
    const char* targets = alpha ? meta_string(meta, "targets", file, e) : NULL;
    if (!targets) return -1;
    memset(model, 0, sizeof *model);
    if (adapter_parse_kind(kind, &c->kind, file, e) != 0 || adapter_parse_targets(targets, &c->targets, file, e) != 0)
        return -1;
    char* end;
    c->alpha = strtof(alpha, &end);
    if (end == alpha || *end) return errorf(e, "%s: adapter metadata 'alpha' is '%s', expected a number", file, alpha);
    if (meta_int(meta, "r", file, &c->r, e) != 0 || meta_int(meta, "n_layer", file, &model->n_layer, e) != 0)
        return -1;
    if (meta_int(meta, "n_embd", file, &model->n_embd, e) != 0) return -1;
    return meta_int(meta, "dim_ffn", file, &model->dim_ffn, e);
}

static int config_from_tensors(const TensorSet* set, const char* file, AdapterConfig* c, RWKV7Config* model, Error* e) {
    if (!set->metadata)
        return errorf(e, "%s: no metadata: not an adapter file written by modrwkv (adapter_store)", file);
    json_t* meta = json_loads(set->metadata, 0, NULL);
    if (!json_is_object(meta)) {
        json_decref(meta);
        return errorf(e, "%s: metadata is not a JSON object: not an adapter file", file);
    }
    int rc = read_config(meta, file, c, model, e);
    json_decref(meta);
    return rc;
}

int adapter_config_from_tensors(const TensorSet* set, const char* file, AdapterConfig* out, Error* e) {
    RWKV7Config model;
    return config_from_tensors(set, file, out, &model, e);
}

int adapter_load(Adapter* a, const TensorSet* set, const char* file, Error* e) {
    AdapterConfig c;
    RWKV7Config model;
    if (config_from_tensors(set, file, &c, &model, e) != 0) return -1;
    char want[160], got[160];
    if (c.kind != a->cfg.kind || c.r != a->cfg.r || c.targets != a->cfg.targets ||
        (c.kind == ADAPTER_LORA && c.alpha != a->cfg.alpha))
        return errorf(e, "%s: the file holds a %s adapter (r %d, alpha %g, targets %s), expected %s (r %d, alpha %g, "
                      "targets %s): create the adapter from the file's configuration", file, adapter_kind_name(c.kind),
                      c.r, (double)c.alpha, adapter_targets_str(c.targets, got, sizeof got),
                      adapter_kind_name(a->cfg.kind), a->cfg.r, (double)a->cfg.alpha,
                      adapter_targets_str(a->cfg.targets, want, sizeof want));
    if (!same_model(&model, &a->model))
        return errorf(e, "%s: the adapter was trained on a model with n_layer %d, n_embd %d, dim_ffn %d; this one has "
                      "n_layer %d, n_embd %d, dim_ffn %d", file, model.n_layer, model.n_embd, model.dim_ffn,
                      a->model.n_layer, a->model.n_embd, a->model.dim_ffn);
    return param_table_load(&a->table, a->params, set, "", 1, file, e);
}

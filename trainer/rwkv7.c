// rwkv7.c — RWKV-7 (x070) model: parameter table, activations, forward and backward (see rwkv7.h).
//
// Maths: reference/rwkv7.md §2 (forward) and §3 (backward), in this order per block:
//   ln1 -> token-shift six-way mix -> r, k0, v' projections; decay, a, value-residual and gate LoRAs ->
//   key preparation -> WKV7 -> GroupNorm -> bonus + gate -> Wo (+ residual) -> ln2 -> ChannelMix (+ residual).
// Every op runs on the backend's kernel table (be->k); this file only sequences them. An attached adapter
// (m->adapter) adds its term inside the six adapted linears (trainer/adapter.c holds its maths).
#include "trainer/rwkv7.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sharding/comm.h"
#include "sharding/vocab_parallel.h"
#include "trainer/adapter.h"
#include "trainer/dense.h"

static const float LN_EPS = 1e-5f;
static const float GN_EPS = 64e-5f;

// ---------------------------------------------------------------------------------------------------- config

static int round_half_even(double x) { return (int)nearbyint(x); }

static int lora_rank(double factor, int C) {
    int d = round_half_even(factor * sqrt((double)C) / 32.0) * 32;
    return d > 32 ? d : 32;
}

void rwkv7_default_lora(RWKV7Config* cfg) {
    int C = cfg->n_embd;
    if (cfg->d_decay <= 0) cfg->d_decay = lora_rank(2.5, C);
    if (cfg->d_a <= 0) cfg->d_a = lora_rank(2.5, C);
    if (cfg->d_value <= 0) cfg->d_value = lora_rank(1.7, C);
    if (cfg->d_gate <= 0) cfg->d_gate = lora_rank(5.0, C);
    if (cfg->dim_ffn <= 0) cfg->dim_ffn = 4 * C;
}

double rwkv7_flops_per_token(const RWKV7Config* c, int T) {
    double C = c->n_embd, F = c->dim_ffn, V = c->vocab_size, N = c->head_size;
    double lora = C * (c->d_decay + c->d_a + c->d_value + c->d_gate) * 2;
    double matmul = c->n_layer * (4 * C * C + 2 * C * F + lora) + V * C;  // params touched by a GEMM per token
    double wkv = c->n_layer * C * N * 8.0;                                 // ~8 flops per state element, fwd
    return 6.0 * matmul + 3.0 * wkv;
}

// ---------------------------------------------------------------------------------------------------- tensor table

typedef struct TableBuilder {
    RWKV7* m;
    int cap;
} TableBuilder;

static TensorSpec* add_tensor(TableBuilder* tb, int layer, const char* suffix, int ndim, int64_t d0, int64_t d1,
                              int64_t d2) {
    RWKV7* m = tb->m;
    if (m->n_tensors == tb->cap) {
        tb->cap = tb->cap ? 2 * tb->cap : 64;
        m->specs = xrealloc(m->specs, (size_t)tb->cap * sizeof(TensorSpec));
    }
    TensorSpec* s = &m->specs[m->n_tensors++];
    memset(s, 0, sizeof *s);
    if (layer >= 0) snprintf(s->name, sizeof s->name, "blocks.%d.%s", layer, suffix);
    else snprintf(s->name, sizeof s->name, "%s", suffix);
    s->ndim = ndim;
    s->shape[0] = d0;
    s->shape[1] = d1;
    s->shape[2] = d2;
    s->numel = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1) * (ndim > 2 ? (size_t)d2 : 1);
    s->offset = m->n_params;
    m->n_params += s->numel;
    s->layer = layer;
    // RWKV's parameter groups (reference/rwkv7.md §5.3): decay for 2-D (after squeeze) "*.weight" tensors.
    int squeezed = 0;
    for (int i = 0; i < ndim; i++) squeezed += s->shape[i] != 1;
    s->weight_decay = squeezed >= 2 && strstr(s->name, ".weight") != NULL;
    s->lr_scale = strcmp(suffix, "att.w0") == 0 ? 2.0f : 1.0f;
    s->unused = layer == 0 && (!strcmp(suffix, "att.v0") || !strcmp(suffix, "att.v1") || !strcmp(suffix, "att.v2"));
    s->tp_dim = -1;
    return s;
}

// Tensor-parallel roles (params.h): a slice along dimension dim, or a replicated tensor with partial gradients.
static void split(const RWKV7* m, TensorSpec* s, int dim) { s->tp_dim = m->tp_size > 1 ? dim : -1; }
static void partial(const RWKV7* m, TensorSpec* s) { s->tp_partial = m->tp_size > 1; }

// Shapes are this rank's (the whole model when tp_size is 1): Ca TimeMix channels (Ha heads), Fl ChannelMix
// units, Vl vocabulary rows.
static void build_table(RWKV7* m) {
    const RWKV7Config* c = &m->cfg;
    int64_t C = c->n_embd, N = c->head_size, Ca = m->c_att, Ha = m->n_head_local, Fl = m->f_local, Vl = m->v_local;
    TableBuilder tb = {m, 0};
    split(m, add_tensor(&tb, -1, "emb.weight", 2, Vl, C, 0), 0);
    for (int l = 0; l < c->n_layer; l++) {
        // RWKV-LM's module order (Block.__init__: ln1, ln2, then ln0 in block 0), which torch.save keeps
        add_tensor(&tb, l, "ln1.weight", 1, C, 0, 0);
        add_tensor(&tb, l, "ln1.bias", 1, C, 0, 0);
        add_tensor(&tb, l, "ln2.weight", 1, C, 0, 0);
        add_tensor(&tb, l, "ln2.bias", 1, C, 0, 0);
        if (l == 0) {
            add_tensor(&tb, 0, "ln0.weight", 1, C, 0, 0);
            add_tensor(&tb, 0, "ln0.bias", 1, C, 0, 0);
        }
        const char* mix[6] = {"att.x_r", "att.x_w", "att.x_k", "att.x_v", "att.x_a", "att.x_g"};
        for (int i = 0; i < 6; i++) partial(m, add_tensor(&tb, l, mix[i], 3, 1, 1, C));
        const char* lora[4][3] = {{"att.w0", "att.w1", "att.w2"}, {"att.a0", "att.a1", "att.a2"},
                                  {"att.v0", "att.v1", "att.v2"}, {NULL, "att.g1", "att.g2"}};
        int64_t rank[4] = {c->d_decay, c->d_a, c->d_value, c->d_gate};
        for (int i = 0; i < 4; i++) {  // bias (1, 1, Ca), first matrix (C, D) replicated, second (D, Ca)
            if (lora[i][0]) split(m, add_tensor(&tb, l, lora[i][0], 3, 1, 1, Ca), 2);
            partial(m, add_tensor(&tb, l, lora[i][1], 2, C, rank[i], 0));
            split(m, add_tensor(&tb, l, lora[i][2], 2, rank[i], Ca, 0), 1);
        }
        split(m, add_tensor(&tb, l, "att.k_k", 3, 1, 1, Ca), 2);
        split(m, add_tensor(&tb, l, "att.k_a", 3, 1, 1, Ca), 2);
        split(m, add_tensor(&tb, l, "att.r_k", 2, Ha, N, 0), 0);
        split(m, add_tensor(&tb, l, "att.receptance.weight", 2, Ca, C, 0), 0);
        split(m, add_tensor(&tb, l, "att.key.weight", 2, Ca, C, 0), 0);
        split(m, add_tensor(&tb, l, "att.value.weight", 2, Ca, C, 0), 0);
        split(m, add_tensor(&tb, l, "att.output.weight", 2, C, Ca, 0), 1);
        split(m, add_tensor(&tb, l, "att.ln_x.weight", 1, Ca, 0, 0), 0);
        split(m, add_tensor(&tb, l, "att.ln_x.bias", 1, Ca, 0, 0), 0);
        partial(m, add_tensor(&tb, l, "ffn.x_k", 3, 1, 1, C));
        split(m, add_tensor(&tb, l, "ffn.key.weight", 2, Fl, C, 0), 0);
        split(m, add_tensor(&tb, l, "ffn.value.weight", 2, C, Fl, 0), 1);
    }
    add_tensor(&tb, -1, "ln_out.weight", 1, C, 0, 0);
    add_tensor(&tb, -1, "ln_out.bias", 1, C, 0, 0);
    split(m, add_tensor(&tb, -1, "head.weight", 2, Vl, C, 0), 0);
}

const TensorSpec* rwkv7_find_spec(const RWKV7* m, const char* name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->specs[i].name, name) == 0) return &m->specs[i];
    return NULL;
}

// base + offset of the named tensor, or NULL when base is NULL or the tensor is not trained (frozen).
static float* view(const RWKV7* m, float* base, const uint8_t* trained, int layer, const char* suffix) {
    char name[RWKV7_NAME_MAX];
    if (layer >= 0) snprintf(name, sizeof name, "blocks.%d.%s", layer, suffix);
    else snprintf(name, sizeof name, "%s", suffix);
    const TensorSpec* s = rwkv7_find_spec(m, name);
    if (!s) fatal("internal: no tensor %s in the RWKV-7 table", name);
    if (!base || (trained && !trained[s - m->specs])) return NULL;
    return base + s->offset;
}

static void point_views(const RWKV7* m, ModelParams* p, float* base, const uint8_t* trained) {
    p->emb = view(m, base, trained, -1, "emb.weight");
    p->ln0_w = view(m, base, trained, 0, "ln0.weight");
    p->ln0_b = view(m, base, trained, 0, "ln0.bias");
    p->ln_out_w = view(m, base, trained, -1, "ln_out.weight");
    p->ln_out_b = view(m, base, trained, -1, "ln_out.bias");
    p->head = view(m, base, trained, -1, "head.weight");
    for (int l = 0; l < m->cfg.n_layer; l++) {
        BlockParams* b = &p->blocks[l];
        b->ln1_w = view(m, base, trained, l, "ln1.weight");
        b->ln1_b = view(m, base, trained, l, "ln1.bias");
        b->ln2_w = view(m, base, trained, l, "ln2.weight");
        b->ln2_b = view(m, base, trained, l, "ln2.bias");
        b->x_r = view(m, base, trained, l, "att.x_r");
        b->x_w = view(m, base, trained, l, "att.x_w");
        b->x_k = view(m, base, trained, l, "att.x_k");
        b->x_v = view(m, base, trained, l, "att.x_v");
        b->x_a = view(m, base, trained, l, "att.x_a");
        b->x_g = view(m, base, trained, l, "att.x_g");
        b->w0 = view(m, base, trained, l, "att.w0");
        b->w1 = view(m, base, trained, l, "att.w1");
        b->w2 = view(m, base, trained, l, "att.w2");
        b->a0 = view(m, base, trained, l, "att.a0");
        b->a1 = view(m, base, trained, l, "att.a1");
        b->a2 = view(m, base, trained, l, "att.a2");
        b->v0 = view(m, base, trained, l, "att.v0");
        b->v1 = view(m, base, trained, l, "att.v1");
        b->v2 = view(m, base, trained, l, "att.v2");
        b->g1 = view(m, base, trained, l, "att.g1");
        b->g2 = view(m, base, trained, l, "att.g2");
        b->k_k = view(m, base, trained, l, "att.k_k");
        b->k_a = view(m, base, trained, l, "att.k_a");
        b->r_k = view(m, base, trained, l, "att.r_k");
        b->Wr = view(m, base, trained, l, "att.receptance.weight");
        b->Wk = view(m, base, trained, l, "att.key.weight");
        b->Wv = view(m, base, trained, l, "att.value.weight");
        b->Wo = view(m, base, trained, l, "att.output.weight");
        b->lnx_w = view(m, base, trained, l, "att.ln_x.weight");
        b->lnx_b = view(m, base, trained, l, "att.ln_x.bias");
        b->ffn_x_k = view(m, base, trained, l, "ffn.x_k");
        b->ffn_key = view(m, base, trained, l, "ffn.key.weight");
        b->ffn_value = view(m, base, trained, l, "ffn.value.weight");
    }
}

void rwkv7_point(const RWKV7* m, ModelParams* p, float* base) { point_views(m, p, base, NULL); }

void rwkv7_point_grads(const RWKV7* m, ModelParams* g, float* base, const uint8_t* trained) {
    point_views(m, g, base, trained);
}

void rwkv7_rebase(RWKV7* m, float* base) {
    m->be->k.copy(m->be, base, m->params_memory, m->n_params);
    if (m->owns_params) m->be->free(m->be, m->params_memory);
    m->owns_params = 0;
    m->params_memory = base;
    rwkv7_point(m, &m->params, base);
}

RWKV7* rwkv7_create(const RWKV7Config* cfg, Backend* be, Error* e) { return rwkv7_create_tp(cfg, be, NULL, e); }

// The slice sizes of this rank (errors when a sliced dimension does not divide by the group size).
static int set_tp_layout(RWKV7* m, Comm* tp, Error* e) {
    const RWKV7Config* c = &m->cfg;
    int P = tp ? comm_size(tp) : 1, H = c->n_embd / c->head_size;
    m->tp = P > 1 ? tp : NULL;
    m->tp_size = P;
    m->tp_rank = tp ? comm_rank(tp) : 0;
    if (H % P != 0 || c->dim_ffn % P != 0 || c->vocab_size % P != 0)
        return errorf(e, "parallel.tp = %d does not divide the model's %d heads, dim_ffn %d and vocabulary %d: choose a "
                         "tp that divides all three (or set model.vocab_size to a multiple of it)",
                      P, H, c->dim_ffn, c->vocab_size);
    m->c_att = c->n_embd / P;
    m->n_head_local = H / P;
    m->f_local = c->dim_ffn / P;
    m->v_local = c->vocab_size / P;
    m->v_begin = m->tp_rank * m->v_local;
    return 0;
}

RWKV7* rwkv7_create_tp(const RWKV7Config* cfg_in, Backend* be, Comm* tp, Error* e) {
    RWKV7Config cfg = *cfg_in;
    rwkv7_default_lora(&cfg);
    if (cfg.n_layer < 1 || cfg.n_embd < 1 || cfg.vocab_size < 1 || cfg.head_size < 1) {
        errorf(e, "bad model size: n_layer %d, n_embd %d, vocab %d, head_size %d (all must be positive)", cfg.n_layer,
               cfg.n_embd, cfg.vocab_size, cfg.head_size);
        return NULL;
    }
    if (cfg.n_embd % cfg.head_size != 0) {
        errorf(e, "n_embd %d is not a multiple of head_size %d: choose n_embd = heads x head_size", cfg.n_embd,
               cfg.head_size);
        return NULL;
    }
    RWKV7* m = xcalloc(1, sizeof *m);
    m->cfg = cfg;
    m->be = be;
    m->has_block0_vres = 1;
    if (set_tp_layout(m, tp, e) != 0) {
        free(m);
        return NULL;
    }
    build_table(m);
    m->params_memory = be->alloc(be, m->n_params * sizeof(float));
    m->owns_params = 1;
    m->params.blocks = xcalloc((size_t)cfg.n_layer, sizeof(BlockParams));
    rwkv7_point(m, &m->params, m->params_memory);
    return m;
}

void rwkv7_free(RWKV7* m) {
    if (!m) return;
    if (m->owns_params) m->be->free(m->be, m->params_memory);
    free(m->params.blocks);
    free(m->specs);
    free(m->file_order);
    free(m);
}

// ---------------------------------------------------------------------------------------------------- activations

typedef struct Arena {
    float* base;
    size_t used;
} Arena;

// Hands out n floats (rounded up to 16 for alignment); with base == NULL only counts.
static float* take(Arena* a, size_t n) {
    float* p = a->base ? a->base + a->used : NULL;
    a->used += (n + 15) & ~(size_t)15;
    return p;
}

static void layout_acts(const RWKV7* m, RWKV7Acts* A, Arena* ar) {
    const RWKV7Config* c = &m->cfg;
    // this rank's sizes: Ca TimeMix channels (Ha heads), F ChannelMix units, V vocabulary rows (all without tp)
    size_t BT = (size_t)A->B * A->T, C = c->n_embd, Ca = m->c_att, F = m->f_local, V = m->v_local;
    size_t H = m->n_head_local, N = c->head_size;
    size_t n_chunks = (A->T + WKV7_CHUNK - 1) / WKV7_CHUNK;
    A->x0 = take(ar, BT * C);
    A->ln0_mean = take(ar, BT);
    A->ln0_rstd = take(ar, BT);
    for (int l = 0; l <= c->n_layer; l++) A->res[l] = take(ar, BT * C);
    for (int l = 0; l < c->n_layer; l++) {
        LayerActs* L = &A->layers[l];
        L->ln1 = take(ar, BT * C);
        L->ln1_mean = take(ar, BT);
        L->ln1_rstd = take(ar, BT);
        L->xm = take(ar, 6 * BT * C);
        L->r = take(ar, BT * Ca);
        L->k0 = take(ar, BT * Ca);
        L->vp = take(ar, BT * Ca);
        L->hw = take(ar, BT * c->d_decay);
        L->dd = take(ar, BT * Ca);
        L->wdec = take(ar, BT * Ca);
        L->hv = take(ar, BT * c->d_value);
        L->gam = take(ar, BT * Ca);
        L->v = take(ar, BT * Ca);
        L->ha = take(ar, BT * c->d_a);
        L->a = take(ar, BT * Ca);
        L->sg = take(ar, BT * c->d_gate);
        L->g = take(ar, BT * Ca);
        L->kk = take(ar, BT * Ca);
        L->kmod = take(ar, BT * Ca);
        L->wa = take(ar, BT * Ca);
        L->wb = take(ar, BT * Ca);
        L->y = take(ar, BT * Ca);
        L->ckpt = A->with_backward ? take(ar, A->B * H * n_chunks * N * N) : NULL;
        L->gn = take(ar, BT * Ca);
        L->gn_mean = take(ar, BT * H);
        L->gn_rstd = take(ar, BT * H);
        L->z = take(ar, BT * Ca);
        L->x_mid = take(ar, BT * C);
        L->ln2 = take(ar, BT * C);
        L->ln2_mean = take(ar, BT);
        L->ln2_rstd = take(ar, BT);
        L->xk = take(ar, BT * C);
        L->p = take(ar, BT * F);
        L->hr = take(ar, BT * F);
    }
    A->xf = take(ar, BT * C);
    A->xg = take(ar, BT * C);
    A->lnf_mean = take(ar, BT);
    A->lnf_rstd = take(ar, BT);
    A->logits = take(ar, (size_t)A->logit_rows * V);
    A->losses = take(ar, (size_t)A->logit_rows);
    A->tp_buf = m->tp_size > 1 ? take(ar, BT * C) : NULL;
    A->adapter_for = m->adapter;
    A->adapter_mem = m->adapter ? take(ar, adapter_mem_floats(m->adapter, (int)BT, A->with_backward)) : NULL;
    if (!A->with_backward) return;
    size_t D = c->d_decay;
    if ((size_t)c->d_a > D) D = c->d_a;
    if ((size_t)c->d_value > D) D = c->d_value;
    if ((size_t)c->d_gate > D) D = c->d_gate;
    A->dx0 = take(ar, BT * C);
    A->dmu_sink = take(ar, 6 * C);
    A->dres = take(ar, BT * C);
    A->dvfirst = take(ar, BT * C);
    A->dln = take(ar, BT * C);
    A->dxm = take(ar, 6 * BT * C);
    float** scratch[] = {&A->dA, &A->dB, &A->dC, &A->dD, &A->dE, &A->dF, &A->dG, &A->dH, &A->dI, &A->dJ};
    for (size_t i = 0; i < sizeof scratch / sizeof scratch[0]; i++) *scratch[i] = take(ar, BT * C);
    A->dlora = take(ar, BT * D);
    A->dffn = take(ar, BT * F);
}

RWKV7Acts* rwkv7_acts_create(const RWKV7* m, int B, int T, int with_backward) {
    return rwkv7_acts_create_rows(m, B, T, with_backward, B * T);
}

RWKV7Acts* rwkv7_acts_create_rows(const RWKV7* m, int B, int T, int with_backward, int logit_rows) {
    RWKV7Acts* A = xcalloc(1, sizeof *A);
    A->B = B;
    A->T = T;
    A->with_backward = with_backward;
    A->logit_rows = logit_rows < 1 ? 1 : logit_rows > B * T ? B * T : logit_rows;
    A->res = xcalloc((size_t)m->cfg.n_layer + 1, sizeof(float*));
    A->layers = xcalloc((size_t)m->cfg.n_layer, sizeof(LayerActs));
    Arena count = {NULL, 0};
    layout_acts(m, A, &count);
    A->n_floats = count.used;
    A->memory = m->be->alloc(m->be, A->n_floats * sizeof(float));
    Arena ar = {A->memory, 0};
    layout_acts(m, A, &ar);
    A->tokens = xcalloc((size_t)B * T, sizeof(int32_t));
    A->head_rows = xcalloc((size_t)B * T, sizeof(int32_t));
    A->head_targets = xcalloc((size_t)B * T, sizeof(int32_t));
    A->tp_rows = xcalloc((size_t)B * T, sizeof(int32_t));
    A->tp_ids = xcalloc((size_t)B * T, sizeof(int32_t));
    A->n_head_rows = -1;
    return A;
}

void rwkv7_acts_free(const RWKV7* m, RWKV7Acts* A) {
    if (!A) return;
    m->be->free(m->be, A->memory);
    free(A->res);
    free(A->layers);
    free(A->tokens);
    free(A->head_rows);
    free(A->head_targets);
    free(A->tp_rows);
    free(A->tp_ids);
    free(A);
}

// ---------------------------------------------------------------------------------------------------- state

RWKV7State* rwkv7_state_create(const RWKV7* m, int B) {
    const RWKV7Config* c = &m->cfg;
    RWKV7State* s = xcalloc(1, sizeof *s);
    s->B = B;
    size_t LBC = (size_t)c->n_layer * B * c->n_embd;
    s->att_x_prev = m->be->alloc(m->be, LBC * sizeof(float));
    s->ffn_x_prev = m->be->alloc(m->be, LBC * sizeof(float));
    s->att_kv = m->be->alloc(m->be, (size_t)c->n_layer * B * m->c_att * c->head_size * sizeof(float));
    return s;
}

void rwkv7_state_reset(const RWKV7* m, RWKV7State* s) {
    const RWKV7Config* c = &m->cfg;
    size_t LBC = (size_t)c->n_layer * s->B * c->n_embd;
    m->be->k.zero(m->be, s->att_x_prev, LBC);
    m->be->k.zero(m->be, s->ffn_x_prev, LBC);
    m->be->k.zero(m->be, s->att_kv, (size_t)c->n_layer * s->B * m->c_att * c->head_size);
}

void rwkv7_state_free(const RWKV7* m, RWKV7State* s) {
    if (!s) return;
    m->be->free(m->be, s->att_x_prev);
    m->be->free(m->be, s->ffn_x_prev);
    m->be->free(m->be, s->att_kv);
    free(s);
}

// ---------------------------------------------------------------------------------------------------- GEMM helpers
// (nn.Linear layers: trainer/dense.h)
// lora matmul: out (N, OC) = inp (N, IC) @ W, W (IC, OC) [RWKV LoRA matrices, no transpose].
static void matmul_forward(Backend* be, float* out, const float* inp, const float* W, int N, int IC, int OC) {
    be->k.gemm(be, 0, 0, N, OC, IC, 1.0f, inp, IC, W, OC, 0.0f, out, OC);
}

// dW (IC, OC) += inp^T @ dout; dinp (N, IC) = dout @ W^T (+ beta * dinp).
static void matmul_backward(Backend* be, float* dinp, float* dW, const float* dout, const float* inp, const float* W,
                            int N, int IC, int OC, float beta) {
    if (dW) be->k.gemm(be, 1, 0, IC, OC, N, 1.0f, inp, IC, dout, OC, 1.0f, dW, OC);
    if (dinp) be->k.gemm(be, 0, 1, N, IC, OC, 1.0f, dout, OC, W, OC, beta, dinp, IC);
}

// ---------------------------------------------------------------------------------------------------- adapted linears
// The six linears an adapter may target: the base term, then the adapter's term (if one is attached).
static void adapted_forward(RWKV7* m, RWKV7Acts* A, int l, AdapterTarget t, float* out, const float* inp,
                            const float* W, int IC, int OC, float beta) {
    int N = A->B * A->T;
    dense_forward(m->be, out, inp, W, NULL, N, IC, OC, beta);
    if (m->adapter) adapter_forward(m->adapter, A->adapter_mem, N, A->with_backward, l, t, out, inp, W);
}

static void adapted_backward(RWKV7* m, RWKV7Acts* A, int l, AdapterTarget t, float* dinp, float* dW,
                             const float* dout, const float* inp, const float* W, int IC, int OC, float beta) {
    int N = A->B * A->T;
    dense_backward(m->be, dinp, dW, NULL, dout, inp, W, N, IC, OC, beta);
    if (m->adapter) adapter_backward(m->adapter, A->adapter_mem, N, l, t, dinp, dW, dout, inp, W);
}

static void check_adapter_memory(const RWKV7* m, const RWKV7Acts* A) {
    if (A->adapter_for != m->adapter)
        fatal("internal: activations sized for another adapter: create them after attaching m->adapter");
}

// ---------------------------------------------------------------------------------------------------- tensor parallel
// Sums x (n) over the tensor-parallel group (nothing without one).
static void tp_sum(RWKV7* m, float* x, size_t n) {
    if (m->tp_size > 1) comm_all_reduce(m->tp, x, n, COMM_SUM);
}

// out (BT, OC) += inp (BT, IC) W^T for a row-parallel linear (W's input columns are this rank's slice): the
// partial products of the ranks are summed first. Without tensor parallelism, one GEMM accumulating into out.
static void row_parallel_forward(RWKV7* m, RWKV7Acts* A, int l, AdapterTarget t, float* out, const float* inp,
                                 const float* W, int IC, int OC) {
    if (m->tp_size == 1) {
        adapted_forward(m, A, l, t, out, inp, W, IC, OC, 1.0f);
        return;
    }
    size_t n = (size_t)A->B * A->T * OC;
    adapted_forward(m, A, l, t, A->tp_buf, inp, W, IC, OC, 0.0f);
    tp_sum(m, A->tp_buf, n);
    m->be->k.axpy(m->be, out, 1.0f, A->tp_buf, n);
}

// ---------------------------------------------------------------------------------------------------- forward

// Copies row T-1 of each sequence of x (B, T, C) into last (B, C): the carried token-shift state.
static void keep_last(Backend* be, float* last, const float* x, int B, int T, int C) {
    for (int b = 0; b < B; b++)
        be->k.copy(be, last + (size_t)b * C, x + ((size_t)b * T + T - 1) * C, (size_t)C);
}

// C is the residual width; Ca/Ha this rank's TimeMix channels/heads (C/H without tensor parallelism).
static void time_mix_forward(RWKV7* m, RWKV7Acts* A, int l, const BlockParams* p, float* att_x_prev, float* kv) {
    Backend* be = m->be;
    const RWKV7Config* c = &m->cfg;
    LayerActs* L = &A->layers[l];
    const float *x = A->res[l], *vfirst = A->layers[0].vp;
    int B = A->B, T = A->T, BT = B * T, C = c->n_embd, N = c->head_size, Ca = m->c_att, Ha = m->n_head_local;
    size_t n = (size_t)BT * C, na = (size_t)BT * Ca;
    be->k.layernorm_forward(be, L->ln1, L->ln1_mean, L->ln1_rstd, x, p->ln1_w, p->ln1_b, BT, C, LN_EPS);
    be->k.tokenshift_forward(be, L->xm, L->ln1, att_x_prev, p->x_r, 6, B, T, C);
    const float *xr = L->xm, *xw = L->xm + n, *xk = L->xm + 2 * n, *xv = L->xm + 3 * n, *xa = L->xm + 4 * n,
                *xg = L->xm + 5 * n;
    if (att_x_prev) keep_last(be, att_x_prev, L->ln1, B, T, C);
    adapted_forward(m, A, l, ADAPT_ATT_RECEPTANCE, L->r, xr, p->Wr, C, Ca, 0.0f);
    adapted_forward(m, A, l, ADAPT_ATT_KEY, L->k0, xk, p->Wk, C, Ca, 0.0f);
    adapted_forward(m, A, l, ADAPT_ATT_VALUE, L->vp, xv, p->Wv, C, Ca, 0.0f);
    // decay: w = exp(-e^-0.5 sigmoid(w0 + tanh(xw w1) w2))
    matmul_forward(be, L->hw, xw, p->w1, BT, C, c->d_decay);
    be->k.tanh_forward(be, L->hw, L->hw, (size_t)BT * c->d_decay);
    matmul_forward(be, L->dd, L->hw, p->w2, BT, c->d_decay, Ca);
    be->k.rwkv7_decay_forward(be, L->wdec, L->dd, L->dd, p->w0, BT, Ca);
    // value residual toward layer 0's v
    if (l == 0) {
        be->k.copy(be, L->v, L->vp, na);
    } else {
        matmul_forward(be, L->hv, xv, p->v1, BT, C, c->d_value);
        matmul_forward(be, L->gam, L->hv, p->v2, BT, c->d_value, Ca);
        be->k.bias_sigmoid_forward(be, L->gam, L->gam, p->v0, BT, Ca);
        be->k.rwkv7_vres_forward(be, L->v, L->vp, vfirst, L->gam, na);
    }
    // in-context learning rate a and output gate g
    matmul_forward(be, L->ha, xa, p->a1, BT, C, c->d_a);
    matmul_forward(be, L->a, L->ha, p->a2, BT, c->d_a, Ca);
    be->k.bias_sigmoid_forward(be, L->a, L->a, p->a0, BT, Ca);
    matmul_forward(be, L->sg, xg, p->g1, BT, C, c->d_gate);
    be->k.sigmoid_forward(be, L->sg, L->sg, (size_t)BT * c->d_gate);
    matmul_forward(be, L->g, L->sg, p->g2, BT, c->d_gate, Ca);
    // WKV7 on the prepared keys, GroupNorm, bonus and gate
    be->k.rwkv7_kprep_forward(be, L->kk, L->kmod, L->wa, L->wb, L->k0, L->a, p->k_k, p->k_a, BT, Ca, N);
    be->k.wkv7_forward(be, L->y, kv, L->ckpt, L->r, L->wdec, L->kmod, L->v, L->wa, L->wb, kv, B, T, Ha, N);
    be->k.groupnorm_forward(be, L->gn, L->gn_mean, L->gn_rstd, L->y, p->lnx_w, p->lnx_b, BT, Ca, Ha, GN_EPS);
    be->k.rwkv7_bonus_gate_forward(be, L->z, L->gn, L->r, L->kmod, L->v, p->r_k, L->g, BT, Ca, N);
    // residual: x_mid = x + z Wo^T
    be->k.copy(be, L->x_mid, x, n);
    row_parallel_forward(m, A, l, ADAPT_ATT_OUTPUT, L->x_mid, L->z, p->Wo, Ca, C);
}

static void channel_mix_forward(RWKV7* m, RWKV7Acts* A, int l, const BlockParams* p, float* ffn_x_prev) {
    Backend* be = m->be;
    const RWKV7Config* c = &m->cfg;
    LayerActs* L = &A->layers[l];
    float* out = A->res[l + 1];
    int B = A->B, T = A->T, BT = B * T, C = c->n_embd, F = m->f_local;
    be->k.layernorm_forward(be, L->ln2, L->ln2_mean, L->ln2_rstd, L->x_mid, p->ln2_w, p->ln2_b, BT, C, LN_EPS);
    be->k.tokenshift_forward(be, L->xk, L->ln2, ffn_x_prev, p->ffn_x_k, 1, B, T, C);
    if (ffn_x_prev) keep_last(be, ffn_x_prev, L->ln2, B, T, C);
    adapted_forward(m, A, l, ADAPT_FFN_KEY, L->p, L->xk, p->ffn_key, C, F, 0.0f);
    be->k.relu2_forward(be, L->hr, L->p, (size_t)BT * F);
    be->k.copy(be, out, L->x_mid, (size_t)BT * C);
    row_parallel_forward(m, A, l, ADAPT_FFN_VALUE, out, L->hr, p->ffn_value, F, C);
}

// Vocabulary-parallel embedding: the rows whose token lies in this rank's slice are looked up (tp_rows /
// tp_ids keep them for the backward), the others are zero, and the sum over the group completes every row.
static void embed_vocab_parallel(RWKV7* m, RWKV7Acts* A) {
    Backend* be = m->be;
    int BT = A->B * A->T, C = m->cfg.n_embd, n = 0;
    for (int i = 0; i < BT; i++) {
        int32_t id = A->tokens[i] - m->v_begin;
        if (id >= 0 && id < m->v_local) {
            A->tp_rows[n] = i;
            A->tp_ids[n++] = id;
        }
    }
    A->n_tp_rows = n;
    be->k.embedding_forward(be, A->tp_buf, A->tp_ids, m->params.emb, n, C);       // (n, C)
    be->k.zero(be, A->x0, (size_t)BT * C);
    be->k.embedding_backward(be, A->x0, A->tp_buf, A->tp_rows, n, C, BT);          // scattered into their rows
    tp_sum(m, A->x0, (size_t)BT * C);
}

void rwkv7_embed(RWKV7* m, RWKV7Acts* A, const int32_t* tokens) {
    int BT = A->B * A->T;
    memcpy(A->tokens, tokens, (size_t)BT * sizeof(int32_t));
    if (m->tp_size > 1) embed_vocab_parallel(m, A);
    else m->be->k.embedding_forward(m->be, A->x0, A->tokens, m->params.emb, BT, m->cfg.n_embd);
}

void rwkv7_forward(RWKV7* m, RWKV7Acts* A, const int32_t* tokens, RWKV7State* st) {
    rwkv7_embed(m, A, tokens);
    rwkv7_forward_embedded(m, A, st);
}

void rwkv7_forward_embedded(RWKV7* m, RWKV7Acts* A, RWKV7State* st) {
    Backend* be = m->be;
    const RWKV7Config* c = &m->cfg;
    const ModelParams* P = &m->params;
    int B = A->B, T = A->T, BT = B * T, C = c->n_embd, N = c->head_size, V = m->v_local;
    check_adapter_memory(m, A);
    be->k.layernorm_forward(be, A->res[0], A->ln0_mean, A->ln0_rstd, A->x0, P->ln0_w, P->ln0_b, BT, C, LN_EPS);
    for (int l = 0; l < c->n_layer; l++) {
        size_t bc = (size_t)l * B * C;
        float* att_prev = st ? st->att_x_prev + bc : NULL;
        float* ffn_prev = st ? st->ffn_x_prev + bc : NULL;
        float* kv = st ? st->att_kv + (size_t)l * B * m->c_att * N : NULL;
        time_mix_forward(m, A, l, &P->blocks[l], att_prev, kv);
        channel_mix_forward(m, A, l, &P->blocks[l], ffn_prev);
    }
    be->k.layernorm_forward(be, A->xf, A->lnf_mean, A->lnf_rstd, A->res[c->n_layer], P->ln_out_w, P->ln_out_b, BT, C,
                            LN_EPS);
    if (A->n_head_rows > A->logit_rows || (A->n_head_rows < 0 && A->logit_rows < BT))
        fatal("internal: the head needs %d logit rows, the activations hold %d", A->n_head_rows < 0 ? BT : A->n_head_rows,
              A->logit_rows);
    if (A->n_head_rows < 0) {
        dense_forward(be, A->logits, A->xf, P->head, NULL, BT, C, V, 0.0f);
    } else if (A->n_head_rows > 0) {  // only the chosen rows: gather them, then the head
        be->k.embedding_forward(be, A->xg, A->head_rows, A->xf, A->n_head_rows, C);
        dense_forward(be, A->logits, A->xg, P->head, NULL, A->n_head_rows, C, V, 0.0f);
    }
}

void rwkv7_set_head_rows(RWKV7Acts* A, const int32_t* targets) {
    int BT = A->B * A->T, n = 0;
    if (!targets) {
        A->n_head_rows = -1;
        return;
    }
    for (int i = 0; i < BT; i++)
        if (targets[i] >= 0) {
            A->head_rows[n] = i;
            A->head_targets[n++] = targets[i];
        }
    A->n_head_rows = n;
}

void rwkv7_set_head_rows_list(RWKV7Acts* A, const int32_t* rows, int n) {
    for (int i = 0; i < n; i++) {
        A->head_rows[i] = rows[i];
        A->head_targets[i] = -1;
    }
    A->n_head_rows = n;
}

float rwkv7_loss(RWKV7* m, RWKV7Acts* A, const int32_t* targets, float dloss_scale, int l2wrap, int* n_valid) {
    Backend* be = m->be;
    int BT = A->B * A->T, V = m->v_local, nv = 0;
    if (A->n_head_rows >= 0) {  // logits exist for the chosen rows only, in their order
        BT = A->n_head_rows;
        targets = A->head_targets;
    }
    for (int i = 0; i < BT; i++) nv += targets[i] >= 0;
    if (n_valid) *n_valid = nv;
    float dloss = nv > 0 ? dloss_scale / (float)nv : 0.0f;
    float* dlogits = A->with_backward ? A->logits : NULL;
    float l2 = l2wrap ? 1e-4f * dloss : 0.0f;
    if (m->tp_size > 1)
        vocab_parallel_crossentropy(m->tp, A->losses, dlogits, A->logits, targets, BT, V, m->v_begin, dloss, l2);
    else
        be->k.crossentropy_forward_backward(be, A->losses, dlogits, A->logits, targets, BT, V, dloss, l2);
    double sum = 0.0;
    for (int i = 0; i < BT; i++) sum += A->losses[i];
    return nv > 0 ? (float)(sum / nv) : 0.0f;
}

// ---------------------------------------------------------------------------------------------------- backward

// Token-shift backward with mix gradients dmu[i] (C each, NULL = frozen). tokenshift_backward needs one
// contiguous (n_mix, C) target: the gradient buffer itself when every mix is trained (the usual case, no
// extra work), else the discarded acts->dmu_sink, whose trained rows are then added to their tensors.
// Under tensor parallelism dxm holds this rank's partial sums: so do the mix gradients (tp_partial) and
// acts->dln, which is summed over the group here (the entry of the parallel region).
static void tokenshift_backward_frozen(RWKV7* m, RWKV7Acts* A, float* const* dmu, const float* dxm, const float* x,
                                       const float* mu, int n_mix) {
    Backend* be = m->be;
    int C = m->cfg.n_embd, all = 1;
    for (int i = 0; i < n_mix; i++) all &= dmu[i] != NULL && dmu[i] == dmu[0] + (size_t)i * C;
    float* target = all ? dmu[0] : A->dmu_sink;
    if (!all) be->k.zero(be, A->dmu_sink, (size_t)n_mix * C);
    be->k.tokenshift_backward(be, A->dln, NULL, target, dxm, x, NULL, mu, n_mix, A->B, A->T, C);
    for (int i = 0; !all && i < n_mix; i++)
        if (dmu[i]) be->k.axpy(be, dmu[i], 1.0f, A->dmu_sink + (size_t)i * C, (size_t)C);
    tp_sum(m, A->dln, (size_t)A->B * A->T * C);
}

// ChannelMix backward: dres holds dL/d(block output) on entry and dL/d(x_mid) on exit.
static void channel_mix_backward(RWKV7* m, RWKV7Acts* A, int l, const BlockParams* p, const BlockParams* g) {
    Backend* be = m->be;
    const RWKV7Config* c = &m->cfg;
    LayerActs* L = &A->layers[l];
    int BT = A->B * A->T, C = c->n_embd, F = m->f_local;
    float* dhr = A->dffn;  // (BT, F)
    adapted_backward(m, A, l, ADAPT_FFN_VALUE, dhr, g->ffn_value, A->dres, L->hr, p->ffn_value, F, C, 0.0f);
    be->k.relu2_backward(be, dhr, dhr, L->p, (size_t)BT * F);
    float* dxk = A->dA;
    adapted_backward(m, A, l, ADAPT_FFN_KEY, dxk, g->ffn_key, dhr, L->xk, p->ffn_key, C, F, 0.0f);
    be->k.zero(be, A->dln, (size_t)BT * C);
    float* const dmu[1] = {g->ffn_x_k};
    tokenshift_backward_frozen(m, A, dmu, dxk, L->ln2, p->ffn_x_k, 1);
    be->k.layernorm_backward(be, A->dres, g->ln2_w, g->ln2_b, A->dln, L->x_mid, p->ln2_w, L->ln2_mean, L->ln2_rstd, BT,
                             C);
}

// TimeMix backward: dres holds dL/d(x_mid) on entry and dL/d(block input) on exit. The buffers d* are
// (BT, Ca) here (this rank's channels); dxm is (6, BT, C).
static void time_mix_backward(RWKV7* m, RWKV7Acts* A, int l, const BlockParams* p, const BlockParams* g) {
    Backend* be = m->be;
    const RWKV7Config* c = &m->cfg;
    LayerActs* L = &A->layers[l];
    int B = A->B, T = A->T, BT = B * T, C = c->n_embd, N = c->head_size, Ca = m->c_att, Ha = m->n_head_local;
    size_t n = (size_t)BT * C, na = (size_t)BT * Ca;
    float *dz = A->dA, *dgn = A->dB, *dy = A->dC, *dr = A->dD, *dw = A->dE, *dk = A->dF, *dv = A->dG, *dwa = A->dH,
          *dwb = A->dI, *dgate = A->dJ;
    float* dxm = A->dxm;  // (6, BT, C): r, w, k, v, a, g
    // output projection and gate
    adapted_backward(m, A, l, ADAPT_ATT_OUTPUT, dz, g->Wo, A->dres, L->z, p->Wo, Ca, C, 0.0f);
    be->k.mul(be, dgn, dz, L->g, na);
    be->k.groupnorm_backward(be, dy, g->lnx_w, g->lnx_b, dgn, L->y, p->lnx_w, L->gn_mean, L->gn_rstd, BT, Ca, Ha);
    be->k.wkv7_backward(be, dr, dw, dk, dv, dwa, dwb, NULL, dy, NULL, L->r, L->wdec, L->kmod, L->v, L->wa, L->wb, NULL,
                        L->ckpt, B, T, Ha, N);
    be->k.rwkv7_bonus_gate_backward(be, dgate, dr, dk, dv, g->r_k, dz, L->gn, L->r, L->kmod, L->v, p->r_k, L->g, BT, Ca,
                                    N);
    // gate LoRA: g = sigmoid(xg g1) g2
    float* dsg = A->dlora;
    matmul_backward(be, dsg, g->g2, dgate, L->sg, p->g2, BT, c->d_gate, Ca, 0.0f);
    be->k.sigmoid_backward(be, dsg, dsg, L->sg, (size_t)BT * c->d_gate);
    matmul_backward(be, dxm + 5 * n, g->g1, dsg, L->xm + 5 * n, p->g1, BT, C, c->d_gate, 0.0f);
    // key preparation -> dk0 (into dz, free now) and da (into dgn, free now)
    float *dk0 = dz, *da = dgn;
    be->k.rwkv7_kprep_backward(be, dk0, da, g->k_k, g->k_a, dk, dwa, dwb, L->k0, L->a, L->kk, p->k_k, p->k_a, BT, Ca, N);
    // a = sigmoid(a0 + xa a1 a2)
    be->k.bias_sigmoid_backward(be, da, g->a0, da, L->a, BT, Ca);
    float* dha = A->dlora;
    matmul_backward(be, dha, g->a2, da, L->ha, p->a2, BT, c->d_a, Ca, 0.0f);
    matmul_backward(be, dxm + 4 * n, g->a1, dha, L->xm + 4 * n, p->a1, BT, C, c->d_a, 0.0f);
    // value: residual mix (layers >= 1) or v_first accumulation (layer 0)
    float* dvp = dy;  // free after the WKV backward
    if (l == 0) {
        be->k.axpy(be, dv, 1.0f, A->dvfirst, na);
        be->k.copy(be, dvp, dv, na);
    } else {
        float* dgam = dwa;  // free after kprep backward
        be->k.rwkv7_vres_backward(be, dvp, A->dvfirst, dgam, dv, L->vp, A->layers[0].vp, L->gam, na);
        be->k.bias_sigmoid_backward(be, dgam, g->v0, dgam, L->gam, BT, Ca);
        float* dhv = A->dlora;
        matmul_backward(be, dhv, g->v2, dgam, L->hv, p->v2, BT, c->d_value, Ca, 0.0f);
        matmul_backward(be, dxm + 3 * n, g->v1, dhv, L->xm + 3 * n, p->v1, BT, C, c->d_value, 0.0f);
    }
    float beta_v = l == 0 ? 0.0f : 1.0f;  // layers >= 1 add to the value-residual LoRA's dxv
    adapted_backward(m, A, l, ADAPT_ATT_VALUE, dxm + 3 * n, g->Wv, dvp, L->xm + 3 * n, p->Wv, C, Ca, beta_v);
    // decay LoRA
    float* ddd = dwb;  // free after kprep backward
    be->k.rwkv7_decay_backward(be, ddd, g->w0, dw, L->wdec, L->dd, BT, Ca);
    float* dhw = A->dlora;
    matmul_backward(be, dhw, g->w2, ddd, L->hw, p->w2, BT, c->d_decay, Ca, 0.0f);
    be->k.tanh_backward(be, dhw, dhw, L->hw, (size_t)BT * c->d_decay);
    matmul_backward(be, dxm + 1 * n, g->w1, dhw, L->xm + 1 * n, p->w1, BT, C, c->d_decay, 0.0f);
    // r and k projections
    adapted_backward(m, A, l, ADAPT_ATT_RECEPTANCE, dxm, g->Wr, dr, L->xm, p->Wr, C, Ca, 0.0f);
    adapted_backward(m, A, l, ADAPT_ATT_KEY, dxm + 2 * n, g->Wk, dk0, L->xm + 2 * n, p->Wk, C, Ca, 0.0f);
    // token shift and ln1 (into the residual gradient)
    be->k.zero(be, A->dln, n);
    float* const dmu[6] = {g->x_r, g->x_w, g->x_k, g->x_v, g->x_a, g->x_g};
    tokenshift_backward_frozen(m, A, dmu, dxm, L->ln1, p->x_r, 6);
    be->k.layernorm_backward(be, A->dres, g->ln1_w, g->ln1_b, A->dln, A->res[l], p->ln1_w, L->ln1_mean, L->ln1_rstd, BT,
                             C);
}

void rwkv7_backward(RWKV7* m, RWKV7Acts* A, const ModelParams* G) {
    rwkv7_backward_to_x0(m, A, G);
    rwkv7_embed_backward(m, A, G);
}

void rwkv7_backward_to_x0(RWKV7* m, RWKV7Acts* A, const ModelParams* G) {
    Backend* be = m->be;
    const RWKV7Config* c = &m->cfg;
    const ModelParams* P = &m->params;
    if (!A->with_backward) fatal("internal: rwkv7_backward on activations created without backward buffers");
    check_adapter_memory(m, A);
    int BT = A->B * A->T, C = c->n_embd, V = m->v_local;
    size_t n = (size_t)BT * C;
    // head and final LayerNorm (acts->logits holds dlogits)
    if (A->n_head_rows < 0) {
        dense_backward(be, A->dln, G->head, NULL, A->logits, A->xf, P->head, BT, C, V, 0.0f);
    } else {  // the head rows' gradients scattered back; the other rows get none
        be->k.zero(be, A->dln, n);
        if (A->n_head_rows > 0) {  // dW reads xg before the input gradient overwrites it (dense_backward's order)
            dense_backward(be, A->xg, G->head, NULL, A->logits, A->xg, P->head, A->n_head_rows, C, V, 0.0f);
            be->k.embedding_backward(be, A->dln, A->xg, A->head_rows, A->n_head_rows, C, BT);
        }
    }
    tp_sum(m, A->dln, n);  // each rank's vocabulary slice contributes a part of dL/dxf
    be->k.zero(be, A->dres, n);
    be->k.layernorm_backward(be, A->dres, G->ln_out_w, G->ln_out_b, A->dln, A->res[c->n_layer], P->ln_out_w,
                             A->lnf_mean, A->lnf_rstd, BT, C);
    be->k.zero(be, A->dvfirst, n);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        channel_mix_backward(m, A, l, &P->blocks[l], &G->blocks[l]);
        time_mix_backward(m, A, l, &P->blocks[l], &G->blocks[l]);
    }
    // ln0, down to the embeddings
    be->k.zero(be, A->dx0, n);
    be->k.layernorm_backward(be, A->dx0, G->ln0_w, G->ln0_b, A->dres, A->x0, P->ln0_w, A->ln0_mean, A->ln0_rstd, BT, C);
}

void rwkv7_embed_backward(RWKV7* m, RWKV7Acts* A, const ModelParams* G) {
    if (!G->emb) return;
    Backend* be = m->be;
    int C = m->cfg.n_embd;
    if (m->tp_size == 1) {
        be->k.embedding_backward(be, G->emb, A->dx0, A->tokens, A->B * A->T, C, m->cfg.vocab_size);
        return;
    }
    // this rank's vocabulary rows only: gather their dx0 rows, then scatter-add them into the local table
    be->k.embedding_forward(be, A->tp_buf, A->tp_rows, A->dx0, A->n_tp_rows, C);
    be->k.embedding_backward(be, G->emb, A->tp_buf, A->tp_ids, A->n_tp_rows, C, m->v_local);
}

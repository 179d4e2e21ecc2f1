// rwkv7_io.c — RWKV-7 parameters <-> named tensors (TensorSet), i.e. official checkpoints in and out.
//
// Contract: rwkv7_from_tensors infers the whole configuration from tensor shapes (V, C from emb.weight,
// L from the block indices, H and N from att.r_k, LoRA ranks from att.w1/a1/v1/g1, F from ffn.key),
// checks that every tensor is present with a consistent shape (block-0 att.v0/v1/v2 may be absent) and
// rejects unknown tensors, naming the tensor and the file. rwkv7_to_tensors writes the same layout back.
#include "trainer/rwkv7_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"

static const NamedTensor* need(const TensorSet* s, const char* name, const char* file, Error* e) {
    const NamedTensor* t = tensorset_find(s, name);
    if (!t) errorf(e, "%s: tensor '%s' is missing: not an RWKV-7 (x070) checkpoint?", file, name);
    return t;
}

// Reads the configuration from the shapes. Returns 0 or -1.
static int infer_config(const TensorSet* s, const char* file, RWKV7Config* c, Error* e) {
    memset(c, 0, sizeof *c);
    const NamedTensor* emb = need(s, "emb.weight", file, e);
    if (!emb) return -1;
    if (emb->ndim != 2) return errorf(e, "%s: emb.weight has %d dimensions, expected 2 [vocab, n_embd]", file, emb->ndim);
    c->vocab_size = (int)emb->shape[0];
    c->n_embd = (int)emb->shape[1];
    for (int i = 0; i < s->n; i++) {
        int l;
        if (sscanf(s->t[i].name, "blocks.%d.", &l) == 1 && l + 1 > c->n_layer) c->n_layer = l + 1;
    }
    if (c->n_layer == 0) return errorf(e, "%s: no 'blocks.N.*' tensors: not an RWKV-7 checkpoint", file);
    const NamedTensor* rk = need(s, "blocks.0.att.r_k", file, e);
    if (!rk) return -1;
    if (rk->ndim != 2 || rk->shape[0] * rk->shape[1] != c->n_embd)
        return errorf(e, "%s: blocks.0.att.r_k must be [heads, head_size] with heads x head_size = %d", file, c->n_embd);
    c->head_size = (int)rk->shape[1];
    const char* lora[4] = {"blocks.0.att.w1", "blocks.0.att.a1", "blocks.0.att.v1", "blocks.0.att.g1"};
    int* rank[4] = {&c->d_decay, &c->d_a, &c->d_value, &c->d_gate};
    for (int i = 0; i < 4; i++) {
        const NamedTensor* t = tensorset_find(s, lora[i]);
        if (!t && i == 2) t = tensorset_find(s, c->n_layer > 1 ? "blocks.1.att.v1" : "");
        if (!t && i == 2) {  // one-layer model without block-0 v1: the rank is never used
            *rank[i] = 32;
            continue;
        }
        if (!t) return errorf(e, "%s: tensor '%s' is missing: not an RWKV-7 (x070) checkpoint?", file, lora[i]);
        if (t->ndim != 2) return errorf(e, "%s: %s must be 2-D [n_embd, rank]", file, t->name);
        *rank[i] = (int)t->shape[1];
    }
    const NamedTensor* fk = need(s, "blocks.0.ffn.key.weight", file, e);
    if (!fk) return -1;
    c->dim_ffn = (int)fk->shape[0];
    return 0;
}

// Same numel and same dimensions once size-1 dimensions are dropped ([C] ~ [1, 1, C]).
static int shape_matches(const NamedTensor* t, const TensorSpec* sp) {
    int64_t a[8], b[3];
    int na = 0, nb = 0;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != 1) a[na++] = t->shape[i];
    for (int i = 0; i < sp->ndim; i++)
        if (sp->shape[i] != 1) b[nb++] = sp->shape[i];
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static void shape_str(char* buf, size_t n, int ndim, const int64_t* shape) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && o < n; i++) o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

RWKV7* rwkv7_from_tensors(const TensorSet* s, const char* file, Backend* be, Error* e) {
    RWKV7Config cfg;
    if (infer_config(s, file, &cfg, e) != 0) return NULL;
    RWKV7* m = rwkv7_create(&cfg, be, e);
    if (!m) return NULL;
    m->has_block0_vres = tensorset_find(s, "blocks.0.att.v0") != NULL;
    for (int i = 0; i < m->n_tensors; i++) {
        const TensorSpec* sp = &m->specs[i];
        const NamedTensor* t = tensorset_find(s, sp->name);
        if (!t && sp->unused) continue;
        if (!t) {
            errorf(e, "%s: tensor '%s' is missing (the checkpoint has %d layers, n_embd %d)", file, sp->name,
                   cfg.n_layer, cfg.n_embd);
            rwkv7_free(m);
            return NULL;
        }
        if (!shape_matches(t, sp)) {
            char got[96], want[96];
            shape_str(got, sizeof got, t->ndim, t->shape);
            shape_str(want, sizeof want, sp->ndim, sp->shape);
            errorf(e, "%s: tensor '%s' has shape %s, expected %s for this model", file, sp->name, got, want);
            rwkv7_free(m);
            return NULL;
        }
        if (tensor_to_f32(t, m->params_memory + sp->offset) != 0) {
            errorf(e, "%s: tensor '%s' has dtype %s; RWKV-7 weights must be floating point (F32, BF16, F16)", file,
                   sp->name, dtype_name(t->dtype));
            rwkv7_free(m);
            return NULL;
        }
    }
    m->file_order = xmalloc((size_t)s->n * sizeof(int));
    for (int i = 0; i < s->n; i++) {
        const TensorSpec* sp = rwkv7_find_spec(m, s->t[i].name);
        if (!sp) {
            errorf(e, "%s: unexpected tensor '%s': not part of an RWKV-7 (x070) model with %d layers", file,
                   s->t[i].name, cfg.n_layer);
            rwkv7_free(m);
            return NULL;
        }
        m->file_order[m->n_file_order++] = (int)(sp - m->specs);
    }
    return m;
}

void rwkv7_to_tensors(const RWKV7* m, const float* base, DType dt, TensorSet* out) {
    int n = m->file_order ? m->n_file_order : m->n_tensors;
    for (int i = 0; i < n; i++) {
        const TensorSpec* sp = &m->specs[m->file_order ? m->file_order[i] : i];
        if (sp->unused && !m->has_block0_vres) continue;
        const float* src = base + sp->offset;
        NamedTensor* t = tensorset_add(out, sp->name, dt, sp->ndim, sp->shape, NULL);
        if (dt == DT_BF16) {
            uint16_t* dst = t->data;
            for (size_t j = 0; j < sp->numel; j++) dst[j] = float_to_bf16(src[j]);
        } else {
            memcpy(t->data, src, sp->numel * sizeof(float));
        }
    }
}

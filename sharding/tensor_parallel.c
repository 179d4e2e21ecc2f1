// tensor_parallel.c — slicing and gathering parameter tables for tensor parallelism (see tensor_parallel.h).
#include "sharding/tensor_parallel.h"

#include <stdlib.h>
#include <string.h>

// A sliced tensor seen as (outer, full_d, inner) with this rank's (outer, d, inner) part, d = full_d / P.
typedef struct SliceGeom {
    size_t outer, d, inner;
} SliceGeom;

static const TensorSpec* full_spec(const ParamTable* full, const TensorSpec* s, int P) {
    const TensorSpec* f = param_table_find(full, s->name);
    if (!f) fatal("internal: tensor-parallel tensor %s is not in the full table", s->name);
    size_t want = s->tp_dim >= 0 ? s->numel * (size_t)P : s->numel;
    if (f->numel != want) fatal("internal: tensor %s has %zu values, the full tensor %zu", s->name, s->numel, f->numel);
    return f;
}

static SliceGeom geometry(const TensorSpec* s) {
    SliceGeom g = {1, (size_t)s->shape[s->tp_dim], 1};
    for (int i = 0; i < s->tp_dim; i++) g.outer *= (size_t)s->shape[i];
    for (int i = s->tp_dim + 1; i < s->ndim; i++) g.inner *= (size_t)s->shape[i];
    return g;
}

// Copies slice `part` of P between a full tensor and a local one (to_full: local -> full).
static void copy_slice(float* full, float* local, SliceGeom g, int part, int P, int to_full) {
    size_t block = g.d * g.inner;
    for (size_t o = 0; o < g.outer; o++) {
        float* f = full + (o * (size_t)P + (size_t)part) * block;
        float* l = local + o * block;
        if (to_full) memcpy(f, l, block * sizeof(float));
        else memcpy(l, f, block * sizeof(float));
    }
}

void tp_slice_table(const ParamTable* local, float* local_buf, const ParamTable* full, const float* full_buf,
                    int tp_rank, int tp_size) {
    for (int i = 0; i < local->n; i++) {
        const TensorSpec* s = &local->specs[i];
        const TensorSpec* f = full_spec(full, s, tp_size);
        float* src = (float*)full_buf + f->offset;
        if (s->tp_dim < 0) memcpy(local_buf + s->offset, src, s->numel * sizeof(float));
        else copy_slice(src, local_buf + s->offset, geometry(s), tp_rank, tp_size, 0);
    }
}

void tp_gather_table(Comm* tp, const ParamTable* local, const float* local_buf, const ParamTable* full,
                     float* full_buf, int root) {
    int P = comm_size(tp), me = comm_rank(tp);
    size_t max_numel = 0;
    for (int i = 0; i < local->n; i++)
        if (local->specs[i].tp_dim >= 0 && local->specs[i].numel > max_numel) max_numel = local->specs[i].numel;
    float* parts = me == root ? xmalloc((max_numel * (size_t)P + 1) * sizeof(float)) : NULL;  // (P, numel)
    for (int i = 0; i < local->n; i++) {
        const TensorSpec* s = &local->specs[i];
        const TensorSpec* f = me == root ? full_spec(full, s, P) : NULL;
        if (s->tp_dim < 0) {
            if (f) memcpy(full_buf + f->offset, local_buf + s->offset, s->numel * sizeof(float));
            continue;
        }
        comm_gather(tp, parts, local_buf + s->offset, s->numel * (size_t)P, root);  // rank r's slice at r * numel
        if (!f) continue;
        for (int r = 0; r < P; r++) copy_slice(full_buf + f->offset, parts + (size_t)r * s->numel, geometry(s), r, P, 1);
    }
    free(parts);
}

void tp_sum_partial_grads(Comm* tp, const ParamTable* local, const uint8_t* trained, float* grads) {
    size_t n = 0;
    for (int i = 0; i < local->n; i++)
        if (local->specs[i].tp_partial && (!trained || trained[i])) n += local->specs[i].numel;
    if (n == 0 || comm_size(tp) == 1) return;
    float* buf = xmalloc(n * sizeof(float));
    size_t at = 0;
    for (int i = 0; i < local->n; i++) {
        const TensorSpec* s = &local->specs[i];
        if (!s->tp_partial || (trained && !trained[i])) continue;
        memcpy(buf + at, grads + s->offset, s->numel * sizeof(float));
        at += s->numel;
    }
    comm_all_reduce(tp, buf, n, COMM_SUM);
    at = 0;
    for (int i = 0; i < local->n; i++) {
        const TensorSpec* s = &local->specs[i];
        if (!s->tp_partial || (trained && !trained[i])) continue;
        memcpy(grads + s->offset, buf + at, s->numel * sizeof(float));
        at += s->numel;
    }
    free(buf);
}

// params.c — named parameter tables (params.h).
#include "trainer/params.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void param_table_init(ParamTable* t) { memset(t, 0, sizeof *t); }

void param_table_free(ParamTable* t) {
    free(t->specs);
    memset(t, 0, sizeof *t);
}

TensorSpec* param_table_add(ParamTable* t, int ndim, const int64_t* shape, const char* name_fmt, ...) {
    if (ndim < 1 || ndim > PARAM_MAX_DIMS) fatal("internal: tensor with %d dims", ndim);
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->specs = xrealloc(t->specs, (size_t)t->cap * sizeof(TensorSpec));
    }
    TensorSpec* s = &t->specs[t->n++];
    memset(s, 0, sizeof *s);
    va_list ap;
    va_start(ap, name_fmt);
    int len = vsnprintf(s->name, sizeof s->name, name_fmt, ap);
    va_end(ap);
    if (len < 0 || len >= (int)sizeof s->name) fatal("internal: tensor name too long: %s", s->name);
    s->ndim = ndim;
    s->numel = 1;
    int big = 0;
    for (int i = 0; i < ndim; i++) {
        s->shape[i] = shape[i];
        s->numel *= (size_t)shape[i];
        big += shape[i] != 1;
    }
    s->offset = t->n_params;
    t->n_params += s->numel;
    s->layer = -1;
    s->tp_dim = -1;
    s->lr_scale = 1.0f;
    s->weight_decay = big >= 2 && strstr(s->name, ".weight") != NULL;
    return s;
}

const TensorSpec* param_table_find(const ParamTable* t, const char* name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->specs[i].name, name) == 0) return &t->specs[i];
    return NULL;
}

float* param_view(const ParamTable* t, float* base, const char* name_fmt, ...) {
    char name[PARAM_NAME_MAX];
    va_list ap;
    va_start(ap, name_fmt);
    vsnprintf(name, sizeof name, name_fmt, ap);
    va_end(ap);
    const TensorSpec* s = param_table_find(t, name);
    if (!s) fatal("internal: no tensor %s in the parameter table", name);
    return base ? base + s->offset : NULL;
}

const char* param_shape_str(const TensorSpec* s, char* buf, size_t len) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < s->ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ", %lld" : "%lld", (long long)s->shape[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

static int same_shape(const TensorSpec* s, const NamedTensor* nt) {
    if (s->ndim != nt->ndim) return 0;
    for (int i = 0; i < s->ndim; i++)
        if (s->shape[i] != nt->shape[i]) return 0;
    return 1;
}

static const char* tensor_shape_str(const NamedTensor* nt, char* buf, size_t len) {
    TensorSpec tmp = {.ndim = nt->ndim > PARAM_MAX_DIMS ? PARAM_MAX_DIMS : nt->ndim};
    for (int i = 0; i < tmp.ndim; i++) tmp.shape[i] = nt->shape[i];
    return param_shape_str(&tmp, buf, len);
}

int param_table_load(const ParamTable* t, float* base, const TensorSet* set, const char* prefix, int strict,
                     const char* file, Error* e) {
    char name[PARAM_NAME_MAX + 64], want[96], got[96];
    size_t plen = strlen(prefix);
    for (int i = 0; i < t->n; i++) {
        const TensorSpec* s = &t->specs[i];
        snprintf(name, sizeof name, "%s%s", prefix, s->name);
        const NamedTensor* nt = tensorset_find(set, name);
        if (!nt) {
            errorf(e, "%s: tensor '%s' is missing (expected shape %s): is this the checkpoint of the configured model?",
                   file, name, param_shape_str(s, want, sizeof want));
            return -1;
        }
        if (!same_shape(s, nt)) {
            errorf(e, "%s: tensor '%s' has shape %s, expected %s: the checkpoint does not match the configured sizes",
                   file, name, tensor_shape_str(nt, got, sizeof got), param_shape_str(s, want, sizeof want));
            return -1;
        }
        if (tensor_to_f32(nt, base + s->offset) != 0) {
            errorf(e, "%s: tensor '%s' has dtype %s, expected a float type", file, name, dtype_name(nt->dtype));
            return -1;
        }
    }
    if (!strict) return 0;
    for (int i = 0; i < set->n; i++) {
        const char* n = set->t[i].name;
        if (strncmp(n, prefix, plen) != 0) continue;
        if (!param_table_find(t, n + plen)) {
            errorf(e, "%s: unexpected tensor '%s' (not part of the configured model): check the model sizes", file, n);
            return -1;
        }
    }
    return 0;
}

void param_table_store(const ParamTable* t, const float* base, TensorSet* out, const char* prefix) {
    char name[PARAM_NAME_MAX + 64];
    for (int i = 0; i < t->n; i++) {
        const TensorSpec* s = &t->specs[i];
        snprintf(name, sizeof name, "%s%s", prefix, s->name);
        tensorset_add(out, name, DT_F32, s->ndim, s->shape, base + s->offset);
    }
}

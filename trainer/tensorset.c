// tensorset.c — an ordered set of named host tensors (see tensorset.h).
//
// Contract: every tensor owns a contiguous row-major little-endian copy of its data; names are unique
// only by convention (tensorset_find returns the first match); dtype conversions to fp32 are exact for
// every float dtype except F64 (rounded to nearest float).
#include "trainer/tensorset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"

size_t dtype_size(DType dt) {
    switch (dt) {
    case DT_F32: return 4;
    case DT_BF16: return 2;
    case DT_F16: return 2;
    case DT_F64: return 8;
    case DT_I32: return 4;
    case DT_I64: return 8;
    case DT_U8: return 1;
    case DT_I8: return 1;
    case DT_I16: return 2;
    case DT_BOOL: return 1;
    }
    return 0;
}

const char* dtype_name(DType dt) {
    switch (dt) {
    case DT_F32: return "F32";
    case DT_BF16: return "BF16";
    case DT_F16: return "F16";
    case DT_F64: return "F64";
    case DT_I32: return "I32";
    case DT_I64: return "I64";
    case DT_U8: return "U8";
    case DT_I8: return "I8";
    case DT_I16: return "I16";
    case DT_BOOL: return "BOOL";
    }
    return "?";
}

int64_t tensor_numel(const NamedTensor* t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t tensor_nbytes(const NamedTensor* t) { return (size_t)tensor_numel(t) * dtype_size(t->dtype); }

void tensorset_init(TensorSet* s) { memset(s, 0, sizeof *s); }

void tensorset_free(TensorSet* s) {
    for (int i = 0; i < s->n; i++) {
        free(s->t[i].name);
        free(s->t[i].data);
    }
    free(s->t);
    free(s->metadata);
    memset(s, 0, sizeof *s);
}

NamedTensor* tensorset_add(TensorSet* s, const char* name, DType dt, int ndim, const int64_t* shape,
                           const void* data) {
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS) fatal("tensorset_add(%s): %d dims (max %d)", name, ndim, TENSOR_MAX_DIMS);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->t = xrealloc(s->t, (size_t)s->cap * sizeof *s->t);
    }
    NamedTensor* t = &s->t[s->n++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    size_t nbytes = tensor_nbytes(t);
    // calloc of at least one byte keeps data non-NULL for empty tensors; large zero-filled
    // allocations stay lazy, so readers can fill them in place without a second copy.
    t->data = xcalloc(nbytes ? nbytes : 1, 1);
    if (data && nbytes) memcpy(t->data, data, nbytes);
    return t;
}

NamedTensor* tensorset_find(const TensorSet* s, const char* name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0) return &s->t[i];
    return NULL;
}

float f16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    int exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ffu;
    float mag;
    if (exp == 0) mag = ldexpf((float)mant, -24);                    // zero and subnormals
    else if (exp == 31) mag = mant ? NAN : INFINITY;
    else mag = ldexpf((float)(mant | 0x400u), exp - 25);             // 1.mant * 2^(exp-15)
    uint32_t u;
    memcpy(&u, &mag, 4);
    u |= sign;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int tensor_to_f32(const NamedTensor* t, float* out) {
    int64_t n = tensor_numel(t);
    const uint8_t* p = t->data;
    uint16_t h;
    double d;
    switch (t->dtype) {
    case DT_F32: memcpy(out, p, (size_t)n * 4); return 0;
    case DT_BF16:
        for (int64_t i = 0; i < n; i++) { memcpy(&h, p + 2 * i, 2); out[i] = bf16_to_float(h); }
        return 0;
    case DT_F16:
        for (int64_t i = 0; i < n; i++) { memcpy(&h, p + 2 * i, 2); out[i] = f16_to_float(h); }
        return 0;
    case DT_F64:
        for (int64_t i = 0; i < n; i++) { memcpy(&d, p + 8 * i, 8); out[i] = (float)d; }
        return 0;
    default: return -1;
    }
}

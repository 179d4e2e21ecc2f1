// tensorset.h — an ordered set of named host tensors: the common currency of the checkpoint formats.
//
// Contract: pth.c and safetensors.c read files into a TensorSet and write a TensorSet out; the model
// copies named tensors in and out of its parameter buffer by their official names
// (`blocks.3.att.key.weight`). Each tensor owns its data (row-major, little-endian, contiguous).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"

typedef enum { DT_F32 = 0, DT_BF16, DT_F16, DT_F64, DT_I32, DT_I64, DT_U8, DT_I8, DT_I16, DT_BOOL } DType;

enum { TENSOR_MAX_DIMS = 8 };

typedef struct NamedTensor {
    char* name;
    DType dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    void* data;     // numel * dtype_size bytes, owned
} NamedTensor;

typedef struct TensorSet {
    NamedTensor* t;
    int n, cap;
    char* metadata;  // optional JSON object text (safetensors "__metadata__"); owned, may be NULL
} TensorSet;

size_t dtype_size(DType dt);
const char* dtype_name(DType dt);   // "F32", "BF16", ... (safetensors spelling)
int64_t tensor_numel(const NamedTensor* t);
size_t tensor_nbytes(const NamedTensor* t);

void tensorset_init(TensorSet* s);
void tensorset_free(TensorSet* s);
// Adds a tensor (copies name, shape and data; data may be NULL for zero-filled). Returns the new tensor.
NamedTensor* tensorset_add(TensorSet* s, const char* name, DType dt, int ndim, const int64_t* shape,
                           const void* data);
NamedTensor* tensorset_find(const TensorSet* s, const char* name);  // NULL if absent
// Converts a tensor of any float dtype (F32/BF16/F16/F64) to fp32 into out (numel floats). -1 if not float.
int tensor_to_f32(const NamedTensor* t, float* out);

float f16_to_float(uint16_t h);    // IEEE half -> float (bf16 helpers are in kernels/bf16.h)

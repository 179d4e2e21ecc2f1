// params.h — named parameter tables: the layout of one module's tensors inside a parameter buffer.
//
// Contract:
// - Every module of the model (the RWKV-7 backbone, each encoder, each projector, the adapters) describes
//   its tensors with a ParamTable: names (official / Hugging Face names, e.g.
//   "vision_model.encoder.layers.0.self_attn.q_proj.weight"), shapes (at most PARAM_MAX_DIMS dims) and
//   offsets in floats relative to the module's base, in the module's buffer order.
// - Modules never own their parameter memory: the caller allocates params (and grads, same layout) with
//   table.n_params floats (the multimodal model puts all modules into ONE buffer, llm.c style) and binds the
//   module's views to it. A NULL gradient base means "frozen": no weight gradient is computed.
// - param_table_load copies tensors from a checkpoint (any float dtype) by name; a missing tensor or one of
//   another shape is an error naming the file, the tensor and the expected shape. Tensors of the file that
//   the table does not know are ignored (an HF checkpoint holds more than the encoder we use: text towers,
//   decoders) unless the caller asks for strictness.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"
#include "trainer/tensorset.h"

enum { PARAM_NAME_MAX = 128, PARAM_MAX_DIMS = 4 };

typedef struct TensorSpec {
    char name[PARAM_NAME_MAX];  // official name, e.g. "blocks.3.att.key.weight"
    int ndim;
    int64_t shape[PARAM_MAX_DIMS];
    size_t offset;              // into the module's parameter (and gradient) buffer, in floats
    size_t numel;
    int layer;                  // block / layer index, -1 for module-level tensors
    int weight_decay;           // 1: the "decay" group (tensors with >= 2 dims of size > 1 named *.weight)
    float lr_scale;             // learning-rate multiplier (RWKV-7: 2 for att.w0), 1 by default
    int unused;                 // 1: never receives gradients (RWKV-7 block-0 att.v0/v1/v2)
    // Tensor parallelism (sharding/tensor_parallel.h): tp_dim >= 0 means this table holds the tp_rank-th of
    // tp_size equal slices of dimension tp_dim of the full tensor (shape[tp_dim] = full / tp_size); -1 means
    // the tensor is replicated on every tp rank. tp_partial (replicated tensors only): each tp rank's
    // gradient is a partial sum that must be summed over the tp group before the update.
    int tp_dim;
    int tp_partial;
} TensorSpec;

typedef struct ParamTable {
    TensorSpec* specs;          // (n) in buffer order
    int n, cap;
    size_t n_params;            // floats
} ParamTable;

void param_table_init(ParamTable* t);
void param_table_free(ParamTable* t);
// Appends a tensor at offset n_params (layer -1, lr_scale 1, weight_decay by the rule above). The name is
// printf-formatted. Returns the new spec (valid until the next add).
TensorSpec* param_table_add(ParamTable* t, int ndim, const int64_t* shape, const char* name_fmt, ...)
    __attribute__((format(printf, 4, 5)));
const TensorSpec* param_table_find(const ParamTable* t, const char* name);   // NULL if absent
// base + offset of the named tensor; base NULL gives NULL (a frozen module's gradient views). A name the
// table lacks is an internal error (fatal).
float* param_view(const ParamTable* t, float* base, const char* name_fmt, ...) __attribute__((format(printf, 3, 4)));

// "[768, 3, 16, 16]" into buf.
const char* param_shape_str(const TensorSpec* s, char* buf, size_t len);

// Copies every tensor of t from set (looked up as prefix + name; prefix may be "") into base, converting to
// fp32. strict: tensors of set under prefix that t lacks are an error too. file names the source in
// messages. Returns 0, or -1 with e = "<file>: tensor '<name>' is missing (expected shape [..]) ..." or
// "<file>: tensor '<name>' has shape [..], expected [..] ...".
int param_table_load(const ParamTable* t, float* base, const TensorSet* set, const char* prefix, int strict,
                     const char* file, Error* e);
// Adds every tensor of t (fp32, named prefix + name) to out.
void param_table_store(const ParamTable* t, const float* base, TensorSet* out, const char* prefix);

// tensor_parallel.h — moving parameter tables between the whole model and a tensor-parallel rank's slice
// (DESIGN.md "Parallelism"; the slicing of each tensor is declared by its spec: params.h tp_dim/tp_partial).
//
// Contract:
// - A "local" table is one tp rank's: a tensor with tp_dim = d >= 0 holds slice tp_rank of tp_size equal
//   slices of dimension d of the tensor of the same name in the "full" table (shape[d] = full / tp_size);
//   tp_dim < 0 tensors are whole copies. Every local name must exist in the full table with a compatible
//   shape (else a fatal internal error: both tables come from the same configuration).
// - Buffers are host memory in each table's layout (parameters, gradients or Adam moments alike).
// - tp_slice_table copies this rank's slices out of a full buffer (no communication): loading a checkpoint
//   of any layout, or sharding a freshly initialised model, gives every rank exactly the values the whole
//   model has.
// - tp_gather_table is collective over the tp group: root receives the whole tensors into full_buf (the other
//   ranks pass NULL for full and full_buf); replicated tensors are taken from root itself.
// - tp_sum_partial_grads sums, over the group, the gradients of the trained tensors with tp_partial set
//   (one all-reduce of their concatenation), leaving the same values on every rank.
#pragma once
#include <stdint.h>

#include "sharding/comm.h"
#include "trainer/params.h"

void tp_slice_table(const ParamTable* local, float* local_buf, const ParamTable* full, const float* full_buf,
                    int tp_rank, int tp_size);
void tp_gather_table(Comm* tp, const ParamTable* local, const float* local_buf, const ParamTable* full,
                     float* full_buf, int root);
void tp_sum_partial_grads(Comm* tp, const ParamTable* local, const uint8_t* trained, float* grads);

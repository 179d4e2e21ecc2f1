// rwkv7_io.h — RWKV-7 parameters <-> named tensors (official checkpoint layout). See rwkv7_io.c.
#pragma once
#include "trainer/rwkv7.h"
#include "trainer/tensorset.h"

// Builds a model whose configuration and weights come from the tensors (any float dtype); `file` names
// the source in messages. Returns NULL with e filled on a missing/unexpected tensor or a wrong shape.
RWKV7* rwkv7_from_tensors(const TensorSet* s, const char* file, Backend* be, Error* e);
// Appends every tensor of the model (from `base`, a buffer with the parameter layout: the parameters,
// gradients or a moment) under its official name and shape, stored as dt (DT_F32 or DT_BF16).
// Block-0 att.v0/v1/v2 are written only if the model has them (m->has_block0_vres). Order: that of the file
// the model was loaded from (so export -> import is bit-exact), else RWKV-LM module order.
void rwkv7_to_tensors(const RWKV7* m, const float* base, DType dt, TensorSet* out);

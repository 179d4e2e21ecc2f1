// safetensors.h — the safetensors checkpoint format (public spec, huggingface/safetensors).
//
// Contract: file = u64 little-endian header size N, N bytes of JSON (an object: tensor name ->
// {"dtype", "shape", "data_offsets": [begin, end]} plus optional "__metadata__": {str: str}), then
// the data buffer. Dtypes: F32 BF16 F16 F64 I64 I32 I16 I8 U8 BOOL. The reader validates everything:
// header size within the file, JSON well-formed, known dtypes, offsets inside the buffer, sizes equal
// to shape x dtype, tensors neither overlapping nor leaving holes; any failure -> -1 with a one-line
// message naming the file (and tensor). Tensors come out in data order; "__metadata__" comes out as
// compact JSON text in TensorSet.metadata. The writer pads the header with spaces to 8 bytes, lays
// tensors out in the set's order and writes atomically (temp + rename); s->metadata, when set, must
// be a JSON object with string values.
#pragma once
#include <stddef.h>

#include "kernels/common.h"
#include "trainer/tensorset.h"

// `out` is initialized by the call (pass an empty or fresh set); on failure it is left empty.
int safetensors_read(const char* path, TensorSet* out, Error* e);
// Same from memory; `name` is used in messages in place of a path.
int safetensors_read_mem(const void* buf, size_t len, const char* name, TensorSet* out, Error* e);
int safetensors_write(const char* path, const TensorSet* s, Error* e);

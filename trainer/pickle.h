// pickle.h — the subset of Python's pickle format that torch.save uses for a state_dict.
//
// Contract: pickle_read_state_dict interprets (never executes) a pickle and accepts only a dict or
// collections.OrderedDict whose keys are strings and whose values are
// torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, meta])
// over persistent-id storages ('storage', torch.<Type>Storage, key, location, numel). Opcodes: those
// of protocol 2 that torch emits plus the protocol-4 FRAME / SHORT_BINUNICODE / MEMOIZE /
// STACK_GLOBAL forms. Any other global or opcode, a truncated stream, or a tensor that reaches outside
// its storage -> -1 with a one-line message naming `name`, the problem and its byte offset. The reader
// does not see storage bytes: the caller checks each storage entry against storage_numel.
// pickle_write_state_dict emits the protocol-2 form that torch.save writes (and torch.load with
// weights_only=True accepts) for the same description.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"
#include "trainer/tensorset.h"

typedef struct PickleTensor {
    char* name;                       // state_dict key, e.g. "blocks.3.att.key.weight"
    DType dtype;                      // from the storage class: torch.FloatStorage -> DT_F32, ...
    char* storage_key;                // persistent-id key: the bytes are in <prefix>/data/<storage_key>
    int64_t storage_numel;            // elements in the storage, as the pickle declares
    int64_t offset;                   // storage_offset, in elements
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS];  // in elements; any non-negative values (views, expands)
} PickleTensor;

typedef struct PickleStateDict {
    PickleTensor* t;  // in the order of the pickle's dict
    int n;
} PickleStateDict;

// Parses buf[0..len) (the bytes of data.pkl). `name` (the file, for messages) may be e.g.
// "model.pth: archive/data.pkl". On success out owns its strings: free with pickle_state_dict_free.
int pickle_read_state_dict(const void* buf, size_t len, const char* name, PickleStateDict* out, Error* e);
void pickle_state_dict_free(PickleStateDict* d);

// Serializes n tensor descriptions as a protocol-2 pickle of an OrderedDict (names in order).
// Returns a malloc'ed buffer of *len bytes.
uint8_t* pickle_write_state_dict(const PickleTensor* t, int n, size_t* len);

// Storage class name used by torch for a dtype ("FloatStorage", ...).
const char* pickle_storage_class(DType dt);

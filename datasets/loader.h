// loader.h — the data-loader interface the trainer consumes (text now; HDF5 shards in their own issue).
//
// Contract: a loader yields batches of B sequences of T tokens with next-token targets; targets < 0
// are masked (not trained). Batches are a deterministic function of (seed, position, dp_rank,
// dp_size): get_position/set_position save and restore it exactly, so resume is bit-exact.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "kernels/common.h"

typedef struct Batch {
    int B, T;
    int32_t* tokens;    // (B, T) model inputs
    int32_t* targets;   // (B, T) next-token targets, -1 = masked
} Batch;

void batch_alloc(Batch* b, int B, int T);
void batch_free(Batch* b);

typedef struct DataLoader DataLoader;
struct DataLoader {
    // Fills b (allocated by the caller with batch_alloc(B, T)). Returns 0 or -1 with e filled.
    int (*next_batch)(DataLoader* dl, Batch* b, Error* e);
    uint64_t (*get_position)(const DataLoader* dl);   // number of samples this rank has consumed
    void (*set_position)(DataLoader* dl, uint64_t pos);
    void (*destroy)(DataLoader* dl);
    uint64_t n_tokens;   // tokens in the underlying stream (for logging and epoch estimates)
    const char* describe; // one line for logs, e.g. "text data/x.txt: 1234567 tokens"
};

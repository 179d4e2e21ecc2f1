// data_parallel.h — data parallelism over one dp communicator: gradient averaging (bucketed all-reduce)
// or ZeRO-1 (reduce-scatter, AdamW on the local shard, all-gather), the global gradient norm across
// shards, and the Adam moments of this rank's shard (DESIGN.md, "Parallelism").
//
// Contract:
// - The caller describes its parameter buffer with a DPTensor table (offsets/numels in floats, in buffer
//   order, non-overlapping) and hands in the parameter and gradient buffers of that layout; sharding/
//   knows nothing of models. The gradient buffer holds this rank's gradients summed over its
//   micro-batches (gradient accumulation is the caller's: reduce once per optimizer step).
// - "Trained space": the trained tensors concatenated in buffer order (frozen/unused tensors are left
//   out, so their gradients are never sent and they get no moments). Positions below are in it.
// - zero = 0: dp_reduce_gradients replaces every trained gradient by its average over the dp ranks,
//   in buckets of about bucket_bytes (default 25 MiB) built in REVERSE tensor order (the order in which
//   the backward pass finishes them; a bucket ends at a tensor boundary unless one tensor is larger than
//   a bucket, which is then split). Every rank holds all moments and updates every trained tensor.
// - zero = 1: the trained space is split into dp contiguous shards of chunk = ceil(n_trained / dp)
//   values (rank r: [r*chunk, r*chunk + len_r), the last ones shorter or empty; nothing is padded in the
//   caller's buffers). dp_reduce_gradients leaves the averaged gradients of this rank's shard in place in
//   the gradient buffer (the rest of the buffer keeps this rank's own unreduced values); dp_update runs
//   AdamW on the shard only and all-gathers the updated parameters into every rank's buffer. Both
//   collectives move windows of about bucket_bytes through staging buffers. m and v have shard_len
//   values only.
// - Determinism: the average of a gradient value is ((g_0 + g_1) + ... + g_{dp-1}) * (1.0f / dp) (comm.h),
//   the same bits for zero 0 and 1, any bucket size and any MPI algorithm; AdamW is elementwise, so the
//   parameters after dp_update equal bit for bit those of one process running AdamW on those averaged
//   gradients with the same grad_scale. The global norm is the same up to the order of double additions
//   (zero 1 sums per shard segment, then over ranks; relative difference ~1e-16).
// - AdamW (kernels' adamw_update) per segment with lr * tensor.lr_scale and weight decay only where
//   tensor.weight_decay; grad_scale (clipping) as computed by the caller from dp_grad_norm.
// - Buffers are the backend's (be->alloc); data movement inside a rank uses be->k.copy/zero. Collective
//   calls; every dp rank must call them in the same order.
#pragma once
#include <stddef.h>

#include "kernels/common.h"
#include "kernels/kernels.h"
#include "sharding/comm.h"

enum { DP_DEFAULT_BUCKET_BYTES = 25 << 20 };

typedef struct DPTensor {
    const char* name;    // for messages (may be NULL)
    size_t offset;       // into the parameter and gradient buffers, in floats
    size_t numel;
    int trained;         // 0: frozen or unused: never reduced, never updated, no moments
    float lr_scale;      // learning-rate multiplier of the tensor's group (RWKV-7: 2 for att.w0, else 1)
    int weight_decay;    // 1: decoupled weight decay applies (RWKV-7: 2-D *.weight)
    int norm_skip;       // 1: left out of dp_grad_norm (a tensor replicated over the tensor-parallel ranks is
                         // counted by tp rank 0 only; the caller sums the squared norms over the tp group)
} DPTensor;

typedef struct DPConfig {
    int zero;            // 0: gradient all-reduce; 1: ZeRO-1
    size_t bucket_bytes; // bucket / window size; 0: DP_DEFAULT_BUCKET_BYTES
} DPConfig;

typedef struct DPAdamW {
    float lr, beta1, beta2, eps;
    float weight_decay;  // applied to tensors with weight_decay = 1
    float grad_scale;    // gradients are multiplied by it first (clipping)
    int step;            // Adam's t for bias correction, >= 1
} DPAdamW;

typedef struct DPRun {   // maximal run of adjacent trained tensors
    size_t offset;       // in the buffer
    size_t begin;        // in trained space
    size_t n;
} DPRun;

typedef struct DPRange {
    size_t begin, end;   // in trained space
} DPRange;

typedef struct DPSegment {  // the part of one trained tensor inside this rank's shard
    int tensor;             // index into the tensor table
    size_t offset;          // in the buffer
    size_t shard_offset;    // in m and v
    size_t n;
} DPSegment;

typedef struct DataParallel {
    Comm* comm;              // the dp group (not owned)
    Backend* be;
    int zero;
    DPTensor* tensors;       // (n_tensors) copy of the caller's table (names not copied)
    int n_tensors;
    size_t n_trained;        // values in trained space
    DPRun* runs;             // (n_runs) buffer <-> trained space
    int n_runs;
    DPRange* buckets;        // (n_buckets) zero 0: all-reduce buckets, reverse order
    int n_buckets;
    size_t bucket_floats;
    size_t chunk;            // zero 1: shard size; zero 0: n_trained
    size_t shard_begin;      // in trained space
    size_t shard_len;
    DPSegment* segments;     // (n_segments) trained tensors cut to the shard, in buffer order
    int n_segments;
    float *m, *v;            // (shard_len) Adam moments (be memory, zero at step 0)
    size_t window;           // zero 1: values per rank per collective
    float *send, *recv;      // staging (be memory)
} DataParallel;

// Validates the table (buffer order, no overlap, zero in {0, 1}) and builds runs, buckets, the shard and
// its segments; allocates m and v. Collective-free. Returns NULL with e filled on a bad table/config.
DataParallel* dp_create(Comm* dp_comm, Backend* be, const DPTensor* tensors, int n_tensors, const DPConfig* cfg,
                        Error* e);
void dp_free(DataParallel* dp);

// zero 0: averages every bucket in place; zero 1: reduce-scatters the averages of this rank's shard.
void dp_reduce_gradients(DataParallel* dp, float* grads);
// zero 0 only: averages bucket b (0 .. n_buckets-1), so a caller can overlap buckets with its backward.
void dp_reduce_bucket(DataParallel* dp, float* grads, int b);
// L2 norm over all trained gradients after dp_reduce_gradients; the same value on every dp rank.
double dp_grad_norm(DataParallel* dp, const float* grads);
// AdamW on this rank's shard, then (zero 1) all-gather of the parameters.
void dp_update(DataParallel* dp, float* params, const float* grads, const DPAdamW* h);

// Moments in the full parameter layout (n_params = the buffer length; untrained tensors' ranges are not
// written), for checkpoints that any dp x zero layout can load. Collective; only root's buffers are
// written (the others may pass NULL).
void dp_gather_moments(DataParallel* dp, float* m_full, float* v_full, int root);
// Loads this rank's shard of moments given in the full parameter layout (every rank passes them).
void dp_load_moments(DataParallel* dp, const float* m_full, const float* v_full);

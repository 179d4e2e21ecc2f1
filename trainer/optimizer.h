// optimizer.h — the RWKV-7 side of AdamW: RWKV's parameter groups for the data-parallel optimizer
// (sharding/data_parallel.h does the update, global-norm clipping and ZeRO-1, on one rank or many), the
// learning-rate schedules (cosine, wsd, constant; linear warmup) and full-layout moment buffers.
//
// Contract: a step with index s (0-based) uses lr = schedule(s) and Adam's bias correction for t = s + 1.
// Group rules (reference/rwkv7.md §5.3): weight decay only on 2-D "*.weight" tensors; att.w0 at 2x lr.
// Tensors marked unused (block-0 att.v0/v1/v2) are never updated and get no moments.
#pragma once
#include <stddef.h>

#include "sharding/data_parallel.h"
#include "trainer/config.h"
#include "trainer/rwkv7.h"

// Adam moments in the parameter layout (checkpoints store them so; the data-parallel optimizer gathers
// its shards into them and loads them back).
typedef struct Optimizer {
    float* m;          // (n_params) first moment
    float* v;          // (n_params) second moment
    int step;          // optimizer steps done
} Optimizer;

void optimizer_init(Optimizer* o, Backend* be, size_t n_params);   // zero moments of n_params floats
void optimizer_free(Optimizer* o, Backend* be);

// Learning rate of step s (0-based) under the config's schedule.
float lr_at_step(const TrainConfig* t, int s);

// The AdamW of the model's trained tensors with RWKV's groups, data parallel over comm (a one-rank comm
// for a single process); zero 1 shards the moments (ZeRO-1). Returns NULL with e filled.
DataParallel* optimizer_create(const RWKV7* model, Comm* comm, int zero, Error* e);
// The same for any parameter table (the multimodal model's combined one): tensors with trained[i] == 0 (or
// marked unused) are frozen: no gradient exchange, no moments. trained NULL: every tensor trains.
DataParallel* optimizer_create_table(const ParamTable* table, const uint8_t* trained, Backend* be, Comm* comm,
                                     int zero, Error* e);
// The AdamW hyper-parameters of one step: lr of the schedule, clipping scale, Adam's t = step (>= 1).
DPAdamW optimizer_step_params(const TrainConfig* t, float lr, float grad_scale, int step);

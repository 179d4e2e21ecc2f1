// train.h — text training of an RWKV-7 model from a Config: the loop behind `modrwkv train`.
//
// Contract: creates/uses the run directory (config.yaml, metrics.jsonl, checkpoints/), builds or loads
// the model (model.init), streams batches from the data loader, and runs AdamW steps with gradient
// accumulation, clipping, the lr schedule, periodic evaluation and atomic checkpoints. With a resume
// checkpoint it continues bit-for-bit where that run stopped. A NaN/Inf loss or gradient stops the run
// with the step number and leaves the last good checkpoint untouched. With several ranks (TrainOptions.comm)
// every rank reads its own slice of the data, gradients are averaged (or reduce-scattered with ZeRO-1) and
// rank 0 alone writes the metrics and checkpoints. Returns 0, or -1 with e filled.
#pragma once
#include "sharding/comm.h"
#include "trainer/config.h"

typedef struct TrainOptions {
    const char* resume;   // NULL: fresh run; "auto": newest checkpoint of the run dir if any; else a path
    int stop_at_step;     // > 0: save a checkpoint and stop after this step (as if preempted)
    int progress;         // 1: one-line progress display (a terminal), 0: plain log lines
    Comm* comm;           // the job's ranks (mpirun -np N: data parallel over all of them); NULL: one rank
} TrainOptions;

int train_run(const Config* cfg, const TrainOptions* opt, Error* e);

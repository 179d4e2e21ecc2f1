// optimizer.h — AdamW over the RWKV-7 parameter buffer with RWKV's parameter groups, global-norm gradient
// clipping and the learning-rate schedules (cosine, wsd, constant; linear warmup).
//
// Contract: moments m and v have the parameter layout (one buffer each, zero at step 0). A step with
// index s (0-based) uses lr = schedule(s) and Adam's bias correction for t = s + 1. Group rules
// (reference/rwkv7.md §5.3): weight decay only on 2-D "*.weight" tensors; att.w0 at 2x lr.
// Tensors marked frozen (or unused, like block-0 att.v0/v1/v2) are not updated.
#pragma once
#include <stddef.h>

#include "trainer/config.h"
#include "trainer/rwkv7.h"

typedef struct Optimizer {
    float* m;          // (n_params) first moment
    float* v;          // (n_params) second moment
    int step;          // optimizer steps done
} Optimizer;

void optimizer_init(Optimizer* o, const RWKV7* model);
void optimizer_free(Optimizer* o, const RWKV7* model);

// Learning rate of step s (0-based) under the config's schedule.
float lr_at_step(const TrainConfig* t, int s);

// Global L2 norm of the gradient buffer (over the tensors that are trained).
double grad_global_norm(const RWKV7* model, const float* grads);

// One AdamW update with the given lr; grads are scaled by grad_scale first (clipping). Increments o->step.
void optimizer_update(Optimizer* o, RWKV7* model, const float* grads, const TrainConfig* t, float lr, float grad_scale);

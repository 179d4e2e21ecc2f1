// optimizer.c — see optimizer.h.
#include "trainer/optimizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void optimizer_init(Optimizer* o, Backend* be, size_t n_params) {
    o->m = be->alloc(be, n_params * sizeof(float));
    o->v = be->alloc(be, n_params * sizeof(float));
    o->step = 0;
}

void optimizer_free(Optimizer* o, Backend* be) {
    be->free(be, o->m);
    be->free(be, o->v);
    o->m = o->v = NULL;
}

float lr_at_step(const TrainConfig* t, int s) {
    double lr = t->lr, progress = t->max_steps > 0 ? (double)s / t->max_steps : 0.0;
    if (progress > 1.0) progress = 1.0;
    if (strcmp(t->schedule, "cosine") == 0 && t->lr > 0) {
        double f = t->lr_final / t->lr;
        lr = t->lr * ((0.5 + f / 2) + (0.5 - f / 2) * cos(M_PI * progress));
    } else if (strcmp(t->schedule, "wsd") == 0) {
        double start = 1.0 - t->wsd_decay_frac;
        if (progress > start && t->wsd_decay_frac > 0) {
            double q = (progress - start) / t->wsd_decay_frac;
            lr = t->lr + (t->lr_final - t->lr) * q;
        }
    }
    if (s < t->warmup_steps) lr *= 0.01 + 0.99 * (double)s / t->warmup_steps;
    return (float)lr;
}

DataParallel* optimizer_create_table(const ParamTable* table, const uint8_t* trained, Backend* be, Comm* comm,
                                     int zero, Error* e) {
    DPTensor* t = xcalloc((size_t)table->n + 1, sizeof(DPTensor));
    for (int i = 0; i < table->n; i++) {
        const TensorSpec* s = &table->specs[i];
        int on = !s->unused && (!trained || trained[i]);
        t[i] = (DPTensor){.name = s->name, .offset = s->offset, .numel = s->numel, .trained = on,
                          .lr_scale = s->lr_scale, .weight_decay = s->weight_decay};
    }
    DPConfig c = {.zero = zero};
    DataParallel* dp = dp_create(comm, be, t, table->n, &c, e);
    free(t);
    return dp;
}

DataParallel* optimizer_create(const RWKV7* model, Comm* comm, int zero, Error* e) {
    ParamTable t = {.specs = model->specs, .n = model->n_tensors, .cap = model->n_tensors, .n_params = model->n_params};
    return optimizer_create_table(&t, NULL, model->be, comm, zero, e);
}

DPAdamW optimizer_step_params(const TrainConfig* t, float lr, float grad_scale, int step) {
    return (DPAdamW){.lr = lr, .beta1 = t->beta1, .beta2 = t->beta2, .eps = t->adam_eps,
                     .weight_decay = t->weight_decay, .grad_scale = grad_scale, .step = step};
}

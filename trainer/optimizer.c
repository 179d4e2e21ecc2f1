// optimizer.c — see optimizer.h.
#include "trainer/optimizer.h"

#include <math.h>
#include <string.h>

void optimizer_init(Optimizer* o, const RWKV7* model) {
    o->m = model->be->alloc(model->be, model->n_params * sizeof(float));
    o->v = model->be->alloc(model->be, model->n_params * sizeof(float));
    o->step = 0;
}

void optimizer_free(Optimizer* o, const RWKV7* model) {
    model->be->free(model->be, o->m);
    model->be->free(model->be, o->v);
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

static int trained(const TensorSpec* s) { return !s->unused; }

double grad_global_norm(const RWKV7* model, const float* grads) {
    Backend* be = model->be;
    double ss = 0.0;
    for (int i = 0; i < model->n_tensors; i++) {
        const TensorSpec* s = &model->specs[i];
        if (trained(s)) ss += be->k.sum_squares(be, grads + s->offset, s->numel);
    }
    return sqrt(ss);
}

void optimizer_update(Optimizer* o, RWKV7* model, const float* grads, const TrainConfig* t, float lr, float grad_scale) {
    Backend* be = model->be;
    o->step++;
    for (int i = 0; i < model->n_tensors; i++) {
        const TensorSpec* s = &model->specs[i];
        if (!trained(s)) continue;
        float wd = s->weight_decay ? t->weight_decay : 0.0f;
        be->k.adamw_update(be, model->params_memory + s->offset, grads + s->offset, o->m + s->offset,
                           o->v + s->offset, s->numel, lr * s->lr_scale, t->beta1, t->beta2, t->adam_eps, wd, o->step,
                           grad_scale);
    }
}

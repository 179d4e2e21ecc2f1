// test_optimizer.c — learning-rate schedules (cosine as RWKV-LM's trainer, wsd, constant; linear warmup
// from 1% of lr) and the AdamW update with RWKV's parameter groups (reference/rwkv7.md §5.3) as training
// runs it (optimizer_create on a one-rank communicator): weight decay only on 2-D *.weight tensors,
// att.w0 at 2x lr, block-0 att.v0/v1/v2 never touched, gradient scaling, the global gradient norm.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/config.h"
#include "trainer/optimizer.h"
#include "trainer/rwkv7_init.h"
#include "tests/testutil.h"

static TrainConfig base_config(const char* schedule) {
    Config c;
    config_defaults(&c);
    TrainConfig t = c.train;
    t.lr = 1e-3f;
    t.lr_final = 1e-4f;
    t.max_steps = 100;
    t.warmup_steps = 10;
    snprintf(t.schedule, sizeof t.schedule, "%s", schedule);
    t.wsd_decay_frac = 0.2f;
    return t;
}

static int check_schedules(void) {
    int f = 0;
    TrainConfig cos_t = base_config("cosine");
    // cosine (RWKV-LM trainer): lr = lr0 [(0.5 + r/2) + (0.5 - r/2) cos(pi p)], r = lr_final / lr0, p = s / max_steps
    float got[5] = {lr_at_step(&cos_t, 0), lr_at_step(&cos_t, 5), lr_at_step(&cos_t, 50), lr_at_step(&cos_t, 100),
                    lr_at_step(&cos_t, 75)};
    double r = 0.1;
    double lr5 = 1e-3 * ((0.5 + r / 2) + (0.5 - r / 2) * cos(M_PI * 0.05));  // before the warmup factor
    float want[5] = {(float)(1e-3 * 0.01), (float)(lr5 * (0.01 + 0.99 * 5 / 10.0)),
                     (float)(1e-3 * ((0.5 + r / 2) + (0.5 - r / 2) * cos(M_PI * 0.5))), 1e-4f,
                     (float)(1e-3 * ((0.5 + r / 2) + (0.5 - r / 2) * cos(M_PI * 0.75)))};
    f += check_close_rel("cosine schedule at steps 0, 5 (warmup), 50, 100, 75", got, want, 5, 1e-5, 1e-9);

    TrainConfig wsd = base_config("wsd");
    float g2[4] = {lr_at_step(&wsd, 20), lr_at_step(&wsd, 80), lr_at_step(&wsd, 90), lr_at_step(&wsd, 100)};
    float w2[4] = {1e-3f, 1e-3f, (float)(1e-3 + (1e-4 - 1e-3) * 0.5), 1e-4f};
    f += check_close_rel("wsd: stable at 20 and 80, halfway down at 90, final at 100", g2, w2, 4, 1e-5, 1e-9);

    TrainConfig cst = base_config("constant");
    float g3[2] = {lr_at_step(&cst, 9), lr_at_step(&cst, 60)};
    float w3[2] = {(float)(1e-3 * (0.01 + 0.99 * 0.9)), 1e-3f};
    f += check_close_rel("constant with warmup: step 9 and step 60", g3, w3, 2, 1e-5, 1e-9);
    return f;
}

// One AdamW step on a small model with a known gradient, checked tensor by tensor against a scalar
// reference of the update with the tensor's group settings.
static int check_groups_update(void) {
    Backend* be = backend_cpu_create(2);
    RWKV7Config c = {.n_layer = 2, .n_embd = 64, .vocab_size = 64, .head_size = 64};
    Error e = {{0}};
    RWKV7* m = rwkv7_create(&c, be, &e);
    if (!m) fatal("%s", e.msg);
    rwkv7_init(m, RWKV7_INIT_RANDOM, 3);
    float* before = malloc(m->n_params * sizeof(float));
    memcpy(before, m->params_memory, m->n_params * sizeof(float));
    float* grads = malloc(m->n_params * sizeof(float));
    TestRng rng;
    test_rng_seed(&rng, 9);
    test_fill_uniform(&rng, grads, m->n_params, -1, 1);
    Comm* self = comm_self_create();
    DataParallel* o = optimizer_create(m, self, 0, &e);
    if (!o) fatal("%s", e.msg);
    TrainConfig t = base_config("constant");
    t.weight_decay = 0.1f;
    t.adam_eps = 1e-8f;
    float lr = 1e-2f, scale = 0.5f;
    DPAdamW h = optimizer_step_params(&t, lr, scale, 1);
    dp_update(o, m->params_memory, grads, &h);
    int f = 0;
    const char* names[] = {"emb.weight", "blocks.1.att.w0", "blocks.1.att.w1", "blocks.0.att.receptance.weight",
                           "blocks.1.ln1.weight", "blocks.0.att.v1"};
    for (int n = 0; n < 6; n++) {
        const TensorSpec* s = rwkv7_find_spec(m, names[n]);
        float* want = malloc(s->numel * sizeof(float));
        for (size_t i = 0; i < s->numel; i++) {
            size_t k = s->offset + i;
            double p = before[k], g = (double)grads[k] * scale;
            // first step of bias-corrected Adam: m_hat = g, v_hat = g^2
            double upd = g / (fabs(g) + t.adam_eps) + (s->weight_decay ? t.weight_decay : 0.0) * p;
            want[i] = s->unused ? (float)p : (float)(p - lr * s->lr_scale * upd);
        }
        char name[128];
        snprintf(name, sizeof name, "AdamW step of %s (weight decay %s, lr x%g%s)", names[n],
                 s->weight_decay ? "on" : "off", s->lr_scale, s->unused ? ", unused: untouched" : "");
        f += check_close_rel(name, m->params_memory + s->offset, want, s->numel, 1e-5, 1e-3);
        free(want);
    }
    double norm = dp_grad_norm(o, grads), ss = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (!m->specs[i].unused)
            for (size_t j = 0; j < m->specs[i].numel; j++) ss += (double)grads[m->specs[i].offset + j] * grads[m->specs[i].offset + j];
    float gn = (float)norm, wn = (float)sqrt(ss);
    f += check_close_rel("global gradient norm over the trained tensors", &gn, &wn, 1, 1e-6, 1e-9);
    dp_free(o);
    comm_free(self);
    free(before);
    free(grads);
    rwkv7_free(m);
    backend_destroy(be);
    return f;
}

int main(void) {
    int f = 0;
    f += check_schedules();
    f += check_groups_update();
    return test_summary("test_optimizer", f);
}

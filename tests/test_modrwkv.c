// test_modrwkv.c — the ModRWKV multimodal model (trainer/modrwkv.h) as a specification:
//   1. assembly re-lays out placeholder runs to the projector's token count and masks feature slots;
//   2. stage 1 (projector only): the backbone and the encoder stay bit-identical, their weight gradients are
//      never computed (the gradient buffer keeps a NaN sentinel there), only the projector gets optimizer
//      state, and the projector changes;
//   3. the projector gradient through encoder -> projector -> backbone matches central finite differences;
//   4. stage 2 with a Bone adapter: the base weights stay bit-identical and only adapter + projector change.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sharding/comm.h"
#include "sharding/data_parallel.h"
#include "tests/testutil.h"
#include "trainer/adapter.h"
#include "trainer/modrwkv.h"
#include "trainer/modrwkv_branch.h"
#include "trainer/optimizer.h"
#include "trainer/rwkv7_init.h"

enum { B = 2, T = 48, S = 16, PATCH = 4, N_IMG = 16, V = 64 };

static void model_config(Config* c, const char* projector, const char* adapter) {
    config_defaults(c);
    ModelConfig* m = &c->model;
    snprintf(m->vision.kind, sizeof m->vision.kind, "siglip");
    m->vision.image_size = S;
    m->vision.patch = PATCH;
    m->vision.width = 16;
    m->vision.layers = 1;
    m->vision.heads = 2;
    m->vision.mlp = 32;
    snprintf(m->projector.kind, sizeof m->projector.kind, "%s", projector);
    m->projector.ratio = 2;
    m->projector.conv_kernel = 3;
    m->projector.conv_stride = 2;
    snprintf(m->adapter.kind, sizeof m->adapter.kind, "%s", adapter);
    m->adapter.r = 8;
}

static ModRWKV* make_model(const char* projector, const char* adapter, Backend* be) {
    Config c;
    model_config(&c, projector, adapter);
    RWKV7Config rc = {.n_layer = 2, .n_embd = 32, .vocab_size = V, .head_size = 16};
    Error e = {{0}};
    RWKV7* lm = rwkv7_create(&rc, be, &e);
    if (!lm) fatal("%s", e.msg);
    rwkv7_init(lm, RWKV7_INIT_RANDOM, 3);
    ModRWKV* m = modrwkv_create(lm, &c.model, 5, &e);
    if (!m) fatal("%s", e.msg);
    return m;
}

// Two rows: 3 text tokens, an image of N_IMG placeholders, then text whose targets are trained.
static ShardBatch* make_batch(TestRng* r) {
    ShardBatch* b = xcalloc(1, sizeof *b);
    b->B = B;
    b->T = T;
    b->tokens = xcalloc((size_t)B * T, sizeof(int32_t));
    b->targets = xcalloc((size_t)B * T, sizeof(int32_t));
    b->n_media = B;
    b->media = xcalloc(B, sizeof(BatchMedia));
    for (int row = 0; row < B; row++) {
        int32_t* tok = b->tokens + row * T;
        int32_t* tgt = b->targets + row * T;
        int len = 3 + N_IMG + 12 + 4 * row;
        for (int c = 0; c < T; c++) {
            int in_img = c >= 3 && c < 3 + N_IMG;
            tok[c] = c >= len ? 0 : in_img ? SHARD_PLACEHOLDER_IMAGE : 1 + (int)(test_rng_uniform(r, 0, V - 1));
            tgt[c] = -1;
        }
        for (int c = 3 + N_IMG; c + 1 < len; c++) tgt[c] = tok[c + 1];
        BatchMedia* it = &b->media[row];
        it->kind = MEDIA_IMAGE_PIXELS;
        it->row = row;
        it->placeholder_pos = 3;
        it->n_placeholder = N_IMG;
        it->ndim = 3;
        it->shape[0] = 3;
        it->shape[1] = it->shape[2] = S;
        it->data = test_random_floats(r, 3 * S * S, -1, 1);
    }
    return b;
}

static int check_assembly(Backend* be, TestRng* r) {
    ModRWKV* m = make_model("conv_mlp", "none", be);
    ShardBatch* src = make_batch(r);
    MMBatch mb;
    modrwkv_assemble(m, src, &mb, B, T);
    int n_out = (N_IMG - 3) / 2 + 1;  // conv (3, 2) over 16 patch tokens
    int ok = mb.item_len[0] == n_out && mb.item_slot[0] == 3 && mb.item_slot[1] == 3;
    for (int c = 3; ok && c < 3 + n_out; c++) ok = mb.tokens[c] == 0 && (c == 2 + n_out || mb.targets[c] == -1);
    // the text after the image follows the slots in the same order, with the same targets
    for (int c = 0; ok && c < 12; c++)
        ok = mb.tokens[3 + n_out + c] == src->tokens[3 + N_IMG + c] && mb.targets[3 + n_out + c] == src->targets[3 + N_IMG + c];
    printf("assembly: %d placeholders -> %d slots (conv 3/2), text shifted by %d\n", N_IMG, n_out, N_IMG - n_out);
    int f = check_true("assembly re-lays out the image run to the projector's token count", ok, "layout differs");
    mmbatch_free(&mb);
    shard_batch_free(src);
    modrwkv_free(m);
    return f;
}

// Runs `steps` AdamW steps on the batch; returns the last loss.
static float train_steps(ModRWKV* m, DataParallel* dp, const MMBatch* mb, int steps, int poison_frozen) {
    Error e = {{0}};
    ModRWKVStep* s = modrwkv_step_create(m, B, T, 1);
    float loss = 0;
    for (int i = 0; i < steps; i++) {
        m->be->k.zero(m->be, m->grads, m->table.n_params);
        if (poison_frozen)
            for (int t = 0; t < m->table.n; t++)
                if (!m->trained[t]) test_poison(m->grads + m->table.specs[t].offset, m->table.specs[t].numel);
        loss = modrwkv_step(m, s, mb, 1.0f, 0, 1, NULL, &e);
        if (isnan(loss)) fatal("step failed: %s", e.msg);
        dp_reduce_gradients(dp, m->grads);
        DPAdamW h = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .grad_scale = 1, .step = i + 1};
        dp_update(dp, m->params, m->grads, &h);
    }
    modrwkv_step_free(m, s);
    return loss;
}

// Compares each group's parameters before/after: must_change groups differ somewhere, others are identical.
static int check_groups(const char* label, const ModRWKV* m, const float* before, int must_change) {
    int f = 0;
    const char* names[] = {"backbone", "adapter", "projector", "vision"};
    int groups[] = {TRAIN_BACKBONE, TRAIN_ADAPTER, TRAIN_PROJECTOR, TRAIN_VISION};
    for (int g = 0; g < 4; g++) {
        size_t n = 0, changed = 0;
        for (int t = 0; t < m->table.n; t++) {
            if (m->module_of[t] != groups[g]) continue;
            const TensorSpec* s = &m->table.specs[t];
            n += s->numel;
            changed += memcmp(before + s->offset, m->params + s->offset, s->numel * sizeof(float)) != 0;
        }
        if (!n) continue;
        char name[160];
        int want = (must_change & groups[g]) != 0;
        snprintf(name, sizeof name, "%s: %s %s", label, names[g], want ? "changes" : "is bit-identical");
        printf("  %s: %zu tensors changed\n", names[g], changed);
        f += check_true(name, want ? changed > 0 : changed == 0, want ? "nothing changed" : "a frozen tensor changed");
    }
    return f;
}

static int check_frozen_grads_untouched(const ModRWKV* m) {
    size_t bad = 0;
    for (int t = 0; t < m->table.n; t++) {
        if (m->trained[t]) continue;
        const TensorSpec* s = &m->table.specs[t];
        for (size_t i = 0; i < s->numel; i++) bad += !isnan(m->grads[s->offset + i]);
    }
    return check_true("frozen tensors get no weight gradient (NaN sentinel untouched)", bad == 0, "a frozen gradient was written");
}

static int check_stage(Backend* be, Comm* self, TestRng* r, const char* adapter, int flags, const char* label) {
    ModRWKV* m = make_model("mlp", adapter, be);
    Error e = {{0}};
    if (modrwkv_set_trainable(m, flags, &e) != 0) fatal("%s", e.msg);
    DataParallel* dp = optimizer_create_table(&m->table, m->trained, be, self, 0, &e);
    if (!dp) fatal("%s", e.msg);
    ShardBatch* src = make_batch(r);
    MMBatch mb;
    modrwkv_assemble(m, src, &mb, B, T);
    float* before = test_copy_floats(m->params, m->table.n_params);
    printf("%s: %zu of %zu parameters trained, %zu with optimizer state\n", label, modrwkv_count(m, 1),
           modrwkv_count(m, 0), dp->n_trained);
    int f = check_true("optimizer state only for the trained tensors", dp->n_trained == modrwkv_count(m, 1), "size differs");
    train_steps(m, dp, &mb, 3, 1);
    f += check_frozen_grads_untouched(m);
    f += check_groups(label, m, before, flags);
    free(before);
    dp_free(dp);
    mmbatch_free(&mb);
    shard_batch_free(src);
    modrwkv_free(m);
    return f;
}

// d loss / d (projector, encoder) weights vs central differences, with the linear projector (no ReLU kink
// that a perturbation of an encoder weight could cross).
static int check_projector_gradient(Backend* be, TestRng* r) {
    ModRWKV* m = make_model("linear", "none", be);
    Error e = {{0}};
    if (modrwkv_set_trainable(m, TRAIN_PROJECTOR | TRAIN_VISION, &e) != 0) fatal("%s", e.msg);
    ShardBatch* src = make_batch(r);
    MMBatch mb;
    modrwkv_assemble(m, src, &mb, B, T);
    ModRWKVStep* s = modrwkv_step_create(m, B, T, 1);
    be->k.zero(be, m->grads, m->table.n_params);
    modrwkv_step(m, s, &mb, 1.0f, 0, 1, NULL, &e);
    int f = 0;
    const char* names[] = {"vision_proj.proj.weight", "vision_proj.proj.bias",
                           "vision.vision_model.encoder.layers.0.mlp.fc1.weight"};
    double worst = 0;
    for (int k = 0; k < 3; k++) {
        const TensorSpec* sp = param_table_find(&m->table, names[k]);
        if (!sp) fatal("no tensor %s", names[k]);
        for (int j = 0; j < 3; j++) {
            size_t i = sp->offset + (size_t)(test_rng_uniform(r, 0, 1) * (float)sp->numel) % sp->numel;
            float keep = m->params[i], h = 3e-3f;
            m->params[i] = keep + h;
            double lp = modrwkv_step(m, s, &mb, 1.0f, 0, 0, NULL, &e);
            m->params[i] = keep - h;
            double lm = modrwkv_step(m, s, &mb, 1.0f, 0, 0, NULL, &e);
            m->params[i] = keep;
            double fd = (lp - lm) / (2 * h), an = m->grads[i];
            double err = fabs(fd - an) / fmax(1e-3, fabs(fd) + fabs(an));
            worst = fmax(worst, err);
            printf("  d loss / d %s[%zu]: analytic %.6e, finite difference %.6e (rel err %.2e)\n", names[k],
                   i - sp->offset, an, fd, err);
        }
    }
    f += check_true("projector and encoder gradients match finite differences (rel err < 2e-2)", worst < 2e-2, "mismatch");
    modrwkv_step_free(m, s);
    mmbatch_free(&mb);
    shard_batch_free(src);
    modrwkv_free(m);
    return f;
}

// The head restricted to the trained rows (rwkv7_set_head_rows) gives the full head's loss and gradients.
static int check_sparse_head(Backend* be, TestRng* r) {
    ModRWKV* m = make_model("mlp", "none", be);
    Error e = {{0}};
    if (modrwkv_set_trainable(m, TRAIN_BACKBONE, &e) != 0) fatal("%s", e.msg);
    RWKV7Acts* a = rwkv7_acts_create(m->lm, B, T, 1);
    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)test_rng_uniform(r, 0, V - 1);
        tgt[i] = i % 3 == 0 ? (int32_t)test_rng_uniform(r, 0, V - 1) : -1;
    }
    float loss[2];
    float* grads[2];
    for (int k = 0; k < 2; k++) {
        be->k.zero(be, m->grads, m->table.n_params);
        rwkv7_set_head_rows(a, k ? tgt : NULL);
        rwkv7_forward(m->lm, a, tok, NULL);
        loss[k] = rwkv7_loss(m->lm, a, tgt, 1.0f, 1, NULL);
        rwkv7_backward(m->lm, a, &m->lm_grads);
        grads[k] = test_copy_floats(m->grads, m->lm->n_params);
    }
    printf("sparse head: loss %.7f (full head %.7f), %d of %d rows through the head\n", loss[1], loss[0],
           a->n_head_rows, B * T);
    int f = check_close_rel("head on trained rows only: loss", &loss[1], &loss[0], 1, 1e-6, 1e-6);
    f += check_rel_to_max("head on trained rows only: every backbone gradient", grads[1], grads[0], m->lm->n_params, 1e-5);
    free(grads[0]);
    free(grads[1]);
    rwkv7_acts_free(m->lm, a);
    modrwkv_free(m);
    return f;
}

int main(void) {
    Backend* be = backend_cpu_create(1);
    Comm* self = comm_self_create();
    TestRng r;
    test_rng_seed(&r, 11);
    int f = 0;
    f += check_assembly(be, &r);
    f += check_sparse_head(be, &r);
    f += check_stage(be, self, &r, "none", TRAIN_PROJECTOR, "stage 1 (projector only)");
    f += check_stage(be, self, &r, "bone", TRAIN_PROJECTOR | TRAIN_ADAPTER, "stage 2 with Bone");
    f += check_stage(be, self, &r, "lora", TRAIN_PROJECTOR | TRAIN_ADAPTER, "stage 2 with LoRA");
    f += check_stage(be, self, &r, "none", TRAIN_PROJECTOR | TRAIN_BACKBONE, "stage 2 full");
    f += check_projector_gradient(be, &r);
    comm_free(self);
    backend_destroy(be);
    return test_summary("test_modrwkv", f);
}

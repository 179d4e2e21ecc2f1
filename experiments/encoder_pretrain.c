// encoder_pretrain.c — an encoder trained from scratch on a classification task (see encoder_pretrain.h).
#include "experiments/encoder_pretrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/shard_loader.h"
#include "datasets/tokenizer.h"
#include "sharding/comm.h"
#include "sharding/data_parallel.h"
#include "trainer/modrwkv_branch.h"
#include "trainer/optimizer.h"
#include "trainer/safetensors.h"

typedef struct Pretrainer {
    const EncoderPretrainOptions* o;
    Backend* be;
    Tokenizer* tok;
    Branch* br;                // encoder + a linear "projector" to n_classes = the per-token classifier
    ParamTable table;          // encoder tensors, then the classifier's
    float *params, *grads;
    Comm* self;
    DataParallel* dp;
} Pretrainer;

// The class of a batch row: its answer text (trained targets up to "\x17", trimmed) among the class names.
static int row_class(const Pretrainer* p, const ShardBatch* b, int row) {
    int32_t ids[64];
    int n = 0;
    const int32_t* tgt = b->targets + (size_t)row * b->T;
    for (int t = 0; t < b->T && n < 64; t++)
        if (tgt[t] >= 0) ids[n++] = tgt[t];
    char* text = NULL;
    size_t len = 0;
    Error e = {{0}};
    if (n == 0 || tokenizer_decode(p->tok, ids, (size_t)n, &text, &len, &e) != 0) return -1;
    char* s = text;
    while (*s == ' ') s++;
    size_t k = strcspn(s, "\x17");
    while (k > 0 && s[k - 1] == ' ') k--;
    int cls = -1;
    for (int c = 0; c < p->o->n_classes && cls < 0; c++)
        if (strlen(p->o->classes[c]) == k && strncmp(s, p->o->classes[c], k) == 0) cls = c;
    free(text);
    return cls;
}

static int setup(Pretrainer* p, Error* e) {
    const EncoderPretrainOptions* o = p->o;
    ModelConfig mc = *o->model;
    snprintf(mc.projector.kind, sizeof mc.projector.kind, "linear");
    Modality mod = strcmp(mc.vision.kind, "none") != 0 ? MOD_VISION : MOD_AUDIO;
    p->be = backend_cpu_create(o->threads);
    p->tok = tokenizer_from_spec(o->tokenizer, e);
    if (!p->tok) return -1;
    p->br = branch_create(mod, &mc, o->n_classes, p->be, NULL, e);
    if (!p->br) return -1;
    param_table_init(&p->table);
    const ParamTable* parts[2] = {branch_encoder_table(p->br), &p->br->proj->table};
    for (int k = 0; k < 2; k++) {
        if (k == 1) p->br->proj_offset = p->table.n_params;
        for (int i = 0; i < parts[k]->n; i++) {
            const TensorSpec* s = &parts[k]->specs[i];
            TensorSpec* d = param_table_add(&p->table, s->ndim, s->shape, "%s", s->name);
            d->unused = s->unused;
        }
    }
    p->br->enc_offset = 0;
    p->params = p->be->alloc(p->be, p->table.n_params * sizeof(float));
    p->grads = p->be->alloc(p->be, p->table.n_params * sizeof(float));
    branch_bind(p->br, p->params, p->grads, p->grads);
    branch_init_random(p->br, o->seed);
    p->self = comm_self_create();
    p->dp = optimizer_create_table(&p->table, NULL, p->be, p->self, 0, e);
    return p->dp ? 0 : -1;
}

static void teardown(Pretrainer* p) {
    if (p->dp) dp_free(p->dp);
    if (p->self) comm_free(p->self);
    branch_free(p->br);
    tokenizer_free(p->tok);
    if (p->be) {
        p->be->free(p->be, p->params);
        p->be->free(p->be, p->grads);
        backend_destroy(p->be);
    }
    param_table_free(&p->table);
}

// Encoder + classifier on n items (one group: all images, or one clip); logits (n, C) = the classifier's
// per-token outputs averaged over tokens; with labels, the cross-entropy (scaled by dloss) is
// back-propagated into the weights. Returns the summed loss; correct[] counts argmax hits.
static double run_group(Pretrainer* p, const ShardBatch* b, const int* items, const int* labels, int n, float dloss,
                        int backward, int* correct, Error* e) {
    Backend* be = p->be;
    int C = p->o->n_classes, n_in = 0, n_real = 0, n_tok = 0;
    float* input = NULL;
    if (branch_prepare_input(be, p->br, b, items, n, &input, &n_in, &n_real, e) != 0) return NAN;
    void* acts = branch_acts_create(p->br, n, n_in, backward);
    const float* enc = branch_forward(p->br, acts, input, n_real, &n_tok);
    ProjectorActs* pa = projector_acts_create(p->br->proj, n, n_tok, backward);
    projector_forward(p->br->proj, pa, enc);  // (n, n_tok, C)
    float* logits = xcalloc((size_t)n * C, sizeof(float));
    for (int j = 0; j < n; j++)
        for (int t = 0; t < n_tok; t++)
            for (int c = 0; c < C; c++) logits[j * C + c] += pa->out[((size_t)j * n_tok + t) * C + c] / (float)n_tok;
    float* losses = xcalloc((size_t)n, sizeof(float));
    float* dlogits = xcalloc((size_t)n * C, sizeof(float));
    be->k.crossentropy_forward_backward(be, losses, dlogits, logits, labels, n, C, dloss, 0.0f);
    double sum = 0;
    for (int j = 0; j < n; j++) {
        int best = 0;
        for (int c = 1; c < C; c++)
            if (logits[j * C + c] > logits[j * C + best]) best = c;
        *correct += best == labels[j];
        sum += losses[j];
    }
    if (backward) {
        float* dout = be->alloc(be, (size_t)n * n_tok * C * sizeof(float));
        for (int j = 0; j < n; j++)
            for (int t = 0; t < n_tok; t++)
                for (int c = 0; c < C; c++) dout[((size_t)j * n_tok + t) * C + c] = dlogits[j * C + c] / (float)n_tok;
        float* denc = be->alloc(be, (size_t)n * n_tok * branch_encoder_dim(p->br) * sizeof(float));
        projector_backward(p->br->proj, pa, dout, denc);
        branch_backward(p->br, acts, denc);
        be->free(be, dout);
        be->free(be, denc);
    }
    free(logits);
    free(losses);
    free(dlogits);
    projector_acts_free(p->br->proj, pa);
    branch_acts_free(p->br, acts);
    be->free(be, input);
    return sum;
}

// The labelled items of a batch (one media item per row), their classes; returns their count.
static int labelled_items(const Pretrainer* p, const ShardBatch* b, int* items, int* labels) {
    int n = 0;
    for (int i = 0; i < b->n_media; i++) {
        int cls = row_class(p, b, b->media[i].row);
        if (cls < 0) continue;
        items[n] = i;
        labels[n++] = cls;
    }
    return n;
}

// Forward (+ backward) over the labelled items of one batch; *n_items and *correct count them.
static double run_batch(Pretrainer* p, const ShardBatch* b, int backward, int* n_items, int* correct, Error* e) {
    int* items = xmalloc(((size_t)b->n_media + 1) * sizeof(int));
    int* labels = xmalloc(((size_t)b->n_media + 1) * sizeof(int));
    int n = labelled_items(p, b, items, labels);
    double loss = 0;
    *n_items = n;
    if (n > 0 && p->br->vit) {
        loss = run_group(p, b, items, labels, n, 1.0f / (float)n, backward, correct, e);
    } else {
        for (int j = 0; j < n && !isnan(loss); j++)
            loss += run_group(p, b, items + j, labels + j, 1, 1.0f / (float)n, backward, correct, e);
    }
    free(items);
    free(labels);
    return loss;
}

static ShardLoader* open_loader(const Pretrainer* p, const char* dir, int shuffle, Error* e) {
    ShardLoaderOptions lo;
    shard_loader_options_default(&lo);
    lo.dir = dir;
    lo.seed = p->o->seed;
    lo.batch_size = p->o->batch_size;
    lo.ctx_len = 4096;
    lo.truncate = 1;
    lo.shuffle_buffer = shuffle ? 1024 : 0;
    lo.image_size = p->br->vit ? p->br->vit->cfg.image_size : 0;
    return shard_loader_open(&lo, e);
}

static float lr_at(const EncoderPretrainOptions* o, int s) {
    int warm = o->steps / 10 > 0 ? o->steps / 10 : 1;
    if (s < warm) return o->lr * (float)(s + 1) / (float)warm;
    double q = (double)(s - warm) / (double)(o->steps - warm > 0 ? o->steps - warm : 1);
    return (float)(o->lr * (0.1 + 0.45 * (1 + cos(M_PI * q))));
}

static int train(Pretrainer* p, EncoderPretrainResult* r, Error* e) {
    ShardLoader* L = open_loader(p, p->o->train_dir, 1, e);
    if (!L) return -1;
    int rc = 0, seen = 0, hits = 0;
    for (int step = 0; step < p->o->steps && rc == 0; step++) {
        ShardBatch* b;
        if (shard_loader_next(L, &b, e) != 0) {
            rc = -1;
            break;
        }
        p->be->k.zero(p->be, p->grads, p->table.n_params);
        int n = 0, correct = 0;
        double loss = run_batch(p, b, 1, &n, &correct, e);
        shard_batch_free(b);
        if (isnan(loss)) rc = -1;
        if (rc != 0 || n == 0) continue;
        dp_reduce_gradients(p->dp, p->grads);
        double norm = dp_grad_norm(p->dp, p->grads);
        DPAdamW h = {.lr = lr_at(p->o, step), .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f,
                     .grad_scale = norm > 1.0 ? (float)(1.0 / norm) : 1.0f, .step = step + 1};
        dp_update(p->dp, p->params, p->grads, &h);
        r->final_loss = loss / n;
        if (step >= p->o->steps - p->o->steps / 10 - 1) {
            seen += n;
            hits += correct;
        }
        if ((step + 1) % (p->o->steps / 10 > 0 ? p->o->steps / 10 : 1) == 0) {
            printf("encoder step %d/%d | loss %.4f | batch accuracy %.2f\n", step + 1, p->o->steps, loss / n,
                   (double)correct / n);
            fflush(stdout);
        }
    }
    r->train_accuracy = seen ? (double)hits / seen : NAN;
    shard_loader_close(L);
    return rc;
}

static int validate(Pretrainer* p, EncoderPretrainResult* r, Error* e) {
    r->val_accuracy = NAN;
    if (!p->o->val_dir) return 0;
    ShardLoader* L = open_loader(p, p->o->val_dir, 0, e);
    if (!L) return -1;
    uint64_t total = shard_loader_epoch_samples(L), taken = 0;
    int rc = 0, seen = 0, hits = 0;
    while (taken < total && rc == 0) {
        ShardBatch* b;
        if (shard_loader_next(L, &b, e) != 0) {
            rc = -1;
            break;
        }
        int n = 0;
        if (isnan(run_batch(p, b, 0, &n, &hits, e))) rc = -1;
        seen += n;
        taken += (uint64_t)b->n_samples;
        shard_batch_free(b);
    }
    shard_loader_close(L);
    r->val_accuracy = seen ? (double)hits / seen : NAN;
    r->val_samples = seen;
    return rc;
}

static int save(Pretrainer* p, Error* e) {
    TensorSet ts;
    tensorset_init(&ts);
    param_table_store(branch_encoder_table(p->br), p->params, &ts, p->br->prefix);
    int rc = safetensors_write(p->o->out_path, &ts, e);
    tensorset_free(&ts);
    return rc;
}

int encoder_pretrain(const EncoderPretrainOptions* o, EncoderPretrainResult* r, Error* e) {
    Pretrainer p;
    memset(&p, 0, sizeof p);
    memset(r, 0, sizeof *r);
    p.o = o;
    double t0 = now_seconds();
    int rc = setup(&p, e);
    if (rc == 0) rc = train(&p, r, e);
    if (rc == 0) rc = validate(&p, r, e);
    if (rc == 0) rc = save(&p, e);
    r->seconds = now_seconds() - t0;
    teardown(&p);
    return rc;
}

// train.c — the training loop (see train.h).
#include "trainer/train.h"

#include <inttypes.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "datasets/shard_loader.h"
#include "datasets/textloader.h"
#include "datasets/tokenizer.h"
#include "sharding/comm.h"
#include "sharding/data_parallel.h"
#include "sharding/groups.h"
#include "sharding/tensor_parallel.h"
#include "trainer/checkpoint.h"
#include "trainer/checkpoint_sharded.h"
#include "trainer/modrwkv.h"
#include "trainer/optimizer.h"
#include "trainer/rwkv7_init.h"

typedef struct TrainRun {
    const Config* cfg;
    const TrainOptions* opt;
    char* config_yaml;
    Backend* be;
    Tokenizer* tok;
    TokenStream *train_stream, *val_stream;
    DataLoader* loader;      // training batches
    DataLoader* eval_loader; // validation batches (NULL: no validation data); rewound before every evaluation
    RWKV7* model;            // the backbone (owned by mm)
    ModRWKV* mm;             // backbone + adapter + encoders + projectors in one buffer (this rank's tp slice)
    ModRWKV* full_mm;        // tp > 1: the whole model, kept by world rank 0 for checkpoints (NULL elsewhere)
    ShardLoader* media_loader;  // multimodal batches (media models); then loader/eval_loader are NULL
    ShardLoader* media_eval;
    ModRWKVStep* step;       // activations of one micro-batch
    Comm* comm;              // every rank of the job; not owned
    int rank, world;         // this rank in the job and the number of ranks
    ProcessGroups groups;    // dp x tp: the tensor-parallel group (one model replica) and the data-parallel one
    Comm* self_comm;         // owned when the caller gave no communicator
    DataParallel* dp;        // gradient averaging / ZeRO-1 and the (sharded) AdamW moments
    float* grads;            // (mm->table.n_params) gradient buffer (owned by mm)
    Batch batch;
    TrainState st;
    FILE* metrics;
    int line_open;           // a progress line without its newline is on the terminal
} TrainRun;

// Ends the terminal's progress line (if any) so that the next message starts on its own line.
static void close_progress_line(TrainRun* r) {
    if (r->line_open) printf("\n");
    r->line_open = 0;
}

// ---------------------------------------------------------------------------------------------------- set-up

// A directory holding manifest.json: an HDF5 shard dataset (datasets/FORMAT.md).
static int is_shard_dir(const char* path) {
    char m[CONFIG_PATH_MAX + 32];
    struct stat st;
    snprintf(m, sizeof m, "%s/manifest.json", path);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && stat(m, &st) == 0;
}

// The shard loader options of the training data (this rank's slice, shuffled, long samples cut at ctx_len).
static ShardLoaderOptions train_loader_options(const TrainRun* r) {
    ShardLoaderOptions o;
    shard_loader_options_default(&o);
    o.dir = r->cfg->data.train;
    o.seed = r->cfg->train.seed;
    o.dp_rank = r->groups.dp_rank;  // the tp ranks of a replica read the same samples
    o.dp_size = r->groups.dp_size;
    o.batch_size = r->cfg->train.micro_batch;
    o.ctx_len = r->cfg->train.ctx_len;
    o.truncate = 1;
    return o;
}

// The same options turned to the validation data: unshuffled, and every rank evaluates the same batches
// (identical results on every rank).
static void to_validation(ShardLoaderOptions* o, const DataConfig* d) {
    o->dir = d->val;
    o->shuffle_buffer = 0;
    o->dp_rank = 0;
    o->dp_size = 1;
}

// Text batches from shard datasets: shuffled, packed training rows; unshuffled validation rows.
static int open_shards(TrainRun* r, Error* e) {
    const DataConfig* d = &r->cfg->data;
    ShardLoaderOptions o = train_loader_options(r);
    o.pack = 1;
    r->loader = shard_loader_text_adapter(&o, e);
    if (!r->loader) return -1;
    printf("data: shards %s\n", d->train);
    if (!d->val[0]) {
        if (d->val_fraction > 0) printf("data: no data.val given for shard data: validation is off\n");
        return 0;
    }
    to_validation(&o, d);
    r->eval_loader = shard_loader_text_adapter(&o, e);
    return r->eval_loader ? 0 : -1;
}

static int config_has_media(const ModelConfig* mc) {
    return strcmp(mc->vision.kind, "none") != 0 || strcmp(mc->audio.kind, "none") != 0 || strcmp(mc->ts.kind, "none") != 0;
}

// Multimodal batches straight from the shard loader: chat samples one per row (not packed), images
// preprocessed to the vision encoder's size; the rows are re-laid out by modrwkv_assemble.
static int open_media_shards(TrainRun* r, Error* e) {
    const DataConfig* d = &r->cfg->data;
    if (!is_shard_dir(d->train))
        return errorf(e, "%s: a model with encoders trains on a shard dataset (a directory with manifest.json): "
                         "convert the data with `modrwkv data convert`", d->train);
    ShardLoaderOptions o = train_loader_options(r);
    o.image_size = strcmp(r->cfg->model.vision.kind, "none") != 0 ? r->cfg->model.vision.image_size : 0;
    r->media_loader = shard_loader_open(&o, e);
    if (!r->media_loader) return -1;
    printf("data: %s\n", shard_loader_describe(r->media_loader));
    if (!d->val[0]) return 0;
    to_validation(&o, d);
    r->media_eval = shard_loader_open(&o, e);
    return r->media_eval ? 0 : -1;
}

static uint64_t media_position(const ShardLoader* L) {
    ShardPosition p = shard_loader_get_position(L);
    return p.epoch * shard_loader_epoch_samples(L) + p.index;
}

static int set_media_position(ShardLoader* L, uint64_t samples, Error* e) {
    uint64_t E = shard_loader_epoch_samples(L);
    ShardPosition p = {samples / E, samples % E};
    return shard_loader_set_position(L, p, e);
}

static int open_data(TrainRun* r, Error* e) {
    const DataConfig* d = &r->cfg->data;
    r->tok = tokenizer_from_spec(d->tokenizer, e);
    if (!r->tok) return -1;
    if (config_has_media(&r->cfg->model)) return open_media_shards(r, e);
    if (strcmp(d->format, "shards") == 0 || (strcmp(d->format, "auto") == 0 && is_shard_dir(d->train)))
        return open_shards(r, e);
    if (is_shard_dir(d->train))
        return errorf(e, "%s is a shard dataset (manifest.json) but data.format is %s: set data.format to shards or auto",
                      d->train, d->format);
    if (tokenstream_open(&r->train_stream, d->train, d->format, d->jsonl_key, r->tok, e) != 0) return -1;
    size_t n = tokenstream_len(r->train_stream), train_end = n;
    int ctx = r->cfg->train.ctx_len;
    if (d->val[0]) {
        if (tokenstream_open(&r->val_stream, d->val, d->format, d->jsonl_key, r->tok, e) != 0) return -1;
        r->eval_loader = textloader_create_eval(r->val_stream, 0, tokenstream_len(r->val_stream), ctx, e);
        if (!r->eval_loader) return -1;
    } else if (d->val_fraction > 0) {
        train_end = (size_t)((double)n * (1.0 - d->val_fraction));
        r->eval_loader = textloader_create_eval(r->train_stream, train_end, n, ctx, e);
        if (!r->eval_loader)
            return errorf(e, "%s: the validation split (data.val_fraction %g) has %zu tokens, too few for train.ctx_len %d: "
                             "raise data.val_fraction, set data.val, or set data.val_fraction: 0",
                          d->train, d->val_fraction, n - train_end, ctx);
    }
    printf("data: %s\n", tokenstream_describe(r->train_stream));
    r->loader = textloader_create_train(r->train_stream, 0, train_end, ctx, r->groups.dp_rank, r->groups.dp_size, e);
    return r->loader ? 0 : -1;
}

// Parameters of the whole model (all, or trained only), counting every tp slice once per rank of the group.
static size_t count_params(const TrainRun* r, int trained_only) {
    size_t n = 0;
    for (int i = 0; i < r->mm->table.n; i++) {
        const TensorSpec* s = &r->mm->table.specs[i];
        if (!trained_only || r->mm->trained[i]) n += s->numel * (s->tp_dim >= 0 ? (size_t)r->groups.tp_size : 1);
    }
    return n;
}

static int build_model(TrainRun* r, Error* e) {
    const ModelConfig* mc = &r->cfg->model;
    int tok_vocab = tokenizer_vocab_size(r->tok);
    if (strcmp(mc->init, "official") == 0 || strcmp(mc->init, "random") == 0) {
        RWKV7Config c = {.n_layer = mc->n_layer, .n_embd = mc->n_embd, .head_size = mc->head_size,
                         .vocab_size = mc->vocab_size > 0 ? mc->vocab_size : tok_vocab, .d_decay = mc->lora_decay,
                         .d_a = mc->lora_a, .d_value = mc->lora_value, .d_gate = mc->lora_gate};
        r->model = rwkv7_create(&c, r->be, e);
        if (!r->model) return -1;
        rwkv7_init(r->model, strcmp(mc->init, "official") == 0 ? RWKV7_INIT_OFFICIAL : RWKV7_INIT_RANDOM,
                   r->cfg->train.seed);
    } else {
        r->model = model_load_file(mc->init, r->be, NULL, e);
        if (!r->model) return -1;
    }
    if (r->model->cfg.vocab_size < tok_vocab)
        return errorf(e, "model vocabulary %d is smaller than the tokenizer's %d (%s): set model.vocab_size or data.tokenizer",
                      r->model->cfg.vocab_size, tok_vocab, tokenizer_name(r->tok));
    const RWKV7Config* c = &r->model->cfg;
    printf("model: RWKV-7 L%d C%d V%d head %d (LoRA %d/%d/%d/%d), %.2fM parameters, init %s\n", c->n_layer, c->n_embd,
           c->vocab_size, c->head_size, c->d_decay, c->d_a, c->d_value, c->d_gate, r->model->n_params / 1e6, mc->init);
    r->mm = modrwkv_create(r->model, mc, r->cfg->train.seed, e);
    if (!r->mm) {
        r->model = NULL;  // freed with the failed multimodal model
        return -1;
    }
    if (r->groups.tp_size > 1) {  // every rank built the whole model the same way; keep this rank's slice
        r->full_mm = r->mm;
        r->mm = modrwkv_shard(r->full_mm, mc, r->groups.tp, e);
        r->model = r->mm ? r->mm->lm : NULL;
        if (!r->mm) return -1;
        printf("model: tensor parallel over %d ranks: %d of %d heads, %d of %d FFN units, %d of %d vocabulary rows per "
               "rank\n", r->groups.tp_size, r->model->n_head_local, c->n_embd / c->head_size, r->model->f_local,
               c->dim_ffn, r->model->v_local, c->vocab_size);
    }
    int flags = modrwkv_default_trainable(mc, r->cfg->train.stage);
    if (r->cfg->train.trainable[0] && modrwkv_parse_trainable(r->cfg->train.trainable, &flags, e) != 0) return -1;
    if (modrwkv_set_trainable(r->mm, flags, e) != 0) return -1;
    r->grads = r->mm->grads;
    if (modrwkv_has_media(r->mm) || r->mm->adapter || flags != TRAIN_BACKBONE)
        printf("model: %.2fM parameters in all, %.2fM trained (train.stage %d)\n", count_params(r, 0) / 1e6,
               count_params(r, 1) / 1e6, r->cfg->train.stage);
    return 0;
}

// Keeps only the metrics lines of steps <= step (a resumed run continues one consistent history).
static void truncate_metrics(const char* path, int step) {
    size_t len = 0;
    char* text = read_file(path, &len, NULL);
    if (!text) return;
    FILE* f = fopen(path, "w");
    for (char* line = strtok(text, "\n"); f && line; line = strtok(NULL, "\n")) {
        const char* s = strstr(line, "\"step\":");
        if (s && atoi(s + 7) > step) continue;
        fprintf(f, "%s\n", line);
    }
    if (f) fclose(f);
    free(text);
}

// Restores weights, moments and state from a checkpoint of any layout: it holds the whole model (full
// parameter layout); under tensor parallelism it is read into the whole model and every rank takes its slices.
static int load_checkpoint(TrainRun* r, const char* path, char** stored, Error* e) {
    const ModRWKV* whole = r->full_mm ? r->full_mm : r->mm;
    Optimizer full;  // the checkpoint's moments in the whole model's layout
    optimizer_init(&full, r->be, whole->table.n_params);
    int rc = checkpoint_load(path, whole->lm, &whole->table, &full, &r->st, stored, e);
    if (rc == 0 && r->full_mm) {
        Optimizer mine;  // this rank's slices of them
        optimizer_init(&mine, r->be, r->mm->table.n_params);
        int tp_rank = r->groups.tp_rank, tp = r->groups.tp_size;
        tp_slice_table(&r->mm->table, r->mm->params, &whole->table, whole->params, tp_rank, tp);
        tp_slice_table(&r->mm->table, mine.m, &whole->table, full.m, tp_rank, tp);
        tp_slice_table(&r->mm->table, mine.v, &whole->table, full.v, tp_rank, tp);
        dp_load_moments(r->dp, mine.m, mine.v);
        optimizer_free(&mine, r->be);
    } else if (rc == 0) {
        dp_load_moments(r->dp, full.m, full.v);
    }
    optimizer_free(&full, r->be);
    return rc;
}

static int resume(TrainRun* r, Error* e) {
    const char* want = r->opt->resume;
    if (!want) return 0;
    char* path = strcmp(want, "auto") == 0 ? checkpoint_latest(r->cfg->run_dir) : xstrdup(want);
    if (!path) {
        printf("resume: no checkpoint in %s/checkpoints yet, starting fresh\n", r->cfg->run_dir);
        return 0;
    }
    char* stored = NULL;
    int rc = load_checkpoint(r, path, &stored, e);
    if (rc == 0) {
        if (stored && strcmp(stored, r->config_yaml) != 0)
            printf("resume: warning: the configuration differs from the one stored in %s; the run will not repeat exactly\n", path);
        // the checkpoint counts samples of the whole job; every data-parallel rank has taken an equal share
        uint64_t dp = (uint64_t)r->groups.dp_size;
        if (r->st.loader_position % dp != 0) {
            errorf(e, "%s: the data position (%" PRIu64 " samples) does not split over %d data-parallel ranks: resume "
                      "with a data-parallel size that divides it", path, r->st.loader_position, r->groups.dp_size);
            rc = -1;
        } else if (r->media_loader) {
            rc = set_media_position(r->media_loader, r->st.loader_position / dp, e);
        } else {
            r->loader->set_position(r->loader, r->st.loader_position / dp);
        }
        printf("resume: %s (step %d, %" PRIu64 " tokens seen)\n", path, r->st.step, r->st.tokens_seen);
    }
    free(stored);
    free(path);
    return rc;
}

// Ranks and communicator: the caller's (mpirun), or a world of one rank.
static int setup_ranks(TrainRun* r, Error* e) {
    const ParallelConfig* p = &r->cfg->parallel;
    r->comm = r->opt->comm;
    if (!r->comm) r->comm = r->self_comm = comm_self_create();
    r->rank = comm_rank(r->comm);
    r->world = comm_size(r->comm);
    comm_set_timeout(r->comm, p->timeout_s);  // before the split: the groups inherit it
    if (groups_create(&r->groups, r->comm, p->tp, p->dp, e) != 0) return -1;
    if (r->rank != 0 && !freopen("/dev/null", "w", stdout))  // rank 0 speaks for the job
        return errorf(e, "rank %d: cannot silence its standard output", r->rank);
    return 0;
}

static int setup(TrainRun* r, Error* e) {
    const Config* cfg = r->cfg;
    char path[CONFIG_PATH_MAX + 64];
    if (setup_ranks(r, e) != 0) return -1;
    snprintf(path, sizeof path, "%s/checkpoints", cfg->run_dir);
    if (mkdir_p(path, e) != 0) return -1;
    r->config_yaml = config_to_yaml(cfg);
    snprintf(path, sizeof path, "%s/config.yaml", cfg->run_dir);
    if (r->rank == 0 && write_file_atomic(path, r->config_yaml, strlen(r->config_yaml), e) != 0) return -1;
    r->be = backend_cpu_create(cfg->train.threads);
    if (open_data(r, e) != 0 || build_model(r, e) != 0 ||
        !(r->dp = optimizer_create_table(&r->mm->table, r->mm->trained, r->be, r->groups.dp, cfg->parallel.zero, e)))
        return -1;
    for (int i = 0; i < r->mm->table.n && r->groups.tp_rank != 0; i++)  // replicated tensors: counted once in the
        r->dp->tensors[i].norm_skip = r->mm->table.specs[i].tp_dim < 0;  // norm (by tp rank 0)
    rng_seed(&r->st.rng, cfg->train.seed);
    if (resume(r, e) != 0) return -1;
    if (r->full_mm && r->rank != 0) {  // only rank 0 writes checkpoints
        modrwkv_free(r->full_mm);
        r->full_mm = NULL;
    }
    r->step = modrwkv_step_create(r->mm, cfg->train.micro_batch, cfg->train.ctx_len, 1);
    batch_alloc(&r->batch, cfg->train.micro_batch, cfg->train.ctx_len);
    if (r->rank != 0) return 0;  // rank 0 writes the metrics
    snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->run_dir);
    truncate_metrics(path, r->st.step);
    r->metrics = fopen(path, "a");
    if (!r->metrics) return errorf(e, "%s: cannot open for appending: check the run directory is writable", path);
    return 0;
}

static void teardown(TrainRun* r) {
    if (r->metrics) fclose(r->metrics);
    batch_free(&r->batch);
    if (r->mm) {
        modrwkv_step_free(r->mm, r->step);
        modrwkv_free(r->mm);
        modrwkv_free(r->full_mm);
    } else if (r->full_mm) {
        modrwkv_free(r->full_mm);
    } else {
        rwkv7_free(r->model);
    }
    dp_free(r->dp);
    if (r->media_loader) shard_loader_close(r->media_loader);
    if (r->media_eval) shard_loader_close(r->media_eval);
    if (r->loader) r->loader->destroy(r->loader);
    if (r->eval_loader) r->eval_loader->destroy(r->eval_loader);
    tokenstream_free(r->train_stream);
    tokenstream_free(r->val_stream);
    tokenizer_free(r->tok);
    if (r->be) backend_destroy(r->be);
    free(r->config_yaml);
    groups_free(&r->groups);
    if (r->self_comm) comm_free(r->self_comm);
}

// ---------------------------------------------------------------------------------------------------- steps

// Mean validation loss over the same eval_batches batches every time (*val = NAN without validation data).
// The next micro-batch of either loader as an assembled MMBatch (*held: the shard batch to free after use).
static int next_mmbatch(TrainRun* r, DataLoader* text, ShardLoader* media, MMBatch* mb, ShardBatch** held, Error* e) {
    *held = NULL;
    if (media) {
        if (shard_loader_next(media, held, e) != 0) return -1;
        modrwkv_assemble(r->mm, *held, mb, r->batch.B, r->batch.T);
        return 0;
    }
    if (text->next_batch(text, &r->batch, e) != 0) return -1;
    memset(mb, 0, sizeof *mb);
    mb->B = r->batch.B;
    mb->T = r->batch.T;
    mb->tokens = r->batch.tokens;
    mb->targets = r->batch.targets;
    return 0;
}

static void release_mmbatch(MMBatch* mb, ShardBatch* held) {
    if (!held) return;  // text batches point into r->batch
    mmbatch_free(mb);
    shard_batch_free(held);
}

// One micro-batch through the model: the loss (weighted mean over trained targets) and, with backward,
// gradients accumulated into r->grads.
static int run_micro(TrainRun* r, DataLoader* text, ShardLoader* media, float dloss, int l2wrap, int backward,
                     double* loss, Error* e) {
    MMBatch mb;
    ShardBatch* held;
    if (next_mmbatch(r, text, media, &mb, &held, e) != 0) return -1;
    e->msg[0] = 0;
    *loss = modrwkv_step(r->mm, r->step, &mb, dloss, l2wrap, backward, NULL, e);
    int bad = isnan(*loss) && e->msg[0];
    release_mmbatch(&mb, held);
    return bad ? -1 : 0;
}

static int evaluate(TrainRun* r, double* val, Error* e) {
    *val = NAN;
    if (!r->eval_loader && !r->media_eval) return 0;
    if (r->eval_loader) r->eval_loader->set_position(r->eval_loader, 0);
    if (r->media_eval && set_media_position(r->media_eval, 0, e) != 0) return -1;
    double sum = 0;
    for (int i = 0; i < r->cfg->train.eval_batches; i++) {
        double l;
        if (run_micro(r, r->eval_loader, r->media_eval, 1.0f, 0, 0, &l, e) != 0) return -1;
        sum += l;
    }
    *val = sum / r->cfg->train.eval_batches;
    return 0;
}

// One optimizer step: accumulate gradients over grad_accum micro-batches, clip, update.
// Returns 0, or -1 on a data error or a non-finite loss/gradient (e says which step).
static int train_step(TrainRun* r, float* loss_out, double* norm_out, float* lr_out, Error* e) {
    const TrainConfig* t = &r->cfg->train;
    Backend* be = r->be;
    be->k.zero(be, r->grads, r->mm->table.n_params);
    double loss = 0;
    for (int micro = 0; micro < t->grad_accum; micro++) {
        double l;
        if (run_micro(r, r->loader, r->media_loader, 1.0f / t->grad_accum, t->l2wrap, 1, &l, e) != 0) return -1;
        loss += l;
    }
    loss = comm_all_reduce_double(r->comm, loss / t->grad_accum, COMM_AVG);  // the mean over all ranks' batches
    if (r->groups.tp_size > 1) tp_sum_partial_grads(r->groups.tp, &r->mm->table, r->mm->trained, r->grads);
    dp_reduce_gradients(r->dp, r->grads);  // average over the data-parallel ranks (ZeRO-1: this rank's shard)
    double norm = dp_grad_norm(r->dp, r->grads);
    if (r->groups.tp_size > 1) norm = sqrt(comm_all_reduce_double(r->groups.tp, norm * norm, COMM_SUM));
    if (!isfinite(loss) || !isfinite(norm)) {
        char* last = checkpoint_latest(r->cfg->run_dir);
        errorf(e, "step %d: %s is %s; stopping without saving. The last good checkpoint is %s: lower train.lr or "
                  "check the data, then resume with --resume auto",
               r->st.step + 1, isfinite(loss) ? "the gradient norm" : "the loss", isnan(loss) || isnan(norm) ? "NaN" : "infinite",
               last ? last : "(none yet)");
        free(last);
        return -1;
    }
    float scale = t->grad_clip > 0 && norm > t->grad_clip ? (float)(t->grad_clip / norm) : 1.0f;
    float lr = lr_at_step(t, r->st.step);
    DPAdamW h = optimizer_step_params(t, lr, scale, r->st.step + 1);
    dp_update(r->dp, r->mm->params, r->grads, &h);
    r->st.step++;
    r->st.tokens_seen += (uint64_t)r->groups.dp_size * t->grad_accum * r->batch.B * r->batch.T;
    uint64_t pos = r->media_loader ? media_position(r->media_loader) : r->loader->get_position(r->loader);
    r->st.loader_position = pos * (uint64_t)r->groups.dp_size;  // samples of the whole job
    *loss_out = (float)loss;
    *norm_out = norm;
    *lr_out = lr;
    return 0;
}

// Gathers the whole model's moments (and, under tensor parallelism, its parameters) onto rank 0 in the full
// parameter layout, so that any dp x tp layout can resume the checkpoint. *whole receives the moments on
// rank 0 (the caller frees them). Collective.
static void gather_state(TrainRun* r, Optimizer* whole) {
    Optimizer mine = {0};  // this tp slice's moments in its layout, on dp rank 0 of the slice
    int slice_root = r->groups.dp_rank == 0;
    if (slice_root) optimizer_init(&mine, r->be, r->mm->table.n_params);
    dp_gather_moments(r->dp, mine.m, mine.v, 0);
    if (!r->full_mm && r->groups.tp_size == 1) {
        *whole = mine;
        return;
    }
    if (slice_root) {  // the tp group of dp rank 0, rooted at world rank 0 (which holds full_mm)
        const ModRWKV* out = r->full_mm;
        const ParamTable* full = out ? &out->table : NULL;
        if (out) optimizer_init(whole, r->be, out->table.n_params);
        Comm* tp = r->groups.tp;
        tp_gather_table(tp, &r->mm->table, r->mm->params, full, out ? out->params : NULL, 0);
        tp_gather_table(tp, &r->mm->table, mine.m, full, whole->m, 0);
        tp_gather_table(tp, &r->mm->table, mine.v, full, whole->v, 0);
        optimizer_free(&mine, r->be);
    }
}

// The pieces this rank contributes to a sharded checkpoint: its tp slice of every tensor (dp rank 0 of the
// slice writes them: the dp ranks hold the same values), and its Adam moments (ZeRO-1: this rank's shard of
// the slice's trained tensors; without ZeRO dp rank 0 writes all of them). Rank 0 declares every tensor.
static void add_shard_pieces(TrainRun* r, CkptWriter* w) {
    const ParamTable* t = &r->mm->table;
    int P = r->groups.tp_size, part = r->groups.tp_rank;
    char name[PARAM_NAME_MAX + 32];
    for (int i = 0; i < t->n && r->groups.dp_rank == 0; i++) {
        const TensorSpec* s = &t->specs[i];
        int parts = s->tp_dim >= 0 ? P : 1;
        if (parts == 1 && part != 0) continue;  // replicated: tp rank 0's copy
        ckpt_writer_add(w, s->name, s->ndim, s->shape, s->tp_dim, parts == 1 ? 0 : part, parts, 0, s->numel,
                         r->mm->params + s->offset);
    }
    for (int k = 0; k < r->dp->n_segments && (r->dp->zero || r->groups.dp_rank == 0); k++) {
        const DPSegment* g = &r->dp->segments[k];
        const TensorSpec* s = &t->specs[g->tensor];
        int parts = s->tp_dim >= 0 ? P : 1;
        if (parts == 1 && part != 0) continue;
        const float* moments[2] = {r->dp->m + g->shard_offset, r->dp->v + g->shard_offset};
        for (int j = 0; j < 2; j++) {
            snprintf(name, sizeof name, "optimizer.%s.%s", j ? "exp_avg_sq" : "exp_avg", s->name);
            ckpt_writer_add(w, name, s->ndim, s->shape, s->tp_dim, parts == 1 ? 0 : part, parts, g->offset - s->offset,
                             g->n, moments[j]);
        }
    }
    for (int i = 0; i < t->n && r->rank == 0; i++) {
        const TensorSpec* s = &t->specs[i];
        int64_t shape[PARAM_MAX_DIMS];
        memcpy(shape, s->shape, sizeof shape);
        if (s->tp_dim >= 0) shape[s->tp_dim] *= P;
        size_t numel = s->numel * (s->tp_dim >= 0 ? (size_t)P : 1);
        ckpt_writer_declare(w, s->name, s->ndim, shape, numel);
        for (int j = 0; j < 2; j++) {
            snprintf(name, sizeof name, "optimizer.%s.%s", j ? "exp_avg_sq" : "exp_avg", s->name);
            ckpt_writer_declare(w, name, s->ndim, shape, r->dp->tensors[i].trained ? numel : 0);
        }
    }
}

// Every rank writes its share into step-N.shards/, rank 0 the index last (trainer/checkpoint_sharded.h).
static int save_sharded(TrainRun* r, Error* e) {
    CkptWriter* w = ckpt_writer_create();
    add_shard_pieces(r, w);
    char* meta = r->rank == 0 ? checkpoint_metadata(r->model, &r->st, r->config_yaml, tokenizer_name(r->tok)) : NULL;
    char* dir = checkpoint_sharded_path(r->cfg->run_dir, r->st.step);
    int rc = ckpt_writer_commit(w, r->comm, dir, meta, e);
    if (rc == 0 && r->rank == 0) {
        checkpoint_prune(r->cfg->run_dir, r->cfg->train.keep_checkpoints);
        if (!r->opt->progress) printf("checkpoint: %s (%d ranks wrote their shares)\n", dir, r->world);
    }
    free(dir);
    free(meta);
    ckpt_writer_free(w);
    return rc;
}

// Rank 0 writes the checkpoint of the whole model (full parameter layout, so any layout can resume it); the
// others take part in the gathers, then every rank knows whether it was written.
static int save(TrainRun* r, Error* e) {
    if (r->cfg->parallel.sharded_checkpoints) return save_sharded(r, e);
    Optimizer whole = {0};
    gather_state(r, &whole);
    whole.step = r->st.step;
    int rc = 0;
    char* path = checkpoint_path(r->cfg->run_dir, r->st.step);
    if (r->rank == 0) {
        const ModRWKV* out = r->full_mm ? r->full_mm : r->mm;
        rc = checkpoint_save(path, out->lm, &out->table, &whole, &r->st, r->config_yaml, tokenizer_name(r->tok), e);
        if (rc == 0) checkpoint_prune(r->cfg->run_dir, r->cfg->train.keep_checkpoints);
        if (rc == 0 && !r->opt->progress) printf("checkpoint: %s\n", path);  // a terminal keeps its one line
        optimizer_free(&whole, r->be);
    }
    int failed = (int)comm_all_reduce_double(r->comm, rc != 0, COMM_MAX);
    if (failed && rc == 0) rc = errorf(e, "rank %d: rank 0 could not write the checkpoint %s", r->rank, path);
    free(path);
    return rc;
}

static void format_eta(char* buf, size_t n, double seconds) {
    long s = (long)(seconds + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
}

static void report_step(TrainRun* r, float loss, double norm, float lr, double step_s) {
    const TrainConfig* t = &r->cfg->train;
    double tps = (double)r->groups.dp_size * t->grad_accum * t->micro_batch * t->ctx_len / step_s;  // the job's
    if (r->metrics)
        fprintf(r->metrics,
            "{\"step\":%d,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens\":%" PRIu64 ",\"tokens_per_s\":%.1f,"
            "\"elapsed_s\":%.3f,\"params_total\":%zu,\"params_trained\":%zu,\"world\":%d,\"tp\":%d,\"dp\":%d,"
            "\"device\":\"cpu\"}\n",
            r->st.step, loss, lr, norm, r->st.tokens_seen, tps, r->st.elapsed_s, count_params(r, 0), count_params(r, 1),
            r->world, r->groups.tp_size, r->groups.dp_size);
    if (r->metrics) fflush(r->metrics);
    char eta[32];
    format_eta(eta, sizeof eta, (t->max_steps - r->st.step) * step_s);
    if (r->opt->progress) {
        printf("\r\033[Kstep %d/%d | loss %.4f | lr %.2e | %.0f tok/s | ETA %s", r->st.step, t->max_steps, loss, lr,
               tps, eta);
        fflush(stdout);
        r->line_open = 1;
    } else if (t->log_every > 0 && (r->st.step % t->log_every == 0 || r->st.step == t->max_steps)) {
        printf("step %d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | ETA %s\n", r->st.step, t->max_steps,
               loss, lr, norm, tps, eta);
    }
}

static void report_eval(TrainRun* r, double val) {
    if (isnan(val)) return;
    if (r->metrics) {
        fprintf(r->metrics, "{\"step\":%d,\"val_loss\":%.9g}\n", r->st.step, val);
        fflush(r->metrics);
    }
    close_progress_line(r);
    printf("eval step %d | val loss %.4f\n", r->st.step, val);
}

// SIGTERM (a scheduler stopping the job) and SIGUSR1 (Slurm's warning before the time limit, sbatch
// --signal=B:USR1@300) ask for a checkpoint and a clean exit at the end of the current step.
static volatile sig_atomic_t g_stop_signal = 0;

static void on_stop_signal(int sig) { g_stop_signal = sig; }

static void install_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

// 1 when any rank received a stop signal (every rank takes the same decision).
static int stop_requested(TrainRun* r) {
    return comm_all_reduce_double(r->comm, g_stop_signal != 0, COMM_MAX) != 0.0;
}

static int loop(TrainRun* r, Error* e) {
    const TrainConfig* t = &r->cfg->train;
    while (r->st.step < t->max_steps) {
        double t0 = now_seconds();
        float loss, lr;
        double norm;
        if (train_step(r, &loss, &norm, &lr, e) != 0) return -1;
        double dt = now_seconds() - t0;
        r->st.elapsed_s += dt;
        report_step(r, loss, norm, lr, dt);
        int signalled = stop_requested(r);
        int last = r->st.step == t->max_steps;
        int stop = signalled || (r->opt->stop_at_step > 0 && r->st.step >= r->opt->stop_at_step);
        if (t->eval_every > 0 && (r->st.step % t->eval_every == 0 || last)) {
            double val;
            if (evaluate(r, &val, e) != 0) return -1;
            report_eval(r, val);
        }
        if ((t->save_every > 0 && r->st.step % t->save_every == 0) || last || stop)
            if (save(r, e) != 0) return -1;
        if (stop && !last) {
            close_progress_line(r);
            printf("stopped after step %d as asked (%s); continue with --resume auto\n", r->st.step,
                   signalled ? "a stop signal: checkpoint written" : "--stop-at-step");
            return 0;
        }
    }
    close_progress_line(r);
    return 0;
}

int train_run(const Config* cfg, const TrainOptions* opt, Error* e) {
    TrainRun r;
    memset(&r, 0, sizeof r);
    r.cfg = cfg;
    r.opt = opt;
    install_stop_signals();  // before the set-up, which can take long (model files, data): a signal then still
                             // ends the run with a checkpoint after its first step
    int rc = setup(&r, e);
    if (rc == 0) {
        printf("run: %s (metrics.jsonl, checkpoints/), %d steps of %d x %d x %d tokens\n", cfg->run_dir,
               cfg->train.max_steps, cfg->train.grad_accum, cfg->train.micro_batch, cfg->train.ctx_len);
        rc = loop(&r, e);
    }
    close_progress_line(&r);
    if (rc == 0) printf("done: %d steps, %" PRIu64 " tokens, %.1f s\n", r.st.step, r.st.tokens_seen, r.st.elapsed_s);
    teardown(&r);
    return rc;
}

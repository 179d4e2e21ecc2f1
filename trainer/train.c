// train.c — the training loop (see train.h).
#include "trainer/train.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "datasets/shard_loader.h"
#include "datasets/textloader.h"
#include "datasets/tokenizer.h"
#include "trainer/checkpoint.h"
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
    RWKV7* model;
    Optimizer optim;
    float* grads;            // (n_params) gradient buffer
    ModelParams grad_views;  // named views into grads
    RWKV7Acts* acts;
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

// Text batches from shard datasets: shuffled, packed training rows; unshuffled validation rows.
static int open_shards(TrainRun* r, Error* e) {
    const DataConfig* d = &r->cfg->data;
    const TrainConfig* t = &r->cfg->train;
    ShardLoaderOptions o;
    shard_loader_options_default(&o);
    o.dir = d->train;
    o.seed = t->seed;
    o.batch_size = t->micro_batch;
    o.ctx_len = t->ctx_len;
    o.pack = 1;
    o.truncate = 1;
    r->loader = shard_loader_text_adapter(&o, e);
    if (!r->loader) return -1;
    printf("data: shards %s\n", d->train);
    if (!d->val[0]) {
        if (d->val_fraction > 0) printf("data: no data.val given for shard data: validation is off\n");
        return 0;
    }
    o.dir = d->val;
    o.shuffle_buffer = 0;
    r->eval_loader = shard_loader_text_adapter(&o, e);
    return r->eval_loader ? 0 : -1;
}

static int open_data(TrainRun* r, Error* e) {
    const DataConfig* d = &r->cfg->data;
    r->tok = tokenizer_from_spec(d->tokenizer, e);
    if (!r->tok) return -1;
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
    r->loader = textloader_create_train(r->train_stream, 0, train_end, ctx, 0, 1, e);
    return r->loader ? 0 : -1;
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

static int resume(TrainRun* r, Error* e) {
    const char* want = r->opt->resume;
    if (!want) return 0;
    char* path = strcmp(want, "auto") == 0 ? checkpoint_latest(r->cfg->run_dir) : xstrdup(want);
    if (!path) {
        printf("resume: no checkpoint in %s/checkpoints yet, starting fresh\n", r->cfg->run_dir);
        return 0;
    }
    char* stored = NULL;
    int rc = checkpoint_load(path, r->model, &r->optim, &r->st, &stored, e);
    if (rc == 0) {
        if (stored && strcmp(stored, r->config_yaml) != 0)
            printf("resume: warning: the configuration differs from the one stored in %s; the run will not repeat exactly\n", path);
        r->loader->set_position(r->loader, r->st.loader_position);
        printf("resume: %s (step %d, %" PRIu64 " tokens seen)\n", path, r->st.step, r->st.tokens_seen);
    }
    free(stored);
    free(path);
    return rc;
}

static int setup(TrainRun* r, Error* e) {
    const Config* cfg = r->cfg;
    char path[CONFIG_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/checkpoints", cfg->run_dir);
    if (mkdir_p(path, e) != 0) return -1;
    r->config_yaml = config_to_yaml(cfg);
    snprintf(path, sizeof path, "%s/config.yaml", cfg->run_dir);
    if (write_file_atomic(path, r->config_yaml, strlen(r->config_yaml), e) != 0) return -1;
    r->be = backend_cpu_create(cfg->train.threads);
    if (open_data(r, e) != 0 || build_model(r, e) != 0) return -1;
    optimizer_init(&r->optim, r->model);
    rng_seed(&r->st.rng, cfg->train.seed);
    if (resume(r, e) != 0) return -1;
    r->grads = r->be->alloc(r->be, r->model->n_params * sizeof(float));
    r->grad_views.blocks = xcalloc((size_t)r->model->cfg.n_layer, sizeof(BlockParams));
    rwkv7_point(r->model, &r->grad_views, r->grads);
    r->acts = rwkv7_acts_create(r->model, cfg->train.micro_batch, cfg->train.ctx_len, 1);
    batch_alloc(&r->batch, cfg->train.micro_batch, cfg->train.ctx_len);
    snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->run_dir);
    truncate_metrics(path, r->st.step);
    r->metrics = fopen(path, "a");
    if (!r->metrics) return errorf(e, "%s: cannot open for appending: check the run directory is writable", path);
    return 0;
}

static void teardown(TrainRun* r) {
    if (r->metrics) fclose(r->metrics);
    batch_free(&r->batch);
    if (r->model) {
        rwkv7_acts_free(r->model, r->acts);
        if (r->grads) r->be->free(r->be, r->grads);
        if (r->optim.m) optimizer_free(&r->optim, r->model);
        rwkv7_free(r->model);
    }
    free(r->grad_views.blocks);
    if (r->loader) r->loader->destroy(r->loader);
    if (r->eval_loader) r->eval_loader->destroy(r->eval_loader);
    tokenstream_free(r->train_stream);
    tokenstream_free(r->val_stream);
    tokenizer_free(r->tok);
    if (r->be) backend_destroy(r->be);
    free(r->config_yaml);
}

// ---------------------------------------------------------------------------------------------------- steps

// Mean validation loss over the same eval_batches batches every time (*val = NAN without validation data).
static int evaluate(TrainRun* r, double* val, Error* e) {
    *val = NAN;
    if (!r->eval_loader) return 0;
    r->eval_loader->set_position(r->eval_loader, 0);
    double sum = 0;
    for (int i = 0; i < r->cfg->train.eval_batches; i++) {
        if (r->eval_loader->next_batch(r->eval_loader, &r->batch, e) != 0) return -1;
        rwkv7_forward(r->model, r->acts, r->batch.tokens, NULL);
        sum += rwkv7_loss(r->model, r->acts, r->batch.targets, 1.0f, 0, NULL);
    }
    *val = sum / r->cfg->train.eval_batches;
    return 0;
}

// One optimizer step: accumulate gradients over grad_accum micro-batches, clip, update.
// Returns 0, or -1 on a data error or a non-finite loss/gradient (e says which step).
static int train_step(TrainRun* r, float* loss_out, double* norm_out, float* lr_out, Error* e) {
    const TrainConfig* t = &r->cfg->train;
    Backend* be = r->be;
    be->k.zero(be, r->grads, r->model->n_params);
    double loss = 0;
    for (int micro = 0; micro < t->grad_accum; micro++) {
        if (r->loader->next_batch(r->loader, &r->batch, e) != 0) return -1;
        rwkv7_forward(r->model, r->acts, r->batch.tokens, NULL);
        loss += rwkv7_loss(r->model, r->acts, r->batch.targets, 1.0f / t->grad_accum, t->l2wrap, NULL);
        rwkv7_backward(r->model, r->acts, &r->grad_views);
    }
    loss /= t->grad_accum;
    double norm = grad_global_norm(r->model, r->grads);
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
    optimizer_update(&r->optim, r->model, r->grads, t, lr, scale);
    r->st.step++;
    r->st.tokens_seen += (uint64_t)t->grad_accum * r->batch.B * r->batch.T;
    r->st.loader_position = r->loader->get_position(r->loader);
    *loss_out = (float)loss;
    *norm_out = norm;
    *lr_out = lr;
    return 0;
}

static int save(TrainRun* r, Error* e) {
    char* path = checkpoint_path(r->cfg->run_dir, r->st.step);
    int rc = checkpoint_save(path, r->model, &r->optim, &r->st, r->config_yaml, tokenizer_name(r->tok), e);
    if (rc == 0) checkpoint_prune(r->cfg->run_dir, r->cfg->train.keep_checkpoints);
    if (rc == 0 && !r->opt->progress) printf("checkpoint: %s\n", path);  // a terminal keeps its one line
    free(path);
    return rc;
}

static void format_eta(char* buf, size_t n, double seconds) {
    long s = (long)(seconds + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
}

static void report_step(TrainRun* r, float loss, double norm, float lr, double step_s) {
    const TrainConfig* t = &r->cfg->train;
    double tps = (double)t->grad_accum * t->micro_batch * t->ctx_len / step_s;
    fprintf(r->metrics,
            "{\"step\":%d,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"tokens\":%" PRIu64 ",\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f}\n",
            r->st.step, loss, lr, norm, r->st.tokens_seen, tps, r->st.elapsed_s);
    fflush(r->metrics);
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
    fprintf(r->metrics, "{\"step\":%d,\"val_loss\":%.9g}\n", r->st.step, val);
    fflush(r->metrics);
    close_progress_line(r);
    printf("eval step %d | val loss %.4f\n", r->st.step, val);
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
        int last = r->st.step == t->max_steps, stop = r->opt->stop_at_step > 0 && r->st.step >= r->opt->stop_at_step;
        if (t->eval_every > 0 && (r->st.step % t->eval_every == 0 || last)) {
            double val;
            if (evaluate(r, &val, e) != 0) return -1;
            report_eval(r, val);
        }
        if ((t->save_every > 0 && r->st.step % t->save_every == 0) || last || stop)
            if (save(r, e) != 0) return -1;
        if (stop && !last) {
            close_progress_line(r);
            printf("stopped after step %d as asked (--stop-at-step); continue with --resume auto\n", r->st.step);
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

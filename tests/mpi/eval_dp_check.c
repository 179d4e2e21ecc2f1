// eval_dp_check.c — data-parallel evaluation (experiments/eval.h) under real MPI ranks: run it with
// `mpirun -np N eval_dp_check <work dir>`. Rank 0 writes the datasets (bytes tokenizer, several shards):
// chat questions with images (one or two answers each, a choices file), time-series forecasts, text
// documents and LAMBADA-style passages; every rank builds the same tiny ModRWKV (a ViT and a WaveNet
// encoder, random weights). For every metric — accuracy, wer and mc with the real model, mse with a
// generator that answers from the prompt alone (some answers unparsable), perplexity and lambada with
// batches that do not divide by N — every rank evaluates once alone (comm NULL) and once with the world,
// and checks that the N-rank result equals the one-rank result exactly: eval.json without its timing and
// rank count byte for byte, every item (eval_write_items) byte for byte, and ranks = N.
// Then an error on one rank only (the generator fails on the last rank) fails every rank with
// "rank R: <its message>". Rank 0 prints one PASS/FAIL line per check (a check fails when it fails on any
// rank) and the program exits non-zero on any failure. The work dir is cleared first and removed after a
// passing run.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/chat_template.h"
#include "experiments/eval.h"
#include "sharding/comm.h"
#include "tests/testutil.h"
#include "trainer/rwkv7_init.h"

enum { IMG_TOKENS = 4, N_CHAT = 7, N_FORECAST = 6, N_TEXT = 9, N_PASSAGES = 11 };

static Comm* g_world;

// The check's result over every rank (a failure anywhere fails it); rank 0 prints it.
static int report(const char* name, int ok, const char* detail) {
    double bad = comm_all_reduce_double(g_world, ok ? 0.0 : 1.0, COMM_MAX);
    if (comm_rank(g_world) != 0) return bad != 0;
    return check_true(name, bad == 0, detail);
}

// ---------------------------------------------------------------------------------------------------- data (rank 0)

static ShardWriter* open_writer(const char* dir, Error* e) {
    ShardWriterOptions wo = {.dir = dir, .split = "test", .max_samples = 3, .compression = 0, .tokenizer = "bytes",
                             .vocab_size = 256, .source = "eval_dp_check", .rank = 0, .world = 1};
    ShardWriter* w = shard_writer_open(&wo, e);
    if (!w) fatal("%s", e->msg);
    return w;
}

static void close_writer(ShardWriter* w, Error* e) {
    if (shard_writer_close(w, e) != 0) fatal("%s", e->msg);
}

static void add(ShardWriter* w, Sample* s, Error* e) {
    if (shard_writer_add(w, s, e) != 0) fatal("%s", e->msg);
    sample_free(s);
}

// Question i: an 8x8 image, "What is shape i?" answered with a digit; every third a second turn.
static void write_chat(const char* root, const Tokenizer* tok) {
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/chat", root);
    Error e = {{0}};
    ShardWriter* w = open_writer(dir, &e);
    snprintf(path, sizeof path, "%s/choices.jsonl", dir);
    FILE* choices = fopen(path, "w");
    for (int i = 0; i < N_CHAT; i++) {
        Sample s = {0};
        char key[16], q[64], a[8];
        snprintf(key, sizeof key, "c%02d", i);
        snprintf(q, sizeof q, "<image>\nWhat is shape %d?", i);
        snprintf(a, sizeof a, "%d", (i * 7) % 10);
        s.key = xstrdup(key);
        s.n_media = 1;
        s.media = xcalloc(1, sizeof(MediaItem));
        s.media[0] = (MediaItem){.kind = MEDIA_IMAGE_PIXELS, .n_placeholder = IMG_TOKENS, .height = 8, .width = 8,
                                 .channels = 1};
        s.media[0].pixels = xmalloc(64);
        for (int p = 0; p < 64; p++) s.media[0].pixels[p] = (uint8_t)(i * 37 + p * 5);
        ChatTurn turns[4] = {{CHAT_USER, q, strlen(q)}, {CHAT_ASSISTANT, a, strlen(a)},
                             {CHAT_USER, "And its colour?", 15}, {CHAT_ASSISTANT, "red", 3}};
        if (chat_build(tok, turns, i % 3 == 0 ? 4 : 2, &s, key, &e) != 0) fatal("%s", e.msg);
        add(w, &s, &e);
        fprintf(choices, "{\"key\": \"%s\", \"choices\": [\"red\", \"blue\", \"green\", \"%d\"], \"answer\": %d}\n", key,
                (i * 7) % 10, i % 4);
    }
    fclose(choices);
    close_writer(w, &e);
}

static void push_text(const Tokenizer* tok, const char* text, uint8_t loss, Sample* s) {
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(tok, text, strlen(text), &ids, &n);
    s->tokens = xrealloc(s->tokens, (s->n_tokens + n) * sizeof(uint32_t));
    s->loss_mask = xrealloc(s->loss_mask, s->n_tokens + n);
    for (size_t k = 0; k < n; k++) s->tokens[s->n_tokens + k] = (uint32_t)ids[k], s->loss_mask[s->n_tokens + k] = loss;
    s->n_tokens += n;
    free(ids);
}

// Forecast i: a 16-step series, the answer "a b c".
static void write_forecasts(const char* root, const Tokenizer* tok) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/forecast", root);
    Error e = {{0}};
    ShardWriter* w = open_writer(dir, &e);
    for (int i = 0; i < N_FORECAST; i++) {
        Sample s = {0};
        char key[16], answer[64];
        snprintf(key, sizeof key, "f%02d", i);
        s.key = xstrdup(key);
        push_text(tok, "\x16User: ", 0, &s);
        s.n_media = 1;
        s.media = xcalloc(1, sizeof(MediaItem));
        s.media[0] = (MediaItem){.kind = MEDIA_TIMESERIES, .placeholder_pos = (int32_t)s.n_tokens, .n_placeholder = 2,
                                 .length = 16, .channels = 1};
        s.media[0].series = xmalloc(16 * sizeof(float));
        for (int t = 0; t < 16; t++) s.media[0].series[t] = sinf(0.4f * (float)(t + i));
        s.tokens = xrealloc(s.tokens, (s.n_tokens + 2) * sizeof(uint32_t));
        s.loss_mask = xrealloc(s.loss_mask, s.n_tokens + 2);
        for (int k = 0; k < 2; k++) s.tokens[s.n_tokens] = SHARD_PLACEHOLDER_TIMESERIES, s.loss_mask[s.n_tokens++] = 0;
        push_text(tok, "Next?\x17\x16" "Assistant:", 0, &s);
        snprintf(answer, sizeof answer, " %.2f %.2f %.2f\x17", sin(0.4 * (16 + i)), sin(0.4 * (17 + i)),
                 sin(0.4 * (18 + i)));
        push_text(tok, answer, 1, &s);
        add(w, &s, &e);
    }
    close_writer(w, &e);
}

static void write_texts(const char* root, const Tokenizer* tok) {
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/text", root);
    Error e = {{0}};
    ShardWriter* w = open_writer(dir, &e);
    snprintf(path, sizeof path, "%s/passages.jsonl", root);
    FILE* passages = fopen(path, "w");
    for (int i = 0; i < N_TEXT; i++) {
        Sample s = {0};
        char key[16], text[160];
        snprintf(key, sizeof key, "t%02d", i);
        snprintf(text, sizeof text, "Document %d says that %d times %d is %d, and then it ends.", i, i, i + 3, i * (i + 3));
        s.key = xstrdup(key);
        chat_build_document(tok, text, strlen(text), 1, &s);
        add(w, &s, &e);
    }
    for (int i = 0; i < N_PASSAGES; i++)
        fprintf(passages, "{\"text\": \"Passage %d went on for a while and ended with word%d\"}\n", i, i % 4);
    fclose(passages);
    close_writer(w, &e);
}

// ---------------------------------------------------------------------------------------------------- model

static ModRWKV* make_model(Backend* be) {
    Config c;
    config_defaults(&c);
    ModelConfig* mc = &c.model;
    snprintf(mc->vision.kind, sizeof mc->vision.kind, "siglip");
    mc->vision.image_size = 16;
    mc->vision.patch = 4;
    mc->vision.width = 16;
    mc->vision.layers = 1;
    mc->vision.heads = 2;
    mc->vision.mlp = 32;
    snprintf(mc->ts.kind, sizeof mc->ts.kind, "wavenet");
    mc->ts.channels = 1;
    mc->ts.width = 8;
    mc->ts.layers = 2;
    mc->ts.skip = 8;
    mc->ts.out_dim = 16;
    mc->ts.patch = 8;
    snprintf(mc->projector.kind, sizeof mc->projector.kind, "mlp");
    mc->projector.ratio = 2;
    RWKV7Config rc = {.n_layer = 2, .n_embd = 32, .vocab_size = 256, .head_size = 16};
    Error e = {{0}};
    RWKV7* lm = rwkv7_create(&rc, be, &e);
    if (!lm) fatal("%s", e.msg);
    rwkv7_init(lm, RWKV7_INIT_RANDOM, 17);
    ModRWKV* m = modrwkv_create(lm, mc, 19, &e);
    if (!m) fatal("%s", e.msg);
    return m;
}

// A forecast from the prompt alone (the same on every rank): numbers from its length, every third unparsable.
static int prompt_forecast(void* ctx, ModRWKV* m, const Tokenizer* tok, const ShardBatch* p, const GenerateOptions* o,
                           int32_t** ids, Error* e) {
    char text[64];
    long h = 0;
    for (int t = 0; t < p->T; t++) h = (h * 31 + p->tokens[t]) % 1000;
    if (h % 3 == 0) snprintf(text, sizeof text, "unsure");
    else snprintf(text, sizeof text, "%.2f %.2f %.2f 9", (double)(h % 7) / 7 - 0.5, (double)(h % 5) / 5, -0.3);
    size_t n = 0;
    tokenizer_encode(tok, text, strlen(text), ids, &n);
    return (int)n;
}

// Fails on the last rank only.
static int failing_generate(void* ctx, ModRWKV* m, const Tokenizer* tok, const ShardBatch* p, const GenerateOptions* o,
                            int32_t** ids, Error* e) {
    if (comm_rank(g_world) == comm_size(g_world) - 1) return errorf(e, "generator broke on purpose");
    return prompt_forecast(ctx, m, tok, p, o, ids, e);
}

// ---------------------------------------------------------------------------------------------------- comparison

// eval.json without "seconds" and "ranks", as compact text (malloc'ed).
static char* report_text(const EvalResult* r, const EvalOptions* o, const char* data, const char* path) {
    EvalReportInfo info = {.name = "dp", .checkpoint = "in-memory", .data_dir = data, .tokenizer = "bytes",
                           .options = o, .items_in_json = 20};
    Error e = {{0}};
    if (eval_write_json(r, &info, path, &e) != 0) fatal("%s", e.msg);
    json_error_t je;
    json_t* j = json_load_file(path, 0, &je);
    if (!j) fatal("%s: %s", path, je.text);
    json_object_del(j, "seconds");
    json_object_del(j, "ranks");
    char* s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(j);
    return s;
}

static char* items_text(const EvalResult* r, const char* path) {
    Error e = {{0}};
    if (eval_write_items(r, path, &e) != 0) fatal("%s", e.msg);
    size_t n = 0;
    char* s = read_file(path, &n, &e);
    if (!s) fatal("%s", e.msg);
    return s;
}

typedef struct Case {
    const char* label;
    EvalMetric metric;
    const char* data;     // relative to the work dir
    int batch_size;
    EvalGenerateFn generate;
} Case;

static int check_case(ModRWKV* m, const Tokenizer* tok, const char* root, const Case* c) {
    char data[4200], path[4300];
    snprintf(data, sizeof data, "%s/%s", root, c->data);
    EvalOptions o;
    eval_options_default(&o);
    o.metric = c->metric;
    o.batch_size = c->batch_size;
    o.generate = c->generate;
    EvalResult one, all;
    Error e1 = {{0}}, en = {{0}};
    int rc1 = eval_run(m, tok, data, &o, &one, &e1);
    o.comm = g_world;
    int rcn = eval_run(m, tok, data, &o, &all, &en);
    int P = comm_size(g_world), rank = comm_rank(g_world), f = 0;
    char name[256];
    snprintf(name, sizeof name, "%s: runs alone and on %d ranks", c->label, P);
    f += report(name, rc1 == 0 && rcn == 0 && all.ranks == P && one.ranks == 1, rc1 ? e1.msg : en.msg);
    if (rc1 == 0 && rcn == 0) {
        snprintf(path, sizeof path, "%s/one-%d.json", root, rank);
        char* a = report_text(&one, &o, data, path);
        snprintf(path, sizeof path, "%s/all-%d.json", root, rank);
        char* b = report_text(&all, &o, data, path);
        snprintf(path, sizeof path, "%s/one-%d.jsonl", root, rank);
        char* ia = items_text(&one, path);
        snprintf(path, sizeof path, "%s/all-%d.jsonl", root, rank);
        char* ib = items_text(&all, path);
        if (rank == 0)
            printf("  %s: value %.9g, n %lld, 95%% CI %.9g-%.9g, %lld items (%d ranks: %.9g, n %lld)\n", c->label,
                   one.value, (long long)one.n, one.ci.lo, one.ci.hi, (long long)one.n_items, P, all.value,
                   (long long)all.n);
        snprintf(name, sizeof name, "%s: eval.json of %d ranks = one rank's (value, n, intervals, items)", c->label, P);
        f += report(name, strcmp(a, b) == 0, "the reports differ");
        snprintf(name, sizeof name, "%s: every item of %d ranks = one rank's, in order", c->label, P);
        f += report(name, strcmp(ia, ib) == 0 && one.n_items > 0, "the items differ");
        free(a), free(b), free(ia), free(ib);
    }
    eval_result_free(&one);
    eval_result_free(&all);
    return f;
}

static int check_failure(ModRWKV* m, const Tokenizer* tok, const char* root) {
    char data[4200];
    snprintf(data, sizeof data, "%s/forecast", root);
    EvalOptions o;
    eval_options_default(&o);
    o.metric = EVAL_MSE;
    o.generate = failing_generate;
    o.comm = g_world;
    EvalResult r;
    Error e = {{0}};
    int rc = eval_run(m, tok, data, &o, &r, &e);
    eval_result_free(&r);
    int P = comm_size(g_world);
    char want[64];
    snprintf(want, sizeof want, "rank %d: ", P - 1);
    int ok = rc == -1 && strstr(e.msg, "generator broke on purpose") != NULL &&
             (P == 1 || strncmp(e.msg, want, strlen(want)) == 0);
    if (comm_rank(g_world) == 0) printf("  rank 0 got: %s\n", e.msg);
    return report("an error on the last rank only fails every rank with that rank's message", ok, e.msg);
}

int main(int argc, char** argv) {
    Error e = {{0}};
    g_world = comm_world_create(&argc, &argv, &e);
    if (!g_world) fatal("%s", e.msg);
    if (argc != 2) fatal("usage: eval_dp_check <work dir>");
    const char* root = argv[1];
    Tokenizer* tok = tokenizer_from_spec("bytes", &e);
    if (!tok) fatal("%s", e.msg);
    int rank = comm_rank(g_world);
    if (rank == 0) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0 || mkdir_p(root, &e) != 0) fatal("cannot clear %s: %s", root, e.msg);
        write_chat(root, tok);
        write_forecasts(root, tok);
        write_texts(root, tok);
        printf("eval_dp_check: %d rank(s), communicator '%s'\n", comm_size(g_world), comm_backend_name(g_world));
    }
    comm_barrier(g_world);
    Backend* be = backend_cpu_create(1);
    ModRWKV* m = make_model(be);
    static const Case CASES[] = {
        {"accuracy (chat, images)", EVAL_ACCURACY, "chat", 8, NULL},
        {"wer (chat, images)", EVAL_WER, "chat", 8, NULL},
        {"mc (chat, images, choices.jsonl)", EVAL_MC, "chat", 8, NULL},
        {"mse (time series)", EVAL_MSE, "forecast", 8, prompt_forecast},
        {"perplexity (text, 2 per forward)", EVAL_PERPLEXITY, "text", 2, NULL},
        {"perplexity (chat, images, 3 per forward)", EVAL_PERPLEXITY, "chat", 3, NULL},
        {"lambada (2 per forward)", EVAL_LAMBADA, "passages.jsonl", 2, NULL},
    };
    int f = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) f += check_case(m, tok, root, &CASES[i]);
    f += check_failure(m, tok, root);
    modrwkv_free(m);
    backend_destroy(be);
    tokenizer_free(tok);
    comm_barrier(g_world);
    if (rank == 0 && f == 0) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
        if (system(cmd) != 0) printf("warning: could not remove %s\n", root);
    }
    comm_free(g_world);
    if (rank != 0) return f ? 1 : 0;
    return test_summary("eval_dp_check", f);
}

// test_eval_forecast.c — time-series forecasting error (experiments/eval.h, EVAL_MSE) on a tiny ModRWKV with
// a WaveNet time-series encoder over chat samples whose prompt holds a series (MEDIA_TIMESERIES, placeholder
// 65532) and whose answer is the forecast written as numbers:
//   1. scripted hypotheses, hand-computed: (0.5 1 1.5 vs 0.5 1.5 1.5), (2, 4 vs 1 4 7: the extra number
//      ignored), ("no idea": unparsable), (-1 vs -1.5): MSE = 1.5 / 6 values, MAE = 2 / 6, n = 3 valid,
//      1 unparsable, the bootstrap intervals bracket the values; each prompt carries its series and ends with
//      "\x16Assistant:"; the report (eval.json) holds mae, values and unparsable;
//   2. the real greedy generation through the WaveNet branch runs end to end, every answer counted either as
//      valid or as unparsable;
//   3. a reference answer without numbers is an error naming the sample.
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "experiments/eval.h"
#include "tests/testutil.h"
#include "trainer/rwkv7_init.h"

enum { SERIES_LEN = 32, PATCH = 8, N_SAMPLES = 4 };

typedef struct Forecast {
    const char* key;
    const char* reference;    // the answer as stored
    const char* hypothesis;   // what the scripted generator says
} Forecast;

static const Forecast CASES[N_SAMPLES] = {
    {"f0", "0.5 1 1.5", "0.5 1.5 1.5"},   // SSE 0.25, SAE 0.5
    {"f1", "2, 4", "1 4 7"},              // SSE 1, SAE 1 (7 ignored)
    {"f2", "3 3 3", "no idea"},           // unparsable
    {"f3", "-1", "-1.5"},                 // SSE 0.25, SAE 0.5
};

// ---------------------------------------------------------------------------------------------------- fixtures

static void push_text(const Tokenizer* tok, const char* text, uint8_t loss, Sample* s) {
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(tok, text, strlen(text), &ids, &n);
    s->tokens = xrealloc(s->tokens, (s->n_tokens + n) * sizeof(uint32_t));
    s->loss_mask = xrealloc(s->loss_mask, s->n_tokens + n);
    for (size_t i = 0; i < n; i++) s->tokens[s->n_tokens + i] = (uint32_t)ids[i], s->loss_mask[s->n_tokens + i] = loss;
    s->n_tokens += n;
    free(ids);
}

// "\x16User: <series>Forecast the next values.\x17" "\x16Assistant:" " <answer>\x17" (the answer trained).
static Sample forecast_sample(const Tokenizer* tok, const char* key, const char* answer, TestRng* r) {
    Sample s = {0};
    s.key = xstrdup(key);
    push_text(tok, "\x16User: ", 0, &s);
    s.n_media = 1;
    s.media = xcalloc(1, sizeof(MediaItem));
    MediaItem* m = &s.media[0];
    *m = (MediaItem){.kind = MEDIA_TIMESERIES, .placeholder_pos = (int32_t)s.n_tokens,
                     .n_placeholder = SERIES_LEN / PATCH, .length = SERIES_LEN, .channels = 1};
    m->series = xmalloc(SERIES_LEN * sizeof(float));
    for (int t = 0; t < SERIES_LEN; t++) m->series[t] = sinf(0.3f * (float)t) + test_rng_uniform(r, -0.1f, 0.1f);
    s.tokens = xrealloc(s.tokens, (s.n_tokens + (size_t)m->n_placeholder) * sizeof(uint32_t));
    s.loss_mask = xrealloc(s.loss_mask, s.n_tokens + (size_t)m->n_placeholder);
    for (int i = 0; i < m->n_placeholder; i++)
        s.tokens[s.n_tokens] = SHARD_PLACEHOLDER_TIMESERIES, s.loss_mask[s.n_tokens++] = 0;
    push_text(tok, "Forecast the next values.\x17\x16" "Assistant:", 0, &s);
    char text[128];
    snprintf(text, sizeof text, " %s\x17", answer);
    push_text(tok, text, 1, &s);
    return s;
}

static void write_dataset(const char* dir, const Tokenizer* tok, const char* const* answers) {
    Error e = {{0}};
    ShardWriterOptions wo = {.dir = dir, .split = "test", .compression = 0, .tokenizer = "bytes", .vocab_size = 256,
                             .source = "test_eval_forecast", .rank = 0, .world = 1};
    ShardWriter* w = shard_writer_open(&wo, &e);
    if (!w) fatal("%s", e.msg);
    TestRng rng;
    test_rng_seed(&rng, 9);
    for (int i = 0; i < N_SAMPLES; i++) {
        Sample s = forecast_sample(tok, CASES[i].key, answers[i], &rng);
        if (shard_writer_add(w, &s, &e) != 0) fatal("%s", e.msg);
        sample_free(&s);
    }
    if (shard_writer_close(w, &e) != 0) fatal("%s", e.msg);
}

static ModRWKV* make_model(Backend* be) {
    Config c;
    config_defaults(&c);
    ModelConfig* mc = &c.model;
    snprintf(mc->ts.kind, sizeof mc->ts.kind, "wavenet");
    mc->ts.channels = 1;
    mc->ts.width = 8;
    mc->ts.layers = 2;
    mc->ts.skip = 8;
    mc->ts.out_dim = 16;
    mc->ts.patch = PATCH;
    snprintf(mc->projector.kind, sizeof mc->projector.kind, "mlp");
    mc->projector.ratio = 2;
    RWKV7Config rc = {.n_layer = 2, .n_embd = 32, .vocab_size = 256, .head_size = 16};
    Error e = {{0}};
    RWKV7* lm = rwkv7_create(&rc, be, &e);
    if (!lm) fatal("%s", e.msg);
    rwkv7_init(lm, RWKV7_INIT_RANDOM, 3);
    ModRWKV* m = modrwkv_create(lm, mc, 4, &e);
    if (!m) fatal("%s", e.msg);
    return m;
}

// ---------------------------------------------------------------------------------------------------- generator

typedef struct Script {
    const Tokenizer* tok;
    int calls, series_ok, ends_ok;
} Script;

// Answers in call order (one shard: the samples come in stored order).
static int scripted(void* ctx, ModRWKV* m, const Tokenizer* tok, const ShardBatch* p, const GenerateOptions* o,
                    int32_t** ids, Error* e) {
    Script* s = ctx;
    if (s->calls == N_SAMPLES) return errorf(e, "more calls than samples");
    s->series_ok &= p->n_media == 1 && p->media[0].kind == MEDIA_TIMESERIES && p->media[0].shape[0] == SERIES_LEN;
    const char* open = "\x16" "Assistant:";
    s->ends_ok &= p->T >= 11 && p->tokens[p->T - 1] == ':' && p->tokens[p->T - 11] == (int32_t)open[0];
    const char* hyp = CASES[s->calls++].hypothesis;
    size_t n = 0;
    tokenizer_encode(tok, hyp, strlen(hyp), ids, &n);
    return (int)n;
}

// ---------------------------------------------------------------------------------------------------- checks

static int check_report(const EvalResult* r, const char* root) {
    char path[600];
    snprintf(path, sizeof path, "%s/eval.json", root);
    EvalOptions o;
    eval_options_default(&o);
    EvalReportInfo info = {.name = "forecast", .checkpoint = "in-memory", .data_dir = root, .tokenizer = "bytes",
                           .options = &o, .items_in_json = 4};
    Error e = {{0}};
    if (eval_write_json(r, &info, path, &e) != 0) return check_true("eval.json written", 0, e.msg);
    json_error_t je;
    json_t* j = json_load_file(path, 0, &je);
    int ok = j && strcmp(json_string_value(json_object_get(j, "metric")), "mse") == 0 &&
             json_integer_value(json_object_get(j, "n")) == 3 &&
             json_integer_value(json_object_get(j, "unparsable")) == 1 &&
             json_integer_value(json_object_get(j, "values")) == 6 && json_is_number(json_object_get(j, "mae")) &&
             json_array_size(json_object_get(j, "items")) == 4 &&
             json_is_false(json_object_get(json_array_get(json_object_get(j, "items"), 2), "valid"));
    json_decref(j);
    eval_print_summary(r, "forecast", stdout);
    return check_true("eval.json: metric mse, n 3, 6 values, 1 unparsable, the MAE, 4 items (the third not valid)", ok,
                      "content");
}

static int check_scripted(ModRWKV* m, const Tokenizer* tok, const char* dir, const char* root) {
    Script sc = {.tok = tok, .series_ok = 1, .ends_ok = 1};
    EvalOptions o;
    eval_options_default(&o);
    o.metric = EVAL_MSE;
    o.generate = scripted;
    o.generate_ctx = &sc;
    EvalResult r;
    Error e = {{0}};
    int rc = eval_chat(m, tok, dir, &o, &r, &e);
    int f = check_true("mse over 4 forecasts with the scripted generator", rc == 0 && sc.calls == 4, e.msg);
    if (rc == 0) {
        for (int i = 0; i < 4; i++)
            printf("  %s: reference '%s', hypothesis '%s', valid %d, %lld values, SSE %.4f, SAE %.4f\n", r.items[i].key,
                   r.items[i].reference, r.items[i].hypothesis, r.items[i].valid, (long long)r.items[i].n_values,
                   r.items[i].sse, r.items[i].sae);
        float got[2] = {(float)r.value, (float)r.mae}, want[2] = {1.5f / 6, 2.0f / 6};
        f += check_close_abs("MSE = (0.25 + 1 + 0.25) / 6 values, MAE = (0.5 + 1 + 0.5) / 6", got, want, 2, 1e-7);
        f += check_true("n = 3 valid forecasts, 6 values, 1 unparsable ('no idea'), 4 answers",
                        r.n == 3 && r.n_values == 6 && r.n_invalid == 1 && r.n_items == 4 && !r.items[2].valid,
                        "counts differ");
        f += check_true("the bootstrap intervals bracket MSE and MAE",
                        r.ci.lo <= r.value && r.value <= r.ci.hi && r.mae_ci.lo <= r.mae && r.mae <= r.mae_ci.hi,
                        "outside");
        f += check_true("every prompt carries its series (32 x 1) and ends with \"\\x16Assistant:\"",
                        sc.series_ok && sc.ends_ok, "prompt differs");
        f += check_report(&r, root);
    }
    eval_result_free(&r);
    return f;
}

static int check_real_generation(ModRWKV* m, const Tokenizer* tok, const char* dir) {
    EvalOptions o;
    eval_options_default(&o);
    o.metric = EVAL_MSE;
    EvalResult r;
    Error e = {{0}};
    int rc = eval_chat(m, tok, dir, &o, &r, &e);
    printf("  real greedy forecasts (random model): %lld valid, %lld unparsable, MSE %g, %.2f s\n", (long long)r.n,
           (long long)r.n_invalid, r.value, r.seconds);
    int f = check_true("the real generation through the WaveNet branch runs; every answer valid or unparsable",
                       rc == 0 && r.n + r.n_invalid == 4 && r.n_items == 4, e.msg);
    eval_result_free(&r);
    return f;
}

static int check_bad_reference(ModRWKV* m, const Tokenizer* tok, const char* root) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/words", root);
    const char* answers[N_SAMPLES] = {"1 2", "up then down", "3", "4"};
    write_dataset(dir, tok, answers);
    Script sc = {.tok = tok, .series_ok = 1, .ends_ok = 1};
    EvalOptions o;
    eval_options_default(&o);
    o.metric = EVAL_MSE;
    o.generate = scripted;
    o.generate_ctx = &sc;
    EvalResult r;
    Error e = {{0}};
    int rc = eval_chat(m, tok, dir, &o, &r, &e);
    eval_result_free(&r);
    return expect_reject("a reference answer without numbers", rc, &e, "f1", "holds no numbers");
}

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) { return remove(path); }

int main(void) {
    char root[] = "/tmp/modrwkv-test-eval-forecast-XXXXXX";
    if (!mkdtemp(root)) fatal("mkdtemp failed");
    char dir[600];
    snprintf(dir, sizeof dir, "%s/forecast", root);
    Error e = {{0}};
    Tokenizer* tok = tokenizer_from_spec("bytes", &e);
    if (!tok) fatal("%s", e.msg);
    const char* answers[N_SAMPLES];
    for (int i = 0; i < N_SAMPLES; i++) answers[i] = CASES[i].reference;
    write_dataset(dir, tok, answers);
    Backend* be = backend_cpu_create(1);
    ModRWKV* m = make_model(be);
    int f = 0;
    f += check_scripted(m, tok, dir, root);
    f += check_real_generation(m, tok, dir);
    f += check_bad_reference(m, tok, root);
    modrwkv_free(m);
    backend_destroy(be);
    tokenizer_free(tok);
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return test_summary("test_eval_forecast", f);
}

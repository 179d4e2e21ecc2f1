// test_eval.c — the evaluation loop (experiments/eval.h) on a tiny ModRWKV (random weights, a 16x16 ViT) over a
// synthetic chat shard dataset in two shards: three samples, four assistant answers, two samples with an image.
//   1. every answer is visited exactly once, in turn order within its sample;
//   2. no leakage: each generation prompt is exactly the sample's tokens before the answer, ends right after
//      "\x16Assistant:", carries only the media placed before it, and is generated greedily with the stop
//      tokens 24 and 0 and a budget of the answer's tokens + 8;
//   3. scoring of known (scripted) hypotheses: accuracy 2/4 with its Wilson interval and the yes/no table;
//      WER 2/5 and CER 11/14; the report (eval.json) holds these numbers and the items;
//   4. the real greedy generation runs end to end; max_samples limits the samples read;
//   5. perplexity: the same summed NLL for batch sizes 1 and 3, the target count of the loss masks, and the NLL
//      of the text-only sample against a direct backbone forward;
//   6. rejections: a text dataset has no chat answers; an unknown metric.
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/chat_template.h"
#include "experiments/eval.h"
#include "tests/testutil.h"
#include "trainer/rwkv7_init.h"

enum { S = 16, IMG_TOKENS = 16, N_SAMPLES = 3, MAX_CALLS = 16 };

// The dataset: questions and reference answers, and the hypotheses the scripted generator gives for each.
typedef struct Turn {
    const char* question;
    const char* answer;
    const char* hyp_accuracy;   // scripted hypothesis, accuracy run
    const char* hyp_wer;        // scripted hypothesis, WER run
} Turn;

typedef struct Spec {
    const char* key;
    int image;
    int n_turns;
    Turn turns[2];
} Spec;

static const Spec SPECS[N_SAMPLES] = {
    {"s0", 1, 2, {{"What digit is this?", "7", "Seven.", "7"}, {"Is it even?", "No", "yes", "no"}}},
    {"s1", 1, 1, {{"Which colour?", "red", "red", "dark red"}}},
    {"s2", 0, 1, {{"Say hi.", "hi there", "hi", "hi"}}},
};

static Sample g_samples[N_SAMPLES];   // as written (tokens + masks), for the expected prompts

// ---------------------------------------------------------------------------------------------------- fixtures

static Sample build_sample(const Tokenizer* tok, const Spec* sp, TestRng* r) {
    Sample s = {0};
    s.key = xstrdup(sp->key);
    ChatTurn turns[4];
    char first[128];
    snprintf(first, sizeof first, "%s%s", sp->image ? "<image>\n" : "", sp->turns[0].question);
    for (int t = 0; t < sp->n_turns; t++) {
        const char* q = t == 0 ? first : sp->turns[t].question;
        turns[2 * t] = (ChatTurn){CHAT_USER, q, strlen(q)};
        turns[2 * t + 1] = (ChatTurn){CHAT_ASSISTANT, sp->turns[t].answer, strlen(sp->turns[t].answer)};
    }
    if (sp->image) {
        s.n_media = 1;
        s.media = xcalloc(1, sizeof(MediaItem));
        MediaItem* m = &s.media[0];
        m->kind = MEDIA_IMAGE_PIXELS;
        m->n_placeholder = IMG_TOKENS;
        m->height = m->width = 8;
        m->channels = 1;
        m->pixels = xmalloc(64);
        for (int i = 0; i < 64; i++) m->pixels[i] = (uint8_t)test_rng_uniform(r, 0, 255);
    }
    Error e = {{0}};
    if (chat_build(tok, turns, 2 * sp->n_turns, &s, sp->key, &e) != 0) fatal("%s", e.msg);
    return s;
}

static void write_dataset(const char* dir, const Sample* samples, int n, Error* e) {
    ShardWriterOptions wo = {.dir = dir, .split = "test", .max_samples = 2, .compression = 0, .tokenizer = "world",
                             .vocab_size = 65536, .source = "test_eval", .rank = 0, .world = 1};
    ShardWriter* w = shard_writer_open(&wo, e);
    if (!w) fatal("%s", e->msg);
    for (int i = 0; i < n; i++)
        if (shard_writer_add(w, &samples[i], e) != 0) fatal("%s", e->msg);
    if (shard_writer_close(w, e) != 0) fatal("%s", e->msg);
}

static ModRWKV* make_model(Backend* be) {
    Config c;
    config_defaults(&c);
    ModelConfig* mc = &c.model;
    snprintf(mc->vision.kind, sizeof mc->vision.kind, "siglip");
    mc->vision.image_size = S;
    mc->vision.patch = 4;
    mc->vision.width = 16;
    mc->vision.layers = 1;
    mc->vision.heads = 2;
    mc->vision.mlp = 32;
    snprintf(mc->projector.kind, sizeof mc->projector.kind, "mlp");
    mc->projector.ratio = 2;
    RWKV7Config rc = {.n_layer = 2, .n_embd = 32, .vocab_size = 65536, .head_size = 16};
    Error e = {{0}};
    RWKV7* lm = rwkv7_create(&rc, be, &e);
    if (!lm) fatal("%s", e.msg);
    rwkv7_init(lm, RWKV7_INIT_RANDOM, 11);
    ModRWKV* m = modrwkv_create(lm, mc, 13, &e);
    if (!m) fatal("%s", e.msg);
    return m;
}

// ---------------------------------------------------------------------------------------------------- scripted generator

typedef struct Call {
    int32_t* prompt;           // (T) copy of the prompt tokens
    int T, n_media, targets_masked;
    GenerateOptions o;
} Call;

typedef struct Script {
    int wer;                   // which hypotheses to give
    Call calls[MAX_CALLS];
    int n_calls;
} Script;

// The last user question of a prompt: the text between the last "\x16User: " and the next "\x17".
static const Turn* asked(const Tokenizer* tok, const int32_t* ids, int n) {
    int32_t* text_ids = xmalloc((size_t)n * sizeof(int32_t));
    int k = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] < SHARD_PLACEHOLDER_IMAGE) text_ids[k++] = ids[i];
    char* text = NULL;
    size_t len = 0;
    Error e = {{0}};
    if (tokenizer_decode(tok, text_ids, (size_t)k, &text, &len, &e) != 0) fatal("%s", e.msg);
    free(text_ids);
    const Turn* found = NULL;
    char* user = NULL;
    for (char* p = strstr(text, "\x16User: "); p; p = strstr(p + 1, "\x16User: ")) user = p;
    for (int s = 0; user && s < N_SAMPLES; s++)
        for (int t = 0; t < SPECS[s].n_turns; t++) {
            const char* q = strstr(user, SPECS[s].turns[t].question);
            if (q && q[strlen(SPECS[s].turns[t].question)] == '\x17') found = &SPECS[s].turns[t];
        }
    free(text);
    if (!found) fatal("scripted generator: the prompt asks no known question");
    return found;
}

static int scripted(void* ctx, ModRWKV* m, const Tokenizer* tok, const ShardBatch* p, const GenerateOptions* o,
                    int32_t** ids, Error* e) {
    Script* s = ctx;
    if (s->n_calls == MAX_CALLS) return errorf(e, "too many calls");
    Call* c = &s->calls[s->n_calls++];
    c->T = p->T;
    c->prompt = xmalloc((size_t)p->T * sizeof(int32_t));
    memcpy(c->prompt, p->tokens, (size_t)p->T * sizeof(int32_t));
    c->n_media = p->n_media;
    c->o = *o;
    c->targets_masked = 1;
    for (int t = 0; t < p->T; t++) c->targets_masked &= p->targets[t] == -1;
    const Turn* turn = asked(tok, p->tokens, p->T);
    const char* hyp = s->wer ? turn->hyp_wer : turn->hyp_accuracy;
    size_t n = 0;
    tokenizer_encode(tok, hyp, strlen(hyp), ids, &n);
    return (int)n;
}

static void script_free(Script* s) {
    for (int i = 0; i < s->n_calls; i++) free(s->calls[i].prompt);
}

// ---------------------------------------------------------------------------------------------------- checks

static int sample_index(const char* key) {
    for (int s = 0; s < N_SAMPLES; s++)
        if (strcmp(SPECS[s].key, key) == 0) return s;
    return -1;
}

// Start and end (exclusive) of the turn-th run of trained tokens of a sample.
static void answer_span(const Sample* s, int turn, int* a, int* end) {
    int k = -1;
    for (size_t t = 1; t < s->n_tokens; t++) {
        if (s->loss_mask[t] && !s->loss_mask[t - 1] && ++k == turn) {
            *a = (int)t;
            size_t u = t;
            while (u < s->n_tokens && s->loss_mask[u]) u++;
            *end = (int)u;
            return;
        }
    }
    fatal("sample '%s' has no answer %d", s->key, turn);
}

static int check_visits_and_prompts(const Tokenizer* tok, const EvalResult* r, const Script* sc) {
    int f = 0, visits[N_SAMPLES][2] = {{0}}, order_ok = 1, prompts_ok = 1, ends_ok = 1, media_ok = 1, opts_ok = 1;
    int32_t* open = NULL;
    size_t n_open = 0;
    tokenizer_encode(tok, "\x16" "Assistant:", 11, &open, &n_open);
    for (int64_t i = 0; i < r->n_items; i++) {
        const EvalItem* it = &r->items[i];
        int s = sample_index(it->key);
        if (s < 0 || it->turn >= SPECS[s].n_turns || i >= sc->n_calls) {
            order_ok = 0;
            continue;
        }
        visits[s][it->turn]++;
        if (it->turn > 0 && (i == 0 || strcmp(r->items[i - 1].key, it->key) != 0 || r->items[i - 1].turn != it->turn - 1))
            order_ok = 0;
        const Call* c = &sc->calls[i];
        int a, end;
        answer_span(&g_samples[s], it->turn, &a, &end);
        int same = c->T == a && c->targets_masked;
        for (int t = 0; same && t < a; t++) same = c->prompt[t] == (int32_t)g_samples[s].tokens[t];
        prompts_ok &= same;
        ends_ok &= c->T >= (int)n_open && memcmp(c->prompt + c->T - n_open, open, n_open * sizeof(int32_t)) == 0;
        media_ok &= c->n_media == SPECS[s].image;
        opts_ok &= c->o.temperature == 0 && c->o.max_tokens == end - a + 8 && c->o.stop_at_eod && c->o.n_stop >= 1 &&
                   c->o.stop[0] == 24;
        printf("  item %lld: %s turn %d, prompt %d tokens (answer at %d..%d), %d media, ref '%s' hyp '%s'\n",
               (long long)i, it->key, it->turn, c->T, a, end - 1, c->n_media, it->reference, it->hypothesis);
    }
    int each_once = 1;
    for (int s = 0; s < N_SAMPLES; s++)
        for (int t = 0; t < SPECS[s].n_turns; t++) each_once &= visits[s][t] == 1;
    f += check_true("every answer span is visited exactly once (4 answers, 3 samples, 2 shards)",
                    each_once && r->n_items == 4 && sc->n_calls == 4, "visits differ");
    f += check_true("answers of a sample come in turn order", order_ok, "order differs");
    f += check_true("no leakage: each prompt is exactly the sample's tokens before its answer, targets masked",
                    prompts_ok, "a prompt differs from the prefix");
    f += check_true("each prompt ends right after \"\\x16Assistant:\"", ends_ok, "prompt end differs");
    f += check_true("each prompt carries the image placed before it (none for the text sample)", media_ok, "media");
    f += check_true("greedy, stop tokens 24 and 0, budget = answer tokens + 8", opts_ok, "options differ");
    int refs_ok = 1;
    for (int64_t i = 0; i < r->n_items; i++) {
        int s = sample_index(r->items[i].key);
        char want[64];
        snprintf(want, sizeof want, " %s", SPECS[s].turns[r->items[i].turn].answer);
        refs_ok &= strcmp(r->items[i].reference, want) == 0;
    }
    f += check_true("references are the answer texts without the closing \\x17", refs_ok, "reference differs");
    free(open);
    return f;
}

static int run_scripted(ModRWKV* m, const Tokenizer* tok, const char* dir, EvalMetric metric, EvalResult* r,
                        Script* sc) {
    EvalOptions o;
    eval_options_default(&o);
    o.metric = metric;
    o.generate = scripted;
    o.generate_ctx = sc;
    sc->wer = metric == EVAL_WER;
    Error e = {{0}};
    if (eval_chat(m, tok, dir, &o, r, &e) != 0) {
        printf("  eval_chat failed: %s\n", e.msg);
        return 1;
    }
    return 0;
}

static int check_report(const EvalResult* r, const char* root) {
    char path[512];
    snprintf(path, sizeof path, "%s/eval.json", root);
    EvalOptions o;
    eval_options_default(&o);
    EvalReportInfo info = {.name = "synthetic", .checkpoint = "in-memory", .data_dir = root, .tokenizer = "world",
                           .options = &o, .items_in_json = 3};
    Error e = {{0}};
    if (eval_write_json(r, &info, path, &e) != 0) return check_true("eval.json written", 0, e.msg);
    json_error_t je;
    json_t* j = json_load_file(path, 0, &je);
    int ok = j && json_real_value(json_object_get(j, "value")) == 0.5 && json_integer_value(json_object_get(j, "n")) == 4 &&
             json_array_size(json_object_get(j, "ci95")) == 2 && json_array_size(json_object_get(j, "items")) == 3 &&
             json_integer_value(json_object_get(j, "items_total")) == 4 &&
             strcmp(json_string_value(json_object_get(j, "checkpoint")), "in-memory") == 0 &&
             json_is_string(json_object_get(j, "method")) && json_is_object(json_object_get(j, "yes_no"));
    json_decref(j);
    eval_print_summary(r, "synthetic", stdout);
    return check_true("eval.json: value 0.5, n 4, a 95% interval, the method, the first 3 of 4 items", ok, "content");
}

static int check_scripted_scores(ModRWKV* m, const Tokenizer* tok, const char* dir, const char* root) {
    int f = 0;
    Script sc = {0};
    EvalResult r;
    f += run_scripted(m, tok, dir, EVAL_ACCURACY, &r, &sc);
    f += check_visits_and_prompts(tok, &r, &sc);
    Interval w = wilson_interval(2, 4);
    float got[4] = {(float)r.value, (float)r.ci.lo, (float)r.ci.hi, (float)r.n};
    float want[4] = {0.5f, (float)w.lo, (float)w.hi, 4};
    f += check_close_abs("accuracy of 'Seven.'/7, 'yes'/No, 'red'/red, 'hi'/'hi there' = 2/4 with Wilson CI", got, want,
                         4, 1e-6);
    f += check_true("yes/no table: one false positive ('yes' for No)",
                    r.yes_no.fp == 1 && r.yes_no.tp + r.yes_no.tn + r.yes_no.fn == 0, "table differs");
    f += check_report(&r, root);
    eval_result_free(&r);
    script_free(&sc);
    Script sw = {0};
    f += run_scripted(m, tok, dir, EVAL_WER, &r, &sw);
    float gw[2] = {(float)r.value, (float)r.cer}, ww[2] = {0.4f, 11.0f / 14};
    printf("  WER %lld edits / %lld words, CER %lld / %lld; CI %.3f-%.3f\n", (long long)r.word_edits,
           (long long)r.ref_words, (long long)r.char_edits, (long long)r.ref_chars, r.ci.lo, r.ci.hi);
    f += check_close_abs("WER 2/5 (one insertion, one deletion) and CER 11/14", gw, ww, 2, 1e-6);
    f += check_true("WER interval brackets the value", r.ci.lo <= r.value && r.value <= r.ci.hi, "outside");
    eval_result_free(&r);
    script_free(&sw);
    return f;
}

static int check_real_generation(ModRWKV* m, const Tokenizer* tok, const char* dir) {
    EvalOptions o;
    eval_options_default(&o);
    o.extra_tokens = 2;
    EvalResult a;
    Error e = {{0}};
    int rc = eval_chat(m, tok, dir, &o, &a, &e);
    int ok = rc == 0 && a.n_items == 4;
    for (int64_t i = 0; ok && i < a.n_items; i++) ok = a.items[i].hypothesis && a.items[i].reference;
    printf("  real greedy answers: accuracy %.3f over %lld answers in %.2f s\n", a.value, (long long)a.n, a.seconds);
    int f = check_true("real generation (generate_multimodal) runs end to end over the 4 answers", ok, e.msg);
    eval_result_free(&a);
    o.max_samples = 2;
    Script sc = {0};
    o.generate = scripted;
    o.generate_ctx = &sc;
    rc = eval_chat(m, tok, dir, &o, &a, &e);
    f += check_true("max_samples 2 reads 2 samples", rc == 0 && a.n_samples == 2 && sc.n_calls == a.n_items, e.msg);
    eval_result_free(&a);
    script_free(&sc);
    return f;
}

// NLL of the trained targets of a text-only sample, straight from the backbone.
static double direct_nll(ModRWKV* m, const Sample* s) {
    int n = (int)s->n_tokens, V = m->lm->cfg.vocab_size;
    int32_t* ids = xmalloc((size_t)n * sizeof(int32_t));
    for (int t = 0; t < n; t++) ids[t] = (int32_t)s->tokens[t];
    RWKV7Acts* acts = rwkv7_acts_create(m->lm, 1, n, 0);
    rwkv7_forward(m->lm, acts, ids, NULL);
    double nll = 0;
    for (int t = 0; t + 1 < n; t++) {
        if (!s->loss_mask[t + 1]) continue;
        const float* z = acts->logits + (size_t)t * V;
        double mx = z[0], sum = 0;
        for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
        for (int v = 0; v < V; v++) sum += exp(z[v] - mx);
        nll += mx + log(sum) - z[ids[t + 1]];
    }
    rwkv7_acts_free(m->lm, acts);
    free(ids);
    return nll;
}

static int check_perplexity(ModRWKV* m, const char* dir) {
    int f = 0;
    EvalOptions o;
    eval_options_default(&o);
    o.metric = EVAL_PERPLEXITY;
    EvalResult r1, r3;
    Error e = {{0}};
    o.batch_size = 1;
    int rc = eval_perplexity(m, dir, &o, &r1, &e);
    o.batch_size = 3;
    rc |= eval_perplexity(m, dir, &o, &r3, &e);
    if (rc != 0) return check_true("perplexity runs", 0, e.msg);
    int64_t targets = 0;
    for (int s = 0; s < N_SAMPLES; s++)
        for (size_t t = 1; t < g_samples[s].n_tokens; t++) targets += g_samples[s].loss_mask[t];
    printf("  perplexity %.2f (batch 1) / %.2f (batch 3); %lld / %lld targets (masks: %lld)\n", r1.value, r3.value,
           (long long)r1.n, (long long)r3.n, (long long)targets);
    f += check_true("perplexity counts exactly the trained targets of the loss masks",
                    r1.n == targets && r3.n == targets && r1.n_samples == 3, "count differs");
    float a = (float)r1.nll_sum, b = (float)r3.nll_sum;
    f += check_close_rel("summed NLL is the same for batch sizes 1 and 3", &b, &a, 1, 1e-5, 1e-6);
    float p = (float)r1.value, pw = (float)exp(r1.nll_sum / (double)r1.n);
    f += check_close_rel("perplexity = exp(summed NLL / targets)", &p, &pw, 1, 1e-6, 1e-6);
    float got = 0, want = (float)direct_nll(m, &g_samples[2]);
    for (int64_t i = 0; i < r3.n_items; i++)
        if (strcmp(r3.items[i].key, "s2") == 0) got = (float)r3.items[i].nll;
    f += check_close_rel("NLL of the text-only sample vs a direct backbone forward", &got, &want, 1, 1e-4, 1e-6);
    eval_result_free(&r1);
    eval_result_free(&r3);
    return f;
}

static int check_rejections(ModRWKV* m, const Tokenizer* tok, const char* text_dir) {
    int f = 0;
    EvalOptions o;
    eval_options_default(&o);
    EvalResult r;
    Error e = {{0}};
    int rc = eval_chat(m, tok, text_dir, &o, &r, &e);
    eval_result_free(&r);
    f += expect_reject("a text dataset has no chat answers", rc, &e, text_dir, "not a chat answer");
    EvalMetric metric;
    rc = eval_parse_metric("bleu", &metric, &e);
    f += expect_reject("an unknown metric", rc, &e, "bleu", "accuracy, wer, perplexity, mc, lambada or mse");
    o.metric = EVAL_PERPLEXITY;
    rc = eval_perplexity(m, text_dir, &o, &r, &e);
    f += check_true("the text dataset is measured by perplexity", rc == 0 && r.n > 0, e.msg);
    eval_result_free(&r);
    return f;
}

// ---------------------------------------------------------------------------------------------------- main

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) { return remove(path); }
static void rm_entry_tree(const char* dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

int main(void) {
    char root[] = "/tmp/modrwkv-test-eval-XXXXXX";
    if (!mkdtemp(root)) fatal("mkdtemp failed");
    char chat_dir[600], text_dir[600];
    snprintf(chat_dir, sizeof chat_dir, "%s/chat", root);
    snprintf(text_dir, sizeof text_dir, "%s/text", root);
    Error e = {{0}};
    Tokenizer* tok = tokenizer_from_spec("world", &e);
    if (!tok) fatal("%s", e.msg);
    TestRng rng;
    test_rng_seed(&rng, 5);
    for (int s = 0; s < N_SAMPLES; s++) g_samples[s] = build_sample(tok, &SPECS[s], &rng);
    write_dataset(chat_dir, g_samples, N_SAMPLES, &e);
    Sample doc = {.key = xstrdup("doc")};
    const char* words = "A passage of plain text, every token trained.";
    chat_build_document(tok, words, strlen(words), 1, &doc);
    write_dataset(text_dir, &doc, 1, &e);
    sample_free(&doc);

    Backend* be = backend_cpu_create(1);
    ModRWKV* m = make_model(be);
    int f = 0;
    f += check_scripted_scores(m, tok, chat_dir, root);
    f += check_real_generation(m, tok, chat_dir);
    f += check_perplexity(m, chat_dir);
    f += check_rejections(m, tok, text_dir);

    modrwkv_free(m);
    backend_destroy(be);
    for (int s = 0; s < N_SAMPLES; s++) sample_free(&g_samples[s]);
    tokenizer_free(tok);
    rm_entry_tree(root);
    return test_summary("test_eval", f);
}

// test_eval_choice.c — multiple-choice evaluation by likelihood (experiments/eval.h, EVAL_MC):
//   1. hand-computed scores: a backbone whose logits are the same known vector z at every position (ln_out
//      weight 0, bias e_0, head column 0 = z), so log p(choice) = sum over its tokens of z[t] - logsumexp(z);
//      three questions where the summed and the per-token scores agree, disagree, and are wrong: accuracy 2/3
//      and length-normalised 1/3 with their Wilson intervals; the prompt of a two-turn sample ends before its
//      last answer; a sample without an answer is its own prompt;
//   2. the real scorer (prompt prefilled once, choices continued from copies of its RNN state) equals the
//      one-pass teacher-forced NLL of "prompt + choice" from the perplexity path, on a model with a ViT and
//      questions with images;
//   3. a scripted scorer: ties go to the lowest index; it receives the prompt up to "\x16Assistant:" with its
//      image and the tokens of " <choice>\x17";
//   4. eval_chat dispatches mc (what `modrwkv sweep` calls); max_samples;
//   5. rejections naming the file and line or key: no choices file, a sample missing from it, an answer index
//      out of range, a duplicate key, one choice, a line that is not JSON, a prompt that does not end with
//      "\x16Assistant:".
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/chat_template.h"
#include "experiments/eval.h"
#include "tests/testutil.h"
#include "trainer/rwkv7_init.h"

enum { S = 16, IMG_TOKENS = 16, C_CONST = 16, V_WORLD = 65536 };

// ---------------------------------------------------------------------------------------------------- fixtures

// A chat sample: user turns with questions, assistant turns with answers (answers[t] NULL: none);
// image: one 8x8 grey image before the first question.
static Sample chat_sample(const Tokenizer* tok, const char* key, const char* const* q, const char* const* a, int n,
                          int image, TestRng* r) {
    Sample s = {0};
    s.key = xstrdup(key);
    ChatTurn turns[8];
    char first[256];
    snprintf(first, sizeof first, "%s%s", image ? "<image>\n" : "", q[0]);
    for (int t = 0; t < n; t++) {
        const char* question = t == 0 ? first : q[t];
        turns[2 * t] = (ChatTurn){CHAT_USER, question, strlen(question)};
        turns[2 * t + 1] = (ChatTurn){CHAT_ASSISTANT, a[t], strlen(a[t])};
    }
    if (image) {
        s.n_media = 1;
        s.media = xcalloc(1, sizeof(MediaItem));
        s.media[0] = (MediaItem){.kind = MEDIA_IMAGE_PIXELS, .n_placeholder = IMG_TOKENS, .height = 8, .width = 8,
                                 .channels = 1};
        s.media[0].pixels = xmalloc(64);
        for (int i = 0; i < 64; i++) s.media[0].pixels[i] = (uint8_t)test_rng_uniform(r, 0, 255);
    }
    Error e = {{0}};
    if (chat_build(tok, turns, 2 * n, &s, key, &e) != 0) fatal("%s", e.msg);
    return s;
}

// The sample cut right after its last "\x16Assistant:" with every loss off: a question without an answer.
static void drop_answer(Sample* s) {
    size_t t = s->n_tokens;
    while (t > 0 && !s->loss_mask[t - 1]) t--;   // after the last trained token
    while (t > 0 && s->loss_mask[t - 1]) t--;    // the start of the last answer
    s->n_tokens = t;
    memset(s->loss_mask, 0, t);
}

static void write_samples(const char* dir, Sample* samples, int n) {
    Error e = {{0}};
    ShardWriterOptions wo = {.dir = dir, .split = "test", .max_samples = 2, .compression = 0, .tokenizer = "world",
                             .vocab_size = V_WORLD, .source = "test_eval_choice", .rank = 0, .world = 1};
    ShardWriter* w = shard_writer_open(&wo, &e);
    if (!w) fatal("%s", e.msg);
    for (int i = 0; i < n; i++)
        if (shard_writer_add(w, &samples[i], &e) != 0) fatal("%s", e.msg);
    if (shard_writer_close(w, &e) != 0) fatal("%s", e.msg);
}

static void write_text(const char* path, const char* text) {
    Error e = {{0}};
    if (write_file_atomic(path, text, strlen(text), &e) != 0) fatal("%s", e.msg);
}

static ModRWKV* make_model(Backend* be, int vision, int C, uint64_t seed) {
    Config c;
    config_defaults(&c);
    if (vision) {
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
    }
    RWKV7Config rc = {.n_layer = 2, .n_embd = C, .vocab_size = V_WORLD, .head_size = 16};
    Error e = {{0}};
    RWKV7* lm = rwkv7_create(&rc, be, &e);
    if (!lm) fatal("%s", e.msg);
    rwkv7_init(lm, RWKV7_INIT_RANDOM, seed);
    ModRWKV* m = modrwkv_create(lm, &c.model, seed + 2, &e);
    if (!m) fatal("%s", e.msg);
    return m;
}

// Logits = z at every position: ln_out's output is the constant e_0 and the head's column 0 is z.
static void make_constant_logits(ModRWKV* m, const float* z) {
    ModelParams* p = &m->lm->params;
    int C = m->lm->cfg.n_embd, V = m->lm->cfg.vocab_size;
    for (int c = 0; c < C; c++) p->ln_out_w[c] = 0, p->ln_out_b[c] = c == 0;
    for (int v = 0; v < V; v++)
        for (int c = 0; c < C; c++) p->head[(size_t)v * C + c] = c == 0 ? z[v] : 0.0f;
}

static int32_t one_token(const Tokenizer* tok, const char* text) {
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(tok, text, strlen(text), &ids, &n);
    if (n != 1) fatal("'%s' is %zu tokens, expected 1", text, n);
    int32_t id = ids[0];
    free(ids);
    return id;
}

// sum over the tokens of " <choice>\x17" of z[t] - lse: the hand-computed log-likelihood.
static double expected_ll(const Tokenizer* tok, const float* z, double lse, const char* choice, int* n_tokens) {
    char text[128];
    snprintf(text, sizeof text, " %s\x17", choice);
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(tok, text, strlen(text), &ids, &n);
    double ll = 0;
    for (size_t i = 0; i < n; i++) ll += z[ids[i]] - lse;
    free(ids);
    *n_tokens = (int)n;
    return ll;
}

static int run_mc(ModRWKV* m, const Tokenizer* tok, const char* dir, const char* choices, EvalResult* r, Error* e) {
    EvalOptions o;
    eval_options_default(&o);
    o.metric = EVAL_MC;
    o.choices = choices;
    return eval_multiple_choice(m, tok, dir, &o, r, e);
}

// ---------------------------------------------------------------------------------------------------- 1. hand-computed

static const char* const Q_CHOICES[3][3] = {{"red", "blue", "green"}, {"cat", "cat food", NULL}, {"yes", "no", NULL}};

// The items of the three hand-computed questions against the formulas.
static int check_constant_items(const EvalResult* r, const Tokenizer* tok, const float* z, double lse, int q1_last,
                                int q2_tokens) {
    float got[8], want[8];
    int n = 0, tokens_ok = 1, f = 0;
    const int n_choices[3] = {3, 2, 2};
    for (int q = 0; q < 3; q++)
        for (int k = 0; k < n_choices[q]; k++) {
            int n_tok = 0;
            want[n] = (float)expected_ll(tok, z, lse, Q_CHOICES[q][k], &n_tok);
            got[n++] = (float)r->items[q].choice_ll[k];
            tokens_ok &= r->items[q].choice_tokens[k] == n_tok;
            printf("  %s choice %d '%s': %d tokens, log-likelihood %.6f (hand %.6f)\n", r->items[q].key, k,
                   Q_CHOICES[q][k], r->items[q].choice_tokens[k], r->items[q].choice_ll[k], (double)want[n - 1]);
        }
    f += check_close_rel("log-likelihood of every choice = sum of z[t] - logsumexp(z)", got, want, (size_t)n, 1e-6, 1e-6);
    f += check_true("each choice scores the tokens of \" <choice>\\x17\"", tokens_ok, "token counts differ");
    const EvalItem* it = r->items;
    f += check_true("q0: blue (z = 2) predicted by both scores, correct",
                    it[0].predicted == 1 && it[0].predicted_norm == 1 && it[0].correct && it[0].correct_norm, "q0");
    f += check_true("q1: summed picks 'cat' (fewer tokens), per-token picks 'cat food' (z[food] = 5)",
                    it[1].predicted == 0 && it[1].predicted_norm == 1 && it[1].correct && !it[1].correct_norm, "q1");
    f += check_true("q2: 'no' (z = 1) predicted, the answer is 'yes': wrong",
                    it[2].predicted == 1 && !it[2].correct && strcmp(it[2].reference, "yes") == 0 &&
                        strcmp(it[2].hypothesis, "no") == 0, "q2");
    Interval w2 = wilson_interval(2, 3), w1 = wilson_interval(1, 3);
    float acc[6] = {(float)r->value, (float)r->ci.lo, (float)r->ci.hi, (float)r->accuracy_norm, (float)r->ci_norm.lo,
                    (float)r->ci_norm.hi};
    float acc_want[6] = {2.0f / 3, (float)w2.lo, (float)w2.hi, 1.0f / 3, (float)w1.lo, (float)w1.hi};
    f += check_close_abs("accuracy 2/3 and length-normalised 1/3 with Wilson intervals", acc, acc_want, 6, 1e-6);
    printf("  q1 prompt %d tokens (its last answer starts at %d); q2 prompt %d tokens of %d\n", it[1].prompt_tokens,
           q1_last, it[2].prompt_tokens, q2_tokens);
    f += check_true("the prompt of a two-turn sample ends where its last answer starts", it[1].prompt_tokens == q1_last,
                    "prompt length differs");
    f += check_true("a sample without an answer is its own prompt", it[2].prompt_tokens == q2_tokens, "differs");
    f += check_true("the items come in sample order (q0, q1, q2) with their sample indices",
                    strcmp(it[0].key, "q0") == 0 && strcmp(it[2].key, "q2") == 0 && it[2].sample == 2, "order");
    return f;
}

static int check_hand_computed(Backend* be, const Tokenizer* tok, const char* root) {
    char dir[600], file[700];
    snprintf(dir, sizeof dir, "%s/const", root);
    snprintf(file, sizeof file, "%s/choices.jsonl", dir);
    TestRng rng;
    test_rng_seed(&rng, 3);
    const char* q0[1] = {"Which colour is the sky?"};
    const char* a0[1] = {"blue"};
    const char* q1[2] = {"Say a word.", "What do cats eat?"};
    const char* a1[2] = {"hello", "cat"};
    const char* q2[1] = {"Is fire cold?"};
    const char* a2[1] = {"no"};
    Sample s[3] = {chat_sample(tok, "q0", q0, a0, 1, 0, &rng), chat_sample(tok, "q1", q1, a1, 2, 0, &rng),
                   chat_sample(tok, "q2", q2, a2, 1, 0, &rng)};
    drop_answer(&s[2]);   // q2 has no answer: the whole sample is the prompt
    size_t q1_last = s[1].n_tokens;   // where q1's last answer starts
    while (!s[1].loss_mask[q1_last - 1]) q1_last--;
    while (s[1].loss_mask[q1_last - 1]) q1_last--;
    write_samples(dir, s, 3);
    write_text(file, "{\"key\": \"q0\", \"choices\": [\"red\", \"blue\", \"green\"], \"answer\": 1}\n"
                     "\n"
                     "{\"key\": \"q2\", \"choices\": [\"yes\", \"no\"], \"answer\": 0}\n"
                     "{\"key\": \"unused\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n"
                     "{\"key\": \"q1\", \"choices\": [\"cat\", \"cat food\"], \"answer\": 0}\n");

    ModRWKV* m = make_model(be, 0, C_CONST, 21);
    float* z = xcalloc(V_WORLD, sizeof(float));
    z[one_token(tok, " blue")] = 2.0f;
    z[one_token(tok, " food")] = 5.0f;
    z[one_token(tok, " no")] = 1.0f;
    make_constant_logits(m, z);
    double sum = 0;
    for (int v = 0; v < V_WORLD; v++) sum += exp((double)z[v]);
    double lse = log(sum);

    EvalResult r;
    Error e = {{0}};
    int rc = run_mc(m, tok, dir, NULL, &r, &e);   // the default sidecar <dir>/choices.jsonl
    int f = check_true("mc runs on the constant-logits model with the default choices file", rc == 0 && r.n == 3, e.msg);
    if (rc == 0) f += check_constant_items(&r, tok, z, lse, (int)q1_last, (int)s[2].n_tokens);
    eval_result_free(&r);

    EvalOptions o;   // what the sweep calls: eval_chat with the metric
    eval_options_default(&o);
    o.metric = EVAL_MC;
    o.max_samples = 2;
    rc = eval_chat(m, tok, dir, &o, &r, &e);
    f += check_true("eval_chat dispatches mc; max_samples 2 scores 2 questions", rc == 0 && r.n == 2 && r.n_samples == 2,
                    e.msg);
    eval_result_free(&r);
    free(z);
    modrwkv_free(m);
    for (int i = 0; i < 3; i++) sample_free(&s[i]);
    return f;
}

// ---------------------------------------------------------------------------------------------------- 2. vs one pass

// Per question and choice, the same prompt with the choice as its answer: the perplexity path's NLL of those
// targets is minus the choice's log-likelihood.
static int check_against_one_pass(Backend* be, const Tokenizer* tok, const char* root) {
    static const char* const QUESTIONS[2] = {"What digit is this?", "Is the square bright?"};
    static const char* const CHOICES[2][3] = {{"seven", "one", "four"}, {"yes", "no", "maybe not"}};
    char mc_dir[600], pp_dir[600];
    snprintf(mc_dir, sizeof mc_dir, "%s/vision-mc", root);
    snprintf(pp_dir, sizeof pp_dir, "%s/vision-pp", root);
    Sample mc[2], pp[6];
    for (int q = 0; q < 2; q++) {
        char key[32];
        for (int k = 0; k < 3; k++) {
            TestRng rng;
            test_rng_seed(&rng, 100 + (uint64_t)q);   // the same image for every sample of question q
            snprintf(key, sizeof key, "q%d-c%d", q, k);
            pp[q * 3 + k] = chat_sample(tok, key, &QUESTIONS[q], &CHOICES[q][k], 1, 1, &rng);
        }
        TestRng rng;
        test_rng_seed(&rng, 100 + (uint64_t)q);
        snprintf(key, sizeof key, "q%d", q);
        mc[q] = chat_sample(tok, key, &QUESTIONS[q], &CHOICES[q][0], 1, 1, &rng);
    }
    write_samples(mc_dir, mc, 2);
    write_samples(pp_dir, pp, 6);
    char file[700];
    snprintf(file, sizeof file, "%s/choices.jsonl", mc_dir);
    write_text(file, "{\"key\": \"q0\", \"choices\": [\"seven\", \"one\", \"four\"], \"answer\": 0}\n"
                     "{\"key\": \"q1\", \"choices\": [\"yes\", \"no\", \"maybe not\"], \"answer\": 2}\n");
    ModRWKV* m = make_model(be, 1, 32, 11);
    EvalResult r, p;
    Error e = {{0}};
    EvalOptions o;
    eval_options_default(&o);
    o.metric = EVAL_PERPLEXITY;
    o.batch_size = 3;
    int rc = run_mc(m, tok, mc_dir, NULL, &r, &e);
    if (rc == 0) rc = eval_perplexity(m, pp_dir, &o, &p, &e);
    int f = check_true("mc and the perplexity path run on the vision model", rc == 0 && r.n == 2 && p.n_items == 6, e.msg);
    if (rc == 0) {
        float got[6], want[6];
        for (int i = 0; i < 6; i++) {   // the shards are read in the loader's order: match by key
            const EvalItem* one = NULL;
            char key[16];
            snprintf(key, sizeof key, "%s-c%d", r.items[i / 3].key, i % 3);
            for (int j = 0; j < 6; j++)
                if (strcmp(p.items[j].key, key) == 0) one = &p.items[j];
            if (!one) fatal("no perplexity item %s", key);
            got[i] = (float)r.items[i / 3].choice_ll[i % 3];
            want[i] = (float)-one->nll;
            printf("  %s: prefill + state %.6f, one pass %.6f (%lld targets)\n", key, (double)got[i], (double)want[i],
                   (long long)one->targets);
        }
        f += check_close_rel("choice log-likelihood (prefill + state copies) = -NLL of the one-pass forward", got, want,
                             6, 1e-4, 1e-3);
    }
    eval_result_free(&r);
    eval_result_free(&p);
    modrwkv_free(m);
    for (int i = 0; i < 2; i++) sample_free(&mc[i]);
    for (int i = 0; i < 6; i++) sample_free(&pp[i]);
    return f;
}

// ---------------------------------------------------------------------------------------------------- 3. scripted

typedef struct Scripted {
    const Tokenizer* tok;
    int calls, prompt_ok, media, conts_ok;
} Scripted;

static int scripted_scores(void* ctx, ModRWKV* m, const ShardBatch* prompt, const int32_t* const* conts,
                           const int* n_conts, int n, double* ll, Error* e) {
    Scripted* s = ctx;
    size_t n_open = 0;
    int32_t* open = NULL;
    tokenizer_encode(s->tok, "\x16" "Assistant:", 11, &open, &n_open);
    s->prompt_ok &= prompt->T >= (int)n_open &&
                    memcmp(prompt->tokens + prompt->T - n_open, open, n_open * sizeof(int32_t)) == 0;
    free(open);
    s->media += prompt->n_media;
    for (int k = 0; k < n; k++) {
        char* text = NULL;
        size_t len = 0;
        if (tokenizer_decode(s->tok, conts[k], (size_t)n_conts[k], &text, &len, e) != 0) return -1;
        s->conts_ok &= text[0] == ' ' && text[len - 1] == '\x17';
        free(text);
        ll[k] = k == 0 ? -3.0 : -1.0;   // choices 1 and 2 tie: the lowest index wins
    }
    s->calls++;
    return 0;
}

static int check_scripted(Backend* be, const Tokenizer* tok, const char* root) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/vision-mc", root);   // written by check_against_one_pass
    ModRWKV* m = make_model(be, 1, 32, 11);
    Scripted sc = {.tok = tok, .prompt_ok = 1, .conts_ok = 1};
    EvalOptions o;
    eval_options_default(&o);
    o.metric = EVAL_MC;
    o.score = scripted_scores;
    o.score_ctx = &sc;
    EvalResult r;
    Error e = {{0}};
    int rc = eval_multiple_choice(m, tok, dir, &o, &r, &e);
    int f = check_true("the scripted scorer is called once per question", rc == 0 && sc.calls == 2, e.msg);
    f += check_true("ties (choices 1 and 2 at -1) go to the lowest index: 1, wrong for q0 and q1",
                    rc == 0 && r.items[0].predicted == 1 && r.items[1].predicted == 1 && r.n_correct == 0, "ties");
    f += check_true("the scorer gets the prompt ending with \"\\x16Assistant:\" and its image",
                    sc.prompt_ok && sc.media == 2, "prompt");
    f += check_true("the scorer gets each choice as \" <choice>\\x17\"", sc.conts_ok, "continuations");
    eval_result_free(&r);
    modrwkv_free(m);
    return f;
}

// ---------------------------------------------------------------------------------------------------- 5. rejections

static int reject_with(ModRWKV* m, const Tokenizer* tok, const char* dir, const char* file, const char* text,
                       const char* label, const char* name, const char* must) {
    if (text) write_text(file, text);
    EvalResult r;
    Error e = {{0}};
    int rc = run_mc(m, tok, dir, file, &r, &e);
    eval_result_free(&r);
    return expect_reject(label, rc, &e, name, must);
}

static int check_rejections(Backend* be, const Tokenizer* tok, const char* root) {
    char dir[600], file[700], missing[700], text_dir[600];
    snprintf(dir, sizeof dir, "%s/const", root);
    snprintf(file, sizeof file, "%s/bad.jsonl", root);
    snprintf(missing, sizeof missing, "%s/none.jsonl", root);
    snprintf(text_dir, sizeof text_dir, "%s/text", root);
    ModRWKV* m = make_model(be, 0, C_CONST, 21);
    int f = 0;
    f += reject_with(m, tok, dir, missing, NULL, "no choices file", missing, NULL);
    f += reject_with(m, tok, dir, file,
                     "{\"key\": \"q0\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n"
                     "{\"key\": \"q2\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n",
                     "a sample missing from the choices file", "q1", "has no line in");
    f += reject_with(m, tok, dir, file, "{\"key\": \"q0\", \"choices\": [\"a\", \"b\"], \"answer\": 2}\n",
                     "an answer index out of range", "bad.jsonl:1", "answer 2");
    f += reject_with(m, tok, dir, file,
                     "{\"key\": \"q0\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n"
                     "{\"key\": \"q0\", \"choices\": [\"a\", \"b\"], \"answer\": 1}\n",
                     "a duplicate key", "bad.jsonl", "listed twice");
    f += reject_with(m, tok, dir, file, "{\"key\": \"q0\", \"choices\": [\"a\"], \"answer\": 0}\n", "one choice",
                     "bad.jsonl:1", "1 choices");
    f += reject_with(m, tok, dir, file, "{\"key\": \"q0\",\n", "a line that is not JSON", "bad.jsonl:1", "not a JSON");
    Sample doc = {.key = xstrdup("doc")};
    const char* words = "Plain text, no question.";
    chat_build_document(tok, words, strlen(words), 1, &doc);
    write_samples(text_dir, &doc, 1);
    sample_free(&doc);
    snprintf(file, sizeof file, "%s/text/choices.jsonl", root);
    f += reject_with(m, tok, text_dir, file, "{\"key\": \"doc\", \"choices\": [\"a\", \"b\"], \"answer\": 0}\n",
                     "a prompt that does not end with \"\\x16Assistant:\"", "doc", "does not end with");
    modrwkv_free(m);
    return f;
}

// ---------------------------------------------------------------------------------------------------- main

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) { return remove(path); }

int main(void) {
    char root[] = "/tmp/modrwkv-test-eval-choice-XXXXXX";
    if (!mkdtemp(root)) fatal("mkdtemp failed");
    Error e = {{0}};
    Tokenizer* tok = tokenizer_from_spec("world", &e);
    if (!tok) fatal("%s", e.msg);
    Backend* be = backend_cpu_create(1);
    int f = 0;
    f += check_hand_computed(be, tok, root);
    f += check_against_one_pass(be, tok, root);
    f += check_scripted(be, tok, root);
    f += check_rejections(be, tok, root);
    backend_destroy(be);
    tokenizer_free(tok);
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return test_summary("test_eval_choice", f);
}

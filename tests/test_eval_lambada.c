// test_eval_lambada.c — LAMBADA last-word accuracy and perplexity (experiments/eval.h, EVAL_LAMBADA):
//   1. the real tiny RWKV-7 (tests/data/tiny-rwkv7-834K-fp32.pth) on the first 8 passages of
//      tests/data/lambada_test.jsonl against the independent float64 PyTorch evaluation
//      tests/reference/vectors/lambada-tiny.json (tests/reference/lambada_reference.py): every passage's target,
//      NLL (1e-4 relative), the argmax bytes at every target position and the correct flag;
//   2. hand-computed: a World-vocabulary backbone whose logits are the same known vector z at every position
//      (ln_out weight 0, bias e_0, head column 0 = z; z[" signs"] = 4): the passages whose last word is the one
//      token " signs" are correct, the others not; each passage's NLL = sum over its target tokens of
//      logsumexp(z) - z[t]; accuracy 2/4 with its Wilson interval; word perplexity = exp(mean NLL); the
//      context is token 0 + the tokens of the text before the last space;
//   3. the same items for 1 and 3 passages per forward; max_samples;
//   4. rejections naming the file and line: no file, a line without "text", a text without a last word, a line
//      that is not JSON, tokens outside the model's vocabulary.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "experiments/eval.h"
#include "tests/testutil.h"
#include "trainer/rwkv7_init.h"

static int run_lambada(ModRWKV* m, const Tokenizer* tok, const char* path, int64_t max, int batch, EvalResult* r,
                       Error* e) {
    EvalOptions o;
    eval_options_default(&o);
    o.metric = EVAL_LAMBADA;
    o.max_samples = max;
    o.batch_size = batch;
    return eval_lambada(m, tok, path, &o, r, e);
}

// ---------------------------------------------------------------------------------------------------- 1. reference

static int same_argmax(const EvalItem* it, const json_t* argmax) {
    size_t n = json_array_size(argmax);
    if (strlen(it->hypothesis) != n) return 0;   // byte tokenizer: one byte per argmax id (no byte 0 expected)
    for (size_t j = 0; j < n; j++)
        if ((unsigned char)it->hypothesis[j] != json_integer_value(json_array_get(argmax, j))) return 0;
    return 1;
}

static int check_reference(ModRWKV* tiny, const Tokenizer* bytes) {
    json_error_t je;
    json_t* ref = json_load_file(src_path("tests/reference/vectors/lambada-tiny.json"), 0, &je);
    if (!ref) return check_true("tests/reference/vectors/lambada-tiny.json loads", 0, je.text);
    json_t* items = json_object_get(ref, "items");
    int n = (int)json_array_size(items);
    EvalResult r;
    Error e = {{0}};
    int rc = run_lambada(tiny, bytes, src_path("tests/data/lambada_test.jsonl"), n, 8, &r, &e);
    int f = check_true("lambada runs on the tiny model", rc == 0 && r.n == n, e.msg);
    if (rc == 0) {
        float got[16], want[16];
        int targets_ok = 1, argmax_ok = 1, correct_ok = 1, correct = 0;
        for (int i = 0; i < n && i < 16; i++) {
            const json_t* it = json_array_get(items, (size_t)i);
            got[i] = (float)r.items[i].nll;
            want[i] = (float)json_real_value(json_object_get(it, "nll"));
            targets_ok &= strcmp(r.items[i].reference, json_string_value(json_object_get(it, "target"))) == 0;
            argmax_ok &= same_argmax(&r.items[i], json_object_get(it, "argmax"));
            correct_ok &= r.items[i].correct == json_is_true(json_object_get(it, "correct"));
            correct += r.items[i].correct;
            printf("  %s: target '%s', NLL %.6f (reference %.6f), argmax '%s'\n", r.items[i].key, r.items[i].reference,
                   r.items[i].nll, (double)want[i], r.items[i].hypothesis);
        }
        f += check_close_rel("NLL of every last word vs the float64 PyTorch evaluation", got, want, (size_t)n, 1e-4, 1e-3);
        f += check_true("targets: the last word with its leading space, as the reference splits them", targets_ok, "target");
        f += check_true("the argmax byte at every target position equals the reference's", argmax_ok, "argmax differs");
        f += check_true("correct flags equal the reference's; accuracy = correct / n",
                        correct_ok && r.n_correct == correct && r.value == (double)correct / n, "correct differs");
        printf("  tiny model, first %d passages: accuracy %.3f, word perplexity %.4g\n", n, r.value, r.word_perplexity);
    }
    eval_result_free(&r);
    json_decref(ref);
    return f;
}

// ---------------------------------------------------------------------------------------------------- 2. hand-computed

static const char* const PASSAGES[4] = {"He held up the signs", "Put the cup on the table",
                                        "She could not read the signs", "They shouted zqxjv"};

// Logits = z at every position: ln_out's output is the constant e_0 and the head's column 0 is z.
static ModRWKV* constant_model(Backend* be, const float* z, int V) {
    RWKV7Config rc = {.n_layer = 1, .n_embd = 16, .vocab_size = V, .head_size = 16};
    Error e = {{0}};
    RWKV7* lm = rwkv7_create(&rc, be, &e);
    if (!lm) fatal("%s", e.msg);
    rwkv7_init(lm, RWKV7_INIT_RANDOM, 5);
    Config c;
    config_defaults(&c);
    ModRWKV* m = modrwkv_create(lm, &c.model, 7, &e);
    if (!m) fatal("%s", e.msg);
    ModelParams* p = &m->lm->params;
    for (int k = 0; k < 16; k++) p->ln_out_w[k] = 0, p->ln_out_b[k] = k == 0;
    for (int v = 0; v < V; v++)
        for (int k = 0; k < 16; k++) p->head[(size_t)v * 16 + k] = k == 0 ? z[v] : 0.0f;
    return m;
}

static int encode_count(const Tokenizer* tok, const char* text, size_t len, const float* z, double lse, double* nll) {
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(tok, text, len, &ids, &n);
    for (size_t i = 0; nll && i < n; i++) *nll += lse - z[ids[i]];
    free(ids);
    return (int)n;
}

static int check_items_by_hand(const EvalResult* r, const Tokenizer* tok, const float* z, double lse) {
    float got[8], want[8];
    int ctx_ok = 1, f = 0;
    double nll_sum = 0;
    for (int i = 0; i < 4; i++) {
        const char* s = PASSAGES[i];
        const char* space = strrchr(s, ' ');
        double nll = 0;
        encode_count(tok, space, strlen(space), z, lse, &nll);
        ctx_ok &= r->items[i].prompt_tokens == 1 + encode_count(tok, s, (size_t)(space - s), z, lse, NULL);
        got[i] = (float)r->items[i].nll, want[i] = (float)nll;
        nll_sum += nll;
        printf("  '%s': target '%s' %lld tokens, NLL %.6f (hand %.6f), %s\n", s, r->items[i].reference,
               (long long)r->items[i].targets, r->items[i].nll, nll, r->items[i].correct ? "correct" : "wrong");
    }
    f += check_close_rel("NLL of every last word = sum of logsumexp(z) - z[t]", got, want, 4, 1e-6, 1e-6);
    f += check_true("the context is token 0 + the tokens before the last space", ctx_ok, "prompt lengths differ");
    f += check_true("' signs' (one token, the argmax of z) is correct twice; ' table' and ' zqxjv' are not",
                    r->items[0].correct && !r->items[1].correct && r->items[2].correct && !r->items[3].correct,
                    "correct flags differ");
    Interval w = wilson_interval(2, 4);
    float a[5] = {(float)r->value, (float)r->ci.lo, (float)r->ci.hi, (float)r->word_perplexity, (float)r->nll_sum};
    float aw[5] = {0.5f, (float)w.lo, (float)w.hi, (float)exp(nll_sum / 4), (float)nll_sum};
    f += check_close_rel("accuracy 2/4, Wilson interval, word perplexity exp(mean NLL), summed NLL", a, aw, 5, 1e-6, 1e-6);
    f += check_true("the word-perplexity interval brackets the value",
                    r->word_perplexity_ci.lo <= r->word_perplexity && r->word_perplexity <= r->word_perplexity_ci.hi,
                    "outside");
    return f;
}

static int check_hand_computed(Backend* be, const Tokenizer* world, const char* root) {
    char path[600];
    snprintf(path, sizeof path, "%s/passages.jsonl", root);
    FILE* fp = fopen(path, "w");
    for (int i = 0; i < 4; i++) fprintf(fp, "{\"text\": \"%s\"}\n", PASSAGES[i]);
    fclose(fp);
    int V = 65536;
    float* z = xcalloc((size_t)V, sizeof(float));
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(world, " signs", 6, &ids, &n);
    if (n != 1) fatal("' signs' is %zu World tokens", n);
    z[ids[0]] = 4.0f;
    z[1000] = 1.0f;
    free(ids);
    double sum = 0;
    for (int v = 0; v < V; v++) sum += exp((double)z[v]);
    ModRWKV* m = constant_model(be, z, V);
    EvalResult r;
    Error e = {{0}};
    int rc = run_lambada(m, world, path, 0, 3, &r, &e);
    int f = check_true("lambada runs on the constant-logits model", rc == 0 && r.n == 4, e.msg);
    if (rc == 0) f += check_items_by_hand(&r, world, z, log(sum));
    eval_result_free(&r);
    free(z);
    modrwkv_free(m);
    return f;
}

// ---------------------------------------------------------------------------------------------------- 3. batching

static int check_batching(ModRWKV* tiny, const Tokenizer* bytes) {
    const char* data = src_path("tests/data/lambada_test.jsonl");
    EvalResult r[2];
    memset(r, 0, sizeof r);
    Error e = {{0}};
    int rc = run_lambada(tiny, bytes, data, 4, 1, &r[0], &e);
    if (rc == 0) rc = run_lambada(tiny, bytes, data, 4, 3, &r[1], &e);
    int f = check_true("4 passages with 1 and 3 per forward", rc == 0 && r[0].n == 4 && r[1].n == 4, e.msg);
    if (rc == 0) {
        float got[4], want[4];
        int same = 1;
        for (int i = 0; i < 4; i++) {
            got[i] = (float)r[1].items[i].nll, want[i] = (float)r[0].items[i].nll;
            same &= r[0].items[i].correct == r[1].items[i].correct &&
                    strcmp(r[0].items[i].hypothesis, r[1].items[i].hypothesis) == 0;
        }
        f += check_close_rel("the NLL of every passage does not depend on the passages per forward", got, want, 4,
                             1e-5, 1e-3);
        f += check_true("nor its argmax and correct flag; max_samples 4 reads 4 lines", same && r[0].n_samples == 4,
                        "differs");
    }
    eval_result_free(&r[0]);
    eval_result_free(&r[1]);
    return f;
}

// ---------------------------------------------------------------------------------------------------- 4. rejections

static int reject(ModRWKV* m, const Tokenizer* tok, const char* path, const char* text, const char* label,
                  const char* name, const char* must) {
    if (text) {
        FILE* fp = fopen(path, "w");
        fputs(text, fp);
        fclose(fp);
    }
    EvalResult r;
    Error e = {{0}};
    int rc = run_lambada(m, tok, path, 0, 8, &r, &e);
    eval_result_free(&r);
    return expect_reject(label, rc, &e, name, must);
}

static int check_rejections(ModRWKV* tiny, const Tokenizer* bytes, const Tokenizer* world, const char* root) {
    char path[600], none[600];
    snprintf(path, sizeof path, "%s/bad.jsonl", root);
    snprintf(none, sizeof none, "%s/none.jsonl", root);
    int f = 0;
    f += reject(tiny, bytes, none, NULL, "no file", none, NULL);
    f += reject(tiny, bytes, path, "{\"text\": \"a b\"}\n{\"words\": \"a b\"}\n", "a line without \"text\"",
                "bad.jsonl:2", "expected {\"text\"");
    f += reject(tiny, bytes, path, "{\"text\": \"nospace\"}\n", "a text without a last word", "bad.jsonl:1", "last word");
    f += reject(tiny, bytes, path, "{\"text\": \"a b\"\n", "a line that is not JSON", "bad.jsonl:1", "not a JSON");
    f += reject(tiny, bytes, path, "\n\n", "no passages", "bad.jsonl", "no passages");
    f += reject(tiny, world, path, "{\"text\": \"He held up the signs\"}\n", "World tokens for a 256-token model",
                "bad.jsonl:1", "outside the model's vocabulary");
    return f;
}

int main(void) {
    char root[] = "/tmp/modrwkv-test-eval-lambada-XXXXXX";
    if (!mkdtemp(root)) fatal("mkdtemp failed");
    Error e = {{0}};
    Tokenizer* world = tokenizer_from_spec("world", &e);
    Tokenizer* bytes = tokenizer_from_spec("bytes", &e);
    if (!world || !bytes) fatal("%s", e.msg);
    Backend* be = backend_cpu_create(1);
    ModRWKV* tiny = modrwkv_load(src_path("tests/data/tiny-rwkv7-834K-fp32.pth"), be, NULL, &e);
    if (!tiny) fatal("%s", e.msg);
    int f = 0;
    f += check_reference(tiny, bytes);
    f += check_hand_computed(be, world, root);
    f += check_batching(tiny, bytes);
    f += check_rejections(tiny, bytes, world, root);
    modrwkv_free(tiny);
    backend_destroy(be);
    tokenizer_free(world);
    tokenizer_free(bytes);
    char path[700];
    const char* files[] = {"passages.jsonl", "bad.jsonl"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", root, files[i]);
        unlink(path);
    }
    rmdir(root);
    return test_summary("test_eval_lambada", f);
}

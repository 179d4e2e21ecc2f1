// eval_choice.c — multiple-choice questions scored by likelihood (EVAL_MC, contract in experiments/eval.h):
// the choices sidecar (choices.jsonl), the prompt of each question, the log-likelihood of every choice after
// it (the prompt prefilled once, the choices continuing from copies of its RNN state), the predictions and
// the accuracy with Wilson intervals.
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/eval_internal.h"

static const char CHOICES_FILE[] = "choices.jsonl";

// ---------------------------------------------------------------------------------------------------- the sidecar

typedef struct Question {
    char* key;
    char** choices;   // (n_choices)
    int n_choices;
    int answer;       // 0-based
} Question;

typedef struct ChoiceTable {
    const char* path;
    Question* q;      // sorted by key once read
    size_t n;
} ChoiceTable;

static void table_free(ChoiceTable* t) {
    for (size_t i = 0; i < t->n; i++) {
        for (int k = 0; k < t->q[i].n_choices; k++) free(t->q[i].choices[k]);
        free(t->q[i].choices);
        free(t->q[i].key);
    }
    free(t->q);
    memset(t, 0, sizeof *t);
}

// One line: {"key": "...", "choices": ["...", ...], "answer": i}.
static int read_question(void* ctx, json_t* v, size_t line, Error* e) {
    ChoiceTable* t = ctx;
    json_t *key = json_object_get(v, "key"), *choices = json_object_get(v, "choices"), *answer = json_object_get(v, "answer");
    if (!json_is_string(key) || !json_is_array(choices) || !json_is_integer(answer))
        return errorf(e, "%s:%zu: expected {\"key\": \"<sample key>\", \"choices\": [\"...\", ...], \"answer\": <0-based "
                         "index>}", t->path, line);
    size_t n = json_array_size(choices);
    if (n < 2 || n > EVAL_MAX_CHOICES)
        return errorf(e, "%s:%zu: question '%s' has %zu choices: give 2 to %d", t->path, line, json_string_value(key), n,
                      EVAL_MAX_CHOICES);
    json_int_t a = json_integer_value(answer);
    if (a < 0 || (size_t)a >= n)
        return errorf(e, "%s:%zu: question '%s': answer %lld is not the index of one of its %zu choices (0-based)",
                      t->path, line, json_string_value(key), (long long)a, n);
    for (size_t k = 0; k < n; k++)
        if (!json_is_string(json_array_get(choices, k)))
            return errorf(e, "%s:%zu: question '%s': choice %zu is not a string", t->path, line, json_string_value(key), k);
    if ((t->n & (t->n - 1)) == 0) t->q = xrealloc(t->q, (t->n ? 2 * t->n : 16) * sizeof(Question));
    Question* q = &t->q[t->n++];
    q->key = xstrdup(json_string_value(key));
    q->n_choices = (int)n;
    q->answer = (int)a;
    q->choices = xmalloc(n * sizeof(char*));
    for (size_t k = 0; k < n; k++) q->choices[k] = xstrdup(json_string_value(json_array_get(choices, k)));
    return 0;
}

static int by_key(const void* a, const void* b) { return strcmp(((const Question*)a)->key, ((const Question*)b)->key); }

static int table_read(ChoiceTable* t, const char* path, Error* e) {
    t->path = path;
    if (eval_read_jsonl(path, read_question, t, e) != 0) return -1;
    if (t->n == 0) return errorf(e, "%s: no questions: one line per question {\"key\", \"choices\", \"answer\"}", path);
    qsort(t->q, t->n, sizeof(Question), by_key);
    for (size_t i = 1; i < t->n; i++)
        if (strcmp(t->q[i - 1].key, t->q[i].key) == 0)
            return errorf(e, "%s: question '%s' is listed twice (one line per sample key)", path, t->q[i].key);
    return 0;
}

static const Question* table_find(const ChoiceTable* t, const char* key) {
    Question probe = {.key = (char*)key};
    return bsearch(&probe, t->q, t->n, sizeof(Question), by_key);
}

// ---------------------------------------------------------------------------------------------------- scoring

// state (B = K) = K copies of one (B = 1): every array is (L, B, ...) with B the second axis.
static void replicate_state(const RWKV7* lm, const RWKV7State* one, RWKV7State* many, int K) {
    const RWKV7Config* c = &lm->cfg;
    size_t C = (size_t)c->n_embd, kv = (size_t)c->n_embd * (size_t)c->head_size;   // H * N * N = C * N
    for (int l = 0; l < c->n_layer; l++)
        for (int k = 0; k < K; k++) {
            memcpy(many->att_x_prev + ((size_t)l * K + k) * C, one->att_x_prev + (size_t)l * C, C * sizeof(float));
            memcpy(many->ffn_x_prev + ((size_t)l * K + k) * C, one->ffn_x_prev + (size_t)l * C, C * sizeof(float));
            memcpy(many->att_kv + ((size_t)l * K + k) * kv, one->att_kv + (size_t)l * kv, kv * sizeof(float));
        }
}

// ll[k] += the log-likelihood of conts[k][1..] given the prompt state and conts[k][0]: one forward of K rows
// of width max(n) - 1 from K copies of the state, the head restricted to the rows that predict a token.
static void score_continuations(RWKV7* lm, const RWKV7State* prompt_state, const int32_t* const* conts,
                                const int* n_conts, int K, double* ll) {
    int W = 0, n_rows = 0, V = lm->cfg.vocab_size;
    for (int k = 0; k < K; k++) W = n_conts[k] - 1 > W ? n_conts[k] - 1 : W;
    if (W == 0) return;
    int32_t* tokens = xcalloc((size_t)K * W, sizeof(int32_t));   // (K, W), padding 0 after each choice
    int32_t* rows = xmalloc((size_t)K * W * sizeof(int32_t));
    for (int k = 0; k < K; k++)
        for (int t = 0; t + 1 < n_conts[k]; t++) {
            tokens[k * W + t] = conts[k][t];
            rows[n_rows++] = k * W + t;
        }
    RWKV7State* st = rwkv7_state_create(lm, K);
    replicate_state(lm, prompt_state, st, K);
    RWKV7Acts* acts = rwkv7_acts_create_rows(lm, K, W, 0, n_rows);
    rwkv7_set_head_rows_list(acts, rows, n_rows);
    rwkv7_forward(lm, acts, tokens, st);
    for (int i = 0; i < n_rows; i++) {   // logits (n_rows, V) in row order
        int k = rows[i] / W, t = rows[i] % W;
        ll[k] += token_log_prob(acts->logits + (size_t)i * V, V, conts[k][t + 1], NULL);
    }
    rwkv7_acts_free(lm, acts);
    rwkv7_state_free(lm, st);
    free(rows);
    free(tokens);
}

// Columns of the assembled prompt: text tokens + every item's feature tokens in place of its placeholders.
static int prompt_width(const ModRWKV* m, const ShardBatch* p, Error* e) {
    int T = p->T;
    for (int i = 0; i < p->n_media; i++) {
        int n = modrwkv_media_tokens(m, p->media[i].kind, &p->media[i]);
        if (n < 1) return errorf(e, "media item %d cannot be encoded: the model has no encoder for its kind", i + 1);
        T += n - p->media[i].n_placeholder;
    }
    return T;
}

// The default EvalScoreFn: the prompt prefilled once (encoders, projectors, backbone), then every choice.
static int model_scores(void* ctx, ModRWKV* m, const ShardBatch* prompt, const int32_t* const* conts,
                        const int* n_conts, int K, double* ll, Error* e) {
    int T = prompt_width(m, prompt, e), V = m->lm->cfg.vocab_size;
    if (T < 0) return -1;
    if (T < 1) return errorf(e, "the prompt is empty");
    MMBatch mb;
    modrwkv_assemble(m, prompt, &mb, 1, T);
    ModRWKVStep* step = modrwkv_step_create_rows(m, 1, T, 0, 1);   // the last prompt row's logits only
    RWKV7State* st = rwkv7_state_create(m->lm, 1);
    int rc = modrwkv_prefill(m, step, &mb, st, e);
    if (rc == 0) {
        const float* first = modrwkv_step_acts(step)->logits;   // predicts every choice's first token
        for (int k = 0; k < K; k++) ll[k] = token_log_prob(first, V, conts[k][0], NULL);
        score_continuations(m->lm, st, conts, n_conts, K, ll);
    }
    rwkv7_state_free(m->lm, st);
    modrwkv_step_free(m, step);
    mmbatch_free(&mb);
    return rc;
}

// ---------------------------------------------------------------------------------------------------- questions

typedef struct ChoiceRun {
    ModRWKV* m;
    const Tokenizer* tok;
    const EvalOptions* o;
    const char* dir;
    const ChoiceTable* table;
    int32_t* open;              // the tokens of "\x16Assistant:"
    size_t n_open;
    EvalResult* r;
} ChoiceRun;

// The prompt of the sample in row 0: the tokens before its last trained run, or all of them.
static int question_prompt(const ChoiceRun* c, const ShardBatch* b, int* a, Error* e) {
    const BatchSample* s = &b->samples[0];
    int end = s->length, t = end;
    while (t > 1 && b->targets[t - 2] < 0) t--;   // token u is trained when targets[u - 1] >= 0
    if (t > 1) {                                   // token t - 1 ends the last answer: find its start
        end = t - 1;
        while (end > 1 && b->targets[end - 2] >= 0) end--;
    }
    *a = end;
    if (!eval_answer_follows(b->tokens, *a, c->open, c->n_open))
        return errorf(e, "%s: sample '%s': the question does not end with \"\\x16Assistant:\" (a multiple-choice sample "
                         "is a chat question, optionally followed by its answer)", c->dir, s->key);
    return 0;
}

static int argmax(const double* v, int n) {
    int best = 0;
    for (int k = 1; k < n; k++)
        if (v[k] > v[best]) best = k;
    return best;
}

// Tokens of " <choice>\x17" for every choice, checked against the model's vocabulary.
static int tokenize_choices(const ChoiceRun* c, const Question* q, int32_t** conts, int* n_conts, Error* e) {
    int V = c->m->lm->cfg.vocab_size;
    for (int k = 0; k < q->n_choices; k++) {
        size_t len = strlen(q->choices[k]), n = 0;
        char* text = xmalloc(len + 3);
        snprintf(text, len + 3, " %s\x17", q->choices[k]);
        tokenizer_encode(c->tok, text, len + 2, &conts[k], &n);
        free(text);
        n_conts[k] = (int)n;
        for (size_t i = 0; i < n; i++)
            if (conts[k][i] < 0 || conts[k][i] >= V)
                return errorf(e, "%s: question '%s', choice %d: token %d is outside the model's vocabulary of %d (use the "
                                 "model's tokenizer)", c->table->path, q->key, k, conts[k][i], V);
    }
    return 0;
}

static void record(ChoiceRun* c, const Question* q, int64_t index, int a, const double* ll, const int* n_conts) {
    EvalItem* it = eval_add_item(c->r, q->key, index, 0);
    it->prompt_tokens = a;
    it->n_choices = q->n_choices;
    it->answer = q->answer;
    it->choice_ll = xmalloc((size_t)q->n_choices * sizeof(double));
    it->choice_tokens = xmalloc((size_t)q->n_choices * sizeof(int));
    double per_token[EVAL_MAX_CHOICES];
    for (int k = 0; k < q->n_choices; k++) {
        it->choice_ll[k] = ll[k];
        it->choice_tokens[k] = n_conts[k];
        per_token[k] = ll[k] / n_conts[k];
    }
    it->predicted = argmax(ll, q->n_choices);
    it->predicted_norm = argmax(per_token, q->n_choices);
    it->correct = it->predicted == q->answer;
    it->correct_norm = it->predicted_norm == q->answer;
    it->reference = xstrdup(q->choices[q->answer]);
    it->hypothesis = xstrdup(q->choices[it->predicted]);
}

// Scores every choice of the question in row 0 of b and records the item.
static int eval_question(ChoiceRun* c, const ShardBatch* b, int64_t index, Error* e) {
    const char* key = b->samples[0].key;
    const Question* q = table_find(c->table, key);
    if (!q)
        return errorf(e, "%s: sample '%s' has no line in %s: add {\"key\": \"%s\", \"choices\": [...], \"answer\": i}",
                      c->dir, key, c->table->path, key);
    int a = 0;
    if (question_prompt(c, b, &a, e) != 0) return -1;
    int32_t* conts[EVAL_MAX_CHOICES] = {0};
    int n_conts[EVAL_MAX_CHOICES] = {0};
    double ll[EVAL_MAX_CHOICES] = {0};
    int rc = tokenize_choices(c, q, conts, n_conts, e);
    if (rc == 0) {
        ShardBatch prompt;
        eval_prompt_view(b, a, &prompt);
        Error se = {{0}};
        EvalScoreFn score = c->o->score ? c->o->score : model_scores;
        rc = score(c->o->score_ctx, c->m, &prompt, (const int32_t* const*)conts, n_conts, q->n_choices, ll, &se);
        eval_prompt_free(&prompt);
        if (rc != 0) errorf(e, "%s: sample '%s': %s", c->dir, key, se.msg);
    }
    if (rc == 0) record(c, q, index, a, ll, n_conts);
    for (int k = 0; k < q->n_choices; k++) free(conts[k]);
    return rc;
}

static int choice_loop(ChoiceRun* c, ShardLoader* L, uint64_t total, Error* e) {
    int rc = 0;
    for (uint64_t i = 0; rc == 0 && i < total; i++) {
        ShardBatch* b = NULL;
        rc = shard_loader_next(L, &b, e);
        if (rc == 0 && eval_rank_takes(c->o, (int64_t)i)) rc = eval_question(c, b, (int64_t)i, e);
        shard_batch_free(b);
        c->r->n_samples += rc == 0;
        if (rc == 0) eval_progress(c->o, "questions", c->r->n_items, i + 1, total);
    }
    return rc;
}

static void finish_choices(EvalResult* r) {
    r->n = r->n_items;
    for (int64_t i = 0; i < r->n_items; i++) {
        r->n_correct += r->items[i].correct;
        r->n_correct_norm += r->items[i].correct_norm;
    }
    r->value = r->n ? (double)r->n_correct / (double)r->n : 0.0;
    r->ci = wilson_interval(r->n_correct, r->n);
    r->accuracy_norm = r->n ? (double)r->n_correct_norm / (double)r->n : 0.0;
    r->ci_norm = wilson_interval(r->n_correct_norm, r->n);
}

static char* choices_path(const char* dir, const EvalOptions* o) {
    if (o->choices) return xstrdup(o->choices);
    size_t n = strlen(dir) + sizeof CHOICES_FILE + 1;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, CHOICES_FILE);
    return p;
}

int eval_multiple_choice(ModRWKV* m, const Tokenizer* tok, const char* data_dir, const EvalOptions* o, EvalResult* r,
                         Error* e) {
    memset(r, 0, sizeof *r);
    r->metric = EVAL_MC;
    double t0 = now_seconds();
    char* path = choices_path(data_dir, o);
    ChoiceTable table = {0};
    ShardLoader* L = NULL;
    int rc = table_read(&table, path, e);
    if (rc == 0) L = eval_open_data(m, data_dir, 1, o, e);
    if (rc == 0 && !L) rc = -1;
    if (rc == 0) rc = eval_check_tokenizer(L, tok, data_dir, e);
    ChoiceRun c = {.m = m, .tok = tok, .o = o, .dir = data_dir, .table = &table, .r = r};
    c.open = eval_assistant_tokens(tok, &c.n_open);
    if (rc == 0) rc = choice_loop(&c, L, eval_samples_to_read(L, o), e);
    if (L) shard_loader_close(L);
    free(c.open);
    table_free(&table);
    free(path);
    rc = eval_finish_parallel(r, o, rc, e);
    if (rc == 0) finish_choices(r);
    r->seconds = now_seconds() - t0;
    return rc;
}

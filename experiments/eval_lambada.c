// eval_lambada.c — LAMBADA last-word accuracy and perplexity (EVAL_LAMBADA, contract in experiments/eval.h):
// the passages of a JSONL file split into context and last word, teacher-forced batches through the
// backbone with the head on the target positions only, the greedy-argmax check at every target token, the
// word's NLL, and the accuracy (Wilson) and word perplexity (bootstrap over passages).
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/eval_internal.h"

typedef struct Passage {
    int32_t* ids;        // (n_context + n_target) token 0, the context's tokens, the target's tokens
    int n_context;       // token 0 included
    int n_target;
    char* target;        // " word"
} Passage;

typedef struct PassageList {
    const char* path;
    const Tokenizer* tok;
    int vocab;           // the model's
    int64_t limit;       // lines to read (0: all)
    Passage* p;
    int64_t n;
} PassageList;

static void passages_free(PassageList* l) {
    for (int64_t i = 0; i < l->n; i++) {
        free(l->p[i].ids);
        free(l->p[i].target);
    }
    free(l->p);
    l->p = NULL;
    l->n = 0;
}

static int check_vocab(const PassageList* l, const Passage* p, size_t line, Error* e) {
    for (int i = 0; i < p->n_context + p->n_target; i++)
        if (p->ids[i] >= l->vocab)
            return errorf(e, "%s:%zu: token %d is outside the model's vocabulary of %d: use the model's tokenizer "
                             "(--bytes or --vocab)", l->path, line, p->ids[i], l->vocab);
    return 0;
}

// One line {"text": "..."} -> token 0 + context tokens, then the target's tokens (tokenized on its own).
static int read_passage(void* ctx, json_t* v, size_t line, Error* e) {
    PassageList* l = ctx;
    if (l->limit > 0 && l->n == l->limit) return 1;
    json_t* text = json_object_get(v, "text");
    if (!json_is_string(text)) return errorf(e, "%s:%zu: expected {\"text\": \"...\"} (LAMBADA's format)", l->path, line);
    const char* s = json_string_value(text);
    size_t len = json_string_length(text), split = 0;
    if (lambada_split(s, len, &split) != 0)
        return errorf(e, "%s:%zu: the text has no last word (no space, or it ends with one)", l->path, line);
    int32_t *ctx_ids = NULL, *tgt_ids = NULL;
    size_t n_ctx = 0, n_tgt = 0;
    tokenizer_encode(l->tok, s, split, &ctx_ids, &n_ctx);
    tokenizer_encode(l->tok, s + split, len - split, &tgt_ids, &n_tgt);
    if ((l->n & (l->n - 1)) == 0) l->p = xrealloc(l->p, (size_t)(l->n ? 2 * l->n : 16) * sizeof(Passage));
    Passage* p = &l->p[l->n++];
    p->n_context = (int)n_ctx + 1;
    p->n_target = (int)n_tgt;
    p->ids = xmalloc((n_ctx + n_tgt + 1) * sizeof(int32_t));
    p->ids[0] = 0;
    memcpy(p->ids + 1, ctx_ids, n_ctx * sizeof(int32_t));
    memcpy(p->ids + 1 + n_ctx, tgt_ids, n_tgt * sizeof(int32_t));
    p->target = xmalloc(len - split + 1);
    memcpy(p->target, s + split, len - split);
    p->target[len - split] = 0;
    free(ctx_ids);
    free(tgt_ids);
    return check_vocab(l, p, line, e);
}

// ---------------------------------------------------------------------------------------------------- scoring

// The item of passage i from its target rows of the logits (n_target rows, V each, in order).
static int score_passage(EvalResult* r, const Tokenizer* tok, const Passage* p, int64_t i, const float* logits, int V,
                         const char* path, Error* e) {
    char key[32];
    snprintf(key, sizeof key, "line %lld", (long long)i + 1);
    EvalItem* it = eval_add_item(r, key, i, 0);
    it->prompt_tokens = p->n_context;
    it->targets = p->n_target;
    it->correct = 1;
    int32_t* best = xmalloc((size_t)p->n_target * sizeof(int32_t));
    for (int j = 0; j < p->n_target; j++) {
        int32_t want = p->ids[p->n_context + j];
        int arg = 0;
        it->nll -= token_log_prob(logits + (size_t)j * V, V, want, &arg);
        best[j] = arg;
        it->correct &= arg == want;
    }
    it->reference = xstrdup(p->target);
    size_t len = 0;
    Error de = {{0}};
    int rc = tokenizer_decode(tok, best, (size_t)p->n_target, &it->hypothesis, &len, &de);
    free(best);
    if (rc != 0) return errorf(e, "%s: %s: %s", path, key, de.msg);
    return 0;
}

// One forward over passages [first, first + n): each row token 0 + context + all target tokens but the last,
// the head on the rows that predict a target token.
static int forward_passages(RWKV7* lm, const Tokenizer* tok, const PassageList* l, int64_t first, int n,
                            EvalResult* r, Error* e) {
    int T = 1, n_rows = 0, V = lm->cfg.vocab_size;
    for (int b = 0; b < n; b++) {
        const Passage* p = &l->p[first + b];
        if (p->n_context + p->n_target - 1 > T) T = p->n_context + p->n_target - 1;
    }
    T = (T + 15) / 16 * 16;
    int32_t* tokens = xcalloc((size_t)n * T, sizeof(int32_t));   // (n, T), padding 0 at the end of each row
    int32_t* rows = xmalloc((size_t)n * T * sizeof(int32_t));
    for (int b = 0; b < n; b++) {
        const Passage* p = &l->p[first + b];
        memcpy(tokens + (size_t)b * T, p->ids, (size_t)(p->n_context + p->n_target - 1) * sizeof(int32_t));
        for (int j = 0; j < p->n_target; j++) rows[n_rows++] = b * T + p->n_context - 1 + j;
    }
    RWKV7Acts* acts = rwkv7_acts_create_rows(lm, n, T, 0, n_rows);
    rwkv7_set_head_rows_list(acts, rows, n_rows);
    rwkv7_forward(lm, acts, tokens, NULL);
    int rc = 0;
    const float* logits = acts->logits;   // (n_rows, V): the passages' target rows in order
    for (int b = 0; b < n && rc == 0; b++) {
        const Passage* p = &l->p[first + b];
        rc = score_passage(r, tok, p, first + b, logits, V, l->path, e);
        logits += (size_t)p->n_target * V;
    }
    rwkv7_acts_free(lm, acts);
    free(rows);
    free(tokens);
    return rc;
}

static void finish_lambada(EvalResult* r, const EvalOptions* o) {
    size_t n = (size_t)r->n_items;
    double* nll = xmalloc((n ? n : 1) * sizeof(double));
    double* one = xmalloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        const EvalItem* it = &r->items[i];
        r->n_correct += it->correct;
        r->nll_sum += it->nll;
        r->target_tokens += it->targets;
        nll[i] = it->nll, one[i] = 1;
    }
    r->n = (int64_t)n;
    r->value = n ? (double)r->n_correct / (double)n : 0.0;
    r->ci = wilson_interval(r->n_correct, r->n);
    r->word_perplexity = perplexity(r->nll_sum, r->n);
    Interval mean_nll = bootstrap_ratio(nll, one, n, o->bootstrap_resamples, o->bootstrap_seed);
    r->word_perplexity_ci = (Interval){exp(mean_nll.lo), exp(mean_nll.hi)};
    free(nll);
    free(one);
}

int eval_lambada(ModRWKV* m, const Tokenizer* tok, const char* jsonl, const EvalOptions* o, EvalResult* r, Error* e) {
    memset(r, 0, sizeof *r);
    r->metric = EVAL_LAMBADA;
    double t0 = now_seconds();
    PassageList l = {.path = jsonl, .tok = tok, .vocab = m->lm->cfg.vocab_size, .limit = o->max_samples};
    int rc = eval_read_jsonl(jsonl, read_passage, &l, e);
    if (rc == 0 && l.n == 0) rc = errorf(e, "%s: no passages: one {\"text\": \"...\"} per line", jsonl);
    int B = o->batch_size > 0 ? o->batch_size : 1;
    for (int64_t batch = 0; rc == 0 && batch * B < l.n; batch++) {   // batch j is rank j mod N's
        int n = l.n - batch * B < B ? (int)(l.n - batch * B) : B;
        if (eval_rank_takes(o, batch)) rc = forward_passages(m->lm, tok, &l, batch * B, n, r, e);
        if (rc == 0) eval_progress(o, "passages scored", r->n_items, (uint64_t)(batch * B + n), (uint64_t)l.n);
    }
    r->n_samples = l.n;
    passages_free(&l);
    rc = eval_finish_parallel(r, o, rc, e);
    if (rc == 0) finish_lambada(r, o);
    r->seconds = now_seconds() - t0;
    return rc;
}

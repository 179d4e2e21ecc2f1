// eval.c — see eval.h.
#include "experiments/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/modrwkv_branch.h"

static const char ASSISTANT_OPEN[] = "\x16" "Assistant:";   // the masked prefix of an answer (chat_template.h)
static const char CHAT_END[] = "\x17";                       // the end of a turn: token 24 (World), 23 (bytes)

const char* eval_metric_name(EvalMetric metric) {
    return metric == EVAL_ACCURACY ? "accuracy" : metric == EVAL_WER ? "wer" : "perplexity";
}

int eval_parse_metric(const char* name, EvalMetric* metric, Error* e) {
    for (int k = EVAL_ACCURACY; k <= EVAL_PERPLEXITY; k++)
        if (strcmp(name, eval_metric_name((EvalMetric)k)) == 0) {
            *metric = (EvalMetric)k;
            return 0;
        }
    return errorf(e, "unknown metric '%s': use accuracy, wer or perplexity", name);
}

void eval_options_default(EvalOptions* o) {
    memset(o, 0, sizeof *o);
    o->metric = EVAL_ACCURACY;
    o->ctx_len = 4096;
    o->batch_size = 8;
    o->extra_tokens = 8;
    o->bootstrap_resamples = METRIC_BOOTSTRAP_RESAMPLES;
    o->bootstrap_seed = METRIC_BOOTSTRAP_SEED;
}

void eval_result_free(EvalResult* r) {
    for (int64_t i = 0; i < r->n_items; i++) {
        free(r->items[i].key);
        free(r->items[i].reference);
        free(r->items[i].hypothesis);
    }
    free(r->items);
    memset(r, 0, sizeof *r);
}

static EvalItem* add_item(EvalResult* r, const char* key, int turn) {
    if ((r->n_items & (r->n_items - 1)) == 0)   // grow at powers of two
        r->items = xrealloc(r->items, (size_t)(r->n_items ? 2 * r->n_items : 16) * sizeof(EvalItem));
    EvalItem* it = &r->items[r->n_items++];
    memset(it, 0, sizeof *it);
    it->key = xstrdup(key);
    it->turn = turn;
    return it;
}

// ---------------------------------------------------------------------------------------------------- data

static int image_size_of(const ModRWKV* m) {
    const Branch* br = m->branch[MOD_VISION];
    return br && br->vit ? br->vit->cfg.image_size : 0;
}

// Every media kind the manifest lists needs the model's encoder for it.
static int check_modalities(const ModRWKV* m, const Manifest* man, const char* dir, Error* e) {
    static const struct { const char* name; Modality mod; const char* encoder; } NEEDS[] = {
        {"image", MOD_VISION, "vision"}, {"pixels", MOD_VISION, "vision"},
        {"audio", MOD_AUDIO, "audio"},   {"timeseries", MOD_TS, "time-series"},
    };
    char* list = xstrdup(man->modalities ? man->modalities : "");
    int rc = 0;
    char* save = NULL;
    for (char* w = strtok_r(list, ",", &save); w && rc == 0; w = strtok_r(NULL, ",", &save))
        for (size_t k = 0; k < sizeof NEEDS / sizeof NEEDS[0]; k++)
            if (strcmp(w, NEEDS[k].name) == 0 && !m->branch[NEEDS[k].mod])
                rc = errorf(e, "%s: the dataset holds %s items but the model has no %s encoder: evaluate a checkpoint "
                               "trained on this modality", dir, w, NEEDS[k].encoder);
    free(list);
    return rc;
}

// The dataset in stored order, `batch_size` samples per batch, checked against the model's vocabulary.
static ShardLoader* open_data(const ModRWKV* m, const char* dir, int batch_size, const EvalOptions* o, Error* e) {
    ShardLoaderOptions lo;
    shard_loader_options_default(&lo);
    lo.dir = dir;
    lo.shuffle_buffer = 0;
    lo.batch_size = batch_size;
    lo.ctx_len = o->ctx_len;
    lo.prefetch = 2;
    lo.image_size = image_size_of(m);
    ShardLoader* L = shard_loader_open(&lo, e);
    if (!L) return NULL;
    const Manifest* man = shard_loader_manifest(L);
    if (check_modalities(m, man, dir, e) != 0) {
        shard_loader_close(L);
        return NULL;
    }
    if (man->vocab_size > m->lm->cfg.vocab_size) {
        errorf(e, "%s: the dataset's tokens (tokenizer '%s', vocabulary %d) do not fit the model's vocabulary of %d: "
                  "evaluate a model trained with this tokenizer", dir, man->tokenizer, man->vocab_size,
               m->lm->cfg.vocab_size);
        shard_loader_close(L);
        return NULL;
    }
    return L;
}

static uint64_t samples_to_read(const ShardLoader* L, const EvalOptions* o) {
    uint64_t n = shard_loader_epoch_samples(L);
    return o->max_samples > 0 && (uint64_t)o->max_samples < n ? (uint64_t)o->max_samples : n;
}

static void progress(const EvalOptions* o, const EvalResult* r, uint64_t done, uint64_t total) {
    if (!o->log || (done % 50 != 0 && done != total)) return;
    fprintf(o->log, "eval: %llu/%llu samples, %lld %s\n", (unsigned long long)done, (unsigned long long)total,
            (long long)(r->metric == EVAL_PERPLEXITY ? r->n : r->n_items),
            r->metric == EVAL_PERPLEXITY ? "targets" : "answers");
    fflush(o->log);
}

// ---------------------------------------------------------------------------------------------------- chat

typedef struct ChatRun {
    ModRWKV* m;
    const Tokenizer* tok;
    const EvalOptions* o;
    const char* dir;
    int32_t* open;              // the tokens of "\x16Assistant:"
    size_t n_open;
    int32_t end;                // the token of "\x17"
    EvalResult* r;
} ChatRun;

static int32_t chat_end_token(const Tokenizer* tok) {
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(tok, CHAT_END, 1, &ids, &n);
    int32_t id = n == 1 ? ids[0] : -1;   // -1: no single token (a run then keeps its last token in the reference)
    free(ids);
    return id;
}

static int follows_assistant(const ChatRun* c, const int32_t* tok, int pos) {
    if ((size_t)pos < c->n_open) return 0;
    return memcmp(tok + pos - c->n_open, c->open, c->n_open * sizeof(int32_t)) == 0;
}

static int decode_text(const Tokenizer* tok, const int32_t* ids, int n, char** text, Error* e) {
    size_t len = 0;
    return tokenizer_decode(tok, ids, (size_t)n, text, &len, e);
}

static void score_item(EvalResult* r, EvalItem* it) {
    if (r->metric == EVAL_ACCURACY) {
        it->correct = exact_match(it->hypothesis, it->reference);
        yes_no_add(&r->yes_no, it->hypothesis, it->reference);
        return;
    }
    it->words = word_edits(it->hypothesis, it->reference);
    it->chars = char_edits(it->hypothesis, it->reference);
}

// Generates the answer at tokens [a, end) of row 0 from the prompt tokens [0, a) and scores it.
static int eval_answer(ChatRun* c, const ShardBatch* b, int a, int end, int turn, Error* e) {
    const char* key = b->samples[0].key;
    ShardBatch prompt = {.B = 1, .T = a, .tokens = b->tokens};   // a view: payloads stay b's
    prompt.targets = xmalloc((size_t)a * sizeof(int32_t));
    for (int t = 0; t < a; t++) prompt.targets[t] = -1;
    prompt.media = b->media;
    while (prompt.n_media < b->n_media && b->media[prompt.n_media].placeholder_pos < a) prompt.n_media++;
    int ref_len = end - a - (b->tokens[end - 1] == c->end);
    GenerateOptions g = {.max_tokens = end - a + c->o->extra_tokens, .temperature = 0, .top_p = 1,
                         .stop_at_eod = 1, .stop = {c->end}, .n_stop = 1};
    Error ge = {{0}};
    int32_t* ids = NULL;
    int n = c->o->generate ? c->o->generate(c->o->generate_ctx, c->m, c->tok, &prompt, &g, &ids, &ge)
                           : generate_multimodal(c->m, c->tok, &prompt, &g, NULL, &ids, &ge);
    free(prompt.targets);
    EvalItem* it = add_item(c->r, key, turn);
    it->prompt_tokens = a;
    int rc = n < 0 ? -1 : 0;
    if (rc == 0) rc = decode_text(c->tok, ids, n, &it->hypothesis, &ge);
    if (rc == 0) rc = decode_text(c->tok, b->tokens + a, ref_len, &it->reference, &ge);
    free(ids);
    if (rc != 0) return errorf(e, "%s: sample '%s', answer %d: %s", c->dir, key, turn + 1, ge.msg);
    score_item(c->r, it);
    return 0;
}

// Every answer of the one sample of b (row 0): runs of trained tokens, each after "\x16Assistant:".
static int eval_sample(ChatRun* c, const ShardBatch* b, Error* e) {
    const int32_t* tgt = b->targets;   // token t is trained when tgt[t - 1] >= 0
    int len = b->samples[0].length, turn = 0;
    for (int t = 1; t < len;) {
        if (tgt[t - 1] < 0) {
            t++;
            continue;
        }
        int a = t;
        while (t < len && tgt[t - 1] >= 0) t++;
        if (!follows_assistant(c, b->tokens, a))
            return errorf(e, "%s: sample '%s': trained tokens at %d..%d do not follow \"\\x16Assistant:\", so they are "
                             "not a chat answer (accuracy and wer need chat samples; measure text with --metric "
                             "perplexity)", c->dir, b->samples[0].key, a, t - 1);
        if (eval_answer(c, b, a, t, turn++, e) != 0) return -1;
    }
    return 0;
}

static int check_tokenizer(const ShardLoader* L, const Tokenizer* tok, const char* dir, Error* e) {
    const char* data_tok = shard_loader_manifest(L)->tokenizer;
    int data_bytes = strcmp(data_tok, "bytes") == 0, eval_bytes = strcmp(tokenizer_name(tok), "bytes") == 0;
    if (data_bytes == eval_bytes) return 0;
    return errorf(e, "%s: the dataset was tokenized with '%s' but answers would be decoded with '%s': use the "
                     "dataset's tokenizer", dir, data_tok, tokenizer_name(tok));
}

// Items -> the metric, its interval and the secondary numbers.
static void finish_chat(EvalResult* r, const EvalOptions* o) {
    r->n = r->n_items;
    if (r->metric == EVAL_ACCURACY) {
        for (int64_t i = 0; i < r->n_items; i++) r->n_correct += r->items[i].correct;
        r->value = r->n ? (double)r->n_correct / (double)r->n : 0.0;
        r->ci = wilson_interval(r->n_correct, r->n);
        return;
    }
    size_t n = (size_t)r->n_items;
    double* num = xmalloc(n * sizeof(double));
    double* den = xmalloc(n * sizeof(double));
    for (int pass = 0; pass < 2; pass++) {   // words, then characters
        int64_t edits = 0, units = 0;
        for (size_t i = 0; i < n; i++) {
            const EditCounts* c = pass == 0 ? &r->items[i].words : &r->items[i].chars;
            num[i] = (double)edit_total(c);
            den[i] = (double)c->ref_len;
            edits += edit_total(c);
            units += c->ref_len;
        }
        Interval ci = bootstrap_ratio(num, den, n, o->bootstrap_resamples, o->bootstrap_seed);
        if (pass == 0) {
            r->word_edits = edits, r->ref_words = units, r->value = error_rate(edits, units), r->ci = ci;
        } else {
            r->char_edits = edits, r->ref_chars = units, r->cer = error_rate(edits, units), r->cer_ci = ci;
        }
    }
    free(num);
    free(den);
}

int eval_chat(ModRWKV* m, const Tokenizer* tok, const char* data_dir, const EvalOptions* o, EvalResult* r, Error* e) {
    memset(r, 0, sizeof *r);
    r->metric = o->metric;
    if (o->metric != EVAL_ACCURACY && o->metric != EVAL_WER)
        return errorf(e, "%s: metric %s is not measured on generated answers (use eval_perplexity)", data_dir,
                      eval_metric_name(o->metric));
    double t0 = now_seconds();
    ShardLoader* L = open_data(m, data_dir, 1, o, e);
    if (!L) return -1;
    ChatRun c = {.m = m, .tok = tok, .o = o, .dir = data_dir, .r = r};
    tokenizer_encode(tok, ASSISTANT_OPEN, strlen(ASSISTANT_OPEN), &c.open, &c.n_open);
    c.end = chat_end_token(tok);
    int rc = check_tokenizer(L, tok, data_dir, e);
    uint64_t total = samples_to_read(L, o);
    for (uint64_t i = 0; rc == 0 && i < total; i++) {
        ShardBatch* b = NULL;
        rc = shard_loader_next(L, &b, e);
        if (rc == 0) rc = eval_sample(&c, b, e);
        shard_batch_free(b);
        r->n_samples += rc == 0;
        if (rc == 0) progress(o, r, i + 1, total);
    }
    shard_loader_close(L);
    free(c.open);
    if (rc == 0 && r->n_items == 0)
        rc = errorf(e, "%s: the dataset holds no chat answers (\"\\x16Assistant: ...\\x17\" turns): accuracy and wer "
                       "need chat samples; measure text with --metric perplexity", data_dir);
    if (rc == 0) finish_chat(r, o);
    r->seconds = now_seconds() - t0;
    return rc;
}

// ---------------------------------------------------------------------------------------------------- perplexity

// Masks the samples of b that are not evaluated (beyond the first `total` of epoch 0); returns how many count.
static int select_samples(ShardBatch* b, uint64_t total, uint8_t* counted) {
    int n = 0;
    for (int j = 0; j < b->n_samples; j++) {
        const BatchSample* s = &b->samples[j];
        counted[j] = s->epoch == 0 && s->index < total;
        n += counted[j];
        if (!counted[j])
            for (int c = s->start; c < s->start + s->length; c++) b->targets[(size_t)s->row * b->T + c] = -1;
    }
    return n;
}

// Columns of the longest assembled row (every media run re-laid out to its projector's token count).
static int assembled_width(const ModRWKV* m, const ShardBatch* b, const char* dir, Error* e) {
    int* width = xcalloc((size_t)b->B, sizeof(int));
    for (int j = 0; j < b->n_samples; j++) {
        const BatchSample* s = &b->samples[j];
        if (s->start + s->length > width[s->row]) width[s->row] = s->start + s->length;
    }
    int rc = 0, widest = 1;
    for (int i = 0; i < b->n_media && rc == 0; i++) {
        int n = modrwkv_media_tokens(m, b->media[i].kind, &b->media[i]);
        if (n < 1) rc = errorf(e, "%s: media item %d of the batch (row %d) cannot be encoded: the model has no encoder "
                                  "for its kind", dir, i + 1, b->media[i].row);
        else width[b->media[i].row] += n - b->media[i].n_placeholder;
    }
    for (int row = 0; row < b->B; row++)
        if (width[row] > widest) widest = width[row];
    free(width);
    return rc == 0 ? widest : -1;
}

// Per-sample NLL and target counts of one forward. The losses are per head row: every position (B*T), or
// only the rows the head was restricted to (acts->head_rows, the trained targets; trainer/rwkv7.h).
static void collect_rows(EvalResult* r, const ShardBatch* b, const MMBatch* mb, const RWKV7Acts* acts,
                         const uint8_t* counted) {
    double* row_nll = xcalloc((size_t)mb->B, sizeof(double));
    int64_t* row_targets = xcalloc((size_t)mb->B, sizeof(int64_t));
    int n = acts->n_head_rows >= 0 ? acts->n_head_rows : mb->B * mb->T;
    for (int k = 0; k < n; k++) {
        int at = acts->n_head_rows >= 0 ? acts->head_rows[k] : k;
        if (mb->targets[at] < 0) continue;
        row_nll[at / mb->T] += acts->losses[k];
        row_targets[at / mb->T]++;
    }
    for (int j = 0; j < b->n_samples; j++) {   // one sample per row (not packed)
        if (!counted[j]) continue;
        const BatchSample* s = &b->samples[j];
        EvalItem* it = add_item(r, s->key, 0);
        it->prompt_tokens = s->length;
        it->nll = row_nll[s->row];
        it->targets = row_targets[s->row];
        r->nll_sum += it->nll;
        r->n += it->targets;
    }
    free(row_nll);
    free(row_targets);
}

enum { STEP_ROUND = 32 };   // columns: batch widths are rounded up to a multiple

// One forward over the counted samples of b; the step is kept between batches of the same (B, width).
static int forward_batch(ModRWKV* m, ModRWKVStep** step, int* step_B, int* step_T, ShardBatch* b, uint64_t total, EvalResult* r,
                         const char* dir, Error* e) {
    uint8_t* counted = xcalloc((size_t)b->n_samples + 1, 1);
    int rc = 0;
    if (select_samples(b, total, counted) > 0) {
        int T = assembled_width(m, b, dir, e);
        rc = T < 0 ? -1 : 0;
        MMBatch mb = {0};
        if (rc == 0) {
            T = (T + STEP_ROUND - 1) / STEP_ROUND * STEP_ROUND;   // padded: steps of one width are reused
            modrwkv_assemble(m, b, &mb, b->B, T);
            if (!*step || *step_B != b->B || *step_T != T) {
                modrwkv_step_free(m, *step);
                *step = modrwkv_step_create(m, b->B, T, 0);
                *step_B = b->B, *step_T = T;
            }
            Error se = {{0}};
            int n_valid = 0;
            float loss = modrwkv_step(m, *step, &mb, 1.0f, 0, 0, &n_valid, &se);
            if (isnan(loss) && se.msg[0]) rc = errorf(e, "%s: %s", dir, se.msg);
            if (rc == 0) collect_rows(r, b, &mb, modrwkv_step_acts(*step), counted);
        }
        mmbatch_free(&mb);
    }
    free(counted);
    return rc;
}

int eval_perplexity(ModRWKV* m, const char* data_dir, const EvalOptions* o, EvalResult* r, Error* e) {
    memset(r, 0, sizeof *r);
    r->metric = EVAL_PERPLEXITY;
    double t0 = now_seconds();
    ShardLoader* L = open_data(m, data_dir, o->batch_size, o, e);
    if (!L) return -1;
    uint64_t total = samples_to_read(L, o);
    ModRWKVStep* step = NULL;
    int rc = 0, step_B = 0, step_T = 0;
    while (rc == 0 && (uint64_t)r->n_items < total) {
        ShardBatch* b = NULL;
        rc = shard_loader_next(L, &b, e);
        if (rc == 0) rc = forward_batch(m, &step, &step_B, &step_T, b, total, r, data_dir, e);
        shard_batch_free(b);
        if (rc == 0) progress(o, r, (uint64_t)r->n_items, total);
    }
    modrwkv_step_free(m, step);
    shard_loader_close(L);
    r->n_samples = r->n_items;
    if (rc == 0 && r->n == 0)
        rc = errorf(e, "%s: the samples hold no trained targets: nothing to measure", data_dir);
    if (rc == 0) {
        r->value = perplexity(r->nll_sum, r->n);
        size_t n = (size_t)r->n_items;
        double* num = xmalloc(n * sizeof(double));
        double* den = xmalloc(n * sizeof(double));
        for (size_t i = 0; i < n; i++) num[i] = r->items[i].nll, den[i] = (double)r->items[i].targets;
        Interval nll = bootstrap_ratio(num, den, n, o->bootstrap_resamples, o->bootstrap_seed);
        r->ci = (Interval){exp(nll.lo), exp(nll.hi)};
        free(num);
        free(den);
    }
    r->seconds = now_seconds() - t0;
    return rc;
}

// eval.c — see eval.h: options, results and items, the shard data, the answer metrics (accuracy, wer, mse),
// the perplexity and the dispatch by metric. Multiple choice is in eval_choice.c, LAMBADA in eval_lambada.c,
// the data-parallel combine in eval_parallel.c.
#include "experiments/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/eval_internal.h"
#include "trainer/modrwkv_branch.h"

static const char ASSISTANT_OPEN[] = "\x16" "Assistant:";   // the masked prefix of an answer (chat_template.h)
static const char CHAT_END[] = "\x17";                       // the end of a turn: token 24 (World), 23 (bytes)

static const char* const METRIC_NAMES[EVAL_METRIC_COUNT] = {"accuracy", "wer", "perplexity", "mc", "lambada", "mse"};

const char* eval_metric_name(EvalMetric metric) {
    return metric >= 0 && metric < EVAL_METRIC_COUNT ? METRIC_NAMES[metric] : "unknown";
}

int eval_parse_metric(const char* name, EvalMetric* metric, Error* e) {
    for (int k = 0; k < EVAL_METRIC_COUNT; k++)
        if (strcmp(name, METRIC_NAMES[k]) == 0) {
            *metric = (EvalMetric)k;
            return 0;
        }
    if (strcmp(name, "ts") == 0) {
        *metric = EVAL_MSE;
        return 0;
    }
    return errorf(e, "unknown metric '%s': use accuracy, wer, perplexity, mc, lambada or mse", name);
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

void eval_free_items(EvalResult* r) {
    for (int64_t i = 0; i < r->n_items; i++) {
        free(r->items[i].key);
        free(r->items[i].reference);
        free(r->items[i].hypothesis);
        free(r->items[i].choice_ll);
        free(r->items[i].choice_tokens);
    }
    free(r->items);
    r->items = NULL;
    r->n_items = 0;
}

void eval_result_free(EvalResult* r) {
    eval_free_items(r);
    memset(r, 0, sizeof *r);
}

EvalItem* eval_add_item(EvalResult* r, const char* key, int64_t sample, int turn) {
    if ((r->n_items & (r->n_items - 1)) == 0)   // grow at powers of two (the capacity is the next one)
        r->items = xrealloc(r->items, (size_t)(r->n_items ? 2 * r->n_items : 16) * sizeof(EvalItem));
    EvalItem* it = &r->items[r->n_items++];
    memset(it, 0, sizeof *it);
    it->key = xstrdup(key);
    it->sample = sample;
    it->turn = turn;
    return it;
}

int eval_rank_takes(const EvalOptions* o, int64_t index) {
    if (!o->comm || comm_size(o->comm) <= 1) return 1;
    return index % comm_size(o->comm) == comm_rank(o->comm);
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
ShardLoader* eval_open_data(const ModRWKV* m, const char* dir, int batch_size, const EvalOptions* o, Error* e) {
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

uint64_t eval_samples_to_read(const ShardLoader* L, const EvalOptions* o) {
    uint64_t n = shard_loader_epoch_samples(L);
    return o->max_samples > 0 && (uint64_t)o->max_samples < n ? (uint64_t)o->max_samples : n;
}

void eval_progress(const EvalOptions* o, const char* unit, int64_t scored, uint64_t done, uint64_t total) {
    if (!o->log || (done % 50 != 0 && done != total)) return;
    int ranks = o->comm ? comm_size(o->comm) : 1;
    fprintf(o->log, "eval: %llu/%llu samples, %lld %s%s\n", (unsigned long long)done, (unsigned long long)total,
            (long long)scored, unit, ranks > 1 ? " by this rank" : "");
    fflush(o->log);
}

int eval_check_tokenizer(const ShardLoader* L, const Tokenizer* tok, const char* dir, Error* e) {
    const char* data_tok = shard_loader_manifest(L)->tokenizer;
    int data_bytes = strcmp(data_tok, "bytes") == 0, eval_bytes = strcmp(tokenizer_name(tok), "bytes") == 0;
    if (data_bytes == eval_bytes) return 0;
    return errorf(e, "%s: the dataset was tokenized with '%s' but the text would be coded with '%s': use the "
                     "dataset's tokenizer", dir, data_tok, tokenizer_name(tok));
}

int eval_read_jsonl(const char* path, EvalJsonlFn fn, void* ctx, Error* e) {
    size_t len = 0;
    char* text = read_file(path, &len, e);
    if (!text) return -1;
    int rc = 0;   // 1: the callback asked to stop
    size_t line = 0;
    for (size_t at = 0; rc == 0 && at < len; line++) {
        const char* nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len, n = end - at;
        int blank = 1;
        for (size_t i = at; i < end && blank; i++) blank = text[i] == ' ' || text[i] == '\t' || text[i] == '\r';
        if (!blank) {
            json_error_t je;
            json_t* v = json_loadb(text + at, n, 0, &je);
            if (!v) rc = errorf(e, "%s:%zu: not a JSON object (%s): one JSON object per line", path, line + 1, je.text);
            else rc = fn(ctx, v, line + 1, e);
            json_decref(v);
        }
        at = end + 1;
    }
    free(text);
    return rc < 0 ? -1 : 0;
}

// ---------------------------------------------------------------------------------------------------- answers

int32_t* eval_assistant_tokens(const Tokenizer* tok, size_t* n) {
    int32_t* ids = NULL;
    tokenizer_encode(tok, ASSISTANT_OPEN, strlen(ASSISTANT_OPEN), &ids, n);
    return ids;
}

int32_t eval_turn_end_token(const Tokenizer* tok) {
    int32_t* ids = NULL;
    size_t n = 0;
    tokenizer_encode(tok, CHAT_END, 1, &ids, &n);
    int32_t id = n == 1 ? ids[0] : -1;   // -1: no single token (a run then keeps its last token in the reference)
    free(ids);
    return id;
}

int eval_answer_follows(const int32_t* tokens, int pos, const int32_t* open, size_t n_open) {
    if ((size_t)pos < n_open) return 0;
    return memcmp(tokens + pos - n_open, open, n_open * sizeof(int32_t)) == 0;
}

void eval_prompt_view(const ShardBatch* b, int a, ShardBatch* prompt) {
    memset(prompt, 0, sizeof *prompt);
    prompt->B = 1;
    prompt->T = a;
    prompt->tokens = b->tokens;   // a view: payloads stay b's
    prompt->targets = xmalloc((size_t)(a > 0 ? a : 1) * sizeof(int32_t));
    for (int t = 0; t < a; t++) prompt->targets[t] = -1;
    prompt->media = b->media;
    while (prompt->n_media < b->n_media && b->media[prompt->n_media].row == 0 &&
           b->media[prompt->n_media].placeholder_pos < a)
        prompt->n_media++;
}

void eval_prompt_free(ShardBatch* prompt) {
    free(prompt->targets);
    memset(prompt, 0, sizeof *prompt);
}

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

static int decode_text(const Tokenizer* tok, const int32_t* ids, int n, char** text, Error* e) {
    size_t len = 0;
    return tokenizer_decode(tok, ids, (size_t)n, text, &len, e);
}

// Forecast numbers of the answer (EVAL_MSE); a reference without numbers is a data error.
static int score_forecast(EvalItem* it, Error* e) {
    double *hyp = NULL, *ref = NULL;
    size_t n_ref = parse_numbers(it->reference, &ref), n_hyp = parse_numbers(it->hypothesis, &hyp);
    int rc = 0;
    if (n_ref == 0) {
        rc = errorf(e, "the reference answer '%.60s' holds no numbers: a forecast answer is numbers separated by "
                       "spaces or commas (eval.h)", it->reference);
    } else {
        ForecastError f = forecast_error(hyp, n_hyp, ref, n_ref);
        it->valid = f.valid;
        it->n_values = f.n;
        it->sse = f.sse;
        it->sae = f.sae;
    }
    free(hyp);
    free(ref);
    return rc;
}

static int score_item(EvalMetric metric, EvalItem* it, Error* e) {
    if (metric == EVAL_ACCURACY) {
        it->correct = exact_match(it->hypothesis, it->reference);
        return 0;
    }
    if (metric == EVAL_MSE) return score_forecast(it, e);
    it->words = word_edits(it->hypothesis, it->reference);
    it->chars = char_edits(it->hypothesis, it->reference);
    return 0;
}

// Generates the answer at tokens [a, end) of row 0 from the prompt tokens [0, a) and scores it.
static int eval_answer(ChatRun* c, const ShardBatch* b, int64_t index, int a, int end, int turn, Error* e) {
    const char* key = b->samples[0].key;
    ShardBatch prompt;
    eval_prompt_view(b, a, &prompt);
    int ref_len = end - a - (b->tokens[end - 1] == c->end);
    GenerateOptions g = {.max_tokens = end - a + c->o->extra_tokens, .temperature = 0, .top_p = 1,
                         .stop_at_eod = 1, .stop = {c->end}, .n_stop = 1};
    Error ge = {{0}};
    int32_t* ids = NULL;
    int n = c->o->generate ? c->o->generate(c->o->generate_ctx, c->m, c->tok, &prompt, &g, &ids, &ge)
                           : generate_multimodal(c->m, c->tok, &prompt, &g, NULL, &ids, &ge);
    eval_prompt_free(&prompt);
    EvalItem* it = eval_add_item(c->r, key, index, turn);
    it->prompt_tokens = a;
    int rc = n < 0 ? -1 : 0;
    if (rc == 0) rc = decode_text(c->tok, ids, n, &it->hypothesis, &ge);
    if (rc == 0) rc = decode_text(c->tok, b->tokens + a, ref_len, &it->reference, &ge);
    if (rc == 0) rc = score_item(c->r->metric, it, &ge);
    free(ids);
    if (rc != 0) return errorf(e, "%s: sample '%s', answer %d: %s", c->dir, key, turn + 1, ge.msg);
    return 0;
}

// Every answer of the one sample of b (row 0): runs of trained tokens, each after "\x16Assistant:".
static int eval_sample(ChatRun* c, const ShardBatch* b, int64_t index, Error* e) {
    const int32_t* tgt = b->targets;   // token t is trained when tgt[t - 1] >= 0
    int len = b->samples[0].length, turn = 0;
    for (int t = 1; t < len;) {
        if (tgt[t - 1] < 0) {
            t++;
            continue;
        }
        int a = t;
        while (t < len && tgt[t - 1] >= 0) t++;
        if (!eval_answer_follows(b->tokens, a, c->open, c->n_open))
            return errorf(e, "%s: sample '%s': trained tokens at %d..%d do not follow \"\\x16Assistant:\", so they are "
                             "not a chat answer (accuracy, wer and mse need chat samples; measure text with --metric "
                             "perplexity)", c->dir, b->samples[0].key, a, t - 1);
        if (eval_answer(c, b, index, a, t, turn++, e) != 0) return -1;
    }
    return 0;
}

static void finish_accuracy(EvalResult* r) {
    for (int64_t i = 0; i < r->n_items; i++) {
        r->n_correct += r->items[i].correct;
        yes_no_add(&r->yes_no, r->items[i].hypothesis, r->items[i].reference);
    }
    r->value = r->n ? (double)r->n_correct / (double)r->n : 0.0;
    r->ci = wilson_interval(r->n_correct, r->n);
}

static void finish_wer(EvalResult* r, const EvalOptions* o) {
    size_t n = (size_t)r->n_items;
    double* num = xmalloc((n ? n : 1) * sizeof(double));
    double* den = xmalloc((n ? n : 1) * sizeof(double));
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

// MSE and MAE pooled over the values of the valid answers; bootstrap over those answers.
static void finish_mse(EvalResult* r, const EvalOptions* o) {
    size_t n = 0;
    double* sse = xmalloc((size_t)(r->n_items ? r->n_items : 1) * sizeof(double));
    double* sae = xmalloc((size_t)(r->n_items ? r->n_items : 1) * sizeof(double));
    double* den = xmalloc((size_t)(r->n_items ? r->n_items : 1) * sizeof(double));
    double sse_sum = 0, sae_sum = 0;
    for (int64_t i = 0; i < r->n_items; i++) {
        const EvalItem* it = &r->items[i];
        if (!it->valid) {
            r->n_invalid++;
            continue;
        }
        sse[n] = it->sse, sae[n] = it->sae, den[n] = (double)it->n_values;
        sse_sum += it->sse, sae_sum += it->sae, r->n_values += it->n_values;
        n++;
    }
    r->n = (int64_t)n;
    r->value = r->n_values ? sse_sum / (double)r->n_values : NAN;
    r->mae = r->n_values ? sae_sum / (double)r->n_values : NAN;
    r->ci = bootstrap_ratio(sse, den, n, o->bootstrap_resamples, o->bootstrap_seed);
    r->mae_ci = bootstrap_ratio(sae, den, n, o->bootstrap_resamples, o->bootstrap_seed);
    free(sse);
    free(sae);
    free(den);
}

// Items -> the metric, its interval and the secondary numbers.
static void finish_chat(EvalResult* r, const EvalOptions* o) {
    r->n = r->n_items;
    if (r->metric == EVAL_ACCURACY) finish_accuracy(r);
    if (r->metric == EVAL_WER) finish_wer(r, o);
    if (r->metric == EVAL_MSE) finish_mse(r, o);
}

// This rank's samples of the first `total`, one batch (one sample) at a time.
static int chat_loop(ChatRun* c, ShardLoader* L, uint64_t total, Error* e) {
    int rc = 0;
    for (uint64_t i = 0; rc == 0 && i < total; i++) {
        ShardBatch* b = NULL;
        rc = shard_loader_next(L, &b, e);
        if (rc == 0 && eval_rank_takes(c->o, (int64_t)i)) rc = eval_sample(c, b, (int64_t)i, e);
        shard_batch_free(b);
        c->r->n_samples += rc == 0;
        if (rc == 0) eval_progress(c->o, "answers", c->r->n_items, i + 1, total);
    }
    return rc;
}

int eval_chat(ModRWKV* m, const Tokenizer* tok, const char* data_dir, const EvalOptions* o, EvalResult* r, Error* e) {
    if (o->metric == EVAL_MC) return eval_multiple_choice(m, tok, data_dir, o, r, e);
    if (o->metric == EVAL_LAMBADA) return eval_lambada(m, tok, data_dir, o, r, e);
    memset(r, 0, sizeof *r);
    r->metric = o->metric;
    r->ranks = 1;
    if (o->metric != EVAL_ACCURACY && o->metric != EVAL_WER && o->metric != EVAL_MSE)
        return errorf(e, "%s: metric %s is not measured on generated answers (use eval_perplexity)", data_dir,
                      eval_metric_name(o->metric));
    double t0 = now_seconds();
    ShardLoader* L = eval_open_data(m, data_dir, 1, o, e);
    if (!L) return eval_finish_parallel(r, o, -1, e);
    ChatRun c = {.m = m, .tok = tok, .o = o, .dir = data_dir, .r = r};
    c.open = eval_assistant_tokens(tok, &c.n_open);
    c.end = eval_turn_end_token(tok);
    int rc = eval_check_tokenizer(L, tok, data_dir, e);
    if (rc == 0) rc = chat_loop(&c, L, eval_samples_to_read(L, o), e);
    shard_loader_close(L);
    free(c.open);
    rc = eval_finish_parallel(r, o, rc, e);
    if (rc == 0 && r->n_items == 0)
        rc = errorf(e, "%s: the dataset holds no chat answers (\"\\x16Assistant: ...\\x17\" turns): accuracy, wer "
                       "and mse need chat samples; measure text with --metric perplexity", data_dir);
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
        EvalItem* it = eval_add_item(r, s->key, (int64_t)s->index, 0);
        it->prompt_tokens = s->length;
        it->nll = row_nll[s->row];
        it->targets = row_targets[s->row];
    }
    free(row_nll);
    free(row_targets);
}

enum { STEP_ROUND = 32 };   // columns: batch widths are rounded up to a multiple

typedef struct PerplexityRun {
    ModRWKV* m;
    ModRWKVStep* step;          // kept between batches of the same (B, width)
    int step_B, step_T;
    const char* dir;
    EvalResult* r;
} PerplexityRun;

// One forward over the counted samples of b.
static int forward_batch(PerplexityRun* p, ShardBatch* b, const uint8_t* counted, Error* e) {
    int T = assembled_width(p->m, b, p->dir, e);
    if (T < 0) return -1;
    T = (T + STEP_ROUND - 1) / STEP_ROUND * STEP_ROUND;   // padded: steps of one width are reused
    MMBatch mb = {0};
    modrwkv_assemble(p->m, b, &mb, b->B, T);
    if (!p->step || p->step_B != b->B || p->step_T != T) {
        modrwkv_step_free(p->m, p->step);
        p->step = modrwkv_step_create(p->m, b->B, T, 0);
        p->step_B = b->B, p->step_T = T;
    }
    Error se = {{0}};
    int n_valid = 0, rc = 0;
    float loss = modrwkv_step(p->m, p->step, &mb, 1.0f, 0, 0, &n_valid, &se);
    if (isnan(loss) && se.msg[0]) rc = errorf(e, "%s: %s", p->dir, se.msg);
    if (rc == 0) collect_rows(p->r, b, &mb, modrwkv_step_acts(p->step), counted);
    mmbatch_free(&mb);
    return rc;
}

// Every batch holding evaluated samples; batch j is this rank's when eval_rank_takes(j).
static int perplexity_loop(PerplexityRun* p, ShardLoader* L, uint64_t total, const EvalOptions* o, Error* e) {
    uint64_t seen = 0;
    int rc = 0;
    for (int64_t batch = 0; rc == 0 && seen < total; batch++) {
        ShardBatch* b = NULL;
        rc = shard_loader_next(L, &b, e);
        if (rc == 0) {
            uint8_t* counted = xcalloc((size_t)b->n_samples + 1, 1);
            int n = select_samples(b, total, counted);
            seen += (uint64_t)n;
            if (n > 0 && eval_rank_takes(o, batch)) rc = forward_batch(p, b, counted, e);
            free(counted);
        }
        shard_batch_free(b);
        if (rc == 0) eval_progress(o, "samples scored", p->r->n_items, seen, total);
    }
    return rc;
}

static void finish_perplexity(EvalResult* r, const EvalOptions* o) {
    size_t n = (size_t)r->n_items;
    double* num = xmalloc((n ? n : 1) * sizeof(double));
    double* den = xmalloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        num[i] = r->items[i].nll, den[i] = (double)r->items[i].targets;
        r->nll_sum += r->items[i].nll;
        r->n += r->items[i].targets;
    }
    r->value = perplexity(r->nll_sum, r->n);
    Interval nll = bootstrap_ratio(num, den, n, o->bootstrap_resamples, o->bootstrap_seed);
    r->ci = (Interval){exp(nll.lo), exp(nll.hi)};
    free(num);
    free(den);
}

int eval_perplexity(ModRWKV* m, const char* data_dir, const EvalOptions* o, EvalResult* r, Error* e) {
    memset(r, 0, sizeof *r);
    r->metric = EVAL_PERPLEXITY;
    r->ranks = 1;
    double t0 = now_seconds();
    ShardLoader* L = eval_open_data(m, data_dir, o->batch_size, o, e);
    if (!L) return eval_finish_parallel(r, o, -1, e);
    PerplexityRun p = {.m = m, .dir = data_dir, .r = r};
    int rc = perplexity_loop(&p, L, eval_samples_to_read(L, o), o, e);
    modrwkv_step_free(m, p.step);
    shard_loader_close(L);
    rc = eval_finish_parallel(r, o, rc, e);
    r->n_samples = r->n_items;
    if (rc == 0) finish_perplexity(r, o);
    if (rc == 0 && r->n == 0) rc = errorf(e, "%s: the samples hold no trained targets: nothing to measure", data_dir);
    r->seconds = now_seconds() - t0;
    return rc;
}

// ---------------------------------------------------------------------------------------------------- dispatch

int eval_run(ModRWKV* m, const Tokenizer* tok, const char* data, const EvalOptions* o, EvalResult* r, Error* e) {
    if (o->metric == EVAL_PERPLEXITY) return eval_perplexity(m, data, o, r, e);
    return eval_chat(m, tok, data, o, r, e);
}

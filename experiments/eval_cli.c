// eval_cli.c — the `modrwkv eval` command and its report (experiments/eval.h): loads a checkpoint, evaluates it
// on a shard dataset, prints one summary line and writes eval.json (values, n, 95% intervals, how each number
// was measured, the checkpoint, the dataset and the first items). Errors are one line ("modrwkv: error: ...")
// with exit status 1.
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "experiments/eval.h"

// ---------------------------------------------------------------------------------------------------- report

static json_t* number(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t* interval(Interval iv) { return json_pack("[o, o]", number(iv.lo), number(iv.hi)); }

// Generated text may hold bytes that are not UTF-8 (a token can end inside a character): each such byte
// becomes U+FFFD so that the report stays valid JSON.
static json_t* text(const char* s) {
    if (!s) return json_null();
    json_t* j = json_string(s);
    if (j) return j;
    size_t n = strlen(s), o = 0;
    char* clean = xmalloc(3 * n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            clean[o++] = (char)c;
            continue;
        }
        size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        json_t* one = len && i + len <= n ? json_stringn(s + i, len) : NULL;
        if (one) {
            memcpy(clean + o, s + i, len);
            o += len;
            i += len - 1;
            json_decref(one);
        } else {
            memcpy(clean + o, "\xEF\xBF\xBD", 3);
            o += 3;
        }
    }
    j = json_stringn(clean, o);
    free(clean);
    return j;
}

static json_t* edits_json(const EditCounts* c) {
    return json_pack("{s:I, s:I, s:I, s:I}", "substitutions", (json_int_t)c->sub, "deletions", (json_int_t)c->del,
                     "insertions", (json_int_t)c->ins, "reference", (json_int_t)c->ref_len);
}

static json_t* item_json(const EvalResult* r, const EvalItem* it) {
    json_t* j = json_pack("{s:o, s:i, s:i}", "key", text(it->key), "turn", it->turn, "prompt_tokens", it->prompt_tokens);
    if (r->metric == EVAL_PERPLEXITY) {
        json_object_set_new(j, "targets", json_integer(it->targets));
        json_object_set_new(j, "nll", number(it->nll));
        json_object_set_new(j, "perplexity", number(perplexity(it->nll, it->targets)));
        return j;
    }
    json_object_set_new(j, "reference", text(it->reference));
    json_object_set_new(j, "hypothesis", text(it->hypothesis));
    if (r->metric == EVAL_ACCURACY) {
        json_object_set_new(j, "correct", json_boolean(it->correct));
    } else {
        json_object_set_new(j, "word_edits", edits_json(&it->words));
        json_object_set_new(j, "char_edits", edits_json(&it->chars));
    }
    return j;
}

static const char* GENERATION_METHOD =
    "every assistant answer generated greedily (temperature 0) after its prompt: the sample's tokens up to and "
    "including \"\\x16Assistant:\" (earlier turns with their reference answers) and the media placed in them; "
    "generation stops at \\x17 (token 24 in World) or token 0, or after the reference's token count + %d tokens";

static char* bootstrap_method(const EvalOptions* o, const char* unit, const char* ratio) {
    char* s = xmalloc(512);
    snprintf(s, 512, "percentile bootstrap over %s: %d resamples with replacement (xoshiro256**, seed %llu), 2.5%% "
                     "and 97.5%% quantiles of %s", unit, o->bootstrap_resamples, (unsigned long long)o->bootstrap_seed,
             ratio);
    return s;
}

static void set_string(json_t* j, const char* key, char* owned) {
    json_object_set_new(j, key, json_string(owned));
    free(owned);
}

static void add_accuracy(json_t* root, const EvalResult* r, const EvalOptions* o) {
    char method[1024];
    snprintf(method, sizeof method, GENERATION_METHOD, o->extra_tokens);
    strncat(method, "; exact match of hypothesis and reference after normalize_vqa (lower case, punctuation "
                    "removed, articles dropped, number words as digits; experiments/metrics.h)",
            sizeof method - strlen(method) - 1);
    json_object_set_new(root, "method", json_string(method));
    json_object_set_new(root, "correct", json_integer(r->n_correct));
    json_object_set_new(root, "ci_method", json_string("Wilson score interval, z = 1.96"));
    YesNoScores y = yes_no_scores(&r->yes_no);
    if (y.n == 0) return;
    json_object_set_new(root, "yes_no", json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:s}", "n", (json_int_t)y.n,
                                                  "precision", number(y.precision), "recall", number(y.recall), "f1",
                                                  number(y.f1), "accuracy", number(y.accuracy), "yes_ratio",
                                                  number(y.yes_ratio), "method",
                                                  "POPE: answers whose reference is yes/no; a hypothesis is 'no' when "
                                                  "its words contain no or not; yes is the positive class"));
}

static void add_wer(json_t* root, const EvalResult* r, const EvalOptions* o) {
    char method[1024];
    snprintf(method, sizeof method, GENERATION_METHOD, o->extra_tokens);
    strncat(method, "; WER = total word edits (substitutions + deletions + insertions, Levenshtein) / total "
                    "reference words over all answers, CER likewise on characters (code points), after "
                    "normalize_basic (lower case, punctuation removed; experiments/metrics.h)",
            sizeof method - strlen(method) - 1);
    json_object_set_new(root, "method", json_string(method));
    json_object_set_new(root, "word_edits", json_integer(r->word_edits));
    json_object_set_new(root, "reference_words", json_integer(r->ref_words));
    set_string(root, "ci_method", bootstrap_method(o, "answers", "total edits / total reference words"));
    json_object_set_new(root, "cer", number(r->cer));
    json_object_set_new(root, "cer_ci95", interval(r->cer_ci));
    json_object_set_new(root, "char_edits", json_integer(r->char_edits));
    json_object_set_new(root, "reference_chars", json_integer(r->ref_chars));
}

static void add_perplexity(json_t* root, const EvalResult* r, const EvalOptions* o) {
    char method[512];
    snprintf(method, sizeof method, "teacher-forced: exp(summed NLL / trained targets) over every trained target "
                                    "(text: all tokens; chat: the answers), one forward per batch of %d samples, "
                                    "each row from its sample's start (no state carried between samples)",
             o->batch_size);
    json_object_set_new(root, "method", json_string(method));
    json_object_set_new(root, "nll_sum", number(r->nll_sum));
    json_object_set_new(root, "mean_nll", number(r->nll_sum / (double)r->n));
    set_string(root, "ci_method", bootstrap_method(o, "samples", "summed NLL / targets, exponentiated"));
}

int eval_write_json(const EvalResult* r, const EvalReportInfo* info, const char* path, Error* e) {
    const EvalOptions* o = info->options;
    json_t* root = json_object();
    json_object_set_new(root, "name", text(info->name));
    json_object_set_new(root, "checkpoint", text(info->checkpoint));
    json_object_set_new(root, "dataset", json_pack("{s:o, s:I, s:I}", "dir", text(info->data_dir), "samples",
                                                   (json_int_t)r->n_samples, "max_samples", (json_int_t)o->max_samples));
    json_object_set_new(root, "tokenizer", text(info->tokenizer));
    json_object_set_new(root, "metric", json_string(eval_metric_name(r->metric)));
    json_object_set_new(root, "value", number(r->value));
    json_object_set_new(root, "n", json_integer(r->n));
    json_object_set_new(root, "ci95", interval(r->ci));
    if (r->metric == EVAL_ACCURACY) add_accuracy(root, r, o);
    if (r->metric == EVAL_WER) add_wer(root, r, o);
    if (r->metric == EVAL_PERPLEXITY) add_perplexity(root, r, o);
    json_object_set_new(root, "seconds", number(r->seconds));
    json_t* items = json_array();
    for (int64_t i = 0; i < r->n_items && i < info->items_in_json; i++) json_array_append_new(items, item_json(r, &r->items[i]));
    json_object_set_new(root, "items", items);
    json_object_set_new(root, "items_total", json_integer(r->n_items));
    char* s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(root);
    if (!s) return errorf(e, "%s: cannot format the report", path);
    size_t len = strlen(s);
    s = xrealloc(s, len + 2);
    s[len] = '\n';
    int rc = write_file_atomic(path, s, len + 1, e);
    free(s);
    return rc;
}

int eval_write_items(const EvalResult* r, const char* path, Error* e) {
    AtomicFile f;
    if (atomic_file_open(&f, path, e) != 0) return -1;
    int rc = 0;
    for (int64_t i = 0; i < r->n_items && rc == 0; i++) {
        json_t* j = item_json(r, &r->items[i]);
        char* s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
        json_decref(j);
        rc = atomic_file_write(&f, s, strlen(s), e);
        if (rc == 0) rc = atomic_file_write(&f, "\n", 1, e);
        free(s);
    }
    return atomic_file_finish(&f, rc, e);
}

void eval_print_summary(const EvalResult* r, const char* name, FILE* f) {
    if (r->metric == EVAL_ACCURACY)
        fprintf(f, "%s: accuracy %.3f (n=%lld, 95%% CI %.3f-%.3f)\n", name, r->value, (long long)r->n, r->ci.lo, r->ci.hi);
    if (r->metric == EVAL_WER)
        fprintf(f, "%s: WER %.3f (n=%lld answers, %lld words, 95%% CI %.3f-%.3f), CER %.3f (95%% CI %.3f-%.3f)\n", name,
                r->value, (long long)r->n, (long long)r->ref_words, r->ci.lo, r->ci.hi, r->cer, r->cer_ci.lo,
                r->cer_ci.hi);
    if (r->metric == EVAL_PERPLEXITY)
        fprintf(f, "%s: perplexity %.4g (n=%lld targets in %lld samples, 95%% CI %.4g-%.4g)\n", name, r->value,
                (long long)r->n, (long long)r->n_samples, r->ci.lo, r->ci.hi);
}

// ---------------------------------------------------------------------------------------------------- command

static const char* EVAL_HELP =
    "usage: modrwkv eval --ckpt FILE --data DIR --metric accuracy|wer|perplexity [--max-samples N]\n"
    "                    [--out eval.json] [--items FILE.jsonl] [--name LABEL] [--vocab FILE | --bytes]\n"
    "                    [--ctx-len 4096] [--batch-size 8] [--extra-tokens 8]\n"
    "Evaluates a checkpoint on a shard dataset (read in order, no shuffling) and prints one summary line.\n"
    "  accuracy    chat data: every assistant answer is generated greedily after its prompt (the sample up to\n"
    "              \"\\x16Assistant:\", with its media) and scored by exact match after VQA normalisation; 95% CI:\n"
    "              Wilson. Yes/no answers also get POPE precision/recall/F1 in the report.\n"
    "  wer         chat data (e.g. transcription): corpus word and character error rates (total edits / total\n"
    "              reference words); 95% CI: bootstrap over answers (1000 resamples, fixed seed).\n"
    "  perplexity  text or chat data: exp(mean NLL) over the trained targets, teacher-forced; 95% CI: bootstrap\n"
    "              over samples.\n"
    "  --max-samples N  the first N samples only (default: all)\n"
    "  --out FILE       the report (JSON): values, n, intervals and methods, checkpoint, dataset, first 20 items\n"
    "  --items FILE     every per-answer (per-sample) record, one JSON object per line\n"
    "  --name LABEL     the dataset's name in the summary (default: the last two parts of DIR)\n"
    "  --ctx-len N      longest sample accepted; --batch-size: samples per forward (perplexity)\n"
    "  --extra-tokens N generation budget beyond the reference answer's tokens\n";

static long parse_count(const char* opt, const char* s, long lo) {
    char* end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo) fatal("eval: --%s expects an integer >= %ld, got '%s'", opt, lo, s);
    return v;
}

// "a/b/digits_qa/test/" -> "digits_qa/test"
static char* default_name(const char* dir) {
    char* s = xstrdup(dir);
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/') s[--n] = 0;
    int slashes = 0;
    char* start = s;
    for (char* p = s + n; p > s; p--)
        if (p[-1] == '/' && ++slashes == 2) {
            start = p;
            break;
        }
    char* name = xstrdup(start);
    free(s);
    return name;
}

static Tokenizer* eval_tokenizer(const char* vocab, int bytes, const char* ckpt_tok, int model_vocab) {
    const char* spec = bytes ? "bytes" : vocab ? vocab : ckpt_tok ? ckpt_tok : model_vocab <= 256 ? "bytes" : "world";
    if (strncmp(spec, "world:", 6) == 0) spec += 6;
    Error e = {{0}};
    Tokenizer* t = tokenizer_from_spec(spec, &e);
    if (!t) fatal("%s", e.msg);
    return t;
}

typedef struct EvalArgs {
    const char *ckpt, *data, *metric, *out, *items, *name, *vocab;
    int bytes;
    EvalOptions o;
} EvalArgs;

static void parse_args(int argc, char** argv, EvalArgs* a) {
    static struct option opts[] = {{"ckpt", 1, 0, 'c'},        {"data", 1, 0, 'd'},       {"metric", 1, 0, 'm'},
                                   {"max-samples", 1, 0, 'n'}, {"out", 1, 0, 'o'},        {"items", 1, 0, 'i'},
                                   {"name", 1, 0, 'N'},        {"vocab", 1, 0, 'v'},      {"bytes", 0, 0, 'b'},
                                   {"ctx-len", 1, 0, 'L'},     {"batch-size", 1, 0, 'B'}, {"extra-tokens", 1, 0, 'x'},
                                   {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': a->ckpt = optarg; break;
        case 'd': a->data = optarg; break;
        case 'm': a->metric = optarg; break;
        case 'n': a->o.max_samples = parse_count("max-samples", optarg, 1); break;
        case 'o': a->out = optarg; break;
        case 'i': a->items = optarg; break;
        case 'N': a->name = optarg; break;
        case 'v': a->vocab = optarg; break;
        case 'b': a->bytes = 1; break;
        case 'L': a->o.ctx_len = (int)parse_count("ctx-len", optarg, 1); break;
        case 'B': a->o.batch_size = (int)parse_count("batch-size", optarg, 1); break;
        case 'x': a->o.extra_tokens = (int)parse_count("extra-tokens", optarg, 0); break;
        case 'h': fputs(EVAL_HELP, stdout); exit(0);
        default: fatal("eval: unknown option or missing value in '%s': run `modrwkv eval --help`", argv[optind - 1]);
        }
    }
    if (optind != argc) fatal("eval: unexpected argument '%s' (see `modrwkv eval --help`)", argv[optind]);
    if (!a->ckpt || !a->data || !a->metric) fatal("eval: --ckpt FILE, --data DIR and --metric are required (see --help)");
    if (a->o.ctx_len > (1 << 24)) fatal("eval: --ctx-len must be at most %d", 1 << 24);
    Error e = {{0}};
    if (eval_parse_metric(a->metric, &a->o.metric, &e) != 0) fatal("eval: %s", e.msg);
}

int eval_main(int argc, char** argv) {
    EvalArgs a = {0};
    eval_options_default(&a.o);
    opterr = 0;
    parse_args(argc, argv, &a);
    if (isatty(STDOUT_FILENO)) a.o.log = stdout;
    Backend* be = backend_cpu_create(0);
    char* ckpt_tok = NULL;
    Error e = {{0}};
    ModRWKV* m = modrwkv_load(a.ckpt, be, &ckpt_tok, &e);
    if (!m) fatal("%s", e.msg);
    Tokenizer* tok = eval_tokenizer(a.vocab, a.bytes, ckpt_tok, m->lm->cfg.vocab_size);
    EvalResult r;
    int rc = a.o.metric == EVAL_PERPLEXITY ? eval_perplexity(m, a.data, &a.o, &r, &e)
                                           : eval_chat(m, tok, a.data, &a.o, &r, &e);
    if (rc != 0) fatal("%s", e.msg);
    char* name = a.name ? xstrdup(a.name) : default_name(a.data);
    eval_print_summary(&r, name, stdout);
    EvalReportInfo info = {.name = name, .checkpoint = a.ckpt, .data_dir = a.data, .tokenizer = tokenizer_name(tok),
                           .options = &a.o, .items_in_json = 20};
    if (a.out && eval_write_json(&r, &info, a.out, &e) != 0) fatal("%s", e.msg);
    if (a.items && eval_write_items(&r, a.items, &e) != 0) fatal("%s", e.msg);
    if (a.out) printf("wrote %s\n", a.out);
    free(name);
    eval_result_free(&r);
    tokenizer_free(tok);
    free(ckpt_tok);
    modrwkv_free(m);
    backend_destroy(be);
    return 0;
}

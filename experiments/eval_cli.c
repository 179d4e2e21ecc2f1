// eval_cli.c — the `modrwkv eval` command and its report (experiments/eval.h): loads a checkpoint (a file, or
// the newest of a run directory), evaluates it on a shard dataset (or a JSONL file for LAMBADA), prints one
// summary line and writes eval.json (values, n, 95% intervals, how each number was measured, the checkpoint,
// the dataset, the ranks and the first items). Under mpirun the ranks share the samples (eval.h) and rank 0
// prints and writes. Errors are one line ("modrwkv: error: ...") with exit status 1.
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "experiments/eval.h"
#include "trainer/checkpoint.h"

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

static void add_choice_item(json_t* j, const EvalItem* it) {
    json_t* ll = json_array();
    json_t* tokens = json_array();
    for (int k = 0; k < it->n_choices; k++) {
        json_array_append_new(ll, number(it->choice_ll[k]));
        json_array_append_new(tokens, json_integer(it->choice_tokens[k]));
    }
    json_object_set_new(j, "answer", json_integer(it->answer));
    json_object_set_new(j, "predicted", json_integer(it->predicted));
    json_object_set_new(j, "correct", json_boolean(it->correct));
    json_object_set_new(j, "predicted_norm", json_integer(it->predicted_norm));
    json_object_set_new(j, "correct_norm", json_boolean(it->correct_norm));
    json_object_set_new(j, "choice_loglik", ll);
    json_object_set_new(j, "choice_tokens", tokens);
}

static void add_metric_item(json_t* j, EvalMetric metric, const EvalItem* it) {
    switch (metric) {
    case EVAL_ACCURACY: json_object_set_new(j, "correct", json_boolean(it->correct)); break;
    case EVAL_WER:
        json_object_set_new(j, "word_edits", edits_json(&it->words));
        json_object_set_new(j, "char_edits", edits_json(&it->chars));
        break;
    case EVAL_MC: add_choice_item(j, it); break;
    case EVAL_LAMBADA:
        json_object_set_new(j, "correct", json_boolean(it->correct));
        json_object_set_new(j, "target_tokens", json_integer(it->targets));
        json_object_set_new(j, "nll", number(it->nll));
        break;
    case EVAL_MSE:
        json_object_set_new(j, "valid", json_boolean(it->valid));
        json_object_set_new(j, "values", json_integer(it->n_values));
        json_object_set_new(j, "sse", it->valid ? number(it->sse) : json_null());
        json_object_set_new(j, "sae", it->valid ? number(it->sae) : json_null());
        break;
    default: break;
    }
}

static json_t* item_json(const EvalResult* r, const EvalItem* it) {
    json_t* j = json_pack("{s:o, s:I, s:i, s:i}", "key", text(it->key), "sample", (json_int_t)it->sample, "turn",
                          it->turn, "prompt_tokens", it->prompt_tokens);
    if (r->metric == EVAL_PERPLEXITY) {
        json_object_set_new(j, "targets", json_integer(it->targets));
        json_object_set_new(j, "nll", number(it->nll));
        json_object_set_new(j, "perplexity", number(perplexity(it->nll, it->targets)));
        return j;
    }
    json_object_set_new(j, "reference", text(it->reference));
    json_object_set_new(j, "hypothesis", text(it->hypothesis));
    add_metric_item(j, r->metric, it);
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

static void add_mse(json_t* root, const EvalResult* r, const EvalOptions* o) {
    char method[1400];
    snprintf(method, sizeof method, GENERATION_METHOD, o->extra_tokens);
    strncat(method, "; reference and hypothesis read as numbers (separated by spaces, commas or semicolons; reading "
                    "stops at the first piece that is not a decimal number); a hypothesis with at least as many numbers "
                    "as its reference is compared on its first n (extra ignored), one with fewer is unparsable and "
                    "counted apart; MSE = total squared error / values compared over the valid answers, MAE = total "
                    "absolute error / values compared",
            sizeof method - strlen(method) - 1);
    json_object_set_new(root, "method", json_string(method));
    set_string(root, "ci_method", bootstrap_method(o, "valid answers", "total squared (absolute) error / values"));
    json_object_set_new(root, "mae", number(r->mae));
    json_object_set_new(root, "mae_ci95", interval(r->mae_ci));
    json_object_set_new(root, "values", json_integer(r->n_values));
    json_object_set_new(root, "answers", json_integer(r->n_items));
    json_object_set_new(root, "unparsable", json_integer(r->n_invalid));
}

static void add_mc(json_t* root, const EvalResult* r, const EvalReportInfo* info) {
    char file[1200];
    if (info->options->choices) snprintf(file, sizeof file, "%s", info->options->choices);
    else snprintf(file, sizeof file, "%s/choices.jsonl", info->data_dir);
    json_object_set_new(root, "method", json_string(
        "likelihood: every choice k scored by the summed log-likelihood of the tokens of \" <choice k>\\x17\" after the "
        "question's prompt (the sample's tokens before its answer, ending with \"\\x16Assistant:\", with its media; the "
        "prompt prefilled once and each choice continued from its RNN state); prediction = argmax (lowest index on "
        "ties); accuracy_norm uses the log-likelihood per token instead"));
    json_object_set_new(root, "choices_file", text(file));
    json_object_set_new(root, "correct", json_integer(r->n_correct));
    json_object_set_new(root, "ci_method", json_string("Wilson score interval, z = 1.96"));
    json_object_set_new(root, "accuracy_norm", number(r->accuracy_norm));
    json_object_set_new(root, "accuracy_norm_ci95", interval(r->ci_norm));
    json_object_set_new(root, "correct_norm", json_integer(r->n_correct_norm));
}

static void add_lambada(json_t* root, const EvalResult* r, const EvalOptions* o) {
    char method[1024];
    snprintf(method, sizeof method, "RWKV's LAMBADA: target = the last word with its leading space (the text after "
                                     "the last space, tokenized on its own), context = token 0 + the tokens of the "
                                     "text before it; teacher-forced, correct when the argmax at every target "
                                     "position is the target token; word perplexity = exp(mean over passages of the "
                                     "target's summed NLL); %d passages per forward, each row from its start",
             o->batch_size);
    json_object_set_new(root, "method", json_string(method));
    json_object_set_new(root, "correct", json_integer(r->n_correct));
    json_object_set_new(root, "ci_method", json_string("Wilson score interval, z = 1.96"));
    json_object_set_new(root, "word_perplexity", number(r->word_perplexity));
    json_object_set_new(root, "word_perplexity_ci95", interval(r->word_perplexity_ci));
    set_string(root, "word_perplexity_ci_method",
               bootstrap_method(o, "passages", "summed target NLL / passages, exponentiated"));
    json_object_set_new(root, "nll_sum", number(r->nll_sum));
    json_object_set_new(root, "target_tokens", json_integer(r->target_tokens));
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
    json_object_set_new(root, "ranks", json_integer(r->ranks));
    if (r->metric == EVAL_ACCURACY) add_accuracy(root, r, o);
    if (r->metric == EVAL_WER) add_wer(root, r, o);
    if (r->metric == EVAL_PERPLEXITY) add_perplexity(root, r, o);
    if (r->metric == EVAL_MC) add_mc(root, r, info);
    if (r->metric == EVAL_LAMBADA) add_lambada(root, r, o);
    if (r->metric == EVAL_MSE) add_mse(root, r, o);
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
    if (r->metric == EVAL_MC)
        fprintf(f, "%s: multiple-choice accuracy %.3f (n=%lld, 95%% CI %.3f-%.3f), length-normalised %.3f (95%% CI "
                   "%.3f-%.3f)\n", name, r->value, (long long)r->n, r->ci.lo, r->ci.hi, r->accuracy_norm, r->ci_norm.lo,
                r->ci_norm.hi);
    if (r->metric == EVAL_LAMBADA)
        fprintf(f, "%s: LAMBADA accuracy %.3f (n=%lld, 95%% CI %.3f-%.3f), last-word perplexity %.4g (95%% CI "
                   "%.4g-%.4g)\n", name, r->value, (long long)r->n, r->ci.lo, r->ci.hi, r->word_perplexity,
                r->word_perplexity_ci.lo, r->word_perplexity_ci.hi);
    if (r->metric == EVAL_MSE)
        fprintf(f, "%s: MSE %.4g (n=%lld forecasts, %lld values, 95%% CI %.4g-%.4g), MAE %.4g (95%% CI %.4g-%.4g), "
                   "%lld unparsable\n", name, r->value, (long long)r->n, (long long)r->n_values, r->ci.lo, r->ci.hi, r->mae,
                r->mae_ci.lo, r->mae_ci.hi, (long long)r->n_invalid);
}

// ---------------------------------------------------------------------------------------------------- command

static const char* EVAL_HELP =
    "usage: modrwkv eval (--ckpt FILE | RUN_DIR) --data DIR|FILE.jsonl --metric METRIC [--max-samples N]\n"
    "                    [--out eval.json] [--items FILE.jsonl] [--name LABEL] [--vocab FILE | --bytes]\n"
    "                    [--choices FILE.jsonl] [--ctx-len 4096] [--batch-size 8] [--extra-tokens 8] [--threads N]\n"
    "Evaluates a checkpoint (--ckpt FILE, or RUN_DIR: its newest checkpoint in RUN_DIR/checkpoints) on a shard\n"
    "dataset (read in order, no shuffling; lambada: a JSONL file) and prints one summary line.\n"
    "METRIC:\n"
    "  accuracy    chat data: every assistant answer is generated greedily after its prompt (the sample up to\n"
    "              \"\\x16Assistant:\", with its media) and scored by exact match after VQA normalisation; 95% CI:\n"
    "              Wilson. Yes/no answers also get POPE precision/recall/F1 in the report.\n"
    "  wer         chat data (e.g. transcription): corpus word and character error rates (total edits / total\n"
    "              reference words); 95% CI: bootstrap over answers (1000 resamples, fixed seed).\n"
    "  mc          multiple choice (ScienceQA / MMBench style): each sample is a question, its choices and answer\n"
    "              in DIR/choices.jsonl (or --choices), one line {\"key\": K, \"choices\": [...], \"answer\": i};\n"
    "              every choice is scored by the log-likelihood of \" <choice>\\x17\" after the question and its\n"
    "              media; accuracy of the argmax of the summed and of the per-token log-likelihood; 95% CI: Wilson.\n"
    "  mse         time-series forecasting (alias ts): answers are numbers separated by spaces or commas; the\n"
    "              generated forecast is compared with the reference: MSE and MAE over the values, bootstrap CI\n"
    "              over answers; answers with fewer numbers than the reference are counted as unparsable.\n"
    "  lambada     --data FILE.jsonl of {\"text\": ...} lines (e.g. tests/data/lambada_test.jsonl): the last word is\n"
    "              correct when the greedy argmax matches every one of its tokens, teacher-forced after token 0\n"
    "              and the context (RWKV's LAMBADA); accuracy (Wilson CI) and last-word perplexity (bootstrap CI).\n"
    "  perplexity  text or chat data: exp(mean NLL) over the trained targets, teacher-forced; 95% CI: bootstrap\n"
    "              over samples.\n"
    "  --max-samples N  the first N samples (lambada: lines) only (default: all)\n"
    "  --out FILE       the report (JSON): values, n, intervals and methods, checkpoint, dataset, first 20 items\n"
    "  --items FILE     every per-answer (per-question, per-passage, per-sample) record, one JSON object per line\n"
    "  --name LABEL     the dataset's name in the summary (default: the last two parts of DIR)\n"
    "  --ctx-len N      longest sample accepted; --batch-size: samples per forward (perplexity, lambada)\n"
    "  --extra-tokens N generation budget beyond the reference answer's tokens\n"
    "  --threads N      CPU threads per process (default: the cores divided among the ranks of this node)\n"
    "Data parallel: `mpirun -np N modrwkv eval ...` shares the samples among N ranks (sample i, or batch i for\n"
    "perplexity and lambada, on rank i mod N) and gives the same eval.json as one process; rank 0 writes it.\n";

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
    const char *ckpt, *run_dir, *data, *metric, *out, *items, *name, *vocab;
    char* latest;               // the run directory's newest checkpoint (owned)
    int bytes, threads;
    EvalOptions o;
} EvalArgs;

static void parse_args(int argc, char** argv, EvalArgs* a) {
    static struct option opts[] = {{"ckpt", 1, 0, 'c'},        {"data", 1, 0, 'd'},       {"metric", 1, 0, 'm'},
                                   {"max-samples", 1, 0, 'n'}, {"out", 1, 0, 'o'},        {"items", 1, 0, 'i'},
                                   {"name", 1, 0, 'N'},        {"vocab", 1, 0, 'v'},      {"bytes", 0, 0, 'b'},
                                   {"ctx-len", 1, 0, 'L'},     {"batch-size", 1, 0, 'B'}, {"extra-tokens", 1, 0, 'x'},
                                   {"choices", 1, 0, 'C'},     {"threads", 1, 0, 't'},    {"help", 0, 0, 'h'},
                                   {0, 0, 0, 0}};
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
        case 'C': a->o.choices = optarg; break;
        case 't': a->threads = (int)parse_count("threads", optarg, 1); break;
        case 'h': fputs(EVAL_HELP, stdout); exit(0);
        default: fatal("eval: unknown option or missing value in '%s': run `modrwkv eval --help`", argv[optind - 1]);
        }
    }
    if (optind < argc) a->run_dir = argv[optind++];
    if (optind != argc) fatal("eval: unexpected argument '%s' (see `modrwkv eval --help`)", argv[optind]);
    if (a->ckpt && a->run_dir) fatal("eval: give the checkpoint once: --ckpt FILE or RUN_DIR, not both ('%s')", a->run_dir);
    if ((!a->ckpt && !a->run_dir) || !a->data || !a->metric)
        fatal("eval: --ckpt FILE (or RUN_DIR), --data and --metric are required (see --help)");
    if (a->o.ctx_len > (1 << 24)) fatal("eval: --ctx-len must be at most %d", 1 << 24);
    Error e = {{0}};
    if (eval_parse_metric(a->metric, &a->o.metric, &e) != 0) fatal("eval: %s", e.msg);
}

// RUN_DIR: its newest complete checkpoint; a file given as RUN_DIR is the checkpoint itself.
static void resolve_checkpoint(EvalArgs* a) {
    if (a->ckpt) return;
    struct stat st;
    if (stat(a->run_dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        a->ckpt = a->run_dir;
        return;
    }
    a->latest = checkpoint_latest(a->run_dir);
    if (!a->latest)
        fatal("eval: %s: no checkpoint (expected %s/checkpoints/step-*.safetensors; give --ckpt FILE for another file)",
              a->run_dir, a->run_dir);
    a->ckpt = a->latest;
}

// An evaluation error: every rank has the same message (eval.h); rank 0 prints it, every rank exits 1.
static void fail_ranks(Comm* comm, const char* msg) {
    int rank = comm_rank(comm);
    comm_free(comm);   // finalises MPI on every rank (they all fail together)
    if (rank == 0) fatal("%s", msg);
    exit(1);
}

// Writes the report files and the summary (rank 0).
static void report(const EvalArgs* a, const EvalResult* r, const Tokenizer* tok) {
    char* name = a->name ? xstrdup(a->name) : default_name(a->data);
    eval_print_summary(r, name, stdout);
    EvalReportInfo info = {.name = name, .checkpoint = a->ckpt, .data_dir = a->data, .tokenizer = tokenizer_name(tok),
                           .options = &a->o, .items_in_json = 20};
    Error e = {{0}};
    if (a->out && eval_write_json(r, &info, a->out, &e) != 0) fatal("%s", e.msg);
    if (a->items && eval_write_items(r, a->items, &e) != 0) fatal("%s", e.msg);
    if (a->out) printf("wrote %s\n", a->out);
    free(name);
}

int eval_main(int argc, char** argv) {
    EvalArgs a = {0};
    eval_options_default(&a.o);
    opterr = 0;
    parse_args(argc, argv, &a);
    resolve_checkpoint(&a);
    Error e = {{0}};
    Comm* comm = comm_world_create(&argc, &argv, &e);   // MPI under mpirun / srun, else one rank
    if (!comm) fatal("%s", e.msg);
    int rank = comm_rank(comm);
    a.o.comm = comm;
    if (rank == 0 && isatty(STDOUT_FILENO)) a.o.log = stdout;
    int threads = a.threads;   // 0: all cores (one rank), or the node's cores shared among its ranks
    if (threads == 0 && comm_size(comm) > 1) {
        threads = (int)(sysconf(_SC_NPROCESSORS_ONLN) / comm_local_size(comm));
        if (threads < 1) threads = 1;
    }
    Backend* be = backend_cpu_create(threads);
    char* ckpt_tok = NULL;
    ModRWKV* m = modrwkv_load(a.ckpt, be, &ckpt_tok, &e);
    if (!m) fail_ranks(comm, e.msg);   // every rank reads the same file: the same message
    Tokenizer* tok = eval_tokenizer(a.vocab, a.bytes, ckpt_tok, m->lm->cfg.vocab_size);
    EvalResult r;
    if (eval_run(m, tok, a.data, &a.o, &r, &e) != 0) fail_ranks(comm, e.msg);
    if (rank == 0) report(&a, &r, tok);
    eval_result_free(&r);
    tokenizer_free(tok);
    free(ckpt_tok);
    free(a.latest);
    modrwkv_free(m);
    backend_destroy(be);
    comm_free(comm);
    return 0;
}

// eval.h — evaluation of a ModRWKV checkpoint on a shard dataset (datasets/shard.h): answers generated for
// chat questions and scored (accuracy, WER/CER), or the teacher-forced perplexity; the eval.json report.
//
// Contract:
// - Data: the dataset is read by the shard loader on one rank without shuffling, at most max_samples samples:
//   each shard's samples in stored order, the shards in the loader's epoch-0 order for seed 0 (the stored
//   order when there is one shard; always the same order). Images are preprocessed to the vision encoder's
//   size as in training. A sample longer than ctx_len is an
//   error (raise ctx_len), as is a dataset whose tokenizer or vocabulary does not fit the model.
// - eval_chat: an answer is a maximal run of trained tokens (loss mask 1) that follows "\x16Assistant:"
//   (datasets/chat_template.h); any other trained run, or a dataset without answers, is an error (text data
//   is measured with eval_perplexity). For every answer of every sample, the prompt is the sample's tokens
//   before the answer — ending with "\x16Assistant:", earlier turns with their reference answers (teacher
//   forcing of the dialogue history), and the media whose placeholders lie in it; the answer is decoded
//   greedily (temperature 0) until "\x17" (token 24 in World, 23 in bytes) or token 0, at most (answer tokens +
//   extra_tokens) tokens.
//   The reference is the answer's text without its closing "\x17". Scoring (experiments/metrics.h):
//   EVAL_ACCURACY = exact match after normalize_vqa, with a Wilson 95% interval, and yes/no (POPE) scores
//   over the answers whose reference is yes or no; EVAL_WER = corpus WER and CER (normalize_basic) with
//   percentile-bootstrap 95% intervals over answers.
// - eval_perplexity: every trained target of every sample (all tokens of a text sample, the answers of a
//   chat sample) is scored teacher-forced in one forward per batch (modrwkv_step without backward, each row
//   one sample from its start, no state carried between rows); perplexity = exp(summed NLL / targets), with
//   a bootstrap 95% interval over samples of the per-token NLL (exponentiated).
// - Items: one record per answer (key, turn, reference, hypothesis, score) or per sample (perplexity: key,
//   targets, NLL), all kept in EvalResult for the report; eval_write_json lists the first items_in_json.
// - Errors return -1 with e naming the dataset directory (and the sample key when there is one).
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "datasets/shard_loader.h"
#include "datasets/tokenizer.h"
#include "experiments/metrics.h"
#include "kernels/common.h"
#include "trainer/generate.h"
#include "trainer/modrwkv.h"

typedef enum { EVAL_ACCURACY = 0, EVAL_WER = 1, EVAL_PERPLEXITY = 2 } EvalMetric;

const char* eval_metric_name(EvalMetric metric);   // "accuracy", "wer", "perplexity"
int eval_parse_metric(const char* name, EvalMetric* metric, Error* e);

// The answer generator eval_chat calls (generate_multimodal by default); tests substitute one that records
// the prompts it is given. Returns the number of ids (*ids malloc'ed) or -1 with e filled.
typedef int (*EvalGenerateFn)(void* ctx, ModRWKV* m, const Tokenizer* tok, const ShardBatch* prompt,
                              const GenerateOptions* o, int32_t** ids, Error* e);

typedef struct EvalOptions {
    EvalMetric metric;
    int64_t max_samples;        // 0: every sample
    int ctx_len;                // longest sample accepted (default 4096)
    int batch_size;             // perplexity: samples per forward (default 8)
    int extra_tokens;           // generation budget beyond the reference answer's tokens (default 8)
    int bootstrap_resamples;    // default METRIC_BOOTSTRAP_RESAMPLES
    uint64_t bootstrap_seed;    // default METRIC_BOOTSTRAP_SEED
    FILE* log;                  // progress lines (NULL: none)
    EvalGenerateFn generate;    // NULL: generate_multimodal
    void* generate_ctx;
} EvalOptions;

void eval_options_default(EvalOptions* o);

typedef struct EvalItem {
    char* key;
    int turn;                   // 0-based answer index within the sample (perplexity: 0)
    int prompt_tokens;          // tokens of the prompt before assembly (perplexity: the sample's tokens)
    char* reference;            // answer text (perplexity: NULL)
    char* hypothesis;           // generated text (perplexity: NULL)
    int correct;                // EVAL_ACCURACY: exact match
    EditCounts words, chars;    // EVAL_WER
    double nll;                 // EVAL_PERPLEXITY: summed NLL (nats) of the sample's targets
    int64_t targets;            // EVAL_PERPLEXITY: its trained targets
} EvalItem;

typedef struct EvalResult {
    EvalMetric metric;
    int64_t n_samples;          // samples read
    int64_t n;                  // answers scored (perplexity: targets scored)
    double value;               // accuracy, WER or perplexity
    Interval ci;                // its 95% interval
    int64_t n_correct;          // accuracy
    YesNoCounts yes_no;         // accuracy: answers whose reference is yes/no
    int64_t word_edits, ref_words, char_edits, ref_chars;   // wer
    double cer;
    Interval cer_ci;
    double nll_sum;             // perplexity: summed NLL (nats); n = targets
    EvalItem* items;
    int64_t n_items;
    double seconds;
} EvalResult;

// Chat answers generated and scored (metric EVAL_ACCURACY or EVAL_WER). r is filled (free with
// eval_result_free, also after a failure).
int eval_chat(ModRWKV* m, const Tokenizer* tok, const char* data_dir, const EvalOptions* o, EvalResult* r, Error* e);
// Teacher-forced perplexity over the trained targets (text or chat data).
int eval_perplexity(ModRWKV* m, const char* data_dir, const EvalOptions* o, EvalResult* r, Error* e);
void eval_result_free(EvalResult* r);

// ---- the report (defined with the command in eval_cli.c)

// What the report says about the run.
typedef struct EvalReportInfo {
    const char* name;           // the dataset's label in the summary ("digits_qa/test")
    const char* checkpoint;
    const char* data_dir;
    const char* tokenizer;
    const EvalOptions* options;
    int items_in_json;          // first items listed (e.g. 20)
} EvalReportInfo;

// eval.json: metric values, n, 95% intervals and how they were computed, checkpoint, dataset, the first items.
int eval_write_json(const EvalResult* r, const EvalReportInfo* info, const char* path, Error* e);
// Every item as one JSON object per line.
int eval_write_items(const EvalResult* r, const char* path, Error* e);
// One line: "<name>: accuracy 0.953 (n=537, 95% CI 0.930-0.970)" (WER adds the CER; perplexity its targets).
void eval_print_summary(const EvalResult* r, const char* name, FILE* f);

// The `modrwkv eval` command (eval_cli.c).
int eval_main(int argc, char** argv);

// eval.h — evaluation of a ModRWKV checkpoint: answers generated for chat questions and scored (accuracy,
// WER/CER, forecast MSE/MAE), multiple-choice questions scored by likelihood, LAMBADA last-word accuracy,
// the teacher-forced perplexity; data parallel over MPI ranks; the eval.json report.
//
// Contract:
// - Data: a shard dataset (datasets/shard.h; every metric except lambada) is read by the shard loader without
//   shuffling, at most max_samples samples: each shard's samples in stored order, the shards in the loader's
//   epoch-0 order for seed 0 (the stored order when there is one shard; always the same order). Images are
//   preprocessed to the vision encoder's size as in training. A sample longer than ctx_len is an error
//   (raise ctx_len), as is a dataset whose tokenizer or vocabulary does not fit the model.
// - Answers (accuracy, wer, mse): an answer is a maximal run of trained tokens (loss mask 1) that follows
//   "\x16Assistant:" (datasets/chat_template.h); any other trained run, or a dataset without answers, is an
//   error (text data is measured with eval_perplexity). For every answer of every sample, the prompt is the
//   sample's tokens before the answer — ending with "\x16Assistant:", earlier turns with their reference
//   answers (teacher forcing of the dialogue history), and the media whose placeholders lie in it; the
//   answer is decoded greedily (temperature 0) until "\x17" (token 24 in World, 23 in bytes) or token 0, at
//   most (answer tokens + extra_tokens) tokens. The reference is the answer's text without its closing
//   "\x17". Scoring (experiments/metrics.h):
//   * EVAL_ACCURACY = exact match after normalize_vqa, with a Wilson 95% interval, and yes/no (POPE) scores
//     over the answers whose reference is yes or no;
//   * EVAL_WER = corpus WER and CER (normalize_basic) with percentile-bootstrap 95% intervals over answers;
//   * EVAL_MSE (time-series forecasting): a forecast sample is a chat sample whose media include the series
//     (MEDIA_TIMESERIES items, placeholder 65532) and whose answer is the forecast written as numbers
//     separated by spaces or commas (e.g. " 0.52 0.61 0.58\x17"; metrics.h parse_numbers). Reference and
//     hypothesis are parsed by the same rule; the values are compared as written (normalise the series
//     when the dataset is built, as the paper's zero-shot MSE does). A reference without numbers is an
//     error. A hypothesis with at least as many numbers as its reference is valid (its first n are
//     compared, extra numbers ignored); one with fewer is unparsable: it gets no error value, it is counted
//     in n_invalid and reported beside the metric (never silently dropped, never given an arbitrary penalty).
//     MSE = sum of squared errors / values compared over all valid answers, MAE likewise (pooled over
//     values); percentile-bootstrap 95% intervals over valid answers; n = valid answers.
// - EVAL_MC (multiple choice, ScienceQA / MMBench style): each sample is one question. Its choices live in
//   a sidecar JSONL file (the shard format has no per-sample metadata): o->choices, or <data_dir>/
//   choices.jsonl, one line per question {"key": "<sample key>", "choices": ["text", ...], "answer": i}
//   with 2..64 choices and the 0-based index of the correct one; every evaluated sample needs a line (an
//   error names the key), extra lines are ignored. The prompt is the sample's tokens before its last answer
//   (the answer stored in the sample, if any, is not used), or the whole sample when it has no trained
//   tokens; either way it must end with "\x16Assistant:". Choice k is scored by the model's log-likelihood
//   of the tokens of " <choice k>\x17" (the assistant answer exactly as the chat template trains it) after
//   the prompt with its media: the prompt is read once (modrwkv_prefill, RNN state) and every choice
//   continues from a copy of its state. Summed log-likelihood -> `predicted` (argmax, the lowest index among
//   ties); log-likelihood per token (length-normalised) -> `predicted_norm`. value = accuracy of the summed
//   score (`accuracy_norm` of the normalised one), each with a Wilson 95% interval; n = questions.
// - EVAL_LAMBADA: data_dir is a JSONL file of {"text": ...} lines (LAMBADA's test set). The target is the
//   last word with its leading space (metrics.h lambada_split); the context is token 0 followed by the
//   tokens of the text before it, the target is tokenized on its own (RWKV's LAMBADA evaluation). A passage
//   is correct when, teacher-forced, the argmax of the model at every target position is the target token.
//   value = accuracy with a Wilson 95% interval; word_perplexity = exp(mean over passages of the target's
//   summed NLL) with a percentile-bootstrap interval over passages; n = passages. Passages are read
//   batch_size per forward, each row from token 0 (no state carried between rows). A line that is not
//   JSON, has no string "text", or has no last word is an error naming the file and line.
// - EVAL_PERPLEXITY: every trained target of every sample (all tokens of a text sample, the answers of a
//   chat sample) is scored teacher-forced in one forward per batch (modrwkv_step without backward, each row
//   one sample from its start, no state carried between rows); perplexity = exp(summed NLL / targets), with
//   a bootstrap 95% interval over samples of the per-token NLL (exponentiated).
// - Data parallel: with o->comm of N ranks (mpirun -np N), each rank evaluates its share and the items are
//   gathered on every rank, which then computes the same metric, n and intervals as a one-rank run: the
//   same items, in the same order, with bit-identical numbers. Shares: answer, forecast and multiple-choice
//   metrics evaluate sample i on rank i mod N; perplexity and lambada, which batch several samples per
//   forward, give batch j (batch_size samples in the one-rank order) to rank j mod N, so every forward
//   holds the same rows as in a one-rank run (the CPU kernels are row-exact only for the same batch).
//   Every rank reads the whole dataset (and skips the others' samples). An error on any rank fails every
//   rank with the message of the lowest failing rank, prefixed "rank R: " unless every rank failed.
// - Items: one record per answer (key, turn, reference, hypothesis, scores), per question (mc), per passage
//   (lambada) or per sample (perplexity: key, targets, NLL), all kept in EvalResult for the report, in the
//   evaluated order; eval_write_json lists the first items_in_json.
// - Errors return -1 with e naming the dataset directory or file (and the sample key or line when there is
//   one). r is filled on success; free it with eval_result_free after success and failure alike.
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "datasets/shard_loader.h"
#include "datasets/tokenizer.h"
#include "experiments/metrics.h"
#include "kernels/common.h"
#include "sharding/comm.h"
#include "trainer/generate.h"
#include "trainer/modrwkv.h"

typedef enum {
    EVAL_ACCURACY = 0,
    EVAL_WER = 1,
    EVAL_PERPLEXITY = 2,
    EVAL_MC = 3,
    EVAL_LAMBADA = 4,
    EVAL_MSE = 5,
    EVAL_METRIC_COUNT = 6,
} EvalMetric;

// "accuracy", "wer", "perplexity", "mc", "lambada", "mse" (parse also takes "ts" for mse).
const char* eval_metric_name(EvalMetric metric);
int eval_parse_metric(const char* name, EvalMetric* metric, Error* e);

enum { EVAL_MAX_CHOICES = 64 };

// The answer generator of the answer metrics (generate_multimodal by default); tests substitute one that
// records the prompts it is given. Returns the number of ids (*ids malloc'ed) or -1 with e filled.
typedef int (*EvalGenerateFn)(void* ctx, ModRWKV* m, const Tokenizer* tok, const ShardBatch* prompt,
                              const GenerateOptions* o, int32_t** ids, Error* e);
// The choice scorer of EVAL_MC (the model's summed log-likelihood by default): ll[k] = log p(conts[k] |
// prompt) for the n_choices token sequences conts[k] of n_conts[k] tokens. Returns 0 or -1 with e filled.
typedef int (*EvalScoreFn)(void* ctx, ModRWKV* m, const ShardBatch* prompt, const int32_t* const* conts,
                           const int* n_conts, int n_choices, double* ll, Error* e);

typedef struct EvalOptions {
    EvalMetric metric;
    int64_t max_samples;        // 0: every sample (lambada: every line)
    int ctx_len;                // longest sample accepted (default 4096)
    int batch_size;             // perplexity, lambada: samples per forward (default 8)
    int extra_tokens;           // generation budget beyond the reference answer's tokens (default 8)
    int bootstrap_resamples;    // default METRIC_BOOTSTRAP_RESAMPLES
    uint64_t bootstrap_seed;    // default METRIC_BOOTSTRAP_SEED
    const char* choices;        // mc: the choices file (NULL: <data_dir>/choices.jsonl)
    Comm* comm;                 // data-parallel ranks (NULL: this process alone)
    FILE* log;                  // progress lines (NULL: none)
    EvalGenerateFn generate;    // NULL: generate_multimodal
    void* generate_ctx;
    EvalScoreFn score;          // NULL: the model's log-likelihood
    void* score_ctx;
} EvalOptions;

void eval_options_default(EvalOptions* o);

typedef struct EvalItem {
    char* key;                  // sample key (lambada: "line N", 1-based)
    int64_t sample;             // the sample's (line's) 0-based index in the evaluated order
    int turn;                   // 0-based answer index within the sample (other metrics: 0)
    int prompt_tokens;          // tokens of the prompt before assembly (perplexity: the sample's tokens)
    char* reference;            // answer text, correct choice, LAMBADA target (perplexity: NULL)
    char* hypothesis;           // generated text, chosen choice, LAMBADA argmax tokens (perplexity: NULL)
    int correct;                // EVAL_ACCURACY exact match; EVAL_MC summed-score choice; EVAL_LAMBADA
    EditCounts words, chars;    // EVAL_WER
    double nll;                 // EVAL_PERPLEXITY: summed NLL (nats) of the targets; EVAL_LAMBADA: of the word
    int64_t targets;            // EVAL_PERPLEXITY: trained targets; EVAL_LAMBADA: the word's tokens
    int valid;                  // EVAL_MSE: the hypothesis has enough numbers
    int64_t n_values;           // EVAL_MSE: values compared (the reference's count when valid)
    double sse, sae;            // EVAL_MSE: sums of squared / absolute errors
    int n_choices, answer;      // EVAL_MC: choices and the correct index
    int predicted, predicted_norm;   // EVAL_MC: argmax of the summed / per-token log-likelihood
    int correct_norm;           // EVAL_MC: predicted_norm == answer
    double* choice_ll;          // EVAL_MC: (n_choices) summed log-likelihoods
    int* choice_tokens;         // EVAL_MC: (n_choices) scored tokens
} EvalItem;

typedef struct EvalResult {
    EvalMetric metric;
    int ranks;                  // data-parallel ranks that evaluated
    int64_t n_samples;          // samples (lines) read
    int64_t n;                  // answers, questions, passages, valid forecasts scored (perplexity: targets)
    double value;               // accuracy, WER, perplexity, mc / lambada accuracy or MSE
    Interval ci;                // its 95% interval
    int64_t n_correct;          // accuracy, mc, lambada
    YesNoCounts yes_no;         // accuracy: answers whose reference is yes/no
    int64_t word_edits, ref_words, char_edits, ref_chars;   // wer
    double cer;
    Interval cer_ci;
    double nll_sum;             // perplexity: summed NLL (nats), n = targets; lambada: of the target words
    int64_t n_correct_norm;     // mc: by the length-normalised score
    double accuracy_norm;
    Interval ci_norm;
    double word_perplexity;     // lambada
    Interval word_perplexity_ci;
    int64_t target_tokens;      // lambada: tokens of all target words
    double mae;                 // mse
    Interval mae_ci;
    int64_t n_values, n_invalid;   // mse: values compared; answers without enough numbers
    EvalItem* items;
    int64_t n_items;
    double seconds;
} EvalResult;

// Answers generated and scored: EVAL_ACCURACY, EVAL_WER, EVAL_MSE. Also dispatches EVAL_MC and EVAL_LAMBADA
// to their functions (so that a caller holding a metric can call this for anything but perplexity).
int eval_chat(ModRWKV* m, const Tokenizer* tok, const char* data_dir, const EvalOptions* o, EvalResult* r, Error* e);
// Multiple choice by likelihood (EVAL_MC).
int eval_multiple_choice(ModRWKV* m, const Tokenizer* tok, const char* data_dir, const EvalOptions* o, EvalResult* r,
                         Error* e);
// LAMBADA last-word accuracy and perplexity (EVAL_LAMBADA) over a JSONL file.
int eval_lambada(ModRWKV* m, const Tokenizer* tok, const char* jsonl, const EvalOptions* o, EvalResult* r, Error* e);
// Teacher-forced perplexity over the trained targets (text or chat data).
int eval_perplexity(ModRWKV* m, const char* data_dir, const EvalOptions* o, EvalResult* r, Error* e);
// Any metric: o->metric picks the function above.
int eval_run(ModRWKV* m, const Tokenizer* tok, const char* data, const EvalOptions* o, EvalResult* r, Error* e);
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

// eval.json: metric values, n, 95% intervals and how they were computed, checkpoint, dataset, ranks, the
// first items.
int eval_write_json(const EvalResult* r, const EvalReportInfo* info, const char* path, Error* e);
// Every item as one JSON object per line.
int eval_write_items(const EvalResult* r, const char* path, Error* e);
// One line: "<name>: accuracy 0.953 (n=537, 95% CI 0.930-0.970)" (WER adds the CER, perplexity its targets,
// mc the length-normalised accuracy, lambada the last-word perplexity, mse the MAE and the unparsable count).
void eval_print_summary(const EvalResult* r, const char* name, FILE* f);

// The `modrwkv eval` command (eval_cli.c).
int eval_main(int argc, char** argv);

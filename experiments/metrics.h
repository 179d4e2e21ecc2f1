// metrics.h — the evaluation metrics of experiments/: text normalisation, exact-match and VQA accuracy, word
// and character error rates, POPE-style yes/no scores, perplexity, MSE/MAE, forecasts written as text, the
// LAMBADA split, token log-probabilities, and 95% confidence intervals. Pure functions of their inputs (no
// model, no files).
//
// Contract:
// - Normalisation (two levels; both lower-case ASCII letters only and leave other UTF-8 bytes alone):
//   * basic (WER/CER): every ASCII punctuation mark except the apostrophe becomes a space, but a period
//     followed by a digit is kept ("2.5") and a comma between two digits is removed ("1,000" -> "1000");
//     then runs of whitespace collapse to one space, with none at either end.
//   * vqa (accuracy): basic, then word by word (the VQAv2 evaluation convention): the articles "a", "an",
//     "the" are dropped and the number words "none", "zero" ... "ten" become "0" ... "10". VQAv2's table that
//     restores apostrophes of contractions ("dont" -> "don't") is not applied, and where VQAv2 leaves rarer
//     symbols (':', '%', '#' ...) in place, basic strips them too.
// - Exact match: normalise_vqa(hyp) == normalise_vqa(ref). VQA accuracy with n references:
//   min(#references equal to the hypothesis after normalisation / 3, 1); with one reference it is the exact
//   match (0 or 1).
// - Edit distance (Levenshtein, unit costs) between the basic-normalised hypothesis and reference, as words
//   (split at spaces) or as characters (UTF-8 code points, an invalid byte counting as one, spaces included).
//   An alignment of minimum cost is traced back preferring match/substitution, then deletion, then
//   insertion, giving S, D and I with S + D + I = the distance. An empty reference makes every hypothesis
//   unit an insertion.
// - Corpus error rate (WER, CER) = total edits / total reference units over all utterances (not the mean of
//   per-utterance rates). The all-empty corpus (no reference unit at all): 0 when there are no edits either
//   (nothing said, nothing hypothesised), +infinity otherwise (insertions against nothing).
// - Yes/no (POPE): an answer is "no" when its vqa-normalised words contain "no" or "not", otherwise "yes";
//   "yes" is the positive class. precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2PR/(P+R), accuracy =
//   (TP+TN)/n, yes_ratio = (TP+FP)/n; each is 0 when its denominator is 0.
// - Perplexity = exp(sum of NLL in nats / token count); 0 tokens -> NAN.
// - Numbers in text (time-series answers): the text is cut into pieces at whitespace (and control bytes),
//   ',' and ';'; each piece must be a whole finite decimal number (optional sign, digits with at most one
//   '.', optional exponent e[+-]digits; no hex, inf or nan); reading stops at the first piece that is not
//   one, and the numbers before it are the text's numbers. Forecast error of a hypothesis against a
//   reference of n values: valid when the hypothesis has at least n numbers; then its first n are compared
//   (extra numbers ignored): SSE = sum (h - r)^2, SAE = sum |h - r|. A hypothesis with fewer numbers is
//   invalid (no error sums; the evaluation counts it separately).
// - LAMBADA (RWKV's evaluation): the target is the last word with its leading space: text = context +
//   target where the target starts at the last ' ' of the text. Text without a space, or ending with one,
//   has no target.
// - token_log_prob: log softmax(logits)[target] computed in double (max-subtracted), and the argmax of the
//   logits (the lowest id among equal maxima, as torch.argmax).
// - Confidence intervals are 95%: the Wilson score interval for a proportion k/n (z = 1.959964; n = 0 gives
//   [0, 1]); for a ratio of sums (WER, CER, per-token NLL) a percentile bootstrap over utterances: R
//   resamples of n utterances drawn with replacement by xoshiro256** seeded with `seed` (METRIC_BOOTSTRAP_*
//   are the defaults the evaluation uses), the ratio of each resample's sums, and the 2.5% and 97.5%
//   quantiles of the R values (linear interpolation between order statistics, numpy's default). Resamples
//   whose denominator is 0 take the all-empty value above.
#pragma once
#include <stddef.h>
#include <stdint.h>

enum { METRIC_BOOTSTRAP_RESAMPLES = 1000, METRIC_BOOTSTRAP_SEED = 20250101 };

// ---------------------------------------------------------------------------------------------------- text
// Both return a malloc'ed NUL-terminated string (the caller frees it).
char* normalize_basic(const char* s);
char* normalize_vqa(const char* s);

// 1 when the hypothesis equals the reference after normalize_vqa.
int exact_match(const char* hyp, const char* ref);
// min(#refs matching / 3, 1); n_refs == 1: exact_match; n_refs == 0: 0.
double vqa_accuracy(const char* hyp, const char* const* refs, int n_refs);

// ---------------------------------------------------------------------------------------------------- edits
typedef struct EditCounts {
    int64_t sub, del, ins;   // substitutions, deletions (reference units missing), insertions (extra units)
    int64_t ref_len;         // reference units (words or characters)
} EditCounts;

static inline int64_t edit_total(const EditCounts* c) { return c->sub + c->del + c->ins; }

// Word and character edits of hyp against ref after normalize_basic.
EditCounts word_edits(const char* hyp, const char* ref);
EditCounts char_edits(const char* hyp, const char* ref);
// total edits / total reference units (see the contract for 0 reference units).
double error_rate(int64_t edits, int64_t ref_units);

// ---------------------------------------------------------------------------------------------------- yes/no
typedef struct YesNoCounts {
    int64_t tp, fp, tn, fn;
} YesNoCounts;

typedef struct YesNoScores {
    int64_t n;
    double precision, recall, f1, accuracy, yes_ratio;
} YesNoScores;

int answer_is_yes(const char* answer);   // 1 yes, 0 no (POPE's rule above)
// 1 when the reference is a yes/no answer (normalised "yes" or "no"); only those are counted by yes_no_add.
int is_yes_no(const char* ref);
void yes_no_add(YesNoCounts* c, const char* hyp, const char* ref);
YesNoScores yes_no_scores(const YesNoCounts* c);

// ---------------------------------------------------------------------------------------------------- numbers
double perplexity(double nll_sum, int64_t n_tokens);
double mean_squared_error(const float* pred, const float* target, size_t n);   // n == 0: NAN
double mean_absolute_error(const float* pred, const float* target, size_t n);

typedef struct Interval {
    double lo, hi;
} Interval;

// ---------------------------------------------------------------------------------------------------- forecasts
// The numbers of a text (see the contract). Returns the count; *values is malloc'ed (NULL when 0).
size_t parse_numbers(const char* text, double** values);

typedef struct ForecastError {
    int valid;        // 1: the hypothesis has at least n_ref numbers
    int64_t n;        // values compared: n_ref when valid, else 0
    double sse, sae;  // sums of squared and of absolute errors over them
} ForecastError;

ForecastError forecast_error(const double* hyp, size_t n_hyp, const double* ref, size_t n_ref);

// ---------------------------------------------------------------------------------------------------- language modelling
// LAMBADA: 0 and *split = the offset of the last ' ' (context text[0, split), target text[split, len)),
// or -1 when the text has no target.
int lambada_split(const char* text, size_t len, size_t* split);
// log p(target) under softmax(logits) (V values), in double; *argmax (when not NULL) the lowest id of the max.
double token_log_prob(const float* logits, int V, int target, int* argmax);

Interval wilson_interval(int64_t k, int64_t n);
// Percentile bootstrap of sum(num) / sum(den) over n items (num, den per item), as in the contract.
Interval bootstrap_ratio(const double* num, const double* den, size_t n, int resamples, uint64_t seed);
// q-quantile (0..1) of sorted values (n >= 1), linear interpolation between order statistics.
double quantile_sorted(const double* sorted, size_t n, double q);

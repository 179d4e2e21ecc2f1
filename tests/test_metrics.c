// test_metrics.c — the evaluation metrics (experiments/metrics.h) on hand-computed cases:
//   1. normalisation: basic (case, punctuation, whitespace) and vqa (articles, number words);
//   2. exact match and VQA accuracy (min(matches / 3, 1));
//   3. word edits: insertion, substitution, deletion, empty reference, and the corpus WER as total edits over
//      total reference words (not the mean of per-utterance rates); the all-empty corpus;
//   4. character edits (CER) on code points;
//   5. POPE yes/no precision / recall / F1 / accuracy on a confusion table of 4 TP, 1 FP, 3 TN, 2 FN;
//   6. perplexity, MSE, MAE; Wilson intervals against published values; the percentile bootstrap;
//   7. numbers read from forecast answers (separators, where reading stops, what is not a number) and the
//      forecast error of a hypothesis with too few, exactly enough and extra numbers;
//   8. the LAMBADA split at the last space and the token log-probability / argmax of hand-made logits.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/metrics.h"
#include "tests/testutil.h"

static int check_value(const char* name, double got, double want, double tol) {
    float g = (float)got, w = (float)want;
    return check_close_abs(name, &g, &w, 1, tol);
}

static int check_string(const char* name, char* got, const char* want) {
    char detail[512];
    snprintf(detail, sizeof detail, "got '%s', want '%s'", got, want);
    printf("  %s -> '%s'\n", name, got);
    int f = check_true(name, strcmp(got, want) == 0, detail);
    free(got);
    return f;
}

static int check_normalisation(void) {
    int f = 0;
    f += check_string("basic: case, punctuation, whitespace", normalize_basic("  The Cat,   sat!\n"), "the cat sat");
    f += check_string("basic: decimal point and thousands comma kept as numbers", normalize_basic("1,000 or 2.5?"),
                      "1000 or 2.5");
    f += check_string("basic: hyphen becomes a space, apostrophe stays", normalize_basic("X-ray don't"), "x ray don't");
    f += check_string("basic: control bytes (chat markers) are spaces", normalize_basic(" 7\x17"), "7");
    f += check_string("basic: non-ASCII bytes are kept", normalize_basic("Caf\xc3\xa9."), "caf\xc3\xa9");
    f += check_string("basic: empty and all-punctuation strings", normalize_basic(" ?! "), "");
    f += check_string("vqa: articles dropped", normalize_vqa("The dog and an apple"), "dog and apple");
    f += check_string("vqa: number words become digits", normalize_vqa("Two, seven or ten"), "2 7 or 10");
    f += check_string("vqa: 'none' is 0", normalize_vqa("None."), "0");
    f += check_string("vqa: other words unchanged", normalize_vqa("Twenty threes"), "twenty threes");
    return f;
}

static int check_accuracy(void) {
    int f = 0;
    f += check_true("exact match: 'Seven.' == '7'", exact_match("Seven.", "7"), "no match");
    f += check_true("exact match: 'Yes!' == 'yes'", exact_match(" Yes!", "yes"), "no match");
    f += check_true("exact match: '7' != '1'", !exact_match("7", "1"), "matched");
    f += check_true("exact match: '' != 'no'", !exact_match("", "no"), "matched");
    const char* refs[10] = {"two", "2", "2", "3", "three", "2", "a few", "3", "3", "2"};
    f += check_value("vqa accuracy: 5 of 10 humans said 2 -> min(5/3, 1) = 1", vqa_accuracy("Two", refs, 10), 1.0, 1e-7);
    f += check_value("vqa accuracy: 1 of 10 said 'a few' -> 1/3", vqa_accuracy("few", refs, 10), 1.0 / 3, 1e-7);
    f += check_value("vqa accuracy: 4 of 10 said 3 -> 1", vqa_accuracy("three", refs, 10), 1.0, 1e-7);
    const char* two[2] = {"dog", "dog"};
    f += check_value("vqa accuracy: 2 of 2 match -> 2/3", vqa_accuracy("the dog", two, 2), 2.0 / 3, 1e-7);
    f += check_value("vqa accuracy: no match -> 0", vqa_accuracy("cat", refs, 10), 0.0, 0);
    f += check_value("vqa accuracy: one reference is the exact match", vqa_accuracy("dog", two, 1), 1.0, 0);
    return f;
}

static int check_edits(const char* name, EditCounts c, int64_t s, int64_t d, int64_t i, int64_t n) {
    char detail[256];
    snprintf(detail, sizeof detail, "got S%lld D%lld I%lld N%lld, want S%lld D%lld I%lld N%lld", (long long)c.sub,
             (long long)c.del, (long long)c.ins, (long long)c.ref_len, (long long)s, (long long)d, (long long)i,
             (long long)n);
    printf("  %s: %s\n", name, detail);
    return check_true(name, c.sub == s && c.del == d && c.ins == i && c.ref_len == n, detail);
}

static int check_wer(void) {
    int f = 0;
    EditCounts ins = word_edits("the cat sat down", "the cat sat");
    f += check_edits("WER: one inserted word", ins, 0, 0, 1, 3);
    f += check_value("WER of 'the cat sat' vs 'the cat sat down' = 1/3", error_rate(edit_total(&ins), ins.ref_len),
                     1.0 / 3, 1e-7);
    EditCounts sub = word_edits("seven four", "seven three");
    f += check_edits("WER: one substituted word", sub, 1, 0, 0, 2);
    EditCounts del = word_edits("one three four", "one two three four");
    f += check_edits("WER: one deleted word", del, 0, 1, 0, 4);
    EditCounts same = word_edits("The cat sat.", "the cat, sat");
    f += check_edits("WER: case and punctuation do not count", same, 0, 0, 0, 3);
    EditCounts empty_ref = word_edits("hello world", "");
    f += check_edits("WER: empty reference -> every hypothesis word is an insertion", empty_ref, 0, 0, 2, 0);
    EditCounts empty_hyp = word_edits("", "seven three");
    f += check_edits("WER: empty hypothesis -> every reference word is a deletion", empty_hyp, 0, 2, 0, 2);
    EditCounts mixed = word_edits("a quick fox jumps", "the quick brown fox");
    f += check_value("WER: 'the quick brown fox' -> 'a quick fox jumps' costs 3 edits (distance)",
                     (double)edit_total(&mixed), 3.0, 0);
    // corpus: (1 + 1 + 0 + 2) edits over (3 + 2 + 2 + 0) words = 4/7; the mean of per-utterance rates is undefined
    // (the last reference is empty) and, without it, (1/3 + 1/2 + 0) / 3 = 0.278 != 2/7
    EditCounts u[4] = {ins, sub, word_edits("a b", "a b"), empty_ref};
    int64_t edits = 0, words = 0;
    for (int k = 0; k < 4; k++) edits += edit_total(&u[k]), words += u[k].ref_len;
    f += check_value("corpus WER = total edits / total reference words = 4/7", error_rate(edits, words), 4.0 / 7, 1e-7);
    f += check_value("all-empty corpus without edits: WER 0", error_rate(0, 0), 0.0, 0);
    f += check_true("all-empty corpus with insertions: WER +infinity", isinf(error_rate(2, 0)) && error_rate(2, 0) > 0,
                    "not +inf");
    return f;
}

static int check_cer(void) {
    int f = 0;
    EditCounts k = char_edits("sitting", "kitten");
    f += check_edits("CER: kitten -> sitting (2 substitutions, 1 insertion)", k, 2, 0, 1, 6);
    f += check_value("CER of kitten -> sitting = 3/6", error_rate(edit_total(&k), k.ref_len), 0.5, 1e-7);
    f += check_edits("CER: a multi-byte code point is one character", char_edits("cafe", "caf\xc3\xa9"), 1, 0, 0, 4);
    f += check_edits("CER: spaces are characters", char_edits("abcd", "ab cd"), 0, 1, 0, 5);
    f += check_edits("CER: an invalid UTF-8 byte counts as one", char_edits("a\xff", "a"), 0, 0, 1, 1);
    return f;
}

static int check_yes_no(void) {
    int f = 0;
    f += check_true("POPE: 'No, there is not.' is no", !answer_is_yes("No, there is not."), "said yes");
    f += check_true("POPE: 'There is not a dog' is no", !answer_is_yes("There is not a dog"), "said yes");
    f += check_true("POPE: 'Yes, there is' is yes", answer_is_yes("Yes, there is"), "said no");
    f += check_true("POPE: 'Nothing' is yes (not the word no)", answer_is_yes("Nothing"), "said no");
    // 4 TP, 1 FP, 3 TN, 2 FN (+ one item whose reference is not yes/no: ignored)
    const char* hyp[11] = {"Yes", "yes.", "Yes, it is", "yes", "Yes", "No", "no", "not at all", "No.", "no", "Yes"};
    const char* ref[11] = {"Yes", "Yes", "Yes", "Yes", "No", "No", "No", "No", "Yes", "Yes", "seven"};
    YesNoCounts c = {0};
    for (int i = 0; i < 11; i++) yes_no_add(&c, hyp[i], ref[i]);
    YesNoScores s = yes_no_scores(&c);
    printf("  confusion: TP %lld FP %lld TN %lld FN %lld (n %lld)\n", (long long)c.tp, (long long)c.fp, (long long)c.tn,
           (long long)c.fn, (long long)s.n);
    f += check_true("POPE: confusion table 4/1/3/2 (the non-yes/no reference ignored)",
                    c.tp == 4 && c.fp == 1 && c.tn == 3 && c.fn == 2, "counts differ");
    f += check_value("POPE precision 4/5", s.precision, 0.8, 1e-7);
    f += check_value("POPE recall 4/6", s.recall, 4.0 / 6, 1e-7);
    f += check_value("POPE F1 2PR/(P+R) = 8/11", s.f1, 8.0 / 11, 1e-7);
    f += check_value("POPE accuracy 7/10", s.accuracy, 0.7, 1e-7);
    f += check_value("POPE yes ratio 5/10", s.yes_ratio, 0.5, 1e-7);
    YesNoCounts none = {0};
    YesNoScores z = yes_no_scores(&none);
    f += check_true("POPE: no items -> every score 0", z.n == 0 && z.precision == 0 && z.f1 == 0 && z.accuracy == 0,
                    "nonzero");
    return f;
}

static int check_numbers(void) {
    int f = 0;
    f += check_value("perplexity of 10 tokens at ln 4 nats each = 4", perplexity(10 * log(4.0), 10), 4.0, 1e-6);
    f += check_true("perplexity of 0 tokens is NaN", isnan(perplexity(0, 0)), "not NaN");
    const float pred[3] = {1, 2, 3}, target[3] = {1, 0, 6};
    f += check_value("MSE of errors (0, 2, -3) = 13/3", mean_squared_error(pred, target, 3), 13.0 / 3, 1e-6);
    f += check_value("MAE of errors (0, 2, -3) = 5/3", mean_absolute_error(pred, target, 3), 5.0 / 3, 1e-6);
    // published Wilson 95% intervals: 0/10 -> [0, 0.2775]; 5/10 -> [0.2366, 0.7634]; 1/10 -> [0.0179, 0.4042]
    Interval a = wilson_interval(0, 10), b = wilson_interval(5, 10), c = wilson_interval(1, 10);
    printf("  wilson 0/10 [%.4f, %.4f], 5/10 [%.4f, %.4f], 1/10 [%.4f, %.4f]\n", a.lo, a.hi, b.lo, b.hi, c.lo, c.hi);
    float got[6] = {(float)a.lo, (float)a.hi, (float)b.lo, (float)b.hi, (float)c.lo, (float)c.hi};
    float want[6] = {0.0f, 0.2775f, 0.2366f, 0.7634f, 0.0179f, 0.4042f};
    f += check_close_abs("Wilson intervals vs published values (4 decimals)", got, want, 6, 6e-5);
    Interval e = wilson_interval(0, 0);
    f += check_true("Wilson interval of n = 0 is [0, 1]", e.lo == 0 && e.hi == 1, "not [0, 1]");
    const double sorted[4] = {1, 2, 3, 4};
    f += check_value("quantile 0.5 of 1..4 interpolates to 2.5", quantile_sorted(sorted, 4, 0.5), 2.5, 0);
    f += check_value("quantile 0.025 of 1..4 = 1.075", quantile_sorted(sorted, 4, 0.025), 1.075, 1e-6);
    return f;
}

static int check_bootstrap(void) {
    int f = 0;
    double num[40], den[40];
    for (int i = 0; i < 40; i++) num[i] = 1, den[i] = 4;
    Interval flat = bootstrap_ratio(num, den, 40, 200, 7);
    f += check_true("bootstrap of utterances all at rate 1/4 gives [0.25, 0.25]", flat.lo == 0.25 && flat.hi == 0.25,
                    "interval is not a point");
    for (int i = 0; i < 40; i++) num[i] = i % 4 == 0 ? 2 : 0, den[i] = 1 + i % 3;   // corpus rate 20/79
    Interval a = bootstrap_ratio(num, den, 40, METRIC_BOOTSTRAP_RESAMPLES, METRIC_BOOTSTRAP_SEED);
    Interval b = bootstrap_ratio(num, den, 40, METRIC_BOOTSTRAP_RESAMPLES, METRIC_BOOTSTRAP_SEED);
    double point = 20.0 / 79;
    printf("  bootstrap (1000 resamples, seed %d): rate %.4f, 95%% CI [%.4f, %.4f]\n", METRIC_BOOTSTRAP_SEED, point,
           a.lo, a.hi);
    f += check_true("bootstrap: the same seed gives the same interval", a.lo == b.lo && a.hi == b.hi, "differs");
    f += check_true("bootstrap: the interval brackets the corpus rate and is not a point",
                    a.lo < point && point < a.hi && a.hi - a.lo > 0.05, "bad interval");
    return f;
}

// parse_numbers of text compared with the expected values (count and each value).
static int check_parse(const char* name, const char* text, const double* want, size_t n_want) {
    double* got = NULL;
    size_t n = parse_numbers(text, &got);
    int ok = n == n_want;
    for (size_t i = 0; ok && i < n; i++) ok = got[i] == want[i];
    printf("  parse_numbers('%s') -> %zu numbers\n", text, n);
    free(got);
    return check_true(name, ok, "numbers differ");
}

static int check_forecasts(void) {
    int f = 0;
    const double three[3] = {0.5, -1.25, 3e2};
    f += check_parse("numbers separated by spaces, commas and semicolons, with sign and exponent",
                     " 0.5, -1.25;3e2\x17", three, 3);
    const double two[2] = {1, 2};
    f += check_parse("reading stops at the first piece that is not a number", "1 2 apples 4", two, 2);
    f += check_parse("inf, nan, hex and a bare dot are not numbers", "inf nan 0x10 .", NULL, 0);
    const double dots[3] = {0.5, 5, -0.25};
    f += check_parse("leading and trailing dots, explicit plus", ".5 +5. -.25", dots, 3);
    f += check_parse("an overflowing exponent ends the numbers", "1e999 2", NULL, 0);
    f += check_parse("empty text has no numbers", "", NULL, 0);
    const double ref[3] = {1, 2, 3}, hyp[4] = {1.5, 2, 1, 9};
    ForecastError ok = forecast_error(hyp, 4, ref, 3), few = forecast_error(hyp, 2, ref, 3);
    printf("  forecast (1.5, 2, 1, +9 extra) vs (1, 2, 3): valid %d, n %lld, SSE %.4f, SAE %.4f\n", ok.valid,
           (long long)ok.n, ok.sse, ok.sae);
    f += check_value("forecast SSE = 0.25 + 0 + 4 (the extra number ignored)", ok.sse, 4.25, 1e-12);
    f += check_value("forecast SAE = 0.5 + 0 + 2", ok.sae, 2.5, 1e-12);
    f += check_true("a forecast with as many or more numbers is valid and compares the reference's count",
                    ok.valid && ok.n == 3, "not valid");
    f += check_true("a forecast with fewer numbers is invalid, with no error sums",
                    !few.valid && few.n == 0 && few.sse == 0 && few.sae == 0, "valid");
    return f;
}

static int check_language_modelling(void) {
    int f = 0;
    const char* text = "He held up the signs";
    size_t split = 0;
    int rc = lambada_split(text, strlen(text), &split);
    f += check_true("LAMBADA target = the last word with its leading space (' signs')",
                    rc == 0 && strcmp(text + split, " signs") == 0, "split differs");
    f += check_true("a text without a space, or ending with one, has no target",
                    lambada_split("word", 4, &split) == -1 && lambada_split("two words ", 10, &split) == -1, "accepted");
    // logits (0, ln 2, ln 3, ln 2): softmax (1, 2, 3, 2) / 8
    const float z[4] = {0.0f, (float)log(2.0), (float)log(3.0), (float)log(2.0)};
    int arg = -1;
    double lp = token_log_prob(z, 4, 3, &arg);
    f += check_value("log p(3) of softmax (1, 2, 3, 2) / 8 = ln(2/8)", lp, log(2.0 / 8.0), 1e-7);
    f += check_true("argmax of (0, ln 2, ln 3, ln 2) is 2", arg == 2, "argmax differs");
    const float tie[3] = {1.0f, 5.0f, 5.0f};
    token_log_prob(tie, 3, 0, &arg);
    f += check_true("argmax ties go to the lowest id (torch.argmax)", arg == 1, "tie differs");
    return f;
}

int main(void) {
    int f = 0;
    f += check_normalisation();
    f += check_accuracy();
    f += check_wer();
    f += check_cer();
    f += check_yes_no();
    f += check_numbers();
    f += check_bootstrap();
    f += check_forecasts();
    f += check_language_modelling();
    return test_summary("test_metrics", f);
}

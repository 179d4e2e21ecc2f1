// metrics.c — see metrics.h.
#include "experiments/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/common.h"
#include "trainer/rng.h"

// ---------------------------------------------------------------------------------------------------- text

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_ascii_punct(char c) { return c >= 33 && c <= 126 && !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z'); }
static int is_space_or_control(unsigned char c) { return c <= 32 || c == 127; }

// The byte that c at s[i] becomes (0: dropped).
static char basic_char(const char* s, size_t i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') return (char)(c - 'A' + 'a');
    if (is_space_or_control((unsigned char)c)) return ' ';
    if (c == '\'' || !is_ascii_punct(c)) return c;
    if (c == '.' && is_digit(s[i + 1])) return '.';
    if (c == ',' && i > 0 && is_digit(s[i - 1]) && is_digit(s[i + 1])) return 0;
    return ' ';
}

char* normalize_basic(const char* s) {
    size_t n = strlen(s), o = 0;
    char* out = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        char c = basic_char(s, i);
        if (c == 0) continue;
        if (c == ' ' && (o == 0 || out[o - 1] == ' ')) continue;  // collapse, none at the start
        out[o++] = c;
    }
    if (o > 0 && out[o - 1] == ' ') o--;
    out[o] = 0;
    return out;
}

static const char* const NUMBER_WORDS[11][2] = {
    {"zero", "0"}, {"one", "1"}, {"two", "2"},   {"three", "3"}, {"four", "4"}, {"five", "5"},
    {"six", "6"},  {"seven", "7"}, {"eight", "8"}, {"nine", "9"},  {"ten", "10"},
};

// The vqa form of one basic-normalised word (NULL: dropped).
static const char* vqa_word(const char* w) {
    if (strcmp(w, "a") == 0 || strcmp(w, "an") == 0 || strcmp(w, "the") == 0) return NULL;
    if (strcmp(w, "none") == 0) return "0";
    for (int k = 0; k < 11; k++)
        if (strcmp(w, NUMBER_WORDS[k][0]) == 0) return NUMBER_WORDS[k][1];
    return w;
}

char* normalize_vqa(const char* s) {
    char* basic = normalize_basic(s);
    char* out = xmalloc(strlen(basic) + 1);
    size_t o = 0;
    char* save = NULL;
    for (char* w = strtok_r(basic, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        const char* v = vqa_word(w);
        if (!v) continue;
        if (o > 0) out[o++] = ' ';
        memcpy(out + o, v, strlen(v));   // never longer than w: the output fits
        o += strlen(v);
    }
    out[o] = 0;
    free(basic);
    return out;
}

int exact_match(const char* hyp, const char* ref) {
    char* h = normalize_vqa(hyp);
    char* r = normalize_vqa(ref);
    int same = strcmp(h, r) == 0;
    free(h);
    free(r);
    return same;
}

double vqa_accuracy(const char* hyp, const char* const* refs, int n_refs) {
    if (n_refs <= 0) return 0.0;
    if (n_refs == 1) return exact_match(hyp, refs[0]);
    int matches = 0;
    for (int i = 0; i < n_refs; i++) matches += exact_match(hyp, refs[i]);
    double acc = matches / 3.0;
    return acc < 1.0 ? acc : 1.0;
}

// ---------------------------------------------------------------------------------------------------- edits

typedef struct Unit {   // a word or a code point: a slice of a normalised string
    const char* p;
    int len;
} Unit;

static int utf8_length(const unsigned char* p, size_t left) {
    int n = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : (p[0] & 0xF8) == 0xF0 ? 4 : 1;
    if ((size_t)n > left) return 1;
    for (int k = 1; k < n; k++)
        if ((p[k] & 0xC0) != 0x80) return 1;   // invalid sequence: the lead byte counts alone
    return n;
}

// Splits a normalised string into words (split at ' ') or code points; returns the count (*u malloc'ed).
static size_t split_units(const char* s, int chars, Unit** u) {
    size_t n = strlen(s), k = 0;
    *u = xmalloc((n + 1) * sizeof(Unit));
    for (size_t i = 0; i < n;) {
        if (chars) {
            int len = utf8_length((const unsigned char*)s + i, n - i);
            (*u)[k++] = (Unit){s + i, len};
            i += (size_t)len;
            continue;
        }
        size_t end = i;
        while (end < n && s[end] != ' ') end++;
        (*u)[k++] = (Unit){s + i, (int)(end - i)};
        i = end + 1;
    }
    return k;
}

static int same_unit(Unit a, Unit b) { return a.len == b.len && memcmp(a.p, b.p, (size_t)a.len) == 0; }

// Levenshtein table d (nr + 1, nh + 1) of reference r against hypothesis h, then the traceback.
static EditCounts align(const Unit* r, size_t nr, const Unit* h, size_t nh) {
    size_t W = nh + 1;
    int32_t* d = xmalloc((nr + 1) * W * sizeof(int32_t));
    for (size_t i = 0; i <= nr; i++) d[i * W] = (int32_t)i;
    for (size_t j = 0; j <= nh; j++) d[j] = (int32_t)j;
    for (size_t i = 1; i <= nr; i++)
        for (size_t j = 1; j <= nh; j++) {
            int32_t diag = d[(i - 1) * W + j - 1] + !same_unit(r[i - 1], h[j - 1]);
            int32_t del = d[(i - 1) * W + j] + 1, ins = d[i * W + j - 1] + 1;
            int32_t best = diag < del ? diag : del;
            d[i * W + j] = best < ins ? best : ins;
        }
    EditCounts c = {.ref_len = (int64_t)nr};
    size_t i = nr, j = nh;
    while (i > 0 || j > 0) {
        int32_t here = d[i * W + j];
        if (i > 0 && j > 0 && here == d[(i - 1) * W + j - 1] + !same_unit(r[i - 1], h[j - 1])) {
            c.sub += !same_unit(r[i - 1], h[j - 1]);
            i--, j--;
        } else if (i > 0 && here == d[(i - 1) * W + j] + 1) {
            c.del++;
            i--;
        } else {
            c.ins++;
            j--;
        }
    }
    free(d);
    return c;
}

static EditCounts edits(const char* hyp, const char* ref, int chars) {
    char* h = normalize_basic(hyp);
    char* r = normalize_basic(ref);
    Unit *hu, *ru;
    size_t nh = split_units(h, chars, &hu), nr = split_units(r, chars, &ru);
    EditCounts c = align(ru, nr, hu, nh);
    free(hu);
    free(ru);
    free(h);
    free(r);
    return c;
}

EditCounts word_edits(const char* hyp, const char* ref) { return edits(hyp, ref, 0); }
EditCounts char_edits(const char* hyp, const char* ref) { return edits(hyp, ref, 1); }

double error_rate(int64_t edit_count, int64_t ref_units) {
    if (ref_units > 0) return (double)edit_count / (double)ref_units;
    return edit_count == 0 ? 0.0 : INFINITY;
}

// ---------------------------------------------------------------------------------------------------- yes/no

int answer_is_yes(const char* answer) {
    char* a = normalize_basic(answer);
    int yes = 1;
    char* save = NULL;
    for (char* w = strtok_r(a, " ", &save); w && yes; w = strtok_r(NULL, " ", &save))
        if (strcmp(w, "no") == 0 || strcmp(w, "not") == 0) yes = 0;
    free(a);
    return yes;
}

int is_yes_no(const char* ref) {
    char* r = normalize_basic(ref);
    int yn = strcmp(r, "yes") == 0 || strcmp(r, "no") == 0;
    free(r);
    return yn;
}

void yes_no_add(YesNoCounts* c, const char* hyp, const char* ref) {
    if (!is_yes_no(ref)) return;
    int truth = answer_is_yes(ref), said = answer_is_yes(hyp);
    if (said && truth) c->tp++;
    if (said && !truth) c->fp++;
    if (!said && !truth) c->tn++;
    if (!said && truth) c->fn++;
}

static double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

YesNoScores yes_no_scores(const YesNoCounts* c) {
    YesNoScores s = {.n = c->tp + c->fp + c->tn + c->fn};
    s.precision = ratio((double)c->tp, (double)(c->tp + c->fp));
    s.recall = ratio((double)c->tp, (double)(c->tp + c->fn));
    s.f1 = ratio(2.0 * s.precision * s.recall, s.precision + s.recall);
    s.accuracy = ratio((double)(c->tp + c->tn), (double)s.n);
    s.yes_ratio = ratio((double)(c->tp + c->fp), (double)s.n);
    return s;
}

// ---------------------------------------------------------------------------------------------------- numbers

double perplexity(double nll_sum, int64_t n_tokens) {
    return n_tokens > 0 ? exp(nll_sum / (double)n_tokens) : NAN;
}

double mean_squared_error(const float* pred, const float* target, size_t n) {
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += ((double)pred[i] - target[i]) * ((double)pred[i] - target[i]);
    return s / (double)n;
}

double mean_absolute_error(const float* pred, const float* target, size_t n) {
    if (n == 0) return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++) s += fabs((double)pred[i] - target[i]);
    return s / (double)n;
}

// ---------------------------------------------------------------------------------------------------- forecasts

static int is_separator(char c) { return is_space_or_control((unsigned char)c) || c == ',' || c == ';'; }

// 1 when s[0, n) is a whole decimal number: [+-] digits [. digits] [e [+-] digits], at least one digit
// before the exponent.
static int is_decimal(const char* s, size_t n) {
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    while (i < n && is_digit(s[i])) i++, digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && is_digit(s[i])) i++, digits++;
    }
    if (digits == 0) return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        size_t exp_digits = 0;
        while (i < n && is_digit(s[i])) i++, exp_digits++;
        if (exp_digits == 0) return 0;
    }
    return i == n;
}

size_t parse_numbers(const char* text, double** values) {
    *values = NULL;
    size_t count = 0, cap = 0, i = 0, len = strlen(text);
    for (;;) {
        while (i < len && is_separator(text[i])) i++;
        size_t start = i;
        while (i < len && !is_separator(text[i])) i++;
        if (i == start || i - start > 64 || !is_decimal(text + start, i - start)) break;
        char piece[72];
        memcpy(piece, text + start, i - start);
        piece[i - start] = 0;
        double v = strtod(piece, NULL);
        if (!isfinite(v)) break;
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            *values = xrealloc(*values, cap * sizeof(double));
        }
        (*values)[count++] = v;
    }
    return count;
}

ForecastError forecast_error(const double* hyp, size_t n_hyp, const double* ref, size_t n_ref) {
    ForecastError f = {0};
    if (n_hyp < n_ref) return f;
    f.valid = 1;
    f.n = (int64_t)n_ref;
    for (size_t i = 0; i < n_ref; i++) {
        double d = hyp[i] - ref[i];
        f.sse += d * d;
        f.sae += fabs(d);
    }
    return f;
}

// ---------------------------------------------------------------------------------------------------- language modelling

int lambada_split(const char* text, size_t len, size_t* split) {
    const char* space = NULL;
    for (size_t i = 0; i < len; i++)
        if (text[i] == ' ') space = text + i;
    if (!space || (size_t)(space - text) + 1 == len) return -1;
    *split = (size_t)(space - text);
    return 0;
}

double token_log_prob(const float* logits, int V, int target, int* argmax) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    double mx = logits[best], sum = 0;
    for (int v = 0; v < V; v++) sum += exp((double)logits[v] - mx);
    if (argmax) *argmax = best;
    return (double)logits[target] - mx - log(sum);
}

Interval wilson_interval(int64_t k, int64_t n) {
    if (n <= 0) return (Interval){0.0, 1.0};
    const double z = 1.959963984540054;
    double p = (double)k / (double)n, z2n = z * z / (double)n;
    double centre = (p + z2n / 2) / (1 + z2n);
    double half = z / (1 + z2n) * sqrt(p * (1 - p) / (double)n + z2n / (4.0 * (double)n));
    Interval iv = {centre - half, centre + half};
    if (iv.lo < 0) iv.lo = 0;
    if (iv.hi > 1) iv.hi = 1;
    return iv;
}

double quantile_sorted(const double* s, size_t n, double q) {
    double h = q * (double)(n - 1);
    size_t lo = (size_t)floor(h);
    if (lo + 1 >= n) return s[n - 1];
    double frac = h - (double)lo;
    if (frac == 0 || s[lo] == s[lo + 1]) return s[lo];
    return s[lo] + frac * (s[lo + 1] - s[lo]);
}

static int by_value(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

Interval bootstrap_ratio(const double* num, const double* den, size_t n, int resamples, uint64_t seed) {
    if (n == 0 || resamples < 1) return (Interval){NAN, NAN};
    Rng rng;
    rng_seed(&rng, seed);
    double* values = xmalloc((size_t)resamples * sizeof(double));
    for (int b = 0; b < resamples; b++) {
        double sn = 0, sd = 0;
        for (size_t i = 0; i < n; i++) {
            size_t pick = (size_t)(rng_uniform(&rng) * (double)n);
            if (pick >= n) pick = n - 1;
            sn += num[pick];
            sd += den[pick];
        }
        values[b] = sd > 0 ? sn / sd : sn == 0 ? 0.0 : INFINITY;
    }
    qsort(values, (size_t)resamples, sizeof(double), by_value);
    Interval iv = {quantile_sorted(values, (size_t)resamples, 0.025), quantile_sorted(values, (size_t)resamples, 0.975)};
    free(values);
    return iv;
}

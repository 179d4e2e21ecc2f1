// test_demo_data.c — the demo datasets (datasets/demo_data.h) built into a temporary directory and read back
// with the shard reader:
//   - every split of every task exists, with the documented counts, and splits share no key and no source unit
//     (digit row, (voice, utterance) pair, passage);
//   - digits: each PNG decodes to image_size x image_size and matches its CSV row; every answer agrees with the
//     label recomputed from the CSV; 64 image placeholders; only the answers are trained;
//   - speech: clips are 0.2..3 s with a plausible level, ceil(duration * 50) audio placeholders, the answer is the
//     transcript in the key, exactly 100 ms of silence on each side; at least 3 voices;
//   - text: the passage's tokens + end-of-document, all trained, decoding to the JSONL line;
//   - a second build gives byte-identical files; bad inputs (missing / corrupt digits file, bad image size,
//     missing espeak-ng data, unknown voice) fail with a one-line message naming the input.
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/demo_data.h"
#include "datasets/image.h"
#include "datasets/shard.h"
#include "datasets/speech.h"
#include "datasets/tokenizer.h"
#include "tests/testutil.h"

static const char* const SPLITS[3] = {"train", "val", "test"};
static const char* const WORDS[10] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};

// ---------------------------------------------------------------------------------------------------- helpers

static char* join(const char* a, const char* b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char* dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

// A growable list of strings.
typedef struct StrList {
    char** s;
    int n, cap;
} StrList;

static void list_add(StrList* l, const char* s) {
    if (l->n == l->cap) l->s = xrealloc(l->s, (size_t)(l->cap = l->cap ? 2 * l->cap : 64) * sizeof *l->s);
    l->s[l->n++] = xstrdup(s);
}

static int cmp_str(const void* a, const void* b) { return strcmp(*(char* const*)a, *(char* const*)b); }

static void list_unique(StrList* l) {   // sorts and drops duplicates
    qsort(l->s, (size_t)l->n, sizeof *l->s, cmp_str);
    int k = 0;
    for (int i = 0; i < l->n; i++) {
        if (k > 0 && strcmp(l->s[k - 1], l->s[i]) == 0) free(l->s[i]);
        else l->s[k++] = l->s[i];
    }
    l->n = k;
}

static int list_common(const StrList* a, const StrList* b) {   // both unique-sorted
    int i = 0, j = 0, n = 0;
    while (i < a->n && j < b->n) {
        int c = strcmp(a->s[i], b->s[j]);
        if (c == 0) n++;
        if (c <= 0) i++;
        if (c >= 0) j++;
    }
    return n;
}

static void list_free(StrList* l) {
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

// Decodes the tokens t[i] with keep(i) into a NUL-terminated string (placeholders are never kept).
static char* decode_where(const Tokenizer* tok, const Sample* s, int mask_only) {
    int32_t* ids = xmalloc((s->n_tokens + 1) * sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; i < s->n_tokens; i++) {
        if (s->tokens[i] >= SHARD_PLACEHOLDER_IMAGE && s->tokens[i] <= SHARD_PLACEHOLDER_TIMESERIES) continue;
        if (mask_only && !s->loss_mask[i]) continue;
        ids[n++] = (int32_t)s->tokens[i];
    }
    char* out = NULL;
    size_t len;
    Error e = {{0}};
    if (tokenizer_decode(tok, ids, n, &out, &len, &e) != 0) out = xstrdup("<undecodable>");
    free(ids);
    return out;
}

static int count_id(const Sample* s, uint32_t id) {
    int n = 0;
    for (size_t i = 0; i < s->n_tokens; i++) n += s->tokens[i] == id;
    return n;
}

// ---------------------------------------------------------------------------------------------------- reading back

typedef struct Checker Checker;
typedef void (*SampleCheck)(Checker* c, int split, const Sample* s);

typedef struct TaskStats {
    StrList keys[3], units[3];   // per split
    int64_t n[3];
    int bad;                     // samples failing a per-sample check
    char first_bad[600];
} TaskStats;

struct Checker {
    const Tokenizer* tok;
    TaskStats* st;
    // digits
    uint8_t (*pixels)[64];
    uint8_t* label;
    int n_digits;
    int image_size, wrong_size, wrong_answer, wrong_mask, wrong_placeholders, n_questions;
    double min_corr;
    // speech
    double min_dur, max_dur, min_rms, max_rms;
    StrList voices;
    // text
    char** passages;
    int n_passages;
};

static void bad(Checker* c, const char* key, const char* what) {
    if (c->st->bad++ == 0) snprintf(c->st->first_bad, sizeof c->st->first_bad, "%.200s: %.380s", key, what);
}

static int read_split(const char* dir, Checker* c, int split, SampleCheck check, Error* e) {
    Manifest m;
    if (manifest_read(dir, &m, e) != 0) return -1;
    int rc = 0;
    for (int i = 0; i < m.n_shards && rc == 0; i++) {
        char* path = join(dir, m.shards[i].file);
        ShardReader* r = shard_reader_open(path, e);
        rc = r ? 0 : -1;
        for (int64_t j = 0; r && rc == 0 && j < shard_reader_count(r); j++) {
            Sample s = {0};
            rc = shard_reader_get(r, j, &s, e);
            if (rc == 0) rc = sample_validate(&s, path, e);
            if (rc == 0) {
                list_add(&c->st->keys[split], s.key);
                c->st->n[split]++;
                check(c, split, &s);
            }
            sample_free(&s);
        }
        if (r) shard_reader_close(r);
        free(path);
    }
    manifest_free(&m);
    return rc;
}

static int read_task(const char* root, const char* task, Checker* c, SampleCheck check, Error* e) {
    for (int sp = 0; sp < 3; sp++) {
        char rel[128];
        snprintf(rel, sizeof rel, "%s/%s", task, SPLITS[sp]);
        char* dir = join(root, rel);
        int rc = read_split(dir, c, sp, check, e);
        free(dir);
        if (rc != 0) return -1;
    }
    return 0;
}

// Splits share no key and no unit; returns the number of shared ones.
static int overlaps(TaskStats* st) {
    int n = 0;
    for (int a = 0; a < 3; a++) {
        list_unique(&st->keys[a]);
        list_unique(&st->units[a]);
    }
    for (int a = 0; a < 3; a++)
        for (int b = a + 1; b < 3; b++)
            n += list_common(&st->keys[a], &st->keys[b]) + list_common(&st->units[a], &st->units[b]);
    return n;
}

// ---------------------------------------------------------------------------------------------------- digits

static int load_csv(const char* path, Checker* c) {
    gzFile f = gzopen(path, "rb");
    if (!f) return -1;
    char line[1024];
    c->pixels = xmalloc(2000 * sizeof *c->pixels);
    c->label = xmalloc(2000);
    while (c->n_digits < 2000 && gzgets(f, line, sizeof line)) {
        char* p = line;
        for (int k = 0; k < 65; k++) {
            long v = strtol(p, &p, 10);
            if (*p == ',') p++;
            if (k < 64) c->pixels[c->n_digits][k] = (uint8_t)v;
            else c->label[c->n_digits] = (uint8_t)v;
        }
        c->n_digits++;
    }
    gzclose(f);
    return 0;
}

// Pearson correlation of the image's 8x8 block means with the ink the CSV row implies (255 - 255 v / 16).
static double block_correlation(const Image* im, const uint8_t pixels[64]) {
    int b = im->height / 8;
    double x[64], y[64], mx = 0, my = 0;
    for (int k = 0; k < 64; k++) {
        double sum = 0;
        for (int dy = 0; dy < b; dy++)
            for (int dx = 0; dx < b; dx++)
                sum += im->rgb[3 * ((size_t)((k / 8) * b + dy) * im->width + (size_t)((k % 8) * b + dx))];
        x[k] = sum / (b * b);
        y[k] = 255.0 - 255.0 * pixels[k] / 16.0;
        mx += x[k] / 64;
        my += y[k] / 64;
    }
    double sxy = 0, sxx = 0, syy = 0;
    for (int k = 0; k < 64; k++) {
        sxy += (x[k] - mx) * (y[k] - my);
        sxx += (x[k] - mx) * (x[k] - mx);
        syy += (y[k] - my) * (y[k] - my);
    }
    return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : 0;
}

// The answer the CSV label implies for a question; NULL for an unknown question.
static const char* expected_answer(const char* q, int label, char buf[8]) {
    if (strcmp(q, "What digit is this?") == 0) {
        snprintf(buf, 8, "%d", label);
        return buf;
    }
    if (strcmp(q, "Is this digit even?") == 0) return label % 2 == 0 ? "Yes" : "No";
    if (strcmp(q, "Is this digit odd?") == 0) return label % 2 == 1 ? "Yes" : "No";
    for (int k = 0; k < 10; k++) {
        char g[64], l[64];
        snprintf(g, sizeof g, "Is this digit greater than %s?", WORDS[k]);
        snprintf(l, sizeof l, "Is this digit less than %s?", WORDS[k]);
        if (strcmp(q, g) == 0) return label > k ? "Yes" : "No";
        if (strcmp(q, l) == 0) return label < k ? "Yes" : "No";
    }
    return NULL;
}

// text = "\x16User: Q\x17\x16Assistant: A\x17" repeated (the <image> already dropped); checks every answer and
// builds the trained text " A\x17 ..." it implies.
static int check_turns(Checker* c, const char* text, int label, char* trained, size_t cap) {
    const char* p = text;
    int ok = 1, turns = 0;
    trained[0] = '\0';
    while (*p && ok) {
        const char* q_end = strstr(p, "\x17\x16" "Assistant: ");
        ok = strncmp(p, "\x16User: ", 7) == 0 && q_end != NULL;
        if (!ok) break;
        char q[128], a[32], want_buf[8];
        snprintf(q, sizeof q, "%.*s", (int)(q_end - p - 7), p + 7);
        const char* a_start = q_end + 13;
        const char* a_end = strchr(a_start, '\x17');
        ok = a_end != NULL;
        if (!ok) break;
        snprintf(a, sizeof a, "%.*s", (int)(a_end - a_start), a_start);
        const char* question = turns == 0 && q[0] == '\n' ? q + 1 : q;   // the first turn held "<image>\n"
        const char* want = expected_answer(question, label, want_buf);
        ok = want && strcmp(a, want) == 0 && (turns > 0 || q[0] == '\n');
        size_t at = strlen(trained);
        snprintf(trained + at, cap - at, " %s\x17", a);
        turns++;
        p = a_end + 1;
    }
    c->n_questions += turns;
    return ok && turns == 3;
}

static void check_digit(Checker* c, int split, const Sample* s) {
    int row = -1;
    if (sscanf(s->key, "digit-%d", &row) != 1 || row < 0 || row >= c->n_digits) {
        bad(c, s->key, "key is not digit-<row>");
        return;
    }
    list_add(&c->st->units[split], s->key);
    if (s->n_media != 1 || s->media[0].kind != MEDIA_IMAGE_ENCODED) {
        bad(c, s->key, "not one encoded image");
        return;
    }
    Image im = {0};
    Error e = {{0}};
    if (image_decode(s->media[0].bytes, s->media[0].n_bytes, &im, s->key, &e) != 0) {
        bad(c, s->key, e.msg);
        return;
    }
    if (im.height != c->image_size || im.width != c->image_size) c->wrong_size++;
    else c->min_corr = fmin(c->min_corr, block_correlation(&im, c->pixels[row]));
    image_free(&im);
    if (s->media[0].n_placeholder != DEMO_IMAGE_TOKENS || count_id(s, SHARD_PLACEHOLDER_IMAGE) != DEMO_IMAGE_TOKENS)
        c->wrong_placeholders++;
    char* text = decode_where(c->tok, s, 0);
    char* trained = decode_where(c->tok, s, 1);
    char want_trained[256];
    if (!check_turns(c, text, c->label[row], want_trained, sizeof want_trained)) {
        c->wrong_answer++;
        bad(c, s->key, text);
    }
    if (strcmp(trained, want_trained) != 0) c->wrong_mask++;
    free(text);
    free(trained);
}

// ---------------------------------------------------------------------------------------------------- speech

// "speech-<voice>-<w_w_w>-r<rate>-p<pitch>" -> voice, transcript "w w w", unit "speech-<voice>-<w_w_w>".
static int parse_speech_key(const char* key, char* voice, char* words, char* unit) {
    const char* r = strstr(key, "-r");
    while (r && strstr(r + 1, "-r")) r = strstr(r + 1, "-r");
    if (strncmp(key, "speech-", 7) != 0 || !r) return -1;
    snprintf(unit, 128, "%.*s", (int)(r - key), key);
    const char* dash = strrchr(unit, '-');
    if (!dash || dash - unit <= 7) return -1;
    snprintf(voice, 64, "%.*s", (int)(dash - unit - 7), unit + 7);
    snprintf(words, 64, "%s", dash + 1);
    for (char* p = words; *p; p++)
        if (*p == '_') *p = ' ';
    return 0;
}

static void check_speech(Checker* c, int split, const Sample* s) {
    char voice[64], words[64], unit[128];
    if (parse_speech_key(s->key, voice, words, unit) != 0) {
        bad(c, s->key, "key is not speech-<voice>-<words>-r-p");
        return;
    }
    list_add(&c->st->units[split], unit);
    list_add(&c->voices, voice);
    if (s->n_media != 1 || s->media[0].kind != MEDIA_AUDIO_PCM) {
        bad(c, s->key, "not one audio item");
        return;
    }
    const MediaItem* m = &s->media[0];
    double sum2 = 0;
    int edge = 0;   // loudest sample of the first and last 100 ms, which must be silence (|x| < 100)
    for (size_t i = 0; i < m->n_samples; i++) {
        sum2 += (double)m->pcm[i] * m->pcm[i];
        int in_margin = i < SPEECH_SAMPLE_RATE / 10 || i >= m->n_samples - SPEECH_SAMPLE_RATE / 10;
        if (in_margin && abs(m->pcm[i]) > edge) edge = abs(m->pcm[i]);
    }
    size_t onset = SPEECH_SAMPLE_RATE / 10, offset = m->n_samples - onset - 1;   // first / last speech sample
    if (m->n_samples <= 2 * onset || edge >= 100 || abs(m->pcm[onset]) < 100 || abs(m->pcm[offset]) < 100) {
        bad(c, s->key, "not exactly 100 ms of silence (|x| < 100) before and after the speech");
        return;
    }
    double dur = (double)m->n_samples / SPEECH_SAMPLE_RATE, rms = sqrt(sum2 / (double)m->n_samples);
    c->min_dur = fmin(c->min_dur, dur);
    c->max_dur = fmax(c->max_dur, dur);
    c->min_rms = fmin(c->min_rms, rms);
    c->max_rms = fmax(c->max_rms, rms);
    int64_t want_ph = ((int64_t)m->n_samples * DEMO_AUDIO_TOKENS_PER_S + SPEECH_SAMPLE_RATE - 1) / SPEECH_SAMPLE_RATE;
    if (m->n_placeholder != want_ph || count_id(s, SHARD_PLACEHOLDER_AUDIO) != want_ph) {
        bad(c, s->key, "audio placeholders != ceil(duration * 50)");
        return;
    }
    char* text = decode_where(c->tok, s, 0);
    char* trained = decode_where(c->tok, s, 1);
    char want_text[160], want_trained[96];
    snprintf(want_text, sizeof want_text, "\x16User: \nTranscribe.\x17\x16" "Assistant: %s\x17", words);
    snprintf(want_trained, sizeof want_trained, " %s\x17", words);
    if (strcmp(text, want_text) != 0 || strcmp(trained, want_trained) != 0) bad(c, s->key, text);
    free(text);
    free(trained);
}

// ---------------------------------------------------------------------------------------------------- text

static int load_passages(const char* path, int n, Checker* c) {
    FILE* f = fopen(path, "rb");
    if (!f) return -1;
    c->passages = xcalloc((size_t)n, sizeof *c->passages);
    char* line = NULL;
    size_t cap = 0;
    for (; c->n_passages < n && getline(&line, &cap, f) > 0; c->n_passages++) {
        json_t* obj = json_loads(line, 0, NULL);
        c->passages[c->n_passages] = xstrdup(obj ? json_string_value(json_object_get(obj, "text")) : "");
        json_decref(obj);
    }
    free(line);
    fclose(f);
    return 0;
}

static void check_text(Checker* c, int split, const Sample* s) {
    int idx = -1;
    if (sscanf(s->key, "lambada-%d", &idx) != 1 || idx < 0 || idx >= c->n_passages) {
        bad(c, s->key, "key is not lambada-<line>");
        return;
    }
    list_add(&c->st->units[split], s->key);
    size_t trained = 0;
    for (size_t i = 0; i < s->n_tokens; i++) trained += s->loss_mask[i];
    if (s->n_media != 0 || trained != s->n_tokens || s->tokens[s->n_tokens - 1] != 0) {
        bad(c, s->key, "not all trained / no end-of-document token / has media");
        return;
    }
    char* text = decode_where(c->tok, s, 0);
    if (strcmp(text, c->passages[idx]) != 0) bad(c, s->key, "decoded tokens differ from the JSONL passage");
    free(text);
}

// ---------------------------------------------------------------------------------------------------- checks

static int report_task(const char* task, TaskStats* st, int64_t want_total, int64_t want_test, int64_t want_val) {
    int failures = 0, shared = overlaps(st);
    int64_t total = st->n[0] + st->n[1] + st->n[2];
    printf("  %s: train %lld, val %lld, test %lld samples; %d bad samples; %d keys/units shared between splits\n", task,
           (long long)st->n[0], (long long)st->n[1], (long long)st->n[2], st->bad, shared);
    char name[160], detail[700];
    snprintf(detail, sizeof detail, "want total %lld (test %lld, val %lld)", (long long)want_total,
             (long long)want_test, (long long)want_val);
    snprintf(name, sizeof name, "%s: sample counts per split", task);
    int split_ok = want_test < 0 || (st->n[2] == want_test && st->n[1] == want_val);
    failures += check_true(name, total == want_total && split_ok, detail);
    snprintf(name, sizeof name, "%s: no key or source unit in two splits", task);
    failures += check_true(name, shared == 0, "see the count above");
    snprintf(name, sizeof name, "%s: every sample passes its checks", task);
    failures += check_true(name, st->bad == 0, st->first_bad);
    for (int s = 0; s < 3; s++) {
        list_free(&st->keys[s]);
        list_free(&st->units[s]);
    }
    return failures;
}

static int check_digits(const char* root, Checker* c) {
    TaskStats st = {0};
    Error e = {{0}};
    c->st = &st;
    c->min_corr = 1;
    int rc = read_task(root, "digits_qa", c, check_digit, &e);
    int failures = check_true("digits_qa: every split reads back and validates", rc == 0, e.msg);
    printf("  digits: %d questions; %d wrong sizes, %d wrong answers, %d wrong loss masks, %d wrong placeholder "
           "counts; min block correlation with the CSV row %.3f\n", c->n_questions, c->wrong_size, c->wrong_answer,
           c->wrong_mask, c->wrong_placeholders, c->min_corr);
    failures += check_true("digits_qa: images decode to image_size and match their CSV row (correlation >= 0.9)",
                           c->wrong_size == 0 && c->min_corr >= 0.9, "see above");
    failures += check_true("digits_qa: every answer matches the CSV label; 64 placeholders; only answers trained",
                           c->wrong_answer == 0 && c->wrong_placeholders == 0 && c->wrong_mask == 0 &&
                               c->n_questions == 3 * c->n_digits, "see above");
    return failures + report_task("digits_qa", &st, c->n_digits, c->n_digits / 10, c->n_digits / 10);
}

static int check_speech_task(const char* root, Checker* c) {
    TaskStats st = {0};
    Error e = {{0}};
    c->st = &st;
    c->min_dur = c->min_rms = 1e9;
    int rc = read_task(root, "spoken_digits", c, check_speech, &e);
    int failures = check_true("spoken_digits: every split reads back and validates", rc == 0, e.msg);
    list_unique(&c->voices);
    printf("  speech: %d voices; duration %.3f..%.3f s; RMS %.0f..%.0f\n", c->voices.n, c->min_dur, c->max_dur,
           c->min_rms, c->max_rms);
    failures += check_true("spoken_digits: at least 3 voices", c->voices.n >= 3, "see above");
    failures += check_true("spoken_digits: clips 0.2..3 s, RMS 300..12000 (not silent, not clipped)",
                           c->min_dur >= 0.2 && c->max_dur <= 3.0 && c->min_rms >= 300 && c->max_rms <= 12000,
                           "see above");
    // 50 (voice, utterance) units per voice: 10 words x 3 renditions + 40 sequences x 1 = 70 clips per voice
    return failures + report_task("spoken_digits", &st, 70 * c->voices.n, -1, -1);
}

static int check_text_task(const char* root, Checker* c) {
    TaskStats st = {0};
    Error e = {{0}};
    c->st = &st;
    int rc = read_task(root, "text", c, check_text, &e);
    int failures = check_true("text: every split reads back and validates", rc == 0, e.msg);
    return failures + report_task("text", &st, DEMO_TEXT_PASSAGES, DEMO_TEXT_PASSAGES / 10, DEMO_TEXT_PASSAGES / 10);
}

// ---------------------------------------------------------------------------------------------------- determinism

static const char* walk_root;
static const char* walk_other;
static int walk_files, walk_differ;

static int compare_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
    (void)st, (void)ftw;
    if (flag != FTW_F) return 0;
    walk_files++;
    char* other = join(walk_other, path + strlen(walk_root) + 1);
    size_t na = 0, nb = 0;
    Error e = {{0}};
    char *a = read_file(path, &na, &e), *b = read_file(other, &nb, &e);
    if (!a || !b || na != nb || memcmp(a, b, na) != 0) {
        if (walk_differ++ == 0) printf("  first differing file: %s\n", path);
    }
    free(a);
    free(b);
    free(other);
    return 0;
}

static int count_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
    (void)path, (void)st, (void)ftw;
    walk_files += flag == FTW_F;
    return 0;
}

static int check_same_files(const char* a, const char* b) {
    walk_root = a;
    walk_other = b;
    walk_files = walk_differ = 0;
    nftw(a, compare_entry, 16, FTW_PHYS);
    int files_a = walk_files;
    walk_files = 0;
    nftw(b, count_entry, 16, FTW_PHYS);
    printf("  %d files compared, %d differ; the second build has %d files\n", files_a, walk_differ, walk_files);
    return check_true("a second build with the same seed gives byte-identical files",
                      files_a > 20 && walk_differ == 0 && walk_files == files_a, "see above");
}

// ---------------------------------------------------------------------------------------------------- bad inputs

static int check_bad_inputs(const char* root) {
    int failures = 0;
    Error e = {{0}};
    DemoOptions o;
    char* out = join(root, "bad");
    char* missing = join(root, "no-such-digits.csv.gz");
    demo_options_default(&o, out);
    o.digits_csv_gz = missing;
    failures += expect_reject("missing digits file", data_demo_build_with(&o, &e), &e, "no-such-digits.csv.gz", NULL);

    char* corrupt = join(root, "corrupt.csv.gz");
    gzFile f = gzopen(corrupt, "wb");
    gzputs(f, "0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,"
              "12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0,0\n1,2,x\n");
    gzclose(f);
    o.digits_csv_gz = corrupt;
    failures += expect_reject("corrupt digits line", data_demo_build_with(&o, &e), &e, "corrupt.csv.gz:2:", NULL);
    char* manifest = join(out, "digits_qa/train/manifest.json");
    failures += check_true("a failed build leaves no manifest", access(manifest, F_OK) != 0, manifest);

    demo_options_default(&o, out);
    o.image_size = 4;
    failures += expect_reject("image size 4", data_demo_build_with(&o, &e), &e, "image size", NULL);

    SpeechRequest req = {"seven", "xx-no-such-voice", 175, 50};
    SpeechClip clip;
    failures += expect_reject("unknown voice", speech_synthesize(&req, 1, &clip, &e), &e, "xx-no-such-voice", NULL);
    speech_clip_free(&clip);

    char* fake = join(root, "fake-espeak");
    char* fake_data = join(fake, "espeak-ng-data");
    mkdir_p(fake_data, &e);
    setenv("ESPEAK_DATA_PATH", fake, 1);
    const char* voice = "en";
    int present = 0;
    failures += expect_reject("espeak-ng data missing", speech_voices_present(&voice, 1, &present, &e), &e,
                              "espeak-ng-data", "not found");
    unsetenv("ESPEAK_DATA_PATH");
    free(fake);
    free(fake_data);
    free(manifest);
    free(corrupt);
    free(missing);
    free(out);
    return failures;
}

// ---------------------------------------------------------------------------------------------------- main

int main(void) {
    int failures = 0;
    char root[] = "/tmp/modrwkv-test-demo-XXXXXX";
    if (!mkdtemp(root)) fatal("mkdtemp failed");
    char *a = join(root, "a"), *b = join(root, "b");
    Error e = {{0}};
    DemoOptions o;
    demo_options_default(&o, a);
    double t0 = now_seconds();
    int rc = data_demo_build_with(&o, &e);
    printf("  demo build: %.2f s\n", now_seconds() - t0);
    failures += check_true("the demo builds", rc == 0, e.msg);

    Checker c = {.image_size = o.image_size};
    Tokenizer* tok = tokenizer_from_spec("world", &e);
    if (!tok) fatal("%s", e.msg);
    c.tok = tok;
    if (load_csv(src_path("datasets/demo/digits.csv.gz"), &c) != 0 ||
        load_passages(src_path("tests/data/lambada_test.jsonl"), DEMO_TEXT_PASSAGES, &c) != 0)
        fatal("cannot read the demo's source data");
    if (rc == 0) {
        failures += check_digits(a, &c);
        failures += check_speech_task(a, &c);
        failures += check_text_task(a, &c);
        char* readme = join(a, "README.txt");
        size_t len = 0;
        char* text = read_file(readme, &len, &e);
        int described = text && strstr(text, "digits_qa") && strstr(text, "spoken_digits") && strstr(text, "text:");
        failures += check_true("README.txt describes the three tasks", described, readme);
        free(text);
        free(readme);

        demo_options_default(&o, b);
        t0 = now_seconds();
        rc = data_demo_build_with(&o, &e);
        printf("  second build: %.2f s\n", now_seconds() - t0);
        failures += check_true("the second build succeeds", rc == 0, e.msg);
        failures += check_same_files(a, b);
    }
    failures += check_bad_inputs(root);

    for (int i = 0; i < c.n_passages; i++) free(c.passages[i]);
    free(c.passages);
    free(c.pixels);
    free(c.label);
    list_free(&c.voices);
    tokenizer_free(tok);
    rm_rf(root);
    free(a);
    free(b);
    return test_summary("test_demo_data", failures);
}

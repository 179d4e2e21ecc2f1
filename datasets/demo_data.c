// demo_data.c — see demo_data.h. Parts: seeded draws and splits; the per-task shard writers; digits image QA;
// spoken digits; the text corpus; README.txt; the build.
#include "datasets/demo_data.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/chat_template.h"
#include "datasets/data_tools.h"
#include "datasets/image.h"
#include "datasets/shard.h"
#include "datasets/speech.h"
#include "datasets/tokenizer.h"

static const char* const DIGIT_WORDS[10] = {"zero", "one", "two", "three", "four",
                                            "five", "six", "seven", "eight", "nine"};

// Candidate voices, in this order; those missing from espeak-ng-data are left out.
static const char* const DEMO_VOICES[] = {"en-us", "en-us+f3", "en", "en+f2", "en-gb-x-rp+m3", "en-gb-scotland+f4",
                                          "en-029", "en-gb-x-gbclan+m2"};
enum { N_DEMO_VOICES = sizeof DEMO_VOICES / sizeof DEMO_VOICES[0], MIN_VOICES = 3 };

static const int SPEECH_RATES[] = {130, 155, 180, 205, 230};   // words per minute
static const int SPEECH_PITCHES[] = {25, 40, 55, 70, 85};
enum {
    N_RATES = 5,
    N_PITCHES = 5,
    N_SEQ2 = 20,                  // two-digit sequences
    N_SEQ3 = 20,                  // three-digit sequences
    N_UTTERANCES = 10 + N_SEQ2 + N_SEQ3,
    SINGLE_RENDITIONS = 3,        // (rate, pitch) renditions of a single word per voice
    SILENCE_THRESHOLD = 100,      // |sample| below this is silence (about -50 dBFS)
    SILENCE_MARGIN = SPEECH_SAMPLE_RATE / 10,   // exactly 100 ms of silence on each side
};

enum { SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST, N_SPLITS };
static const char* const SPLIT_NAMES[N_SPLITS] = {"train", "val", "test"};

// Seeded streams, one per purpose, so that changing one part never shifts another's draws.
enum { STREAM_DIGIT_SPLIT = 1, STREAM_DIGIT_QUESTIONS, STREAM_UTTERANCES, STREAM_SPEECH_SPLIT, STREAM_RENDITIONS,
       STREAM_TEXT_SPLIT };

// ==================================================================================================== draws

typedef struct DemoRng {
    uint64_t s;
} DemoRng;

static uint64_t splitmix64(uint64_t* s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static DemoRng demo_rng(uint64_t seed, uint64_t stream) {
    uint64_t s = seed;
    DemoRng r = {splitmix64(&s) ^ (stream * 0xD1B54A32D192ED03ULL)};
    return r;
}

static int rng_below(DemoRng* r, int n) { return (int)(splitmix64(&r->s) % (uint64_t)n); }

// (n) split ids: a seeded permutation of the units; the first DEMO_TEST_PERCENT go to test, the next
// DEMO_VAL_PERCENT to val (at least one unit each), the rest to train. n >= 3.
static int* assign_splits(int n, DemoRng* r) {
    int* perm = xmalloc((size_t)n * sizeof *perm);
    int* split = xmalloc((size_t)n * sizeof *split);
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = rng_below(r, i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int n_test = n * DEMO_TEST_PERCENT / 100, n_val = n * DEMO_VAL_PERCENT / 100;
    if (n_test < 1) n_test = 1;
    if (n_val < 1) n_val = 1;
    for (int k = 0; k < n; k++)
        split[perm[k]] = k < n_test ? SPLIT_TEST : k < n_test + n_val ? SPLIT_VAL : SPLIT_TRAIN;
    free(perm);
    return split;
}

// ==================================================================================================== writers

// The three split datasets of one task: <out>/<task>/<split>/.
typedef struct TaskOut {
    const char* task;
    char* dir[N_SPLITS];
    ShardWriter* w[N_SPLITS];
    int64_t n_samples[N_SPLITS], n_tokens[N_SPLITS];
} TaskOut;

static char* path_join(const char* a, const char* b, const char* c) {
    size_t n = strlen(a) + strlen(b) + (c ? strlen(c) : 0) + 3;
    char* p = xmalloc(n);
    if (c) snprintf(p, n, "%s/%s/%s", a, b, c);
    else snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int task_open(TaskOut* t, const DemoOptions* o, const char* task, const char* source, int vocab_size,
                     Error* e) {
    memset(t, 0, sizeof *t);
    t->task = task;
    for (int s = 0; s < N_SPLITS; s++) {
        t->dir[s] = path_join(o->out_dir, task, SPLIT_NAMES[s]);
        ShardWriterOptions wo = {.dir = t->dir[s], .split = SPLIT_NAMES[s], .max_samples = DEMO_SHARD_SAMPLES,
                                 .compression = 4, .tokenizer = o->tokenizer, .vocab_size = vocab_size,
                                 .source = source, .rank = 0, .world = 1};
        t->w[s] = shard_writer_open(&wo, e);
        if (!t->w[s]) return -1;
    }
    return 0;
}

// Writes s to split `split` and frees it (in any case).
static int task_add(TaskOut* t, int split, Sample* s, Error* e) {
    int rc = shard_writer_add(t->w[split], s, e);
    if (rc == 0) {
        t->n_samples[split]++;
        t->n_tokens[split] += (int64_t)s->n_tokens;
    }
    sample_free(s);
    return rc;
}

// Closes every writer (rc: the task's status so far). After a failure no split keeps a manifest.json.
static int task_close(TaskOut* t, int rc, Error* e) {
    for (int s = 0; s < N_SPLITS; s++) {
        if (!t->w[s]) continue;
        Error ignored;
        int c = shard_writer_close(t->w[s], rc == 0 ? e : &ignored);
        t->w[s] = NULL;
        if (c != 0) rc = -1;
    }
    for (int s = 0; s < N_SPLITS; s++) {
        if (rc != 0 && t->dir[s]) {
            char* manifest = path_join(t->dir[s], "manifest.json", NULL);
            unlink(manifest);
            free(manifest);
        }
        free(t->dir[s]);
        t->dir[s] = NULL;
    }
    return rc;
}

static const char* basename_of(const char* path) {
    const char* slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

// ==================================================================================================== digits

typedef struct Digits {
    int n;
    uint8_t (*pixels)[64];   // (n, 8, 8) values 0..16
    uint8_t* label;          // (n) 0..9
} Digits;

// Reads one unsigned decimal field ending at ',' (when more follow) or at the end of the line.
static int parse_field(const char** p, const char* end, int max, int last, int* v) {
    int digits = 0, x = 0;
    while (*p < end && **p >= '0' && **p <= '9' && digits < 3) {
        x = 10 * x + (**p - '0');
        (*p)++;
        digits++;
    }
    if (digits == 0 || x > max) return -1;
    if (!last) {
        if (*p >= end || **p != ',') return -1;
        (*p)++;
    }
    *v = x;
    return 0;
}

static int parse_digit_line(const char* line, const char* end, uint8_t pixels[64], uint8_t* label) {
    const char* p = line;
    for (int k = 0; k < 65; k++) {
        int v;
        if (parse_field(&p, end, k < 64 ? 16 : 9, k == 64, &v) != 0) return -1;
        if (k < 64) pixels[k] = (uint8_t)v;
        else *label = (uint8_t)v;
    }
    if (p < end && *p == '\r') p++;
    return p == end ? 0 : -1;
}

static char* gunzip_file(const char* path, size_t* len, Error* e) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        errorf(e, "%s: cannot open the digits file (the handwritten digits are datasets/demo/digits.csv.gz)", path);
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char* buf = xmalloc(cap + 1);
    int k;
    while ((k = gzread(f, buf + n, (unsigned)(cap - n))) > 0) {
        n += (size_t)k;
        if (n == cap) buf = xrealloc(buf, (cap *= 2) + 1);
    }
    int bad = k < 0;
    gzclose(f);
    if (bad) {
        free(buf);
        errorf(e, "%s: not a readable gzip file (expected the gzip'ed digits CSV)", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

// digits.csv.gz: one digit per line, 64 pixel values 0..16 then the label 0..9, comma-separated.
static int digits_load(const char* path, Digits* d, Error* e) {
    memset(d, 0, sizeof *d);
    size_t len;
    char* text = gunzip_file(path, &len, e);
    if (!text) return -1;
    int cap = 2048, lineno = 0, rc = 0;
    d->pixels = xmalloc((size_t)cap * sizeof *d->pixels);
    d->label = xmalloc((size_t)cap);
    for (char *p = text, *end = text + len; p < end && rc == 0;) {
        char* nl = memchr(p, '\n', (size_t)(end - p));
        char* line_end = nl ? nl : end;
        lineno++;
        if (line_end > p) {
            if (d->n == cap) {
                cap *= 2;
                d->pixels = xrealloc(d->pixels, (size_t)cap * sizeof *d->pixels);
                d->label = xrealloc(d->label, (size_t)cap);
            }
            if (parse_digit_line(p, line_end, d->pixels[d->n], &d->label[d->n]) != 0)
                rc = errorf(e, "%s:%d: expected 64 pixel values 0..16 and a label 0..9, comma-separated", path, lineno);
            d->n++;
        }
        p = line_end + 1;
    }
    free(text);
    if (rc == 0 && d->n < 3) rc = errorf(e, "%s: only %d digits (at least 3 are needed for three splits)", path, d->n);
    return rc;
}

static void digits_free(Digits* d) {
    free(d->pixels);
    free(d->label);
    memset(d, 0, sizeof *d);
}

// Bilinear upscale (pixel centres aligned, edges clamped) of an 8x8 digit to (size, size) grey, dark ink on white.
static void render_digit(const uint8_t pixels[64], int size, uint8_t* out) {
    for (int y = 0; y < size; y++) {
        float sy = (y + 0.5f) * 8.0f / size - 0.5f;
        sy = sy < 0 ? 0 : sy > 7 ? 7 : sy;
        int y0 = (int)sy, y1 = y0 < 7 ? y0 + 1 : 7;
        float fy = sy - y0;
        for (int x = 0; x < size; x++) {
            float sx = (x + 0.5f) * 8.0f / size - 0.5f;
            sx = sx < 0 ? 0 : sx > 7 ? 7 : sx;
            int x0 = (int)sx, x1 = x0 < 7 ? x0 + 1 : 7;
            float fx = sx - x0;
            float top = pixels[y0 * 8 + x0] * (1 - fx) + pixels[y0 * 8 + x1] * fx;
            float bottom = pixels[y1 * 8 + x0] * (1 - fx) + pixels[y1 * 8 + x1] * fx;
            float ink = (top * (1 - fy) + bottom * fy) / 16.0f;   // 0..1
            out[y * size + x] = (uint8_t)(255 - (int)(255.0f * ink + 0.5f));
        }
    }
}

typedef struct QA {
    char question[64];
    char answer[8];
} QA;

static void yes_no(QA* qa, int yes) { snprintf(qa->answer, sizeof qa->answer, "%s", yes ? "Yes" : "No"); }

// The three questions about a digit, in a seeded order.
static void digit_questions(int label, DemoRng* r, QA qa[3]) {
    QA all[3];
    snprintf(all[0].question, sizeof all[0].question, "What digit is this?");
    snprintf(all[0].answer, sizeof all[0].answer, "%d", label);
    int even = rng_below(r, 2);
    snprintf(all[1].question, sizeof all[1].question, "Is this digit %s?", even ? "even" : "odd");
    yes_no(&all[1], (label % 2 == 0) == even);
    int greater = rng_below(r, 2), k = 1 + rng_below(r, 8);
    snprintf(all[2].question, sizeof all[2].question, "Is this digit %s than %s?", greater ? "greater" : "less",
             DIGIT_WORDS[k]);
    yes_no(&all[2], greater ? label > k : label < k);
    int order[3] = {0, 1, 2};
    for (int i = 2; i > 0; i--) {
        int j = rng_below(r, i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (int i = 0; i < 3; i++) qa[i] = all[order[i]];
}

// The digit QA sample of one image: its three questions as three turns, or (short_range) only question
// `only` with the image at the end of the user turn.
static int digit_sample(const Tokenizer* tok, const Digits* d, int row, const DemoOptions* o, const QA qa[3], int only,
                        Sample* s, Error* e) {
    char key[32], what[96], first[96];
    if (o->short_range) snprintf(key, sizeof key, "digit-%04d-q%d", row, only);
    else snprintf(key, sizeof key, "digit-%04d", row);
    snprintf(what, sizeof what, "digits_qa: sample '%s'", key);
    s->key = xstrdup(key);
    int size = o->image_size;
    uint8_t* grey = xmalloc((size_t)size * (size_t)size);   // (size, size)
    render_digit(d->pixels[row], size, grey);
    s->media = xcalloc(1, sizeof *s->media);
    s->n_media = 1;
    s->media[0] = (MediaItem){.kind = MEDIA_IMAGE_ENCODED, .n_placeholder = o->image_tokens};
    int rc = image_encode_png(grey, size, size, 1, &s->media[0].bytes, &s->media[0].n_bytes, e);
    free(grey);
    if (rc != 0) return -1;
    if (o->short_range) {
        snprintf(first, sizeof first, "%s\n<image>", qa[only].question);
        ChatTurn one[2] = {{CHAT_USER, first, strlen(first)}, {CHAT_ASSISTANT, qa[only].answer, strlen(qa[only].answer)}};
        return chat_build(tok, one, 2, s, what, e);
    }
    snprintf(first, sizeof first, "<image>\n%s", qa[0].question);
    ChatTurn turns[6];
    for (int i = 0; i < 3; i++) {
        const char* q = i == 0 ? first : qa[i].question;
        turns[2 * i] = (ChatTurn){CHAT_USER, q, strlen(q)};
        turns[2 * i + 1] = (ChatTurn){CHAT_ASSISTANT, qa[i].answer, strlen(qa[i].answer)};
    }
    return chat_build(tok, turns, 6, s, what, e);
}

static int build_digits(const DemoOptions* o, const Tokenizer* tok, TaskOut* t, Error* e) {
    Digits d;
    if (digits_load(o->digits_csv_gz, &d, e) != 0) {
        digits_free(&d);
        return -1;
    }
    char source[512];
    snprintf(source, sizeof source, "modrwkv data demo: %s, seed %llu", basename_of(o->digits_csv_gz),
             (unsigned long long)o->seed);
    DemoRng split_rng = demo_rng(o->seed, STREAM_DIGIT_SPLIT), qa_rng = demo_rng(o->seed, STREAM_DIGIT_QUESTIONS);
    int* split = assign_splits(d.n, &split_rng);
    int rc = task_open(t, o, "digits_qa", source, tokenizer_vocab_size(tok), e);
    for (int row = 0; row < d.n && rc == 0; row++) {
        QA qa[3];
        digit_questions(d.label[row], &qa_rng, qa);
        for (int q = 0; q < (o->short_range ? 3 : 1) && rc == 0; q++) {
            Sample s = {0};
            rc = digit_sample(tok, &d, row, o, qa, q, &s, e);
            if (rc == 0) rc = task_add(t, split[row], &s, e);
            else sample_free(&s);
        }
    }
    free(split);
    digits_free(&d);
    return task_close(t, rc, e);
}

// ==================================================================================================== spoken digits

typedef struct Utterance {
    int n, digit[3];
    char text[32];   // "seven three"
    char slug[32];   // "seven_three"
} Utterance;

static void utterance_words(Utterance* u) {
    u->text[0] = u->slug[0] = '\0';
    for (int i = 0; i < u->n; i++) {
        size_t at = strlen(u->text);
        snprintf(u->text + at, sizeof u->text - at, "%s%s", i ? " " : "", DIGIT_WORDS[u->digit[i]]);
        snprintf(u->slug + at, sizeof u->slug - at, "%s%s", i ? "_" : "", DIGIT_WORDS[u->digit[i]]);
    }
}

static int same_utterance(const Utterance* a, const Utterance* b) {
    if (a->n != b->n) return 0;
    for (int i = 0; i < a->n; i++)
        if (a->digit[i] != b->digit[i]) return 0;
    return 1;
}

// The 10 digit words, then N_SEQ2 distinct two-digit and N_SEQ3 distinct three-digit sequences (seeded).
static void make_utterances(DemoRng* r, Utterance u[N_UTTERANCES]) {
    int n = 0;
    for (int d = 0; d < 10; d++) u[n++] = (Utterance){.n = 1, .digit = {d}};
    while (n < N_UTTERANCES) {
        Utterance c = {.n = n < 10 + N_SEQ2 ? 2 : 3};
        for (int i = 0; i < c.n; i++) c.digit[i] = rng_below(r, 10);
        int dup = 0;
        for (int k = 0; k < n && !dup; k++) dup = same_utterance(&u[k], &c);
        if (!dup) u[n++] = c;
    }
    for (int k = 0; k < n; k++) utterance_words(&u[k]);
}

// One clip to synthesise: its (voice, utterance) combination, rendition and split.
typedef struct Rendition {
    int voice, utt, split;
    int rate, pitch;
} Rendition;

// Renditions of every (voice, utterance) combination, voice-major; each combination's renditions have
// distinct (rate, pitch) pairs and share the combination's split. Returns the count; *out malloc'ed.
static int make_renditions(const Utterance* u, int n_voices, const DemoOptions* o, Rendition** out) {
    DemoRng split_rng = demo_rng(o->seed, STREAM_SPEECH_SPLIT), rng = demo_rng(o->seed, STREAM_RENDITIONS);
    int n_combos = n_voices * N_UTTERANCES;
    int* split = assign_splits(n_combos, &split_rng);
    Rendition* rs = xmalloc((size_t)n_combos * SINGLE_RENDITIONS * sizeof *rs);
    int n = 0;
    for (int c = 0; c < n_combos; c++) {
        int utt = c % N_UTTERANCES, count = u[utt].n == 1 ? SINGLE_RENDITIONS : 1, first = n;
        while (n < first + count) {
            Rendition r = {c / N_UTTERANCES, utt, split[c], SPEECH_RATES[rng_below(&rng, N_RATES)],
                           SPEECH_PITCHES[rng_below(&rng, N_PITCHES)]};
            int dup = 0;
            for (int k = first; k < n && !dup; k++) dup = rs[k].rate == r.rate && rs[k].pitch == r.pitch;
            if (!dup) rs[n++] = r;
        }
    }
    free(split);
    *out = rs;
    return n;
}

// The installed voices of DEMO_VOICES, in order.
static int installed_voices(const char** voices, int* n, Error* e) {
    int present[N_DEMO_VOICES];
    if (speech_voices_present(DEMO_VOICES, N_DEMO_VOICES, present, e) != 0) return -1;
    *n = 0;
    for (int i = 0; i < N_DEMO_VOICES; i++)
        if (present[i]) voices[(*n)++] = DEMO_VOICES[i];
    if (*n < MIN_VOICES)
        return errorf(e, "spoken_digits: only %d of the %d demo voices (en-us, en, en-gb-x-rp, ...) are installed in "
                      "espeak-ng-data; %d are needed (install Debian's espeak-ng-data)", *n, N_DEMO_VOICES, MIN_VOICES);
    return 0;
}

// Builds the sample of one rendition; takes the clip's samples.
static int speech_sample(const Tokenizer* tok, const Utterance* u, const char* voice, const Rendition* r,
                         SpeechClip* clip, const DemoOptions* o, Sample* s, Error* e) {
    char key[128], what[192];
    snprintf(key, sizeof key, "speech-%s-%s-r%d-p%d", voice, u->slug, r->rate, r->pitch);
    snprintf(what, sizeof what, "spoken_digits: sample '%s'", key);
    s->key = xstrdup(key);
    speech_set_silence(clip, SILENCE_THRESHOLD, SILENCE_MARGIN);
    int64_t n_tok = ((int64_t)clip->n_samples * o->audio_tokens_per_s + SPEECH_SAMPLE_RATE - 1) / SPEECH_SAMPLE_RATE;
    s->media = xcalloc(1, sizeof *s->media);
    s->n_media = 1;
    s->media[0] = (MediaItem){.kind = MEDIA_AUDIO_PCM, .n_placeholder = (int32_t)n_tok, .pcm = clip->pcm,
                              .n_samples = clip->n_samples};
    clip->pcm = NULL;
    clip->n_samples = 0;
    const char* prompt = o->short_range ? "Transcribe.\n<audio>" : "<audio>\nTranscribe.";
    ChatTurn turns[2] = {{CHAT_USER, prompt, strlen(prompt)}, {CHAT_ASSISTANT, u->text, strlen(u->text)}};
    return chat_build(tok, turns, 2, s, what, e);
}

static int write_speech(const Tokenizer* tok, const Utterance* u, const char* const* voices, const Rendition* rs,
                        SpeechClip* clips, int n, const DemoOptions* o, TaskOut* t, Error* e) {
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        Sample s = {0};
        rc = speech_sample(tok, &u[rs[i].utt], voices[rs[i].voice], &rs[i], &clips[i], o, &s, e);
        if (rc == 0) rc = task_add(t, rs[i].split, &s, e);
        else sample_free(&s);
    }
    return rc;
}

// voices: (N_DEMO_VOICES) receives the installed voices used (*n_voices of them).
static int build_speech(const DemoOptions* o, const Tokenizer* tok, TaskOut* t, const char** voices, int* n_voices,
                        Error* e) {
    if (installed_voices(voices, n_voices, e) != 0) return -1;
    Utterance u[N_UTTERANCES];
    DemoRng utt_rng = demo_rng(o->seed, STREAM_UTTERANCES);
    make_utterances(&utt_rng, u);
    Rendition* rs;
    int n = make_renditions(u, *n_voices, o, &rs);
    SpeechRequest* req = xmalloc((size_t)n * sizeof *req);
    for (int i = 0; i < n; i++)
        req[i] = (SpeechRequest){u[rs[i].utt].text, voices[rs[i].voice], rs[i].rate, rs[i].pitch};
    SpeechClip* clips = xmalloc((size_t)n * sizeof *clips);
    int rc = speech_synthesize(req, n, clips, e);
    char source[256];
    snprintf(source, sizeof source, "modrwkv data demo: espeak-ng speech, seed %llu", (unsigned long long)o->seed);
    if (rc == 0) rc = task_open(t, o, "spoken_digits", source, tokenizer_vocab_size(tok), e);
    if (rc == 0) rc = write_speech(tok, u, voices, rs, clips, n, o, t, e);
    for (int i = 0; i < n; i++) speech_clip_free(&clips[i]);
    free(clips);
    free(req);
    free(rs);
    return task_close(t, rc, e);
}

// ==================================================================================================== text

// The `text` string of line `lineno` (1-based) of a JSONL file into a sample with key "lambada-NNNNN".
static int text_sample(const Tokenizer* tok, const char* path, const char* line, size_t len, int lineno, Sample* s,
                       Error* e) {
    json_error_t jerr;
    json_t* obj = json_loadb(line, len, 0, &jerr);
    json_t* text = json_is_object(obj) ? json_object_get(obj, "text") : NULL;
    int rc = 0;
    if (!json_is_string(text)) {
        rc = errorf(e, "%s:%d: expected a JSON object with a \"text\" string (%s)", path, lineno,
                    obj ? "no \"text\" string" : jerr.text);
    } else {
        char key[32];
        snprintf(key, sizeof key, "lambada-%05d", lineno - 1);
        s->key = xstrdup(key);
        chat_build_document(tok, json_string_value(text), json_string_length(text), 1, s);
    }
    json_decref(obj);
    return rc;
}

static int build_text(const DemoOptions* o, const Tokenizer* tok, TaskOut* t, Error* e) {
    size_t len;
    char* data = read_file(o->text_jsonl, &len, e);
    if (!data) return -1;
    char source[512];
    snprintf(source, sizeof source, "modrwkv data demo: first %d passages of %s, seed %llu", o->text_passages,
             basename_of(o->text_jsonl), (unsigned long long)o->seed);
    DemoRng split_rng = demo_rng(o->seed, STREAM_TEXT_SPLIT);
    int* split = assign_splits(o->text_passages, &split_rng);
    int rc = task_open(t, o, "text", source, tokenizer_vocab_size(tok), e), n = 0;
    for (char *p = data, *end = data + len; rc == 0 && n < o->text_passages && p < end; n++) {
        char* nl = memchr(p, '\n', (size_t)(end - p));
        char* line_end = nl ? nl : end;
        Sample s = {0};
        rc = text_sample(tok, o->text_jsonl, p, (size_t)(line_end - p), n + 1, &s, e);
        if (rc == 0) rc = task_add(t, split[n], &s, e);
        else sample_free(&s);
        p = line_end + 1;
    }
    if (rc == 0 && n < o->text_passages)
        rc = errorf(e, "%s: only %d lines, but %d passages were asked for", o->text_jsonl, n, o->text_passages);
    free(split);
    free(data);
    return task_close(t, rc, e);
}

// ==================================================================================================== README + build

static void readme_counts(char* buf, size_t cap, size_t* at, const TaskOut* t) {
    for (int s = 0; s < N_SPLITS; s++)
        *at += (size_t)snprintf(buf + *at, cap - *at, "  %-14s %-6s %6lld samples %9lld tokens\n", t->task,
                                SPLIT_NAMES[s], (long long)t->n_samples[s], (long long)t->n_tokens[s]);
}

static int write_readme(const DemoOptions* o, const TaskOut tasks[3], const char* const* voices, int n_voices,
                        Error* e) {
    enum { CAP = 16384 };
    char* buf = xmalloc(CAP);
    size_t at = 0;
    at += (size_t)snprintf(buf + at, CAP - at,
        "modrwkv demo datasets (`modrwkv data demo`, seed %llu, image size %d, %d image tokens, %d audio tokens/s)\n\n"
        "Every <task>/<split>/ directory is a shard dataset (datasets/FORMAT.md: <split>-NNNNNN.h5 + manifest.json,\n"
        "%s tokenizer). Splits never share a source item (digit image, (voice, utterance) pair, passage).\n\n"
        "Counts:\n", (unsigned long long)o->seed, o->image_size, o->image_tokens, o->audio_tokens_per_s,
        strcmp(o->tokenizer, "bytes") == 0 ? "byte" : "World");
    for (int k = 0; k < 3; k++) readme_counts(buf, CAP, &at, &tasks[k]);
    at += (size_t)snprintf(buf + at, CAP - at,
        "\ndigits_qa: the %s handwritten digits (8x8, values 0..16), upscaled bilinearly to %dx%d grey PNG\n"
        "  (dark ink on white). Key digit-NNNN = the CSV row. Three turns per image in a seeded order:\n"
        "  \\x16User: <image>\\nWhat digit is this?\\x17\\x16Assistant: 7\\x17,\n"
        "  \"Is this digit even/odd?\" -> Yes/No, \"Is this digit greater/less than <word>?\" -> Yes/No.\n"
        "  <image> = %d image placeholder tokens.\n"
        "  Source: UCI Optical Recognition of Handwritten Digits (Alpaydin, Kaynak), CC BY 4.0, via scikit-learn\n"
        "  (BSD-3-Clause); see datasets/demo/LICENSE.md.\n",
        basename_of(o->digits_csv_gz), o->image_size, o->image_size, o->image_tokens);
    at += (size_t)snprintf(buf + at, CAP - at,
        "\nspoken_digits: digit words and 2-3 digit sequences synthesised by espeak-ng, 16 kHz mono int16 with\n"
        "  exactly 100 ms of silence before and after the speech.\n"
        "  \\x16User: <audio>\\nTranscribe.\\x17\\x16Assistant: seven three\\x17;\n"
        "  <audio> = ceil(duration_s * %d) audio placeholder tokens. Key speech-<voice>-<words>-r<wpm>-p<pitch>.\n"
        "  Voices:", o->audio_tokens_per_s);
    for (int v = 0; v < n_voices; v++) at += (size_t)snprintf(buf + at, CAP - at, " %s", voices[v]);
    at += (size_t)snprintf(buf + at, CAP - at,
        "\n\ntext: the first %d passages of %s (LAMBADA test set, Paperno et al. 2016, CC BY 4.0), every token\n"
        "  trained, followed by the end-of-document token 0. Key lambada-NNNNN = the line.\n\n"
        "Only assistant answers (after \"\\x16Assistant:\") are trained in the chat samples; user turns and\n"
        "placeholders are masked.\n", o->text_passages, basename_of(o->text_jsonl));
    char* path = path_join(o->out_dir, "README.txt", NULL);
    int rc = write_file_atomic(path, buf, at, e);
    free(path);
    free(buf);
    return rc;
}

void demo_options_default(DemoOptions* o, const char* out_dir) {
    *o = (DemoOptions){.out_dir = out_dir, .digits_csv_gz = NULL, .text_jsonl = NULL,
                       .image_size = DEMO_IMAGE_SIZE, .image_tokens = DEMO_IMAGE_TOKENS,
                       .audio_tokens_per_s = DEMO_AUDIO_TOKENS_PER_S, .text_passages = DEMO_TEXT_PASSAGES, .seed = 1,
                       .tokenizer = "world"};
}

static int check_options(const DemoOptions* o, Error* e) {
    if (!o->out_dir || !o->out_dir[0]) return errorf(e, "data demo: no output directory given (--out DIR)");
    if (o->image_size < 8 || o->image_size > 1024)
        return errorf(e, "data demo: image size %d is outside 8..1024 (--image-size)", o->image_size);
    if (o->image_tokens < 1 || o->image_tokens > 4096)
        return errorf(e, "data demo: %d image tokens is outside 1..4096", o->image_tokens);
    if (o->audio_tokens_per_s < 1 || o->audio_tokens_per_s > 1000)
        return errorf(e, "data demo: %d audio tokens per second is outside 1..1000", o->audio_tokens_per_s);
    if (o->text_passages < 3)
        return errorf(e, "data demo: %d text passages (at least 3 are needed for three splits)", o->text_passages);
    return 0;
}

int data_demo_build_with(const DemoOptions* opts, Error* e) {
    if (check_options(opts, e) != 0) return -1;
    DemoOptions o = *opts;
    if (!o.digits_csv_gz) o.digits_csv_gz = MODRWKV_SOURCE_DIR "/datasets/demo/digits.csv.gz";
    if (!o.text_jsonl) o.text_jsonl = MODRWKV_SOURCE_DIR "/tests/data/lambada_test.jsonl";
    if (mkdir_p(o.out_dir, e) != 0) return -1;
    if (!o.tokenizer) o.tokenizer = "world";
    if (strcmp(o.tokenizer, "world") != 0 && strcmp(o.tokenizer, "bytes") != 0)
        return errorf(e, "data demo: tokenizer '%s' is not world or bytes (--tokenizer)", o.tokenizer);
    Tokenizer* tok = tokenizer_from_spec(o.tokenizer, e);
    if (!tok) return -1;
    TaskOut tasks[3];
    memset(tasks, 0, sizeof tasks);
    const char* voices[N_DEMO_VOICES];
    int n_voices = 0;
    int rc = build_digits(&o, tok, &tasks[0], e);
    if (rc == 0) rc = build_speech(&o, tok, &tasks[1], voices, &n_voices, e);
    if (rc == 0) rc = build_text(&o, tok, &tasks[2], e);
    if (rc == 0) rc = write_readme(&o, tasks, voices, n_voices, e);
    tokenizer_free(tok);
    return rc;
}

int data_demo_build(const char* out_dir, const char* digits_csv_gz, int image_size, uint64_t seed, Error* e) {
    DemoOptions o;
    demo_options_default(&o, out_dir);
    o.digits_csv_gz = digits_csv_gz;
    o.image_size = image_size;
    o.seed = seed;
    return data_demo_build_with(&o, e);
}

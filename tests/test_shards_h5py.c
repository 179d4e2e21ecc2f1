// test_shards_h5py.c — the shard format is what datasets/FORMAT.md says, checked against an independent
// implementation in h5py (tests/reference/h5py_shards.py, run with Debian's /usr/bin/python3 + python3-h5py).
//
// Checks both directions with the same fixture (7 samples: text only, an encoded image, pixels + audio,
// placeholders only, a time series, f32 and f16 features with pixels interleaved with text, a UTF-8 key):
// a dataset written by h5py (uint32 tokens, variable-length string attributes, contiguous and gzip'ed
// datasets) passes `data verify` and reads back byte-identical through shard_reader; a dataset written by
// shard_writer is accepted by the h5py checker, which re-validates every rule and compares the samples
// (and rejects a dataset in which one pixel differs: a negative control).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "datasets/data_tools.h"
#include "datasets/shard.h"
#include "datasets/shard_internal.h"
#include "tests/testutil.h"

static const char* PYTHON = "/usr/bin/python3";

// ---------------------------------------------------------------------------------------------------- fixture
// The same formulas as FIXTURE_SPEC / payload() / fixture() in h5py_shards.py.
typedef struct Segment {
    int kind;            // 0 = text
    int n;               // text tokens or placeholders
    uint32_t id;         // placeholder id
    int shape[3];
} Segment;

enum { N_FIXTURE = 7, MAX_SEGMENTS = 6 };

static const char* FIXTURE_KEYS[N_FIXTURE] = {"fx-0", "fx-1", "fx-2", "fx-3", "fx-4", "fx-5",
                                              "fx-6 \xc3\xbcn\xc3\xaf" "code/key"};
static const Segment FIXTURE[N_FIXTURE][MAX_SEGMENTS] = {
    {{0, 12, 0, {0}}},
    {{0, 2, 0, {0}}, {MEDIA_IMAGE_ENCODED, 4, SHARD_PLACEHOLDER_IMAGE, {37}}, {0, 4, 0, {0}}},
    {{0, 1, 0, {0}}, {MEDIA_IMAGE_PIXELS, 3, SHARD_PLACEHOLDER_IMAGE, {2, 3, 3}}, {0, 4, 0, {0}},
     {MEDIA_AUDIO_PCM, 5, SHARD_PLACEHOLDER_AUDIO, {50}}, {0, 2, 0, {0}}},
    {{MEDIA_AUDIO_PCM, 9, SHARD_PLACEHOLDER_AUDIO, {33}}},
    {{0, 5, 0, {0}}, {MEDIA_TIMESERIES, 2, SHARD_PLACEHOLDER_TIMESERIES, {6, 2}}, {0, 8, 0, {0}}},
    {{MEDIA_FEATURES, 3, SHARD_PLACEHOLDER_IMAGE, {3, 4, 4}}, {0, 7, 0, {0}},
     {MEDIA_FEATURES, 4, SHARD_PLACEHOLDER_AUDIO, {2, 5, 2}}, {0, 9, 0, {0}},
     {MEDIA_IMAGE_PIXELS, 2, SHARD_PLACEHOLDER_IMAGE, {1, 1, 1}}, {0, 5, 0, {0}}},
    {{0, 7, 0, {0}}},
};

static void fill_payload(MediaItem* m, const Segment* g, int64_t i) {
    const int* sh = g->shape;
    switch (g->kind) {
    case MEDIA_IMAGE_ENCODED:
        m->n_bytes = (size_t)sh[0];
        m->bytes = xmalloc(m->n_bytes);
        for (int64_t j = 0; j < sh[0]; j++) m->bytes[j] = (uint8_t)((j * 7 + i * 13) & 255);
        memcpy(m->bytes, "\x89PNG\r\n\x1a\n", 8);
        break;
    case MEDIA_IMAGE_PIXELS:
        m->height = sh[0], m->width = sh[1], m->channels = sh[2];
        m->pixels = xmalloc((size_t)sh[0] * sh[1] * sh[2]);
        for (int64_t j = 0; j < sh[0] * sh[1] * sh[2]; j++) m->pixels[j] = (uint8_t)((j * 5 + i) & 255);
        break;
    case MEDIA_AUDIO_PCM:
        m->n_samples = (size_t)sh[0];
        m->pcm = xmalloc(m->n_samples * sizeof *m->pcm);
        for (int64_t j = 0; j < sh[0]; j++) m->pcm[j] = (int16_t)(((j * 301 - 7000 + i + 32768) % 65536) - 32768);
        break;
    case MEDIA_TIMESERIES:
        m->length = sh[0], m->channels = sh[1];
        m->series = xmalloc((size_t)sh[0] * sh[1] * sizeof *m->series);
        for (int64_t j = 0; j < sh[0] * sh[1]; j++) m->series[j] = (float)j * 0.25f - 1.5f + (float)i;
        break;
    default:
        m->n_feat_tokens = sh[0], m->dim = sh[1], m->feat_dtype_bytes = sh[2];
        m->feat = xmalloc((size_t)sh[0] * sh[1] * sh[2]);
        for (int64_t j = 0; j < sh[0] * sh[1]; j++) {
            if (sh[2] == 4) ((float*)m->feat)[j] = (float)j * 0.5f - 2.0f;
            else ((uint16_t*)m->feat)[j] = (uint16_t)((j * 977 + 123 + i) % 0x7C00);
        }
    }
}

static Sample fixture_sample(int i) {
    Sample s = {.key = xstrdup(FIXTURE_KEYS[i])};
    s.tokens = xmalloc(64 * sizeof *s.tokens);
    s.loss_mask = xmalloc(64);
    s.media = xcalloc(MAX_SEGMENTS, sizeof *s.media);
    for (int k = 0; k < MAX_SEGMENTS && FIXTURE[i][k].n > 0; k++) {
        const Segment* g = &FIXTURE[i][k];
        if (g->kind != 0) {
            MediaItem* m = &s.media[s.n_media++];
            m->kind = (MediaKind)g->kind;
            m->placeholder_pos = (int32_t)s.n_tokens;
            m->n_placeholder = g->n;
            fill_payload(m, g, i);
        }
        for (int t = 0; t < g->n; t++, s.n_tokens++) {
            int64_t p = (int64_t)s.n_tokens;
            s.tokens[p] = g->kind ? g->id : (uint32_t)((1 + 7919 * (int64_t)i + 104729 * p) % 65000);
            s.loss_mask[p] = g->kind ? 0 : (uint8_t)((p + i) % 3 != 0);
        }
    }
    return s;
}

// ---------------------------------------------------------------------------------------------------- checks
// Runs `h5py_shards.py write|check DIR`; write starts from an empty DIR. Returns the exit status.
static int run_script(const char* command, const char* dir) {
    char cmd[2048];
    const char* script = src_path("tests/reference/h5py_shards.py");
    if (strcmp(command, "write") == 0) snprintf(cmd, sizeof cmd, "rm -rf '%s' && %s '%s' write '%s'", dir, PYTHON, script, dir);
    else snprintf(cmd, sizeof cmd, "%s '%s' check '%s'", PYTHON, script, dir);
    fflush(stdout);
    return system(cmd);
}

// h5py writes, modrwkv verifies and reads.
static int check_h5py_to_modrwkv(void) {
    const char* dir = "test_shards_h5py.tmp/from-h5py";
    int f = check_true("h5py writes a dataset following FORMAT.md", run_script("write", dir) == 0, "script failed");
    Error e = {{0}};
    f += check_true("data verify accepts the h5py dataset", data_verify(dir, stdout, &e) == 0, e.msg);
    char path[256];
    snprintf(path, sizeof path, "%s/train-000000.h5", dir);
    ShardReader* r = shard_reader_open(path, &e);
    f += check_true("shard_reader opens the h5py shard", r != NULL, e.msg);
    int same = r && shard_reader_count(r) == N_FIXTURE;
    char why[1100] = "";
    for (int i = 0; same && i < N_FIXTURE; i++) {
        Sample got, want = fixture_sample(i);
        same = shard_reader_get(r, i, &got, &e) == 0;
        if (!same) snprintf(why, sizeof why, "%s", e.msg);
        else same = sample_compare(&want, &got, why, sizeof why) == 0;
        sample_free(&got);
        sample_free(&want);
    }
    if (r) printf("  h5py shard: %lld samples, tokens stored as uint%d\n", (long long)shard_reader_count(r),
                  8 * shard_reader_info(r)->token_bytes);
    f += check_true("the h5py samples read back byte-identical (tokens, masks, every media kind)", same, why);
    shard_reader_close(r);
    return f;
}

// modrwkv writes, h5py checks; `tamper` changes one pixel of sample 2 first (a negative control: the
// checker must notice).
static int check_modrwkv_to_h5py(int compression, int tamper) {
    char dir[128];
    snprintf(dir, sizeof dir, "test_shards_h5py.tmp/from-modrwkv-%d%s", compression, tamper ? "-tampered" : "");
    ShardWriterOptions o = {.dir = dir, .split = "train", .max_samples = 3, .compression = compression,
                            .tokenizer = "world", .vocab_size = 65536, .source = "test_shards_h5py", .world = 1};
    Error e = {{0}};
    ShardWriter* w = shard_writer_open(&o, &e);
    int rc = w ? 0 : -1;
    for (int i = 0; rc == 0 && i < N_FIXTURE; i++) {
        Sample s = fixture_sample(i);
        if (tamper && i == 2) s.media[0].pixels[5] ^= 1;
        rc = shard_writer_add(w, &s, &e);
        sample_free(&s);
    }
    if (w) rc = shard_writer_close(w, &e) || rc;
    char label[128];
    snprintf(label, sizeof label, "modrwkv writes the fixture (gzip %d, 3 samples per shard)", compression);
    int f = check_true(label, rc == 0, e.msg);
    if (tamper)
        return f + check_true("negative control: h5py notices one pixel changed", run_script("check", dir) != 0,
                              "the checker accepted a dataset that differs from the fixture");
    snprintf(label, sizeof label, "h5py validates the modrwkv dataset (gzip %d) and finds the fixture", compression);
    f += check_true(label, run_script("check", dir) == 0, "h5py_shards.py check failed (see above)");
    return f;
}

static int remove_scratch(void) { return system("rm -rf test_shards_h5py.tmp"); }

int main(void) {
    remove_scratch();
    int f = check_true("python3 with h5py is installed (Debian: python3-h5py)",
                       system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0,
                       "install python3-h5py (scripts/install-deps.sh)");
    f += check_h5py_to_modrwkv();
    f += check_modrwkv_to_h5py(4, 0);
    f += check_modrwkv_to_h5py(0, 0);
    f += check_modrwkv_to_h5py(4, 1);
    if (f == 0) remove_scratch();
    return test_summary("test_shards_h5py", f);
}

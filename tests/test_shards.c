// test_shards.c — specification of the HDF5 shard format (datasets/shard.h, datasets/FORMAT.md): writer,
// reader, manifest, `data inspect` and `data verify`.
//
// Checks: a write -> read round trip is byte-identical for every modality (text only, encoded images,
// pixels, audio, time series, f32 and f16 features, several interleaved media per sample, a sample made of
// placeholders only), with gzip and without, with uint16 and uint32 token storage; rolling by samples and
// by bytes; three parallel writers + merge give the same samples as one writer; two writes give identical
// files; sample_validate rejects each kind of placeholder/media mismatch naming the key; the writer
// rejects bad samples and stays usable; zero-token samples and empty datasets are rejected; corrupt shards
// (bytes flipped anywhere, truncated, inconsistent tables, empty) give clean errors and never silently wrong
// data; a manifest listing a missing shard is rejected; verify passes on a good dataset and names the file
// of a tampered shard and duplicate keys across shards; inspect prints the summary and one sample.
#include <ftw.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/data_tools.h"
#include "datasets/shard.h"
#include "datasets/shard_internal.h"
#include "tests/testutil.h"

static const char* ROOT = "test_shards.tmp";

// HDF5 1.10.8 loses blocks of its internal free-list allocator (H5FL) on some error paths when an object
// header is corrupt (the byte-flip checks below); LeakSanitizer is told to ignore leaks allocated through
// H5FL only, so leaks of this project's memory (and of H5Aread's strings) are still caught. HDF5 is built
// without frame pointers, so matching the allocator's name needs the slow (DWARF) unwinder on malloc.
const char* __lsan_default_suppressions(void);
const char* __lsan_default_suppressions(void) { return "leak:H5FL_reg_malloc\nleak:H5FL_blk_malloc\n"; }
const char* __asan_default_options(void);
const char* __asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

// ---------------------------------------------------------------------------------------------------- files
static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) { return remove(path); }
static void remove_tree(const char* path) { nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

static char* path_in(const char* dir, const char* name) {
    static char buf[8][1024];
    static int slot = 0;
    slot = (slot + 1) % 8;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", dir, name);
    return buf[slot];
}

static int file_exists(const char* path) { return access(path, F_OK) == 0; }

// ---------------------------------------------------------------------------------------------------- samples
static Sample new_sample(const char* key) {
    Sample s = {0};
    s.key = xstrdup(key);
    return s;
}

static void grow_tokens(Sample* s, size_t extra) {
    s->tokens = xrealloc(s->tokens, (s->n_tokens + extra) * sizeof *s->tokens);
    s->loss_mask = xrealloc(s->loss_mask, s->n_tokens + extra);
}

// n text tokens (ids < 60000), trained in runs like assistant turns.
static void add_text(Sample* s, TestRng* r, int n) {
    grow_tokens(s, (size_t)n);
    for (int t = 0; t < n; t++) {
        s->tokens[s->n_tokens] = (uint32_t)test_rng_uniform(r, 0, 59999);
        s->loss_mask[s->n_tokens] = (uint8_t)((s->n_tokens / 5) % 2);
        s->n_tokens++;
    }
}

// n placeholders of id and a new media item covering them; the caller fills the payload.
static MediaItem* add_item(Sample* s, MediaKind kind, uint32_t id, int n) {
    s->media = xrealloc(s->media, (size_t)(s->n_media + 1) * sizeof *s->media);
    MediaItem* m = &s->media[s->n_media++];
    *m = (MediaItem){.kind = kind, .placeholder_pos = (int32_t)s->n_tokens, .n_placeholder = n};
    grow_tokens(s, (size_t)n);
    for (int t = 0; t < n; t++) {
        s->tokens[s->n_tokens] = id;
        s->loss_mask[s->n_tokens++] = 0;
    }
    return m;
}

static uint8_t* random_bytes(TestRng* r, size_t n) {
    uint8_t* p = xmalloc(n);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)test_rng_uniform(r, 0, 255.99f);
    return p;
}

static void add_encoded(Sample* s, TestRng* r, int nph, size_t n) {
    MediaItem* m = add_item(s, MEDIA_IMAGE_ENCODED, SHARD_PLACEHOLDER_IMAGE, nph);
    m->bytes = random_bytes(r, n);
    memcpy(m->bytes, "\x89PNG\r\n\x1a\n", n < 8 ? n : 8);
    m->n_bytes = n;
}

static void add_pixels(Sample* s, TestRng* r, int nph, int h, int w, int c) {
    MediaItem* m = add_item(s, MEDIA_IMAGE_PIXELS, SHARD_PLACEHOLDER_IMAGE, nph);
    m->pixels = random_bytes(r, (size_t)h * w * c);
    m->height = h, m->width = w, m->channels = c;
}

static void add_audio(Sample* s, TestRng* r, int nph, size_t n) {
    MediaItem* m = add_item(s, MEDIA_AUDIO_PCM, SHARD_PLACEHOLDER_AUDIO, nph);
    m->pcm = xmalloc(n * sizeof *m->pcm);
    for (size_t i = 0; i < n; i++) m->pcm[i] = (int16_t)test_rng_uniform(r, -32768, 32767);
    m->n_samples = n;
}

static void add_series(Sample* s, TestRng* r, int nph, int len, int ch) {
    MediaItem* m = add_item(s, MEDIA_TIMESERIES, SHARD_PLACEHOLDER_TIMESERIES, nph);
    m->series = xmalloc((size_t)len * ch * sizeof *m->series);
    for (int i = 0; i < len * ch; i++) m->series[i] = test_rng_normal(r);
    m->length = len, m->channels = ch;
}

static void add_features(Sample* s, TestRng* r, int nph, uint32_t id, int n, int dim, int dtype_bytes) {
    MediaItem* m = add_item(s, MEDIA_FEATURES, id, nph);
    m->feat = random_bytes(r, (size_t)n * dim * dtype_bytes);
    m->n_feat_tokens = n, m->dim = dim, m->feat_dtype_bytes = dtype_bytes;
}

enum { N_TYPES = 9 };

// Sample i of a corpus covering every modality; type i % N_TYPES.
static Sample make_sample(int i, uint64_t seed) {
    static const char* types[N_TYPES] = {"text", "image", "pixels", "audio", "series", "feat32", "feat16", "mixed", "all-audio"};
    char key[64];
    snprintf(key, sizeof key, "s%03d-%s", i, types[i % N_TYPES]);
    Sample s = new_sample(key);
    TestRng r;
    test_rng_seed(&r, seed * 1000 + (uint64_t)i);
    int text = 3 + (int)test_rng_uniform(&r, 0, 30);
    switch (i % N_TYPES) {
    case 0: add_text(&s, &r, text); break;
    case 1: add_text(&s, &r, 2), add_encoded(&s, &r, 4, 100 + (size_t)i), add_text(&s, &r, text); break;
    case 2: add_pixels(&s, &r, 6, 5, 7, 3), add_text(&s, &r, text); break;
    case 3: add_text(&s, &r, text), add_audio(&s, &r, 5, 1600 + (size_t)i); break;
    case 4: add_series(&s, &r, 3, 20, 3), add_text(&s, &r, text); break;
    case 5: add_features(&s, &r, 4, SHARD_PLACEHOLDER_IMAGE, 6, 8, 4), add_text(&s, &r, text); break;
    case 6: add_text(&s, &r, 1), add_features(&s, &r, 2, SHARD_PLACEHOLDER_AUDIO, 4, 8, 2), add_text(&s, &r, text); break;
    case 7:
        add_text(&s, &r, 2), add_encoded(&s, &r, 3, 60), add_text(&s, &r, 4), add_pixels(&s, &r, 2, 3, 4, 1);
        add_text(&s, &r, 1), add_audio(&s, &r, 2, 321), add_series(&s, &r, 1, 7, 1);
        add_text(&s, &r, 3), add_features(&s, &r, 2, SHARD_PLACEHOLDER_TIMESERIES, 2, 3, 2), add_text(&s, &r, text);
        break;
    default: add_audio(&s, &r, 8, 800); break;
    }
    return s;
}

static Sample* make_corpus(int n, uint64_t seed) {
    Sample* ss = xcalloc((size_t)n, sizeof *ss);
    for (int i = 0; i < n; i++) ss[i] = make_sample(i, seed);
    return ss;
}

static void free_corpus(Sample* ss, int n) {
    for (int i = 0; i < n; i++) sample_free(&ss[i]);
    free(ss);
}

// ---------------------------------------------------------------------------------------------------- datasets
static ShardWriterOptions options(const char* dir) {
    return (ShardWriterOptions){.dir = dir, .split = "train", .compression = 4, .tokenizer = "world",
                                .vocab_size = 65536, .source = "test_shards", .rank = 0, .world = 1};
}

static int write_samples(const ShardWriterOptions* o, const Sample* ss, int n, Error* e) {
    ShardWriter* w = shard_writer_open(o, e);
    if (!w) return -1;
    for (int i = 0; i < n; i++)
        if (shard_writer_add(w, &ss[i], e)) {
            shard_writer_close(w, NULL);
            return -1;
        }
    return shard_writer_close(w, e);
}

// Every sample of a dataset in manifest order (*n of them); NULL with e filled on failure.
static Sample* read_dataset(const char* dir, int* n, Error* e) {
    Manifest m;
    if (manifest_read(dir, &m, e)) return NULL;
    Sample* ss = xcalloc((size_t)m.n_samples + 1, sizeof *ss);
    int k = 0, rc = 0;
    for (int f = 0; rc == 0 && f < m.n_shards; f++) {
        ShardReader* r = shard_reader_open(path_in(dir, m.shards[f].file), e);
        rc = r ? 0 : -1;
        for (int64_t i = 0; rc == 0 && i < shard_reader_count(r); i++) rc = shard_reader_get(r, i, &ss[k++], e);
        shard_reader_close(r);
    }
    manifest_free(&m);
    *n = k;
    if (rc == 0) return ss;
    free_corpus(ss, k);
    return NULL;
}

static int same_samples(const Sample* a, const Sample* b, int n, char* why, size_t why_len) {
    for (int i = 0; i < n; i++)
        if (sample_compare(&a[i], &b[i], why, why_len)) return 0;
    return 1;
}

static int by_sample_key(const void* a, const void* b) { return strcmp(((const Sample*)a)->key, ((const Sample*)b)->key); }

// Reads dir back and compares with want (in order, or as a set when sorted).
static int check_dataset(const char* label, const char* dir, Sample* want, int n, int as_set) {
    Error e = {{0}};
    int got_n = 0;
    Sample* got = read_dataset(dir, &got_n, &e);
    char why[1100] = "";
    int ok = got && got_n == n;
    if (!got) snprintf(why, sizeof why, "%s", e.msg);
    else if (got_n != n) snprintf(why, sizeof why, "%d samples read, %d written", got_n, n);
    if (ok && as_set) {
        qsort(got, (size_t)n, sizeof *got, by_sample_key);
        qsort(want, (size_t)n, sizeof *want, by_sample_key);
    }
    if (ok) ok = same_samples(want, got, n, why, sizeof why);
    if (got) free_corpus(got, got_n);
    printf("  %s: %d samples compared\n", label, n);
    return check_true(label, ok, why);
}

// ---------------------------------------------------------------------------------------------------- round trip
static int check_round_trip(int compression, int vocab, const char* label) {
    enum { N = 2 * N_TYPES };
    char dir[256];
    snprintf(dir, sizeof dir, "%s/rt-%d-%d", ROOT, compression, vocab);
    Sample* ss = make_corpus(N, 1);
    if (vocab > 65536) ss[0].tokens[0] = (uint32_t)vocab - 1, ss[N_TYPES].tokens[1] = 70000;
    ShardWriterOptions o = options(dir);
    o.compression = compression;
    o.vocab_size = vocab;
    Error e = {{0}};
    int f = check_true("write every modality", write_samples(&o, ss, N, &e) == 0, e.msg);
    f += check_dataset(label, dir, ss, N, 0);
    Manifest m;
    int ok = manifest_read(dir, &m, &e) == 0;
    f += check_true("manifest: 18 samples in 1 shard, all modalities, tokenizer world",
                    ok && m.n_samples == N && m.n_shards == 1 && m.shards[0].n_media == 24 &&
                        strcmp(m.modalities, "text,image,pixels,audio,timeseries,features") == 0 &&
                        strcmp(m.tokenizer, "world") == 0 && m.vocab_size == vocab && m.format_version == 1,
                    ok ? m.modalities : e.msg);
    ShardReader* r = ok ? shard_reader_open(path_in(dir, m.shards[0].file), &e) : NULL;
    int want_bytes = vocab <= 65536 ? 2 : 4;
    printf("  tokens stored as uint%d (vocab %d)\n", r ? 8 * shard_reader_info(r)->token_bytes : 0, vocab);
    f += check_true("tokens stored as uint16 when vocab_size <= 65536, else uint32",
                    r && shard_reader_info(r)->token_bytes == want_bytes, e.msg);
    shard_reader_close(r);
    if (ok) manifest_free(&m);
    free_corpus(ss, N);
    return f;
}

// ---------------------------------------------------------------------------------------------------- rolling
static int check_rolling_by_samples(void) {
    enum { N = 3 * N_TYPES };
    char dir[256];
    snprintf(dir, sizeof dir, "%s/roll-samples", ROOT);
    Sample* ss = make_corpus(N, 2);
    ShardWriterOptions o = options(dir);
    o.max_samples = 4;
    Error e = {{0}};
    int f = check_true("write with max_samples 4", write_samples(&o, ss, N, &e) == 0, e.msg);
    Manifest m = {0};
    int ok = manifest_read(dir, &m, &e) == 0 && m.n_shards == 7;
    for (int i = 0; ok && i < m.n_shards; i++) {
        char want[64];
        snprintf(want, sizeof want, "train-%06d.h5", i);
        ok = strcmp(m.shards[i].file, want) == 0 && m.shards[i].n_samples == (i < 6 ? 4 : 3);
    }
    printf("  27 samples, max_samples 4 -> %d shards\n", m.n_shards);
    f += check_true("27 samples roll into train-000000..000006.h5 of 4,4,4,4,4,4,3 samples", ok, e.msg);
    f += check_dataset("rolled shards read back in order", dir, ss, N, 0);
    manifest_free(&m);
    free_corpus(ss, N);
    return f;
}

// Bytes a sample certainly adds to a shard (payloads + tokens stored as uint16 + mask).
static int64_t payload_lower_bound(const Sample* s) {
    int64_t b = 3 * (int64_t)s->n_tokens;
    for (int k = 0; k < s->n_media; k++) b += media_payload_bytes(&s->media[k]);
    return b;
}

static int check_rolling_by_bytes(void) {
    enum { N = 2 * N_TYPES, MAX_BYTES = 6000 };
    char dir[256];
    snprintf(dir, sizeof dir, "%s/roll-bytes", ROOT);
    Sample* ss = make_corpus(N, 3);
    TestRng r;
    test_rng_seed(&r, 3);
    sample_free(&ss[4]);
    ss[4] = new_sample("s004-big-image");
    add_encoded(&ss[4], &r, 2, 20000);   // larger than max_bytes: a shard of its own
    ShardWriterOptions o = options(dir);
    o.max_bytes = MAX_BYTES;
    Error e = {{0}};
    int f = check_true("write with max_bytes 6000", write_samples(&o, ss, N, &e) == 0, e.msg);
    Manifest m = {0};
    int ok = manifest_read(dir, &m, &e) == 0 && m.n_shards > 3;
    int big_alone = 0, first = 0;
    for (int i = 0; ok && i < m.n_shards; i++) {
        int64_t bytes = 0;
        for (int k = first; k < first + m.shards[i].n_samples; k++) bytes += payload_lower_bound(&ss[k]);
        if (m.shards[i].n_samples > 1) ok = bytes <= MAX_BYTES;
        if (first == 4) big_alone = m.shards[i].n_samples == 1;
        first += (int)m.shards[i].n_samples;
    }
    printf("  18 samples, max_bytes %d -> %d shards\n", MAX_BYTES, m.n_shards);
    f += check_true("every shard of more than one sample stays within max_bytes", ok, e.msg);
    f += check_true("a sample larger than max_bytes gets a shard of its own", big_alone, "it shares a shard");
    f += check_dataset("byte-rolled shards read back in order", dir, ss, N, 0);
    manifest_free(&m);
    free_corpus(ss, N);
    return f;
}

// ---------------------------------------------------------------------------------------------------- parallel
static int check_parallel_writers(void) {
    enum { N = 3 * N_TYPES + 2, WORLD = 3 };
    char dir[256];
    snprintf(dir, sizeof dir, "%s/parallel", ROOT);
    Sample* ss = make_corpus(N, 4);
    Error e = {{0}};
    int f = 0, rc = 0;
    for (int rank = 0; rank < WORLD && rc == 0; rank++) {   // rank r converts samples r, r + 3, ...
        ShardWriterOptions o = options(dir);
        o.max_samples = 2;
        o.rank = rank;
        o.world = WORLD;
        ShardWriter* w = shard_writer_open(&o, &e);
        rc = w ? 0 : -1;
        for (int i = rank; rc == 0 && i < N; i += WORLD) rc = shard_writer_add(w, &ss[i], &e);
        if (w) rc = shard_writer_close(w, &e) || rc;
    }
    f += check_true("3 ranks write their shards and part manifests", rc == 0 && file_exists(path_in(dir, "manifest.rank-00002.json")), e.msg);
    f += check_true("merge the part manifests", shard_manifest_merge(dir, WORLD, &e) == 0, e.msg);
    f += check_true("merge removes the part manifests", !file_exists(path_in(dir, "manifest.rank-00000.json")), "left");
    Manifest m = {0};
    int ok = manifest_read(dir, &m, &e) == 0;
    for (int i = 0; ok && i < m.n_shards; i++) {   // rank 0: 0 3 6 9 12; rank 1: 1 4 7 10 13; rank 2: 2 5 8 11 14
        char want[64];
        snprintf(want, sizeof want, "train-%06d.h5", i);
        ok = strcmp(m.shards[i].file, want) == 0;
    }
    printf("  %d samples over 3 ranks (2 per shard) -> %d shards\n", N, m.n_shards);
    f += check_true("merged manifest lists shards 0..14 sorted by index", ok && m.n_shards == 15 && m.n_samples == N, e.msg);
    manifest_free(&m);
    f += check_dataset("world 3 holds the same samples as world 1 (as a set)", dir, ss, N, 1);
    free_corpus(ss, N);
    return f;
}

// ---------------------------------------------------------------------------------------------------- determinism
static int same_file(const char* a, const char* b) {
    size_t na, nb;
    char* x = read_file(a, &na, NULL);
    char* y = read_file(b, &nb, NULL);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static int check_determinism(void) {
    enum { N = 2 * N_TYPES };
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/det-a", ROOT);
    snprintf(b, sizeof b, "%s/det-b", ROOT);
    Sample* ss = make_corpus(N, 5);
    ShardWriterOptions oa = options(a), ob = options(b);
    oa.max_samples = ob.max_samples = 7;
    Error e = {{0}};
    int f = check_true("first write", write_samples(&oa, ss, N, &e) == 0, e.msg);
    sleep(1);   // HDF5 timestamps have one-second resolution: a timestamp would differ
    f += check_true("second write a second later", write_samples(&ob, ss, N, &e) == 0, e.msg);
    int same = 1;
    const char* files[] = {"train-000000.h5", "train-000001.h5", "train-000002.h5", "manifest.json"};
    for (int i = 0; i < 4; i++) same &= same_file(path_in(a, files[i]), path_in(b, files[i]));
    f += check_true("two writes of the same samples give byte-identical shards and manifests", same, "files differ");
    free_corpus(ss, N);
    return f;
}

// ---------------------------------------------------------------------------------------------------- validation
// A valid sample with an image (tokens 2..5), audio (7..9) and text around them.
static Sample valid_sample(void) {
    TestRng r;
    test_rng_seed(&r, 9);
    Sample s = new_sample("bad-key-7");
    add_text(&s, &r, 2), add_encoded(&s, &r, 4, 50), add_text(&s, &r, 1), add_audio(&s, &r, 3, 100), add_text(&s, &r, 4);
    return s;
}

static int expect_invalid(const char* label, Sample* s, const char* must_contain) {
    Error e = {{0}};
    int rc = sample_validate(s, "unit", &e);
    sample_free(s);
    return expect_reject(label, rc, &e, "'bad-key-7'", must_contain);
}

static int check_validate_rejections(void) {
    Error e = {{0}};
    Sample s = valid_sample();
    int f = check_true("the reference sample is valid", sample_validate(&s, "unit", &e) == 0, e.msg);
    sample_free(&s);
    s = valid_sample(), s.media[0].n_placeholder = 5;   // claims one placeholder more than there are
    f += expect_invalid("placeholder count mismatch", &s, "placeholder count mismatch");
    s = valid_sample(), s.media[0].n_placeholder = 3;   // the 4th image placeholder is left uncovered
    f += expect_invalid("stray placeholder", &s, "no media item covers it");
    s = valid_sample(), s.tokens[0] = SHARD_PLACEHOLDER_TIMESERIES;
    f += expect_invalid("stray placeholder in the text", &s, "token 0 is the placeholder id");
    s = valid_sample(), s.media[1].placeholder_pos = 4;   // starts inside the image's range
    f += expect_invalid("overlapping ranges", &s, "overlaps");
    s = valid_sample(), s.media[1].placeholder_pos = 9;   // [9, 12) of 14... moved to end past tokens below
    s.media[1].n_placeholder = 8;
    f += expect_invalid("range out of the tokens", &s, "out of range");
    s = valid_sample(), s.media[1].kind = MEDIA_TIMESERIES, s.media[1].length = 10, s.media[1].channels = 1;
    s.media[1].series = xcalloc(10, sizeof(float));
    f += expect_invalid("placeholder id of another kind", &s, "not the placeholder 65532");
    s = valid_sample(), s.media[1].n_bytes = 7;   // pcm of 100 samples = 200 bytes
    f += expect_invalid("payload size mismatch", &s, "payload size mismatch");
    s = valid_sample(), free(s.media[1].pcm), s.media[1].pcm = NULL;
    f += expect_invalid("missing payload", &s, "no payload");
    s = valid_sample(), s.media[0].kind = (MediaKind)9;
    f += expect_invalid("unknown media kind", &s, "unknown kind 9");
    s = valid_sample(), s.media[0].n_bytes = 0;
    f += expect_invalid("empty encoded image", &s, "invalid shape");
    s = valid_sample(), s.loss_mask[1] = 2;
    f += expect_invalid("loss mask value 2", &s, "loss_mask[1] is 2");
    s = valid_sample(), s.loss_mask[3] = 1;
    f += expect_invalid("trained placeholder", &s, "never trained");
    s = valid_sample(), s.n_tokens = 0;
    f += expect_invalid("a sample with zero tokens", &s, "has no tokens");
    s = valid_sample(), free(s.key), s.key = xstrdup("");
    e.msg[0] = 0;
    int rc = sample_validate(&s, "unit", &e);
    sample_free(&s);
    f += expect_reject("a sample without a key", rc, &e, "unit", "no __key__");
    return f;
}

static int check_writer_rejections(void) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/rejects", ROOT);
    ShardWriterOptions o = options(dir);
    o.vocab_size = 1000;
    Error e = {{0}};
    ShardWriter* w = shard_writer_open(&o, &e);
    Sample good = new_sample("ok-1"), dup = new_sample("ok-1"), big = new_sample("big-id"), empty = new_sample("empty");
    TestRng r;
    test_rng_seed(&r, 11);
    add_text(&good, &r, 5), add_text(&dup, &r, 3), add_text(&big, &r, 3);
    for (size_t t = 0; t < good.n_tokens; t++) good.tokens[t] %= 1000;
    for (size_t t = 0; t < dup.n_tokens; t++) dup.tokens[t] %= 1000;
    big.tokens[1] = 1000;
    int f = check_true("open a writer (vocab 1000)", w != NULL, e.msg);
    f += check_true("add a good sample", w && shard_writer_add(w, &good, &e) == 0, e.msg);
    f += expect_reject("duplicate key", shard_writer_add(w, &dup, &e), &e, "'ok-1'", "duplicate __key__");
    f += expect_reject("token id >= vocab_size", shard_writer_add(w, &big, &e), &e, "'big-id'", "not below vocab_size 1000");
    f += expect_reject("zero-token sample", shard_writer_add(w, &empty, &e), &e, "'empty'", "has no tokens");
    sample_free(&dup);
    dup = new_sample("ok-2");
    add_text(&dup, &r, 2);
    dup.tokens[0] = dup.tokens[1] = 7;
    f += check_true("the writer stays usable after rejections", shard_writer_add(w, &dup, &e) == 0, e.msg);
    f += check_true("close", shard_writer_close(w, &e) == 0, e.msg);
    Manifest m = {0};
    f += check_true("only the 2 good samples were written",
                    manifest_read(dir, &m, &e) == 0 && m.n_samples == 2 && m.n_tokens == 7, e.msg);
    manifest_free(&m);
    sample_free(&good), sample_free(&dup), sample_free(&big), sample_free(&empty);

    snprintf(dir, sizeof dir, "%s/nothing", ROOT);
    o = options(dir);
    w = shard_writer_open(&o, &e);
    f += expect_reject("a writer closed without samples (world 1) makes no dataset", shard_writer_close(w, &e), &e,
                       dir, "no samples were added");
    f += check_true("... and writes no manifest.json", !file_exists(path_in(dir, "manifest.json")), "it exists");
    o.world = 2;
    o.rank = 1;
    w = shard_writer_open(&o, &e);
    f += check_true("a rank without samples writes an empty part manifest",
                    shard_writer_close(w, &e) == 0 && file_exists(path_in(dir, "manifest.rank-00001.json")), e.msg);
    o = options(dir);
    o.vocab_size = 0;
    f += expect_reject("vocab_size 0", shard_writer_open(&o, &e) ? 0 : -1, &e, dir, "vocab_size 0");
    o = options(dir);
    o.rank = 3, o.world = 2;
    f += expect_reject("rank 3 of world 2", shard_writer_open(&o, &e) ? 0 : -1, &e, dir, "rank 3 of world 2");
    return f;
}

// ---------------------------------------------------------------------------------------------------- corruption
// Reads every sample of a shard: 0 when all match want, 1 when they differ, -1 with e filled on an error.
static int read_and_compare(const char* path, const Sample* want, int n, Error* e) {
    ShardReader* r = shard_reader_open(path, e);
    if (!r) return -1;
    int rc = shard_reader_count(r) == n ? 0 : 1;
    for (int64_t i = 0; rc == 0 && i < n; i++) {
        Sample s;
        char why[256];
        if (shard_reader_get(r, i, &s, e)) rc = -1;
        else rc = sample_compare(&want[i], &s, why, sizeof why);
        sample_free(&s);
    }
    shard_reader_close(r);
    return rc;
}

static int write_bytes(const char* path, const char* data, size_t n) {
    FILE* fp = fopen(path, "wb");
    if (!fp) return -1;
    size_t w = fwrite(data, 1, n, fp);
    return fclose(fp) == 0 && w == n ? 0 : -1;
}

// Flips one byte at 97 positions spread over the file; truncates at 9 lengths.
static int check_flipped_and_truncated(const char* shard, const Sample* ss, int n) {
    size_t len;
    char* orig = read_file(shard, &len, NULL);
    char bad[256];
    snprintf(bad, sizeof bad, "%s/corrupt.h5", ROOT);
    int errors = 0, identical = 0, silent = 0, unclean = 0;
    for (int k = 0; orig && k < 97; k++) {
        size_t at = (size_t)((double)len * (k + 0.5) / 97.0);
        orig[at] ^= 0x5a;
        Error e = {{0}};
        int rc = write_bytes(bad, orig, len) ? -2 : read_and_compare(bad, ss, n, &e);
        orig[at] ^= 0x5a;
        if (rc == -1 && is_clean_rejection(rc, &e, bad)) errors++;
        else if (rc == 0) identical++;
        else if (rc == 1) silent++;
        else unclean++;
        if (rc == 1 || (rc == -1 && !is_clean_rejection(rc, &e, bad))) printf("  byte %zu: rc %d %s\n", at, rc, e.msg);
    }
    printf("  %zu-byte shard, 97 single-byte corruptions: %d clean errors, %d harmless (unused bytes), %d silently "
           "wrong, %d unclean\n", len, errors, identical, silent, unclean);
    int f = check_true("a flipped byte anywhere gives a clean error or the original data, never wrong data",
                       orig && silent == 0 && unclean == 0 && errors > 0, "see above");
    int trunc_ok = 1;
    for (int k = 0; orig && k < 9; k++) {
        size_t keep = len * (size_t)k / 9;
        Error e = {{0}};
        int rc = write_bytes(bad, orig, keep) ? -2 : read_and_compare(bad, ss, n, &e);
        if (k == 4) printf("  truncated to %zu bytes -> %s\n", keep, e.msg);
        trunc_ok &= rc == -1 && is_clean_rejection(rc, &e, bad);
    }
    f += check_true("a truncated shard (9 lengths, 0 to 8/9) is a clean error naming the file", trunc_ok, "see above");
    free(orig);
    return f;
}

// Overwrites element `index` of a dataset (converting from int64) through HDF5, as a buggy writer would.
static int poke(const char* path, const char* dataset, int64_t index, int64_t value) {
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = file < 0 ? -1 : H5Dopen2(file, dataset, H5P_DEFAULT);
    hid_t space = d < 0 ? -1 : H5Dget_space(d);
    hsize_t at = (hsize_t)index, one = 1;
    hid_t mem = H5Screate_simple(1, &one, NULL);
    int rc = space < 0 || H5Sselect_elements(space, H5S_SELECT_SET, 1, &at) < 0 ||
             H5Dwrite(d, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, &value) < 0;
    H5Sclose(mem);
    if (space >= 0) H5Sclose(space);
    if (d >= 0) H5Dclose(d);
    if (file >= 0) H5Fclose(file);
    return rc ? -1 : 0;
}

static int poke_attr(const char* path, const char* name, int64_t value) {
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = file < 0 ? -1 : H5Aopen(file, name, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &value) < 0;
    if (a >= 0) H5Aclose(a);
    if (file >= 0) H5Fclose(file);
    return rc ? -1 : 0;
}

// Copies the shard, applies one edit, and expects a clean error containing `must_contain`.
static int expect_bad_edit(const char* label, const char* shard, const Sample* ss, int n, const char* dataset,
                           int64_t index, int64_t value, const char* must_contain) {
    char bad[256];
    snprintf(bad, sizeof bad, "%s/edited.h5", ROOT);
    size_t len;
    char* orig = read_file(shard, &len, NULL);
    int ok = orig && write_bytes(bad, orig, len) == 0;
    free(orig);
    ok = ok && (dataset[0] == '/' ? poke(bad, dataset, index, value) : poke_attr(bad, dataset, value)) == 0;
    Error e = {{0}};
    int rc = ok ? read_and_compare(bad, ss, n, &e) : 0;
    return expect_reject(label, rc, &e, bad, must_contain);
}

static int check_corrupt_shards(void) {
    enum { N = N_TYPES };
    char dir[256];
    snprintf(dir, sizeof dir, "%s/corrupt", ROOT);
    Sample* ss = make_corpus(N, 6);
    ShardWriterOptions o = options(dir);
    o.compression = 0;
    Error e = {{0}};
    int f = check_true("write a shard to corrupt", write_samples(&o, ss, N, &e) == 0, e.msg);
    const char* shard = path_in(dir, "train-000000.h5");
    f += check_flipped_and_truncated(shard, ss, N);
    // sample 1 ("s001-image") holds media item 0: an image at tokens [2, 6)
    f += expect_bad_edit("token offsets not increasing", shard, ss, N, "/tok/offsets", 2, 0, "not increasing at sample #1");
    f += expect_bad_edit("placeholder count of an item off by one", shard, ss, N, "/media/n_placeholder", 0, 5,
                         "'s001-image' (#1)");
    f += expect_bad_edit("a text token replaced by a placeholder", shard, ss, N, "/tok/tokens", 0, SHARD_PLACEHOLDER_AUDIO,
                         "'s000-text' (#0): token 0 is the placeholder id 65531");
    f += expect_bad_edit("payload size != shape", shard, ss, N, "/media/payload_sizes", 1, 1, "'s002-pixels' (#2)");
    f += expect_bad_edit("a key with a NUL byte", shard, ss, N, "/meta/key_bytes", 3, 0, "with a NUL byte");
    f += expect_bad_edit("loss mask value 7", shard, ss, N, "/tok/loss_mask", 1, 7, "loss_mask[1] is 7");
    f += expect_bad_edit("token id >= vocab_size", shard, ss, N, "vocab_size", 0, 100, "not below vocab_size 100");
    f += expect_bad_edit("media kind 9", shard, ss, N, "/media/kind", 0, 9, "/media/kind[0] is 9");
    f += expect_bad_edit("an empty shard (n_samples 0)", shard, ss, N, "n_samples", 0, 0, "has no samples");
    f += expect_bad_edit("a newer format version", shard, ss, N, "format_version", 0, 2, "format version 2 is not supported");
    f += expect_reject("a file that is not HDF5", shard_reader_open(path_in(dir, "manifest.json"), &e) ? 0 : -1, &e,
                       "manifest.json", "open as HDF5 failed");
    f += expect_reject("a missing file", shard_reader_open(path_in(dir, "nope.h5"), &e) ? 0 : -1, &e, "nope.h5", "cannot open");
    ShardReader* r = shard_reader_open(shard, &e);
    Sample s;
    f += expect_reject("sample index out of range", r ? shard_reader_get(r, N, &s, &e) : 0, &e, shard, "does not exist");
    shard_reader_close(r);
    free_corpus(ss, N);
    return f;
}

// ---------------------------------------------------------------------------------------------------- manifest, verify, inspect
// Runs a data command (data_verify or data_inspect) on path with its report captured in *out (the caller
// frees it); returns the command's rc.
typedef int (*DataCommand)(const char* path, FILE* out, Error* e);
static int run_captured(DataCommand command, const char* path, char** out, Error* e) {
    size_t len = 0;
    *out = NULL;
    FILE* mem = open_memstream(out, &len);
    int rc = command(path, mem, e);
    fclose(mem);
    return rc;
}

static int check_manifest_and_verify(void) {
    enum { N = 2 * N_TYPES };
    char dir[256];
    snprintf(dir, sizeof dir, "%s/verify", ROOT);
    Sample* ss = make_corpus(N, 7);
    ShardWriterOptions o = options(dir);
    o.max_samples = 6;
    Error e = {{0}};
    int f = check_true("write a dataset of 3 shards", write_samples(&o, ss, N, &e) == 0, e.msg);
    char* out;
    int rc = run_captured(data_verify, dir, &out, &e);
    printf("%s", out ? out : "");
    f += check_true("verify passes on a good dataset", rc == 0 && strstr(out, "keys unique: OK"), e.msg);
    free(out);

    const char* shard = path_in(dir, "train-000001.h5");
    size_t len;
    char* orig = read_file(shard, &len, NULL);
    orig[len / 2] ^= 1;
    write_bytes(shard, orig, len);
    f += expect_reject("verify names a tampered shard", data_verify(dir, stdout, &e), &e, "train-000001.h5", "sha256 is");
    orig[len / 2] ^= 1;
    write_bytes(shard, orig, len);
    free(orig);

    rename(shard, path_in(dir, "moved.h5"));
    Manifest m;
    f += expect_reject("a manifest listing a missing shard", manifest_read(dir, &m, &e), &e, "train-000001.h5", "does not exist");
    f += expect_reject("verify with a missing shard", data_verify(dir, stdout, &e), &e, "train-000001.h5", "does not exist");
    rename(path_in(dir, "moved.h5"), shard);

    char* text = read_file(path_in(dir, "manifest.json"), &len, NULL);
    write_bytes(path_in(dir, "manifest.json"), "{\"format\": \"modrwkv-shards\", \"format_version\": 1,", 48);
    f += expect_reject("a manifest that is not JSON", manifest_read(dir, &m, &e), &e, "manifest.json", "invalid JSON");
    char* at = strstr(text, "\"n_samples\": 18");
    if (at) at[14] = '9';
    write_bytes(path_in(dir, "manifest.json"), text, len);
    f += expect_reject("a manifest whose totals disagree with its shards", manifest_read(dir, &m, &e), &e,
                       "manifest.json", "add up to 18");
    free(text);
    free_corpus(ss, N);

    // two ranks that both wrote a sample with the same key: the merge succeeds, verify does not
    snprintf(dir, sizeof dir, "%s/dupkeys", ROOT);
    Sample a = make_sample(0, 8), b = make_sample(0, 9);
    for (int rank = 0; rank < 2; rank++) {
        o = options(dir);
        o.rank = rank, o.world = 2;
        write_samples(&o, rank ? &b : &a, 1, &e);
    }
    f += check_true("merge two ranks", shard_manifest_merge(dir, 2, &e) == 0, e.msg);
    f += expect_reject("verify finds a key in two shards", data_verify(dir, stdout, &e), &e, "s000-text",
                       "appears in train-000000.h5 (#0) and train-000001.h5 (#0)");
    sample_free(&a), sample_free(&b);
    return f;
}

static int check_inspect(void) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/rt-4-65536", ROOT);
    Error e = {{0}};
    char* out;
    int rc = run_captured(data_inspect, dir, &out, &e);
    printf("%s", out ? out : "");
    int f = check_true("inspect a dataset: counts, modalities, lengths, top tokens, media, first sample",
                       rc == 0 && strstr(out, "18 samples") && strstr(out, "modalities text,image,pixels,audio,timeseries,features") &&
                           strstr(out, "sample length (tokens): min") && strstr(out, "[placeholder]") &&
                           strstr(out, "media features  : 6 items") && strstr(out, "first sample: 's000-text'"),
                       e.msg);
    free(out);
    rc = run_captured(data_inspect, path_in(dir, "train-000000.h5"), &out, &e);
    f += check_true("inspect one shard file", rc == 0 && strstr(out, "1 shard file, 18 samples"), e.msg);
    free(out);
    f += expect_reject("inspect a missing path", data_inspect(path_in(dir, "none"), stdout, &e), &e, "none", "no such");
    return f;
}

int main(void) {
    remove_tree(ROOT);
    mkdir_p(ROOT, NULL);
    int f = 0;
    f += check_round_trip(4, 65536, "round trip, gzip 4, uint16 tokens: every sample byte-identical");
    f += check_round_trip(0, 65536, "round trip, uncompressed: every sample byte-identical");
    f += check_round_trip(1, 100000, "round trip, vocab 100000 (uint32 tokens, ids above 65535): byte-identical");
    f += check_rolling_by_samples();
    f += check_rolling_by_bytes();
    f += check_parallel_writers();
    f += check_determinism();
    f += check_validate_rejections();
    f += check_writer_rejections();
    f += check_corrupt_shards();
    f += check_manifest_and_verify();
    f += check_inspect();
    if (f == 0) remove_tree(ROOT);
    return test_summary("test_shards", f);
}

// test_shard_loader.c — the streaming shard loader (datasets/shard_loader.h) on real shards written by the shard
// writer: the rank assignment (every sample once per epoch over 1..4 ranks, disjoint, balanced, also with fewer
// shards than ranks), per-epoch reshuffling, exact resume after k batches (plain, packed, with images, across
// an epoch boundary), row layout (tokens, masked targets, padding to a multiple of 16, packing), images decoded
// and preprocessed on the prefetch thread, the memory bound, bad samples (error naming file and key, or counted
// warnings with skip_bad), long samples, option errors, and the text-trainer adapter (loader.h).
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "datasets/image.h"
#include "datasets/shard_loader.h"
#include "tests/testutil.h"

static char g_root[64];

// ---------------------------------------------------------------------------- datasets with known contents

enum { IMAGE_TOKENS = 4 };

// What the writer was given for sample i of a dataset (keys are "s%05d"; i is recovered from the key).
typedef struct Truth {
    uint32_t tokens[128];
    uint8_t mask[128];
    size_t n;
    uint8_t* image;   // PNG bytes of the sample's image (malloc'ed), or NULL
    size_t n_image;
} Truth;

static uint8_t g_digits[64][64];

static void load_digits(void) {
    const char* path = src_path("datasets/demo/digits.csv.gz");
    gzFile f = gzopen(path, "rb");
    if (!f) fatal("cannot open %s", path);
    char line[1024];
    for (int d = 0; d < 64; d++) {
        char* p = gzgets(f, line, sizeof line);
        for (int i = 0; p && i < 64; i++, p++) g_digits[d][i] = (uint8_t)(strtol(p, &p, 10) * 255 / 16);
        if (!p) fatal("%s: fewer than 64 digits", path);
    }
    gzclose(f);
}

typedef struct DataSpec {
    const char* name;
    int n_samples, per_shard;
    int images;          // every third sample has a digit image (PNG) at position 2
    int bad_image_at;    // this sample's image bytes are a truncated PNG (-1: none)
    int long_at;         // this sample has 100 tokens (-1: none)
} DataSpec;

enum { D_TEXT, D_ONE, D_IMAGES, D_BAD, D_LONG, D_TINY, D_BIG, N_SPECS };
static const DataSpec SPECS[N_SPECS] = {
    {"text", 53, 11, 0, -1, -1}, {"one", 10, 0, 0, -1, -1}, {"images", 23, 5, 1, -1, -1}, {"bad", 30, 7, 1, 6, -1},
    {"long", 6, 0, 0, -1, 3},    {"tiny", 3, 0, 0, -1, -1}, {"big", 300, 64, 0, -1, -1},
};

static int key_number(const char* key) { return atoi(key + 1); }

// Sample i: 3..31 text tokens (ids 1..250), the second half trained, maybe an image with IMAGE_TOKENS
// placeholders at position 2. Free t->image after use.
static void truth_of(const DataSpec* d, int i, Truth* t) {
    memset(t, 0, sizeof *t);
    t->n = i == d->long_at ? 100 : 3 + (size_t)(i * 7) % 29;
    for (size_t k = 0; k < t->n; k++) {
        t->tokens[k] = 1 + (uint32_t)(i * 13 + (int)k * 5) % 250;
        t->mask[k] = k >= t->n / 2;
    }
    if (!d->images || i % 3 != 0) return;
    memmove(t->tokens + 2 + IMAGE_TOKENS, t->tokens + 2, (t->n - 2) * sizeof *t->tokens);
    memmove(t->mask + 2 + IMAGE_TOKENS, t->mask + 2, t->n - 2);
    for (int k = 0; k < IMAGE_TOKENS; k++) {
        t->tokens[2 + k] = SHARD_PLACEHOLDER_IMAGE;
        t->mask[2 + k] = 0;
    }
    t->n += IMAGE_TOKENS;
    Error e = {{0}};
    if (image_encode_png(g_digits[i % 64], 8, 8, 1, &t->image, &t->n_image, &e) != 0) fatal("test: %s", e.msg);
    if (i == d->bad_image_at) t->n_image /= 2;
}

static const char* data_dir(const char* name) {
    static char buf[4][256];
    static int slot = 0;
    slot = (slot + 1) % 4;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", g_root, name);
    return buf[slot];
}

static void write_dataset(const DataSpec* d) {
    ShardWriterOptions o = {.dir = data_dir(d->name), .split = "train", .max_samples = d->per_shard, .compression = 1,
                            .tokenizer = "bytes", .vocab_size = 256, .source = "test_shard_loader", .world = 1};
    Error e = {{0}};
    ShardWriter* w = shard_writer_open(&o, &e);
    if (!w) fatal("test: %s", e.msg);
    for (int i = 0; i < d->n_samples; i++) {
        Truth t;
        truth_of(d, i, &t);
        char key[16];
        snprintf(key, sizeof key, "s%05d", i);
        MediaItem m = {.kind = MEDIA_IMAGE_ENCODED, .placeholder_pos = 2, .n_placeholder = IMAGE_TOKENS,
                       .bytes = t.image, .n_bytes = t.n_image};
        Sample s = {.key = key, .tokens = t.tokens, .loss_mask = t.mask, .n_tokens = t.n, .media = &m,
                    .n_media = t.image ? 1 : 0};
        if (shard_writer_add(w, &s, &e) != 0) fatal("test: %s", e.msg);
        free(t.image);
    }
    if (shard_writer_close(w, &e) != 0) fatal("test: %s", e.msg);
}

static int why_not(char* why, size_t n, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
static int why_not(char* why, size_t n, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return 0;
}

static ShardLoaderOptions options(const char* name, int rank, int size) {
    ShardLoaderOptions o;
    shard_loader_options_default(&o);
    o.dir = data_dir(name);
    o.dp_rank = rank;
    o.dp_size = size;
    o.seed = 1234;
    o.shuffle_buffer = 8;
    o.batch_size = 3;
    o.ctx_len = 128;
    o.prefetch = 2;
    return o;
}

static ShardLoader* open_or_die(const ShardLoaderOptions* o) {
    Error e = {{0}};
    ShardLoader* L = shard_loader_open(o, &e);
    if (!L) fatal("test: %s", e.msg);
    return L;
}

static ShardBatch* next_or_die(ShardLoader* L) {
    Error e = {{0}};
    ShardBatch* b = NULL;
    if (shard_loader_next(L, &b, &e) != 0) fatal("test: %s", e.msg);
    return b;
}

// Keys of epochs 0..last of one rank in order: reads until a batch ends past `last` (every sample of it was
// taken; skipped bad samples never show). Epoch e's keys go to keys + e * stride, their count to n[e].
static void read_epochs(ShardLoader* L, uint64_t last, int* keys, int stride, int* n) {
    memset(n, 0, (last + 1) * sizeof *n);
    for (int guard = 0; guard < 10000; guard++) {
        ShardBatch* b = next_or_die(L);
        for (int i = 0; i < b->n_samples; i++) {
            uint64_t e = b->samples[i].epoch;
            if (e <= last && n[e] < stride) keys[(int)e * stride + n[e]++] = key_number(b->samples[i].key);
        }
        int done = b->end.epoch > last;
        shard_batch_free(b);
        if (done) break;
    }
}

// Keys of a fresh loader's epoch 0.
static int read_epoch0(ShardLoader* L, int* keys, int stride) {
    int n = 0;
    read_epochs(L, 0, keys, stride, &n);
    return n;
}

// ---------------------------------------------------------------------------- assignment

static int test_assignment_arithmetic(void) {
    int fails = 0;
    const int64_t counts[5] = {7, 3, 12, 1, 9};   // 32 samples
    int ok_once = 1, ok_balanced = 1, ok_constant = 1, moved = 0;
    for (int D = 1; D <= 4; D++)
        for (uint64_t epoch = 0; epoch < 3; epoch++) {
            int seen[5][12] = {{0}};
            int64_t first_len = -1;
            for (int r = 0; r < D; r++) {
                ShardPiece* p = NULL;
                int n = shard_assign(counts, 5, 99, epoch, r, D, &p);
                int64_t len = 0;
                for (int i = 0; i < n; i++) {
                    for (int64_t k = p[i].first; k < p[i].first + p[i].count; k++) seen[p[i].shard][k]++;
                    len += p[i].count;
                }
                if (epoch == 0 && r == 0 && D == 1) moved = p[0].shard;
                if (epoch == 1 && r == 0 && D == 1) moved = moved != p[0].shard || n < 2;
                if (first_len < 0) first_len = len;
                ok_balanced &= len == 32 * (r + 1) / D - 32 * r / D;
                ok_constant &= len == 32 * (r + 1) / D - 32 * r / D;
                free(p);
            }
            for (int s = 0; s < 5; s++)
                for (int k = 0; k < 12; k++) ok_once &= seen[s][k] == (k < counts[s] ? 1 : 0);
        }
    fails += check_true("assignment: 1..4 ranks x 3 epochs cover every (shard, sample) exactly once", ok_once, "");
    fails += check_true("assignment: rank slices are floor(r*N/D)..floor((r+1)*N/D), the same every epoch",
                        ok_balanced && ok_constant, "");
    fails += check_true("assignment: the shard order changes between epochs", moved, "");

    const int64_t one[1] = {10};
    int seen1[10] = {0}, ok = 1;
    for (int r = 0; r < 4; r++) {
        ShardPiece* p = NULL;
        int n = shard_assign(one, 1, 5, 0, r, 4, &p);
        ok &= n == 1 && p[0].count >= 2 && p[0].count <= 3;
        for (int i = 0; i < n; i++)
            for (int64_t k = p[i].first; k < p[i].first + p[i].count; k++) seen1[k]++;
        free(p);
    }
    for (int k = 0; k < 10; k++) ok &= seen1[k] == 1;
    fails += check_true("assignment: 1 shard of 10 over 4 ranks = sample ranges of 2-3, each sample once", ok, "");
    return fails;
}

// All ranks read one epoch concurrently (one loader and prefetch thread each); the union must be the
// dataset exactly once.
static int check_epoch_union(const char* label, const char* name, int n_samples, int D, int shuffle) {
    ShardLoader* L[4];
    for (int r = 0; r < D; r++) {
        ShardLoaderOptions o = options(name, r, D);
        o.shuffle_buffer = shuffle;
        L[r] = open_or_die(&o);
    }
    int* keys = xmalloc((size_t)n_samples * 2 * sizeof *keys);
    int n = 0, per_rank_ok = 1;
    for (int r = 0; r < D; r++) {
        int got = read_epoch0(L[r], keys + n, n_samples);
        per_rank_ok &= (uint64_t)got == shard_loader_epoch_samples(L[r]) &&
                       got == n_samples * (r + 1) / D - n_samples * r / D;
        n += got;
    }
    int* count = xcalloc((size_t)n_samples, sizeof *count);
    int ok = n == n_samples;
    for (int i = 0; i < n; i++) ok &= keys[i] >= 0 && keys[i] < n_samples && ++count[keys[i]] == 1;
    char detail[96];
    snprintf(detail, sizeof detail, "%d keys read for %d samples", n, n_samples);
    int fails = check_true(label, ok && per_rank_ok, detail);
    for (int r = 0; r < D; r++) shard_loader_close(L[r]);
    free(keys);
    free(count);
    return fails;
}

static int test_epoch_union(void) {
    int fails = 0;
    for (int D = 1; D <= 4; D++) {
        char label[128];
        snprintf(label, sizeof label, "epoch 0 over %d rank(s), 53 samples in 5 shards: every key exactly once, "
                 "disjoint, balanced", D);
        fails += check_epoch_union(label, "text", 53, D, 8);
    }
    fails += check_epoch_union("1 shard of 10 samples over 4 ranks (split by sample ranges): every key once", "one",
                               10, 4, 8);
    fails += check_epoch_union("3 ranks without a shuffle buffer: every key once", "text", 53, 3, 0);
    return fails;
}

static int test_epochs_reshuffle(void) {
    ShardLoaderOptions o = options("text", 0, 1);
    ShardLoader* L = open_or_die(&o);
    int keys[2 * 53], n[2];
    read_epochs(L, 1, keys, 53, n);
    shard_loader_close(L);
    const int *a = keys, *b = keys + 53;
    int na = n[0], nb = n[1];
    int same_order = na == nb, same_set = na == 53 && nb == 53;
    int ca[53] = {0}, cb[53] = {0};
    for (int i = 0; i < na && i < nb; i++) {
        same_order &= a[i] == b[i];
        ca[a[i]]++, cb[b[i]]++;
    }
    for (int i = 0; i < 53; i++) same_set &= ca[i] == 1 && cb[i] == 1;
    return check_true("epochs 0 and 1 hold the same samples in a different order", same_set && !same_order, "");
}

// ---------------------------------------------------------------------------- resume

static int same_media(const BatchMedia* a, const BatchMedia* b) {
    if (a->kind != b->kind || a->row != b->row || a->placeholder_pos != b->placeholder_pos ||
        a->n_placeholder != b->n_placeholder || a->ndim != b->ndim || a->n_bytes != b->n_bytes)
        return 0;
    size_t n = 1;
    for (int d = 0; d < a->ndim; d++) {
        if (a->shape[d] != b->shape[d]) return 0;
        n *= (size_t)a->shape[d];
    }
    if ((a->data == NULL) != (b->data == NULL)) return 0;
    if (a->data && memcmp(a->data, b->data, n * sizeof(float)) != 0) return 0;
    return a->n_bytes == 0 || memcmp(a->bytes, b->bytes, a->n_bytes) == 0;
}

static int same_batch(const ShardBatch* a, const ShardBatch* b) {
    if (a->B != b->B || a->T != b->T || a->n_samples != b->n_samples || a->n_media != b->n_media) return 0;
    size_t n = (size_t)a->B * (size_t)a->T * sizeof(int32_t);
    if (memcmp(a->tokens, b->tokens, n) != 0 || memcmp(a->targets, b->targets, n) != 0) return 0;
    for (int i = 0; i < a->n_samples; i++) {
        const BatchSample *x = &a->samples[i], *y = &b->samples[i];
        if (strcmp(x->key, y->key) || x->row != y->row || x->start != y->start || x->length != y->length ||
            x->epoch != y->epoch || x->index != y->index)
            return 0;
    }
    for (int i = 0; i < a->n_media; i++)
        if (!same_media(&a->media[i], &b->media[i])) return 0;
    return a->end.epoch == b->end.epoch && a->end.index == b->end.index;
}

// Reads n batches uninterrupted; then for each k, a fresh loader set to batch k-1's end position must give
// batches k..n-1 exactly.
static int check_resume(const char* label, const ShardLoaderOptions* o, int n) {
    ShardLoader* L = open_or_die(o);
    ShardBatch** ref = xmalloc((size_t)n * sizeof *ref);
    for (int i = 0; i < n; i++) ref[i] = next_or_die(L);
    int epochs_crossed = ref[n - 1]->end.epoch > 0;
    shard_loader_close(L);
    int ok = 1;
    const int ks[4] = {1, 2, n / 2, n - 2};
    for (int j = 0; j < 4; j++) {
        int k = ks[j];
        ShardLoader* R = open_or_die(o);
        Error e = {{0}};
        if (shard_loader_set_position(R, ref[k - 1]->end, &e) != 0) fatal("test: %s", e.msg);
        for (int i = k; i < n; i++) {
            ShardBatch* b = next_or_die(R);
            ok &= same_batch(b, ref[i]);
            shard_batch_free(b);
        }
        ShardPosition p = shard_loader_get_position(R);
        ok &= p.epoch == ref[n - 1]->end.epoch && p.index == ref[n - 1]->end.index;
        shard_loader_close(R);
    }
    for (int i = 0; i < n; i++) shard_batch_free(ref[i]);
    free(ref);
    char detail[64];
    snprintf(detail, sizeof detail, "%s", epochs_crossed ? "" : "the run did not reach epoch 1");
    return check_true(label, ok && epochs_crossed, detail);
}

static int test_resume(void) {
    int fails = 0;
    ShardLoaderOptions o = options("images", 1, 2);
    o.image_size = 16;
    fails += check_resume("resume after k = 1, 2, 7, 12 of 14 batches (rank 1 of 2, images) == uninterrupted", &o, 14);
    o = options("text", 0, 3);
    o.pack = 1;
    o.ctx_len = 48;
    o.batch_size = 2;
    fails += check_resume("resume with packed rows (rank 0 of 3) == uninterrupted", &o, 16);
    o = options("text", 2, 4);
    o.shuffle_buffer = 64;   // larger than the rank's slice
    fails += check_resume("resume with a shuffle buffer larger than the slice (rank 2 of 4) == uninterrupted", &o, 12);
    return fails;
}

// ---------------------------------------------------------------------------- rows

// Every sample's columns hold its tokens, targets follow the rule, and the rest of the row is padding.
static int check_rows(const DataSpec* d, const ShardBatch* b, int ctx_len, int pack, char* why, size_t why_n) {
    int longest = 0;
    for (int r = 0; r < b->B; r++) {
        int end = 0;
        for (int i = 0; i < b->n_samples; i++) {
            const BatchSample* s = &b->samples[i];
            if (s->row != r) continue;
            Truth t;
            truth_of(d, key_number(s->key), &t);
            free(t.image);
            if (s->start != end || (!pack && s->start != 0) || (size_t)s->length != t.n)
                return why_not(why, why_n, "sample %s at column %d (expected %d)", s->key, s->start, end);
            for (int k = 0; k < s->length; k++) {
                int32_t x = b->tokens[r * b->T + s->start + k], y = b->targets[r * b->T + s->start + k];
                int32_t want_y = k + 1 < s->length && t.mask[k + 1] ? (int32_t)t.tokens[k + 1] : -1;
                if (x != (int32_t)t.tokens[k] || y != want_y)
                    return why_not(why, why_n, "sample %s token %d: (%d, %d) want (%u, %d)", s->key, k, x, y,
                                   t.tokens[k], want_y);
            }
            end += s->length;
        }
        for (int c = end; c < b->T; c++)
            if (b->tokens[r * b->T + c] != 0 || b->targets[r * b->T + c] != -1)
                return why_not(why, why_n, "row %d column %d is not padding", r, c);
        if (end > longest) longest = end;
    }
    int want_T = (longest + 15) / 16 * 16;
    if (want_T > ctx_len) want_T = ctx_len;
    if (b->T != want_T) return why_not(why, why_n, "T = %d, want %d", b->T, want_T);
    return 1;
}

static int check_row_layout(const char* label, const ShardLoaderOptions* o, int n_batches) {
    ShardLoader* L = open_or_die(o);
    int ok = 1, several_per_row = 0;
    char why[160] = "";
    for (int i = 0; i < n_batches && ok; i++) {
        ShardBatch* b = next_or_die(L);
        ok = check_rows(&SPECS[D_TEXT], b, o->ctx_len, o->pack, why, sizeof why);
        several_per_row |= b->n_samples > b->B;
        shard_batch_free(b);
    }
    shard_loader_close(L);
    if (o->pack && ok && !several_per_row) ok = why_not(why, sizeof why, "no row held two samples");
    return check_true(label, ok, why);
}

static int test_row_layout(void) {
    int fails = 0;
    ShardLoaderOptions o = options("text", 0, 1);
    fails += check_row_layout("rows: tokens, targets = next token where trained else -1, padding 0/-1, T = longest "
                              "row rounded up to 16", &o, 20);
    o.pack = 1;
    o.ctx_len = 64;
    fails += check_row_layout("packed rows (ctx 64): samples back to back, no target crosses a sample", &o, 20);
    o.fixed_len = 1;
    o.pack = 0;
    ShardLoader* L = open_or_die(&o);
    ShardBatch* b = next_or_die(L);
    fails += check_true("fixed_len: T = ctx_len", b->T == 64, "");
    shard_batch_free(b);
    shard_loader_close(L);
    return fails;
}

// ---------------------------------------------------------------------------- images

static int test_images(void) {
    const float mean[3] = {0.5f, 0.4f, 0.3f}, std[3] = {0.25f, 0.5f, 0.2f};
    ShardLoaderOptions o = options("images", 0, 1);
    o.image_size = 16;
    o.image_mode = "pad";
    memcpy(o.image_mean, mean, sizeof mean);
    memcpy(o.image_std, std, sizeof std);
    ShardLoader* L = open_or_die(&o);
    int n_images = 0, ok = 1;
    float want[3 * 16 * 16];
    for (int i = 0; i < 10; i++) {
        ShardBatch* b = next_or_die(L);
        for (int m = 0; m < b->n_media; m++) {
            const BatchMedia* x = &b->media[m];
            const BatchSample* s = NULL;
            for (int k = 0; k < b->n_samples; k++)
                if (b->samples[k].row == x->row) s = &b->samples[k];
            Truth t;
            truth_of(&SPECS[D_IMAGES], key_number(s->key), &t);
            Image im;
            Error e = {{0}};
            if (image_decode(t.image, t.n_image, &im, "truth", &e) != 0 ||
                image_preprocess(&im, 16, "pad", mean, std, want, &e) != 0)
                fatal("test: %s", e.msg);
            image_free(&im);
            free(t.image);
            ok &= x->ndim == 3 && x->shape[0] == 3 && x->shape[1] == 16 && x->shape[2] == 16 &&
                  memcmp(x->data, want, sizeof want) == 0 && x->placeholder_pos == s->start + 2 &&
                  x->n_placeholder == IMAGE_TOKENS;
            for (int k = 0; k < IMAGE_TOKENS; k++)
                ok &= b->tokens[x->row * b->T + x->placeholder_pos + k] == SHARD_PLACEHOLDER_IMAGE;
            n_images++;
        }
        shard_batch_free(b);
    }
    shard_loader_close(L);
    printf("images: %d checked\n", n_images);
    int fails = check_true("images: (3,16,16) pad-preprocessed on the prefetch thread == image_preprocess of the "
                           "stored PNG; placeholders at the media position", ok && n_images >= 8, "");

    o.image_size = 0;
    L = open_or_die(&o);
    ok = 1;
    n_images = 0;
    for (int i = 0; i < 5; i++) {
        ShardBatch* b = next_or_die(L);
        for (int m = 0; m < b->n_media; m++) {
            Truth t = {.n = 0};
            for (int k = 0; k < b->n_samples; k++)
                if (b->samples[k].row == b->media[m].row) truth_of(&SPECS[D_IMAGES], key_number(b->samples[k].key), &t);
            ok &= b->media[m].data == NULL && t.image && b->media[m].n_bytes == t.n_image &&
                  memcmp(b->media[m].bytes, t.image, t.n_image) == 0;
            free(t.image);
            n_images++;
        }
        shard_batch_free(b);
    }
    shard_loader_close(L);
    fails += check_true("images with image_size 0 are handed over as the stored bytes", ok && n_images > 0, "");
    return fails;
}

// Audio, time series and cached features (fp16 and fp32) reach the batch as float arrays of their shapes.
static int test_other_media(void) {
    const char* dir = data_dir("media");
    ShardWriterOptions wo = {.dir = dir, .split = "train", .compression = 1, .tokenizer = "bytes", .vocab_size = 256,
                             .source = "test_shard_loader", .world = 1};
    Error e = {{0}};
    ShardWriter* w = shard_writer_open(&wo, &e);
    int16_t pcm[5] = {0, 16384, -32768, 32767, -1};
    float series[6] = {1.5f, -2, 0.25f, 3, 1e-3f, -7};   // (3, 2)
    uint16_t f16[6] = {0x3c00, 0xc000, 0x3555, 0x0001, 0x7bff, 0x8000};   // (2, 3)
    float f16_want[6] = {1.0f, -2.0f, 0.333251953125f, 5.9604644775390625e-8f, 65504.0f, -0.0f};
    float f32[6] = {0.5f, 1, 2, 4, 8, 16};
    MediaItem items[4] = {
        {.kind = MEDIA_AUDIO_PCM, .pcm = pcm, .n_samples = 5},
        {.kind = MEDIA_TIMESERIES, .series = series, .length = 3, .channels = 2},
        {.kind = MEDIA_FEATURES, .feat = f16, .n_feat_tokens = 2, .dim = 3, .feat_dtype_bytes = 2},
        {.kind = MEDIA_FEATURES, .feat = f32, .n_feat_tokens = 2, .dim = 3, .feat_dtype_bytes = 4},
    };
    const uint32_t ids[4] = {SHARD_PLACEHOLDER_AUDIO, SHARD_PLACEHOLDER_TIMESERIES, SHARD_PLACEHOLDER_IMAGE,
                             SHARD_PLACEHOLDER_AUDIO};
    for (int i = 0; w && i < 4; i++) {
        uint32_t tokens[6] = {7, ids[i], ids[i], 8, 9, 10};
        uint8_t mask[6] = {0, 0, 0, 1, 1, 1};
        items[i].placeholder_pos = 1;
        items[i].n_placeholder = 2;
        char key[16];
        snprintf(key, sizeof key, "m%d", i);
        Sample smp = {.key = key, .tokens = tokens, .loss_mask = mask, .n_tokens = 6, .media = &items[i], .n_media = 1};
        if (shard_writer_add(w, &smp, &e) != 0) fatal("test: %s", e.msg);
    }
    if (!w || shard_writer_close(w, &e) != 0) fatal("test: %s", e.msg);
    ShardLoaderOptions o = options("media", 0, 1);
    o.shuffle_buffer = 0;
    o.batch_size = 4;
    ShardLoader* L = open_or_die(&o);
    ShardBatch* b = next_or_die(L);
    int fails = 0;
    for (int m = 0; m < b->n_media; m++) {
        const BatchMedia* x = &b->media[m];
        int i = atoi(b->samples[x->row].key + 1);
        float want[6];
        size_t n = 6;
        const char* label = "cached fp32 features (2, 3) as stored";
        if (i == 0) {
            n = 5;
            label = "audio int16 PCM (5) as float / 32768";
            for (int k = 0; k < 5; k++) want[k] = (float)pcm[k] / 32768.0f;
        } else if (i == 1) {
            label = "time series (3, 2) as stored";
            memcpy(want, series, sizeof series);
        } else if (i == 2) {
            label = "cached fp16 features (2, 3) as float (1, -2, 1/3, 2^-24, 65504, -0)";
            memcpy(want, f16_want, sizeof want);
        } else {
            memcpy(want, f32, sizeof f32);
        }
        int64_t elems = x->ndim == 1 ? x->shape[0] : x->shape[0] * x->shape[1];
        int shape_ok = (size_t)elems == n && x->ndim == (i == 0 ? 1 : 2) && x->placeholder_pos == 1 &&
                       x->n_placeholder == 2;
        fails += shape_ok ? check_close_abs(label, x->data, want, n, 0.0) : check_true(label, 0, "wrong shape");
    }
    fails += check_true("4 media kinds in one batch", b->n_media == 4, "");
    shard_batch_free(b);
    shard_loader_close(L);
    return fails;
}

// ---------------------------------------------------------------------------- memory bound

static int check_memory_bound(const char* name, int n_samples) {
    ShardLoaderOptions o = options(name, 0, 1);
    o.shuffle_buffer = 16;
    o.prefetch = 2;
    o.batch_size = 4;
    ShardLoader* L = open_or_die(&o);
    ShardBatch* b = next_or_die(L);
    shard_batch_free(b);
    // the prefetch thread fills its queue and buffer meanwhile: wait for it (up to 20 s on a loaded machine)
    struct timespec pause = {0, 20 * 1000 * 1000};
    ShardLoaderStats full = shard_loader_stats(L);
    for (int i = 0; i < 1000 && full.live_samples < 16; i++) {
        nanosleep(&pause, NULL);
        full = shard_loader_stats(L);
    }
    int keys[2 * 300], n[2];
    read_epochs(L, 1, keys, 300, n);
    ShardLoaderStats s = shard_loader_stats(L);
    shard_loader_close(L);
    int64_t bound = 16 + 2 * 4;
    printf("memory (%d samples): %lld held while idle, peak %lld over 2 epochs (%lld read), bound %lld\n", n_samples,
           (long long)full.live_samples, (long long)s.peak_live_samples, (long long)s.samples_read, (long long)bound);
    char label[128];
    snprintf(label, sizeof label, "memory: %d-sample dataset: peak held <= shuffle 16 + prefetch 2 x batch 4, and the "
             "buffer is really used", n_samples);
    return check_true(label, s.peak_live_samples <= bound && full.live_samples >= 16 && s.samples_read >= 2 * n_samples,
                      "");
}

// ---------------------------------------------------------------------------- bad and long samples

// Calls shard_loader_next up to `calls` times (freeing each batch) and returns the last rc: -1 with e filled
// once the loader has stopped on an error.
static int next_until_error(ShardLoader* L, int calls, Error* e) {
    int rc = 0;
    for (int i = 0; i < calls && rc == 0; i++) {
        ShardBatch* b = NULL;
        rc = shard_loader_next(L, &b, e);
        shard_batch_free(b);
    }
    return rc;
}

// Epoch 0 of o's dataset read with skip_bad on, warnings going to log: its keys (up to 64) and the stats.
static int read_epoch0_skipping_bad(ShardLoaderOptions o, FILE* log, int* keys, ShardLoaderStats* s) {
    o.skip_bad = 1;
    o.log = log;
    ShardLoader* L = open_or_die(&o);
    int n = read_epoch0(L, keys, 64);
    *s = shard_loader_stats(L);
    shard_loader_close(L);
    return n;
}

static int test_bad_samples(void) {
    int fails = 0;
    ShardLoaderOptions o = options("bad", 0, 1);
    o.image_size = 8;
    ShardLoader* L = open_or_die(&o);
    Error e = {{0}};
    int rc = next_until_error(L, 40, &e);
    fails += expect_reject("an undecodable image stops the loader with the file and key", rc, &e, "s00006", ".h5");
    ShardBatch* b = NULL;
    rc = shard_loader_next(L, &b, &e);
    fails += check_true("... and the loader keeps failing after it", rc == -1 && b == NULL, "");
    shard_loader_close(L);

    FILE* log = tmpfile();
    int keys[64];
    ShardLoaderStats s;
    int n = read_epoch0_skipping_bad(o, log, keys, &s);   // the bad sample is taken but never shows in a batch
    rewind(log);
    char line[1200];
    int warnings = 0, summary = 0;
    while (fgets(line, sizeof line, log)) {
        warnings += strstr(line, "s00006") && strstr(line, "skipped, bad sample 1") != NULL;
        summary += strstr(line, "skipped 1 bad samples") != NULL;
        printf("  log: %s", line);
    }
    fclose(log);
    int seen_bad = 0;
    for (int i = 0; i < n; i++) seen_bad |= keys[i] == 6;
    fails += check_true("skip_bad: one warning naming the sample, a summary at close, the other 29 samples delivered",
                        warnings == 1 && summary == 1 && s.bad_samples == 1 && n == 29 && !seen_bad, "");
    return fails;
}

// A shard cut in half (a copy of "text" whose third shard lost its second half): every sample of it is bad.
static int test_truncated_shard(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp -r %s %s", data_dir("text"), data_dir("cut"));
    if (system(cmd) != 0) fatal("test: %s failed", cmd);
    char shard[300];
    snprintf(shard, sizeof shard, "%s/train-000002.h5", data_dir("cut"));
    FILE* f = fopen(shard, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) fatal("test: cannot open %s", shard);
    long size = ftell(f);
    fclose(f);
    if (truncate(shard, size / 2) != 0) fatal("test: cannot truncate %s", shard);

    ShardLoaderOptions o = options("cut", 0, 1);
    ShardLoader* L = open_or_die(&o);
    Error e = {{0}};
    int rc = next_until_error(L, 40, &e);
    int fails = expect_reject("a truncated shard stops the loader with the shard's name", rc, &e, "train-000002.h5",
                              NULL);
    shard_loader_close(L);

    FILE* log = tmpfile();
    int keys[64];
    ShardLoaderStats s;
    int n = read_epoch0_skipping_bad(o, log, keys, &s);
    fclose(log);
    char detail[96];
    snprintf(detail, sizeof detail, "%d delivered, %lld skipped", n, (long long)s.bad_samples);
    fails += check_true("skip_bad: the truncated shard's 11 samples are skipped, the other 42 delivered",
                        n == 42 && s.bad_samples == 11, detail);
    return fails;
}

static int test_long_samples(void) {
    int fails = 0;
    ShardLoaderOptions o = options("long", 0, 1);
    o.ctx_len = 64;
    o.shuffle_buffer = 0;
    o.batch_size = 1;
    ShardLoader* L = open_or_die(&o);
    Error e = {{0}};
    int rc = next_until_error(L, 20, &e);
    fails += expect_reject("a 100-token sample with ctx_len 64 is refused", rc, &e, "s00003", "ctx_len");
    shard_loader_close(L);

    o.truncate = 1;
    L = open_or_die(&o);
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        ShardBatch* b = next_or_die(L);
        if (key_number(b->samples[0].key) == 3) {
            Truth t;
            truth_of(&SPECS[D_LONG], 3, &t);
            ok = b->samples[0].truncated && b->samples[0].length == 64 && b->T == 64 && b->targets[63] == -1;
            for (int k = 0; k < 64; k++) ok &= b->tokens[k] == (int32_t)t.tokens[k];
        }
        shard_batch_free(b);
    }
    shard_loader_close(L);
    fails += check_true("with truncate, it is cut to ctx_len 64 tokens (last target masked)", ok, "");
    return fails;
}

// ---------------------------------------------------------------------------- option errors

static int test_option_errors(void) {
    int fails = 0;
    Error e = {{0}};
    ShardLoaderOptions o = options("missing", 0, 1);
    fails += expect_reject("a directory without manifest.json", shard_loader_open(&o, &e) ? 0 : -1, &e, "missing",
                           NULL);
    o = options("text", 4, 4);
    fails += expect_reject("rank 4 of 4", shard_loader_open(&o, &e) ? 0 : -1, &e, "text", "rank");
    o = options("tiny", 0, 4);
    fails += expect_reject("3 samples over 4 ranks", shard_loader_open(&o, &e) ? 0 : -1, &e, "tiny", "ranks");
    o = options("text", 0, 1);
    o.image_size = 16;
    o.image_mode = "crop";
    fails += expect_reject("image mode 'crop'", shard_loader_open(&o, &e) ? 0 : -1, &e, "crop", NULL);
    o = options("text", 0, 2);
    ShardLoader* L = open_or_die(&o);
    fails += expect_reject("set_position past the rank's epoch",
                           shard_loader_set_position(L, (ShardPosition){0, 27}, &e), &e, "text", "27");
    shard_loader_close(L);
    return fails;
}

// ---------------------------------------------------------------------------- the text-trainer adapter

static int test_text_adapter(void) {
    int fails = 0;
    ShardLoaderOptions o = options("text", 1, 2);
    o.batch_size = 2;
    o.ctx_len = 32;
    o.pack = 1;
    Error e = {{0}};
    DataLoader* dl = shard_loader_text_adapter(&o, &e);
    if (!dl) fatal("test: %s", e.msg);
    Batch ref[8];
    uint64_t pos[8];
    int ok = 1;
    for (int i = 0; i < 8; i++) {
        batch_alloc(&ref[i], 2, 32);
        ok &= dl->next_batch(dl, &ref[i], &e) == 0;
        pos[i] = dl->get_position(dl);
    }
    dl->destroy(dl);
    int grows = 1;
    for (int i = 1; i < 8; i++) grows &= pos[i] > pos[i - 1];
    fails += check_true("adapter: 8 batches of 2 x 32 (packed), the position grows", ok && grows && pos[0] > 0, e.msg);
    dl = shard_loader_text_adapter(&o, &e);
    dl->set_position(dl, pos[2]);
    Batch b;
    batch_alloc(&b, 2, 32);
    for (int i = 3; i < 8; i++) {
        ok &= dl->next_batch(dl, &b, &e) == 0 && memcmp(b.tokens, ref[i].tokens, 64 * 4) == 0 &&
              memcmp(b.targets, ref[i].targets, 64 * 4) == 0;
    }
    fails += check_true("adapter: set_position(get_position after 3 batches) continues with batches 4..8", ok, e.msg);
    batch_free(&b);
    batch_alloc(&b, 2, 16);
    fails += expect_reject("adapter: a 2 x 16 batch for a 2 x 32 loader", dl->next_batch(dl, &b, &e), &e, "text", "32");
    batch_free(&b);
    dl->destroy(dl);
    for (int i = 0; i < 8; i++) batch_free(&ref[i]);

    o = options("images", 0, 1);
    o.batch_size = 2;
    o.ctx_len = 64;
    dl = shard_loader_text_adapter(&o, &e);
    batch_alloc(&b, 2, 64);
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++) rc = dl->next_batch(dl, &b, &e);
    fails += expect_reject("adapter: image-text shards are refused by the text trainer", rc, &e, ".h5", "text-only");
    batch_free(&b);
    dl->destroy(dl);
    return fails;
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/test_shard_loader_XXXXXX");
    if (!mkdtemp(g_root)) fatal("cannot create a temporary directory");
    load_digits();
    for (int i = 0; i < N_SPECS; i++) write_dataset(&SPECS[i]);
    int fails = 0;
    fails += test_assignment_arithmetic();
    fails += test_epoch_union();
    fails += test_epochs_reshuffle();
    fails += test_resume();
    fails += test_row_layout();
    fails += test_images();
    fails += test_other_media();
    fails += check_memory_bound("text", 53);
    fails += check_memory_bound("big", 300);
    fails += test_bad_samples();
    fails += test_truncated_shard();
    fails += test_long_samples();
    fails += test_option_errors();
    fails += test_text_adapter();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_root);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_root);
    return test_summary("test_shard_loader", fails);
}

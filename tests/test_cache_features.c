// test_cache_features.c — the feature cache (trainer/cache_features.h) with the stand-in linear encoder on a
// small dataset of every media kind, spread over three shards:
//   - the copy keeps keys, tokens, loss masks, placeholder ranges, the split and the shard boundaries;
//   - every image / pixels / audio / time-series item becomes features of shape (n_placeholder, dim) equal to
//     the encoder's output (float32 exactly; float16 = the rounded float32, bit for bit);
//   - the stand-in encoder: documented token counts, linear, scale-preserving, seeded;
//   - caching a cached dataset copies the features unchanged;
//   - an encoder whose token count differs from the placeholders fails with a message naming the sample key,
//     and leaves no manifest; so do a missing input and out_dir == in_dir;
//   - float16 conversion: known values and the round trip of every half.
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/image.h"
#include "datasets/shard.h"
#include "tests/testutil.h"
#include "trainer/cache_features.h"

enum { DIM = 32, IMAGE_TOKENS = 64, SHARD_SAMPLES = 2 };

// ---------------------------------------------------------------------------------------------------- temp dirs

static int remove_entry(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_rf(const char* dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

static int file_exists(const char* path) { return access(path, F_OK) == 0; }

// ---------------------------------------------------------------------------------------------------- the input

// tokens: 3 user tokens, then for each item its placeholders and 1 user token, then 2 trained tokens.
static void layout_tokens(Sample* s, const uint32_t* placeholder_ids) {
    size_t n = 3 + 2;
    for (int k = 0; k < s->n_media; k++) n += (size_t)s->media[k].n_placeholder + 1;
    s->tokens = xmalloc(n * sizeof *s->tokens);
    s->loss_mask = xcalloc(n, 1);
    size_t t = 0;
    for (int i = 0; i < 3; i++) s->tokens[t++] = 100 + (uint32_t)i;
    for (int k = 0; k < s->n_media; k++) {
        s->media[k].placeholder_pos = (int32_t)t;
        for (int j = 0; j < s->media[k].n_placeholder; j++) s->tokens[t++] = placeholder_ids[k];
        s->tokens[t++] = 200 + (uint32_t)k;
    }
    for (int i = 0; i < 2; i++) {
        s->loss_mask[t] = 1;
        s->tokens[t++] = 300 + (uint32_t)i;
    }
    s->n_tokens = n;
}

static MediaItem png_item(int size, Error* e) {
    uint8_t* grey = xmalloc((size_t)size * size);
    for (int i = 0; i < size * size; i++) grey[i] = (uint8_t)((i * 37) % 251);
    MediaItem m = {.kind = MEDIA_IMAGE_ENCODED, .n_placeholder = IMAGE_TOKENS};
    if (image_encode_png(grey, size, size, 1, &m.bytes, &m.n_bytes, e) != 0) fatal("png: %s", e->msg);
    free(grey);
    return m;
}

static MediaItem pixels_item(void) {
    MediaItem m = {.kind = MEDIA_IMAGE_PIXELS, .n_placeholder = IMAGE_TOKENS, .height = 10, .width = 12, .channels = 3};
    m.pixels = xmalloc(10 * 12 * 3);
    for (int i = 0; i < 10 * 12 * 3; i++) m.pixels[i] = (uint8_t)(i * 7);
    return m;
}

static MediaItem audio_item(size_t n) {   // a 440 Hz tone at 16 kHz: ceil(n / 320) tokens
    MediaItem m = {.kind = MEDIA_AUDIO_PCM, .n_placeholder = (int32_t)((n + 319) / 320), .n_samples = n};
    m.pcm = xmalloc(n * sizeof *m.pcm);
    for (size_t i = 0; i < n; i++) m.pcm[i] = (int16_t)lrint(8000.0 * sin(2 * M_PI * 440.0 * (double)i / 16000.0));
    return m;
}

static MediaItem series_item(int length, int channels) {   // ceil(length / 16) tokens
    MediaItem m = {.kind = MEDIA_TIMESERIES, .n_placeholder = (length + 15) / 16, .length = length,
                   .channels = channels};
    m.series = xmalloc((size_t)length * channels * sizeof *m.series);
    for (int i = 0; i < length * channels; i++) m.series[i] = sinf(0.1f * (float)i);
    return m;
}

static uint32_t placeholder_of(MediaKind k) {
    if (k == MEDIA_AUDIO_PCM) return SHARD_PLACEHOLDER_AUDIO;
    if (k == MEDIA_TIMESERIES) return SHARD_PLACEHOLDER_TIMESERIES;
    return SHARD_PLACEHOLDER_IMAGE;
}

static void make_sample(Sample* s, const char* key, MediaItem* items, int n) {
    uint32_t ids[4];
    s->key = xstrdup(key);
    s->n_media = n;
    s->media = n ? xmalloc((size_t)n * sizeof *s->media) : NULL;
    for (int k = 0; k < n; k++) {
        s->media[k] = items[k];
        ids[k] = placeholder_of(items[k].kind);
    }
    layout_tokens(s, ids);
}

// Six samples in three shards of two: png, pixels | audio, series | text only, png + audio.
static void write_input(const char* dir) {
    Error e = {{0}};
    ShardWriterOptions wo = {.dir = dir, .split = "train", .max_samples = SHARD_SAMPLES, .compression = 1,
                             .tokenizer = "world", .vocab_size = 65536, .source = "test_cache_features", .world = 1};
    ShardWriter* w = shard_writer_open(&wo, &e);
    if (!w) fatal("%s", e.msg);
    for (int i = 0; i < 6; i++) {
        Sample s = {0};
        MediaItem items[2];
        int n = 0;
        if (i == 0 || i == 5) items[n++] = png_item(20, &e);
        if (i == 1) items[n++] = pixels_item();
        if (i == 2 || i == 5) items[n++] = audio_item(i == 2 ? 8000 : 5000);
        if (i == 3) items[n++] = series_item(40, 3);
        const char* keys[6] = {"img-png", "img-pixels", "audio-tone", "series-sine", "text-only", "png-and-audio"};
        make_sample(&s, keys[i], items, n);
        if (shard_writer_add(w, &s, &e) != 0) fatal("%s", e.msg);
        sample_free(&s);
    }
    if (shard_writer_close(w, &e) != 0) fatal("%s", e.msg);
}

// ---------------------------------------------------------------------------------------------------- comparing

typedef struct Diff {
    int samples, structure, values;   // samples compared; structural and value mismatches
    char first[256];
} Diff;

static void note(Diff* d, int* counter, const char* key, const char* what) {
    if (!*counter && !d->structure && !d->values) snprintf(d->first, sizeof d->first, "%.100s: %.140s", key, what);
    (*counter)++;
}

static void compare_item(const MediaItem* in, const MediaItem* out, const LinearStandInEncoder* enc, int f16,
                         const char* key, Diff* d) {
    int expect_encoded = in->kind != MEDIA_FEATURES;
    if (out->kind != MEDIA_FEATURES || out->placeholder_pos != in->placeholder_pos ||
        out->n_placeholder != in->n_placeholder || out->n_feat_tokens != in->n_placeholder || out->dim != DIM) {
        note(d, &d->structure, key, "features item kind / placeholder range / shape");
        return;
    }
    if (!expect_encoded) {   // copied
        size_t bytes = (size_t)in->n_feat_tokens * in->dim * in->feat_dtype_bytes;
        if (out->feat_dtype_bytes != in->feat_dtype_bytes || memcmp(out->feat, in->feat, bytes) != 0)
            note(d, &d->values, key, "copied features differ");
        return;
    }
    if (out->feat_dtype_bytes != (f16 ? 2 : 4)) {
        note(d, &d->structure, key, "feature dtype");
        return;
    }
    float* want = NULL;
    int n_tok = 0, dim = 0;
    Error e = {{0}};
    if (linear_standin_encode((void*)enc, in, &want, &n_tok, &dim, &e) != 0) {
        note(d, &d->values, key, e.msg);
        return;
    }
    size_t n = (size_t)n_tok * dim;
    for (size_t i = 0; i < n; i++) {
        int same = f16 ? ((const uint16_t*)out->feat)[i] == feature_f16_from_float(want[i])
                       : ((const float*)out->feat)[i] == want[i];
        if (!same) {
            note(d, &d->values, key, "feature value differs from the encoder's");
            break;
        }
    }
    free(want);
}

static void compare_sample(const Sample* a, const Sample* b, const LinearStandInEncoder* enc, int f16, Diff* d) {
    d->samples++;
    if (strcmp(a->key, b->key) != 0 || a->n_tokens != b->n_tokens || a->n_media != b->n_media ||
        memcmp(a->tokens, b->tokens, a->n_tokens * sizeof *a->tokens) != 0 ||
        memcmp(a->loss_mask, b->loss_mask, a->n_tokens) != 0) {
        note(d, &d->structure, a->key, "key / tokens / loss mask / media count differ");
        return;
    }
    for (int k = 0; k < a->n_media; k++) compare_item(&a->media[k], &b->media[k], enc, f16, a->key, d);
}

static char* path2(const char* dir, const char* name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

// Same split and shard boundaries; every sample of shard i of `in` matches sample j of shard i of `out`.
static Diff compare_datasets(const char* in, const char* out, const LinearStandInEncoder* enc, int f16) {
    Diff d = {0};
    Manifest mi, mo;
    Error e = {{0}};
    if (manifest_read(in, &mi, &e) != 0) fatal("%s", e.msg);
    if (manifest_read(out, &mo, &e) != 0) {
        manifest_free(&mi);
        d.structure = 1;
        snprintf(d.first, sizeof d.first, "%.200s", e.msg);
        return d;
    }
    if (mi.n_shards != mo.n_shards || strcmp(mi.split, mo.split) != 0 || mi.n_samples != mo.n_samples)
        note(&d, &d.structure, out, "manifest: split / shard count / sample count differ");
    for (int i = 0; i < mi.n_shards && !d.structure; i++) {
        char *pa = path2(in, mi.shards[i].file), *pb = path2(out, mo.shards[i].file);
        ShardReader *ra = shard_reader_open(pa, &e), *rb = shard_reader_open(pb, &e);
        if (!ra || !rb || shard_reader_count(ra) != shard_reader_count(rb))
            note(&d, &d.structure, pb, "shard missing or of a different size");
        for (int64_t j = 0; ra && rb && j < shard_reader_count(ra) && !d.structure; j++) {
            Sample a = {0}, b = {0};
            if (shard_reader_get(ra, j, &a, &e) != 0 || shard_reader_get(rb, j, &b, &e) != 0)
                note(&d, &d.structure, pb, e.msg);
            else
                compare_sample(&a, &b, enc, f16, &d);
            sample_free(&a);
            sample_free(&b);
        }
        if (ra) shard_reader_close(ra);
        if (rb) shard_reader_close(rb);
        free(pa);
        free(pb);
    }
    manifest_free(&mi);
    manifest_free(&mo);
    return d;
}

static int check_copy(const char* name, const char* in, const char* out, const LinearStandInEncoder* enc, int f16) {
    Diff d = compare_datasets(in, out, enc, f16);
    char detail[400];
    snprintf(detail, sizeof detail, "%d samples, %d structural and %d value mismatches; first: %s", d.samples,
             d.structure, d.values, d.first);
    printf("  %s: %d samples compared\n", name, d.samples);
    return check_true(name, d.samples == 6 && d.structure == 0 && d.values == 0, detail);
}

// ---------------------------------------------------------------------------------------------------- the encoder

static float* encode_or_die(const LinearStandInEncoder* enc, const MediaItem* m, int* n_tok) {
    float* feat = NULL;
    int dim = 0;
    Error e = {{0}};
    if (linear_standin_encode((void*)enc, m, &feat, n_tok, &dim, &e) != 0 || dim != enc->dim)
        fatal("encode: %s", e.msg);
    return feat;
}

// Token counts follow the documented formulas; the map is linear, keeps the input's scale (E[y^2] = E[x^2] for
// uniform weights of variance 1 / fan_in) and depends on the seed.
static int check_standin(const LinearStandInEncoder* enc) {
    int failures = 0, n_a, n_b, n_sum, n_other, n_img, n_series, n_odd;
    MediaItem a = audio_item(8000), b = audio_item(8000), sum = audio_item(8000), odd = audio_item(8001);
    for (size_t i = 0; i < 8000; i++) {
        b.pcm[i] = (int16_t)((i * 7919) % 2001 - 1000);
        sum.pcm[i] = (int16_t)(a.pcm[i] + b.pcm[i]);
    }
    float* fa = encode_or_die(enc, &a, &n_a);
    float* fb = encode_or_die(enc, &b, &n_b);
    float* fs = encode_or_die(enc, &sum, &n_sum);
    LinearStandInEncoder other = *enc;
    other.seed = enc->seed + 1;
    float* fo = encode_or_die(&other, &a, &n_other);
    free(encode_or_die(enc, &odd, &n_odd));
    MediaItem img = pixels_item(), series = series_item(40, 3);
    free(encode_or_die(enc, &img, &n_img));
    free(encode_or_die(enc, &series, &n_series));
    printf("  tokens: audio 8000 samples -> %d, 8001 -> %d, image -> %d, series (40, 3) -> %d\n", n_a, n_odd, n_img,
           n_series);
    failures += check_true("stand-in token counts: ceil(n / 320), (32 / 4)^2, ceil(40 / 16)",
                           n_a == 25 && n_odd == 26 && n_img == 64 && n_series == 3, "see above");
    size_t n = (size_t)n_a * enc->dim;
    float* fab = xmalloc(n * sizeof *fab);
    double y2 = 0, x2 = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        fab[i] = fa[i] + fb[i];
        y2 += (double)fa[i] * fa[i];
        diff = fmax(diff, fabs((double)fa[i] - fo[i]));
    }
    for (size_t i = 0; i < 8000; i++) x2 += ((double)a.pcm[i] / 32768.0) * ((double)a.pcm[i] / 32768.0);
    failures += check_close_abs("stand-in is linear: f(a + b) = f(a) + f(b)", fs, fab, n, 1e-5);
    double ratio = (y2 / (double)n) / (x2 / 8000.0);
    printf("  E[y^2] / E[x^2] = %.3f (want about 1); max |f_seed1 - f_seed2| = %.3f\n", ratio, diff);
    failures += check_true("stand-in keeps the scale (E[y^2] / E[x^2] in 0.5..2) and depends on the seed",
                           ratio > 0.5 && ratio < 2.0 && diff > 0.01, "see above");
    free(fa);
    free(fb);
    free(fs);
    free(fo);
    free(fab);
    MediaItem* items[] = {&a, &b, &sum, &odd, &img, &series};
    for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
        free(items[i]->pcm);
        free(items[i]->pixels);
        free(items[i]->series);
    }
    return failures;
}

// ---------------------------------------------------------------------------------------------------- float16

static int check_f16(void) {
    struct { float f; uint16_t h; } known[] = {
        {1.0f, 0x3c00}, {-2.0f, 0xc000}, {0.1f, 0x2e66}, {65504.0f, 0x7bff}, {65519.0f, 0x7bff}, {65520.0f, 0x7c00},
        {5.9604645e-08f, 0x0001}, {2.9802322e-08f, 0x0000}, {6.1035156e-05f, 0x0400}, {1.0009766f, 0x3c01},
        {1.00048828125f, 0x3c00} /* tie -> even */, {1.00146484375f, 0x3c02} /* tie -> even */, {INFINITY, 0x7c00},
    };
    int failures = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        uint16_t h = feature_f16_from_float(known[i].f);
        if (h != known[i].h) {
            printf("  f16(%.9g) = 0x%04x, want 0x%04x\n", (double)known[i].f, h, known[i].h);
            failures++;
        }
    }
    int bad_round_trip = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu)) continue;   // NaN payloads
        if (feature_f16_from_float(feature_f16_to_float((uint16_t)h)) != h) bad_round_trip++;
    }
    int nan_ok = isnan(feature_f16_to_float(feature_f16_from_float(NAN)));
    printf("  float16: %d of %zu known values wrong, %d of 63490 halves fail the round trip, NaN kept %d\n", failures,
           sizeof known / sizeof known[0], bad_round_trip, nan_ok);
    return check_true("float16 conversion: known values, round trip of every half, NaN",
                      failures == 0 && bad_round_trip == 0 && nan_ok, "see above");
}

// ---------------------------------------------------------------------------------------------------- main

int main(void) {
    int failures = 0;
    char root[] = "/tmp/modrwkv-test-cache-XXXXXX";
    if (!mkdtemp(root)) fatal("mkdtemp failed");
    char *in = path2(root, "in"), *f32 = path2(root, "f32"), *f16 = path2(root, "f16"), *again = path2(root, "again"),
         *bad = path2(root, "bad");
    write_input(in);
    LinearStandInEncoder enc;
    linear_standin_default(&enc);
    Error e = {{0}};

    failures += check_f16();
    failures += check_standin(&enc);

    int rc = cache_features(in, f32, linear_standin_encode, &enc, 0, &e);
    failures += check_true("cache features (float32) succeeds", rc == 0, e.msg);
    failures += check_copy("float32 copy: same keys/tokens/masks/placeholders/shards, features = encoder output", in,
                           f32, &enc, 0);

    rc = cache_features(in, f16, linear_standin_encode, &enc, 1, &e);
    failures += check_true("cache features (float16) succeeds", rc == 0, e.msg);
    failures += check_copy("float16 copy: features = rounded encoder output, bit for bit", in, f16, &enc, 1);

    rc = cache_features(f32, again, linear_standin_encode, &enc, 1, &e);
    failures += check_true("caching a cached dataset succeeds", rc == 0, e.msg);
    failures += check_copy("cached features are copied unchanged (float32 stays float32)", f32, again, &enc, 0);

    LinearStandInEncoder fine = enc;
    fine.image_patch = 2;   // 256 tokens per image, but the images have 64 placeholders
    rc = cache_features(in, bad, linear_standin_encode, &fine, 0, &e);
    failures += expect_reject("encoder token count != placeholders", rc, &e, "img-png", "64 placeholders");
    char* manifest = path2(bad, "manifest.json");
    failures += check_true("a failed cache leaves no manifest.json", !file_exists(manifest), manifest);
    free(manifest);

    rc = cache_features(in, in, linear_standin_encode, &enc, 0, &e);
    failures += expect_reject("out_dir == in_dir", rc, &e, in, "must differ");
    char* missing = path2(root, "missing");
    rc = cache_features(missing, bad, linear_standin_encode, &enc, 0, &e);
    failures += expect_reject("missing input dataset", rc, &e, "missing", NULL);

    free(missing);
    rm_rf(root);
    free(in);
    free(f32);
    free(f16);
    free(again);
    free(bad);
    return test_summary("test_cache_features", failures);
}

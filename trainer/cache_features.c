// cache_features.c — see cache_features.h. Parts: float16; replacing one sample's media by features; one
// shard in -> one shard out; the dataset; the stand-in linear encoder.
#include "trainer/cache_features.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/image.h"

// ==================================================================================================== float16

uint16_t feature_f16_from_float(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00u;                   // NaN (quiet)
    if (ax >= 0x477ff000u) return sign | 0x7c00u;                  // >= 65520 rounds to infinity
    if (ax < 0x38800000u) {                                        // below 2^-14: subnormal half (or zero)
        float a;
        memcpy(&a, &ax, sizeof a);
        return sign | (uint16_t)lrintf(a * 16777216.0f);           // units of 2^-24, ties to even
    }
    uint32_t h = (((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13);
    uint32_t rest = ax & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;      // a carry may round up into the exponent
    return sign | (uint16_t)h;
}

float feature_f16_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    float f;
    if (exp == 0) {
        f = ldexpf((float)mant, -24);                              // zero or subnormal
        return sign ? -f : f;
    }
    uint32_t x = sign | (exp == 31 ? 0x7f800000u | (mant << 13) : ((exp + 112u) << 23) | (mant << 13));
    memcpy(&f, &x, sizeof f);
    return f;
}

// ==================================================================================================== one sample

static int is_encodable(MediaKind k) {
    return k == MEDIA_IMAGE_ENCODED || k == MEDIA_IMAGE_PIXELS || k == MEDIA_AUDIO_PCM || k == MEDIA_TIMESERIES;
}

// Replaces item m's payload by the features (n_tok, dim) float32, converted to float16 when asked.
static void set_features(MediaItem* m, float* feat, int n_tok, int dim, int store_f16) {
    MediaItem out = {.kind = MEDIA_FEATURES, .placeholder_pos = m->placeholder_pos,
                     .n_placeholder = m->n_placeholder, .n_feat_tokens = n_tok, .dim = dim,
                     .feat_dtype_bytes = store_f16 ? 2 : 4, .feat = feat};
    if (store_f16) {
        size_t n = (size_t)n_tok * (size_t)dim;
        uint16_t* half = xmalloc(n * sizeof *half);
        for (size_t i = 0; i < n; i++) half[i] = feature_f16_from_float(feat[i]);
        free(feat);
        out.feat = half;
    }
    free(m->bytes);
    free(m->pixels);
    free(m->pcm);
    free(m->series);
    free(m->feat);
    *m = out;
}

static int encode_item(MediaItem* m, int k, FeatureEncoderFn enc, void* ctx, int store_f16, const char* where,
                       Error* e) {
    float* feat = NULL;
    int n_tok = 0, dim = 0;
    Error inner = {{0}};
    if (enc(ctx, m, &feat, &n_tok, &dim, &inner) != 0) {
        free(feat);
        return errorf(e, "%s: media item %d: encoder failed: %s", where, k, inner.msg);
    }
    if (n_tok != m->n_placeholder || dim < 1 || !feat) {
        free(feat);
        return errorf(e, "%s: media item %d: the encoder gave %d tokens x %d features but the item has %d "
                      "placeholders (the encoder's token count must equal the dataset's placeholders; rebuild the "
                      "dataset with matching --image-tokens / --audio-tokens-per-s or configure the encoder)",
                      where, k, n_tok, dim, m->n_placeholder);
    }
    set_features(m, feat, n_tok, dim, store_f16);
    return 0;
}

// ==================================================================================================== one shard

static char* join_path(const char* dir, const char* name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

// Input shard `index` of `world` -> output shard number `index` (its own writer, written as rank index).
static int cache_shard(const char* in_path, const Manifest* m, int index, const char* out_dir, FeatureEncoderFn enc,
                       void* ctx, int store_f16, Error* e) {
    ShardReader* r = shard_reader_open(in_path, e);
    if (!r) return -1;
    int64_t n = shard_reader_count(r);
    if (n <= 0) {
        shard_reader_close(r);
        return errorf(e, "%s: the shard holds no sample (an empty shard cannot keep its place in the output)",
                      in_path);
    }
    ShardWriterOptions wo = {.dir = out_dir, .split = m->split, .compression = 4, .tokenizer = m->tokenizer,
                             .vocab_size = m->vocab_size, .source = "modrwkv data cache-features", .rank = index,
                             .world = m->n_shards};
    ShardWriter* w = shard_writer_open(&wo, e);
    int rc = w ? 0 : -1;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        Sample s = {0};
        rc = shard_reader_get(r, i, &s, e);
        char where[1400];
        snprintf(where, sizeof where, "%s: sample '%s'", in_path, s.key ? s.key : "?");
        for (int k = 0; k < s.n_media && rc == 0; k++)
            if (is_encodable(s.media[k].kind)) rc = encode_item(&s.media[k], k, enc, ctx, store_f16, where, e);
        if (rc == 0) rc = shard_writer_add(w, &s, e);
        sample_free(&s);
    }
    shard_reader_close(r);
    if (w) {
        Error ignored;
        if (shard_writer_close(w, rc == 0 ? e : &ignored) != 0) rc = -1;
    }
    return rc;
}

// ==================================================================================================== the dataset

static int same_directory(const char* a, const char* b) {
    char* ra = realpath(a, NULL);
    char* rb = realpath(b, NULL);
    int same = ra && rb && strcmp(ra, rb) == 0;
    free(ra);
    free(rb);
    return same;
}

// After a failure: no manifest (final or part) is left in out_dir.
static void remove_manifests(const char* out_dir, int world) {
    char* path = join_path(out_dir, "manifest.json");
    unlink(path);
    free(path);
    for (int r = 0; world > 1 && r < world; r++) {
        char name[64];
        snprintf(name, sizeof name, "manifest.rank-%05d.json", r);
        path = join_path(out_dir, name);
        unlink(path);
        free(path);
    }
}

int cache_features(const char* in_dir, const char* out_dir, FeatureEncoderFn enc, void* ctx, int store_f16, Error* e) {
    if (!enc) return errorf(e, "cache-features: no encoder given");
    if (mkdir_p(out_dir, e) != 0) return -1;
    if (same_directory(in_dir, out_dir))
        return errorf(e, "cache-features: %s: the output directory must differ from the input", out_dir);
    Manifest m;
    if (manifest_read(in_dir, &m, e) != 0) return -1;
    int rc = m.n_shards > 0 ? 0 : errorf(e, "%s/manifest.json: lists no shard", in_dir);
    for (int i = 0; i < m.n_shards && rc == 0; i++) {
        char* path = join_path(in_dir, m.shards[i].file);
        rc = cache_shard(path, &m, i, out_dir, enc, ctx, store_f16, e);
        free(path);
    }
    if (rc == 0 && m.n_shards > 1) rc = shard_manifest_merge(out_dir, m.n_shards, e);
    if (rc != 0) remove_manifests(out_dir, m.n_shards);
    manifest_free(&m);
    return rc;
}

// ==================================================================================================== stand-in encoder

void linear_standin_default(LinearStandInEncoder* enc) {
    *enc = (LinearStandInEncoder){.seed = 1, .dim = 32, .image_size = 32, .image_patch = 4, .audio_frame = 320,
                                  .series_patch = 16};
}

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// W[row][col] of modality `kind`: uniform in [-sqrt(3 / fan_in), sqrt(3 / fan_in)].
static float standin_weight(uint64_t seed, int kind, int row, int col, int fan_in) {
    uint64_t h = mix64(mix64(mix64(seed ^ ((uint64_t)kind << 56)) ^ (uint64_t)(uint32_t)row) ^ (uint64_t)(uint32_t)col);
    double u = (double)(h >> 11) / 9007199254740992.0;   // [0, 1)
    return (float)((2.0 * u - 1.0) * sqrt(3.0 / fan_in));
}

// out (dim) = W x, x (fan_in).
static void project(const LinearStandInEncoder* enc, int kind, const float* x, int fan_in, float* out) {
    for (int d = 0; d < enc->dim; d++) {
        double acc = 0;
        for (int j = 0; j < fan_in; j++) acc += (double)standin_weight(enc->seed, kind, d, j, fan_in) * x[j];
        out[d] = (float)acc;
    }
}

// The item's picture as RGB (encoded bytes decoded; grey pixels replicated).
static int item_image(const MediaItem* in, Image* im, Error* e) {
    if (in->kind == MEDIA_IMAGE_ENCODED) return image_decode(in->bytes, in->n_bytes, im, "image item", e);
    size_t n = (size_t)in->height * (size_t)in->width;
    im->height = in->height;
    im->width = in->width;
    im->rgb = xmalloc(n * 3);
    for (size_t p = 0; p < n; p++)
        for (int c = 0; c < 3; c++)
            im->rgb[3 * p + c] = in->pixels[p * (size_t)in->channels + (in->channels == 3 ? (size_t)c : 0)];
    return 0;
}

static int standin_image(const LinearStandInEncoder* enc, const MediaItem* in, float** feat_out, int* n_tok,
                         Error* e) {
    int S = enc->image_size, P = enc->image_patch, G = S / P, fan_in = 3 * P * P;
    Image im = {0};
    if (item_image(in, &im, e) != 0) return -1;
    static const float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.5f, 0.5f, 0.5f};
    float* px = xmalloc((size_t)3 * S * S * sizeof *px);   // (3, S, S)
    int rc = image_preprocess(&im, S, "resize", mean, std, px, e);
    image_free(&im);
    float* feat = rc == 0 ? xmalloc((size_t)G * G * enc->dim * sizeof *feat) : NULL;   // (G*G, dim)
    float* x = xmalloc((size_t)fan_in * sizeof *x);                                     // (3, P, P)
    for (int t = 0; rc == 0 && t < G * G; t++) {
        int py = t / G, px0 = t % G;
        for (int c = 0; c < 3; c++)
            for (int dy = 0; dy < P; dy++)
                for (int dx = 0; dx < P; dx++)
                    x[(c * P + dy) * P + dx] = px[((size_t)c * S + (size_t)(py * P + dy)) * S + (size_t)(px0 * P + dx)];
        project(enc, MEDIA_IMAGE_ENCODED, x, fan_in, feat + (size_t)t * enc->dim);
    }
    free(x);
    free(px);
    *feat_out = feat;
    *n_tok = G * G;
    return rc;
}

// Audio (n_samples) or a series (length, channels): tokens of `steps` consecutive steps, zero-padded at the end.
static void standin_frames(const LinearStandInEncoder* enc, int kind, const MediaItem* in, int steps, int channels,
                           int64_t length, float** feat_out, int* n_tok) {
    int64_t n = (length + steps - 1) / steps;
    int fan_in = steps * channels;
    float* feat = xmalloc((size_t)(n > 0 ? n : 1) * (size_t)enc->dim * sizeof *feat);   // (n, dim)
    float* x = xmalloc((size_t)fan_in * sizeof *x);                                      // (steps, channels)
    for (int64_t t = 0; t < n; t++) {
        for (int j = 0; j < steps; j++) {
            int64_t step = t * steps + j;
            for (int c = 0; c < channels; c++) {
                float v = 0.0f;
                if (step < length && kind == MEDIA_AUDIO_PCM) v = in->pcm[step] / 32768.0f;
                if (step < length && kind == MEDIA_TIMESERIES) v = in->series[step * channels + c];
                x[j * channels + c] = v;
            }
        }
        project(enc, kind, x, fan_in, feat + (size_t)t * enc->dim);
    }
    free(x);
    *feat_out = feat;
    *n_tok = (int)n;
}

static int check_standin(const LinearStandInEncoder* enc, Error* e) {
    if (enc->dim < 1 || enc->image_patch < 1 || enc->image_size < enc->image_patch ||
        enc->image_size % enc->image_patch != 0 || enc->audio_frame < 1 || enc->series_patch < 1)
        return errorf(e, "linear stand-in encoder: dim %d, image %d / patch %d, audio frame %d, series patch %d "
                      "(all positive; the image size a multiple of the patch)", enc->dim, enc->image_size,
                      enc->image_patch, enc->audio_frame, enc->series_patch);
    return 0;
}

int linear_standin_encode(void* ctx, const MediaItem* in, float** feat, int* n_tok, int* dim, Error* e) {
    const LinearStandInEncoder* enc = ctx;
    *feat = NULL;
    if (check_standin(enc, e) != 0) return -1;
    *dim = enc->dim;
    switch (in->kind) {
    case MEDIA_IMAGE_ENCODED:
    case MEDIA_IMAGE_PIXELS: return standin_image(enc, in, feat, n_tok, e);
    case MEDIA_AUDIO_PCM:
        if (in->n_samples > (size_t)INT_MAX) return errorf(e, "audio item of %zu samples is too long", in->n_samples);
        standin_frames(enc, MEDIA_AUDIO_PCM, in, enc->audio_frame, 1, (int64_t)in->n_samples, feat, n_tok);
        return 0;
    case MEDIA_TIMESERIES:
        standin_frames(enc, MEDIA_TIMESERIES, in, enc->series_patch, in->channels, in->length, feat, n_tok);
        return 0;
    default: return errorf(e, "the linear stand-in encoder takes images, audio and time series, not media kind %d",
                           (int)in->kind);
    }
}

// shard.c — the in-memory sample (datasets/shard.h): freeing it, and checking that its placeholders match
// its media ("placeholders == media") and that every payload has the size its shape implies.
//
// Rules (datasets/FORMAT.md "Samples"): a key of 1..255 bytes; 1..SHARD_MAX_SAMPLE_TOKENS tokens (a sample
// with zero tokens is rejected: it trains nothing and has nowhere to put media); loss mask values 0/1;
// media items ordered by placeholder_pos with disjoint ranges inside the tokens, each range holding only
// its kind's placeholder id (features: any one placeholder id) with loss mask 0; no placeholder id
// anywhere else; payload pointers present with positive shapes. For kinds other than ENCODED, n_bytes is
// 0 or the payload size in bytes (the reader fills it); anything else is a payload size mismatch.
#include <stdlib.h>
#include <string.h>

#include "datasets/shard.h"
#include "datasets/shard_internal.h"

const char* media_kind_name(int kind) {
    switch (kind) {
    case MEDIA_IMAGE_ENCODED: return "image";
    case MEDIA_IMAGE_PIXELS: return "pixels";
    case MEDIA_AUDIO_PCM: return "audio";
    case MEDIA_TIMESERIES: return "timeseries";
    case MEDIA_FEATURES: return "features";
    default: return NULL;
    }
}

int is_placeholder_id(uint32_t id) {
    return id == SHARD_PLACEHOLDER_IMAGE || id == SHARD_PLACEHOLDER_AUDIO || id == SHARD_PLACEHOLDER_TIMESERIES;
}

// a * b * c in bytes when every factor is positive and the product stays within the item limit, else -1.
static int64_t checked_size(int64_t a, int64_t b, int64_t c) {
    if (a <= 0 || b <= 0 || c <= 0) return -1;
    if (a > SHARD_MAX_ITEM_BYTES / b) return -1;
    int64_t ab = a * b;
    if (ab > SHARD_MAX_ITEM_BYTES / c) return -1;
    return ab * c;
}

int64_t media_payload_bytes(const MediaItem* m) {
    switch (m->kind) {
    case MEDIA_IMAGE_ENCODED:
        return m->n_bytes > 0 && m->n_bytes <= (size_t)SHARD_MAX_ITEM_BYTES ? (int64_t)m->n_bytes : -1;
    case MEDIA_IMAGE_PIXELS:
        if (m->channels != 1 && m->channels != 3) return -1;
        return checked_size(m->height, m->width, m->channels);
    case MEDIA_AUDIO_PCM:
        return m->n_samples <= (size_t)SHARD_MAX_ITEM_BYTES ? checked_size((int64_t)m->n_samples, 2, 1) : -1;
    case MEDIA_TIMESERIES: return checked_size(m->length, m->channels, 4);
    case MEDIA_FEATURES:
        if (m->feat_dtype_bytes != 2 && m->feat_dtype_bytes != 4) return -1;
        return checked_size(m->n_feat_tokens, m->dim, m->feat_dtype_bytes);
    default: return -1;
    }
}

const void* media_payload(const MediaItem* m) {
    switch (m->kind) {
    case MEDIA_IMAGE_ENCODED: return m->bytes;
    case MEDIA_IMAGE_PIXELS: return m->pixels;
    case MEDIA_AUDIO_PCM: return m->pcm;
    case MEDIA_TIMESERIES: return m->series;
    case MEDIA_FEATURES: return m->feat;
    default: return NULL;
    }
}

static void media_item_free(MediaItem* m) {
    free(m->bytes);
    free(m->pixels);
    free(m->pcm);
    free(m->series);
    free(m->feat);
    *m = (MediaItem){0};
}

void sample_free(Sample* s) {
    if (!s) return;
    if (s->media)
        for (int i = 0; i < s->n_media; i++) media_item_free(&s->media[i]);
    free(s->media);
    free(s->key);
    free(s->tokens);
    free(s->loss_mask);
    *s = (Sample){0};
}

// The shape of an item for messages: "(h, w, c)", "(n_samples)", ...
static void describe_shape(const MediaItem* m, char* buf, size_t n) {
    switch (m->kind) {
    case MEDIA_IMAGE_ENCODED: snprintf(buf, n, "%zu bytes", m->n_bytes); break;
    case MEDIA_IMAGE_PIXELS: snprintf(buf, n, "(%d, %d, %d)", m->height, m->width, m->channels); break;
    case MEDIA_AUDIO_PCM: snprintf(buf, n, "(%zu) samples", m->n_samples); break;
    case MEDIA_TIMESERIES: snprintf(buf, n, "(%d, %d)", m->length, m->channels); break;
    case MEDIA_FEATURES: snprintf(buf, n, "(%d, %d) x %d bytes", m->n_feat_tokens, m->dim, m->feat_dtype_bytes); break;
    default: snprintf(buf, n, "?"); break;
    }
}

// Kind, payload pointer and the size its shape implies.
static int check_payload(const MediaItem* m, const char* where, int k, Error* e) {
    const char* name = media_kind_name(m->kind);
    if (!name)
        return errorf(e, "%s: media item %d has unknown kind %d (1..%d are defined)", where, k, (int)m->kind,
                      MEDIA_FEATURES);
    char shape[96];
    describe_shape(m, shape, sizeof shape);
    int64_t bytes = media_payload_bytes(m);
    if (bytes < 0)
        return errorf(e, "%s: media item %d (%s) has an invalid shape %s (dimensions must be positive, pixel channels "
                      "1 or 3, feature dtype bytes 2 or 4, at most %lld bytes)", where, k, name, shape,
                      (long long)SHARD_MAX_ITEM_BYTES);
    if (!media_payload(m))
        return errorf(e, "%s: media item %d (%s) of shape %s has no payload", where, k, name, shape);
    if (m->kind != MEDIA_IMAGE_ENCODED && m->n_bytes != 0 && m->n_bytes != (size_t)bytes)
        return errorf(e, "%s: media item %d (%s): payload size mismatch: n_bytes is %zu but its shape %s needs %lld "
                      "bytes", where, k, name, m->n_bytes, shape, (long long)bytes);
    return 0;
}

// The placeholder range of item k: in the tokens, after the previous item, all the right id, mask 0.
static int check_range(const Sample* s, const MediaItem* m, int64_t prev_end, const char* where, int k, Error* e) {
    const char* name = media_kind_name(m->kind);
    int64_t pos = m->placeholder_pos, end = pos + (int64_t)m->n_placeholder;
    if (m->n_placeholder < 1 || pos < 0 || end > (int64_t)s->n_tokens)
        return errorf(e, "%s: media item %d (%s): placeholder range [%lld, %lld) is out of range (the sample has %zu "
                      "tokens; an item needs at least one placeholder)", where, k, name, (long long)pos,
                      (long long)end, s->n_tokens);
    if (pos < prev_end)
        return errorf(e, "%s: media item %d (%s): placeholder range [%lld, %lld) overlaps or precedes the previous "
                      "item's, which ends at %lld (items must be ordered by placeholder_pos and disjoint)", where, k,
                      name, (long long)pos, (long long)end, (long long)prev_end);
    uint32_t want = s->tokens[pos];
    if (m->kind == MEDIA_IMAGE_ENCODED || m->kind == MEDIA_IMAGE_PIXELS) want = SHARD_PLACEHOLDER_IMAGE;
    if (m->kind == MEDIA_AUDIO_PCM) want = SHARD_PLACEHOLDER_AUDIO;
    if (m->kind == MEDIA_TIMESERIES) want = SHARD_PLACEHOLDER_TIMESERIES;
    for (int64_t t = pos; t < end; t++) {
        if (s->tokens[t] != want || !is_placeholder_id(want))
            return errorf(e, "%s: media item %d (%s): token %lld is %u, not the placeholder %u (placeholder count "
                          "mismatch: the item claims [%lld, %lld))", where, k, name, (long long)t, s->tokens[t],
                          is_placeholder_id(want) ? want : (uint32_t)SHARD_PLACEHOLDER_IMAGE, (long long)pos,
                          (long long)end);
        if (s->loss_mask[t] != 0)
            return errorf(e, "%s: media item %d (%s): placeholder token %lld has loss mask 1 (placeholders are "
                          "never trained)", where, k, name, (long long)t);
    }
    return 0;
}

// No placeholder id outside the items' ranges (items already checked ordered and in range).
static int check_no_stray(const Sample* s, const char* where, Error* e) {
    int k = 0;
    for (size_t t = 0; t < s->n_tokens; t++) {
        while (k < s->n_media && (int64_t)t >= (int64_t)s->media[k].placeholder_pos + s->media[k].n_placeholder) k++;
        int inside = k < s->n_media && (int64_t)t >= s->media[k].placeholder_pos;
        if (!inside && is_placeholder_id(s->tokens[t]))
            return errorf(e, "%s: token %zu is the placeholder id %u but no media item covers it (placeholders != "
                          "media: %d items)", where, t, s->tokens[t], s->n_media);
    }
    return 0;
}

static int check_tokens(const Sample* s, const char* where, Error* e) {
    if (s->n_tokens == 0)
        return errorf(e, "%s: has no tokens (every sample needs at least one token)", where);
    if (s->n_tokens > (size_t)SHARD_MAX_SAMPLE_TOKENS)
        return errorf(e, "%s: has %zu tokens, more than the limit of %d (split the document)", where, s->n_tokens,
                      SHARD_MAX_SAMPLE_TOKENS);
    if (!s->tokens || !s->loss_mask) return errorf(e, "%s: tokens or loss_mask is missing", where);
    for (size_t t = 0; t < s->n_tokens; t++)
        if (s->loss_mask[t] > 1)
            return errorf(e, "%s: loss_mask[%zu] is %d (must be 0 or 1)", where, t, s->loss_mask[t]);
    if (s->n_media < 0 || (s->n_media > 0 && !s->media))
        return errorf(e, "%s: n_media is %d but %s", where, s->n_media, s->media ? "negative" : "media is NULL");
    return 0;
}

int sample_validate_at(const Sample* s, const char* what, int64_t index, Error* e) {
    char num[32] = "";
    if (index >= 0) snprintf(num, sizeof num, " (#%lld)", (long long)index);
    size_t key_len = s->key ? strlen(s->key) : 0;
    if (key_len == 0) return errorf(e, "%s: sample%s has no __key__ (every sample needs a unique key)", what, num);
    char where[1536];
    snprintf(where, sizeof where, "%s: sample '%.*s'%s", what, SHARD_MAX_KEY_BYTES, s->key, num);
    if (key_len > SHARD_MAX_KEY_BYTES)
        return errorf(e, "%s: key is %zu bytes (the limit is %d)", where, key_len, SHARD_MAX_KEY_BYTES);
    if (check_tokens(s, where, e)) return -1;
    int64_t prev_end = 0;
    for (int k = 0; k < s->n_media; k++) {
        const MediaItem* m = &s->media[k];
        if (check_payload(m, where, k, e) || check_range(s, m, prev_end, where, k, e)) return -1;
        prev_end = (int64_t)m->placeholder_pos + m->n_placeholder;
    }
    return check_no_stray(s, where, e);
}

int sample_validate(const Sample* s, const char* what, Error* e) { return sample_validate_at(s, what, -1, e); }

// ---------------------------------------------------------------------------------------------------- comparison
static int item_differs(const MediaItem* x, const MediaItem* y) {
    if (x->kind != y->kind || x->placeholder_pos != y->placeholder_pos || x->n_placeholder != y->n_placeholder)
        return 1;
    switch (x->kind) {
    case MEDIA_IMAGE_ENCODED: if (x->n_bytes != y->n_bytes) return 1; break;
    case MEDIA_IMAGE_PIXELS:
        if (x->height != y->height || x->width != y->width || x->channels != y->channels) return 1;
        break;
    case MEDIA_AUDIO_PCM: if (x->n_samples != y->n_samples) return 1; break;
    case MEDIA_TIMESERIES: if (x->length != y->length || x->channels != y->channels) return 1; break;
    case MEDIA_FEATURES:
        if (x->n_feat_tokens != y->n_feat_tokens || x->dim != y->dim || x->feat_dtype_bytes != y->feat_dtype_bytes)
            return 1;
        break;
    default: return 1;
    }
    int64_t bytes = media_payload_bytes(x);
    return bytes < 0 || memcmp(media_payload(x), media_payload(y), (size_t)bytes) != 0;
}

int sample_compare(const Sample* a, const Sample* b, char* why, size_t why_len) {
    const char* ka = a->key ? a->key : "";
    if (strcmp(ka, b->key ? b->key : "") != 0) {
        snprintf(why, why_len, "keys differ: '%s' vs '%s'", ka, b->key ? b->key : "");
        return 1;
    }
    if (a->n_tokens != b->n_tokens || memcmp(a->tokens, b->tokens, a->n_tokens * sizeof *a->tokens) != 0 ||
        memcmp(a->loss_mask, b->loss_mask, a->n_tokens) != 0) {
        snprintf(why, why_len, "sample '%s': tokens or loss mask differ (%zu vs %zu tokens)", ka, a->n_tokens, b->n_tokens);
        return 1;
    }
    if (a->n_media != b->n_media) {
        snprintf(why, why_len, "sample '%s': %d vs %d media items", ka, a->n_media, b->n_media);
        return 1;
    }
    for (int k = 0; k < a->n_media; k++) {
        if (!item_differs(&a->media[k], &b->media[k])) continue;
        snprintf(why, why_len, "sample '%s': media item %d differs (kind, range, shape or payload)", ka, k);
        return 1;
    }
    return 0;
}

// shard_loader.c — see shard_loader.h. Sections: the order arithmetic (generator, shard assignment), the
// producer that runs on the prefetch thread (shuffle buffer, shard reading, sample preparation, batch
// building), the queue and public API, and the text-trainer adapter.
#include "datasets/shard_loader.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datasets/image.h"

// Serialises every HDF5 call of every loader in the process (the shard reader is not thread-safe; each
// loader's prefetch thread is its only caller, but tests and tools may run several loaders at once).
static pthread_mutex_t g_hdf5_lock = PTHREAD_MUTEX_INITIALIZER;

// ============================================================================ order arithmetic

// splitmix64: a small, well-mixed 64-bit generator; the whole order depends only on its outputs.
static uint64_t splitmix64(uint64_t* s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

enum { STREAM_SHARD_ORDER = 1, STREAM_BUFFER = 2 };

// Generator state for one purpose (stream) of one (seed, epoch, rank).
static uint64_t stream_seed(uint64_t seed, uint64_t epoch, uint64_t rank, uint64_t stream) {
    uint64_t s = seed, h = splitmix64(&s);
    s = h ^ epoch;
    h = splitmix64(&s);
    s = h ^ rank;
    h = splitmix64(&s);
    s = h ^ stream;
    return splitmix64(&s);
}

// Uniform in [0, n) up to a bias below n / 2^64 (negligible for any buffer or shard count).
static uint64_t below(uint64_t* s, uint64_t n) { return splitmix64(s) % n; }

int shard_assign(const int64_t* shard_samples, int n_shards, uint64_t seed, uint64_t epoch, int dp_rank, int dp_size,
                 ShardPiece** pieces) {
    int* order = xmalloc((size_t)n_shards * sizeof *order);
    for (int i = 0; i < n_shards; i++) order[i] = i;
    uint64_t g = stream_seed(seed, epoch, 0, STREAM_SHARD_ORDER);
    for (int i = n_shards - 1; i > 0; i--) {   // Fisher-Yates
        int j = (int)below(&g, (uint64_t)i + 1);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    uint64_t total = 0;
    for (int i = 0; i < n_shards; i++) total += (uint64_t)shard_samples[i];
    uint64_t lo = total * (uint64_t)dp_rank / (uint64_t)dp_size;
    uint64_t hi = total * ((uint64_t)dp_rank + 1) / (uint64_t)dp_size;
    *pieces = xmalloc((size_t)n_shards * sizeof **pieces);
    int n = 0;
    uint64_t at = 0;   // global index of the current shard's first sample
    for (int i = 0; i < n_shards; i++) {
        uint64_t c = (uint64_t)shard_samples[order[i]];
        uint64_t a = at > lo ? at : lo, b = at + c < hi ? at + c : hi;
        if (a < b) (*pieces)[n++] = (ShardPiece){order[i], (int64_t)(a - at), (int64_t)(b - a)};
        at += c;
    }
    free(order);
    return n;
}

// ============================================================================ loader state

// One place of the shuffle buffer: a sample of this rank's slice, read (loaded) or only indexed (fast-forward).
typedef struct Slot {
    int64_t index;   // position in this rank's slice of the epoch
    int loaded;      // 1: s (or bad) is set
    Sample s;
    int shard;       // manifest shard it came from
    char* bad;       // why it is unusable (malloc'ed); NULL for a good sample
} Slot;

// A sample ready to be placed in a row: tokens and mask taken over from the Sample, media converted.
typedef struct Prepared {
    char* key;
    uint32_t* tokens;   // (n)
    uint8_t* mask;      // (n)
    size_t n;
    BatchMedia* media;  // (n_media), placeholder_pos relative to the sample
    int n_media;
    uint64_t epoch, index;
    int truncated;
} Prepared;

// State of the prefetch thread (touched by no other thread while it runs).
typedef struct Producer {
    uint64_t epoch;
    ShardPiece* pieces;     // this rank's slice of the epoch
    int n_pieces;
    Slot* slots;            // (K) the shuffle buffer
    int n_slots;
    int64_t next_in;        // next slice index to read into the buffer
    uint64_t taken;         // samples of this epoch taken out of the buffer
    uint64_t rng;
    int64_t good_in_epoch;  // usable samples taken this epoch (1 when resumed mid-epoch: unknown)
    ShardReader* reader;    // the open shard (reads are sequential: one is enough)
    int reader_shard;
    int dead_shard;         // a shard that failed to open, and why: its samples are bad without reopening
    char* dead_msg;
    Prepared carry;         // pack: the sample that did not fit the last row
    int has_carry;
} Producer;

struct ShardLoader {
    ShardLoaderOptions o;   // dir and image_mode point to owned copies
    char* dir;
    Manifest m;
    char** paths;           // (n_shards) shard file paths
    int64_t* shard_samples; // (n_shards)
    uint64_t epoch_len;     // E_r
    int k;                  // shuffle buffer capacity (>= 1)
    FILE* log;
    ShardPosition pos;      // after the last batch handed over (the caller's thread)
    ShardPosition start;    // where the prefetch thread starts (set before it is launched)
    Producer prod;
    // queue between the prefetch thread and the caller
    pthread_mutex_t mu;
    pthread_cond_t can_put, can_get;
    ShardBatch** queue;     // (prefetch) ring
    int q_head, q_count;
    int running, failed;
    atomic_int stop;
    Error err;              // the prefetch thread's error when failed
    pthread_t thread;
    atomic_llong live, peak, samples_read, bad, bytes_read;
    char describe[1400];
};

void shard_loader_options_default(ShardLoaderOptions* o) {
    memset(o, 0, sizeof *o);
    o->dp_size = 1;
    o->shuffle_buffer = 1024;
    o->batch_size = 1;
    o->ctx_len = 2048;
    o->prefetch = 4;
    o->image_mode = "resize";
    for (int c = 0; c < 3; c++) {
        o->image_mean[c] = 0.5f;
        o->image_std[c] = 0.5f;
    }
}

static ShardPosition normalise(const ShardLoader* L, ShardPosition p) {
    if (p.index >= L->epoch_len) return (ShardPosition){p.epoch + 1, 0};
    return p;
}

static void count_live(ShardLoader* L, long long delta) {
    long long now = atomic_fetch_add(&L->live, delta) + delta;
    long long peak = atomic_load(&L->peak);
    while (now > peak && !atomic_compare_exchange_weak(&L->peak, &peak, now)) {
    }
}

// ============================================================================ producer: reading

static void reader_close(Producer* P) {
    if (!P->reader) return;
    pthread_mutex_lock(&g_hdf5_lock);
    shard_reader_close(P->reader);
    pthread_mutex_unlock(&g_hdf5_lock);
    P->reader = NULL;
    P->reader_shard = -1;
}

// Makes shard `s` the open one. A shard that cannot be opened (or disagrees with the manifest) stays dead.
static int reader_use(ShardLoader* L, int s, Error* e) {
    Producer* P = &L->prod;
    if (P->reader && P->reader_shard == s) return 0;
    if (P->dead_shard == s) return errorf(e, "%s", P->dead_msg);
    reader_close(P);
    pthread_mutex_lock(&g_hdf5_lock);
    P->reader = shard_reader_open(L->paths[s], e);
    pthread_mutex_unlock(&g_hdf5_lock);
    int rc = P->reader ? 0 : -1;
    if (rc == 0 && shard_reader_count(P->reader) != L->shard_samples[s])
        rc = errorf(e, "%s: holds %lld samples but %s/manifest.json lists %lld (the shard changed after the manifest "
                    "was written: re-run the conversion)", L->paths[s], (long long)shard_reader_count(P->reader),
                    L->dir, (long long)L->shard_samples[s]);
    if (rc != 0) {
        reader_close(P);
        free(P->dead_msg);
        P->dead_msg = xstrdup(e->msg);
        P->dead_shard = s;
        return -1;
    }
    P->reader_shard = s;
    return 0;
}

// Payload bytes of a sample as stored: tokens (4 B each), mask (1 B each) and media payloads.
static int64_t sample_bytes(const Sample* s) {
    int64_t n = (int64_t)s->n_tokens * 5;
    for (int i = 0; i < s->n_media; i++) {
        const MediaItem* m = &s->media[i];
        if (m->kind == MEDIA_IMAGE_ENCODED) n += (int64_t)m->n_bytes;
        if (m->kind == MEDIA_IMAGE_PIXELS) n += (int64_t)m->height * m->width * m->channels;
        if (m->kind == MEDIA_AUDIO_PCM) n += (int64_t)m->n_samples * 2;
        if (m->kind == MEDIA_TIMESERIES) n += (int64_t)m->length * m->channels * 4;
        if (m->kind == MEDIA_FEATURES) n += (int64_t)m->n_feat_tokens * m->dim * m->feat_dtype_bytes;
    }
    return n;
}

// Reads the sample at slot->index of this rank's slice. A failure marks the slot bad (with the message).
static void slot_load(ShardLoader* L, Slot* sl) {
    Producer* P = &L->prod;
    int64_t k = sl->index;
    int p = 0;
    while (k >= P->pieces[p].count) k -= P->pieces[p++].count;
    sl->shard = P->pieces[p].shard;
    sl->loaded = 1;
    Error e = {{0}};
    int rc = reader_use(L, sl->shard, &e);
    if (rc != 0) {   // no key can be named: name the sample's place in the shard
        size_t used = strlen(e.msg);
        long long at = (long long)(P->pieces[p].first + k);
        snprintf(e.msg + used, sizeof e.msg - used, " (sample #%lld of the shard)", at);
    } else {
        pthread_mutex_lock(&g_hdf5_lock);
        rc = shard_reader_get(P->reader, P->pieces[p].first + k, &sl->s, &e);
        pthread_mutex_unlock(&g_hdf5_lock);
        if (rc != 0) sample_free(&sl->s);
    }
    if (rc == 0 && sample_validate(&sl->s, L->paths[sl->shard], &e) != 0) {
        sample_free(&sl->s);
        rc = -1;
    }
    if (rc != 0) {
        sl->bad = xstrdup(e.msg);
        return;
    }
    atomic_fetch_add(&L->samples_read, 1);
    atomic_fetch_add(&L->bytes_read, sample_bytes(&sl->s));
    count_live(L, 1);
}

static void slot_clear(ShardLoader* L, Slot* sl) {
    if (sl->loaded && !sl->bad) count_live(L, -1);
    sample_free(&sl->s);
    free(sl->bad);
    memset(sl, 0, sizeof *sl);
}

// ============================================================================ producer: the shuffle buffer

// Takes the next sample of this rank's epoch order out of the buffer into *out: fill the buffer up to K,
// pick a slot uniformly, refill it with the next slice sample (or, once the slice is read, close the gap
// with the last slot). With simulate, only indices move and nothing is read (fast-forward for resume).
static void buffer_take(ShardLoader* L, Slot* out, int simulate) {
    Producer* P = &L->prod;
    int64_t len = (int64_t)L->epoch_len;
    while (P->n_slots < L->k && P->next_in < len) {
        Slot* s = &P->slots[P->n_slots++];
        memset(s, 0, sizeof *s);
        s->index = P->next_in++;
        if (!simulate) slot_load(L, s);
    }
    int j = (int)below(&P->rng, (uint64_t)P->n_slots);
    *out = P->slots[j];
    if (P->next_in < len) {
        memset(&P->slots[j], 0, sizeof P->slots[j]);
        P->slots[j].index = P->next_in++;
        if (!simulate) slot_load(L, &P->slots[j]);
    } else {
        P->slots[j] = P->slots[--P->n_slots];
    }
    P->taken++;
}

static int by_slot_index(const void* a, const void* b) {
    int64_t x = (*(Slot* const*)a)->index, y = (*(Slot* const*)b)->index;
    return (x > y) - (x < y);
}

static void producer_clear_buffer(ShardLoader* L) {
    Producer* P = &L->prod;
    for (int i = 0; i < P->n_slots; i++) slot_clear(L, &P->slots[i]);
    P->n_slots = 0;
}

// Starts epoch p.epoch at order position p.index: assignment, generator, fast-forward, then the reads.
static void producer_start(ShardLoader* L, ShardPosition p) {
    Producer* P = &L->prod;
    producer_clear_buffer(L);
    free(P->pieces);
    P->epoch = p.epoch;
    P->n_pieces = shard_assign(L->shard_samples, L->m.n_shards, L->o.seed, p.epoch, L->o.dp_rank, L->o.dp_size,
                               &P->pieces);
    P->next_in = 0;
    P->taken = 0;
    P->rng = stream_seed(L->o.seed, p.epoch, (uint64_t)L->o.dp_rank, STREAM_BUFFER);
    P->good_in_epoch = p.index > 0 ? 1 : 0;
    for (uint64_t i = 0; i < p.index; i++) {
        Slot skipped;
        buffer_take(L, &skipped, 1);
    }
    if (p.index == 0) return;
    Slot** order = xmalloc((size_t)P->n_slots * sizeof *order);   // read in slice order (sequential in shards)
    for (int i = 0; i < P->n_slots; i++) order[i] = &P->slots[i];
    qsort(order, (size_t)P->n_slots, sizeof *order, by_slot_index);
    for (int i = 0; i < P->n_slots; i++) slot_load(L, order[i]);
    free(order);
}

// Takes the next sample in order, moving to the next epoch when this one is used up.
static int producer_take(ShardLoader* L, Slot* out, Error* e) {
    Producer* P = &L->prod;
    if (P->taken == L->epoch_len) {
        if (P->good_in_epoch == 0)
            return errorf(e, "%s: rank %d of %d found no usable sample in epoch %llu (every sample of its slice is "
                          "bad: see the warnings above)", L->dir, L->o.dp_rank, L->o.dp_size,
                          (unsigned long long)P->epoch);
        producer_start(L, (ShardPosition){P->epoch + 1, 0});
    }
    buffer_take(L, out, 0);
    return 0;
}

// ============================================================================ producer: preparing samples

static float half_to_float(uint16_t h) {
    int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    float f;
    if (exp == 0) f = ldexpf((float)man, -24);                   // zero and subnormals
    else if (exp == 31) f = man ? NAN : INFINITY;
    else f = ldexpf((float)(man | 0x400), exp - 25);             // (1 + man/1024) * 2^(exp-15)
    return (h & 0x8000) ? -f : f;
}

static void batch_media_free(BatchMedia* m) {
    free(m->data);
    free(m->bytes);
    memset(m, 0, sizeof *m);
}

// Decodes (ENCODED) or expands to RGB (PIXELS) an image and preprocesses it to (3, S, S).
static int convert_image(const ShardLoader* L, MediaItem* m, BatchMedia* out, const char* what, Error* e) {
    Image im = {0, 0, NULL};
    if (m->kind == MEDIA_IMAGE_ENCODED) {
        if (image_decode(m->bytes, m->n_bytes, &im, what, e) != 0) return -1;
    } else {
        size_t n = (size_t)m->height * (size_t)m->width, ch = (size_t)m->channels;
        im = (Image){m->height, m->width, xmalloc(n * 3)};   // (h, w, 3) from (h, w, 1 or 3)
        for (size_t i = 0; i < n; i++)
            for (size_t c = 0; c < 3; c++) im.rgb[3 * i + c] = m->pixels[i * ch + (ch == 3 ? c : 0)];
    }
    int S = L->o.image_size;
    out->data = xmalloc((size_t)3 * (size_t)S * (size_t)S * sizeof *out->data);   // (3, S, S)
    int rc = image_preprocess(&im, S, L->o.image_mode, L->o.image_mean, L->o.image_std, out->data, e);
    image_free(&im);
    out->ndim = 3;
    out->shape[0] = 3;
    out->shape[1] = S;
    out->shape[2] = S;
    return rc;
}

// Images left as stored: the file bytes, or the (h, w, c) pixels, handed over without a copy.
static void keep_image(MediaItem* m, BatchMedia* out) {
    if (m->kind == MEDIA_IMAGE_ENCODED) {
        out->bytes = m->bytes;
        out->n_bytes = m->n_bytes;
        m->bytes = NULL;
        return;
    }
    out->bytes = m->pixels;
    m->pixels = NULL;
    out->n_bytes = (size_t)m->height * (size_t)m->width * (size_t)m->channels;
    out->ndim = 3;
    out->shape[0] = m->height;
    out->shape[1] = m->width;
    out->shape[2] = m->channels;
}

// Audio, time series and features as float arrays (series and fp32 features are handed over without a copy).
static void convert_signal(MediaItem* m, BatchMedia* out) {
    if (m->kind == MEDIA_AUDIO_PCM) {
        out->data = xmalloc((m->n_samples ? m->n_samples : 1) * sizeof *out->data);   // (n)
        for (size_t i = 0; i < m->n_samples; i++) out->data[i] = (float)m->pcm[i] / 32768.0f;
        out->ndim = 1;
        out->shape[0] = (int64_t)m->n_samples;
    } else if (m->kind == MEDIA_TIMESERIES) {
        out->data = m->series;   // (length, channels)
        m->series = NULL;
        out->ndim = 2;
        out->shape[0] = m->length;
        out->shape[1] = m->channels;
    } else {
        size_t n = (size_t)m->n_feat_tokens * (size_t)m->dim;
        if (m->feat_dtype_bytes == 4) {
            out->data = m->feat;   // (n_tokens, dim)
            m->feat = NULL;
        } else {
            out->data = xmalloc(n * sizeof *out->data);   // (n_tokens, dim)
            for (size_t i = 0; i < n; i++) out->data[i] = half_to_float(((const uint16_t*)m->feat)[i]);
        }
        out->ndim = 2;
        out->shape[0] = m->n_feat_tokens;
        out->shape[1] = m->dim;
    }
}

// Converts one stored media item (validated by sample_validate) into its batch form.
static int convert_media(const ShardLoader* L, MediaItem* m, BatchMedia* out, const char* what, Error* e) {
    memset(out, 0, sizeof *out);
    out->kind = m->kind;
    out->placeholder_pos = m->placeholder_pos;
    out->n_placeholder = m->n_placeholder;
    int is_image = m->kind == MEDIA_IMAGE_ENCODED || m->kind == MEDIA_IMAGE_PIXELS;
    if (is_image && L->o.image_size > 0) return convert_image(L, m, out, what, e);
    if (is_image) keep_image(m, out);
    else if (m->kind == MEDIA_AUDIO_PCM || m->kind == MEDIA_TIMESERIES || m->kind == MEDIA_FEATURES)
        convert_signal(m, out);
    else
        return errorf(e, "%s: unknown media kind %d", what, (int)m->kind);
    return 0;
}

static void prepared_free(Prepared* p) {
    free(p->key);
    free(p->tokens);
    free(p->mask);
    for (int i = 0; i < p->n_media; i++) batch_media_free(&p->media[i]);
    free(p->media);
    memset(p, 0, sizeof *p);
}

// Tokens of s that fit ctx_len: all, or (truncate) up to ctx_len but before the first media item that would
// not fit whole. 0 when nothing usable fits.
static size_t fitting_length(const Sample* s, int ctx_len) {
    size_t len = (size_t)ctx_len;
    if (s->n_tokens <= len) return s->n_tokens;
    for (int i = 0; i < s->n_media; i++) {
        const MediaItem* m = &s->media[i];
        if ((size_t)m->placeholder_pos + (size_t)m->n_placeholder > len) {
            if ((size_t)m->placeholder_pos < len) len = (size_t)m->placeholder_pos;
            break;
        }
    }
    return len;
}

// Checks a loaded sample against the options and converts it. Returns 0, -1 (a bad sample: skip_bad may
// skip it) or -2 (the data does not suit this loader at all). e: "<file>: sample '<key>': ...".
static int prepare_checked(ShardLoader* L, Slot* sl, Prepared* p, Error* e) {
    Sample* s = &sl->s;
    const char* file = L->paths[sl->shard];
    if (L->o.text_only && s->n_media > 0) {
        errorf(e, "%s: sample '%s' has %d media items, but this loader reads text-only data (use a text dataset "
               "for the text trainer)", file, s->key, s->n_media);
        return -2;
    }
    if (s->n_tokens == 0) return errorf(e, "%s: sample '%s' has no tokens", file, s->key);
    for (size_t t = 0; t < s->n_tokens; t++) {
        uint32_t id = s->tokens[t];
        int placeholder = id >= SHARD_PLACEHOLDER_IMAGE && id <= SHARD_PLACEHOLDER_TIMESERIES;
        if (!placeholder && (id > INT32_MAX || (L->m.vocab_size > 0 && id >= (uint32_t)L->m.vocab_size)))
            return errorf(e, "%s: sample '%s': token %u at %zu is outside the vocabulary of %d", file, s->key, id, t,
                          L->m.vocab_size);
    }
    size_t n = fitting_length(s, L->o.ctx_len);
    if (n < s->n_tokens && !L->o.truncate)
        return errorf(e, "%s: sample '%s' has %zu tokens, more than ctx_len %d (raise ctx_len, or allow truncation)",
                      file, s->key, s->n_tokens, L->o.ctx_len);
    if (n == 0)
        return errorf(e, "%s: sample '%s': its first media item does not fit in ctx_len %d even truncated", file,
                      s->key, L->o.ctx_len);
    int n_media = 0;
    while (n_media < s->n_media && (size_t)(s->media[n_media].placeholder_pos + s->media[n_media].n_placeholder) <= n)
        n_media++;
    p->media = xcalloc((size_t)(n_media ? n_media : 1), sizeof *p->media);
    for (int i = 0; i < n_media; i++) {
        char what[512];
        snprintf(what, sizeof what, "%s: sample '%s': media item %d", file, s->key, i);
        p->n_media = i + 1;
        if (convert_media(L, &s->media[i], &p->media[i], what, e) != 0) return -1;
    }
    p->key = s->key;   // taken over: the sample no longer owns them
    p->tokens = s->tokens;
    p->mask = s->loss_mask;
    s->key = NULL;
    s->tokens = NULL;
    s->loss_mask = NULL;
    p->n = n;
    p->truncated = n < s->n_tokens;
    return 0;
}

// Turns the slot taken from the buffer into a Prepared sample (the slot is consumed either way).
static int prepare(ShardLoader* L, Slot* sl, Prepared* p, Error* e) {
    memset(p, 0, sizeof *p);
    int rc = sl->bad ? errorf(e, "%s", sl->bad) : prepare_checked(L, sl, p, e);
    if (rc != 0) {
        prepared_free(p);
        slot_clear(L, sl);   // a good-but-unusable sample leaves the live count here
        return rc;
    }
    sl->bad = NULL;
    sample_free(&sl->s);    // what was not taken over
    return 0;
}

// The next usable sample of the order (bad ones are skipped and reported with skip_bad).
static int next_prepared(ShardLoader* L, Prepared* p, Error* e) {
    Producer* P = &L->prod;
    for (;;) {
        Slot sl;
        if (producer_take(L, &sl, e) != 0) return -1;
        Error why = {{0}};
        int rc = prepare(L, &sl, p, &why);
        if (rc == 0) {
            p->epoch = P->epoch;
            p->index = P->taken - 1;
            P->good_in_epoch++;
            return 0;
        }
        if (rc == -2 || !L->o.skip_bad) {
            *e = why;
            return -1;
        }
        long long n = atomic_fetch_add(&L->bad, 1) + 1;
        fprintf(L->log, "modrwkv: warning: %s (skipped, bad sample %lld)\n", why.msg, n);
        if (atomic_load(&L->stop)) return 1;
    }
}

// ============================================================================ producer: batches

static void batch_add_sample(ShardBatch* b, Prepared* p, int row, int col) {
    int32_t* x = b->tokens + (size_t)row * (size_t)b->T + (size_t)col;    // (n) inside row
    int32_t* y = b->targets + (size_t)row * (size_t)b->T + (size_t)col;   // (n)
    for (size_t t = 0; t < p->n; t++) {
        x[t] = (int32_t)p->tokens[t];
        y[t] = t + 1 < p->n && p->mask[t + 1] ? (int32_t)p->tokens[t + 1] : -1;
    }
    b->samples = xrealloc(b->samples, (size_t)(b->n_samples + 1) * sizeof *b->samples);
    b->samples[b->n_samples++] = (BatchSample){p->key, row, col, (int)p->n, p->epoch, p->index, p->truncated};
    p->key = NULL;
    if (p->n_media > 0) b->media = xrealloc(b->media, (size_t)(b->n_media + p->n_media) * sizeof *b->media);
    for (int i = 0; i < p->n_media; i++) {
        BatchMedia* m = &b->media[b->n_media++];
        *m = p->media[i];
        m->row = row;
        m->placeholder_pos += col;
        memset(&p->media[i], 0, sizeof p->media[i]);
    }
    prepared_free(p);
}

// Rows were filled with stride ctx_len; shrink them to stride T in place (rows only move towards the front).
static void batch_compact(ShardBatch* b, int stride) {
    for (int r = 1; r < b->B; r++) {
        memmove(b->tokens + (size_t)r * (size_t)b->T, b->tokens + (size_t)r * (size_t)stride, (size_t)b->T * 4);
        memmove(b->targets + (size_t)r * (size_t)b->T, b->targets + (size_t)r * (size_t)stride, (size_t)b->T * 4);
    }
}

// Builds the next batch. Returns 0, -1 (e filled) or 1 when asked to stop.
static int build_batch(ShardLoader* L, ShardBatch** out, Error* e) {
    Producer* P = &L->prod;
    int B = L->o.batch_size, C = L->o.ctx_len;
    ShardBatch* b = xcalloc(1, sizeof *b);
    b->B = B;
    b->T = C;   // stride while filling
    b->tokens = xcalloc((size_t)B * (size_t)C, sizeof *b->tokens);     // (B, C)
    b->targets = xmalloc((size_t)B * (size_t)C * sizeof *b->targets);  // (B, C)
    for (size_t i = 0; i < (size_t)B * (size_t)C; i++) b->targets[i] = -1;
    int longest = 0, rc = 0;
    for (int row = 0; row < B && rc == 0; row++) {
        int used = 0;
        while (rc == 0) {
            if (atomic_load(&L->stop)) {
                rc = 1;
                break;
            }
            Prepared p;
            if (P->has_carry) {
                p = P->carry;
                P->has_carry = 0;
            } else if ((rc = next_prepared(L, &p, e)) != 0) {
                break;
            }
            if (used > 0 && (size_t)used + p.n > (size_t)C) {   // pack: does not fit, starts the next row
                P->carry = p;
                P->has_carry = 1;
                break;
            }
            int n = (int)p.n;
            batch_add_sample(b, &p, row, used);
            used += n;
            if (!L->o.pack || used == C) break;
        }
        if (used > longest) longest = used;
    }
    if (rc != 0) {
        count_live(L, -b->n_samples);
        shard_batch_free(b);
        return rc;
    }
    int T = (longest + 15) / 16 * 16;
    b->T = L->o.fixed_len || T > C ? C : T;
    if (b->T < C) batch_compact(b, C);
    b->end = P->has_carry ? (ShardPosition){P->carry.epoch, P->carry.index}
                          : normalise(L, (ShardPosition){P->epoch, P->taken});
    *out = b;
    return 0;
}

void shard_batch_free(ShardBatch* b) {
    if (!b) return;
    free(b->tokens);
    free(b->targets);
    for (int i = 0; i < b->n_samples; i++) free(b->samples[i].key);
    free(b->samples);
    for (int i = 0; i < b->n_media; i++) batch_media_free(&b->media[i]);
    free(b->media);
    free(b);
}

// ============================================================================ prefetch thread and queue

static void* producer_main(void* arg) {
    ShardLoader* L = arg;
    producer_start(L, L->start);
    for (;;) {
        pthread_mutex_lock(&L->mu);
        while (!atomic_load(&L->stop) && L->q_count >= L->o.prefetch) pthread_cond_wait(&L->can_put, &L->mu);
        pthread_mutex_unlock(&L->mu);
        if (atomic_load(&L->stop)) break;
        ShardBatch* b = NULL;
        Error e = {{0}};
        int rc = build_batch(L, &b, &e);   // the batch being built holds the reserved queue place
        if (rc == 1) break;
        pthread_mutex_lock(&L->mu);
        if (rc == 0) {
            L->queue[(L->q_head + L->q_count) % L->o.prefetch] = b;
            L->q_count++;
        } else {
            L->failed = 1;
            L->err = e;
        }
        pthread_cond_signal(&L->can_get);
        pthread_mutex_unlock(&L->mu);
        if (rc != 0) break;
    }
    return NULL;
}

static int producer_launch(ShardLoader* L, Error* e) {
    atomic_store(&L->stop, 0);
    L->failed = 0;
    L->start = L->pos;
    int rc = pthread_create(&L->thread, NULL, producer_main, L);
    if (rc != 0) return errorf(e, "%s: cannot start the prefetch thread (pthread_create error %d)", L->dir, rc);
    L->running = 1;
    return 0;
}

// Stops and joins the prefetch thread and drops everything it prepared; the position stays.
static void producer_halt(ShardLoader* L) {
    if (L->running) {
        pthread_mutex_lock(&L->mu);
        atomic_store(&L->stop, 1);
        pthread_cond_broadcast(&L->can_put);
        pthread_mutex_unlock(&L->mu);
        pthread_join(L->thread, NULL);
        L->running = 0;
    }
    for (; L->q_count > 0; L->q_count--, L->q_head = (L->q_head + 1) % L->o.prefetch) {
        ShardBatch* b = L->queue[L->q_head];
        count_live(L, -b->n_samples);
        shard_batch_free(b);
    }
    Producer* P = &L->prod;
    producer_clear_buffer(L);
    if (P->has_carry) {
        prepared_free(&P->carry);
        P->has_carry = 0;
        count_live(L, -1);
    }
    reader_close(P);
    free(P->pieces);
    P->pieces = NULL;
    free(P->dead_msg);
    P->dead_msg = NULL;
    P->dead_shard = -1;
    L->q_head = 0;
    L->failed = 0;
}

// ============================================================================ public API

static int check_options(const ShardLoaderOptions* o, Error* e) {
    const char* d = o->dir ? o->dir : "(no dir)";
    if (!o->dir || !o->dir[0]) return errorf(e, "shard loader: no dataset directory given");
    if (o->dp_size < 1 || o->dp_rank < 0 || o->dp_rank >= o->dp_size)
        return errorf(e, "%s: data-parallel rank %d of %d is invalid", d, o->dp_rank, o->dp_size);
    if (o->batch_size < 1 || o->batch_size > (1 << 20))
        return errorf(e, "%s: batch size %d must be 1..2^20", d, o->batch_size);
    if (o->ctx_len < 1 || o->ctx_len > (1 << 24)) return errorf(e, "%s: ctx_len %d must be 1..2^24", d, o->ctx_len);
    if (o->prefetch < 1 || o->prefetch > 1024)
        return errorf(e, "%s: prefetch %d must be 1..1024 batches", d, o->prefetch);
    if (o->shuffle_buffer < 0 || o->shuffle_buffer > (1 << 20))
        return errorf(e, "%s: shuffle buffer %d must be 0..2^20 samples", d, o->shuffle_buffer);
    if (o->image_size < 0 || o->image_size > 8192)
        return errorf(e, "%s: image size %d must be 0..8192", d, o->image_size);
    if (o->image_size > 0) {
        if (!o->image_mode || (strcmp(o->image_mode, "resize") != 0 && strcmp(o->image_mode, "pad") != 0))
            return errorf(e, "%s: image mode '%s' is not one of resize|pad", d,
                          o->image_mode ? o->image_mode : "(null)");
        for (int c = 0; c < 3; c++)
            if (!(o->image_std[c] > 0.0f) || !isfinite(o->image_std[c]) || !isfinite(o->image_mean[c]))
                return errorf(e, "%s: image mean/std of channel %d must be finite with std > 0", d, c);
    }
    return 0;
}

// Per-shard counts from the manifest; every shard must hold samples, and every rank must get some.
static int check_manifest(ShardLoader* L, Error* e) {
    if (L->m.n_shards < 1) return errorf(e, "%s/manifest.json lists no shards", L->dir);
    uint64_t total = 0;
    L->paths = xcalloc((size_t)L->m.n_shards, sizeof *L->paths);
    L->shard_samples = xcalloc((size_t)L->m.n_shards, sizeof *L->shard_samples);
    for (int i = 0; i < L->m.n_shards; i++) {
        const ShardInfo* s = &L->m.shards[i];
        size_t n = strlen(L->dir) + strlen(s->file) + 2;
        L->paths[i] = xmalloc(n);
        snprintf(L->paths[i], n, "%s/%s", L->dir, s->file);
        if (s->n_samples < 1)
            return errorf(e, "%s: the shard is empty (manifest.json lists %lld samples): remove it or re-run the "
                          "conversion", L->paths[i], (long long)s->n_samples);
        L->shard_samples[i] = s->n_samples;
        total += (uint64_t)s->n_samples;
    }
    if (total < (uint64_t)L->o.dp_size)
        return errorf(e, "%s: %llu samples cannot be split over %d data-parallel ranks (each needs at least one)",
                      L->dir, (unsigned long long)total, L->o.dp_size);
    L->epoch_len = total * ((uint64_t)L->o.dp_rank + 1) / (uint64_t)L->o.dp_size -
                   total * (uint64_t)L->o.dp_rank / (uint64_t)L->o.dp_size;
    return 0;
}

ShardLoader* shard_loader_open(const ShardLoaderOptions* o, Error* e) {
    if (check_options(o, e) != 0) return NULL;
    ShardLoader* L = xcalloc(1, sizeof *L);
    L->o = *o;
    L->dir = xstrdup(o->dir);
    L->o.dir = L->dir;
    L->o.image_mode = o->image_mode && strcmp(o->image_mode, "pad") == 0 ? "pad" : "resize";
    L->log = o->log ? o->log : stderr;
    L->k = o->shuffle_buffer > 1 ? o->shuffle_buffer : 1;
    L->prod.slots = xcalloc((size_t)L->k, sizeof *L->prod.slots);
    L->prod.reader_shard = -1;
    L->prod.dead_shard = -1;
    L->queue = xcalloc((size_t)o->prefetch, sizeof *L->queue);
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->can_put, NULL);
    pthread_cond_init(&L->can_get, NULL);
    if (manifest_read(L->dir, &L->m, e) != 0 || check_manifest(L, e) != 0) {
        shard_loader_close(L);
        return NULL;
    }
    snprintf(L->describe, sizeof L->describe,
             "shards %s: %lld samples in %d shards (%s, %s), rank %d/%d reads %llu per epoch, shuffle buffer %d, "
             "batch %d x %d%s", L->dir, (long long)L->m.n_samples, L->m.n_shards,
             L->m.modalities ? L->m.modalities : "?", L->m.tokenizer ? L->m.tokenizer : "?", o->dp_rank, o->dp_size,
             (unsigned long long)L->epoch_len, L->k, o->batch_size, o->ctx_len, o->pack ? ", packed" : "");
    return L;
}

int shard_loader_next(ShardLoader* L, ShardBatch** out, Error* e) {
    *out = NULL;
    if (!L->running && !L->failed && producer_launch(L, e) != 0) return -1;
    pthread_mutex_lock(&L->mu);
    while (L->q_count == 0 && !L->failed) pthread_cond_wait(&L->can_get, &L->mu);
    if (L->q_count == 0) {
        if (e) *e = L->err;
        pthread_mutex_unlock(&L->mu);
        return -1;
    }
    ShardBatch* b = L->queue[L->q_head];
    L->q_head = (L->q_head + 1) % L->o.prefetch;
    L->q_count--;
    pthread_cond_signal(&L->can_put);
    pthread_mutex_unlock(&L->mu);
    count_live(L, -b->n_samples);
    L->pos = b->end;
    *out = b;
    return 0;
}

ShardPosition shard_loader_get_position(const ShardLoader* L) { return L->pos; }

int shard_loader_set_position(ShardLoader* L, ShardPosition p, Error* e) {
    if (p.index >= L->epoch_len)
        return errorf(e, "%s: position %llu of epoch %llu is past this rank's %llu samples per epoch (the checkpoint "
                      "was made with another dataset or rank count)", L->dir, (unsigned long long)p.index,
                      (unsigned long long)p.epoch, (unsigned long long)L->epoch_len);
    producer_halt(L);
    L->pos = p;
    return 0;
}

uint64_t shard_loader_epoch_samples(const ShardLoader* L) { return L->epoch_len; }

const Manifest* shard_loader_manifest(const ShardLoader* L) { return &L->m; }

ShardLoaderStats shard_loader_stats(const ShardLoader* L) {
    ShardLoader* M = (ShardLoader*)L;   // atomics are read-only here; C11 atomic_load wants a non-const pointer
    double cpu = 0.0;
    clockid_t clock;
    struct timespec ts;
    if (L->running && pthread_getcpuclockid(L->thread, &clock) == 0 && clock_gettime(clock, &ts) == 0)
        cpu = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    return (ShardLoaderStats){atomic_load(&M->live), atomic_load(&M->peak), atomic_load(&M->samples_read),
                              atomic_load(&M->bad), atomic_load(&M->bytes_read), cpu};
}

const char* shard_loader_describe(const ShardLoader* L) { return L->describe; }

void shard_loader_close(ShardLoader* L) {
    if (!L) return;
    producer_halt(L);
    long long bad = atomic_load(&L->bad);
    if (bad > 0)
        fprintf(L->log, "modrwkv: warning: %s: skipped %lld bad samples (listed above)\n", L->dir, bad);
    for (int i = 0; L->paths && i < L->m.n_shards; i++) free(L->paths[i]);
    free(L->paths);
    free(L->shard_samples);
    manifest_free(&L->m);
    free(L->prod.slots);
    free(L->queue);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->can_put);
    pthread_cond_destroy(&L->can_get);
    free(L->dir);
    free(L);
}

// ============================================================================ text-trainer adapter

typedef struct ShardTextLoader {
    DataLoader base;   // first member: a DataLoader* points here
    ShardLoader* L;
    char describe[1500];
} ShardTextLoader;

static int text_next_batch(DataLoader* dl, Batch* b, Error* e) {
    ShardTextLoader* A = (ShardTextLoader*)dl;
    const ShardLoaderOptions* o = &A->L->o;
    if (b->B != o->batch_size || b->T != o->ctx_len)
        return errorf(e, "%s: batch is %d x %d but the loader was opened for %d x %d", A->L->dir, b->B, b->T,
                      o->batch_size, o->ctx_len);
    ShardBatch* sb = NULL;
    if (shard_loader_next(A->L, &sb, e) != 0) return -1;
    memcpy(b->tokens, sb->tokens, (size_t)b->B * (size_t)b->T * sizeof *b->tokens);
    memcpy(b->targets, sb->targets, (size_t)b->B * (size_t)b->T * sizeof *b->targets);
    shard_batch_free(sb);
    return 0;
}

static uint64_t text_get_position(const DataLoader* dl) {
    const ShardTextLoader* A = (const ShardTextLoader*)dl;
    ShardPosition p = shard_loader_get_position(A->L);
    return p.epoch * shard_loader_epoch_samples(A->L) + p.index;
}

static void text_set_position(DataLoader* dl, uint64_t pos) {
    ShardTextLoader* A = (ShardTextLoader*)dl;
    uint64_t E = shard_loader_epoch_samples(A->L);
    shard_loader_set_position(A->L, (ShardPosition){pos / E, pos % E}, NULL);   // index < E: cannot fail
}

static void text_destroy(DataLoader* dl) {
    ShardTextLoader* A = (ShardTextLoader*)dl;
    shard_loader_close(A->L);
    free(A);
}

DataLoader* shard_loader_text_adapter(const ShardLoaderOptions* o, Error* e) {
    ShardLoaderOptions t = *o;
    t.fixed_len = 1;
    t.text_only = 1;
    t.image_size = 0;
    ShardLoader* L = shard_loader_open(&t, e);
    if (!L) return NULL;
    ShardTextLoader* A = xcalloc(1, sizeof *A);
    A->L = L;
    A->base.next_batch = text_next_batch;
    A->base.get_position = text_get_position;
    A->base.set_position = text_set_position;
    A->base.destroy = text_destroy;
    A->base.n_tokens = (uint64_t)L->m.n_tokens;
    snprintf(A->describe, sizeof A->describe, "text %s", L->describe);
    A->base.describe = A->describe;
    return &A->base;
}

// data_inspect.c — `modrwkv data inspect` and `modrwkv data verify` (datasets/data_tools.h).
//
// inspect DIR|FILE: counts, modalities, sample lengths, trained (loss-masked) tokens, the most frequent
// tokens, media per kind, and the first sample pretty-printed with its media summary. It reads every
// sample (the statistics are exact), so it takes about as long as one epoch of reading.
// verify DIR: the manifest is valid and every listed shard exists; every shard's SHA-256 equals the
// manifest's; each shard's attributes and counts equal its manifest entry; every sample reads and
// validates (offsets monotone, placeholders == media, token ids < vocab_size); keys are unique across the
// dataset; the modalities listed equal those present. The first failure is returned as one line naming
// the file (and sample key); on success one summary line ends with "OK".
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/data_tools.h"
#include "datasets/shard.h"
#include "datasets/shard_internal.h"

enum { TOP_TOKENS = 10, SHOW_TOKENS = 32 };

// The shard files of a dataset directory (from its manifest) or a single shard file.
typedef struct FileList {
    char** paths;
    int n;
    Manifest m;        // zeroed for a single file
} FileList;

static char* join_path(const char* dir, const char* name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int list_files(const char* path, FileList* fl, Error* e) {
    *fl = (FileList){0};
    struct stat st;
    if (stat(path, &st) != 0) return errorf(e, "%s: no such file or directory", path);
    if (!S_ISDIR(st.st_mode)) {
        fl->paths = xmalloc(sizeof *fl->paths);
        fl->paths[0] = xstrdup(path);
        fl->n = 1;
        return 0;
    }
    if (manifest_read(path, &fl->m, e)) return -1;
    fl->n = fl->m.n_shards;
    fl->paths = xmalloc((size_t)fl->n * sizeof *fl->paths);
    for (int i = 0; i < fl->n; i++) fl->paths[i] = join_path(path, fl->m.shards[i].file);
    return 0;
}

static void free_files(FileList* fl) {
    for (int i = 0; i < fl->n; i++) free(fl->paths[i]);
    free(fl->paths);
    manifest_free(&fl->m);
}

// ---------------------------------------------------------------------------------------------------- inspect
typedef struct Stats {
    int64_t n_samples, n_tokens, n_trained, n_files;
    int64_t items[N_MEDIA_KINDS], payload_bytes[N_MEDIA_KINDS], placeholders[N_MEDIA_KINDS];
    int64_t* lengths;          // (n_samples) tokens per sample
    size_t cap_lengths;
    uint64_t* hist;            // (n_hist) occurrences of each token id
    size_t n_hist;
    unsigned kinds;
    Sample first;              // the first sample, printed at the end
    char* first_file;
    char header[512];          // split, tokenizer, vocab, format version of the first file
} Stats;

static void add_sample(Stats* st, Sample* s, const char* file) {
    if ((size_t)st->n_samples == st->cap_lengths) {
        st->cap_lengths = st->cap_lengths ? 2 * st->cap_lengths : 1024;
        st->lengths = xrealloc(st->lengths, st->cap_lengths * sizeof *st->lengths);
    }
    st->lengths[st->n_samples++] = (int64_t)s->n_tokens;
    st->n_tokens += (int64_t)s->n_tokens;
    for (size_t t = 0; t < s->n_tokens; t++) {
        st->n_trained += s->loss_mask[t];
        if (s->tokens[t] < st->n_hist) st->hist[s->tokens[t]]++;
    }
    for (int k = 0; k < s->n_media; k++) {
        const MediaItem* m = &s->media[k];
        st->items[m->kind]++;
        st->payload_bytes[m->kind] += media_payload_bytes(m);
        st->placeholders[m->kind] += m->n_placeholder;
        st->kinds |= 1u << m->kind;
    }
    if (st->n_samples == 1) {
        st->first = *s;
        st->first_file = xstrdup(file);
        *s = (Sample){0};
    }
}

static int by_value(const void* a, const void* b) {
    int64_t x = *(const int64_t*)a, y = *(const int64_t*)b;
    return x < y ? -1 : x > y;
}

static void print_lengths(FILE* out, Stats* st) {
    qsort(st->lengths, (size_t)st->n_samples, sizeof *st->lengths, by_value);
    int64_t n = st->n_samples;
    fprintf(out, "sample length (tokens): min %lld, median %lld, mean %.1f, p95 %lld, max %lld\n",
            (long long)st->lengths[0], (long long)st->lengths[(n - 1) / 2], (double)st->n_tokens / (double)n,
            (long long)st->lengths[(n - 1) * 95 / 100], (long long)st->lengths[n - 1]);
    fprintf(out, "trained tokens (loss mask 1): %lld of %lld (%.1f%%)\n", (long long)st->n_trained,
            (long long)st->n_tokens, 100.0 * (double)st->n_trained / (double)st->n_tokens);
}

static void print_top_tokens(FILE* out, const Stats* st) {
    size_t distinct = 0;
    for (size_t i = 0; i < st->n_hist; i++) distinct += st->hist[i] > 0;
    fprintf(out, "distinct token ids: %zu; most frequent:", distinct);
    uint64_t prev = UINT64_MAX;
    size_t prev_id = 0;
    for (int rank = 0; rank < TOP_TOKENS; rank++) {   // the next largest count below (prev, prev_id) in (count, -id)
        size_t best = st->n_hist;
        for (size_t i = 0; i < st->n_hist; i++) {
            uint64_t c = st->hist[i];
            int below = c < prev || (c == prev && i > prev_id);
            if (c > 0 && below && (best == st->n_hist || c > st->hist[best])) best = i;
        }
        if (best == st->n_hist) break;
        fprintf(out, " %zu%s x%llu (%.1f%%)", best, is_placeholder_id((uint32_t)best) ? " [placeholder]" : "",
                (unsigned long long)st->hist[best], 100.0 * (double)st->hist[best] / (double)st->n_tokens);
        prev = st->hist[best];
        prev_id = best;
    }
    fprintf(out, "\n");
}

// "123 B", "12.3 kB", "1.2 MB", "3.4 GB"
static void format_bytes(double b, char* buf, size_t n) {
    if (b < 1e3) snprintf(buf, n, "%.0f B", b);
    else if (b < 1e6) snprintf(buf, n, "%.1f kB", b / 1e3);
    else if (b < 1e9) snprintf(buf, n, "%.1f MB", b / 1e6);
    else snprintf(buf, n, "%.2f GB", b / 1e9);
}

static void print_media_totals(FILE* out, const Stats* st) {
    for (int k = 1; k < N_MEDIA_KINDS; k++) {
        if (st->items[k] == 0) continue;
        char size[32];
        format_bytes((double)st->payload_bytes[k], size, sizeof size);
        fprintf(out, "media %-10s: %lld items, %s payload, %.1f placeholder tokens per item\n", media_kind_name(k),
                (long long)st->items[k], size, (double)st->placeholders[k] / (double)st->items[k]);
    }
}

static void print_item(FILE* out, const MediaItem* m) {
    fprintf(out, "  media %-10s placeholders [%d, %d): ", media_kind_name(m->kind), m->placeholder_pos,
            m->placeholder_pos + m->n_placeholder);
    switch (m->kind) {
    case MEDIA_IMAGE_ENCODED:
        fprintf(out, "%zu bytes of %s\n", m->n_bytes,
                m->n_bytes >= 4 && memcmp(m->bytes, "\x89PNG", 4) == 0 ? "PNG"
                : m->n_bytes >= 3 && memcmp(m->bytes, "\xff\xd8\xff", 3) == 0 ? "JPEG" : "unknown format");
        break;
    case MEDIA_IMAGE_PIXELS: fprintf(out, "pixels (%d, %d, %d)\n", m->height, m->width, m->channels); break;
    case MEDIA_AUDIO_PCM:
        fprintf(out, "%zu samples at 16 kHz (%.2f s)\n", m->n_samples, (double)m->n_samples / 16000.0);
        break;
    case MEDIA_TIMESERIES: fprintf(out, "series (%d, %d) float32\n", m->length, m->channels); break;
    default:
        fprintf(out, "features (%d, %d) %s\n", m->n_feat_tokens, m->dim, m->feat_dtype_bytes == 2 ? "float16" : "float32");
    }
}

static void print_sample(FILE* out, const Sample* s, const char* file) {
    size_t trained = 0;
    for (size_t t = 0; t < s->n_tokens; t++) trained += s->loss_mask[t];
    fprintf(out, "first sample: '%s' (%s #0): %zu tokens, %zu trained, %d media items\n", s->key, file, s->n_tokens,
            trained, s->n_media);
    for (int k = 0; k < s->n_media; k++) print_item(out, &s->media[k]);
    fprintf(out, "  tokens:");
    for (size_t t = 0; t < s->n_tokens && t < SHOW_TOKENS; t++)
        fprintf(out, " %u%s", s->tokens[t], s->loss_mask[t] ? "*" : "");
    fprintf(out, "%s   (* = trained)\n", s->n_tokens > SHOW_TOKENS ? " ..." : "");
}

static int inspect_file(const char* path, Stats* st, Error* e) {
    ShardReader* r = shard_reader_open(path, e);
    if (!r) return -1;
    const ShardFileInfo* info = shard_reader_info(r);
    if (!st->hist) {   // the first file describes the dataset (verify checks that all files agree)
        st->n_hist = info->vocab_size > 65536 ? (size_t)info->vocab_size : 65536;
        st->hist = xcalloc(st->n_hist, sizeof *st->hist);
        snprintf(st->header, sizeof st->header, "split %s, tokenizer %s (vocab %d, stored as uint%d), format version %d",
                 info->split, info->tokenizer, info->vocab_size, 8 * info->token_bytes, info->format_version);
    }
    int rc = 0;
    for (int64_t i = 0; rc == 0 && i < shard_reader_count(r); i++) {
        Sample s;
        rc = shard_reader_get(r, i, &s, e);
        if (rc == 0) add_sample(st, &s, path);
        sample_free(&s);
    }
    st->n_files++;
    shard_reader_close(r);
    return rc;
}

int data_inspect(const char* path, FILE* out, Error* e) {
    FileList fl;
    if (list_files(path, &fl, e)) return -1;
    Stats st = {0};
    st.kinds = 1;
    int rc = 0;
    for (int i = 0; rc == 0 && i < fl.n; i++) rc = inspect_file(fl.paths[i], &st, e);
    if (rc == 0) {
        char* mods = modalities_string(st.kinds);
        fprintf(out, "%s: %lld shard file%s, %lld samples, %lld tokens, modalities %s\n", path, (long long)st.n_files,
                st.n_files == 1 ? "" : "s", (long long)st.n_samples, (long long)st.n_tokens, mods);
        fprintf(out, "%s\n", st.header);
        free(mods);
        print_lengths(out, &st);
        print_top_tokens(out, &st);
        print_media_totals(out, &st);
        print_sample(out, &st.first, st.first_file);
    }
    sample_free(&st.first);
    free(st.first_file);
    free(st.lengths);
    free(st.hist);
    free_files(&fl);
    return rc;
}

// ---------------------------------------------------------------------------------------------------- verify
typedef struct KeyRef {
    char* key;
    int shard;
    int64_t index;
} KeyRef;

typedef struct Seen {
    KeyRef* keys;
    size_t n, cap;
    unsigned kinds;
} Seen;

static int by_key_ref(const void* a, const void* b) { return strcmp(((const KeyRef*)a)->key, ((const KeyRef*)b)->key); }

static int check_checksum(const char* path, const ShardInfo* si, const char* manifest, Error* e) {
    char hex[65];
    if (sha256_file_hex(path, hex, e)) return -1;
    if (strcmp(hex, si->sha256) != 0)
        return errorf(e, "%s: sha256 is %s but %s says %s (the shard was modified or corrupted after it was written: "
                      "regenerate it)", path, hex, manifest, si->sha256);
    return 0;
}

static int check_entry(const ShardFileInfo* info, const Manifest* m, const ShardInfo* si, const char* path, Error* e) {
    if (strcmp(info->split, m->split) != 0 || strcmp(info->tokenizer, m->tokenizer) != 0 || info->vocab_size != m->vocab_size)
        return errorf(e, "%s: split '%s', tokenizer '%s', vocab %d differ from the manifest's '%s', '%s', %d (a shard "
                      "of another dataset?)", path, info->split, info->tokenizer, info->vocab_size, m->split,
                      m->tokenizer, m->vocab_size);
    if (info->n_samples != si->n_samples || info->n_tokens != si->n_tokens || info->n_media != si->n_media)
        return errorf(e, "%s: holds %lld samples, %lld tokens, %lld media items but the manifest says %lld, %lld, %lld "
                      "(regenerate the dataset)", path, (long long)info->n_samples, (long long)info->n_tokens,
                      (long long)info->n_media, (long long)si->n_samples, (long long)si->n_tokens,
                      (long long)si->n_media);
    return 0;
}

// Reads and validates every sample of one shard, remembering its keys.
static int verify_shard(const char* path, int shard, const Manifest* m, Seen* seen, Error* e) {
    ShardReader* r = shard_reader_open(path, e);
    if (!r) return -1;
    const ShardFileInfo* info = shard_reader_info(r);
    int rc = check_entry(info, m, &m->shards[shard], path, e);
    for (int k = 1; k < N_MEDIA_KINDS; k++)
        if (info->n_items_of_kind[k] > 0) seen->kinds |= 1u << k;
    for (int64_t i = 0; rc == 0 && i < shard_reader_count(r); i++) {
        Sample s;
        rc = shard_reader_get(r, i, &s, e);
        if (rc) break;
        if (seen->n == seen->cap) {
            seen->cap = seen->cap ? 2 * seen->cap : 1024;
            seen->keys = xrealloc(seen->keys, seen->cap * sizeof *seen->keys);
        }
        seen->keys[seen->n++] = (KeyRef){s.key, shard, i};
        s.key = NULL;
        sample_free(&s);
    }
    shard_reader_close(r);
    return rc;
}

static int check_unique_keys(const char* dir, const Manifest* m, Seen* seen, Error* e) {
    qsort(seen->keys, seen->n, sizeof *seen->keys, by_key_ref);
    for (size_t i = 1; i < seen->n; i++) {
        const KeyRef *a = &seen->keys[i - 1], *b = &seen->keys[i];
        if (strcmp(a->key, b->key) == 0)
            return errorf(e, "%s: sample key '%s' appears in %s (#%lld) and %s (#%lld) (keys must be unique in a dataset)",
                          dir, a->key, m->shards[a->shard].file, (long long)a->index, m->shards[b->shard].file,
                          (long long)b->index);
    }
    return 0;
}

static int check_modalities(const char* manifest, const Manifest* m, unsigned present, Error* e) {
    unsigned listed = 0;
    modalities_mask(m->modalities, &listed);
    if (listed == (present | 1u)) return 0;
    char* have = modalities_string(present);
    int rc = errorf(e, "%s: lists modalities %s but the shards hold %s (regenerate the manifest)", manifest,
                    m->modalities, have);
    free(have);
    return rc;
}

int data_verify(const char* dir, FILE* out, Error* e) {
    Manifest m;
    if (manifest_read(dir, &m, e)) return -1;
    char* manifest = join_path(dir, "manifest.json");
    Seen seen = {0};
    int rc = 0;
    for (int i = 0; rc == 0 && i < m.n_shards; i++) {
        char* path = join_path(dir, m.shards[i].file);
        rc = check_checksum(path, &m.shards[i], manifest, e);
        if (rc == 0) rc = verify_shard(path, i, &m, &seen, e);
        if (rc == 0)
            fprintf(out, "  %s: %lld samples, %lld tokens, %lld media items, sha256 ok\n", m.shards[i].file,
                    (long long)m.shards[i].n_samples, (long long)m.shards[i].n_tokens, (long long)m.shards[i].n_media);
        free(path);
    }
    if (rc == 0) rc = check_unique_keys(dir, &m, &seen, e);
    if (rc == 0) rc = check_modalities(manifest, &m, seen.kinds, e);
    if (rc == 0)
        fprintf(out, "%s: verified %d shards, %lld samples, %lld tokens, modalities %s, keys unique: OK\n", dir,
                m.n_shards, (long long)m.n_samples, (long long)m.n_tokens, m.modalities);
    for (size_t i = 0; i < seen.n; i++) free(seen.keys[i].key);
    free(seen.keys);
    free(manifest);
    manifest_free(&m);
    return rc;
}

// convert.c — the conversion run shared by the converters, and their media / turn builders (contract in
// convert.h).
#include "datasets/convert.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/audio.h"
#include "datasets/image.h"

enum { MAX_KEY_BYTES = 255 };

// ---------------------------------------------------------------------------------------------------- key set
// Open addressing over FNV-1a hashes; the table doubles at half load.

struct StrSet {
    char** slots;   // (cap) NULL = empty
    size_t cap, n;
};

static uint64_t fnv1a(const char* s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static size_t strset_find(const StrSet* k, const char* key) {
    size_t i = (size_t)fnv1a(key) & (k->cap - 1);
    while (k->slots[i] && strcmp(k->slots[i], key) != 0) i = (i + 1) & (k->cap - 1);
    return i;
}

static void strset_grow(StrSet* k) {
    StrSet bigger = {xcalloc(k->cap * 2, sizeof(char*)), k->cap * 2, k->n};
    for (size_t i = 0; i < k->cap; i++)
        if (k->slots[i]) bigger.slots[strset_find(&bigger, k->slots[i])] = k->slots[i];
    free(k->slots);
    *k = bigger;
}

int strset_insert(StrSet* k, const char* key) {
    if (2 * (k->n + 1) > k->cap) strset_grow(k);
    size_t i = strset_find(k, key);
    if (k->slots[i]) return 1;
    k->slots[i] = xstrdup(key);
    k->n++;
    return 0;
}

int strset_contains(const StrSet* k, const char* key) { return k->slots[strset_find(k, key)] != NULL; }

StrSet* strset_new(void) {
    StrSet* k = xmalloc(sizeof *k);
    k->cap = 1024;
    k->n = 0;
    k->slots = xcalloc(k->cap, sizeof(char*));
    return k;
}

void strset_free(StrSet* k) {
    if (!k) return;
    for (size_t i = 0; i < k->cap; i++) free(k->slots[i]);
    free(k->slots);
    free(k);
}

// ---------------------------------------------------------------------------------------------------- the run

static int check_options(const ConvertOptions* o, Error* e) {
    if (!o->out_dir || !*o->out_dir) return errorf(e, "convert: no output directory (give --out DIR)");
    if (o->world < 1 || o->rank < 0 || o->rank >= o->world)
        return errorf(e, "convert: rank %d of world %d is impossible (0 <= rank < world)", o->rank, o->world);
    if (o->image_tokens < 1 || o->image_tokens > 65536)
        return errorf(e, "convert: image tokens %d outside 1..65536 (--image-tokens)", o->image_tokens);
    if (o->audio_tokens_per_s < 1 || o->audio_tokens_per_s > 1000)
        return errorf(e, "convert: audio tokens per second %d outside 1..1000", o->audio_tokens_per_s);
    if (o->compression < 0 || o->compression > 9)
        return errorf(e, "convert: compression level %d outside 0..9", o->compression);
    if (o->shard_samples < 0 || o->shard_bytes < 0) return errorf(e, "convert: negative shard size");
    return 0;
}

// The manifest this rank's writer leaves: the final one alone, a part manifest in a parallel run.
static void manifest_path(const ConvertOptions* o, char* buf, size_t size) {
    if (o->world == 1) snprintf(buf, size, "%s/manifest.json", o->out_dir);
    else snprintf(buf, size, "%s/manifest.rank-%05d.json", o->out_dir, o->rank);
}

static int remove_if_present(const char* path, Error* e) {
    if (unlink(path) != 0 && errno != ENOENT)
        return errorf(e, "%s: cannot remove the stale manifest: %s", path, strerror(errno));
    return 0;
}

// A previous run's manifests must not survive this one: this rank's own, and (rank 0) the final one.
static int remove_stale_manifests(const ConvertOptions* o, Error* e) {
    char path[4096];
    manifest_path(o, path, sizeof path);
    if (remove_if_present(path, e) != 0) return -1;
    snprintf(path, sizeof path, "%s/manifest.json", o->out_dir);
    return o->rank == 0 ? remove_if_present(path, e) : 0;
}

int convert_begin(ConvertRun* r, const ConvertOptions* o, const char* kind, const char* source, Error* e) {
    memset(r, 0, sizeof *r);
    r->o = o;
    r->kind = kind;
    r->source = source;
    if (check_options(o, e) != 0) return -1;
    const char* tok_spec = o->tokenizer ? o->tokenizer : "world";
    r->tok = tokenizer_from_spec(tok_spec, e);
    if (!r->tok) return -1;
    if (mkdir_p(o->out_dir, e) != 0 || remove_stale_manifests(o, e) != 0) {
        tokenizer_free(r->tok);
        return -1;
    }
    char provenance[4096];
    snprintf(provenance, sizeof provenance, "%s %s", kind, source);
    ShardWriterOptions wo = {.dir = o->out_dir, .split = o->split ? o->split : "train", .max_samples = o->shard_samples,
                             .max_bytes = o->shard_bytes, .compression = o->compression, .tokenizer = tok_spec,
                             .vocab_size = tokenizer_vocab_size(r->tok), .source = provenance, .rank = o->rank,
                             .world = o->world};
    r->w = shard_writer_open(&wo, e);
    if (!r->w) {
        tokenizer_free(r->tok);
        return -1;
    }
    r->keys = strset_new();
    return 0;
}

int64_t convert_next_index(ConvertRun* r) { return r->n_input++; }

int convert_owns(const ConvertRun* r, int64_t index) { return index % r->o->world == r->o->rank; }

char* convert_unique_key(ConvertRun* r, const char* key, int64_t index, const char* what, Error* e) {
    size_t len = strlen(key);
    if (len == 0) {
        errorf(e, "%s: empty key", what);
        return NULL;
    }
    if (len > MAX_KEY_BYTES - 32) {   // room for "~<index>~<n>"
        errorf(e, "%s: key of %zu bytes is longer than %d", what, len, MAX_KEY_BYTES - 32);
        return NULL;
    }
    if (strset_insert(r->keys, key) == 0) return xstrdup(key);
    char buf[MAX_KEY_BYTES + 1];
    snprintf(buf, sizeof buf, "%s~%" PRId64, key, index);
    for (int extra = 2; strset_insert(r->keys, buf) != 0; extra++)   // an input key may already read "k~i"
        snprintf(buf, sizeof buf, "%s~%" PRId64 "~%d", key, index, extra);
    return xstrdup(buf);
}

int convert_write(ConvertRun* r, Sample* s, Error* e) {
    int rc = shard_writer_add(r->w, s, e);
    sample_free(s);
    if (rc == 0) r->n_written++;
    return rc;
}

int convert_bad(ConvertRun* r, const Error* bad, Error* e) {
    if (!r->o->skip_bad) {
        if (e && e != bad) *e = *bad;
        return -1;
    }
    fprintf(stderr, "modrwkv: warning: %s (skipped)\n", bad->msg);
    r->n_bad++;
    return 0;
}

static int check_counts(const ConvertRun* r, Error* e) {
    if (r->n_input == 0) return errorf(e, "%s: the input holds no sample", r->source);
    if (r->n_written == 0 && r->n_bad > 0)
        return errorf(e, "%s: every one of the %" PRId64 " samples of rank %d is bad (see the warnings above)",
                      r->source, r->n_bad, r->o->rank);
    return 0;
}

static void print_summary(const ConvertRun* r) {
    printf("%s %s: %" PRId64 " samples written to %s", r->kind, r->source, r->n_written, r->o->out_dir);
    if (r->o->world > 1) printf(" (rank %d of %d)", r->o->rank, r->o->world);
    if (r->n_bad > 0) printf(", %" PRId64 " bad samples skipped", r->n_bad);
    printf("\n");
}

int convert_end(ConvertRun* r, int rc, Error* e) {
    if (rc == 0) rc = check_counts(r, e);
    if (rc == 0) {
        rc = shard_writer_close(r->w, e);
    } else {
        Error ignored;
        char path[4096];
        shard_writer_close(r->w, &ignored);   // frees it; the manifest it may leave is removed below
        manifest_path(r->o, path, sizeof path);
        unlink(path);
    }
    r->w = NULL;
    if (rc == 0) print_summary(r);
    tokenizer_free(r->tok);
    strset_free(r->keys);
    r->tok = NULL;
    r->keys = NULL;
    return rc;
}

// ---------------------------------------------------------------------------------------------------- helpers

uint8_t* convert_read_file(const char* path, size_t* len, Error* e) {
    struct stat st;
    if (stat(path, &st) != 0) {
        errorf(e, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        errorf(e, "%s: not a regular file", path);
        return NULL;
    }
    return (uint8_t*)read_file(path, len, e);
}

int convert_image_item(uint8_t* bytes, size_t n, int image_tokens, const char* what, MediaItem* m, Error* e) {
    Image im = {0, 0, NULL};
    if (image_decode(bytes, n, &im, what, e) != 0) {
        free(bytes);
        return -1;
    }
    memset(m, 0, sizeof *m);
    m->kind = MEDIA_IMAGE_ENCODED;
    m->n_placeholder = image_tokens;
    m->bytes = bytes;
    m->n_bytes = n;
    m->height = im.height;
    m->width = im.width;
    m->channels = 3;
    image_free(&im);
    return 0;
}

void convert_audio_item(int16_t* pcm, size_t n_samples, int tokens_per_s, MediaItem* m) {
    memset(m, 0, sizeof *m);
    m->kind = MEDIA_AUDIO_PCM;
    m->pcm = pcm;
    m->n_samples = n_samples;
    uint64_t ticks = (uint64_t)n_samples * (uint64_t)tokens_per_s;   // ceil(n / 16000 * tokens_per_s)
    uint64_t n_tok = (ticks + AUDIO_SAMPLE_RATE - 1) / AUDIO_SAMPLE_RATE;
    m->n_placeholder = (int32_t)(n_tok < 1 ? 1 : n_tok);
}

static int role_of(const char* from, ChatRole* role) {
    if (strcmp(from, "human") == 0 || strcmp(from, "user") == 0) *role = CHAT_USER;
    else if (strcmp(from, "gpt") == 0 || strcmp(from, "assistant") == 0) *role = CHAT_ASSISTANT;
    else return -1;
    return 0;
}

static int turn_from_json(const json_t* t, size_t i, ChatTurn* out, const char* what, Error* e) {
    const json_t* from = json_object_get(t, "from");
    const json_t* value = json_object_get(t, "value");
    if (!json_is_object(t)) return errorf(e, "%s: conversations[%zu] is not an object", what, i);
    if (!json_is_string(from)) return errorf(e, "%s: conversations[%zu] has no string \"from\"", what, i);
    if (!json_is_string(value)) return errorf(e, "%s: conversations[%zu] has no string \"value\"", what, i);
    if (role_of(json_string_value(from), &out->role) != 0)
        return errorf(e, "%s: conversations[%zu]: unknown role \"%.40s\" (expected human/user or gpt/assistant)",
                      what, i, json_string_value(from));
    out->text = json_string_value(value);
    out->len = json_string_length(value);
    return 0;
}

int convert_turns_from_json(const json_t* conv, ChatTurn** turns, int* n_turns, const char* what, Error* e) {
    *turns = NULL;
    *n_turns = 0;
    if (!json_is_array(conv)) return errorf(e, "%s: \"conversations\" is missing or not a list", what);
    size_t n = json_array_size(conv);
    if (n == 0) return errorf(e, "%s: \"conversations\" is empty", what);
    if (n > 100000) return errorf(e, "%s: %zu turns is too many", what, n);
    ChatTurn* t = xcalloc(n, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        if (turn_from_json(json_array_get(conv, i), i, &t[i], what, e) != 0) {
            free(t);
            return -1;
        }
    }
    *turns = t;
    *n_turns = (int)n;
    return 0;
}

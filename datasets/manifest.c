// manifest.c — a dataset's manifest.json (datasets/FORMAT.md "Manifest"): reading with full validation,
// writing, merging the part manifests of parallel writers, and the SHA-256 of shard files.
//
// Contract: manifest_read accepts only a manifest whose fields have the documented types and ranges,
// whose totals equal the sums over its shards, whose shard names are plain unique file names, and whose
// every listed shard exists in the directory. Unknown extra fields are ignored (forward compatible).
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "datasets/shard.h"
#include "datasets/shard_internal.h"

// ---------------------------------------------------------------------------------------------------- modalities
char* modalities_string(unsigned kinds_mask) {
    char buf[128] = "text";
    for (int k = 1; k < N_MEDIA_KINDS; k++) {
        if (!(kinds_mask & (1u << k))) continue;
        strcat(buf, ",");
        strcat(buf, media_kind_name(k));
    }
    return xstrdup(buf);
}

static int modality_bit(const char* name, size_t len) {
    if (len == 4 && strncmp(name, "text", 4) == 0) return 0;
    for (int k = 1; k < N_MEDIA_KINDS; k++)
        if (strlen(media_kind_name(k)) == len && strncmp(name, media_kind_name(k), len) == 0) return k;
    return -1;
}

int modalities_mask(const char* list, unsigned* mask) {
    *mask = 0;
    for (const char* p = list; *p;) {
        const char* comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int bit = modality_bit(p, len);
        if (bit < 0) return -1;
        *mask |= 1u << bit;
        p += len + (comma ? 1 : 0);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------- sha256
int sha256_file_hex(const char* path, char hex[65], Error* e) {
    FILE* f = fopen(path, "rb");
    if (!f) return errorf(e, "%s: cannot open to checksum it: %s", path, strerror(errno));
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) fatal("OpenSSL cannot initialise SHA-256");
    enum { BLOCK = 1 << 20 };
    uint8_t* buf = xmalloc(BLOCK);
    size_t n;
    while ((n = fread(buf, 1, BLOCK, f)) > 0) EVP_DigestUpdate(ctx, buf, n);
    int rc = ferror(f) ? errorf(e, "%s: read error while computing its SHA-256", path) : 0;
    unsigned char md[32];
    unsigned md_len = 0;
    EVP_DigestFinal_ex(ctx, md, &md_len);
    EVP_MD_CTX_free(ctx);
    free(buf);
    fclose(f);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return rc;
}

// ---------------------------------------------------------------------------------------------------- writing
int manifest_write(const char* path, const Manifest* m, Error* e) {
    json_t* root = json_object();
    json_object_set_new(root, "format", json_string(SHARD_FORMAT_NAME));
    json_object_set_new(root, "format_version", json_integer(m->format_version));
    json_object_set_new(root, "split", json_string(m->split));
    json_object_set_new(root, "tokenizer", json_string(m->tokenizer));
    json_object_set_new(root, "vocab_size", json_integer(m->vocab_size));
    json_t* mods = json_array();
    for (const char* p = m->modalities; *p;) {
        const char* comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        json_array_append_new(mods, json_stringn(p, len));
        p += len + (comma ? 1 : 0);
    }
    json_object_set_new(root, "modalities", mods);
    int64_t n_media = 0;
    json_t* shards = json_array();
    for (int i = 0; i < m->n_shards; i++) {
        const ShardInfo* s = &m->shards[i];
        json_t* o = json_object();
        json_object_set_new(o, "file", json_string(s->file));
        json_object_set_new(o, "n_samples", json_integer(s->n_samples));
        json_object_set_new(o, "n_tokens", json_integer(s->n_tokens));
        json_object_set_new(o, "n_media", json_integer(s->n_media));
        json_object_set_new(o, "sha256", json_string(s->sha256));
        json_array_append_new(shards, o);
        n_media += s->n_media;
    }
    json_object_set_new(root, "n_samples", json_integer(m->n_samples));
    json_object_set_new(root, "n_tokens", json_integer(m->n_tokens));
    json_object_set_new(root, "n_media", json_integer(n_media));
    json_object_set_new(root, "shards", shards);
    char* text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) fatal("out of memory formatting %s", path);
    size_t len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len] = '\n';
    int rc = write_file_atomic(path, text, len + 1, e);
    free(text);
    return rc;
}

// ---------------------------------------------------------------------------------------------------- reading
static int get_string(json_t* o, const char* key, char** out, const char* path, const char* where, Error* e) {
    json_t* v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) == 0 || strlen(json_string_value(v)) != json_string_length(v))
        return errorf(e, "%s: %s'%s' must be a non-empty string (regenerate the manifest)", path, where, key);
    *out = xstrdup(json_string_value(v));
    return 0;
}

static int get_int(json_t* o, const char* key, int64_t lo, int64_t hi, int64_t* out, const char* path,
                   const char* where, Error* e) {
    json_t* v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return errorf(e, "%s: %s'%s' must be an integer in %lld..%lld (regenerate the manifest)", path, where, key,
                      (long long)lo, (long long)hi);
    *out = json_integer_value(v);
    return 0;
}

static int is_plain_file_name(const char* s) {
    return s[0] && s[0] != '.' && !strchr(s, '/') && strlen(s) < 256;
}

static int is_sha256_hex(const char* s) {
    if (strlen(s) != 64) return 0;
    for (const char* p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

static int read_shard_entry(json_t* o, const char* path, const char* dir, int i, ShardInfo* s, Error* e) {
    char where[48];
    snprintf(where, sizeof where, "shards[%d]: ", i);
    if (!json_is_object(o)) return errorf(e, "%s: %smust be an object (regenerate the manifest)", path, where);
    if (get_string(o, "file", &s->file, path, where, e) ||
        get_int(o, "n_samples", 1, SHARD_MAX_FILE_SAMPLES, &s->n_samples, path, where, e) ||
        get_int(o, "n_tokens", s->n_samples, INT64_MAX, &s->n_tokens, path, where, e) ||
        get_int(o, "n_media", 0, SHARD_MAX_FILE_ITEMS, &s->n_media, path, where, e) ||
        get_string(o, "sha256", &s->sha256, path, where, e))
        return -1;
    if (!is_plain_file_name(s->file))
        return errorf(e, "%s: %sfile '%s' must be a plain file name in the dataset directory", path, where, s->file);
    if (!is_sha256_hex(s->sha256))
        return errorf(e, "%s: %ssha256 of '%s' must be 64 lowercase hex digits", path, where, s->file);
    size_t n = strlen(dir) + strlen(s->file) + 2;
    char* full = xmalloc(n);
    snprintf(full, n, "%s/%s", dir, s->file);
    struct stat st;
    int missing = stat(full, &st) != 0 || !S_ISREG(st.st_mode);
    int rc = missing ? errorf(e, "%s: lists shard '%s' but %s does not exist (copy the shard back or regenerate the "
                              "dataset)", path, s->file, full)
                     : 0;
    free(full);
    return rc;
}

static int read_modalities(json_t* root, Manifest* m, const char* path, Error* e) {
    json_t* mods = json_object_get(root, "modalities");
    unsigned mask = 0;
    size_t i;
    json_t* v;
    if (!json_is_array(mods)) return errorf(e, "%s: 'modalities' must be an array of names", path);
    json_array_foreach(mods, i, v) {
        int bit = json_is_string(v) ? modality_bit(json_string_value(v), json_string_length(v)) : -1;
        if (bit < 0)
            return errorf(e, "%s: modalities[%zu] is not one of text, image, pixels, audio, timeseries, features",
                          path, i);
        mask |= 1u << bit;
    }
    if (!(mask & 1)) return errorf(e, "%s: 'modalities' must include \"text\"", path);
    m->modalities = modalities_string(mask);
    return 0;
}

static int check_header(json_t* root, Manifest* m, const char* path, Error* e) {
    json_t* format = json_object_get(root, "format");
    if (!json_is_string(format) || strcmp(json_string_value(format), SHARD_FORMAT_NAME) != 0)
        return errorf(e, "%s: 'format' is not \"%s\" (not a modrwkv shard manifest)", path, SHARD_FORMAT_NAME);
    int64_t version = 0, vocab = 0;
    if (get_int(root, "format_version", 1, INT32_MAX, &version, path, "", e)) return -1;
    if (version != SHARD_FORMAT_VERSION)
        return errorf(e, "%s: format version %lld is not supported (this build reads version %d: use a matching "
                      "modrwkv or regenerate the dataset)", path, (long long)version, SHARD_FORMAT_VERSION);
    m->format_version = (int)version;
    if (get_string(root, "split", &m->split, path, "", e) || get_string(root, "tokenizer", &m->tokenizer, path, "", e) ||
        get_int(root, "vocab_size", 1, SHARD_MAX_VOCAB, &vocab, path, "", e) ||
        get_int(root, "n_samples", 0, INT64_MAX, &m->n_samples, path, "", e) ||
        get_int(root, "n_tokens", 0, INT64_MAX, &m->n_tokens, path, "", e))
        return -1;
    m->vocab_size = (int)vocab;
    return read_modalities(root, m, path, e);
}

static int check_shards(json_t* root, Manifest* m, const char* path, const char* dir, int allow_empty, Error* e) {
    json_t* shards = json_object_get(root, "shards");
    if (!json_is_array(shards)) return errorf(e, "%s: 'shards' must be an array", path);
    size_t n = json_array_size(shards);
    if (n == 0 && !allow_empty) return errorf(e, "%s: lists no shards (an empty dataset: regenerate it)", path);
    if (n > INT32_MAX / 2) return errorf(e, "%s: lists too many shards (%zu)", path, n);
    m->shards = xcalloc(n, sizeof *m->shards);
    int64_t samples = 0, tokens = 0;
    for (size_t i = 0; i < n; i++) {
        m->n_shards = (int)i + 1;
        if (read_shard_entry(json_array_get(shards, i), path, dir, (int)i, &m->shards[i], e)) return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->shards[j].file, m->shards[i].file) == 0)
                return errorf(e, "%s: shard '%s' is listed twice", path, m->shards[i].file);
        samples += m->shards[i].n_samples;
        if (__builtin_add_overflow(tokens, m->shards[i].n_tokens, &tokens))
            return errorf(e, "%s: token counts overflow", path);
    }
    if (samples != m->n_samples || tokens != m->n_tokens)
        return errorf(e, "%s: totals say %lld samples and %lld tokens but the shards add up to %lld and %lld (edited "
                      "or corrupt manifest: regenerate it)", path, (long long)m->n_samples, (long long)m->n_tokens,
                      (long long)samples, (long long)tokens);
    return 0;
}

int manifest_read_file(const char* path, const char* dir, int allow_empty, Manifest* m, Error* e) {
    *m = (Manifest){0};
    json_error_t jerr;
    json_t* root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (access(path, F_OK) != 0)
            return errorf(e, "%s: missing: %s (is this a dataset directory? convert the data first)", path,
                          strerror(errno));
        return errorf(e, "%s: invalid JSON at line %d: %s", path, jerr.line, jerr.text);
    }
    int rc = json_is_object(root) ? 0 : errorf(e, "%s: must hold a JSON object", path);
    if (rc == 0) rc = check_header(root, m, path, e);
    if (rc == 0) rc = check_shards(root, m, path, dir, allow_empty, e);
    json_decref(root);
    if (rc) manifest_free(m);
    return rc;
}

int manifest_read(const char* dir, Manifest* m, Error* e) {
    size_t n = strlen(dir) + 16;
    char* path = xmalloc(n);
    snprintf(path, n, "%s/manifest.json", dir);
    int rc = manifest_read_file(path, dir, 0, m, e);
    free(path);
    return rc;
}

void manifest_free(Manifest* m) {
    if (!m) return;
    for (int i = 0; i < m->n_shards; i++) {
        free(m->shards[i].file);
        free(m->shards[i].sha256);
    }
    free(m->shards);
    free(m->split);
    free(m->tokenizer);
    free(m->modalities);
    *m = (Manifest){0};
}

// ---------------------------------------------------------------------------------------------------- merging
static char* part_path(const char* dir, int rank) {
    size_t n = strlen(dir) + 40;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/manifest.rank-%05d.json", dir, rank);
    return p;
}

// Shard names share the "<split>-" prefix, so shorter names have smaller indices: order by length, then bytes.
static int by_shard_index(const void* a, const void* b) {
    const ShardInfo *x = a, *y = b;
    size_t lx = strlen(x->file), ly = strlen(y->file);
    if (lx != ly) return lx < ly ? -1 : 1;
    return strcmp(x->file, y->file);
}

static int same_dataset(const Manifest* a, const Manifest* b, const char* path, Error* e) {
    if (strcmp(a->split, b->split) != 0 || strcmp(a->tokenizer, b->tokenizer) != 0 || a->vocab_size != b->vocab_size)
        return errorf(e, "%s: split '%s', tokenizer '%s', vocab %d differ from rank 0's '%s', '%s', %d (the ranks were "
                      "run with different options)", path, b->split, b->tokenizer, b->vocab_size, a->split,
                      a->tokenizer, a->vocab_size);
    return 0;
}

// Appends b's shards and totals to a.
static void absorb(Manifest* a, Manifest* b) {
    a->shards = xrealloc(a->shards, (size_t)(a->n_shards + b->n_shards + 1) * sizeof *a->shards);
    memcpy(a->shards + a->n_shards, b->shards, (size_t)b->n_shards * sizeof *b->shards);
    a->n_shards += b->n_shards;
    a->n_samples += b->n_samples;
    a->n_tokens += b->n_tokens;
    unsigned ma = 0, mb = 0;
    modalities_mask(a->modalities, &ma);
    modalities_mask(b->modalities, &mb);
    free(a->modalities);
    a->modalities = modalities_string(ma | mb);
    b->n_shards = 0;
    manifest_free(b);
}

static int read_parts(const char* dir, int world, Manifest* all, Error* e) {
    for (int r = 0; r < world; r++) {
        char* path = part_path(dir, r);
        Manifest part;
        int rc = 0;
        if (access(path, F_OK) != 0)
            rc = errorf(e, "%s: missing: rank %d of %d has not finished writing its shards (rerun it)", path, r, world);
        if (rc == 0) rc = manifest_read_file(path, dir, 1, &part, e);
        if (rc == 0 && r > 0 && same_dataset(all, &part, path, e)) {
            manifest_free(&part);
            rc = -1;
        }
        free(path);
        if (rc) return -1;
        if (r == 0) *all = part;
        else absorb(all, &part);
    }
    return 0;
}

int shard_manifest_merge(const char* dir, int world, Error* e) {
    if (world < 1) return errorf(e, "%s: cannot merge the manifests of %d ranks", dir, world);
    if (world == 1) {   // a single writer wrote manifest.json itself
        Manifest m;
        if (manifest_read(dir, &m, e)) return -1;
        manifest_free(&m);
        return 0;
    }
    Manifest all = {0};
    if (read_parts(dir, world, &all, e)) {
        manifest_free(&all);
        return -1;
    }
    qsort(all.shards, (size_t)all.n_shards, sizeof *all.shards, by_shard_index);
    int rc = all.n_samples > 0 ? 0 : errorf(e, "%s: no rank wrote any sample (the input had no usable samples)", dir);
    for (int i = 1; rc == 0 && i < all.n_shards; i++)
        if (strcmp(all.shards[i - 1].file, all.shards[i].file) == 0)
            rc = errorf(e, "%s: shard '%s' is claimed by two ranks (were they run with different --world?)", dir,
                        all.shards[i].file);
    size_t n = strlen(dir) + 16;
    char* path = xmalloc(n);
    snprintf(path, n, "%s/manifest.json", dir);
    if (rc == 0) rc = manifest_write(path, &all, e);
    for (int r = 0; rc == 0 && r < world; r++) {
        char* part = part_path(dir, r);
        unlink(part);
        free(part);
    }
    free(path);
    manifest_free(&all);
    return rc;
}

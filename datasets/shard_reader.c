// shard_reader.c — random access to the samples of one HDF5 shard (layout: datasets/FORMAT.md).
//
// Contract:
// - open reads the root attributes and every index table (key, token and media offsets, the per-item
//   media tables and the shape tables) into memory and validates all of them against each other and the
//   lengths of the data datasets, so that a later get can only fail on the data itself; get reads one
//   sample with 1-D hyperslab reads and validates it (sample_validate + token ids < vocab_size).
// - Nothing in the file is trusted: wrong types or shapes, offsets that are not monotone, lengths that
//   disagree, limits exceeded (shard_internal.h), checksum errors (Fletcher-32 on every dataset),
//   truncated files: each is a -1 with one line "FILE: what is wrong" or "FILE: sample 'KEY' (#i): what is
//   wrong". HDF5 never prints its error stack (h5_quiet).
// - A shard with zero samples is an error: writers never create one.
// - HDF5 is not thread-safe: use a reader (and every other HDF5 user of the process) from one thread.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/h5util.h"
#include "datasets/shard.h"
#include "datasets/shard_internal.h"

static const char* CORRUPT = "the shard is corrupt or does not follow datasets/FORMAT.md: regenerate it";

typedef enum { T_INT, T_BYTE, T_TOKEN, T_I16, T_F32 } TypeRule;

struct ShardReader {
    char* path;
    hid_t file;
    ShardFileInfo info;
    char *split, *tokenizer, *created_by, *source;   // owned strings behind info
    int64_t n;                                       // samples
    int64_t *key_off, *tok_off, *media_off;          // (n + 1) each
    char* key_bytes;                                 // (key_off[n])
    int64_t m;                                       // media items
    uint8_t* kind;                                   // (m)
    int32_t *pos, *nph, *shape_row;                  // (m); shape_row: the item's row in its kind's tables
    int64_t *pay_off, *pay_size;                     // (m) in elements of the kind's payload dataset
    int32_t* shape[N_MEDIA_KINDS];                   // (items of the kind, SHAPE_COLS[kind]) or NULL
    hid_t d_tokens, d_mask, d_payload[N_MEDIA_KINDS];
};

static const char* PAYLOAD_NAME[N_MEDIA_KINDS] = {NULL, "/img/bytes", "/pix/data", "/aud/pcm", "/ts/data", "/feat/data"};
static const char* SHAPE_NAME[N_MEDIA_KINDS] = {NULL, NULL, "/pix/shape", NULL, "/ts/shape", "/feat/shape"};
static const int SHAPE_COLS[N_MEDIA_KINDS] = {0, 0, 3, 0, 2, 3};
static const TypeRule PAYLOAD_RULE[N_MEDIA_KINDS] = {T_BYTE, T_BYTE, T_BYTE, T_I16, T_F32, T_BYTE};
static const int PAYLOAD_ELEM[N_MEDIA_KINDS] = {1, 1, 1, 2, 4, 1};

const char* shard_reader_path(const ShardReader* r) { return r->path; }
int64_t shard_reader_count(const ShardReader* r) { return r->n; }
const ShardFileInfo* shard_reader_info(const ShardReader* r) { return &r->info; }

// "FILE: sample 'KEY' (#i)" for messages; keys are validated before anything else uses this.
static void sample_where(const ShardReader* r, int64_t i, char* buf, size_t n) {
    int len = (int)(r->key_off[i + 1] - r->key_off[i]);
    snprintf(buf, n, "%s: sample '%.*s' (#%lld)", r->path, len, r->key_bytes + r->key_off[i], (long long)i);
}

// ---------------------------------------------------------------------------------------------------- datasets
static int type_ok(hid_t t, TypeRule rule) {
    H5T_class_t cls = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(t) : H5T_SGN_ERROR;
    switch (rule) {
    case T_INT: return cls == H5T_INTEGER && size <= 8;
    case T_BYTE: return cls == H5T_INTEGER && size == 1;
    case T_TOKEN: return cls == H5T_INTEGER && sign == H5T_SGN_NONE && (size == 2 || size == 4);
    case T_I16: return cls == H5T_INTEGER && sign == H5T_SGN_2 && size == 2;
    default: return cls == H5T_FLOAT && size == 4;
    }
}

static const char* rule_name(TypeRule rule) {
    static const char* names[] = {"an integer type", "uint8", "uint16 or uint32", "int16", "float32"};
    return names[rule];
}

// Opens a dataset that must be 1-D (ncols 1) or 2-D (rows, ncols) of the given type; *rows = its length.
static hid_t open_checked(ShardReader* r, const char* name, TypeRule rule, int ncols, int64_t* rows, Error* e) {
    hid_t d = H5Dopen2(r->file, name, H5P_DEFAULT);
    if (d < 0) {
        h5_fail(e, r->path, name, "open dataset", CORRUPT);
        return H5I_INVALID_HID;
    }
    hid_t t = H5Dget_type(d), space = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int rank = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    int shape_ok = rank == (ncols > 1 ? 2 : 1) && H5Sget_simple_extent_dims(space, dims, NULL) == rank &&
                   (ncols == 1 || dims[1] == (hsize_t)ncols) && dims[0] <= (hsize_t)INT64_MAX;
    int types_ok = t >= 0 && type_ok(t, rule);
    h5_close_id(t);
    h5_close_id(space);
    H5Eclear2(H5E_DEFAULT);
    if (shape_ok && types_ok) {
        *rows = (int64_t)dims[0];
        return d;
    }
    h5_close_id(d);
    if (!types_ok) errorf(e, "%s: %s must be of %s (%s)", r->path, name, rule_name(rule), CORRUPT);
    else if (ncols == 1) errorf(e, "%s: %s must be one-dimensional (%s)", r->path, name, CORRUPT);
    else errorf(e, "%s: %s must have shape (n, %d) (%s)", r->path, name, ncols, CORRUPT);
    return H5I_INVALID_HID;
}

// Reads all of a dataset of want_rows rows (as `mem`, elem_size bytes per value) into a new buffer.
static void* load_table(ShardReader* r, const char* name, TypeRule rule, int ncols, int64_t want_rows, hid_t mem,
                        size_t elem_size, const char* what_rows, Error* e) {
    int64_t rows;
    hid_t d = open_checked(r, name, rule, ncols, &rows, e);
    if (d < 0) return NULL;
    void* buf = NULL;
    if (rows != want_rows)
        errorf(e, "%s: %s has %lld rows, expected %lld (%s) (%s)", r->path, name, (long long)rows,
               (long long)want_rows, what_rows, CORRUPT);
    else {
        buf = xmalloc((size_t)rows * (size_t)ncols * elem_size);
        if (rows > 0 && h5_check(H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), e, r->path, name, "read", CORRUPT)) {
            free(buf);
            buf = NULL;
        }
    }
    h5_close_id(d);
    return buf;
}

// Reads rows [start, start + count) of a 1-D dataset.
static int read_range(const ShardReader* r, hid_t d, const char* name, hid_t mem, int64_t start, int64_t count,
                      void* buf, const char* where, Error* e) {
    if (count == 0) return 0;
    hsize_t st = (hsize_t)start, cn = (hsize_t)count;
    hid_t fspace = H5Dget_space(d), mspace = H5Screate_simple(1, &cn, NULL);
    int rc = fspace < 0 || mspace < 0 ? -1 : 0;
    if (rc == 0) rc = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &st, NULL, &cn, NULL) < 0 ? -1 : 0;
    if (rc == 0) rc = H5Dread(d, mem, mspace, fspace, H5P_DEFAULT, buf) < 0 ? -1 : 0;
    h5_close_id(mspace);
    h5_close_id(fspace);
    return rc == 0 ? 0 : h5_fail(e, where, name, "read", CORRUPT);
}

// ---------------------------------------------------------------------------------------------------- attributes
static int read_int_attr(ShardReader* r, const char* name, int64_t lo, int64_t hi, int64_t* out, Error* e) {
    if (h5_attr_read_int(r->file, name, out, r->path, e)) return -1;
    if (*out < lo || *out > hi)
        return errorf(e, "%s: attribute '%s' is %lld, outside %lld..%lld (%s)", r->path, name, (long long)*out,
                      (long long)lo, (long long)hi, CORRUPT);
    return 0;
}

static int read_optional_string(ShardReader* r, const char* name, char** out, Error* e) {
    int has = h5_attr_exists(r->file, name, r->path, e);
    if (has <= 0) return has;
    return h5_attr_read_string(r->file, name, out, r->path, e);
}

static int check_format(ShardReader* r, Error* e) {
    int has = h5_attr_exists(r->file, "format", r->path, e);
    if (has < 0) return -1;
    char* format = NULL;
    if (has && h5_attr_read_string(r->file, "format", &format, r->path, e)) return -1;
    int ok = format && strcmp(format, SHARD_FORMAT_NAME) == 0;
    free(format);
    if (!ok)
        return errorf(e, "%s: not a modrwkv shard (its 'format' attribute is not \"%s\"; see datasets/FORMAT.md)",
                      r->path, SHARD_FORMAT_NAME);
    int64_t version = 0;
    if (h5_attr_read_int(r->file, "format_version", &version, r->path, e)) return -1;
    if (version != SHARD_FORMAT_VERSION)
        return errorf(e, "%s: shard format version %lld is not supported (this build reads version %d: use a "
                      "matching modrwkv or regenerate the shard)", r->path, (long long)version, SHARD_FORMAT_VERSION);
    r->info.format_version = (int)version;
    return 0;
}

static int check_placeholders(ShardReader* r, Error* e) {
    static const char* names[] = {"placeholder_image", "placeholder_audio", "placeholder_timeseries"};
    static const int ids[] = {SHARD_PLACEHOLDER_IMAGE, SHARD_PLACEHOLDER_AUDIO, SHARD_PLACEHOLDER_TIMESERIES};
    for (int k = 0; k < 3; k++) {
        int64_t v;
        if (h5_attr_read_int(r->file, names[k], &v, r->path, e)) return -1;
        if (v != ids[k])
            return errorf(e, "%s: attribute '%s' is %lld but this build uses %d (the shard was made for other "
                          "placeholder ids: regenerate it)", r->path, names[k], (long long)v, ids[k]);
    }
    return 0;
}

static int read_attributes(ShardReader* r, Error* e) {
    int64_t vocab = 0, n = 0, tokens = 0, media = 0;
    if (check_format(r, e) || h5_attr_read_string(r->file, "split", &r->split, r->path, e) ||
        h5_attr_read_string(r->file, "tokenizer", &r->tokenizer, r->path, e) ||
        read_int_attr(r, "vocab_size", 1, SHARD_MAX_VOCAB, &vocab, e) || check_placeholders(r, e) ||
        read_int_attr(r, "n_samples", 0, SHARD_MAX_FILE_SAMPLES, &n, e) ||
        read_int_attr(r, "n_tokens", 0, INT64_MAX, &tokens, e) ||
        read_int_attr(r, "n_media", 0, SHARD_MAX_FILE_ITEMS, &media, e) ||
        read_optional_string(r, "created_by", &r->created_by, e) || read_optional_string(r, "source", &r->source, e))
        return -1;
    if (n == 0)
        return errorf(e, "%s: the shard has no samples (an empty shard: writers never create one; remove it from the "
                      "dataset or regenerate the dataset)", r->path);
    r->n = n;
    r->m = media;
    r->info = (ShardFileInfo){r->info.format_version, r->split, r->tokenizer, (int)vocab, 0, n, tokens, media, {0},
                              r->created_by, r->source};
    return 0;
}

// ---------------------------------------------------------------------------------------------------- index tables
// offsets[0] == 0, non-decreasing (strictly when `strict`), offsets[n] == total.
static int check_offsets(ShardReader* r, const char* name, const int64_t* off, int strict, int64_t total, Error* e) {
    if (off[0] != 0) return errorf(e, "%s: %s[0] is %lld, not 0 (%s)", r->path, name, (long long)off[0], CORRUPT);
    for (int64_t i = 0; i < r->n; i++)
        if (off[i + 1] < off[i] + strict)
            return errorf(e, "%s: %s is not %s at sample #%lld (%lld then %lld) (%s)", r->path, name,
                          strict ? "increasing" : "monotone", (long long)i, (long long)off[i], (long long)off[i + 1],
                          CORRUPT);
    if (off[r->n] != total)
        return errorf(e, "%s: %s ends at %lld but the data has %lld elements (truncated or inconsistent: %s)", r->path,
                      name, (long long)off[r->n], (long long)total, CORRUPT);
    return 0;
}

static int by_key(const void* a, const void* b, void* ctx) {
    const ShardReader* r = ctx;
    int64_t i = *(const int64_t*)a, j = *(const int64_t*)b;
    int64_t li = r->key_off[i + 1] - r->key_off[i], lj = r->key_off[j + 1] - r->key_off[j];
    int c = memcmp(r->key_bytes + r->key_off[i], r->key_bytes + r->key_off[j], (size_t)(li < lj ? li : lj));
    if (c != 0) return c;
    return li < lj ? -1 : li > lj;
}

// Keys: 1..255 bytes each, no NUL, unique in the file.
static int load_keys(ShardReader* r, Error* e) {
    r->key_off = load_table(r, "/meta/key_offsets", T_INT, 1, r->n + 1, H5T_NATIVE_INT64, 8, "n_samples + 1", e);
    if (!r->key_off) return -1;
    int64_t total = r->key_off[r->n];
    if (total < r->n || total > (int64_t)SHARD_MAX_KEY_BYTES * r->n)
        return errorf(e, "%s: /meta/key_offsets ends at %lld, impossible for %lld keys of 1..%d bytes (%s)", r->path,
                      (long long)total, (long long)r->n, SHARD_MAX_KEY_BYTES, CORRUPT);
    r->key_bytes = load_table(r, "/meta/key_bytes", T_BYTE, 1, total, H5T_NATIVE_UINT8, 1, "key_offsets[n]", e);
    if (!r->key_bytes || check_offsets(r, "/meta/key_offsets", r->key_off, 1, total, e)) return -1;
    for (int64_t i = 0; i < r->n; i++) {
        int64_t len = r->key_off[i + 1] - r->key_off[i];
        if (len > SHARD_MAX_KEY_BYTES || memchr(r->key_bytes + r->key_off[i], 0, (size_t)len))
            return errorf(e, "%s: key of sample #%lld is %lld bytes%s (keys are 1..%d bytes without NUL) (%s)", r->path,
                          (long long)i, (long long)len, len > SHARD_MAX_KEY_BYTES ? "" : " with a NUL byte",
                          SHARD_MAX_KEY_BYTES, CORRUPT);
    }
    int64_t* order = xmalloc((size_t)r->n * sizeof *order);
    for (int64_t i = 0; i < r->n; i++) order[i] = i;
    qsort_r(order, (size_t)r->n, sizeof *order, by_key, r);
    int rc = 0;
    for (int64_t k = 1; rc == 0 && k < r->n; k++) {
        if (by_key(&order[k - 1], &order[k], r) != 0) continue;
        char where[600];
        sample_where(r, order[k], where, sizeof where);
        rc = errorf(e, "%s: duplicate __key__ (also sample #%lld) (%s)", where, (long long)order[k - 1], CORRUPT);
    }
    free(order);
    return rc;
}

static int load_tokens(ShardReader* r, Error* e) {
    r->tok_off = load_table(r, "/tok/offsets", T_INT, 1, r->n + 1, H5T_NATIVE_INT64, 8, "n_samples + 1", e);
    if (!r->tok_off) return -1;
    int64_t n_tok, n_mask;
    r->d_tokens = open_checked(r, "/tok/tokens", T_TOKEN, 1, &n_tok, e);
    if (r->d_tokens < 0) return -1;
    r->d_mask = open_checked(r, "/tok/loss_mask", T_BYTE, 1, &n_mask, e);
    if (r->d_mask < 0) return -1;
    hid_t t = H5Dget_type(r->d_tokens);
    r->info.token_bytes = (int)H5Tget_size(t);
    h5_close_id(t);
    if (n_mask != n_tok || n_tok != r->info.n_tokens)
        return errorf(e, "%s: /tok/tokens has %lld values, /tok/loss_mask %lld and attribute n_tokens says %lld (%s)",
                      r->path, (long long)n_tok, (long long)n_mask, (long long)r->info.n_tokens, CORRUPT);
    if (check_offsets(r, "/tok/offsets", r->tok_off, 1, n_tok, e)) return -1;
    for (int64_t i = 0; i < r->n; i++) {
        if (r->tok_off[i + 1] - r->tok_off[i] <= SHARD_MAX_SAMPLE_TOKENS) continue;
        char where[600];
        sample_where(r, i, where, sizeof where);
        return errorf(e, "%s: has %lld tokens, more than the limit of %d (%s)", where,
                      (long long)(r->tok_off[i + 1] - r->tok_off[i]), SHARD_MAX_SAMPLE_TOKENS, CORRUPT);
    }
    return 0;
}

static int load_item_tables(ShardReader* r, Error* e) {
    const char* rows = "n_media";
    r->kind = load_table(r, "/media/kind", T_INT, 1, r->m, H5T_NATIVE_UINT8, 1, rows, e);
    if (!r->kind) return -1;
    r->pos = load_table(r, "/media/placeholder_pos", T_INT, 1, r->m, H5T_NATIVE_INT32, 4, rows, e);
    if (!r->pos) return -1;
    r->nph = load_table(r, "/media/n_placeholder", T_INT, 1, r->m, H5T_NATIVE_INT32, 4, rows, e);
    if (!r->nph) return -1;
    r->pay_off = load_table(r, "/media/payload_offsets", T_INT, 1, r->m, H5T_NATIVE_INT64, 8, rows, e);
    if (!r->pay_off) return -1;
    r->pay_size = load_table(r, "/media/payload_sizes", T_INT, 1, r->m, H5T_NATIVE_INT64, 8, rows, e);
    return r->pay_size ? 0 : -1;
}

// For each kind present: its payload dataset and its shape table (rows == items of the kind).
static int load_kind_tables(ShardReader* r, Error* e) {
    int64_t* count = r->info.n_items_of_kind;
    for (int64_t j = 0; j < r->m; j++) {
        if (r->kind[j] < 1 || r->kind[j] >= N_MEDIA_KINDS)
            return errorf(e, "%s: /media/kind[%lld] is %d, not a kind 1..%d (%s)", r->path, (long long)j, r->kind[j],
                          MEDIA_FEATURES, CORRUPT);
        count[r->kind[j]]++;
    }
    for (int k = 1; k < N_MEDIA_KINDS; k++) {
        if (count[k] == 0) continue;
        int64_t rows;
        r->d_payload[k] = open_checked(r, PAYLOAD_NAME[k], PAYLOAD_RULE[k], 1, &rows, e);
        if (r->d_payload[k] < 0) return -1;
        if (SHAPE_NAME[k])
            r->shape[k] = load_table(r, SHAPE_NAME[k], T_INT, SHAPE_COLS[k], count[k], H5T_NATIVE_INT32, 4,
                                     "items of this kind", e);
        if (SHAPE_NAME[k] && !r->shape[k]) return -1;
    }
    return 0;
}

// The payload size an item's shape row implies (in elements of its dataset), or -1 when the row is invalid.
static int64_t shape_elements(const ShardReader* r, int kind, int32_t row) {
    MediaItem m = {.kind = (MediaKind)kind};
    const int32_t* s = r->shape[kind] ? r->shape[kind] + (int64_t)row * SHAPE_COLS[kind] : NULL;
    if (kind == MEDIA_IMAGE_PIXELS) m.height = s[0], m.width = s[1], m.channels = s[2];
    if (kind == MEDIA_TIMESERIES) m.length = s[0], m.channels = s[1];
    if (kind == MEDIA_FEATURES) m.n_feat_tokens = s[0], m.dim = s[1], m.feat_dtype_bytes = s[2];
    int64_t bytes = media_payload_bytes(&m);
    return bytes < 0 ? -1 : bytes / PAYLOAD_ELEM[kind];
}

// One item: placeholder range inside its sample and after the previous item; payload stored back to back
// after the previous item of its kind, with the size its shape implies.
static int check_item(ShardReader* r, int64_t i, int64_t j, int64_t* prev_end, int64_t* next_off, Error* e) {
    char where[600];
    sample_where(r, i, where, sizeof where);
    int kind = r->kind[j];
    int64_t n_tok = r->tok_off[i + 1] - r->tok_off[i], pos = r->pos[j], end = pos + r->nph[j];
    int item = (int)(j - r->media_off[i]);
    if (r->nph[j] < 1 || pos < *prev_end || end > n_tok)
        return errorf(e, "%s: media item %d (%s): placeholder range [%lld, %lld) is not inside [%lld, %lld) (%s)", where,
                      item, media_kind_name(kind), (long long)pos, (long long)end, (long long)*prev_end,
                      (long long)n_tok, CORRUPT);
    int64_t size = r->pay_size[j], max = SHARD_MAX_ITEM_BYTES / PAYLOAD_ELEM[kind];
    int64_t want = SHAPE_NAME[kind] ? shape_elements(r, kind, r->shape_row[j]) : size;
    if (r->pay_off[j] != next_off[kind] || size < 1 || size > max || want != size)
        return errorf(e, "%s: media item %d (%s): payload at %lld size %lld does not follow the previous payload "
                      "(ending at %lld) or does not match its shape (%lld elements) (%s)", where, item,
                      media_kind_name(kind), (long long)r->pay_off[j], (long long)size, (long long)next_off[kind],
                      (long long)want, CORRUPT);
    *prev_end = end;
    next_off[kind] += size;
    return 0;
}

static int load_media(ShardReader* r, Error* e) {
    r->media_off = load_table(r, "/media/offsets", T_INT, 1, r->n + 1, H5T_NATIVE_INT64, 8, "n_samples + 1", e);
    if (!r->media_off || check_offsets(r, "/media/offsets", r->media_off, 0, r->m, e)) return -1;
    if (r->m == 0) return 0;
    if (load_item_tables(r, e) || load_kind_tables(r, e)) return -1;
    r->shape_row = xmalloc((size_t)r->m * sizeof *r->shape_row);
    int64_t seen[N_MEDIA_KINDS] = {0}, next_off[N_MEDIA_KINDS] = {0};
    for (int64_t j = 0; j < r->m; j++) r->shape_row[j] = (int32_t)seen[r->kind[j]]++;
    for (int64_t i = 0; i < r->n; i++) {
        int64_t prev_end = 0;
        for (int64_t j = r->media_off[i]; j < r->media_off[i + 1]; j++)
            if (check_item(r, i, j, &prev_end, next_off, e)) return -1;
    }
    for (int k = 1; k < N_MEDIA_KINDS; k++) {
        int64_t rows = 0;
        if (r->d_payload[k] < 0) continue;
        hid_t space = H5Dget_space(r->d_payload[k]);
        hsize_t dim = 0;
        if (space >= 0) H5Sget_simple_extent_dims(space, &dim, NULL);
        h5_close_id(space);
        rows = (int64_t)dim;
        if (rows != next_off[k])
            return errorf(e, "%s: %s has %lld elements but its items' payloads add up to %lld (%s)", r->path,
                          PAYLOAD_NAME[k], (long long)rows, (long long)next_off[k], CORRUPT);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------- open/close
static int open_file(ShardReader* r, Error* e) {
    if (access(r->path, R_OK) != 0) return errorf(e, "%s: cannot open: no such readable file", r->path);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    int rc = h5_check(fapl, e, r->path, NULL, "file properties", CORRUPT);
    if (rc == 0) rc = h5_check(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), e, r->path, NULL, "file properties", CORRUPT);
    if (rc == 0) r->file = H5Fopen(r->path, H5F_ACC_RDONLY, fapl);
    if (rc == 0)
        rc = h5_check(r->file, e, r->path, NULL, "open as HDF5",
                      "not an HDF5 file, or truncated or corrupt: regenerate it");
    h5_close_id(fapl);
    return rc;
}

ShardReader* shard_reader_open(const char* path, Error* e) {
    h5_quiet();
    ShardReader* r = xcalloc(1, sizeof *r);
    r->path = xstrdup(path);
    r->file = r->d_tokens = r->d_mask = H5I_INVALID_HID;
    for (int k = 0; k < N_MEDIA_KINDS; k++) r->d_payload[k] = H5I_INVALID_HID;
    if (open_file(r, e) || read_attributes(r, e) || load_keys(r, e) || load_tokens(r, e) || load_media(r, e)) {
        shard_reader_close(r);
        return NULL;
    }
    return r;
}

void shard_reader_close(ShardReader* r) {
    if (!r) return;
    h5_close_id(r->d_tokens);
    h5_close_id(r->d_mask);
    for (int k = 0; k < N_MEDIA_KINDS; k++) {
        h5_close_id(r->d_payload[k]);
        free(r->shape[k]);
    }
    h5_close_id(r->file);
    H5Eclear2(H5E_DEFAULT);
    free(r->key_off);
    free(r->tok_off);
    free(r->media_off);
    free(r->key_bytes);
    free(r->kind);
    free(r->pos);
    free(r->nph);
    free(r->shape_row);
    free(r->pay_off);
    free(r->pay_size);
    free(r->split);
    free(r->tokenizer);
    free(r->created_by);
    free(r->source);
    free(r->path);
    free(r);
}

// ---------------------------------------------------------------------------------------------------- samples
static hid_t payload_mem_type(int kind) {
    if (kind == MEDIA_AUDIO_PCM) return H5T_NATIVE_INT16;
    if (kind == MEDIA_TIMESERIES) return H5T_NATIVE_FLOAT;
    return H5T_NATIVE_UINT8;   // encoded bytes, pixels, feature bytes
}

// Fills item j's fields from the index tables and reads its payload.
static int read_item(ShardReader* r, int64_t j, MediaItem* m, const char* where, Error* e) {
    int kind = r->kind[j];
    const int32_t* s = r->shape[kind] ? r->shape[kind] + (int64_t)r->shape_row[j] * SHAPE_COLS[kind] : NULL;
    int64_t size = r->pay_size[j];
    *m = (MediaItem){.kind = (MediaKind)kind, .placeholder_pos = r->pos[j], .n_placeholder = r->nph[j]};
    m->n_bytes = (size_t)(size * PAYLOAD_ELEM[kind]);
    void* buf = xmalloc((size_t)m->n_bytes);
    switch (kind) {
    case MEDIA_IMAGE_ENCODED: m->bytes = buf; break;
    case MEDIA_IMAGE_PIXELS: m->pixels = buf, m->height = s[0], m->width = s[1], m->channels = s[2]; break;
    case MEDIA_AUDIO_PCM: m->pcm = buf, m->n_samples = (size_t)size; break;
    case MEDIA_TIMESERIES: m->series = buf, m->length = s[0], m->channels = s[1]; break;
    default: m->feat = buf, m->n_feat_tokens = s[0], m->dim = s[1], m->feat_dtype_bytes = s[2]; break;
    }
    return read_range(r, r->d_payload[kind], PAYLOAD_NAME[kind], payload_mem_type(kind), r->pay_off[j], size, buf,
                      where, e);
}

static int check_vocab(const ShardReader* r, const Sample* s, const char* where, Error* e) {
    for (size_t t = 0; t < s->n_tokens; t++)
        if (s->tokens[t] >= (uint32_t)r->info.vocab_size && !is_placeholder_id(s->tokens[t]))
            return errorf(e, "%s: token %zu is %u, not below vocab_size %d (%s)", where, t, s->tokens[t],
                          r->info.vocab_size, CORRUPT);
    return 0;
}

int shard_reader_get(ShardReader* r, int64_t i, Sample* s, Error* e) {
    *s = (Sample){0};
    if (i < 0 || i >= r->n)
        return errorf(e, "%s: sample #%lld does not exist (the shard has %lld samples)", r->path, (long long)i,
                      (long long)r->n);
    char where[600];
    sample_where(r, i, where, sizeof where);
    int64_t key_len = r->key_off[i + 1] - r->key_off[i], n = r->tok_off[i + 1] - r->tok_off[i];
    s->key = xmalloc((size_t)key_len + 1);
    memcpy(s->key, r->key_bytes + r->key_off[i], (size_t)key_len);
    s->key[key_len] = 0;
    s->n_tokens = (size_t)n;
    s->tokens = xmalloc((size_t)n * sizeof *s->tokens);
    s->loss_mask = xmalloc((size_t)n);
    int rc = read_range(r, r->d_tokens, "/tok/tokens", H5T_NATIVE_UINT32, r->tok_off[i], n, s->tokens, where, e);
    if (rc == 0) rc = read_range(r, r->d_mask, "/tok/loss_mask", H5T_NATIVE_UINT8, r->tok_off[i], n, s->loss_mask, where, e);
    int n_media = (int)(r->media_off[i + 1] - r->media_off[i]);
    if (rc == 0 && n_media > 0) s->media = xcalloc((size_t)n_media, sizeof *s->media);
    for (int k = 0; rc == 0 && k < n_media; k++) {
        s->n_media = k + 1;
        rc = read_item(r, r->media_off[i] + k, &s->media[k], where, e);
    }
    if (rc == 0) rc = check_vocab(r, s, where, e);
    if (rc == 0) rc = sample_validate_at(s, r->path, i, e);
    if (rc) sample_free(s);
    return rc;
}

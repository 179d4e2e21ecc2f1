// shard_writer.c — writes samples into HDF5 shards `<dir>/<split>-%06d.h5` (layout: datasets/FORMAT.md) and
// the dataset's manifest.
//
// Contract:
// - Streaming: every dataset is chunked with an unlimited first dimension; samples are buffered per dataset
//   up to one chunk (about 1 MiB) and appended with H5Dset_extent + a hyperslab write, so memory stays
//   bounded whatever the shard size. A dataset is created at its first write, with a chunk of one full
//   buffer, or of exactly its rows when the whole shard fits in less (small shards stay small); kinds that
//   never occur are omitted.
// - Deterministic: the same samples with the same options give byte-identical files (no object
//   timestamps: H5Pset_obj_track_times(0); the file format is pinned to HDF5 1.10's).
// - A shard is written as `<file>.tmp` and renamed when complete; a writer never creates an empty shard.
//   Rolling: a new shard starts before a sample that would exceed max_samples or max_bytes (a single
//   sample larger than max_bytes gets a shard of its own), or the per-file limits of shard_internal.h.
// - Rank r of `world` writes shard indices r, r + world, r + 2 world, ... and a part manifest; with world 1
//   it writes manifest.json, and fails when no sample was added (no dataset is better than an empty one).
// - A rejected sample (invalid, duplicate key, token >= vocab_size) leaves the writer usable; after an I/O
//   failure the writer refuses further samples and close removes the unfinished shard.
// - Assumes a little-endian host (feature payloads are stored as their in-memory bytes).
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "datasets/h5util.h"
#include "datasets/shard.h"
#include "datasets/shard_internal.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shard_writer.c stores feature payloads as host bytes and assumes a little-endian host"
#endif

static const char* HINT = "check free disk space and that the output directory is writable";

enum { DATA_CHUNK_BYTES = 1 << 20, INDEX_CHUNK_ROWS = 1 << 16 };

typedef enum { E_U8, E_I16, E_U16, E_U32, E_I32, E_I64, E_F32 } ElemType;

static hid_t mem_type(ElemType t) {
    switch (t) {
    case E_U8: return H5T_NATIVE_UINT8;
    case E_I16: return H5T_NATIVE_INT16;
    case E_U16: return H5T_NATIVE_UINT16;
    case E_U32: return H5T_NATIVE_UINT32;
    case E_I32: return H5T_NATIVE_INT32;
    case E_I64: return H5T_NATIVE_INT64;
    default: return H5T_NATIVE_FLOAT;
    }
}

static hid_t file_type(ElemType t) {
    switch (t) {
    case E_U8: return H5T_STD_U8LE;
    case E_I16: return H5T_STD_I16LE;
    case E_U16: return H5T_STD_U16LE;
    case E_U32: return H5T_STD_U32LE;
    case E_I32: return H5T_STD_I32LE;
    case E_I64: return H5T_STD_I64LE;
    default: return H5T_IEEE_F32LE;
    }
}

static size_t elem_bytes(ElemType t) {
    static const size_t bytes[] = {[E_U8] = 1, [E_I16] = 2, [E_U16] = 2, [E_U32] = 4, [E_I32] = 4, [E_I64] = 8, [E_F32] = 4};
    return bytes[t];
}

enum {
    C_KEY_BYTES, C_KEY_OFFSETS, C_TOKENS, C_TOK_OFFSETS, C_LOSS_MASK,
    C_MEDIA_OFFSETS, C_KIND, C_POS, C_NPH, C_PAY_OFF, C_PAY_SIZE,
    C_IMG, C_PIX, C_PIX_SHAPE, C_AUD, C_TS, C_TS_SHAPE, C_FEAT, C_FEAT_SHAPE,
    N_COLUMNS
};

typedef struct ColumnSpec {
    const char* group;   // parent group, created on first use
    const char* path;
    ElemType type;       // in memory and on disk (tokens: uint16 on disk when vocab_size <= 65536)
    int ncols;           // 1: 1-D stream; 2 or 3: shape table (rows, ncols)
    int compress;        // 0: never compressed (encoded image bytes are compressed already)
    int index;           // 1: index table (chunks of INDEX_CHUNK_ROWS rows), 0: data (chunks of ~1 MiB)
} ColumnSpec;

static const ColumnSpec SPECS[N_COLUMNS] = {
    [C_KEY_BYTES] = {"/meta", "/meta/key_bytes", E_U8, 1, 1, 0},
    [C_KEY_OFFSETS] = {"/meta", "/meta/key_offsets", E_I64, 1, 1, 1},
    [C_TOKENS] = {"/tok", "/tok/tokens", E_U32, 1, 1, 0},
    [C_TOK_OFFSETS] = {"/tok", "/tok/offsets", E_I64, 1, 1, 1},
    [C_LOSS_MASK] = {"/tok", "/tok/loss_mask", E_U8, 1, 1, 0},
    [C_MEDIA_OFFSETS] = {"/media", "/media/offsets", E_I64, 1, 1, 1},
    [C_KIND] = {"/media", "/media/kind", E_U8, 1, 1, 1},
    [C_POS] = {"/media", "/media/placeholder_pos", E_I32, 1, 1, 1},
    [C_NPH] = {"/media", "/media/n_placeholder", E_I32, 1, 1, 1},
    [C_PAY_OFF] = {"/media", "/media/payload_offsets", E_I64, 1, 1, 1},
    [C_PAY_SIZE] = {"/media", "/media/payload_sizes", E_I64, 1, 1, 1},
    [C_IMG] = {"/img", "/img/bytes", E_U8, 1, 0, 0},
    [C_PIX] = {"/pix", "/pix/data", E_U8, 1, 1, 0},
    [C_PIX_SHAPE] = {"/pix", "/pix/shape", E_I32, 3, 1, 1},
    [C_AUD] = {"/aud", "/aud/pcm", E_I16, 1, 1, 0},
    [C_TS] = {"/ts", "/ts/data", E_F32, 1, 1, 0},
    [C_TS_SHAPE] = {"/ts", "/ts/shape", E_I32, 2, 1, 1},
    [C_FEAT] = {"/feat", "/feat/data", E_U8, 1, 1, 0},
    [C_FEAT_SHAPE] = {"/feat", "/feat/shape", E_I32, 3, 1, 1},
};

// Payload and shape-table columns of each media kind (-1: none).
static const int PAYLOAD_COLUMN[N_MEDIA_KINDS] = {-1, C_IMG, C_PIX, C_AUD, C_TS, C_FEAT};
static const int SHAPE_COLUMN[N_MEDIA_KINDS] = {-1, -1, C_PIX_SHAPE, -1, C_TS_SHAPE, C_FEAT_SHAPE};

typedef struct Column {
    hid_t dset;            // H5I_INVALID_HID until the first write of this shard
    uint8_t* buf;          // buffered rows in memory layout, (n_buf, ncols)
    size_t n_buf, buf_rows;
    size_t chunk_rows;     // rows per chunk once full: the buffer never holds more
    int64_t n_rows;        // rows already in the file
} Column;

// Open-addressing set of 64-bit key hashes (0 = empty slot) to reject duplicate keys with bounded memory.
typedef struct KeySet {
    uint64_t* slots;
    size_t cap, n;
} KeySet;

struct ShardWriter {
    char *dir, *split, *tokenizer, *source;
    int64_t max_samples, max_bytes;
    int compression, vocab_size, rank, world;
    ElemType token_type;                   // on disk
    // the shard being written (file < 0: none)
    hid_t file;
    char *path, *tmp;
    Column col[N_COLUMNS];
    unsigned groups_made;                  // bit per SPECS group, by first column index
    int64_t n_samples, n_tokens, n_media, n_bytes;
    int64_t key_end, payload_end[N_MEDIA_KINDS];
    unsigned shard_kinds;
    // finished shards
    ShardInfo* shards;
    int n_shards, cap_shards;
    unsigned kinds;                        // modality mask over all shards (bit 0: text)
    int64_t total_samples, total_tokens;
    KeySet keys;
    int broken;                            // an I/O failure happened: no further samples
};

// ---------------------------------------------------------------------------------------------------- keys
static uint64_t key_hash(const char* key) {
    uint64_t h = 1469598103934665603ULL;   // FNV-1a, then a final mix
    for (const unsigned char* p = (const unsigned char*)key; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1;
}

static uint64_t* keyset_slot(KeySet* k, uint64_t h) {
    size_t i = (size_t)h & (k->cap - 1);
    while (k->slots[i] != 0 && k->slots[i] != h) i = (i + 1) & (k->cap - 1);
    return &k->slots[i];
}

static int keyset_contains(KeySet* k, uint64_t h) { return k->cap > 0 && *keyset_slot(k, h) == h; }

static void keyset_insert(KeySet* k, uint64_t h) {
    if (2 * (k->n + 1) > k->cap) {
        KeySet bigger = {xcalloc(k->cap ? 2 * k->cap : 1024, sizeof(uint64_t)), k->cap ? 2 * k->cap : 1024, 0};
        for (size_t i = 0; i < k->cap; i++)
            if (k->slots[i]) keyset_insert(&bigger, k->slots[i]);
        free(k->slots);
        *k = bigger;
    }
    uint64_t* slot = keyset_slot(k, h);
    if (*slot == 0) k->n++;
    *slot = h;
}

// ---------------------------------------------------------------------------------------------------- columns
static size_t row_bytes(int c) { return elem_bytes(SPECS[c].type) * (size_t)SPECS[c].ncols; }

static size_t chunk_rows_of(const ShardWriter* w, int c) {
    if (SPECS[c].index) return INDEX_CHUNK_ROWS;
    size_t disk_row = (c == C_TOKENS ? elem_bytes(w->token_type) : elem_bytes(SPECS[c].type)) * SPECS[c].ncols;
    return DATA_CHUNK_BYTES / disk_row;
}

static int ensure_group(ShardWriter* w, int c, Error* e) {
    int first = c;
    while (first > 0 && strcmp(SPECS[first - 1].group, SPECS[c].group) == 0) first--;
    if (w->groups_made & (1u << first)) return 0;
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE), g = H5I_INVALID_HID;
    int rc = h5_check(gcpl, e, w->path, SPECS[c].group, "group properties", HINT);
    if (rc == 0) rc = h5_check(H5Pset_obj_track_times(gcpl, 0), e, w->path, SPECS[c].group, "group properties", HINT);
    if (rc == 0) g = H5Gcreate2(w->file, SPECS[c].group, H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (rc == 0) rc = h5_check(g, e, w->path, SPECS[c].group, "create group", HINT);
    h5_close_id(g);
    h5_close_id(gcpl);
    if (rc == 0) w->groups_made |= 1u << first;
    return rc;
}

// Chunked, unlimited first dimension; shuffle + gzip when compressed; Fletcher-32 checksums always.
static hid_t create_dataset(ShardWriter* w, int c, size_t chunk_rows, Error* e) {
    const ColumnSpec* sp = &SPECS[c];
    int rank = sp->ncols > 1 ? 2 : 1;
    hsize_t dims[2] = {0, (hsize_t)sp->ncols}, maxdims[2] = {H5S_UNLIMITED, (hsize_t)sp->ncols};
    hsize_t chunk[2] = {chunk_rows, (hsize_t)sp->ncols};
    ElemType disk = c == C_TOKENS ? w->token_type : sp->type;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), space = H5Screate_simple(rank, dims, maxdims), d = H5I_INVALID_HID;
    int rc = h5_check(dcpl, e, w->path, sp->path, "dataset properties", HINT);
    if (rc == 0) rc = h5_check(H5Pset_chunk(dcpl, rank, chunk), e, w->path, sp->path, "set chunk", HINT);
    if (rc == 0) rc = h5_check(H5Pset_obj_track_times(dcpl, 0), e, w->path, sp->path, "dataset properties", HINT);
    if (rc == 0 && sp->compress && w->compression > 0 && elem_bytes(disk) > 1)
        rc = h5_check(H5Pset_shuffle(dcpl), e, w->path, sp->path, "set shuffle filter", HINT);
    if (rc == 0 && sp->compress && w->compression > 0)
        rc = h5_check(H5Pset_deflate(dcpl, (unsigned)w->compression), e, w->path, sp->path, "set gzip filter", HINT);
    if (rc == 0) rc = h5_check(H5Pset_fletcher32(dcpl), e, w->path, sp->path, "set fletcher32 filter", HINT);
    if (rc == 0) rc = h5_check(space, e, w->path, sp->path, "dataspace", HINT);
    if (rc == 0) d = H5Dcreate2(w->file, sp->path, file_type(disk), space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (rc == 0) rc = h5_check(d, e, w->path, sp->path, "create dataset", HINT);
    if (rc == 0 && c == C_AUD) rc = h5_attr_write_int(d, "sample_rate", 16000, H5T_STD_I32LE, w->path, e);
    h5_close_id(space);
    h5_close_id(dcpl);
    if (rc == 0) return d;
    h5_close_id(d);
    return H5I_INVALID_HID;
}

// Appends rows straight to the file (creating the dataset on the first write).
static int column_write(ShardWriter* w, int c, const void* rows, size_t n_rows, Error* e) {
    Column* col = &w->col[c];
    const char* name = SPECS[c].path;
    if (col->dset < 0) {
        if (ensure_group(w, c, e)) return -1;
        col->dset = create_dataset(w, c, n_rows < col->chunk_rows ? n_rows : col->chunk_rows, e);
        if (col->dset < 0) return -1;
    }
    int rank = SPECS[c].ncols > 1 ? 2 : 1;
    hsize_t size[2] = {(hsize_t)col->n_rows + n_rows, (hsize_t)SPECS[c].ncols};
    hsize_t start[2] = {(hsize_t)col->n_rows, 0}, count[2] = {n_rows, (hsize_t)SPECS[c].ncols};
    if (h5_check(H5Dset_extent(col->dset, size), e, w->path, name, "extend dataset", HINT)) return -1;
    hid_t fspace = H5Dget_space(col->dset), mspace = H5Screate_simple(rank, count, NULL);
    int rc = h5_check(fspace, e, w->path, name, "get dataspace", HINT);
    if (rc == 0) rc = h5_check(mspace, e, w->path, name, "memory dataspace", HINT);
    if (rc == 0)
        rc = h5_check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL), e, w->path, name,
                      "select rows", HINT);
    if (rc == 0)
        rc = h5_check(H5Dwrite(col->dset, mem_type(SPECS[c].type), mspace, fspace, H5P_DEFAULT, rows), e, w->path,
                      name, "write", HINT);
    h5_close_id(mspace);
    h5_close_id(fspace);
    if (rc == 0) col->n_rows += (int64_t)n_rows;
    return rc;
}

static int column_flush(ShardWriter* w, int c, Error* e) {
    Column* col = &w->col[c];
    if (col->n_buf == 0) return 0;
    int rc = column_write(w, c, col->buf, col->n_buf, e);
    col->n_buf = 0;
    return rc;
}

// Buffers rows and writes whole chunks; runs of whole chunks go to the file without a copy.
static int column_append(ShardWriter* w, int c, const void* rows, size_t n_rows, Error* e) {
    Column* col = &w->col[c];
    const uint8_t* p = rows;
    size_t rb = row_bytes(c);
    while (n_rows > 0) {
        if (col->n_buf == 0 && n_rows >= col->chunk_rows) {
            size_t k = n_rows - n_rows % col->chunk_rows;
            if (column_write(w, c, p, k, e)) return -1;
            p += k * rb;
            n_rows -= k;
            continue;
        }
        size_t k = col->chunk_rows - col->n_buf < n_rows ? col->chunk_rows - col->n_buf : n_rows;
        if (col->n_buf + k > col->buf_rows) {
            size_t grow = col->buf_rows ? 2 * col->buf_rows : 256;
            while (grow < col->n_buf + k) grow *= 2;
            col->buf_rows = grow < col->chunk_rows ? grow : col->chunk_rows;
            col->buf = xrealloc(col->buf, col->buf_rows * rb);
        }
        memcpy(col->buf + col->n_buf * rb, p, k * rb);
        col->n_buf += k;
        p += k * rb;
        n_rows -= k;
        if (col->n_buf == col->chunk_rows && column_flush(w, c, e)) return -1;
    }
    return 0;
}

static int append_i64(ShardWriter* w, int c, int64_t v, Error* e) { return column_append(w, c, &v, 1, e); }

// ---------------------------------------------------------------------------------------------------- shards
static int write_root_attrs(ShardWriter* w, Error* e) {
    hid_t f = w->file;
    const char* p = w->path;
    if (h5_attr_write_string(f, "format", SHARD_FORMAT_NAME, p, e) ||
        h5_attr_write_int(f, "format_version", SHARD_FORMAT_VERSION, H5T_STD_I32LE, p, e) ||
        h5_attr_write_string(f, "split", w->split, p, e) || h5_attr_write_string(f, "tokenizer", w->tokenizer, p, e) ||
        h5_attr_write_int(f, "vocab_size", w->vocab_size, H5T_STD_I32LE, p, e) ||
        h5_attr_write_int(f, "placeholder_image", SHARD_PLACEHOLDER_IMAGE, H5T_STD_I32LE, p, e) ||
        h5_attr_write_int(f, "placeholder_audio", SHARD_PLACEHOLDER_AUDIO, H5T_STD_I32LE, p, e) ||
        h5_attr_write_int(f, "placeholder_timeseries", SHARD_PLACEHOLDER_TIMESERIES, H5T_STD_I32LE, p, e) ||
        h5_attr_write_string(f, "created_by", "modrwkv shard_writer", p, e))
        return -1;
    if (w->source && w->source[0] && h5_attr_write_string(f, "source", w->source, p, e)) return -1;
    return 0;
}

static int64_t next_shard_index(const ShardWriter* w) { return w->rank + (int64_t)w->world * w->n_shards; }

static char* shard_path(const ShardWriter* w, int64_t index, const char* suffix) {
    size_t n = strlen(w->dir) + strlen(w->split) + 48;
    char* p = xmalloc(n);
    snprintf(p, n, "%s/%s-%06lld.h5%s", w->dir, w->split, (long long)index, suffix);
    return p;
}

static void shard_reset(ShardWriter* w) {
    for (int c = 0; c < N_COLUMNS; c++) {
        w->col[c].dset = H5I_INVALID_HID;
        w->col[c].n_buf = 0;
        w->col[c].n_rows = 0;
        w->col[c].chunk_rows = chunk_rows_of(w, c);
    }
    w->groups_made = 0;
    w->n_samples = w->n_tokens = w->n_media = w->n_bytes = w->key_end = 0;
    memset(w->payload_end, 0, sizeof w->payload_end);
    w->shard_kinds = 1;
}

static int shard_begin(ShardWriter* w, Error* e) {
    int64_t index = next_shard_index(w);
    w->path = shard_path(w, index, "");
    w->tmp = shard_path(w, index, ".tmp");
    shard_reset(w);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    int rc = h5_check(fcpl, e, w->path, NULL, "file properties", HINT);
    if (rc == 0) rc = h5_check(fapl, e, w->path, NULL, "file properties", HINT);
    if (rc == 0) rc = h5_check(H5Pset_obj_track_times(fcpl, 0), e, w->path, NULL, "file properties", HINT);
    if (rc == 0)
        rc = h5_check(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110), e, w->path, NULL,
                      "file format bounds", HINT);
    if (rc == 0) rc = h5_check(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), e, w->path, NULL, "file properties", HINT);
    if (rc == 0) w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    if (rc == 0) rc = h5_check(w->file, e, w->tmp, NULL, "create file", HINT);
    h5_close_id(fcpl);
    h5_close_id(fapl);
    if (rc == 0) rc = write_root_attrs(w, e);
    // offsets[0] = 0 of the three per-sample offset tables
    if (rc == 0) rc = append_i64(w, C_KEY_OFFSETS, 0, e);
    if (rc == 0) rc = append_i64(w, C_TOK_OFFSETS, 0, e);
    if (rc == 0) rc = append_i64(w, C_MEDIA_OFFSETS, 0, e);
    return rc;
}

// Closes everything of the shard being written (if any) and removes its temporary file.
static void shard_discard(ShardWriter* w) {
    for (int c = 0; c < N_COLUMNS; c++) {
        h5_close_id(w->col[c].dset);
        w->col[c].dset = H5I_INVALID_HID;
    }
    if (w->file >= 0) H5Fclose(w->file);
    H5Eclear2(H5E_DEFAULT);
    w->file = H5I_INVALID_HID;
    if (w->tmp) unlink(w->tmp);
    free(w->path);
    free(w->tmp);
    w->path = w->tmp = NULL;
}

static int fsync_path(const char* path, Error* e) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errorf(e, "%s: cannot reopen to flush it: %s (%s)", path, strerror(errno), HINT);
    int rc = fsync(fd) == 0 ? 0 : errorf(e, "%s: cannot flush to disk: %s (%s)", path, strerror(errno), HINT);
    close(fd);
    return rc;
}

// Flushes and closes the HDF5 file, renames it into place and records it with its checksum.
static int shard_finish(ShardWriter* w, Error* e) {
    for (int c = 0; c < N_COLUMNS; c++)
        if (column_flush(w, c, e)) return -1;
    if (h5_attr_write_int(w->file, "n_samples", w->n_samples, H5T_STD_I64LE, w->path, e) ||
        h5_attr_write_int(w->file, "n_tokens", w->n_tokens, H5T_STD_I64LE, w->path, e) ||
        h5_attr_write_int(w->file, "n_media", w->n_media, H5T_STD_I64LE, w->path, e))
        return -1;
    for (int c = 0; c < N_COLUMNS; c++) {
        int rc = h5_check(h5_close_id(w->col[c].dset), e, w->path, SPECS[c].path, "close dataset", HINT);
        w->col[c].dset = H5I_INVALID_HID;
        if (rc) return -1;
    }
    int rc = h5_check(H5Fclose(w->file), e, w->path, NULL, "close file", HINT);
    w->file = H5I_INVALID_HID;
    if (rc || fsync_path(w->tmp, e)) return -1;
    if (rename(w->tmp, w->path) != 0)
        return errorf(e, "%s: cannot rename %s over it: %s (%s)", w->path, w->tmp, strerror(errno), HINT);
    char hex[65];
    if (sha256_file_hex(w->path, hex, e)) return -1;
    if (w->n_shards == w->cap_shards) {
        w->cap_shards = w->cap_shards ? 2 * w->cap_shards : 16;
        w->shards = xrealloc(w->shards, (size_t)w->cap_shards * sizeof *w->shards);
    }
    const char* base = strrchr(w->path, '/') + 1;
    w->shards[w->n_shards++] = (ShardInfo){xstrdup(base), w->n_samples, w->n_tokens, w->n_media, xstrdup(hex)};
    w->total_samples += w->n_samples;
    w->total_tokens += w->n_tokens;
    w->kinds |= w->shard_kinds;
    free(w->tmp);
    free(w->path);
    w->tmp = w->path = NULL;
    return 0;
}

// ---------------------------------------------------------------------------------------------------- samples
static int64_t payload_elements(const MediaItem* m) {
    int64_t bytes = media_payload_bytes(m);
    return bytes / (int64_t)elem_bytes(SPECS[PAYLOAD_COLUMN[m->kind]].type);
}

static int append_item(ShardWriter* w, const MediaItem* m, Error* e) {
    int kind = m->kind;
    uint8_t k8 = (uint8_t)kind;
    int64_t n = payload_elements(m), off = w->payload_end[kind];
    if (column_append(w, C_KIND, &k8, 1, e) || column_append(w, C_POS, &m->placeholder_pos, 1, e) ||
        column_append(w, C_NPH, &m->n_placeholder, 1, e) || append_i64(w, C_PAY_OFF, off, e) ||
        append_i64(w, C_PAY_SIZE, n, e) || column_append(w, PAYLOAD_COLUMN[kind], media_payload(m), (size_t)n, e))
        return -1;
    int32_t shape[3] = {0, 0, 0};   // one row of the kind's shape table
    if (kind == MEDIA_IMAGE_PIXELS) shape[0] = m->height, shape[1] = m->width, shape[2] = m->channels;
    if (kind == MEDIA_TIMESERIES) shape[0] = m->length, shape[1] = m->channels;
    if (kind == MEDIA_FEATURES) shape[0] = m->n_feat_tokens, shape[1] = m->dim, shape[2] = m->feat_dtype_bytes;
    if (SHAPE_COLUMN[kind] >= 0 && column_append(w, SHAPE_COLUMN[kind], shape, 1, e)) return -1;
    w->payload_end[kind] = off + n;
    w->shard_kinds |= 1u << kind;
    return 0;
}

static int append_sample(ShardWriter* w, const Sample* s, int64_t bytes, Error* e) {
    size_t key_len = strlen(s->key);
    w->key_end += (int64_t)key_len;
    if (column_append(w, C_KEY_BYTES, s->key, key_len, e) || append_i64(w, C_KEY_OFFSETS, w->key_end, e) ||
        column_append(w, C_TOKENS, s->tokens, s->n_tokens, e) ||
        column_append(w, C_LOSS_MASK, s->loss_mask, s->n_tokens, e) ||
        append_i64(w, C_TOK_OFFSETS, w->n_tokens + (int64_t)s->n_tokens, e))
        return -1;
    for (int k = 0; k < s->n_media; k++)
        if (append_item(w, &s->media[k], e)) return -1;
    if (append_i64(w, C_MEDIA_OFFSETS, w->n_media + s->n_media, e)) return -1;
    w->n_samples++;
    w->n_tokens += (int64_t)s->n_tokens;
    w->n_media += s->n_media;
    w->n_bytes += bytes;
    return 0;
}

// What a sample adds to a shard, for max_bytes: key, tokens + mask, payloads and index rows.
static int64_t sample_bytes(const ShardWriter* w, const Sample* s) {
    int64_t b = (int64_t)strlen(s->key) + 3 * 8 + (int64_t)s->n_tokens * (int64_t)(elem_bytes(w->token_type) + 1);
    for (int k = 0; k < s->n_media; k++) b += media_payload_bytes(&s->media[k]) + 1 + 4 + 4 + 8 + 8 + 12;
    return b;
}

static int shard_is_full(const ShardWriter* w, const Sample* s, int64_t bytes) {
    if (w->file < 0 || w->n_samples == 0) return 0;
    if (w->max_samples > 0 && w->n_samples + 1 > w->max_samples) return 1;
    if (w->max_bytes > 0 && w->n_bytes + bytes > w->max_bytes) return 1;
    return w->n_samples + 1 > SHARD_MAX_FILE_SAMPLES || w->n_media + s->n_media > SHARD_MAX_FILE_ITEMS;
}

static int check_vocab(const ShardWriter* w, const Sample* s, const char* where, Error* e) {
    for (size_t t = 0; t < s->n_tokens; t++) {
        uint32_t id = s->tokens[t];
        if (id >= (uint32_t)w->vocab_size && !is_placeholder_id(id))
            return errorf(e, "%s: sample '%s': token %zu is %u, not below vocab_size %d (wrong tokenizer?)", where,
                          s->key, t, id, w->vocab_size);
    }
    return 0;
}

int shard_writer_add(ShardWriter* w, const Sample* s, Error* e) {
    char* where = w->path ? xstrdup(w->path) : shard_path(w, next_shard_index(w), "");
    int rc = 0;
    if (w->broken)
        rc = errorf(e, "%s: the shard writer failed earlier and accepts no more samples (see the first error)", where);
    if (rc == 0) rc = sample_validate(s, where, e);
    if (rc == 0) rc = check_vocab(w, s, where, e);
    uint64_t h = rc == 0 ? key_hash(s->key) : 0;
    if (rc == 0 && keyset_contains(&w->keys, h))
        rc = errorf(e, "%s: sample '%s': duplicate __key__ (keys must be unique in a dataset)", where, s->key);
    free(where);
    if (rc) return -1;
    int64_t bytes = sample_bytes(w, s);
    if (shard_is_full(w, s, bytes)) rc = shard_finish(w, e);
    if (rc == 0 && w->file < 0) rc = shard_begin(w, e);
    if (rc == 0) rc = append_sample(w, s, bytes, e);
    if (rc) {
        w->broken = 1;
        return -1;
    }
    keyset_insert(&w->keys, h);
    return 0;
}

// ---------------------------------------------------------------------------------------------------- open/close
static int check_options(const ShardWriterOptions* o, Error* e) {
    const char* dir = o && o->dir ? o->dir : "(no dir)";
    if (!o || !o->dir || !o->dir[0]) return errorf(e, "shard writer: no output directory given");
    if (!o->split || !o->split[0] || strchr(o->split, '/'))
        return errorf(e, "%s: split name '%s' must be non-empty and contain no '/'", dir, o->split ? o->split : "");
    if (!o->tokenizer || !o->tokenizer[0]) return errorf(e, "%s: no tokenizer id given (\"world\", \"bytes\", ...)", dir);
    if (o->vocab_size < 1 || o->vocab_size > SHARD_MAX_VOCAB)
        return errorf(e, "%s: vocab_size %d must be in 1..%d", dir, o->vocab_size, SHARD_MAX_VOCAB);
    if (o->compression < 0 || o->compression > 9)
        return errorf(e, "%s: compression %d must be a gzip level 0..9 (0 = none)", dir, o->compression);
    if (o->max_samples < 0 || o->max_bytes < 0)
        return errorf(e, "%s: max_samples and max_bytes must be >= 0 (0 = no limit)", dir);
    if (o->world < 1 || o->rank < 0 || o->rank >= o->world)
        return errorf(e, "%s: rank %d of world %d is not valid (0 <= rank < world)", dir, o->rank, o->world);
    if (o->compression > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0)
        return errorf(e, "%s: this HDF5 library has no gzip filter: use compression 0 or an HDF5 built with zlib", dir);
    if (H5Zfilter_avail(H5Z_FILTER_FLETCHER32) <= 0 || H5Zfilter_avail(H5Z_FILTER_SHUFFLE) <= 0)
        return errorf(e, "%s: this HDF5 library lacks the fletcher32 or shuffle filter", dir);
    return 0;
}

ShardWriter* shard_writer_open(const ShardWriterOptions* o, Error* e) {
    h5_quiet();
    if (check_options(o, e) || mkdir_p(o->dir, e)) return NULL;
    ShardWriter* w = xcalloc(1, sizeof *w);
    w->dir = xstrdup(o->dir);
    w->split = xstrdup(o->split);
    w->tokenizer = xstrdup(o->tokenizer);
    w->source = o->source ? xstrdup(o->source) : NULL;
    w->max_samples = o->max_samples;
    w->max_bytes = o->max_bytes;
    w->compression = o->compression;
    w->vocab_size = o->vocab_size;
    w->rank = o->rank;
    w->world = o->world;
    w->token_type = o->vocab_size <= 65536 ? E_U16 : E_U32;
    w->file = H5I_INVALID_HID;
    w->kinds = 1;
    shard_reset(w);
    return w;
}

static int write_manifest(ShardWriter* w, Error* e) {
    if (w->world == 1 && w->total_samples == 0)
        return errorf(e, "%s: no samples were added, so no dataset was written (the input had no usable samples)",
                      w->dir);
    size_t n = strlen(w->dir) + 40;
    char* path = xmalloc(n);
    if (w->world == 1) snprintf(path, n, "%s/manifest.json", w->dir);
    else snprintf(path, n, "%s/manifest.rank-%05d.json", w->dir, w->rank);
    Manifest m = {SHARD_FORMAT_VERSION, w->split, w->tokenizer, w->vocab_size, modalities_string(w->kinds),
                  w->shards, w->n_shards, w->total_samples, w->total_tokens};
    int rc = manifest_write(path, &m, e);
    free(m.modalities);
    free(path);
    return rc;
}

int shard_writer_close(ShardWriter* w, Error* e) {
    if (!w) return 0;
    int rc = 0;
    if (w->broken) rc = errorf(e, "%s: the shard writer failed earlier; the unfinished shard was removed", w->dir);
    else if (w->file >= 0) rc = shard_finish(w, e);
    if (rc == 0) rc = write_manifest(w, e);
    shard_discard(w);
    for (int c = 0; c < N_COLUMNS; c++) free(w->col[c].buf);
    for (int i = 0; i < w->n_shards; i++) {
        free(w->shards[i].file);
        free(w->shards[i].sha256);
    }
    free(w->shards);
    free(w->keys.slots);
    free(w->dir);
    free(w->split);
    free(w->tokenizer);
    free(w->source);
    free(w);
    return rc;
}

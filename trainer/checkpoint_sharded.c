// checkpoint_sharded.c — parallel checkpoint writing and reading (see checkpoint_sharded.h).
#include "trainer/checkpoint_sharded.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trainer/safetensors.h"

static const char* const SHARDED_FORMAT = "modrwkv-sharded-checkpoint";

struct CkptWriter {
    TensorSet pieces;      // this rank's values, one tensor per piece
    json_t* piece_info;    // array: what each piece is
    json_t* declared;      // rank 0: array of {name, shape, covered}
};

CkptWriter* ckpt_writer_create(void) {
    CkptWriter* w = xcalloc(1, sizeof *w);
    tensorset_init(&w->pieces);
    w->piece_info = json_array();
    w->declared = json_array();
    return w;
}

void ckpt_writer_free(CkptWriter* w) {
    if (!w) return;
    tensorset_free(&w->pieces);
    json_decref(w->piece_info);
    json_decref(w->declared);
    free(w);
}

static json_t* shape_json(int ndim, const int64_t* shape) {
    json_t* a = json_array();
    for (int i = 0; i < ndim; i++) json_array_append_new(a, json_integer(shape[i]));
    return a;
}

void ckpt_writer_add(CkptWriter* w, const char* name, int ndim, const int64_t* slice_shape, int tp_dim, int part,
                      int parts, size_t start, size_t n, const float* values) {
    char key[512];
    snprintf(key, sizeof key, "%s@%d+%zu", name, part, start);
    int64_t len = (int64_t)n;
    tensorset_add(&w->pieces, key, DT_F32, 1, &len, values);
    json_array_append_new(w->piece_info,
                          json_pack("{s:s, s:s, s:o, s:i, s:i, s:i, s:I, s:I}", "key", key, "name", name, "shape",
                                    shape_json(ndim, slice_shape), "tp_dim", tp_dim, "part", part, "parts", parts,
                                    "start", (json_int_t)start, "n", (json_int_t)n));
}

void ckpt_writer_declare(CkptWriter* w, const char* name, int ndim, const int64_t* shape, size_t covered) {
    json_array_append_new(w->declared, json_pack("{s:s, s:o, s:I}", "name", name, "shape", shape_json(ndim, shape),
                                                 "covered", (json_int_t)covered));
}

// This rank's file (when it has pieces); returns 0 or -1.
static int write_rank_file(CkptWriter* w, const char* dir, int rank, Error* e) {
    if (w->pieces.n == 0) return 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/rank-%05d.safetensors", dir, rank);
    char* pieces = json_dumps(w->piece_info, JSON_COMPACT);
    json_t* meta = json_pack("{s:s}", "pieces", pieces);
    free(pieces);
    w->pieces.metadata = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    return safetensors_write(path, &w->pieces, e);
}

// Rank 0: the index, listing the files of the ranks that had pieces (has[r]).
static int write_index(CkptWriter* w, const char* dir, const float* has, int size, const char* metadata, Error* e) {
    json_t* files = json_array();
    char name[64], path[4096];
    for (int r = 0; r < size; r++) {
        snprintf(name, sizeof name, "rank-%05d.safetensors", r);
        if (has[r] != 0.0f) json_array_append_new(files, json_string(name));
    }
    json_t* index = json_pack("{s:s, s:i, s:o, s:O, s:s}", "format", SHARDED_FORMAT, "version", 1, "files", files,
                              "tensors", w->declared, "metadata", metadata ? metadata : "{}");
    char* text = json_dumps(index, JSON_INDENT(1));
    json_decref(index);
    snprintf(path, sizeof path, "%s/index.json", dir);
    int rc = write_file_atomic(path, text, strlen(text), e);
    free(text);
    return rc;
}

int ckpt_writer_commit(CkptWriter* w, Comm* world, const char* dir, const char* metadata, Error* e) {
    int rank = comm_rank(world), size = comm_size(world);
    Error mine = {{0}};
    int rc = mkdir_p(dir, &mine);
    if (rc == 0) rc = write_rank_file(w, dir, rank, &mine);
    float* has = xcalloc((size_t)size, sizeof(float));  // (size) 1 where a rank wrote a file, -1 where it failed
    has[rank] = rc != 0 ? -1.0f : w->pieces.n > 0 ? 1.0f : 0.0f;
    comm_all_reduce(world, has, (size_t)size, COMM_SUM);  // every other entry is 0: the sum gathers them
    int failed = -1;
    for (int r = 0; r < size && failed < 0; r++)
        if (has[r] < 0) failed = r;
    if (failed >= 0) {
        free(has);
        if (rc != 0) return errorf(e, "%s", mine.msg);
        return errorf(e, "rank %d could not write its part of the checkpoint %s (see its message); the previous "
                         "checkpoints are intact", failed, dir);
    }
    if (rank == 0) rc = write_index(w, dir, has, size, metadata, &mine);
    free(has);
    int index_failed = (int)comm_all_reduce_double(world, rc != 0, COMM_MAX);
    if (index_failed) return errorf(e, "%s", rank == 0 ? mine.msg : "rank 0 could not write the checkpoint index");
    return 0;
}

// ---------------------------------------------------------------------------------------------------- reading

int is_sharded_checkpoint(const char* path) {
    char index[4096];
    struct stat st;
    snprintf(index, sizeof index, "%s/index.json", path);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode) && stat(index, &st) == 0 && S_ISREG(st.st_mode);
}

// Copies one piece into the whole tensor `whole` (numel values): the piece holds the flat range [start,
// start + n) of slice `part` of `parts` along tp_dim of a slice of shape `shape`.
static void place_piece(float* whole, const float* src, const int64_t* shape, int ndim, int tp_dim, int part,
                        int parts, size_t start, size_t n) {
    if (parts == 1) {
        memcpy(whole + start, src, n * sizeof(float));
        return;
    }
    size_t block = 1;  // values of one slice row: slice dim tp_dim and everything after it
    for (int i = tp_dim; i < ndim; i++) block *= (size_t)shape[i];
    for (size_t i = start; i < start + n;) {
        size_t o = i / block, at = i % block, len = block - at;
        if (len > start + n - i) len = start + n - i;
        memcpy(whole + (o * (size_t)parts + (size_t)part) * block + at, src + (i - start), len * sizeof(float));
        i += len;
    }
}

// Validates one piece description against its data and target; returns 0 or -1.
static int read_piece(const char* file, json_t* p, const TensorSet* ts, TensorSet* out, size_t* covered, Error* e) {
    const char *key = json_string_value(json_object_get(p, "key")), *name = json_string_value(json_object_get(p, "name"));
    json_t* shape = json_object_get(p, "shape");
    int tp_dim = (int)json_integer_value(json_object_get(p, "tp_dim")), part = (int)json_integer_value(json_object_get(p, "part"));
    int parts = (int)json_integer_value(json_object_get(p, "parts"));
    size_t start = (size_t)json_integer_value(json_object_get(p, "start")), n = (size_t)json_integer_value(json_object_get(p, "n"));
    int ndim = json_is_array(shape) ? (int)json_array_size(shape) : 0;
    if (!key || !name || ndim < 1 || ndim > TENSOR_MAX_DIMS || parts < 1 || part < 0 || part >= parts ||
        (parts > 1 && (tp_dim < 0 || tp_dim >= ndim)))
        return errorf(e, "%s: a piece description is malformed: the checkpoint is corrupt", file);
    int64_t dims[TENSOR_MAX_DIMS];
    size_t slice = 1;
    for (int i = 0; i < ndim; i++) slice *= (size_t)(dims[i] = json_integer_value(json_array_get(shape, (size_t)i)));
    const NamedTensor* src = tensorset_find(ts, key);
    NamedTensor* dst = tensorset_find(out, name);
    int i = dst ? (int)(dst - out->t) : -1;
    if (!src || src->dtype != DT_F32 || (size_t)tensor_numel(src) != n)
        return errorf(e, "%s: piece '%s' is missing or has the wrong size: the checkpoint is corrupt", file, key);
    if (!dst) return errorf(e, "%s: piece of '%s', which the index does not declare: the checkpoint is corrupt", file, name);
    if (start + n > slice || slice * (size_t)parts != (size_t)tensor_numel(dst))
        return errorf(e, "%s: piece '%s' does not fit the tensor's shape: the checkpoint is corrupt", file, key);
    place_piece(dst->data, src->data, dims, ndim, tp_dim, part, parts, start, n);
    covered[i] += n;
    return 0;
}

static int read_file_pieces(const char* dir, const char* fname, TensorSet* out, size_t* covered, Error* e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    TensorSet ts;
    if (safetensors_read(path, &ts, e) != 0) return -1;
    json_t* meta = ts.metadata ? json_loads(ts.metadata, 0, NULL) : NULL;
    const char* text = meta ? json_string_value(json_object_get(meta, "pieces")) : NULL;
    json_t* pieces = text ? json_loads(text, 0, NULL) : NULL;
    int rc = json_is_array(pieces) ? 0 : errorf(e, "%s: no piece list in its metadata: not a modrwkv checkpoint shard", path);
    for (size_t k = 0; rc == 0 && k < json_array_size(pieces); k++)
        rc = read_piece(path, json_array_get(pieces, k), &ts, out, covered, e);
    json_decref(pieces);
    json_decref(meta);
    tensorset_free(&ts);
    return rc;
}

// Values of one declared tensor entry (0 when its shape is malformed: a dim < 1 or > 2^31, or more than 2^36
// values); *covered receives its "covered" count.
static uint64_t entry_numel(json_t* t, uint64_t* covered) {
    json_t* shape = json_object_get(t, "shape");
    int ndim = json_is_array(shape) ? (int)json_array_size(shape) : 0;
    if (!json_string_value(json_object_get(t, "name")) || ndim < 1 || ndim > TENSOR_MAX_DIMS) return 0;
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        json_int_t d = json_integer_value(json_array_get(shape, (size_t)i));
        if (d < 1 || d > ((json_int_t)1 << 31)) return 0;
        n *= (uint64_t)d;
        if (n > ((uint64_t)1 << 36)) return 0;
    }
    json_int_t c = json_integer_value(json_object_get(t, "covered"));
    if (c < 0 || (uint64_t)c > n) return 0;
    *covered = (uint64_t)c;
    return n;
}

// Checks every declared tensor before anything is allocated: a sane shape, covered <= its values, the covered
// values fit in the listed files, and the whole (covered or zero: moments of frozen tensors) is at most three
// times what is covered (weights + two moments). Returns 0 or -1.
static int check_declarations(const char* dir, json_t* tensors, json_t* files, Error* e) {
    uint64_t total = 0, covered = 0, available = 0;
    for (size_t k = 0; k < json_array_size(tensors); k++) {
        uint64_t c = 0, n = entry_numel(json_array_get(tensors, k), &c);
        if (n == 0) return errorf(e, "%s/index.json: tensor entry %zu is malformed: the checkpoint is corrupt", dir, k);
        total += n;
        covered += c;
    }
    for (size_t k = 0; k < json_array_size(files); k++) {
        const char* f = json_string_value(json_array_get(files, k));
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, f ? f : "");
        if (!f) return errorf(e, "%s/index.json: file entry %zu is not a name: the checkpoint is corrupt", dir, k);
        if (stat(path, &st) != 0)
            return errorf(e, "%s: cannot open: %s: the sharded checkpoint is incomplete", path, strerror(errno));
        available += (uint64_t)st.st_size / sizeof(float);
    }
    if (covered > available || total > 3 * covered + (1u << 20))
        return errorf(e, "%s/index.json: it declares %llu values (%llu from the shards) but the shards hold at most %llu: "
                         "the checkpoint is corrupt", dir, (unsigned long long)total, (unsigned long long)covered,
                      (unsigned long long)available);
    return 0;
}

// Allocates the declared tensors (zero-filled) into out (after check_declarations); returns their count.
static int declare_outputs(json_t* tensors, TensorSet* out) {
    for (size_t k = 0; k < json_array_size(tensors); k++) {
        json_t* t = json_array_get(tensors, k);
        json_t* shape = json_object_get(t, "shape");
        int ndim = (int)json_array_size(shape);
        int64_t dims[TENSOR_MAX_DIMS];
        for (int i = 0; i < ndim; i++) dims[i] = json_integer_value(json_array_get(shape, (size_t)i));
        tensorset_add(out, json_string_value(json_object_get(t, "name")), DT_F32, ndim, dims, NULL);
    }
    return (int)json_array_size(tensors);
}

int sharded_checkpoint_read(const char* dir, TensorSet* out, Error* e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/index.json", dir);
    tensorset_init(out);
    json_error_t je;
    json_t* index = json_load_file(path, 0, &je);
    if (!index) return errorf(e, "%s: cannot read (%s): the sharded checkpoint is incomplete or corrupt", path, je.text);
    const char* fmt = json_string_value(json_object_get(index, "format"));
    json_t *files = json_object_get(index, "files"), *tensors = json_object_get(index, "tensors");
    const char* meta = json_string_value(json_object_get(index, "metadata"));
    int rc = 0;
    if (!fmt || strcmp(fmt, SHARDED_FORMAT) != 0 || !json_is_array(files) || !json_is_array(tensors) || !meta)
        rc = errorf(e, "%s: not a modrwkv sharded checkpoint index", path);
    if (rc == 0) rc = check_declarations(dir, tensors, files, e);
    int n = rc == 0 ? declare_outputs(tensors, out) : -1;
    size_t* covered = xcalloc((size_t)(n > 0 ? n : 1), sizeof(size_t));
    for (size_t k = 0; n >= 0 && rc == 0 && k < json_array_size(files); k++) {
        const char* f = json_string_value(json_array_get(files, k));
        rc = f ? read_file_pieces(dir, f, out, covered, e) : errorf(e, "%s: a file entry is not a name", path);
    }
    for (int i = 0; n >= 0 && rc == 0 && i < n; i++) {
        size_t want = (size_t)json_integer_value(json_object_get(json_array_get(tensors, (size_t)i), "covered"));
        if (covered[i] != want)
            rc = errorf(e, "%s: tensor '%s': the shards supply %zu of its %zu values: the checkpoint is incomplete", dir,
                        out->t[i].name, covered[i], want);
    }
    if (n < 0) rc = -1;
    if (rc == 0) out->metadata = xstrdup(meta);
    else tensorset_free(out);
    free(covered);
    json_decref(index);
    return rc;
}

void sharded_checkpoint_remove(const char* dir) {
    DIR* d = opendir(dir);
    if (!d) return;
    struct dirent* ent;
    char path[4096];
    while ((ent = readdir(d))) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}
